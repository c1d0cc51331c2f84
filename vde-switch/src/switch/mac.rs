//! The learning L2 switch's MAC table: aging, unicast to the learned port, flooding of
//! broadcast/multicast/unknown destinations. The gateway is not a port here: it is addressed by its
//! MAC (see `switch/mod.rs`). Generic over the port key, so that it is tested with plain numbers.
//!
//! The table is bounded: at most `max` MACs in all and `per_port` on one port. A new MAC beyond a
//! bound is refused ([`Refused::MacLimit`]); entries that aged out make room, live entries of other
//! ports are never evicted.

use netstack::Mac;
use rustc_hash::FxHashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long a learned MAC stays bound to its port without traffic.
pub const MAC_AGING: Duration = Duration::from_secs(300);
/// Default bound on learned MACs in all.
pub const DEFAULT_MAX_MACS: usize = 4096;
/// Default bound on MACs learned on one port (a tap or VDE port may carry a few; a guest is one).
pub const DEFAULT_MAX_MACS_PER_PORT: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Entry<P> {
    port: P,
    seen: Instant,
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest<P> {
    /// To one port.
    Port(P),
    /// To every port but the source (and to the gateway when `gateway` is set).
    Flood { gateway: bool },
    /// To the gateway only.
    Gateway,
    /// Nowhere (e.g. back to its own port).
    Drop,
}

/// Why a frame was not accepted from a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused<P> {
    /// The source MAC is the gateway's.
    GatewayMac,
    /// The source MAC is live on another port.
    MacInUse(P),
    /// The source MAC is a group address.
    GroupSource,
    /// The source MAC is new and the table (or this port's share of it) is full.
    MacLimit,
}

pub struct MacTable<P> {
    entries: FxHashMap<Mac, Entry<P>>,
    /// Entries per port.
    per_port_count: FxHashMap<P, usize>,
    max: usize,
    per_port: usize,
    last_sweep: Option<Instant>,
}

impl<P: Copy + Eq + Hash> Default for MacTable<P> {
    fn default() -> Self {
        MacTable::new(DEFAULT_MAX_MACS, DEFAULT_MAX_MACS_PER_PORT)
    }
}

impl<P: Copy + Eq + Hash> MacTable<P> {
    /// A table of at most `max` MACs, `per_port` on one port.
    pub fn new(max: usize, per_port: usize) -> Self {
        MacTable {
            entries: FxHashMap::default(),
            per_port_count: FxHashMap::default(),
            max: max.max(1),
            per_port: per_port.max(1),
            last_sweep: None,
        }
    }

    fn count(&self, port: P) -> usize {
        self.per_port_count.get(&port).copied().unwrap_or(0)
    }

    fn dec(&mut self, port: P) {
        if let Some(c) = self.per_port_count.get_mut(&port) {
            *c -= 1;
            if *c == 0 {
                self.per_port_count.remove(&port);
            }
        }
    }

    /// Whether one more MAC fits on `port` (sweeping aged entries, at most once a second, if not).
    fn room(&mut self, now: Instant, port: P) -> bool {
        let fits = |t: &Self| t.entries.len() < t.max && t.count(port) < t.per_port;
        if fits(self) {
            return true;
        }
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.expire(now);
        }
        fits(self)
    }

    /// Learns `src` on `port` and decides where a frame to `dst` goes.
    pub fn forward(
        &mut self,
        now: Instant,
        port: P,
        src: Mac,
        dst: Mac,
        gateway: Mac,
    ) -> Result<Dest<P>, Refused<P>> {
        if src == gateway {
            return Err(Refused::GatewayMac);
        }
        if src[0] & 1 == 1 {
            return Err(Refused::GroupSource);
        }
        match self.entries.get(&src).copied() {
            Some(e) if e.port != port && now.saturating_duration_since(e.seen) < MAC_AGING => {
                return Err(Refused::MacInUse(e.port));
            }
            Some(e) if e.port == port => {
                if let Some(e) = self.entries.get_mut(&src) {
                    e.seen = now;
                }
            }
            Some(e) => {
                // Aged out on another port: it moves here if this port has room.
                if self.count(port) >= self.per_port {
                    return Err(Refused::MacLimit);
                }
                self.dec(e.port);
                *self.per_port_count.entry(port).or_default() += 1;
                self.entries.insert(src, Entry { port, seen: now });
            }
            None => {
                if !self.room(now, port) {
                    return Err(Refused::MacLimit);
                }
                *self.per_port_count.entry(port).or_default() += 1;
                self.entries.insert(src, Entry { port, seen: now });
            }
        }
        Ok(self.lookup(now, dst, gateway, Some(port)))
    }

    /// Where a frame to `dst` goes (from the gateway when `from` is None).
    pub fn lookup(&self, now: Instant, dst: Mac, gateway: Mac, from: Option<P>) -> Dest<P> {
        if dst == gateway {
            return if from.is_some() {
                Dest::Gateway
            } else {
                Dest::Drop
            };
        }
        if dst[0] & 1 == 1 {
            return Dest::Flood {
                gateway: from.is_some(),
            };
        }
        match self.entries.get(&dst) {
            Some(e) if now.saturating_duration_since(e.seen) < MAC_AGING => {
                if Some(e.port) == from {
                    Dest::Drop
                } else {
                    Dest::Port(e.port)
                }
            }
            _ => Dest::Flood { gateway: false },
        }
    }

    /// Forgets every MAC learned on `port` (it went away); returns them.
    pub fn remove_port(&mut self, port: P) -> Vec<Mac> {
        let mut gone = Vec::new();
        self.entries.retain(|m, e| {
            let keep = e.port != port;
            if !keep {
                gone.push(*m);
            }
            keep
        });
        self.per_port_count.remove(&port);
        gone
    }

    /// Drops entries older than the aging time.
    pub fn expire(&mut self, now: Instant) {
        self.last_sweep = Some(now);
        let counts = &mut self.per_port_count;
        self.entries.retain(|_, e| {
            let keep = now.saturating_duration_since(e.seen) < MAC_AGING;
            if !keep {
                if let Some(c) = counts.get_mut(&e.port) {
                    *c -= 1;
                }
            }
            keep
        });
        counts.retain(|_, c| *c > 0);
    }

    /// The live MACs learned on ports for which `pred` holds.
    pub fn macs_on(&self, now: Instant, pred: impl Fn(P) -> bool) -> Vec<Mac> {
        self.entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.seen) < MAC_AGING && pred(e.port))
            .map(|(m, _)| *m)
            .collect()
    }

    /// MACs learned on `port`.
    pub fn port_len(&self, port: P) -> usize {
        self.count(port)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Mac = [0x52, 0x55, 10, 0, 2, 2];
    const A: Mac = [0x52, 0x54, 0, 0, 0, 1];
    const B: Mac = [0x52, 0x54, 0, 0, 0, 2];
    const BC: Mac = [0xff; 6];

    #[test]
    fn learns_floods_and_unicasts() {
        let mut t = MacTable::default();
        let now = Instant::now();
        assert_eq!(
            t.forward(now, 1, A, BC, GW),
            Ok(Dest::Flood { gateway: true })
        );
        assert_eq!(t.forward(now, 2, B, A, GW), Ok(Dest::Port(1)));
        assert_eq!(t.forward(now, 1, A, B, GW), Ok(Dest::Port(2)));
        assert_eq!(t.forward(now, 1, A, GW, GW), Ok(Dest::Gateway));
        assert_eq!(
            t.forward(now, 1, A, [0x52, 0x54, 0, 0, 0, 9], GW),
            Ok(Dest::Flood { gateway: false })
        );
        assert_eq!(t.lookup(now, A, GW, None), Dest::Port(1));
        assert_eq!(t.lookup(now, BC, GW, None), Dest::Flood { gateway: false });
    }

    #[test]
    fn refuses_gateway_mac_and_live_mac_moves() {
        let mut t = MacTable::default();
        let now = Instant::now();
        assert_eq!(t.forward(now, 1, GW, BC, GW), Err(Refused::GatewayMac));
        assert_eq!(t.forward(now, 1, BC, A, GW), Err(Refused::GroupSource));
        t.forward(now, 1, A, BC, GW).expect("learn");
        assert_eq!(t.forward(now, 2, A, BC, GW), Err(Refused::MacInUse(1)));
        // After the old port goes away, or the entry ages out, the MAC may move.
        t.remove_port(1);
        assert!(t.forward(now, 2, A, BC, GW).is_ok());
        let later = now + MAC_AGING + Duration::from_secs(1);
        assert!(t.forward(later, 3, A, BC, GW).is_ok());
    }

    fn m(n: u16) -> Mac {
        let [a, b] = n.to_be_bytes();
        [0x52, 0x54, 0, 1, a, b]
    }

    #[test]
    fn per_port_cap_refuses_new_macs_only() {
        let mut t = MacTable::new(100, 4);
        let now = Instant::now();
        for i in 0..4 {
            assert!(t.forward(now, 1, m(i), BC, GW).is_ok());
        }
        assert_eq!(t.forward(now, 1, m(4), BC, GW), Err(Refused::MacLimit));
        // Known MACs of that port keep working; other ports are not affected.
        assert!(t.forward(now, 1, m(0), BC, GW).is_ok());
        assert!(t.forward(now, 2, m(5), BC, GW).is_ok());
        assert_eq!(t.port_len(1), 4);
        assert_eq!(t.port_len(2), 1);
        // Aged entries make room again.
        let later = now + MAC_AGING;
        assert!(t.forward(later, 1, m(4), BC, GW).is_ok());
        assert_eq!(t.port_len(1), 1);
        assert_eq!(t.len(), 1);
        // A port that goes away frees its share.
        for i in 10..13 {
            assert!(t.forward(later, 1, m(i), BC, GW).is_ok());
        }
        assert_eq!(t.remove_port(1).len(), 4);
        assert_eq!(t.port_len(1), 0);
        assert!(t.forward(later, 1, m(20), BC, GW).is_ok());
    }

    #[test]
    fn total_cap_never_evicts_live_entries_of_other_ports() {
        let mut t = MacTable::new(6, 4);
        let now = Instant::now();
        for i in 0..4 {
            assert!(t.forward(now, 1, m(i), BC, GW).is_ok());
        }
        assert!(t.forward(now, 2, m(10), BC, GW).is_ok());
        assert!(t.forward(now, 2, m(11), BC, GW).is_ok());
        // Full: a third port cannot join with a new MAC, and nobody lost theirs.
        assert_eq!(t.forward(now, 3, m(20), BC, GW), Err(Refused::MacLimit));
        assert_eq!(t.lookup(now, m(0), GW, Some(2)), Dest::Port(1));
        assert_eq!(t.lookup(now, m(11), GW, Some(1)), Dest::Port(2));
        // A MAC that aged out on port 1 may move to a port with room, keeping the counts right.
        let later = now + MAC_AGING;
        assert!(t.forward(later, 2, m(0), BC, GW).is_ok());
        assert_eq!(t.port_len(2), 3);
        assert!(t.forward(later, 3, m(20), BC, GW).is_ok());
        assert_eq!(t.len(), 2);
        // Hammering a full table with new MACs stays refused and bounded.
        let mut t = MacTable::new(8, 8);
        for i in 0..10_000 {
            let _ = t.forward(now, 1 + u32::from(i % 3), m(i), BC, GW);
        }
        assert_eq!(t.len(), 8);
    }
}
