//! The event loop: listeners, stream ports, the switch and the gateway driver on one thread.
//!
//! Every socket is a tokio `AsyncFd` whose waker reports a token on the shared ready queue; the loop
//! drains the queue in batches, so a wakeup costs the same whatever the number of ports and flows.

use crate::framing::{self, Decoded};
use crate::switch::{Dest, MacTable, PortId, Refused};
use netstack::driver::{Driver, ReadyQueue, Token};
use netstack::pcap::PcapWriter;
use netstack::wire::ethernet;
use netstack::Mac;
use socket2::{Domain, SockAddr, Socket, Type};
use std::fs::File;
use std::future::Future;
use std::io::{self, BufWriter, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// Bytes a port may have queued towards its guest before frames are dropped.
const TX_QUEUE_CAP: usize = 8 << 20;
/// Frames at least this long are written directly (no copy into the queue) when the queue is empty.
const DIRECT_WRITE_MIN: usize = 16 << 10;
/// Receive buffer per port (several maximum-size frames).
const RX_BUF: usize = 256 << 10;
const SIGNAL_TOKEN: u64 = u64::MAX;

/// What to listen on.
#[derive(Clone, Debug)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

pub struct ServerOptions {
    pub listen: Vec<Listen>,
    pub pcap: Option<PathBuf>,
}

fn register(s: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: a socket2::Socket owns its fd; it stays open and unchanged until the Socket is dropped,
    // which happens only when the AsyncFd that owns it is dropped.
    unsafe { AsyncFd::register(s) }.map_err(|e| io::Error::other(e.to_string()))
}

fn poll_ready(fd: &AsyncFd<Socket>, waker: &Waker, write: bool) -> bool {
    let mut cx = Context::from_waker(waker);
    let r = if write {
        fd.poll_write_ready(&mut cx).map(|r| r.is_ok())
    } else {
        fd.poll_read_ready(&mut cx).map(|r| r.is_ok())
    };
    matches!(r, Poll::Ready(true))
}

fn clear_ready(fd: &AsyncFd<Socket>, waker: &Waker, write: bool, q: &ReadyQueue, t: Token) {
    let mut cx = Context::from_waker(waker);
    if write {
        if let Poll::Ready(Ok(mut g)) = fd.poll_write_ready(&mut cx) {
            g.clear_ready();
        }
    } else if let Poll::Ready(Ok(mut g)) = fd.poll_read_ready(&mut cx) {
        g.clear_ready();
    }
    if poll_ready(fd, waker, write) {
        q.push(t);
    }
}

#[derive(Default, Debug, Clone)]
pub struct PortCounters {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub drop_tx_full: u64,
    pub drop_refused: u64,
    pub drop_oversize: u64,
}

struct StreamPort {
    id: PortId,
    fd: AsyncFd<Socket>,
    waker: Waker,
    name: String,
    rx: Vec<u8>,
    rx_len: usize,
    tx: Vec<u8>,
    tx_off: usize,
    write_blocked: bool,
    counters: PortCounters,
}

struct Listener {
    fd: AsyncFd<Socket>,
    waker: Waker,
    what: Listen,
}

enum Endpoint {
    Listener(Listener),
    Port(Box<StreamPort>),
}

/// Token numbers for endpoints: slot index in the low 32 bits, generation above.
fn ext(idx: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | idx as u64
}

struct Ports {
    slots: Vec<(u32, Option<Endpoint>)>,
    queue: Arc<ReadyQueue>,
    mtu_frame: usize,
    dirty: Vec<usize>,
    pcap: Option<PcapWriter<BufWriter<File>>>,
}

impl Ports {
    fn add(&mut self, make: impl FnOnce(Waker, usize, u32) -> Endpoint) -> usize {
        let idx = match self.slots.iter().position(|(_, e)| e.is_none()) {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                self.slots.len() - 1
            }
        };
        let gen = self.slots[idx].0.wrapping_add(1);
        let waker = self.queue.waker(Token::Ext(ext(idx, gen)));
        self.slots[idx] = (gen, Some(make(waker, idx, gen)));
        self.queue.push(Token::Ext(ext(idx, gen)));
        idx
    }

    /// Port ids are slot indices (a closed port's MACs are forgotten before its slot is reused).
    fn port_mut(&mut self, id: PortId) -> Option<(usize, &mut StreamPort)> {
        match self.slots.get_mut(id as usize) {
            Some((_, Some(Endpoint::Port(p)))) => Some((id as usize, p.as_mut())),
            _ => None,
        }
    }

    /// Queues (or writes) one frame towards a port's guest.
    fn send(&mut self, idx: usize, frame: &[u8]) {
        if let Some(pc) = self.pcap.as_mut() {
            let _ = pc.frame(frame);
        }
        let Some((_, Some(Endpoint::Port(p)))) = self.slots.get_mut(idx) else {
            return;
        };
        if frame.len() > self.mtu_frame {
            p.counters.drop_oversize += 1;
            return;
        }
        p.counters.frames_out += 1;
        p.counters.bytes_out += frame.len() as u64;
        let hdr = framing::header(frame.len());
        if p.tx.len() == p.tx_off && !p.write_blocked && frame.len() >= DIRECT_WRITE_MIN {
            let iov = [IoSlice::new(&hdr), IoSlice::new(frame)];
            // SAFETY: IoSlice is ABI-compatible with iovec; both slices outlive the call.
            let r = unsafe { libc::writev(p.fd.as_raw_fd(), iov.as_ptr().cast(), 2) };
            let n = if r < 0 { 0 } else { r as usize };
            if n == 4 + frame.len() {
                return;
            }
            p.tx.clear();
            p.tx_off = 0;
            if n < 4 {
                p.tx.extend_from_slice(&hdr[n..]);
                p.tx.extend_from_slice(frame);
            } else {
                p.tx.extend_from_slice(&frame[n - 4..]);
            }
            self.dirty.push(idx);
            return;
        }
        if p.tx.len() - p.tx_off + 4 + frame.len() > TX_QUEUE_CAP {
            p.counters.drop_tx_full += 1;
            return;
        }
        if p.tx.len() == p.tx_off {
            self.dirty.push(idx);
        }
        p.tx.extend_from_slice(&hdr);
        p.tx.extend_from_slice(frame);
    }

    /// Writes queued bytes of every port that has some.
    fn flush(&mut self) -> Vec<usize> {
        let mut dead = Vec::new();
        let dirty = std::mem::take(&mut self.dirty);
        for idx in dirty {
            let gen = self.slots.get(idx).map(|s| s.0).unwrap_or(0);
            let Some((_, Some(Endpoint::Port(p)))) = self.slots.get_mut(idx) else {
                continue;
            };
            while p.tx_off < p.tx.len() {
                let buf = &p.tx[p.tx_off..];
                // SAFETY: buf is valid for reads of its length for the call's duration.
                let r = unsafe {
                    libc::send(
                        p.fd.as_raw_fd(),
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::WouldBlock {
                        p.write_blocked = true;
                        clear_ready(
                            &p.fd,
                            &p.waker,
                            true,
                            &self.queue,
                            Token::Ext(ext(idx, gen)),
                        );
                    } else {
                        dead.push(idx);
                    }
                    break;
                }
                p.tx_off += r as usize;
            }
            if p.tx_off == p.tx.len() {
                p.tx.clear();
                p.tx_off = 0;
                p.write_blocked = false;
                if p.tx.capacity() > (1 << 20) {
                    p.tx.shrink_to(1 << 16);
                }
            }
        }
        dead
    }
}

/// Everything on the loop's thread.
pub struct Server {
    queue: Arc<ReadyQueue>,
    ports: Ports,
    macs: MacTable,
    gateway_mac: Mac,
    stop: Arc<AtomicBool>,
    unix_paths: Vec<PathBuf>,
}

impl Server {
    /// Binds every listener. `queue` must be the queue the driver was built with.
    pub fn bind(queue: Arc<ReadyQueue>, driver: &Driver, opts: &ServerOptions) -> io::Result<Self> {
        let pcap = match &opts.pcap {
            Some(p) => {
                let f = File::create(p).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot create pcap file {}: {e}", p.display()),
                    )
                })?;
                Some(PcapWriter::new(BufWriter::with_capacity(1 << 20, f))?)
            }
            None => None,
        };
        let mtu_frame = usize::from(driver.gw.config().mtu) + ethernet::HEADER_LEN;
        let mut ports = Ports {
            slots: Vec::new(),
            queue: queue.clone(),
            mtu_frame,
            dirty: Vec::new(),
            pcap,
        };
        let mut unix_paths = Vec::new();
        for l in &opts.listen {
            let sock = match l {
                Listen::Unix(path) => {
                    if let Ok(meta) = std::fs::symlink_metadata(path) {
                        use std::os::unix::fs::FileTypeExt;
                        if meta.file_type().is_socket() {
                            // A stale socket from an earlier run: replace it only if nobody answers.
                            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                                return Err(io::Error::new(
                                    io::ErrorKind::AddrInUse,
                                    format!("{} is in use by another process", path.display()),
                                ));
                            }
                            let _ = std::fs::remove_file(path);
                        } else {
                            return Err(io::Error::new(
                                io::ErrorKind::AlreadyExists,
                                format!("{} exists and is not a socket", path.display()),
                            ));
                        }
                    }
                    let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                    s.bind(&SockAddr::unix(path)?).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display()))
                    })?;
                    unix_paths.push(path.clone());
                    s
                }
                Listen::Tcp(addr) => {
                    let s = Socket::new(Domain::for_address(*addr), Type::STREAM, None)?;
                    s.set_reuse_address(true)?;
                    s.bind(&SockAddr::from(*addr)).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                    })?;
                    s
                }
            };
            sock.listen(64)?;
            sock.set_nonblocking(true)?;
            let fd = register(sock)?;
            let what = l.clone();
            ports.add(move |waker, _, _| Endpoint::Listener(Listener { fd, waker, what }));
        }
        Ok(Server {
            queue,
            ports,
            macs: MacTable::default(),
            gateway_mac: driver.gw.mac(),
            stop: Arc::new(AtomicBool::new(false)),
            unix_paths,
        })
    }

    /// Runs until SIGINT or SIGTERM.
    pub async fn serve(mut self, mut driver: Driver) -> io::Result<()> {
        for kind in [
            tokio::signal::unix::SignalKind::interrupt(),
            tokio::signal::unix::SignalKind::terminate(),
        ] {
            let mut sig = tokio::signal::unix::signal(kind)?;
            let stop = self.stop.clone();
            let q = self.queue.clone();
            tokio::spawn(async move {
                sig.recv().await;
                stop.store(true, Ordering::SeqCst);
                q.push(Token::Ext(SIGNAL_TOKEN));
            });
        }
        let mut tokens = Vec::new();
        let mut sleep = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
        let mut last_expire = Instant::now();
        loop {
            let deadline = driver.next_deadline();
            std::future::poll_fn(|cx| {
                if self.queue.poll_drain(cx, &mut tokens).is_ready() {
                    return Poll::Ready(());
                }
                if let Some(d) = deadline {
                    sleep.as_mut().reset(tokio::time::Instant::from_std(d));
                    if Pin::new(&mut sleep).poll(cx).is_ready() {
                        return Poll::Ready(());
                    }
                }
                Poll::Pending
            })
            .await;
            let now = Instant::now();
            for t in tokens.drain(..) {
                match t {
                    Token::Ext(SIGNAL_TOKEN) => {}
                    Token::Ext(x) => self.handle_ext(now, x, &mut driver),
                    other => {
                        let (ports, macs, gw) = (&mut self.ports, &self.macs, self.gateway_mac);
                        driver.handle(now, other, &mut |f| from_gateway(ports, macs, gw, now, f));
                    }
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let (ports, macs, gw) = (&mut self.ports, &self.macs, self.gateway_mac);
            if deadline.is_some_and(|d| d <= now) {
                driver.poll_timers(now, &mut |f| from_gateway(ports, macs, gw, now, f));
            }
            driver.end_batch(now, &mut |f| from_gateway(ports, macs, gw, now, f));
            for idx in self.ports.flush() {
                self.close_port(idx, "write failed");
            }
            if let Some(pc) = self.ports.pcap.as_mut() {
                let _ = pc.flush();
            }
            if now.saturating_duration_since(last_expire) > Duration::from_secs(30) {
                last_expire = now;
                self.macs.expire(now);
            }
        }
        if let Some(pc) = self.ports.pcap.as_mut() {
            let _ = pc.flush();
        }
        for p in &self.unix_paths {
            let _ = std::fs::remove_file(p);
        }
        log::info!("stopped");
        Ok(())
    }

    fn handle_ext(&mut self, now: Instant, x: u64, driver: &mut Driver) {
        let idx = (x & 0xffff_ffff) as usize;
        let gen = (x >> 32) as u32;
        let Some((g, Some(ep))) = self.ports.slots.get(idx) else {
            return;
        };
        if *g != gen {
            return;
        }
        match ep {
            Endpoint::Listener(_) => self.accept(idx),
            Endpoint::Port(_) => {
                self.port_writable(idx, gen);
                self.port_readable(now, idx, gen, driver);
            }
        }
    }

    fn accept(&mut self, idx: usize) {
        let gen = self.ports.slots[idx].0;
        loop {
            let Some((_, Some(Endpoint::Listener(l)))) = self.ports.slots.get(idx) else {
                return;
            };
            if !poll_ready(&l.fd, &l.waker, false) {
                return;
            }
            match l.fd.get_ref().accept() {
                Ok((s, addr)) => {
                    let name = match &l.what {
                        Listen::Unix(p) => format!("unix:{}", p.display()),
                        Listen::Tcp(_) => format!(
                            "tcp:{}",
                            addr.as_socket().map(|a| a.to_string()).unwrap_or_default()
                        ),
                    };
                    if let Err(e) = self.add_port(s, name.clone()) {
                        log::warn!("cannot add a port for {name}: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let Some((_, Some(Endpoint::Listener(l)))) = self.ports.slots.get(idx) else {
                        return;
                    };
                    clear_ready(
                        &l.fd,
                        &l.waker,
                        false,
                        &self.queue,
                        Token::Ext(ext(idx, gen)),
                    );
                    return;
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_port(&mut self, s: Socket, name: String) -> io::Result<()> {
        s.set_nonblocking(true)?;
        if s.domain().ok() != Some(Domain::UNIX) {
            let _ = s.set_tcp_nodelay(true);
        }
        let _ = s.set_send_buffer_size(4 << 20);
        let _ = s.set_recv_buffer_size(4 << 20);
        let fd = register(s)?;
        self.ports.add(move |waker, idx, _| {
            let id = idx as PortId;
            log::info!("port {id} connected ({name})");
            Endpoint::Port(Box::new(StreamPort {
                id,
                fd,
                waker,
                name,
                rx: vec![0; RX_BUF],
                rx_len: 0,
                tx: Vec::new(),
                tx_off: 0,
                write_blocked: false,
                counters: PortCounters::default(),
            }))
        });
        Ok(())
    }

    fn port_writable(&mut self, idx: usize, _gen: u32) {
        let Some((_, Some(Endpoint::Port(p)))) = self.ports.slots.get_mut(idx) else {
            return;
        };
        if p.write_blocked && poll_ready(&p.fd, &p.waker, true) {
            p.write_blocked = false;
            self.ports.dirty.push(idx);
        }
    }

    fn port_readable(&mut self, now: Instant, idx: usize, gen: u32, driver: &mut Driver) {
        // Bound the work per wakeup so one busy guest cannot starve the others.
        for _ in 0..16 {
            let Some((_, Some(Endpoint::Port(p)))) = self.ports.slots.get_mut(idx) else {
                return;
            };
            if !poll_ready(&p.fd, &p.waker, false) {
                return;
            }
            let free = &mut p.rx[p.rx_len..];
            // SAFETY: `free` is valid for writes of its length for the call's duration.
            let r = unsafe {
                libc::recv(
                    p.fd.as_raw_fd(),
                    free.as_mut_ptr().cast(),
                    free.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if r == 0 {
                return self.close_port(idx, "disconnected");
            }
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    clear_ready(
                        &p.fd,
                        &p.waker,
                        false,
                        &self.queue,
                        Token::Ext(ext(idx, gen)),
                    );
                    return;
                }
                return self.close_port(idx, &format!("read failed: {e}"));
            }
            p.rx_len += r as usize;
            let (id, mut rx, rx_len) = (p.id, std::mem::take(&mut p.rx), p.rx_len);
            let mut pos = 0;
            let mut bad = None;
            while pos < rx_len {
                match framing::decode(&rx[pos..rx_len]) {
                    Decoded::Frame {
                        start,
                        len,
                        consumed,
                    } => {
                        let frame = &rx[pos + start..pos + start + len];
                        self.switch_frame(now, idx, id, frame, driver);
                        pos += consumed;
                    }
                    Decoded::Incomplete => break,
                    Decoded::BadLength(l) => {
                        bad = Some(l);
                        break;
                    }
                }
            }
            let Some((_, Some(Endpoint::Port(p)))) = self.ports.slots.get_mut(idx) else {
                return;
            };
            rx.copy_within(pos..rx_len, 0);
            p.rx_len = rx_len - pos;
            p.rx = rx;
            if let Some(l) = bad {
                return self.close_port(idx, &format!("bad frame length {l} (must be 14..=65549)"));
            }
        }
        // More may be waiting: come back after the others had their turn.
        self.queue.push(Token::Ext(ext(idx, gen)));
    }

    fn switch_frame(
        &mut self,
        now: Instant,
        idx: usize,
        port: PortId,
        frame: &[u8],
        driver: &mut Driver,
    ) {
        if let Some(pc) = self.ports.pcap.as_mut() {
            let _ = pc.frame(frame);
        }
        if let Some((_, Some(Endpoint::Port(p)))) = self.ports.slots.get_mut(idx) {
            p.counters.frames_in += 1;
            p.counters.bytes_in += frame.len() as u64;
        }
        let (dst, src) = (mac_at(frame, 0), mac_at(frame, 6));
        let dest = match self.macs.forward(now, port, src, dst, self.gateway_mac) {
            Ok(d) => d,
            Err(r) => {
                if let Some((_, Some(Endpoint::Port(p)))) = self.ports.slots.get_mut(idx) {
                    p.counters.drop_refused += 1;
                }
                let why = match r {
                    Refused::GatewayMac => "uses the gateway's MAC".to_string(),
                    Refused::GroupSource => "has a multicast source MAC".to_string(),
                    Refused::MacInUse(other) => format!("uses a MAC live on port {other}"),
                };
                log::debug!("port {port}: dropped a frame that {why}");
                return;
            }
        };
        let (ports, macs, gw) = (&mut self.ports, &self.macs, self.gateway_mac);
        match dest {
            Dest::Gateway => {
                driver.handle_frame(now, frame, &mut |f| from_gateway(ports, macs, gw, now, f))
            }
            Dest::Port(p) => {
                if let Some((i, _)) = ports.port_mut(p) {
                    ports.send_raw(i, frame);
                }
            }
            Dest::Flood { gateway } => {
                let targets: Vec<usize> = ports
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(i, (_, e))| *i != idx && matches!(e, Some(Endpoint::Port(_))))
                    .map(|(i, _)| i)
                    .collect();
                for i in targets {
                    ports.send_raw(i, frame);
                }
                if gateway {
                    driver.handle_frame(now, frame, &mut |f| from_gateway(ports, macs, gw, now, f));
                }
            }
            Dest::Drop => {}
        }
    }

    fn close_port(&mut self, idx: usize, why: &str) {
        let Some(slot) = self.ports.slots.get_mut(idx) else {
            return;
        };
        if let Some(Endpoint::Port(p)) = slot.1.take() {
            log::info!("port {} ({}) closed: {why}; {:?}", p.id, p.name, p.counters);
            self.macs.remove_port(p.id);
        }
    }
}

impl Ports {
    /// Frame switched between guests (recorded once, on input).
    fn send_raw(&mut self, idx: usize, frame: &[u8]) {
        let pcap = self.pcap.take();
        self.send(idx, frame);
        self.pcap = pcap;
    }
}

fn mac_at(f: &[u8], at: usize) -> Mac {
    [f[at], f[at + 1], f[at + 2], f[at + 3], f[at + 4], f[at + 5]]
}

/// A frame from the gateway: to its port, or flooded.
fn from_gateway(ports: &mut Ports, macs: &MacTable, gw: Mac, now: Instant, frame: &[u8]) {
    if frame.len() < 14 {
        return;
    }
    match macs.lookup(now, mac_at(frame, 0), gw, None) {
        Dest::Port(p) => {
            if let Some((i, _)) = ports.port_mut(p) {
                ports.send(i, frame);
            }
        }
        Dest::Flood { .. } => {
            if let Some(pc) = ports.pcap.as_mut() {
                let _ = pc.frame(frame);
            }
            let targets: Vec<usize> = ports
                .slots
                .iter()
                .enumerate()
                .filter(|(_, (_, e))| matches!(e, Some(Endpoint::Port(_))))
                .map(|(i, _)| i)
                .collect();
            for i in targets {
                ports.send_raw(i, frame);
            }
        }
        Dest::Gateway | Dest::Drop => {}
    }
}
