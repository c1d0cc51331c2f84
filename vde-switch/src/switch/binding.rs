//! IP source guard: which MAC may use which LAN address.
//!
//! A DHCP lease binds its address to the MAC that holds it (the gateway's DHCP server is asked, see
//! [`Guard::check`]'s `lease_holder`); the MAC is bound to its port by the MAC table. Addresses in use
//! without a lease (statically configured guests, e.g. the `--netns --configure` tap at .100) are
//! bound to the first MAC seen using them, in a bounded table whose entries age out when the address
//! is not used for [`BIND_AGING`]. A frame that claims an address bound to another MAC is refused.
//!
//! Addresses are `IpAddr` so that IPv6 (when the gateway serves it) binds the same way.

use netstack::Mac;
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long an address without a lease stays bound to its MAC without being used.
pub const BIND_AGING: Duration = Duration::from_secs(300);
/// Addresses one MAC may hold without a lease (aliases); beyond this its oldest is forgotten.
pub const PER_MAC: usize = 8;
/// Default bound on the whole table.
pub const DEFAULT_MAX: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Binding {
    mac: Mac,
    seen: Instant,
}

/// Why a claim was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The address may be used by this MAC.
    Ok,
    /// The address is leased to, or in use by, another MAC.
    Spoofed(Mac),
    /// The table is full (and nothing in it has aged out): new addresses are refused.
    Full,
}

pub struct Guard {
    by_ip: FxHashMap<IpAddr, Binding>,
    /// The addresses each MAC holds (at most [`PER_MAC`]).
    by_mac: FxHashMap<Mac, Vec<IpAddr>>,
    max: usize,
    last_sweep: Option<Instant>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(DEFAULT_MAX)
    }
}

impl Guard {
    pub fn new(max: usize) -> Self {
        Guard {
            by_ip: FxHashMap::default(),
            by_mac: FxHashMap::default(),
            max: max.max(1),
            last_sweep: None,
        }
    }

    /// May `mac` use `ip` at `now`? `lease_holder` is the MAC the DHCP server leased (or offered)
    /// `ip` to, if any: a lease always wins. Otherwise the address is bound to the first live user.
    pub fn check(
        &mut self,
        now: Instant,
        mac: Mac,
        ip: IpAddr,
        lease_holder: Option<Mac>,
    ) -> Verdict {
        if let Some(holder) = lease_holder {
            if holder != mac {
                return Verdict::Spoofed(holder);
            }
        }
        let leased = lease_holder.is_some();
        match self.by_ip.get_mut(&ip) {
            Some(b) if b.mac == mac => {
                b.seen = now;
                return Verdict::Ok;
            }
            Some(b) if !leased && now.saturating_duration_since(b.seen) < BIND_AGING => {
                return Verdict::Spoofed(b.mac);
            }
            Some(_) => {
                // Aged out, or leased to `mac` since: the address moves.
                self.remove(ip);
            }
            None => {}
        }
        if self.by_ip.len() >= self.max {
            self.sweep(now);
            if self.by_ip.len() >= self.max {
                // A leased address is still usable; it just is not recorded.
                return if leased { Verdict::Ok } else { Verdict::Full };
            }
        }
        let list = self.by_mac.entry(mac).or_default();
        if list.len() >= PER_MAC {
            // Forget this MAC's least recently used address (its own, nobody else's).
            let by_ip = &self.by_ip;
            if let Some((i, _)) = list
                .iter()
                .enumerate()
                .min_by_key(|(_, a)| by_ip.get(a).map(|b| b.seen))
            {
                let old = list.swap_remove(i);
                self.by_ip.remove(&old);
            }
        }
        list.push(ip);
        self.by_ip.insert(ip, Binding { mac, seen: now });
        Verdict::Ok
    }

    fn remove(&mut self, ip: IpAddr) {
        if let Some(b) = self.by_ip.remove(&ip) {
            if let Some(list) = self.by_mac.get_mut(&b.mac) {
                list.retain(|a| *a != ip);
                if list.is_empty() {
                    self.by_mac.remove(&b.mac);
                }
            }
        }
    }

    /// Forgets the addresses of `mac` (its port went away).
    pub fn remove_mac(&mut self, mac: &Mac) {
        if let Some(list) = self.by_mac.remove(mac) {
            for ip in list {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Drops bindings not used for [`BIND_AGING`].
    pub fn expire(&mut self, now: Instant) {
        self.last_sweep = Some(now);
        let dead: Vec<IpAddr> = self
            .by_ip
            .iter()
            .filter(|(_, b)| now.saturating_duration_since(b.seen) >= BIND_AGING)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in dead {
            self.remove(ip);
        }
    }

    /// [`Guard::expire`] at most once a second (a full table is checked on every new claim).
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.expire(now);
        }
    }

    /// The MAC bound to `ip`, if any (live or not).
    pub fn holder(&self, ip: &IpAddr) -> Option<Mac> {
        self.by_ip.get(ip).map(|b| b.mac)
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: Mac = [0x52, 0x54, 0, 0, 0, 1];
    const B: Mac = [0x52, 0x54, 0, 0, 0, 2];

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 2, n))
    }

    #[test]
    fn a_lease_binds_its_address_to_its_mac() {
        let mut g = Guard::default();
        let t = Instant::now();
        assert_eq!(g.check(t, A, ip(15), Some(A)), Verdict::Ok);
        assert_eq!(g.check(t, B, ip(15), Some(A)), Verdict::Spoofed(A));
        // A lease wins over an earlier binding without one (the address was free when leased).
        assert_eq!(g.check(t, B, ip(16), None), Verdict::Ok);
        assert_eq!(g.check(t, A, ip(16), Some(A)), Verdict::Ok);
        assert_eq!(g.holder(&ip(16)), Some(A));
        assert_eq!(g.check(t, B, ip(16), Some(A)), Verdict::Spoofed(A));
    }

    #[test]
    fn without_a_lease_the_first_live_user_holds_the_address() {
        let mut g = Guard::default();
        let t = Instant::now();
        assert_eq!(g.check(t, A, ip(100), None), Verdict::Ok);
        assert_eq!(g.check(t, A, ip(100), None), Verdict::Ok);
        assert_eq!(g.check(t, B, ip(100), None), Verdict::Spoofed(A));
        // Still in use just before the aging time: still A's.
        let t1 = t + BIND_AGING - Duration::from_secs(1);
        assert_eq!(g.check(t1, A, ip(100), None), Verdict::Ok);
        let t2 = t1 + BIND_AGING - Duration::from_secs(1);
        assert_eq!(g.check(t2, B, ip(100), None), Verdict::Spoofed(A));
        // Unused for the aging time: free for someone else.
        let t3 = t1 + BIND_AGING;
        assert_eq!(g.check(t3, B, ip(100), None), Verdict::Ok);
        assert_eq!(g.check(t3, A, ip(100), None), Verdict::Spoofed(B));
        // Its port went away: free at once.
        g.remove_mac(&B);
        assert_eq!(g.check(t3, A, ip(100), None), Verdict::Ok);
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn the_table_is_bounded_per_mac_and_in_total() {
        let t = Instant::now();
        let mut g = Guard::new(20);
        // One MAC cycling through addresses keeps only its PER_MAC most recent ones.
        for n in 0..50u8 {
            let now = t + Duration::from_millis(u64::from(n));
            assert_eq!(g.check(now, A, ip(n), None), Verdict::Ok);
        }
        assert_eq!(g.len(), PER_MAC);
        assert_eq!(g.holder(&ip(49)), Some(A));
        assert_eq!(g.holder(&ip(0)), None);
        // Many MACs: the table fills, then refuses new addresses, never taking live ones.
        for m in 0..40u8 {
            let mac = [0x52, 0x54, 0, 0, 1, m];
            let v = g.check(t, mac, ip(100 + m), None);
            if m < 12 {
                assert_eq!(v, Verdict::Ok, "mac {m}");
            } else {
                assert_eq!(v, Verdict::Full, "mac {m}");
            }
        }
        assert_eq!(g.len(), 20);
        assert_eq!(g.holder(&ip(49)), Some(A));
        // A leased address still passes when the table is full.
        assert_eq!(g.check(t, B, ip(200), Some(B)), Verdict::Ok);
        // Once entries age out, new claims fit again.
        let later = t + BIND_AGING + Duration::from_secs(1);
        assert_eq!(g.check(later, B, ip(201), None), Verdict::Ok);
        assert_eq!(g.len(), 1);
    }
}
