//! The neighbour table: which MAC each guest address sends from.
//!
//! Bounded and aging, so a guest cannot grow it by sending from many source addresses on a large
//! `--net`: at most `min(neigh_max, LAN size)` entries, at most `neigh_max_per_mac` per MAC, and an
//! entry not refreshed by traffic for `neigh_idle` is forgotten. A refresh updates the entry in place
//! (no allocation); learning a new address costs one hash insert; when the table is full an expired
//! sweep runs at most once a second, never once per packet.

use crate::{Instant, Mac};
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: Mac,
    last: Instant,
}

/// What `learn` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Already known with this MAC (refreshed).
    Same,
    /// New address, or the address moved to this MAC.
    New,
    /// Not learned: the table (or this MAC's share of it) is full.
    Full,
}

/// The bounded, aging map from guest IP address to the MAC it sends from.
pub struct NeighTable {
    map: FxHashMap<IpAddr, Entry>,
    per_mac: FxHashMap<Mac, usize>,
    max: usize,
    max_per_mac: usize,
    idle: Duration,
    last_sweep: Option<Instant>,
}

/// How often the table is swept for idle entries.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

impl NeighTable {
    /// An empty table of at most `max` entries (at least 1), `max_per_mac` per MAC (at least 1),
    /// forgetting entries not refreshed for `idle`.
    pub fn new(max: usize, max_per_mac: usize, idle: Duration) -> Self {
        NeighTable {
            map: FxHashMap::default(),
            per_mac: FxHashMap::default(),
            max: max.max(1),
            max_per_mac: max_per_mac.max(1),
            idle,
            last_sweep: None,
        }
    }
    /// The MAC `ip` was last seen sending from, if the entry has not been swept.
    pub fn get(&self, ip: &IpAddr) -> Option<Mac> {
        self.map.get(ip).map(|e| e.mac)
    }
    /// The addresses remembered for `mac` (in no particular order).
    pub fn addrs_of(&self, mac: Mac) -> impl Iterator<Item = IpAddr> + '_ {
        self.map
            .iter()
            .filter(move |(_, e)| e.mac == mac)
            .map(|(ip, _)| *ip)
    }
    /// Every remembered (address, MAC) pair (in no particular order).
    pub fn entries(&self) -> impl Iterator<Item = (IpAddr, Mac)> + '_ {
        self.map.iter().map(|(ip, e)| (*ip, e.mac))
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// The most entries the table holds (`max` as given to [`NeighTable::new`], at least 1).
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// Records that `ip` sends from `mac` at `now`. `force` (a DHCP lease) ignores the caps: leases
    /// are bounded by the DHCP pool.
    pub fn learn(&mut self, now: Instant, ip: IpAddr, mac: Mac, force: bool) -> Learned {
        if let Some(e) = self.map.get_mut(&ip) {
            e.last = now;
            if e.mac == mac {
                return Learned::Same;
            }
            if !force && self.per_mac.get(&mac).copied().unwrap_or(0) >= self.max_per_mac {
                return Learned::Full;
            }
            let old = std::mem::replace(&mut e.mac, mac);
            dec(&mut self.per_mac, old);
            *self.per_mac.entry(mac).or_insert(0) += 1;
            return Learned::New;
        }
        if !force {
            if self.map.len() >= self.max {
                let swept_lately = self
                    .last_sweep
                    .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
                if swept_lately {
                    return Learned::Full;
                }
                self.sweep(now);
                if self.map.len() >= self.max {
                    return Learned::Full;
                }
            }
            if self.per_mac.get(&mac).copied().unwrap_or(0) >= self.max_per_mac {
                return Learned::Full;
            }
        }
        if self.last_sweep.is_none() {
            self.last_sweep = Some(now);
        }
        self.map.insert(ip, Entry { mac, last: now });
        *self.per_mac.entry(mac).or_insert(0) += 1;
        Learned::New
    }

    /// Forgets entries idle for `idle` or longer. Returns how many went.
    pub fn sweep(&mut self, now: Instant) -> usize {
        self.last_sweep = Some(now);
        let before = self.map.len();
        let (idle, per_mac) = (self.idle, &mut self.per_mac);
        self.map.retain(|_, e| {
            let keep = now.saturating_duration_since(e.last) < idle;
            if !keep {
                dec(per_mac, e.mac);
            }
            keep
        });
        before - self.map.len()
    }

    /// When the next periodic sweep is due (none while the table is empty).
    pub fn next_sweep(&self) -> Option<Instant> {
        if self.map.is_empty() {
            return None;
        }
        self.last_sweep.map(|t| t + SWEEP_EVERY)
    }
}

fn dec(m: &mut FxHashMap<Mac, usize>, k: Mac) {
    if let Some(n) = m.get_mut(&k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(&k);
        }
    }
}
