//! UDP (RFC 768).

use super::{be16, checksum, ip::PROTO_UDP, WireError};
use std::net::IpAddr;

/// UDP header length in bytes.
pub const HEADER_LEN: usize = 8;

/// A length- and checksum-verified UDP datagram.
#[derive(Clone, Copy, Debug)]
pub struct UdpDatagram<'a> {
    /// Source port (bytes 0..2, big-endian).
    pub src_port: u16,
    /// Destination port (bytes 2..4, big-endian).
    pub dst_port: u16,
    /// Data after the header, cut to the UDP length field (trailing padding dropped).
    pub payload: &'a [u8],
}

impl<'a> UdpDatagram<'a> {
    /// Parses and checks the checksum (zero means "none" on IPv4 only).
    pub fn parse(b: &'a [u8], src: IpAddr, dst: IpAddr) -> Result<Self, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(be16(b, 4));
        if len < HEADER_LEN || len > b.len() {
            return Err(WireError::BadLength);
        }
        let b = &b[..len];
        let sum = be16(b, 6);
        if (sum != 0 || src.is_ipv6()) && checksum::transport(src, dst, PROTO_UDP, b) != 0 {
            return Err(WireError::BadChecksum);
        }
        Ok(UdpDatagram {
            src_port: be16(b, 0),
            dst_port: be16(b, 2),
            payload: &b[HEADER_LEN..],
        })
    }
}

/// Writes a UDP header for the payload already at `seg[8..]`, with its checksum.
pub fn write(seg: &mut [u8], src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16) {
    let len = seg.len() as u16;
    seg[0..2].copy_from_slice(&src_port.to_be_bytes());
    seg[2..4].copy_from_slice(&dst_port.to_be_bytes());
    seg[4..6].copy_from_slice(&len.to_be_bytes());
    seg[6..8].copy_from_slice(&[0, 0]);
    let mut c = checksum::transport(src, dst, PROTO_UDP, seg);
    if c == 0 {
        c = 0xffff;
    }
    seg[6..8].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn roundtrip(src: IpAddr, dst: IpAddr) {
        let mut b = vec![0u8; HEADER_LEN + 3];
        b[HEADER_LEN..].copy_from_slice(b"abc");
        write(&mut b, src, dst, 5000, 53);
        let d = UdpDatagram::parse(&b, src, dst).expect("valid");
        assert_eq!((d.src_port, d.dst_port, d.payload), (5000, 53, &b"abc"[..]));
        let mut again = vec![0u8; HEADER_LEN + d.payload.len()];
        again[HEADER_LEN..].copy_from_slice(d.payload);
        write(&mut again, src, dst, d.src_port, d.dst_port);
        assert_eq!(again, b);
        let mut bad = b.clone();
        bad[HEADER_LEN] ^= 1;
        assert_eq!(
            UdpDatagram::parse(&bad, src, dst).err(),
            Some(WireError::BadChecksum)
        );
        let mut long = b.clone();
        long[5] = 200;
        assert_eq!(
            UdpDatagram::parse(&long, src, dst).err(),
            Some(WireError::BadLength)
        );
    }

    #[test]
    fn parse_write_parse_roundtrip_v4_and_v6() {
        roundtrip(
            IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        );
        roundtrip(
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 15)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        );
    }

    #[test]
    fn zero_checksum_means_none_on_v4_only() {
        let (s4, d4) = (
            IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        );
        let mut b = vec![0u8; HEADER_LEN + 1];
        write(&mut b, s4, d4, 1, 2);
        b[6] = 0;
        b[7] = 0;
        b[HEADER_LEN] = 0x55;
        assert!(UdpDatagram::parse(&b, s4, d4).is_ok());
        let (s6, d6) = (
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        );
        assert_eq!(
            UdpDatagram::parse(&b, s6, d6).err(),
            Some(WireError::BadChecksum)
        );
    }
}
