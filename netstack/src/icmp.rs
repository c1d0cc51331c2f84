//! ICMP: echo requests from guests go out through host ICMP sockets (unprivileged ping sockets where
//! `net.ipv4.ping_group_range` allows, raw sockets when privileged); replies are real, never forged.
//! Also builds the ICMP errors the gateway sends to guests (unreachable).

use crate::flow::{FlowId, FlowKey, IdleFlow, IdleTable, Owner, Proto};
use crate::fwd::Dest;
use crate::gateway::{Gateway, Target};
use crate::host::{HostError, HostIo};
use crate::wire::ethernet;
use crate::wire::icmp::{self as icmpw, IcmpMessage};
use crate::wire::ip::{self, IpPacket};
use crate::{Instant, Mac};
use std::net::IpAddr;

pub(crate) struct IcmpFlow {
    key: FlowKey,
    /// Whom the flow's socket is charged to (`FlowBudget`).
    owner: Owner,
    guest_mac: Mac,
    last: Instant,
}

#[derive(Default)]
pub struct IcmpNat {
    table: IdleTable<IcmpFlow>,
    unavailable_logged: bool,
}

impl IcmpNat {
    pub fn len(&self) -> usize {
        self.table.len()
    }
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.table.timers.next()
    }
    /// The least recently active flow and its last activity.
    pub(crate) fn oldest(&mut self, idle: std::time::Duration) -> Option<(FlowId, Instant)> {
        self.table.oldest(idle)
    }
    pub(crate) fn owner_of(&self, id: FlowId) -> Option<Owner> {
        self.table.flows.get(id.idx, id.gen).map(|f| f.owner)
    }
    pub(crate) fn evict(&mut self, id: FlowId) {
        self.table.remove(id);
    }
}

fn fid(idx: u32, gen: u32) -> FlowId {
    FlowId {
        proto: Proto::Icmp,
        idx,
        gen,
    }
}

impl Gateway {
    pub(crate) fn icmp_input(&mut self, now: Instant, p: &IpPacket<'_>, io: &mut dyn HostIo) {
        let m = match IcmpMessage::parse(p.payload) {
            Ok(m) => m,
            Err(e) => return self.bad(now, "icmp", e),
        };
        if m.kind != icmpw::ECHO_REQUEST || m.code != 0 {
            self.stats.drop_unsupported += 1;
            return;
        }
        let Some(mac) = self.guest_mac(p.src) else {
            return;
        };
        let key = FlowKey {
            guest: p.src,
            guest_port: m.ident,
            remote: p.dst,
            remote_port: 0,
        };
        let (idx, gen) = match self.icmp.table.by_key.get(&key) {
            Some(&v) => v,
            None => {
                let target = match self.dest(p.dst, 0, Proto::Icmp) {
                    Dest::Host(Target::Addr(t)) => t.ip(),
                    Dest::Bad(why) => return self.bad_dest(now, &key, why),
                    Dest::Host(Target::Command(_)) | Dest::Refused => {
                        self.stats.drop_not_for_us += 1;
                        return;
                    }
                };
                if !self.flow_allowed(now, &key, io) {
                    return;
                }
                let owner = self.owner_for(key.guest);
                let (idx, gen) = self.icmp.table.flows.insert(IcmpFlow {
                    key,
                    owner,
                    guest_mac: mac,
                    last: now,
                });
                if let Err(e) = io.icmp_open(fid(idx, gen), target) {
                    self.icmp.table.flows.remove(idx, gen);
                    if self.out_of_fds(now, &e) {
                        return;
                    }
                    self.stats.icmp_unavailable += 1;
                    if !self.icmp.unavailable_logged {
                        self.icmp.unavailable_logged = true;
                        log::warn!("ping from guests cannot be forwarded: {e} (allow it with sysctl net.ipv4.ping_group_range)");
                    }
                    return;
                }
                self.icmp.table.by_key.insert(key, (idx, gen));
                self.icmp
                    .table
                    .timers
                    .push(now + self.cfg.icmp_idle, fid(idx, gen));
                self.flow_opened(owner);
                (idx, gen)
            }
        };
        if let Some(f) = self.icmp.table.flows.get_mut(idx, gen) {
            f.last = now;
            f.guest_mac = mac;
        }
        match io.icmp_send(fid(idx, gen), p.payload) {
            Ok(()) => self.stats.icmp_echo_sent += 1,
            Err(HostError::WouldBlock) => self.stats.drop_tx_queue_full += 1,
            Err(e) => {
                let d = p.dst;
                self.note(now, || format!("ping to {d} failed: {e}"));
            }
        }
    }

    /// The ICMP socket of `id` has replies.
    pub fn on_icmp_readable(&mut self, now: Instant, id: FlowId, io: &mut dyn HostIo) {
        let mut tx = std::mem::take(&mut self.tx);
        for _ in 0..64 {
            let Some(f) = self.icmp.table.flows.get_mut(id.idx, id.gen) else {
                break;
            };
            let off = ethernet::HEADER_LEN + ip::header_len(f.key.guest);
            let max = usize::from(self.cfg.mtu).saturating_sub(ip::header_len(f.key.guest));
            match io.icmp_recv(id, &mut tx[off..off + max]) {
                Ok(n) if n >= icmpw::HEADER_LEN => {
                    if tx[off] != icmpw::ECHO_REPLY {
                        continue;
                    }
                    f.last = now;
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
                        self.finish_frame(&mut tx, mac, key.remote, key.guest, ip::PROTO_ICMP, n);
                    io.transmit(&tx[..len]);
                    self.stats.frames_out += 1;
                }
                Ok(_) => continue,
                Err(HostError::WouldBlock) => break,
                Err(e) => {
                    log::debug!("ICMP receive: {e}");
                    break;
                }
            }
        }
        self.tx = tx;
    }

    pub(crate) fn icmp_timers(&mut self, now: Instant, io: &mut dyn HostIo) {
        for (id, f) in self.icmp.table.expire(now, self.cfg.icmp_idle) {
            io.icmp_close(id);
            self.flow_closed(f.owner);
        }
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
}

impl IdleFlow for IcmpFlow {
    fn key(&self) -> FlowKey {
        self.key
    }
    fn last_active(&self) -> Instant {
        self.last
    }
}
