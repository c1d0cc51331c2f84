//! The gateway's IPv6 side on the LAN: neighbour discovery and router advertisements
//! ([`NdpResponder`]), DHCPv6 ([`Dhcpv6Server`]) and ICMPv6 echo to the router and DNS addresses.
//! Guest TCP, UDP and ICMPv6 echo to other addresses go on to the NATs (see [`Lan6::input`]);
//! everything else IPv6 is counted (`v6_dropped`) and dropped.

use crate::addr6::{link_local, Plan6};
use crate::ctx::Ctx;
use crate::dhcpv6::{Dhcpv6Config, Dhcpv6Server, CLIENT_PORT, SERVER_PORT};
use crate::host::HostIo;
use crate::ndp::{NdpConfig, NdpDrop, NdpResponder};
use crate::wire::ethernet;
use crate::wire::icmpv6::{self, Icmpv6Packet, Icmpv6Repr};
use crate::wire::ipv6::{Ipv6Packet, Ipv6Repr, ALL_DHCP_SERVERS, NH_ICMPV6, NH_TCP, NH_UDP};
use crate::wire::udp::UdpDatagram;
use crate::{Instant, Mac};
use std::net::{IpAddr, Ipv6Addr};

/// Hop limit of the packets the gateway sends itself.
const HOP_LIMIT: u8 = 64;

/// The gateway's IPv6 side: NDP/router advertisements and the DHCPv6 server for one LAN.
pub struct Lan6 {
    plan: Plan6,
    seed: u64,
    /// Made at the first frame or timer (the responder needs the time to schedule its first RA).
    ndp: Option<NdpResponder>,
    dhcp: Dhcpv6Server,
    /// A guest address new in the neighbour table since the last [`Lan6::take_new_neighbour`]
    /// (forwarded connections waiting for it may go ahead).
    new_neighbour: Option<(Ipv6Addr, Mac)>,
}

impl Lan6 {
    /// The IPv6 side for `plan`, with the gateway's MAC `mac` (the plan's MAC and link-local
    /// address follow it) and NDP jitter from `seed`.
    pub fn new(mut plan: Plan6, mac: Mac, dns_search: &[String], seed: u64) -> Self {
        plan.router_mac = mac;
        plan.router_ll = link_local(&mac);
        let mut dcfg = Dhcpv6Config::new(plan.clone());
        dcfg.domains = dns_search.to_vec();
        Lan6 {
            plan,
            seed,
            ndp: None,
            dhcp: Dhcpv6Server::new(dcfg),
            new_neighbour: None,
        }
    }

    /// The guest address that became known (new in the neighbour table) during the last
    /// [`Lan6::input`], if any.
    pub fn take_new_neighbour(&mut self) -> Option<(Ipv6Addr, Mac)> {
        self.new_neighbour.take()
    }

    /// Remembers `ip` at `mac` in the neighbour table; notes it when new.
    fn learn(&mut self, ctx: &mut Ctx, now: Instant, ip: Ipv6Addr, mac: Mac) -> Option<bool> {
        let r = ctx.learn_neighbour(now, IpAddr::V6(ip), mac);
        if r == Some(true) {
            self.new_neighbour = Some((ip, mac));
        }
        r
    }

    /// The IPv6 address plan in use (router MAC and link-local address follow the gateway's MAC).
    pub fn plan(&self) -> &Plan6 {
        &self.plan
    }

    /// Router advertisements sent so far.
    pub fn ras_sent(&self) -> u64 {
        self.ndp.as_ref().map_or(0, |n| n.ras_sent)
    }

    /// DHCPv6 leases.
    pub fn dhcp(&self) -> &Dhcpv6Server {
        &self.dhcp
    }

    fn ndp(&mut self, ctx: &Ctx, now: Instant) -> &mut NdpResponder {
        let (plan, seed) = (&self.plan, self.seed);
        self.ndp.get_or_insert_with(|| {
            let mut c = NdpConfig::new(plan.clone(), u32::from(ctx.cfg.mtu));
            c.dns_search = ctx.cfg.dns_search.clone();
            NdpResponder::new(c, seed, now)
        })
    }

    /// When [`Lan6::poll`] next has work (`None` before the first frame).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ndp.as_ref().map(|n| n.next_deadline())
    }

    /// Sends the router advertisements due at `now`; ages DHCPv6 state.
    pub fn poll(&mut self, ctx: &mut Ctx, now: Instant, io: &mut dyn HostIo) {
        let gw = ctx.cfg.gateway_mac;
        for tx in self.ndp(ctx, now).poll(now) {
            io.transmit(&tx.to_frame(gw));
            ctx.stats.frames_out += 1;
            ctx.stats.ndp_sent += 1;
        }
        self.dhcp.advance(now);
    }

    /// One IPv6 packet (the Ethernet payload) from `src_mac`. True when it is TCP, UDP or an ICMPv6
    /// echo request for the NAT (or the DNS proxy), from a valid guest source now known as a
    /// neighbour: the gateway hands it on.
    pub fn input(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        src_mac: Mac,
        packet: &[u8],
        io: &mut dyn HostIo,
    ) -> bool {
        ctx.stats.v6_frames_in += 1;
        self.ndp(ctx, now);
        let p = match Ipv6Packet::parse(packet) {
            Ok(p) => p,
            Err(e) => {
                malformed(ctx, now, &e.to_string());
                return false;
            }
        };
        let u = match p.upper_layer() {
            Ok(u) => u,
            Err(e) => {
                malformed(ctx, now, &e.to_string());
                return false;
            }
        };
        if u.is_fragmented() {
            // Like IPv4: never reassembled (no memory to bound, no overlaps to judge), counted.
            ctx.stats.drop_fragment += 1;
            ctx.note(now, || {
                "dropped an IPv6 fragment (fragments are not reassembled)".into()
            });
            return false;
        }
        if packet.len() > usize::from(ctx.cfg.mtu) {
            // Never silent loss: the guest learns the link MTU.
            self.too_big(ctx, src_mac, &p, io);
            return false;
        }
        let (src, dst) = (p.src(), p.dst());
        match u.proto {
            NH_ICMPV6 => {
                let Ok(icmp) = Icmpv6Packet::parse(u.data) else {
                    malformed(ctx, now, "truncated ICMPv6");
                    return false;
                };
                match icmp.kind() {
                    icmpv6::ROUTER_SOLICIT..=icmpv6::NEIGHBOR_ADVERT => {
                        self.ndp_input(ctx, now, src_mac, packet, io)
                    }
                    icmpv6::ECHO_REQUEST if self.is_local(&dst) => {
                        self.echo(ctx, now, src_mac, src, dst, u.data, io)
                    }
                    // Echo to the outside world: the ICMP NAT (which checks the destination).
                    icmpv6::ECHO_REQUEST if !dst.is_multicast() && !dst.is_unspecified() => {
                        return self.for_nat(ctx, now, src_mac, src);
                    }
                    _ => ctx.stats.v6_dropped += 1,
                }
            }
            NH_UDP => {
                let d = match UdpDatagram::parse(u.data, IpAddr::V6(src), IpAddr::V6(dst)) {
                    Ok(d) => d,
                    Err(e) => {
                        malformed(ctx, now, &format!("UDP: {e}"));
                        return false;
                    }
                };
                let to_server = dst == ALL_DHCP_SERVERS || self.is_local(&dst);
                if d.dst_port == SERVER_PORT && to_server {
                    self.dhcp_input(ctx, now, src_mac, src, d.src_port, d.payload, io)
                } else {
                    return self.for_nat(ctx, now, src_mac, src);
                }
            }
            NH_TCP => return self.for_nat(ctx, now, src_mac, src),
            _ => ctx.stats.v6_dropped += 1,
        }
        false
    }

    /// A guest's TCP or UDP packet from `src`: true if the source is a guest address of the LAN
    /// (then remembered as `src_mac`'s).
    fn for_nat(&mut self, ctx: &mut Ctx, now: Instant, src_mac: Mac, src: Ipv6Addr) -> bool {
        if !self.plan.guest_source_ok(&src) {
            ctx.stats.drop_spoofed += 1;
            let m = ethernet::fmt_mac(&src_mac);
            ctx.note(now, || {
                format!("dropped a packet from {m} with source address {src} (not a guest address)")
            });
            return false;
        }
        self.learn(ctx, now, src, src_mac).is_some()
    }

    /// ICMPv6 Packet Too Big for a packet above the link MTU.
    fn too_big(&mut self, ctx: &mut Ctx, src_mac: Mac, p: &Ipv6Packet<'_>, io: &mut dyn HostIo) {
        let (src, dst) = (p.src(), p.dst());
        if !self.plan.guest_source_ok(&src) {
            // Never an error towards an address that is not a guest's (a spoofed source).
            ctx.stats.drop_spoofed += 1;
            return;
        }
        if dst.is_multicast() {
            ctx.stats.v6_dropped += 1;
            return;
        }
        let from = if self.is_local(&dst) {
            dst
        } else {
            self.plan.router
        };
        // The error itself must fit the link: IPv6 + ICMPv6 headers are 48 bytes.
        let room = usize::from(ctx.cfg.mtu).saturating_sub(48);
        let quote = p.as_bytes();
        let msg = Icmpv6Repr::PacketTooBig {
            mtu: u32::from(ctx.cfg.mtu),
            invoking: &quote[..quote.len().min(room)],
        }
        .to_bytes(from, src);
        send(ctx, io, src_mac, from, src, NH_ICMPV6, &msg);
        ctx.stats.v6_too_big += 1;
    }

    /// The router's (global or link-local) or the DNS address.
    fn is_local(&self, a: &Ipv6Addr) -> bool {
        *a == self.plan.router || *a == self.plan.router_ll || *a == self.plan.dns
    }

    fn ndp_input(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        src_mac: Mac,
        packet: &[u8],
        io: &mut dyn HostIo,
    ) {
        let gw = ctx.cfg.gateway_mac;
        match self.ndp(ctx, now).handle_packet(now, src_mac, packet) {
            Ok(out) => {
                for tx in &out.replies {
                    io.transmit(&tx.to_frame(gw));
                    ctx.stats.frames_out += 1;
                    ctx.stats.ndp_sent += 1;
                }
                if let Some((ip, mac)) = out.learned {
                    self.learn(ctx, now, ip, mac);
                }
                // A guest probing for an address nobody is known to hold will most likely use
                // it: remember it, so forwards find a guest that has not sent anything yet.
                if let Some((ip, mac)) = out.dad_probe {
                    if ctx.neigh.get(&IpAddr::V6(ip)).is_none()
                        && self.dhcp.mac_for_addr(ip).is_none_or(|m| m == mac)
                    {
                        self.learn(ctx, now, ip, mac);
                    }
                }
                if let Some((ip, mac)) = out.conflict {
                    ctx.stats.ndp_conflict += 1;
                    let m = ethernet::fmt_mac(&mac);
                    ctx.note(now, || {
                        format!("guest {m} claims the gateway's IPv6 address {ip}")
                    });
                }
            }
            Err(NdpDrop::RouterAdvertFromGuest) => {
                ctx.stats.ndp_rogue_ra += 1;
                let m = ethernet::fmt_mac(&src_mac);
                ctx.note(now, || {
                    format!("dropped a router advertisement from guest {m}")
                });
            }
            Err(e) => {
                ctx.stats.ndp_bad += 1;
                ctx.note(now, || format!("dropped an NDP message: {e}"));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn echo(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        src_mac: Mac,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        icmp: &[u8],
        io: &mut dyn HostIo,
    ) {
        let (ident, seq, data) = match Icmpv6Repr::parse(src, dst, icmp) {
            Ok(Icmpv6Repr::EchoRequest { ident, seq, data }) => (ident, seq, data),
            _ => return malformed(ctx, now, "ICMPv6 echo request (checksum)"),
        };
        if src.is_unspecified() || src.is_multicast() {
            ctx.stats.v6_dropped += 1;
            return;
        }
        let reply = Icmpv6Repr::EchoReply { ident, seq, data }.to_bytes(dst, src);
        send(ctx, io, src_mac, dst, src, NH_ICMPV6, &reply);
        ctx.stats.icmp6_echo_replies += 1;
    }

    #[allow(clippy::too_many_arguments)]
    fn dhcp_input(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        src_mac: Mac,
        src: Ipv6Addr,
        sport: u16,
        payload: &[u8],
        io: &mut dyn HostIo,
    ) {
        match self.dhcp.handle(now, src_mac, src, payload) {
            Ok(Some(r)) => {
                let port = if sport == 0 { CLIENT_PORT } else { sport };
                ctx.send_udp_to(
                    r.dst_mac,
                    IpAddr::V6(self.plan.router_ll),
                    SERVER_PORT,
                    IpAddr::V6(r.dst),
                    port,
                    &r.payload,
                    io,
                );
                ctx.stats.dhcp6_replies += 1;
            }
            Ok(None) => {}
            Err(e) => {
                ctx.stats.dhcp6_bad += 1;
                ctx.note(now, || format!("ignored a DHCPv6 message: {e}"));
            }
        }
    }
}

/// Builds and sends one IPv6 packet to a guest.
fn send(
    ctx: &mut Ctx,
    io: &mut dyn HostIo,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: u8,
    payload: &[u8],
) {
    let Ok(len) = u16::try_from(payload.len()) else {
        return;
    };
    let ip = Ipv6Repr::new(src, dst, proto, len, HOP_LIMIT).packet(payload);
    let mut f = vec![0u8; ethernet::HEADER_LEN];
    ethernet::write_header(
        &mut f,
        dst_mac,
        ctx.cfg.gateway_mac,
        ethernet::ETHERTYPE_IPV6,
    );
    f.extend_from_slice(&ip);
    io.transmit(&f);
    ctx.stats.frames_out += 1;
}

fn malformed(ctx: &mut Ctx, now: Instant, what: &str) {
    ctx.stats.v6_malformed += 1;
    ctx.note(now, || format!("dropped a malformed IPv6 packet: {what}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::testkit::{ctx, Rec, GUEST_MAC};
    use crate::wire::icmpv6::NdpRepr;
    use crate::wire::ipv6::{solicited_node, ALL_ROUTERS};
    use crate::wire::udp;
    use std::time::Duration;

    fn lan(now: Instant, c: &Ctx) -> Lan6 {
        let plan = c.cfg.v6.clone().expect("IPv6 on by default");
        let mut l = Lan6::new(plan, c.cfg.gateway_mac, &[], 7);
        l.ndp(c, now);
        l
    }

    fn guest_ll() -> Ipv6Addr {
        link_local(&GUEST_MAC)
    }

    fn icmp_packet(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, m: &Icmpv6Repr<'_>) -> Vec<u8> {
        let b = m.to_bytes(src, dst);
        Ipv6Repr::new(src, dst, NH_ICMPV6, b.len() as u16, hop).packet(&b)
    }

    fn udp_packet(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, p: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; udp::HEADER_LEN + p.len()];
        b[udp::HEADER_LEN..].copy_from_slice(p);
        udp::write(&mut b, IpAddr::V6(src), IpAddr::V6(dst), sport, dport);
        Ipv6Repr::new(src, dst, NH_UDP, b.len() as u16, 1).packet(&b)
    }

    /// The IPv6 packet of each frame sent.
    fn sent(io: &mut Rec) -> Vec<Vec<u8>> {
        io.take_frames()
            .into_iter()
            .map(|f| {
                assert_eq!(&f[12..14], &ethernet::ETHERTYPE_IPV6.to_be_bytes());
                f[ethernet::HEADER_LEN..].to_vec()
            })
            .collect()
    }

    fn icmp_of(p: &[u8]) -> Icmpv6Repr<'_> {
        let ip = Ipv6Packet::parse(p).expect("ipv6");
        let u = ip.upper_layer().expect("upper layer");
        assert_eq!(u.proto, NH_ICMPV6);
        Icmpv6Repr::parse(ip.src(), ip.dst(), u.data).expect("valid ICMPv6")
    }

    #[test]
    fn neighbour_and_router_solicitations_are_answered() {
        let now = Instant::now();
        let mut c = ctx(now);
        let mut l = lan(now, &c);
        let mut io = Rec::default();
        let router = l.plan().router;
        let ns = Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
            target: router,
            source_lladdr: Some(GUEST_MAC),
        });
        let pkt = icmp_packet(guest_ll(), solicited_node(&router), 255, &ns);
        l.input(&mut c, now, GUEST_MAC, &pkt, &mut io);
        let out = sent(&mut io);
        assert_eq!(out.len(), 1);
        match icmp_of(&out[0]) {
            Icmpv6Repr::Ndp(NdpRepr::NeighborAdvert {
                target,
                target_lladdr,
                solicited: true,
                router: true,
                ..
            }) => {
                assert_eq!(target, router);
                assert_eq!(target_lladdr, Some(c.cfg.gateway_mac));
            }
            other => panic!("not a solicited NA: {other:?}"),
        }
        assert_eq!(c.neigh.get(&IpAddr::V6(guest_ll())), Some(GUEST_MAC));

        // RS -> an RA within half a second (through the timer), with the prefix and DNS.
        let rs = Icmpv6Repr::Ndp(NdpRepr::RouterSolicit {
            source_lladdr: Some(GUEST_MAC),
        });
        l.input(
            &mut c,
            now,
            GUEST_MAC,
            &icmp_packet(guest_ll(), ALL_ROUTERS, 255, &rs),
            &mut io,
        );
        let due = l.next_deadline().expect("RA scheduled");
        assert!(due <= now + Duration::from_millis(500), "{due:?}");
        l.poll(&mut c, due, &mut io);
        let out = sent(&mut io);
        assert_eq!(out.len(), 1);
        match icmp_of(&out[0]) {
            Icmpv6Repr::Ndp(NdpRepr::RouterAdvert {
                prefixes, rdnss, ..
            }) => {
                assert_eq!(prefixes[0].prefix, "fec0::".parse::<Ipv6Addr>().unwrap());
                assert!(prefixes[0].autonomous);
                assert_eq!(
                    rdnss[0].servers,
                    vec!["fec0::3".parse::<Ipv6Addr>().unwrap()]
                );
            }
            other => panic!("not an RA: {other:?}"),
        }
        assert_eq!(l.ras_sent(), 1);
        assert_eq!(c.stats.ndp_sent, 2);
    }

    #[test]
    fn echo_to_the_router_is_answered_and_echo_elsewhere_goes_to_the_nat() {
        let now = Instant::now();
        let mut c = ctx(now);
        let mut l = lan(now, &c);
        let mut io = Rec::default();
        let g: Ipv6Addr = "fec0::5054:ff:fe12:3456".parse().unwrap();
        let echo = Icmpv6Repr::EchoRequest {
            ident: 9,
            seq: 3,
            data: b"hello",
        };
        l.input(
            &mut c,
            now,
            GUEST_MAC,
            &icmp_packet(g, l.plan().router, 64, &echo),
            &mut io,
        );
        let out = sent(&mut io);
        assert_eq!(out.len(), 1);
        assert_eq!(
            icmp_of(&out[0]),
            Icmpv6Repr::EchoReply {
                ident: 9,
                seq: 3,
                data: b"hello"
            }
        );
        assert_eq!(c.stats.icmp6_echo_replies, 1);
        // Echo to the outside world goes on to the ICMP NAT (nothing answered here); echo to a
        // multicast group is counted and dropped.
        let far: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(l.input(
            &mut c,
            now,
            GUEST_MAC,
            &icmp_packet(g, far, 64, &echo),
            &mut io,
        ));
        let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
        assert!(!l.input(
            &mut c,
            now,
            GUEST_MAC,
            &icmp_packet(g, all_nodes, 64, &echo),
            &mut io,
        ));
        assert!(io.take_frames().is_empty());
        assert_eq!(c.stats.v6_dropped, 1);
        // Truncated and garbage packets: counted, never a panic.
        let good = icmp_packet(g, l.plan().router, 64, &echo);
        for n in 0..good.len() {
            l.input(&mut c, now, GUEST_MAC, &good[..n], &mut io);
        }
        assert!(io.take_frames().is_empty());
        assert!(c.stats.v6_malformed >= 40, "{}", c.stats.v6_malformed);
    }

    #[test]
    fn router_adverts_from_guests_are_counted_and_dropped() {
        let now = Instant::now();
        let mut c = ctx(now);
        let mut l = lan(now, &c);
        let mut io = Rec::default();
        let ra = l.ndp(&c, now).router_advert();
        let pkt = icmp_packet(
            guest_ll(),
            crate::wire::ipv6::ALL_NODES,
            255,
            &Icmpv6Repr::Ndp(ra),
        );
        l.input(&mut c, now, GUEST_MAC, &pkt, &mut io);
        assert!(io.take_frames().is_empty());
        assert_eq!(c.stats.ndp_rogue_ra, 1);
    }

    #[test]
    fn dhcpv6_information_request_gets_the_dns_server() {
        let now = Instant::now();
        let mut c = ctx(now);
        let mut l = lan(now, &c);
        let mut io = Rec::default();
        let m = GUEST_MAC;
        // Information-Request, xid 1 2 3, client id DUID-LL, elapsed time 0.
        let mut req = vec![11, 1, 2, 3, 0, 1, 0, 10, 0, 3, 0, 1];
        req.extend_from_slice(&m);
        req.extend_from_slice(&[0, 8, 0, 2, 0, 0]);
        let pkt = udp_packet(guest_ll(), ALL_DHCP_SERVERS, CLIENT_PORT, SERVER_PORT, &req);
        l.input(&mut c, now, GUEST_MAC, &pkt, &mut io);
        let out = sent(&mut io);
        assert_eq!(out.len(), 1, "stats {:?}", c.stats);
        let ip = Ipv6Packet::parse(&out[0]).unwrap();
        assert_eq!(ip.src(), l.plan().router_ll);
        assert_eq!(ip.dst(), guest_ll());
        let u = ip.upper_layer().unwrap();
        let d = UdpDatagram::parse(u.data, IpAddr::V6(ip.src()), IpAddr::V6(ip.dst())).unwrap();
        assert_eq!((d.src_port, d.dst_port), (SERVER_PORT, CLIENT_PORT));
        assert_eq!(&d.payload[..4], &[7, 1, 2, 3], "a Reply to our xid");
        let dns: Ipv6Addr = "fec0::3".parse().unwrap();
        assert!(
            d.payload.windows(16).any(|w| w == dns.octets()),
            "DNS option carries fec0::3"
        );
        assert_eq!(c.stats.dhcp6_replies, 1);
    }

    #[test]
    fn ipv6_off_means_no_lan6() {
        let c = Config {
            v6: None,
            ..Config::default()
        };
        let g = crate::gateway::Gateway::new(c, 7);
        assert!(g.v6().is_none());
        assert!(crate::gateway::Gateway::new(Config::default(), 7)
            .v6()
            .is_some());
    }

    // ---- the IPv6 NAT through the gateway ----

    use crate::gateway::Gateway;
    use crate::host::{Event, HostError};
    use crate::testkit::Call;

    /// Carries out what `gw` queued, as a driver does after each call into the gateway.
    fn drain(rec: &mut Rec, gw: &mut Gateway, now: Instant) {
        while let Some(a) = gw.poll_action() {
            if let Some((id, e)) = rec.record(a) {
                let ev = Event::TcpConnected { id, result: Err(e) };
                gw.handle_event(now, ev, rec);
            }
            while let Some((id, r)) = rec.opened.pop_front() {
                let ev = match r {
                    Ok(()) => Event::Opened(id),
                    Err(e) => Event::OpenFailed(id, e),
                };
                gw.handle_event(now, ev, rec);
            }
        }
    }
    use crate::wire::tcp::{self as tcpw, TcpHeader, TcpSegment};

    fn g6() -> Ipv6Addr {
        "fec0::5054:ff:fe12:3456".parse().unwrap()
    }

    fn frame(p: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ethernet::HEADER_LEN];
        ethernet::write_header(
            &mut f,
            Config::default().gateway_mac,
            GUEST_MAC,
            ethernet::ETHERTYPE_IPV6,
        );
        f.extend_from_slice(p);
        f
    }

    fn syn6(dst: Ipv6Addr, port: u16) -> Vec<u8> {
        let h = TcpHeader {
            src_port: 40000,
            dst_port: port,
            seq: 1000,
            ack: 0,
            flags: tcpw::SYN,
            window: 65535,
            syn_opts: Some((9000, Some(7))),
        };
        let mut seg = vec![0u8; h.len()];
        tcpw::write_header(&mut seg, &h, IpAddr::V6(g6()), IpAddr::V6(dst));
        frame(&Ipv6Repr::new(g6(), dst, NH_TCP, seg.len() as u16, 64).packet(&seg))
    }

    #[test]
    fn tcp_to_the_router_reaches_host_loopback_with_an_ipv6_mss() {
        let now = Instant::now();
        let mut gw = Gateway::new(Config::default(), 7);
        let mut io = Rec::default();
        let router: Ipv6Addr = "fec0::2".parse().unwrap();
        gw.handle_frame(now, &syn6(router, 8080), &mut io);
        drain(&mut io, &mut gw, now);
        let id = match io.calls.as_slice() {
            [Call::TcpConnect(id, to)] => {
                assert_eq!(*to, "[::1]:8080".parse().unwrap());
                *id
            }
            other => panic!("no connect to [::1]:8080: {other:?}"),
        };
        assert!(io.take_frames().is_empty(), "no SYN-ACK before connect()");
        gw.handle_event(now, Event::TcpConnected { id, result: Ok(()) }, &mut io);
        let out = sent(&mut io);
        assert_eq!(out.len(), 1);
        let ip = Ipv6Packet::parse(&out[0]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (router, g6()));
        let u = ip.upper_layer().unwrap();
        let seg = TcpSegment::parse(u.data, IpAddr::V6(router), IpAddr::V6(g6())).unwrap();
        assert_eq!(seg.flags, tcpw::SYN | tcpw::ACK);
        assert_eq!(seg.mss, Some(1500 - 60), "MSS = MTU - 60 on IPv6");
        assert_eq!(gw.neighbour(IpAddr::V6(g6())), Some(GUEST_MAC));
    }

    #[test]
    fn host_errors_become_rst_or_icmpv6_unreachable() {
        let now = Instant::now();
        let far: Ipv6Addr = "2001:db8::80".parse().unwrap();
        for (err, want_rst) in [
            (HostError::Refused, true),
            (HostError::NetUnreachable, false),
        ] {
            let mut gw = Gateway::new(Config::default(), 7);
            let mut io = Rec::default();
            gw.handle_frame(now, &syn6(far, 80), &mut io);
            drain(&mut io, &mut gw, now);
            let Some(Call::TcpConnect(id, _)) = io.calls.first().cloned() else {
                panic!("no connect: {:?}", io.calls);
            };
            let result = Err(err.clone());
            gw.handle_event(now, Event::TcpConnected { id, result }, &mut io);
            let out = sent(&mut io);
            assert_eq!(out.len(), 1, "{err:?}");
            let ip = Ipv6Packet::parse(&out[0]).unwrap();
            let u = ip.upper_layer().unwrap();
            if want_rst {
                let seg = TcpSegment::parse(u.data, IpAddr::V6(far), IpAddr::V6(g6())).unwrap();
                assert!(seg.flags & tcpw::RST != 0);
            } else {
                assert_eq!(u.proto, NH_ICMPV6);
                match Icmpv6Repr::parse(ip.src(), ip.dst(), u.data).expect("valid ICMPv6") {
                    Icmpv6Repr::DstUnreachable { code, invoking } => {
                        assert_eq!(code, icmpv6::CODE_NO_ROUTE);
                        let q = Ipv6Packet::parse(invoking).expect("quotes an IPv6 header");
                        assert_eq!((q.src(), q.dst(), q.next_header()), (g6(), far, NH_TCP));
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn no_host_loopback_refuses_the_router_and_lan_addresses_are_never_natted() {
        let now = Instant::now();
        let mut gw = Gateway::new(
            Config {
                host_loopback: false,
                ..Config::default()
            },
            7,
        );
        let mut io = Rec::default();
        gw.handle_frame(now, &syn6("fec0::2".parse().unwrap(), 22), &mut io);
        gw.handle_frame(now, &syn6("fec0::99".parse().unwrap(), 22), &mut io);
        drain(&mut io, &mut gw, now);
        assert!(
            !io.calls.iter().any(|c| matches!(c, Call::TcpConnect(..))),
            "{:?}",
            io.calls
        );
        assert_eq!(
            gw.stats().drop_bad_dest,
            1,
            "the LAN prefix is not the outside world"
        );
    }

    #[test]
    fn spoofed_sources_are_dropped() {
        let now = Instant::now();
        let mut gw = Gateway::new(Config::default(), 7);
        let mut io = Rec::default();
        let router: Ipv6Addr = "fec0::2".parse().unwrap();
        let h = TcpHeader {
            src_port: 1,
            dst_port: 80,
            seq: 1,
            ack: 0,
            flags: tcpw::SYN,
            window: 100,
            syn_opts: None,
        };
        let far: Ipv6Addr = "2001:db8::1".parse().unwrap();
        for src in [router, "2001:db8::5".parse().unwrap()] {
            let mut seg = vec![0u8; h.len()];
            tcpw::write_header(&mut seg, &h, IpAddr::V6(src), IpAddr::V6(far));
            let p = Ipv6Repr::new(src, far, NH_TCP, seg.len() as u16, 64).packet(&seg);
            gw.handle_frame(now, &frame(&p), &mut io);
        }
        drain(&mut io, &mut gw, now);
        assert!(io.calls.is_empty(), "{:?}", io.calls);
        assert_eq!(gw.stats().drop_spoofed, 2);
    }

    #[test]
    fn packets_above_the_mtu_get_packet_too_big() {
        let now = Instant::now();
        let mut gw = Gateway::new(
            Config {
                mtu: 1280,
                ..Config::default()
            },
            7,
        );
        let mut io = Rec::default();
        let far: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let p = udp_packet(g6(), far, 5000, 5001, &[7u8; 1300]);
        gw.handle_frame(now, &frame(&p), &mut io);
        assert!(io.calls.is_empty());
        let out = sent(&mut io);
        assert_eq!(out.len(), 1);
        match icmp_of(&out[0]) {
            Icmpv6Repr::PacketTooBig { mtu, invoking } => {
                assert_eq!(mtu, 1280);
                assert!(invoking.len() <= 1232 && invoking.starts_with(&p[..40]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(gw.stats().v6_too_big, 1);
        // Never towards a source that is not a guest's (found by the frame_path fuzz target).
        let spoofed: Ipv6Addr = "bc0::5054:ff:fe12:3456".parse().unwrap();
        let p = udp_packet(spoofed, far, 5000, 5001, &[7u8; 1300]);
        gw.handle_frame(now, &frame(&p), &mut io);
        assert!(sent(&mut io).is_empty());
        assert_eq!(gw.stats().v6_too_big, 1);
        assert_eq!(gw.stats().drop_spoofed, 1);
        // With a link MTU below IPv6's 1280 the error still fits the link.
        let mut gw = Gateway::new(
            Config {
                mtu: 576,
                ..Config::default()
            },
            7,
        );
        gw.handle_frame(
            now,
            &frame(&udp_packet(g6(), far, 1, 2, &[0; 700])),
            &mut io,
        );
        let f = io.take_frames();
        assert_eq!(f.len(), 1);
        assert!(f[0].len() <= 576 + ethernet::HEADER_LEN, "{}", f[0].len());
    }

    // ---- bad input through the whole gateway ----

    /// An ICMPv6 echo request from the guest to `dst` behind the extension headers `ext` (whose
    /// first Next Header is `first`; the last one must name ICMPv6).
    fn echo_behind(dst: Ipv6Addr, first: u8, ext: &[u8]) -> Vec<u8> {
        let m = Icmpv6Repr::EchoRequest {
            ident: 1,
            seq: 1,
            data: b"fragment",
        }
        .to_bytes(g6(), dst);
        let mut payload = ext.to_vec();
        payload.extend_from_slice(&m);
        frame(&Ipv6Repr::new(g6(), dst, first, payload.len() as u16, 64).packet(&payload))
    }

    #[test]
    fn fragments_jumbograms_and_bad_chains_are_counted_never_natted() {
        use crate::wire::ipv6::{NH_DEST_OPTS, NH_FRAGMENT, NH_HOP_BY_HOP};
        let now = Instant::now();
        let mut gw = Gateway::new(Config::default(), 7);
        let mut io = Rec::default();
        let far: Ipv6Addr = "2001:db8::1".parse().unwrap();
        // First fragment (offset 0, more), a later one (offset 8), and a last one.
        let frag = |off_flags: u16| {
            let mut h = vec![NH_ICMPV6, 0];
            h.extend_from_slice(&off_flags.to_be_bytes());
            h.extend_from_slice(&7u32.to_be_bytes());
            h
        };
        gw.handle_frame(now, &echo_behind(far, NH_FRAGMENT, &frag(1)), &mut io);
        gw.handle_frame(now, &echo_behind(far, NH_FRAGMENT, &frag(8)), &mut io);
        gw.handle_frame(now, &echo_behind(far, NH_FRAGMENT, &frag(16)), &mut io);
        let s = gw.stats().clone();
        assert_eq!((s.drop_fragment, s.v6_malformed), (3, 0), "{s:?}");
        // A jumbogram (payload length 0, Jumbo Payload option), a truncated extension header,
        // a chain longer than the bound, an option running past its header, a zero-length
        // option header (Pad1 only, which must still end).
        let mut jumbo = echo_behind(far, NH_HOP_BY_HOP, &[NH_ICMPV6, 0, 0xc2, 4, 0, 1, 0, 0]);
        jumbo[ethernet::HEADER_LEN + 4..ethernet::HEADER_LEN + 6].copy_from_slice(&[0, 0]);
        gw.handle_frame(now, &jumbo, &mut io);
        let mut truncated = echo_behind(far, NH_DEST_OPTS, &[]);
        truncated.truncate(ethernet::HEADER_LEN + 44);
        truncated[ethernet::HEADER_LEN + 4..ethernet::HEADER_LEN + 6].copy_from_slice(&[0, 4]);
        gw.handle_frame(now, &truncated, &mut io);
        let mut chain = Vec::new();
        for i in 0..9 {
            let next = if i == 8 { NH_ICMPV6 } else { NH_DEST_OPTS };
            chain.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        gw.handle_frame(now, &echo_behind(far, NH_DEST_OPTS, &chain), &mut io);
        gw.handle_frame(
            now,
            &echo_behind(far, NH_DEST_OPTS, &[NH_ICMPV6, 0, 1, 200, 0, 0, 0, 0]),
            &mut io,
        );
        let s2 = gw.stats().clone();
        assert_eq!(s2.v6_malformed - s.v6_malformed, 4, "{s2:?}");
        assert!(
            !io.calls.iter().any(|c| matches!(c, Call::IcmpOpen(..))),
            "{:?}",
            io.calls
        );
        assert!(io.take_frames().is_empty(), "no answer to any of them");
        // Six Pad1 options and a PadN of length zero: a valid header that ends; an atomic fragment
        // (offset 0, no more) holds the whole packet (RFC 6946): both reach the ICMP NAT.
        gw.handle_frame(
            now,
            &echo_behind(far, NH_DEST_OPTS, &[NH_ICMPV6, 0, 0, 0, 0, 0, 1, 0]),
            &mut io,
        );
        drain(&mut io, &mut gw, now);
        gw.handle_frame(now, &echo_behind(far, NH_FRAGMENT, &frag(0)), &mut io);
        drain(&mut io, &mut gw, now);
        let sends = io
            .calls
            .iter()
            .filter(|c| matches!(c, Call::IcmpSend(..)))
            .count();
        assert_eq!(sends, 2, "{:?}", io.calls);
        assert_eq!(gw.stats().v6_malformed, s2.v6_malformed);
    }
}
