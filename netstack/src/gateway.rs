//! The gateway core: takes guest frames and host events, emits frames and socket operations.
//!
//! Protocol handling is split by file (`arp.rs`, `tcp.rs`, `udp.rs`, `icmp.rs`, with DHCP and DNS behind
//! their own types); this file dispatches frames, remembers which MAC each guest address uses, builds
//! outgoing frames and runs the timers.

use crate::config::{Config, GuestFwdTarget};
use crate::dhcp::DhcpServer;
use crate::dns::{DnsAction, DnsForwarder};
use crate::flow::{FlowKey, Proto};
use crate::host::HostIo;
use crate::icmp::IcmpNat;
use crate::stats::Stats;
use crate::tcp::TcpNat;
use crate::udp::UdpNat;
use crate::wire::ethernet::{self, Frame};
use crate::wire::ip::{self, IpPacket};
use crate::wire::{udp, WireError};
use crate::{Instant, Mac};
use rustc_hash::FxHashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Where a guest flow goes on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Addr(SocketAddr),
    Command(String),
}

/// Largest frame the gateway builds: an MTU of 65520 plus the Ethernet header.
pub const MAX_FRAME: usize = 65535 + ethernet::HEADER_LEN;

pub struct Gateway {
    pub(crate) cfg: Config,
    pub(crate) stats: Stats,
    /// Guest address → the MAC it sends from (learned from valid frames and DHCP).
    pub(crate) neigh: FxHashMap<IpAddr, Mac>,
    /// Live NAT flows per guest address (TCP+UDP+ICMP), for the per-guest cap.
    pub(crate) flows_per_guest: FxHashMap<IpAddr, usize>,
    pub(crate) dhcp: DhcpServer,
    pub(crate) dns: DnsForwarder,
    pub(crate) tcp: TcpNat,
    pub(crate) udp: UdpNat,
    pub(crate) icmp: IcmpNat,
    /// Scratch buffer for building one frame.
    pub(crate) tx: Vec<u8>,
    /// While `handle_frames` runs: (index of the current frame, its address).
    pub(crate) batch: Option<(usize, usize)>,
    log: LogLimiter,
}

impl Gateway {
    /// A gateway with `cfg`; `dns_upstreams` are the resolved upstream servers (from the config or
    /// resolv.conf, decided by the caller).
    pub fn new(cfg: Config) -> Self {
        let dns = DnsForwarder::new(cfg.dns_upstreams.clone(), cfg.dns_timeout);
        Gateway {
            dhcp: DhcpServer::new(&cfg),
            dns,
            tcp: TcpNat::default(),
            udp: UdpNat::default(),
            icmp: IcmpNat::default(),
            neigh: FxHashMap::default(),
            flows_per_guest: FxHashMap::default(),
            stats: Stats::default(),
            tx: vec![0; MAX_FRAME],
            batch: None,
            log: LogLimiter::default(),
            cfg,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn dhcp(&self) -> &DhcpServer {
        &self.dhcp
    }
    pub fn mac(&self) -> Mac {
        self.cfg.gateway_mac
    }
    /// Number of live flows of each protocol.
    pub fn flow_counts(&self) -> (usize, usize, usize) {
        (self.tcp.len(), self.udp.len(), self.icmp.len())
    }

    /// Several frames at once (e.g. all those one read from a guest produced). Guest TCP payload for the
    /// same flow is gathered and written to the host socket with one `writev` at the end.
    pub fn handle_frames(&mut self, now: Instant, frames: &[&[u8]], io: &mut dyn HostIo) {
        for (i, f) in frames.iter().enumerate() {
            self.batch = Some((i, f.as_ptr() as usize));
            self.handle_frame(now, f, io);
        }
        self.batch = None;
        self.tcp_flush_writes(frames, io);
        self.tcp_flush_pushes(now, io);
    }

    /// One frame from the LAN addressed to the gateway (unicast to its MAC, or broadcast).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8], io: &mut dyn HostIo) {
        self.stats.frames_in += 1;
        let eth = match Frame::parse(frame) {
            Ok(f) => f,
            Err(e) => return self.bad(now, "ethernet", e),
        };
        let dst = eth.dst();
        if dst != self.cfg.gateway_mac && !ethernet::is_group(&dst) {
            self.stats.drop_not_for_us += 1;
            return;
        }
        match eth.ethertype() {
            ethernet::ETHERTYPE_ARP => self.handle_arp(now, &eth, io),
            ethernet::ETHERTYPE_IPV4 => match IpPacket::parse_v4(eth.payload()) {
                Ok(p) => self.handle_ip(now, eth.src(), &p, io),
                Err(WireError::Fragment) => {
                    self.stats.drop_unsupported += 1;
                    self.note(now, || {
                        "dropped an IPv4 fragment (fragments are not reassembled)".into()
                    });
                }
                Err(e) => self.bad(now, "ipv4", e),
            },
            // IPv6 (NDP, RA, DHCPv6, NAT) comes next; addresses and flow keys are already dual-stack.
            _ => self.stats.drop_unsupported += 1,
        }
    }

    fn handle_ip(&mut self, now: Instant, src_mac: Mac, p: &IpPacket<'_>, io: &mut dyn HostIo) {
        let IpAddr::V4(src4) = p.src else {
            self.stats.drop_unsupported += 1;
            return;
        };
        // DHCP clients send from 0.0.0.0 before they have a lease.
        let unconfigured = src4.is_unspecified() && p.proto == ip::PROTO_UDP;
        if !unconfigured {
            if !self.cfg.net.contains(src4) || self.is_virtual(src4) || src4.is_broadcast() {
                self.stats.drop_spoofed += 1;
                let m = ethernet::fmt_mac(&src_mac);
                self.note(now, || format!("dropped a packet from {m} with source address {src4} (not a guest address)"));
                return;
            }
            self.learn_neighbour(p.src, src_mac, io);
        }
        match p.proto {
            ip::PROTO_TCP => self.tcp_input(now, p, io),
            ip::PROTO_UDP => self.udp_input(now, src_mac, p, io),
            ip::PROTO_ICMP => self.icmp_input(now, p, io),
            _ => self.stats.drop_unsupported += 1,
        }
    }

    /// UDP to the gateway's own services (DHCP, DNS). Returns false if the datagram is not for them.
    pub(crate) fn udp_local(
        &mut self,
        now: Instant,
        src_mac: Mac,
        p: &IpPacket<'_>,
        d: &udp::UdpDatagram<'_>,
        io: &mut dyn HostIo,
    ) -> bool {
        let dst = p.dst;
        if d.dst_port == 67
            && (dst == IpAddr::V4(Ipv4Addr::BROADCAST) || dst == IpAddr::V4(self.cfg.gateway))
        {
            match self.dhcp.handle(now, src_mac, d.payload) {
                Ok(Some(reply)) => {
                    self.stats.dhcp_replies += 1;
                    // Learn only real unicast destinations (a broadcast reply names no guest).
                    if !reply.dst_ip.is_broadcast() && !ethernet::is_group(&reply.dst_mac) {
                        self.neigh.insert(IpAddr::V4(reply.dst_ip), reply.dst_mac);
                    }
                    self.send_udp_to(
                        reply.dst_mac,
                        IpAddr::V4(self.cfg.gateway),
                        67,
                        IpAddr::V4(reply.dst_ip),
                        68,
                        &reply.payload,
                        io,
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    self.stats.dhcp_bad += 1;
                    self.note(now, || format!("ignored a DHCP message: {e}"));
                }
            }
            return true;
        }
        if dst == IpAddr::V4(self.cfg.dns) && d.dst_port == 53 {
            self.stats.dns_queries += 1;
            let client = SocketAddr::new(p.src, d.src_port);
            match self.dns.on_guest_query(now, client, d.payload) {
                Ok(actions) => self.dns_actions(actions, io),
                Err(e) => {
                    self.stats.dns_bad += 1;
                    self.note(now, || format!("ignored a DNS query from {client}: {e}"));
                }
            }
            return true;
        }
        false
    }

    fn dns_actions(&mut self, actions: Vec<DnsAction>, io: &mut dyn HostIo) {
        for a in actions {
            match a {
                DnsAction::SendUpstream { upstream, query } => {
                    if let Err(e) = io.dns_send(upstream, &query) {
                        log::debug!("DNS query to {upstream} failed: {e}");
                    }
                }
                DnsAction::Reply { client, response } => {
                    if response.len() >= 4 && response[3] & 0x0f == 2 {
                        self.stats.dns_servfail += 1;
                    }
                    let Some(&mac) = self.neigh.get(&client.ip()) else {
                        continue;
                    };
                    self.send_udp_to(
                        mac,
                        IpAddr::V4(self.cfg.dns),
                        53,
                        client.ip(),
                        client.port(),
                        &response,
                        io,
                    );
                }
            }
        }
    }

    /// The upstream DNS socket is readable.
    pub fn on_dns_readable(&mut self, now: Instant, io: &mut dyn HostIo) {
        let mut buf = vec![0u8; 65535];
        loop {
            match io.dns_recv(&mut buf) {
                Ok((n, from)) => match self.dns.on_upstream_response(now, from, &buf[..n]) {
                    Ok(actions) => self.dns_actions(actions, io),
                    Err(e) => {
                        self.stats.dns_bad += 1;
                        self.note(now, || format!("ignored a DNS response from {from}: {e}"));
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("DNS upstream socket: {e}");
                    break;
                }
            }
        }
    }

    /// Builds and transmits one UDP datagram to a guest.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_udp_to(
        &mut self,
        dst_mac: Mac,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        payload: &[u8],
        io: &mut dyn HostIo,
    ) {
        let off = ethernet::HEADER_LEN + ip::header_len(dst);
        let tlen = udp::HEADER_LEN + payload.len();
        if off + tlen > self.tx.len() || tlen > usize::from(self.cfg.mtu) {
            self.stats.drop_unsupported += 1;
            return;
        }
        let mut tx = std::mem::take(&mut self.tx);
        tx[off + udp::HEADER_LEN..off + tlen].copy_from_slice(payload);
        udp::write(&mut tx[off..off + tlen], src, dst, sport, dport);
        let n = self.finish_frame(&mut tx, dst_mac, src, dst, ip::PROTO_UDP, tlen);
        io.transmit(&tx[..n]);
        self.stats.frames_out += 1;
        self.tx = tx;
    }

    /// Writes the Ethernet and IP headers in front of `tlen` transport bytes already placed after them.
    /// Returns the frame length.
    pub(crate) fn finish_frame(
        &self,
        buf: &mut [u8],
        dst_mac: Mac,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        tlen: usize,
    ) -> usize {
        let ethertype = if dst.is_ipv4() {
            ethernet::ETHERTYPE_IPV4
        } else {
            ethernet::ETHERTYPE_IPV6
        };
        ethernet::write_header(buf, dst_mac, self.cfg.gateway_mac, ethertype);
        let hl = ip::write_header(&mut buf[ethernet::HEADER_LEN..], src, dst, proto, tlen);
        ethernet::HEADER_LEN + hl + tlen
    }

    /// Where a guest's packet to `remote:port` goes on the host: the gateway address means host loopback
    /// (unless disabled); the DNS address carries TCP DNS to an upstream; guestfwd addresses lead to their
    /// targets. `None`: nowhere (including everything outbound under `restrict`).
    pub(crate) fn host_target(&self, remote: IpAddr, port: u16, proto: Proto) -> Option<Target> {
        let IpAddr::V4(r) = remote else { return None };
        if proto == Proto::Tcp {
            if let Some(g) = self
                .cfg
                .guestfwds
                .iter()
                .find(|g| g.addr == r && g.port == port)
            {
                return Some(match &g.target {
                    GuestFwdTarget::Connect(a) => Target::Addr(*a),
                    GuestFwdTarget::Command(c) => Target::Command(c.clone()),
                });
            }
        }
        if r == self.cfg.dns {
            if proto == Proto::Tcp && port == 53 {
                return self.dns.preferred_upstream().map(Target::Addr);
            }
            return None;
        }
        if self.cfg.restrict {
            return None;
        }
        if r == self.cfg.gateway {
            return self
                .cfg
                .host_loopback
                .then(|| Target::Addr(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)));
        }
        if self.cfg.net.contains(r) || r.is_broadcast() || r.is_multicast() || r.is_unspecified() {
            return None;
        }
        Some(Target::Addr(SocketAddr::new(remote, port)))
    }

    /// Addresses the gateway itself answers for (gateway, DNS, guestfwds).
    pub(crate) fn is_virtual(&self, ip: Ipv4Addr) -> bool {
        ip == self.cfg.gateway
            || ip == self.cfg.dns
            || self.cfg.guestfwds.iter().any(|g| g.addr == ip)
    }

    /// How a host peer's address appears to guests: loopback (and anything a guest could not tell apart
    /// from its own LAN, or IPv6 for IPv4 guests) shows as the gateway; other addresses as themselves.
    pub(crate) fn guest_visible(&self, peer: IpAddr) -> IpAddr {
        match peer {
            IpAddr::V4(v4)
                if !v4.is_loopback() && !v4.is_unspecified() && !self.cfg.net.contains(v4) =>
            {
                peer
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.guest_visible(IpAddr::V4(v4)),
                None => IpAddr::V4(self.cfg.gateway),
            },
            _ => IpAddr::V4(self.cfg.gateway),
        }
    }

    /// The MAC of a guest address: learned from its traffic, or from its DHCP lease.
    pub(crate) fn guest_mac(&self, ip: IpAddr) -> Option<Mac> {
        if let Some(m) = self.neigh.get(&ip) {
            return Some(*m);
        }
        match ip {
            IpAddr::V4(v4) => self.dhcp.mac_for_ip(v4),
            IpAddr::V6(_) => None,
        }
    }

    /// The guest-visible remote address for a host address (host loopback shows as the gateway).
    pub(crate) fn flow_allowed(&mut self, now: Instant, key: &FlowKey) -> bool {
        let n = self.flows_per_guest.get(&key.guest).copied().unwrap_or(0);
        if n >= self.cfg.max_flows_per_guest {
            self.stats.drop_flow_limit += 1;
            let g = key.guest;
            let max = self.cfg.max_flows_per_guest;
            self.note(now, || {
                format!("guest {g} reached its limit of {max} flows; new flow refused")
            });
            return false;
        }
        true
    }
    pub(crate) fn flow_opened(&mut self, guest: IpAddr) {
        *self.flows_per_guest.entry(guest).or_insert(0) += 1;
    }
    pub(crate) fn flow_closed(&mut self, guest: IpAddr) {
        if let Some(n) = self.flows_per_guest.get_mut(&guest) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.flows_per_guest.remove(&guest);
            }
        }
    }

    /// Runs every timer due at `now`.
    pub fn poll_timers(&mut self, now: Instant, io: &mut dyn HostIo) {
        self.tcp_timers(now, io);
        self.udp_timers(now, io);
        self.icmp_timers(now, io);
        let actions = self.dns.poll_timeouts(now);
        if !actions.is_empty() {
            self.dns_actions(actions, io);
        }
    }

    /// When `poll_timers` next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.tcp.next_deadline(),
            self.udp.next_deadline(),
            self.icmp.next_deadline(),
            self.dns.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Called by the driver after a batch of frames and events: sends deferred ACKs.
    pub fn end_batch(&mut self, now: Instant, io: &mut dyn HostIo) {
        self.tcp_flush_acks(now, io);
    }

    pub(crate) fn bad(&mut self, now: Instant, what: &str, e: WireError) {
        if e == WireError::BadChecksum {
            self.stats.drop_bad_checksum += 1;
        } else {
            self.stats.drop_malformed += 1;
        }
        self.note(now, || format!("dropped a malformed {what} packet: {e}"));
    }

    /// A rate-limited log line (at most 10 a second, then a count of the suppressed ones).
    pub(crate) fn note(&mut self, now: Instant, msg: impl FnOnce() -> String) {
        if self.log.allow(now) {
            log::warn!("{}", msg());
        }
    }
}

#[derive(Default)]
struct LogLimiter {
    window: Option<Instant>,
    count: u32,
    suppressed: u64,
}

impl LogLimiter {
    fn allow(&mut self, now: Instant) -> bool {
        match self.window {
            Some(w) if now.saturating_duration_since(w) < Duration::from_secs(1) => {
                self.count += 1;
                if self.count > 10 {
                    self.suppressed += 1;
                    return false;
                }
                true
            }
            _ => {
                if self.suppressed > 0 {
                    log::warn!("({} similar messages suppressed)", self.suppressed);
                }
                self.window = Some(now);
                self.count = 1;
                self.suppressed = 0;
                true
            }
        }
    }
}
