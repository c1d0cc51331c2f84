//! ICMPv4 (RFC 792): echo and destination-unreachable; echo messages of either family (ICMPv6's
//! echo, RFC 4443, has the same layout with other type numbers and a pseudo-header checksum).

use super::{be16, checksum, WireError};
use std::net::IpAddr;

/// ICMPv4 header length in bytes: type, code, checksum and 4 type-specific bytes.
pub const HEADER_LEN: usize = 8;
/// Type 0, Echo Reply.
pub const ECHO_REPLY: u8 = 0;
/// Type 3, Destination Unreachable.
pub const DEST_UNREACHABLE: u8 = 3;
/// Type 8, Echo Request.
pub const ECHO_REQUEST: u8 = 8;
/// Type 11, Time Exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Destination Unreachable code 0, net unreachable.
pub const CODE_NET_UNREACHABLE: u8 = 0;
/// Destination Unreachable code 1, host unreachable.
pub const CODE_HOST_UNREACHABLE: u8 = 1;
/// Destination Unreachable code 3, port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;

/// A checksum-verified ICMPv4 message.
#[derive(Clone, Copy, Debug)]
pub struct IcmpMessage<'a> {
    /// Type field (byte 0), e.g. [`ECHO_REQUEST`].
    pub kind: u8,
    /// Code field (byte 1).
    pub code: u8,
    /// Identifier and sequence for echo messages (bytes 4..8 otherwise).
    pub ident: u16,
    /// Sequence number for echo messages (bytes 6..8, big-endian).
    pub seq: u16,
    /// Bytes after the 8-byte header (echo data, or the quoted datagram of an error).
    pub payload: &'a [u8],
}

impl<'a> IcmpMessage<'a> {
    /// Parses `b` (the whole IP payload); `Truncated` below 8 bytes, `BadChecksum` if the checksum fails.
    pub fn parse(b: &'a [u8]) -> Result<Self, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if checksum::checksum(b) != 0 {
            return Err(WireError::BadChecksum);
        }
        Ok(IcmpMessage {
            kind: b[0],
            code: b[1],
            ident: be16(b, 4),
            seq: be16(b, 6),
            payload: &b[HEADER_LEN..],
        })
    }
}

impl<'a> IcmpMessage<'a> {
    /// Parses an ICMP message of the family of `src`/`dst`: ICMPv4 as [`IcmpMessage::parse`],
    /// ICMPv6 with its pseudo-header checksum (`BadChecksum` when either fails).
    pub fn parse_for(src: IpAddr, dst: IpAddr, b: &'a [u8]) -> Result<Self, WireError> {
        if src.is_ipv4() {
            return Self::parse(b);
        }
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if checksum::transport(src, dst, super::ip::PROTO_ICMPV6, b) != 0 {
            return Err(WireError::BadChecksum);
        }
        Ok(IcmpMessage {
            kind: b[0],
            code: b[1],
            ident: be16(b, 4),
            seq: be16(b, 6),
            payload: &b[HEADER_LEN..],
        })
    }
}

/// The echo request and echo reply types of the family of `addr` (8/0 for ICMPv4, 128/129 for
/// ICMPv6).
pub fn echo_types(addr: IpAddr) -> (u8, u8) {
    if addr.is_ipv4() {
        (ECHO_REQUEST, ECHO_REPLY)
    } else {
        (super::icmpv6::ECHO_REQUEST, super::icmpv6::ECHO_REPLY)
    }
}

/// The IP protocol number of ICMP in the family of `addr` (1, or 58 for ICMPv6).
pub fn proto_for(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        super::ip::PROTO_ICMP
    } else {
        super::ip::PROTO_ICMPV6
    }
}

/// Like [`write`] for a message from `src` to `dst`: ICMPv6 messages get their pseudo-header
/// checksum.
pub fn write_for(msg: &mut [u8], src: IpAddr, dst: IpAddr, kind: u8, code: u8, rest: [u8; 4]) {
    if src.is_ipv4() {
        return write(msg, kind, code, rest);
    }
    msg[0] = kind;
    msg[1] = code;
    msg[2..4].copy_from_slice(&[0, 0]);
    msg[4..8].copy_from_slice(&rest);
    let c = checksum::transport(src, dst, super::ip::PROTO_ICMPV6, msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
}

/// Writes an ICMP header (type, code, bytes 4..8) for the payload at `msg[8..]`, with its checksum.
pub fn write(msg: &mut [u8], kind: u8, code: u8, rest: [u8; 4]) {
    msg[0] = kind;
    msg[1] = code;
    msg[2..4].copy_from_slice(&[0, 0]);
    msg[4..8].copy_from_slice(&rest);
    let c = checksum::checksum(msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_write_parse_roundtrip() {
        let mut b = vec![0u8; HEADER_LEN + 5];
        b[HEADER_LEN..].copy_from_slice(b"hello");
        write(&mut b, ECHO_REQUEST, 0, [0x12, 0x34, 0, 9]);
        let m = IcmpMessage::parse(&b).expect("valid");
        assert_eq!(
            (m.kind, m.code, m.ident, m.seq, m.payload),
            (ECHO_REQUEST, 0, 0x1234, 9, &b"hello"[..])
        );
        let mut again = b.clone();
        let (i, s) = (m.ident.to_be_bytes(), m.seq.to_be_bytes());
        write(&mut again, m.kind, m.code, [i[0], i[1], s[0], s[1]]);
        assert_eq!(again, b);
        let mut bad = b.clone();
        bad[9] ^= 1;
        assert_eq!(IcmpMessage::parse(&bad).err(), Some(WireError::BadChecksum));
        assert_eq!(
            IcmpMessage::parse(&b[..7]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn icmpv6_echo_uses_the_pseudo_header_checksum() {
        let s: IpAddr = "fec0::15".parse().unwrap();
        let d: IpAddr = "2001:db8::1".parse().unwrap();
        let mut b = vec![0u8; HEADER_LEN + 3];
        b[HEADER_LEN..].copy_from_slice(b"abc");
        write_for(&mut b, s, d, echo_types(s).0, 0, [0, 7, 0, 1]);
        // The same bytes the ICMPv6 wire module builds.
        let r = crate::wire::icmpv6::Icmpv6Repr::EchoRequest {
            ident: 7,
            seq: 1,
            data: b"abc",
        };
        let (IpAddr::V6(s6), IpAddr::V6(d6)) = (s, d) else {
            unreachable!()
        };
        assert_eq!(b, r.to_bytes(s6, d6));
        let m = IcmpMessage::parse_for(s, d, &b).expect("valid");
        assert_eq!(
            (m.kind, m.ident, m.seq, m.payload),
            (128, 7, 1, &b"abc"[..])
        );
        // The addresses are part of the checksum.
        let other: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(
            IcmpMessage::parse_for(s, other, &b).err(),
            Some(WireError::BadChecksum)
        );
        assert_eq!(
            IcmpMessage::parse_for(s, d, &b[..7]).err(),
            Some(WireError::Truncated)
        );
        let v4: IpAddr = "10.0.2.15".parse().unwrap();
        assert_eq!(echo_types(v4), (ECHO_REQUEST, ECHO_REPLY));
        assert_eq!(
            (proto_for(v4), proto_for(s)),
            (crate::wire::ip::PROTO_ICMP, 58)
        );
    }
}
