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

    pub fn len(&self) -> usize {
        self.flows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
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
}
