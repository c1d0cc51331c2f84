//! Unit-test helpers: a [`Ctx`] with a fixed seed, a tiny recording [`HostIo`] and guest packet
//! builders. The protocol NATs are tested on these alone, without a `Gateway`.

use crate::config::Config;
use crate::ctx::Ctx;
use crate::flow::FlowId;
use crate::host::{Action, HostError, HostIo, HostResult};
use crate::wire::ethernet::{self, Frame};
use crate::wire::icmp as icmpw;
use crate::wire::ip::{self, IpPacket};
use crate::wire::tcp::{self as tcpw, TcpHeader, TcpSegment};
use crate::wire::udp as udpw;
use crate::{Instant, Mac};
use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub const GUEST_MAC: Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

pub fn guest() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15))
}
pub fn remote() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80))
}

/// A context with the default plan, seed 7, and the guest's MAC already known.
pub fn ctx_with(cfg: Config, now: Instant) -> Ctx {
    let mut ctx = Ctx::new(cfg, 7);
    assert_eq!(ctx.learn_neighbour(now, guest(), GUEST_MAC), Some(true));
    ctx
}

pub fn ctx(now: Instant) -> Ctx {
    ctx_with(Config::default(), now)
}

/// What the core asked of the host (data-path calls and actions), in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    TcpConnect(FlowId, SocketAddr),
    TcpClose(FlowId, bool),
    UdpOpen(FlowId, SocketAddr),
    UdpSend(FlowId, Vec<u8>),
    UdpClose(FlowId),
    IcmpOpen(FlowId, IpAddr),
    IcmpSend(FlowId, Vec<u8>),
    IcmpClose(FlowId),
    Other(&'static str),
}

/// A host that records every call and every transmitted frame.
#[derive(Default)]
pub struct Rec {
    pub frames: Vec<Vec<u8>>,
    pub calls: Vec<Call>,
    /// How the next `Action::TcpConnect` fails at once (`None`: it completes later).
    pub connect_error: Option<HostError>,
    /// Messages waiting on ICMP sockets (header first).
    pub icmp_rx: VecDeque<Vec<u8>>,
    /// How the next `Action::IcmpOpen` fails (`Ok` when unset).
    pub icmp_open_error: Option<HostError>,
    /// How the next `Action::UdpOpen` fails (`Ok` when unset).
    pub udp_open_error: Option<HostError>,
    /// Results of recorded UDP/ICMP opens, for the caller to report as `Event::Opened` /
    /// `Event::OpenFailed`.
    pub opened: VecDeque<(FlowId, HostResult<()>)>,
    /// Bytes written to TCP sockets, and the number of writes.
    pub written: Vec<u8>,
    pub writes: usize,
}

impl Rec {
    pub fn take_frames(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.frames)
    }

    /// Records one action as a call. A connect the test made fail (`connect_error`) returns its
    /// flow and error, for the caller to report as `Event::TcpConnected`.
    pub fn record(&mut self, a: Action) -> Option<(FlowId, HostError)> {
        match a {
            Action::TcpConnect { id, dst } => {
                self.calls.push(Call::TcpConnect(id, dst));
                return self.connect_error.take().map(|e| (id, e));
            }
            Action::TcpSpawn { .. } => self.calls.push(Call::Other("tcp_spawn")),
            Action::TcpWantWrite(_) => {}
            Action::TcpShutdownWrite(_) => self.calls.push(Call::Other("tcp_shutdown_write")),
            Action::TcpClose { id, reset } => self.calls.push(Call::TcpClose(id, reset)),
            Action::UdpOpen { id, dst } => {
                self.calls.push(Call::UdpOpen(id, dst));
                let r = self.udp_open_error.take().map_or(Ok(()), Err);
                self.opened.push_back((id, r));
            }
            Action::UdpOpenForward { id, .. } => {
                self.calls.push(Call::Other("udp_open_forward"));
                self.opened.push_back((id, Ok(())));
            }
            Action::UdpClose(id) => self.calls.push(Call::UdpClose(id)),
            Action::IcmpOpen { id, dst } => {
                self.calls.push(Call::IcmpOpen(id, dst));
                let r = self.icmp_open_error.take().map_or(Ok(()), Err);
                self.opened.push_back((id, r));
            }
            Action::IcmpClose(id) => self.calls.push(Call::IcmpClose(id)),
        }
        None
    }
}

impl HostIo for Rec {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.frames.push(frame.to_vec());
        true
    }
    fn tcp_send(&mut self, _id: FlowId, data: &[u8]) -> HostResult<usize> {
        self.writes += 1;
        self.written.extend_from_slice(data);
        Ok(data.len())
    }
    fn tcp_send_vectored(&mut self, _id: FlowId, bufs: &[IoSlice<'_>]) -> HostResult<usize> {
        self.writes += 1;
        for b in bufs {
            self.written.extend_from_slice(b);
        }
        Ok(bufs.iter().map(|b| b.len()).sum())
    }
    fn tcp_peek(
        &mut self,
        _id: FlowId,
        _offset: usize,
        _bufs: &mut [IoSliceMut<'_>],
    ) -> HostResult<usize> {
        Err(HostError::WouldBlock)
    }
    fn tcp_consume(&mut self, _id: FlowId, _n: usize) {}
    fn udp_send(&mut self, id: FlowId, data: &[u8]) -> HostResult<()> {
        self.calls.push(Call::UdpSend(id, data.to_vec()));
        Ok(())
    }
    fn udp_recv(&mut self, _id: FlowId, _buf: &mut [u8]) -> HostResult<usize> {
        Err(HostError::WouldBlock)
    }
    fn icmp_send(&mut self, id: FlowId, msg: &[u8]) -> HostResult<()> {
        self.calls.push(Call::IcmpSend(id, msg.to_vec()));
        Ok(())
    }
    fn icmp_recv(&mut self, _id: FlowId, buf: &mut [u8]) -> HostResult<usize> {
        let m = self.icmp_rx.pop_front().ok_or(HostError::WouldBlock)?;
        buf[..m.len()].copy_from_slice(&m);
        Ok(m.len())
    }
    fn dns_send(&mut self, _upstream: SocketAddr, _query: &[u8]) -> HostResult<()> {
        Ok(())
    }
    fn dns_recv(&mut self, _buf: &mut [u8]) -> HostResult<(usize, SocketAddr)> {
        Err(HostError::WouldBlock)
    }
}

/// An IPv4 packet (no Ethernet header) from `src` to `dst` carrying `transport` bytes of `proto`.
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, transport: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; ip::IPV4_HEADER_LEN + transport.len()];
    b[ip::IPV4_HEADER_LEN..].copy_from_slice(transport);
    ip::write_header(&mut b, src, dst, proto, transport.len());
    b
}

/// A guest TCP segment as IP packet bytes.
pub fn tcp_packet(sport: u16, dst: SocketAddr, h: TcpHeader, payload: &[u8]) -> Vec<u8> {
    let h = TcpHeader {
        src_port: sport,
        dst_port: dst.port(),
        ..h
    };
    let mut seg = vec![0u8; h.len() + payload.len()];
    seg[h.len()..].copy_from_slice(payload);
    tcpw::write_header(&mut seg, &h, guest(), dst.ip());
    ip_packet(guest(), dst.ip(), ip::PROTO_TCP, &seg)
}

/// A guest UDP datagram as IP packet bytes.
pub fn udp_packet(sport: u16, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0u8; udpw::HEADER_LEN + payload.len()];
    seg[udpw::HEADER_LEN..].copy_from_slice(payload);
    udpw::write(&mut seg, guest(), dst.ip(), sport, dst.port());
    ip_packet(guest(), dst.ip(), ip::PROTO_UDP, &seg)
}

/// An ICMP message (type, code, ident, seq, payload) with its checksum.
pub fn icmp_message(kind: u8, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; icmpw::HEADER_LEN + payload.len()];
    m[icmpw::HEADER_LEN..].copy_from_slice(payload);
    let (i, s) = (ident.to_be_bytes(), seq.to_be_bytes());
    icmpw::write(&mut m, kind, 0, [i[0], i[1], s[0], s[1]]);
    m
}

pub fn parse_ip(b: &[u8]) -> IpPacket<'_> {
    IpPacket::parse_v4(b).expect("the builders make valid packets")
}

/// A frame the core sent to the guest: checks the Ethernet header and returns its IP packet.
pub fn to_guest(frame: &[u8]) -> IpPacket<'_> {
    let eth = Frame::parse(frame).expect("ethernet");
    assert_eq!(eth.dst(), GUEST_MAC, "addressed to the guest's MAC");
    assert_eq!(eth.ethertype(), ethernet::ETHERTYPE_IPV4);
    let p = IpPacket::parse_v4(eth.payload()).expect("valid IPv4 to the guest");
    assert_eq!(p.dst, guest());
    p
}

/// The TCP segment of a frame sent to the guest (checksum verified).
pub fn tcp_to_guest(frame: &[u8]) -> TcpSegment<'_> {
    let p = to_guest(frame);
    assert_eq!(p.proto, ip::PROTO_TCP);
    TcpSegment::parse(p.payload, p.src, p.dst).expect("valid TCP to the guest")
}

/// An Ethernet frame from the guest to the gateway around an IP packet, with `pad` trailing bytes
/// (Ethernet padding the IP length excludes).
pub fn frame(ip_packet: &[u8], pad: usize) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN + ip_packet.len() + pad];
    f[ethernet::HEADER_LEN..ethernet::HEADER_LEN + ip_packet.len()].copy_from_slice(ip_packet);
    ethernet::write_header(
        &mut f,
        [0x52, 0x55, 0x0a, 0, 2, 2],
        GUEST_MAC,
        ethernet::ETHERTYPE_IPV4,
    );
    f
}
