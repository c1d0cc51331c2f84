//! ICMPv4 (RFC 792): echo and destination-unreachable.

use super::{be16, checksum, WireError};

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
}
