//! ARP: the gateway answers for its own addresses (gateway and DNS) and nothing else, and asks for
//! guests a forward wants to reach before they have sent anything.

use crate::ctx::Ctx;
use crate::host::HostIo;
use crate::wire::arp::{self, ArpRepr};
use crate::wire::ethernet::{self, Frame};
use crate::{Instant, Mac};
use std::net::{IpAddr, Ipv4Addr};

/// One ARP frame from the LAN. Returns the guest address and MAC it taught us, when that address
/// is new in the neighbour table (flows waiting for it may go ahead).
pub(crate) fn input(
    ctx: &mut Ctx,
    now: Instant,
    eth: &Frame<'_>,
    io: &mut dyn HostIo,
) -> Option<(IpAddr, Mac)> {
    let a = match ArpRepr::parse(eth.payload()) {
        Ok(a) => a,
        Err(e) => {
            ctx.bad(now, "arp", e);
            return None;
        }
    };
    let (sender_virtual, target_virtual) =
        (ctx.is_virtual(a.sender_ip), ctx.is_virtual(a.target_ip));
    if sender_virtual {
        // Somebody claims the gateway's or DNS address: never learn it.
        ctx.stats.drop_spoofed += 1;
        let m = ethernet::fmt_mac(&a.sender_mac);
        let ip = a.sender_ip;
        ctx.note(now, || {
            format!("dropped ARP from {m} claiming the gateway's address {ip}")
        });
        return None;
    }
    let mut learned = None;
    if ctx.cfg.net.contains(a.sender_ip)
        && !a.sender_ip.is_unspecified()
        && a.sender_mac == eth.src()
    {
        let ip = IpAddr::V4(a.sender_ip);
        match ctx.learn_neighbour(now, ip, a.sender_mac) {
            // Claims an address leased to another MAC: no answer either.
            None => return None,
            Some(true) => learned = Some((ip, a.sender_mac)),
            Some(false) => {}
        }
    }
    if a.op != arp::OP_REQUEST || !target_virtual {
        return learned;
    }
    let reply = ArpRepr {
        op: arp::OP_REPLY,
        sender_mac: ctx.cfg.gateway_mac,
        sender_ip: a.target_ip,
        target_mac: a.sender_mac,
        target_ip: a.sender_ip,
    };
    let mut buf = [0u8; ethernet::HEADER_LEN + arp::LEN];
    ethernet::write_header(
        &mut buf,
        eth.src(),
        ctx.cfg.gateway_mac,
        ethernet::ETHERTYPE_ARP,
    );
    reply.emit(&mut buf[ethernet::HEADER_LEN..]);
    io.transmit(&buf);
    ctx.stats.arp_replies += 1;
    ctx.stats.frames_out += 1;
    learned
}

/// Asks the LAN who has `ip` (a guest a forward wants to reach before it has sent anything).
pub(crate) fn request(ctx: &mut Ctx, ip: Ipv4Addr, io: &mut dyn HostIo) {
    if !ctx.cfg.ipv4 {
        // IPv6 only: the gateway sends nothing on IPv4.
        return;
    }
    let req = ArpRepr {
        op: arp::OP_REQUEST,
        sender_mac: ctx.cfg.gateway_mac,
        sender_ip: ctx.cfg.gateway,
        target_mac: [0; 6],
        target_ip: ip,
    };
    let mut buf = [0u8; ethernet::HEADER_LEN + arp::LEN];
    ethernet::write_header(
        &mut buf,
        ethernet::BROADCAST,
        ctx.cfg.gateway_mac,
        ethernet::ETHERTYPE_ARP,
    );
    req.emit(&mut buf[ethernet::HEADER_LEN..]);
    io.transmit(&buf);
    ctx.stats.frames_out += 1;
}

/// Asks the LAN who has guest address `ip`: an ARP request for IPv4, a neighbour solicitation to
/// the solicited-node group for IPv6 (from the router's address, or its link-local one for a
/// link-local target). The answer teaches the neighbour table.
pub(crate) fn solicit(ctx: &mut Ctx, ip: IpAddr, io: &mut dyn HostIo) {
    let v6 = match ip {
        IpAddr::V4(v4) => return request(ctx, v4, io),
        IpAddr::V6(v6) => v6,
    };
    let Some(plan) = &ctx.cfg.v6 else {
        return;
    };
    let ns = crate::wire::icmpv6::NdpRepr::NeighborSolicit {
        target: v6,
        source_lladdr: Some(ctx.cfg.gateway_mac),
    };
    let dst = crate::wire::ipv6::solicited_node(&v6);
    let src = if crate::wire::ipv6::is_link_local(&v6) {
        plan.router_ll
    } else {
        plan.router
    };
    let tx = crate::ndp::NdpTx {
        dst_mac: crate::wire::ipv6::multicast_mac(&dst),
        src,
        dst,
        icmp: crate::wire::icmpv6::Icmpv6Repr::Ndp(ns).to_bytes(src, dst),
    };
    io.transmit(&tx.to_frame(ctx.cfg.gateway_mac));
    ctx.stats.frames_out += 1;
    ctx.stats.ndp_sent += 1;
}
