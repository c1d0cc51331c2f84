//! What the protocol NATs and services see: [`Ctx`], the gateway's shared parts.
//!
//! The TCP, UDP and ICMP NATs and ARP take `&mut Ctx` (plus `&mut dyn HostIo` for the data path),
//! never the [`Gateway`](crate::gateway::Gateway): the configuration, counters, neighbour table and
//! DHCP leases (who is which MAC), the flow table (budget, idle timers, eviction), the frame
//! builder, the seeded randomness and the queue of [`Action`]s for the driver. The gateway owns a
//! `Ctx` and the NATs and only dispatches.

use crate::batch::FrameIdx;
use crate::config::Config;
use crate::dhcp::DhcpServer;
use crate::flow::{FlowBudget, FlowKey, FlowTable, Owner, Proto};
use crate::fwd::{self, Dest};
use crate::host::{Action, HostError, HostIo};
use crate::neigh::{Learned, NeighTable};
use crate::rng::{Rng, STREAM_TCP_ISN};
use crate::stats::Stats;
use crate::wire::ethernet;
use crate::wire::icmp as icmpw;
use crate::wire::ip;
use crate::wire::udp;
use crate::wire::WireError;
use crate::{Instant, Mac};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Largest frame the gateway builds: an MTU of 65520 plus the Ethernet header.
pub const MAX_FRAME: usize = 65535 + ethernet::HEADER_LEN;

/// A UDP/ICMP flow must have been idle this long before the fd budget evicts it.
pub const EVICT_MIN_IDLE: Duration = Duration::from_secs(1);

/// The gateway's shared state, as the protocol modules see it.
pub struct Ctx {
    /// The gateway's configuration (fixed after start).
    pub cfg: Config,
    /// Counters the protocol modules increment; read by the driver and the `stats` API.
    pub stats: Stats,
    /// Guest address → the MAC it sends from (learned from valid frames and DHCP); bounded, aging.
    pub neigh: NeighTable,
    /// The DHCP server: its leases are the other answer to "which MAC has this address".
    pub dhcp: DhcpServer,
    /// Every NAT flow: budget, owners, idle timers, eviction.
    pub flows: FlowTable,
    /// The switch port the frames being handled came in on (`FrameBatch::from_port`): new flows are
    /// charged to it.
    pub(crate) ingress: Option<u32>,
    /// Scratch buffer for building one frame.
    pub(crate) tx: Vec<u8>,
    /// While `Gateway::handle_batch` runs: the frame being handled (guest TCP payload is
    /// remembered as a span of it and written per flow at the batch's end).
    pub(crate) batch: Option<FrameIdx>,
    /// TCP initial sequence numbers (seeded).
    pub(crate) isn: Rng,
    /// Control decisions waiting for the driver (`Gateway::poll_action`), oldest first.
    pub(crate) actions: VecDeque<Action>,
    log: LogLimiter,
}

impl Ctx {
    /// A context for `cfg` whose random choices come from `seed`.
    pub fn new(cfg: Config, seed: u64) -> Self {
        let lan_size = 1usize << (32 - u32::from(cfg.net.prefix)).min(31);
        Ctx {
            dhcp: DhcpServer::new(&cfg),
            neigh: NeighTable::new(
                cfg.neigh_max.min(lan_size),
                cfg.neigh_max_per_mac,
                cfg.neigh_idle,
            ),
            flows: FlowTable::new(
                FlowBudget::new(
                    cfg.max_flows_total,
                    cfg.max_flows_per_guest,
                    cfg.max_cmd_per_guest,
                ),
                cfg.udp_idle,
                cfg.icmp_idle,
            ),
            ingress: None,
            stats: Stats::default(),
            tx: vec![0; MAX_FRAME],
            batch: None,
            isn: Rng::new(seed, STREAM_TCP_ISN),
            actions: VecDeque::new(),
            log: LogLimiter::default(),
            cfg,
        }
    }

    /// Queues a control decision for the driver (`Gateway::poll_action`).
    pub(crate) fn act(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    /// The oldest control decision the driver has not taken yet.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whom a new flow of `guest` is charged to: the port its frames came in on, else its address.
    pub(crate) fn owner_for(&self, guest: IpAddr) -> Owner {
        match self.ingress {
            Some(p) => Owner::Port(p),
            None => Owner::Guest(guest),
        }
    }

    /// Where a guest's new flow to `remote:port` goes (see [`fwd::classify`]); `dns_upstream` is
    /// where TCP to the DNS address goes.
    pub(crate) fn dest(
        &self,
        remote: IpAddr,
        port: u16,
        proto: Proto,
        dns_upstream: Option<SocketAddr>,
    ) -> Dest {
        let up = if proto == Proto::Tcp && port == 53 {
            dns_upstream
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

    /// How a host peer's address appears to a guest at `guest` (a forward's client): as itself when
    /// it is of the guest's family and could not be mistaken for a LAN address; otherwise as the
    /// gateway's address of the guest's family. So loopback (`127.0.0.1`, `::1`) shows as the
    /// gateway (`10.0.2.2`, the IPv6 router `::2`), and a client of the other family (an IPv4
    /// client of an IPv6 guest, or the other way round) as the gateway too: the guest's reply
    /// comes back to the gateway, which owns the flow.
    pub(crate) fn guest_visible(&self, peer: IpAddr, guest: IpAddr) -> IpAddr {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        match (guest, &self.cfg.v6) {
            (IpAddr::V6(_), Some(plan)) => match peer {
                IpAddr::V6(v6)
                    if !v6.is_loopback()
                        && !v6.is_unspecified()
                        && !v6.is_multicast()
                        && !crate::wire::ipv6::is_link_local(&v6)
                        && !plan.net.contains(v6) =>
                {
                    peer
                }
                _ => IpAddr::V6(plan.router),
            },
            _ => match peer {
                IpAddr::V4(v4)
                    if !v4.is_loopback() && !v4.is_unspecified() && !self.cfg.net.contains(v4) =>
                {
                    peer
                }
                _ => IpAddr::V4(self.cfg.gateway),
            },
        }
    }

    /// Whether `ip` can be a guest's address on the LAN: an IPv4 address of the LAN other than the
    /// gateway's own, or (IPv6 on) a guest address of the prefix or link-local.
    pub(crate) fn is_guest_addr(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => {
                self.cfg.net.contains(v4)
                    && !self.is_virtual(v4)
                    && v4 != self.cfg.net.network()
                    && v4 != self.cfg.net.broadcast()
            }
            IpAddr::V6(v6) => self.cfg.v6.as_ref().is_some_and(|p| p.guest_source_ok(&v6)),
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

    /// Records that `ip` uses `mac`. `None` (and `drop_spoofed`) when `ip` is leased by DHCP to a
    /// different MAC: no MAC takes over an address another holds a lease for. `Some(true)` when the
    /// address is new in the table (flows waiting for it may go ahead). A full table only means the
    /// address is not remembered (`neigh_full`); leased addresses are found through their lease.
    pub(crate) fn learn_neighbour(&mut self, now: Instant, ip: IpAddr, mac: Mac) -> Option<bool> {
        if self.neigh.get(&ip) != Some(mac) {
            if let IpAddr::V4(v4) = ip {
                if self.dhcp.mac_for_ip(v4).is_some_and(|m| m != mac) {
                    self.stats.drop_spoofed += 1;
                    let m = ethernet::fmt_mac(&mac);
                    self.note(now, || {
                        format!("dropped a packet from {m} claiming {ip}, leased to another guest")
                    });
                    return None;
                }
            }
        }
        match self.neigh.learn(now, ip, mac, false) {
            Learned::Same => Some(false),
            Learned::Full => {
                self.stats.neigh_full += 1;
                Some(false)
            }
            Learned::New => Some(true),
        }
    }

    /// Whether `key`'s guest may open one more flow. Per guest: at most its share
    /// (`drop_flow_limit`). When the global fd budget is used up, the least recently active UDP/ICMP
    /// flow idle for at least [`EVICT_MIN_IDLE`] is closed to make room (`flows_evicted`), except
    /// that the guest holding the most flows may only recycle its own; otherwise the flow is refused
    /// (`flows_refused_budget`).
    pub(crate) fn admit(&mut self, now: Instant, key: &FlowKey) -> bool {
        let g = self.owner_for(key.guest);
        let budget = self.flows.budget();
        if budget.of(g) >= budget.max_per_guest {
            self.stats.drop_flow_limit += 1;
            let max = budget.max_per_guest;
            self.note(now, || {
                format!("{g} reached its limit of {max} flows; new flow refused")
            });
            return false;
        }
        if !budget.exhausted() {
            return true;
        }
        let only_own = budget.is_top_holder(g);
        if self.evict_idle(now, only_own.then_some(g)) {
            return true;
        }
        self.stats.flows_refused_budget += 1;
        let max = self.flows.budget().max_total;
        self.note(now, || {
            format!("all {max} flows of the fd budget are in use; a new flow of {g} refused")
        });
        false
    }

    /// Closes the least recently active UDP or ICMP flow if it has been idle for
    /// [`EVICT_MIN_IDLE`] (and belongs to `owner`, if given). No scan: the idle timers' heaps know
    /// the oldest flow. Its NAT forgets it when the gateway drains the flow table's evictions.
    fn evict_idle(&mut self, now: Instant, owner: Option<Owner>) -> bool {
        let Some((id, last, holder)) = self.flows.oldest_idle() else {
            return false;
        };
        if now.saturating_duration_since(last) < EVICT_MIN_IDLE {
            return false;
        }
        if owner.is_some_and(|o| o != holder) {
            return false;
        }
        self.flows.evict(id);
        // Queued before the open that replaces it: the driver frees the fd first.
        self.act(match id.proto {
            Proto::Udp => Action::UdpClose(id),
            _ => Action::IcmpClose(id),
        });
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

    /// Sends an ICMP error (`kind`/`code`) from `src` to the guest at `dst`, quoting `quote`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_icmp_error(
        &mut self,
        mac: Mac,
        src: IpAddr,
        dst: IpAddr,
        kind: u8,
        code: u8,
        quote: &[u8],
        io: &mut dyn HostIo,
    ) {
        if dst.is_ipv6() {
            // IPv6 guests get `send_icmp6_unreachable` (the quote here is IPv4-shaped).
            return;
        }
        let off = ethernet::HEADER_LEN + ip::header_len(dst);
        let n = icmpw::HEADER_LEN + quote.len();
        let mut tx = std::mem::take(&mut self.tx);
        tx[off + icmpw::HEADER_LEN..off + n].copy_from_slice(quote);
        icmpw::write(&mut tx[off..off + n], kind, code, [0; 4]);
        let len = self.finish_frame(&mut tx, mac, src, dst, ip::PROTO_ICMP, n);
        io.transmit(&tx[..len]);
        self.stats.frames_out += 1;
        self.tx = tx;
    }

    /// ICMPv6 destination unreachable to IPv6 guest `guest` about its packet of `proto` to
    /// `remote` (whose first transport bytes are `transport`), from `from` (the router when the
    /// NAT names an IPv4 address). `code` is the ICMPv4 code the NATs use; it is mapped to ICMPv6's.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_icmp6_unreachable(
        &mut self,
        mac: Mac,
        from: IpAddr,
        guest: IpAddr,
        remote: IpAddr,
        proto: u8,
        code: u8,
        transport: &[u8],
        io: &mut dyn HostIo,
    ) {
        use crate::wire::icmpv6::{self as i6, Icmpv6Repr};
        use crate::wire::ipv6::{Ipv6Repr, NH_ICMPV6};
        let (Some(plan), IpAddr::V6(dst), IpAddr::V6(remote)) = (&self.cfg.v6, guest, remote)
        else {
            return;
        };
        let code6 = match code {
            icmpw::CODE_PORT_UNREACHABLE => i6::CODE_PORT_UNREACHABLE,
            0 => i6::CODE_NO_ROUTE,
            9 | 10 | 13 => i6::CODE_ADMIN_PROHIBITED,
            _ => i6::CODE_ADDR_UNREACHABLE,
        };
        let src6 = match from {
            IpAddr::V6(s) => s,
            IpAddr::V4(_) => plan.router,
        };
        let Ok(tlen) = u16::try_from(transport.len()) else {
            return;
        };
        let invoking = Ipv6Repr::new(dst, remote, proto, tlen, 64).packet(transport);
        let msg = Icmpv6Repr::DstUnreachable {
            code: code6,
            invoking: &invoking,
        }
        .to_bytes(src6, dst);
        let Ok(mlen) = u16::try_from(msg.len()) else {
            return;
        };
        let ip6 = Ipv6Repr::new(src6, dst, NH_ICMPV6, mlen, 64).packet(&msg);
        let mut f = vec![0u8; ethernet::HEADER_LEN];
        ethernet::write_header(&mut f, mac, self.cfg.gateway_mac, ethernet::ETHERTYPE_IPV6);
        f.extend_from_slice(&ip6);
        io.transmit(&f);
        self.stats.frames_out += 1;
    }

    /// Writes the Ethernet and IP headers in front of `tlen` transport bytes already placed after
    /// them. Returns the frame length.
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

    /// Counts a malformed packet (one rate-limited log line).
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
