//! ARP for IPv4 over Ethernet (RFC 826).

use super::{be16, WireError};
use crate::Mac;
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet in bytes (RFC 826, hlen 6, plen 4).
pub const LEN: usize = 28;
/// `ar$op` value of an ARP request.
pub const OP_REQUEST: u16 = 1;
/// `ar$op` value of an ARP reply.
pub const OP_REPLY: u16 = 2;

/// A decoded Ethernet/IPv4 ARP packet; hardware/protocol type and lengths are implied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    /// Operation (`ar$op`, big-endian on the wire): [`OP_REQUEST`] or [`OP_REPLY`].
    pub op: u16,
    /// Sender hardware address (`ar$sha`).
    pub sender_mac: Mac,
    /// Sender protocol address (`ar$spa`).
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (`ar$tha`); all zeros in a request.
    pub target_mac: Mac,
    /// Target protocol address (`ar$tpa`), the address being resolved.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Decodes `b[..28]`; `Truncated` if shorter, `Unsupported` unless htype 1, ptype 0x0800, hlen 6, plen 4.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < LEN {
            return Err(WireError::Truncated);
        }
        // Ethernet hardware (1), IPv4 protocol, 6-byte and 4-byte addresses.
        if be16(b, 0) != 1 || be16(b, 2) != 0x0800 || b[4] != 6 || b[5] != 4 {
            return Err(WireError::Unsupported);
        }
        let mac = |at: usize| [b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]];
        let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
        Ok(ArpRepr {
            op: be16(b, 6),
            sender_mac: mac(8),
            sender_ip: ip(14),
            target_mac: mac(18),
            target_ip: ip(24),
        })
    }
    /// Writes the 28-byte packet into `b[..28]`; panics if `b` is shorter than [`LEN`].
    pub fn emit(&self, b: &mut [u8]) {
        b[0..2].copy_from_slice(&1u16.to_be_bytes());
        b[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac);
        b[24..28].copy_from_slice(&self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_emit_parse_roundtrip() {
        let r = ArpRepr {
            op: OP_REQUEST,
            sender_mac: [0x52, 0x54, 0, 1, 2, 3],
            sender_ip: Ipv4Addr::new(10, 0, 2, 15),
            target_mac: [0; 6],
            target_ip: Ipv4Addr::new(10, 0, 2, 2),
        };
        let mut b = [0u8; LEN];
        r.emit(&mut b);
        let p = ArpRepr::parse(&b).expect("valid");
        assert_eq!(p, r);
        let mut again = [0u8; LEN];
        p.emit(&mut again);
        assert_eq!(again, b);
        assert_eq!(ArpRepr::parse(&b[..LEN - 1]), Err(WireError::Truncated));
        let mut other = b;
        other[5] = 16; // not IPv4-sized protocol addresses
        assert_eq!(ArpRepr::parse(&other), Err(WireError::Unsupported));
    }
}
