//! The control-socket relay between QEMU and rust-vmm's daemon.
//!
//! QEMU 7.2's virtio-net sends `SET_VRING_ENABLE` (enable both rings) before the vhost-user
//! `SET_FEATURES` that starts the device, and never again after it; and it needs
//! `VHOST_USER_F_PROTOCOL_FEATURES` (without it, starting the device fails with EINVAL). rust-vmm's
//! `vhost` and `vhost-user-backend` refuse `SET_VRING_ENABLE` until `SET_FEATURES` acked that bit, and
//! drop the connection. So the relay holds those early messages back and sends them right after
//! `SET_FEATURES` (no reply is due: QEMU asks for none on them), and passes
//! everything else through, with the fds (`SCM_RIGHTS`) that come with them. Only control messages
//! cross it; frames never do.

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// vhost-user request codes and header flags.
pub const SET_FEATURES: u32 = 2;
pub const SET_VRING_ENABLE: u32 = 18;
const NEED_REPLY: u32 = 0x8;
pub const HEADER: usize = 12;
/// Longest request body passed on (the memory table with 8 regions is 264 bytes, a config 268).
pub const MAX_BODY: usize = 4096;
/// File descriptors one request may carry (the memory table: 8).
const MAX_FDS: usize = 8;

/// What to do with one request from QEMU.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// An early `SET_VRING_ENABLE` (see the module doc): held back until `SET_FEATURES` passed.
    Defer,
}

/// Tracks the requests seen so far, judges the next one and keeps the deferred ones.
#[derive(Default)]
pub struct Filter {
    features_set: bool,
    /// Whole messages (header and body) held back.
    deferred: Vec<Vec<u8>>,
    pub deferred_total: u64,
}

impl Filter {
    pub fn judge(&mut self, hdr: &[u8; HEADER], body: &[u8]) -> Verdict {
        let word = |i: usize| u32::from_le_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
        let (request, flags) = (word(0), word(4));
        match request {
            SET_FEATURES => self.features_set = true,
            SET_VRING_ENABLE if !self.features_set && flags & NEED_REPLY == 0 => {
                self.deferred_total += 1;
                // At most one per ring and state change; a misbehaving peer cannot grow this much.
                if self.deferred.len() < 64 {
                    let mut m = hdr.to_vec();
                    m.extend_from_slice(body);
                    self.deferred.push(m);
                }
                return Verdict::Defer;
            }
            _ => {}
        }
        Verdict::Pass
    }

    /// The held-back messages to send after `request` passed (all of them after `SET_FEATURES`).
    pub fn after(&mut self, request: u32) -> Vec<Vec<u8>> {
        if request == SET_FEATURES {
            std::mem::take(&mut self.deferred)
        } else {
            Vec::new()
        }
    }
}

/// Reads exactly `buf.len()` bytes, collecting any fds that come with them. `Ok(false)`: the peer
/// closed before the first byte.
fn read_with_fds(s: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let r = recvmsg(
            s,
            &mut [IoSliceMut::new(&mut buf[got..])],
            &mut anc,
            RecvFlags::CMSG_CLOEXEC,
        );
        let n = match r {
            Ok(r) => r.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for m in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(more) = m {
                fds.extend(more);
            }
        }
        if n == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    if fds.len() > MAX_FDS {
        return Err(io::Error::other("too many file descriptors in one request"));
    }
    Ok(true)
}

/// Passes QEMU's requests to the daemon until either side closes; returns how many were held back.
pub fn requests(qemu: &UnixStream, daemon: &UnixStream) -> io::Result<u64> {
    let mut filter = Filter::default();
    let mut body = vec![0u8; MAX_BODY];
    loop {
        let mut hdr = [0u8; HEADER];
        let mut fds = Vec::new();
        if !read_with_fds(qemu, &mut hdr, &mut fds)? {
            return Ok(filter.deferred_total);
        }
        let word = |i: usize| u32::from_le_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
        let (request, flags, size) = (word(0), word(4), word(8) as usize);
        if size > MAX_BODY {
            return Err(io::Error::other(format!(
                "request {request} with a {size}-byte body"
            )));
        }
        if !read_with_fds(qemu, &mut body[..size], &mut fds)? && size > 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        log::trace!(
            "vhost-user: request {request} flags {flags:#x} size {size} fds {}",
            fds.len()
        );
        if filter.judge(&hdr, &body[..size]) == Verdict::Defer {
            log::debug!("vhost-user: SET_VRING_ENABLE before SET_FEATURES: held back");
            continue;
        }
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        if !borrowed.is_empty() && !anc.push(SendAncillaryMessage::ScmRights(&borrowed)) {
            return Err(io::Error::other("cannot attach file descriptors"));
        }
        let iov = [IoSlice::new(&hdr), IoSlice::new(&body[..size])];
        let total = HEADER + size;
        let sent = sendmsg(daemon, &iov, &mut anc, SendFlags::NOSIGNAL)?;
        if sent < total {
            // The rest (rare: the socket buffer is far larger than a request), without the fds.
            let all: Vec<u8> = hdr.iter().chain(&body[..size]).copied().collect();
            let mut w = daemon;
            w.write_all(&all[sent..])?;
        }
        for m in filter.after(request) {
            let mut w = daemon;
            w.write_all(&m)?;
        }
    }
}

/// Relays QEMU's connection and the daemon's end until either closes (this thread: the requests;
/// a second one: the replies, passed as bytes).
pub fn run(qemu: UnixStream, daemon: UnixStream) {
    let (q2, d2) = match (qemu.try_clone(), daemon.try_clone()) {
        (Ok(q), Ok(d)) => (q, d),
        _ => return,
    };
    let replies = std::thread::Builder::new()
        .name("vhost-user-reply".into())
        .spawn(move || {
            let (mut from, mut to) = (d2, q2);
            let mut buf = [0u8; 4096];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    match requests(&qemu, &daemon) {
        Ok(n) if n > 0 => log::debug!("vhost-user: {n} early SET_VRING_ENABLE held back"),
        Ok(_) => {}
        Err(e) => log::info!("vhost-user: control connection: {e}"),
    }
    let _ = qemu.shutdown(Shutdown::Both);
    let _ = daemon.shutdown(Shutdown::Both);
    if let Ok(h) = replies {
        let _ = h.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(req: u32, flags: u32, size: u32) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..4].copy_from_slice(&req.to_le_bytes());
        h[4..8].copy_from_slice(&flags.to_le_bytes());
        h[8..].copy_from_slice(&size.to_le_bytes());
        h
    }

    #[test]
    fn early_vring_enables_wait_for_set_features() {
        let mut f = Filter::default();
        assert_eq!(f.judge(&hdr(1, 1, 0), &[]), Verdict::Pass); // GET_FEATURES
        assert!(f.after(1).is_empty());
        assert_eq!(
            f.judge(&hdr(SET_VRING_ENABLE, 1, 8), &[0; 8]),
            Verdict::Defer
        );
        assert_eq!(
            f.judge(&hdr(SET_VRING_ENABLE, 1 | NEED_REPLY, 8), &[0; 8]),
            Verdict::Pass
        );
        assert_eq!(f.judge(&hdr(SET_FEATURES, 1, 8), &[0; 8]), Verdict::Pass);
        let held = f.after(SET_FEATURES);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0][..4], SET_VRING_ENABLE.to_le_bytes());
        assert_eq!(
            f.judge(&hdr(SET_VRING_ENABLE, 1, 8), &[0; 8]),
            Verdict::Pass
        );
        assert_eq!(f.deferred_total, 1);
    }

    #[test]
    fn requests_and_their_fds_cross_the_relay() {
        let (qemu, qemu_peer) = UnixStream::pair().expect("pair");
        let (daemon_peer, daemon) = UnixStream::pair().expect("pair");
        let t = std::thread::spawn(move || requests(&qemu_peer, &daemon_peer));
        let msg = |req: u32, body: &[u8]| {
            let mut m = Vec::new();
            m.extend_from_slice(&req.to_le_bytes());
            m.extend_from_slice(&1u32.to_le_bytes());
            m.extend_from_slice(&(body.len() as u32).to_le_bytes());
            m.extend_from_slice(body);
            m
        };
        let mut q = &qemu;
        q.write_all(&msg(SET_VRING_ENABLE, &[0; 8])).expect("write");
        // SET_VRING_KICK with an fd.
        let (r, _w) = std::io::pipe().expect("pipe");
        let m = msg(12, &[0; 8]);
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        let fds = [r.as_fd()];
        assert!(anc.push(SendAncillaryMessage::ScmRights(&fds)));
        sendmsg(&qemu, &[IoSlice::new(&m)], &mut anc, SendFlags::empty()).expect("sendmsg");
        q.write_all(&msg(SET_FEATURES, &[1; 8])).expect("write");
        drop(qemu);
        let mut got_fds = Vec::new();
        let mut buf = vec![0u8; 3 * (HEADER + 8)];
        assert!(read_with_fds(&daemon, &mut buf, &mut got_fds).expect("read"));
        let n = HEADER + 8;
        assert_eq!(
            buf[..n],
            msg(12, &[0; 8])[..],
            "the early enable was held back"
        );
        assert_eq!(buf[n..2 * n], msg(SET_FEATURES, &[1; 8])[..]);
        assert_eq!(
            buf[2 * n..],
            msg(SET_VRING_ENABLE, &[0; 8])[..],
            "then sent"
        );
        assert_eq!(got_fds.len(), 1, "the kick fd crossed");
        assert_eq!(t.join().expect("relay thread").expect("relay"), 1);
    }

    #[test]
    fn oversized_requests_end_the_relay() {
        let (qemu, qemu_peer) = UnixStream::pair().expect("pair");
        let (daemon_peer, _daemon) = UnixStream::pair().expect("pair");
        let mut q = &qemu;
        let mut m = 5u32.to_le_bytes().to_vec();
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&(MAX_BODY as u32 + 1).to_le_bytes());
        q.write_all(&m).expect("write");
        assert!(requests(&qemu_peer, &daemon_peer).is_err());
    }
}
