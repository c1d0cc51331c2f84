//! The learning L2 switch: a MAC table with aging, unicast to the learned port, flooding of
//! broadcast/multicast/unknown destinations. The gateway is one port (see `server.rs`).

use netstack::Mac;
use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};

/// A switch port number. The gateway is not in the table; it is addressed by its MAC.
pub type PortId = u32;

/// How long a learned MAC stays bound to its port without traffic.
pub const MAC_AGING: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: PortId,
    seen: Instant,
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// To one port.
    Port(PortId),
    /// To every port but the source (and to the gateway when `gateway` is set).
    Flood { gateway: bool },
    /// To the gateway only.
    Gateway,
    /// Nowhere (e.g. back to its own port).
    Drop,
}

/// Why a frame was not accepted from a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The source MAC is the gateway's.
    GatewayMac,
    /// The source MAC is live on another port.
    MacInUse(PortId),
    /// The source MAC is a group address.
    GroupSource,
}

#[derive(Default)]
pub struct MacTable {
    entries: FxHashMap<Mac, Entry>,
}

impl MacTable {
    /// Learns `src` on `port` and decides where a frame to `dst` goes.
    pub fn forward(
        &mut self,
        now: Instant,
        port: PortId,
        src: Mac,
        dst: Mac,
        gateway: Mac,
    ) -> Result<Dest, Refused> {
        if src == gateway {
            return Err(Refused::GatewayMac);
        }
        if src[0] & 1 == 1 {
            return Err(Refused::GroupSource);
        }
        match self.entries.get_mut(&src) {
            Some(e) if e.port != port && now.saturating_duration_since(e.seen) < MAC_AGING => {
                return Err(Refused::MacInUse(e.port));
            }
            Some(e) => {
                e.port = port;
                e.seen = now;
            }
            None => {
                self.entries.insert(src, Entry { port, seen: now });
            }
        }
        Ok(self.lookup(now, dst, gateway, Some(port)))
    }

    /// Where a frame to `dst` goes (from the gateway when `from` is None).
    pub fn lookup(&self, now: Instant, dst: Mac, gateway: Mac, from: Option<PortId>) -> Dest {
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

    /// Forgets every MAC learned on `port` (it went away).
    pub fn remove_port(&mut self, port: PortId) {
        self.entries.retain(|_, e| e.port != port);
    }

    /// Drops entries older than the aging time.
    pub fn expire(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.seen) < MAC_AGING);
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
}
