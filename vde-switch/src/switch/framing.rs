//! QEMU's stream framing: a 4-byte big-endian length, then the Ethernet frame.

/// Smallest frame: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// Largest frame we accept: a 65535-byte IP packet plus the Ethernet header (passt's limit too).
pub const MAX_FRAME: usize = 65535 + 14;

/// What the decoder found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A complete frame at `start..start+len`; the record takes `consumed` bytes.
    Frame {
        start: usize,
        len: usize,
        consumed: usize,
    },
    /// More bytes are needed.
    Incomplete,
    /// The length field is impossible; the connection must be dropped.
    BadLength(u32),
}

/// Decodes the first record in `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < 4 {
        return Decoded::Incomplete;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let l = len as usize;
    if !(MIN_FRAME..=MAX_FRAME).contains(&l) {
        return Decoded::BadLength(len);
    }
    if buf.len() < 4 + l {
        return Decoded::Incomplete;
    }
    Decoded::Frame {
        start: 4,
        len: l,
        consumed: 4 + l,
    }
}

/// The 4-byte header for a frame of `len` bytes.
pub fn header(len: usize) -> [u8; 4] {
    (len as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_anywhere() {
        let mut stream = Vec::new();
        for n in [14usize, 60, 1514, 65549] {
            stream.extend_from_slice(&header(n));
            stream.extend(std::iter::repeat_n(n as u8, n));
        }
        // Feed the stream in every chunk size pattern and reassemble.
        for chunk in [1usize, 3, 7, 4096, 70000] {
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Decoded::Frame {
                    start,
                    len,
                    consumed,
                } = decode(&buf)
                {
                    got.push(buf[start..start + len].to_vec());
                    buf.drain(..consumed);
                }
            }
            assert!(buf.is_empty());
            assert_eq!(
                got.iter().map(|f| f.len()).collect::<Vec<_>>(),
                vec![14, 60, 1514, 65549]
            );
            assert!(got.iter().all(|f| f.iter().all(|&b| b == f.len() as u8)));
        }
    }

    #[test]
    fn bad_lengths() {
        assert_eq!(decode(&[0, 0, 0, 13]), Decoded::BadLength(13));
        assert_eq!(decode(&[0, 1, 0, 14]), Decoded::BadLength(65550));
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0]),
            Decoded::BadLength(u32::MAX)
        );
        assert_eq!(decode(&[0, 0, 0]), Decoded::Incomplete);
        assert_eq!(decode(&[0, 0, 0, 20, 1, 2]), Decoded::Incomplete);
    }
}
