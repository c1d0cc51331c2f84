//! Storm control: a token bucket per ingress port for the frames the switch floods (broadcast,
//! multicast, and unicast to a MAC it has not learned). A guest that floods cannot turn the LAN into
//! a copy of its flood: beyond the rate, its flooded frames are dropped and counted (`drop_storm`).
//! Unicast to the gateway's MAC or to a learned MAC is never limited here.

use std::time::{Duration, Instant};

/// Default flooded frames per second per port.
pub const DEFAULT_RATE: u32 = 1000;
/// Default burst (frames allowed at once after a quiet period). A booting guest sends a few dozen
/// broadcasts and multicasts (ARP, DHCP, IPv6 ND/MLD, mDNS): far below this.
pub const DEFAULT_BURST: u32 = 200;

/// The storm-control setting: `rate` frames per second, `burst` at once; `rate == 0`: unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StormLimit {
    pub rate: u32,
    pub burst: u32,
}

impl Default for StormLimit {
    fn default() -> Self {
        StormLimit {
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
        }
    }
}

/// Fixed-point scale of the token count (tokens are counted in millionths of a frame, so rates of
/// a few frames per second refill exactly).
const SCALE: u64 = 1_000_000;

/// A token bucket with virtual time: the caller passes `now`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    limit: StormLimit,
    /// Tokens in millionths of a frame.
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: StormLimit, now: Instant) -> Self {
        TokenBucket {
            limit,
            tokens: u64::from(limit.burst.max(1)) * SCALE,
            last: now,
        }
    }

    /// Whether one more frame may pass at `now` (takes a token if so).
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.limit.rate == 0 {
            return true;
        }
        let cap = u64::from(self.limit.burst.max(1)) * SCALE;
        let dt = now.saturating_duration_since(self.last);
        // Refill; a long gap (or a clock far ahead) just fills the bucket.
        let add = if dt >= Duration::from_secs(3600) {
            cap
        } else {
            // rate <= u32::MAX frames/s, dt < 3600 s: fits in u128 comfortably.
            (u128::from(self.limit.rate) * dt.as_nanos() * u128::from(SCALE) / 1_000_000_000)
                .min(u128::from(cap)) as u64
        };
        if add > 0 {
            self.tokens = (self.tokens + add).min(cap);
            self.last = now;
        }
        if self.tokens >= SCALE {
            self.tokens -= SCALE;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(rate: u32, burst: u32) -> StormLimit {
        StormLimit { rate, burst }
    }

    fn passed(b: &mut TokenBucket, now: Instant, n: usize) -> usize {
        (0..n).filter(|_| b.allow(now)).count()
    }

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(lim(1000, 200), t0);
        // A full bucket lets exactly the burst through at once.
        assert_eq!(passed(&mut b, t0, 1000), 200);
        // 10 ms later: 10 more tokens.
        assert_eq!(passed(&mut b, t0 + Duration::from_millis(10), 1000), 10);
        // One second at full speed: about the rate, never more than rate + burst.
        let mut total = 0;
        for ms in 11..=1010 {
            total += passed(&mut b, t0 + Duration::from_millis(ms), 100);
        }
        assert_eq!(total, 1000);
        // A quiet period refills to the burst, not beyond.
        assert_eq!(passed(&mut b, t0 + Duration::from_secs(60), 1000), 200);
    }

    #[test]
    fn slow_rates_refill_exactly() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(lim(3, 1), t0);
        assert!(b.allow(t0));
        assert!(!b.allow(t0));
        // 1/3 s is one token; checks in between do not lose the fraction.
        assert!(!b.allow(t0 + Duration::from_millis(100)));
        assert!(!b.allow(t0 + Duration::from_millis(200)));
        assert!(b.allow(t0 + Duration::from_millis(334)));
        assert!(!b.allow(t0 + Duration::from_millis(334)));
    }

    #[test]
    fn zero_rate_is_unlimited_and_time_going_backwards_is_harmless() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(lim(0, 1), t0);
        assert_eq!(passed(&mut b, t0, 100_000), 100_000);
        let later = t0 + Duration::from_secs(5);
        let mut b = TokenBucket::new(lim(10, 2), later);
        assert_eq!(passed(&mut b, t0, 10), 2);
        assert_eq!(passed(&mut b, later, 10), 0);
        // A huge gap saturates instead of overflowing.
        assert_eq!(
            passed(&mut b, later + Duration::from_secs(1_000_000), 10),
            2
        );
    }
}
