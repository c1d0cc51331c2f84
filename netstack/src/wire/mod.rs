//! Typed views over packet bytes and small builders, one protocol per file.
//!
//! Views (`Frame`, `Ipv4Packet`, `TcpSegment`, …) check lengths once in `parse` and then read fields
//! without further bounds checks failing; builders write headers into caller-provided buffers.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ip;
pub mod ipv6;
pub mod tcp;
pub mod udp;

/// Why a packet was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated packet")]
    Truncated,
    #[error("bad IP version")]
    BadVersion,
    #[error("bad header length")]
    BadHeaderLength,
    #[error("bad length field")]
    BadLength,
    #[error("bad checksum")]
    BadChecksum,
    #[error("IP fragment (unsupported)")]
    Fragment,
    #[error("unsupported packet")]
    Unsupported,
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
