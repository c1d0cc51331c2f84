//! The event loop: front ends, the switch and the gateway driver on one thread.
//!
//! Two tables: **endpoints** are what the loop reads from (listeners, stream connections, datagram
//! sockets, tap fds), **ports** are what the switch sends to (see `port.rs`). A front end registers its
//! endpoint and creates ports; the endpoint's handler turns what it reads into frames and hands them to
//! [`Server::frame_in`]. Every fd is a tokio `AsyncFd` whose waker reports a token on the shared ready
//! queue; the loop drains the queue in batches, so a wakeup costs the same whatever the number of ports
//! and flows.

use crate::binding::{Guard, Verdict};
use crate::framing::{self, Decoded};
use crate::guard::L3;
use crate::port::{Class, Port, PortCounters, Sent, Tx};
use crate::storm::{StormLimit, TokenBucket};
use crate::switch::{Dest, MacTable, PortId, Refused};
use netstack::config::Ipv4Net;
use netstack::dhcp::DhcpServer;
use netstack::driver::{Driver, ReadyQueue, Token};
use netstack::pcap::PcapWriter;
use netstack::wire::ethernet;
use netstack::Mac;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use std::fs::File;
use std::future::Future;
use std::io::{self, BufWriter};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
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

/// LAN safety limits (storm control, table bounds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanOptions {
    /// Flooded frames per second and burst per ingress port (`rate` 0: unlimited).
    pub storm: StormLimit,
    /// Learned MACs in all, and on one port.
    pub max_macs: usize,
    pub max_macs_per_port: usize,
    /// Addresses bound without a DHCP lease (IP source guard).
    pub max_bindings: usize,
}

impl Default for LanOptions {
    fn default() -> Self {
        LanOptions {
            storm: StormLimit::default(),
            max_macs: crate::switch::DEFAULT_MAX_MACS,
            max_macs_per_port: crate::switch::DEFAULT_MAX_MACS_PER_PORT,
            max_bindings: crate::binding::DEFAULT_MAX,
        }
    }
}

#[derive(Default)]
pub struct ServerOptions {
    pub listen: Vec<Listen>,
    pub pcap: Option<PathBuf>,
    /// Unix datagram sockets for QEMU `-netdev dgram` (see `dgram.rs`).
    pub dgram: Vec<PathBuf>,
    /// A dgram peer silent this long loses its port (zero: [`crate::dgram::IDLE`]).
    pub dgram_idle: Duration,
    /// VDE2 switch directories (see `vde.rs`).
    pub vde: Vec<crate::vde::VdeOptions>,
    /// Guests reach only the gateway, not each other.
    pub isolate: bool,
    /// Storm control and table bounds.
    pub lan: LanOptions,
    /// The VXLAN uplink and `--no-gateway` (`vxlan.rs`).
    pub vxlan: crate::vxlan::VxlanOptions,
}

pub use crate::sys::register;

pub use netstack::driver::{clear_ready, poll_ready};

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

/// Something the loop reads from. Front ends add their variants here.
pub enum Endpoint {
    Listener(Listener),
    StreamRx(StreamRx),
    /// A shared `-netdev dgram` socket (`dgram.rs`).
    Dgram(crate::dgram::DgramRx),
    /// A VDE2 `ctl` listener (`vde.rs`).
    VdeListener(crate::vde::VdeListener),
    /// A VDE2 control connection and, once attached, its data socket (`vde.rs`).
    VdeConn(crate::vde::VdeConn),
    /// The control socket's listener (`api.rs`).
    ApiListener(crate::api::ApiListener),
    /// One control connection (`api.rs`).
    ApiConn(crate::api::ApiConn),
    /// A tap device inside a network namespace (`tap.rs`, `netns.rs`).
    Tap(crate::tap::TapRx),
    /// Stops the server when readable: the namespace's process exited, or `--exit-fd` (`netns.rs`).
    ExitWatch(crate::netns::ExitWatch),
    /// A socket of the VXLAN uplink (`vxlan.rs`).
    Vxlan(crate::vxlan::VxlanRx),
}

/// What an endpoint handler wants done with its endpoint afterwards.
#[derive(Debug, PartialEq, Eq)]
pub enum Keep {
    Yes,
    /// Drop it (its fd closes).
    No,
}

const KIND_SHIFT: u32 = 62;
const KIND_ENDPOINT: u64 = 0;
const KIND_PORT: u64 = 1;
const SIGNAL_TOKEN: u64 = 3 << KIND_SHIFT;

fn token(kind: u64, idx: usize, gen: u32) -> Token {
    Token::Ext((kind << KIND_SHIFT) | (u64::from(gen & 0x3fff_ffff) << 32) | idx as u64)
}

struct EndpointSlot {
    gen: u32,
    ep: Option<Endpoint>,
    waker: Option<Waker>,
}

struct PortSlot {
    gen: u32,
    port: Option<Port>,
    waker: Option<Waker>,
    /// The gateway paused senders because this port was congested: resume them when it drains (or
    /// goes away). Kept across a close so the paused flows are resumed.
    gw_waiting: bool,
}

/// Everything on the loop's thread.
pub struct Server {
    /// Host forwards (command line and API).
    pub(crate) forwards: crate::api::Forwards,
    pub(crate) queue: Arc<ReadyQueue>,
    endpoints: Vec<EndpointSlot>,
    free_endpoints: Vec<usize>,
    ports: Vec<PortSlot>,
    free_ports: Vec<usize>,
    dirty: Vec<PortId>,
    dead: Vec<(PortId, &'static str)>,
    /// The gateway paused a sender on a congested port (which one: [`PortSlot::gw_waiting`]).
    link_waiting: bool,
    macs: MacTable,
    gateway_mac: Mac,
    /// Largest frame on the LAN (MTU + Ethernet header).
    pub(crate) mtu_frame: usize,
    pcap: Option<PcapWriter<BufWriter<File>>>,
    stop: Arc<AtomicBool>,
    /// Files removed when the server stops (through their directories' descriptors: see `AtExit`).
    unix_paths: Vec<crate::sandbox::AtExit>,
    /// Directories removed (if empty) when the server stops.
    unix_dirs: Vec<crate::sandbox::AtExit>,
    /// Addresses only the gateway may claim (its own, the DNS forwarder's, the guestfwd services').
    protected_ips: Vec<[u8; 4]>,
    isolate: bool,
    /// IP source guard: addresses bound to MACs.
    guard: Guard,
    /// The LAN (claims of its addresses are bound; others are the gateway's business).
    net: Ipv4Net,
    storm: StormLimit,
    /// Counters of ports that have closed (for the totals in `stats`).
    closed: PortCounters,
    /// passt's `--one-off`: stop when a stream guest's port closes.
    one_off: bool,
    /// The VXLAN uplink (`vxlan.rs`).
    pub(crate) vxlan: Option<std::rc::Rc<std::cell::RefCell<crate::vxlan::Uplink>>>,
    /// `--no-gateway`: nothing reaches the gateway; the uplink is trusted (DHCP server, gateway
    /// addresses).
    no_gateway: bool,
}

/// The switch's gateway MAC under `--no-gateway`: a group address no one sends from.
const NO_GATEWAY_MAC: Mac = [0xff, 0xff, 0xff, 0xff, 0xff, 0xfe];

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
        let mut s = Server {
            forwards: crate::api::Forwards::default(),
            queue,
            endpoints: Vec::new(),
            free_endpoints: Vec::new(),
            ports: Vec::new(),
            free_ports: Vec::new(),
            dirty: Vec::new(),
            dead: Vec::new(),
            link_waiting: false,
            macs: MacTable::new(opts.lan.max_macs, opts.lan.max_macs_per_port),
            gateway_mac: if opts.vxlan.no_gateway {
                NO_GATEWAY_MAC
            } else {
                driver.gw.mac()
            },
            mtu_frame: usize::from(driver.gw.config().mtu) + ethernet::HEADER_LEN,
            pcap,
            stop: Arc::new(AtomicBool::new(false)),
            unix_paths: Vec::new(),
            unix_dirs: Vec::new(),
            protected_ips: {
                let cfg = driver.gw.config();
                let mut v = vec![cfg.gateway.octets(), cfg.dns.octets()];
                for g in &cfg.guestfwds {
                    if !v.contains(&g.addr.octets()) {
                        v.push(g.addr.octets());
                    }
                }
                v
            },
            isolate: opts.isolate,
            guard: Guard::new(opts.lan.max_bindings),
            net: driver.gw.config().net,
            storm: opts.lan.storm,
            closed: PortCounters::default(),
            one_off: false,
            vxlan: None,
            no_gateway: opts.vxlan.no_gateway,
        };
        for l in &opts.listen {
            let sock = match l {
                Listen::Unix(path) => {
                    let sock = bind_unix(path, Type::STREAM)?;
                    s.unix_paths.push(crate::sandbox::AtExit::new(path.clone()));
                    sock
                }
                Listen::Tcp(addr) => {
                    let sock = Socket::new(Domain::for_address(*addr), Type::STREAM, None)?;
                    sock.set_reuse_address(true)?;
                    sock.bind(&SockAddr::from(*addr)).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                    })?;
                    sock
                }
            };
            sock.listen(64)?;
            sock.set_nonblocking(true)?;
            let fd = register(OwnedFd::from(sock))?;
            s.add_endpoint(Endpoint::Listener(Listener {
                fd,
                what: l.clone(),
            }));
        }
        for path in &opts.dgram {
            crate::dgram::bind(&mut s, path, opts.dgram_idle)?;
        }
        for v in &opts.vde {
            crate::vde::bind(&mut s, v)?;
        }
        let cfg = driver.gw.config();
        crate::vxlan::bind(&mut s, &opts.vxlan, cfg.gateway_mac, cfg.gateway)?;
        Ok(s)
    }

    /// Also removes directory `path` (if empty) when the server stops.
    pub fn remove_dir_on_exit(&mut self, path: PathBuf) {
        self.unix_dirs.push(crate::sandbox::AtExit::new(path));
    }

    /// Also removes `path` when the server stops.
    pub fn remove_on_exit(&mut self, path: PathBuf) {
        self.unix_paths.push(crate::sandbox::AtExit::new(path));
    }

    /// Registers an endpoint; its handler runs once right away (to register its waker).
    pub fn add_endpoint(&mut self, ep: Endpoint) -> usize {
        let idx = match self.free_endpoints.pop() {
            Some(i) => i,
            None => {
                self.endpoints.push(EndpointSlot {
                    gen: 0,
                    ep: None,
                    waker: None,
                });
                self.endpoints.len() - 1
            }
        };
        let slot = &mut self.endpoints[idx];
        slot.gen = slot.gen.wrapping_add(1) & 0x3fff_ffff;
        let t = token(KIND_ENDPOINT, idx, slot.gen);
        slot.waker = Some(self.queue.waker(t));
        slot.ep = Some(ep);
        self.queue.push(t);
        idx
    }

    /// The waker and token of endpoint `idx` (for handlers polling readiness).
    pub fn endpoint_waker(&self, idx: usize) -> (Waker, Token) {
        let slot = &self.endpoints[idx];
        (
            slot.waker.clone().unwrap_or_else(|| Waker::noop().clone()),
            token(KIND_ENDPOINT, idx, slot.gen),
        )
    }

    /// Creates a switch port.
    pub fn add_port(&mut self, name: String, tx: Tx, max_frame: usize) -> PortId {
        let idx = match self.free_ports.pop() {
            Some(i) => i,
            None => {
                self.ports.push(PortSlot {
                    gen: 0,
                    port: None,
                    waker: None,
                    gw_waiting: false,
                });
                self.ports.len() - 1
            }
        };
        let slot = &mut self.ports[idx];
        slot.gen = slot.gen.wrapping_add(1) & 0x3fff_ffff;
        slot.waker = Some(self.queue.waker(token(KIND_PORT, idx, slot.gen)));
        log::info!("port {idx} connected ({name})");
        let mut port = Port::new(name, tx, max_frame.min(self.mtu_frame));
        port.storm = Some(TokenBucket::new(self.storm, Instant::now()));
        slot.port = Some(port);
        idx as PortId
    }

    /// Removes a port and forgets its MACs.
    pub fn close_port(&mut self, id: PortId, why: &str) {
        let Some(slot) = self.ports.get_mut(id as usize) else {
            return;
        };
        if let Some(p) = slot.port.take() {
            log::info!("port {id} ({}) closed: {why}; {:?}", p.name, p.counters);
            slot.waker = None;
            self.free_ports.push(id as usize);
            self.closed.add(&p.counters);
            for mac in self.macs.remove_port(id) {
                self.guard.remove_mac(&mac);
            }
            if self.one_off && p.name.starts_with("stream") {
                log::info!("--one-off: the guest left; stopping");
                self.request_stop();
            }
        }
    }

    /// passt's `--one-off`: the server stops once a stream guest (QEMU) has disconnected.
    pub fn stop_when_guest_leaves(&mut self) {
        self.one_off = true;
    }

    pub fn port_exists(&self, id: PortId) -> bool {
        self.ports
            .get(id as usize)
            .is_some_and(|s| s.port.is_some())
    }

    /// The generation of port `id` if it exists: a front end that remembers a port checks it to notice
    /// that the port was closed (and its number perhaps reused) behind its back.
    pub fn port_gen(&self, id: PortId) -> Option<u32> {
        let slot = self.ports.get(id as usize)?;
        slot.port.as_ref().map(|_| slot.gen)
    }

    pub fn port_counters_mut(&mut self, id: PortId) -> Option<&mut PortCounters> {
        self.ports
            .get_mut(id as usize)?
            .port
            .as_mut()
            .map(|p| &mut p.counters)
    }

    pub fn port_counters(&self, id: PortId) -> Option<&PortCounters> {
        self.ports
            .get(id as usize)?
            .port
            .as_ref()
            .map(|p| &p.counters)
    }

    /// The switch's counters summed over every port that ever existed (`port_` + counter name), plus
    /// the sizes of its tables.
    pub fn switch_stats(&self) -> Vec<(&'static str, u64)> {
        let mut total = self.closed.clone();
        for slot in &self.ports {
            if let Some(p) = &slot.port {
                total.add(&p.counters);
            }
        }
        let mut v: Vec<(&'static str, u64)> = total.stat_pairs().to_vec();
        v.push((
            "ports",
            self.ports.iter().filter(|s| s.port.is_some()).count() as u64,
        ));
        v.push(("macs", self.macs.len() as u64));
        v.push(("ip_bindings", self.guard.len() as u64));
        v.extend(self.vxlan_stats());
        v
    }

    /// The gateway's MAC as the switch knows it (a placeholder under `--no-gateway`).
    pub(crate) fn switch_gateway_mac(&self) -> Mac {
        self.gateway_mac
    }

    /// Sends a frame from the gateway's side to one port (ICMP errors the switch itself answers).
    pub(crate) fn send_to_port(&mut self, id: PortId, frame: &[u8]) {
        self.port_send(id, frame, Class::Gateway);
    }

    /// One line per open port: its name and nonzero counters (for the exit log).
    fn port_summaries(&self) -> Vec<String> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let p = s.port.as_ref()?;
                let c: Vec<String> = p
                    .counters
                    .pairs()
                    .iter()
                    .filter(|(_, v)| *v > 0)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                Some(format!("port {i} ({}): {}", p.name, c.join(" ")))
            })
            .collect()
    }

    /// Makes [`Server::serve`] return after the current batch, as SIGTERM does.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.queue.push(Token::Ext(SIGNAL_TOKEN));
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
                    Token::Ext(x) => {
                        let (kind, gen, idx) = (
                            x >> KIND_SHIFT,
                            ((x >> 32) & 0x3fff_ffff) as u32,
                            (x & 0xffff_ffff) as usize,
                        );
                        if kind == KIND_PORT {
                            self.port_writable(idx, gen);
                        } else {
                            self.handle_endpoint(now, idx, gen, &mut driver);
                        }
                    }
                    other => driver.handle(now, other, &mut |f| self.gateway_out(now, f)),
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            if deadline.is_some_and(|d| d <= now) {
                driver.poll_timers(now, &mut |f| self.gateway_out(now, f));
            }
            driver.end_batch(now, &mut |f| self.gateway_out(now, f));
            self.flush_and_resume(now, &mut driver);
            if let Some(pc) = self.pcap.as_mut() {
                let _ = pc.flush();
            }
            if now.saturating_duration_since(last_expire) > Duration::from_secs(30) {
                last_expire = now;
                self.macs.expire(now);
                self.guard.expire(now);
                self.tick_endpoints(now);
            }
        }
        if let Some(pc) = self.pcap.as_mut() {
            let _ = pc.flush();
        }
        // Closes every fd first; front ends remove their own socket files when dropped.
        self.endpoints.clear();
        for p in &self.unix_paths {
            p.remove(false);
        }
        for d in &self.unix_dirs {
            d.remove(true);
        }
        for line in self.port_summaries() {
            log::info!("{line}");
        }
        let switch: Vec<String> = self
            .switch_stats()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        log::info!("switch: {}", switch.join(" "));
        let (t, u, i) = driver.gw.flow_counts();
        let counters: Vec<String> = driver
            .gw
            .stats()
            .pairs()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        log::info!(
            "stopped; flows tcp={t} udp={u} icmp={i}; {}",
            counters.join(" ")
        );
        Ok(())
    }

    fn handle_endpoint(&mut self, now: Instant, idx: usize, gen: u32, driver: &mut Driver) {
        let Some(slot) = self.endpoints.get_mut(idx) else {
            return;
        };
        if slot.gen != gen {
            return;
        }
        // Taken out while its handler runs (the slot is not free, so nothing else lands in it).
        let Some(mut ep) = slot.ep.take() else { return };
        let keep = match &mut ep {
            Endpoint::Listener(l) => self.accept(idx, l),
            Endpoint::StreamRx(s) => self.stream_readable(now, idx, s, driver),
            Endpoint::Dgram(d) => self.dgram_readable(now, idx, d, driver),
            Endpoint::VdeListener(l) => self.vde_accept(now, idx, l),
            Endpoint::VdeConn(c) => self.vde_readable(now, idx, c, driver),
            Endpoint::ApiListener(l) => self.api_accept(idx, l),
            Endpoint::ApiConn(c) => self.api_readable(idx, c, driver),
            Endpoint::Tap(t) => self.tap_readable(now, idx, t, driver),
            Endpoint::ExitWatch(w) => self.exit_watch_readable(idx, w),
            Endpoint::Vxlan(v) => self.vxlan_readable(now, idx, v, driver),
        };
        self.finish_endpoint(idx, ep, keep);
    }

    fn finish_endpoint(&mut self, idx: usize, ep: Endpoint, keep: Keep) {
        match keep {
            Keep::Yes => self.endpoints[idx].ep = Some(ep),
            Keep::No => {
                self.endpoints[idx].waker = None;
                self.free_endpoints.push(idx);
            }
        }
    }

    /// Periodic housekeeping of front ends (idle datagram peers, stalled VDE handshakes).
    fn tick_endpoints(&mut self, now: Instant) {
        for idx in 0..self.endpoints.len() {
            let Some(mut ep) = self.endpoints[idx].ep.take() else {
                continue;
            };
            let keep = match &mut ep {
                Endpoint::Dgram(d) => self.dgram_tick(now, d),
                Endpoint::VdeConn(c) => self.vde_tick(now, c),
                Endpoint::Vxlan(v) => self.vxlan_tick(now, v),
                _ => Keep::Yes,
            };
            self.finish_endpoint(idx, ep, keep);
        }
    }

    fn accept(&mut self, idx: usize, l: &mut Listener) -> Keep {
        let (waker, tok) = self.endpoint_waker(idx);
        loop {
            if !poll_ready(&l.fd, &waker, false) {
                return Keep::Yes;
            }
            match SockRef::from(l.fd.get_ref()).accept() {
                Ok((s, addr)) => {
                    let name = match &l.what {
                        Listen::Unix(p) => format!("stream unix:{}", p.display()),
                        Listen::Tcp(_) => format!(
                            "stream tcp:{}",
                            addr.as_socket().map(|a| a.to_string()).unwrap_or_default()
                        ),
                    };
                    if let Err(e) = self.add_stream(s, name.clone()) {
                        log::warn!("cannot add a port for {name}: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    clear_ready(&l.fd, &waker, false, &self.queue, tok);
                    return Keep::Yes;
                }
                Err(e) => {
                    // EMFILE/ENFILE (or anything else): the socket stays readable, so no new wakeup
                    // would ever come and the listener would be wedged. Retry shortly instead; it
                    // recovers by itself once fds are free. One log line per 10 s.
                    static LOGGED: std::sync::atomic::AtomicU64 =
                        std::sync::atomic::AtomicU64::new(0);
                    if netstack::driver::log_allowed(&LOGGED) {
                        log::warn!(
                            "accept failed: {e}; retrying every {} ms",
                            netstack::driver::ACCEPT_RETRY.as_millis()
                        );
                    }
                    netstack::driver::retry_later(&self.queue, tok, netstack::driver::ACCEPT_RETRY);
                    return Keep::Yes;
                }
            }
        }
    }

    /// Adds a connected stream socket (QEMU framing) as a port.
    pub fn add_stream(&mut self, s: Socket, name: String) -> io::Result<PortId> {
        s.set_nonblocking(true)?;
        if s.domain().ok() != Some(Domain::UNIX) {
            let _ = s.set_tcp_nodelay(true);
        }
        let _ = s.set_send_buffer_size(4 << 20);
        let _ = s.set_recv_buffer_size(4 << 20);
        let fd = Rc::new(register(OwnedFd::from(s))?);
        let port = self.add_port(
            name,
            Tx::Stream {
                fd: fd.clone(),
                queue: Vec::new(),
                off: 0,
                blocked: false,
            },
            framing::MAX_FRAME,
        );
        self.add_endpoint(Endpoint::StreamRx(StreamRx {
            fd,
            port,
            rx: vec![0; RX_BUF],
            rx_len: 0,
        }));
        Ok(port)
    }

    fn stream_readable(
        &mut self,
        now: Instant,
        idx: usize,
        s: &mut StreamRx,
        driver: &mut Driver,
    ) -> Keep {
        if !self.port_exists(s.port) {
            return Keep::No;
        }
        let (waker, tok) = self.endpoint_waker(idx);
        // Bound the work per wakeup so one busy guest cannot starve the others.
        for _ in 0..16 {
            if !poll_ready(&s.fd, &waker, false) {
                return Keep::Yes;
            }
            let free = &mut s.rx[s.rx_len..];
            let r = match rustix::net::recv(&*s.fd, free, rustix::net::RecvFlags::DONTWAIT) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::AGAIN) => {
                    clear_ready(&s.fd, &waker, false, &self.queue, tok);
                    return Keep::Yes;
                }
                Err(_) => {
                    self.close_port(s.port, "read failed");
                    return Keep::No;
                }
            };
            if r == 0 {
                self.close_port(s.port, "disconnected");
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
                        if self.switch_in(now, s.port, frame, driver.gw.dhcp()) {
                            for_gateway.push(frame);
                        }
                        pos += consumed;
                    }
                    Decoded::Incomplete => break,
                    Decoded::BadLength(l) => {
                        driver.handle_frames_from(now, s.port, &for_gateway, &mut |f| {
                            self.gateway_out(now, f)
                        });
                        let why = format!(
                            "bad frame length {l} (must be {}..={})",
                            framing::MIN_FRAME,
                            framing::MAX_FRAME
                        );
                        log::warn!("port {}: {why}; dropping the connection", s.port);
                        self.close_port(s.port, "bad frame length");
                        return Keep::No;
                    }
                }
            }
            if !for_gateway.is_empty() {
                driver.handle_frames_from(now, s.port, &for_gateway, &mut |f| {
                    self.gateway_out(now, f)
                });
                // Acknowledge what this read carried now, not after the whole wakeup: the guest's
                // sending rate follows our ACKs.
                driver.end_batch(now, &mut |f| self.gateway_out(now, f));
                self.flush_and_resume(now, driver);
            }
            drop(for_gateway);
            s.rx.copy_within(pos..s.rx_len, 0);
            s.rx_len -= pos;
            if !self.port_exists(s.port) {
                return Keep::No;
            }
        }
        // More may be waiting: come back after the others had their turn.
        self.queue.push(tok);
        Keep::Yes
    }

    /// A frame received on `port`: learn, then switch it to ports and/or the gateway.
    pub fn frame_in(&mut self, now: Instant, port: PortId, frame: &[u8], driver: &mut Driver) {
        if self.switch_in(now, port, frame, driver.gw.dhcp()) {
            driver.handle_frames_from(now, port, &[frame], &mut |f| self.gateway_out(now, f));
        }
    }

    /// Learns and switches a frame from `port` to other ports; true if the gateway must see it too
    /// (the caller delivers it, possibly batched with others). `dhcp` says who holds which lease (the
    /// IP source guard).
    pub fn switch_in(
        &mut self,
        now: Instant,
        port: PortId,
        frame: &[u8],
        dhcp: &DhcpServer,
    ) -> bool {
        if frame.len() < ethernet::HEADER_LEN {
            return false;
        }
        let Some(p) = self
            .ports
            .get_mut(port as usize)
            .and_then(|s| s.port.as_mut())
        else {
            return false;
        };
        // Every frame goes to the pcap except what storm control drops (a flood would fill the disk).
        let mut pcap = self.pcap.as_mut();
        let mut record = |f: &[u8]| {
            if let Some(pc) = pcap.take() {
                let _ = pc.frame(f);
            }
        };
        p.counters.frames_in += 1;
        p.counters.bytes_in += frame.len() as u64;
        // --no-gateway: the gateway is behind the uplink, which may claim its addresses and answer DHCP.
        let trusted = self.no_gateway
            && self
                .vxlan
                .as_ref()
                .is_some_and(|u| u.try_borrow().is_ok_and(|u| u.port == port));
        if let Some(claim) = crate::guard::claims(frame, &self.protected_ips).filter(|_| !trusted) {
            record(frame);
            p.counters.drop_spoofed += 1;
            log::debug!("port {port}: dropped a frame that {claim}");
            return false;
        }
        let (dst, src) = (mac_at(frame, 0), mac_at(frame, 6));
        let dest = match self.macs.forward(now, port, src, dst, self.gateway_mac) {
            Ok(d) => d,
            Err(r) => {
                record(frame);
                let why = match r {
                    Refused::GatewayMac => "uses the gateway's MAC".to_string(),
                    Refused::GroupSource => "has a multicast source MAC".to_string(),
                    Refused::MacInUse(other) => format!("uses a MAC live on port {other}"),
                    Refused::MacLimit => "comes from one MAC too many".to_string(),
                };
                if r == Refused::MacLimit {
                    p.counters.drop_mac_limit += 1;
                } else {
                    p.counters.drop_refused += 1;
                }
                log::debug!("port {port}: dropped a frame that {why}");
                return false;
            }
        };
        // Storm control: whatever this port floods is rate-limited (IPv6 multicast included).
        if let Dest::Flood { .. } = dest {
            if !p.storm.as_mut().is_none_or(|b| b.allow(now)) {
                p.counters.drop_storm += 1;
                return false;
            }
        }
        record(frame);
        // DHCP snooping and IP source guard.
        let claimed = match crate::guard::inspect(frame) {
            L3::Ipv4 {
                dhcp_server: true, ..
            } if !trusted => {
                p.counters.drop_dhcp_server += 1;
                log::debug!("port {port}: dropped a DHCP server message");
                return false;
            }
            L3::Arp { spa } => Some(spa),
            L3::Ipv4 { src, .. } => Some(src),
            // IPv6 source guard: bind ND/DHCPv6 addresses here once the gateway serves IPv6.
            L3::Ipv6 | L3::Other => None,
        };
        if let Some(ip) = claimed.map(std::net::Ipv4Addr::from) {
            if ip.is_unspecified() {
                // ARP probes and DHCP clients before they have an address.
            } else if ip.is_broadcast() || ip.is_multicast() || ip == self.net.broadcast() {
                p.counters.drop_spoofed += 1;
                log::debug!("port {port}: dropped a frame from the group address {ip}");
                return false;
            } else if self.net.contains(ip) {
                match self.guard.check(now, src, ip.into(), dhcp.mac_for_ip(ip)) {
                    Verdict::Ok => {}
                    Verdict::Spoofed(owner) => {
                        p.counters.drop_spoofed += 1;
                        log::debug!(
                            "port {port}: dropped a frame claiming {ip}, which belongs to {}",
                            fmt_mac(&owner)
                        );
                        return false;
                    }
                    Verdict::Full => {
                        p.counters.drop_bind_limit += 1;
                        log::debug!("port {port}: address table full; dropped a claim of {ip}");
                        return false;
                    }
                }
            }
        }
        match dest {
            Dest::Gateway => !self.no_gateway,
            Dest::Port(_) | Dest::Flood { gateway: false } if self.isolate => {
                if let Some(c) = self.port_counters_mut(port) {
                    c.drop_isolated += 1;
                }
                false
            }
            Dest::Port(p) => {
                if self.vxlan_fits(port, p, frame) {
                    self.port_send(p, frame, Class::Peer);
                }
                false
            }
            Dest::Flood { gateway } => {
                for i in 0..self.ports.len() {
                    if !self.isolate && i != port as usize && self.ports[i].port.is_some() {
                        self.port_send(i as PortId, frame, Class::Flood);
                    }
                }
                gateway && !self.no_gateway
            }
            Dest::Drop => false,
        }
    }

    /// A frame from the gateway: to its port, or flooded. False when that port is congested (the
    /// frame was queued; the gateway pauses bulk data towards that port until `link_ready`).
    pub(crate) fn gateway_out(&mut self, now: Instant, frame: &[u8]) -> bool {
        if frame.len() < ethernet::HEADER_LEN {
            return true;
        }
        if let Some(pc) = self.pcap.as_mut() {
            let _ = pc.frame(frame);
        }
        match self
            .macs
            .lookup(now, mac_at(frame, 0), self.gateway_mac, None)
        {
            Dest::Port(p) => {
                self.port_send(p, frame, Class::Gateway);
                let Some(slot) = self.ports.get_mut(p as usize) else {
                    return true;
                };
                let congested = slot.port.as_ref().is_some_and(|p| p.congested());
                if congested {
                    slot.gw_waiting = true;
                    self.link_waiting = true;
                }
                !congested
            }
            Dest::Flood { .. } => {
                for i in 0..self.ports.len() {
                    if self.ports[i].port.is_some() {
                        self.port_send(i as PortId, frame, Class::Gateway);
                    }
                }
                true
            }
            Dest::Gateway | Dest::Drop => true,
        }
    }

    /// Flushes port queues; when a port the gateway paused on has room again (or is gone), lets the
    /// gateway resume the senders towards it. Senders towards ports that are still congested stay
    /// paused: a guest that stops reading holds up only its own traffic.
    pub(crate) fn flush_and_resume(&mut self, now: Instant, driver: &mut Driver) {
        self.flush_ports();
        if !self.link_waiting {
            return;
        }
        let (mut ready, mut still) = (false, false);
        for slot in &mut self.ports {
            if !slot.gw_waiting {
                continue;
            }
            if slot.port.as_ref().is_some_and(|p| p.congested()) {
                still = true;
            } else {
                slot.gw_waiting = false;
                ready = true;
            }
        }
        self.link_waiting = still;
        if ready {
            let ports = &self.ports;
            let congested = self.macs.macs_on(now, |id| {
                ports
                    .get(id as usize)
                    .and_then(|s| s.port.as_ref())
                    .is_some_and(|p| p.congested())
            });
            driver.link_ready_except(now, &|mac| congested.contains(mac), &mut |f| {
                self.gateway_out(now, f)
            });
            self.flush_ports();
        }
    }

    fn port_send(&mut self, id: PortId, frame: &[u8], class: Class) {
        let Some(p) = self
            .ports
            .get_mut(id as usize)
            .and_then(|s| s.port.as_mut())
        else {
            return;
        };
        match p.send_class(frame, class) {
            Sent::Done => {}
            Sent::Queued => self.dirty.push(id),
            Sent::Failed => self.dead.push((id, "send failed")),
        }
    }

    fn flush_ports(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for id in dirty {
            let Some(slot) = self.ports.get_mut(id as usize) else {
                continue;
            };
            let Some(p) = slot.port.as_mut() else {
                continue;
            };
            match p.flush() {
                Ok(true) => {}
                Ok(false) => {
                    if let (Some(fd), Some(w)) = (p.stream_fd(), slot.waker.as_ref()) {
                        clear_ready(
                            fd,
                            w,
                            true,
                            &self.queue,
                            token(KIND_PORT, id as usize, slot.gen),
                        );
                    }
                }
                Err(_) => self.dead.push((id, "write failed")),
            }
        }
        for (id, why) in std::mem::take(&mut self.dead) {
            self.close_port(id, why);
        }
    }

    fn port_writable(&mut self, idx: usize, gen: u32) {
        let Some(slot) = self.ports.get_mut(idx) else {
            return;
        };
        if slot.gen != gen {
            return;
        }
        let (Some(p), Some(w)) = (slot.port.as_ref(), slot.waker.as_ref()) else {
            return;
        };
        if let Some(fd) = p.stream_fd() {
            if poll_ready(fd, w, true) {
                self.dirty.push(idx as PortId);
            }
        }
    }
}

/// Binds a unix socket at `path`, replacing a stale socket file but never a live one or a non-socket.
pub fn bind_unix(path: &std::path::Path, ty: Type) -> io::Result<Socket> {
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

fn fmt_mac(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

pub fn mac_at(f: &[u8], at: usize) -> Mac {
    [f[at], f[at + 1], f[at + 2], f[at + 3], f[at + 4], f[at + 5]]
}
