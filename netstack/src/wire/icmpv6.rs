//! ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861) with the RDNSS and DNSSL options of
//! RFC 8106: a zero-copy view ([`Icmpv6Packet`]), and [`Icmpv6Repr`], the message as values,
//! which parses from and emits to bytes (checksum included, over the IPv6 pseudo-header).
//!
//! Parsing never panics and never loops: every length is checked before it is used, an NDP
//! option of length zero is an error (RFC 4861 §4.6), and options are walked once, front to back.
//! Messages this module does not model (MLD, Redirect, …) parse as [`Icmpv6Repr::Other`].

use super::ipv6::{upper_checksum, NH_ICMPV6};
use super::{be16, be32};
use crate::Mac;
use std::net::Ipv6Addr;

/// Bytes common to every ICMPv6 message: type, code and checksum.
pub const HEADER_LEN: usize = 4;
/// Type 1, Destination Unreachable (RFC 4443 §3.1).
pub const DST_UNREACHABLE: u8 = 1;
/// Type 2, Packet Too Big (RFC 4443 §3.2).
pub const PACKET_TOO_BIG: u8 = 2;
/// Type 3, Time Exceeded (RFC 4443 §3.3).
pub const TIME_EXCEEDED: u8 = 3;
/// Type 4, Parameter Problem (RFC 4443 §3.4).
pub const PARAM_PROBLEM: u8 = 4;
/// Type 128, Echo Request.
pub const ECHO_REQUEST: u8 = 128;
/// Type 129, Echo Reply.
pub const ECHO_REPLY: u8 = 129;
/// Type 133, Router Solicitation (RFC 4861 §4.1).
pub const ROUTER_SOLICIT: u8 = 133;
/// Type 134, Router Advertisement (RFC 4861 §4.2).
pub const ROUTER_ADVERT: u8 = 134;
/// Type 135, Neighbor Solicitation (RFC 4861 §4.3).
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Type 136, Neighbor Advertisement (RFC 4861 §4.4).
pub const NEIGHBOR_ADVERT: u8 = 136;

/// Destination Unreachable code 0: no route to destination.
pub const CODE_NO_ROUTE: u8 = 0;
/// Destination Unreachable code 1: communication administratively prohibited.
pub const CODE_ADMIN_PROHIBITED: u8 = 1;
/// Destination Unreachable code 3: address unreachable (neighbour did not resolve).
pub const CODE_ADDR_UNREACHABLE: u8 = 3;
/// Destination Unreachable code 4: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 4;
/// Time Exceeded code 0: hop limit exceeded in transit.
pub const CODE_HOP_LIMIT: u8 = 0;
/// Time Exceeded code 1: fragment reassembly time exceeded.
pub const CODE_REASSEMBLY: u8 = 1;
/// Parameter Problem code 0: erroneous header field encountered.
pub const CODE_BAD_HEADER_FIELD: u8 = 0;
/// Parameter Problem code 1: unrecognised Next Header type.
pub const CODE_UNKNOWN_NEXT_HEADER: u8 = 1;
/// Parameter Problem code 2: unrecognised IPv6 option.
pub const CODE_UNKNOWN_OPTION: u8 = 2;

/// The IPv6 minimum link MTU; an ICMPv6 error never makes a packet longer than this.
pub const MIN_MTU: usize = 1280;
/// The most of an invoking packet an error message quotes (1280 - 40 - 8).
pub const MAX_INVOKING: usize = MIN_MTU - 40 - 8;

/// NDP option type 1, Source Link-Layer Address.
pub const OPT_SOURCE_LLADDR: u8 = 1;
/// NDP option type 2, Target Link-Layer Address.
pub const OPT_TARGET_LLADDR: u8 = 2;
/// NDP option type 3, Prefix Information.
pub const OPT_PREFIX_INFO: u8 = 3;
/// NDP option type 5, MTU.
pub const OPT_MTU: u8 = 5;
/// NDP option type 25, Recursive DNS Server (RFC 8106).
pub const OPT_RDNSS: u8 = 25;
/// NDP option type 31, DNS Search List (RFC 8106).
pub const OPT_DNSSL: u8 = 31;

/// Why an ICMPv6 message was refused (a counted drop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmpv6Error {
    /// Shorter than the 4-byte header or than the message type's fixed part.
    Truncated,
    /// The checksum over the IPv6 pseudo-header and message does not verify.
    BadChecksum,
    /// An NDP message with a non-zero code (RFC 4861 validation).
    BadCode,
    /// An NDP option of length zero, running past the message, or of the wrong size.
    BadOption(u8),
    /// A DNSSL domain name that is not a valid name.
    BadDomain,
    /// NS/NA target or an RDNSS server that is multicast.
    BadAddress,
}

impl std::fmt::Display for Icmpv6Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Icmpv6Error::Truncated => f.write_str("truncated ICMPv6 message"),
            Icmpv6Error::BadChecksum => f.write_str("bad ICMPv6 checksum"),
            Icmpv6Error::BadCode => f.write_str("NDP message with a non-zero code"),
            Icmpv6Error::BadOption(t) => write!(f, "malformed NDP option type {t}"),
            Icmpv6Error::BadDomain => f.write_str("malformed DNSSL domain name"),
            Icmpv6Error::BadAddress => f.write_str("multicast address where unicast is due"),
        }
    }
}

impl std::error::Error for Icmpv6Error {}

/// A checked view: at least the 4-byte header. The checksum is checked by [`Icmpv6Repr::parse`]
/// or [`Icmpv6Packet::checksum_ok`].
#[derive(Clone, Copy, Debug)]
pub struct Icmpv6Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Icmpv6Packet<'a> {
    /// Checks only that `buf` holds the 4-byte header; `Truncated` otherwise.
    pub fn parse(buf: &'a [u8]) -> Result<Self, Icmpv6Error> {
        if buf.len() < HEADER_LEN {
            return Err(Icmpv6Error::Truncated);
        }
        Ok(Icmpv6Packet { buf })
    }
    /// Type (byte 0), e.g. [`ECHO_REQUEST`].
    pub fn kind(&self) -> u8 {
        self.buf[0]
    }
    /// Code (byte 1).
    pub fn code(&self) -> u8 {
        self.buf[1]
    }
    /// Checksum field as carried (bytes 2..4, big-endian).
    pub fn checksum(&self) -> u16 {
        be16(self.buf, 2)
    }
    /// Everything after type, code and checksum.
    pub fn body(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
    /// The whole message, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// Whether the checksum verifies over the pseudo-header of `src`/`dst` and the message.
    pub fn checksum_ok(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        upper_checksum(src, dst, NH_ICMPV6, self.buf) == 0
    }
    /// Error messages (types 0-127) must never be answered with another error (RFC 4443 §2.4).
    pub fn is_error(&self) -> bool {
        self.kind() < 128
    }
}

/// A Prefix Information option (RFC 4861 §4.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixInfo {
    /// Prefix Length in bits (0..=128).
    pub prefix_len: u8,
    /// L flag: the prefix is on-link.
    pub on_link: bool,
    /// A flag: hosts may form addresses from the prefix with SLAAC.
    pub autonomous: bool,
    /// Seconds; `u32::MAX` is infinity.
    pub valid_lifetime: u32,
    /// Seconds; `u32::MAX` is infinity; at most `valid_lifetime`.
    pub preferred_lifetime: u32,
    /// The prefix; bits past `prefix_len` are zero when we emit it.
    pub prefix: Ipv6Addr,
}

/// A Recursive DNS Server option (RFC 8106 §5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rdnss {
    /// Seconds the servers may be used; 0 withdraws them, `u32::MAX` is infinity.
    pub lifetime: u32,
    /// The recursive DNS servers (unicast), in preference order.
    pub servers: Vec<Ipv6Addr>,
}

/// A DNS Search List option (RFC 8106 §5.2). Domains without the trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dnssl {
    /// Seconds the domains may be used; 0 withdraws them, `u32::MAX` is infinity.
    pub lifetime: u32,
    /// Search domains, in order.
    pub domains: Vec<String>,
}

/// The NDP messages the gateway takes part in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NdpRepr {
    /// Router Solicitation: a host asks for a Router Advertisement.
    RouterSolicit {
        /// The sender's MAC, if it included a Source Link-Layer Address option.
        source_lladdr: Option<Mac>,
    },
    /// Router Advertisement: the router's parameters, prefixes and DNS options.
    RouterAdvert {
        /// Cur Hop Limit hosts should use; 0 means unspecified.
        hop_limit: u8,
        /// M flag: addresses are available via DHCPv6.
        managed: bool,
        /// O flag: other configuration (e.g. DNS) is available via DHCPv6.
        other: bool,
        /// Seconds; 0 means "not a default router".
        router_lifetime: u16,
        /// Milliseconds; 0 means unspecified.
        reachable_time: u32,
        /// Retrans Timer in milliseconds; 0 means unspecified.
        retrans_time: u32,
        /// The router's MAC (Source Link-Layer Address option).
        source_lladdr: Option<Mac>,
        /// Link MTU from the MTU option, in bytes.
        mtu: Option<u32>,
        /// Prefix Information options, in message order.
        prefixes: Vec<PrefixInfo>,
        /// RDNSS options, in message order.
        rdnss: Vec<Rdnss>,
        /// DNSSL options, in message order.
        dnssl: Vec<Dnssl>,
    },
    /// Neighbor Solicitation: address resolution or duplicate address detection.
    NeighborSolicit {
        /// The address being resolved (unicast).
        target: Ipv6Addr,
        /// The sender's MAC; absent in duplicate address detection (source `::`).
        source_lladdr: Option<Mac>,
    },
    /// Neighbor Advertisement: the link-layer address of `target`.
    NeighborAdvert {
        /// R flag: the sender is a router.
        router: bool,
        /// S flag: sent in response to a Neighbor Solicitation.
        solicited: bool,
        /// O flag: the advertisement should override a cached link-layer address.
        override_: bool,
        /// The address advertised.
        target: Ipv6Addr,
        /// Its MAC (Target Link-Layer Address option).
        target_lladdr: Option<Mac>,
    },
}

/// An ICMPv6 message as values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
    /// Destination Unreachable (type 1).
    DstUnreachable {
        /// Reason, e.g. [`CODE_PORT_UNREACHABLE`].
        code: u8,
        /// The quoted invoking packet; `emit` cuts it to [`MAX_INVOKING`] bytes.
        invoking: &'a [u8],
    },
    /// Packet Too Big (type 2).
    PacketTooBig {
        /// MTU of the next-hop link, in bytes.
        mtu: u32,
        /// The quoted invoking packet (cut to [`MAX_INVOKING`] bytes on emit).
        invoking: &'a [u8],
    },
    /// Time Exceeded (type 3).
    TimeExceeded {
        /// [`CODE_HOP_LIMIT`] or [`CODE_REASSEMBLY`].
        code: u8,
        /// The quoted invoking packet (cut to [`MAX_INVOKING`] bytes on emit).
        invoking: &'a [u8],
    },
    /// Parameter Problem (type 4).
    ParamProblem {
        /// E.g. [`CODE_UNKNOWN_NEXT_HEADER`].
        code: u8,
        /// Byte offset in the invoking packet where the problem was found.
        pointer: u32,
        /// The quoted invoking packet (cut to [`MAX_INVOKING`] bytes on emit).
        invoking: &'a [u8],
    },
    /// Echo Request (type 128).
    EchoRequest {
        /// Identifier (bytes 4..6, big-endian).
        ident: u16,
        /// Sequence number (bytes 6..8, big-endian).
        seq: u16,
        /// Echo data, returned unchanged in the reply.
        data: &'a [u8],
    },
    /// Echo Reply (type 129).
    EchoReply {
        /// Identifier copied from the request.
        ident: u16,
        /// Sequence number copied from the request.
        seq: u16,
        /// Data copied from the request.
        data: &'a [u8],
    },
    /// One of the NDP messages the gateway models.
    Ndp(NdpRepr),
    /// Anything else (MLD, Redirect, unknown types): type, code and the bytes after the checksum.
    Other {
        /// Type (byte 0).
        kind: u8,
        /// Code (byte 1).
        code: u8,
        /// The bytes after the checksum.
        body: &'a [u8],
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Parses `b` (the ICMPv6 message, as carried after the IPv6 headers), checking the checksum
    /// against the pseudo-header of `src`/`dst`.
    pub fn parse(src: Ipv6Addr, dst: Ipv6Addr, b: &'a [u8]) -> Result<Self, Icmpv6Error> {
        let p = Icmpv6Packet::parse(b)?;
        if !p.checksum_ok(src, dst) {
            return Err(Icmpv6Error::BadChecksum);
        }
        Self::parse_unchecked(&p)
    }

    /// Parses without checking the checksum (for quoted or already-verified messages).
    pub fn parse_unchecked(p: &Icmpv6Packet<'a>) -> Result<Self, Icmpv6Error> {
        let b = p.as_bytes();
        let (kind, code) = (p.kind(), p.code());
        let need = |n: usize| {
            if b.len() < n {
                Err(Icmpv6Error::Truncated)
            } else {
                Ok(())
            }
        };
        let ndp = matches!(
            kind,
            ROUTER_SOLICIT | ROUTER_ADVERT | NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT
        );
        if ndp && code != 0 {
            return Err(Icmpv6Error::BadCode);
        }
        Ok(match kind {
            DST_UNREACHABLE | PACKET_TOO_BIG | TIME_EXCEEDED | PARAM_PROBLEM => {
                need(8)?;
                let invoking = &b[8..];
                match kind {
                    DST_UNREACHABLE => Icmpv6Repr::DstUnreachable { code, invoking },
                    PACKET_TOO_BIG => Icmpv6Repr::PacketTooBig {
                        mtu: be32(b, 4),
                        invoking,
                    },
                    TIME_EXCEEDED => Icmpv6Repr::TimeExceeded { code, invoking },
                    _ => Icmpv6Repr::ParamProblem {
                        code,
                        pointer: be32(b, 4),
                        invoking,
                    },
                }
            }
            ECHO_REQUEST | ECHO_REPLY => {
                need(8)?;
                let (ident, seq, data) = (be16(b, 4), be16(b, 6), &b[8..]);
                if kind == ECHO_REQUEST {
                    Icmpv6Repr::EchoRequest { ident, seq, data }
                } else {
                    Icmpv6Repr::EchoReply { ident, seq, data }
                }
            }
            ROUTER_SOLICIT => {
                need(8)?;
                let o = Options::parse(&b[8..])?;
                Icmpv6Repr::Ndp(NdpRepr::RouterSolicit {
                    source_lladdr: o.source_lladdr,
                })
            }
            ROUTER_ADVERT => {
                need(16)?;
                let o = Options::parse(&b[16..])?;
                Icmpv6Repr::Ndp(NdpRepr::RouterAdvert {
                    hop_limit: b[4],
                    managed: b[5] & 0x80 != 0,
                    other: b[5] & 0x40 != 0,
                    router_lifetime: be16(b, 6),
                    reachable_time: be32(b, 8),
                    retrans_time: be32(b, 12),
                    source_lladdr: o.source_lladdr,
                    mtu: o.mtu,
                    prefixes: o.prefixes,
                    rdnss: o.rdnss,
                    dnssl: o.dnssl,
                })
            }
            NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT => {
                need(24)?;
                let target = addr_at(b, 8);
                if target.is_multicast() {
                    return Err(Icmpv6Error::BadAddress);
                }
                let o = Options::parse(&b[24..])?;
                if kind == NEIGHBOR_SOLICIT {
                    Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
                        target,
                        source_lladdr: o.source_lladdr,
                    })
                } else {
                    Icmpv6Repr::Ndp(NdpRepr::NeighborAdvert {
                        router: b[4] & 0x80 != 0,
                        solicited: b[4] & 0x40 != 0,
                        override_: b[4] & 0x20 != 0,
                        target,
                        target_lladdr: o.target_lladdr,
                    })
                }
            }
            _ => Icmpv6Repr::Other {
                kind,
                code,
                body: &b[HEADER_LEN..],
            },
        })
    }

    /// The message's bytes, checksum filled in for `src`/`dst`. Error messages quote at most
    /// [`MAX_INVOKING`] bytes of the invoking packet, so the whole packet fits the minimum MTU.
    pub fn to_bytes(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        let quote = |inv: &[u8]| inv[..inv.len().min(MAX_INVOKING)].to_vec();
        match self {
            Icmpv6Repr::DstUnreachable { code, invoking } => {
                b.extend_from_slice(&[DST_UNREACHABLE, *code, 0, 0, 0, 0, 0, 0]);
                b.extend_from_slice(&quote(invoking));
            }
            Icmpv6Repr::PacketTooBig { mtu, invoking } => {
                b.extend_from_slice(&[PACKET_TOO_BIG, 0, 0, 0]);
                b.extend_from_slice(&mtu.to_be_bytes());
                b.extend_from_slice(&quote(invoking));
            }
            Icmpv6Repr::TimeExceeded { code, invoking } => {
                b.extend_from_slice(&[TIME_EXCEEDED, *code, 0, 0, 0, 0, 0, 0]);
                b.extend_from_slice(&quote(invoking));
            }
            Icmpv6Repr::ParamProblem {
                code,
                pointer,
                invoking,
            } => {
                b.extend_from_slice(&[PARAM_PROBLEM, *code, 0, 0]);
                b.extend_from_slice(&pointer.to_be_bytes());
                b.extend_from_slice(&quote(invoking));
            }
            Icmpv6Repr::EchoRequest { ident, seq, data }
            | Icmpv6Repr::EchoReply { ident, seq, data } => {
                let kind = if matches!(self, Icmpv6Repr::EchoRequest { .. }) {
                    ECHO_REQUEST
                } else {
                    ECHO_REPLY
                };
                b.extend_from_slice(&[kind, 0, 0, 0]);
                b.extend_from_slice(&ident.to_be_bytes());
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(data);
            }
            Icmpv6Repr::Ndp(n) => n.emit_body(&mut b),
            Icmpv6Repr::Other { kind, code, body } => {
                b.extend_from_slice(&[*kind, *code, 0, 0]);
                b.extend_from_slice(body);
            }
        }
        let c = upper_checksum(src, dst, NH_ICMPV6, &b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }
}

impl NdpRepr {
    /// Writes type, code, a zero checksum and the body.
    fn emit_body(&self, b: &mut Vec<u8>) {
        match self {
            NdpRepr::RouterSolicit { source_lladdr } => {
                b.extend_from_slice(&[ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0]);
                if let Some(m) = source_lladdr {
                    emit_lladdr(b, OPT_SOURCE_LLADDR, m);
                }
            }
            NdpRepr::RouterAdvert {
                hop_limit,
                managed,
                other,
                router_lifetime,
                reachable_time,
                retrans_time,
                source_lladdr,
                mtu,
                prefixes,
                rdnss,
                dnssl,
            } => {
                let flags = (u8::from(*managed) << 7) | (u8::from(*other) << 6);
                b.extend_from_slice(&[ROUTER_ADVERT, 0, 0, 0, *hop_limit, flags]);
                b.extend_from_slice(&router_lifetime.to_be_bytes());
                b.extend_from_slice(&reachable_time.to_be_bytes());
                b.extend_from_slice(&retrans_time.to_be_bytes());
                if let Some(m) = source_lladdr {
                    emit_lladdr(b, OPT_SOURCE_LLADDR, m);
                }
                if let Some(mtu) = mtu {
                    b.extend_from_slice(&[OPT_MTU, 1, 0, 0]);
                    b.extend_from_slice(&mtu.to_be_bytes());
                }
                for p in prefixes {
                    let flags = (u8::from(p.on_link) << 7) | (u8::from(p.autonomous) << 6);
                    b.extend_from_slice(&[OPT_PREFIX_INFO, 4, p.prefix_len, flags]);
                    b.extend_from_slice(&p.valid_lifetime.to_be_bytes());
                    b.extend_from_slice(&p.preferred_lifetime.to_be_bytes());
                    b.extend_from_slice(&[0; 4]);
                    b.extend_from_slice(&p.prefix.octets());
                }
                for r in rdnss {
                    // At most 127 servers fit the 8-bit length (1 + 2n units of 8 bytes).
                    let servers = &r.servers[..r.servers.len().min(127)];
                    if servers.is_empty() {
                        continue;
                    }
                    b.extend_from_slice(&[OPT_RDNSS, (1 + 2 * servers.len()) as u8, 0, 0]);
                    b.extend_from_slice(&r.lifetime.to_be_bytes());
                    for s in servers {
                        b.extend_from_slice(&s.octets());
                    }
                }
                for d in dnssl {
                    let mut names = Vec::new();
                    for dom in d.domains.iter().filter(|d| valid_domain(d)) {
                        encode_name(&mut names, dom);
                    }
                    if names.is_empty() {
                        continue;
                    }
                    names.resize(names.len().div_ceil(8) * 8, 0);
                    let units = 1 + names.len() / 8;
                    if units > 255 {
                        continue;
                    }
                    b.extend_from_slice(&[OPT_DNSSL, units as u8, 0, 0]);
                    b.extend_from_slice(&d.lifetime.to_be_bytes());
                    b.extend_from_slice(&names);
                }
            }
            NdpRepr::NeighborSolicit {
                target,
                source_lladdr,
            } => {
                b.extend_from_slice(&[NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0]);
                b.extend_from_slice(&target.octets());
                if let Some(m) = source_lladdr {
                    emit_lladdr(b, OPT_SOURCE_LLADDR, m);
                }
            }
            NdpRepr::NeighborAdvert {
                router,
                solicited,
                override_,
                target,
                target_lladdr,
            } => {
                let flags = (u8::from(*router) << 7)
                    | (u8::from(*solicited) << 6)
                    | (u8::from(*override_) << 5);
                b.extend_from_slice(&[NEIGHBOR_ADVERT, 0, 0, 0, flags, 0, 0, 0]);
                b.extend_from_slice(&target.octets());
                if let Some(m) = target_lladdr {
                    emit_lladdr(b, OPT_TARGET_LLADDR, m);
                }
            }
        }
    }
}

fn emit_lladdr(b: &mut Vec<u8>, kind: u8, m: &Mac) {
    b.extend_from_slice(&[kind, 1]);
    b.extend_from_slice(m);
}

/// Whether `d` can go into a DNSSL option: dot-separated labels of 1-63 letters, digits, `-`
/// or `_`, at most 253 characters (a trailing dot is allowed).
pub fn valid_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// Appends `d` as uncompressed DNS labels ending in the root label (assumes [`valid_domain`]).
pub(crate) fn encode_name(out: &mut Vec<u8>, d: &str) {
    let d = d.strip_suffix('.').unwrap_or(d);
    for l in d.split('.') {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(o)
}

/// The options of one NDP message, as far as the gateway reads them. The first copy of a
/// single-valued option counts; unknown options are skipped (RFC 4861 §4.6).
#[derive(Default)]
struct Options {
    source_lladdr: Option<Mac>,
    target_lladdr: Option<Mac>,
    mtu: Option<u32>,
    prefixes: Vec<PrefixInfo>,
    rdnss: Vec<Rdnss>,
    dnssl: Vec<Dnssl>,
}

impl Options {
    fn parse(mut b: &[u8]) -> Result<Self, Icmpv6Error> {
        let mut o = Options::default();
        while !b.is_empty() {
            if b.len() < 2 {
                return Err(Icmpv6Error::Truncated);
            }
            let (kind, units) = (b[0], usize::from(b[1]));
            let len = units * 8;
            // A zero length would never advance: RFC 4861 says drop the whole message.
            if units == 0 || len > b.len() {
                return Err(Icmpv6Error::BadOption(kind));
            }
            let opt = &b[..len];
            match kind {
                OPT_SOURCE_LLADDR | OPT_TARGET_LLADDR => {
                    // Ethernet: exactly one unit (RFC 2464 §8).
                    if units != 1 {
                        return Err(Icmpv6Error::BadOption(kind));
                    }
                    let m = [opt[2], opt[3], opt[4], opt[5], opt[6], opt[7]];
                    let slot = if kind == OPT_SOURCE_LLADDR {
                        &mut o.source_lladdr
                    } else {
                        &mut o.target_lladdr
                    };
                    slot.get_or_insert(m);
                }
                OPT_PREFIX_INFO => {
                    if units != 4 || opt[2] > 128 {
                        return Err(Icmpv6Error::BadOption(kind));
                    }
                    o.prefixes.push(PrefixInfo {
                        prefix_len: opt[2],
                        on_link: opt[3] & 0x80 != 0,
                        autonomous: opt[3] & 0x40 != 0,
                        valid_lifetime: be32(opt, 4),
                        preferred_lifetime: be32(opt, 8),
                        prefix: addr_at(opt, 16),
                    });
                }
                OPT_MTU => {
                    if units != 1 {
                        return Err(Icmpv6Error::BadOption(kind));
                    }
                    o.mtu.get_or_insert(be32(opt, 4));
                }
                OPT_RDNSS => {
                    if units < 3 || units % 2 == 0 {
                        return Err(Icmpv6Error::BadOption(kind));
                    }
                    let servers: Vec<Ipv6Addr> =
                        opt[8..].chunks_exact(16).map(|c| addr_at(c, 0)).collect();
                    if servers.iter().any(|s| s.is_multicast()) {
                        return Err(Icmpv6Error::BadAddress);
                    }
                    o.rdnss.push(Rdnss {
                        lifetime: be32(opt, 4),
                        servers,
                    });
                }
                OPT_DNSSL => {
                    if units < 2 {
                        return Err(Icmpv6Error::BadOption(kind));
                    }
                    o.dnssl.push(Dnssl {
                        lifetime: be32(opt, 4),
                        domains: decode_names(&opt[8..])?,
                    });
                }
                _ => {}
            }
            b = &b[len..];
        }
        Ok(o)
    }
}

/// Uncompressed domain names, each ending in a zero label, then zero padding (RFC 8106 §5.2).
fn decode_names(mut b: &[u8]) -> Result<Vec<String>, Icmpv6Error> {
    let mut names = Vec::new();
    while let Some(&first) = b.first() {
        if first == 0 {
            // Padding (or an empty name, which carries nothing).
            b = &b[1..];
            continue;
        }
        let mut name = String::new();
        loop {
            let Some(&l) = b.first() else {
                return Err(Icmpv6Error::BadDomain);
            };
            b = &b[1..];
            if l == 0 {
                break;
            }
            let l = usize::from(l);
            if l > 63 || l > b.len() {
                return Err(Icmpv6Error::BadDomain);
            }
            let label = &b[..l];
            if !label
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
            {
                return Err(Icmpv6Error::BadDomain);
            }
            if !name.is_empty() {
                name.push('.');
            }
            name.extend(label.iter().map(|&c| char::from(c)));
            if name.len() > 253 {
                return Err(Icmpv6Error::BadDomain);
            }
            b = &b[l..];
        }
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().expect("addr")
    }
    const SRC: &str = "fe80::5054:ff:fe12:3456";
    const DST: &str = "fe80::5055:aff:fe00:202";
    const MAC: Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn roundtrip(r: &Icmpv6Repr<'_>) -> Vec<u8> {
        let b = r.to_bytes(a(SRC), a(DST));
        let back = Icmpv6Repr::parse(a(SRC), a(DST), &b).expect("own bytes parse");
        assert_eq!(&back, r);
        assert_eq!(back.to_bytes(a(SRC), a(DST)), b, "emit is stable");
        b
    }

    fn ra() -> NdpRepr {
        NdpRepr::RouterAdvert {
            hop_limit: 64,
            managed: false,
            other: true,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_time: 0,
            source_lladdr: Some(MAC),
            mtu: Some(65520),
            prefixes: vec![PrefixInfo {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: 86400,
                preferred_lifetime: 14400,
                prefix: a("fec0::"),
            }],
            rdnss: vec![Rdnss {
                lifetime: 1800,
                servers: vec![a("fec0::3"), a("fec0::4")],
            }],
            dnssl: vec![Dnssl {
                lifetime: 1800,
                domains: vec!["example.org".into(), "a-b.internal".into()],
            }],
        }
    }

    #[test]
    fn errors_and_echo_roundtrip() {
        let inv = [0x60u8; 48];
        roundtrip(&Icmpv6Repr::DstUnreachable {
            code: CODE_PORT_UNREACHABLE,
            invoking: &inv,
        });
        let b = roundtrip(&Icmpv6Repr::PacketTooBig {
            mtu: 1500,
            invoking: &inv,
        });
        assert_eq!(&b[..8], &[2, 0, b[2], b[3], 0, 0, 0x05, 0xdc]);
        roundtrip(&Icmpv6Repr::TimeExceeded {
            code: CODE_HOP_LIMIT,
            invoking: &inv,
        });
        roundtrip(&Icmpv6Repr::ParamProblem {
            code: CODE_UNKNOWN_OPTION,
            pointer: 42,
            invoking: &inv,
        });
        roundtrip(&Icmpv6Repr::EchoRequest {
            ident: 7,
            seq: 9,
            data: b"ping",
        });
        roundtrip(&Icmpv6Repr::EchoReply {
            ident: 7,
            seq: 9,
            data: b"",
        });
        roundtrip(&Icmpv6Repr::Other {
            kind: 143,
            code: 0,
            body: &[0, 0, 0, 1, 4, 0, 0, 0],
        });
    }

    #[test]
    fn errors_quote_at_most_the_minimum_mtu() {
        let big = vec![0x60u8; 3000];
        let b = Icmpv6Repr::DstUnreachable {
            code: 0,
            invoking: &big,
        }
        .to_bytes(a(SRC), a(DST));
        assert_eq!(b.len() + 40, MIN_MTU);
        assert!(Icmpv6Repr::parse(a(SRC), a(DST), &b).is_ok());
    }

    #[test]
    fn ndp_roundtrip() {
        roundtrip(&Icmpv6Repr::Ndp(ra()));
        roundtrip(&Icmpv6Repr::Ndp(NdpRepr::RouterSolicit {
            source_lladdr: Some(MAC),
        }));
        roundtrip(&Icmpv6Repr::Ndp(NdpRepr::RouterSolicit {
            source_lladdr: None,
        }));
        roundtrip(&Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
            target: a("fec0::2"),
            source_lladdr: Some(MAC),
        }));
        for (r, s, o) in [
            (true, true, true),
            (false, false, true),
            (true, false, false),
        ] {
            let b = roundtrip(&Icmpv6Repr::Ndp(NdpRepr::NeighborAdvert {
                router: r,
                solicited: s,
                override_: o,
                target: a("fec0::3"),
                target_lladdr: Some(MAC),
            }));
            assert_eq!(b[4] >> 5, u8::from(r) << 2 | u8::from(s) << 1 | u8::from(o));
        }
    }

    #[test]
    fn ra_wire_layout() {
        let b = Icmpv6Repr::Ndp(ra()).to_bytes(a(SRC), a(DST));
        assert_eq!(&b[4..8], &[64, 0x40, 0x07, 0x08]);
        // SLLA at 16, MTU at 24, prefix at 32, RDNSS at 64, DNSSL at 104.
        assert_eq!(&b[16..18], &[1, 1]);
        assert_eq!(&b[24..32], &[5, 1, 0, 0, 0, 0, 0xff, 0xf0]);
        assert_eq!(&b[32..36], &[3, 4, 64, 0xc0]);
        assert_eq!(&b[64..66], &[25, 5]);
        assert_eq!(b[104], 31);
        // "example.org" (13) + "a-b.internal" (14) = 27 bytes, padded to 32: 5 units.
        assert_eq!(b[105], 5);
        assert_eq!(&b[112..120], b"\x07example");
        assert_eq!(b.len(), 104 + 40);
    }

    fn with_checksum(mut b: Vec<u8>) -> Vec<u8> {
        b[2] = 0;
        b[3] = 0;
        let c = upper_checksum(a(SRC), a(DST), NH_ICMPV6, &b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn malformed_input_is_an_error() {
        let p = |b: Vec<u8>| Icmpv6Repr::parse(a(SRC), a(DST), &with_checksum(b)).map(|_| ());
        let e = Err;
        assert_eq!(p(vec![128, 0, 0, 0]), e(Icmpv6Error::Truncated));
        assert_eq!(p(vec![1, 0, 0, 0, 0, 0]), e(Icmpv6Error::Truncated));
        assert_eq!(
            p(vec![134, 0, 0, 0, 64, 0, 0, 0]),
            e(Icmpv6Error::Truncated)
        );
        assert_eq!(p(vec![135, 0, 0, 0, 0, 0, 0, 0]), e(Icmpv6Error::Truncated));
        let ns = |opts: &[u8]| {
            let mut b = vec![135, 0, 0, 0, 0, 0, 0, 0];
            b.extend_from_slice(&a("fec0::2").octets());
            b.extend_from_slice(opts);
            b
        };
        assert_eq!(p(ns(&[])), Ok(()));
        let mut coded = ns(&[]);
        coded[1] = 1;
        assert_eq!(p(coded), e(Icmpv6Error::BadCode));
        // Zero-length option: must not loop.
        assert_eq!(
            p(ns(&[1, 0, 0, 0, 0, 0, 0, 0])),
            e(Icmpv6Error::BadOption(1))
        );
        assert_eq!(p(ns(&[99, 0])), e(Icmpv6Error::BadOption(99)));
        // Option longer than the message; a lone option byte.
        assert_eq!(
            p(ns(&[1, 2, 0, 0, 0, 0, 0, 0])),
            e(Icmpv6Error::BadOption(1))
        );
        assert_eq!(p(ns(&[1])), e(Icmpv6Error::Truncated));
        // Link-layer address option of two units on Ethernet.
        assert_eq!(
            p(ns(&[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
            e(Icmpv6Error::BadOption(1))
        );
        // Unknown options are skipped.
        assert_eq!(p(ns(&[200, 1, 0, 0, 0, 0, 0, 0])), Ok(()));
        // Multicast target.
        let mut m = vec![136, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&a("ff02::1").octets());
        assert_eq!(p(m), e(Icmpv6Error::BadAddress));
        // Bad checksum.
        let mut good = with_checksum(ns(&[]));
        good[10] ^= 1;
        assert_eq!(
            Icmpv6Repr::parse(a(SRC), a(DST), &good).err(),
            Some(Icmpv6Error::BadChecksum)
        );
        let ra = |opts: &[u8]| {
            let mut b = vec![134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            b.extend_from_slice(opts);
            b
        };
        // RDNSS of even length, of too few units; prefix option of the wrong size.
        assert_eq!(
            p(ra(&[25, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
            e(Icmpv6Error::BadOption(25))
        );
        assert_eq!(
            p(ra(&[25, 1, 0, 0, 0, 0, 0, 0])),
            e(Icmpv6Error::BadOption(25))
        );
        assert_eq!(
            p(ra(&[3, 1, 64, 0, 0, 0, 0, 0])),
            e(Icmpv6Error::BadOption(3))
        );
        // DNSSL with a label running past the option, and with a bad character.
        let mut d = vec![31, 2, 0, 0, 0, 0, 0, 0, 9, b'a', b'b', 0, 0, 0, 0, 0];
        assert_eq!(p(ra(&d)), e(Icmpv6Error::BadDomain));
        d[8..12].copy_from_slice(&[2, b'a', b'/', 0]);
        assert_eq!(p(ra(&d)), e(Icmpv6Error::BadDomain));
        d[8..12].copy_from_slice(&[2, b'a', b'b', 0]);
        assert_eq!(p(ra(&d)), Ok(()));
        // A name without its terminating zero label.
        let d = [
            31, 2, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c', 3, b'd', b'e', b'f',
        ];
        assert_eq!(p(ra(&d)), e(Icmpv6Error::BadDomain));
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        let full = Icmpv6Repr::Ndp(ra()).to_bytes(a(SRC), a(DST));
        for n in 0..=full.len() {
            let _ = Icmpv6Packet::parse(&full[..n]).and_then(|p| Icmpv6Repr::parse_unchecked(&p));
        }
        for i in 0..full.len() {
            for bit in 0..8 {
                let mut b = full.clone();
                b[i] ^= 1 << bit;
                let _ = Icmpv6Packet::parse(&b).and_then(|p| Icmpv6Repr::parse_unchecked(&p));
            }
        }
    }

    #[test]
    fn domain_validation() {
        assert!(valid_domain("example.org") && valid_domain("example.org."));
        assert!(!valid_domain("") && !valid_domain("a..b") && !valid_domain("a b"));
        assert!(!valid_domain(&"x".repeat(64)));
        // Invalid domains are left out of the emitted option instead of producing garbage.
        let r = Icmpv6Repr::Ndp(NdpRepr::RouterAdvert {
            hop_limit: 0,
            managed: false,
            other: false,
            router_lifetime: 0,
            reachable_time: 0,
            retrans_time: 0,
            source_lladdr: None,
            mtu: None,
            prefixes: vec![],
            rdnss: vec![],
            dnssl: vec![Dnssl {
                lifetime: 5,
                domains: vec!["bad domain".into(), "ok.example".into()],
            }],
        });
        let b = r.to_bytes(a(SRC), a(DST));
        match Icmpv6Repr::parse(a(SRC), a(DST), &b).expect("parses") {
            Icmpv6Repr::Ndp(NdpRepr::RouterAdvert { dnssl, .. }) => {
                assert_eq!(dnssl[0].domains, vec!["ok.example".to_string()]);
            }
            other => panic!("not an RA: {other:?}"),
        }
    }
}
