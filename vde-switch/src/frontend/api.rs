//! The control socket (`--api PATH`): slirp4netns' JSON protocol (`add_hostfwd`, `list_hostfwd`,
//! `remove_hostfwd`) plus `list_leases` and `stats`, one request per connection. The requests are
//! answered by `forwards.rs`; this file is the socket side.

use super::{bind_unix, Context, FrontEnd, Host};
use crate::reactor::{clear_ready, poll_ready, register, Keep};
use slirp_compat::api::MAX_REQUEST;
use socket2::{SockRef, Socket, Type};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Instant;
use tokio::io::unix::AsyncFd;

/// The listening control socket.
pub struct ApiListener {
    fd: AsyncFd<OwnedFd>,
}

/// One control connection.
pub struct ApiConn {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
    opened: Instant,
}

/// Listens for API clients at `path`.
pub fn listen(h: &mut Host<'_>, path: &Path) -> io::Result<()> {
    let s = bind_unix(path, Type::STREAM)?;
    s.listen(16)?;
    s.set_nonblocking(true)?;
    let fd = register(OwnedFd::from(s))?;
    h.remove_on_exit(path.to_path_buf());
    h.add_front_end(Box::new(ApiListener { fd }));
    Ok(())
}

impl FrontEnd for ApiListener {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        let (waker, tok) = cx.waker();
        loop {
            if !poll_ready(&self.fd, &waker, false) {
                return Keep::Yes;
            }
            match SockRef::from(self.fd.get_ref()).accept() {
                Ok((s, _)) => {
                    if let Err(e) = add_conn(cx, s) {
                        log::warn!("API: cannot take a connection: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    clear_ready(&self.fd, &waker, false, cx.queue(), tok);
                    return Keep::Yes;
                }
                Err(e) => {
                    log::warn!("API accept failed: {e}");
                    return Keep::Yes;
                }
            }
        }
    }
}

fn add_conn(h: &mut Host<'_>, s: Socket) -> io::Result<()> {
    s.set_nonblocking(true)?;
    let fd = register(OwnedFd::from(s))?;
    h.add_front_end(Box::new(ApiConn {
        fd,
        buf: Vec::new(),
        opened: Instant::now(),
    }));
    Ok(())
}

impl FrontEnd for ApiConn {
    /// Reads one request (until EOF, or as soon as the bytes form a complete JSON value), answers it
    /// and closes the connection.
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        let (waker, tok) = cx.waker();
        let mut eof = false;
        loop {
            if !poll_ready(&self.fd, &waker, false) {
                break;
            }
            let mut chunk = [0u8; 4096];
            let r = match rustix::net::recv(&self.fd, &mut chunk, rustix::net::RecvFlags::DONTWAIT)
            {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::AGAIN) => {
                    clear_ready(&self.fd, &waker, false, cx.queue(), tok);
                    break;
                }
                Err(_) => return Keep::No,
            };
            if r == 0 {
                eof = true;
                break;
            }
            self.buf.extend_from_slice(&chunk[..r]);
            if self.buf.len() > MAX_REQUEST {
                break;
            }
        }
        let complete = serde_json::from_slice::<serde_json::Value>(&self.buf).is_ok();
        if !(eof || complete || self.buf.len() > MAX_REQUEST) {
            if self.opened.elapsed().as_secs() > 10 {
                return Keep::No;
            }
            return Keep::Yes;
        }
        if self.buf.is_empty() {
            return Keep::No;
        }
        if let Some(reply) = cx.host.switch.attachment_api(&self.buf) {
            write_all_nonblocking(self.fd.get_ref(), &reply);
            return Keep::No;
        }
        let (forwards, driver, switch) = cx.forwards_and_stats();
        let reply = forwards.handle_request(&self.buf, driver, switch);
        write_all_nonblocking(self.fd.get_ref(), &reply);
        Keep::No
    }
}

/// Writes a small reply; the client reads it before anything else happens, so a brief blocking wait
/// (bounded) is acceptable.
fn write_all_nonblocking(fd: &OwnedFd, mut data: &[u8]) {
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    while !data.is_empty() && Instant::now() < deadline {
        use rustix::net::SendFlags;
        match rustix::net::send(fd, data, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(n) if n > 0 => data = &data[n..],
            Err(rustix::io::Errno::AGAIN) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            _ => return,
        }
    }
}
