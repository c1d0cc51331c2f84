//! `--dgram PATH`: a bound unix datagram socket for QEMU `-netdev dgram` guests.
//!
//! QEMU binds its own `local.path`, sends every frame as one datagram (no header) to `remote.path` (our
//! PATH) and reads whatever arrives on its socket. So one socket serves any number of guests: each sender
//! address becomes a switch port (`Tx::Datagram` on a socket connected to that address), learned from the
//! first datagram it sends. QEMU never says goodbye, so a peer that has sent nothing for [`IDLE`] loses
//! its port; a peer whose socket is gone (sending fails with ENOENT/ECONNREFUSED) loses it at once. A
//! guest restarted with the same `local.path` comes back on the same port.
//!
//! Unnamed senders (nothing to answer to) are ignored; the number of peers per socket is capped.

use super::{bind_unix, Context, FrontEnd, Host};
use crate::reactor::{clear_ready, poll_ready, register, Keep};
use crate::switch::port::{PortId, Tx};
use netstack::wire::ethernet;
use rustc_hash::FxHashMap;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use std::borrow::Cow;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// A peer that sent nothing for this long loses its port.
pub const IDLE: Duration = Duration::from_secs(300);
/// Peers (guests) per datagram socket.
pub const MAX_PEERS: usize = 256;
/// Datagrams handled per wakeup before the other endpoints get their turn.
const BATCH: usize = 64;

struct Peer {
    port: PortId,
    last: Instant,
}

/// Counters of datagrams that did not become frames.
#[derive(Default, Debug, Clone)]
pub struct DgramCounters {
    pub unnamed: u64,
    pub too_many_peers: u64,
    pub bad_size: u64,
}

/// The receive side of a `--dgram` socket, with its peers.
pub struct DgramRx {
    fd: Rc<AsyncFd<OwnedFd>>,
    path: PathBuf,
    /// Keyed by the peer's address: pathname bytes, or NUL + abstract name.
    peers: FxHashMap<Vec<u8>, Peer>,
    buf: Vec<u8>,
    pub counters: DgramCounters,
    idle: Duration,
}

/// Binds `path` and registers it as a front end.
pub fn bind(s: &mut Host<'_>, path: &Path, idle: Duration) -> io::Result<()> {
    let sock = bind_unix(path, Type::DGRAM)?;
    sock.set_nonblocking(true)?;
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    s.remove_on_exit(path.to_path_buf());
    let fd = Rc::new(register(OwnedFd::from(sock))?);
    let mtu_frame = s.mtu_frame();
    s.add_front_end(Box::new(DgramRx {
        fd,
        path: path.to_path_buf(),
        peers: FxHashMap::default(),
        buf: vec![0; (256 << 10).max(2 * (mtu_frame + 1))],
        counters: DgramCounters::default(),
        idle: if idle.is_zero() { IDLE } else { idle },
    }));
    Ok(())
}

/// A new unbound datagram socket connected to `addr`, registered with the reactor.
fn connected_to(addr: &SockAddr) -> io::Result<AsyncFd<OwnedFd>> {
    let s = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    s.set_nonblocking(true)?;
    let _ = s.set_send_buffer_size(1 << 20);
    s.connect(addr)?;
    register(OwnedFd::from(s))
}

/// The map key of a peer address; None for an unnamed sender.
#[doc(hidden)]
pub fn peer_key(a: &SockAddr) -> Option<Cow<'_, [u8]>> {
    if let Some(p) = a.as_pathname() {
        return Some(Cow::Borrowed(p.as_os_str().as_bytes()));
    }
    a.as_abstract_namespace().map(|n| {
        let mut k = Vec::with_capacity(n.len() + 1);
        k.push(0);
        k.extend_from_slice(n);
        Cow::Owned(k)
    })
}

/// A peer's address for log lines: `@name` for abstract ones; control characters (a peer can bind
/// any name) are escaped so that a name cannot forge log lines.
#[doc(hidden)]
pub fn describe(key: &[u8]) -> String {
    let (at, name) = match key.split_first() {
        Some((0, name)) => ("@", name),
        _ => ("", key),
    };
    let name: String = String::from_utf8_lossy(name)
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    format!("{at}{name}")
}

impl FrontEnd for DgramRx {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        let d = self;
        let (waker, tok) = cx.waker();
        // A batch of frames, switched, then handed to the gateway together.
        let (mut frames, mut used, mut more) = (Vec::with_capacity(BATCH), 0, true);
        let mtu_frame = cx.mtu_frame();
        let room = mtu_frame + 1;
        while frames.len() < BATCH && d.buf.len() - used >= room {
            if !poll_ready(&d.fd, &waker, false) {
                more = false;
                break;
            }
            let slot = &mut d.buf[used..used + room];
            let (len, addr) = match crate::sys::recv_from_with_flags(
                SockRef::from(d.fd.get_ref()),
                slot,
                libc::MSG_TRUNC,
            ) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    clear_ready(&d.fd, &waker, false, cx.queue(), tok);
                    more = false;
                    break;
                }
                Err(e) => {
                    log::warn!("dgram {}: receive failed: {e}", d.path.display());
                    break;
                }
            };
            if !(ethernet::HEADER_LEN..=mtu_frame).contains(&len) {
                d.counters.bad_size += 1;
                log::debug!("dgram {}: dropped a {len}-byte datagram", d.path.display());
                continue;
            }
            let Some(key) = peer_key(&addr) else {
                d.counters.unnamed += 1;
                if d.counters.unnamed == 1 {
                    log::warn!(
                        "dgram {}: datagrams from an unnamed socket are ignored (QEMU: set local.path)",
                        d.path.display()
                    );
                }
                continue;
            };
            let Some(port) = d.peer(cx, key, &addr) else {
                continue;
            };
            frames.push((port, used..used + len));
            used += len;
        }
        // Frames for the gateway go in runs from one peer (each run is charged to its port).
        let mut for_gateway: Vec<&[u8]> = Vec::new();
        let mut run_port = None;
        for (port, r) in frames {
            let f = &d.buf[r];
            if !cx.switch(port, f) {
                continue;
            }
            if run_port.is_some_and(|p| p != port) && !for_gateway.is_empty() {
                if let Some(p) = run_port {
                    cx.to_gateway(p, &for_gateway);
                }
                for_gateway.clear();
            }
            run_port = Some(port);
            for_gateway.push(f);
        }
        if let (Some(p), false) = (run_port, for_gateway.is_empty()) {
            cx.to_gateway(p, &for_gateway);
        }
        if more {
            // More may be waiting: come back after the others had their turn.
            cx.again();
        }
        Keep::Yes
    }

    /// Closes the ports of idle peers and forgets those closed elsewhere.
    fn tick(&mut self, cx: &mut Context<'_>) -> Keep {
        let now = cx.now;
        let mut idle = Vec::new();
        let limit = self.idle;
        self.peers.retain(|_, p| {
            if now.saturating_duration_since(p.last) >= limit {
                idle.push(p.port);
                false
            } else {
                cx.port_exists(p.port)
            }
        });
        for port in idle {
            if cx.port_exists(port) {
                cx.close_port(port, "idle (no datagram from the peer)");
            }
        }
        Keep::Yes
    }
}

impl DgramRx {
    /// The live port of the peer at `key`, creating it if needed.
    fn peer(
        &mut self,
        cx: &mut Context<'_>,
        key: Cow<'_, [u8]>,
        addr: &SockAddr,
    ) -> Option<PortId> {
        let d = self;
        if let Some(p) = d.peers.get_mut(key.as_ref()) {
            if cx.port_exists(p.port) {
                p.last = cx.now;
                return Some(p.port);
            }
            // Closed behind our back (its socket went away): start afresh.
            d.peers.remove(key.as_ref());
        }
        if d.peers.len() >= MAX_PEERS {
            d.counters.too_many_peers += 1;
            if d.counters.too_many_peers == 1 {
                log::warn!(
                    "dgram {}: {MAX_PEERS} peers already; ignoring new ones",
                    d.path.display()
                );
            }
            return None;
        }
        let who = describe(&key);
        // A socket of its own connected to the peer, so that a full receive queue at the peer (QEMU's
        // holds only net.unix.max_dgram_qlen datagrams from senders it is not connected to) makes
        // frames wait instead of being lost: the kernel reports a connected socket writable again
        // once the peer has read. A peer that connected its socket to ours refuses that (EPERM), but
        // then its queue limit does not apply to our shared socket: send from there.
        let tx = match connected_to(addr) {
            Ok(fd) => Tx::Datagram {
                fd: Rc::new(fd),
                queue: Default::default(),
                bytes: 0,
            },
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                log::debug!("dgram {}: peer {who} is connected to us", d.path.display());
                Tx::Packet {
                    fd: d.fd.clone(),
                    peer: Some(addr.clone()),
                }
            }
            Err(e) => {
                log::warn!(
                    "dgram {}: cannot connect to peer socket {who}: {e}; frames to it are sent \
                     unqueued (make it writable by this user)",
                    d.path.display()
                );
                Tx::Packet {
                    fd: d.fd.clone(),
                    peer: Some(addr.clone()),
                }
            }
        };
        let port = cx.add_port(
            format!("dgram {} peer {who}", d.path.display()),
            tx,
            usize::MAX,
        );
        d.peers
            .insert(key.into_owned(), Peer { port, last: cx.now });
        Some(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_keys() {
        let a = SockAddr::unix("/tmp/guest1.sock").expect("addr");
        assert_eq!(peer_key(&a).as_deref(), Some(&b"/tmp/guest1.sock"[..]));
        assert_eq!(peer_key(&SockAddr::unix("").expect("unnamed")), None);
        assert_eq!(describe(b"/tmp/guest1.sock"), "/tmp/guest1.sock");
        assert_eq!(describe(b"\0qemu"), "@qemu");
        // Found by fuzz/fuzz_targets/framing.rs: a peer's name went to the log verbatim.
        assert_eq!(
            describe(b"/tmp/a\nforged\x1b[2J"),
            "/tmp/a\\nforged\\u{1b}[2J"
        );
        assert_eq!(describe(b"\0\n"), "@\\n");
    }
}
