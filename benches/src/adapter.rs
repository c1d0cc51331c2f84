//! The tap <-> QEMU-stream adapter: plays QEMU's part (`-netdev
//! stream,server=off`) for a tap device, so a real kernel TCP stack can be
//! put behind a user-space gateway.
//!
//! One thread moves tap → socket (see [`TxMode`]: by default every frame the
//! tap has ready goes out in one sendmmsg, one message per frame); the other
//! moves socket → tap, reassembling frames from large reads.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::frame::{put_header, Reassembler, HDR_LEN, MAX_FRAME};
use crate::tap::{open_tap, poll_one, set_nonblocking, set_socket_buffers};

/// Bytes gathered from the tap before a socket write is forced.
const BATCH: usize = 256 * 1024;
/// Read size on the socket side.
const RX_BUF: usize = 1024 * 1024;
/// Socket buffer size requested each way.
const SOCK_BUF: usize = 4 * 1024 * 1024;

/// How the adapter reaches its peer.
#[derive(Debug, Clone)]
pub enum Peer {
    /// Connect to a gateway listening on this path (QEMU `server=off`).
    Connect(PathBuf),
    /// Listen on this path and accept one peer (for back-to-back tests).
    Listen(PathBuf),
}

/// Adapter configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub ifname: String,
    pub peer: Peer,
    pub tx_mode: TxMode,
}

/// How the adapter writes tap frames to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// One write per frame, blocking tap reads: exactly what QEMU does.
    Frame,
    /// Gather every frame the tap has ready, then one sendmmsg with one
    /// message per frame: fewer syscalls, same frame-aligned socket
    /// buffers as `Frame` (the default).
    Mmsg,
    /// Gather frames into one contiguous write: fewest syscalls, but frames
    /// then straddle socket buffers, and passt 2023 mishandles frames split
    /// across its reads (it stalls at MTU 65520).
    Stream,
}

impl TxMode {
    pub fn parse(s: &str) -> Option<TxMode> {
        match s {
            "frame" => Some(TxMode::Frame),
            "mmsg" => Some(TxMode::Mmsg),
            "stream" => Some(TxMode::Stream),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TxMode::Frame => "frame",
            TxMode::Mmsg => "mmsg",
            TxMode::Stream => "stream",
        }
    }
}

fn ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Create the tap, reach the peer, call `ready` (once the tap exists and
/// the socket is connected or listening), then shuttle frames until the
/// peer closes the stream or an error occurs.
pub fn run(cfg: &Config, ready: impl FnOnce()) -> io::Result<()> {
    let tap = open_tap(&cfg.ifname)?;
    if cfg.tx_mode != TxMode::Frame {
        // Batching needs to know when the tap has nothing more ready; the
        // per-frame mode simply blocks in read (one syscall per frame).
        set_nonblocking(tap.as_raw_fd(), true).map_err(|e| ctx(e, "tap O_NONBLOCK"))?;
    }
    let sock = match &cfg.peer {
        Peer::Connect(path) => {
            let s = connect_retry(path, Duration::from_secs(10))
                .map_err(|e| ctx(e, &format!("connect {}", path.display())))?;
            ready();
            s
        }
        Peer::Listen(path) => {
            let l = UnixListener::bind(path)
                .map_err(|e| ctx(e, &format!("bind {}", path.display())))?;
            ready();
            let (s, _) = l.accept().map_err(|e| ctx(e, "accept"))?;
            s
        }
    };
    set_socket_buffers(sock.as_raw_fd(), SOCK_BUF);
    let sock_tx = sock.try_clone().map_err(|e| ctx(e, "dup socket"))?;
    let mode = cfg.tx_mode;
    let tap_rx = tap.try_clone().map_err(|e| ctx(e, "dup tap"))?;
    let up = thread::Builder::new()
        .name("tap-to-sock".into())
        .spawn(move || tap_to_sock(&tap_rx, sock_tx, mode))
        .map_err(|e| ctx(e, "spawn thread"))?;
    let down = sock_to_tap(sock, &tap);
    // The socket side ending (peer closed) ends the adapter; the tap side
    // only ends on error, so report whichever failed first.
    match down {
        Err(e) => Err(e),
        Ok(()) => {
            if up.is_finished() {
                match up.join() {
                    Ok(r) => r,
                    Err(_) => Err(io::Error::other("tap-to-sock thread panicked")),
                }
            } else {
                Ok(())
            }
        }
    }
}

/// Connect, retrying while the gateway has not started listening yet.
fn connect_retry(path: &Path, limit: Duration) -> io::Result<UnixStream> {
    let deadline = Instant::now() + limit;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

fn tap_to_sock(tap: &File, mut sock: UnixStream, mode: TxMode) -> io::Result<()> {
    let fd = tap.as_raw_fd();
    let sock_fd = sock.as_raw_fd();
    let mut buf = vec![0u8; BATCH + HDR_LEN + MAX_FRAME];
    let mut used = 0usize;
    // (offset, length including header) of each frame in `buf`.
    let mut frames: Vec<(usize, usize)> = Vec::new();
    let mut iovs: Vec<libc::iovec> = Vec::new();
    let mut reader = tap;
    // Per-frame mode flushes after every frame (threshold 0).
    let flush_at = if mode == TxMode::Frame { 0 } else { BATCH };
    let mut flush = |buf: &[u8], frames: &mut Vec<(usize, usize)>| -> io::Result<()> {
        let r = match mode {
            TxMode::Mmsg => send_frames(sock_fd, buf, frames, &mut iovs),
            TxMode::Frame | TxMode::Stream => {
                let used = frames.last().map_or(0, |&(o, l)| o + l);
                sock.write_all(&buf[..used])
            }
        };
        frames.clear();
        r.map_err(|e| ctx(e, "socket write"))
    };
    loop {
        let body = used + HDR_LEN;
        match reader.read(&mut buf[body..body + MAX_FRAME]) {
            Ok(0) => return Err(io::Error::other("tap closed")),
            Ok(n) => {
                let mut hdr = [0u8; HDR_LEN];
                put_header(&mut hdr, n);
                buf[used..body].copy_from_slice(&hdr);
                frames.push((used, HDR_LEN + n));
                used = body + n;
                if used >= flush_at {
                    flush(&buf, &mut frames)?;
                    used = 0;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if used > 0 {
                    flush(&buf, &mut frames)?;
                    used = 0;
                } else {
                    poll_one(fd, libc::POLLIN).map_err(|e| ctx(e, "poll tap"))?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ctx(e, "tap read")),
        }
    }
}

/// Send each frame of `buf` (header included) as its own message with
/// sendmmsg: one syscall for the batch, yet the stream carries each frame
/// in its own socket buffer, as with one write per frame.
fn send_frames(
    fd: RawFd,
    buf: &[u8],
    frames: &[(usize, usize)],
    iovs: &mut Vec<libc::iovec>,
) -> io::Result<()> {
    let mut i = 0;
    while i < frames.len() {
        iovs.clear();
        for &(off, len) in &frames[i..] {
            iovs.push(libc::iovec {
                iov_base: buf[off..off + len].as_ptr() as *mut libc::c_void,
                iov_len: len,
            });
        }
        // `iovs` is not touched again until the call returns, so these
        // pointers into it stay valid.
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: an all-zero mmsghdr is a valid value (null
                // pointers, zero lengths); the fields we need are set below.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov as *mut libc::iovec;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let vlen = hdrs.len().min(1024) as libc::c_uint;
        // SAFETY: `hdrs` holds `vlen` initialised mmsghdrs whose iovecs
        // point into `iovs` and `buf`, all alive and unmoved for the call;
        // the kernel only reads the buffers and writes `msg_len`.
        let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), vlen, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        // A message can be cut short (e.g. by a signal): finish it by hand.
        for (k, h) in hdrs.iter().take(n).enumerate() {
            let (off, len) = frames[i + k];
            let sent = h.msg_len as usize;
            if sent < len {
                write_all_fd(fd, &buf[off + sent..off + len])?;
            }
        }
        i += n;
    }
    Ok(())
}

fn write_all_fd(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a live slice; write reads at most its length.
        let n = unsafe { libc::write(fd, data.as_ptr() as *const libc::c_void, data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

fn sock_to_tap(mut sock: UnixStream, tap: &File) -> io::Result<()> {
    let fd = tap.as_raw_fd();
    let mut writer = tap;
    let mut r = Reassembler::new(RX_BUF);
    loop {
        let n = match sock.read(r.spare()) {
            Ok(0) => {
                if r.pending() > 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed the stream inside a frame",
                    ));
                }
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ctx(e, "socket read")),
        };
        r.commit(n);
        while let Some(frame) = r
            .next_frame()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            loop {
                match writer.write(frame) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        poll_one(fd, libc::POLLOUT).map_err(|e| ctx(e, "poll tap"))?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // EIO: interface still down; EINVAL: runt/oversized
                    // frame. Either way the frame is dropped, like a NIC would.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL)) => {
                        break
                    }
                    Err(e) => return Err(ctx(e, "tap write")),
                }
            }
        }
        r.compact();
    }
}
