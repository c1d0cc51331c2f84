//! UDP (RFC 768).

use super::{be16, checksum, ip::PROTO_UDP, WireError};
use std::net::IpAddr;

pub const HEADER_LEN: usize = 8;

#[derive(Clone, Copy, Debug)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
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
