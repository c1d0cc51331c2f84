//! ICMP and ICMPv6: echo requests from guests go out through host ICMP sockets of their family
//! (unprivileged ping sockets where `net.ipv4.ping_group_range` allows, raw sockets when
//! privileged); replies are real, never forged, and carry the guest's identifier again. When the
//! host has no route to the destination, the guest gets a destination unreachable of its family.
//! (The ICMP errors the gateway sends to guests are built by `Ctx::send_icmp_error` and
//! `Ctx::send_icmp6_unreachable`.)

use crate::ctx::Ctx;
use crate::flow::{FlowId, FlowKey, Proto, Slab};
use crate::fwd::{Dest, Target};
use crate::host::{Action, HostError, HostIo, HostResult};
use crate::wire::ethernet;
use crate::wire::icmp::{self as icmpw, IcmpMessage};
use crate::wire::ip::{self, IpPacket};
use crate::{Instant, Mac};
use rustc_hash::FxHashMap;
use std::net::IpAddr;

struct IcmpFlow {
    key: FlowKey,
    guest_mac: Mac,
    /// While the socket is being opened ([`Action::IcmpOpen`] until [`Event::Opened`]): the guest's
    /// echo requests held for it, at most [`MAX_HELD`]. `None` once open.
    ///
    /// [`Event::Opened`]: crate::host::Event::Opened
    opening: Option<Vec<Held>>,
}

/// A guest's echo request kept (with its IP header, for the unreachable that may quote it) until
/// its flow's socket opens.
struct Held {
    proto: u8,
    ttl: u8,
    header: Vec<u8>,
    payload: Vec<u8>,
}

impl Held {
    fn packet(&self, key: &FlowKey) -> IpPacket<'_> {
        IpPacket {
            src: key.guest,
            dst: key.remote,
            proto: self.proto,
            ttl: self.ttl,
            header: &self.header,
            payload: &self.payload,
        }
    }
}

/// The most echo requests of a flow the core holds while its socket opens. More are dropped and
/// counted.
const MAX_HELD: usize = 16;

/// The ICMP echo flows, indexed by guest-side key (the echo identifier is the guest "port"). Their
/// owners and idle timers live in the flow table ([`Ctx::flows`]).
#[derive(Default)]
pub struct IcmpNat {
    flows: Slab<IcmpFlow>,
    by_key: FxHashMap<FlowKey, (u32, u32)>,
    unavailable_logged: bool,
}

fn fid(idx: u32, gen: u32) -> FlowId {
    FlowId {
        proto: Proto::Icmp,
        idx,
        gen,
    }
}

impl IcmpNat {
    /// Number of open ICMP echo flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }
    /// Whether no ICMP echo flow is open.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Forgets a flow the flow table closed (idle expiry or eviction).
    pub(crate) fn forget(&mut self, id: FlowId) {
        if let Some(f) = self.flows.remove(id.idx, id.gen) {
            self.by_key.remove(&f.key);
        }
    }

    /// An ICMP or ICMPv6 message from a guest (only echo requests leave the LAN).
    pub(crate) fn input(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        p: &IpPacket<'_>,
        io: &mut dyn HostIo,
    ) {
        let m = match IcmpMessage::parse_for(p.src, p.dst, p.payload) {
            Ok(m) => m,
            Err(e) => return ctx.bad(now, "icmp", e),
        };
        if m.kind != icmpw::echo_types(p.src).0 || m.code != 0 {
            ctx.stats.drop_unsupported += 1;
            return;
        }
        let Some(mac) = ctx.guest_mac(p.src) else {
            return;
        };
        let key = FlowKey {
            guest: p.src,
            guest_port: m.ident,
            remote: p.dst,
            remote_port: 0,
        };
        let (idx, gen) = match self.by_key.get(&key) {
            Some(&v) => v,
            None => {
                let target = match ctx.dest(p.dst, 0, Proto::Icmp, None) {
                    // An ICMP socket speaks its own family only (no echo to ::ffff:a.b.c.d).
                    Dest::Host(Target::Addr(t)) if t.is_ipv4() == p.src.is_ipv4() => t.ip(),
                    Dest::Bad(why) => return ctx.bad_dest(now, &key, why),
                    Dest::Host(_) | Dest::Refused => {
                        ctx.stats.drop_not_for_us += 1;
                        return;
                    }
                };
                if !ctx.admit(now, &key) {
                    return;
                }
                let owner = ctx.owner_for(key.guest);
                let (idx, gen) = self.flows.insert(IcmpFlow {
                    key,
                    guest_mac: mac,
                    opening: Some(Vec::new()),
                });
                // Counted in the budget from now on: the socket takes an fd once open.
                self.by_key.insert(key, (idx, gen));
                ctx.flows.open(fid(idx, gen), owner, None, now);
                ctx.act(Action::IcmpOpen {
                    id: fid(idx, gen),
                    dst: target,
                });
                (idx, gen)
            }
        };
        ctx.flows.touch(fid(idx, gen), now);
        let Some(f) = self.flows.get_mut(idx, gen) else {
            return;
        };
        f.guest_mac = mac;
        if let Some(held) = &mut f.opening {
            if held.len() < MAX_HELD {
                held.push(Held {
                    proto: p.proto,
                    ttl: p.ttl,
                    header: p.header.to_vec(),
                    payload: p.payload.to_vec(),
                });
            } else {
                ctx.stats.drop_tx_queue_full += 1;
            }
            return;
        }
        send(ctx, now, fid(idx, gen), mac, p, io);
    }

    /// The socket of `id` opened (`Ok`) or could not be made: sends the echoes held for it, or
    /// forgets the flow and answers each held echo (a destination unreachable when the host has no
    /// route, a budget reaction when out of fds, otherwise `icmp_unavailable`).
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
                ctx.act(Action::IcmpClose(id));
            }
            return;
        };
        let Some(held) = f.opening.take() else {
            return;
        };
        let (key, mac) = (f.key, f.guest_mac);
        let e = match result {
            Ok(()) => {
                for h in &held {
                    send(ctx, now, id, mac, &h.packet(&key), io);
                }
                return;
            }
            Err(e) => e,
        };
        self.forget(id);
        ctx.flows.close(id);
        for h in &held {
            if ctx.out_of_fds(now, &e) || unreachable(ctx, mac, &h.packet(&key), &e, io) {
                continue;
            }
            ctx.stats.icmp_unavailable += 1;
            if !self.unavailable_logged {
                self.unavailable_logged = true;
                log::warn!("ping from guests cannot be forwarded: {e} (allow it with sysctl net.ipv4.ping_group_range)");
            }
        }
    }

    /// The ICMP socket of `id` has replies (echo replies only reach the guest, with its identifier).
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
            let max = usize::from(ctx.cfg.mtu).saturating_sub(ip::header_len(f.key.guest));
            match io.icmp_recv(id, &mut tx[off..off + max]) {
                Ok(n) if n >= icmpw::HEADER_LEN => {
                    if tx[off] != icmpw::echo_types(f.key.guest).1 || tx[off + 1] != 0 {
                        continue;
                    }
                    ctx.flows.touch(id, now);
                    let (key, mac) = (f.key, f.guest_mac);
                    let seqb = [tx[off + 6], tx[off + 7]];
                    let ident = key.guest_port.to_be_bytes();
                    icmpw::write_for(
                        &mut tx[off..off + n],
                        key.remote,
                        key.guest,
                        icmpw::echo_types(key.guest).1,
                        0,
                        [ident[0], ident[1], seqb[0], seqb[1]],
                    );
                    let proto = icmpw::proto_for(key.guest);
                    let len = ctx.finish_frame(&mut tx, mac, key.remote, key.guest, proto, n);
                    io.transmit(&tx[..len]);
                    ctx.stats.frames_out += 1;
                }
                Ok(_) => continue,
                Err(HostError::WouldBlock) => break,
                Err(e) => {
                    log::debug!("ICMP receive: {e}");
                    break;
                }
            }
        }
        ctx.tx = tx;
    }

    /// A flow the flow table expired: its socket closes.
    pub(crate) fn expired(&mut self, ctx: &mut Ctx, id: FlowId) {
        self.forget(id);
        ctx.act(Action::IcmpClose(id));
    }
}

/// Sends a guest's echo request on the flow's open socket.
fn send(ctx: &mut Ctx, now: Instant, id: FlowId, mac: Mac, p: &IpPacket<'_>, io: &mut dyn HostIo) {
    match io.icmp_send(id, p.payload) {
        Ok(()) => ctx.stats.icmp_echo_sent += 1,
        Err(HostError::WouldBlock) => ctx.stats.drop_tx_queue_full += 1,
        Err(e) if unreachable(ctx, mac, p, &e, io) => {}
        Err(e) => {
            let d = p.dst;
            ctx.note(now, || format!("ping to {d} failed: {e}"));
        }
    }
}

/// A destination unreachable of the packet's family to the guest, from the router, when the host
/// has no route to the echo's destination (`e`). False for any other error.
fn unreachable(
    ctx: &mut Ctx,
    mac: Mac,
    p: &IpPacket<'_>,
    e: &HostError,
    io: &mut dyn HostIo,
) -> bool {
    let code = match e {
        HostError::NetUnreachable => icmpw::CODE_NET_UNREACHABLE,
        HostError::HostUnreachable => icmpw::CODE_HOST_UNREACHABLE,
        _ => return false,
    };
    ctx.stats.icmp_unreachable_sent += 1;
    if p.src.is_ipv6() {
        let from = match &ctx.cfg.v6 {
            Some(plan) => IpAddr::V6(plan.router),
            None => return true,
        };
        // The quoted echo, bounded so that the error fits the IPv6 minimum MTU.
        let t = &p.payload[..p.payload.len().min(MAX_QUOTE6)];
        ctx.send_icmp6_unreachable(mac, from, p.src, p.dst, ip::PROTO_ICMPV6, code, t, io);
    } else {
        // The IP header and the first 8 bytes of the echo (RFC 792).
        let mut quote = p.header.to_vec();
        quote.extend_from_slice(&p.payload[..p.payload.len().min(8)]);
        let gw = IpAddr::V4(ctx.cfg.gateway);
        ctx.send_icmp_error(mac, gw, p.src, icmpw::DEST_UNREACHABLE, code, &quote, io);
    }
    true
}

/// The most of a guest's ICMPv6 echo an unreachable quotes (with the 40-byte quoted header, the
/// 8-byte ICMPv6 header and the 40-byte outer header: 1280 bytes).
const MAX_QUOTE6: usize = crate::wire::icmpv6::MAX_INVOKING - 40;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, Call, Rec};

    /// Carries out a gateway's queued actions the way the driver does (in order, results reported at
    /// once): failed connects as `Event::TcpConnected`, UDP/ICMP opens as `Event::Opened` /
    /// `Event::OpenFailed`.
    fn run(gw: &mut Gateway, now: Instant, rec: &mut Rec) {
        while let Some(a) = gw.poll_action() {
            if let Some((id, e)) = rec.record(a) {
                gw.handle_event(now, Event::TcpConnected { id, result: Err(e) }, rec);
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

    /// A guest packet (none when empty) into the NAT, then the queued actions carried out the way
    /// the driver does: in order, each open's result reported right away.
    fn input(nat: &mut IcmpNat, ctx: &mut Ctx, now: Instant, b: &[u8], rec: &mut Rec) {
        if !b.is_empty() {
            nat.input(ctx, now, &testkit::parse_ip(b), rec);
        }
        while let Some(a) = ctx.poll_action() {
            rec.record(a);
            while let Some((id, r)) = rec.opened.pop_front() {
                nat.on_opened(ctx, now, id, r, rec);
            }
        }
    }

    #[test]
    fn echo_round_trip_restores_the_guests_identifier() {
        let now = Instant::now();
        let mut ctx = testkit::ctx(now);
        let mut nat = IcmpNat::default();
        let mut rec = Rec::default();
        let req = testkit::icmp_message(icmpw::ECHO_REQUEST, 0x1234, 7, b"ping!");
        let b = testkit::ip_packet(testkit::guest(), testkit::remote(), ip::PROTO_ICMP, &req);
        input(&mut nat, &mut ctx, now, &b, &mut rec);
        let id = fid(0, 0);
        assert_eq!(
            rec.calls,
            vec![
                Call::IcmpOpen(id, testkit::remote()),
                Call::IcmpSend(id, req.clone())
            ]
        );
        assert_eq!(ctx.stats.icmp_echo_sent, 1);
        assert_eq!(ctx.flows.budget().total(), 1);
        // The ping socket rewrote the identifier; the reply carries the kernel's.
        rec.icmp_rx.push_back(testkit::icmp_message(
            icmpw::ECHO_REPLY,
            0x9999,
            7,
            b"ping!",
        ));
        // Anything but an echo reply is skipped.
        rec.icmp_rx
            .push_back(testkit::icmp_message(icmpw::DEST_UNREACHABLE, 0, 0, b""));
        nat.on_readable(&mut ctx, now, id, &mut rec);
        let f = rec.take_frames();
        assert_eq!(f.len(), 1);
        let p = testkit::to_guest(&f[0]);
        assert_eq!((p.src, p.proto), (testkit::remote(), ip::PROTO_ICMP));
        let m = IcmpMessage::parse(p.payload).expect("valid checksum");
        assert_eq!(
            (m.kind, m.code, m.ident, m.seq, m.payload),
            (icmpw::ECHO_REPLY, 0, 0x1234, 7, &b"ping!"[..])
        );
        // Idle expiry closes it.
        let idle = ctx.cfg.icmp_idle;
        assert_eq!(ctx.flows.expire(now + idle), vec![id]);
        nat.expired(&mut ctx, id);
        input(&mut nat, &mut ctx, now, &[], &mut rec);
        assert_eq!(rec.calls.last(), Some(&Call::IcmpClose(id)));
        assert_eq!((nat.len(), ctx.flows.budget().total()), (0, 0));
    }

    #[test]
    fn only_echo_requests_leave_the_lan() {
        let now = Instant::now();
        let mut ctx = testkit::ctx(now);
        let mut nat = IcmpNat::default();
        let mut rec = Rec::default();
        let m = testkit::icmp_message(icmpw::TIME_EXCEEDED, 0, 0, b"");
        let b = testkit::ip_packet(testkit::guest(), testkit::remote(), ip::PROTO_ICMP, &m);
        input(&mut nat, &mut ctx, now, &b, &mut rec);
        assert!(rec.calls.is_empty());
        assert_eq!(ctx.stats.drop_unsupported, 1);
    }

    // ---- ICMPv6 echo through the whole gateway ----

    use crate::config::Config;
    use crate::gateway::Gateway;
    use crate::host::Event;
    use crate::wire::icmpv6::{self as i6, Icmpv6Repr};
    use crate::wire::ipv6::{Ipv6Packet, Ipv6Repr, NH_ICMPV6};
    use std::net::Ipv6Addr;

    fn g6() -> Ipv6Addr {
        "fec0::5054:ff:fe12:3456".parse().unwrap()
    }

    fn far6() -> Ipv6Addr {
        "2001:db8::1".parse().unwrap()
    }

    fn echo6_frame(src: Ipv6Addr, dst: Ipv6Addr, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let m = Icmpv6Repr::EchoRequest { ident, seq, data }.to_bytes(src, dst);
        let p = Ipv6Repr::new(src, dst, NH_ICMPV6, m.len() as u16, 64).packet(&m);
        let mut f = vec![0u8; ethernet::HEADER_LEN];
        let gw = Config::default().gateway_mac;
        ethernet::write_header(&mut f, gw, testkit::GUEST_MAC, ethernet::ETHERTYPE_IPV6);
        f.extend_from_slice(&p);
        f
    }

    /// The ICMPv6 message (checksum verified) of a frame to the guest, with its source.
    fn icmp6_to_guest(f: &[u8]) -> (Ipv6Addr, Icmpv6Repr<'_>) {
        assert_eq!(&f[12..14], &ethernet::ETHERTYPE_IPV6.to_be_bytes());
        let ip = Ipv6Packet::parse(&f[ethernet::HEADER_LEN..]).expect("IPv6");
        assert_eq!(ip.dst(), g6());
        let u = ip.upper_layer().expect("upper layer");
        assert_eq!(u.proto, NH_ICMPV6);
        let r = Icmpv6Repr::parse(ip.src(), ip.dst(), u.data).expect("valid ICMPv6 checksum");
        (ip.src(), r)
    }

    #[test]
    fn icmpv6_echo_goes_out_and_the_reply_gets_the_guests_identifier_back() {
        let now = Instant::now();
        let mut gw = Gateway::new(Config::default(), 7);
        let mut rec = Rec::default();
        gw.handle_frame(
            now,
            &echo6_frame(g6(), far6(), 0x4242, 1, b"v6 ping"),
            &mut rec,
        );
        run(&mut gw, now, &mut rec);
        let id = fid(0, 0);
        let sent = Icmpv6Repr::EchoRequest {
            ident: 0x4242,
            seq: 1,
            data: b"v6 ping",
        }
        .to_bytes(g6(), far6());
        assert_eq!(
            rec.calls,
            vec![
                Call::IcmpOpen(id, IpAddr::V6(far6())),
                Call::IcmpSend(id, sent)
            ]
        );
        assert!(rec.take_frames().is_empty(), "never a forged reply");
        assert_eq!(gw.stats().icmp_echo_sent, 1);
        // A second echo of the same identifier uses the same socket.
        gw.handle_frame(
            now,
            &echo6_frame(g6(), far6(), 0x4242, 2, b"v6 ping"),
            &mut rec,
        );
        run(&mut gw, now, &mut rec);
        assert_eq!(rec.calls.len(), 3);
        assert!(matches!(rec.calls[2], Call::IcmpSend(i, _) if i == id));
        // The ping socket's reply carries the kernel's identifier and a checksum for other
        // addresses; an ICMPv4-typed or other message on the socket is skipped.
        let mut reply = Icmpv6Repr::EchoReply {
            ident: 0x9999,
            seq: 2,
            data: b"v6 ping",
        }
        .to_bytes(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
        rec.icmp_rx
            .push_back(testkit::icmp_message(icmpw::ECHO_REPLY, 0x9999, 2, b"v4"));
        rec.icmp_rx.push_back(
            Icmpv6Repr::EchoRequest {
                ident: 0x9999,
                seq: 2,
                data: b"",
            }
            .to_bytes(far6(), g6()),
        );
        rec.icmp_rx.push_back(reply.clone());
        gw.handle_event(now, Event::IcmpReadable(id), &mut rec);
        let f = rec.take_frames();
        assert_eq!(f.len(), 1);
        let (src, m) = icmp6_to_guest(&f[0]);
        assert_eq!(src, far6());
        assert_eq!(
            m,
            Icmpv6Repr::EchoReply {
                ident: 0x4242,
                seq: 2,
                data: b"v6 ping"
            }
        );
        // A truncated reply is skipped, never a panic.
        reply.truncate(5);
        rec.icmp_rx.push_back(reply);
        gw.handle_event(now, Event::IcmpReadable(id), &mut rec);
        assert!(rec.take_frames().is_empty());
        // Idle expiry closes the socket.
        let idle = Config::default().icmp_idle;
        gw.handle_timeout(now + idle, &mut rec);
        run(&mut gw, now + idle, &mut rec);
        assert!(rec.calls.contains(&Call::IcmpClose(id)));
    }

    #[test]
    fn icmpv6_echo_with_a_bad_checksum_or_to_non_outside_addresses_never_leaves() {
        let now = Instant::now();
        let mut gw = Gateway::new(Config::default(), 7);
        let mut rec = Rec::default();
        let mut bad = echo6_frame(g6(), far6(), 1, 1, b"x");
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        gw.handle_frame(now, &bad, &mut rec);
        // Another LAN address, loopback, link-local, a v4-mapped address, and a spoofed source.
        for dst in ["fec0::99", "::1", "fe80::1", "::ffff:192.0.2.1"] {
            let dst: Ipv6Addr = dst.parse().unwrap();
            gw.handle_frame(now, &echo6_frame(g6(), dst, 1, 1, b"x"), &mut rec);
        }
        let spoof: Ipv6Addr = "2001:db8::66".parse().unwrap();
        gw.handle_frame(now, &echo6_frame(spoof, far6(), 1, 1, b"x"), &mut rec);
        assert!(
            !rec.calls
                .iter()
                .any(|c| matches!(c, Call::IcmpSend(..) | Call::IcmpOpen(..))),
            "{:?}",
            rec.calls
        );
        assert!(rec.take_frames().is_empty());
        let s = gw.stats();
        assert_eq!(s.drop_bad_checksum + s.drop_malformed, 1, "{s:?}");
        assert_eq!(s.drop_bad_dest, 3);
        assert_eq!(s.drop_not_for_us, 1, "v4-mapped");
        assert_eq!(s.drop_spoofed, 1);
        assert_eq!(s.icmp_echo_sent, 0);
    }

    #[test]
    fn no_route_becomes_a_destination_unreachable_of_the_guests_family() {
        let now = Instant::now();
        // IPv6: the host cannot reach the destination.
        let mut gw = Gateway::new(Config::default(), 7);
        let mut rec = Rec {
            icmp_open_error: Some(HostError::NetUnreachable),
            ..Rec::default()
        };
        gw.handle_frame(now, &echo6_frame(g6(), far6(), 5, 1, b"abc"), &mut rec);
        run(&mut gw, now, &mut rec);
        let f = rec.take_frames();
        assert_eq!(f.len(), 1);
        let (src, m) = icmp6_to_guest(&f[0]);
        assert_eq!(
            src,
            "fec0::2".parse::<Ipv6Addr>().unwrap(),
            "from the router"
        );
        match m {
            Icmpv6Repr::DstUnreachable { code, invoking } => {
                assert_eq!(code, i6::CODE_NO_ROUTE);
                let q = Ipv6Packet::parse(invoking).expect("quotes the IPv6 header");
                assert_eq!(
                    (q.src(), q.dst(), q.next_header()),
                    (g6(), far6(), NH_ICMPV6)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(gw.stats().icmp_unreachable_sent, 1);
        assert_eq!(gw.stats().icmp_unavailable, 0);
        // IPv4 does the same.
        let now = Instant::now();
        let mut ctx = testkit::ctx(now);
        let mut nat = IcmpNat::default();
        let mut rec = Rec {
            icmp_open_error: Some(HostError::HostUnreachable),
            ..Rec::default()
        };
        ctx.learn_neighbour(now, testkit::guest(), testkit::GUEST_MAC);
        let req = testkit::icmp_message(icmpw::ECHO_REQUEST, 7, 1, b"abc");
        let b = testkit::ip_packet(testkit::guest(), testkit::remote(), ip::PROTO_ICMP, &req);
        input(&mut nat, &mut ctx, now, &b, &mut rec);
        let f = rec.take_frames();
        assert_eq!(f.len(), 1);
        let p = testkit::to_guest(&f[0]);
        assert_eq!(p.src, IpAddr::V4(ctx.cfg.gateway));
        let m = IcmpMessage::parse(p.payload).expect("valid checksum");
        assert_eq!(
            (m.kind, m.code),
            (icmpw::DEST_UNREACHABLE, icmpw::CODE_HOST_UNREACHABLE)
        );
        assert_eq!(&m.payload[..20], &b[..20], "quotes the IP header");
        assert_eq!(&m.payload[20..], &req[..8], "and 8 bytes of the echo");
        // Other failures stay counted as unavailable, with no error to the guest.
        rec.icmp_open_error = Some(HostError::NotPermitted("no ping".into()));
        input(&mut nat, &mut ctx, now, &b, &mut rec);
        assert!(rec.take_frames().is_empty());
        assert_eq!(ctx.stats.icmp_unavailable, 1);
        assert_eq!(nat.len(), 0);
    }
}
