//! `--vhost-user PATH`: a vhost-user backend for QEMU's `-netdev vhost-user` (virtio-net with guest
//! RAM shared through a memfd). Each connected QEMU is one port on the LAN.
//!
//! The protocol (memory table, vring addresses, kick/call eventfds) is rust-vmm's
//! `vhost-user-backend` daemon: one protocol thread per connection plus one vring worker thread that
//! waits on the kick eventfds. The worker does no frame work: a kick only pushes the connection's
//! token onto the reactor's ready queue. The frames move on the reactor's thread:
//!
//! - guest → LAN: [`VhostRx::on_readable`] pops the TX queue's descriptor chains and copies each frame
//!   once, out of guest memory into one batch buffer, which is switched and handed to the gateway
//!   like the other front ends' receive buffers (one copy);
//! - LAN → guest: the port's [`Transmit`] writes each frame straight into the guest's RX buffers
//!   (one copy; `VIRTIO_NET_F_MRG_RXBUF` lets a frame span several buffers). Only when the guest has
//!   posted no buffers is a frame copied into a bounded queue, written out at the guest's next RX kick.
//!
//! The listening socket is bound at start; the thread that accepts on it starts with the first batch,
//! after the sandbox is on, so every vhost-user thread is confined like the reactor. QEMU
//! disconnecting closes the port; a reconnect (`reconnect=` on QEMU's chardev) gets a new one.
//! No checksum or segmentation offloads are offered (see `--vhost-user` in the README): every frame is
//! at most the LAN's MTU.

mod relay;

use super::{bind_unix, Context, FrontEnd, Host};
use crate::reactor::{front_end_token, Keep, ReadyQueue, Token};
use crate::switch::port::{PortCounters, PortId, Sent, Transmit, Tx, DGRAM_QUEUE_CAP};
use socket2::Type;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

/// The virtio-net header with `VIRTIO_F_VERSION_1` (`struct virtio_net_hdr_v1`): 12 bytes.
pub const HDR_LEN: usize = 12;
/// Queue 0 receives (towards the guest), queue 1 transmits (from the guest).
const RX_QUEUE: usize = 0;
const TX_QUEUE: usize = 1;
/// Descriptors per queue at most (QEMU's virtio-net default is 256).
const QUEUE_SIZE: usize = 1024;
/// Frames taken from the guest per wakeup before the other front ends get their turn.
const BATCH: usize = 64;
/// `VHOST_USER_F_PROTOCOL_FEATURES`: QEMU 7.2's vhost-user virtio-net fails to start without it
/// (no protocol feature is offered under it, though; see `relay.rs` for why QEMU's messages are
/// relayed).
const PROTOCOL_FEATURES: u64 = 1 << 30;

/// The virtio feature bits offered: version 1 and mergeable receive buffers. No offloads: a guest
/// frame is never longer than the LAN's MTU, so large segments need no splitting here.
pub const FEATURES: u64 =
    (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_NET_F_MRG_RXBUF) | PROTOCOL_FEATURES;

/// What both the vhost-user threads and the reactor see of one connection.
pub struct Shared {
    mem: Mem,
    /// The vrings, known from the first kick.
    vrings: Mutex<Option<Vec<VringRwLock>>>,
    /// The connection's front-end token, once it is registered.
    token: Mutex<Option<Token>>,
    queue: Arc<ReadyQueue>,
    /// QEMU disconnected.
    gone: AtomicBool,
    /// The guest acked `VIRTIO_NET_F_MRG_RXBUF` (a frame may span several RX buffers).
    mergeable: AtomicBool,
    /// Stops the vring worker thread after a disconnect.
    exit: Mutex<Vec<EventNotifier>>,
}

impl Shared {
    fn wake(&self) {
        let t = *self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = t {
            self.queue.push(t);
        }
    }

    fn vring(&self, i: usize) -> Option<VringRwLock> {
        let v = self.vrings.lock().unwrap_or_else(|e| e.into_inner());
        v.as_ref().and_then(|v| v.get(i).cloned())
    }
}

/// The backend handed to the daemon: answers feature queries, wakes the reactor on kicks.
#[derive(Clone)]
struct NetBackend(Arc<Shared>);

impl VhostUserBackend for NetBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        2
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        FEATURES
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::empty()
    }

    fn acked_features(&self, features: u64) {
        let mrg = features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0;
        self.0.mergeable.store(mrg, Ordering::Release);
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn update_memory(&self, _mem: Mem) -> io::Result<()> {
        // The daemon replaces the memory inside the `GuestMemoryAtomic` shared with `Shared::mem`.
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        let (c, n) = new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()?;
        let keep = n.try_clone().ok()?;
        self.0
            .exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(keep);
        Some((c, n))
    }

    fn handle_event(
        &self,
        _device_event: u16,
        _evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        {
            let mut v = self.0.vrings.lock().unwrap_or_else(|e| e.into_inner());
            if v.is_none() {
                log::debug!("vhost-user: first kick (queue {_device_event})");
                *v = Some(vrings.to_vec());
            }
        }
        self.0.wake();
        Ok(())
    }
}

/// Counters of guest buffers that did not carry a frame.
#[derive(Default, Debug, Clone)]
pub struct VhostCounters {
    /// TX chains shorter than header + Ethernet header, or longer than header + MTU frame.
    pub bad_size: u64,
    /// TX chains that could not be read (bad descriptors, addresses outside guest memory).
    pub bad_chain: u64,
    /// Frames dropped because the guest's RX queue was not set up yet.
    pub rx_not_ready: u64,
}

/// The reactor's side of a connection, shared by its front end and its port's transmit side.
struct Conn {
    shared: Arc<Shared>,
    /// Frames waiting for RX buffers, and their bytes.
    pending: VecDeque<Vec<u8>>,
    pending_bytes: usize,
    /// Used buffers were added since the last interrupt.
    need_signal: bool,
    counters: VhostCounters,
}

/// Where a frame went.
enum Put {
    Written,
    /// No (or not enough) RX buffers: try again at the next RX kick.
    NoRoom,
    /// The queue is not usable (not set up, or broken): drop the frame.
    Unusable,
}

impl Conn {
    /// Writes `frame` into the guest's RX buffers (several with mergeable buffers).
    fn put(&mut self, frame: &[u8]) -> Put {
        let Some(vring) = self.shared.vring(RX_QUEUE) else {
            return Put::Unusable;
        };
        let guard = self.shared.mem.memory();
        let mem: &GuestMemoryMmap = &guard;
        let mut st = vring.get_mut();
        if !st.is_enabled() || !st.get_queue().ready() {
            log::debug!(
                "vhost-user: RX queue not usable: enabled {} ready {}",
                st.is_enabled(),
                st.get_queue().ready()
            );
            return Put::Unusable;
        }
        let need = HDR_LEN + frame.len();
        let mergeable = self.shared.mergeable.load(Ordering::Acquire);
        // Collect chains until they hold the frame (one chain without mergeable buffers); give them
        // back if they do not.
        let mut chains = Vec::new();
        let mut room = 0;
        while room < need && (mergeable || chains.is_empty()) {
            let q: &mut Queue = st.get_queue_mut();
            let Some(chain) = q.pop_descriptor_chain(mem) else {
                break;
            };
            let cap = chain
                .clone()
                .writer(mem)
                .map(|w| w.available_bytes())
                .unwrap_or(0);
            room += cap;
            chains.push((chain, cap));
        }
        if room < need || chains.len() > u16::MAX as usize {
            for _ in 0..chains.len() {
                st.get_queue_mut().go_to_previous_position();
            }
            // Without mergeable buffers, a posted buffer too small for the frame would never fit it.
            return if chains.is_empty() || (mergeable && chains.len() <= u16::MAX as usize) {
                Put::NoRoom
            } else {
                Put::Unusable
            };
        }
        let mut hdr = [0u8; HDR_LEN];
        hdr[10..12].copy_from_slice(&(chains.len() as u16).to_le_bytes());
        let mut src: &[u8] = &hdr;
        let mut rest = frame;
        let mut ok = true;
        for (chain, cap) in chains {
            let head = chain.head_index();
            let mut written = 0;
            if let Ok(mut w) = chain.writer(mem) {
                let mut left = cap;
                while left > 0 && !(src.is_empty() && rest.is_empty()) {
                    if src.is_empty() {
                        src = rest;
                        rest = &[];
                    }
                    let n = left.min(src.len());
                    if w.write_all(&src[..n]).is_err() {
                        ok = false;
                        break;
                    }
                    src = &src[n..];
                    left -= n;
                    written += n;
                }
            } else {
                ok = false;
            }
            if st.add_used(head, written as u32).is_err() {
                ok = false;
            }
        }
        self.need_signal = true;
        if ok {
            Put::Written
        } else {
            Put::Unusable
        }
    }

    /// Writes pending frames while the guest has buffers; true when none is left.
    fn drain_pending(&mut self, counters: Option<&mut PortCounters>) -> bool {
        let mut dropped = 0;
        while let Some(f) = self.pending.pop_front() {
            match self.put(&f) {
                Put::Written => self.pending_bytes -= f.len(),
                Put::NoRoom => {
                    self.pending.push_front(f);
                    break;
                }
                Put::Unusable => {
                    self.pending_bytes -= f.len();
                    dropped += 1;
                }
            }
        }
        if let Some(c) = counters {
            c.drop_tx_full += dropped;
        }
        self.pending.is_empty()
    }

    /// Interrupts the guest if used buffers were added.
    fn signal(&mut self, q: usize) {
        if std::mem::take(&mut self.need_signal) {
            if let Some(v) = self.shared.vring(q) {
                let _ = v.signal_used_queue();
            }
        }
    }
}

/// The transmit side of a vhost-user port.
struct VhostTx(Rc<RefCell<Conn>>);

impl Transmit for VhostTx {
    fn send(&mut self, frame: &[u8], counters: &mut PortCounters) -> Sent {
        let mut c = self.0.borrow_mut();
        if c.shared.gone.load(Ordering::Acquire) {
            counters.drop_tx_full += 1;
            return Sent::Done;
        }
        if c.pending.is_empty() {
            match c.put(frame) {
                Put::Written => return Sent::Queued,
                Put::Unusable => {
                    c.counters.rx_not_ready += 1;
                    counters.drop_tx_full += 1;
                    return Sent::Done;
                }
                Put::NoRoom => {}
            }
        }
        if c.pending_bytes + frame.len() > DGRAM_QUEUE_CAP {
            counters.drop_tx_full += 1;
            return Sent::Done;
        }
        c.pending.push_back(frame.to_vec());
        c.pending_bytes += frame.len();
        Sent::Queued
    }

    fn flush(&mut self, counters: &mut PortCounters) -> io::Result<bool> {
        let mut c = self.0.borrow_mut();
        let done = c.drain_pending(Some(counters));
        c.signal(RX_QUEUE);
        Ok(done)
    }

    fn queued(&self) -> usize {
        self.0.borrow().pending_bytes
    }

    fn congested(&self) -> bool {
        self.0.borrow().pending_bytes > DGRAM_QUEUE_CAP / 4
    }
}

/// The receive side of a vhost-user connection (its port's frames from the guest).
struct VhostRx {
    conn: Rc<RefCell<Conn>>,
    port: PortId,
    buf: Vec<u8>,
}

impl FrontEnd for VhostRx {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        if !cx.port_exists(self.port) {
            return Keep::No;
        }
        let mut conn = self.conn.borrow_mut();
        if conn.shared.gone.load(Ordering::Acquire) {
            log::info!("port {}: vhost-user: QEMU disconnected", self.port);
            if conn.counters.bad_size + conn.counters.bad_chain > 0 {
                log::info!("port {}: vhost-user: {:?}", self.port, conn.counters);
            }
            drop(conn);
            cx.close_port(self.port, "disconnected");
            return Keep::No;
        }
        // Frames that waited for RX buffers first (the guest may have posted some).
        let counters = cx.port_counters_mut(self.port);
        conn.drain_pending(counters);
        conn.signal(RX_QUEUE);
        // Then the guest's TX queue.
        let mtu_frame = cx.mtu_frame();
        let (frames, more) = take_tx(&mut conn, &mut self.buf, mtu_frame);
        drop(conn);
        let mut for_gateway: Vec<&[u8]> = Vec::new();
        for r in frames {
            let f = &self.buf[r];
            if cx.switch(self.port, f) {
                for_gateway.push(f);
            }
        }
        if !for_gateway.is_empty() {
            cx.to_gateway(self.port, &for_gateway);
            cx.end_batch();
        }
        if more {
            cx.again();
        }
        Keep::Yes
    }
}

/// Copies up to [`BATCH`] frames out of the TX queue into `buf`; their ranges, and whether more may
/// be waiting.
fn take_tx(
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    mtu_frame: usize,
) -> (Vec<std::ops::Range<usize>>, bool) {
    let mut frames = Vec::new();
    let Some(vring) = conn.shared.vring(TX_QUEUE) else {
        return (frames, false);
    };
    let guard = conn.shared.mem.memory();
    let mem: &GuestMemoryMmap = &guard;
    let mut st = vring.get_mut();
    if !st.is_enabled() || !st.get_queue().ready() {
        return (frames, false);
    }
    buf.clear();
    let mut used = false;
    let mut more = false;
    let mut hdr = [0u8; HDR_LEN];
    // No kicks while the queue is drained here (`VRING_USED_F_NO_NOTIFY`); re-enabled below once it
    // is empty, or at the next wakeup when the batch filled up (`more`: the caller comes back).
    let _ = st.disable_notification();
    let mut rechecked = false;
    loop {
        if frames.len() >= BATCH {
            more = true;
            break;
        }
        let q: &mut Queue = st.get_queue_mut();
        let Some(chain) = q.pop_descriptor_chain(mem) else {
            // Buffers added between the last pop and re-enabling are seen here, not lost. Once
            // only: a ring whose next entry cannot be popped (a broken avail ring) must not spin.
            if rechecked || !matches!(st.enable_notification(), Ok(true)) {
                break;
            }
            rechecked = true;
            continue;
        };
        let head = chain.head_index();
        match chain.reader(mem) {
            Ok(mut r) => {
                let total = r.available_bytes();
                if total < HDR_LEN + 14 || total - HDR_LEN > mtu_frame {
                    conn.counters.bad_size += 1;
                } else {
                    let start = buf.len();
                    buf.resize(start + total - HDR_LEN, 0);
                    if r.read_exact(&mut hdr).is_ok() && r.read_exact(&mut buf[start..]).is_ok() {
                        frames.push(start..buf.len());
                    } else {
                        buf.truncate(start);
                        conn.counters.bad_chain += 1;
                    }
                }
            }
            Err(_) => conn.counters.bad_chain += 1,
        }
        if st.add_used(head, 0).is_err() {
            conn.counters.bad_chain += 1;
        }
        used = true;
    }
    drop(st);
    if used {
        let _ = vring.signal_used_queue();
    }
    (frames, more)
}

/// The listening socket: accepted connections arrive from its thread.
struct VhostListen {
    path: PathBuf,
    listener: Option<UnixListener>,
    incoming: Option<mpsc::Receiver<Arc<Shared>>>,
}

/// The QEMU arguments for a guest on `path`.
pub fn qemu_args(path: &Path) -> String {
    format!(
        "-chardev socket,id=c0,path={} -netdev vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0,vectors=0 -object memory-backend-memfd,id=mem,size=SIZE,share=on -machine memory-backend=mem",
        path.display()
    )
}

/// Binds `path` (replacing a stale socket, never a live one) and registers its front end.
pub fn bind(h: &mut Host<'_>, path: &Path) -> io::Result<()> {
    let sock = bind_unix(path, Type::STREAM)?;
    sock.listen(16)?;
    h.remove_on_exit(path.to_path_buf());
    let listener = UnixListener::from(std::os::fd::OwnedFd::from(sock));
    h.add_front_end(Box::new(VhostListen {
        path: path.to_path_buf(),
        listener: Some(listener),
        incoming: None,
    }));
    Ok(())
}

/// Ends a connection's vring worker thread.
fn stop_workers(shared: &Shared) {
    for n in shared.exit.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = n.notify();
    }
}

/// A connected pair for the relay: the daemon's listener (on an unguessable abstract name, closed
/// once the daemon accepted) and the relay's end, already connected to it (first in the backlog).
fn inner_pair() -> io::Result<(Listener, UnixStream)> {
    use std::hash::{BuildHasher, Hasher};
    use std::os::linux::net::SocketAddrExt;
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let name = format!("warren-vhost-user-{}-{random:016x}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let l = UnixListener::bind_addr(&addr)?;
    let c = UnixStream::connect_addr(&addr)?;
    Ok((Listener::from(l), c))
}

/// Accepts QEMU connections on `listener` forever; each gets a daemon, announced on `tx`.
fn accept_loop(
    listener: UnixListener,
    path: PathBuf,
    queue: Arc<ReadyQueue>,
    me: Token,
    tx: mpsc::Sender<Arc<Shared>>,
) {
    let mut failures = 0u32;
    loop {
        let qemu = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                log::warn!("vhost-user {}: accept failed: {e}", path.display());
                std::thread::sleep(std::time::Duration::from_millis(200));
                continue;
            }
        };
        let (mut inner, relay_end) = match inner_pair() {
            Ok(p) => p,
            Err(e) => {
                log::warn!(
                    "vhost-user {}: cannot connect the relay: {e}",
                    path.display()
                );
                continue;
            }
        };
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let shared = Arc::new(Shared {
            mem: mem.clone(),
            vrings: Mutex::new(None),
            token: Mutex::new(None),
            queue: queue.clone(),
            gone: AtomicBool::new(false),
            mergeable: AtomicBool::new(false),
            exit: Mutex::new(Vec::new()),
        });
        let mut daemon =
            match VhostUserDaemon::new("vhost-user".into(), NetBackend(shared.clone()), mem) {
                Ok(d) => d,
                Err(e) => {
                    log::warn!("vhost-user {}: {e}", path.display());
                    failures += 1;
                    if failures > 10 {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    continue;
                }
            };
        if let Err(e) = daemon.start(&mut inner) {
            log::warn!("vhost-user {}: {e}", path.display());
            stop_workers(&shared);
            continue;
        }
        drop(inner);
        let relayed = std::thread::Builder::new()
            .name("vhost-user-relay".into())
            .spawn(move || relay::run(qemu, relay_end));
        if let Err(e) = relayed {
            log::warn!("vhost-user {}: cannot start a thread: {e}", path.display());
            continue;
        }
        if tx.send(shared.clone()).is_err() {
            return;
        }
        queue.push(me);
        let name = path.display().to_string();
        let spawned = std::thread::Builder::new()
            .name("vhost-user-conn".into())
            .spawn(move || {
                if let Err(e) = daemon.wait() {
                    log::debug!("vhost-user {name}: {e}");
                }
                shared.gone.store(true, Ordering::Release);
                stop_workers(&shared);
                shared.wake();
            });
        if let Err(e) = spawned {
            log::warn!("vhost-user {}: cannot start a thread: {e}", path.display());
        }
    }
}

impl FrontEnd for VhostListen {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        if let Some(listener) = self.listener.take() {
            // The first batch: the sandbox is on by now, so the threads start confined.
            let (tx, rx) = mpsc::channel();
            let queue = cx.queue().clone();
            let me = cx.waker().1;
            let path = self.path.clone();
            let r = std::thread::Builder::new()
                .name("vhost-user-accept".into())
                .spawn(move || accept_loop(listener, path, queue, me, tx));
            if let Err(e) = r {
                log::warn!("vhost-user {}: cannot start: {e}", self.path.display());
                return Keep::No;
            }
            self.incoming = Some(rx);
        }
        let Some(rx) = &self.incoming else {
            return Keep::Yes;
        };
        while let Ok(shared) = rx.try_recv() {
            let conn = Rc::new(RefCell::new(Conn {
                shared: shared.clone(),
                pending: VecDeque::new(),
                pending_bytes: 0,
                need_signal: false,
                counters: VhostCounters::default(),
            }));
            let max = cx.mtu_frame();
            let port = cx.add_port(
                format!("vhost-user {}", self.path.display()),
                Tx::Custom(Box::new(VhostTx(conn.clone()))),
                max,
            );
            let id = cx.add_front_end(Box::new(VhostRx {
                conn,
                port,
                buf: Vec::with_capacity(BATCH * 2048),
            }));
            *shared.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(front_end_token(id));
            // A kick (or the disconnect) before the token was set found nobody to wake.
            shared.wake();
            log::info!(
                "port {port}: vhost-user guest connected on {}",
                self.path.display()
            );
        }
        Keep::Yes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_mergeable_buffers_and_no_offloads() {
        use virtio_bindings::virtio_net::*;
        assert_ne!(FEATURES & (1 << VIRTIO_NET_F_MRG_RXBUF), 0);
        assert_ne!(FEATURES & (1 << VIRTIO_F_VERSION_1), 0);
        for off in [
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_GUEST_TSO4,
        ] {
            assert_eq!(FEATURES & (1 << off), 0, "offload bit {off}");
        }
        assert!(qemu_args(Path::new("/tmp/v.sock")).contains("path=/tmp/v.sock"));
        assert!(qemu_args(Path::new("/tmp/v.sock")).contains("vectors=0"));
    }
}
