//! Where a guest's flow goes: one pure function, [`classify`], decides it (like passt's `fwd.c`).
//!
//! Destinations that are not the outside world are never NATed: the unspecified network 0.0.0.0/8,
//! loopback 127.0.0.0/8 (and `::1`, `::`, v4-mapped `::ffff:127.x`), broadcast (255.255.255.255 and
//! the LAN's directed broadcast), multicast (224.0.0.0/4, ff00::/8), the reserved 240.0.0.0/4, IPv6
//! link-local, and the LAN's own addresses. The host's loopback is reached only through the gateway
//! address, and only when host loopback is on.

use crate::config::{Config, GuestFwdTarget};
use crate::flow::Proto;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where a guest flow goes on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Connect or send to this host address: the real destination, a `guestfwd` target, the DNS
    /// upstream (TCP to the DNS address), or host loopback (the gateway address).
    Addr(SocketAddr),
    /// Run this `guestfwd ... cmd:` shell command and splice the flow to its stdin/stdout.
    Command(String),
}

/// Why a destination is never NATed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadDest {
    /// 0.0.0.0/8 or `::`.
    Unspecified,
    /// 127.0.0.0/8 or `::1` (the host's loopback is reached only via the gateway address).
    Loopback,
    /// 255.255.255.255 or the LAN's directed broadcast.
    Broadcast,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// 240.0.0.0/4 (other than the broadcast address).
    Reserved,
    /// IPv6 link-local (fe80::/10).
    LinkLocal,
    /// An address of the LAN itself (guests are reached through the switch, not the host).
    Lan,
}

/// The verdict for one new flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// A host socket to this target.
    Host(Target),
    /// A gateway address without such a service, or `restrict`: refused (TCP answers RST).
    Refused,
    /// Not the outside world: dropped and counted (`drop_bad_dest`).
    Bad(BadDest),
}

/// Decides where a guest flow to `dst:port` goes. `dns_upstream` is where TCP to the DNS address
/// goes. For ICMP, `port` is 0.
pub fn classify(
    cfg: &Config,
    dns_upstream: Option<SocketAddr>,
    dst: IpAddr,
    port: u16,
    proto: Proto,
) -> Dest {
    let v4 = match dst {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                // ::ffff:a.b.c.d follows the IPv4 rules, but never reaches the gateway's services.
                return match classify_v4_bad(cfg, v4) {
                    Some(b) => Dest::Bad(b),
                    None if is_virtual(cfg, v4) => Dest::Bad(BadDest::Lan),
                    None if cfg.restrict => Dest::Refused,
                    None => Dest::Host(Target::Addr(SocketAddr::new(IpAddr::V4(v4), port))),
                };
            }
            if let Some(plan) = &cfg.v6 {
                if v6 == plan.dns {
                    return match (proto, port, dns_upstream) {
                        (Proto::Tcp, 53, Some(up)) => Dest::Host(Target::Addr(up)),
                        _ => Dest::Refused,
                    };
                }
                if v6 == plan.router || v6 == plan.router_ll {
                    return if cfg.restrict || !cfg.host_loopback {
                        Dest::Refused
                    } else {
                        Dest::Host(Target::Addr(SocketAddr::new(
                            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                            port,
                        )))
                    };
                }
                if plan.net.contains(v6) {
                    return Dest::Bad(BadDest::Lan);
                }
            }
            let bad = if v6.is_unspecified() {
                Some(BadDest::Unspecified)
            } else if v6.is_loopback() {
                Some(BadDest::Loopback)
            } else if v6.is_multicast() {
                Some(BadDest::Multicast)
            } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                Some(BadDest::LinkLocal)
            } else {
                None
            };
            return match bad {
                Some(b) => Dest::Bad(b),
                None if cfg.restrict => Dest::Refused,
                None => Dest::Host(Target::Addr(SocketAddr::new(dst, port))),
            };
        }
    };
    if proto == Proto::Tcp {
        if let Some(g) = cfg
            .guestfwds
            .iter()
            .find(|g| g.addr == v4 && g.port == port)
        {
            return Dest::Host(match &g.target {
                GuestFwdTarget::Connect(a) => Target::Addr(*a),
                GuestFwdTarget::Command(c) => Target::Command(c.clone()),
            });
        }
    }
    if v4 == cfg.dns {
        return match (proto, port, dns_upstream) {
            (Proto::Tcp, 53, Some(up)) => Dest::Host(Target::Addr(up)),
            _ => Dest::Refused,
        };
    }
    if v4 == cfg.gateway {
        return if cfg.restrict || !cfg.host_loopback {
            Dest::Refused
        } else {
            Dest::Host(Target::Addr(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
            )))
        };
    }
    if is_virtual(cfg, v4) {
        return Dest::Refused;
    }
    if let Some(b) = classify_v4_bad(cfg, v4) {
        return Dest::Bad(b);
    }
    if cfg.restrict {
        return Dest::Refused;
    }
    Dest::Host(Target::Addr(SocketAddr::new(dst, port)))
}

fn is_virtual(cfg: &Config, ip: Ipv4Addr) -> bool {
    ip == cfg.gateway || ip == cfg.dns || cfg.guestfwds.iter().any(|g| g.addr == ip)
}

fn classify_v4_bad(cfg: &Config, ip: Ipv4Addr) -> Option<BadDest> {
    let o = ip.octets();
    if o[0] == 0 {
        Some(BadDest::Unspecified)
    } else if ip.is_loopback() {
        Some(BadDest::Loopback)
    } else if ip.is_broadcast() || (ip == cfg.net.broadcast()) {
        Some(BadDest::Broadcast)
    } else if ip.is_multicast() {
        Some(BadDest::Multicast)
    } else if o[0] >= 240 {
        Some(BadDest::Reserved)
    } else if cfg.net.contains(ip) {
        Some(BadDest::Lan)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GuestFwd;

    fn cfg() -> Config {
        Config {
            guestfwds: vec![
                GuestFwd {
                    addr: Ipv4Addr::new(10, 0, 2, 100),
                    port: 8080,
                    target: GuestFwdTarget::Connect("127.0.0.1:80".parse().expect("addr")),
                },
                GuestFwd {
                    addr: Ipv4Addr::new(10, 0, 2, 101),
                    port: 7,
                    target: GuestFwdTarget::Command("cat".into()),
                },
            ],
            ..Config::default()
        }
    }

    fn host(s: &str) -> Dest {
        Dest::Host(Target::Addr(s.parse().expect("addr")))
    }

    #[test]
    fn destination_table() {
        use BadDest::*;
        use Proto::*;
        let up: SocketAddr = "192.0.2.53:53".parse().expect("addr");
        let cases: &[(&str, u16, Proto, Dest)] = &[
            // The outside world.
            ("192.0.2.80", 80, Tcp, host("192.0.2.80:80")),
            ("8.8.8.8", 53, Udp, host("8.8.8.8:53")),
            ("192.0.2.1", 0, Icmp, host("192.0.2.1:0")),
            ("2001:db8::1", 443, Tcp, host("[2001:db8::1]:443")),
            ("::ffff:192.0.2.80", 80, Tcp, host("192.0.2.80:80")),
            // The gateway is the host's loopback.
            ("10.0.2.2", 8000, Tcp, host("127.0.0.1:8000")),
            ("10.0.2.2", 5353, Udp, host("127.0.0.1:5353")),
            ("10.0.2.2", 0, Icmp, host("127.0.0.1:0")),
            // The DNS address carries TCP DNS only.
            ("10.0.2.3", 53, Tcp, host("192.0.2.53:53")),
            ("10.0.2.3", 80, Tcp, Dest::Refused),
            ("10.0.2.3", 0, Icmp, Dest::Refused),
            // Guestfwds (TCP only).
            ("10.0.2.100", 8080, Tcp, host("127.0.0.1:80")),
            (
                "10.0.2.101",
                7,
                Tcp,
                Dest::Host(Target::Command("cat".into())),
            ),
            ("10.0.2.100", 8081, Tcp, Dest::Refused),
            ("10.0.2.100", 8080, Udp, Dest::Refused),
            // Never NATed.
            ("0.0.0.0", 80, Tcp, Dest::Bad(Unspecified)),
            ("0.1.2.3", 80, Udp, Dest::Bad(Unspecified)),
            ("127.0.0.1", 22, Tcp, Dest::Bad(Loopback)),
            ("127.1.2.3", 53, Udp, Dest::Bad(Loopback)),
            ("127.0.0.1", 0, Icmp, Dest::Bad(Loopback)),
            ("255.255.255.255", 9, Udp, Dest::Bad(Broadcast)),
            ("10.0.2.255", 9, Udp, Dest::Bad(Broadcast)),
            ("224.0.0.251", 5353, Udp, Dest::Bad(Multicast)),
            ("239.255.255.250", 1900, Udp, Dest::Bad(Multicast)),
            ("240.0.0.1", 80, Tcp, Dest::Bad(Reserved)),
            ("10.0.2.15", 22, Tcp, Dest::Bad(Lan)),
            ("10.0.2.0", 22, Tcp, Dest::Bad(Lan)),
            ("10.0.2.16", 0, Icmp, Dest::Bad(Lan)),
            ("::1", 22, Tcp, Dest::Bad(Loopback)),
            ("::", 22, Tcp, Dest::Bad(Unspecified)),
            ("::ffff:127.0.0.1", 22, Tcp, Dest::Bad(Loopback)),
            ("::ffff:0.0.0.0", 22, Tcp, Dest::Bad(Unspecified)),
            ("::ffff:10.0.2.2", 22, Tcp, Dest::Bad(Lan)),
            ("::ffff:10.0.2.15", 22, Tcp, Dest::Bad(Lan)),
            ("::ffff:224.0.0.1", 22, Udp, Dest::Bad(Multicast)),
            ("ff02::1", 547, Udp, Dest::Bad(Multicast)),
            ("fe80::1", 22, Tcp, Dest::Bad(LinkLocal)),
        ];
        let c = cfg();
        for (dst, port, proto, want) in cases {
            let got = classify(&c, Some(up), dst.parse().expect("ip"), *port, *proto);
            assert_eq!(&got, want, "{proto:?} to {dst}:{port}");
        }
    }

    #[test]
    fn host_loopback_off_and_restrict() {
        let mut c = cfg();
        c.host_loopback = false;
        let gw: IpAddr = "10.0.2.2".parse().expect("ip");
        assert_eq!(classify(&c, None, gw, 80, Proto::Tcp), Dest::Refused);
        // No DNS upstream: TCP DNS is refused.
        let dns: IpAddr = "10.0.2.3".parse().expect("ip");
        assert_eq!(classify(&c, None, dns, 53, Proto::Tcp), Dest::Refused);
        c.host_loopback = true;
        c.restrict = true;
        let out: IpAddr = "192.0.2.80".parse().expect("ip");
        assert_eq!(classify(&c, None, out, 80, Proto::Tcp), Dest::Refused);
        assert_eq!(classify(&c, None, gw, 80, Proto::Tcp), Dest::Refused);
        // Bad destinations stay bad (and counted) under restrict too; guestfwds still work.
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            classify(&c, None, lo, 80, Proto::Tcp),
            Dest::Bad(BadDest::Loopback)
        );
        let gf: IpAddr = "10.0.2.100".parse().expect("ip");
        assert_eq!(
            classify(&c, None, gf, 8080, Proto::Tcp),
            host("127.0.0.1:80")
        );
        // A different --net moves the directed broadcast.
        let c = Config {
            net: crate::config::Ipv4Net::parse("192.168.76.0/24").expect("net"),
            ..Config::default()
        };
        let b: IpAddr = "192.168.76.255".parse().expect("ip");
        assert_eq!(
            classify(&c, None, b, 9, Proto::Udp),
            Dest::Bad(BadDest::Broadcast)
        );
        let old: IpAddr = "10.0.2.255".parse().expect("ip");
        assert_eq!(classify(&c, None, old, 9, Proto::Udp), host("10.0.2.255:9"));
    }
}
