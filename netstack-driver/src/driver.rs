//! The tokio driver: owns the host sockets, carries out the core's [`Action`]s, reports host
//! [`Event`]s and implements the core's data path ([`HostIo`]).
//!
//! Every host socket is a tokio `AsyncFd`. Readiness is delivered without scanning: each socket polls its
//! readiness with its own waker, which pushes the socket's [`Token`] onto one [`ReadyQueue`] and wakes the
//! event loop. The loop (in the switch) drains the queue in batches and calls [`Driver::handle`] per token,
//! so the cost per event does not depend on how many flows exist.

use netstack::batch::FrameBatch;
use netstack::flow::{FlowId, Proto};
use netstack::gateway::Gateway;
use netstack::host::{Action, Event, HostError, HostIo, HostResult};
use netstack::Instant;
use rustc_hash::FxHashMap;
use rustix::net::{RecvAncillaryBuffer, RecvFlags, SendAncillaryBuffer, SendFlags};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use tokio::io::unix::AsyncFd;

/// What became ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    Flow(FlowId),
    /// The upstream DNS socket (0: IPv4, 1: IPv6).
    Dns(u8),
    /// A host forward's listening (TCP) or bound (UDP) socket.
    Fwd(u32),
    /// Anything the embedding event loop owns (ports, listeners).
    Ext(u64),
    /// A child process exited (SIGCHLD): reap `guestfwd cmd:` children.
    Reap,
}

/// Pushes `t` onto `q` after `after` (a listener that failed to accept retries then instead of
/// spinning or waiting for an edge that never comes). Needs a tokio runtime; without one, `t` is
/// pushed at once.
pub fn retry_later(q: &Arc<ReadyQueue>, t: Token, after: std::time::Duration) {
    let q = q.clone();
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(async move {
                tokio::time::sleep(after).await;
                q.push(t);
            });
        }
        Err(_) => q.push(t),
    }
}

/// At most one log line every 10 seconds per `slot` (a static the caller owns), as seconds since
/// the first call. For errors that repeat on every retry (accept failing with EMFILE).
pub fn log_allowed(slot: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering;
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let now = EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
        + 1;
    let last = slot.load(Ordering::Relaxed);
    if last != 0 && now < last + 10 {
        return false;
    }
    slot.store(now, Ordering::Relaxed);
    true
}

/// How long a listener waits before retrying after `accept()` failed (e.g. EMFILE).
pub const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Tokens whose sockets became ready, and the event loop's waker.
#[derive(Default)]
pub struct ReadyQueue {
    inner: Mutex<(Vec<Token>, Option<Waker>)>,
}

impl ReadyQueue {
    pub fn push(&self, t: Token) {
        let w = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.0.push(t);
            g.1.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
    /// Takes the ready tokens into `out`, or registers `cx`'s waker when there are none.
    pub fn poll_drain(&self, cx: &mut Context<'_>, out: &mut Vec<Token>) -> Poll<()> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.is_empty() {
            g.1 = Some(cx.waker().clone());
            return Poll::Pending;
        }
        std::mem::swap(&mut g.0, out);
        Poll::Ready(())
    }
    /// A waker that reports `t` when woken.
    pub fn waker(self: &Arc<Self>, t: Token) -> Waker {
        Waker::from(Arc::new(TokenWaker {
            token: t,
            queue: self.clone(),
        }))
    }
}

struct TokenWaker {
    token: Token,
    queue: Arc<ReadyQueue>,
}

impl Wake for TokenWaker {
    fn wake(self: Arc<Self>) {
        self.queue.push(self.token);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.token);
    }
}

/// Whether `fd` is readable (or writable) now; if not, `waker` is registered and will report its
/// token later.
pub fn poll_ready<T: AsRawFd>(fd: &AsyncFd<T>, waker: &Waker, write: bool) -> bool {
    let mut cx = Context::from_waker(waker);
    let r = if write {
        fd.poll_write_ready(&mut cx).map(|r| r.is_ok())
    } else {
        fd.poll_read_ready(&mut cx).map(|r| r.is_ok())
    };
    matches!(r, Poll::Ready(true))
}

/// After EAGAIN: clears readiness and re-registers `waker`; if readiness raced back, queues `t`.
pub fn clear_ready<T: AsRawFd>(
    fd: &AsyncFd<T>,
    waker: &Waker,
    write: bool,
    q: &ReadyQueue,
    t: Token,
) {
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

struct HostSock {
    gen: u32,
    fd: AsyncFd<Socket>,
    waker: Waker,
    connecting: bool,
    want_write: bool,
    /// The kernel's SO_PEEK_OFF as we last set or advanced it.
    peek_off: usize,
    raw_icmp: Option<(IpAddr, u16)>,
}

/// How ICMP echo is forwarded on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpMode {
    PingSocket,
    Raw,
    Unavailable,
}

/// Checks which ICMP socket kind this process may open.
pub fn probe_icmp() -> IcmpMode {
    if Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)).is_ok() {
        IcmpMode::PingSocket
    } else if Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).is_ok() {
        IcmpMode::Raw
    } else {
        IcmpMode::Unavailable
    }
}

/// A host→guest forward: a listening TCP socket or a bound UDP socket on the host.
pub struct Forward {
    pub proto: Proto,
    /// The address actually bound (port 0 resolved).
    pub host: SocketAddr,
    pub guest: SocketAddr,
    /// The rule named no guest: `guest` is the default guest's IPv4 address and an IPv6 listener's
    /// clients go to that guest's IPv6 address when the gateway knows one
    /// (`Gateway::forward_guest`).
    pub follow_family: bool,
    fd: AsyncFd<Socket>,
    waker: Waker,
    /// UDP: the flow of each client.
    peers: FxHashMap<SocketAddr, FlowId>,
}

/// The host sockets, per protocol, indexed like the core's flow slabs.
pub struct HostSockets {
    queue: Arc<ReadyQueue>,
    socks: [Vec<Option<HostSock>>; 3],
    forwards: Vec<Option<Forward>>,
    /// UDP flows that belong to a forward: (forward, client).
    fwd_udp: FxHashMap<FlowId, (u32, SocketAddr)>,
    dns: [Option<(AsyncFd<Socket>, Waker)>; 2],
    icmp_mode: IcmpMode,
    discard: Vec<u8>,
    /// Running `guestfwd cmd:` children, reaped on SIGCHLD (and whenever a command flow closes).
    children: Vec<std::process::Child>,
    /// A SIGCHLD listener was started.
    sigchld: bool,
    /// Where `cmd:` guestfwd commands run when this process may not exec (a sandboxed daemon).
    spawner: Option<CommandSpawner>,
}

/// Runs a `cmd:` guestfwd's command with the given stream as its stdin and stdout.
pub type CommandSpawner = Box<dyn Fn(&str, std::os::fd::OwnedFd) -> io::Result<()>>;

fn pidx(p: Proto) -> usize {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
        Proto::Icmp => 2,
    }
}

/// Sets SO_PEEK_OFF (peeks then start that far into the receive queue and advance it).
fn set_peek_off(s: &Socket, off: libc::c_int) -> bool {
    crate::sys::set_peek_off(s.as_fd(), off).is_ok()
}

use crate::sys::register;

fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

fn not_open() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "no host socket for this flow")
}

impl HostSockets {
    /// From now on, `cmd:` guestfwd commands are started by `spawner` instead of by this process.
    pub fn set_command_spawner(&mut self, spawner: CommandSpawner) {
        self.spawner = Some(spawner);
    }

    pub fn new(queue: Arc<ReadyQueue>, icmp_mode: IcmpMode) -> Self {
        HostSockets {
            queue,
            socks: [Vec::new(), Vec::new(), Vec::new()],
            forwards: Vec::new(),
            fwd_udp: FxHashMap::default(),
            dns: [None, None],
            icmp_mode,
            discard: Vec::new(),
            children: Vec::new(),
            sigchld: false,
            spawner: None,
        }
    }

    fn get(&mut self, id: FlowId) -> Option<&mut HostSock> {
        match self.socks[pidx(id.proto)].get_mut(id.idx as usize) {
            Some(Some(s)) if s.gen == id.gen => Some(s),
            _ => None,
        }
    }

    fn install(
        &mut self,
        id: FlowId,
        sock: Socket,
        connecting: bool,
        raw_icmp: Option<(IpAddr, u16)>,
    ) -> io::Result<()> {
        let fd = register(sock)?;
        let waker = self.queue.waker(Token::Flow(id));
        let v = &mut self.socks[pidx(id.proto)];
        let i = id.idx as usize;
        if v.len() <= i {
            v.resize_with(i + 1, || None);
        }
        v[i] = Some(HostSock {
            gen: id.gen,
            fd,
            waker,
            connecting,
            want_write: false,
            peek_off: 0,
            raw_icmp,
        });
        // Poll once so the waker is registered (and pick up anything already pending).
        self.queue.push(Token::Flow(id));
        Ok(())
    }

    fn remove(&mut self, id: FlowId) -> Option<HostSock> {
        let slot = self.socks[pidx(id.proto)].get_mut(id.idx as usize)?;
        if slot.as_ref().is_some_and(|s| s.gen == id.gen) {
            slot.take()
        } else {
            None
        }
    }

    /// Reaps the children that exited (no zombies); the rest keep running.
    pub fn reap_children(&mut self) {
        self.children
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
    }

    /// `guestfwd cmd:` children not yet reaped.
    pub fn children(&self) -> usize {
        self.children.len()
    }

    /// Starts listening for SIGCHLD once (needs a tokio runtime; without one, children are reaped
    /// when the next command flow opens or closes).
    fn watch_children(&mut self) {
        if self.sigchld {
            return;
        }
        let Ok(h) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let _guard = h.enter();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
            Ok(mut sig) => {
                self.sigchld = true;
                let q = self.queue.clone();
                h.spawn(async move {
                    while sig.recv().await.is_some() {
                        q.push(Token::Reap);
                    }
                });
            }
            Err(e) => log::warn!("cannot watch for exited guestfwd commands (SIGCHLD): {e}"),
        }
    }

    /// Number of open host sockets.
    pub fn open_count(&self) -> usize {
        self.socks
            .iter()
            .map(|v| v.iter().filter(|s| s.is_some()).count())
            .sum()
    }

    fn dns_socket(&mut self, v6: bool) -> io::Result<&AsyncFd<Socket>> {
        let i = usize::from(v6);
        if self.dns[i].is_none() {
            let (domain, any) = if v6 {
                (
                    Domain::IPV6,
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
                )
            } else {
                (
                    Domain::IPV4,
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                )
            };
            let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_nonblocking(true)?;
            s.bind(&any.into())?;
            let fd = register(s)?;
            let waker = self.queue.waker(Token::Dns(i as u8));
            poll_ready(&fd, &waker, false);
            self.dns[i] = Some((fd, waker));
            self.queue.push(Token::Dns(i as u8));
        }
        match &self.dns[i] {
            Some((fd, _)) => Ok(fd),
            None => Err(not_open()),
        }
    }
}

/// A [`HostIo`] for one call into the core: the sockets plus where transmitted frames go.
pub struct IoCtx<'a> {
    pub socks: &'a mut HostSockets,
    pub sink: &'a mut dyn FnMut(&[u8]) -> bool,
}

/// One non-blocking `recvfrom` into `buf`: the length and the sender, if it is an IP address.
fn recv_from(fd: &impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Option<SocketAddr>)> {
    let (n, _, from) = rustix::net::recvfrom(fd, buf, RecvFlags::DONTWAIT)?;
    Ok((n, from.and_then(|a| SocketAddr::try_from(a).ok())))
}

/// The OS side of each [`HostIo`] operation, with the OS's errors (mapped by [`host_error`] in the
/// trait impl below).
impl IoCtx<'_> {
    fn os_transmit(&mut self, frame: &[u8]) -> bool {
        (self.sink)(frame)
    }

    fn os_tcp_connect(&mut self, id: FlowId, dst: SocketAddr) -> io::Result<()> {
        let s = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
        s.set_nonblocking(true)?;
        s.set_tcp_nodelay(true)?;
        set_peek_off(&s, 0);
        match s.connect(&SockAddr::from(dst)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        self.socks.install(id, s, true, None)
    }

    fn os_tcp_spawn(&mut self, id: FlowId, command: &str) -> io::Result<()> {
        let (ours, theirs) = Socket::pair(Domain::UNIX, Type::STREAM, None)?;
        if let Some(spawn) = &self.socks.spawner {
            spawn(command, theirs.into())?;
            ours.set_nonblocking(true)?;
            set_peek_off(&ours, 0);
            return self.socks.install(id, ours, true, None);
        }
        let stdin = std::os::fd::OwnedFd::from(theirs.try_clone()?);
        let stdout = std::os::fd::OwnedFd::from(theirs);
        self.socks.watch_children();
        self.socks.reap_children();
        let child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .stdin(stdin)
            .stdout(stdout)
            .spawn()?;
        // Reaped on SIGCHLD by the event loop (no thread per child); it talks to us only through
        // the socket pair.
        self.socks.children.push(child);
        ours.set_nonblocking(true)?;
        set_peek_off(&ours, 0);
        self.socks.install(id, ours, true, None)
    }

    fn os_udp_open_forward(&mut self, id: FlowId, fwd: u32, client: SocketAddr) -> io::Result<()> {
        let f = self
            .socks
            .forwards
            .get_mut(fwd as usize)
            .and_then(|f| f.as_mut())
            .ok_or_else(not_open)?;
        f.peers.insert(client, id);
        self.socks.fwd_udp.insert(id, (fwd, client));
        Ok(())
    }

    fn os_tcp_send(&mut self, id: FlowId, data: &[u8]) -> io::Result<usize> {
        let q = self.socks.queue.clone();
        let s = self.socks.get(id).ok_or_else(not_open)?;
        let r = rustix::net::send(&s.fd, data, SendFlags::DONTWAIT | SendFlags::NOSIGNAL);
        match r.map_err(io::Error::from) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                clear_ready(&s.fd, &s.waker, true, &q, Token::Flow(id));
                Err(e)
            }
            other => other,
        }
    }

    fn os_tcp_send_vectored(
        &mut self,
        id: FlowId,
        bufs: &[std::io::IoSlice<'_>],
    ) -> io::Result<usize> {
        let q = self.socks.queue.clone();
        let s = self.socks.get(id).ok_or_else(not_open)?;
        // One gathered sendmsg, no control data (an empty ancillary buffer allocates nothing).
        let r = rustix::net::sendmsg(
            &s.fd,
            bufs,
            &mut SendAncillaryBuffer::default(),
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        );
        match r.map_err(io::Error::from) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                clear_ready(&s.fd, &s.waker, true, &q, Token::Flow(id));
                Err(e)
            }
            other => other,
        }
    }

    fn os_tcp_peek(
        &mut self,
        id: FlowId,
        offset: usize,
        bufs: &mut [IoSliceMut<'_>],
    ) -> io::Result<usize> {
        let q = self.socks.queue.clone();
        let s = self.socks.get(id).ok_or_else(not_open)?;
        if s.peek_off != offset {
            let off = libc::c_int::try_from(offset)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            crate::sys::set_peek_off(s.fd.as_fd(), off)?;
            s.peek_off = offset;
        }
        // Peeked straight into the caller's frames (scattered), no control data.
        let r = rustix::net::recvmsg(
            &s.fd,
            bufs,
            &mut RecvAncillaryBuffer::default(),
            RecvFlags::PEEK | RecvFlags::DONTWAIT,
        )
        .map(|m| m.bytes);
        match r.map_err(io::Error::from) {
            Ok(n) => {
                s.peek_off += n;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                clear_ready(&s.fd, &s.waker, false, &q, Token::Flow(id));
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn os_tcp_consume(&mut self, id: FlowId, mut n: usize) {
        let mut discard = std::mem::take(&mut self.socks.discard);
        if discard.len() < 65536 {
            discard.resize(65536, 0);
        }
        if let Some(s) = self.socks.get(id) {
            s.peek_off = s.peek_off.saturating_sub(n);
            while n > 0 {
                let chunk = n.min(discard.len());
                // With MSG_TRUNC TCP drops the bytes without copying them.
                let r = rustix::net::recv(
                    &s.fd,
                    &mut discard[..chunk],
                    RecvFlags::TRUNC | RecvFlags::DONTWAIT,
                );
                match r {
                    Ok((_, dropped)) if dropped > 0 => n = n.saturating_sub(dropped),
                    _ => break,
                }
            }
        }
        self.socks.discard = discard;
    }

    fn os_tcp_want_write(&mut self, id: FlowId) {
        if let Some(s) = self.socks.get(id) {
            s.want_write = true;
            self.socks.queue.push(Token::Flow(id));
        }
    }

    fn os_tcp_shutdown_write(&mut self, id: FlowId) {
        if let Some(s) = self.socks.get(id) {
            let _ = s.fd.get_ref().shutdown(std::net::Shutdown::Write);
        }
    }

    fn os_tcp_close(&mut self, id: FlowId, reset: bool) {
        if let Some(s) = self.socks.remove(id) {
            if reset {
                let _ = s.fd.get_ref().set_linger(Some(std::time::Duration::ZERO));
            }
        }
        if !self.socks.children.is_empty() {
            self.socks.reap_children();
        }
    }

    fn os_udp_open(&mut self, id: FlowId, dst: SocketAddr) -> io::Result<()> {
        let s = Socket::new(Domain::for_address(dst), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_nonblocking(true)?;
        s.connect(&SockAddr::from(dst))?;
        self.socks.install(id, s, false, None)
    }

    fn os_udp_send(&mut self, id: FlowId, data: &[u8]) -> io::Result<()> {
        if let Some(&(fwd, client)) = self.socks.fwd_udp.get(&id) {
            let f = self
                .socks
                .forwards
                .get(fwd as usize)
                .and_then(|f| f.as_ref())
                .ok_or_else(not_open)?;
            return f
                .fd
                .get_ref()
                .send_to(data, &SockAddr::from(client))
                .map(|_| ());
        }
        let s = self.socks.get(id).ok_or_else(not_open)?;
        s.fd.get_ref().send(data).map(|_| ())
    }

    fn os_udp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> io::Result<usize> {
        let q = self.socks.queue.clone();
        let s = self.socks.get(id).ok_or_else(not_open)?;
        let r = rustix::net::recv(&s.fd, &mut *buf, RecvFlags::DONTWAIT).map(|(n, _)| n);
        match r.map_err(io::Error::from) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                clear_ready(&s.fd, &s.waker, false, &q, Token::Flow(id));
                Err(e)
            }
            other => other,
        }
    }

    fn os_udp_close(&mut self, id: FlowId) {
        if let Some((fwd, client)) = self.socks.fwd_udp.remove(&id) {
            if let Some(Some(f)) = self.socks.forwards.get_mut(fwd as usize) {
                f.peers.remove(&client);
            }
        }
        self.socks.remove(id);
    }

    fn os_icmp_open(&mut self, id: FlowId, dst: IpAddr) -> io::Result<()> {
        let (ty, raw) = match self.socks.icmp_mode {
            IcmpMode::PingSocket => (Type::DGRAM, false),
            IcmpMode::Raw => (Type::RAW, true),
            IcmpMode::Unavailable => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "neither ping sockets nor raw sockets are permitted",
                ))
            }
        };
        // net.ipv4.ping_group_range governs ICMPv6 ping sockets too.
        let s = if dst.is_ipv4() {
            Socket::new(Domain::IPV4, ty, Some(Protocol::ICMPV4))?
        } else {
            Socket::new(Domain::IPV6, ty, Some(Protocol::ICMPV6))?
        };
        s.set_nonblocking(true)?;
        s.connect(&SockAddr::from(SocketAddr::new(dst, 0)))?;
        self.socks.install(id, s, false, raw.then_some((dst, 0)))
    }

    fn os_icmp_send(&mut self, id: FlowId, msg: &[u8]) -> io::Result<()> {
        let s = self.socks.get(id).ok_or_else(not_open)?;
        if let Some((dst, _)) = s.raw_icmp {
            // Raw sockets keep our identifier: remember it to match replies.
            if msg.len() >= 8 {
                s.raw_icmp = Some((dst, u16::from_be_bytes([msg[4], msg[5]])));
            }
        }
        s.fd.get_ref().send(msg).map(|_| ())
    }

    fn os_icmp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> io::Result<usize> {
        let q = self.socks.queue.clone();
        let s = self.socks.get(id).ok_or_else(not_open)?;
        loop {
            let r = rustix::net::recv(&s.fd, &mut *buf, RecvFlags::DONTWAIT).map(|(n, _)| n);
            let n = match r.map_err(io::Error::from) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    clear_ready(&s.fd, &s.waker, false, &q, Token::Flow(id));
                    return Err(e);
                }
                Err(e) => return Err(e),
                Ok(n) => n,
            };
            let Some((dst, ident)) = s.raw_icmp else {
                return Ok(n);
            };
            if dst.is_ipv6() {
                // Raw ICMPv6 sockets see every ICMPv6 message (no IP header): keep only our
                // echo replies.
                if n < 8 || buf[0] != 129 || u16::from_be_bytes([buf[4], buf[5]]) != ident {
                    continue;
                }
                return Ok(n);
            }
            // Raw sockets see every ICMP message with its IP header: keep only our echo replies.
            let ihl = usize::from(buf.first().copied().unwrap_or(0) & 0x0f) * 4;
            if ihl < 20
                || n < ihl + 8
                || buf[ihl] != 0
                || u16::from_be_bytes([buf[ihl + 4], buf[ihl + 5]]) != ident
            {
                continue;
            }
            buf.copy_within(ihl..n, 0);
            return Ok(n - ihl);
        }
    }

    fn os_icmp_close(&mut self, id: FlowId) {
        self.socks.remove(id);
    }

    fn os_dns_send(&mut self, upstream: SocketAddr, query: &[u8]) -> io::Result<()> {
        let fd = self.socks.dns_socket(upstream.is_ipv6())?;
        fd.get_ref()
            .send_to(query, &SockAddr::from(upstream))
            .map(|_| ())
    }

    fn os_dns_recv(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        for (fd, waker) in self.socks.dns.iter().flatten() {
            match recv_from(fd, buf) {
                Ok((n, addr)) => {
                    if let Some(a) = addr {
                        return Ok((n, a));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut cx = Context::from_waker(waker);
                    if let Poll::Ready(Ok(mut g)) = fd.poll_read_ready(&mut cx) {
                        g.clear_ready();
                    }
                    let _ = fd.poll_read_ready(&mut cx);
                }
                Err(e) => return Err(e),
            }
        }
        Err(would_block())
    }
}

impl HostIo for IoCtx<'_> {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.os_transmit(frame)
    }
    fn tcp_send(&mut self, id: FlowId, data: &[u8]) -> HostResult<usize> {
        self.os_tcp_send(id, data).map_err(host_error)
    }
    fn tcp_send_vectored(
        &mut self,
        id: FlowId,
        bufs: &[std::io::IoSlice<'_>],
    ) -> HostResult<usize> {
        self.os_tcp_send_vectored(id, bufs).map_err(host_error)
    }
    fn tcp_peek(
        &mut self,
        id: FlowId,
        offset: usize,
        bufs: &mut [IoSliceMut<'_>],
    ) -> HostResult<usize> {
        self.os_tcp_peek(id, offset, bufs).map_err(host_error)
    }
    fn tcp_consume(&mut self, id: FlowId, n: usize) {
        self.os_tcp_consume(id, n)
    }
    fn udp_send(&mut self, id: FlowId, data: &[u8]) -> HostResult<()> {
        self.os_udp_send(id, data).map_err(host_error)
    }
    fn udp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> HostResult<usize> {
        self.os_udp_recv(id, buf).map_err(host_error)
    }
    fn icmp_send(&mut self, id: FlowId, msg: &[u8]) -> HostResult<()> {
        self.os_icmp_send(id, msg).map_err(host_error)
    }
    fn icmp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> HostResult<usize> {
        self.os_icmp_recv(id, buf).map_err(host_error)
    }
    fn dns_send(&mut self, upstream: SocketAddr, query: &[u8]) -> HostResult<()> {
        self.os_dns_send(upstream, query).map_err(host_error)
    }
    fn dns_recv(&mut self, buf: &mut [u8]) -> HostResult<(usize, SocketAddr)> {
        self.os_dns_recv(buf).map_err(host_error)
    }
}

/// The one place where the OS's errors become the core's [`HostError`]s.
pub fn host_error(e: io::Error) -> HostError {
    if let Some(errno) = e.raw_os_error() {
        match errno {
            libc::EAGAIN | libc::EINPROGRESS => return HostError::WouldBlock,
            libc::ECONNREFUSED => return HostError::Refused,
            libc::ENETUNREACH => return HostError::NetUnreachable,
            libc::EHOSTUNREACH => return HostError::HostUnreachable,
            libc::ETIMEDOUT => return HostError::TimedOut,
            libc::ECONNRESET => return HostError::Reset,
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                return HostError::NoBuffers
            }
            libc::EACCES | libc::EPERM => return HostError::NotPermitted(e.to_string()),
            _ => return HostError::Other(e.to_string()),
        }
    }
    match e.kind() {
        io::ErrorKind::WouldBlock => HostError::WouldBlock,
        io::ErrorKind::ConnectionRefused => HostError::Refused,
        io::ErrorKind::TimedOut => HostError::TimedOut,
        io::ErrorKind::ConnectionReset => HostError::Reset,
        io::ErrorKind::NotConnected => HostError::NotOpen,
        io::ErrorKind::PermissionDenied => HostError::NotPermitted(e.to_string()),
        _ => HostError::Other(e.to_string()),
    }
}

/// The gateway and its host sockets.
pub struct Driver {
    pub gw: Gateway,
    pub socks: HostSockets,
}

impl Driver {
    pub fn new(gw: Gateway, queue: Arc<ReadyQueue>) -> Self {
        let mode = probe_icmp();
        match mode {
            IcmpMode::PingSocket => log::info!("ICMP echo: unprivileged ping sockets"),
            IcmpMode::Raw => log::info!("ICMP echo: raw sockets"),
            IcmpMode::Unavailable => log::warn!(
                "ICMP echo from guests will not be forwarded: this user may not open ping sockets \
                 (sysctl net.ipv4.ping_group_range) nor raw sockets"
            ),
        }
        Driver {
            gw,
            socks: HostSockets::new(queue, mode),
        }
    }

    /// One call into the core with the sockets as its data path, then every [`Action`] it queued,
    /// carried out in order before the next call (a connect that fails at once is reported back
    /// as [`Event::TcpConnected`] right away, so the guest's RST or ICMP error goes out now).
    fn call<R>(
        &mut self,
        now: Instant,
        sink: &mut dyn FnMut(&[u8]) -> bool,
        f: impl FnOnce(&mut Gateway, &mut IoCtx<'_>) -> R,
    ) -> R {
        let r = {
            let mut io = IoCtx {
                socks: &mut self.socks,
                sink: &mut *sink,
            };
            f(&mut self.gw, &mut io)
        };
        self.run_actions(now, sink);
        r
    }

    /// Carries out the core's queued [`Action`]s.
    fn run_actions(&mut self, now: Instant, sink: &mut dyn FnMut(&[u8]) -> bool) {
        while let Some(a) = self.gw.poll_action() {
            let mut io = IoCtx {
                socks: &mut self.socks,
                sink: &mut *sink,
            };
            let opened = |id, r: io::Result<()>| {
                Some(match r {
                    Ok(()) => Event::Opened(id),
                    Err(e) => Event::OpenFailed(id, host_error(e)),
                })
            };
            let connected = |id, r: io::Result<()>| {
                r.err().map(|e| Event::TcpConnected {
                    id,
                    result: Err(host_error(e)),
                })
            };
            let ev = match a {
                Action::TcpConnect { id, dst } => connected(id, io.os_tcp_connect(id, dst)),
                Action::TcpSpawn { id, command } => connected(id, io.os_tcp_spawn(id, &command)),
                Action::TcpWantWrite(id) => {
                    io.os_tcp_want_write(id);
                    None
                }
                Action::TcpShutdownWrite(id) => {
                    io.os_tcp_shutdown_write(id);
                    None
                }
                Action::TcpClose { id, reset } => {
                    io.os_tcp_close(id, reset);
                    None
                }
                // Opened here and reported at once: the core holds the flow's first datagrams
                // until then. A close queued before an open frees its fd first.
                Action::UdpOpen { id, dst } => opened(id, io.os_udp_open(id, dst)),
                Action::UdpOpenForward { id, fwd, client } => {
                    opened(id, io.os_udp_open_forward(id, fwd, client))
                }
                Action::UdpClose(id) => {
                    io.os_udp_close(id);
                    None
                }
                Action::IcmpOpen { id, dst } => opened(id, io.os_icmp_open(id, dst)),
                Action::IcmpClose(id) => {
                    io.os_icmp_close(id);
                    None
                }
            };
            if let Some(ev) = ev {
                self.gw.handle_event(now, ev, &mut io);
            }
        }
    }

    /// Several frames from the LAN for the gateway (see [`Gateway::handle_batch`]).
    pub fn handle_frames(
        &mut self,
        now: Instant,
        frames: &[&[u8]],
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        let batch = FrameBatch::new(frames);
        self.call(now, sink, |gw, io| gw.handle_batch(now, batch, io));
    }

    /// Frames that all came in on switch port `port` ([`FrameBatch::from_port`]).
    pub fn handle_frames_from(
        &mut self,
        now: Instant,
        port: u32,
        frames: &[&[u8]],
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        let batch = FrameBatch::from_port(port, frames);
        self.call(now, sink, |gw, io| gw.handle_batch(now, batch, io));
    }

    /// One frame from the LAN for the gateway.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        frame: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        self.call(now, sink, |gw, io| gw.handle_frame(now, frame, io));
    }

    /// A token from the ready queue that belongs to the driver.
    pub fn handle(&mut self, now: Instant, t: Token, sink: &mut dyn FnMut(&[u8]) -> bool) {
        match t {
            Token::Flow(id) => self.handle_flow(now, id, sink),
            Token::Dns(_) => self.call(now, sink, |gw, io| {
                gw.handle_event(now, Event::DnsReadable, io)
            }),
            Token::Fwd(fwd) => self.handle_forward(now, fwd, sink),
            Token::Reap => self.socks.reap_children(),
            Token::Ext(_) => {}
        }
    }

    /// Opens a host→guest forward: a TCP listener or a bound UDP socket at `host`, whose connections
    /// or datagrams go to `guest`. Returns its id. An IPv6 wildcard listener (`[::]`) also takes
    /// IPv4 clients (dual stack, as libslirp's listeners are unless asked for IPv6 only).
    pub fn add_forward(
        &mut self,
        proto: Proto,
        host: SocketAddr,
        guest: SocketAddr,
    ) -> io::Result<u32> {
        self.add_forward_with(proto, host, guest, false)
    }

    /// [`Driver::add_forward`] for a rule that may name no guest (`follow_family`, see
    /// [`Forward::follow_family`]).
    pub fn add_forward_with(
        &mut self,
        proto: Proto,
        host: SocketAddr,
        guest: SocketAddr,
        follow_family: bool,
    ) -> io::Result<u32> {
        let (ty, p) = match proto {
            Proto::Tcp => (Type::STREAM, Protocol::TCP),
            Proto::Udp => (Type::DGRAM, Protocol::UDP),
            Proto::Icmp => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "forwards are TCP or UDP",
                ))
            }
        };
        let s = Socket::new(Domain::for_address(host), ty, Some(p))?;
        s.set_reuse_address(true)?;
        if host.is_ipv6() {
            let _ = s.set_only_v6(false);
        }
        s.set_nonblocking(true)?;
        s.bind(&SockAddr::from(host))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {host}: {e}")))?;
        if proto == Proto::Tcp {
            s.listen(128)?;
        }
        let bound = s.local_addr()?.as_socket().unwrap_or(host);
        let fd = register(s)?;
        let slots = &mut self.socks.forwards;
        let idx = slots
            .iter()
            .position(|f| f.is_none())
            .unwrap_or(slots.len());
        if idx == slots.len() {
            slots.push(None);
        }
        let waker = self.socks.queue.waker(Token::Fwd(idx as u32));
        slots[idx] = Some(Forward {
            proto,
            host: bound,
            guest,
            follow_family,
            fd,
            waker,
            peers: FxHashMap::default(),
        });
        self.socks.queue.push(Token::Fwd(idx as u32));
        Ok(idx as u32)
    }

    /// Closes a forward's socket (connections already made through it go on). False if unknown.
    pub fn remove_forward(&mut self, id: u32) -> bool {
        match self.socks.forwards.get_mut(id as usize) {
            Some(slot @ Some(_)) => {
                *slot = None;
                true
            }
            _ => false,
        }
    }

    /// The open forwards: (id, forward).
    pub fn forwards(&self) -> impl Iterator<Item = (u32, &Forward)> {
        self.socks
            .forwards
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (i as u32, f)))
    }

    fn handle_forward(&mut self, now: Instant, fwd: u32, sink: &mut dyn FnMut(&[u8]) -> bool) {
        let mut buf = std::mem::take(&mut self.socks.discard);
        if buf.len() < 65536 {
            buf.resize(65536, 0);
        }
        for round in 0..64 {
            let Some(Some(f)) = self.socks.forwards.get(fwd as usize) else {
                break;
            };
            if round == 63 {
                // Fair share used up while still readable: come back after the others.
                self.socks.queue.push(Token::Fwd(fwd));
            }
            if !poll_ready(&f.fd, &f.waker, false) {
                break;
            }
            let (proto, rule_guest, follow) = (f.proto, f.guest, f.follow_family);
            // A rule without a guest follows the family the client came in on (a v4-mapped
            // client of a dual-stack `[::]` listener counts as IPv4), as passt does.
            let guest_for = |gw: &Gateway, client: SocketAddr| {
                if follow {
                    gw.forward_guest(client.ip(), rule_guest)
                } else {
                    rule_guest
                }
            };
            if proto == Proto::Tcp {
                match f.fd.get_ref().accept() {
                    Ok((conn, addr)) => {
                        let Some(client) = addr.as_socket() else {
                            continue;
                        };
                        let guest = guest_for(&self.gw, client);
                        let _ = conn.set_nonblocking(true);
                        let _ = conn.set_tcp_nodelay(true);
                        set_peek_off(&conn, 0);
                        match self.call(now, sink, |gw, io| gw.tcp_inbound(now, client, guest, io))
                        {
                            Ok(id) => {
                                if let Err(e) = self.socks.install(id, conn, false, None) {
                                    log::warn!(
                                        "forward to {guest}: cannot register the connection: {e}"
                                    );
                                }
                            }
                            Err(e) => {
                                log::warn!("forward {client} -> {guest} refused: {e}");
                                let _ = conn.set_linger(Some(std::time::Duration::ZERO));
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        clear_ready(&f.fd, &f.waker, false, &self.socks.queue, Token::Fwd(fwd));
                        break;
                    }
                    Err(e) => {
                        // EMFILE and friends: readiness stays set, so no new wakeup would come;
                        // retry shortly instead (the listener recovers once fds are free).
                        static LOGGED: std::sync::atomic::AtomicU64 =
                            std::sync::atomic::AtomicU64::new(0);
                        if log_allowed(&LOGGED) {
                            log::warn!(
                                "accept on forward {} failed: {e}; retrying every {} ms",
                                f.host,
                                ACCEPT_RETRY.as_millis()
                            );
                        }
                        retry_later(&self.socks.queue, Token::Fwd(fwd), ACCEPT_RETRY);
                        break;
                    }
                }
            } else {
                match recv_from(&f.fd, &mut buf) {
                    Ok((n, from)) => {
                        let Some(client) = from else {
                            continue;
                        };
                        let guest = guest_for(&self.gw, client);
                        let payload = &buf[..n];
                        if let Err(e) = self.call(now, sink, |gw, io| {
                            gw.udp_inbound(now, fwd, client, guest, payload, io)
                        }) {
                            log::debug!("UDP forward {client} -> {guest}: {e}");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if let Some(Some(f)) = self.socks.forwards.get(fwd as usize) {
                            clear_ready(&f.fd, &f.waker, false, &self.socks.queue, Token::Fwd(fwd));
                        }
                        break;
                    }
                    Err(e) => {
                        log::debug!("UDP forward receive: {e}");
                        break;
                    }
                }
            }
        }
        self.socks.discard = buf;
    }

    fn handle_flow(&mut self, now: Instant, id: FlowId, sink: &mut dyn FnMut(&[u8]) -> bool) {
        let Some(s) = self.socks.get(id) else { return };
        if s.connecting {
            if !poll_ready(&s.fd, &s.waker, true) {
                return;
            }
            s.connecting = false;
            let res = match s.fd.get_ref().take_error() {
                Ok(Some(e)) => Err(e),
                Err(e) => Err(e),
                Ok(None) => match s.fd.get_ref().peer_addr() {
                    Ok(_) => Ok(()),
                    Err(_) => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
                },
            };
            let result = res.map_err(host_error);
            self.call(now, sink, |gw, io| {
                gw.handle_event(now, Event::TcpConnected { id, result }, io)
            });
        }
        let Some(s) = self.socks.get(id) else { return };
        if s.want_write && poll_ready(&s.fd, &s.waker, true) {
            s.want_write = false;
            self.call(now, sink, |gw, io| {
                gw.handle_event(now, Event::TcpWritable(id), io)
            });
        }
        let Some(s) = self.socks.get(id) else { return };
        if poll_ready(&s.fd, &s.waker, false) {
            let ev = match id.proto {
                Proto::Tcp => Event::TcpReadable(id),
                Proto::Udp => Event::UdpReadable(id),
                Proto::Icmp => Event::IcmpReadable(id),
            };
            self.call(now, sink, |gw, io| gw.handle_event(now, ev, io));
        }
    }

    /// The way to the guests has room again: resumes flows that paused on congestion.
    pub fn link_ready(&mut self, now: Instant, sink: &mut dyn FnMut(&[u8]) -> bool) {
        self.call(now, sink, |gw, io| {
            gw.handle_event(now, Event::LinkReady, io)
        });
    }

    /// Like [`Driver::link_ready`], but flows towards guest MACs for which `still_blocked` holds stay
    /// paused (their guest's port is still congested).
    pub fn link_ready_except(
        &mut self,
        now: Instant,
        still_blocked: &dyn Fn(&netstack::Mac) -> bool,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) {
        self.call(now, sink, |gw, io| {
            gw.handle_event(now, Event::LinkReadyExcept(still_blocked), io)
        });
    }

    /// Sends deferred ACKs after a batch.
    pub fn end_batch(&mut self, now: Instant, sink: &mut dyn FnMut(&[u8]) -> bool) {
        self.call(now, sink, |gw, io| gw.end_batch(now, io));
    }

    /// Runs the gateway's timers due at `now` ([`Gateway::handle_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut dyn FnMut(&[u8]) -> bool) {
        self.call(now, sink, |gw, io| gw.handle_timeout(now, io));
    }

    /// When the gateway's next timer is due ([`Gateway::poll_timeout`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.gw.poll_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_children_are_reaped_on_sigchld() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let queue = Arc::new(ReadyQueue::default());
            let mut socks = HostSockets::new(queue.clone(), IcmpMode::Unavailable);
            let mut sink = |_: &[u8]| true;
            for i in 0..3 {
                let mut io = IoCtx {
                    socks: &mut socks,
                    sink: &mut sink,
                };
                let id = FlowId {
                    proto: Proto::Tcp,
                    idx: i,
                    gen: 0,
                };
                io.os_tcp_spawn(id, "sleep 0.3").expect("spawn");
            }
            assert_eq!(socks.children(), 3);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut tokens = Vec::new();
            while socks.children() > 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "children not reaped: {}",
                    socks.children()
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let waker = futures_noop_waker();
                let mut cx = Context::from_waker(&waker);
                if queue.poll_drain(&mut cx, &mut tokens).is_ready()
                    && tokens.contains(&Token::Reap)
                {
                    socks.reap_children();
                }
                tokens.clear();
            }
        });
    }

    #[test]
    fn os_errors_map_to_host_errors() {
        let os = |n| host_error(io::Error::from_raw_os_error(n));
        assert_eq!(os(libc::EAGAIN), HostError::WouldBlock);
        assert_eq!(os(libc::EINPROGRESS), HostError::WouldBlock);
        assert_eq!(os(libc::ECONNREFUSED), HostError::Refused);
        assert_eq!(os(libc::ENETUNREACH), HostError::NetUnreachable);
        assert_eq!(os(libc::EHOSTUNREACH), HostError::HostUnreachable);
        assert_eq!(os(libc::ETIMEDOUT), HostError::TimedOut);
        assert_eq!(os(libc::ECONNRESET), HostError::Reset);
        for n in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(os(n), HostError::NoBuffers, "errno {n}");
        }
        assert!(matches!(os(libc::EACCES), HostError::NotPermitted(_)));
        // Anything else keeps the OS's description for the log line.
        let other = os(libc::EPIPE);
        assert_eq!(
            other,
            HostError::Other(io::Error::from_raw_os_error(libc::EPIPE).to_string())
        );
        // Errors made without an errno (the driver's own) map by kind.
        let kind = |k| host_error(io::Error::from(k));
        assert_eq!(kind(io::ErrorKind::WouldBlock), HostError::WouldBlock);
        assert_eq!(kind(io::ErrorKind::ConnectionRefused), HostError::Refused);
        assert_eq!(kind(io::ErrorKind::NotConnected), HostError::NotOpen);
        assert!(matches!(
            host_error(io::Error::new(io::ErrorKind::PermissionDenied, "no ping")),
            HostError::NotPermitted(m) if m == "no ping"
        ));
    }

    fn futures_noop_waker() -> Waker {
        struct Noop;
        impl Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        Waker::from(Arc::new(Noop))
    }
}
