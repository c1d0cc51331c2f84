//! TCP NAT: guest connections become host `connect()`s.
//!
//! The gateway terminates the guest's TCP and relays bytes to a host socket:
//! - A guest SYN starts a non-blocking host `connect()`; the guest gets SYN-ACK only once it succeeds, a
//!   RST when refused, and ICMP unreachable when the host network says so.
//! - Guest → host: in-order payload is written straight from the guest frame to the host socket. What the
//!   socket cannot take now is kept (bounded by the window we advertise) and flushed on writability.
//! - Host → guest: bytes are *peeked* from the host socket directly into outgoing frames and consumed only
//!   when the guest acknowledges them, so the kernel's receive queue is our retransmission buffer (one
//!   user-space copy per byte). Loss recovery is go-back-N from `snd_una` on timeout or triple dup-ACK.
//! - Half-close both ways (FIN ↔ shutdown), RST both ways, window scaling.

use crate::arp;
use crate::batch::{FrameBatch, Span};
use crate::ctx::Ctx;
use crate::error::InboundError;
use crate::flow::{FlowId, FlowKey, Proto, Slab, TimerHeap};
use crate::fwd::{Dest, Target};
use crate::host::{Action, HostError, HostIo, HostResult};
use crate::wire::ethernet;
use crate::wire::icmp as icmpw;
use crate::wire::ip::{self, IpPacket};
use crate::wire::tcp::{
    self as tcpw, seq_le, seq_lt, TcpHeader, TcpSegment, ACK, FIN, PSH, RST, SYN,
};
use crate::{Instant, Mac};
use rustc_hash::FxHashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Our window-scale shift, offered to guests that offer theirs.
pub const OUR_WSCALE: u8 = 7;
/// Most guest bytes we accept ahead of the host socket (the window we advertise).
pub const RCV_WINDOW: u32 = 4 << 20;
/// Most segments built per host read.
const MAX_BATCH: usize = 64;
/// Most bytes read from a host socket at once (then the link's congestion is checked again).
const MAX_PEEK: usize = 1 << 20;
const RTO_INITIAL: Duration = Duration::from_millis(250);
const RTO_MAX: Duration = Duration::from_secs(30);
const MAX_RETRIES: u32 = 12;
const SYNACK_RTO: Duration = Duration::from_secs(1);
const SYNACK_RETRIES: u32 = 6;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(75);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Host connect() in progress; the guest has sent SYN.
    Connecting,
    /// SYN-ACK sent to the guest, waiting for its ACK.
    SynAckSent,
    /// A forwarded connection: SYN sent to the guest, waiting for its SYN-ACK.
    SynSent,
    /// Data flows (including half-closed states, tracked by the FIN flags).
    Established,
}

pub(crate) struct TcpFlow {
    key: FlowKey,
    guest_mac: Mac,
    state: State,
    // Guest → host.
    rcv_nxt: u32,
    guest_fin: bool,
    shut_wr_done: bool,
    pending: Vec<u8>,
    want_write: bool,
    // Host → guest.
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    snd_wnd: u32,
    guest_wscale: u8,
    wscale_ok: bool,
    mss: u16,
    host_eof: bool,
    fin_sent: bool,
    dupacks: u8,
    last_wnd_seen: u32,
    rto: Duration,
    retries: u32,
    deadline: Option<Instant>,
    /// The earliest heap entry outstanding for this flow.
    queued: Option<Instant>,
    ack_due: bool,
    last_adv_wnd: u32,
    /// Has bytes gathered in the current batch (`TcpNat::wbatch`).
    in_batch: bool,
    /// Paused because the way to the guest is congested (see `TcpNat::tx_blocked`).
    tx_blocked: bool,
    /// The host socket may have data: false after a read found none, true again on readiness. Saves
    /// a failing read per guest segment.
    host_readable: bool,
    /// Bytes the guest acknowledged during a batch, dropped from the host socket before the next read.
    unconsumed: u32,
    /// Queued in `TcpNat::push_list` for the end of the batch.
    push_due: bool,
    /// With `host_eof`: the sequence number just past the host's last byte (where the FIN goes).
    data_end: u32,
}

impl TcpFlow {
    /// A flow in `state` with our initial sequence number `iss`; the guest's side is filled in by the
    /// caller from its SYN or SYN-ACK.
    fn new(key: FlowKey, guest_mac: Mac, state: State, iss: u32, mss: u16) -> Self {
        TcpFlow {
            key,
            guest_mac,
            state,
            rcv_nxt: 0,
            guest_fin: false,
            shut_wr_done: false,
            pending: Vec::new(),
            want_write: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_wnd: 0,
            guest_wscale: 0,
            wscale_ok: false,
            mss,
            host_eof: false,
            fin_sent: false,
            dupacks: 0,
            last_wnd_seen: 0,
            rto: RTO_INITIAL,
            retries: 0,
            deadline: None,
            queued: None,
            ack_due: false,
            last_adv_wnd: RCV_WINDOW,
            in_batch: false,
            tx_blocked: false,
            host_readable: true,
            unconsumed: 0,
            push_due: false,
            data_end: 0,
        }
    }

    /// Data bytes sent to the guest and not yet acknowledged (the host socket's peek offset).
    fn inflight_data(&self) -> u32 {
        self.snd_nxt
            .wrapping_sub(self.snd_una)
            .saturating_sub(u32::from(self.fin_sent))
    }
    fn fin_acked(&self) -> bool {
        self.fin_sent && self.snd_una == self.snd_nxt
    }
    fn adv_window(&self) -> u32 {
        RCV_WINDOW.saturating_sub(self.pending.len() as u32)
    }
    fn window_field(&self) -> u16 {
        let w = self.adv_window();
        if self.wscale_ok {
            (w >> OUR_WSCALE).min(65535) as u16
        } else {
            w.min(65535) as u16
        }
    }
}

/// All TCP flows, indexed by guest-side key.
#[derive(Default)]
pub struct TcpNat {
    flows: Slab<TcpFlow>,
    by_key: FxHashMap<FlowKey, (u32, u32)>,
    connecting_per_guest: FxHashMap<IpAddr, usize>,
    timers: TimerHeap,
    ack_pending: Vec<(u32, u32)>,
    segbufs: Vec<Vec<u8>>,
    /// Guest payload gathered during a batch of frames, written per flow at its end.
    wbatch: Vec<BatchWrite>,
    /// Flows paused on congestion towards their guest.
    tx_blocked: Vec<(u32, u32)>,
    /// Flows to push to their guest at the end of a batch (ACKs collapsed into one read).
    push_list: Vec<(u32, u32)>,
    /// Forwarded connections waiting for their guest's MAC (ARP).
    arp_waiting: Vec<(IpAddr, u32, u32)>,
}

/// One in-order guest segment of flow (`idx`, `gen`) waiting in the batch, as a span of its frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchWrite {
    idx: u32,
    gen: u32,
    span: Span,
}

/// The MAC of a guest not yet resolved by ARP.
const UNRESOLVED: Mac = [0; 6];

impl TcpNat {
    pub(crate) fn arp_waiting_is_empty(&self) -> bool {
        self.arp_waiting.is_empty()
    }
    /// Number of live TCP NAT flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }
    /// Whether no TCP NAT flow is live.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }
}

fn fid(idx: u32, gen: u32) -> FlowId {
    FlowId {
        proto: Proto::Tcp,
        idx,
        gen,
    }
}

/// Sets a flow's deadline, queueing a heap entry only when none is due at or before it.
fn arm(timers: &mut TimerHeap, f: &mut TcpFlow, idx: u32, gen: u32, at: Instant) {
    f.deadline = Some(at);
    if f.queued.is_none_or(|q| at < q) {
        f.queued = Some(at);
        timers.push(at, fid(idx, gen));
    }
}

impl TcpNat {
    pub(crate) fn input(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        p: &IpPacket<'_>,
        dns_upstream: Option<SocketAddr>,
        io: &mut dyn HostIo,
    ) {
        let seg = match TcpSegment::parse(p.payload, p.src, p.dst) {
            Ok(s) => s,
            Err(e) => return ctx.bad(now, "tcp", e),
        };
        let key = FlowKey {
            guest: p.src,
            guest_port: seg.src_port,
            remote: p.dst,
            remote_port: seg.dst_port,
        };
        let Some(&(idx, gen)) = self.by_key.get(&key) else {
            return self.no_flow(ctx, now, key, &seg, dns_upstream, io);
        };
        // Where the payload sits in the guest's frame (Ethernet, IP and TCP headers before it).
        let at = ethernet::HEADER_LEN + p.header.len() + seg.header_len;
        self.segment(ctx, now, idx, gen, &seg, at, io);
    }

    fn no_flow(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        key: FlowKey,
        seg: &TcpSegment<'_>,
        dns_upstream: Option<SocketAddr>,
        io: &mut dyn HostIo,
    ) {
        if seg.has(RST) {
            return;
        }
        if !seg.has(SYN) || seg.has(ACK) {
            // A segment for a connection we do not know: reset it (RFC 9293 §3.10.7.1).
            self.send_reset_for(ctx, key, seg, io);
            return;
        }
        let target = match ctx.dest(key.remote, key.remote_port, Proto::Tcp, dns_upstream) {
            Dest::Host(t) => t,
            Dest::Refused => {
                ctx.stats.tcp_refused += 1;
                self.send_reset_for(ctx, key, seg, io);
                return;
            }
            Dest::Bad(why) => return ctx.bad_dest(now, &key, why),
        };
        let is_cmd = matches!(target, Target::Command(_));
        let max_cmd = ctx.flows.budget().max_cmd_per_guest;
        if is_cmd && ctx.flows.budget().cmds_of(key.guest) >= max_cmd {
            ctx.stats.guestfwd_cmd_refused += 1;
            let (g, max) = (key.guest, max_cmd);
            ctx.note(now, || {
                format!("guest {g} has {max} guestfwd commands running; connection refused")
            });
            self.send_reset_for(ctx, key, seg, io);
            return;
        }
        let owner = ctx.owner_for(key.guest);
        if !ctx.admit(now, &key) {
            self.send_reset_for(ctx, key, seg, io);
            return;
        }
        let connecting = self
            .connecting_per_guest
            .get(&key.guest)
            .copied()
            .unwrap_or(0);
        if connecting >= ctx.cfg.max_pending_per_guest {
            ctx.stats.drop_syn_flood += 1;
            let g = key.guest;
            ctx.note(now, || {
                format!("guest {g} has too many connections in progress; SYN dropped")
            });
            return;
        }
        let Some(guest_mac) = ctx.guest_mac(key.guest) else {
            return;
        };
        let iss = ctx.isn.next_u32();
        let max_mss = ctx.cfg.mtu.saturating_sub(ip_overhead(key.guest)).max(536);
        let mut flow = TcpFlow::new(
            key,
            guest_mac,
            State::Connecting,
            iss,
            seg.mss.unwrap_or(536).clamp(64, max_mss),
        );
        flow.rcv_nxt = seg.seq.wrapping_add(1);
        flow.snd_wnd = u32::from(seg.window);
        flow.guest_wscale = seg.wscale.unwrap_or(0);
        flow.wscale_ok = seg.wscale.is_some();
        let (idx, gen) = self.flows.insert(flow);
        self.by_key.insert(key, (idx, gen));
        *self.connecting_per_guest.entry(key.guest).or_insert(0) += 1;
        let cmd = is_cmd.then_some(key.guest);
        ctx.flows.open(fid(idx, gen), owner, cmd, now);
        ctx.stats.tcp_flows_opened += 1;
        if let Some(f) = self.flows.get_mut(idx, gen) {
            arm(&mut self.timers, f, idx, gen, now + CONNECT_TIMEOUT);
        }
        // The result (also an immediate failure) comes back as `Event::TcpConnected`.
        let id = fid(idx, gen);
        ctx.act(match target {
            Target::Addr(dst) => Action::TcpConnect { id, dst },
            Target::Command(command) => Action::TcpSpawn { id, command },
        });
    }

    /// A host client connected to a TCP forward for `guest`. Sends SYN to the guest from the client's
    /// address (host loopback shows as the gateway) and returns the flow id the driver binds the accepted
    /// socket to. Errors are one-line reasons; the driver then resets the client.
    pub(crate) fn inbound(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        client: SocketAddr,
        guest: SocketAddr,
        io: &mut dyn HostIo,
    ) -> Result<FlowId, InboundError> {
        let remote = ctx.guest_visible(client.ip(), guest.ip());
        let key = FlowKey {
            guest: guest.ip(),
            guest_port: guest.port(),
            remote,
            remote_port: client.port(),
        };
        if guest.is_ipv6() && ctx.cfg.v6.is_none() {
            return Err(InboundError::NotIpv4(guest.ip()));
        }
        if !ctx.is_guest_addr(guest.ip()) {
            return Err(InboundError::NotAGuest(guest.ip()));
        }
        // Unknown yet (a guest that has only listened): ask by ARP or neighbour solicitation;
        // the SYN waits for the answer.
        let known = ctx.guest_mac(guest.ip());
        let guest_mac = known.unwrap_or(UNRESOLVED);
        if self.by_key.contains_key(&key) {
            return Err(InboundError::Exists {
                remote,
                remote_port: client.port(),
                guest,
            });
        }
        if !ctx.admit(now, &key) {
            return Err(InboundError::TooManyFlows(guest.ip()));
        }
        let iss = ctx.isn.next_u32();
        let mss = ctx.cfg.mtu.saturating_sub(ip_overhead(key.guest)).max(536);
        let mut flow = TcpFlow::new(key, guest_mac, State::SynSent, iss, mss);
        // Our SYN occupies one sequence number and offers window scaling.
        flow.snd_nxt = iss.wrapping_add(1);
        flow.wscale_ok = true;
        let owner = ctx.owner_for(key.guest);
        let (idx, gen) = self.flows.insert(flow);
        self.by_key.insert(key, (idx, gen));
        ctx.flows.open(fid(idx, gen), owner, None, now);
        ctx.stats.tcp_flows_opened += 1;
        if let Some(f) = self.flows.get_mut(idx, gen) {
            arm(&mut self.timers, f, idx, gen, now + SYNACK_RTO);
        }
        if known.is_some() {
            self.send_ctl(ctx, fid(idx, gen), SYN, io);
        } else {
            self.arp_waiting.push((guest.ip(), idx, gen));
            arp::solicit(ctx, guest.ip(), io);
        }
        Ok(fid(idx, gen))
    }

    /// The host connect() for `id` finished.
    pub(crate) fn on_connected(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        id: FlowId,
        result: HostResult<()>,
        io: &mut dyn HostIo,
    ) {
        let Some(f) = self.flows.get_mut(id.idx, id.gen) else {
            return;
        };
        if f.state != State::Connecting {
            return;
        }
        let guest = f.key.guest;
        if let Some(n) = self.connecting_per_guest.get_mut(&guest) {
            *n = n.saturating_sub(1);
        }
        match result {
            Ok(()) => {
                f.state = State::SynAckSent;
                f.snd_nxt = f.iss.wrapping_add(1);
                f.retries = 0;
                arm(&mut self.timers, f, id.idx, id.gen, now + SYNACK_RTO);
                self.send_ctl(ctx, id, SYN | ACK, io);
            }
            Err(e) => {
                let (key, irs) = (f.key, f.rcv_nxt.wrapping_sub(1));
                let rcv_nxt = f.rcv_nxt;
                let mac = f.guest_mac;
                self.remove(ctx, id, false);
                if e == HostError::Refused {
                    ctx.stats.tcp_refused += 1;
                    self.emit(ctx, mac, key, 0, rcv_nxt, RST | ACK, 0, None, 0, io);
                } else if ctx.out_of_fds(now, &e) {
                    // Out of file descriptors: refused like a full budget, never a wedge.
                    self.emit(ctx, mac, key, 0, rcv_nxt, RST | ACK, 0, None, 0, io);
                } else {
                    ctx.stats.tcp_unreachable += 1;
                    let code = match e {
                        HostError::NetUnreachable => icmpw::CODE_NET_UNREACHABLE,
                        _ => icmpw::CODE_HOST_UNREACHABLE,
                    };
                    let r = key.remote;
                    ctx.note(now, || {
                        format!("connect to {r}:{} failed: {e}", key.remote_port)
                    });
                    self.send_unreachable(ctx, mac, key, irs, code, io);
                }
            }
        }
    }

    /// A segment of a known flow whose payload starts `at` bytes into its frame.
    #[allow(clippy::too_many_arguments)]
    fn segment(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        idx: u32,
        gen: u32,
        seg: &TcpSegment<'_>,
        at: usize,
        io: &mut dyn HostIo,
    ) {
        let id = fid(idx, gen);
        let Some(f) = self.flows.get_mut(idx, gen) else {
            return;
        };
        if seg.has(RST) {
            // Accept a reset whose sequence number is within the window (RFC 5961 simplified).
            let ok = seq_le(f.rcv_nxt, seg.seq)
                && seq_lt(seg.seq, f.rcv_nxt.wrapping_add(f.adv_window().max(1)));
            let synsent_ok =
                f.state == State::SynSent && seg.has(ACK) && seg.ack == f.iss.wrapping_add(1);
            if ok || f.state == State::Connecting || synsent_ok {
                self.remove(ctx, id, true);
            }
            return;
        }
        match f.state {
            State::Connecting => return, // Retransmitted SYNs wait for the host connect.
            State::SynSent => {
                if !(seg.has(SYN) && seg.has(ACK)) || seg.ack != f.iss.wrapping_add(1) {
                    if seg.has(ACK) && !seg.has(SYN) {
                        let key = f.key;
                        self.send_reset_for(ctx, key, seg, io);
                    }
                    return;
                }
                f.state = State::Established;
                f.rcv_nxt = seg.seq.wrapping_add(1);
                f.snd_una = seg.ack;
                f.wscale_ok = seg.wscale.is_some();
                f.guest_wscale = seg.wscale.unwrap_or(0);
                f.mss = seg.mss.unwrap_or(536).clamp(64, f.mss);
                f.snd_wnd = u32::from(seg.window);
                f.last_wnd_seen = f.snd_wnd;
                f.retries = 0;
                f.deadline = None;
                self.queue_ack(idx, gen);
                self.push(ctx, now, idx, gen, io);
                return;
            }
            State::SynAckSent => {
                if seg.has(SYN) && !seg.has(ACK) {
                    self.send_ctl(ctx, id, SYN | ACK, io);
                    return;
                }
                if !seg.has(ACK) || seg.ack != f.iss.wrapping_add(1) {
                    let key = f.key;
                    self.send_reset_for(ctx, key, seg, io);
                    return;
                }
                f.state = State::Established;
                f.snd_una = seg.ack;
                f.retries = 0;
                f.rto = RTO_INITIAL;
                f.deadline = None;
                f.snd_wnd = u32::from(seg.window) << f.guest_wscale;
                f.last_wnd_seen = f.snd_wnd;
            }
            State::Established => {
                if seg.has(SYN) {
                    // A SYN on an established connection: answer with an ACK (challenge ACK).
                    self.queue_ack(idx, gen);
                    return;
                }
                if !seg.has(ACK) {
                    return;
                }
                if seq_lt(f.snd_nxt, seg.ack) {
                    // Acknowledges data we never sent.
                    self.queue_ack(idx, gen);
                    return;
                }
                let wnd = u32::from(seg.window) << f.guest_wscale;
                if seq_lt(f.snd_una, seg.ack) {
                    let acked = seg.ack.wrapping_sub(f.snd_una);
                    let fin_now_acked = f.fin_sent && seg.ack == f.snd_nxt;
                    let data_acked = acked - u32::from(fin_now_acked);
                    if data_acked > 0 {
                        if ctx.batch.is_some() {
                            // Dropped from the host socket once, before the batch's next read.
                            f.unconsumed += data_acked;
                        } else {
                            io.tcp_consume(id, data_acked as usize);
                        }
                    }
                    f.snd_una = seg.ack;
                    f.retries = 0;
                    f.rto = RTO_INITIAL;
                    f.dupacks = 0;
                    f.deadline = if f.snd_una == f.snd_nxt {
                        None
                    } else {
                        Some(now + f.rto)
                    };
                    if let Some(at) = f.deadline {
                        arm(&mut self.timers, f, idx, gen, at);
                    }
                } else if seg.ack == f.snd_una
                    && seg.payload.is_empty()
                    && !seg.has(FIN)
                    && f.snd_nxt != f.snd_una
                    && wnd == f.last_wnd_seen
                {
                    f.dupacks = f.dupacks.saturating_add(1);
                    if f.dupacks == 3 {
                        // Fast retransmit: go back to the oldest unacknowledged byte.
                        f.snd_nxt = f.snd_una;
                        f.fin_sent = false;
                        f.host_readable = true;
                        ctx.stats.tcp_retransmits += 1;
                    }
                }
                f.snd_wnd = wnd;
                f.last_wnd_seen = wnd;
            }
        }
        self.receive(ctx, now, idx, gen, seg, at, io);
        let batching = ctx.batch.is_some();
        let Some(f) = self.flows.get_mut(idx, gen) else {
            return;
        };
        if batching {
            // Several ACKs of one batch make one read of the host socket, at the batch's end.
            if !f.push_due {
                f.push_due = true;
                self.push_list.push((idx, gen));
            }
        } else {
            self.push(ctx, now, idx, gen, io);
            self.maybe_finish(ctx, idx, gen, io);
        }
    }

    /// `ip` turned out to use `mac`: forwarded connections waiting for it send their SYN.
    pub(crate) fn neighbour_known(
        &mut self,
        ctx: &mut Ctx,
        ip: IpAddr,
        mac: Mac,
        io: &mut dyn HostIo,
    ) {
        let waiting = std::mem::take(&mut self.arp_waiting);
        for (wip, idx, gen) in waiting {
            if wip != ip {
                self.arp_waiting.push((wip, idx, gen));
                continue;
            }
            let Some(f) = self.flows.get_mut(idx, gen) else {
                continue;
            };
            if f.state == State::SynSent && f.guest_mac == UNRESOLVED {
                f.guest_mac = mac;
                self.send_ctl(ctx, fid(idx, gen), SYN, io);
            }
        }
    }

    /// End of a batch: the deferred reads of flows whose guest acknowledged data or opened its window.
    pub(crate) fn flush_pushes(&mut self, ctx: &mut Ctx, now: Instant, io: &mut dyn HostIo) {
        let list = std::mem::take(&mut self.push_list);
        for &(idx, gen) in &list {
            let Some(f) = self.flows.get_mut(idx, gen) else {
                continue;
            };
            f.push_due = false;
            self.push(ctx, now, idx, gen, io);
            self.maybe_finish(ctx, idx, gen, io);
        }
        let mut list = list;
        list.clear();
        if self.push_list.is_empty() {
            self.push_list = list;
        }
    }

    /// Guest payload and FIN.
    #[allow(clippy::too_many_arguments)]
    fn receive(
        &mut self,
        ctx: &mut Ctx,
        _now: Instant,
        idx: u32,
        gen: u32,
        seg: &TcpSegment<'_>,
        at: usize,
        io: &mut dyn HostIo,
    ) {
        let id = fid(idx, gen);
        let Some(f) = self.flows.get_mut(idx, gen) else {
            return;
        };
        let mut data = seg.payload;
        let mut seq = seg.seq;
        // Offset of `data` in the frame.
        let mut at = at;
        if !data.is_empty() {
            if f.guest_fin {
                return;
            }
            if seq_lt(seq, f.rcv_nxt) {
                let skip = f.rcv_nxt.wrapping_sub(seq) as usize;
                if skip >= data.len() {
                    // Entirely old: a retransmission of something we have.
                    self.queue_ack(idx, gen);
                    return;
                }
                data = &data[skip..];
                at += skip;
                seq = f.rcv_nxt;
            }
            if seq != f.rcv_nxt {
                // Out of order: drop it and repeat our ACK so the guest retransmits.
                self.queue_ack(idx, gen);
                return;
            }
            let room = f.adv_window() as usize;
            let take = data.len().min(room);
            let data = &data[..take];
            if let (true, true, Some(frame)) = (take > 0, f.pending.is_empty(), ctx.batch) {
                // Gathered: written with the flow's other segments of this batch in one writev.
                f.in_batch = true;
                self.wbatch.push(BatchWrite {
                    idx,
                    gen,
                    span: frame.span(at, take),
                });
                f.rcv_nxt = f.rcv_nxt.wrapping_add(take as u32);
            } else if take > 0 {
                let mut written = 0;
                if f.pending.is_empty() {
                    match io.tcp_send(id, data) {
                        Ok(n) => written = n,
                        Err(HostError::WouldBlock) => {}
                        Err(_) => {
                            self.abort(ctx, id, io);
                            return;
                        }
                    }
                }
                if written < data.len() {
                    f.pending.extend_from_slice(&data[written..]);
                    if !f.want_write {
                        f.want_write = true;
                        ctx.act(Action::TcpWantWrite(id));
                    }
                }
                f.rcv_nxt = f.rcv_nxt.wrapping_add(take as u32);
            }
            // Bytes beyond our window were dropped: say at once how far we got.
            self.queue_ack(idx, gen);
        }
        let Some(f) = self.flows.get_mut(idx, gen) else {
            return;
        };
        if seg.has(FIN)
            && !f.guest_fin
            && seg.seq.wrapping_add(seg.payload.len() as u32) == f.rcv_nxt
        {
            f.guest_fin = true;
            f.rcv_nxt = f.rcv_nxt.wrapping_add(1);
            // With gathered bytes still to write, the shutdown follows the batch's writes.
            if f.pending.is_empty() && !f.in_batch {
                f.shut_wr_done = true;
                ctx.act(Action::TcpShutdownWrite(id));
            }
            self.queue_ack(idx, gen);
        } else if seg.has(FIN) && f.guest_fin {
            // A retransmitted FIN.
            self.queue_ack(idx, gen);
        }
    }

    /// Writes the guest bytes gathered during a batch: one `writev` per flow, in order. What the socket
    /// does not take now is kept (as with single writes) until it is writable.
    pub(crate) fn flush_writes(
        &mut self,
        ctx: &mut Ctx,
        frames: &FrameBatch<'_>,
        io: &mut dyn HostIo,
    ) {
        let mut batch = std::mem::take(&mut self.wbatch);
        if batch.is_empty() {
            self.wbatch = batch;
            return;
        }
        // Stable: each flow's segments keep their order.
        batch.sort_by_key(|b| (b.idx, b.gen));
        let mut i = 0;
        while i < batch.len() {
            let (idx, gen) = (batch[i].idx, batch[i].gen);
            let mut j = i;
            while j < batch.len() && batch[j].idx == idx && batch[j].gen == gen {
                j += 1;
            }
            let group = &batch[i..j];
            i = j;
            let id = fid(idx, gen);
            if self.flows.get(idx, gen).is_none() {
                continue;
            }
            let total: usize = group.iter().map(|b| b.span.len()).sum();
            let mut written = 0;
            let mut failed = false;
            for chunk in group.chunks(512) {
                let iov: Vec<IoSlice<'_>> = chunk
                    .iter()
                    .map(|b| IoSlice::new(frames.bytes(b.span)))
                    .collect();
                let want: usize = chunk.iter().map(|b| b.span.len()).sum();
                match io.tcp_send_vectored(id, &iov) {
                    Ok(n) => {
                        written += n;
                        if n < want {
                            break;
                        }
                    }
                    Err(HostError::WouldBlock) => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                self.abort(ctx, id, io);
                continue;
            }
            let Some(f) = self.flows.get_mut(idx, gen) else {
                continue;
            };
            f.in_batch = false;
            if written < total {
                ctx.stats.tcp_host_full += 1;
                let mut skip = written;
                for b in group {
                    let s = frames.bytes(b.span);
                    if skip >= s.len() {
                        skip -= s.len();
                        continue;
                    }
                    f.pending.extend_from_slice(&s[skip..]);
                    skip = 0;
                }
                if !f.want_write {
                    f.want_write = true;
                    ctx.act(Action::TcpWantWrite(id));
                }
            } else if f.guest_fin && !f.shut_wr_done {
                f.shut_wr_done = true;
                ctx.act(Action::TcpShutdownWrite(id));
            }
            // A flow whose last segments waited in this batch may be done now.
            self.maybe_finish(ctx, idx, gen, io);
        }
        batch.clear();
        self.wbatch = batch;
    }

    /// The way to the guests has room again: resumes the flows that paused on congestion.
    pub(crate) fn on_link_ready(&mut self, ctx: &mut Ctx, now: Instant, io: &mut dyn HostIo) {
        self.on_link_ready_except(ctx, now, &|_| false, io);
    }

    /// Like `Event::LinkReady`, but flows towards a guest MAC for which `still_blocked`
    /// holds stay paused (the way to that guest is still congested; others must not wait for it).
    pub(crate) fn on_link_ready_except(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        still_blocked: &dyn Fn(&Mac) -> bool,
        io: &mut dyn HostIo,
    ) {
        let mut list = std::mem::take(&mut self.tx_blocked);
        let flows = &mut self.flows;
        let mut keep = Vec::new();
        list.retain(|&(idx, gen)| match flows.get_mut(idx, gen) {
            Some(f) if still_blocked(&f.guest_mac) => {
                keep.push((idx, gen));
                false
            }
            Some(f) => {
                f.tx_blocked = false;
                true
            }
            None => false,
        });
        self.tx_blocked = keep;
        for (idx, gen) in list {
            self.push(ctx, now, idx, gen, io);
            self.maybe_finish(ctx, idx, gen, io);
        }
    }

    /// The host socket has data (or EOF) for the guest.
    pub(crate) fn on_readable(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        id: FlowId,
        io: &mut dyn HostIo,
    ) {
        if let Some(f) = self.flows.get_mut(id.idx, id.gen) {
            f.host_readable = true;
            self.push(ctx, now, id.idx, id.gen, io);
            self.maybe_finish(ctx, id.idx, id.gen, io);
        }
    }

    /// The host socket can take the guest bytes we are holding.
    pub(crate) fn on_writable(
        &mut self,
        ctx: &mut Ctx,
        now: Instant,
        id: FlowId,
        io: &mut dyn HostIo,
    ) {
        let Some(f) = self.flows.get_mut(id.idx, id.gen) else {
            return;
        };
        f.want_write = false;
        while !f.pending.is_empty() {
            match io.tcp_send(id, &f.pending) {
                Ok(0) => break,
                Ok(n) => {
                    f.pending.drain(..n);
                }
                Err(HostError::WouldBlock) => break,
                Err(_) => return self.abort(ctx, id, io),
            }
        }
        if !f.pending.is_empty() {
            f.want_write = true;
            ctx.act(Action::TcpWantWrite(id));
        } else {
            f.pending = Vec::new();
            if f.guest_fin && !f.shut_wr_done {
                f.shut_wr_done = true;
                ctx.act(Action::TcpShutdownWrite(id));
            }
        }
        // Tell the guest the window opened again if it had closed noticeably.
        if f.last_adv_wnd < RCV_WINDOW / 2 && f.adv_window() > f.last_adv_wnd {
            self.queue_ack(id.idx, id.gen);
        }
        self.maybe_finish(ctx, id.idx, id.gen, io);
        let _ = now;
    }

    /// Sends host data to the guest while its window allows; then FIN after host EOF.
    fn push(&mut self, ctx: &mut Ctx, now: Instant, idx: u32, gen: u32, io: &mut dyn HostIo) {
        let id = fid(idx, gen);
        let gw_mac = ctx.cfg.gateway_mac;
        let tcp = &mut *self;
        let Some(f) = tcp.flows.get_mut(idx, gen) else {
            return;
        };
        if f.unconsumed > 0 {
            io.tcp_consume(id, f.unconsumed as usize);
            f.unconsumed = 0;
        }
        if f.state != State::Established || f.tx_blocked {
            return;
        }
        let mut congested = false;
        let iphl = ip::header_len(f.key.guest);
        let off = ethernet::HEADER_LEN + iphl + tcpw::HEADER_LEN;
        let mss = usize::from(f.mss);
        loop {
            // After host EOF the FIN goes right after the last data byte; bytes before it that the
            // guest has not acknowledged (after a retransmission rewind) are sent again first.
            if f.host_eof && (f.fin_sent || f.snd_nxt == f.data_end) {
                if !f.fin_sent {
                    let h = TcpHeader {
                        src_port: f.key.remote_port,
                        dst_port: f.key.guest_port,
                        seq: f.snd_nxt,
                        ack: f.rcv_nxt,
                        flags: FIN | ACK,
                        window: f.window_field(),
                        syn_opts: None,
                    };
                    f.fin_sent = true;
                    f.snd_nxt = f.snd_nxt.wrapping_add(1);
                    f.ack_due = false;
                    f.last_adv_wnd = f.adv_window();
                    let buf = segbuf_first(&mut tcp.segbufs, off);
                    let n = build_tcp(buf, gw_mac, f.guest_mac, f.key.remote, f.key.guest, &h, 0);
                    io.transmit(&buf[..n]);
                    ctx.stats.frames_out += 1;
                    if f.deadline.is_none() {
                        arm(&mut tcp.timers, f, idx, gen, now + f.rto);
                    }
                }
                break;
            }
            let inflight = f.snd_nxt.wrapping_sub(f.snd_una);
            if inflight >= f.snd_wnd {
                ctx.stats.tcp_guest_window_full += 1;
                if f.snd_wnd == 0 && f.deadline.is_none() {
                    // Zero window: probe later.
                    arm(&mut tcp.timers, f, idx, gen, now + f.rto);
                }
                break;
            }
            if !f.host_readable {
                // The last read found nothing; readiness will say when there is more.
                break;
            }
            let room = ((f.snd_wnd - inflight) as usize).min(MAX_PEEK);
            let nseg = room.div_ceil(mss).min(MAX_BATCH);
            while tcp.segbufs.len() < nseg {
                tcp.segbufs.push(Vec::new());
            }
            let mut iov: Vec<IoSliceMut<'_>> = Vec::with_capacity(nseg);
            let mut left = room;
            for b in tcp.segbufs.iter_mut().take(nseg) {
                let want = left.min(mss);
                if b.len() < off + want {
                    b.resize(off + mss.max(want), 0);
                }
                iov.push(IoSliceMut::new(&mut b[off..off + want]));
                left -= want;
            }
            let asked: usize = iov.iter().map(|s| s.len()).sum();
            let res = io.tcp_peek(id, f.inflight_data() as usize, &mut iov);
            drop(iov);
            match res {
                Ok(0) => {
                    if !f.host_eof {
                        f.host_eof = true;
                        f.data_end = f.snd_nxt;
                    } else if f.snd_nxt != f.data_end {
                        // Cannot happen with a sane socket (bytes before EOF are never lost);
                        // end the flow rather than send a FIN in the wrong place.
                        self.abort(ctx, id, io);
                        return;
                    }
                    continue;
                }
                Ok(n) => {
                    let mut left = n;
                    let mut i = 0;
                    while left > 0 {
                        let len = left.min(mss).min(room);
                        left -= len;
                        let h = TcpHeader {
                            src_port: f.key.remote_port,
                            dst_port: f.key.guest_port,
                            seq: f.snd_nxt,
                            ack: f.rcv_nxt,
                            flags: if left == 0 { ACK | PSH } else { ACK },
                            window: f.window_field(),
                            syn_opts: None,
                        };
                        let buf = &mut tcp.segbufs[i];
                        let fl =
                            build_tcp(buf, gw_mac, f.guest_mac, f.key.remote, f.key.guest, &h, len);
                        congested |= !io.transmit(&buf[..fl]);
                        ctx.stats.frames_out += 1;
                        f.snd_nxt = f.snd_nxt.wrapping_add(len as u32);
                        i += 1;
                    }
                    f.ack_due = false;
                    f.last_adv_wnd = f.adv_window();
                    if f.deadline.is_none() {
                        arm(&mut tcp.timers, f, idx, gen, now + f.rto);
                    }
                    if congested {
                        // The guest's link is full: wait for `Event::LinkReady` rather than drop.
                        f.tx_blocked = true;
                        tcp.tx_blocked.push((idx, gen));
                        ctx.stats.tcp_link_paused += 1;
                        break;
                    }
                    if n < asked {
                        // Drained for now; the next read finds WouldBlock (or EOF) and re-arms readiness.
                        continue;
                    }
                }
                Err(HostError::WouldBlock) => {
                    f.host_readable = false;
                    ctx.stats.tcp_host_empty += 1;
                    break;
                }
                Err(_) => {
                    self.abort(ctx, id, io);
                    return;
                }
            }
        }
    }

    /// Frees the flow once both directions are closed and everything is acknowledged.
    fn maybe_finish(&mut self, ctx: &mut Ctx, idx: u32, gen: u32, io: &mut dyn HostIo) {
        let Some(f) = self.flows.get(idx, gen) else {
            return;
        };
        // Bytes gathered for the batch's writev still belong to the flow (`in_batch`).
        if f.guest_fin && f.fin_acked() && f.pending.is_empty() && !f.in_batch {
            let id = fid(idx, gen);
            if f.ack_due {
                self.send_ctl(ctx, id, ACK, io);
            }
            self.remove(ctx, id, false);
        }
    }

    /// Resets both sides.
    fn abort(&mut self, ctx: &mut Ctx, id: FlowId, io: &mut dyn HostIo) {
        let Some(f) = self.flows.get(id.idx, id.gen) else {
            return;
        };
        let (mac, key, seq, ack) = (f.guest_mac, f.key, f.snd_nxt, f.rcv_nxt);
        self.emit(ctx, mac, key, seq, ack, RST | ACK, 0, None, 0, io);
        self.remove(ctx, id, true);
    }

    fn remove(&mut self, ctx: &mut Ctx, id: FlowId, reset: bool) {
        let Some(f) = self.flows.remove(id.idx, id.gen) else {
            return;
        };
        self.by_key.remove(&f.key);
        if f.state == State::Connecting {
            if let Some(n) = self.connecting_per_guest.get_mut(&f.key.guest) {
                *n = n.saturating_sub(1);
            }
        }
        if self.connecting_per_guest.get(&f.key.guest) == Some(&0) {
            self.connecting_per_guest.remove(&f.key.guest);
        }
        ctx.act(Action::TcpClose { id, reset });
        ctx.flows.close(id);
        ctx.stats.tcp_flows_closed += 1;
    }

    /// Marks an ACK as due; ACKs are sent at the end of the batch unless data carries them first.
    fn queue_ack(&mut self, idx: u32, gen: u32) {
        let Some(f) = self.flows.get_mut(idx, gen) else {
            return;
        };
        if !f.ack_due {
            f.ack_due = true;
            self.ack_pending.push((idx, gen));
        }
    }

    pub(crate) fn flush_acks(&mut self, ctx: &mut Ctx, _now: Instant, io: &mut dyn HostIo) {
        let list = std::mem::take(&mut self.ack_pending);
        for &(idx, gen) in &list {
            let due = self.flows.get(idx, gen).is_some_and(|f| f.ack_due);
            if due {
                self.send_ctl(ctx, fid(idx, gen), ACK, io);
            }
        }
        let mut list = list;
        list.clear();
        if self.ack_pending.is_empty() {
            self.ack_pending = list;
        }
    }

    /// Sends a segment without payload on a flow (SYN-ACK, ACK, window probe) with current numbers.
    fn send_ctl(&mut self, ctx: &mut Ctx, id: FlowId, flags: u8, io: &mut dyn HostIo) {
        let Some(f) = self.flows.get_mut(id.idx, id.gen) else {
            return;
        };
        let syn = flags & SYN != 0;
        let seq = if syn { f.iss } else { f.snd_nxt };
        // Our own SYN (forwards) always offers window scaling.
        let opts = syn.then(|| (f.mss, f.wscale_ok.then_some(OUR_WSCALE)));
        let window = if syn { 65535 } else { f.window_field() };
        f.ack_due = false;
        f.last_adv_wnd = f.adv_window();
        let (mac, key, ack) = (f.guest_mac, f.key, f.rcv_nxt);
        self.emit(ctx, mac, key, seq, ack, flags, window, opts, 0, io);
    }

    /// Builds one segment from the remote to the guest in the scratch buffer and transmits it.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        ctx: &mut Ctx,
        mac: Mac,
        key: FlowKey,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        syn_opts: Option<(u16, Option<u8>)>,
        payload: usize,
        io: &mut dyn HostIo,
    ) {
        let h = TcpHeader {
            src_port: key.remote_port,
            dst_port: key.guest_port,
            seq,
            ack,
            flags,
            window,
            syn_opts,
        };
        let mut tx = std::mem::take(&mut ctx.tx);
        let n = build_tcp(
            &mut tx,
            ctx.cfg.gateway_mac,
            mac,
            key.remote,
            key.guest,
            &h,
            payload,
        );
        io.transmit(&tx[..n]);
        ctx.tx = tx;
        ctx.stats.frames_out += 1;
    }

    /// RST for a segment that matches no connection.
    fn send_reset_for(
        &mut self,
        ctx: &mut Ctx,
        key: FlowKey,
        seg: &TcpSegment<'_>,
        io: &mut dyn HostIo,
    ) {
        let Some(mac) = ctx.guest_mac(key.guest) else {
            return;
        };
        if seg.has(ACK) {
            self.emit(ctx, mac, key, seg.ack, 0, RST, 0, None, 0, io);
        } else {
            let ack = seg.seq.wrapping_add(seg.seq_len());
            self.emit(ctx, mac, key, 0, ack, RST | ACK, 0, None, 0, io);
        }
    }

    /// ICMP destination unreachable for the guest's SYN (quoting its IP header and first 8 TCP bytes).
    fn send_unreachable(
        &mut self,
        ctx: &mut Ctx,
        mac: Mac,
        key: FlowKey,
        irs: u32,
        code: u8,
        io: &mut dyn HostIo,
    ) {
        let mut quote = [0u8; ip::IPV4_HEADER_LEN + 8];
        if let (IpAddr::V4(_), IpAddr::V4(_)) = (key.guest, key.remote) {
            ip::write_header(
                &mut quote,
                key.guest,
                key.remote,
                ip::PROTO_TCP,
                tcpw::HEADER_LEN,
            );
        }
        quote[20..22].copy_from_slice(&key.guest_port.to_be_bytes());
        quote[22..24].copy_from_slice(&key.remote_port.to_be_bytes());
        quote[24..28].copy_from_slice(&irs.to_be_bytes());
        let src = IpAddr::V4(ctx.cfg.gateway);
        if key.guest.is_ipv6() {
            let t = &quote[ip::IPV4_HEADER_LEN..];
            let (g, r) = (key.guest, key.remote);
            return ctx.send_icmp6_unreachable(mac, src, g, r, ip::PROTO_TCP, code, t, io);
        }
        ctx.send_icmp_error(
            mac,
            src,
            key.guest,
            icmpw::DEST_UNREACHABLE,
            code,
            &quote,
            io,
        );
    }

    pub(crate) fn timers(&mut self, ctx: &mut Ctx, now: Instant, io: &mut dyn HostIo) {
        while let Some((at, id)) = self.timers.pop_due_at(now) {
            let Some(f) = self.flows.get_mut(id.idx, id.gen) else {
                continue;
            };
            if f.queued == Some(at) {
                f.queued = None;
            }
            let Some(deadline) = f.deadline else { continue };
            if deadline > now {
                arm(&mut self.timers, f, id.idx, id.gen, deadline);
                continue;
            }
            f.deadline = None;
            match f.state {
                State::Connecting => {
                    // The host connect is taking too long: give up like a timed-out connect.
                    self.on_connected(ctx, now, id, Err(HostError::TimedOut), io);
                }
                State::SynAckSent | State::SynSent => {
                    f.retries += 1;
                    let flags = if f.state == State::SynSent {
                        SYN
                    } else {
                        SYN | ACK
                    };
                    if f.guest_mac == UNRESOLVED && f.retries <= SYNACK_RETRIES {
                        let at = now + SYNACK_RTO;
                        arm(&mut self.timers, f, id.idx, id.gen, at);
                        let g = f.key.guest;
                        arp::solicit(ctx, g, io);
                        continue;
                    }
                    if f.retries > SYNACK_RETRIES {
                        self.remove(ctx, id, true);
                    } else {
                        let at = now + SYNACK_RTO * (1 << f.retries.min(5));
                        arm(&mut self.timers, f, id.idx, id.gen, at);
                        self.send_ctl(ctx, id, flags, io);
                    }
                }
                State::Established => {
                    if f.snd_una == f.snd_nxt && f.snd_wnd > 0 {
                        continue;
                    }
                    if f.tx_blocked {
                        // Waiting for the link, not for the guest: nothing is lost yet.
                        let at = now + f.rto;
                        arm(&mut self.timers, f, id.idx, id.gen, at);
                        continue;
                    }
                    f.retries += 1;
                    if f.retries > MAX_RETRIES {
                        self.abort(ctx, id, io);
                        continue;
                    }
                    f.rto = (f.rto * 2).min(RTO_MAX);
                    if f.snd_una == f.snd_nxt {
                        // Zero-window probe: an old sequence number makes the guest answer with an ACK.
                        let at = now + f.rto;
                        arm(&mut self.timers, f, id.idx, id.gen, at);
                        let (mac, key, seq, ack, w) = (
                            f.guest_mac,
                            f.key,
                            f.snd_una.wrapping_sub(1),
                            f.rcv_nxt,
                            f.window_field(),
                        );
                        self.emit(ctx, mac, key, seq, ack, ACK, w, None, 0, io);
                        continue;
                    }
                    // Retransmission timeout: go back to the oldest unacknowledged byte.
                    f.snd_nxt = f.snd_una;
                    f.fin_sent = false;
                    f.host_readable = true;
                    ctx.stats.tcp_retransmits += 1;
                    self.push(ctx, now, id.idx, id.gen, io);
                }
            }
        }
    }
}

/// The first segment buffer, large enough for a header-only frame.
fn segbuf_first(bufs: &mut Vec<Vec<u8>>, off: usize) -> &mut Vec<u8> {
    if bufs.is_empty() {
        bufs.push(Vec::new());
    }
    let b = &mut bufs[0];
    if b.len() < off + 8 {
        b.resize(off + 8, 0);
    }
    b
}

/// Writes Ethernet, IP and TCP headers in front of `payload` bytes already at their offset in `buf`.
fn build_tcp(
    buf: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: IpAddr,
    dst: IpAddr,
    h: &TcpHeader,
    payload: usize,
) -> usize {
    let iphl = ip::header_len(dst);
    let t0 = ethernet::HEADER_LEN + iphl;
    let tlen = h.len() + payload;
    tcpw::write_header(&mut buf[t0..t0 + tlen], h, src, dst);
    let ethertype = if dst.is_ipv4() {
        ethernet::ETHERTYPE_IPV4
    } else {
        ethernet::ETHERTYPE_IPV6
    };
    ethernet::write_header(buf, dst_mac, src_mac, ethertype);
    ip::write_header(
        &mut buf[ethernet::HEADER_LEN..],
        src,
        dst,
        ip::PROTO_TCP,
        tlen,
    );
    t0 + tlen
}

/// IP + TCP header bytes of a full segment: MSS = MTU - 40 (IPv4) or MTU - 60 (IPv6).
fn ip_overhead(a: IpAddr) -> u16 {
    if a.is_ipv4() {
        40
    } else {
        60
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, Call, Rec};
    use crate::wire::icmp::IcmpMessage;

    const ISN: u32 = 1000;

    fn syn() -> Vec<u8> {
        let h = TcpHeader {
            src_port: 0,
            dst_port: 0,
            seq: ISN,
            ack: 0,
            flags: SYN,
            window: 65535,
            syn_opts: Some((1460, Some(7))),
        };
        testkit::tcp_packet(40000, SocketAddr::new(testkit::remote(), 80), h, b"")
    }

    /// Carries out the queued actions as a driver would, reporting failed connects.
    fn drain(ctx: &mut Ctx, nat: &mut TcpNat, rec: &mut Rec, now: Instant) {
        while let Some(a) = ctx.poll_action() {
            if let Some((id, e)) = rec.record(a) {
                nat.on_connected(ctx, now, id, Err(e), rec);
            }
        }
    }

    /// A guest SYN handled by a fresh NAT: the context, the NAT, the host, and the flow's id.
    fn connecting(rec: &mut Rec, now: Instant) -> (Ctx, TcpNat, Option<FlowId>) {
        let mut ctx = testkit::ctx(now);
        let mut nat = TcpNat::default();
        let b = syn();
        nat.input(&mut ctx, now, &testkit::parse_ip(&b), None, rec);
        drain(&mut ctx, &mut nat, rec, now);
        let id = rec.calls.iter().find_map(|c| match c {
            Call::TcpConnect(id, _) => Some(*id),
            _ => None,
        });
        (ctx, nat, id)
    }

    #[test]
    fn syn_ack_only_after_the_host_connect_succeeds() {
        let now = Instant::now();
        let mut rec = Rec::default();
        let (mut ctx, mut nat, id) = connecting(&mut rec, now);
        let id = id.expect("a host connect");
        assert_eq!(
            rec.calls,
            vec![Call::TcpConnect(id, SocketAddr::new(testkit::remote(), 80))]
        );
        assert!(
            rec.frames.is_empty(),
            "nothing for the guest while connecting"
        );
        assert_eq!(ctx.flows.budget().total(), 1);
        // A retransmitted SYN waits for the connect too.
        let b = syn();
        nat.input(&mut ctx, now, &testkit::parse_ip(&b), None, &mut rec);
        drain(&mut ctx, &mut nat, &mut rec, now);
        assert!(rec.frames.is_empty());
        assert_eq!(rec.calls.len(), 1, "one connect");

        nat.on_connected(&mut ctx, now, id, Ok(()), &mut rec);
        let f = rec.take_frames();
        assert_eq!(f.len(), 1);
        let s = testkit::tcp_to_guest(&f[0]);
        assert_eq!(s.flags & (SYN | ACK | RST), SYN | ACK);
        assert_eq!(s.ack, ISN + 1);
        assert_eq!((s.src_port, s.dst_port), (80, 40000));
        assert_eq!(ctx.stats.tcp_flows_opened, 1);
    }

    #[test]
    fn seeded_isns_are_reproducible() {
        let isn = || {
            let now = Instant::now();
            let mut rec = Rec::default();
            let (mut ctx, mut nat, id) = connecting(&mut rec, now);
            nat.on_connected(&mut ctx, now, id.expect("id"), Ok(()), &mut rec);
            testkit::tcp_to_guest(&rec.frames[0]).seq
        };
        assert_eq!(isn(), isn());
    }

    #[test]
    fn refused_connect_resets_the_guest() {
        let now = Instant::now();
        let mut rec = Rec::default();
        let (mut ctx, mut nat, id) = connecting(&mut rec, now);
        let id = id.expect("id");
        nat.on_connected(&mut ctx, now, id, Err(HostError::Refused), &mut rec);
        drain(&mut ctx, &mut nat, &mut rec, now);
        let f = rec.take_frames();
        assert_eq!(f.len(), 1);
        let s = testkit::tcp_to_guest(&f[0]);
        assert_eq!(s.flags, RST | ACK);
        assert_eq!(s.ack, ISN + 1);
        assert_eq!(ctx.stats.tcp_refused, 1);
        assert_eq!(nat.len(), 0);
        assert_eq!(ctx.flows.budget().total(), 0, "the budget is released");
        assert!(rec.calls.contains(&Call::TcpClose(id, false)));
    }

    /// The ICMP error the guest got for its SYN: (code, quoted sequence number).
    fn unreachable(f: &[u8]) -> (u8, u32) {
        let p = testkit::to_guest(f);
        assert_eq!(p.proto, ip::PROTO_ICMP);
        let m = IcmpMessage::parse(p.payload).expect("valid ICMP");
        assert_eq!(m.kind, icmpw::DEST_UNREACHABLE);
        // The quote: the SYN's IP header, then ports and sequence number.
        let q = &m.payload[ip::IPV4_HEADER_LEN..];
        assert_eq!(u16::from_be_bytes([q[0], q[1]]), 40000);
        (m.code, u32::from_be_bytes([q[4], q[5], q[6], q[7]]))
    }

    #[test]
    fn unreachable_networks_and_hosts_get_their_icmp_codes() {
        for (err, code) in [
            (HostError::NetUnreachable, icmpw::CODE_NET_UNREACHABLE),
            (HostError::HostUnreachable, icmpw::CODE_HOST_UNREACHABLE),
            (HostError::Other("x".into()), icmpw::CODE_HOST_UNREACHABLE),
        ] {
            let now = Instant::now();
            let mut rec = Rec::default();
            let (mut ctx, mut nat, id) = connecting(&mut rec, now);
            nat.on_connected(&mut ctx, now, id.expect("id"), Err(err.clone()), &mut rec);
            let f = rec.take_frames();
            assert_eq!(f.len(), 1, "{err:?}");
            assert_eq!(unreachable(&f[0]), (code, ISN), "{err:?}");
            assert_eq!(ctx.stats.tcp_unreachable, 1);
            assert_eq!(ctx.flows.budget().total(), 0);
        }
    }

    #[test]
    fn a_connect_failing_at_once_answers_at_once() {
        let now = Instant::now();
        let mut rec = Rec {
            connect_error: Some(HostError::NetUnreachable),
            ..Rec::default()
        };
        let (ctx, nat, _) = connecting(&mut rec, now);
        assert_eq!(rec.frames.len(), 1);
        assert_eq!(unreachable(&rec.frames[0]).0, icmpw::CODE_NET_UNREACHABLE);
        assert_eq!((nat.len(), ctx.flows.budget().total()), (0, 0));
        // Out of file descriptors: refused like a full budget (RST), and counted.
        let mut rec = Rec {
            connect_error: Some(HostError::NoBuffers),
            ..Rec::default()
        };
        let (ctx, _, _) = connecting(&mut rec, now);
        assert_eq!(testkit::tcp_to_guest(&rec.frames[0]).flags, RST | ACK);
        assert_eq!(ctx.stats.flows_refused_fd, 1);
    }

    #[test]
    fn a_connect_that_never_finishes_times_out_in_virtual_time() {
        let t0 = Instant::now();
        let mut rec = Rec::default();
        let (mut ctx, mut nat, _) = connecting(&mut rec, t0);
        let due = nat.next_deadline().expect("a connect timer");
        assert_eq!(due, t0 + CONNECT_TIMEOUT);
        nat.timers(&mut ctx, due - Duration::from_millis(1), &mut rec);
        assert!(rec.frames.is_empty(), "not yet");
        nat.timers(&mut ctx, due, &mut rec);
        let f = rec.take_frames();
        assert_eq!(f.len(), 1);
        assert_eq!(unreachable(&f[0]), (icmpw::CODE_HOST_UNREACHABLE, ISN));
        assert_eq!(nat.len(), 0);
    }

    #[test]
    fn batched_payload_is_gathered_by_offset_past_options_overlap_and_padding() {
        let now = Instant::now();
        let mut rec = Rec::default();
        let (mut ctx, mut nat, id) = connecting(&mut rec, now);
        let id = id.expect("id");
        nat.on_connected(&mut ctx, now, id, Ok(()), &mut rec);
        let ours = testkit::tcp_to_guest(&rec.take_frames()[0]).seq;
        let dst = SocketAddr::new(testkit::remote(), 80);
        let data = |seq: u32, opts: bool, payload: &[u8]| {
            let h = TcpHeader {
                src_port: 0,
                dst_port: 0,
                seq,
                ack: ours.wrapping_add(1),
                flags: ACK,
                window: 65535,
                // An option block makes the header longer than 20 bytes.
                syn_opts: opts.then_some((1460, Some(7))),
            };
            testkit::tcp_packet(40000, dst, h, payload)
        };
        // The handshake's ACK, alone.
        let b = data(ISN + 1, false, b"");
        nat.input(&mut ctx, now, &testkit::parse_ip(&b), None, &mut rec);
        // One batch: "hello" after options, then "lo world" overlapping by two bytes, padded.
        let frames = [
            testkit::frame(&data(ISN + 1, true, b"hello"), 0),
            testkit::frame(&data(ISN + 4, false, b"lo world"), 6),
        ];
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        let batch = FrameBatch::new(&refs);
        for (i, f) in batch.frames() {
            ctx.batch = Some(i);
            let p = testkit::parse_ip(&f[ethernet::HEADER_LEN..]);
            nat.input(&mut ctx, now, &p, None, &mut rec);
        }
        ctx.batch = None;
        assert!(rec.written.is_empty(), "gathered until the batch ends");
        nat.flush_writes(&mut ctx, &batch, &mut rec);
        assert_eq!(rec.written, b"hello world");
        assert_eq!(rec.writes, 1, "one writev for the flow");
    }
}
