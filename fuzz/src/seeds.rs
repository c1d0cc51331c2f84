//! The scripts' vocabulary and builders of real frames and messages, for the seed corpus
//! (`examples/gen_corpus.rs`) and the targets.

use crate::input::Script;
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Encodable, Encoder};
use netstack::wire::arp::{self, ArpRepr};
use netstack::wire::ethernet;
use netstack::wire::icmp as icmpw;
use netstack::wire::ip;
use netstack::wire::tcp::{self as tcpw, TcpHeader};
use netstack::wire::udp as udpw;
use netstack::Mac;
use std::net::{IpAddr, Ipv4Addr};

/// The `frame_path` config byte.
pub mod cfg_flags {
    pub const RESTRICT: u8 = 0x01;
    pub const NO_HOST_LOOPBACK: u8 = 0x02;
    /// Bits 2-3: MTU 1500, 576, 65520, 9000.
    pub const MTU_576: u8 = 0x04;
    pub const MTU_65520: u8 = 0x08;
    /// 10.0.2.0/28, leases from .8.
    pub const SMALL_NET: u8 = 0x10;
    /// Two DNS upstreams (otherwise none: the forwarder answers SERVFAIL itself).
    pub const UPSTREAMS: u8 = 0x20;
    /// 4 flows and 2 half-open connections per guest.
    pub const LOW_LIMITS: u8 = 0x40;
}

/// One operation of a `frame_path` script (the opcode byte, modulo 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// chunk: one frame from the LAN.
    Frame = 0,
    /// n (1 + u8 % 8), then n chunks: frames handed over together.
    Batch = 1,
    /// u16: milliseconds, or seconds with the top bit set; then the timers run.
    Advance = 2,
    /// flow u8, result u8 (0/1 ok, 2 refused, 3 unreachable): a host connect finished.
    TcpConnected = 3,
    /// flow u8, chunk: the host peer sent data.
    TcpData = 4,
    /// flow u8: the host peer closed its side.
    TcpEof = 5,
    /// flow u8, room u16 (65535: unlimited): the host socket takes that much now.
    TcpWritable = 6,
    /// flow u8, chunk (`ee xx`: a socket error): a datagram for a UDP flow.
    UdpFromHost = 7,
    /// flow u8, chunk: an ICMP message for an echo flow.
    IcmpFromHost = 8,
    /// mode u8 (0/1: answer the latest query, 2: raw), rcode u8, chunk.
    DnsAnswer = 9,
    /// client addr u8 + port u16, guest addr u8 + port u16: a connection to a TCP forward.
    TcpInbound = 10,
    /// forward u8, client addr+port, guest addr+port, chunk: a datagram on a UDP forward.
    UdpInbound = 11,
    /// The link to the guests toggles between congested and not.
    Congest = 12,
    /// The link drains: `Event::LinkReady`.
    LinkReady = 13,
    /// kind u8: the next socket the gateway opens fails (top bit set: with no route to the
    /// destination, network or host by the low bit).
    FailNextOpen = 14,
    /// connection u8, flags u8, seq u16, ack i16, window u16, chunk: a TCP segment from the guest
    /// on a connection seen on the LAN, its sequence numbers relative to both sides' ISNs + 1
    /// (so the fuzzer need not guess the gateway's random ISN).
    TcpSeg = 15,
}

impl From<u8> for Op {
    fn from(b: u8) -> Op {
        match b % 16 {
            0 => Op::Frame,
            1 => Op::Batch,
            2 => Op::Advance,
            3 => Op::TcpConnected,
            4 => Op::TcpData,
            5 => Op::TcpEof,
            6 => Op::TcpWritable,
            7 => Op::UdpFromHost,
            8 => Op::IcmpFromHost,
            9 => Op::DnsAnswer,
            10 => Op::TcpInbound,
            11 => Op::UdpInbound,
            12 => Op::Congest,
            13 => Op::LinkReady,
            14 => Op::FailNextOpen,
            15 => Op::TcpSeg,
            _ => Op::Frame,
        }
    }
}

pub const GUEST_MAC: Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
pub const GUEST2_MAC: Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x57];
pub const GW_MAC: Mac = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

pub fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}
pub fn guest_ip() -> IpAddr {
    v4(10, 0, 2, 15)
}
pub fn gw_ip() -> IpAddr {
    v4(10, 0, 2, 2)
}
pub fn dns_ip() -> IpAddr {
    v4(10, 0, 2, 3)
}
pub fn remote_ip() -> IpAddr {
    v4(192, 0, 2, 80)
}

pub fn eth(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN + payload.len()];
    ethernet::write_header(&mut f, dst, src, ethertype);
    f[ethernet::HEADER_LEN..].copy_from_slice(payload);
    f
}

pub fn ipv4(src_mac: Mac, src: IpAddr, dst: IpAddr, proto: u8, transport: &[u8]) -> Vec<u8> {
    let dst_mac = if dst == v4(255, 255, 255, 255) {
        ethernet::BROADCAST
    } else {
        GW_MAC
    };
    // IPv6 addresses make an IPv6 packet (the helpers below serve both families).
    let hl = ip::header_len(dst);
    let mut p = vec![0u8; hl + transport.len()];
    ip::write_header(&mut p, src, dst, proto, transport.len());
    p[hl..].copy_from_slice(transport);
    let ethertype = if dst.is_ipv4() {
        ethernet::ETHERTYPE_IPV4
    } else {
        ethernet::ETHERTYPE_IPV6
    };
    eth(dst_mac, src_mac, ethertype, &p)
}

/// An ICMPv6 message from a guest at `src` (NDP with hop limit 255), as a frame to `dst_mac`.
pub fn icmpv6(
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    dst_mac: Mac,
    m: &netstack::wire::icmpv6::Icmpv6Repr<'_>,
) -> Vec<u8> {
    use netstack::wire::ipv6::{Ipv6Repr, NH_ICMPV6};
    let b = m.to_bytes(src, dst);
    let p = Ipv6Repr::new(src, dst, NH_ICMPV6, b.len() as u16, 255).packet(&b);
    eth(dst_mac, GUEST_MAC, ethernet::ETHERTYPE_IPV6, &p)
}

pub fn arp_request(sender_mac: Mac, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let a = ArpRepr {
        op: arp::OP_REQUEST,
        sender_mac,
        sender_ip,
        target_mac: [0; 6],
        target_ip,
    };
    let mut b = [0u8; arp::LEN];
    a.emit(&mut b);
    eth(ethernet::BROADCAST, sender_mac, ethernet::ETHERTYPE_ARP, &b)
}

pub fn arp_reply(sender_mac: Mac, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let a = ArpRepr {
        op: arp::OP_REPLY,
        sender_mac,
        sender_ip,
        target_mac: GW_MAC,
        target_ip,
    };
    let mut b = [0u8; arp::LEN];
    a.emit(&mut b);
    eth(GW_MAC, sender_mac, ethernet::ETHERTYPE_ARP, &b)
}

pub fn udp(
    src_mac: Mac,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = vec![0u8; udpw::HEADER_LEN + payload.len()];
    seg[udpw::HEADER_LEN..].copy_from_slice(payload);
    udpw::write(&mut seg, src, dst, sport, dport);
    ipv4(src_mac, src, dst, ip::PROTO_UDP, &seg)
}

/// A TCP segment from a guest at `src_mac`, with MSS and window scale on SYNs.
#[allow(clippy::too_many_arguments)]
pub fn tcp_seg(
    src_mac: Mac,
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let h = TcpHeader {
        src_port: src.port(),
        dst_port: dst.port(),
        seq,
        ack,
        flags,
        window,
        syn_opts: (flags & tcpw::SYN != 0).then_some((1460, Some(7))),
    };
    let mut seg = vec![0u8; h.len() + payload.len()];
    seg[h.len()..].copy_from_slice(payload);
    tcpw::write_header(&mut seg, &h, src.ip(), dst.ip());
    ipv4(src_mac, src.ip(), dst.ip(), ip::PROTO_TCP, &seg)
}

#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let h = TcpHeader {
        src_port: sport,
        dst_port: dport,
        seq,
        ack,
        flags,
        window: 65535,
        syn_opts: (flags & tcpw::SYN != 0).then_some((1460, Some(7))),
    };
    let mut seg = vec![0u8; h.len() + payload.len()];
    seg[h.len()..].copy_from_slice(payload);
    tcpw::write_header(&mut seg, &h, src, dst);
    ipv4(GUEST_MAC, src, dst, ip::PROTO_TCP, &seg)
}

/// Appends a `TcpSeg` operation.
#[allow(clippy::too_many_arguments)]
pub fn tcp_rel(
    s: &mut FrameScript,
    conn: u8,
    flags: u8,
    seq: u16,
    ack: i16,
    window: u16,
    payload: &[u8],
) {
    s.op(Op::TcpSeg)
        .u8(conn)
        .u8(flags)
        .u16(seq)
        .u16(ack as u16)
        .u16(window)
        .chunk(payload);
}

pub fn icmp_echo(dst: IpAddr, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; icmpw::HEADER_LEN + payload.len()];
    m[icmpw::HEADER_LEN..].copy_from_slice(payload);
    let (i, s) = (ident.to_be_bytes(), seq.to_be_bytes());
    icmpw::write(&mut m, icmpw::ECHO_REQUEST, 0, [i[0], i[1], s[0], s[1]]);
    ipv4(GUEST_MAC, guest_ip(), dst, ip::PROTO_ICMP, &m)
}

/// An ICMP echo reply as a ping socket hands it over (ICMP header first, no IP header).
pub fn icmp_reply_msg(ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; icmpw::HEADER_LEN + payload.len()];
    m[icmpw::HEADER_LEN..].copy_from_slice(payload);
    let (i, s) = (ident.to_be_bytes(), seq.to_be_bytes());
    icmpw::write(&mut m, icmpw::ECHO_REPLY, 0, [i[0], i[1], s[0], s[1]]);
    m
}

/// A DHCP client message (BOOTP payload) from `mac`.
pub fn dhcp_msg(mac: Mac, kind: MessageType, ciaddr: Ipv4Addr, opts: Vec<DhcpOption>) -> Vec<u8> {
    let mut m = Message::new_with_id(
        u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
        ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    if kind == MessageType::Discover {
        m.set_flags(Flags::default().set_broadcast());
    }
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf))
        .expect("a DHCP message we built encodes");
    buf
}

pub fn dhcp_discover(mac: Mac) -> Vec<u8> {
    dhcp_msg(
        mac,
        MessageType::Discover,
        Ipv4Addr::UNSPECIFIED,
        vec![
            DhcpOption::ParameterRequestList(vec![
                OptionCode::SubnetMask,
                OptionCode::Router,
                OptionCode::DomainNameServer,
                OptionCode::DomainSearch,
                OptionCode::InterfaceMtu,
            ]),
            DhcpOption::Hostname("guest".into()),
            DhcpOption::ClientIdentifier(vec![1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]),
        ],
    )
}

pub fn dhcp_request(mac: Mac, want: Ipv4Addr) -> Vec<u8> {
    dhcp_msg(
        mac,
        MessageType::Request,
        Ipv4Addr::UNSPECIFIED,
        vec![
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)),
            DhcpOption::RequestedIpAddress(want),
            DhcpOption::Hostname("guest".into()),
        ],
    )
}

/// DHCP DISCOVER as a frame from an unconfigured client.
pub fn dhcp_frame(mac: Mac, payload: &[u8]) -> Vec<u8> {
    udp(mac, v4(0, 0, 0, 0), 68, v4(255, 255, 255, 255), 67, payload)
}

/// A DNS query for `name` (type `qtype`), with an EDNS OPT record when `edns`.
pub fn dns_query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&1u16.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0]);
    q.extend_from_slice(&u16::from(edns).to_be_bytes());
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

/// An answer to `query` (same id and question) with one A record via a compression pointer.
pub fn dns_answer(query: &[u8], rcode: u8, addr: [u8; 4]) -> Vec<u8> {
    let mut r = query.to_vec();
    r[2] |= 0x80;
    r[3] = 0x80 | (rcode & 0x0f);
    // Drop any additional records (EDNS) from the copy: ancount 1, arcount 0.
    let qend = question_end(query).unwrap_or(query.len());
    r.truncate(qend);
    r[6..8].copy_from_slice(&1u16.to_be_bytes());
    r[10..12].copy_from_slice(&0u16.to_be_bytes());
    r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
    r.extend_from_slice(&addr);
    r
}

fn question_end(q: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let l = usize::from(*q.get(i)?);
        if l == 0 {
            return Some(i + 5);
        }
        i += 1 + l;
    }
}

/// Builds a `frame_path` script.
pub struct FrameScript(pub Script);

impl FrameScript {
    pub fn new(cfg: u8) -> Self {
        let mut s = Script::default();
        s.u8(cfg);
        FrameScript(s)
    }
    pub fn op(&mut self, op: Op) -> &mut Script {
        self.0.u8(op as u8)
    }
    pub fn frame(&mut self, f: &[u8]) -> &mut Self {
        self.op(Op::Frame).chunk(f);
        self
    }
    pub fn advance_ms(&mut self, ms: u16) -> &mut Self {
        self.op(Op::Advance).u16(ms & 0x7fff);
        self
    }
    pub fn advance_s(&mut self, s: u16) -> &mut Self {
        self.op(Op::Advance).u16(0x8000 | (s & 0x7fff));
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.0 .0.clone()
    }
}
