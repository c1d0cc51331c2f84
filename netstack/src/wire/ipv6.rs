//! IPv6 (RFC 8200): a zero-copy header view, a `Repr` for building headers, a bounded walk over
//! extension headers to the upper-layer protocol, and the upper-layer checksum (pseudo-header).
//!
//! [`Ipv6Packet::parse`] checks the fixed header once (version, payload length within the buffer);
//! accessors then cannot fail. [`Ipv6Packet::upper_layer`] walks hop-by-hop, routing, fragment,
//! destination-options and AH headers, at most [`MAX_EXT_HEADERS`] of them, and says where the
//! upper-layer data starts. Jumbograms (payload length 0 with a Jumbo Payload option) and unknown
//! options whose action bits demand a discard are errors, so they are counted drops, never panics.

use super::{be16, be32, checksum, WireError};
use std::net::{IpAddr, Ipv6Addr};

/// IPv6 fixed header length in bytes.
pub const HEADER_LEN: usize = 40;
/// Next Header 0, Hop-by-Hop Options.
pub const NH_HOP_BY_HOP: u8 = 0;
/// Next Header 6, TCP.
pub const NH_TCP: u8 = 6;
/// Next Header 17, UDP.
pub const NH_UDP: u8 = 17;
/// Next Header 43, Routing header.
pub const NH_ROUTING: u8 = 43;
/// Next Header 44, Fragment header.
pub const NH_FRAGMENT: u8 = 44;
/// Next Header 50, ESP (not walked: its contents are encrypted).
pub const NH_ESP: u8 = 50;
/// Next Header 51, Authentication Header.
pub const NH_AH: u8 = 51;
/// Next Header 58, ICMPv6.
pub const NH_ICMPV6: u8 = 58;
/// Next Header 59, No Next Header.
pub const NH_NONE: u8 = 59;
/// Next Header 60, Destination Options.
pub const NH_DEST_OPTS: u8 = 60;
/// The most extension headers walked before the packet is refused (RFC 8200 needs at most 6 in
/// a sane packet; a chain of hundreds is an attack on the walker).
pub const MAX_EXT_HEADERS: usize = 8;
/// Hop limit NDP messages must arrive with (RFC 4861).
pub const NDP_HOP_LIMIT: u8 = 255;

/// Why an IPv6 packet was refused. Every variant is a counted drop for the gateway; the
/// `BadOption` / `UnknownHeader`-style ones carry what an ICMPv6 Parameter Problem would need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Error {
    /// Shorter than the fixed header, or an extension header runs past the payload.
    Truncated,
    /// Version field is not 6.
    BadVersion,
    /// Payload length says more than the buffer holds.
    BadLength,
    /// Payload length 0 with a Jumbo Payload option (RFC 2675): not supported on any link here.
    Jumbogram,
    /// More than [`MAX_EXT_HEADERS`] extension headers.
    TooManyHeaders,
    /// A hop-by-hop header that does not directly follow the fixed header (RFC 8200 §4.1).
    HopByHopNotFirst,
    /// An unrecognised option whose action bits say "discard" (RFC 8200 §4.2). `icmp`: the
    /// sender is owed a Parameter Problem (code 2) pointing at byte `pointer` of the packet.
    BadOption {
        /// Byte offset of the option's type octet from the start of the IPv6 header.
        pointer: u32,
        /// Action bits 10 or 11: a Parameter Problem is owed (for 11 only if the destination was
        /// not multicast, which the caller checks); `false` for 01, discard silently.
        icmp: bool,
    },
    /// A malformed option TLV inside hop-by-hop/destination options.
    BadOptionLength,
    /// A fragment header with reserved bits set, or a non-final fragment whose length is not a
    /// multiple of 8.
    BadFragment,
}

impl std::fmt::Display for Ipv6Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ipv6Error::Truncated => f.write_str("truncated IPv6 packet"),
            Ipv6Error::BadVersion => f.write_str("bad IP version"),
            Ipv6Error::BadLength => f.write_str("IPv6 payload length exceeds the frame"),
            Ipv6Error::Jumbogram => f.write_str("IPv6 jumbogram (unsupported)"),
            Ipv6Error::TooManyHeaders => write!(f, "more than {MAX_EXT_HEADERS} extension headers"),
            Ipv6Error::HopByHopNotFirst => f.write_str("hop-by-hop header not first"),
            Ipv6Error::BadOption { pointer, .. } => {
                write!(f, "unrecognised IPv6 option at byte {pointer}")
            }
            Ipv6Error::BadOptionLength => f.write_str("malformed IPv6 option"),
            Ipv6Error::BadFragment => f.write_str("malformed IPv6 fragment header"),
        }
    }
}

impl std::error::Error for Ipv6Error {}

impl From<Ipv6Error> for WireError {
    fn from(e: Ipv6Error) -> Self {
        match e {
            Ipv6Error::Truncated => WireError::Truncated,
            Ipv6Error::BadVersion => WireError::BadVersion,
            Ipv6Error::BadLength | Ipv6Error::Jumbogram => WireError::BadLength,
            Ipv6Error::BadFragment => WireError::Fragment,
            _ => WireError::Unsupported,
        }
    }
}

/// A validated IPv6 packet (fixed header checked; the buffer is trimmed to 40 + payload length).
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Packet<'a> {
    buf: &'a [u8],
}

/// Where the upper-layer data of a packet starts, after the extension headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperLayer<'a> {
    /// The upper-layer protocol (TCP, UDP, ICMPv6, [`NH_NONE`], or anything else unwalked,
    /// e.g. ESP).
    pub proto: u8,
    /// Offset of the upper-layer data from the start of the IPv6 header.
    pub offset: usize,
    /// The upper-layer data (the rest of the payload).
    pub data: &'a [u8],
    /// Set when a fragment header was seen (including atomic fragments, RFC 6946).
    pub fragment: Option<FragmentInfo>,
    /// Extension headers walked.
    pub ext_headers: usize,
    /// Segments left of a routing header, if one was seen.
    pub segments_left: Option<u8>,
}

impl UpperLayer<'_> {
    /// A fragment other than an atomic one (offset 0 and no more fragments): the upper-layer data
    /// is incomplete and needs reassembly (or a counted drop).
    pub fn is_fragmented(&self) -> bool {
        self.fragment.is_some_and(|f| !f.is_atomic())
    }
}

/// The fields of a fragment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Identification (32 bits, big-endian on the wire).
    pub ident: u32,
    /// Offset of this fragment's data in the original payload, in bytes.
    pub offset: u16,
    /// M flag: more fragments follow.
    pub more: bool,
}

impl FragmentInfo {
    /// An atomic fragment (offset 0, no more fragments): the whole payload is here (RFC 6946).
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

impl<'a> Ipv6Packet<'a> {
    /// Checks the fixed header: length, version, payload length. Extra bytes after the payload
    /// (Ethernet padding) are cut off.
    pub fn parse(b: &'a [u8]) -> Result<Self, Ipv6Error> {
        if b.len() < HEADER_LEN {
            return Err(Ipv6Error::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Ipv6Error::BadVersion);
        }
        let plen = usize::from(be16(b, 4));
        if plen == 0 && b[6] == NH_HOP_BY_HOP && b.len() > HEADER_LEN {
            // Payload length 0 with hop-by-hop: a jumbogram (RFC 2675 §3).
            return Err(Ipv6Error::Jumbogram);
        }
        if HEADER_LEN + plen > b.len() {
            return Err(Ipv6Error::BadLength);
        }
        Ok(Ipv6Packet {
            buf: &b[..HEADER_LEN + plen],
        })
    }
    /// Traffic Class (the 8 bits after the version nibble).
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.buf, 0) >> 4) & 0xff) as u8
    }
    /// Flow Label (low 20 bits of the first word).
    pub fn flow_label(&self) -> u32 {
        be32(self.buf, 0) & 0x000f_ffff
    }
    /// Payload Length (bytes 4..6, big-endian): bytes after the fixed header.
    pub fn payload_len(&self) -> u16 {
        be16(self.buf, 4)
    }
    /// Next Header (byte 6): the first extension header or the upper-layer protocol.
    pub fn next_header(&self) -> u8 {
        self.buf[6]
    }
    /// Hop Limit (byte 7).
    pub fn hop_limit(&self) -> u8 {
        self.buf[7]
    }
    /// Source Address (bytes 8..24).
    pub fn src(&self) -> Ipv6Addr {
        addr_at(self.buf, 8)
    }
    /// Destination Address (bytes 24..40).
    pub fn dst(&self) -> Ipv6Addr {
        addr_at(self.buf, 24)
    }
    /// The fixed header's 40 bytes.
    pub fn header(&self) -> &'a [u8] {
        &self.buf[..HEADER_LEN]
    }
    /// Everything after the fixed header (extension headers and upper-layer data).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
    /// The whole packet (header and payload, without trailing padding).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Walks the extension headers (bounded) to the upper-layer protocol.
    pub fn upper_layer(&self) -> Result<UpperLayer<'a>, Ipv6Error> {
        let b = self.buf;
        let mut nh = self.next_header();
        let mut at = HEADER_LEN;
        let mut count = 0;
        let mut fragment = None;
        let mut segments_left = None;
        loop {
            match nh {
                NH_HOP_BY_HOP | NH_ROUTING | NH_FRAGMENT | NH_DEST_OPTS | NH_AH => {}
                _ => {
                    return Ok(UpperLayer {
                        proto: nh,
                        offset: at,
                        data: &b[at..],
                        fragment,
                        ext_headers: count,
                        segments_left,
                    })
                }
            }
            if count == MAX_EXT_HEADERS {
                return Err(Ipv6Error::TooManyHeaders);
            }
            if nh == NH_HOP_BY_HOP && count != 0 {
                return Err(Ipv6Error::HopByHopNotFirst);
            }
            if b.len() < at + 8 {
                return Err(Ipv6Error::Truncated);
            }
            let next = b[at];
            let len = match nh {
                NH_FRAGMENT => {
                    // Reserved byte and the two reserved bits must be zero (RFC 8200 §4.5).
                    let off_flags = be16(b, at + 2);
                    if b[at + 1] != 0 || off_flags & 0x0006 != 0 {
                        return Err(Ipv6Error::BadFragment);
                    }
                    let info = FragmentInfo {
                        ident: be32(b, at + 4),
                        offset: off_flags & 0xfff8,
                        more: off_flags & 1 == 1,
                    };
                    if fragment.is_some() {
                        return Err(Ipv6Error::BadFragment);
                    }
                    // A non-final fragment's data must be a multiple of 8 bytes (RFC 8200 §4.5).
                    if info.more && !(b.len() - at - 8).is_multiple_of(8) {
                        return Err(Ipv6Error::BadFragment);
                    }
                    fragment = Some(info);
                    8
                }
                NH_AH => (usize::from(b[at + 1]) + 2) * 4,
                _ => (usize::from(b[at + 1]) + 1) * 8,
            };
            if b.len() < at + len {
                return Err(Ipv6Error::Truncated);
            }
            match nh {
                NH_HOP_BY_HOP | NH_DEST_OPTS => walk_options(b, at + 2, at + len)?,
                NH_ROUTING => segments_left = Some(b[at + 3]),
                _ => {}
            }
            count += 1;
            at += len;
            nh = next;
            if fragment.is_some_and(|f| f.offset != 0) {
                // Headers after a non-first fragment header are fragment data, not headers.
                return Ok(UpperLayer {
                    proto: nh,
                    offset: at,
                    data: &b[at..],
                    fragment,
                    ext_headers: count,
                    segments_left,
                });
            }
        }
    }
}

/// Walks the option TLVs of a hop-by-hop or destination-options header in `b[from..to]`.
fn walk_options(b: &[u8], from: usize, to: usize) -> Result<(), Ipv6Error> {
    let mut i = from;
    while i < to {
        let kind = b[i];
        if kind == 0 {
            // Pad1.
            i += 1;
            continue;
        }
        let Some(&len) = b.get(i + 1).filter(|_| i + 1 < to) else {
            return Err(Ipv6Error::BadOptionLength);
        };
        let end = i + 2 + usize::from(len);
        if end > to {
            return Err(Ipv6Error::BadOptionLength);
        }
        match kind {
            // PadN, Router Alert (MLD uses it), Tunnel Encapsulation Limit.
            1 | 5 | 4 => {}
            0xc2 => return Err(Ipv6Error::Jumbogram),
            _ => match kind >> 6 {
                0 => {}
                action => {
                    return Err(Ipv6Error::BadOption {
                        pointer: i as u32,
                        // 01: discard silently; 10: discard and send ICMP; 11: send ICMP only
                        // if the destination was not multicast (the caller knows that).
                        icmp: action != 1,
                    });
                }
            },
        }
        i = end;
    }
    Ok(())
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(o)
}

/// The fixed header as plain values: what [`Ipv6Repr::emit`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source Address.
    pub src: Ipv6Addr,
    /// Destination Address.
    pub dst: Ipv6Addr,
    /// Next Header, e.g. [`NH_ICMPV6`].
    pub next_header: u8,
    /// Payload Length in bytes (everything after the 40-byte header).
    pub payload_len: u16,
    /// Hop Limit.
    pub hop_limit: u8,
    /// Traffic Class (DSCP and ECN).
    pub traffic_class: u8,
    /// Flow Label (20 bits; higher bits are ignored on emit).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// A header with traffic class and flow label 0.
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload_len: u16, hop: u8) -> Self {
        Ipv6Repr {
            src,
            dst,
            next_header,
            payload_len,
            hop_limit: hop,
            traffic_class: 0,
            flow_label: 0,
        }
    }
    /// Copies the fixed header's fields out of a checked packet.
    pub fn parse(p: &Ipv6Packet<'_>) -> Self {
        Ipv6Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        }
    }
    /// Writes the 40-byte header into `buf[..40]`.
    pub fn emit(&self, buf: &mut [u8]) {
        let word =
            (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff);
        buf[0..4].copy_from_slice(&word.to_be_bytes());
        buf[4..6].copy_from_slice(&self.payload_len.to_be_bytes());
        buf[6] = self.next_header;
        buf[7] = self.hop_limit;
        buf[8..24].copy_from_slice(&self.src.octets());
        buf[24..40].copy_from_slice(&self.dst.octets());
    }
    /// The header followed by `payload`, as one packet (payload length set from it).
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_LEN + payload.len()];
        let mut h = *self;
        h.payload_len = payload.len().min(usize::from(u16::MAX)) as u16;
        h.emit(&mut out);
        out[HEADER_LEN..].copy_from_slice(payload);
        out
    }
}

/// The running sum of the IPv6 pseudo-header (RFC 8200 §8.1) for `upper_len` bytes of `proto`.
pub fn pseudo_header_sum(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, upper_len: usize) -> u64 {
    checksum::pseudo_header(IpAddr::V6(src), IpAddr::V6(dst), proto, upper_len)
}

/// The upper-layer checksum of `data` (whose checksum field holds what it holds): 0 over a
/// message with a correct checksum, the value to store when the field is zeroed.
pub fn upper_checksum(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, data: &[u8]) -> u16 {
    !checksum::fold(checksum::add(
        pseudo_header_sum(src, dst, proto, data.len()),
        data,
    ))
}

/// `fe80::/10`.
pub fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1): `ff02::1:ffXX:XXXX`.
pub fn solicited_node(a: &Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// Whether `a` is some solicited-node multicast address.
pub fn is_solicited_node(a: &Ipv6Addr) -> bool {
    let o = a.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]
}

/// The Ethernet multicast MAC of an IPv6 multicast address (RFC 2464 §7): `33:33` + last 32 bits.
pub fn multicast_mac(a: &Ipv6Addr) -> crate::Mac {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// `ff02::1`, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// `ff02::2`, all routers on the link.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// `ff02::1:2`, all DHCPv6 relay agents and servers.
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().expect("addr")
    }

    fn packet(nh: u8, payload: &[u8]) -> Vec<u8> {
        Ipv6Repr::new(a("fec0::15"), a("fec0::2"), nh, 0, 64).packet(payload)
    }

    #[test]
    fn repr_roundtrip() {
        let r = Ipv6Repr {
            src: a("fe80::5054:ff:fe12:3456"),
            dst: a("ff02::1"),
            next_header: NH_ICMPV6,
            payload_len: 8,
            hop_limit: 255,
            traffic_class: 0xb8,
            flow_label: 0xabcde,
        };
        let mut b = vec![0u8; 48];
        r.emit(&mut b);
        let p = Ipv6Packet::parse(&b).expect("valid");
        assert_eq!(Ipv6Repr::parse(&p), r);
        let mut again = vec![0u8; 48];
        Ipv6Repr::parse(&p).emit(&mut again);
        assert_eq!(again, b);
        assert_eq!(p.payload().len(), 8);
        let u = p.upper_layer().expect("no ext");
        assert_eq!((u.proto, u.offset, u.ext_headers), (NH_ICMPV6, 40, 0));
    }

    #[test]
    fn fixed_header_rejections() {
        let b = packet(NH_UDP, &[0; 8]);
        assert_eq!(
            Ipv6Packet::parse(&b[..39]).err(),
            Some(Ipv6Error::Truncated)
        );
        let mut v4 = b.clone();
        v4[0] = 0x45;
        assert_eq!(Ipv6Packet::parse(&v4).err(), Some(Ipv6Error::BadVersion));
        let mut long = b.clone();
        long[5] = 9;
        assert_eq!(Ipv6Packet::parse(&long).err(), Some(Ipv6Error::BadLength));
        // Ethernet padding after the payload is cut off.
        let mut padded = b.clone();
        padded.extend_from_slice(&[0xaa; 10]);
        let p = Ipv6Packet::parse(&padded).expect("padded");
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn jumbograms_refused() {
        // Payload length 0, hop-by-hop with a Jumbo Payload option.
        let mut b = packet(NH_HOP_BY_HOP, &[NH_UDP, 0, 0xc2, 4, 0, 1, 0, 0]);
        b[4] = 0;
        b[5] = 0;
        assert_eq!(Ipv6Packet::parse(&b).err(), Some(Ipv6Error::Jumbogram));
        // The option inside an ordinary-length packet is refused by the walk too.
        let b = packet(NH_HOP_BY_HOP, &[NH_UDP, 0, 0xc2, 4, 0, 1, 0, 0]);
        let p = Ipv6Packet::parse(&b).expect("fixed header fine");
        assert_eq!(p.upper_layer().err(), Some(Ipv6Error::Jumbogram));
    }

    #[test]
    fn walks_every_extension_header_kind() {
        let mut pl = Vec::new();
        // Hop-by-hop: router alert + PadN.
        pl.extend_from_slice(&[NH_DEST_OPTS, 0, 5, 2, 0, 0, 1, 0]);
        // Destination options, 16 bytes: PadN of 12.
        pl.extend_from_slice(&[NH_ROUTING, 1, 1, 12]);
        pl.extend_from_slice(&[0; 12]);
        // Routing header type 4, segments left 0, 8 bytes.
        pl.extend_from_slice(&[NH_AH, 0, 4, 0, 0, 0, 0, 0]);
        // AH, length (3+2)*4 = 20.
        pl.extend_from_slice(&[NH_FRAGMENT, 3]);
        pl.extend_from_slice(&[0; 18]);
        // Atomic fragment header.
        pl.extend_from_slice(&[NH_UDP, 0, 0, 0, 0, 0, 0, 42]);
        pl.extend_from_slice(&[1, 2, 3, 4, 0, 8, 0, 0]);
        let b = packet(NH_HOP_BY_HOP, &pl);
        let u = Ipv6Packet::parse(&b)
            .expect("valid")
            .upper_layer()
            .expect("walk");
        assert_eq!(u.proto, NH_UDP);
        assert_eq!(u.ext_headers, 5);
        assert_eq!(u.offset, 40 + 8 + 16 + 8 + 20 + 8);
        assert_eq!(u.data, &[1, 2, 3, 4, 0, 8, 0, 0]);
        assert_eq!(u.segments_left, Some(0));
        let f = u.fragment.expect("fragment seen");
        assert!(f.is_atomic() && !u.is_fragmented());
        assert_eq!(f.ident, 42);
    }

    #[test]
    fn fragments_reported_and_checked() {
        // First fragment, more to come: 8 bytes of data.
        let b = packet(
            NH_FRAGMENT,
            &[NH_UDP, 0, 0, 1, 0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8],
        );
        let u = Ipv6Packet::parse(&b)
            .expect("valid")
            .upper_layer()
            .expect("walk");
        assert!(u.is_fragmented());
        assert_eq!(
            u.fragment,
            Some(FragmentInfo {
                ident: 7,
                offset: 0,
                more: true
            })
        );
        // Non-first fragment: what follows is data even if it looks like a header.
        let b = packet(
            NH_FRAGMENT,
            &[NH_HOP_BY_HOP, 0, 0, 16, 0, 0, 0, 7, 0, 0, 0, 0],
        );
        let u = Ipv6Packet::parse(&b)
            .expect("valid")
            .upper_layer()
            .expect("walk");
        assert_eq!((u.proto, u.offset), (NH_HOP_BY_HOP, 48));
        assert_eq!(u.fragment.map(|f| f.offset), Some(16));
        // Non-final fragment of 5 bytes; reserved bits; two fragment headers.
        for bad in [
            &[NH_UDP, 0, 0, 1, 0, 0, 0, 7, 1, 2, 3, 4, 5][..],
            &[NH_UDP, 0, 0, 2, 0, 0, 0, 7][..],
            &[NH_UDP, 1, 0, 0, 0, 0, 0, 7][..],
            &[
                NH_FRAGMENT,
                0,
                0,
                0,
                0,
                0,
                0,
                7,
                NH_UDP,
                0,
                0,
                0,
                0,
                0,
                0,
                8,
            ][..],
        ] {
            let b = packet(NH_FRAGMENT, bad);
            let p = Ipv6Packet::parse(&b).expect("fixed header fine");
            assert_eq!(
                p.upper_layer().err(),
                Some(Ipv6Error::BadFragment),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bounded_and_malformed_chains() {
        // Nine destination-options headers: over the limit.
        let mut pl = Vec::new();
        for _ in 0..9 {
            pl.extend_from_slice(&[NH_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        let b = packet(NH_DEST_OPTS, &pl);
        let p = Ipv6Packet::parse(&b).expect("valid");
        assert_eq!(p.upper_layer().err(), Some(Ipv6Error::TooManyHeaders));
        // Eight are fine (the last one says "no next header").
        let mut pl = Vec::new();
        for i in 0..8 {
            let next = if i == 7 { NH_NONE } else { NH_DEST_OPTS };
            pl.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        let b = packet(NH_DEST_OPTS, &pl);
        let u = Ipv6Packet::parse(&b)
            .expect("valid")
            .upper_layer()
            .expect("8 headers");
        assert_eq!((u.proto, u.ext_headers, u.data.len()), (NH_NONE, 8, 0));
        // Hop-by-hop after another header.
        let b = packet(
            NH_DEST_OPTS,
            &[
                NH_HOP_BY_HOP,
                0,
                1,
                4,
                0,
                0,
                0,
                0,
                NH_UDP,
                0,
                1,
                4,
                0,
                0,
                0,
                0,
            ],
        );
        assert_eq!(
            Ipv6Packet::parse(&b).expect("valid").upper_layer().err(),
            Some(Ipv6Error::HopByHopNotFirst)
        );
        // A header longer than the payload; one cut short.
        let b = packet(NH_DEST_OPTS, &[NH_UDP, 5, 1, 4, 0, 0, 0, 0]);
        assert_eq!(
            Ipv6Packet::parse(&b).expect("valid").upper_layer().err(),
            Some(Ipv6Error::Truncated)
        );
        let b = packet(NH_ROUTING, &[NH_UDP, 0, 0]);
        assert_eq!(
            Ipv6Packet::parse(&b).expect("valid").upper_layer().err(),
            Some(Ipv6Error::Truncated)
        );
        // An option TLV running past its header.
        let b = packet(NH_DEST_OPTS, &[NH_UDP, 0, 1, 9, 0, 0, 0, 0]);
        assert_eq!(
            Ipv6Packet::parse(&b).expect("valid").upper_layer().err(),
            Some(Ipv6Error::BadOptionLength)
        );
        // Unknown options: action 00 skipped, 01 silent discard, 10 discard with ICMP.
        let walk = |t: u8| {
            let b = packet(NH_DEST_OPTS, &[NH_UDP, 0, t, 4, 0, 0, 0, 0]);
            Ipv6Packet::parse(&b)
                .expect("valid")
                .upper_layer()
                .map(|u| u.proto)
        };
        assert_eq!(walk(0x1e), Ok(NH_UDP));
        assert_eq!(
            walk(0x5e),
            Err(Ipv6Error::BadOption {
                pointer: 42,
                icmp: false
            })
        );
        assert_eq!(
            walk(0x9e),
            Err(Ipv6Error::BadOption {
                pointer: 42,
                icmp: true
            })
        );
    }

    #[test]
    fn pseudo_header_checksum_matches_rfc_layout() {
        // UDP over IPv6, checked against a naive sum over an explicit pseudo-header.
        let src = a("2001:db8::1");
        let dst = a("2001:db8::2");
        let mut udp = vec![0x12, 0x34, 0x00, 0x35, 0, 11, 0, 0, b'a', b'b', b'c'];
        let c = upper_checksum(src, dst, NH_UDP, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(upper_checksum(src, dst, NH_UDP, &udp), 0);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, NH_UDP]);
        pseudo.extend_from_slice(&udp);
        assert_eq!(checksum::checksum(&pseudo), 0);
        // And the existing UDP parser agrees.
        assert!(super::super::udp::UdpDatagram::parse(&udp, src.into(), dst.into()).is_ok());
    }

    #[test]
    fn multicast_helpers() {
        let x = a("fec0::5054:ff:fe12:3456");
        assert_eq!(solicited_node(&x), a("ff02::1:ff12:3456"));
        assert!(is_solicited_node(&solicited_node(&x)));
        assert!(!is_solicited_node(&ALL_NODES));
        assert_eq!(multicast_mac(&ALL_NODES), [0x33, 0x33, 0, 0, 0, 1]);
        assert!(is_link_local(&a("fe80::1")) && is_link_local(&a("febf::1")));
        assert!(!is_link_local(&a("fec0::1")));
    }
}
