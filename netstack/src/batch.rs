//! Typed handles for batched guest frames: [`FrameBatch`] (the frames of one call) and the
//! crate's `Span`s into it (guest TCP payload gathered per flow).
//!
//! A batch is everything one read from a switch port produced. Guest TCP payload in it is never
//! copied into the core: the TCP NAT remembers where each in-order segment's bytes are (which frame
//! of the batch, offset, length) and, at the batch's end, writes each flow's spans with one gathered
//! send while the frames are still borrowed. A span names its frame by position in this batch only,
//! can only be made for a frame of the batch being handled, and never outlives the call.

/// Frames from the LAN handed to the gateway in one call (`Gateway::handle_batch`), optionally
/// all from one switch port (the flows they open are charged to that port).
#[derive(Clone, Copy, Debug)]
pub struct FrameBatch<'a> {
    frames: &'a [&'a [u8]],
    port: Option<u32>,
}

impl<'a> FrameBatch<'a> {
    /// A batch of `frames` whose flows are charged to their guests' addresses.
    pub fn new(frames: &'a [&'a [u8]]) -> Self {
        FrameBatch { frames, port: None }
    }

    /// A batch of `frames` that all came in on switch port `port`: the flows they open are charged
    /// to that port, so one port cannot multiply its share of the fd budget by using many
    /// addresses.
    pub fn from_port(port: u32, frames: &'a [&'a [u8]]) -> Self {
        FrameBatch {
            frames,
            port: Some(port),
        }
    }

    /// The switch port all frames came in on, if one.
    pub fn port(&self) -> Option<u32> {
        self.port
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the batch has no frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frames with their positions.
    pub(crate) fn frames(&self) -> impl Iterator<Item = (FrameIdx, &'a [u8])> + 'a {
        self.frames
            .iter()
            .enumerate()
            .map(|(i, f)| (FrameIdx(i as u32), *f))
    }

    /// The bytes of `span` (empty if it does not fit the frame, which the NATs never make).
    pub(crate) fn bytes(&self, span: Span) -> &'a [u8] {
        let (off, len) = (span.off as usize, span.len as usize);
        self.frames
            .get(span.frame.0 as usize)
            .and_then(|f| f.get(off..off + len))
            .unwrap_or(&[])
    }
}

/// The position of a frame in the batch being handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameIdx(u32);

impl FrameIdx {
    /// Bytes `off..off + len` of this frame.
    pub(crate) fn span(self, off: usize, len: usize) -> Span {
        Span {
            frame: self,
            off: off as u32,
            len: len as u32,
        }
    }
}

/// Bytes of one frame of a batch: guest payload waiting for the batch's gathered write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    frame: FrameIdx,
    off: u32,
    len: u32,
}

impl Span {
    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_their_frame_and_never_past_it() {
        let (a, b) = (b"0123456789".as_slice(), b"abcdef".as_slice());
        let frames = [a, b];
        let batch = FrameBatch::from_port(3, &frames);
        assert_eq!((batch.len(), batch.port()), (2, Some(3)));
        let idx: Vec<FrameIdx> = batch.frames().map(|(i, _)| i).collect();
        assert_eq!(batch.bytes(idx[0].span(2, 3)), b"234");
        assert_eq!(batch.bytes(idx[1].span(4, 2)), b"ef");
        assert_eq!(batch.bytes(idx[1].span(4, 3)), b"", "past the frame's end");
        assert_eq!(FrameBatch::new(&frames).port(), None);
    }
}
