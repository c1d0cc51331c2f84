//! The gateway core: takes guest frames and host events, emits frames and socket operations.
//!
//! Protocol handling is split by file (`arp.rs`, `tcp.rs`, `udp.rs`, `icmp.rs`, with DHCP and DNS behind
//! their own types); this file dispatches frames, remembers which MAC each guest address uses, builds
//! outgoing frames and runs the timers.

use crate::config::Config;
use crate::dhcp::DhcpServer;
use crate::dns::{DnsAction, DnsError, DnsForwarder};
use crate::flow::{FlowBudget, FlowKey, Owner, Proto};
use crate::fwd::{self, Dest};
use crate::host::{HostError, HostIo};
use crate::icmp::IcmpNat;
use crate::neigh::NeighTable;
use crate::stats::Stats;
use crate::tcp::TcpNat;
use crate::udp::UdpNat;
use crate::wire::ethernet::{self, Frame};
use crate::wire::ip::{self, IpPacket};
use crate::wire::{udp, WireError};
use crate::{Instant, Mac};
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
    /// Guest address → the MAC it sends from (learned from valid frames and DHCP); bounded, aging.
    pub(crate) neigh: NeighTable,
    /// Live NAT flows in all and per guest (TCP+UDP+ICMP), against the fd budget.
    pub(crate) budget: FlowBudget,
    /// The switch port the frames being handled came in on (`handle_frames_from`): new flows are
    /// charged to it.
    ingress: Option<u32>,
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
        // The only non-deterministic input of the core: a random seed unless the config fixes one.
        let seed = cfg.seed.unwrap_or_else(crate::rng::random_seed);
        let mut dns = DnsForwarder::with_seed(cfg.dns_upstreams.clone(), cfg.dns_timeout, seed);
        dns.set_max_pending_per_client(cfg.dns_max_pending_per_guest);
        let lan_size = 1usize << (32 - u32::from(cfg.net.prefix)).min(31);
        Gateway {
            dhcp: DhcpServer::new(&cfg),
            dns,
            tcp: TcpNat::with_seed(seed),
            udp: UdpNat::default(),
            icmp: IcmpNat::default(),
            neigh: NeighTable::new(
                cfg.neigh_max.min(lan_size),
                cfg.neigh_max_per_mac,
                cfg.neigh_idle,
            ),
            ingress: None,
            budget: FlowBudget::new(
                cfg.max_flows_total,
                cfg.max_flows_per_guest,
                cfg.max_cmd_per_guest,
            ),
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
    /// The flow table's accounting (live flows in all and per guest, and the limits).
    pub fn flow_budget(&self) -> &FlowBudget {
        &self.budget
    }
    /// The MAC remembered for guest address `ip` (neighbour table only, not leases).
    pub fn neighbour(&self, ip: IpAddr) -> Option<Mac> {
        self.neigh.get(&ip)
    }
    /// Guest addresses remembered in the neighbour table.
    pub fn neighbours(&self) -> usize {
        self.neigh.len()
    }
    /// DNS queries waiting for upstreams.
    pub fn dns_pending(&self) -> usize {
        self.dns.pending()
    }
    /// Live gauges (not counters) for the `stats` API: flows, table sizes and their bounds.
    pub fn gauges(&self) -> Vec<(&'static str, u64)> {
        let n = |v: usize| v as u64;
        vec![
            ("flows_live", n(self.budget.total())),
            ("flows_max", n(self.budget.max_total)),
            ("flows_max_per_guest", n(self.budget.max_per_guest)),
            ("neigh_entries", n(self.neigh.len())),
            ("neigh_max", n(self.neigh.capacity())),
            ("dns_pending", n(self.dns.pending())),
        ]
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

    /// Like [`Gateway::handle_frames`] for frames that all came in on switch port `port`: the flows
    /// they open are charged to that port, so one port cannot multiply its share of the fd budget
    /// by using many addresses.
    pub fn handle_frames_from(
        &mut self,
        now: Instant,
        port: u32,
        frames: &[&[u8]],
        io: &mut dyn HostIo,
    ) {
        self.ingress = Some(port);
        self.handle_frames(now, frames, io);
        self.ingress = None;
    }

    /// Whom a new flow of `guest` is charged to: the port its frames came in on, else its address.
    pub(crate) fn owner_for(&self, guest: IpAddr) -> Owner {
        match self.ingress {
            Some(p) => Owner::Port(p),
            None => Owner::Guest(guest),
        }
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
                    self.stats.drop_fragment += 1;
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
            if !self.learn_neighbour(now, p.src, src_mac, io) {
                return;
            }
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
                    // A unicast reply to an address leased to another MAC (an INFORM naming another
                    // guest's address as ciaddr) would teach us that guest's address at the sender's
                    // MAC: refuse it.
                    if !reply.dst_ip.is_broadcast()
                        && self
                            .dhcp
                            .mac_for_ip(reply.dst_ip)
                            .is_some_and(|m| m != reply.dst_mac)
                    {
                        self.stats.drop_spoofed += 1;
                        let (m, a) = (ethernet::fmt_mac(&src_mac), reply.dst_ip);
                        self.note(now, || {
                            format!(
                                "ignored a DHCP message from {m} for {a}, leased to another guest"
                            )
                        });
                        return true;
                    }
                    self.stats.dhcp_replies += 1;
                    // Learn only real unicast destinations (a broadcast reply names no guest).
                    if !reply.dst_ip.is_broadcast() && !ethernet::is_group(&reply.dst_mac) {
                        self.neigh
                            .learn(now, IpAddr::V4(reply.dst_ip), reply.dst_mac, true);
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
                Err(DnsError::TooManyPending) => {
                    self.stats.dns_drop_pending += 1;
                    self.note(now, || {
                        format!(
                            "dropped a DNS query from {client}: too many of its queries pending"
                        )
                    });
                }
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
                    let Some(mac) = self.guest_mac(client.ip()) else {
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
                Err(HostError::WouldBlock) => break,
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

    /// Where a guest's new flow to `remote:port` goes (see [`fwd::classify`]).
    pub(crate) fn dest(&self, remote: IpAddr, port: u16, proto: Proto) -> Dest {
        let up = if proto == Proto::Tcp && port == 53 {
            self.dns.preferred_upstream()
        } else {
            None
        };
        fwd::classify(&self.cfg, up, remote, port, proto)
    }

    /// Counts a destination that is never NATed (one rate-limited log line).
    pub(crate) fn bad_dest(&mut self, now: Instant, key: &FlowKey, why: fwd::BadDest) {
        self.stats.drop_bad_dest += 1;
        let (g, r, p) = (key.guest, key.remote, key.remote_port);
        self.note(now, || {
            format!("dropped a flow from {g} to {r}:{p}: not the outside world ({why:?})")
        });
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
            return Some(m);
        }
        match ip {
            IpAddr::V4(v4) => self.dhcp.mac_for_ip(v4),
            IpAddr::V6(_) => None,
        }
    }

    /// Whether `guest` may open one more flow. Per guest: at most its share (`drop_flow_limit`).
    /// When the global fd budget is used up, the least recently active UDP/ICMP flow idle for at least
    /// [`EVICT_MIN_IDLE`] is closed to make room (`flows_evicted`), except that the guest holding the
    /// most flows may only recycle its own; otherwise the flow is refused (`flows_refused_budget`).
    pub(crate) fn flow_allowed(
        &mut self,
        now: Instant,
        key: &FlowKey,
        io: &mut dyn HostIo,
    ) -> bool {
        let g = self.owner_for(key.guest);
        if self.budget.of(g) >= self.budget.max_per_guest {
            self.stats.drop_flow_limit += 1;
            let max = self.budget.max_per_guest;
            self.note(now, || {
                format!("{g} reached its limit of {max} flows; new flow refused")
            });
            return false;
        }
        if !self.budget.exhausted() {
            return true;
        }
        let only_own = self.budget.is_top_holder(g);
        if self.evict_idle(now, only_own.then_some(g), io) {
            return true;
        }
        self.stats.flows_refused_budget += 1;
        let max = self.budget.max_total;
        self.note(now, || {
            format!("all {max} flows of the fd budget are in use; a new flow of {g} refused")
        });
        false
    }

    /// Closes the least recently active UDP or ICMP flow if it has been idle for [`EVICT_MIN_IDLE`]
    /// (and belongs to `owner`, if given). No scan: the idle timers' heaps know the oldest flow.
    pub(crate) fn evict_idle(
        &mut self,
        now: Instant,
        owner: Option<Owner>,
        io: &mut dyn HostIo,
    ) -> bool {
        let u = self.udp.oldest(self.cfg.udp_idle);
        let i = self.icmp.oldest(self.cfg.icmp_idle);
        let victim = match (u, i) {
            (Some(u), Some(i)) => Some(if i.1 < u.1 { i } else { u }),
            (u, i) => u.or(i),
        };
        let Some((id, last)) = victim else {
            return false;
        };
        if now.saturating_duration_since(last) < EVICT_MIN_IDLE {
            return false;
        }
        let guest = match id.proto {
            Proto::Udp => self.udp.owner_of(id),
            _ => self.icmp.owner_of(id),
        };
        let Some(guest) = guest else { return false };
        if owner.is_some_and(|o| o != guest) {
            return false;
        }
        match id.proto {
            Proto::Udp => {
                self.udp.evict(id);
                io.udp_close(id);
            }
            _ => {
                self.icmp.evict(id);
                io.icmp_close(id);
            }
        }
        self.flow_closed(guest);
        self.stats.flows_evicted += 1;
        true
    }

    /// A host socket could not be made: counts it when the process is out of file descriptors (or
    /// kernel memory) and says whether that was the reason.
    pub(crate) fn out_of_fds(&mut self, now: Instant, e: &HostError) -> bool {
        if *e != HostError::NoBuffers {
            return false;
        }
        self.stats.flows_refused_fd += 1;
        self.note(now, || {
            format!("cannot open a host socket for a guest flow: {e}")
        });
        true
    }

    pub(crate) fn flow_opened(&mut self, owner: Owner) {
        self.budget.opened(owner);
    }
    pub(crate) fn flow_closed(&mut self, owner: Owner) {
        self.budget.closed(owner);
    }

    /// Runs every timer due at `now`.
    pub fn poll_timers(&mut self, now: Instant, io: &mut dyn HostIo) {
        if self.neigh.next_sweep().is_some_and(|t| t <= now) {
            self.stats.neigh_expired += self.neigh.sweep(now) as u64;
        }
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
            self.neigh.next_sweep(),
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

/// A UDP/ICMP flow must have been idle this long before the fd budget evicts it.
pub const EVICT_MIN_IDLE: Duration = Duration::from_secs(1);

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
