//! Deterministic tests of the gateway core against a simulated host: virtual time, in-memory sockets.

use netstack::batch::FrameBatch;
use netstack::config::{Config, GuestFwd, GuestFwdTarget};
use netstack::flow::{FlowId, Proto};
use netstack::gateway::Gateway;
use netstack::host::{Action, Event, HostError, HostIo, HostResult};
use netstack::wire::arp::{self, ArpRepr};
use netstack::wire::ethernet::{self, Frame};
use netstack::wire::icmp as icmpw;
use netstack::wire::ip::{self, IpPacket};
use netstack::wire::tcp::{self as tcpw, TcpHeader, TcpSegment, ACK, FIN, PSH, RST, SYN};
use netstack::wire::udp::{self as udpw, UdpDatagram};
use std::collections::{HashMap, VecDeque};
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const GW_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

fn guest_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15))
}
fn gw_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2))
}
fn remote_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80))
}

#[derive(Default)]
struct SimTcp {
    dst: Option<SocketAddr>,
    /// Bytes the host peer sent us, not yet consumed.
    rx: VecDeque<u8>,
    rx_eof: bool,
    /// Bytes we wrote to the host peer.
    written: Vec<u8>,
    /// How many more bytes the socket accepts (None: unlimited).
    send_room: Option<usize>,
    shut_wr: bool,
    closed: Option<bool>,
}

/// A UDP socket: destination, datagrams sent, datagrams waiting to be received.
type SimUdp = (SocketAddr, Vec<Vec<u8>>, VecDeque<Vec<u8>>);

#[derive(Default)]
struct SimHost {
    frames: Vec<Vec<u8>>,
    tcp: HashMap<FlowId, SimTcp>,
    udp: HashMap<FlowId, SimUdp>,
    want_write: Vec<FlowId>,
    spawned: Vec<String>,
    consumes: usize,
    peeks: usize,
    /// Report congestion once this many frames are waiting.
    congest_after: Option<usize>,
    udp_forwards: Vec<(FlowId, u32)>,
    /// Make socket()/socketpair() fail with this error (e.g. out of fds).
    fail_open: Option<HostError>,
    /// DNS queries sent upstream.
    dns_sent: usize,
    /// Their bytes, in order.
    dns_queries: Vec<Vec<u8>>,
    /// Every action the gateway asked for, in order.
    actions: Vec<Action>,
}

impl SimHost {
    fn check_open(&self) -> HostResult<()> {
        match &self.fail_open {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Carries out one action of the gateway, as the driver would. A connect or command start that
    /// fails at once, and every UDP/ICMP open, returns the event to report right away.
    fn apply(&mut self, a: Action) -> Option<Event<'static>> {
        self.actions.push(a.clone());
        let failed = |id, e| Some(Event::TcpConnected { id, result: Err(e) });
        let opened = |id, r: HostResult<()>| {
            Some(match r {
                Ok(()) => Event::Opened(id),
                Err(e) => Event::OpenFailed(id, e),
            })
        };
        match a {
            Action::TcpConnect { id, dst } => {
                if let Err(e) = self.check_open() {
                    return failed(id, e);
                }
                self.tcp.insert(
                    id,
                    SimTcp {
                        dst: Some(dst),
                        ..Default::default()
                    },
                );
            }
            Action::TcpSpawn { id, command } => {
                if let Err(e) = self.check_open() {
                    return failed(id, e);
                }
                self.spawned.push(command);
                self.tcp.insert(id, SimTcp::default());
            }
            Action::TcpWantWrite(id) => self.want_write.push(id),
            Action::TcpShutdownWrite(id) => {
                if let Some(s) = self.tcp.get_mut(&id) {
                    s.shut_wr = true;
                }
            }
            Action::TcpClose { id, reset } => {
                if let Some(s) = self.tcp.get_mut(&id) {
                    s.closed = Some(reset);
                }
            }
            Action::UdpOpen { id, dst } => {
                let r = self.check_open();
                if r.is_ok() {
                    self.udp.insert(id, (dst, Vec::new(), VecDeque::new()));
                }
                return opened(id, r);
            }
            Action::UdpOpenForward { id, fwd, client } => {
                self.udp.insert(id, (client, Vec::new(), VecDeque::new()));
                self.udp_forwards.push((id, fwd));
                return opened(id, Ok(()));
            }
            Action::UdpClose(id) => {
                self.udp.remove(&id);
            }
            Action::IcmpOpen { id, .. } => {
                let e = HostError::NotPermitted("no ping sockets in the simulation".into());
                return opened(id, Err(e));
            }
            Action::IcmpClose(_) => {}
        }
        None
    }
}

impl HostIo for SimHost {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.frames.push(frame.to_vec());
        self.frames.len() < self.congest_after.unwrap_or(usize::MAX)
    }
    fn tcp_send(&mut self, id: FlowId, data: &[u8]) -> HostResult<usize> {
        let s = self.tcp.get_mut(&id).ok_or(HostError::NotOpen)?;
        let n = s.send_room.map_or(data.len(), |r| r.min(data.len()));
        if n == 0 {
            return Err(HostError::WouldBlock);
        }
        if let Some(r) = s.send_room.as_mut() {
            *r -= n;
        }
        s.written.extend_from_slice(&data[..n]);
        Ok(n)
    }
    fn tcp_send_vectored(&mut self, id: FlowId, bufs: &[IoSlice<'_>]) -> HostResult<usize> {
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.tcp_send(id, &all)
    }
    fn tcp_peek(
        &mut self,
        id: FlowId,
        offset: usize,
        bufs: &mut [IoSliceMut<'_>],
    ) -> HostResult<usize> {
        self.peeks += 1;
        let s = self.tcp.get_mut(&id).ok_or(HostError::NotOpen)?;
        if offset >= s.rx.len() {
            return if s.rx_eof {
                Ok(0)
            } else {
                Err(HostError::WouldBlock)
            };
        }
        let mut n = 0;
        let mut it = s.rx.iter().skip(offset);
        for b in bufs.iter_mut() {
            for slot in b.iter_mut() {
                match it.next() {
                    Some(&v) => {
                        *slot = v;
                        n += 1;
                    }
                    None => return Ok(n),
                }
            }
        }
        Ok(n)
    }
    fn tcp_consume(&mut self, id: FlowId, n: usize) {
        self.consumes += 1;
        if let Some(s) = self.tcp.get_mut(&id) {
            s.rx.drain(..n.min(s.rx.len()));
        }
    }
    fn udp_send(&mut self, id: FlowId, data: &[u8]) -> HostResult<()> {
        self.udp
            .get_mut(&id)
            .ok_or(HostError::NotOpen)?
            .1
            .push(data.to_vec());
        Ok(())
    }
    fn udp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> HostResult<usize> {
        let d = self
            .udp
            .get_mut(&id)
            .ok_or(HostError::NotOpen)?
            .2
            .pop_front()
            .ok_or(HostError::WouldBlock)?;
        buf[..d.len()].copy_from_slice(&d);
        Ok(d.len())
    }
    fn icmp_send(&mut self, _id: FlowId, _msg: &[u8]) -> HostResult<()> {
        Ok(())
    }
    fn icmp_recv(&mut self, _id: FlowId, _buf: &mut [u8]) -> HostResult<usize> {
        Err(HostError::WouldBlock)
    }
    fn dns_send(&mut self, _upstream: SocketAddr, query: &[u8]) -> HostResult<()> {
        self.dns_sent += 1;
        self.dns_queries.push(query.to_vec());
        Ok(())
    }
    fn dns_recv(&mut self, _buf: &mut [u8]) -> HostResult<(usize, SocketAddr)> {
        Err(HostError::WouldBlock)
    }
}

/// A parsed TCP segment the gateway sent to the guest.
#[derive(Debug, Clone)]
struct Out {
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    mss: Option<u16>,
    wscale: Option<u8>,
    payload: Vec<u8>,
}

struct Harness {
    gw: Gateway,
    host: SimHost,
    now: Instant,
}

impl Harness {
    fn new(cfg: Config) -> Self {
        Self::with_seed(cfg, 7)
    }

    fn with_seed(cfg: Config, seed: u64) -> Self {
        Harness {
            gw: Gateway::new(cfg, seed),
            host: SimHost::default(),
            now: Instant::now(),
        }
    }

    /// Carries out the gateway's queued actions, as the driver does after every call.
    fn drain(&mut self) {
        while let Some(a) = self.gw.poll_action() {
            if let Some(ev) = self.host.apply(a) {
                self.gw.handle_event(self.now, ev, &mut self.host);
            }
        }
    }

    /// A host event, then the actions it led to.
    fn event(&mut self, ev: Event<'_>) {
        self.gw.handle_event(self.now, ev, &mut self.host);
        self.drain();
    }

    /// The end of a batch (deferred ACKs), then the actions.
    fn end_batch(&mut self) {
        self.drain();
        self.gw.end_batch(self.now, &mut self.host);
        self.drain();
    }

    fn send(&mut self, frame: Vec<u8>) {
        self.gw.handle_frame(self.now, &frame, &mut self.host);
        self.end_batch();
    }

    /// A frame that came in on switch port `port` (its flows are charged to the port).
    fn send_from(&mut self, port: u32, frame: Vec<u8>) {
        let frames = [frame.as_slice()];
        let batch = FrameBatch::from_port(port, &frames);
        self.gw.handle_batch(self.now, batch, &mut self.host);
        self.end_batch();
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.gw.handle_timeout(self.now, &mut self.host);
        self.end_batch();
    }

    fn take_frames(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.host.frames)
    }

    fn take_tcp(&mut self) -> Vec<Out> {
        self.take_frames()
            .iter()
            .filter_map(|f| {
                let e = Frame::parse(f).ok()?;
                assert_eq!(e.dst(), GUEST_MAC, "frames go to the guest's MAC");
                assert_eq!(e.src(), GW_MAC);
                let p = IpPacket::parse_v4(e.payload()).expect("valid IPv4 from the gateway");
                if p.proto != ip::PROTO_TCP {
                    return None;
                }
                let s = TcpSegment::parse(p.payload, p.src, p.dst)
                    .expect("valid TCP checksum from the gateway");
                Some(Out {
                    seq: s.seq,
                    ack: s.ack,
                    flags: s.flags,
                    window: s.window,
                    mss: s.mss,
                    wscale: s.wscale,
                    payload: s.payload.to_vec(),
                })
            })
            .collect()
    }

    fn flow(&self) -> FlowId {
        *self.host.tcp.keys().next().expect("a host socket")
    }
}

fn ipv4_frame(src: IpAddr, dst: IpAddr, proto: u8, transport: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + transport.len()];
    ethernet::write_header(&mut f, GW_MAC, GUEST_MAC, ethernet::ETHERTYPE_IPV4);
    ip::write_header(&mut f[14..], src, dst, proto, transport.len());
    f[34..].copy_from_slice(transport);
    f
}

#[allow(clippy::too_many_arguments)]
fn tcp_frame(
    dst: IpAddr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    syn_opts: Option<(u16, Option<u8>)>,
    payload: &[u8],
) -> Vec<u8> {
    let h = TcpHeader {
        src_port: 40000,
        dst_port: dport,
        seq,
        ack,
        flags,
        window,
        syn_opts,
    };
    let mut seg = vec![0u8; h.len() + payload.len()];
    seg[h.len()..].copy_from_slice(payload);
    tcpw::write_header(&mut seg, &h, guest_ip(), dst);
    ipv4_frame(guest_ip(), dst, ip::PROTO_TCP, &seg)
}

fn udp_frame(dst: IpAddr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0u8; 8 + payload.len()];
    seg[8..].copy_from_slice(payload);
    udpw::write(&mut seg, guest_ip(), dst, 5555, dport);
    ipv4_frame(guest_ip(), dst, ip::PROTO_UDP, &seg)
}

const ISN: u32 = 1000;

/// Guest SYN → host connect → SYN-ACK → ACK. Returns the gateway's ISN + 1.
fn establish(h: &mut Harness, dst: IpAddr, port: u16) -> u32 {
    h.send(tcp_frame(
        dst,
        port,
        ISN,
        0,
        SYN,
        65535,
        Some((1460, Some(7))),
        b"",
    ));
    assert!(
        h.take_tcp().is_empty(),
        "no SYN-ACK before the host connect succeeds"
    );
    let id = h.flow();
    h.event(Event::TcpConnected { id, result: Ok(()) });
    let out = h.take_tcp();
    assert_eq!(out.len(), 1);
    let synack = &out[0];
    assert_eq!(synack.flags, SYN | ACK);
    assert_eq!(synack.ack, ISN + 1);
    assert_eq!(synack.mss, Some(1460));
    assert_eq!(synack.wscale, Some(7));
    let ours = synack.seq.wrapping_add(1);
    // The guest's window: 65535 << 7 bytes.
    h.send(tcp_frame(dst, port, ISN + 1, ours, ACK, 65535, None, b""));
    assert!(h.take_tcp().is_empty());
    ours
}

#[test]
fn arp_answers_only_for_gateway_and_dns() {
    let mut h = Harness::new(Config::default());
    for (target, answered) in [
        ([10, 0, 2, 2], true),
        ([10, 0, 2, 3], true),
        ([10, 0, 2, 77], false),
    ] {
        let req = ArpRepr {
            op: arp::OP_REQUEST,
            sender_mac: GUEST_MAC,
            sender_ip: Ipv4Addr::new(10, 0, 2, 15),
            target_mac: [0; 6],
            target_ip: Ipv4Addr::from(target),
        };
        let mut f = vec![0u8; 42];
        ethernet::write_header(
            &mut f,
            ethernet::BROADCAST,
            GUEST_MAC,
            ethernet::ETHERTYPE_ARP,
        );
        req.emit(&mut f[14..]);
        h.send(f);
        let out = h.take_frames();
        assert_eq!(out.len(), usize::from(answered), "ARP for {target:?}");
        if answered {
            let r = ArpRepr::parse(&out[0][14..]).expect("arp");
            assert_eq!(
                (r.op, r.sender_mac, r.sender_ip),
                (arp::OP_REPLY, GW_MAC, Ipv4Addr::from(target))
            );
        }
    }
}

#[test]
fn tcp_full_exchange_and_orderly_close() {
    let mut h = Harness::new(Config::default());
    let ours = establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    assert_eq!(
        h.host.tcp[&id].dst,
        Some("192.0.2.80:80".parse().expect("addr"))
    );

    // Guest → host.
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1,
        ours,
        ACK | PSH,
        65535,
        None,
        b"GET / HTTP/1.0\r\n\r\n",
    ));
    assert_eq!(h.host.tcp[&id].written, b"GET / HTTP/1.0\r\n\r\n");
    let acks = h.take_tcp();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].ack, ISN + 1 + 18);

    // Host → guest: 4000 bytes become MSS-sized segments.
    let body: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    h.host
        .tcp
        .get_mut(&id)
        .expect("sock")
        .rx
        .extend(body.iter().copied());
    h.event(Event::TcpReadable(id));
    let segs = h.take_tcp();
    assert_eq!(
        segs.iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
        vec![1460, 1460, 1080]
    );
    let got: Vec<u8> = segs.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(got, body);
    assert_eq!(segs[0].seq, ours);
    assert_eq!(segs[2].seq, ours + 2920);
    assert_eq!(
        h.host.tcp[&id].rx.len(),
        4000,
        "nothing consumed before the guest ACKs"
    );

    // The guest ACKs part: that much is consumed.
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 19,
        ours + 1460,
        ACK,
        65535,
        None,
        b"",
    ));
    assert_eq!(h.host.tcp[&id].rx.len(), 2540);
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 19,
        ours + 4000,
        ACK,
        65535,
        None,
        b"",
    ));
    assert_eq!(h.host.tcp[&id].rx.len(), 0);

    // Host closes → FIN to the guest after the data.
    h.host.tcp.get_mut(&id).expect("sock").rx_eof = true;
    h.event(Event::TcpReadable(id));
    let fin = h.take_tcp();
    assert_eq!(fin.len(), 1);
    assert_eq!(fin[0].flags & FIN, FIN);
    assert_eq!(fin[0].seq, ours + 4000);

    // Guest ACKs our FIN and sends its own: shutdown, then the flow is freed.
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 19,
        ours + 4001,
        ACK | FIN,
        65535,
        None,
        b"",
    ));
    assert!(h.host.tcp[&id].shut_wr);
    assert_eq!(h.host.tcp[&id].closed, Some(false));
    let last = h.take_tcp();
    assert_eq!(last.last().map(|s| (s.flags, s.ack)), Some((ACK, ISN + 20)));
    assert_eq!(h.gw.flow_counts().0, 0);
    assert_eq!(h.gw.stats().tcp_flows_closed, 1);
}

#[test]
fn guest_half_close_keeps_host_to_guest_open() {
    let mut h = Harness::new(Config::default());
    let ours = establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1,
        ours,
        ACK | FIN,
        65535,
        None,
        b"upload",
    ));
    assert_eq!(h.host.tcp[&id].written, b"upload");
    assert!(
        h.host.tcp[&id].shut_wr,
        "guest FIN becomes shutdown(SHUT_WR)"
    );
    let a = h.take_tcp();
    assert_eq!(a.last().map(|s| s.ack), Some(ISN + 1 + 6 + 1));
    // The host still answers.
    h.host
        .tcp
        .get_mut(&id)
        .expect("sock")
        .rx
        .extend(b"ok".iter().copied());
    h.event(Event::TcpReadable(id));
    let d = h.take_tcp();
    assert_eq!(d[0].payload, b"ok");
    assert_eq!(h.gw.flow_counts().0, 1);
}

#[test]
fn refused_connect_is_reset_at_once() {
    let mut h = Harness::new(Config::default());
    h.send(tcp_frame(
        gw_ip(),
        9,
        ISN,
        0,
        SYN,
        65535,
        Some((1460, None)),
        b"",
    ));
    let id = h.flow();
    assert_eq!(
        h.host.tcp[&id].dst,
        Some("127.0.0.1:9".parse().expect("addr")),
        "the gateway address is host loopback"
    );
    h.event(Event::TcpConnected {
        id,
        result: Err(HostError::Refused),
    });
    let out = h.take_tcp();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, RST | ACK);
    assert_eq!(out[0].ack, ISN + 1);
    assert_eq!(h.gw.stats().tcp_refused, 1);
    assert_eq!(h.gw.flow_counts().0, 0);
}

#[test]
fn unreachable_connect_becomes_icmp() {
    let mut h = Harness::new(Config::default());
    h.send(tcp_frame(remote_ip(), 80, ISN, 0, SYN, 65535, None, b""));
    let id = h.flow();
    h.event(Event::TcpConnected {
        id,
        result: Err(HostError::HostUnreachable),
    });
    let f = h.take_frames();
    assert_eq!(f.len(), 1);
    let p = IpPacket::parse_v4(&f[0][14..]).expect("ip");
    assert_eq!(p.proto, ip::PROTO_ICMP);
    let m = icmpw::IcmpMessage::parse(p.payload).expect("icmp checksum");
    assert_eq!(
        (m.kind, m.code),
        (icmpw::DEST_UNREACHABLE, icmpw::CODE_HOST_UNREACHABLE)
    );
    // The quote names the guest's connection: ports and sequence number.
    // The quote is the SYN's IP header (its length field names the whole SYN) and 8 TCP bytes.
    assert_eq!(m.payload.len(), 28);
    assert_eq!(&m.payload[12..16], &[10, 0, 2, 15]);
    assert_eq!(&m.payload[16..20], &[192, 0, 2, 80]);
    assert_eq!(&m.payload[20..24], &[0x9c, 0x40, 0, 80]);
    assert_eq!(&m.payload[24..28], &ISN.to_be_bytes());
}

#[test]
fn host_loopback_can_be_disabled() {
    let cfg = Config {
        host_loopback: false,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    h.send(tcp_frame(gw_ip(), 22, ISN, 0, SYN, 65535, None, b""));
    assert!(h.host.tcp.is_empty());
    let out = h.take_tcp();
    assert_eq!(out[0].flags & RST, RST);
}

#[test]
fn out_of_order_data_is_not_written_and_dup_acked() {
    let mut h = Harness::new(Config::default());
    let ours = establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1 + 100,
        ours,
        ACK,
        65535,
        None,
        b"later",
    ));
    assert!(h.host.tcp[&id].written.is_empty());
    let a = h.take_tcp();
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].ack,
        ISN + 1,
        "duplicate ACK asks for the missing bytes"
    );
    // A retransmission overlapping what we have is trimmed.
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1,
        ours,
        ACK,
        65535,
        None,
        b"abc",
    ));
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 2,
        ours,
        ACK,
        65535,
        None,
        b"bcdef",
    ));
    assert_eq!(h.host.tcp[&id].written, b"abcdef");
}

#[test]
fn full_host_socket_buffers_within_window_then_flushes() {
    let mut h = Harness::new(Config::default());
    let ours = establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    h.host.tcp.get_mut(&id).expect("sock").send_room = Some(4);
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1,
        ours,
        ACK,
        65535,
        None,
        b"0123456789",
    ));
    assert_eq!(h.host.tcp[&id].written, b"0123");
    assert_eq!(h.host.want_write, vec![id]);
    let a = h.take_tcp();
    assert_eq!(
        a[0].ack,
        ISN + 11,
        "accepted bytes are acknowledged: we hold them"
    );
    assert!(
        u32::from(a[0].window) << 7 < netstack::tcp::RCV_WINDOW,
        "the window shrinks by what we hold"
    );
    h.host.tcp.get_mut(&id).expect("sock").send_room = None;
    h.event(Event::TcpWritable(id));
    assert_eq!(h.host.tcp[&id].written, b"0123456789");
}

#[test]
fn lost_segments_are_retransmitted_from_snd_una() {
    let mut h = Harness::new(Config::default());
    let ours = establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    h.host
        .tcp
        .get_mut(&id)
        .expect("sock")
        .rx
        .extend(vec![7u8; 3000]);
    h.event(Event::TcpReadable(id));
    assert_eq!(h.take_tcp().len(), 3);
    // Nothing is acknowledged: after the retransmission timeout everything goes again.
    h.advance(Duration::from_millis(300));
    let again = h.take_tcp();
    assert_eq!(again.first().map(|s| s.seq), Some(ours));
    assert_eq!(again.iter().map(|s| s.payload.len()).sum::<usize>(), 3000);
    assert_eq!(h.gw.stats().tcp_retransmits, 1);
    // Three duplicate ACKs trigger a fast retransmit from the acknowledged point.
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1,
        ours + 1460,
        ACK,
        65535,
        None,
        b"",
    ));
    h.take_tcp();
    for _ in 0..3 {
        h.send(tcp_frame(
            remote_ip(),
            80,
            ISN + 1,
            ours + 1460,
            ACK,
            65535,
            None,
            b"",
        ));
    }
    let fast = h.take_tcp();
    assert_eq!(fast.first().map(|s| s.seq), Some(ours + 1460));
}

#[test]
fn guest_window_limits_what_is_sent() {
    let mut h = Harness::new(Config::default());
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN,
        0,
        SYN,
        2000,
        Some((1460, None)),
        b"",
    ));
    let id = h.flow();
    h.event(Event::TcpConnected { id, result: Ok(()) });
    let ours = h.take_tcp()[0].seq + 1;
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1,
        ours,
        ACK,
        2000,
        None,
        b"",
    ));
    h.host
        .tcp
        .get_mut(&id)
        .expect("sock")
        .rx
        .extend(vec![1u8; 10000]);
    h.event(Event::TcpReadable(id));
    let segs = h.take_tcp();
    assert_eq!(segs.iter().map(|s| s.payload.len()).sum::<usize>(), 2000);
    // The window slides as the guest acknowledges.
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1,
        ours + 2000,
        ACK,
        2000,
        None,
        b"",
    ));
    let more = h.take_tcp();
    assert_eq!(more.iter().map(|s| s.payload.len()).sum::<usize>(), 2000);
    assert_eq!(more[0].seq, ours + 2000);
}

#[test]
fn rst_from_guest_resets_host_and_unknown_segments_get_rst() {
    let mut h = Harness::new(Config::default());
    let ours = establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    h.send(tcp_frame(remote_ip(), 80, ISN + 1, ours, RST, 0, None, b""));
    assert_eq!(h.host.tcp[&id].closed, Some(true));
    assert_eq!(h.gw.flow_counts().0, 0);
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1,
        ours,
        ACK,
        100,
        None,
        b"x",
    ));
    let r = h.take_tcp();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].flags, r[0].seq), (RST, ours));
}

#[test]
fn malformed_frames_are_counted_not_fatal() {
    let mut h = Harness::new(Config::default());
    let good = tcp_frame(remote_ip(), 80, ISN, 0, SYN, 65535, None, b"");
    let mut bad_sum = good.clone();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0xff;
    h.send(bad_sum);
    h.send(good[..20].to_vec());
    h.send(vec![0u8; 5]);
    let mut bad_ver = good.clone();
    bad_ver[14] = 0x55;
    h.send(bad_ver);
    let s = h.gw.stats();
    assert_eq!(s.drop_bad_checksum, 1);
    assert!(s.drop_malformed >= 3, "{s:?}");
    assert!(h.host.tcp.is_empty());
    // Random garbage never panics.
    let mut x: u64 = 0x1234_5678;
    for len in 0..400usize {
        let mut f = good.clone();
        f.truncate(len.min(f.len()));
        for b in f.iter_mut().skip(14) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(5) {
                *b = x as u8;
            }
        }
        h.send(f);
    }
}

#[test]
fn spoofed_sources_are_dropped() {
    let mut h = Harness::new(Config::default());
    let mut seg = vec![0u8; 20];
    let hdr = TcpHeader {
        src_port: 1,
        dst_port: 80,
        seq: 1,
        ack: 0,
        flags: SYN,
        window: 1,
        syn_opts: None,
    };
    tcpw::write_header(&mut seg, &hdr, gw_ip(), remote_ip());
    h.send(ipv4_frame(gw_ip(), remote_ip(), ip::PROTO_TCP, &seg));
    assert_eq!(h.gw.stats().drop_spoofed, 1);
    assert!(h.host.tcp.is_empty());
}

#[test]
fn flow_cap_per_guest() {
    let cfg = Config {
        max_flows_per_guest: 2,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    for port in [1u16, 2, 3] {
        let h2 = TcpHeader {
            src_port: 40000 + port,
            dst_port: 80,
            seq: 1,
            ack: 0,
            flags: SYN,
            window: 100,
            syn_opts: None,
        };
        let mut seg = vec![0u8; 20];
        tcpw::write_header(&mut seg, &h2, guest_ip(), remote_ip());
        h.send(ipv4_frame(guest_ip(), remote_ip(), ip::PROTO_TCP, &seg));
    }
    assert_eq!(h.host.tcp.len(), 2);
    assert_eq!(h.gw.stats().drop_flow_limit, 1);
}

#[test]
fn syn_flood_is_bounded() {
    let cfg = Config {
        max_pending_per_guest: 10,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    for port in 0..50u16 {
        let h2 = TcpHeader {
            src_port: 1000 + port,
            dst_port: 80,
            seq: 1,
            ack: 0,
            flags: SYN,
            window: 100,
            syn_opts: None,
        };
        let mut seg = vec![0u8; 20];
        tcpw::write_header(&mut seg, &h2, guest_ip(), remote_ip());
        h.send(ipv4_frame(guest_ip(), remote_ip(), ip::PROTO_TCP, &seg));
    }
    assert_eq!(h.host.tcp.len(), 10);
    assert_eq!(h.gw.stats().drop_syn_flood, 40);
}

#[test]
fn udp_round_trip_and_idle_expiry() {
    let mut h = Harness::new(Config::default());
    h.send(udp_frame(gw_ip(), 7, b"ping"));
    let (&id, (dst, sent, _)) = h.host.udp.iter().next().expect("udp socket");
    assert_eq!(*dst, "127.0.0.1:7".parse().expect("addr"));
    assert_eq!(sent, &vec![b"ping".to_vec()]);
    assert_eq!(id.proto, Proto::Udp);
    h.host
        .udp
        .get_mut(&id)
        .expect("udp")
        .2
        .push_back(b"pong".to_vec());
    h.event(Event::UdpReadable(id));
    let f = h.take_frames();
    let p = IpPacket::parse_v4(&f[0][14..]).expect("ip");
    assert_eq!(
        (p.src, p.dst),
        (gw_ip(), guest_ip()),
        "the reply comes from the address the guest used"
    );
    let d = UdpDatagram::parse(p.payload, p.src, p.dst).expect("udp checksum");
    assert_eq!((d.src_port, d.dst_port, d.payload), (7, 5555, &b"pong"[..]));
    h.advance(Duration::from_secs(121));
    assert!(h.host.udp.is_empty());
    assert_eq!(h.gw.stats().udp_flows_expired, 1);
}

#[test]
fn many_flows_demultiplex_by_hash() {
    // Ten thousand open flows; a segment for one of them reaches exactly that one.
    let cfg = Config {
        max_flows_per_guest: 20000,
        max_pending_per_guest: 20000,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    for i in 0..10000u32 {
        let hdr = TcpHeader {
            src_port: (10000 + i) as u16,
            dst_port: 80,
            seq: i,
            ack: 0,
            flags: SYN,
            window: 100,
            syn_opts: None,
        };
        let mut seg = vec![0u8; 20];
        tcpw::write_header(&mut seg, &hdr, guest_ip(), remote_ip());
        h.send(ipv4_frame(guest_ip(), remote_ip(), ip::PROTO_TCP, &seg));
    }
    assert_eq!(h.gw.flow_counts().0, 10000);
    assert_eq!(h.host.tcp.len(), 10000);
}

/// Makes the guest known to the gateway (as DHCP or any traffic would).
fn announce_guest(h: &mut Harness) {
    h.send(udp_frame(remote_ip(), 9, b"hello"));
    h.take_frames();
}

#[test]
fn tcp_forward_opens_to_guest_with_client_address() {
    let mut h = Harness::new(Config::default());
    announce_guest(&mut h);
    let guest: SocketAddr = "10.0.2.15:22".parse().expect("addr");
    let client: SocketAddr = "127.0.0.1:50000".parse().expect("addr");
    let id =
        h.gw.tcp_inbound(h.now, client, guest, &mut h.host)
            .expect("forwarded");
    h.host.tcp.insert(id, SimTcp::default());
    let syn = h.take_frames();
    assert_eq!(syn.len(), 1);
    let p = IpPacket::parse_v4(&syn[0][14..]).expect("ip");
    assert_eq!(
        (p.src, p.dst),
        (gw_ip(), guest_ip()),
        "a loopback client shows as the gateway"
    );
    let s = TcpSegment::parse(p.payload, p.src, p.dst).expect("tcp");
    assert_eq!(
        (s.flags, s.src_port, s.dst_port, s.wscale),
        (SYN, 50000, 22, Some(7))
    );
    // The guest answers SYN-ACK; we ACK; data flows both ways.
    let synack = {
        let hdr = TcpHeader {
            src_port: 22,
            dst_port: 50000,
            seq: 7000,
            ack: s.seq + 1,
            flags: SYN | ACK,
            window: 65535,
            syn_opts: Some((1460, Some(7))),
        };
        let mut seg = vec![0u8; hdr.len()];
        tcpw::write_header(&mut seg, &hdr, guest_ip(), gw_ip());
        ipv4_frame(guest_ip(), gw_ip(), ip::PROTO_TCP, &seg)
    };
    h.send(synack);
    let ack = h.take_tcp();
    assert_eq!(ack.len(), 1);
    assert_eq!((ack[0].flags, ack[0].ack), (ACK, 7001));
    h.host
        .tcp
        .get_mut(&id)
        .expect("sock")
        .rx
        .extend(b"SSH-2.0-client".iter().copied());
    h.event(Event::TcpReadable(id));
    let d = h.take_tcp();
    assert_eq!(d[0].payload, b"SSH-2.0-client");
    let data = {
        let hdr = TcpHeader {
            src_port: 22,
            dst_port: 50000,
            seq: 7001,
            ack: s.seq + 1 + 14,
            flags: ACK | PSH,
            window: 65535,
            syn_opts: None,
        };
        let mut seg = vec![0u8; 20 + 14];
        seg[20..].copy_from_slice(b"SSH-2.0-server");
        tcpw::write_header(&mut seg, &hdr, guest_ip(), gw_ip());
        ipv4_frame(guest_ip(), gw_ip(), ip::PROTO_TCP, &seg)
    };
    h.send(data);
    assert_eq!(h.host.tcp[&id].written, b"SSH-2.0-server");
    assert!(h.host.tcp[&id].rx.is_empty(), "acknowledged bytes consumed");
}

#[test]
fn tcp_forward_to_closed_guest_port_resets_client() {
    let mut h = Harness::new(Config::default());
    announce_guest(&mut h);
    let id =
        h.gw.tcp_inbound(
            h.now,
            "192.0.2.9:4000".parse().expect("addr"),
            "10.0.2.15:23".parse().expect("addr"),
            &mut h.host,
        )
        .expect("forwarded");
    h.host.tcp.insert(id, SimTcp::default());
    let syn = h.take_tcp();
    let rst = {
        let hdr = TcpHeader {
            src_port: 23,
            dst_port: 4000,
            seq: 0,
            ack: syn[0].seq + 1,
            flags: RST | ACK,
            window: 0,
            syn_opts: None,
        };
        let mut seg = vec![0u8; 20];
        tcpw::write_header(&mut seg, &hdr, guest_ip(), remote_ip_for("192.0.2.9"));
        ipv4_frame(guest_ip(), remote_ip_for("192.0.2.9"), ip::PROTO_TCP, &seg)
    };
    h.send(rst);
    assert_eq!(h.host.tcp[&id].closed, Some(true), "the client is reset");
    assert_eq!(h.gw.flow_counts().0, 0);
}

fn remote_ip_for(s: &str) -> IpAddr {
    s.parse().expect("addr")
}

#[test]
fn tcp_forward_to_a_silent_guest_resolves_it_by_arp_first() {
    let mut h = Harness::new(Config::default());
    let r = h.gw.tcp_inbound(
        h.now,
        "127.0.0.1:1".parse().expect("addr"),
        "10.0.2.100:22".parse().expect("addr"),
        &mut h.host,
    );
    let id = r.expect("accepted while the guest is resolved");
    h.host.tcp.insert(id, SimTcp::default());
    let out = h.take_frames();
    assert_eq!(out.len(), 1, "an ARP request, no SYN yet");
    let req = ArpRepr::parse(&out[0][14..]).expect("arp");
    assert_eq!(
        (req.op, req.target_ip, req.sender_ip),
        (
            arp::OP_REQUEST,
            Ipv4Addr::new(10, 0, 2, 100),
            Ipv4Addr::new(10, 0, 2, 2)
        )
    );
    // The guest answers: the SYN goes out to its MAC at once.
    let reply = ArpRepr {
        op: arp::OP_REPLY,
        sender_mac: GUEST_MAC,
        sender_ip: Ipv4Addr::new(10, 0, 2, 100),
        target_mac: GW_MAC,
        target_ip: Ipv4Addr::new(10, 0, 2, 2),
    };
    let mut f = vec![0u8; 42];
    ethernet::write_header(&mut f, GW_MAC, GUEST_MAC, ethernet::ETHERTYPE_ARP);
    reply.emit(&mut f[14..]);
    h.send(f);
    let out = h.take_frames();
    let p = IpPacket::parse_v4(&out[0][14..]).expect("ip");
    let s = TcpSegment::parse(p.payload, p.src, p.dst).expect("tcp");
    assert_eq!(
        (s.flags, s.dst_port, p.dst),
        (SYN, 22, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 100)))
    );
    // Addresses that are not guests are refused outright.
    assert!(h
        .gw
        .tcp_inbound(
            h.now,
            "127.0.0.1:2".parse().expect("addr"),
            "10.0.2.2:22".parse().expect("addr"),
            &mut h.host
        )
        .is_err());
}

#[test]
fn udp_forward_round_trip_keeps_client_address() {
    let mut h = Harness::new(Config::default());
    announce_guest(&mut h);
    let client: SocketAddr = "192.0.2.33:6000".parse().expect("addr");
    let id =
        h.gw.udp_inbound(
            h.now,
            3,
            client,
            "10.0.2.15:53".parse().expect("addr"),
            b"query",
            &mut h.host,
        )
        .expect("ok");
    h.drain();
    assert_eq!(h.host.udp_forwards, vec![(id, 3)]);
    let f = h.take_frames();
    let p = IpPacket::parse_v4(&f[0][14..]).expect("ip");
    assert_eq!(p.src, remote_ip_for("192.0.2.33"));
    let d = UdpDatagram::parse(p.payload, p.src, p.dst).expect("udp");
    assert_eq!(
        (d.src_port, d.dst_port, d.payload),
        (6000, 53, &b"query"[..])
    );
    // The guest's answer goes back through the same flow.
    let mut seg = vec![0u8; 8 + 6];
    seg[8..].copy_from_slice(b"answer");
    udpw::write(&mut seg, guest_ip(), remote_ip_for("192.0.2.33"), 53, 6000);
    h.send(ipv4_frame(
        guest_ip(),
        remote_ip_for("192.0.2.33"),
        ip::PROTO_UDP,
        &seg,
    ));
    assert_eq!(h.host.udp[&id].1, vec![b"answer".to_vec()]);
}

#[test]
fn restrict_blocks_outbound_but_not_dns_or_guestfwd() {
    let cfg = Config {
        restrict: true,
        guestfwds: vec![GuestFwd {
            addr: Ipv4Addr::new(10, 0, 2, 100),
            port: 8080,
            target: GuestFwdTarget::Connect("127.0.0.1:9999".parse().expect("addr")),
        }],
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    h.send(tcp_frame(remote_ip(), 80, ISN, 0, SYN, 65535, None, b""));
    assert!(h.host.tcp.is_empty(), "no outbound connect under restrict");
    assert_eq!(h.take_tcp()[0].flags & RST, RST, "refused at once");
    h.send(tcp_frame(gw_ip(), 22, ISN, 0, SYN, 65535, None, b""));
    assert!(h.host.tcp.is_empty(), "not even host loopback");
    h.take_frames();
    h.send(udp_frame(remote_ip(), 53, b"x"));
    assert!(h.host.udp.is_empty());
    let vip = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 100));
    h.send(tcp_frame(vip, 8080, ISN, 0, SYN, 65535, None, b""));
    let id = h.flow();
    assert_eq!(
        h.host.tcp[&id].dst,
        Some("127.0.0.1:9999".parse().expect("addr"))
    );
}

#[test]
fn guestfwd_command_and_arp() {
    let cfg = Config {
        guestfwds: vec![GuestFwd {
            addr: Ipv4Addr::new(10, 0, 2, 100),
            port: 7,
            target: GuestFwdTarget::Command("cat".into()),
        }],
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    let req = ArpRepr {
        op: arp::OP_REQUEST,
        sender_mac: GUEST_MAC,
        sender_ip: Ipv4Addr::new(10, 0, 2, 15),
        target_mac: [0; 6],
        target_ip: Ipv4Addr::new(10, 0, 2, 100),
    };
    let mut f = vec![0u8; 42];
    ethernet::write_header(
        &mut f,
        ethernet::BROADCAST,
        GUEST_MAC,
        ethernet::ETHERTYPE_ARP,
    );
    req.emit(&mut f[14..]);
    h.send(f);
    assert_eq!(h.take_frames().len(), 1, "the guestfwd address answers ARP");
    h.send(tcp_frame(
        IpAddr::V4(Ipv4Addr::new(10, 0, 2, 100)),
        7,
        ISN,
        0,
        SYN,
        65535,
        None,
        b"",
    ));
    assert_eq!(h.host.spawned, vec!["cat".to_string()]);
}

#[test]
fn batched_segments_are_written_together_before_the_shutdown() {
    let mut h = Harness::new(Config::default());
    let ours = establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    let frames = [
        tcp_frame(remote_ip(), 80, ISN + 1, ours, ACK, 65535, None, b"aaa"),
        tcp_frame(remote_ip(), 80, ISN + 4, ours, ACK, 65535, None, b"bbb"),
        tcp_frame(
            remote_ip(),
            80,
            ISN + 7,
            ours,
            ACK | FIN,
            65535,
            None,
            b"ccc",
        ),
    ];
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    // The socket takes 5 bytes now: the rest is held, and the shutdown waits for it.
    h.host.tcp.get_mut(&id).expect("sock").send_room = Some(5);
    h.gw.handle_batch(h.now, FrameBatch::new(&refs), &mut h.host);
    h.drain();
    h.end_batch();
    assert_eq!(h.host.tcp[&id].written, b"aaabb");
    assert!(
        !h.host.tcp[&id].shut_wr,
        "no shutdown before all bytes are written"
    );
    let acks = h.take_tcp();
    assert_eq!(acks.len(), 1, "one ACK for the batch");
    assert_eq!(acks[0].ack, ISN + 11);
    h.host.tcp.get_mut(&id).expect("sock").send_room = None;
    h.event(Event::TcpWritable(id));
    assert_eq!(h.host.tcp[&id].written, b"aaabbbccc");
    assert!(h.host.tcp[&id].shut_wr);
}

#[test]
fn congestion_pauses_host_to_guest_until_the_link_is_ready() {
    let mut h = Harness::new(Config::default());
    establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    h.host
        .tcp
        .get_mut(&id)
        .expect("sock")
        .rx
        .extend(vec![3u8; 200 * 1460]);
    h.host.congest_after = Some(4);
    h.event(Event::TcpReadable(id));
    let first = h.take_tcp();
    assert!(
        first.len() < 200,
        "stops when the link says so ({} frames)",
        first.len()
    );
    // More readiness or ACK-less wakeups send nothing while paused.
    h.event(Event::TcpReadable(id));
    assert!(h.take_frames().is_empty());
    h.host.congest_after = None;
    h.event(Event::LinkReady);
    let rest = h.take_tcp();
    let total: usize = first
        .iter()
        .chain(rest.iter())
        .map(|s| s.payload.len())
        .sum();
    assert_eq!(
        total,
        200 * 1460,
        "everything arrives, nothing dropped or repeated"
    );
    assert_eq!(h.gw.stats().tcp_retransmits, 0);
}

#[test]
fn acks_of_one_batch_make_one_consume_and_one_read() {
    let mut h = Harness::new(Config::default());
    let ours = establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    h.host
        .tcp
        .get_mut(&id)
        .expect("sock")
        .rx
        .extend(vec![9u8; 8 * 1460]);
    h.event(Event::TcpReadable(id));
    assert_eq!(h.take_tcp().len(), 8);
    let (c0, p0) = (h.host.consumes, h.host.peeks);
    let acks: Vec<Vec<u8>> = (1..=4u32)
        .map(|k| {
            tcp_frame(
                remote_ip(),
                80,
                ISN + 1,
                ours + k * 2 * 1460,
                ACK,
                65535,
                None,
                b"",
            )
        })
        .collect();
    let refs: Vec<&[u8]> = acks.iter().map(|f| f.as_slice()).collect();
    h.gw.handle_batch(h.now, FrameBatch::new(&refs), &mut h.host);
    h.drain();
    assert_eq!(h.host.consumes - c0, 1, "four ACKs, one consume");
    assert!(h.host.tcp[&id].rx.is_empty());
    // The socket had already said it was empty: no read until it signals readiness again.
    assert_eq!(h.host.peeks - p0, 0);
    // Guest data segments do not probe the host socket either.
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1,
        ours + 8 * 1460,
        ACK,
        65535,
        None,
        b"x",
    ));
    assert_eq!(h.host.peeks - p0, 0);
}

#[test]
fn fast_retransmit_after_fin_resends_the_data_before_the_fin() {
    // Regression: frames to the guest were lost after the host closed; a fast retransmit must not
    // send the FIN in place of the missing data.
    let mut h = Harness::new(Config::default());
    let ours = establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    {
        let sock = h.host.tcp.get_mut(&id).expect("sock");
        sock.rx.extend(vec![5u8; 3000]);
        sock.rx_eof = true;
    }
    h.event(Event::TcpReadable(id));
    let first = h.take_tcp();
    assert_eq!(
        first.last().map(|s| (s.flags & FIN, s.seq)),
        Some((FIN, ours + 3000))
    );
    // The guest got only the first segment: three duplicate ACKs for ours + 1460.
    for _ in 0..4 {
        h.send(tcp_frame(
            remote_ip(),
            80,
            ISN + 1,
            ours + 1460,
            ACK,
            65535,
            None,
            b"",
        ));
    }
    let again = h.take_tcp();
    let data: usize = again.iter().map(|s| s.payload.len()).sum();
    assert_eq!(
        again.first().map(|s| (s.seq, s.flags & FIN)),
        Some((ours + 1460, 0)),
        "data first: {again:?}"
    );
    assert_eq!(data, 3000 - 1460);
    let fin = again
        .iter()
        .find(|s| s.flags & FIN != 0)
        .expect("FIN resent after the data");
    assert_eq!(fin.seq, ours + 3000);
    // Everything acknowledged (data and FIN), the guest closes too: the flow ends cleanly.
    h.send(tcp_frame(
        remote_ip(),
        80,
        ISN + 1,
        ours + 3001,
        ACK | FIN,
        65535,
        None,
        b"",
    ));
    assert_eq!(h.gw.flow_counts().0, 0);
    assert_eq!(h.host.tcp[&id].closed, Some(false));
}

#[test]
fn batched_tail_is_written_when_the_host_closed_first() {
    // Regression: the host half-closed and its FIN was acknowledged; the guest's last data and FIN
    // arrived in one batch. The flow must not be freed before the batch's writev.
    let mut h = Harness::new(Config::default());
    let ours = establish(&mut h, remote_ip(), 80);
    let id = h.flow();
    h.host.tcp.get_mut(&id).expect("sock").rx_eof = true;
    h.event(Event::TcpReadable(id));
    let fin = h.take_tcp();
    assert_eq!(fin.last().map(|s| s.flags & FIN), Some(FIN));
    let frames = [
        tcp_frame(
            remote_ip(),
            80,
            ISN + 1,
            ours + 1,
            ACK,
            65535,
            None,
            b"tail-1",
        ),
        tcp_frame(
            remote_ip(),
            80,
            ISN + 7,
            ours + 1,
            ACK | FIN,
            65535,
            None,
            b"tail-2",
        ),
    ];
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    h.gw.handle_batch(h.now, FrameBatch::new(&refs), &mut h.host);
    h.drain();
    h.end_batch();
    assert_eq!(h.host.tcp[&id].written, b"tail-1tail-2");
    assert!(h.host.tcp[&id].shut_wr);
    assert_eq!(
        h.host.tcp[&id].closed,
        Some(false),
        "closed after the write, not before"
    );
    assert_eq!(h.gw.flow_counts().0, 0);
}

// ---- Budgets: fds, neighbours, destinations, DNS, guestfwd commands (issue 9) ----

fn mac_n(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x52, 0x54, 0x01, b[1], b[2], b[3]]
}

fn frame_from(mac: [u8; 6], src: IpAddr, dst: IpAddr, proto: u8, transport: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + transport.len()];
    ethernet::write_header(&mut f, GW_MAC, mac, ethernet::ETHERTYPE_IPV4);
    ip::write_header(&mut f[14..], src, dst, proto, transport.len());
    f[34..].copy_from_slice(transport);
    f
}

fn udp_from(
    mac: [u8; 6],
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    data: &[u8],
) -> Vec<u8> {
    let mut seg = vec![0u8; 8 + data.len()];
    seg[8..].copy_from_slice(data);
    udpw::write(&mut seg, src, dst, sport, dport);
    frame_from(mac, src, dst, ip::PROTO_UDP, &seg)
}

fn syn_from(mac: [u8; 6], src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Vec<u8> {
    let h2 = TcpHeader {
        src_port: sport,
        dst_port: dport,
        seq: 1,
        ack: 0,
        flags: SYN,
        window: 100,
        syn_opts: None,
    };
    let mut seg = vec![0u8; 20];
    tcpw::write_header(&mut seg, &h2, src, dst);
    frame_from(mac, src, dst, ip::PROTO_TCP, &seg)
}

fn arp_from(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let req = ArpRepr {
        op: arp::OP_REQUEST,
        sender_mac: mac,
        sender_ip: sender,
        target_mac: [0; 6],
        target_ip: target,
    };
    let mut f = vec![0u8; 42];
    ethernet::write_header(&mut f, ethernet::BROADCAST, mac, ethernet::ETHERTYPE_ARP);
    req.emit(&mut f[14..]);
    f
}

fn ip4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Remote ports of the open UDP host sockets, sorted.
fn udp_ports(h: &Harness) -> Vec<u16> {
    let mut v: Vec<u16> = h.host.udp.values().map(|(d, _, _)| d.port()).collect();
    v.sort_unstable();
    v
}

#[test]
fn fd_budget_evicts_the_least_recently_active_idle_udp_flow() {
    let cfg = Config {
        max_flows_total: 3,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    let g = guest_ip();
    for port in [1u16, 2, 3] {
        h.send(udp_from(GUEST_MAC, g, 5000, remote_ip(), port, b"x"));
        h.advance(Duration::from_secs(2));
    }
    assert_eq!(udp_ports(&h), vec![1, 2, 3]);
    // Port 1 is used again: port 2 is now the least recently active.
    h.send(udp_from(GUEST_MAC, g, 5000, remote_ip(), 1, b"again"));
    h.advance(Duration::from_secs(2));
    h.send(udp_from(GUEST_MAC, g, 5000, remote_ip(), 4, b"x"));
    assert_eq!(udp_ports(&h), vec![1, 3, 4], "port 2's flow was evicted");
    assert_eq!(h.gw.stats().flows_evicted, 1);
    h.send(udp_from(GUEST_MAC, g, 5000, remote_ip(), 5, b"x"));
    assert_eq!(udp_ports(&h), vec![1, 4, 5], "then port 3's");
    // A flow active less than a second ago is never evicted: refused instead.
    h.send(udp_from(GUEST_MAC, g, 5000, remote_ip(), 1, b"x"));
    h.send(udp_from(GUEST_MAC, g, 5000, remote_ip(), 4, b"x"));
    h.send(udp_from(GUEST_MAC, g, 5000, remote_ip(), 5, b"x"));
    h.send(udp_from(GUEST_MAC, g, 5000, remote_ip(), 6, b"x"));
    assert_eq!(udp_ports(&h), vec![1, 4, 5]);
    assert_eq!(h.gw.stats().flows_evicted, 2);
    assert_eq!(h.gw.stats().flows_refused_budget, 1);
    assert_eq!(h.gw.flow_budget().total(), 3);
}

#[test]
fn flows_are_charged_to_the_ingress_port_whatever_addresses_it_uses() {
    // One port sending from many made-up addresses and MACs gets one share of the budget, not one
    // per address: the guest on another port still has its share (the soak test's SYN flood from 50
    // invented sources exhausted every fd before this).
    let cfg = Config {
        max_flows_total: 8,
        max_flows_per_guest: 4,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    for n in 0..12u8 {
        let ip = ip4(10, 0, 2, 100 + n);
        h.send_from(
            1,
            udp_from(
                mac_n(100 + u32::from(n)),
                ip,
                5000,
                remote_ip(),
                1000 + u16::from(n),
                b"x",
            ),
        );
    }
    assert_eq!(h.gw.flow_budget().of(netstack::flow::Owner::Port(1)), 4);
    assert_eq!(h.gw.stats().drop_flow_limit, 8);
    let victim = ip4(10, 0, 2, 15);
    for p in 0..4u16 {
        h.send_from(
            2,
            udp_from(mac_n(1), victim, 6000, remote_ip(), 2000 + p, b"v"),
        );
    }
    assert_eq!(h.gw.flow_budget().of(netstack::flow::Owner::Port(2)), 4);
    assert_eq!(h.gw.flow_budget().total(), 8);
    // Without a port (host-initiated flows, callers that name none) the address is the owner.
    h.send(udp_from(mac_n(1), victim, 6001, remote_ip(), 3000, b"v"));
    assert_eq!(h.gw.flow_budget().of(victim), 0, "budget full: refused");
    // Expiry gives back the port's share.
    h.advance(Duration::from_secs(600));
    assert_eq!(h.gw.flow_budget().total(), 0);
    assert_eq!(h.gw.flow_budget().of(netstack::flow::Owner::Port(1)), 0);
}

#[test]
fn fd_budget_refuses_the_top_holder_rather_than_evicting_others() {
    let cfg = Config {
        max_flows_total: 4,
        max_flows_per_guest: 4,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    let (a, b) = (ip4(10, 0, 2, 15), ip4(10, 0, 2, 16));
    let (ma, mb) = (mac_n(1), mac_n(2));
    h.send(udp_from(mb, b, 7000, remote_ip(), 100, b"b1"));
    h.advance(Duration::from_secs(1));
    for port in [1u16, 2, 3] {
        h.send(udp_from(ma, a, 5000, remote_ip(), port, b"a"));
    }
    h.advance(Duration::from_secs(2));
    assert!(h.gw.flow_budget().exhausted());
    // B's flow is the oldest, but A (which holds the most) may not push it out.
    h.send(udp_from(ma, a, 5000, remote_ip(), 4, b"a"));
    assert_eq!(h.gw.stats().flows_refused_budget, 1);
    assert_eq!(
        udp_ports(&h),
        vec![1, 2, 3, 100],
        "B's flow survives A's flood"
    );
    // B (holding less) gets room: A's least recently active flow goes.
    h.send(udp_from(mb, b, 7000, remote_ip(), 100, b"b1 again"));
    h.send(udp_from(mb, b, 7000, remote_ip(), 101, b"b2"));
    assert_eq!(h.gw.stats().flows_evicted, 1);
    assert_eq!(udp_ports(&h), vec![2, 3, 100, 101]);
    // Now A and B hold two each: A may recycle its own oldest flow, never B's.
    h.send(udp_from(ma, a, 5000, remote_ip(), 5, b"a"));
    assert_eq!(h.gw.stats().flows_evicted, 2);
    assert_eq!(udp_ports(&h), vec![3, 5, 100, 101]);
    assert_eq!((h.gw.flow_budget().of(a), h.gw.flow_budget().of(b)), (2, 2));
}

#[test]
fn tcp_flows_count_against_the_budget_but_are_never_evicted() {
    let cfg = Config {
        max_flows_total: 1,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    h.send(syn_from(GUEST_MAC, guest_ip(), 40000, remote_ip(), 80));
    assert_eq!(h.host.tcp.len(), 1);
    h.advance(Duration::from_secs(10));
    h.take_frames();
    h.send(udp_from(GUEST_MAC, guest_ip(), 5000, remote_ip(), 53, b"q"));
    assert!(h.host.udp.is_empty());
    assert_eq!(h.gw.stats().flows_refused_budget, 1);
    // A second SYN is refused with RST.
    h.send(syn_from(GUEST_MAC, guest_ip(), 40001, remote_ip(), 80));
    let out = h.take_tcp();
    assert_eq!(out.len(), 1);
    assert_ne!(out[0].flags & RST, 0);
    assert_eq!(h.gw.flow_counts(), (1, 0, 0));
}

#[test]
fn out_of_fds_resets_tcp_and_drops_udp_without_leaking_flows() {
    let mut h = Harness::new(Config::default());
    h.host.fail_open = Some(HostError::NoBuffers);
    h.send(syn_from(GUEST_MAC, guest_ip(), 40000, remote_ip(), 80));
    let out = h.take_tcp();
    assert_eq!(out.len(), 1, "the guest hears at once");
    assert_eq!(out[0].flags, RST | ACK);
    h.send(udp_from(GUEST_MAC, guest_ip(), 5000, remote_ip(), 53, b"q"));
    h.host.fail_open = Some(HostError::NoBuffers);
    h.send(udp_from(GUEST_MAC, guest_ip(), 5000, remote_ip(), 54, b"q"));
    assert_eq!(h.gw.stats().flows_refused_fd, 3);
    assert_eq!(h.gw.flow_counts(), (0, 0, 0));
    assert_eq!(
        h.gw.flow_budget().total(),
        0,
        "nothing leaked from the budget"
    );
    assert_eq!(
        h.gw.stats().tcp_unreachable,
        0,
        "EMFILE is not an ICMP error"
    );
    // Once fds are back, the same flows open.
    h.host.fail_open = None;
    h.send(udp_from(GUEST_MAC, guest_ip(), 5000, remote_ip(), 53, b"q"));
    h.send(syn_from(GUEST_MAC, guest_ip(), 40000, remote_ip(), 80));
    assert_eq!(h.gw.flow_counts(), (1, 1, 0));
}

/// A /8 LAN where a guest could claim millions of addresses.
fn big_lan() -> Config {
    Config {
        net: netstack::config::Ipv4Net::parse("10.0.0.0/8").expect("net"),
        gateway: Ipv4Addr::new(10, 0, 0, 2),
        dns: Ipv4Addr::new(10, 0, 0, 3),
        dhcp_start: Ipv4Addr::new(10, 0, 0, 15),
        ..Config::default()
    }
}

#[test]
fn neighbour_table_is_bounded_on_a_large_lan_and_ages_out() {
    let mut h = Harness::new(big_lan());
    let gw = Ipv4Addr::new(10, 0, 0, 2);
    // 100,000 source addresses, each from its own MAC.
    for i in 0..100_000u32 {
        let src = Ipv4Addr::from(0x0a01_0000 + i);
        h.gw.handle_frame(h.now, &arp_from(mac_n(i), src, gw), &mut h.host);
        if i % 4096 == 0 {
            h.host.frames.clear();
        }
    }
    h.host.frames.clear();
    assert_eq!(h.gw.neighbours(), 4096, "capped at neigh_max");
    assert_eq!(h.gw.stats().neigh_full, 100_000 - 4096);
    // One MAC from many addresses gets at most its share.
    let mut h2 = Harness::new(big_lan());
    for i in 0..1000u32 {
        let src = Ipv4Addr::from(0x0a02_0000 + i);
        h2.gw
            .handle_frame(h2.now, &arp_from(GUEST_MAC, src, gw), &mut h2.host);
    }
    assert_eq!(h2.gw.neighbours(), 64, "capped at neigh_max_per_mac");

    // Aging: one address keeps talking, the rest go quiet.
    let keep = ip4(10, 1, 0, 7);
    assert_eq!(h.gw.neighbour(keep), Some(mac_n(7)));
    for _ in 0..35 {
        h.advance(Duration::from_secs(10));
        h.gw.handle_frame(
            h.now,
            &arp_from(mac_n(7), Ipv4Addr::new(10, 1, 0, 7), gw),
            &mut h.host,
        );
        h.host.frames.clear();
    }
    assert_eq!(h.gw.neighbours(), 1, "idle addresses forgotten");
    assert_eq!(
        h.gw.neighbour(keep),
        Some(mac_n(7)),
        "traffic keeps its entry"
    );
    assert_eq!(h.gw.stats().neigh_expired, 4095);
    // And there is room again.
    let newcomer = Ipv4Addr::new(10, 200, 0, 1);
    h.gw.handle_frame(h.now, &arp_from(mac_n(999_999), newcomer, gw), &mut h.host);
    assert_eq!(h.gw.neighbour(IpAddr::V4(newcomer)), Some(mac_n(999_999)));
}

#[test]
fn full_neighbour_table_still_serves_leased_guests() {
    use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode};
    use dhcproto::Encodable;
    let cfg = Config {
        neigh_max: 8,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    let gw = Ipv4Addr::new(10, 0, 2, 2);
    // A flood fills the table from addresses outside the DHCP pool.
    for i in 0..8u32 {
        let src = Ipv4Addr::new(10, 0, 2, 200 + i as u8);
        h.send(arp_from(mac_n(i), src, gw));
    }
    assert_eq!(h.gw.neighbours(), 8);
    h.take_frames();
    // A new guest leases an address by DHCP and opens a flow: served via its lease.
    let lessee = mac_n(77);
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_htype(HType::Eth)
        .set_xid(0x4242)
        .set_chaddr(&lessee);
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let bytes = m.to_vec().expect("encode");
    let mut f = udp_from(
        lessee,
        ip4(0, 0, 0, 0),
        68,
        ip4(255, 255, 255, 255),
        67,
        &bytes,
    );
    f[..6].copy_from_slice(&ethernet::BROADCAST);
    h.send(f);
    let offer = h.take_frames();
    assert_eq!(offer.len(), 1, "an offer");
    let leased = ip4(10, 0, 2, 15);
    assert_eq!(
        h.gw.dhcp().mac_for_ip(Ipv4Addr::new(10, 0, 2, 15)),
        Some(lessee)
    );
    h.send(syn_from(lessee, leased, 40000, remote_ip(), 80));
    assert_eq!(
        h.host.tcp.len(),
        1,
        "the leased guest's SYN became a connect"
    );
    // Another MAC may not take over the leased address (neither by IP nor by ARP).
    let spoofs = h.gw.stats().drop_spoofed;
    h.send(syn_from(mac_n(5), leased, 40001, remote_ip(), 80));
    h.send(arp_from(mac_n(5), Ipv4Addr::new(10, 0, 2, 15), gw));
    assert_eq!(h.host.tcp.len(), 1);
    assert_eq!(h.gw.stats().drop_spoofed, spoofs + 2);
    assert!(h.take_frames().is_empty(), "no ARP answer for the spoofer");
    assert_ne!(h.gw.neighbour(leased), Some(mac_n(5)));
}

#[test]
fn dhcp_inform_naming_another_guests_lease_is_ignored() {
    use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode};
    use dhcproto::Encodable;
    let mut h = Harness::new(Config::default());
    let dhcp = |mac: [u8; 6], ty: MessageType, ciaddr: Ipv4Addr| {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_xid(0x77)
            .set_ciaddr(ciaddr)
            .set_chaddr(&mac);
        m.opts_mut().insert(DhcpOption::MessageType(ty));
        let bytes = m.to_vec().expect("encode");
        let mut f = udp_from(
            mac,
            ip4(0, 0, 0, 0),
            68,
            ip4(255, 255, 255, 255),
            67,
            &bytes,
        );
        f[..6].copy_from_slice(&ethernet::BROADCAST);
        f
    };
    let (victim, attacker) = (mac_n(1), mac_n(2));
    h.send(dhcp(victim, MessageType::Discover, Ipv4Addr::UNSPECIFIED));
    h.take_frames();
    let leased = Ipv4Addr::new(10, 0, 2, 15);
    assert_eq!(h.gw.dhcp().mac_for_ip(leased), Some(victim));
    // The attacker's INFORM names the victim's address: no reply, nothing learned, counted.
    let spoofs = h.gw.stats().drop_spoofed;
    h.send(dhcp(attacker, MessageType::Inform, leased));
    assert!(h.take_frames().is_empty(), "no ACK to the attacker");
    assert_ne!(h.gw.neighbour(IpAddr::V4(leased)), Some(attacker));
    assert_eq!(h.gw.stats().drop_spoofed, spoofs + 1);
    // An INFORM for an address nobody leased is answered as before.
    h.send(dhcp(
        attacker,
        MessageType::Inform,
        Ipv4Addr::new(10, 0, 2, 99),
    ));
    assert_eq!(h.take_frames().len(), 1, "an ACK with configuration only");
}

#[test]
fn destinations_that_are_not_the_outside_world_never_become_host_sockets() {
    let mut h = Harness::new(Config::default());
    let g = guest_ip();
    for (dst, port) in [
        (ip4(127, 0, 0, 1), 22u16),
        (ip4(0, 0, 0, 0), 80),
        (ip4(255, 255, 255, 255), 9),
        (ip4(10, 0, 2, 255), 9),
        (ip4(224, 0, 0, 251), 5353),
        (ip4(10, 0, 2, 16), 22),
        (ip4(240, 1, 2, 3), 80),
    ] {
        h.send(udp_from(GUEST_MAC, g, 5000, dst, port, b"x"));
        h.send(syn_from(GUEST_MAC, g, 40000, dst, port));
    }
    assert!(h.host.udp.is_empty() && h.host.tcp.is_empty());
    assert_eq!(h.gw.stats().drop_bad_dest, 14);
    // The gateway address is the host's loopback; with host loopback off, nothing.
    h.send(udp_from(GUEST_MAC, g, 5000, gw_ip(), 9, b"x"));
    assert_eq!(udp_ports(&h), vec![9]);
    let mut h = Harness::new(Config {
        host_loopback: false,
        ..Config::default()
    });
    h.send(udp_from(GUEST_MAC, g, 5000, gw_ip(), 9, b"x"));
    h.send(syn_from(GUEST_MAC, g, 40000, gw_ip(), 22));
    assert!(h.host.udp.is_empty() && h.host.tcp.is_empty());
}

fn dns_query(id: u16) -> Vec<u8> {
    let mut q = vec![0u8; 12];
    q[..2].copy_from_slice(&id.to_be_bytes());
    q[2] = 0x01; // RD
    q[5] = 1; // one question
    q.extend_from_slice(b"\x07example\x03org\x00\x00\x01\x00\x01");
    q
}

#[test]
fn dns_pending_queries_are_capped_per_guest() {
    let cfg = Config {
        dns_upstreams: vec!["192.0.2.53:53".parse().expect("addr")],
        dns_max_pending_per_guest: 5,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    let dns = ip4(10, 0, 2, 3);
    for id in 0..20u16 {
        h.send(udp_from(
            GUEST_MAC,
            guest_ip(),
            6000 + id,
            dns,
            53,
            &dns_query(id),
        ));
    }
    assert_eq!(h.host.dns_sent, 5);
    assert_eq!(h.gw.stats().dns_drop_pending, 15);
    assert_eq!(h.gw.dns_pending(), 5);
    // Another guest still gets its queries through.
    h.send(udp_from(
        mac_n(2),
        ip4(10, 0, 2, 16),
        6000,
        dns,
        53,
        &dns_query(1),
    ));
    assert_eq!(h.host.dns_sent, 6);
    // Once they time out (SERVFAIL), the first guest may ask again.
    h.advance(Duration::from_secs(6));
    assert_eq!(h.gw.dns_pending(), 0);
    h.send(udp_from(
        GUEST_MAC,
        guest_ip(),
        7000,
        dns,
        53,
        &dns_query(99),
    ));
    assert_eq!(h.host.dns_sent, 7);
}

#[test]
fn guestfwd_commands_are_capped_per_guest() {
    let cfg = Config {
        guestfwds: vec![GuestFwd {
            addr: Ipv4Addr::new(10, 0, 2, 100),
            port: 7,
            target: GuestFwdTarget::Command("cat".into()),
        }],
        max_cmd_per_guest: 2,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    let svc = ip4(10, 0, 2, 100);
    for sport in [1000u16, 1001, 1002] {
        h.send(syn_from(GUEST_MAC, guest_ip(), sport, svc, 7));
    }
    assert_eq!(h.host.spawned.len(), 2);
    assert_eq!(h.gw.stats().guestfwd_cmd_refused, 1);
    let out = h.take_tcp();
    assert!(out.iter().any(|s| s.flags & RST != 0), "the third is reset");
    // Another guest has its own share.
    h.send(syn_from(mac_n(2), ip4(10, 0, 2, 16), 1000, svc, 7));
    assert_eq!(h.host.spawned.len(), 3);
    // When one of the first guest's commands ends, it may start another.
    let first = *h
        .host
        .tcp
        .keys()
        .min_by_key(|id| id.idx)
        .expect("a command flow");
    h.event(Event::TcpConnected {
        id: first,
        result: Err(HostError::Refused),
    });
    h.send(syn_from(GUEST_MAC, guest_ip(), 1003, svc, 7));
    assert_eq!(h.host.spawned.len(), 4);
}

#[test]
fn ipv4_fragments_are_dropped_and_counted() {
    let mut f = udp_frame(remote_ip(), 9, b"frag");
    // More-fragments flag; fix the header checksum.
    f[14 + 6] = 0x20;
    f[14 + 10] = 0;
    f[14 + 11] = 0;
    let c = netstack::wire::checksum::checksum(&f[14..34]);
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    let mut h = Harness::new(Config::default());
    h.send(f);
    assert_eq!(h.gw.stats().drop_fragment, 1);
    assert!(h.host.udp.is_empty());
}

// ---- Seeded randomness (issue 10) ----

/// What a gateway with `seed` emits for a fixed script of events: frames to the guest, DNS queries
/// sent upstream and the actions it asked of the host. The script opens three TCP connections
/// (three ISNs; the second is refused), sends three DNS queries (three upstream ids), a UDP
/// datagram, host data and EOF on the first connection, and lets time pass.
type Run = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Action>);

fn seeded_run(seed: u64) -> Run {
    let mut h = Harness::with_seed(
        Config {
            dns_upstreams: vec!["192.0.2.53:53".parse().expect("addr")],
            ..Config::default()
        },
        seed,
    );
    let mut frames = Vec::new();
    let mut seen = Vec::new();
    for i in 0..3u16 {
        h.send(syn_from(GUEST_MAC, guest_ip(), 41000 + i, remote_ip(), 80));
        let id = *h
            .host
            .tcp
            .keys()
            .find(|id| !seen.contains(*id))
            .expect("a new host socket");
        seen.push(id);
        let result = if i == 1 {
            Err(HostError::Refused)
        } else {
            Ok(())
        };
        h.event(Event::TcpConnected { id, result });
        h.send(udp_from(
            GUEST_MAC,
            guest_ip(),
            6000 + i,
            ip4(10, 0, 2, 3),
            53,
            &dns_query(i),
        ));
        frames.extend(h.take_frames());
    }
    h.send(udp_from(GUEST_MAC, guest_ip(), 7000, remote_ip(), 9, b"x"));
    let first = seen[0];
    let s = h.host.tcp.get_mut(&first).expect("first flow");
    s.rx.extend(b"hello from the host");
    s.rx_eof = true;
    h.event(Event::TcpReadable(first));
    h.end_batch();
    h.advance(Duration::from_secs(10));
    frames.extend(h.take_frames());
    let actions = std::mem::take(&mut h.host.actions);
    (frames, std::mem::take(&mut h.host.dns_queries), actions)
}

/// The gateway's ISNs in `frames` (the sequence numbers of its SYN-ACKs).
fn synack_isns(frames: &[Vec<u8>]) -> Vec<u32> {
    frames
        .iter()
        .filter_map(|f| {
            let e = Frame::parse(f).ok()?;
            let p = IpPacket::parse_v4(e.payload()).ok()?;
            let s = TcpSegment::parse(p.payload, p.src, p.dst).ok()?;
            (s.flags == SYN | ACK).then_some(s.seq)
        })
        .collect()
}

fn query_ids(queries: &[Vec<u8>]) -> Vec<u16> {
    queries
        .iter()
        .map(|q| u16::from_be_bytes([q[0], q[1]]))
        .collect()
}

#[test]
fn same_seed_same_events_give_identical_actions_and_frames() {
    let (frames_a, dns_a, actions_a) = seeded_run(0x5eed);
    let (frames_b, dns_b, actions_b) = seeded_run(0x5eed);
    let mut isns = synack_isns(&frames_a);
    isns.sort_unstable();
    isns.dedup();
    assert_eq!(isns.len(), 2, "two connections SYN-ACKed, one refused");
    assert_eq!(dns_a.len(), 3, "three queries upstream");
    assert!(
        actions_a.len() >= 4,
        "three connects and a close at least: {actions_a:?}"
    );
    assert!(actions_a.contains(&Action::TcpClose {
        id: match actions_a[1] {
            Action::TcpConnect { id, .. } => id,
            ref a => panic!("the second action is the second connect: {a:?}"),
        },
        reset: false
    }));
    assert_eq!(frames_a, frames_b, "same seed, same frames to the guest");
    assert_eq!(dns_a, dns_b, "same seed, same upstream queries");
    assert_eq!(actions_a, actions_b, "same seed, same actions");
}

#[test]
fn different_seeds_give_different_isns_and_dns_ids() {
    let (frames_a, dns_a, _) = seeded_run(1);
    let (frames_b, dns_b, _) = seeded_run(2);
    let (isn_a, isn_b) = (synack_isns(&frames_a), synack_isns(&frames_b));
    // Two SYN-ACKed connections, their SYN-ACKs retransmitted once as time passes.
    assert_eq!((isn_a.len(), isn_b.len()), (4, 4));
    assert_ne!(isn_a, isn_b);
    let (ids_a, ids_b) = (query_ids(&dns_a), query_ids(&dns_b));
    assert_eq!((ids_a.len(), ids_b.len()), (3, 3));
    assert_ne!(ids_a, ids_b);
    // The guest's own ids (0, 1, 2) are not what goes upstream.
    assert_ne!(ids_a, vec![0, 1, 2]);
}

// ---- IPv6 forwards (host -> guest over IPv6, and across families) ----

use netstack::wire::icmpv6::{Icmpv6Repr, NdpRepr};
use netstack::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use std::net::Ipv6Addr;

fn guest6() -> Ipv6Addr {
    "fec0::5054:ff:fe12:3456".parse().expect("v6")
}
fn router6() -> IpAddr {
    "fec0::2".parse().expect("v6")
}

/// An IPv6 frame from the guest's MAC.
fn ipv6_frame(src: Ipv6Addr, dst: Ipv6Addr, nh: u8, hop: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    ethernet::write_header(&mut f, GW_MAC, GUEST_MAC, ethernet::ETHERTYPE_IPV6);
    f.extend_from_slice(&Ipv6Repr::new(src, dst, nh, 0, hop).packet(payload));
    f
}

fn udp6_frame(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0u8; 8 + payload.len()];
    seg[8..].copy_from_slice(payload);
    udpw::write(&mut seg, IpAddr::V6(src), IpAddr::V6(dst), sport, dport);
    ipv6_frame(src, dst, ip::PROTO_UDP, 64, &seg)
}

fn tcp6_frame(src: Ipv6Addr, dst: IpAddr, h: &TcpHeader, payload: &[u8]) -> Vec<u8> {
    let IpAddr::V6(dst) = dst else {
        panic!("v6 destination")
    };
    let mut seg = vec![0u8; h.len() + payload.len()];
    seg[h.len()..].copy_from_slice(payload);
    tcpw::write_header(&mut seg, h, IpAddr::V6(src), IpAddr::V6(dst));
    ipv6_frame(src, dst, ip::PROTO_TCP, 64, &seg)
}

/// (source, destination, upper-layer protocol, upper-layer data) of an IPv6 frame to the guest.
fn parse6(f: &[u8]) -> (IpAddr, IpAddr, u8, Vec<u8>) {
    let e = Frame::parse(f).expect("eth");
    assert_eq!(e.ethertype(), ethernet::ETHERTYPE_IPV6);
    let p = Ipv6Packet::parse(e.payload()).expect("v6");
    let u = p.upper_layer().expect("upper");
    (
        IpAddr::V6(p.src()),
        IpAddr::V6(p.dst()),
        u.proto,
        u.data.to_vec(),
    )
}

/// The guest sends one IPv6 datagram out (as SLAAC hosts do soon after coming up): the gateway
/// learns its address.
fn announce_guest6(h: &mut Harness) {
    let out: Ipv6Addr = "2001:db8::1".parse().expect("v6");
    h.send(udp6_frame(guest6(), out, 5555, 9, b"hello"));
    h.take_frames();
}

#[test]
fn tcp_forward_over_ipv6_keeps_the_client_address_and_loopback_shows_as_the_router() {
    let mut h = Harness::new(Config::default());
    announce_guest6(&mut h);
    let guest = SocketAddr::new(IpAddr::V6(guest6()), 22);
    let mut last = None;
    for (client, shown) in [
        ("[::1]:50000", router6()),
        ("127.0.0.1:50001", router6()),
        ("[::ffff:127.0.0.1]:50002", router6()),
        ("192.0.2.9:50003", router6()),
        ("[fe80::1]:50005", router6()),
        ("[2001:db8::77]:50004", "2001:db8::77".parse().expect("v6")),
    ] {
        let client: SocketAddr = client.parse().expect("addr");
        let id =
            h.gw.tcp_inbound(h.now, client, guest, &mut h.host)
                .expect("forwarded");
        h.host.tcp.insert(id, SimTcp::default());
        let f = h.take_frames();
        assert_eq!(f.len(), 1, "{client}: one SYN");
        assert_eq!(Frame::parse(&f[0]).expect("eth").dst(), GUEST_MAC);
        let (src, dst, proto, data) = parse6(&f[0]);
        assert_eq!(
            (src, dst, proto),
            (shown, guest.ip(), ip::PROTO_TCP),
            "{client}"
        );
        let s = TcpSegment::parse(&data, src, dst).expect("tcp checksum");
        assert_eq!((s.flags, s.src_port, s.dst_port), (SYN, client.port(), 22));
        assert_eq!(s.mss, Some(1500 - 60), "IPv6 MSS");
        last = Some((id, client, s.seq));
    }
    // The last one completes: SYN-ACK from the guest, then data both ways.
    let (id, client, iss) = last.expect("ran");
    let hdr = TcpHeader {
        src_port: 22,
        dst_port: client.port(),
        seq: 7000,
        ack: iss + 1,
        flags: SYN | ACK,
        window: 65535,
        syn_opts: Some((1440, Some(7))),
    };
    h.send(tcp6_frame(guest6(), client.ip(), &hdr, b""));
    let f = h.take_frames();
    assert_eq!(f.len(), 1);
    let (_, _, _, data) = parse6(&f[0]);
    let a = TcpSegment::parse(&data, client.ip(), IpAddr::V6(guest6())).expect("tcp");
    assert_eq!((a.flags, a.ack), (ACK, 7001));
    h.host
        .tcp
        .get_mut(&id)
        .expect("sock")
        .rx
        .extend(b"hello guest".iter().copied());
    h.event(Event::TcpReadable(id));
    let f = h.take_frames();
    let (src, dst, _, data) = parse6(&f[0]);
    let d = TcpSegment::parse(&data, src, dst).expect("tcp");
    assert_eq!(d.payload, b"hello guest");
    let data_hdr = TcpHeader {
        src_port: 22,
        dst_port: client.port(),
        seq: 7001,
        ack: iss + 1 + 11,
        flags: ACK | PSH,
        window: 65535,
        syn_opts: None,
    };
    h.send(tcp6_frame(
        guest6(),
        client.ip(),
        &data_hdr,
        b"SSH-2.0-guest",
    ));
    assert_eq!(h.host.tcp[&id].written, b"SSH-2.0-guest");
}

#[test]
fn tcp_forward_to_a_silent_ipv6_guest_solicits_it_first() {
    let mut h = Harness::new(Config::default());
    let silent: Ipv6Addr = "fec0::99".parse().expect("v6");
    let id =
        h.gw.tcp_inbound(
            h.now,
            "[::1]:1".parse().expect("addr"),
            SocketAddr::new(IpAddr::V6(silent), 80),
            &mut h.host,
        )
        .expect("accepted while the guest is resolved");
    h.host.tcp.insert(id, SimTcp::default());
    let f = h.take_frames();
    assert_eq!(f.len(), 1, "a neighbour solicitation, no SYN yet");
    let e = Frame::parse(&f[0]).expect("eth");
    assert_eq!(e.dst(), [0x33, 0x33, 0xff, 0, 0, 0x99]);
    let (src, dst, proto, data) = parse6(&f[0]);
    assert_eq!(
        (src, dst, proto),
        (
            router6(),
            "ff02::1:ff00:99".parse().expect("v6"),
            netstack::wire::ipv6::NH_ICMPV6
        )
    );
    let (IpAddr::V6(s6), IpAddr::V6(d6)) = (src, dst) else {
        unreachable!()
    };
    match Icmpv6Repr::parse(s6, d6, &data).expect("icmpv6") {
        Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
            target,
            source_lladdr,
        }) => assert_eq!((target, source_lladdr), (silent, Some(GW_MAC))),
        other => panic!("not an NS: {other:?}"),
    }
    // Unanswered: asked again on the retransmission timer.
    h.advance(Duration::from_secs(1));
    assert_eq!(h.take_frames().len(), 1, "asked again");
    // The guest answers with a solicited NA: the SYN goes to its MAC at once.
    let na = Icmpv6Repr::Ndp(NdpRepr::NeighborAdvert {
        router: false,
        solicited: true,
        override_: true,
        target: silent,
        target_lladdr: Some(GUEST_MAC),
    })
    .to_bytes(silent, "fec0::2".parse().expect("v6"));
    h.send(ipv6_frame(
        silent,
        "fec0::2".parse().expect("v6"),
        netstack::wire::ipv6::NH_ICMPV6,
        255,
        &na,
    ));
    let f = h.take_frames();
    assert_eq!(f.len(), 1);
    assert_eq!(Frame::parse(&f[0]).expect("eth").dst(), GUEST_MAC);
    let (src, dst, _, data) = parse6(&f[0]);
    let s = TcpSegment::parse(&data, src, dst).expect("tcp");
    assert_eq!((s.flags, dst), (SYN, IpAddr::V6(silent)));
    // Not guest addresses: refused outright.
    for bad in [
        "[fec0::2]:80",
        "[fec0::3]:80",
        "[fec0::]:80",
        "[fd00::5]:80",
        "[ff02::1]:80",
    ] {
        assert!(
            h.gw.tcp_inbound(
                h.now,
                "[::1]:2".parse().expect("addr"),
                bad.parse().expect("addr"),
                &mut h.host
            )
            .is_err(),
            "{bad}"
        );
    }
    // IPv6 off: a v6 guest is refused with a reason.
    let mut off = Harness::new(Config {
        v6: None,
        ..Config::default()
    });
    let e = off
        .gw
        .tcp_inbound(
            off.now,
            "[::1]:2".parse().expect("addr"),
            SocketAddr::new(IpAddr::V6(silent), 80),
            &mut off.host,
        )
        .expect_err("v6 off");
    assert!(e.to_string().contains("IPv6 is off"), "{e}");
}

#[test]
fn ipv6_listener_to_an_ipv4_guest_shows_the_client_as_the_gateway() {
    let mut h = Harness::new(Config::default());
    announce_guest(&mut h);
    let id =
        h.gw.tcp_inbound(
            h.now,
            "[2001:db8::5]:4000".parse().expect("addr"),
            "10.0.2.15:80".parse().expect("addr"),
            &mut h.host,
        )
        .expect("forwarded");
    h.host.tcp.insert(id, SimTcp::default());
    let f = h.take_frames();
    let p = IpPacket::parse_v4(&f[0][14..]).expect("IPv4 to the v4 guest");
    assert_eq!((p.src, p.dst), (gw_ip(), guest_ip()));
    // A v4-mapped client of a dual-stack listener keeps its IPv4 address.
    let id =
        h.gw.tcp_inbound(
            h.now,
            "[::ffff:192.0.2.44]:4001".parse().expect("addr"),
            "10.0.2.15:80".parse().expect("addr"),
            &mut h.host,
        )
        .expect("forwarded");
    h.host.tcp.insert(id, SimTcp::default());
    let f = h.take_frames();
    let p = IpPacket::parse_v4(&f[0][14..]).expect("ip");
    assert_eq!(p.src, remote_ip_for("192.0.2.44"));
}

#[test]
fn udp_forward_over_ipv6_round_trip() {
    let mut h = Harness::new(Config::default());
    announce_guest6(&mut h);
    let client: SocketAddr = "[::1]:6000".parse().expect("addr");
    let id =
        h.gw.udp_inbound(
            h.now,
            4,
            client,
            SocketAddr::new(IpAddr::V6(guest6()), 53),
            b"query",
            &mut h.host,
        )
        .expect("ok");
    h.drain();
    assert_eq!(h.host.udp_forwards, vec![(id, 4)]);
    let f = h.take_frames();
    let (src, dst, proto, data) = parse6(&f[0]);
    assert_eq!(
        (src, dst, proto),
        (router6(), IpAddr::V6(guest6()), ip::PROTO_UDP)
    );
    let d = UdpDatagram::parse(&data, src, dst).expect("udp checksum");
    assert_eq!(
        (d.src_port, d.dst_port, d.payload),
        (6000, 53, &b"query"[..])
    );
    // The answer to ::2 goes back through the forward's flow, not to the host's ::1 by NAT.
    let IpAddr::V6(r6) = router6() else {
        unreachable!()
    };
    let socks = h.host.udp.len();
    h.send(udp6_frame(guest6(), r6, 53, 6000, b"answer"));
    assert_eq!(h.host.udp[&id].1, vec![b"answer".to_vec()]);
    assert_eq!(h.host.udp.len(), socks, "no new NAT flow");
    // A silent v6 guest: solicited, this datagram dropped with a reason.
    let e =
        h.gw.udp_inbound(
            h.now,
            4,
            client,
            "[fec0::98]:53".parse().expect("addr"),
            b"q",
            &mut h.host,
        )
        .expect_err("unresolved");
    assert!(e.to_string().contains("neighbour solicitation"), "{e}");
    assert_eq!(h.take_frames().len(), 1, "one NS");
}

#[test]
fn forwards_without_a_guest_follow_the_listener_family() {
    let mut h = Harness::new(Config::default());
    announce_guest(&mut h);
    let default: SocketAddr = "10.0.2.15:80".parse().expect("addr");
    let v6l: IpAddr = "::1".parse().expect("v6");
    let v4l: IpAddr = "127.0.0.1".parse().expect("v4");
    // No IPv6 address known yet: the v4 guest.
    assert_eq!(h.gw.forward_guest(v6l, default), default);
    assert!(h.gw.guest_addrs6(GUEST_MAC).is_empty());
    // The guest probes (DAD) for its SLAAC address: learnt, and a v6 listener leads there.
    let dad = Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
        target: guest6(),
        source_lladdr: None,
    });
    let sn = netstack::wire::ipv6::solicited_node(&guest6());
    h.send(ipv6_frame(
        Ipv6Addr::UNSPECIFIED,
        sn,
        netstack::wire::ipv6::NH_ICMPV6,
        255,
        &dad.to_bytes(Ipv6Addr::UNSPECIFIED, sn),
    ));
    assert_eq!(h.gw.guest_addrs6(GUEST_MAC), vec![guest6()]);
    assert_eq!(
        h.gw.forward_guest(v6l, default),
        SocketAddr::new(IpAddr::V6(guest6()), 80)
    );
    // A v4 listener (or a v4-mapped one) stays on IPv4; an explicit guest is never changed.
    assert_eq!(h.gw.forward_guest(v4l, default), default);
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("v6");
    assert_eq!(h.gw.forward_guest(mapped, default), default);
    // A DAD probe from another MAC for a known address does not take it over.
    let mut f = ipv6_frame(
        Ipv6Addr::UNSPECIFIED,
        sn,
        netstack::wire::ipv6::NH_ICMPV6,
        255,
        &dad.to_bytes(Ipv6Addr::UNSPECIFIED, sn),
    );
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
    h.send(f);
    assert_eq!(h.gw.neighbour(IpAddr::V6(guest6())), Some(GUEST_MAC));
    assert!(h.gw.guest_addrs6([2, 0, 0, 0, 0, 9]).is_empty());
    // IPv6 off: always the v4 guest.
    let mut off = Harness::new(Config {
        v6: None,
        ..Config::default()
    });
    announce_guest(&mut off);
    assert_eq!(off.gw.forward_guest(v6l, default), default);
}

#[test]
fn ipv4_off_forwards_without_a_guest_go_to_the_ipv6_guest() {
    let mut h = Harness::new(Config {
        ipv4: false,
        ..Config::default()
    });
    let default: SocketAddr = "10.0.2.15:80".parse().expect("addr");
    let v4l: IpAddr = "127.0.0.1".parse().expect("v4");
    let v6l: IpAddr = "::1".parse().expect("v6");
    // Nobody known yet: unchanged (the connection is refused later).
    assert!(h.gw.guests6().is_empty());
    assert_eq!(h.gw.forward_guest(v4l, default), default);
    let dad = Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
        target: guest6(),
        source_lladdr: None,
    });
    let sn = netstack::wire::ipv6::solicited_node(&guest6());
    h.send(ipv6_frame(
        Ipv6Addr::UNSPECIFIED,
        sn,
        netstack::wire::ipv6::NH_ICMPV6,
        255,
        &dad.to_bytes(Ipv6Addr::UNSPECIFIED, sn),
    ));
    assert_eq!(h.gw.guests6(), vec![(GUEST_MAC, vec![guest6()])]);
    let want = SocketAddr::new(IpAddr::V6(guest6()), 80);
    // Both families of clients reach the guest's IPv6 address.
    assert_eq!(h.gw.forward_guest(v4l, default), want);
    assert_eq!(h.gw.forward_guest(v6l, default), want);
    // An explicit IPv6 guest is never changed.
    let other: SocketAddr = "[fec0::77]:80".parse().expect("v6");
    assert_eq!(h.gw.forward_guest(v4l, other), other);
}
