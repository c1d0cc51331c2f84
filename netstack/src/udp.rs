//! UDP NAT: one connected host socket per guest flow (guest address/port, remote address/port).
//!
//! Replies come from the right source address because the flow key remembers what the guest sent to;
//! a host ECONNREFUSED becomes ICMP port-unreachable to the guest; idle flows expire.

use crate::arp;
use crate::ctx::Ctx;
use crate::error::InboundError;
use crate::flow::{FlowId, FlowKey, Proto, Slab};
use crate::fwd::{Dest, Target};
use crate::host::{Action, HostError, HostIo, HostResult};
use crate::wire::ethernet;
use crate::wire::icmp as icmpw;
use crate::wire::ip::{self, IpPacket};
use crate::wire::udp::{self as udpw, UdpDatagram};
use crate::{Instant, Mac};
use rustc_hash::FxHashMap;
use std::net::{IpAddr, SocketAddr};

struct UdpFlow {
    key: FlowKey,
    guest_mac: Mac,
    last_len: u16,
    /// While the socket is being opened ([`Action::UdpOpen`] until [`Event::Opened`]): the guest's
    /// datagrams held for it, at most [`MAX_HELD`]. `None` once open.
    ///
    /// [`Event::Opened`]: crate::host::Event::Opened
    opening: Option<Vec<Vec<u8>>>,
}

/// The most datagrams of a flow the core holds while its socket opens (the driver opens it right
/// after the call that asked, so only a burst within one batch waits). More are dropped and counted.
const MAX_HELD: usize = 16;

/// The UDP flows, indexed by guest-side key. Their owners and idle timers live in the flow table
/// ([`Ctx::flows`]).
#[derive(Default)]
pub struct UdpNat {
    flows: Slab<UdpFlow>,
    by_key: FxHashMap<FlowKey, (u32, u32)>,
}

impl UdpNat {
    /// Number of live UDP NAT flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }
    /// Whether no UDP NAT flow is live.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Forgets a flow the flow table closed (idle expiry or eviction).
    pub(crate) fn forget(&mut self, id: FlowId) {
        if let Some(f) = self.flows.remove(id.idx, id.gen) {
            self.by_key.remove(&f.key);
        }
    }

    /// A flow the flow table expired: its socket closes.
    pub(crate) fn expired(&mut self, ctx: &mut Ctx, id: FlowId) {
        self.forget(id);
        ctx.act(Action::UdpClose(id));
        ctx.stats.udp_flows_expired += 1;
    }
}

fn fid(idx: u32, gen: u32) -> FlowId {
    FlowId {
        proto: Proto::Udp,
        idx,
        gen,
    }
}

impl UdpNat {
    /// A datagram from a guest that is not for the gateway's own services.
    pub(crate) fn input(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        src_mac: Mac,
        p: &IpPacket<'_>,
        d: &UdpDatagram<'_>,
        io: &mut dyn HostIo,
    ) {
        if p.src.is_unspecified() {
            ctx.stats.drop_spoofed += 1;
            return;
        }
        let key = FlowKey {
            guest: p.src,
            guest_port: d.src_port,
            remote: p.dst,
            remote_port: d.dst_port,
        };
        let (idx, gen) = match self.by_key.get(&key) {
            Some(&v) => v,
            None => {
                let target = match ctx.dest(key.remote, key.remote_port, Proto::Udp, None) {
                    Dest::Host(Target::Addr(t)) => t,
                    Dest::Bad(why) => return ctx.bad_dest(now, &key, why),
                    Dest::Host(Target::Command(_)) | Dest::Refused => {
                        ctx.stats.drop_not_for_us += 1;
                        return;
                    }
                };
                if !ctx.admit(now, &key) {
                    return;
                }
                let owner = ctx.owner_for(key.guest);
                let (idx, gen) = self.flows.insert(UdpFlow {
                    key,
                    guest_mac: src_mac,
                    last_len: 0,
                    opening: Some(Vec::new()),
                });
                // Counted in the budget from now on: the socket takes an fd once open.
                self.by_key.insert(key, (idx, gen));
                ctx.flows.open(fid(idx, gen), owner, None, now);
                ctx.act(Action::UdpOpen {
                    id: fid(idx, gen),
                    dst: target,
                });
                (idx, gen)
            }
        };
        let Some(f) = self.flows.get_mut(idx, gen) else {
            return;
        };
        f.guest_mac = src_mac;
        ctx.flows.touch(fid(idx, gen), now);
        if let Some(held) = &mut f.opening {
            if held.len() < MAX_HELD {
                held.push(d.payload.to_vec());
            } else {
                ctx.stats.drop_tx_queue_full += 1;
            }
            return;
        }
        self.send(ctx, now, idx, gen, d.payload, io);
    }

    /// Sends one guest datagram on the flow's open socket.
    fn send(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        idx: u32,
        gen: u32,
        payload: &[u8],
        io: &mut dyn HostIo,
    ) {
        let Some(f) = self.flows.get_mut(idx, gen) else {
            return;
        };
        // A port unreachable quotes the datagram sent last.
        f.last_len = payload.len() as u16;
        let key = f.key;
        match io.udp_send(fid(idx, gen), payload) {
            Ok(()) => {}
            Err(HostError::Refused) => self.refused(ctx, idx, gen, io),
            Err(HostError::WouldBlock) => ctx.stats.drop_tx_queue_full += 1,
            Err(e) => {
                let r = key.remote;
                ctx.note(now, || {
                    format!("UDP send to {r}:{} failed: {e}", key.remote_port)
                });
            }
        }
    }

    /// A datagram from `client` arrived on UDP forward `fwd` for `guest`: finds or makes the flow (whose
    /// replies leave through the forward's socket) and delivers the datagram to the guest from the
    /// client's address (host loopback shows as the gateway).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn inbound(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        fwd: u32,
        client: SocketAddr,
        guest: SocketAddr,
        payload: &[u8],
        io: &mut dyn HostIo,
    ) -> Result<FlowId, InboundError> {
        let remote = ctx.guest_visible(client.ip(), guest.ip());
        let key = FlowKey {
            guest: guest.ip(),
            guest_port: guest.port(),
            remote,
            remote_port: client.port(),
        };
        let Some(mac) = ctx.guest_mac(guest.ip()) else {
            // Not heard from yet: ask (ARP or neighbour solicitation) and drop this datagram (the
            // client will retry).
            if ctx.is_guest_addr(guest.ip()) {
                arp::solicit(ctx, guest.ip(), io);
            }
            return Err(InboundError::Unresolved(guest.ip()));
        };
        let (idx, gen) = match self.by_key.get(&key) {
            Some(&v) => v,
            None => {
                if !ctx.admit(now, &key) {
                    return Err(InboundError::TooManyFlows(guest.ip()));
                }
                let owner = ctx.owner_for(key.guest);
                let (idx, gen) = self.flows.insert(UdpFlow {
                    key,
                    guest_mac: mac,
                    last_len: 0,
                    opening: Some(Vec::new()),
                });
                self.by_key.insert(key, (idx, gen));
                ctx.flows.open(fid(idx, gen), owner, None, now);
                ctx.act(Action::UdpOpenForward {
                    id: fid(idx, gen),
                    fwd,
                    client,
                });
                (idx, gen)
            }
        };
        ctx.flows.touch(fid(idx, gen), now);
        let max =
            usize::from(ctx.cfg.mtu).saturating_sub(ip::header_len(key.guest) + udpw::HEADER_LEN);
        if payload.len() > max {
            ctx.stats.drop_unsupported += 1;
            return Ok(fid(idx, gen));
        }
        ctx.send_udp_to(
            mac,
            remote,
            client.port(),
            key.guest,
            key.guest_port,
            payload,
            io,
        );
        Ok(fid(idx, gen))
    }

    /// The socket of `id` opened (`Ok`) or could not be made: sends the datagrams held for it, or
    /// forgets the flow (a budget reaction when out of fds, otherwise a one-line note).
    pub(crate) fn on_opened(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        id: FlowId,
        result: HostResult<()>,
        io: &mut dyn HostIo,
    ) {
        let Some(f) = self.flows.get_mut(id.idx, id.gen) else {
            // Forgotten meanwhile: a socket that did open must not leak.
            if result.is_ok() {
                ctx.act(Action::UdpClose(id));
            }
            return;
        };
        let Some(held) = f.opening.take() else {
            return;
        };
        match result {
            Ok(()) => {
                ctx.stats.udp_flows_opened += 1;
                for d in held {
                    self.send(ctx, now, id.idx, id.gen, &d, io);
                }
            }
            Err(e) => {
                let key = f.key;
                self.forget(id);
                ctx.flows.close(id);
                if !ctx.out_of_fds(now, &e) {
                    let (r, port) = (key.remote, key.remote_port);
                    ctx.note(now, || {
                        format!("cannot open a UDP socket to {r}:{port}: {e}")
                    });
                }
            }
        }
    }

    /// The host socket of `id` has datagrams (or an error) for the guest.
    pub(crate) fn on_readable(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        id: FlowId,
        io: &mut dyn HostIo,
    ) {
        let mut tx = std::mem::take(&mut ctx.tx);
        for _ in 0..64 {
            let Some(f) = self.flows.get_mut(id.idx, id.gen) else {
                break;
            };
            let off = ethernet::HEADER_LEN + ip::header_len(f.key.guest);
            let max = usize::from(ctx.cfg.mtu)
                .saturating_sub(ip::header_len(f.key.guest) + udpw::HEADER_LEN);
            let start = off + udpw::HEADER_LEN;
            match io.udp_recv(id, &mut tx[start..start + max]) {
                Ok(n) => {
                    ctx.flows.touch(id, now);
                    let (key, mac) = (f.key, f.guest_mac);
                    udpw::write(
                        &mut tx[off..start + n],
                        key.remote,
                        key.guest,
                        key.remote_port,
                        key.guest_port,
                    );
                    let len = ctx.finish_frame(
                        &mut tx,
                        mac,
                        key.remote,
                        key.guest,
                        ip::PROTO_UDP,
                        udpw::HEADER_LEN + n,
                    );
                    io.transmit(&tx[..len]);
                    ctx.stats.frames_out += 1;
                }
                Err(HostError::WouldBlock) => break,
                Err(HostError::Refused) => {
                    ctx.tx = std::mem::take(&mut tx);
                    self.refused(ctx, id.idx, id.gen, io);
                    tx = std::mem::take(&mut ctx.tx);
                }
                Err(e) => {
                    log::debug!("UDP receive: {e}");
                    break;
                }
            }
        }
        ctx.tx = tx;
    }

    /// ICMP port unreachable to the guest, quoting its last datagram's headers.
    fn refused(&mut self, ctx: &mut Ctx, idx: u32, gen: u32, io: &mut dyn HostIo) {
        let Some(f) = self.flows.get(idx, gen) else {
            return;
        };
        let (key, mac, len) = (f.key, f.guest_mac, f.last_len);
        let mut quote = [0u8; ip::IPV4_HEADER_LEN + udpw::HEADER_LEN];
        if let (IpAddr::V4(_), IpAddr::V4(_)) = (key.guest, key.remote) {
            ip::write_header(
                &mut quote,
                key.guest,
                key.remote,
                ip::PROTO_UDP,
                udpw::HEADER_LEN + usize::from(len),
            );
        }
        quote[20..22].copy_from_slice(&key.guest_port.to_be_bytes());
        quote[22..24].copy_from_slice(&key.remote_port.to_be_bytes());
        quote[24..26].copy_from_slice(&(len.saturating_add(8)).to_be_bytes());
        if key.guest.is_ipv6() {
            let t = &quote[ip::IPV4_HEADER_LEN..];
            let (code, r) = (icmpw::CODE_PORT_UNREACHABLE, key.remote);
            return ctx.send_icmp6_unreachable(mac, r, key.guest, r, ip::PROTO_UDP, code, t, io);
        }
        ctx.send_icmp_error(
            mac,
            key.remote,
            key.guest,
            icmpw::DEST_UNREACHABLE,
            icmpw::CODE_PORT_UNREACHABLE,
            &quote,
            io,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::testkit::{self, Call, Rec};
    use std::time::Duration;

    fn dst(port: u16) -> SocketAddr {
        SocketAddr::new(testkit::remote(), port)
    }

    fn send(
        nat: &mut UdpNat,
        ctx: &mut Ctx,
        now: Instant,
        sport: u16,
        to: SocketAddr,
        payload: &[u8],
        rec: &mut Rec,
    ) {
        let b = testkit::udp_packet(sport, to, payload);
        let p = testkit::parse_ip(&b);
        let d = UdpDatagram::parse(p.payload, p.src, p.dst).expect("udp");
        nat.input(ctx, now, testkit::GUEST_MAC, &p, &d, rec);
        drive(nat, ctx, now, rec);
    }

    /// Carries out the queued actions the way the driver does: in order, each open's result
    /// reported right away.
    fn drive(nat: &mut UdpNat, ctx: &mut Ctx, now: Instant, rec: &mut Rec) {
        while let Some(a) = ctx.poll_action() {
            rec.record(a);
            while let Some((id, r)) = rec.opened.pop_front() {
                nat.on_opened(ctx, now, id, r, rec);
            }
        }
    }

    #[test]
    fn a_flow_opens_once_sends_and_expires_when_idle() {
        let t0 = Instant::now();
        let mut ctx = testkit::ctx(t0);
        let idle = ctx.cfg.udp_idle;
        let mut nat = UdpNat::default();
        let mut rec = Rec::default();
        send(&mut nat, &mut ctx, t0, 5000, dst(53), b"one", &mut rec);
        let t1 = t0 + Duration::from_secs(10);
        send(&mut nat, &mut ctx, t1, 5000, dst(53), b"two", &mut rec);
        let id = fid(0, 0);
        assert_eq!(
            rec.calls,
            vec![
                Call::UdpOpen(id, dst(53)),
                Call::UdpSend(id, b"one".to_vec()),
                Call::UdpSend(id, b"two".to_vec()),
            ]
        );
        assert_eq!((nat.len(), ctx.flows.budget().total()), (1, 1));
        assert_eq!(ctx.stats.udp_flows_opened, 1);
        // Idle counts from the last datagram, not the first.
        assert!(ctx.flows.expire(t0 + idle).is_empty());
        assert!(ctx
            .flows
            .expire(t1 + idle - Duration::from_millis(1))
            .is_empty());
        let expired = ctx.flows.expire(t1 + idle);
        assert_eq!(expired, vec![id]);
        nat.expired(&mut ctx, id);
        drive(&mut nat, &mut ctx, t1, &mut rec);
        assert_eq!(rec.calls.last(), Some(&Call::UdpClose(id)));
        assert_eq!((nat.len(), ctx.flows.budget().total()), (0, 0));
        assert_eq!(ctx.stats.udp_flows_expired, 1);
        // The same 4-tuple later is a new flow.
        send(&mut nat, &mut ctx, t1 + idle, 5000, dst(53), b"3", &mut rec);
        assert_eq!(nat.len(), 1);
    }

    #[test]
    fn datagrams_wait_for_the_open_and_go_out_in_order() {
        let now = Instant::now();
        let mut ctx = testkit::ctx(now);
        let mut nat = UdpNat::default();
        let mut rec = Rec::default();
        // Three datagrams of a new flow in one call (one batch), before the driver opens it.
        for (i, p) in [&b"1"[..], b"2", b"3"].into_iter().enumerate() {
            let b = testkit::udp_packet(5000, dst(53), p);
            let ip = testkit::parse_ip(&b);
            let d = UdpDatagram::parse(ip.payload, ip.src, ip.dst).expect("udp");
            nat.input(&mut ctx, now, testkit::GUEST_MAC, &ip, &d, &mut rec);
            assert!(rec.calls.is_empty(), "nothing sent before the open ({i})");
        }
        assert_eq!(ctx.stats.udp_flows_opened, 0);
        assert_eq!(ctx.flows.budget().total(), 1, "counted while opening");
        drive(&mut nat, &mut ctx, now, &mut rec);
        let id = fid(0, 0);
        assert_eq!(
            rec.calls,
            vec![
                Call::UdpOpen(id, dst(53)),
                Call::UdpSend(id, b"1".to_vec()),
                Call::UdpSend(id, b"2".to_vec()),
                Call::UdpSend(id, b"3".to_vec()),
            ]
        );
        assert_eq!(ctx.stats.udp_flows_opened, 1);
        // Past MAX_HELD datagrams, a burst is dropped and counted.
        for i in 0..MAX_HELD + 2 {
            let b = testkit::udp_packet(6000, dst(53), &[i as u8]);
            let ip = testkit::parse_ip(&b);
            let d = UdpDatagram::parse(ip.payload, ip.src, ip.dst).expect("udp");
            nat.input(&mut ctx, now, testkit::GUEST_MAC, &ip, &d, &mut rec);
        }
        assert_eq!(ctx.stats.drop_tx_queue_full, 2);
        drive(&mut nat, &mut ctx, now, &mut rec);
        let sent = rec
            .calls
            .iter()
            .filter(|c| matches!(c, Call::UdpSend(i, _) if *i == fid(1, 0)))
            .count();
        assert_eq!(sent, MAX_HELD);
    }

    #[test]
    fn an_open_out_of_fds_is_a_budget_reaction_and_frees_the_flow() {
        let now = Instant::now();
        let mut ctx = testkit::ctx(now);
        let mut nat = UdpNat::default();
        let mut rec = Rec {
            udp_open_error: Some(HostError::NoBuffers),
            ..Rec::default()
        };
        send(&mut nat, &mut ctx, now, 5000, dst(53), b"x", &mut rec);
        assert_eq!(ctx.stats.flows_refused_fd, 1);
        assert_eq!(ctx.stats.udp_flows_opened, 0);
        assert_eq!((nat.len(), ctx.flows.budget().total()), (0, 0));
        assert!(!rec.calls.iter().any(|c| matches!(c, Call::UdpSend(..))));
        // The next datagram tries again, and this time the socket opens.
        send(&mut nat, &mut ctx, now, 5000, dst(53), b"y", &mut rec);
        assert_eq!(ctx.stats.udp_flows_opened, 1);
        assert_eq!(
            rec.calls.last(),
            Some(&Call::UdpSend(fid(0, 1), b"y".to_vec()))
        );
        // An open reported for a flow the core forgot meanwhile closes the socket again.
        nat.on_opened(&mut ctx, now, fid(5, 0), Ok(()), &mut rec);
        drive(&mut nat, &mut ctx, now, &mut rec);
        assert_eq!(rec.calls.last(), Some(&Call::UdpClose(fid(5, 0))));
    }

    #[test]
    fn a_full_budget_evicts_the_oldest_idle_flow() {
        let t0 = Instant::now();
        let cfg = Config {
            max_flows_total: 2,
            ..Config::default()
        };
        let mut ctx = testkit::ctx_with(cfg, t0);
        let mut nat = UdpNat::default();
        let mut rec = Rec::default();
        send(&mut nat, &mut ctx, t0, 5000, dst(1), b"a", &mut rec);
        let t1 = t0 + Duration::from_secs(5);
        send(&mut nat, &mut ctx, t1, 5001, dst(2), b"b", &mut rec);
        // The budget is used up; the first flow has been idle for 5.5 s and makes room.
        let t2 = t1 + Duration::from_millis(500);
        send(&mut nat, &mut ctx, t2, 5002, dst(3), b"c", &mut rec);
        let first = fid(0, 0);
        // The close frees the fd before the open that replaces it (actions run in order).
        let at = |c: &Call| rec.calls.iter().position(|x| x == c);
        let close = at(&Call::UdpClose(first)).expect("evicted flow closed");
        let open = rec
            .calls
            .iter()
            .position(|c| matches!(c, Call::UdpOpen(_, d) if *d == dst(3)))
            .expect("new flow opened");
        assert!(close < open, "{:?}", rec.calls);
        assert_eq!(ctx.stats.flows_evicted, 1);
        assert_eq!(ctx.flows.take_evicted(), vec![first]);
        nat.forget(first);
        assert_eq!((nat.len(), ctx.flows.budget().total()), (2, 2));
        // Now both flows were active within the last second: a fourth is refused.
        send(&mut nat, &mut ctx, t2, 5003, dst(4), b"d", &mut rec);
        assert_eq!(ctx.stats.flows_refused_budget, 1);
        assert_eq!(nat.len(), 2);
    }

    #[test]
    fn a_refused_datagram_becomes_port_unreachable() {
        let t0 = Instant::now();
        let mut ctx = testkit::ctx(t0);
        let mut nat = UdpNat::default();
        let mut rec = Rec::default();
        send(&mut nat, &mut ctx, t0, 5000, dst(9), b"x", &mut rec);
        nat.refused(&mut ctx, 0, 0, &mut rec);
        let f = rec.take_frames();
        assert_eq!(f.len(), 1);
        let p = testkit::to_guest(&f[0]);
        assert_eq!(
            p.src,
            testkit::remote(),
            "from the address the guest wrote to"
        );
        let m = crate::wire::icmp::IcmpMessage::parse(p.payload).expect("icmp");
        assert_eq!(
            (m.kind, m.code),
            (icmpw::DEST_UNREACHABLE, icmpw::CODE_PORT_UNREACHABLE)
        );
    }
}
