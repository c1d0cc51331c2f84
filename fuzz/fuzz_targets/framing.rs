//! The stream framing (QEMU's 4-byte big-endian length, then the frame) and the datagram path's
//! sender addresses.
//!
//! Stream: the input after the first byte is a byte stream, decoded once as a whole and once as it
//! would arrive in pieces (sizes drawn from the first byte), the way a stream port reassembles it;
//! both must give the same frames and stop at the same bad length, every frame 14..=65549 bytes.
//! Dgram: the input, as a sender's pathname or abstract address, gives a peer key only for a named
//! socket, keys tell pathname and abstract names apart, and the name as logged is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socket2::SockAddr;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use vde_switch::dgram;
use vde_switch::framing::{self, Decoded};

/// Frames, then how decoding ended: `Ok(leftover bytes)` or `Err(bad length)`.
type Outcome = (Vec<Vec<u8>>, Result<usize, u32>);

fn decode_all(mut buf: &[u8]) -> Outcome {
    let mut frames = Vec::new();
    loop {
        match framing::decode(buf) {
            Decoded::Frame {
                start,
                len,
                consumed,
            } => {
                assert_eq!((start, consumed), (4, len + 4));
                assert!((framing::MIN_FRAME..=framing::MAX_FRAME).contains(&len));
                assert_eq!(&framing::header(len)[..], &buf[..4]);
                frames.push(buf[start..start + len].to_vec());
                buf = &buf[consumed..];
            }
            Decoded::Incomplete => return (frames, Ok(buf.len())),
            Decoded::BadLength(l) => return (frames, Err(l)),
        }
    }
}

fn decode_in_pieces(stream: &[u8], mut seed: u32) -> Outcome {
    let mut buf: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let n = (1 + (seed >> 16) as usize % 97).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match framing::decode(&buf) {
                Decoded::Frame {
                    start,
                    len,
                    consumed,
                } => {
                    frames.push(buf[start..start + len].to_vec());
                    buf.drain(..consumed);
                }
                Decoded::Incomplete => break,
                Decoded::BadLength(l) => return (frames, Err(l)),
            }
        }
    }
    (frames, Ok(buf.len()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = decode_all(stream);
    let pieces = decode_in_pieces(stream, u32::from(seed));
    assert_eq!(
        whole, pieces,
        "decoding depends on how the stream was split"
    );

    // The datagram side: `data` as the sender's address.
    if let Ok(addr) = SockAddr::unix(OsStr::from_bytes(data)) {
        match dgram::peer_key(&addr) {
            None => assert!(data.len() <= 1, "a named sender has no key"),
            Some(k) => {
                assert!(!k.is_empty());
                if data[0] == 0 {
                    assert_eq!(&k[..], data, "abstract key");
                } else {
                    assert!(k[0] != 0, "a pathname key looks abstract");
                    assert!(data.starts_with(&k), "pathname key is not the path");
                }
                let shown = dgram::describe(&k);
                assert!(
                    !shown.chars().any(char::is_control),
                    "peer name {shown:?} would be logged with control characters"
                );
            }
        }
    }
});
