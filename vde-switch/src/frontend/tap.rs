//! A tap device (IFF_TAP|IFF_NO_PI) as a switch port: one frame per read() and per write().
//!
//! The receive side reads up to [`BATCH`] frames per wakeup, packed one after another into one reusable
//! buffer (no allocation per frame or per batch), switches them, hands those for the gateway to
//! `Driver::handle_frames` in one batch and ends the batch (so ACKs and window updates go out per batch
//! of reads, not per wakeup). Transmission is `Tx::Packet` (one write per frame).

use super::{Context, FrontEnd, Host};
use crate::reactor::{clear_ready, poll_ready, register, Keep};
use crate::switch::port::{PortId, Tx};
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use tokio::io::unix::AsyncFd;

/// Frames read per batch.
pub const BATCH: usize = 64;
/// Batches per wakeup before the other endpoints get their turn.
const ROUNDS: usize = 8;
/// The receive buffer: several maximum-size frames, or [`BATCH`] small ones.
const BUF: usize = 512 << 10;

/// Counters of a tap's receive side.
#[derive(Default, Debug, Clone)]
pub struct TapCounters {
    pub reads: u64,
    pub batches: u64,
    pub oversize: u64,
}

/// The receive side of a tap.
pub struct TapRx {
    fd: Rc<AsyncFd<OwnedFd>>,
    port: PortId,
    name: String,
    buf: Vec<u8>,
    /// (offset, length) of each frame of the current batch in `buf`.
    spans: Vec<(usize, usize)>,
    pub counters: TapCounters,
}

/// Serves tap fd `fd` (named `name` in its namespace) as a port; returns the port.
pub fn add_tap(s: &mut Host<'_>, fd: OwnedFd, name: &str) -> io::Result<PortId> {
    crate::helper::set_nonblocking(&fd)?;
    let fd = Rc::new(register(fd)?);
    let port = s.add_port(
        format!("tap {name}"),
        Tx::Packet {
            fd: fd.clone(),
            peer: None,
        },
        usize::MAX,
    );
    let frame = s.mtu_frame() + 1;
    s.add_front_end(Box::new(TapRx {
        fd,
        port,
        name: name.to_string(),
        buf: vec![0; BUF.max(2 * frame)],
        spans: Vec::with_capacity(BATCH),
        counters: TapCounters::default(),
    }));
    Ok(port)
}

/// Result of reading one batch.
enum Read {
    /// The batch is full (more may be waiting).
    More,
    /// The tap has nothing more for now.
    Empty,
    /// The tap failed.
    Failed(io::Error),
}

impl TapRx {
    /// Reads frames into `buf` until the batch is full or the tap is empty.
    fn read_batch(&mut self, max_frame: usize) -> Read {
        self.spans.clear();
        let mut used = 0;
        // Room for one more frame than we accept, to tell an oversized frame from a maximum one.
        while self.spans.len() < BATCH && self.buf.len() - used > max_frame {
            let free = &mut self.buf[used..used + max_frame + 1];
            let n = match rustix::io::read(&*self.fd, free) {
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN) => return Read::Empty,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Read::Failed(e.into()),
            };
            self.counters.reads += 1;
            if n == 0 {
                return Read::Empty;
            }
            if n > max_frame {
                self.counters.oversize += 1;
                continue;
            }
            self.spans.push((used, n));
            used += n;
        }
        Read::More
    }
}

impl FrontEnd for TapRx {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        if !cx.port_exists(self.port) {
            return Keep::No;
        }
        let (waker, tok) = cx.waker();
        for _ in 0..ROUNDS {
            if !poll_ready(&self.fd, &waker, false) {
                return Keep::Yes;
            }
            let state = self.read_batch(cx.mtu_frame());
            if !self.spans.is_empty() {
                self.counters.batches += 1;
                let mut for_gateway: [&[u8]; BATCH] = [&[]; BATCH];
                let mut n = 0;
                for &(off, len) in &self.spans {
                    let frame = &self.buf[off..off + len];
                    if cx.switch(self.port, frame) {
                        for_gateway[n] = frame;
                        n += 1;
                    }
                }
                if n > 0 {
                    cx.to_gateway(self.port, &for_gateway[..n]);
                    cx.end_batch();
                }
            }
            match state {
                Read::More => {}
                Read::Empty => {
                    clear_ready(&self.fd, &waker, false, cx.queue(), tok);
                    return Keep::Yes;
                }
                Read::Failed(e) => {
                    log::warn!("tap {}: read failed: {e}", self.name);
                    cx.close_port(self.port, "tap read failed");
                    return Keep::No;
                }
            }
            if !cx.port_exists(self.port) {
                return Keep::No;
            }
        }
        // More may be waiting: come back after the others had their turn.
        cx.again();
        Keep::Yes
    }
}
