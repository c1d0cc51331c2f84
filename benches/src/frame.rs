//! QEMU `-netdev stream` framing: every Ethernet frame is preceded by its
//! length as a 4-byte big-endian integer (no FCS, no vnet header).

use std::fmt;

/// Length of the frame header.
pub const HDR_LEN: usize = 4;

/// Largest frame we accept from a peer. Tap MTU tops out at 65535 + an
/// Ethernet header; anything above that is a framing error, not a frame.
pub const MAX_FRAME: usize = 65536 + 64;

/// A peer announced a frame length we refuse to handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub len: usize,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            write!(f, "stream framing error: zero-length frame")
        } else {
            write!(
                f,
                "stream framing error: frame length {} exceeds maximum {}",
                self.len, MAX_FRAME
            )
        }
    }
}

impl std::error::Error for FrameError {}

/// Write the 4-byte header for a frame of `len` bytes into `hdr`.
pub fn put_header(hdr: &mut [u8; HDR_LEN], len: usize) {
    // Callers never pass more than MAX_FRAME, which fits in u32.
    *hdr = (len as u32).to_be_bytes();
}

/// Reassembles length-prefixed frames from a byte stream that may be split
/// at arbitrary points.
///
/// Usage: read into [`spare`](Self::spare), [`commit`](Self::commit) the
/// count, drain with [`next_frame`](Self::next_frame) until it yields
/// `None`, then [`compact`](Self::compact) before the next read.
pub struct Reassembler {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Reassembler {
    /// `capacity` must hold at least one maximal frame plus its header.
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.max(MAX_FRAME + HDR_LEN);
        Reassembler {
            buf: vec![0; cap],
            start: 0,
            end: 0,
        }
    }

    /// Free space to read into. Never empty after [`compact`](Self::compact).
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    /// Mark `n` bytes of [`spare`](Self::spare) as filled.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let avail = self.end - self.start;
        if avail < HDR_LEN {
            return Ok(None);
        }
        let h = &self.buf[self.start..self.start + HDR_LEN];
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(FrameError { len });
        }
        if avail < HDR_LEN + len {
            return Ok(None);
        }
        let from = self.start + HDR_LEN;
        self.start = from + len;
        Ok(Some(&self.buf[from..from + len]))
    }

    /// Move a trailing partial frame to the front of the buffer.
    pub fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Bytes buffered that do not yet form a complete frame.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            let mut h = [0; HDR_LEN];
            put_header(&mut h, f.len());
            out.extend_from_slice(&h);
            out.extend_from_slice(f);
        }
        out
    }

    /// Feed `stream` in chunks whose sizes come from `chunks` (cycled).
    fn decode(stream: &[u8], chunks: &[usize]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut r = Reassembler::new(0);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < stream.len() {
            let want = chunks[i % chunks.len()].max(1);
            i += 1;
            let spare = r.spare();
            let n = want.min(spare.len()).min(stream.len() - pos);
            spare[..n].copy_from_slice(&stream[pos..pos + n]);
            r.commit(n);
            pos += n;
            while let Some(f) = r.next_frame()? {
                out.push(f.to_vec());
            }
            r.compact();
        }
        assert_eq!(r.pending(), 0);
        Ok(out)
    }

    fn sample_frames() -> Vec<Vec<u8>> {
        let sizes = [60usize, 1, 1514, 3, 65534, 42, MAX_FRAME, 7];
        sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| (0..n).map(|j| (j * 31 + k * 7) as u8).collect())
            .collect()
    }

    #[test]
    fn splits_anywhere() {
        let frames = sample_frames();
        let stream = encode(&frames);
        // One byte at a time, odd sizes that straddle headers, and big reads.
        for chunks in [
            vec![1],
            vec![2, 3],
            vec![5, 4096, 1, 65535],
            vec![stream.len()],
            vec![HDR_LEN - 1, 1, 1513],
        ] {
            assert_eq!(decode(&stream, &chunks).unwrap(), frames, "{chunks:?}");
        }
        // Every possible single split point of a small stream.
        let small = encode(&[vec![1, 2, 3], vec![9; 10], vec![7]]);
        for cut in 1..small.len() {
            let got = decode(&small, &[cut, small.len()]).unwrap();
            assert_eq!(got, vec![vec![1, 2, 3], vec![9; 10], vec![7]], "cut {cut}");
        }
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut bad = Vec::new();
        bad.extend_from_slice(&((MAX_FRAME + 1) as u32).to_be_bytes());
        bad.extend_from_slice(&[0; 16]);
        assert_eq!(decode(&bad, &[3]), Err(FrameError { len: MAX_FRAME + 1 }));
        assert_eq!(decode(&[0, 0, 0, 0, 1], &[8]), Err(FrameError { len: 0 }));
    }
}
