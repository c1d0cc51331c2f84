//! TCP segments (RFC 9293): header view with the options the gateway uses (MSS, window scale).

use super::{be16, be32, checksum, ip::PROTO_TCP, WireError};
use std::net::IpAddr;

/// TCP header length without options, in bytes (data offset 5).
pub const HEADER_LEN: usize = 20;
/// FIN flag bit (in byte 13 of the header).
pub const FIN: u8 = 0x01;
/// SYN flag bit.
pub const SYN: u8 = 0x02;
/// RST flag bit.
pub const RST: u8 = 0x04;
/// PSH flag bit.
pub const PSH: u8 = 0x08;
/// ACK flag bit.
pub const ACK: u8 = 0x10;

/// A checksum-verified TCP segment with its MSS and window-scale options decoded.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    /// Source port (bytes 0..2, big-endian).
    pub src_port: u16,
    /// Destination port (bytes 2..4, big-endian).
    pub dst_port: u16,
    /// Sequence number (bytes 4..8, big-endian).
    pub seq: u32,
    /// Acknowledgment number (bytes 8..12, big-endian); meaningful only with [`ACK`].
    pub ack: u32,
    /// Control bits (byte 13): [`FIN`], [`SYN`], [`RST`], [`PSH`], [`ACK`], …
    pub flags: u8,
    /// Window (bytes 14..16, big-endian), not yet scaled by `wscale`.
    pub window: u16,
    /// MSS option, if present.
    pub mss: Option<u16>,
    /// Window-scale option, if present (clamped to 14).
    pub wscale: Option<u8>,
    /// Length of the header with its options: where `payload` starts in the segment's bytes.
    pub header_len: usize,
    /// Data after the header and its options.
    pub payload: &'a [u8],
}

impl<'a> TcpSegment<'a> {
    /// Parses a segment and verifies its checksum against the pseudo-header.
    pub fn parse(b: &'a [u8], src: IpAddr, dst: IpAddr) -> Result<Self, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let off = usize::from(b[12] >> 4) * 4;
        if off < HEADER_LEN || off > b.len() {
            return Err(WireError::BadHeaderLength);
        }
        if checksum::transport(src, dst, PROTO_TCP, b) != 0 {
            return Err(WireError::BadChecksum);
        }
        let mut seg = TcpSegment {
            src_port: be16(b, 0),
            dst_port: be16(b, 2),
            seq: be32(b, 4),
            ack: be32(b, 8),
            flags: b[13],
            window: be16(b, 14),
            mss: None,
            wscale: None,
            header_len: off,
            payload: &b[off..],
        };
        let mut opts = &b[HEADER_LEN..off];
        while let Some(&kind) = opts.first() {
            match kind {
                0 => break,
                1 => opts = &opts[1..],
                _ => {
                    let len = usize::from(*opts.get(1).ok_or(WireError::BadHeaderLength)?);
                    if len < 2 || len > opts.len() {
                        return Err(WireError::BadHeaderLength);
                    }
                    match (kind, len) {
                        (2, 4) => seg.mss = Some(be16(opts, 2)),
                        (3, 3) => seg.wscale = Some(opts[2].min(14)),
                        _ => {}
                    }
                    opts = &opts[len..];
                }
            }
        }
        Ok(seg)
    }

    /// Whether any bit of `flag` (e.g. [`SYN`]) is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space the segment occupies (payload plus SYN and FIN).
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.has(SYN)) + u32::from(self.has(FIN))
    }
}

/// What to put in a header written by [`write_header`].
#[derive(Clone, Copy, Debug)]
pub struct TcpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (written as is; set [`ACK`] in `flags` for it to count).
    pub ack: u32,
    /// Control bits, e.g. `SYN | ACK`.
    pub flags: u8,
    /// Advertised window, already shifted right by our window scale.
    pub window: u16,
    /// On SYN segments: MSS and (optionally) window scale.
    pub syn_opts: Option<(u16, Option<u8>)>,
}

impl TcpHeader {
    /// Header length in bytes: 20, plus 4 for MSS, plus 4 for window scale (NOP + option).
    pub fn len(&self) -> usize {
        match self.syn_opts {
            None => HEADER_LEN,
            Some((_, None)) => HEADER_LEN + 4,
            Some((_, Some(_))) => HEADER_LEN + 8,
        }
    }
    /// Always `false` (a header is never empty); exists to pair with [`TcpHeader::len`].
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Writes `h` at the start of `seg` (whose payload follows the header) and fills in the checksum
/// over the whole of `seg`.
pub fn write_header(seg: &mut [u8], h: &TcpHeader, src: IpAddr, dst: IpAddr) {
    let hl = h.len();
    seg[0..2].copy_from_slice(&h.src_port.to_be_bytes());
    seg[2..4].copy_from_slice(&h.dst_port.to_be_bytes());
    seg[4..8].copy_from_slice(&h.seq.to_be_bytes());
    seg[8..12].copy_from_slice(&h.ack.to_be_bytes());
    seg[12] = ((hl / 4) as u8) << 4;
    seg[13] = h.flags;
    seg[14..16].copy_from_slice(&h.window.to_be_bytes());
    seg[16..20].copy_from_slice(&[0, 0, 0, 0]);
    if let Some((mss, ws)) = h.syn_opts {
        seg[20..24].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
        if let Some(ws) = ws {
            seg[24..28].copy_from_slice(&[1, 3, 3, ws]);
        }
    }
    let c = checksum::transport(src, dst, PROTO_TCP, seg);
    seg[16..18].copy_from_slice(&c.to_be_bytes());
}

/// `a < b` in sequence space.
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
pub fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn roundtrip_with_options() {
        let s = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));
        let d = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15));
        let h = TcpHeader {
            src_port: 80,
            dst_port: 40000,
            seq: 7,
            ack: 9,
            flags: SYN | ACK,
            window: 1000,
            syn_opts: Some((1460, Some(7))),
        };
        let mut b = vec![0u8; h.len() + 3];
        b[h.len()..].copy_from_slice(b"abc");
        write_header(&mut b, &h, s, d);
        let p = TcpSegment::parse(&b, s, d).expect("valid");
        assert_eq!(
            (p.seq, p.ack, p.flags, p.mss, p.wscale, p.payload),
            (7, 9, SYN | ACK, Some(1460), Some(7), &b"abc"[..])
        );
        assert_eq!(p.seq_len(), 4);
        b[25] ^= 0xff;
        assert_eq!(
            TcpSegment::parse(&b, s, d).err(),
            Some(WireError::BadChecksum)
        );
    }

    #[test]
    fn bad_options_rejected() {
        let s = IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1));
        let mut b = vec![0u8; 24];
        b[12] = 6 << 4;
        b[20] = 2;
        b[21] = 9; // option longer than the header
        let c = checksum::transport(s, s, PROTO_TCP, &b);
        b[16..18].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            TcpSegment::parse(&b, s, s).err(),
            Some(WireError::BadHeaderLength)
        );
    }

    #[test]
    fn seq_compare_wraps() {
        assert!(seq_lt(u32::MAX - 1, 2));
        assert!(!seq_lt(2, u32::MAX - 1));
        assert!(seq_le(5, 5));
    }
}
