//! UDP NAT: one connected host socket per guest flow (guest address/port, remote address/port).
//!
//! Replies come from the right source address because the flow key remembers what the guest sent to;
//! a host ECONNREFUSED becomes ICMP port-unreachable to the guest; idle flows expire.

use crate::flow::{FlowId, FlowKey, IdleFlow, IdleTable, InboundError, Owner, Proto};
use crate::fwd::Dest;
use crate::gateway::{Gateway, Target};
use crate::host::{HostError, HostIo};
use crate::wire::ethernet;
use crate::wire::icmp as icmpw;
use crate::wire::ip::{self, IpPacket};
use crate::wire::udp::{self as udpw, UdpDatagram};
use crate::{Instant, Mac};
use std::net::{IpAddr, SocketAddr};

pub(crate) struct UdpFlow {
    key: FlowKey,
    /// Whom the flow's socket is charged to (`FlowBudget`).
    owner: Owner,
    guest_mac: Mac,
    last: Instant,
    last_len: u16,
}

#[derive(Default)]
pub struct UdpNat {
    table: IdleTable<UdpFlow>,
}

impl UdpNat {
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
        proto: Proto::Udp,
        idx,
        gen,
    }
}

impl Gateway {
    pub(crate) fn udp_input(
        &mut self,
        now: Instant,
        src_mac: Mac,
        p: &IpPacket<'_>,
        io: &mut dyn HostIo,
    ) {
        let d = match UdpDatagram::parse(p.payload, p.src, p.dst) {
            Ok(d) => d,
            Err(e) => return self.bad(now, "udp", e),
        };
        if self.udp_local(now, src_mac, p, &d, io) {
            return;
        }
        if p.src.is_unspecified() {
            self.stats.drop_spoofed += 1;
            return;
        }
        let key = FlowKey {
            guest: p.src,
            guest_port: d.src_port,
            remote: p.dst,
            remote_port: d.dst_port,
        };
        let (idx, gen) = match self.udp.table.by_key.get(&key) {
            Some(&v) => v,
            None => {
                let target = match self.dest(key.remote, key.remote_port, Proto::Udp) {
                    Dest::Host(Target::Addr(t)) => t,
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
                let (idx, gen) = self.udp.table.flows.insert(UdpFlow {
                    key,
                    owner,
                    guest_mac: src_mac,
                    last: now,
                    last_len: 0,
                });
                if let Err(e) = io.udp_open(fid(idx, gen), target) {
                    self.udp.table.flows.remove(idx, gen);
                    if !self.out_of_fds(now, &e) {
                        self.note(now, || format!("cannot open a UDP socket to {target}: {e}"));
                    }
                    return;
                }
                self.udp.table.by_key.insert(key, (idx, gen));
                self.udp
                    .table
                    .timers
                    .push(now + self.cfg.udp_idle, fid(idx, gen));
                self.flow_opened(owner);
                self.stats.udp_flows_opened += 1;
                (idx, gen)
            }
        };
        let Some(f) = self.udp.table.flows.get_mut(idx, gen) else {
            return;
        };
        f.last = now;
        f.guest_mac = src_mac;
        f.last_len = d.payload.len() as u16;
        match io.udp_send(fid(idx, gen), d.payload) {
            Ok(()) => {}
            Err(HostError::Refused) => self.udp_refused(idx, gen, io),
            Err(HostError::WouldBlock) => self.stats.drop_tx_queue_full += 1,
            Err(e) => {
                let r = key.remote;
                self.note(now, || {
                    format!("UDP send to {r}:{} failed: {e}", key.remote_port)
                });
            }
        }
    }

    /// A datagram from `client` arrived on UDP forward `fwd` for `guest`: finds or makes the flow (whose
    /// replies leave through the forward's socket) and delivers the datagram to the guest from the
    /// client's address (host loopback shows as the gateway).
    pub fn udp_inbound(
        &mut self,
        now: Instant,
        fwd: u32,
        client: SocketAddr,
        guest: SocketAddr,
        payload: &[u8],
        io: &mut dyn HostIo,
    ) -> Result<FlowId, InboundError> {
        let remote = self.guest_visible(client.ip());
        let key = FlowKey {
            guest: guest.ip(),
            guest_port: guest.port(),
            remote,
            remote_port: client.port(),
        };
        let Some(mac) = self.guest_mac(guest.ip()) else {
            // Not heard from yet: ask by ARP and drop this datagram (the client will retry).
            if let IpAddr::V4(g) = guest.ip() {
                if self.cfg.net.contains(g) && !self.is_virtual(g) {
                    self.send_arp_request(g, io);
                }
            }
            return Err(InboundError::Unresolved(guest.ip()));
        };
        let (idx, gen) = match self.udp.table.by_key.get(&key) {
            Some(&v) => v,
            None => {
                if !self.flow_allowed(now, &key, io) {
                    return Err(InboundError::TooManyFlows(guest.ip()));
                }
                let owner = self.owner_for(key.guest);
                let (idx, gen) = self.udp.table.flows.insert(UdpFlow {
                    key,
                    owner,
                    guest_mac: mac,
                    last: now,
                    last_len: 0,
                });
                if let Err(e) = io.udp_open_forward(fid(idx, gen), fwd, client) {
                    self.udp.table.flows.remove(idx, gen);
                    self.out_of_fds(now, &e);
                    return Err(InboundError::Host { client, error: e });
                }
                self.udp.table.by_key.insert(key, (idx, gen));
                self.udp
                    .table
                    .timers
                    .push(now + self.cfg.udp_idle, fid(idx, gen));
                self.flow_opened(owner);
                self.stats.udp_flows_opened += 1;
                (idx, gen)
            }
        };
        if let Some(f) = self.udp.table.flows.get_mut(idx, gen) {
            f.last = now;
        }
        let max =
            usize::from(self.cfg.mtu).saturating_sub(ip::header_len(key.guest) + udpw::HEADER_LEN);
        if payload.len() > max {
            self.stats.drop_unsupported += 1;
            return Ok(fid(idx, gen));
        }
        self.send_udp_to(
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

    /// The host socket of `id` has datagrams (or an error) for the guest.
    pub fn on_udp_readable(&mut self, now: Instant, id: FlowId, io: &mut dyn HostIo) {
        let mut tx = std::mem::take(&mut self.tx);
        for _ in 0..64 {
            let Some(f) = self.udp.table.flows.get_mut(id.idx, id.gen) else {
                break;
            };
            let off = ethernet::HEADER_LEN + ip::header_len(f.key.guest);
            let max = usize::from(self.cfg.mtu)
                .saturating_sub(ip::header_len(f.key.guest) + udpw::HEADER_LEN);
            let start = off + udpw::HEADER_LEN;
            match io.udp_recv(id, &mut tx[start..start + max]) {
                Ok(n) => {
                    f.last = now;
                    let (key, mac) = (f.key, f.guest_mac);
                    udpw::write(
                        &mut tx[off..start + n],
                        key.remote,
                        key.guest,
                        key.remote_port,
                        key.guest_port,
                    );
                    let len = self.finish_frame(
                        &mut tx,
                        mac,
                        key.remote,
                        key.guest,
                        ip::PROTO_UDP,
                        udpw::HEADER_LEN + n,
                    );
                    io.transmit(&tx[..len]);
                    self.stats.frames_out += 1;
                }
                Err(HostError::WouldBlock) => break,
                Err(HostError::Refused) => {
                    self.tx = std::mem::take(&mut tx);
                    self.udp_refused(id.idx, id.gen, io);
                    tx = std::mem::take(&mut self.tx);
                }
                Err(e) => {
                    log::debug!("UDP receive: {e}");
                    break;
                }
            }
        }
        self.tx = tx;
    }

    /// ICMP port unreachable to the guest, quoting its last datagram's headers.
    fn udp_refused(&mut self, idx: u32, gen: u32, io: &mut dyn HostIo) {
        let Some(f) = self.udp.table.flows.get(idx, gen) else {
            return;
        };
        let (key, mac, len) = (f.key, f.guest_mac, f.last_len);
        let (IpAddr::V4(_), IpAddr::V4(_)) = (key.guest, key.remote) else {
            return;
        };
        let mut quote = [0u8; ip::IPV4_HEADER_LEN + udpw::HEADER_LEN];
        ip::write_header(
            &mut quote,
            key.guest,
            key.remote,
            ip::PROTO_UDP,
            udpw::HEADER_LEN + usize::from(len),
        );
        quote[20..22].copy_from_slice(&key.guest_port.to_be_bytes());
        quote[22..24].copy_from_slice(&key.remote_port.to_be_bytes());
        quote[24..26].copy_from_slice(&(len.saturating_add(8)).to_be_bytes());
        self.send_icmp_error(
            mac,
            key.remote,
            key.guest,
            icmpw::DEST_UNREACHABLE,
            icmpw::CODE_PORT_UNREACHABLE,
            &quote,
            io,
        );
    }

    pub(crate) fn udp_timers(&mut self, now: Instant, io: &mut dyn HostIo) {
        for (id, f) in self.udp.table.expire(now, self.cfg.udp_idle) {
            io.udp_close(id);
            self.flow_closed(f.owner);
            self.stats.udp_flows_expired += 1;
        }
    }
}

impl IdleFlow for UdpFlow {
    fn key(&self) -> FlowKey {
        self.key
    }
    fn last_active(&self) -> Instant {
        self.last
    }
}
