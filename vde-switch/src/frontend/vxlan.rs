//! The VXLAN uplink (`--vxlan`, `--vxlan-group`; RFC 7348) as a front end: its UDP sockets (one per
//! local bind, plus one bound to the multicast group), its switch port (a [`Transmit`] that
//! encapsulates each frame and sends it to the VTEP behind its destination MAC, or to every remote and
//! the group), and its control-socket commands (`list_vxlan`, `add_vxlan_remote`,
//! `remove_vxlan_remote`) and counters (an [`Attachment`] of the switch). The header, the learning
//! table and the options are the pure module `crate::vxlan`.

use super::{Context, FrontEnd, Host};
use crate::reactor::{clear_ready, poll_ready, register, Keep};
use crate::switch::port::{PortCounters, PortId, Sent, Transmit, Tx};
use crate::switch::{mac_at, Attachment};
use crate::vxlan::{
    canonical, header, parse, parse_endpoint, VtepTable, VxlanOptions, DEFAULT_PORT, HEADER_LEN,
    MAX_DYNAMIC, MAX_LEARNT,
};
use netstack::wire::ethernet;
use netstack::Mac;
use rustc_hash::FxHashMap;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Instant;
use tokio::io::unix::AsyncFd;

/// Datagrams handled per wakeup before other front ends get their turn.
const BATCH: usize = 64;

/// Counters of the uplink (the `vxlan_` entries of `stats`).
#[derive(Default, Debug, Clone)]
pub struct VxlanCounters {
    pub rx_datagrams: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    /// From an address that is no configured remote, not on the group, and not heard on the group.
    pub drop_source: u64,
    /// Not a VXLAN header we take (`HeaderError`).
    pub drop_header: u64,
    /// Another VNI.
    pub drop_vni: u64,
    /// An inner frame larger than the LAN carries.
    pub drop_size: u64,
    /// An inner frame from the gateway's MAC (never learned from the uplink).
    pub drop_gateway_mac: u64,
    /// The learning table was full.
    pub drop_learn_full: u64,
    /// A send failed (the underlay's buffer was full, no route, ...).
    pub drop_send: u64,
}

impl VxlanCounters {
    pub fn pairs(&self) -> [(&'static str, u64); 11] {
        [
            ("vxlan_rx_datagrams", self.rx_datagrams),
            ("vxlan_tx_datagrams", self.tx_datagrams),
            ("vxlan_tx_bytes", self.tx_bytes),
            ("vxlan_drop_source", self.drop_source),
            ("vxlan_drop_header", self.drop_header),
            ("vxlan_drop_vni", self.drop_vni),
            ("vxlan_drop_size", self.drop_size),
            ("vxlan_drop_gateway_mac", self.drop_gateway_mac),
            ("vxlan_drop_learn_full", self.drop_learn_full),
            ("vxlan_drop_send", self.drop_send),
            ("vxlan_learnt_macs", 0),
        ]
    }
}

struct Sock {
    fd: Rc<AsyncFd<OwnedFd>>,
    local: SocketAddr,
}

/// The uplink's state, shared by its port (transmit) and its sockets' endpoints (receive).
pub struct Uplink {
    socks: Vec<Sock>,
    vni: u32,
    hdr: [u8; HEADER_LEN],
    remotes: Vec<SocketAddr>,
    group: Option<SocketAddr>,
    /// VTEPs heard on the group (address → last heard), accepted on the unicast sockets too.
    dynamic: FxHashMap<IpAddr, Instant>,
    table: VtepTable,
    pub counters: VxlanCounters,
    /// The switch port.
    pub port: Option<PortId>,
    /// Largest inner IP packet.
    mtu: u16,
    /// The switch's notion of the gateway's MAC (never learned from the uplink).
    switch_gw_mac: Mac,
}

impl Uplink {
    /// The socket for sending to `to` (the first unicast socket of its family).
    fn sock_for(&self, to: &SocketAddr) -> Option<&Sock> {
        self.socks
            .iter()
            .find(|s| s.local.is_ipv4() == to.is_ipv4() && !s.local.ip().is_multicast())
    }

    fn send_to(&mut self, to: SocketAddr, frame: &[u8]) {
        let Some(s) = self.sock_for(&to) else {
            self.counters.drop_send += 1;
            return;
        };
        let bufs = [IoSlice::new(&self.hdr), IoSlice::new(frame)];
        match SockRef::from(s.fd.get_ref()).send_to_vectored_with_flags(
            &bufs,
            &SockAddr::from(to),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        ) {
            Ok(_) => {
                self.counters.tx_datagrams += 1;
                self.counters.tx_bytes += (HEADER_LEN + frame.len()) as u64;
            }
            Err(e) => {
                self.counters.drop_send += 1;
                static LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                if crate::reactor::log_allowed(&LOGGED) {
                    log::warn!("VXLAN: sending to {to} failed: {e}");
                }
            }
        }
    }

    /// Sends a frame the switch gave the uplink port: to the VTEP behind its destination MAC, or
    /// replicated to every static remote and the group.
    pub fn send(&mut self, frame: &[u8]) {
        if frame.len() < ethernet::HEADER_LEN {
            return;
        }
        let now = Instant::now();
        let dst = mac_at(frame, 0);
        if !ethernet::is_group(&dst) {
            if let Some(vtep) = self.table.lookup(now, &dst) {
                self.send_to(vtep, frame);
                return;
            }
        }
        for i in 0..self.remotes.len() {
            let r = self.remotes[i];
            self.send_to(r, frame);
        }
        if let Some(g) = self.group {
            self.send_to(g, frame);
        }
    }

    /// Whether a datagram from `from` arriving on a socket (`on_group`: the group's) is accepted, and
    /// the VTEP to send replies for its MACs to.
    fn accept(&mut self, now: Instant, from: SocketAddr, on_group: bool) -> Option<SocketAddr> {
        let ip = canonical(from.ip());
        if let Some(r) = self
            .remotes
            .iter()
            .find(|r| **r == SocketAddr::new(ip, from.port()))
            .or_else(|| self.remotes.iter().find(|r| r.ip() == ip))
        {
            return Some(*r);
        }
        let group = self.group?;
        if self.socks.iter().any(|s| s.local.ip() == ip) {
            return None; // our own flood, looped back
        }
        if on_group {
            if !self.dynamic.contains_key(&ip) && self.dynamic.len() >= MAX_DYNAMIC {
                self.expire_dynamic(now);
                if self.dynamic.len() >= MAX_DYNAMIC {
                    return None;
                }
            }
            self.dynamic.insert(ip, now);
            return Some(SocketAddr::new(ip, group.port()));
        }
        match self.dynamic.get_mut(&ip) {
            Some(t) if now.saturating_duration_since(*t) < self.table.age() => {
                *t = now;
                Some(SocketAddr::new(ip, group.port()))
            }
            _ => None,
        }
    }

    fn expire_dynamic(&mut self, now: Instant) {
        let age = self.table.age();
        self.dynamic
            .retain(|_, t| now.saturating_duration_since(*t) < age);
    }

    /// Adds a static remote (API). Errors: no socket of its family, or already there.
    pub fn add_remote(&mut self, r: SocketAddr) -> Result<(), String> {
        if r.ip().is_unspecified() || r.ip().is_multicast() || r.port() == 0 {
            return Err(format!(
                "{r}: a remote VTEP needs a unicast address and a port"
            ));
        }
        if self.sock_for(&r).is_none() {
            return Err(format!(
                "{r}: no local {} socket (start warren with --vxlan-local {})",
                if r.is_ipv4() { "IPv4" } else { "IPv6" },
                if r.is_ipv4() {
                    "0.0.0.0:4789"
                } else {
                    "[::]:4789"
                }
            ));
        }
        if self.remotes.contains(&r) {
            return Err(format!("{r} is already a remote"));
        }
        self.remotes.push(r);
        log::info!("VXLAN: remote VTEP {r} added");
        Ok(())
    }

    /// Removes a static remote (API) and forgets the MACs learned behind it.
    pub fn remove_remote(&mut self, r: SocketAddr) -> Result<(), String> {
        let Some(i) = self.remotes.iter().position(|x| *x == r) else {
            return Err(format!("{r} is not a remote"));
        };
        self.remotes.remove(i);
        if !self.remotes.iter().any(|x| x.ip() == r.ip()) {
            self.table.forget_vtep(r.ip());
        }
        log::info!("VXLAN: remote VTEP {r} removed");
        Ok(())
    }

    /// The counters for `stats`.
    pub fn stat_pairs(&self) -> Vec<(&'static str, u64)> {
        let mut v = self.counters.pairs().to_vec();
        if let Some(last) = v.last_mut() {
            last.1 = self.table.entries(Instant::now()).len() as u64;
        }
        v
    }

    /// The JSON of `list_vxlan`.
    pub fn describe(&self, now: Instant) -> serde_json::Value {
        use serde_json::json;
        let macs: Vec<_> = self
            .table
            .entries(now)
            .into_iter()
            .map(|(m, v, age)| json!({"mac": ethernet::fmt_mac(&m), "vtep": v.to_string(), "idle_secs": age}))
            .collect();
        let mut vteps: Vec<_> = self
            .remotes
            .iter()
            .map(|r| json!({"vtep": r.to_string(), "kind": "static"}))
            .collect();
        for (ip, t) in &self.dynamic {
            if now.saturating_duration_since(*t) < self.table.age() {
                let g = self.group.map_or(DEFAULT_PORT, |g| g.port());
                vteps.push(json!({"vtep": SocketAddr::new(*ip, g).to_string(), "kind": "group"}));
            }
        }
        json!({
            "vni": self.vni,
            "local": self.socks.iter().map(|s| s.local.to_string()).collect::<Vec<_>>(),
            "group": self.group.map(|g| g.to_string()),
            "mtu": self.mtu,
            "vteps": vteps,
            "macs": macs,
        })
    }
}

/// The receive side of one uplink socket.
pub struct VxlanRx {
    fd: Rc<AsyncFd<OwnedFd>>,
    on_group: bool,
    uplink: Rc<RefCell<Uplink>>,
    buf: Vec<u8>,
}

fn udp_socket(local: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(local), Type::DGRAM, None)?;
    if local.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    Ok(s)
}

/// `--no-gateway`, then (with `--vxlan`/`--vxlan-group`) binds the uplink's sockets, creates its port
/// and registers its front ends.
pub fn bind(h: &mut Host<'_>, o: &VxlanOptions) -> io::Result<()> {
    if o.no_gateway {
        h.switch.set_no_gateway();
    }
    if !o.active() {
        return Ok(());
    }
    let mut locals = o.locals.clone();
    if locals.is_empty() {
        let port = DEFAULT_PORT;
        if o.remotes.iter().chain(o.group.iter()).any(|r| r.is_ipv4()) {
            locals.push(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port));
        }
        if o.remotes.iter().chain(o.group.iter()).any(|r| r.is_ipv6()) {
            locals.push(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port));
        }
    }
    let mut socks = Vec::new();
    let mut group_sock = None;
    for l in &locals {
        let sock = udp_socket(*l)?;
        sock.bind(&SockAddr::from(*l)).map_err(|e| {
            io::Error::new(e.kind(), format!("--vxlan-local {l}: cannot bind: {e}"))
        })?;
        // Group traffic arrives on the group's own socket only.
        if l.is_ipv4() {
            let _ = sock.set_multicast_all_v4(false);
            let _ = sock.set_multicast_loop_v4(false);
        } else {
            let _ = sock.set_multicast_all_v6(false);
            let _ = sock.set_multicast_loop_v6(false);
        }
        let local = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(*l);
        socks.push(Sock {
            fd: Rc::new(register(OwnedFd::from(sock))?),
            local,
        });
    }
    for r in o.remotes.iter().chain(o.group.iter()) {
        if !socks.iter().any(|s| s.local.is_ipv4() == r.is_ipv4()) {
            return Err(io::Error::other(format!(
                "--vxlan {r}: no --vxlan-local of its address family"
            )));
        }
    }
    if let Some(g) = o.group {
        // Bound to the group address: only datagrams sent to the group arrive here. Its port: the
        // group's (default: the first local bind's).
        let port = socks
            .iter()
            .find(|s| s.local.is_ipv4() == g.is_ipv4())
            .map_or(DEFAULT_PORT, |s| s.local.port());
        let g = if o.locals.is_empty() || g.port() != DEFAULT_PORT {
            g
        } else {
            SocketAddr::new(g.ip(), port)
        };
        let sock = udp_socket(g)?;
        sock.bind(&SockAddr::from(g)).map_err(|e| {
            io::Error::new(e.kind(), format!("--vxlan-group {g}: cannot bind: {e}"))
        })?;
        match g.ip() {
            IpAddr::V4(m) => sock.join_multicast_v4(&m, &Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(m) => sock.join_multicast_v6(&m, 0),
        }
        .map_err(|e| io::Error::new(e.kind(), format!("--vxlan-group {g}: cannot join: {e}")))?;
        group_sock = Some((Rc::new(register(OwnedFd::from(sock))?), g));
    }
    let group = group_sock.as_ref().map(|(_, g)| *g);
    let rx_fds: Vec<(Rc<AsyncFd<OwnedFd>>, bool)> = socks
        .iter()
        .map(|s| (s.fd.clone(), false))
        .chain(group_sock.iter().map(|(fd, _)| (fd.clone(), true)))
        .collect();
    let mtu = if o.uplink_mtu == 0 {
        1450
    } else {
        o.uplink_mtu
    };
    let uplink = Rc::new(RefCell::new(Uplink {
        socks,
        vni: o.vni,
        hdr: header(o.vni),
        remotes: o.remotes.clone(),
        group,
        dynamic: FxHashMap::default(),
        table: VtepTable::new(MAX_LEARNT, o.age),
        counters: VxlanCounters::default(),
        port: None,
        mtu,
        switch_gw_mac: h.switch.gateway_mac(),
    }));
    let port = h.add_port(
        format!("vxlan vni {}", o.vni),
        Tx::Custom(Box::new(UplinkTx(uplink.clone()))),
        usize::from(mtu) + ethernet::HEADER_LEN,
    );
    uplink.borrow_mut().port = Some(port);
    if o.no_gateway {
        // The gateway is behind the uplink: its DHCP replies and addresses come from there.
        h.switch.trust_port(port);
    }
    h.switch.attach(uplink.clone());
    {
        let u = uplink.borrow();
        let locals: Vec<String> = u.socks.iter().map(|s| s.local.to_string()).collect();
        log::info!(
            "VXLAN: VNI {} on {}{}; remotes: {}; inner MTU {}",
            o.vni,
            locals.join(", "),
            group.map(|g| format!(", group {g}")).unwrap_or_default(),
            if o.remotes.is_empty() {
                "none".to_string()
            } else {
                o.remotes
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            mtu
        );
    }
    for (fd, on_group) in rx_fds {
        h.add_front_end(Box::new(VxlanRx {
            fd,
            on_group,
            uplink: uplink.clone(),
            buf: vec![0; BATCH * (h.mtu_frame() + HEADER_LEN + 1)],
        }));
    }
    Ok(())
}

/// The uplink's port: frames from the switch, encapsulated.
struct UplinkTx(Rc<RefCell<Uplink>>);

impl Transmit for UplinkTx {
    fn send(&mut self, frame: &[u8], counters: &mut PortCounters) -> Sent {
        match self.0.try_borrow_mut() {
            Ok(mut u) => u.send(frame),
            Err(_) => counters.drop_tx_full += 1,
        }
        Sent::Done
    }
}

impl Attachment for Uplink {
    fn stats(&self) -> Vec<(&'static str, u64)> {
        self.stat_pairs()
    }

    /// `list_vxlan`, `add_vxlan_remote`, `remove_vxlan_remote`; None for other requests.
    fn api(&mut self, req: &[u8]) -> Option<Vec<u8>> {
        let v: serde_json::Value = serde_json::from_slice(req).ok()?;
        let exec = v.get("execute")?.as_str()?;
        if !matches!(
            exec,
            "list_vxlan" | "add_vxlan_remote" | "remove_vxlan_remote"
        ) {
            return None;
        }
        let err = |d: String| {
            serde_json::json!({"error": {"desc": d}})
                .to_string()
                .into_bytes()
        };
        if exec == "list_vxlan" {
            return Some(
                serde_json::json!({"return": self.describe(Instant::now())})
                    .to_string()
                    .into_bytes(),
            );
        }
        let remote = v
            .get("arguments")
            .and_then(|a| a.get("remote"))
            .and_then(|r| r.as_str());
        let Some(remote) = remote else {
            return Some(err(format!(
                "{exec}: arguments.remote (ADDR[:PORT]) is required"
            )));
        };
        let r = match parse_endpoint(remote) {
            Ok(r) => r,
            Err(e) => return Some(err(format!("{exec}: {e}"))),
        };
        let res = if exec == "add_vxlan_remote" {
            self.add_remote(r)
        } else {
            self.remove_remote(r)
        };
        Some(match res {
            Ok(()) => b"{\"return\":{}}".to_vec(),
            Err(e) => err(e),
        })
    }
}

impl FrontEnd for VxlanRx {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        let v = self;
        let (waker, tok) = cx.waker();
        // One more byte than the largest datagram we take: MSG_TRUNC reports the real length.
        let max_frame = cx.mtu_frame();
        let room = max_frame + HEADER_LEN + 1;
        let now = cx.now;
        let mut frames: Vec<std::ops::Range<usize>> = Vec::with_capacity(BATCH);
        let (mut used, mut more) = (0, true);
        let port;
        {
            let mut u = v.uplink.borrow_mut();
            let Some(p) = u.port.filter(|p| cx.port_exists(*p)) else {
                return Keep::No;
            };
            port = p;
            // Bounded also in datagrams dropped, and in receive errors (reported once each).
            let mut attempts = 0;
            while frames.len() < BATCH && attempts < 4 * BATCH && v.buf.len() - used >= room {
                attempts += 1;
                if !poll_ready(&v.fd, &waker, false) {
                    more = false;
                    break;
                }
                let slot = &mut v.buf[used..used + room];
                let (len, from) = match crate::sys::recv_from_with_flags(
                    SockRef::from(v.fd.get_ref()),
                    slot,
                    libc::MSG_TRUNC,
                ) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        clear_ready(&v.fd, &waker, false, cx.queue(), tok);
                        more = false;
                        break;
                    }
                    Err(e) => {
                        // ICMP errors from the underlay (a remote's port unreachable) land here.
                        log::debug!("VXLAN: receive: {e}");
                        continue;
                    }
                };
                u.counters.rx_datagrams += 1;
                let Some(from) = from.as_socket() else {
                    u.counters.drop_source += 1;
                    continue;
                };
                let Some(vtep) = u.accept(now, from, v.on_group) else {
                    u.counters.drop_source += 1;
                    continue;
                };
                if len >= room {
                    u.counters.drop_size += 1;
                    continue;
                }
                let (vni, inner) = match parse(&slot[..len]) {
                    Ok(x) => x,
                    Err(_) => {
                        u.counters.drop_header += 1;
                        continue;
                    }
                };
                if vni != u.vni {
                    u.counters.drop_vni += 1;
                    continue;
                }
                if inner.len() > max_frame {
                    u.counters.drop_size += 1;
                    continue;
                }
                let src = mac_at(inner, 6);
                if src == u.switch_gw_mac {
                    u.counters.drop_gateway_mac += 1;
                    continue;
                }
                if !ethernet::is_group(&src) && !u.table.learn(now, src, vtep) {
                    u.counters.drop_learn_full += 1;
                }
                frames.push(used + HEADER_LEN..used + len);
                used += len;
            }
        }
        let mut for_gateway: Vec<&[u8]> = Vec::new();
        for r in frames {
            let f = &v.buf[r];
            if cx.switch(port, f) {
                for_gateway.push(f);
            }
        }
        if !for_gateway.is_empty() {
            cx.to_gateway(port, &for_gateway);
        }
        if more {
            cx.again();
        }
        Keep::Yes
    }

    /// Ages the learning table.
    fn tick(&mut self, cx: &mut Context<'_>) -> Keep {
        if let Ok(mut u) = self.uplink.try_borrow_mut() {
            u.table.expire(cx.now);
            u.expire_dynamic(cx.now);
        }
        Keep::Yes
    }
}
