//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers: a version-independent view and builder.

use super::{be16, checksum, WireError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 Protocol / IPv6 Next Header number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// Protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// Protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// Next Header number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// IPv4 header length without options, in bytes (IHL 5).
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header length in bytes.
pub const IPV6_HEADER_LEN: usize = 40;
/// TTL / Hop Limit of every packet the gateway originates.
pub const DEFAULT_TTL: u8 = 64;

/// A parsed IP packet: addresses, protocol and the transport payload (trimmed to the length field).
#[derive(Clone, Copy, Debug)]
pub struct IpPacket<'a> {
    /// Source address (v4 bytes 12..16, v6 bytes 8..24).
    pub src: IpAddr,
    /// Destination address (v4 bytes 16..20, v6 bytes 24..40).
    pub dst: IpAddr,
    /// IPv4 Protocol (byte 9) or IPv6 Next Header (byte 6), e.g. [`PROTO_TCP`].
    pub proto: u8,
    /// IPv4 TTL (byte 8) or IPv6 Hop Limit (byte 7).
    pub ttl: u8,
    /// The IP header bytes (for ICMP errors quoting the packet).
    pub header: &'a [u8],
    /// The transport bytes, cut to the Total Length / Payload Length field.
    pub payload: &'a [u8],
}

impl<'a> IpPacket<'a> {
    /// Parses and validates an IPv4 packet, including its header checksum. Fragments are refused.
    pub fn parse_v4(b: &'a [u8]) -> Result<Self, WireError> {
        if b.len() < IPV4_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let ihl = usize::from(b[0] & 0x0f) * 4;
        if ihl < IPV4_HEADER_LEN || ihl > b.len() {
            return Err(WireError::BadHeaderLength);
        }
        let total = usize::from(be16(b, 2));
        if total < ihl || total > b.len() {
            return Err(WireError::BadLength);
        }
        if checksum::checksum(&b[..ihl]) != 0 {
            return Err(WireError::BadChecksum);
        }
        let frag = be16(b, 6);
        // More-fragments set, or a non-zero offset.
        if frag & 0x2000 != 0 || frag & 0x1fff != 0 {
            return Err(WireError::Fragment);
        }
        Ok(IpPacket {
            src: IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])),
            dst: IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
            proto: b[9],
            ttl: b[8],
            header: &b[..ihl],
            payload: &b[ihl..total],
        })
    }

    /// Parses an IPv6 packet without extension headers (those are refused as unsupported for now).
    pub fn parse_v6(b: &'a [u8]) -> Result<Self, WireError> {
        if b.len() < IPV6_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(WireError::BadVersion);
        }
        let plen = usize::from(be16(b, 4));
        if IPV6_HEADER_LEN + plen > b.len() {
            return Err(WireError::BadLength);
        }
        let addr = |at: usize| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(o))
        };
        let proto = b[6];
        if !matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_ICMPV6) {
            return Err(WireError::Unsupported);
        }
        Ok(IpPacket {
            src: addr(8),
            dst: addr(24),
            proto,
            ttl: b[7],
            header: &b[..IPV6_HEADER_LEN],
            payload: &b[IPV6_HEADER_LEN..IPV6_HEADER_LEN + plen],
        })
    }
}

/// Length of the IP header `write_header` writes for this address family.
pub fn header_len(addr: IpAddr) -> usize {
    match addr {
        IpAddr::V4(_) => IPV4_HEADER_LEN,
        IpAddr::V6(_) => IPV6_HEADER_LEN,
    }
}

/// Writes an IP header (v4 with checksum, or v6) for `payload_len` bytes of `proto` into `buf`.
/// Returns the header length. Both addresses must be of the same family.
pub fn write_header(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload_len: usize,
) -> usize {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (IPV4_HEADER_LEN + payload_len) as u16;
            let h = &mut buf[..IPV4_HEADER_LEN];
            h[0] = 0x45;
            h[1] = 0;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[4..6].copy_from_slice(&0u16.to_be_bytes());
            h[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            h[8] = DEFAULT_TTL;
            h[9] = proto;
            h[10..12].copy_from_slice(&[0, 0]);
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = checksum::checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            IPV4_HEADER_LEN
        }
        _ => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(v) => v,
                IpAddr::V4(v) => v.to_ipv6_mapped(),
            };
            let h = &mut buf[..IPV6_HEADER_LEN];
            h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
            h[6] = proto;
            h[7] = DEFAULT_TTL;
            h[8..24].copy_from_slice(&v6(src).octets());
            h[24..40].copy_from_slice(&v6(dst).octets());
            IPV6_HEADER_LEN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_roundtrip_and_rejections() {
        let mut b = vec![0u8; 28];
        let s = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15));
        let d = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));
        write_header(&mut b, s, d, PROTO_UDP, 8);
        let p = IpPacket::parse_v4(&b).expect("valid");
        assert_eq!(
            (p.src, p.dst, p.proto, p.payload.len()),
            (s, d, PROTO_UDP, 8)
        );
        let mut bad = b.clone();
        bad[15] ^= 1;
        assert_eq!(IpPacket::parse_v4(&bad).err(), Some(WireError::BadChecksum));
        assert_eq!(
            IpPacket::parse_v4(&b[..10]).err(),
            Some(WireError::Truncated)
        );
        let mut long = b.clone();
        long[3] = 200;
        assert!(IpPacket::parse_v4(&long).is_err());
        let mut frag = b.clone();
        frag[6] = 0x20;
        frag[10] = 0;
        frag[11] = 0;
        let c = checksum::checksum(&frag[..20]);
        frag[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(IpPacket::parse_v4(&frag).err(), Some(WireError::Fragment));
    }

    #[test]
    fn v6_parse_write_parse_roundtrip() {
        let s = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 15));
        let d = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let mut b = vec![0u8; IPV6_HEADER_LEN + 8];
        assert_eq!(write_header(&mut b, s, d, PROTO_UDP, 8), IPV6_HEADER_LEN);
        let p = IpPacket::parse_v6(&b).expect("valid");
        assert_eq!(
            (p.src, p.dst, p.proto, p.ttl, p.payload.len()),
            (s, d, PROTO_UDP, DEFAULT_TTL, 8)
        );
        let mut again = vec![0u8; b.len()];
        write_header(&mut again, p.src, p.dst, p.proto, p.payload.len());
        assert_eq!(again, b);
        assert_eq!(
            IpPacket::parse_v6(&b[..IPV6_HEADER_LEN - 1]).err(),
            Some(WireError::Truncated)
        );
        let mut v4 = b.clone();
        v4[0] = 0x45;
        assert_eq!(IpPacket::parse_v6(&v4).err(), Some(WireError::BadVersion));
    }

    #[test]
    fn v4_write_parse_write_is_identical() {
        let s = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15));
        let d = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mut b = vec![0u8; IPV4_HEADER_LEN + 4];
        write_header(&mut b, s, d, PROTO_TCP, 4);
        let p = IpPacket::parse_v4(&b).expect("valid");
        assert_eq!(p.header, &b[..IPV4_HEADER_LEN]);
        let mut again = vec![0u8; b.len()];
        write_header(&mut again, p.src, p.dst, p.proto, p.payload.len());
        assert_eq!(again, b);
    }
}
