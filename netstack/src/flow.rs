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
use std::time::Duration;

/// The transport a NAT flow carries; selects the NAT module and its slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// A TCP connection.
    Tcp,
    /// A UDP association between a guest port and a remote.
    Udp,
    /// An ICMP or ICMPv6 echo session.
    Icmp,
}

/// A handle on one flow's host socket, stable for the flow's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    /// Which NAT's slab the flow lives in.
    pub proto: Proto,
    /// Slot index in that slab.
    pub idx: u32,
    /// Slot generation when the flow was created; a stale id no longer matches.
    pub gen: u32,
}

/// A guest-side flow: the guest's address/port and the remote address/port as the guest sees it.
/// For ICMP echo the ports are the echo identifier and 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The guest's address.
    pub guest: IpAddr,
    /// The guest's port (the echo identifier for ICMP).
    pub guest_port: u16,
    /// The remote address as the guest sees it.
    pub remote: IpAddr,
    /// The destination port (0 for ICMP).
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
    /// The value at `idx` if the slot is live and still of generation `gen`.
    pub fn get(&self, idx: u32, gen: u32) -> Option<&T> {
        match self.slots.get(idx as usize) {
            Some((g, Some(v))) if *g == gen => Some(v),
            _ => None,
        }
    }
    /// Mutable access to the value at `idx` if live and of generation `gen`.
    pub fn get_mut(&mut self, idx: u32, gen: u32) -> Option<&mut T> {
        match self.slots.get_mut(idx as usize) {
            Some((g, Some(v))) if *g == gen => Some(v),
            _ => None,
        }
    }
    /// Takes the value out if live and of generation `gen`; the slot is reused with `gen + 1`.
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
    /// Number of live values.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether no value is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Live values with their (index, generation), in index order.
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
    /// Queues `id` to be looked at when `at` has come; duplicates are allowed (lazy deletion).
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
    /// The earliest queued deadline, possibly stale.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }
    /// Number of queued entries, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }
    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// One live flow as the flow table sees it: whom its socket is charged to, and when it last
/// carried traffic.
#[derive(Clone, Copy, Debug)]
struct Entry {
    gen: u32,
    owner: Owner,
    /// A `guestfwd ... cmd:` child of this guest (counted against its children cap).
    cmd: Option<IpAddr>,
    last: Instant,
}

/// The idle flows of one protocol (UDP or ICMP echo): a lazy timer entry per flow at or before its
/// real expiry, re-queued at the real expiry when it fires early.
struct IdleIndex {
    idle: Duration,
    timers: TimerHeap,
}

/// Every NAT flow of every protocol, by [`FlowId`]: the one place that knows who holds how many
/// flows ([`FlowBudget`]), when idle flows expire, and which idle flow to evict when the fd budget is
/// used up. The protocol NATs own their flows' protocol state; they tell this table when a flow
/// opens, carries traffic (`touch`) and closes.
pub struct FlowTable {
    budget: FlowBudget,
    /// Per protocol (TCP, UDP, ICMP), indexed like the NAT's slab.
    entries: [Vec<Option<Entry>>; 3],
    /// Idle expiry for UDP and ICMP.
    udp: IdleIndex,
    icmp: IdleIndex,
    /// Flows closed by eviction whose NAT has not forgotten them yet (`take_evicted`).
    evicted: Vec<FlowId>,
}

fn pidx(p: Proto) -> usize {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
        Proto::Icmp => 2,
    }
}

impl FlowTable {
    /// A table with `budget` whose UDP and ICMP flows expire after `udp_idle` and `icmp_idle`
    /// without traffic.
    pub fn new(budget: FlowBudget, udp_idle: Duration, icmp_idle: Duration) -> Self {
        FlowTable {
            budget,
            entries: [Vec::new(), Vec::new(), Vec::new()],
            udp: IdleIndex {
                idle: udp_idle,
                timers: TimerHeap::default(),
            },
            icmp: IdleIndex {
                idle: icmp_idle,
                timers: TimerHeap::default(),
            },
            evicted: Vec::new(),
        }
    }

    /// The accounting: live flows in all and per owner, and the limits.
    pub fn budget(&self) -> &FlowBudget {
        &self.budget
    }

    fn entry(&self, id: FlowId) -> Option<&Entry> {
        match self.entries[pidx(id.proto)].get(id.idx as usize) {
            Some(Some(e)) if e.gen == id.gen => Some(e),
            _ => None,
        }
    }

    fn index(&mut self, p: Proto) -> Option<&mut IdleIndex> {
        match p {
            Proto::Tcp => None,
            Proto::Udp => Some(&mut self.udp),
            Proto::Icmp => Some(&mut self.icmp),
        }
    }

    /// Records a new flow charged to `owner` (and, for a command child, to `cmd`'s children cap).
    /// UDP and ICMP flows start their idle timer.
    pub fn open(&mut self, id: FlowId, owner: Owner, cmd: Option<IpAddr>, now: Instant) {
        let v = &mut self.entries[pidx(id.proto)];
        let i = id.idx as usize;
        if v.len() <= i {
            v.resize(i + 1, None);
        }
        if let Some(old) = v[i].take() {
            // A slot reused without a close: never double-count.
            self.budget.closed(old.owner);
            if let Some(g) = old.cmd {
                self.budget.cmd_closed(g);
            }
        }
        v[i] = Some(Entry {
            gen: id.gen,
            owner,
            cmd,
            last: now,
        });
        self.budget.opened(owner);
        if let Some(g) = cmd {
            self.budget.cmd_opened(g);
        }
        if let Some(ix) = self.index(id.proto) {
            let at = now + ix.idle;
            ix.timers.push(at, id);
        }
    }

    /// The flow carried traffic at `now` (postpones its idle expiry).
    pub fn touch(&mut self, id: FlowId, now: Instant) {
        if let Some(Some(e)) = self.entries[pidx(id.proto)].get_mut(id.idx as usize) {
            if e.gen == id.gen {
                e.last = now;
            }
        }
    }

    /// Whom `id` is charged to, while it lives.
    pub fn owner_of(&self, id: FlowId) -> Option<Owner> {
        self.entry(id).map(|e| e.owner)
    }

    /// Forgets a closed flow and releases its share of the budget. Returns its owner.
    pub fn close(&mut self, id: FlowId) -> Option<Owner> {
        let slot = self.entries[pidx(id.proto)].get_mut(id.idx as usize)?;
        if slot.as_ref().is_none_or(|e| e.gen != id.gen) {
            return None;
        }
        let e = slot.take()?;
        self.budget.closed(e.owner);
        if let Some(g) = e.cmd {
            self.budget.cmd_closed(g);
        }
        Some(e.owner)
    }

    /// Closes (in the table) and returns the UDP and ICMP flows idle for their timeout at `now`.
    /// The caller closes their sockets and forgets them in their NAT.
    pub fn expire(&mut self, now: Instant) -> Vec<FlowId> {
        let mut out = Vec::new();
        for p in [Proto::Udp, Proto::Icmp] {
            let Some(idle) = self.index(p).map(|ix| ix.idle) else {
                continue;
            };
            while let Some(id) = self.index(p).and_then(|ix| ix.timers.pop_due(now)) {
                let Some(e) = self.entry(id) else { continue };
                let expires = e.last + idle;
                if expires > now {
                    if let Some(ix) = self.index(p) {
                        ix.timers.push(expires, id);
                    }
                    continue;
                }
                self.close(id);
                out.push(id);
            }
        }
        out
    }

    /// The least recently active flow of `p` (UDP or ICMP) and its last activity, without
    /// scanning: stale heap entries met on the way are re-queued at their flow's real expiry (each
    /// flow has exactly one entry, at or before its real expiry, so the first accurate entry is the
    /// oldest flow).
    fn oldest(&mut self, p: Proto) -> Option<(FlowId, Instant)> {
        loop {
            let ix = self.index(p)?;
            let idle = ix.idle;
            let Reverse((at, id)) = *ix.timers.heap.peek()?;
            let last = match self.entry(id) {
                Some(e) => e.last,
                None => {
                    self.index(p)?.timers.heap.pop();
                    continue;
                }
            };
            if last + idle > at {
                let ix = self.index(p)?;
                ix.timers.heap.pop();
                ix.timers.push(last + idle, id);
                continue;
            }
            return Some((id, last));
        }
    }

    /// The least recently active UDP or ICMP flow, its last activity and owner: the candidate for
    /// eviction under the fd budget.
    pub fn oldest_idle(&mut self) -> Option<(FlowId, Instant, Owner)> {
        let u = self.oldest(Proto::Udp);
        let i = self.oldest(Proto::Icmp);
        let (id, last) = match (u, i) {
            (Some(u), Some(i)) => {
                if i.1 < u.1 {
                    i
                } else {
                    u
                }
            }
            (u, i) => u.or(i)?,
        };
        Some((id, last, self.owner_of(id)?))
    }

    /// Closes `id` in the table as evicted; its NAT forgets it at [`FlowTable::take_evicted`].
    pub fn evict(&mut self, id: FlowId) -> Option<Owner> {
        let owner = self.close(id)?;
        self.evicted.push(id);
        Some(owner)
    }

    /// The flows evicted since the last call (their NATs must forget them).
    pub fn take_evicted(&mut self) -> Vec<FlowId> {
        std::mem::take(&mut self.evicted)
    }

    /// Whether any evicted flow waits to be forgotten by its NAT.
    pub fn has_evicted(&self) -> bool {
        !self.evicted.is_empty()
    }

    /// When the next idle timer is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.udp.timers.next(), self.icmp.timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
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
/// the driver says (`FrameBatch::from_port`), so that one port cannot multiply its share by
/// using many addresses or MACs; otherwise (host-initiated forwards, callers that name no port) the
/// guest's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The switch port (driver-assigned number) the guest's frames arrived on.
    Port(u32),
    /// The guest's address, when no port is known.
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
    /// Limits for `max_total` flows in all (at least 1), `max_per_guest` per owner (at least 1) and
    /// `max_cmd_per_guest` command children per guest; nothing live yet.
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
    /// Counts a new flow of `owner`; called by [`FlowTable::open`], which enforces nothing itself.
    pub fn opened(&mut self, owner: Owner) {
        self.total += 1;
        *self.per_guest.entry(owner).or_insert(0) += 1;
    }
    /// Releases one flow of `owner` (saturating; unknown owners are ignored).
    pub fn closed(&mut self, owner: Owner) {
        self.total = self.total.saturating_sub(1);
        dec(&mut self.per_guest, owner);
    }
    /// Counts a new `guestfwd ... cmd:` child of `guest`.
    pub fn cmd_opened(&mut self, guest: IpAddr) {
        *self.cmd_per_guest.entry(guest).or_insert(0) += 1;
    }
    /// Releases one command child of `guest` (saturating).
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
