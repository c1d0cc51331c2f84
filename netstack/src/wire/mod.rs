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
    /// Shorter than the fixed header or than a length field claims.
    #[error("truncated packet")]
    Truncated,
    /// The IP version nibble is not the one expected (4 or 6).
    #[error("bad IP version")]
    BadVersion,
    /// IPv4 IHL or TCP data offset below 5 words or past the buffer, or a malformed TCP option length.
    #[error("bad header length")]
    BadHeaderLength,
    /// A length field (IPv4 total length, UDP length, IPv6 payload length) is inconsistent with the buffer.
    #[error("bad length field")]
    BadLength,
    /// The Internet checksum (RFC 1071) does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// An IPv4 fragment (MF set or non-zero offset); the gateway does no reassembly and drops it.
    #[error("IP fragment (unsupported)")]
    Fragment,
    /// Well-formed but outside what warren handles (e.g. non-Ethernet/IPv4 ARP, an IPv6
    /// next header other than TCP, UDP or ICMPv6).
    #[error("unsupported packet")]
    Unsupported,
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
