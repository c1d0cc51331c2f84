//! The gateway: takes guest frames and host events, emits frames and actions (socket operations).
//!
//! This file only dispatches: a frame goes to ARP, the DHCP server, the DNS forwarder or the TCP,
//! UDP or ICMP NAT; host events go to the NAT that owns the flow. The shared parts (configuration,
//! counters, neighbours, flow table, frame builder) are a [`Ctx`], which is all the protocol modules
//! see; the protocol state is theirs.

use crate::arp;
use crate::batch::FrameBatch;
use crate::config::Config;
use crate::ctx::Ctx;
use crate::dhcp::DhcpServer;
use crate::dns::{DnsAction, DnsError, DnsForwarder};
use crate::error::InboundError;
use crate::flow::{FlowBudget, FlowId, Proto};
use crate::host::{Action, Event, HostError, HostIo, HostResult};
use crate::icmp::IcmpNat;
use crate::stats::Stats;
use crate::tcp::TcpNat;
use crate::udp::UdpNat;
use crate::v6::Lan6;
use crate::wire::ethernet::{self, Frame};
use crate::wire::ip::{self, IpPacket};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::udp::UdpDatagram;
use crate::wire::WireError;
use crate::{Instant, Mac};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub use crate::ctx::{EVICT_MIN_IDLE, MAX_FRAME};
pub use crate::fwd::Target;

/// The sans-IO gateway: takes guest frames, host [`Event`]s and the time; emits frames to guests
/// through [`HostIo`] and control decisions as [`Action`]s.
pub struct Gateway {
    ctx: Ctx,
    dns: DnsForwarder,
    tcp: TcpNat,
    udp: UdpNat,
    icmp: IcmpNat,
    /// The IPv6 side (NDP, RA, DHCPv6); `None` with `Config::v6` off.
    v6: Option<Lan6>,
}

impl Gateway {
    /// A gateway with `cfg` (`cfg.dns_upstreams` are the resolved upstream servers, decided by the
    /// caller) whose every random choice (TCP initial sequence numbers, upstream DNS query ids, NDP
    /// jitter) comes from `seed`. The core draws no randomness of its own: the driver draws the seed
    /// (`netstack_driver::random_seed`). A fixed seed makes the core deterministic (replayable fuzz
    /// crashes and simulation tests) but makes DNS ids and ISNs predictable: tests and fuzzing only.
    pub fn new(mut cfg: Config, seed: u64) -> Self {
        // The IPv6 plan's MAC and link-local address follow the gateway's MAC.
        if let Some(p) = cfg.v6.as_mut() {
            p.router_mac = cfg.gateway_mac;
            p.router_ll = crate::addr6::link_local(&cfg.gateway_mac);
        }
        let mut dns = DnsForwarder::new(cfg.dns_upstreams.clone(), cfg.dns_timeout, seed);
        dns.set_max_pending_per_client(cfg.dns_max_pending_per_guest);
        let v6 = cfg
            .v6
            .clone()
            .map(|p| Lan6::new(p, cfg.gateway_mac, &cfg.dns_search, seed));
        Gateway {
            v6,
            ctx: Ctx::new(cfg, seed),
            dns,
            tcp: TcpNat::default(),
            udp: UdpNat::default(),
            icmp: IcmpNat::default(),
        }
    }

    /// The configuration the gateway runs with.
    pub fn config(&self) -> &Config {
        &self.ctx.cfg
    }
    /// The counters so far (see [`Stats`]).
    pub fn stats(&self) -> &Stats {
        &self.ctx.stats
    }
    /// The IPv4 DHCP server and its leases.
    pub fn dhcp(&self) -> &DhcpServer {
        &self.ctx.dhcp
    }
    /// The IPv6 side, unless IPv6 is off.
    pub fn v6(&self) -> Option<&Lan6> {
        self.v6.as_ref()
    }
    /// The gateway's own MAC address (`Config::gateway_mac`).
    pub fn mac(&self) -> Mac {
        self.ctx.cfg.gateway_mac
    }
    /// Number of live flows of each protocol.
    pub fn flow_counts(&self) -> (usize, usize, usize) {
        (self.tcp.len(), self.udp.len(), self.icmp.len())
    }
    /// The flow table's accounting (live flows in all and per guest, and the limits).
    pub fn flow_budget(&self) -> &FlowBudget {
        self.ctx.flows.budget()
    }
    /// The MAC remembered for guest address `ip` (neighbour table only, not leases).
    pub fn neighbour(&self, ip: IpAddr) -> Option<Mac> {
        self.ctx.neigh.get(&ip)
    }
    /// The IPv6 addresses of the guest at `mac`: its DHCPv6 leases first, then the addresses it was
    /// seen using (traffic, duplicate address detection, neighbour advertisements), prefix
    /// addresses before link-local ones. Empty with IPv6 off.
    pub fn guest_addrs6(&self, mac: Mac) -> Vec<std::net::Ipv6Addr> {
        let Some(v6) = &self.v6 else {
            return Vec::new();
        };
        let mut out: Vec<std::net::Ipv6Addr> = v6
            .dhcp()
            .leases()
            .into_iter()
            .filter(|l| l.mac == mac)
            .map(|l| l.addr)
            .collect();
        let mut seen: Vec<std::net::Ipv6Addr> = self
            .ctx
            .neigh
            .addrs_of(mac)
            .filter_map(|ip| match ip {
                IpAddr::V6(a) if !out.contains(&a) => Some(a),
                _ => None,
            })
            .collect();
        seen.sort_by_key(|a| (crate::wire::ipv6::is_link_local(a), *a));
        out.extend(seen);
        out
    }

    /// The guests known by an IPv6 address (a DHCPv6 lease, or a prefix or link-local address
    /// they were seen using), each with [`Gateway::guest_addrs6`], ordered by their first
    /// address. Empty with IPv6 off.
    pub fn guests6(&self) -> Vec<(Mac, Vec<std::net::Ipv6Addr>)> {
        let Some(v6) = &self.v6 else {
            return Vec::new();
        };
        let mut macs: Vec<Mac> = v6.dhcp().leases().into_iter().map(|l| l.mac).collect();
        macs.extend(self.ctx.neigh.entries().filter_map(|(ip, m)| match ip {
            IpAddr::V6(_) => Some(m),
            IpAddr::V4(_) => None,
        }));
        macs.sort_unstable();
        macs.dedup();
        let mut out: Vec<(Mac, Vec<std::net::Ipv6Addr>)> = macs
            .into_iter()
            .map(|m| (m, self.guest_addrs6(m)))
            .filter(|(_, a)| !a.is_empty())
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    /// Where a connection to a forward that named no guest goes (see `ResolvedHostFwd` in
    /// slirp-compat): `guest` is the default guest's IPv4 address; a listener of the other family
    /// (`listener` IPv6) leads to that guest's IPv6 address on the prefix when the gateway knows
    /// one (DHCPv6 lease, the SLAAC address it was seen using), else to `guest` itself.
    ///
    /// With IPv4 off (`Config::ipv4` false) every such connection goes to an IPv6 address: the
    /// first prefix address of the first guest [`Gateway::guests6`] lists (`guest` itself
    /// while no guest is known).
    pub fn forward_guest(&self, listener: IpAddr, guest: SocketAddr) -> SocketAddr {
        if !self.ctx.cfg.ipv4 && guest.is_ipv4() {
            return self
                .guests6()
                .into_iter()
                .find_map(|(_, a)| a.into_iter().find(|a| !crate::wire::ipv6::is_link_local(a)))
                .map_or(guest, |a| SocketAddr::new(IpAddr::V6(a), guest.port()));
        }
        let v6_listener = match listener {
            IpAddr::V6(a) => a.to_ipv4_mapped().is_none(),
            IpAddr::V4(_) => false,
        };
        if !v6_listener || guest.is_ipv6() {
            return guest;
        }
        let Some(mac) = self.ctx.guest_mac(guest.ip()) else {
            return guest;
        };
        match self
            .guest_addrs6(mac)
            .into_iter()
            .find(|a| !crate::wire::ipv6::is_link_local(a))
        {
            Some(a) => SocketAddr::new(IpAddr::V6(a), guest.port()),
            None => guest,
        }
    }

    /// Guest addresses remembered in the neighbour table.
    pub fn neighbours(&self) -> usize {
        self.ctx.neigh.len()
    }
    /// DNS queries waiting for upstreams.
    pub fn dns_pending(&self) -> usize {
        self.dns.pending()
    }
    /// Live gauges (not counters) for the `stats` API: flows, table sizes and their bounds.
    pub fn gauges(&self) -> Vec<(&'static str, u64)> {
        let n = |v: usize| v as u64;
        let b = self.ctx.flows.budget();
        vec![
            ("flows_live", n(b.total())),
            ("flows_max", n(b.max_total)),
            ("flows_max_per_guest", n(b.max_per_guest)),
            ("neigh_entries", n(self.ctx.neigh.len())),
            ("neigh_max", n(self.ctx.neigh.capacity())),
            ("dns_pending", n(self.dns.pending())),
        ]
    }

    /// Several frames at once (all those one read from a port produced; see [`FrameBatch`]). Guest
    /// TCP payload for the same flow is gathered and written to the host socket with one vectored
    /// send at the end, straight from the batch's frames. With [`FrameBatch::from_port`], the flows
    /// the frames open are charged to that port.
    pub fn handle_batch(&mut self, now: Instant, batch: FrameBatch<'_>, io: &mut dyn HostIo) {
        self.ctx.ingress = batch.port();
        for (i, f) in batch.frames() {
            self.ctx.batch = Some(i);
            self.handle_frame(now, f, io);
        }
        self.ctx.batch = None;
        self.tcp.flush_writes(&mut self.ctx, &batch, io);
        self.tcp.flush_pushes(&mut self.ctx, now, io);
        self.ctx.ingress = None;
    }

    /// One frame from the LAN addressed to the gateway (unicast to its MAC, or broadcast).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8], io: &mut dyn HostIo) {
        self.ctx.stats.frames_in += 1;
        let eth = match Frame::parse(frame) {
            Ok(f) => f,
            Err(e) => return self.ctx.bad(now, "ethernet", e),
        };
        let dst = eth.dst();
        if dst != self.ctx.cfg.gateway_mac && !ethernet::is_group(&dst) {
            self.ctx.stats.drop_not_for_us += 1;
            return;
        }
        match eth.ethertype() {
            // `ipv4: false` (IPv6 only): the gateway answers nothing on IPv4.
            ethernet::ETHERTYPE_ARP | ethernet::ETHERTYPE_IPV4 if !self.ctx.cfg.ipv4 => {
                self.ctx.stats.drop_unsupported += 1
            }
            ethernet::ETHERTYPE_ARP => {
                if let Some((ip, mac)) = arp::input(&mut self.ctx, now, &eth, io) {
                    self.neighbour_learned(ip, mac, io);
                }
            }
            ethernet::ETHERTYPE_IPV4 => match IpPacket::parse_v4(eth.payload()) {
                Ok(p) => self.handle_ip(now, eth.src(), &p, io),
                Err(WireError::Fragment) => {
                    self.ctx.stats.drop_fragment += 1;
                    self.ctx.note(now, || {
                        "dropped an IPv4 fragment (fragments are not reassembled)".into()
                    });
                }
                Err(e) => self.ctx.bad(now, "ipv4", e),
            },
            ethernet::ETHERTYPE_IPV6 => match self.v6.as_mut() {
                Some(v6) => {
                    let nat = v6.input(&mut self.ctx, now, eth.src(), eth.payload(), io);
                    if let Some((ip, mac)) = v6.take_new_neighbour() {
                        self.neighbour_learned(IpAddr::V6(ip), mac, io);
                    }
                    if nat {
                        self.handle_ip6(now, eth.src(), eth.payload(), io);
                    }
                }
                None => self.ctx.stats.drop_unsupported += 1,
            },
            _ => self.ctx.stats.drop_unsupported += 1,
        }
        self.forget_evicted();
    }

    fn handle_ip(&mut self, now: Instant, src_mac: Mac, p: &IpPacket<'_>, io: &mut dyn HostIo) {
        let IpAddr::V4(src4) = p.src else {
            self.ctx.stats.drop_unsupported += 1;
            return;
        };
        // DHCP clients send from 0.0.0.0 before they have a lease.
        let unconfigured = src4.is_unspecified() && p.proto == ip::PROTO_UDP;
        if !unconfigured {
            if !self.ctx.cfg.net.contains(src4) || self.ctx.is_virtual(src4) || src4.is_broadcast()
            {
                self.ctx.stats.drop_spoofed += 1;
                let m = ethernet::fmt_mac(&src_mac);
                self.ctx.note(now, || format!("dropped a packet from {m} with source address {src4} (not a guest address)"));
                return;
            }
            match self.ctx.learn_neighbour(now, p.src, src_mac) {
                None => return,
                Some(true) => self.neighbour_learned(p.src, src_mac, io),
                Some(false) => {}
            }
        }
        match p.proto {
            ip::PROTO_TCP => {
                let up = self.dns.preferred_upstream();
                self.tcp.input(&mut self.ctx, now, p, up, io)
            }
            ip::PROTO_UDP => {
                let d = match UdpDatagram::parse(p.payload, p.src, p.dst) {
                    Ok(d) => d,
                    Err(e) => return self.ctx.bad(now, "udp", e),
                };
                if !self.udp_local(now, src_mac, p, &d, io) {
                    self.udp.input(&mut self.ctx, now, src_mac, p, &d, io);
                }
            }
            ip::PROTO_ICMP => self.icmp.input(&mut self.ctx, now, p, io),
            _ => self.ctx.stats.drop_unsupported += 1,
        }
    }

    /// A guest's IPv6 TCP, UDP or ICMPv6 echo packet that [`Lan6::input`] passed on: the DNS proxy
    /// on the DNS address, else the NATs.
    fn handle_ip6(&mut self, now: Instant, src_mac: Mac, packet: &[u8], io: &mut dyn HostIo) {
        let Ok(p6) = Ipv6Packet::parse(packet) else {
            return;
        };
        let Ok(u) = p6.upper_layer() else {
            return;
        };
        let p = IpPacket {
            src: IpAddr::V6(p6.src()),
            dst: IpAddr::V6(p6.dst()),
            proto: u.proto,
            ttl: p6.hop_limit(),
            header: p6.header(),
            payload: u.data,
        };
        match p.proto {
            ip::PROTO_TCP => {
                let up = self.dns.preferred_upstream();
                self.tcp.input(&mut self.ctx, now, &p, up, io)
            }
            ip::PROTO_UDP => {
                let d = match UdpDatagram::parse(p.payload, p.src, p.dst) {
                    Ok(d) => d,
                    Err(e) => return self.ctx.bad(now, "udp", e),
                };
                let dns6 = self.v6.as_ref().map(|v| IpAddr::V6(v.plan().dns));
                if d.dst_port == 53 && Some(p.dst) == dns6 {
                    self.dns_query(now, SocketAddr::new(p.src, d.src_port), d.payload, io);
                } else {
                    self.udp.input(&mut self.ctx, now, src_mac, &p, &d, io);
                }
            }
            ip::PROTO_ICMPV6 => self.icmp.input(&mut self.ctx, now, &p, io),
            _ => self.ctx.stats.v6_dropped += 1,
        }
    }

    /// `ip` turned out to use `mac` (new in the neighbour table): forwarded connections waiting for
    /// it go ahead.
    fn neighbour_learned(&mut self, ip: IpAddr, mac: Mac, io: &mut dyn HostIo) {
        if !self.tcp.arp_waiting_is_empty() {
            self.tcp.neighbour_known(&mut self.ctx, ip, mac, io);
        }
    }

    /// The NATs forget the flows the flow table evicted to make room under the fd budget.
    fn forget_evicted(&mut self) {
        if !self.ctx.flows.has_evicted() {
            return;
        }
        for id in self.ctx.flows.take_evicted() {
            match id.proto {
                Proto::Udp => self.udp.forget(id),
                Proto::Icmp => self.icmp.forget(id),
                Proto::Tcp => {}
            }
        }
    }

    /// UDP to the gateway's own services (DHCP, DNS). Returns false if the datagram is not for them.
    pub(crate) fn udp_local(
        &mut self,
        now: Instant,
        src_mac: Mac,
        p: &IpPacket<'_>,
        d: &UdpDatagram<'_>,
        io: &mut dyn HostIo,
    ) -> bool {
        let dst = p.dst;
        if d.dst_port == 67
            && (dst == IpAddr::V4(Ipv4Addr::BROADCAST) || dst == IpAddr::V4(self.ctx.cfg.gateway))
        {
            match self.ctx.dhcp.handle(now, src_mac, d.payload) {
                Ok(Some(reply)) => {
                    // A unicast reply to an address leased to another MAC (an INFORM naming another
                    // guest's address as ciaddr) would teach us that guest's address at the sender's
                    // MAC: refuse it.
                    if !reply.dst_ip.is_broadcast()
                        && self
                            .ctx
                            .dhcp
                            .mac_for_ip(reply.dst_ip)
                            .is_some_and(|m| m != reply.dst_mac)
                    {
                        self.ctx.stats.drop_spoofed += 1;
                        let (m, a) = (ethernet::fmt_mac(&src_mac), reply.dst_ip);
                        self.ctx.note(now, || {
                            format!(
                                "ignored a DHCP message from {m} for {a}, leased to another guest"
                            )
                        });
                        return true;
                    }
                    self.ctx.stats.dhcp_replies += 1;
                    // Learn only real unicast destinations (a broadcast reply names no guest).
                    if !reply.dst_ip.is_broadcast() && !ethernet::is_group(&reply.dst_mac) {
                        self.ctx
                            .neigh
                            .learn(now, IpAddr::V4(reply.dst_ip), reply.dst_mac, true);
                    }
                    self.ctx.send_udp_to(
                        reply.dst_mac,
                        IpAddr::V4(self.ctx.cfg.gateway),
                        67,
                        IpAddr::V4(reply.dst_ip),
                        68,
                        &reply.payload,
                        io,
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    self.ctx.stats.dhcp_bad += 1;
                    self.ctx
                        .note(now, || format!("ignored a DHCP message: {e}"));
                }
            }
            return true;
        }
        if dst == IpAddr::V4(self.ctx.cfg.dns) && d.dst_port == 53 {
            self.dns_query(now, SocketAddr::new(p.src, d.src_port), d.payload, io);
            return true;
        }
        false
    }

    /// A guest's DNS query to the proxy (on the IPv4 or the IPv6 DNS address).
    fn dns_query(&mut self, now: Instant, client: SocketAddr, query: &[u8], io: &mut dyn HostIo) {
        {
            self.ctx.stats.dns_queries += 1;
            match self.dns.on_guest_query(now, client, query) {
                Ok(actions) => self.dns_actions(actions, io),
                Err(DnsError::TooManyPending) => {
                    self.ctx.stats.dns_drop_pending += 1;
                    self.ctx.note(now, || {
                        format!(
                            "dropped a DNS query from {client}: too many of its queries pending"
                        )
                    });
                }
                Err(e) => {
                    self.ctx.stats.dns_bad += 1;
                    self.ctx
                        .note(now, || format!("ignored a DNS query from {client}: {e}"));
                }
            }
        }
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
                        self.ctx.stats.dns_servfail += 1;
                    }
                    let Some(mac) = self.ctx.guest_mac(client.ip()) else {
                        continue;
                    };
                    let from = match (client.ip(), &self.ctx.cfg.v6) {
                        (IpAddr::V6(_), Some(plan)) => IpAddr::V6(plan.dns),
                        _ => IpAddr::V4(self.ctx.cfg.dns),
                    };
                    self.ctx
                        .send_udp_to(mac, from, 53, client.ip(), client.port(), &response, io);
                }
            }
        }
    }

    /// The upstream DNS socket is readable.
    fn on_dns_readable(&mut self, now: Instant, io: &mut dyn HostIo) {
        let mut buf = vec![0u8; 65535];
        loop {
            match io.dns_recv(&mut buf) {
                Ok((n, from)) => match self.dns.on_upstream_response(now, from, &buf[..n]) {
                    Ok(actions) => self.dns_actions(actions, io),
                    Err(e) => {
                        self.ctx.stats.dns_bad += 1;
                        self.ctx
                            .note(now, || format!("ignored a DNS response from {from}: {e}"));
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

    /// A host client connected to a TCP forward for `guest`. Sends SYN to the guest from the client's
    /// address (host loopback shows as the gateway) and returns the flow id the driver binds the
    /// accepted socket to. On error the driver resets the client.
    pub fn tcp_inbound(
        &mut self,
        now: Instant,
        client: SocketAddr,
        guest: SocketAddr,
        io: &mut dyn HostIo,
    ) -> Result<FlowId, InboundError> {
        let r = self.tcp.inbound(&mut self.ctx, now, client, guest, io);
        self.forget_evicted();
        r
    }

    /// A datagram from `client` arrived on UDP forward `fwd` for `guest`: finds or makes the flow
    /// (whose replies leave through the forward's socket) and delivers the datagram to the guest from
    /// the client's address (host loopback shows as the gateway).
    pub fn udp_inbound(
        &mut self,
        now: Instant,
        fwd: u32,
        client: SocketAddr,
        guest: SocketAddr,
        payload: &[u8],
        io: &mut dyn HostIo,
    ) -> Result<FlowId, InboundError> {
        let r = self
            .udp
            .inbound(&mut self.ctx, now, fwd, client, guest, payload, io);
        self.forget_evicted();
        r
    }

    /// Everything the host reports (see [`Event`]): a connect finished, a socket is readable or
    /// writable, a UDP/ICMP socket opened or failed to, the DNS upstream answered, the link drained. Control decisions this takes come out
    /// as [`Action`]s ([`Gateway::poll_action`]).
    pub fn handle_event(&mut self, now: Instant, ev: Event<'_>, io: &mut dyn HostIo) {
        let cx = &mut self.ctx;
        match ev {
            Event::TcpConnected { id, result } => self.tcp.on_connected(cx, now, id, result, io),
            Event::Opened(id) => self.on_opened(now, id, Ok(()), io),
            Event::OpenFailed(id, e) => self.on_opened(now, id, Err(e), io),
            Event::TcpReadable(id) => self.tcp.on_readable(cx, now, id, io),
            Event::TcpWritable(id) => self.tcp.on_writable(cx, now, id, io),
            Event::UdpReadable(id) => self.udp.on_readable(cx, now, id, io),
            Event::IcmpReadable(id) => self.icmp.on_readable(cx, now, id, io),
            Event::DnsReadable => self.on_dns_readable(now, io),
            Event::LinkReady => self.tcp.on_link_ready(cx, now, io),
            Event::LinkReadyExcept(blocked) => self.tcp.on_link_ready_except(cx, now, blocked, io),
        }
    }

    /// A UDP or ICMP socket the core asked for ([`Action::UdpOpen`], [`Action::UdpOpenForward`],
    /// [`Action::IcmpOpen`]) opened or could not be made.
    fn on_opened(&mut self, now: Instant, id: FlowId, r: HostResult<()>, io: &mut dyn HostIo) {
        match id.proto {
            Proto::Udp => self.udp.on_opened(&mut self.ctx, now, id, r, io),
            Proto::Icmp => self.icmp.on_opened(&mut self.ctx, now, id, r, io),
            Proto::Tcp => {}
        }
    }

    /// The oldest control decision ([`Action`]) the driver has not carried out yet. The driver
    /// drains these after every call into the gateway, in order, before its next call; results
    /// come back through [`Gateway::handle_event`].
    pub fn poll_action(&mut self) -> Option<Action> {
        self.ctx.poll_action()
    }

    /// Runs every timer due at `now` (call it at [`Gateway::poll_timeout`] or later).
    pub fn handle_timeout(&mut self, now: Instant, io: &mut dyn HostIo) {
        if self.ctx.neigh.next_sweep().is_some_and(|t| t <= now) {
            self.ctx.stats.neigh_expired += self.ctx.neigh.sweep(now) as u64;
        }
        self.tcp.timers(&mut self.ctx, now, io);
        for id in self.ctx.flows.expire(now) {
            match id.proto {
                Proto::Udp => self.udp.expired(&mut self.ctx, id),
                Proto::Icmp => self.icmp.expired(&mut self.ctx, id),
                Proto::Tcp => {}
            }
        }
        if let Some(v6) = self.v6.as_mut() {
            if v6.next_deadline().is_none_or(|t| t <= now) {
                v6.poll(&mut self.ctx, now, io);
            }
        }
        let actions = self.dns.poll_timeouts(now);
        if !actions.is_empty() {
            self.dns_actions(actions, io);
        }
    }

    /// When [`Gateway::handle_timeout`] next has work (`None`: no timer armed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.tcp.next_deadline(),
            self.ctx.flows.next_deadline(),
            self.dns.next_deadline(),
            self.ctx.neigh.next_sweep(),
            self.v6.as_ref().and_then(Lan6::next_deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Called by the driver after a batch of frames and events: sends deferred ACKs.
    pub fn end_batch(&mut self, now: Instant, io: &mut dyn HostIo) {
        self.tcp.flush_acks(&mut self.ctx, now, io);
    }
}
