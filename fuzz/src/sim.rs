//! A simulated host for the gateway core (after `netstack/tests/sim.rs`): in-memory sockets whose
//! behaviour the fuzzer steers, and a check of every frame the gateway transmits.
//!
//! The simulation is honest about what real sockets can do (a receive never returns more than the
//! buffer holds, a send never takes more than it was given), so a panic is the gateway's.

use crate::check;
use netstack::config::Config;
use netstack::flow::FlowId;
use netstack::gateway::Gateway;
use netstack::host::{Action, Event, HostIo};
use netstack::host::{HostError, HostResult};
use netstack::Mac;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;

/// A TCP socket on the host side of one flow.
#[derive(Default)]
pub struct SimTcp {
    /// Bytes the host peer sent, not yet consumed by the gateway.
    pub rx: VecDeque<u8>,
    pub rx_eof: bool,
    /// How many bytes the gateway wrote to the host peer.
    pub written: usize,
    /// How many more bytes the socket takes now (None: any amount).
    pub send_room: Option<usize>,
    pub shut_wr: bool,
    pub closed: bool,
    pub want_write: bool,
}

/// A UDP or ICMP socket: datagrams waiting to be received by the gateway.
#[derive(Default)]
pub struct SimDgram {
    pub rx: VecDeque<Vec<u8>>,
    pub sent: usize,
}

#[derive(Default)]
pub struct SimHost {
    pub cfg: Config,
    /// Source MACs of every frame fed to the gateway: the only unicast destinations it may use.
    pub known_macs: HashSet<Mac>,
    pub frames_out: usize,
    /// `transmit` reports congestion while this is set.
    pub congested: bool,
    /// The next socket open (connect, spawn, UDP, ICMP) fails with this.
    pub fail_open: Option<HostError>,
    pub tcp: BTreeMap<FlowId, SimTcp>,
    pub udp: BTreeMap<FlowId, SimDgram>,
    pub icmp: BTreeMap<FlowId, SimDgram>,
    /// DNS queries sent upstream (the latest few).
    pub dns_sent: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Datagrams waiting on the upstream DNS socket.
    pub dns_rx: VecDeque<(SocketAddr, Vec<u8>)>,
    /// TCP connections seen on the LAN, so scripts can write segments relative to both sides'
    /// initial sequence numbers (the gateway picks its own at random).
    pub conns: Vec<Conn>,
}

/// One TCP connection as seen on the LAN.
#[derive(Clone, Debug)]
pub struct Conn {
    pub guest_mac: Mac,
    pub guest: SocketAddr,
    pub remote: SocketAddr,
    pub guest_isn: Option<u32>,
    pub gw_isn: Option<u32>,
}

const MAX_CONNS: usize = 64;

impl SimHost {
    pub fn new(cfg: Config) -> Self {
        SimHost {
            cfg,
            ..Default::default()
        }
    }

    /// Notes a TCP SYN on the LAN (from the guest if `from_guest`).
    pub fn note_syn(&mut self, frame: &[u8], from_guest: bool) {
        let Some((src_mac, dst_mac, src, dst, seq)) = syn_of(frame) else {
            return;
        };
        let (mac, guest, remote) = if from_guest {
            (src_mac, src, dst)
        } else {
            (dst_mac, dst, src)
        };
        let i = match self
            .conns
            .iter()
            .position(|c| c.guest == guest && c.remote == remote)
        {
            Some(i) => i,
            None => {
                if self.conns.len() >= MAX_CONNS {
                    self.conns.remove(0);
                }
                self.conns.push(Conn {
                    guest_mac: mac,
                    guest,
                    remote,
                    guest_isn: None,
                    gw_isn: None,
                });
                self.conns.len() - 1
            }
        };
        let c = &mut self.conns[i];
        if from_guest {
            c.guest_mac = mac;
            c.guest_isn = Some(seq);
        } else {
            c.guest_mac = mac;
            c.gw_isn = Some(seq);
        }
    }

    fn open(&mut self) -> HostResult<()> {
        match self.fail_open.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The `n`th live (not closed) TCP flow, counting round.
    pub fn pick_tcp(&self, n: u8) -> Option<FlowId> {
        let live: Vec<FlowId> = self
            .tcp
            .iter()
            .filter(|(_, s)| !s.closed)
            .map(|(id, _)| *id)
            .collect();
        (!live.is_empty()).then(|| live[usize::from(n) % live.len()])
    }

    pub fn pick_udp(&self, n: u8) -> Option<FlowId> {
        pick(&self.udp, n)
    }

    pub fn pick_icmp(&self, n: u8) -> Option<FlowId> {
        pick(&self.icmp, n)
    }
}

fn pick<T>(m: &BTreeMap<FlowId, T>, n: u8) -> Option<FlowId> {
    (!m.is_empty()).then(|| *m.keys().nth(usize::from(n) % m.len()).expect("in range"))
}

/// (source MAC, destination MAC, source, destination, sequence number) of a TCP SYN.
fn syn_of(frame: &[u8]) -> Option<(Mac, Mac, SocketAddr, SocketAddr, u32)> {
    use netstack::wire::ethernet::{self, Frame};
    use netstack::wire::ip::{self, IpPacket};
    let eth = Frame::parse(frame).ok()?;
    if eth.ethertype() != ethernet::ETHERTYPE_IPV4 {
        return None;
    }
    let p = IpPacket::parse_v4(eth.payload()).ok()?;
    let t = p.payload;
    if p.proto != ip::PROTO_TCP || t.len() < 20 || t[13] & 0x02 == 0 {
        return None;
    }
    let port = |at: usize| u16::from_be_bytes([t[at], t[at + 1]]);
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    Some((
        eth.src(),
        eth.dst(),
        SocketAddr::new(p.src, port(0)),
        SocketAddr::new(p.dst, port(2)),
        seq,
    ))
}

fn copy_out(d: &[u8], buf: &mut [u8]) -> usize {
    // Like a datagram socket: what does not fit is lost.
    let n = d.len().min(buf.len());
    buf[..n].copy_from_slice(&d[..n]);
    n
}

impl SimHost {
    /// Carries out one action of the gateway, as the driver would. A connect or command start that
    /// fails at once, and every UDP/ICMP open, returns the event to report right away.
    pub fn apply(&mut self, a: Action) -> Option<Event<'static>> {
        let opened = |id, r: HostResult<()>| {
            Some(match r {
                Ok(()) => Event::Opened(id),
                Err(e) => Event::OpenFailed(id, e),
            })
        };
        match a {
            Action::TcpConnect { id, .. } | Action::TcpSpawn { id, .. } => {
                if let Err(e) = self.open() {
                    return Some(Event::TcpConnected { id, result: Err(e) });
                }
                self.tcp.insert(id, SimTcp::default());
            }
            Action::UdpOpen { id, .. } | Action::UdpOpenForward { id, .. } => {
                let r = self.open();
                if r.is_ok() {
                    self.udp.insert(id, SimDgram::default());
                }
                return opened(id, r);
            }
            Action::IcmpOpen { id, .. } => {
                let r = self.open();
                if r.is_ok() {
                    self.icmp.insert(id, SimDgram::default());
                }
                return opened(id, r);
            }
            Action::UdpClose(id) => {
                self.udp.remove(&id);
            }
            Action::IcmpClose(id) => {
                self.icmp.remove(&id);
            }
            Action::TcpWantWrite(id) => {
                if let Some(s) = self.tcp.get_mut(&id) {
                    s.want_write = true;
                }
            }
            Action::TcpShutdownWrite(id) => {
                if let Some(s) = self.tcp.get_mut(&id) {
                    s.shut_wr = true;
                }
            }
            Action::TcpClose { id, .. } => {
                // Forget it: the gateway must not use a closed flow's socket again.
                self.tcp.remove(&id);
            }
        }
        None
    }
}

/// Carries out everything `gw` queued, as the driver does after each call into the gateway.
pub fn drain(gw: &mut Gateway, host: &mut SimHost, now: netstack::Instant) {
    while let Some(a) = gw.poll_action() {
        if let Some(ev) = host.apply(a) {
            gw.handle_event(now, ev, host);
        }
    }
}

impl HostIo for SimHost {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        check::gateway_frame(&self.cfg, &self.known_macs, frame);
        self.note_syn(frame, false);
        self.frames_out += 1;
        !self.congested
    }

    fn tcp_send(&mut self, id: FlowId, data: &[u8]) -> HostResult<usize> {
        let s = self.tcp.get_mut(&id).ok_or(HostError::NotOpen)?;
        if s.closed || s.shut_wr {
            return Err(HostError::Other("broken pipe".into()));
        }
        let n = s.send_room.map_or(data.len(), |r| r.min(data.len()));
        if n == 0 && !data.is_empty() {
            return Err(HostError::WouldBlock);
        }
        if let Some(r) = s.send_room.as_mut() {
            *r -= n;
        }
        s.written += n;
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
        if let Some(s) = self.tcp.get_mut(&id) {
            assert!(
                n <= s.rx.len(),
                "gateway consumed {n} bytes of a socket holding {}",
                s.rx.len()
            );
            s.rx.drain(..n);
        }
    }

    fn udp_send(&mut self, id: FlowId, _data: &[u8]) -> HostResult<()> {
        self.udp.get_mut(&id).ok_or(HostError::NotOpen)?.sent += 1;
        Ok(())
    }

    fn udp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> HostResult<usize> {
        let s = self.udp.get_mut(&id).ok_or(HostError::NotOpen)?;
        let d = s.rx.pop_front().ok_or(HostError::WouldBlock)?;
        if d.first() == Some(&0xee) && d.len() == 2 {
            // A queued error (ICMP port unreachable from the host network and the like).
            return Err(match d[1] % 3 {
                0 => HostError::Refused,
                1 => HostError::HostUnreachable,
                _ => HostError::NetUnreachable,
            });
        }
        Ok(copy_out(&d, buf))
    }

    fn icmp_send(&mut self, id: FlowId, _msg: &[u8]) -> HostResult<()> {
        self.icmp.get_mut(&id).ok_or(HostError::NotOpen)?.sent += 1;
        Ok(())
    }

    fn icmp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> HostResult<usize> {
        let s = self.icmp.get_mut(&id).ok_or(HostError::NotOpen)?;
        let d = s.rx.pop_front().ok_or(HostError::WouldBlock)?;
        Ok(copy_out(&d, buf))
    }

    fn dns_send(&mut self, upstream: SocketAddr, query: &[u8]) -> HostResult<()> {
        if self.dns_sent.len() >= 8 {
            self.dns_sent.pop_front();
        }
        self.dns_sent.push_back((upstream, query.to_vec()));
        Ok(())
    }

    fn dns_recv(&mut self, buf: &mut [u8]) -> HostResult<(usize, SocketAddr)> {
        let (from, d) = self.dns_rx.pop_front().ok_or(HostError::WouldBlock)?;
        Ok((copy_out(&d, buf), from))
    }
}
