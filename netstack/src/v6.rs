//! The gateway's IPv6 side on the LAN: neighbour discovery and router advertisements
//! ([`NdpResponder`]), DHCPv6 ([`Dhcpv6Server`]) and ICMPv6 echo to the router and DNS addresses.
//! Everything else IPv6 is counted (`v6_dropped`) and dropped until the IPv6 NAT lands.

use crate::addr6::{link_local, Plan6};
use crate::ctx::Ctx;
use crate::dhcpv6::{Dhcpv6Config, Dhcpv6Server, CLIENT_PORT, SERVER_PORT};
use crate::host::HostIo;
use crate::ndp::{NdpConfig, NdpDrop, NdpResponder};
use crate::wire::ethernet;
use crate::wire::icmpv6::{self, Icmpv6Packet, Icmpv6Repr};
use crate::wire::ipv6::{Ipv6Packet, Ipv6Repr, ALL_DHCP_SERVERS, NH_ICMPV6, NH_UDP};
use crate::wire::udp::UdpDatagram;
use crate::{Instant, Mac};
use std::net::{IpAddr, Ipv6Addr};

/// Hop limit of the packets the gateway sends itself.
const HOP_LIMIT: u8 = 64;

pub struct Lan6 {
    plan: Plan6,
    seed: u64,
    /// Made at the first frame or timer (the responder needs the time to schedule its first RA).
    ndp: Option<NdpResponder>,
    dhcp: Dhcpv6Server,
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
        }
    }

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

    /// One IPv6 packet (the Ethernet payload) from `src_mac`.
    pub fn input(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        src_mac: Mac,
        packet: &[u8],
        io: &mut dyn HostIo,
    ) {
        ctx.stats.v6_frames_in += 1;
        self.ndp(ctx, now);
        let p = match Ipv6Packet::parse(packet) {
            Ok(p) => p,
            Err(e) => return malformed(ctx, now, &e.to_string()),
        };
        let u = match p.upper_layer() {
            Ok(u) => u,
            Err(e) => return malformed(ctx, now, &e.to_string()),
        };
        if u.is_fragmented() {
            ctx.stats.drop_fragment += 1;
            return;
        }
        let (src, dst) = (p.src(), p.dst());
        match u.proto {
            NH_ICMPV6 => {
                let Ok(icmp) = Icmpv6Packet::parse(u.data) else {
                    return malformed(ctx, now, "truncated ICMPv6");
                };
                match icmp.kind() {
                    icmpv6::ROUTER_SOLICIT..=icmpv6::NEIGHBOR_ADVERT => {
                        self.ndp_input(ctx, now, src_mac, packet, io)
                    }
                    icmpv6::ECHO_REQUEST if self.is_local(&dst) => {
                        self.echo(ctx, now, src_mac, src, dst, u.data, io)
                    }
                    _ => ctx.stats.v6_dropped += 1,
                }
            }
            NH_UDP => {
                let d = match UdpDatagram::parse(u.data, IpAddr::V6(src), IpAddr::V6(dst)) {
                    Ok(d) => d,
                    Err(e) => return malformed(ctx, now, &format!("UDP: {e}")),
                };
                let to_server = dst == ALL_DHCP_SERVERS || self.is_local(&dst);
                if d.dst_port == SERVER_PORT && to_server {
                    self.dhcp_input(ctx, now, src_mac, src, d.src_port, d.payload, io)
                } else {
                    ctx.stats.v6_dropped += 1;
                }
            }
            _ => ctx.stats.v6_dropped += 1,
        }
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
                    ctx.learn_neighbour(now, IpAddr::V6(ip), mac);
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
