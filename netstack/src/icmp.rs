//! ICMP: echo requests from guests go out through host ICMP sockets (unprivileged ping sockets where
//! `net.ipv4.ping_group_range` allows, raw sockets when privileged); replies are real, never forged.
//! (The ICMP errors the gateway sends to guests are built by `Ctx::send_icmp_error`.)

use crate::ctx::Ctx;
use crate::flow::{FlowId, FlowKey, Proto, Slab};
use crate::fwd::{Dest, Target};
use crate::host::{HostError, HostIo};
use crate::wire::ethernet;
use crate::wire::icmp::{self as icmpw, IcmpMessage};
use crate::wire::ip::{self, IpPacket};
use crate::{Instant, Mac};
use rustc_hash::FxHashMap;

struct IcmpFlow {
    key: FlowKey,
    guest_mac: Mac,
}

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

    /// An ICMP message from a guest (only echo requests leave the LAN).
    pub(crate) fn input(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        p: &IpPacket<'_>,
        io: &mut dyn HostIo,
    ) {
        let m = match IcmpMessage::parse(p.payload) {
            Ok(m) => m,
            Err(e) => return ctx.bad(now, "icmp", e),
        };
        if m.kind != icmpw::ECHO_REQUEST || m.code != 0 {
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
                    Dest::Host(Target::Addr(t)) => t.ip(),
                    Dest::Bad(why) => return ctx.bad_dest(now, &key, why),
                    Dest::Host(Target::Command(_)) | Dest::Refused => {
                        ctx.stats.drop_not_for_us += 1;
                        return;
                    }
                };
                if !ctx.admit(now, &key, io) {
                    return;
                }
                let owner = ctx.owner_for(key.guest);
                let (idx, gen) = self.flows.insert(IcmpFlow {
                    key,
                    guest_mac: mac,
                });
                if let Err(e) = io.icmp_open(fid(idx, gen), target) {
                    self.flows.remove(idx, gen);
                    if ctx.out_of_fds(now, &e) {
                        return;
                    }
                    ctx.stats.icmp_unavailable += 1;
                    if !self.unavailable_logged {
                        self.unavailable_logged = true;
                        log::warn!("ping from guests cannot be forwarded: {e} (allow it with sysctl net.ipv4.ping_group_range)");
                    }
                    return;
                }
                self.by_key.insert(key, (idx, gen));
                ctx.flows.open(fid(idx, gen), owner, None, now);
                (idx, gen)
            }
        };
        if let Some(f) = self.flows.get_mut(idx, gen) {
            f.guest_mac = mac;
        }
        ctx.flows.touch(fid(idx, gen), now);
        match io.icmp_send(fid(idx, gen), p.payload) {
            Ok(()) => ctx.stats.icmp_echo_sent += 1,
            Err(HostError::WouldBlock) => ctx.stats.drop_tx_queue_full += 1,
            Err(e) => {
                let d = p.dst;
                ctx.note(now, || format!("ping to {d} failed: {e}"));
            }
        }
    }

    /// The ICMP socket of `id` has replies.
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
                    if tx[off] != icmpw::ECHO_REPLY {
                        continue;
                    }
                    ctx.flows.touch(id, now);
                    let (key, mac) = (f.key, f.guest_mac);
                    let seqb = [tx[off + 6], tx[off + 7]];
                    let ident = key.guest_port.to_be_bytes();
                    icmpw::write(
                        &mut tx[off..off + n],
                        icmpw::ECHO_REPLY,
                        0,
                        [ident[0], ident[1], seqb[0], seqb[1]],
                    );
                    let len =
                        ctx.finish_frame(&mut tx, mac, key.remote, key.guest, ip::PROTO_ICMP, n);
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
    pub(crate) fn expired(&mut self, id: FlowId, io: &mut dyn HostIo) {
        self.forget(id);
        io.icmp_close(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, Call, Rec};

    #[test]
    fn echo_round_trip_restores_the_guests_identifier() {
        let now = Instant::now();
        let mut ctx = testkit::ctx(now);
        let mut nat = IcmpNat::default();
        let mut rec = Rec::default();
        let req = testkit::icmp_message(icmpw::ECHO_REQUEST, 0x1234, 7, b"ping!");
        let b = testkit::ip_packet(testkit::guest(), testkit::remote(), ip::PROTO_ICMP, &req);
        nat.input(&mut ctx, now, &testkit::parse_ip(&b), &mut rec);
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
        nat.expired(id, &mut rec);
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
        nat.input(&mut ctx, now, &testkit::parse_ip(&b), &mut rec);
        assert!(rec.calls.is_empty());
        assert_eq!(ctx.stats.drop_unsupported, 1);
    }
}
