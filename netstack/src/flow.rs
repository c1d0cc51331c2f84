//! Flow identity and storage shared by the NAT modules.
//!
//! A frame is demultiplexed to its flow by one hash lookup on [`FlowKey`] (dual-stack addresses), so the
//! per-packet cost does not grow with the number of flows. Flows live in a [`Slab`]; a [`FlowId`] carries a
//! generation so late events for a freed slot are ignored. Timers are a lazy min-heap: a flow keeps its
//! own deadline and at most one heap entry.

use crate::Instant;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

/// A handle on one flow's host socket, stable for the flow's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    pub proto: Proto,
    pub idx: u32,
    pub gen: u32,
}

/// A guest-side flow: the guest's address/port and the remote address/port as the guest sees it.
/// For ICMP echo the ports are the echo identifier and 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub guest: IpAddr,
    pub guest_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
}

/// A slab with generation-checked ids.
pub struct Slab<T> {
    slots: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Inserts and returns (index, generation).
    pub fn insert(&mut self, v: T) -> (u32, u32) {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            let slot = &mut self.slots[i as usize];
            slot.0 = slot.0.wrapping_add(1);
            slot.1 = Some(v);
            (i, slot.0)
        } else {
            self.slots.push((0, Some(v)));
            ((self.slots.len() - 1) as u32, 0)
        }
    }
    pub fn get(&self, idx: u32, gen: u32) -> Option<&T> {
        match self.slots.get(idx as usize) {
            Some((g, Some(v))) if *g == gen => Some(v),
            _ => None,
        }
    }
    pub fn get_mut(&mut self, idx: u32, gen: u32) -> Option<&mut T> {
        match self.slots.get_mut(idx as usize) {
            Some((g, Some(v))) if *g == gen => Some(v),
            _ => None,
        }
    }
    pub fn remove(&mut self, idx: u32, gen: u32) -> Option<T> {
        match self.slots.get_mut(idx as usize) {
            Some((g, slot @ Some(_))) if *g == gen => {
                self.len -= 1;
                self.free.push(idx);
                slot.take()
            }
            _ => None,
        }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, (g, v))| v.as_ref().map(|v| (i as u32, *g, v)))
    }
}

/// A min-heap of (deadline, flow) with lazy deletion: the owner re-checks the flow's real deadline when
/// an entry pops.
#[derive(Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, FlowId)>>,
}

impl TimerHeap {
    pub fn push(&mut self, at: Instant, id: FlowId) {
        self.heap.push(Reverse((at, id)));
    }
    /// Pops one entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<FlowId> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, id))| id),
            _ => None,
        }
    }
    /// Pops one entry due at `now`, with its time.
    pub fn pop_due_at(&mut self, now: Instant) -> Option<(Instant, FlowId)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }
    pub fn len(&self) -> usize {
        self.heap.len()
    }
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// A flow that ends after a period without traffic (UDP, ICMP echo).
pub trait IdleFlow {
    fn key(&self) -> FlowKey;
    fn last_active(&self) -> Instant;
}

/// Flows indexed by key that expire when idle: one hash lookup per packet, and a lazy timer entry per
/// flow that is re-queued at its real expiry when it fires early.
pub struct IdleTable<F> {
    pub flows: Slab<F>,
    pub by_key: rustc_hash::FxHashMap<FlowKey, (u32, u32)>,
    pub timers: TimerHeap,
}

impl<F> Default for IdleTable<F> {
    fn default() -> Self {
        IdleTable {
            flows: Slab::default(),
            by_key: Default::default(),
            timers: TimerHeap::default(),
        }
    }
}

impl<F: IdleFlow> IdleTable<F> {
    /// Removes and returns the flows idle for `idle` or longer at `now`.
    pub fn expire(&mut self, now: Instant, idle: std::time::Duration) -> Vec<(FlowId, F)> {
        let mut out = Vec::new();
        while let Some(id) = self.timers.pop_due(now) {
            let Some(f) = self.flows.get(id.idx, id.gen) else {
                continue;
            };
            let expires = f.last_active() + idle;
            if expires > now {
                self.timers.push(expires, id);
                continue;
            }
            if let Some(f) = self.flows.remove(id.idx, id.gen) {
                self.by_key.remove(&f.key());
                out.push((id, f));
            }
        }
        out
    }

    /// The least recently active flow and when it was last active, without scanning: stale heap
    /// entries met on the way are re-queued at their flow's real expiry (each flow has exactly one
    /// entry, at or before its real expiry, so the first accurate entry is the oldest flow).
    pub fn oldest(&mut self, idle: std::time::Duration) -> Option<(FlowId, Instant)> {
        loop {
            let Reverse((at, id)) = *self.timers.heap.peek()?;
            let Some(f) = self.flows.get(id.idx, id.gen) else {
                self.timers.heap.pop();
                continue;
            };
            let last = f.last_active();
            if last + idle > at {
                self.timers.heap.pop();
                self.timers.push(last + idle, id);
                continue;
            }
            return Some((id, last));
        }
    }

    /// Removes one flow (eviction); its heap entry goes stale.
    pub fn remove(&mut self, id: FlowId) -> Option<F> {
        let f = self.flows.remove(id.idx, id.gen)?;
        self.by_key.remove(&f.key());
        Some(f)
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// Why a host-initiated flow (a forward's connection or datagram) could not be made for a guest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("guest {0} is not an IPv4 address on the LAN")]
    NotIpv4(IpAddr),
    #[error("{0} is not a guest address on the LAN")]
    NotAGuest(IpAddr),
    #[error("a connection {remote}:{remote_port} -> {guest} already exists")]
    Exists {
        remote: IpAddr,
        remote_port: u16,
        guest: std::net::SocketAddr,
    },
    #[error("guest {0} has too many flows")]
    TooManyFlows(IpAddr),
    #[error("guest {0} is not known yet (asked by ARP)")]
    Unresolved(IpAddr),
    #[error("cannot track UDP peer {client}: {error}")]
    Host {
        client: std::net::SocketAddr,
        error: crate::host::HostError,
    },
}

/// Why a new flow was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The guest holds its per-guest share already.
    PerGuest,
    /// The global budget is used up and nothing idle could be evicted for this guest.
    Global,
}

/// Whom a flow's file descriptor is charged to: the switch port the guest's frames came in on, when
/// the driver says (`Gateway::handle_frames_from`), so that one port cannot multiply its share by
/// using many addresses or MACs; otherwise (host-initiated forwards, callers that name no port) the
/// guest's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    Port(u32),
    Guest(IpAddr),
}

impl From<IpAddr> for Owner {
    fn from(ip: IpAddr) -> Self {
        Owner::Guest(ip)
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Port(p) => write!(f, "port {p}"),
            Owner::Guest(ip) => write!(f, "guest {ip}"),
        }
    }
}

/// The flow table's accounting: how many NAT flows (each one host fd) are live in all and per guest,
/// against the limits derived from the process's file-descriptor budget. Every flow of every protocol
/// is counted here, so one place answers "who holds how many".
#[derive(Clone, Debug)]
pub struct FlowBudget {
    /// Most flows in all (the fd budget less a reserve).
    pub max_total: usize,
    /// Most flows of one guest (a fair share of `max_total`).
    pub max_per_guest: usize,
    /// Most `guestfwd ... cmd:` children of one guest at once.
    pub max_cmd_per_guest: usize,
    total: usize,
    per_guest: rustc_hash::FxHashMap<Owner, usize>,
    cmd_per_guest: rustc_hash::FxHashMap<IpAddr, usize>,
}

impl FlowBudget {
    pub fn new(max_total: usize, max_per_guest: usize, max_cmd_per_guest: usize) -> Self {
        FlowBudget {
            max_total: max_total.max(1),
            max_per_guest: max_per_guest.max(1),
            max_cmd_per_guest,
            total: 0,
            per_guest: Default::default(),
            cmd_per_guest: Default::default(),
        }
    }
    /// Live flows in all.
    pub fn total(&self) -> usize {
        self.total
    }
    /// Live flows charged to `owner` (a port, or a guest's address).
    pub fn of(&self, owner: impl Into<Owner>) -> usize {
        self.per_guest.get(&owner.into()).copied().unwrap_or(0)
    }
    /// Live command children of `guest`.
    pub fn cmds_of(&self, guest: IpAddr) -> usize {
        self.cmd_per_guest.get(&guest).copied().unwrap_or(0)
    }
    /// Whether the global budget is used up.
    pub fn exhausted(&self) -> bool {
        self.total >= self.max_total
    }
    /// Whether `guest` holds at least as many flows as any other guest (O(guests), asked only when the
    /// global budget is exhausted).
    pub fn is_top_holder(&self, owner: Owner) -> bool {
        let n = self.of(owner);
        self.per_guest.values().all(|&m| m <= n)
    }
    pub fn opened(&mut self, owner: Owner) {
        self.total += 1;
        *self.per_guest.entry(owner).or_insert(0) += 1;
    }
    pub fn closed(&mut self, owner: Owner) {
        self.total = self.total.saturating_sub(1);
        dec(&mut self.per_guest, owner);
    }
    pub fn cmd_opened(&mut self, guest: IpAddr) {
        *self.cmd_per_guest.entry(guest).or_insert(0) += 1;
    }
    pub fn cmd_closed(&mut self, guest: IpAddr) {
        dec(&mut self.cmd_per_guest, guest);
    }
}

fn dec<K: std::hash::Hash + Eq>(m: &mut rustc_hash::FxHashMap<K, usize>, k: K) {
    if let Some(n) = m.get_mut(&k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(&k);
        }
    }
}

/// How file descriptors are shared out: `limit` is the process's fd limit (RLIMIT_NOFILE soft).
/// A reserve of max(64, limit/8) stays for listeners, accepted guests, API connections, DNS sockets,
/// pcap and tap; the rest is for NAT flows. Returns (flows in all, flows per guest): a guest gets at most
/// half of the flows, and at most `max_per_guest` (the `--max-flows` setting).
pub fn flow_limits(limit: u64, max_per_guest: usize) -> (usize, usize) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX).min(1 << 24);
    let reserve = (limit / 8).max(64);
    let total = limit.saturating_sub(reserve).max(2);
    (total, (total / 2).min(max_per_guest).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_generations_reject_stale_ids() {
        let mut s = Slab::default();
        let (i, g) = s.insert("a");
        assert_eq!(s.remove(i, g), Some("a"));
        let (i2, g2) = s.insert("b");
        assert_eq!(i2, i);
        assert_ne!(g2, g);
        assert_eq!(s.get(i, g), None);
        assert_eq!(s.get(i2, g2), Some(&"b"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn flow_limits_keep_a_reserve_and_a_fair_share() {
        assert_eq!(flow_limits(1024, 4096), (896, 448));
        assert_eq!(flow_limits(256, 4096), (192, 96));
        assert_eq!(flow_limits(256, 10), (192, 10));
        assert_eq!(flow_limits(1 << 20, 4096), ((1 << 20) - (1 << 17), 4096));
        // Absurdly low limits still leave something and never underflow.
        assert_eq!(flow_limits(10, 4096), (2, 1));
    }

    #[test]
    fn budget_counts_per_guest_and_top_holder() {
        let a = Owner::Guest("10.0.2.15".parse().expect("ip"));
        let b = Owner::Port(2);
        let mut fb = FlowBudget::new(3, 2, 1);
        fb.opened(a);
        fb.opened(a);
        fb.opened(b);
        assert!(fb.exhausted());
        assert!(fb.is_top_holder(a));
        assert!(!fb.is_top_holder(b));
        fb.closed(a);
        fb.closed(a);
        assert_eq!((fb.total(), fb.of(a), fb.of(b)), (1, 0, 1));
        assert!(fb.is_top_holder(b));
    }
}
