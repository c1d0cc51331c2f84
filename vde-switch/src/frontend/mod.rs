//! Front ends: whatever turns bytes from the outside into frames for the switch (and registers the
//! port frames leave through), one file each. None of them knows the event loop or the others; each
//! works against two narrow views:
//!
//! - [`Host`] while it is set up (and as part of [`Context`] later): create ports, register front
//!   ends, remove files at exit;
//! - [`Context`] when its fd is ready: its own waker, the frame path ([`Context::switch`] then
//!   [`Context::to_gateway`] then [`Context::end_batch`]), the port table, the gateway driver.
//!
//! A front end is a [`FrontEnd`] (its receive side) plus, usually, a port (its transmit side: a
//! [`Tx`] variant, or a [`crate::switch::port::Transmit`] of its own). Adding one: a new file here,
//! its `pub mod` line below, and a call in `Server::bind` (or from `main.rs`) that sets it up.

pub mod api;
pub mod dgram;
pub mod stream;
pub mod tap;
pub mod vde;
pub mod vhost_user;
pub mod vxlan;
pub mod watch;

use crate::atexit::AtExitList;
use crate::forwards::Forwards;
use crate::reactor::{Driver, FrontEndId, Keep, Reactor, Stopper};
use crate::reactor::{ReadyQueue, Token};
use crate::switch::port::{PortCounters, PortId, Tx};
use crate::switch::Switch;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

/// The receive side of a front end, as the event loop sees it.
pub trait FrontEnd {
    /// Its fd became readable (or it asked to be called again with [`Context::again`]; or it was just
    /// registered, so that it registers its waker). Reads a bounded amount, hands the frames on and
    /// says whether to keep it. Dropping it closes its fds.
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep;

    /// Housekeeping every 30 s (idle peers, stalled handshakes).
    fn tick(&mut self, _cx: &mut Context<'_>) -> Keep {
        Keep::Yes
    }
}

/// What a front end may touch while it is set up, and (through [`Context`]) when it runs.
pub struct Host<'a> {
    pub(crate) reactor: &'a mut Reactor<dyn FrontEnd>,
    pub(crate) switch: &'a mut Switch,
    pub(crate) at_exit: &'a mut AtExitList,
}

impl Host<'_> {
    /// Registers a front end; its [`FrontEnd::on_readable`] runs once at the next batch.
    pub fn add_front_end(&mut self, fe: Box<dyn FrontEnd>) -> FrontEndId {
        self.reactor.insert(fe)
    }

    /// Creates a switch port.
    pub fn add_port(&mut self, name: String, tx: Tx, max_frame: usize) -> PortId {
        self.switch.add_port(name, tx, max_frame)
    }

    /// Removes a port and forgets its MACs (a no-op if it is gone already).
    pub fn close_port(&mut self, id: PortId, why: &str) {
        self.switch.close_port(id, why)
    }

    pub fn port_exists(&self, id: PortId) -> bool {
        self.switch.port_exists(id)
    }

    pub fn port_counters_mut(&mut self, id: PortId) -> Option<&mut PortCounters> {
        self.switch.port_counters_mut(id)
    }

    /// Largest frame on the LAN (MTU + Ethernet header).
    pub fn mtu_frame(&self) -> usize {
        self.switch.mtu_frame()
    }

    /// Removes file `path` when the server stops.
    pub fn remove_on_exit(&mut self, path: std::path::PathBuf) {
        self.at_exit.file(path)
    }

    /// Removes directory `path` (if empty) when the server stops.
    pub fn remove_dir_on_exit(&mut self, path: std::path::PathBuf) {
        self.at_exit.dir(path)
    }

    /// Stops the server after the current batch.
    pub fn stopper(&self) -> Stopper {
        self.reactor.stopper()
    }

    pub fn queue(&self) -> &Arc<ReadyQueue> {
        self.reactor.queue()
    }
}

/// What a running front end sees: [`Host`] (by `Deref`), its own waker, the frame path and the
/// gateway driver.
pub struct Context<'a> {
    pub(crate) host: Host<'a>,
    pub(crate) driver: &'a mut Driver,
    pub(crate) forwards: &'a mut Forwards,
    pub(crate) id: FrontEndId,
    /// When the batch began.
    pub now: Instant,
}

impl<'a> std::ops::Deref for Context<'a> {
    type Target = Host<'a>;
    fn deref(&self) -> &Host<'a> {
        &self.host
    }
}

impl<'a> std::ops::DerefMut for Context<'a> {
    fn deref_mut(&mut self) -> &mut Host<'a> {
        &mut self.host
    }
}

impl Context<'_> {
    /// This front end's waker and token (for `poll_ready`/`clear_ready`).
    pub fn waker(&self) -> (Waker, Token) {
        self.host.reactor.waker(self.id)
    }

    /// Calls this front end again after the others had their turn (more may be waiting).
    pub fn again(&self) {
        self.host
            .reactor
            .queue()
            .push(crate::reactor::front_end_token(self.id));
    }

    /// Learns and switches `frame` from `port` to the other ports; true if the gateway must see it
    /// too (pass it to [`Context::to_gateway`], batched with others from the same port).
    pub fn switch(&mut self, port: PortId, frame: &[u8]) -> bool {
        self.host
            .switch
            .switch_in(self.now, port, frame, self.driver.gw.dhcp())
    }

    /// Hands frames from `port` (that [`Context::switch`] let through) to the gateway.
    pub fn to_gateway(&mut self, port: PortId, frames: &[&[u8]]) {
        let (now, sw) = (self.now, &mut *self.host.switch);
        self.driver
            .handle_frames_from(now, port.number(), frames, &mut |f| sw.gateway_out(now, f));
    }

    /// Ends the gateway's batch (its ACKs and window updates go out now) and flushes the ports.
    pub fn end_batch(&mut self) {
        let (now, sw) = (self.now, &mut *self.host.switch);
        self.driver.end_batch(now, &mut |f| sw.gateway_out(now, f));
        sw.flush_and_resume(now, self.driver);
    }

    /// The gateway driver (leases, forwards, counters).
    pub fn driver(&mut self) -> &mut Driver {
        self.driver
    }

    /// Host forwards (command line and API) and the switch's counters, for the control socket.
    pub fn forwards_and_stats(&mut self) -> (&mut Forwards, &mut Driver, Vec<(&'static str, u64)>) {
        (self.forwards, self.driver, self.host.switch.stats())
    }
}

/// Binds a unix socket at `path`, replacing a stale socket file but never a live one or a non-socket.
pub fn bind_unix(path: &std::path::Path, ty: Type) -> io::Result<Socket> {
    if let Some(s) = crate::activation::take(path).filter(|_| ty == Type::STREAM) {
        return Ok(s);
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        let live = if ty == Type::STREAM {
            std::os::unix::net::UnixStream::connect(path).is_ok()
        } else {
            std::os::unix::net::UnixDatagram::unbound()
                .and_then(|d| d.connect(path))
                .is_ok()
        };
        if live {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    let s = Socket::new(Domain::UNIX, ty, None)?;
    s.bind(&SockAddr::unix(path)?)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    Ok(s)
}
