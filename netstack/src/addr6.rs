//! The IPv6 address plan: the guests' prefix, the router (and host-loopback) address, the DNS
//! address and the router's link-local address, with the parsers for warren's `--net6`,
//! `--gateway6`, `--dns-addr6` and QEMU's `ipv6-net=`, `ipv6-prefix=`, `ipv6-prefixlen=`,
//! `ipv6-host=`, `ipv6-dns=` values.
//!
//! Defaults:
//! * QEMU `-netdev user` (slirp): prefix `fec0::/64`, router `fec0::2` (also the host's `::1`),
//!   DNS `fec0::3` ([`Plan6::slirp`]).
//! * slirp4netns `--enable-ipv6`: prefix `fd00::/64`, router `fd00::2`, DNS `fd00::3`, and the
//!   namespace's own address `fd00::100` ([`Plan6::slirp4netns`], [`Plan6::namespace_addr`]).
//! * The router's link-local address is `fe80::` + the EUI-64 of the gateway MAC (RFC 4291
//!   appendix A); router advertisements come from it.
//!
//! QEMU's meaning (net/slirp.c `net_slirp_init`): `ipv6-prefix` defaults to `fec0::`,
//! `ipv6-prefixlen` to 64 (and 0 also means 64), lengths above 126 are refused; `ipv6-net=A/N` is
//! the newer spelling of both and may not be combined with them; `ipv6-host` must lie inside the
//! prefix and defaults to the prefix with 2 OR-ed into its last byte, `ipv6-dns` likewise with 3
//! (it may lie outside the prefix unless `restrict=on`). warren masks the prefix to the network
//! first, and additionally refuses addresses no router could use (multicast, loopback,
//! link-local, the prefix's subnet-router anycast address) and a router equal to the DNS address.
//!
//! Stateless autoconfiguration needs a /64; other lengths are accepted (QEMU's range) and then
//! only DHCPv6 hands out addresses ([`Plan6::slaac`]).

use crate::Mac;
use std::net::Ipv6Addr;

/// An IPv6 network: address (host bits zero) and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Net {
    addr: Ipv6Addr,
    len: u8,
}

impl Ipv6Net {
    /// `addr` masked to `len` bits (at most 128).
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, String> {
        if len > 128 {
            return Err(format!("IPv6 prefix length {len} is over 128"));
        }
        Ok(Ipv6Net {
            addr: Ipv6Addr::from(u128::from(addr) & mask(len)),
            len,
        })
    }
    /// Parses `ADDR/LEN`; a bare address means /64.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (
                a,
                l.parse::<u8>()
                    .map_err(|_| format!("bad IPv6 prefix length in {s:?}"))?,
            ),
            None => (s, 64),
        };
        let addr: Ipv6Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv6 address"))?;
        Self::new(addr, l)
    }
    /// The network address (host bits cleared).
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }
    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
    /// Whether `a` lies inside the prefix.
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        u128::from(a) & mask(self.len) == u128::from(self.addr)
    }
    /// The address with interface bits `n` (taken modulo the host part).
    pub fn host(&self, n: u128) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) | (n & !mask(self.len)))
    }
    /// The interface bits of `a` (its offset inside the network).
    pub fn host_part(&self, a: Ipv6Addr) -> u128 {
        u128::from(a) & !mask(self.len)
    }
    /// Number of host bits.
    pub fn host_bits(&self) -> u32 {
        128 - u32::from(self.len)
    }
}

impl std::fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

/// The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A): the universal/local
/// bit flipped and `ff:fe` in the middle.
pub fn eui64(mac: &Mac) -> [u8; 8] {
    [
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// `fe80::` + EUI-64 of `mac`.
pub fn link_local(mac: &Mac) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[0] = 0xfe;
    o[1] = 0x80;
    o[8..].copy_from_slice(&eui64(mac));
    Ipv6Addr::from(o)
}

/// The SLAAC address a guest with `mac` forms in a /64 `net` when it uses EUI-64 identifiers.
pub fn slaac_addr(net: &Ipv6Net, mac: &Mac) -> Ipv6Addr {
    let mut o = net.addr().octets();
    o[8..].copy_from_slice(&eui64(mac));
    Ipv6Addr::from(o)
}

/// Whether an interface identifier looks like a modified EUI-64 one (`xx:xx:xx:ff:fe:xx:xx:xx`).
pub fn looks_eui64(a: &Ipv6Addr) -> bool {
    let o = a.octets();
    o[11] == 0xff && o[12] == 0xfe
}

/// What can be unicast on the link: not multicast, unspecified, loopback, link-local or
/// IPv4-mapped.
fn usable_unicast(a: &Ipv6Addr) -> bool {
    !(a.is_multicast()
        || a.is_unspecified()
        || a.is_loopback()
        || crate::wire::ipv6::is_link_local(a)
        || a.to_ipv4_mapped().is_some())
}

/// The IPv6 side of the address plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan6 {
    /// The guests' prefix.
    pub net: Ipv6Net,
    /// The router's global address (`::2`); reaches the host's `::1` unless host loopback is off.
    pub router: Ipv6Addr,
    /// The DNS proxy's address (`::3`).
    pub dns: Ipv6Addr,
    /// The router's link-local address (EUI-64 of `router_mac`); RAs come from here.
    pub router_ll: Ipv6Addr,
    /// The gateway's MAC.
    pub router_mac: Mac,
}

/// IPv6's minimum link MTU (RFC 8200 section 5): below it guests ignore the advertised MTU, so the
/// daemon serves IPv4 only on such a LAN.
pub const MIN_MTU: u16 = 1280;

/// QEMU's default prefix (`-netdev user`).
pub const SLIRP_PREFIX: Ipv6Addr = Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0);
/// slirp4netns' prefix with `--enable-ipv6`.
pub const SLIRP4NETNS_PREFIX: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0);
/// The interface bits of slirp4netns' recommended namespace address (`::100`).
pub const NAMESPACE_HOST: u128 = 0x100;

/// QEMU `-netdev user` IPv6 values as given (each `None` when absent).
#[derive(Clone, Copy, Debug, Default)]
pub struct QemuV6<'a> {
    /// `ipv6-net=` (address/length).
    pub net: Option<&'a str>,
    /// `ipv6-prefix=`.
    pub prefix: Option<&'a str>,
    /// `ipv6-prefixlen=`.
    pub prefixlen: Option<&'a str>,
    /// `ipv6-host=`: the router's address.
    pub host: Option<&'a str>,
    /// `ipv6-dns=`: the DNS server's address.
    pub dns: Option<&'a str>,
    /// `restrict=on`: then `ipv6-dns` must lie inside the prefix too (as in QEMU).
    pub restrict: bool,
}

impl Plan6 {
    /// QEMU's plan: `fec0::/64`, `::2`, `::3`.
    pub fn slirp(mac: Mac) -> Self {
        Self::with_defaults(
            Ipv6Net {
                addr: SLIRP_PREFIX,
                len: 64,
            },
            mac,
        )
    }
    /// slirp4netns' plan: `fd00::/64`, `::2`, `::3` (the namespace gets `::100`).
    pub fn slirp4netns(mac: Mac) -> Self {
        Self::with_defaults(
            Ipv6Net {
                addr: SLIRP4NETNS_PREFIX,
                len: 64,
            },
            mac,
        )
    }
    fn with_defaults(net: Ipv6Net, mac: Mac) -> Self {
        Plan6 {
            net,
            router: net.host(2),
            dns: net.host(3),
            router_ll: link_local(&mac),
            router_mac: mac,
        }
    }

    /// A plan from a network and optional router/DNS addresses (defaults `::2`/`::3` of the
    /// network), validated.
    pub fn new(
        net: Ipv6Net,
        router: Option<Ipv6Addr>,
        dns: Option<Ipv6Addr>,
        mac: Mac,
    ) -> Result<Self, String> {
        let mut p = Self::with_defaults(net, mac);
        if let Some(r) = router {
            p.router = r;
        }
        if let Some(d) = dns {
            p.dns = d;
        }
        p.validate(false)?;
        Ok(p)
    }

    /// warren's options: `--net6 PREFIX/LEN` (default `base`'s network), `--gateway6 ADDR`,
    /// `--dns-addr6 ADDR`. A new `--net6` moves the router and DNS defaults to its `::2`/`::3`.
    pub fn from_options(
        base: &Plan6,
        net6: Option<&str>,
        gateway6: Option<&str>,
        dns6: Option<&str>,
    ) -> Result<Self, String> {
        let net = match net6 {
            Some(s) => {
                let n = Ipv6Net::parse(s).map_err(|e| format!("--net6 {s}: {e}"))?;
                if !s.contains('/') {
                    return Err(format!("--net6 {s}: give a prefix length, e.g. {s}/64"));
                }
                if !(1..=126).contains(&n.prefix_len()) {
                    return Err(format!(
                        "--net6 {s}: prefix length must be between 1 and 126 (64 for SLAAC)"
                    ));
                }
                n
            }
            None => base.net,
        };
        let addr = |opt: &str, v: Option<&str>| -> Result<Option<Ipv6Addr>, String> {
            v.map(|s| {
                s.parse::<Ipv6Addr>()
                    .map_err(|_| format!("{opt} {s}: not an IPv6 address"))
            })
            .transpose()
        };
        let router = addr("--gateway6", gateway6)?;
        let dns = addr("--dns-addr6", dns6)?;
        let mut p = if net6.is_some() {
            Self::with_defaults(net, base.router_mac)
        } else {
            base.clone()
        };
        if let Some(r) = router {
            p.router = r;
        }
        if let Some(d) = dns {
            p.dns = d;
        }
        p.validate(false)?;
        Ok(p)
    }

    /// QEMU's `ipv6-*` values with QEMU's meaning (see the module docs).
    pub fn from_qemu(q: &QemuV6<'_>, mac: Mac) -> Result<Self, String> {
        if q.net.is_some() && (q.prefix.is_some() || q.prefixlen.is_some()) {
            return Err(
                "ipv6-net cannot be combined with ipv6-prefix or ipv6-prefixlen (QEMU refuses it too)"
                    .into(),
            );
        }
        let parse_len = |key: &str, s: &str| -> Result<u8, String> {
            let n: i64 = s
                .trim()
                .parse()
                .map_err(|_| format!("{key}={s}: not a number"))?;
            match n {
                0 => Ok(64),
                1..=126 => Ok(n as u8),
                _ => Err(format!(
                    "{key}={s}: IPv6 prefix length must be between 0 and 126"
                )),
            }
        };
        let (prefix_s, len) = match (q.net, q.prefix, q.prefixlen) {
            (Some(n), _, _) => match n.split_once('/') {
                Some((a, l)) => (a, parse_len("ipv6-net", l)?),
                None => (n, 64),
            },
            (None, p, l) => (
                p.unwrap_or("fec0::"),
                l.map(|l| parse_len("ipv6-prefixlen", l))
                    .transpose()?
                    .unwrap_or(64),
            ),
        };
        let key = if q.net.is_some() {
            "ipv6-net"
        } else {
            "ipv6-prefix"
        };
        let prefix: Ipv6Addr = prefix_s
            .parse()
            .map_err(|_| format!("{key}={prefix_s}: not an IPv6 address"))?;
        let net = Ipv6Net::new(prefix, len)?;
        let parse = |key: &str, v: Option<&str>| -> Result<Option<Ipv6Addr>, String> {
            v.map(|s| {
                s.parse::<Ipv6Addr>()
                    .map_err(|_| format!("{key}={s}: not an IPv6 address"))
            })
            .transpose()
        };
        let host = parse("ipv6-host", q.host)?;
        let dns = parse("ipv6-dns", q.dns)?;
        Self::from_qemu_typed(Some(net.addr()), Some(len), host, dns, q.restrict, mac)
    }

    /// QEMU's `ipv6-*` values already parsed (as slirp-compat's `SlirpOptions` holds them):
    /// prefix default `fec0::`, length default 64 with 0 meaning 64 and over 126 refused, host
    /// inside the prefix, DNS too when `restrict`.
    pub fn from_qemu_typed(
        prefix: Option<Ipv6Addr>,
        prefix_len: Option<u8>,
        host: Option<Ipv6Addr>,
        dns: Option<Ipv6Addr>,
        restrict: bool,
        mac: Mac,
    ) -> Result<Self, String> {
        let len = match prefix_len.unwrap_or(64) {
            0 => 64,
            l @ 1..=126 => l,
            l => {
                return Err(format!(
                    "ipv6-prefixlen={l}: IPv6 prefix length must be between 0 and 126"
                ))
            }
        };
        let net = Ipv6Net::new(prefix.unwrap_or(SLIRP_PREFIX), len)?;
        if let Some(h) = host {
            if !net.contains(h) {
                return Err(format!("ipv6-host={h} is outside the IPv6 prefix {net}"));
            }
        }
        let mut p = Self::with_defaults(net, mac);
        if let Some(h) = host {
            p.router = h;
        }
        if let Some(d) = dns {
            p.dns = d;
        }
        p.validate(restrict)
            .map_err(|e| format!("-netdev user IPv6 settings: {e}"))?;
        Ok(p)
    }

    /// Checks that the addresses agree. `dns_inside`: the DNS address must lie in the prefix.
    pub fn validate(&self, dns_inside: bool) -> Result<(), String> {
        let net = self.net;
        let p = net.addr();
        if p.is_multicast()
            || p.is_loopback()
            || crate::wire::ipv6::is_link_local(&p)
            || p.to_ipv4_mapped().is_some()
            || net.prefix_len() == 0
        {
            return Err(format!("{net} cannot be the guests' IPv6 prefix"));
        }
        if net.prefix_len() > 126 {
            return Err(format!("{net} leaves no room for guests (at most /126)"));
        }
        for (what, a) in [("router", self.router), ("DNS", self.dns)] {
            if !usable_unicast(&a) {
                return Err(format!("IPv6 {what} address {a} is not a unicast address"));
            }
            if a == net.addr() {
                return Err(format!(
                    "IPv6 {what} address {a} is the subnet-router anycast address of {net}"
                ));
            }
        }
        if !net.contains(self.router) {
            return Err(format!(
                "IPv6 router address {} is outside {net}",
                self.router
            ));
        }
        if dns_inside && !net.contains(self.dns) {
            return Err(format!("IPv6 DNS address {} is outside {net}", self.dns));
        }
        if self.router == self.dns {
            return Err(format!(
                "IPv6 router and DNS addresses must differ (both {})",
                self.dns
            ));
        }
        Ok(())
    }

    /// Whether guests can autoconfigure from the prefix (a /64).
    pub fn slaac(&self) -> bool {
        self.net.prefix_len() == 64
    }
    /// slirp4netns' recommended address for the namespace (`::100` of the prefix).
    pub fn namespace_addr(&self) -> Ipv6Addr {
        self.net.host(NAMESPACE_HOST)
    }
    /// The gateway's own addresses (answered in NDP): router, DNS, router link-local.
    pub fn own_addrs(&self) -> [Ipv6Addr; 3] {
        [self.router, self.dns, self.router_ll]
    }
    /// Whether `a` is one of [`Self::own_addrs`].
    pub fn is_own(&self, a: &Ipv6Addr) -> bool {
        self.own_addrs().contains(a)
    }
    /// Whether the DNS address is on the link (inside the prefix); if not, guests send to it
    /// through the router and it needs no neighbour advertisements.
    pub fn dns_on_link(&self) -> bool {
        self.net.contains(self.dns)
    }
    /// Whether a guest may use `a` as its source: inside the prefix or link-local, unicast, and
    /// not one of the gateway's addresses or the subnet-router anycast address.
    pub fn guest_source_ok(&self, a: &Ipv6Addr) -> bool {
        let ll = crate::wire::ipv6::is_link_local(a);
        (ll || (self.net.contains(*a) && *a != self.net.addr()))
            && !a.is_multicast()
            && !self.is_own(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

    fn a(s: &str) -> Ipv6Addr {
        s.parse().expect("addr")
    }

    #[test]
    fn defaults() {
        let s = Plan6::slirp(MAC);
        assert_eq!(s.net.to_string(), "fec0::/64");
        assert_eq!((s.router, s.dns), (a("fec0::2"), a("fec0::3")));
        assert_eq!(s.router_ll, a("fe80::5055:aff:fe00:202"));
        assert!(s.slaac() && s.dns_on_link());
        s.validate(true).expect("slirp default valid");
        let n = Plan6::slirp4netns(MAC);
        assert_eq!(n.net.to_string(), "fd00::/64");
        assert_eq!((n.router, n.dns), (a("fd00::2"), a("fd00::3")));
        assert_eq!(n.namespace_addr(), a("fd00::100"));
        n.validate(true).expect("slirp4netns default valid");
    }

    #[test]
    fn eui64_and_link_local() {
        // RFC 4291 appendix A example style: 00:00:5e:... gets the U/L bit set.
        assert_eq!(
            eui64(&[0x00, 0x00, 0x5e, 0x10, 0x20, 0x30]),
            [0x02, 0, 0x5e, 0xff, 0xfe, 0x10, 0x20, 0x30]
        );
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        assert_eq!(link_local(&mac), a("fe80::5054:ff:fe12:3456"));
        let net = Ipv6Net::parse("fec0::/64").expect("net");
        let s = slaac_addr(&net, &mac);
        assert_eq!(s, a("fec0::5054:ff:fe12:3456"));
        assert!(looks_eui64(&s) && !looks_eui64(&a("fec0::1:15")));
    }

    #[test]
    fn net_parse_and_arithmetic() {
        let n = Ipv6Net::parse("fd00:1:2:3:4::9/64").expect("masked");
        assert_eq!(n.addr(), a("fd00:1:2:3::"));
        assert!(n.contains(a("fd00:1:2:3:ffff::1")) && !n.contains(a("fd00:1:2:4::1")));
        assert_eq!(n.host(0x1_0005), a("fd00:1:2:3::1:5"));
        assert_eq!(n.host_part(a("fd00:1:2:3::1:5")), 0x1_0005);
        assert_eq!(Ipv6Net::parse("fd00::").expect("bare").prefix_len(), 64);
        assert!(Ipv6Net::parse("fd00::/129").is_err());
        assert!(Ipv6Net::parse("fd00::/x").is_err());
        assert!(Ipv6Net::parse("10.0.2.0/24").is_err());
        let all = Ipv6Net::new(a("::1"), 128).expect("host route");
        assert!(all.contains(a("::1")) && !all.contains(a("::2")));
        assert!(Ipv6Net::new(a("::"), 0)
            .expect("all")
            .contains(a("2001:db8::1")));
    }

    #[test]
    fn warren_options() {
        let base = Plan6::slirp(MAC);
        let p = Plan6::from_options(&base, Some("fd42:1::/64"), None, None).expect("net6");
        assert_eq!((p.router, p.dns), (a("fd42:1::2"), a("fd42:1::3")));
        let p = Plan6::from_options(&base, None, Some("fec0::1"), Some("fec0::53")).expect("gw");
        assert_eq!((p.router, p.dns), (a("fec0::1"), a("fec0::53")));
        // A DNS address off the link is allowed (guests reach it through the router).
        let p = Plan6::from_options(&base, None, None, Some("fd99::53")).expect("dns off-link");
        assert!(!p.dns_on_link());
        for (net6, gw, dns, want) in [
            (Some("fd00::"), None, None, "give a prefix length"),
            (Some("fd00::/0"), None, None, "between 1 and 126"),
            (Some("fd00::/127"), None, None, "between 1 and 126"),
            (Some("fd00::/x"), None, None, "bad IPv6 prefix length"),
            (Some("ff02::/64"), None, None, "cannot be the guests'"),
            (Some("fe80::/64"), None, None, "cannot be the guests'"),
            (None, Some("fd00::2"), None, "outside fec0::/64"),
            (None, Some("fec0::"), None, "subnet-router anycast"),
            (None, Some("fec0::3"), None, "must differ"),
            (None, None, Some("ff02::1"), "not a unicast"),
            (None, None, Some("::1"), "not a unicast"),
            (None, Some("10.0.2.2"), None, "not an IPv6 address"),
        ] {
            let e = Plan6::from_options(&base, net6, gw, dns).expect_err(want);
            assert!(e.contains(want), "{e:?} lacks {want:?}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn qemu_values() {
        let q = |net, prefix, prefixlen, host, dns| QemuV6 {
            net,
            prefix,
            prefixlen,
            host,
            dns,
            restrict: false,
        };
        let p = Plan6::from_qemu(&q(None, None, None, None, None), MAC).expect("defaults");
        assert_eq!(p, Plan6::slirp(MAC));
        let p =
            Plan6::from_qemu(&q(Some("fd00:1::/48"), None, None, None, None), MAC).expect("net");
        assert_eq!(p.net.to_string(), "fd00:1::/48");
        assert_eq!((p.router, p.dns), (a("fd00:1::2"), a("fd00:1::3")));
        assert!(!p.slaac());
        // ipv6-prefixlen=0 means 64, as in QEMU; ipv6-net without a length means 64.
        let p = Plan6::from_qemu(&q(None, Some("fd01::"), Some("0"), None, None), MAC).expect("0");
        assert_eq!(p.net.prefix_len(), 64);
        let p = Plan6::from_qemu(&q(Some("fd02::"), None, None, None, None), MAC).expect("bare");
        assert_eq!(p.net.to_string(), "fd02::/64");
        let p = Plan6::from_qemu(
            &q(None, Some("fd03::"), Some("126"), Some("fd03::1"), None),
            MAC,
        )
        .expect("126");
        assert_eq!((p.router, p.dns), (a("fd03::1"), a("fd03::3")));
        // The DNS address may lie outside the prefix unless restrict=on.
        let mut v = q(None, None, None, None, Some("fd99::3"));
        assert!(Plan6::from_qemu(&v, MAC).is_ok());
        v.restrict = true;
        assert!(Plan6::from_qemu(&v, MAC)
            .expect_err("restricted")
            .contains("outside"));
        for (v, want) in [
            (
                q(Some("fd00::/64"), Some("fd00::"), None, None, None),
                "cannot be combined",
            ),
            (
                q(Some("fd00::/64"), None, Some("64"), None, None),
                "cannot be combined",
            ),
            (
                q(Some("fd00::/127"), None, None, None, None),
                "between 0 and 126",
            ),
            (
                q(Some("fd00::/-1"), None, None, None, None),
                "between 0 and 126",
            ),
            (
                q(Some("fd00::/abc"), None, None, None, None),
                "not a number",
            ),
            (q(None, None, Some("200"), None, None), "between 0 and 126"),
            (
                q(None, Some("fd00::zz"), None, None, None),
                "ipv6-prefix=fd00::zz: not an IPv6",
            ),
            (
                q(None, None, None, Some("fd00::2"), None),
                "ipv6-host=fd00::2 is outside",
            ),
            (
                q(None, None, None, Some("x"), None),
                "ipv6-host=x: not an IPv6",
            ),
            (
                q(None, None, None, None, Some("10.0.2.3")),
                "ipv6-dns=10.0.2.3: not an IPv6",
            ),
            (q(None, None, None, Some("fec0::3"), None), "must differ"),
        ] {
            let e = Plan6::from_qemu(&v, MAC).expect_err(want);
            assert!(e.contains(want), "{e:?} lacks {want:?}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn qemu_typed_values() {
        let p = Plan6::from_qemu_typed(None, None, None, None, false, MAC).expect("defaults");
        assert_eq!(p, Plan6::slirp(MAC));
        let p = Plan6::from_qemu_typed(Some(a("fd00:9::")), Some(0), None, None, false, MAC)
            .expect("0 means 64");
        assert_eq!(p.net.to_string(), "fd00:9::/64");
        assert!(
            Plan6::from_qemu_typed(None, Some(127), None, None, false, MAC)
                .expect_err("127")
                .contains("between 0 and 126")
        );
        assert!(
            Plan6::from_qemu_typed(None, None, None, Some(a("fd99::3")), true, MAC)
                .expect_err("restricted dns outside")
                .contains("outside")
        );
    }

    #[test]
    fn own_and_guest_addresses() {
        let p = Plan6::slirp(MAC);
        assert!(p.is_own(&a("fec0::2")) && p.is_own(&a("fec0::3")) && p.is_own(&p.router_ll));
        assert!(!p.is_own(&a("fec0::15")));
        assert!(p.guest_source_ok(&a("fec0::5054:ff:fe12:3456")));
        assert!(p.guest_source_ok(&a("fe80::1234")));
        for bad in ["fec0::2", "fec0::3", "fec0::", "fd00::15", "ff02::1", "::"] {
            assert!(!p.guest_source_ok(&a(bad)), "{bad}");
        }
        assert!(!p.guest_source_ok(&p.router_ll));
    }
}
