//! Ethernet II frames (no FCS, as QEMU and taps carry them).

use super::{be16, WireError};
use crate::Mac;

/// Ethernet II header length in bytes: destination, source, EtherType.
pub const HEADER_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// The broadcast MAC `ff:ff:ff:ff:ff:ff`.
pub const BROADCAST: Mac = [0xff; 6];

/// A view over an Ethernet II frame whose 14-byte header is known to be present.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    buf: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Checks that `buf` holds at least a header; `Truncated` otherwise.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Frame { buf })
    }
    /// Destination MAC (bytes 0..6).
    pub fn dst(&self) -> Mac {
        mac_at(self.buf, 0)
    }
    /// Source MAC (bytes 6..12).
    pub fn src(&self) -> Mac {
        mac_at(self.buf, 6)
    }
    /// EtherType (bytes 12..14, big-endian), e.g. [`ETHERTYPE_IPV4`].
    pub fn ethertype(&self) -> u16 {
        be16(self.buf, 12)
    }
    /// Everything after the header (no FCS is carried).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

fn mac_at(b: &[u8], at: usize) -> Mac {
    [b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]]
}

/// Multicast or broadcast (group bit set).
pub fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 == 1
}

/// Writes an Ethernet header into `buf[..14]`.
pub fn write_header(buf: &mut [u8], dst: Mac, src: Mac, ethertype: u16) {
    buf[0..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// Formats a MAC as `52:54:00:12:34:56`.
pub fn fmt_mac(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_write_parse_roundtrip() {
        let mut b = vec![0u8; HEADER_LEN + 4];
        b[HEADER_LEN..].copy_from_slice(b"data");
        let (dst, src) = ([0x52, 0x54, 0, 1, 2, 3], [0x52, 0x55, 0x0a, 0, 2, 2]);
        write_header(&mut b, dst, src, ETHERTYPE_IPV4);
        let f = Frame::parse(&b).expect("valid");
        assert_eq!(
            (f.dst(), f.src(), f.ethertype()),
            (dst, src, ETHERTYPE_IPV4)
        );
        assert_eq!(f.payload(), b"data");
        let mut again = b.clone();
        write_header(&mut again, f.dst(), f.src(), f.ethertype());
        assert_eq!(again, b);
        assert!(Frame::parse(&b[..HEADER_LEN - 1]).is_err());
        assert!(is_group(&BROADCAST) && !is_group(&src));
        assert_eq!(fmt_mac(&src), "52:55:0a:00:02:02");
    }
}
