//! Neighbor Discovery for the gateway (RFC 4861), sans-IO: answers neighbour solicitations for
//! the gateway's own addresses and sends router advertisements, solicited and periodic.
//!
//! Input: one parsed NDP message ([`NdpRepr`]) with its Ethernet source, IPv6 source and
//! destination, hop limit and the time ([`NdpResponder::handle`]; [`NdpResponder::handle_packet`]
//! parses an IPv6 packet first). Output: frames to send ([`NdpTx`]) and what was learnt about
//! guests; [`NdpResponder::poll`] sends the advertisements that are due and
//! [`NdpResponder::next_deadline`] says when to call it next.
//!
//! Behaviour:
//! * NS for the router, DNS (when on the link) or router link-local address → a solicited NA
//!   (R=1, S=1, O=1, target link-layer address = the gateway MAC) unicast to the soliciting node.
//! * DAD probes (source `::`) for one of those addresses → an unsolicited NA to all-nodes
//!   (S=0, O=1), so the guest's duplicate address detection fails; DAD probes for any other
//!   address → nothing: the gateway never claims a guest's address.
//! * RS → a multicast RA after a random delay of up to [`MAX_RA_DELAY`], never sooner than
//!   [`MIN_DELAY_BETWEEN_RAS`] after the previous multicast RA (RFC 4861 §6.2.6).
//! * Unsolicited RAs every `min_interval..=max_interval` (jitter from the seeded [`Rng`]), the
//!   first [`MAX_INITIAL_RTR_ADVERTISEMENTS`] at most [`MAX_INITIAL_RTR_ADVERT_INTERVAL`] apart.
//! * RA contents: hop limit 64, M=0 (unless configured), O=1, router lifetime, source link-layer
//!   address, MTU, the prefix (on-link; autonomous when it is a /64), RDNSS with the DNS address
//!   and DNSSL with the search domains (RFC 8106).
//! * Messages that fail RFC 4861 validation (hop limit not 255, a DAD probe with a source
//!   link-layer option or to a non-solicited-node address, …) are refused as [`NdpDrop`] values;
//!   RAs from guests are refused too (`RouterAdvertFromGuest`, for a counter).

use crate::addr6::Plan6;
use crate::rng::Rng;
use crate::wire::ethernet::{self, ETHERTYPE_IPV6};
use crate::wire::icmpv6::{Dnssl, Icmpv6Repr, NdpRepr, PrefixInfo, Rdnss};
use crate::wire::ipv6::{
    multicast_mac, solicited_node, Ipv6Packet, Ipv6Repr, ALL_NODES, NDP_HOP_LIMIT, NH_ICMPV6,
};
use crate::{Instant, Mac};
use std::net::Ipv6Addr;
use std::time::Duration;

/// RFC 4861 §10 router constants.
pub const MAX_RA_DELAY: Duration = Duration::from_millis(500);
/// Least time between multicast RAs (RFC 4861 MIN_DELAY_BETWEEN_RAS, 3 s).
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// Longest interval between the first unsolicited RAs (RFC 4861, 16 s).
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
/// How many first unsolicited RAs use the shorter initial interval (RFC 4861, 3).
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u8 = 3;
/// The random-stream label of the responder's jitter (distinct from the core's other streams).
const STREAM_NDP: u64 = 0x6e64_7036;

/// What the responder advertises.
#[derive(Clone, Debug)]
pub struct NdpConfig {
    /// The addresses advertised: router link-local address and MAC, prefix, DNS.
    pub plan: Plan6,
    /// Link MTU announced in the MTU option.
    pub mtu: u32,
    /// DNSSL domains (invalid names are left out).
    pub dns_search: Vec<String>,
    /// Router lifetime (at most 9000 s; 0 = not a default router).
    pub router_lifetime: Duration,
    /// Prefix valid and preferred lifetimes.
    pub valid_lifetime: Duration,
    /// Prefix preferred lifetime (default 4 h).
    pub preferred_lifetime: Duration,
    /// Unsolicited RA interval bounds (RFC 4861: 4..=1800 s and 3 s..=0.75 × max).
    pub min_interval: Duration,
    /// Upper bound of the unsolicited RA interval (default 600 s).
    pub max_interval: Duration,
    /// M flag: addresses from DHCPv6 (default off: SLAAC).
    pub managed: bool,
    /// O flag: other configuration from DHCPv6 (default on).
    pub other: bool,
}

impl NdpConfig {
    /// RFC 4861's defaults with the plan's addresses.
    pub fn new(plan: Plan6, mtu: u32) -> Self {
        NdpConfig {
            plan,
            mtu,
            dns_search: Vec::new(),
            router_lifetime: Duration::from_secs(1800),
            valid_lifetime: Duration::from_secs(86400),
            preferred_lifetime: Duration::from_secs(14400),
            min_interval: Duration::from_secs(200),
            max_interval: Duration::from_secs(600),
            managed: false,
            other: true,
        }
    }
}

/// One frame to send: Ethernet destination, IPv6 addresses and the ICMPv6 message (checksummed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NdpTx {
    /// Ethernet destination.
    pub dst_mac: Mac,
    /// IPv6 source address (the router's link-local or own address).
    pub src: Ipv6Addr,
    /// IPv6 destination address.
    pub dst: Ipv6Addr,
    /// The ICMPv6 message, checksum filled in.
    pub icmp: Vec<u8>,
}

impl NdpTx {
    /// The whole Ethernet frame from `src_mac` (IPv6 hop limit 255).
    pub fn to_frame(&self, src_mac: Mac) -> Vec<u8> {
        let ip = Ipv6Repr::new(self.src, self.dst, NH_ICMPV6, 0, NDP_HOP_LIMIT).packet(&self.icmp);
        let mut f = vec![0u8; ethernet::HEADER_LEN];
        ethernet::write_header(&mut f, self.dst_mac, src_mac, ETHERTYPE_IPV6);
        f.extend_from_slice(&ip);
        f
    }
}

/// The result of one NDP message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NdpOutcome {
    /// Frames to send now.
    pub replies: Vec<NdpTx>,
    /// A guest address and its MAC, learnt from an NS/RS source or an NA target.
    pub learned: Option<(Ipv6Addr, Mac)>,
    /// A guest that claims (NA) or probes for (DAD) one of the gateway's addresses.
    pub conflict: Option<(Ipv6Addr, Mac)>,
    /// A duplicate address detection probe for a guest address (the tentative address and the
    /// prober's MAC): worth remembering only while nobody else is known to hold the address.
    pub dad_probe: Option<(Ipv6Addr, Mac)>,
}

/// Why an NDP message was refused (each a counted drop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdpDrop {
    /// Not an NDP message, unparsable, fragmented, or a bad checksum.
    Malformed,
    /// Hop limit not 255: it came through a router (RFC 4861 §6.1, §7.1).
    HopLimit,
    /// A message from `::` that carries a source link-layer option, or a DAD probe not sent to
    /// a solicited-node address.
    BadDad,
    /// An NS sent to a multicast address other than the target's solicited-node address, or a
    /// solicited NA sent to multicast.
    BadDestination,
    /// A guest sent a router advertisement (RA guard).
    RouterAdvertFromGuest,
}

impl std::fmt::Display for NdpDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NdpDrop::Malformed => "malformed NDP message",
            NdpDrop::HopLimit => "NDP message with hop limit below 255",
            NdpDrop::BadDad => "malformed duplicate address detection probe",
            NdpDrop::BadDestination => "NDP message to the wrong destination",
            NdpDrop::RouterAdvertFromGuest => "router advertisement from a guest",
        })
    }
}

impl std::error::Error for NdpDrop {}

/// Where an NDP message came from.
#[derive(Clone, Copy, Debug)]
pub struct NdpIn {
    /// The sender's Ethernet source MAC.
    pub src_mac: Mac,
    /// IPv6 source address.
    pub src: Ipv6Addr,
    /// IPv6 destination address.
    pub dst: Ipv6Addr,
    /// IPv6 hop limit as received (NDP requires 255).
    pub hop_limit: u8,
}

/// The gateway's NDP side: answers router and neighbour solicitations for its own addresses and sends router advertisements on a jittered schedule; sans-IO, time passed in.
pub struct NdpResponder {
    cfg: NdpConfig,
    rng: Rng,
    next_periodic: Instant,
    pending_solicited: Option<Instant>,
    last_multicast: Option<Instant>,
    initial_left: u8,
    /// Router advertisements sent (for stats and tests).
    pub ras_sent: u64,
}

impl NdpResponder {
    /// A responder whose first unsolicited RA goes out within [`MAX_RA_DELAY`] of `now`.
    pub fn new(cfg: NdpConfig, seed: u64, now: Instant) -> Self {
        let mut rng = Rng::new(seed, STREAM_NDP);
        let first = now + jitter(&mut rng, Duration::ZERO, MAX_RA_DELAY);
        NdpResponder {
            cfg,
            rng,
            next_periodic: first,
            pending_solicited: None,
            last_multicast: None,
            initial_left: MAX_INITIAL_RTR_ADVERTISEMENTS,
            ras_sent: 0,
        }
    }

    /// What the responder advertises.
    pub fn config(&self) -> &NdpConfig {
        &self.cfg
    }

    /// When [`poll`](Self::poll) has something to send.
    pub fn next_deadline(&self) -> Instant {
        match self.pending_solicited {
            Some(t) => t.min(self.next_periodic),
            None => self.next_periodic,
        }
    }

    /// Sends the advertisement that is due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Vec<NdpTx> {
        let due = self.pending_solicited.is_some_and(|t| t <= now) || self.next_periodic <= now;
        if !due {
            return Vec::new();
        }
        if let Some(last) = self.last_multicast {
            let earliest = last + MIN_DELAY_BETWEEN_RAS;
            if now < earliest {
                // Rate limit: whatever is due goes out at the earliest allowed instant.
                if self.pending_solicited.is_some_and(|t| t <= now) {
                    self.pending_solicited = Some(earliest);
                }
                if self.next_periodic <= now {
                    self.next_periodic = earliest;
                }
                return Vec::new();
            }
        }
        self.pending_solicited = None;
        self.last_multicast = Some(now);
        let mut interval = jitter(&mut self.rng, self.cfg.min_interval, self.cfg.max_interval);
        if self.initial_left > 0 {
            self.initial_left -= 1;
            interval = interval.min(MAX_INITIAL_RTR_ADVERT_INTERVAL);
        }
        self.next_periodic = now + interval.max(MIN_DELAY_BETWEEN_RAS);
        self.ras_sent += 1;
        vec![self.ra_to(ALL_NODES, multicast_mac(&ALL_NODES))]
    }

    /// The router advertisement as it is sent now.
    pub fn router_advert(&self) -> NdpRepr {
        let c = &self.cfg;
        let plan = &c.plan;
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        // RFC 8106 §5.1: RDNSS/DNSSL lifetimes of at least 3 × MaxRtrAdvInterval by default.
        let dns_life = secs(c.max_interval.saturating_mul(3));
        let domains: Vec<String> = c
            .dns_search
            .iter()
            .filter(|d| crate::wire::icmpv6::valid_domain(d))
            .cloned()
            .collect();
        NdpRepr::RouterAdvert {
            hop_limit: crate::wire::ip::DEFAULT_TTL,
            managed: c.managed,
            other: c.other,
            router_lifetime: secs(c.router_lifetime).min(9000) as u16,
            reachable_time: 0,
            retrans_time: 0,
            source_lladdr: Some(plan.router_mac),
            mtu: Some(c.mtu),
            prefixes: vec![PrefixInfo {
                prefix_len: plan.net.prefix_len(),
                on_link: true,
                autonomous: plan.slaac(),
                valid_lifetime: secs(c.valid_lifetime),
                preferred_lifetime: secs(c.preferred_lifetime.min(c.valid_lifetime)),
                prefix: plan.net.addr(),
            }],
            rdnss: vec![Rdnss {
                lifetime: dns_life,
                servers: vec![plan.dns],
            }],
            dnssl: if domains.is_empty() {
                Vec::new()
            } else {
                vec![Dnssl {
                    lifetime: dns_life,
                    domains,
                }]
            },
        }
    }

    fn ra_to(&self, dst: Ipv6Addr, dst_mac: Mac) -> NdpTx {
        let src = self.cfg.plan.router_ll;
        NdpTx {
            dst_mac,
            src,
            dst,
            icmp: Icmpv6Repr::Ndp(self.router_advert()).to_bytes(src, dst),
        }
    }

    /// Whether the gateway answers for `a`.
    fn answers_for(&self, a: &Ipv6Addr) -> bool {
        let p = &self.cfg.plan;
        *a == p.router || *a == p.router_ll || (*a == p.dns && p.dns_on_link())
    }

    /// Parses an IPv6 packet carrying ICMPv6 and handles it if it is NDP. Other ICMPv6 messages
    /// are `Malformed` here: call this only for types 133-137.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        src_mac: Mac,
        packet: &[u8],
    ) -> Result<NdpOutcome, NdpDrop> {
        let p = Ipv6Packet::parse(packet).map_err(|_| NdpDrop::Malformed)?;
        let u = p.upper_layer().map_err(|_| NdpDrop::Malformed)?;
        // RFC 6980: fragmented NDP is dropped.
        if u.proto != NH_ICMPV6 || u.fragment.is_some() {
            return Err(NdpDrop::Malformed);
        }
        let msg = match Icmpv6Repr::parse(p.src(), p.dst(), u.data) {
            Ok(Icmpv6Repr::Ndp(m)) => m,
            _ => return Err(NdpDrop::Malformed),
        };
        let input = NdpIn {
            src_mac,
            src: p.src(),
            dst: p.dst(),
            hop_limit: p.hop_limit(),
        };
        self.handle(now, &input, &msg)
    }

    /// Handles one NDP message from a guest.
    pub fn handle(
        &mut self,
        now: Instant,
        input: &NdpIn,
        msg: &NdpRepr,
    ) -> Result<NdpOutcome, NdpDrop> {
        if input.hop_limit != NDP_HOP_LIMIT {
            return Err(NdpDrop::HopLimit);
        }
        let unspecified = input.src.is_unspecified();
        let mut out = NdpOutcome::default();
        if let NdpRepr::RouterAdvert { .. } = msg {
            return Err(NdpDrop::RouterAdvertFromGuest);
        }
        if self.cfg.plan.is_own(&input.src) {
            // A guest using one of the gateway's addresses as its source: reported, never
            // answered or learnt.
            out.conflict = Some((input.src, input.src_mac));
            return Ok(out);
        }
        let plan = &self.cfg.plan;
        let guest_src = plan.guest_source_ok(&input.src);
        match msg {
            NdpRepr::RouterSolicit { source_lladdr } => {
                if unspecified && source_lladdr.is_some() {
                    return Err(NdpDrop::BadDad);
                }
                if guest_src {
                    out.learned = Some((input.src, input.src_mac));
                }
                let mut at = now + jitter(&mut self.rng, Duration::ZERO, MAX_RA_DELAY);
                if let Some(last) = self.last_multicast {
                    at = at.max(last + MIN_DELAY_BETWEEN_RAS);
                }
                // An RA already on its way (solicited or periodic) that goes out sooner covers
                // this RS too.
                let covered =
                    self.pending_solicited.is_some_and(|t| t <= at) || self.next_periodic <= at;
                if !covered {
                    self.pending_solicited = Some(at);
                }
            }
            NdpRepr::NeighborSolicit {
                target,
                source_lladdr,
            } => {
                if unspecified {
                    if source_lladdr.is_some() || input.dst != solicited_node(target) {
                        return Err(NdpDrop::BadDad);
                    }
                    if plan.guest_source_ok(target) {
                        out.dad_probe = Some((*target, input.src_mac));
                    }
                } else {
                    if input.dst.is_multicast() && input.dst != solicited_node(target) {
                        return Err(NdpDrop::BadDestination);
                    }
                    if guest_src {
                        out.learned = Some((input.src, input.src_mac));
                    }
                }
                if !self.answers_for(target) {
                    // Somebody else's address (a guest's, or a guest's DAD probe): not ours to
                    // answer, ever.
                    return Ok(out);
                }
                let mac = self.cfg.plan.router_mac;
                let (dst, dst_mac, solicited) = if unspecified {
                    out.conflict = Some((*target, input.src_mac));
                    (ALL_NODES, multicast_mac(&ALL_NODES), false)
                } else {
                    (input.src, input.src_mac, true)
                };
                let na = NdpRepr::NeighborAdvert {
                    router: true,
                    solicited,
                    override_: true,
                    target: *target,
                    target_lladdr: Some(mac),
                };
                out.replies.push(NdpTx {
                    dst_mac,
                    src: *target,
                    dst,
                    icmp: Icmpv6Repr::Ndp(na).to_bytes(*target, dst),
                });
            }
            NdpRepr::NeighborAdvert {
                solicited, target, ..
            } => {
                if *solicited && input.dst.is_multicast() {
                    return Err(NdpDrop::BadDestination);
                }
                // The frame's own source, never the option's: a guest may not point the
                // gateway's traffic at another guest's MAC.
                let mac = input.src_mac;
                if self.cfg.plan.is_own(target) {
                    out.conflict = Some((*target, mac));
                } else if self.cfg.plan.guest_source_ok(target) {
                    out.learned = Some((*target, mac));
                }
            }
            NdpRepr::RouterAdvert { .. } => return Err(NdpDrop::RouterAdvertFromGuest),
        }
        Ok(out)
    }
}

/// A uniformly random duration in `lo..=hi` (millisecond steps).
fn jitter(rng: &mut Rng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = (hi - lo).as_millis().min(u128::from(u64::MAX - 1)) as u64;
    lo + Duration::from_millis(rng.next_u64() % (span + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr6::link_local;
    use crate::wire::ethernet::Frame;
    use crate::wire::icmpv6::Icmpv6Packet;

    const GW: Mac = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
    const GUEST: Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn a(s: &str) -> Ipv6Addr {
        s.parse().expect("addr")
    }

    fn responder(now: Instant) -> NdpResponder {
        let mut c = NdpConfig::new(Plan6::slirp(GW), 1500);
        c.dns_search = vec!["example.org".into()];
        NdpResponder::new(c, 7, now)
    }

    fn from_guest(src: Ipv6Addr, dst: Ipv6Addr) -> NdpIn {
        NdpIn {
            src_mac: GUEST,
            src,
            dst,
            hop_limit: 255,
        }
    }

    /// Parses a sent frame back: Ethernet, IPv6 (hop limit 255), ICMPv6 with a valid checksum.
    fn parse_tx(tx: &NdpTx) -> NdpRepr {
        let f = tx.to_frame(GW);
        let eth = Frame::parse(&f).expect("eth");
        assert_eq!(
            (eth.dst(), eth.src(), eth.ethertype()),
            (tx.dst_mac, GW, ETHERTYPE_IPV6)
        );
        let ip = Ipv6Packet::parse(eth.payload()).expect("ipv6");
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!((ip.src(), ip.dst()), (tx.src, tx.dst));
        let u = ip.upper_layer().expect("walk");
        assert!(Icmpv6Packet::parse(u.data)
            .expect("icmp")
            .checksum_ok(ip.src(), ip.dst()));
        match Icmpv6Repr::parse(ip.src(), ip.dst(), u.data).expect("icmpv6") {
            Icmpv6Repr::Ndp(n) => n,
            other => panic!("not NDP: {other:?}"),
        }
    }

    fn ns(target: Ipv6Addr, slla: Option<Mac>) -> NdpRepr {
        NdpRepr::NeighborSolicit {
            target,
            source_lladdr: slla,
        }
    }

    #[test]
    fn ns_for_own_addresses_gets_solicited_na() {
        let t0 = Instant::now();
        let mut r = responder(t0);
        let guest = a("fec0::5054:ff:fe12:3456");
        let ll = link_local(&GW);
        for target in [a("fec0::2"), a("fec0::3"), ll] {
            let src = if target == ll {
                link_local(&GUEST)
            } else {
                guest
            };
            let out = r
                .handle(
                    t0,
                    &from_guest(src, solicited_node(&target)),
                    &ns(target, Some(GUEST)),
                )
                .expect("valid NS");
            assert_eq!(out.learned, Some((src, GUEST)));
            assert_eq!(out.replies.len(), 1, "{target}");
            let tx = &out.replies[0];
            assert_eq!((tx.dst, tx.dst_mac, tx.src), (src, GUEST, target));
            assert_eq!(
                parse_tx(tx),
                NdpRepr::NeighborAdvert {
                    router: true,
                    solicited: true,
                    override_: true,
                    target,
                    target_lladdr: Some(GW),
                }
            );
        }
        // Unicast NUD probe without a source link-layer option: answered to the Ethernet source.
        let out = r
            .handle(
                t0,
                &from_guest(guest, a("fec0::2")),
                &ns(a("fec0::2"), None),
            )
            .expect("NUD");
        assert_eq!(out.replies[0].dst_mac, GUEST);
    }

    #[test]
    fn link_layer_options_never_redirect_replies_or_learning() {
        // A guest naming another MAC in its NDP options: replies and learning follow the frame's
        // own source (found by the frame_path fuzz target: the NA went to a MAC never heard from).
        const OTHER: Mac = [0x52, 0x54, 0, 0, 0, 0x99];
        let t0 = Instant::now();
        let mut r = responder(t0);
        let guest = a("fec0::5054:ff:fe12:3456");
        let target = a("fec0::2");
        let out = r
            .handle(
                t0,
                &from_guest(guest, solicited_node(&target)),
                &ns(target, Some(OTHER)),
            )
            .expect("valid NS");
        assert_eq!(out.learned, Some((guest, GUEST)));
        assert_eq!(out.replies[0].dst_mac, GUEST);
        let na = NdpRepr::NeighborAdvert {
            router: false,
            solicited: false,
            override_: true,
            target: guest,
            target_lladdr: Some(OTHER),
        };
        let out = r
            .handle(t0, &from_guest(guest, ALL_NODES), &na)
            .expect("valid NA");
        assert_eq!(out.learned, Some((guest, GUEST)));
    }

    #[test]
    fn ns_for_other_addresses_is_not_answered() {
        let t0 = Instant::now();
        let mut r = responder(t0);
        let other = a("fec0::5054:ff:fe99:9999");
        let out = r
            .handle(
                t0,
                &from_guest(a("fec0::15"), solicited_node(&other)),
                &ns(other, Some(GUEST)),
            )
            .expect("valid");
        assert!(out.replies.is_empty());
        // The DNS address off the link is not answered either.
        let mut c = NdpConfig::new(
            Plan6::new(
                crate::addr6::Ipv6Net::parse("fec0::/64").expect("net"),
                None,
                Some(a("fd99::3")),
                GW,
            )
            .expect("plan"),
            1500,
        );
        c.dns_search.clear();
        let mut r = NdpResponder::new(c, 1, t0);
        let out = r
            .handle(
                t0,
                &from_guest(a("fec0::15"), solicited_node(&a("fd99::3"))),
                &ns(a("fd99::3"), None),
            )
            .expect("valid");
        assert!(out.replies.is_empty());
    }

    #[test]
    fn dad_probes() {
        let t0 = Instant::now();
        let mut r = responder(t0);
        // A guest probing for the router's address: defended with an NA to all-nodes.
        let target = a("fec0::2");
        let out = r
            .handle(
                t0,
                &from_guest(Ipv6Addr::UNSPECIFIED, solicited_node(&target)),
                &ns(target, None),
            )
            .expect("DAD");
        assert_eq!(out.conflict, Some((target, GUEST)));
        assert_eq!(out.learned, None);
        let tx = &out.replies[0];
        assert_eq!((tx.dst, tx.dst_mac), (ALL_NODES, [0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(
            parse_tx(tx),
            NdpRepr::NeighborAdvert {
                router: true,
                solicited: false,
                override_: true,
                target,
                target_lladdr: Some(GW),
            }
        );
        // A guest probing for its own new address: silence (never claim a guest's address); the
        // probe is reported so the gateway may remember the tentative address.
        for target in [
            a("fec0::5054:ff:fe12:3456"),
            link_local(&GUEST),
            a("fec0::15"),
        ] {
            let out = r
                .handle(
                    t0,
                    &from_guest(Ipv6Addr::UNSPECIFIED, solicited_node(&target)),
                    &ns(target, None),
                )
                .expect("DAD");
            assert_eq!(
                out,
                NdpOutcome {
                    dad_probe: Some((target, GUEST)),
                    ..NdpOutcome::default()
                },
                "{target}"
            );
        }
        // Malformed probes: with a source link-layer option, or not to the solicited-node group.
        assert_eq!(
            r.handle(
                t0,
                &from_guest(Ipv6Addr::UNSPECIFIED, solicited_node(&target)),
                &ns(target, Some(GUEST))
            ),
            Err(NdpDrop::BadDad)
        );
        assert_eq!(
            r.handle(
                t0,
                &from_guest(Ipv6Addr::UNSPECIFIED, ALL_NODES),
                &ns(target, None)
            ),
            Err(NdpDrop::BadDad)
        );
    }

    #[test]
    fn validation() {
        let t0 = Instant::now();
        let mut r = responder(t0);
        let mut i = from_guest(a("fec0::15"), solicited_node(&a("fec0::2")));
        i.hop_limit = 254;
        assert_eq!(
            r.handle(t0, &i, &ns(a("fec0::2"), None)),
            Err(NdpDrop::HopLimit)
        );
        let i = from_guest(a("fec0::15"), ALL_NODES);
        assert_eq!(
            r.handle(t0, &i, &ns(a("fec0::2"), None)),
            Err(NdpDrop::BadDestination)
        );
        let ra = r.router_advert();
        assert_eq!(
            r.handle(t0, &from_guest(a("fe80::1"), ALL_NODES), &ra),
            Err(NdpDrop::RouterAdvertFromGuest)
        );
        let na = |solicited, target| NdpRepr::NeighborAdvert {
            router: false,
            solicited,
            override_: true,
            target,
            target_lladdr: Some(GUEST),
        };
        assert_eq!(
            r.handle(
                t0,
                &from_guest(a("fec0::15"), ALL_NODES),
                &na(true, a("fec0::15"))
            ),
            Err(NdpDrop::BadDestination)
        );
        // A guest claiming the DNS address: a conflict, no reply, nothing learnt.
        let out = r
            .handle(
                t0,
                &from_guest(a("fec0::15"), ALL_NODES),
                &na(false, a("fec0::3")),
            )
            .expect("valid NA");
        assert_eq!(
            (out.conflict, out.learned),
            (Some((a("fec0::3"), GUEST)), None)
        );
        // An ordinary NA teaches the guest's address.
        let out = r
            .handle(
                t0,
                &from_guest(a("fec0::15"), a("fec0::2")),
                &na(true, a("fec0::15")),
            )
            .expect("valid NA");
        assert_eq!(out.learned, Some((a("fec0::15"), GUEST)));
        assert!(out.replies.is_empty());
    }

    #[test]
    fn spoofed_own_sources_are_conflicts_not_neighbours() {
        let t0 = Instant::now();
        let mut r = responder(t0);
        for src in [a("fec0::2"), a("fec0::3"), link_local(&GW)] {
            for msg in [
                ns(a("fec0::2"), Some(GUEST)),
                NdpRepr::RouterSolicit {
                    source_lladdr: Some(GUEST),
                },
            ] {
                let out = r
                    .handle(t0, &from_guest(src, solicited_node(&a("fec0::2"))), &msg)
                    .expect("reported, not refused");
                assert_eq!(out.conflict, Some((src, GUEST)));
                assert!(out.replies.is_empty() && out.learned.is_none());
            }
        }
        // Sources and NA targets outside the prefix (and not link-local) are not learnt.
        let out = r
            .handle(
                t0,
                &from_guest(a("2001:db8::1"), solicited_node(&a("fec0::2"))),
                &ns(a("fec0::2"), Some(GUEST)),
            )
            .expect("answered");
        assert_eq!((out.replies.len(), out.learned), (1, None));
        let na = NdpRepr::NeighborAdvert {
            router: false,
            solicited: false,
            override_: true,
            target: a("2001:db8::1"),
            target_lladdr: Some(GUEST),
        };
        let out = r
            .handle(t0, &from_guest(a("fec0::15"), ALL_NODES), &na)
            .expect("valid");
        assert_eq!(out, NdpOutcome::default());
    }

    #[test]
    fn handle_packet_parses_and_refuses() {
        let t0 = Instant::now();
        let mut r = responder(t0);
        let src = a("fec0::15");
        let dst = solicited_node(&a("fec0::2"));
        let icmp = Icmpv6Repr::Ndp(ns(a("fec0::2"), Some(GUEST))).to_bytes(src, dst);
        let pkt = Ipv6Repr::new(src, dst, NH_ICMPV6, 0, 255).packet(&icmp);
        assert_eq!(
            r.handle_packet(t0, GUEST, &pkt).expect("ok").replies.len(),
            1
        );
        let mut bad = pkt.clone();
        bad[50] ^= 1;
        assert_eq!(r.handle_packet(t0, GUEST, &bad), Err(NdpDrop::Malformed));
        let mut hop = pkt.clone();
        hop[7] = 64;
        assert_eq!(r.handle_packet(t0, GUEST, &hop), Err(NdpDrop::HopLimit));
        // Fragmented NDP (an atomic fragment header in front) is refused (RFC 6980).
        let mut frag = vec![NH_ICMPV6, 0, 0, 0, 0, 0, 0, 1];
        frag.extend_from_slice(&icmp);
        let pkt = Ipv6Repr::new(src, dst, crate::wire::ipv6::NH_FRAGMENT, 0, 255).packet(&frag);
        assert_eq!(r.handle_packet(t0, GUEST, &pkt), Err(NdpDrop::Malformed));
        assert_eq!(
            r.handle_packet(t0, GUEST, &[0x60; 20]),
            Err(NdpDrop::Malformed)
        );
    }

    #[test]
    fn ra_contents() {
        let t0 = Instant::now();
        let mut r = responder(t0);
        let txs = r.poll(t0 + MAX_RA_DELAY);
        assert_eq!(txs.len(), 1);
        let tx = &txs[0];
        assert_eq!((tx.src, tx.dst), (link_local(&GW), ALL_NODES));
        match parse_tx(tx) {
            NdpRepr::RouterAdvert {
                hop_limit,
                managed,
                other,
                router_lifetime,
                source_lladdr,
                mtu,
                prefixes,
                rdnss,
                dnssl,
                ..
            } => {
                assert_eq!((hop_limit, managed, other), (64, false, true));
                assert_eq!(router_lifetime, 1800);
                assert_eq!((source_lladdr, mtu), (Some(GW), Some(1500)));
                assert_eq!(
                    prefixes,
                    vec![PrefixInfo {
                        prefix_len: 64,
                        on_link: true,
                        autonomous: true,
                        valid_lifetime: 86400,
                        preferred_lifetime: 14400,
                        prefix: a("fec0::"),
                    }]
                );
                assert_eq!(rdnss[0].servers, vec![a("fec0::3")]);
                assert!(rdnss[0].lifetime >= 1800);
                assert_eq!(dnssl[0].domains, vec!["example.org".to_string()]);
            }
            other => panic!("not an RA: {other:?}"),
        }
        // Not a /64: the prefix is on-link but not autonomous.
        let plan = Plan6::new(
            crate::addr6::Ipv6Net::parse("fd00:1::/48").expect("net"),
            None,
            None,
            GW,
        )
        .expect("plan");
        let r = NdpResponder::new(NdpConfig::new(plan, 1500), 1, t0);
        match r.router_advert() {
            NdpRepr::RouterAdvert {
                prefixes, dnssl, ..
            } => {
                assert!(prefixes[0].on_link && !prefixes[0].autonomous);
                assert!(dnssl.is_empty());
            }
            other => panic!("not an RA: {other:?}"),
        }
    }

    #[test]
    fn rs_is_answered_after_a_short_delay_and_rate_limited() {
        let t0 = Instant::now();
        let mut r = responder(t0);
        // The initial unsolicited RA.
        let first = r.next_deadline();
        assert!(first <= t0 + MAX_RA_DELAY);
        assert!(r.poll(first - Duration::from_millis(1)).is_empty() || first == t0);
        assert_eq!(r.poll(first).len(), 1);
        // An RS right after: the answer waits for MIN_DELAY_BETWEEN_RAS since the last RA.
        let rs = NdpRepr::RouterSolicit {
            source_lladdr: Some(GUEST),
        };
        let t1 = first + Duration::from_millis(100);
        let out = r
            .handle(t1, &from_guest(link_local(&GUEST), a("ff02::2")), &rs)
            .expect("RS");
        assert!(out.replies.is_empty(), "RAs are sent from poll");
        assert_eq!(out.learned, Some((link_local(&GUEST), GUEST)));
        let due = r.next_deadline();
        assert!(due >= first + MIN_DELAY_BETWEEN_RAS, "rate-limited");
        assert!(due <= first + MIN_DELAY_BETWEEN_RAS + MAX_RA_DELAY);
        assert!(r.poll(due - Duration::from_millis(1)).is_empty());
        // A flood of RSs before then changes nothing.
        for k in 0..50 {
            r.handle(
                t1 + Duration::from_millis(k),
                &from_guest(Ipv6Addr::UNSPECIFIED, a("ff02::2")),
                &NdpRepr::RouterSolicit {
                    source_lladdr: None,
                },
            )
            .expect("RS from ::");
        }
        assert_eq!(r.next_deadline(), due);
        assert_eq!(r.poll(due).len(), 1);
        assert!(r.poll(due).is_empty(), "one RA per due instant");
        // Later, a lone RS is answered within MAX_RA_DELAY.
        let t2 = due + Duration::from_secs(10);
        r.handle(t2, &from_guest(link_local(&GUEST), a("ff02::2")), &rs)
            .expect("RS");
        assert!(r.next_deadline() <= t2 + MAX_RA_DELAY);
        assert_eq!(r.poll(t2 + MAX_RA_DELAY).len(), 1);
        // An RS from :: with a source link-layer option is malformed.
        assert_eq!(
            r.handle(t2, &from_guest(Ipv6Addr::UNSPECIFIED, a("ff02::2")), &rs),
            Err(NdpDrop::BadDad)
        );
    }

    #[test]
    fn periodic_ras_with_jitter_over_virtual_time() {
        let t0 = Instant::now();
        let mut r = responder(t0);
        let mut sent = Vec::new();
        let mut now = t0;
        let end = t0 + Duration::from_secs(4 * 3600);
        while now < end {
            now = r.next_deadline();
            for tx in r.poll(now) {
                assert_eq!(tx.dst, ALL_NODES);
                sent.push(now);
            }
        }
        let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
        // The first three come quickly, the rest within [min, max] and not all equal.
        for g in &gaps[..MAX_INITIAL_RTR_ADVERTISEMENTS as usize - 1] {
            assert!(*g <= MAX_INITIAL_RTR_ADVERT_INTERVAL && *g >= MIN_DELAY_BETWEEN_RAS);
        }
        let steady = &gaps[MAX_INITIAL_RTR_ADVERTISEMENTS as usize..];
        assert!(steady.len() > 20);
        for g in steady {
            assert!(
                *g >= Duration::from_secs(200) && *g <= Duration::from_secs(600),
                "{g:?}"
            );
        }
        assert!(steady.iter().any(|g| *g != steady[0]), "jittered");
        assert_eq!(r.ras_sent, sent.len() as u64);
        // Deterministic for a seed, different for another.
        let run = |seed| {
            let mut c = NdpConfig::new(Plan6::slirp(GW), 1500);
            c.min_interval = Duration::from_secs(4);
            c.max_interval = Duration::from_secs(10);
            let mut r = NdpResponder::new(c, seed, t0);
            (0..10)
                .map(|_| {
                    let t = r.next_deadline();
                    assert_eq!(r.poll(t).len(), 1);
                    t - t0
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
