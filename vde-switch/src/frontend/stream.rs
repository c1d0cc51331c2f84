//! Stream sockets with QEMU's length framing (`-netdev stream`, `-netdev socket,connect=`, passt's
//! socket): the listeners, and one port per accepted connection. The receive side reads into one
//! buffer per connection and decodes frames in place; the transmit side is `Tx::Stream` (queued,
//! flushed per batch, written directly when large and nothing is queued).

use super::{bind_unix, Context, FrontEnd, Host};
use crate::reactor::{
    clear_ready, log_allowed, poll_ready, register, retry_later, Keep, ACCEPT_RETRY,
};
use crate::switch::framing::{self, Decoded};
use crate::switch::port::{PortId, Tx};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;
use tokio::io::unix::AsyncFd;

/// Receive buffer per stream connection (several maximum-size frames).
const RX_BUF: usize = 256 << 10;

/// What to listen on.
#[derive(Clone, Debug)]
pub enum Listen {
    /// Unix stream socket (QEMU `-netdev stream,addr.type=unix`).
    Unix(PathBuf),
    /// TCP (QEMU `-netdev stream,addr.type=inet` and `-netdev socket,connect=`).
    Tcp(SocketAddr),
}

/// A listening stream socket.
pub struct Listener {
    fd: AsyncFd<OwnedFd>,
    what: Listen,
}

/// The receive side of a stream connection.
pub struct StreamRx {
    fd: Rc<AsyncFd<OwnedFd>>,
    port: PortId,
    rx: Vec<u8>,
    rx_len: usize,
}

/// Binds and listens on `l`.
pub fn listen(h: &mut Host<'_>, l: &Listen) -> io::Result<()> {
    let sock = match l {
        Listen::Unix(path) => {
            let sock = bind_unix(path, Type::STREAM)?;
            h.remove_on_exit(path.clone());
            sock
        }
        Listen::Tcp(addr) => {
            let sock = Socket::new(Domain::for_address(*addr), Type::STREAM, None)?;
            sock.set_reuse_address(true)?;
            sock.bind(&SockAddr::from(*addr))
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            sock
        }
    };
    sock.listen(64)?;
    sock.set_nonblocking(true)?;
    let fd = register(OwnedFd::from(sock))?;
    h.add_front_end(Box::new(Listener {
        fd,
        what: l.clone(),
    }));
    Ok(())
}

/// Adds a connected stream socket (QEMU framing) as a port.
pub fn add_stream(h: &mut Host<'_>, s: Socket, name: String) -> io::Result<PortId> {
    s.set_nonblocking(true)?;
    if s.domain().ok() != Some(Domain::UNIX) {
        let _ = s.set_tcp_nodelay(true);
    }
    let _ = s.set_send_buffer_size(4 << 20);
    let _ = s.set_recv_buffer_size(4 << 20);
    let fd = Rc::new(register(OwnedFd::from(s))?);
    let port = h.add_port(
        name,
        Tx::Stream {
            fd: fd.clone(),
            queue: Vec::new(),
            off: 0,
            blocked: false,
        },
        framing::MAX_FRAME,
    );
    h.add_front_end(Box::new(StreamRx {
        fd,
        port,
        rx: vec![0; RX_BUF],
        rx_len: 0,
    }));
    Ok(port)
}

impl FrontEnd for Listener {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        let (waker, tok) = cx.waker();
        loop {
            if !poll_ready(&self.fd, &waker, false) {
                return Keep::Yes;
            }
            match SockRef::from(self.fd.get_ref()).accept() {
                Ok((s, addr)) => {
                    let name = match &self.what {
                        Listen::Unix(p) => format!("stream unix:{}", p.display()),
                        Listen::Tcp(_) => format!(
                            "stream tcp:{}",
                            addr.as_socket().map(|a| a.to_string()).unwrap_or_default()
                        ),
                    };
                    if let Err(e) = add_stream(cx, s, name.clone()) {
                        log::warn!("cannot add a port for {name}: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    clear_ready(&self.fd, &waker, false, cx.queue(), tok);
                    return Keep::Yes;
                }
                Err(e) => {
                    // EMFILE/ENFILE (or anything else): the socket stays readable, so no new wakeup
                    // would ever come and the listener would be wedged. Retry shortly instead; it
                    // recovers by itself once fds are free. One log line per 10 s.
                    static LOGGED: std::sync::atomic::AtomicU64 =
                        std::sync::atomic::AtomicU64::new(0);
                    if log_allowed(&LOGGED) {
                        log::warn!(
                            "accept failed: {e}; retrying every {} ms",
                            ACCEPT_RETRY.as_millis()
                        );
                    }
                    retry_later(cx.queue(), tok, ACCEPT_RETRY);
                    return Keep::Yes;
                }
            }
        }
    }
}

impl FrontEnd for StreamRx {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        let s = self;
        if !cx.port_exists(s.port) {
            return Keep::No;
        }
        let (waker, tok) = cx.waker();
        // Bound the work per wakeup so one busy guest cannot starve the others.
        for _ in 0..16 {
            if !poll_ready(&s.fd, &waker, false) {
                return Keep::Yes;
            }
            let free = &mut s.rx[s.rx_len..];
            let r = match rustix::net::recv(&*s.fd, free, rustix::net::RecvFlags::DONTWAIT) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::AGAIN) => {
                    clear_ready(&s.fd, &waker, false, cx.queue(), tok);
                    return Keep::Yes;
                }
                Err(_) => {
                    cx.close_port(s.port, "read failed");
                    return Keep::No;
                }
            };
            if r == 0 {
                cx.close_port(s.port, "disconnected");
                return Keep::No;
            }
            s.rx_len += r;
            let mut pos = 0;
            let mut for_gateway: Vec<&[u8]> = Vec::new();
            while pos < s.rx_len {
                match framing::decode(&s.rx[pos..s.rx_len]) {
                    Decoded::Frame {
                        start,
                        len,
                        consumed,
                    } => {
                        let frame = &s.rx[pos + start..pos + start + len];
                        if cx.switch(s.port, frame) {
                            for_gateway.push(frame);
                        }
                        pos += consumed;
                    }
                    Decoded::Incomplete => break,
                    Decoded::BadLength(l) => {
                        cx.to_gateway(s.port, &for_gateway);
                        let why = format!(
                            "bad frame length {l} (must be {}..={})",
                            framing::MIN_FRAME,
                            framing::MAX_FRAME
                        );
                        log::warn!("port {}: {why}; dropping the connection", s.port);
                        cx.close_port(s.port, "bad frame length");
                        return Keep::No;
                    }
                }
            }
            if !for_gateway.is_empty() {
                cx.to_gateway(s.port, &for_gateway);
                // Acknowledge what this read carried now, not after the whole wakeup: the guest's
                // sending rate follows our ACKs.
                cx.end_batch();
            }
            drop(for_gateway);
            s.rx.copy_within(pos..s.rx_len, 0);
            s.rx_len -= pos;
            if !cx.port_exists(s.port) {
                return Keep::No;
            }
        }
        // More may be waiting: come back after the others had their turn.
        cx.again();
        Keep::Yes
    }
}
