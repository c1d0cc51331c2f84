//! QEMU `-netdev user` option strings, e.g.
//! `net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,dhcpstart=10.0.2.15,hostfwd=tcp::2222-:22,restrict=on`.
//!
//! Semantics follow QEMU's `net/slirp.c` (`net_init_slirp`, `net_slirp_init`):
//! - elements are separated by `,`; `,,` inside a value is a literal comma (QemuOpts escaping);
//! - a leading `user` (the netdev type) and `type=user` are ignored, `id=` is kept but has no
//!   effect, so a whole `-netdev user,id=n0,...` value can be pasted;
//! - `net=ADDR[/MASK]`: MASK is a prefix length (QEMU: 4..=32; warren: at most /30) or a dotted
//!   mask such as 255.255.255.0 (must be contiguous here). Without a mask QEMU picks a *classful*
//!   mask: 0-127.x → /8, 172.16/12 → /12, 128-191.x → /16, 192.168/16 → /16, 198.18/15 → /15,
//!   224+ → /24, anything else → /28. The address is masked to the network.
//! - when `net` is given, `host`, `dns` and `dhcpstart` default to
//!   `net | (0.0.2.2 & ~mask)`, `… 0.0.2.3 …`, `… 0.0.2.15 …` (QEMU's rule: equal to
//!   net+2/+3/+15 for prefixes of /23 and longer; for 10.0.0.0/8 it gives 10.0.2.2).
//! - legacy `ip=ADDR` means `net=ADDR/24` unless `net` is given too.
//! - `hostfwd`, `guestfwd` and `dnssearch` repeat; other keys may appear once (QEMU would keep
//!   the last one silently; warren says so instead).
//! - booleans (`restrict`, `ipv4`, `ipv6`) take on/off/yes/no/y/n/true/false; a bare key means on.
//! - `ipv6=on` without `ipv4` turns IPv4 *off*, as in QEMU (and vice versa): see
//!   [`SlirpOptions::ipv4_enabled`]; warren then serves IPv6 only (`--no-ipv4`).
//! - `domainname` may not be empty; `domainname`, `hostname` and each `dnssearch` entry are at
//!   most 255 bytes.
//! - `tftp`, `bootfile`, `smb`, `smbserver`, `tftp-server-name` are valid QEMU keys that warren
//!   does not implement: refused with a message saying so. Other unknown keys are refused by name.
//! - Extension: `mtu=N` (passt has it; QEMU's user netdev does not).

use crate::esc;
use crate::guestfwd::{GuestFwd, GuestFwdError};
use crate::hostfwd::{HostFwd, HostFwdError};
use netstack::config::{Config, Ipv4Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A `-netdev user` option string that does not parse, or whose values do not fit together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("empty option in {0:?} (a stray ',' or a missing key before '=')")]
    EmptyOption(String),
    #[error("{}={}: expected on or off", esc(.key), esc(.value))]
    BadBool { key: String, value: String },
    #[error("net={}: {addr:?} is not an IPv4 address", esc(.value))]
    NetAddr { value: String, addr: String },
    #[error("net={}: prefix length {} out of range 4-32", esc(.value), esc(.prefix))]
    NetPrefix { value: String, prefix: String },
    #[error("net={}: {mask:?} is neither a prefix length nor a netmask", esc(.value))]
    NetMask { value: String, mask: String },
    #[error("net={}: netmask {mask} is not contiguous", esc(.value))]
    NetMaskGaps { value: String, mask: Ipv4Addr },
    /// netstack's `Ipv4Net::new` refused the network (its error is still a `String`).
    #[error("net={}: {}", esc(.value), esc(.why))]
    NetRefused { value: String, why: String },
    #[error("{} needs a value ({}=…)", esc(.0), esc(.0))]
    NeedsValue(String),
    #[error("type={}: only the user netdev's options are understood", esc(.0))]
    NotUserType(String),
    #[error("{}={}: not an IPv4 address", esc(.key), esc(.value))]
    NotIpv4 { key: String, value: String },
    #[error("{}={}: not an IPv6 address", esc(.key), esc(.value))]
    NotIpv6 { key: String, value: String },
    #[error("{}: longer than 255 bytes", esc(.0))]
    NameTooLong(String),
    #[error("{}={value:?}: control characters are not allowed", esc(.key))]
    ControlChars { key: String, value: String },
    #[error("{} given more than once", esc(.0))]
    Repeated(String),
    #[error(transparent)]
    HostFwd(#[from] HostFwdError),
    #[error(transparent)]
    GuestFwd(#[from] GuestFwdError),
    #[error("dnssearch: empty domain")]
    EmptyDnsSearch,
    #[error("domainname: cannot be empty")]
    EmptyDomainName,
    #[error("{}={}: expected 0-126", esc(.key), esc(.value))]
    Ipv6PrefixLen { key: String, value: String },
    #[error("{}={}: prefix length must be 0-126", esc(.key), esc(.value))]
    Ipv6NetPrefixLen { key: String, value: String },
    #[error("mtu={}: not a number 576-65520", esc(.0))]
    BadMtu(String),
    #[error("{}: QEMU's {} is not supported by warren", esc(.0), esc(.0))]
    Unsupported(String),
    #[error("user: the netdev type must come first")]
    UserNotFirst,
    #[error("unknown option {0:?} for -netdev user")]
    Unknown(String),
    /// netstack's `Ipv4Net::new` refused the legacy `ip=` network (its error is a `String`).
    #[error("{}", esc(.0))]
    LegacyIp(String),
    #[error("IPv4 and IPv6 disabled (ipv4=off, or ipv6=on without ipv4=on, and ipv6=off or ipv4=on without ipv6=on): nothing left to serve")]
    Ipv4Off,
    #[error("IPv4 disabled (ipv4=off, or ipv6=on without ipv4=on, as in QEMU) but net/ip/host/dns given")]
    Ipv4Disabled,
    #[error("IPv6 disabled (ipv6=off, or ipv4=on without ipv6=on, as in QEMU) but ipv6-prefix/ipv6-host/ipv6-dns given")]
    Ipv6Disabled,
    #[error("host {host} doesn't belong to network {cidr}")]
    HostOutside { host: Ipv4Addr, cidr: String },
    #[error("dns {dns} doesn't belong to network {cidr}")]
    DnsOutside { dns: Ipv4Addr, cidr: String },
    #[error("dns {0} must be different from host")]
    DnsIsHost(Ipv4Addr),
    #[error("dhcpstart {start} doesn't belong to network {cidr}")]
    DhcpStartOutside { start: Ipv4Addr, cidr: String },
    #[error("dhcpstart {0} must be different from host and dns")]
    DhcpStartClash(Ipv4Addr),
    /// netstack's `Config::validate` refused the result.
    #[error("{}", esc(&.0.to_string()))]
    Config(netstack::config::ConfigError),
    #[error("guestfwd {}: {addr}:{port} is forwarded twice", crate::one_line(.rule.to_string()))]
    GuestFwdTwice {
        rule: Box<GuestFwd>,
        addr: Ipv4Addr,
        port: u16,
    },
}

/// Everything a `-netdev user` option string can say; `None`/empty means "not given".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlirpOptions {
    /// `id=` (no effect; kept for messages).
    pub id: Option<String>,
    /// `net=` (already masked to the network).
    pub net: Option<Ipv4Net>,
    /// Legacy `ip=` (means net=ADDR/24 when `net` is absent).
    pub ip: Option<Ipv4Addr>,
    /// `host=`: the gateway's address.
    pub host: Option<Ipv4Addr>,
    /// `dns=`: the DNS forwarder's address.
    pub dns: Option<Ipv4Addr>,
    /// `dhcpstart=`: the first lease.
    pub dhcp_start: Option<Ipv4Addr>,
    pub hostfwd: Vec<HostFwd>,
    pub guestfwd: Vec<GuestFwd>,
    /// `restrict=`: guests may only reach the host through hostfwd/guestfwd.
    pub restrict: Option<bool>,
    pub dns_search: Vec<String>,
    pub domain_name: Option<String>,
    /// `hostname=`: DHCP option 12 offered to the guest.
    pub hostname: Option<String>,
    pub ipv4: Option<bool>,
    pub ipv6: Option<bool>,
    pub ipv6_prefix: Option<Ipv6Addr>,
    pub ipv6_prefix_len: Option<u8>,
    pub ipv6_host: Option<Ipv6Addr>,
    pub ipv6_dns: Option<Ipv6Addr>,
    /// Extension: link MTU.
    pub mtu: Option<u16>,
}

/// Splits a QemuOpts string into `(key, value)` elements; `,,` is a literal comma and an element
/// without `=` has no value.
pub fn split_qemu_opts(s: &str) -> Result<Vec<(String, Option<String>)>, OptionsError> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let push = |cur: &mut String, out: &mut Vec<(String, Option<String>)>| {
        let e = std::mem::take(cur);
        match e.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((e, None)),
        }
    };
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                push(&mut cur, &mut out);
            }
        } else {
            cur.push(c);
        }
    }
    push(&mut cur, &mut out);
    for (k, _) in &out {
        if k.is_empty() {
            return Err(OptionsError::EmptyOption(s.to_string()));
        }
    }
    Ok(out)
}

/// QEMU's boolean spellings.
pub fn parse_bool(key: &str, v: Option<&str>) -> Result<bool, OptionsError> {
    match v {
        None | Some("on" | "yes" | "y" | "true") => Ok(true),
        Some("off" | "no" | "n" | "false") => Ok(false),
        Some(other) => Err(OptionsError::BadBool {
            key: key.to_string(),
            value: other.to_string(),
        }),
    }
}

/// QEMU's mask when `net=` has none (see the module docs).
pub fn classful_prefix(addr: Ipv4Addr) -> u8 {
    let a = u32::from(addr);
    if a & 0x8000_0000 == 0 {
        8
    } else if a & 0xfff0_0000 == 0xac10_0000 {
        12
    } else if a & 0xc000_0000 == 0x8000_0000 || a & 0xffff_0000 == 0xc0a8_0000 {
        // Class B, and the private 192.168/16.
        16
    } else if a & 0xffff_0000 == 0xc612_0000 {
        15
    } else if a & 0xe000_0000 == 0xe000_0000 {
        24
    } else {
        28
    }
}

/// Parses `ADDR`, `ADDR/PREFIX` or `ADDR/DOTTED.MASK` with QEMU's rules.
pub fn parse_net(s: &str) -> Result<Ipv4Net, OptionsError> {
    let value = || s.to_string();
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr: Ipv4Addr = a.parse().map_err(|_| OptionsError::NetAddr {
        value: value(),
        addr: a.to_string(),
    })?;
    let prefix = match m {
        None => classful_prefix(addr),
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => {
            let p: u32 = m.parse().unwrap_or(u32::MAX);
            if !(4..=32).contains(&p) {
                return Err(OptionsError::NetPrefix {
                    value: value(),
                    prefix: m.to_string(),
                });
            }
            p as u8
        }
        Some(m) => {
            let mask: Ipv4Addr = m.parse().map_err(|_| OptionsError::NetMask {
                value: value(),
                mask: m.to_string(),
            })?;
            let bits = u32::from(mask);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(OptionsError::NetMaskGaps {
                    value: value(),
                    mask,
                });
            }
            bits.leading_ones() as u8
        }
    };
    Ipv4Net::new(addr, prefix).map_err(|why| OptionsError::NetRefused {
        value: value(),
        why: why.to_string(),
    })
}

/// QEMU's default host numbers within `net`: `net | (n & ~mask)`.
fn qemu_host(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) | (n & !u32::from(net.mask())))
}

fn ipv4(key: &str, v: &str) -> Result<Ipv4Addr, OptionsError> {
    v.parse().map_err(|_| OptionsError::NotIpv4 {
        key: key.to_string(),
        value: v.to_string(),
    })
}

fn ipv6(key: &str, v: &str) -> Result<Ipv6Addr, OptionsError> {
    v.parse().map_err(|_| OptionsError::NotIpv6 {
        key: key.to_string(),
        value: v.to_string(),
    })
}

fn name(key: &str, v: &str) -> Result<String, OptionsError> {
    if v.len() > 255 {
        return Err(OptionsError::NameTooLong(key.to_string()));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(OptionsError::ControlChars {
            key: key.to_string(),
            value: v.to_string(),
        });
    }
    Ok(v.to_string())
}

fn once<T>(slot: &mut Option<T>, key: &str, v: T) -> Result<(), OptionsError> {
    if slot.is_some() {
        return Err(OptionsError::Repeated(key.to_string()));
    }
    *slot = Some(v);
    Ok(())
}

impl SlirpOptions {
    /// Parses an option string (see the module docs).
    pub fn parse(s: &str) -> Result<Self, OptionsError> {
        let mut o = SlirpOptions::default();
        for (i, (k, v)) in split_qemu_opts(s)?.into_iter().enumerate() {
            let key = k.as_str();
            if i == 0 && key == "user" && v.is_none() {
                continue;
            }
            let val = || -> Result<&str, OptionsError> {
                v.as_deref()
                    .ok_or_else(|| OptionsError::NeedsValue(key.to_string()))
            };
            match key {
                "type" => {
                    if val()? != "user" {
                        return Err(OptionsError::NotUserType(val()?.to_string()));
                    }
                }
                "id" => once(&mut o.id, key, val()?.to_string())?,
                "net" => once(&mut o.net, key, parse_net(val()?)?)?,
                "ip" => once(&mut o.ip, key, ipv4(key, val()?)?)?,
                "host" => once(&mut o.host, key, ipv4(key, val()?)?)?,
                "dns" => once(&mut o.dns, key, ipv4(key, val()?)?)?,
                "dhcpstart" => once(&mut o.dhcp_start, key, ipv4(key, val()?)?)?,
                "hostfwd" => o.hostfwd.push(HostFwd::parse(val()?)?),
                "guestfwd" => o.guestfwd.push(GuestFwd::parse(val()?)?),
                "restrict" => once(&mut o.restrict, key, parse_bool(key, v.as_deref())?)?,
                "ipv4" => once(&mut o.ipv4, key, parse_bool(key, v.as_deref())?)?,
                "ipv6" => once(&mut o.ipv6, key, parse_bool(key, v.as_deref())?)?,
                "dnssearch" => {
                    let d = name(key, val()?)?;
                    if d.is_empty() {
                        return Err(OptionsError::EmptyDnsSearch);
                    }
                    o.dns_search.push(d);
                }
                "domainname" => {
                    let d = name(key, val()?)?;
                    if d.is_empty() {
                        return Err(OptionsError::EmptyDomainName);
                    }
                    once(&mut o.domain_name, key, d)?;
                }
                "hostname" => once(&mut o.hostname, key, name(key, val()?)?)?,
                "ipv6-prefix" => once(&mut o.ipv6_prefix, key, ipv6(key, val()?)?)?,
                "ipv6-prefixlen" => {
                    let v = val()?;
                    let n = v.parse::<u8>().ok().filter(|n| *n <= 126).ok_or_else(|| {
                        OptionsError::Ipv6PrefixLen {
                            key: key.to_string(),
                            value: v.to_string(),
                        }
                    })?;
                    once(&mut o.ipv6_prefix_len, key, n)?;
                }
                "ipv6-net" => {
                    let v = val()?;
                    let (a, l) = match v.split_once('/') {
                        Some((a, l)) => (a, Some(l)),
                        None => (v, None),
                    };
                    once(&mut o.ipv6_prefix, "ipv6-prefix", ipv6(key, a)?)?;
                    if let Some(l) = l {
                        let n = l.parse::<u8>().ok().filter(|n| *n <= 126).ok_or_else(|| {
                            OptionsError::Ipv6NetPrefixLen {
                                key: key.to_string(),
                                value: v.to_string(),
                            }
                        })?;
                        once(&mut o.ipv6_prefix_len, "ipv6-prefixlen", n)?;
                    }
                }
                "ipv6-host" => once(&mut o.ipv6_host, key, ipv6(key, val()?)?)?,
                "ipv6-dns" => once(&mut o.ipv6_dns, key, ipv6(key, val()?)?)?,
                "mtu" => {
                    let v = val()?;
                    let n = v
                        .parse::<u16>()
                        .map_err(|_| OptionsError::BadMtu(v.to_string()))?;
                    once(&mut o.mtu, key, n)?;
                }
                "tftp" | "bootfile" | "smb" | "smbserver" | "tftp-server-name" => {
                    return Err(OptionsError::Unsupported(key.to_string()))
                }
                "user" => return Err(OptionsError::UserNotFirst),
                other => return Err(OptionsError::Unknown(other.to_string())),
            }
        }
        Ok(o)
    }

    /// Whether IPv4 is on, by QEMU's rule: off if `ipv4=off`, or if `ipv6=on` was given without
    /// any `ipv4=`.
    pub fn ipv4_enabled(&self) -> bool {
        !(self.ipv4 == Some(false) || (self.ipv6 == Some(true) && self.ipv4.is_none()))
    }

    /// Whether IPv6 is on, by QEMU's rule (on by default; off if `ipv6=off` or if `ipv4=on`
    /// was given without any `ipv6=`).
    pub fn ipv6_enabled(&self) -> bool {
        !(self.ipv6 == Some(false) || (self.ipv4 == Some(true) && self.ipv6.is_none()))
    }

    /// The network `net=` or the legacy `ip=` selects, if any.
    pub fn effective_net(&self) -> Result<Option<Ipv4Net>, OptionsError> {
        match (self.net, self.ip) {
            (Some(n), _) => Ok(Some(n)),
            (None, Some(ip)) => Ipv4Net::new(ip, 24)
                .map(Some)
                .map_err(|e| OptionsError::LegacyIp(e.to_string())),
            (None, None) => Ok(None),
        }
    }

    /// Fills the gateway config with QEMU's defaulting rules and validates the result. On error
    /// `cfg` is left unchanged. Applied: net/ip, host, dns, dhcpstart, dnssearch, domainname,
    /// mtu. Checked against the result but kept here for the daemon: hostfwd (guest addresses on
    /// the LAN), guestfwd (addresses on the LAN, not the gateway/DNS, no duplicates). Not
    /// represented in `Config`, read them from `self`: restrict, hostname, ipv6*, id.
    pub fn apply(&self, cfg: &mut Config) -> Result<(), OptionsError> {
        // QEMU's net_init_slirp()/net_slirp_init(): `ipv6=on` alone turns IPv4 off (IPv6 only,
        // the daemon's --no-ipv4) and `ipv4=on` alone IPv6; the addresses of a disabled family
        // are refused (not `dhcpstart` nor `ipv6-prefixlen`, which QEMU does not check), and
        // so is disabling both.
        if !self.ipv4_enabled()
            && (self.net.is_some()
                || self.ip.is_some()
                || self.host.is_some()
                || self.dns.is_some())
        {
            return Err(OptionsError::Ipv4Disabled);
        }
        if !self.ipv6_enabled()
            && (self.ipv6_prefix.is_some() || self.ipv6_host.is_some() || self.ipv6_dns.is_some())
        {
            return Err(OptionsError::Ipv6Disabled);
        }
        if !self.ipv4_enabled() && !self.ipv6_enabled() {
            return Err(OptionsError::Ipv4Off);
        }
        let mut c = cfg.clone();
        c.ipv4 = self.ipv4_enabled();
        if let Some(net) = self.effective_net()? {
            c.net = net;
            c.gateway = qemu_host(net, 0x0202);
            c.dns = qemu_host(net, 0x0203);
            c.dhcp_start = qemu_host(net, 0x020f);
        }
        let cidr = format!("{}/{}", c.net.addr, c.net.prefix);
        if let Some(h) = self.host {
            c.gateway = h;
        }
        if !c.net.contains(c.gateway) {
            return Err(OptionsError::HostOutside {
                host: c.gateway,
                cidr,
            });
        }
        if let Some(d) = self.dns {
            c.dns = d;
        }
        if !c.net.contains(c.dns) {
            // QEMU only insists with restrict=on; warren's gateway answers for the DNS address on
            // the LAN, so it must be there.
            return Err(OptionsError::DnsOutside { dns: c.dns, cidr });
        }
        if c.dns == c.gateway {
            return Err(OptionsError::DnsIsHost(c.dns));
        }
        if let Some(d) = self.dhcp_start {
            c.dhcp_start = d;
        }
        if !c.net.contains(c.dhcp_start) {
            return Err(OptionsError::DhcpStartOutside {
                start: c.dhcp_start,
                cidr,
            });
        }
        if c.dhcp_start == c.gateway || c.dhcp_start == c.dns {
            return Err(OptionsError::DhcpStartClash(c.dhcp_start));
        }
        if let Some(m) = self.mtu {
            c.mtu = m;
        }
        if !self.dns_search.is_empty() {
            c.dns_search = self.dns_search.clone();
        }
        if let Some(d) = &self.domain_name {
            c.domain_name = Some(d.clone());
        }
        c.validate().map_err(OptionsError::Config)?;
        for h in &self.hostfwd {
            h.resolve(&c)?;
        }
        let mut seen = Vec::new();
        for g in &self.guestfwd {
            let a = g.resolved_addr(&c)?;
            if seen.contains(&(a, g.guest_port)) {
                return Err(OptionsError::GuestFwdTwice {
                    rule: Box::new(g.clone()),
                    addr: a,
                    port: g.guest_port,
                });
            }
            seen.push((a, g.guest_port));
        }
        *cfg = c;
        Ok(())
    }
}

impl std::str::FromStr for SlirpOptions {
    type Err = OptionsError;
    fn from_str(s: &str) -> Result<Self, OptionsError> {
        SlirpOptions::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guestfwd::GuestFwdTarget;

    fn p(s: &str) -> SlirpOptions {
        SlirpOptions::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn err(s: &str) -> String {
        let e = SlirpOptions::parse(s).expect_err(s).to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    }
    fn applied(s: &str) -> Result<Config, OptionsError> {
        let mut c = Config::default();
        p(s).apply(&mut c).map(|()| c)
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn full_example() {
        let o = p("net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,dhcpstart=10.0.2.15,\
                   hostfwd=tcp::2222-:22,hostfwd=udp::5353-:53,guestfwd=tcp:10.0.2.100:1234-cmd:cat,\
                   restrict=on,dnssearch=example.org,dnssearch=corp.example,domainname=example.org,\
                   hostname=vm1,mtu=9000");
        assert_eq!(o.net, Some(Ipv4Net::parse("10.0.2.0/24").expect("net")));
        assert_eq!(o.host, Some(ip("10.0.2.2")));
        assert_eq!(o.dns, Some(ip("10.0.2.3")));
        assert_eq!(o.dhcp_start, Some(ip("10.0.2.15")));
        assert_eq!(o.hostfwd.len(), 2);
        assert_eq!(o.guestfwd.len(), 1);
        assert_eq!(o.restrict, Some(true));
        assert_eq!(o.dns_search, vec!["example.org", "corp.example"]);
        assert_eq!(o.domain_name.as_deref(), Some("example.org"));
        assert_eq!(o.hostname.as_deref(), Some("vm1"));
        assert_eq!(o.mtu, Some(9000));
        let mut c = Config::default();
        o.apply(&mut c).expect("apply");
        assert_eq!(c.mtu, 9000);
        assert_eq!(c.dns_search, vec!["example.org", "corp.example"]);
        assert_eq!(c.domain_name.as_deref(), Some("example.org"));
    }

    #[test]
    fn pasted_netdev_and_empty() {
        let o = p("user,id=n0,hostfwd=tcp::2222-:22");
        assert_eq!(o.id.as_deref(), Some("n0"));
        assert_eq!(o.hostfwd.len(), 1);
        assert_eq!(p("type=user,id=x").id.as_deref(), Some("x"));
        let o = p("");
        assert_eq!(o, SlirpOptions::default());
        let mut c = Config::default();
        o.apply(&mut c).expect("apply");
        assert_eq!(c.gateway, ip("10.0.2.2"));
        assert!(err("id=a,user").contains("must come first"));
        assert!(err("type=tap").contains("only the user"));
    }

    #[test]
    fn comma_escaping() {
        let o = p("guestfwd=tcp:10.0.2.100:1-cmd:echo a,,b,,,,c,restrict=off");
        assert_eq!(
            o.guestfwd[0].target,
            GuestFwdTarget::Cmd("echo a,b,,c".into())
        );
        assert_eq!(o.restrict, Some(false));
        assert_eq!(
            split_qemu_opts("a=1,,2,b,c=").expect("split"),
            vec![
                ("a".to_string(), Some("1,2".to_string())),
                ("b".to_string(), None),
                ("c".to_string(), Some(String::new())),
            ]
        );
        assert_eq!(split_qemu_opts("").expect("empty"), vec![]);
        assert!(err("restrict=on,").contains("stray ','"));
        assert!(err(",restrict=on").contains("stray ','"));
        assert!(err("=x").contains("missing a key") || err("=x").contains("empty option"));
    }

    #[test]
    fn booleans() {
        for (s, v) in [
            ("on", true),
            ("yes", true),
            ("y", true),
            ("true", true),
            ("off", false),
            ("no", false),
            ("n", false),
            ("false", false),
        ] {
            assert_eq!(p(&format!("restrict={s}")).restrict, Some(v));
        }
        assert_eq!(p("restrict").restrict, Some(true));
        assert!(err("restrict=maybe").contains("expected on or off"));
        assert!(err("restrict=on,restrict=off").contains("more than once"));
    }

    #[test]
    fn net_forms() {
        let n = |s: &str| parse_net(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(n("10.0.2.0/24"), Ipv4Net::parse("10.0.2.0/24").expect("n"));
        assert_eq!(n("10.0.2.0/255.255.255.0").prefix, 24);
        assert_eq!(n("192.168.76.0/255.255.252.0").prefix, 22);
        // Host bits are masked off, as QEMU does.
        assert_eq!(n("10.0.2.77/24").addr, ip("10.0.2.0"));
        // Classful defaults.
        assert_eq!(n("10.0.2.0").prefix, 8);
        assert_eq!(n("172.16.5.0").prefix, 12);
        assert_eq!(n("150.1.0.0").prefix, 16);
        assert_eq!(n("192.168.1.0").prefix, 16);
        assert_eq!(n("198.18.0.0").prefix, 15);
        assert_eq!(n("192.0.2.0").prefix, 28);
        assert_eq!(n("230.0.0.0").prefix, 24);
        for (bad, why) in [
            ("10.0.2/24", "not an IPv4"),
            ("10.0.2.0/3", "out of range 4-32"),
            ("10.0.2.0/33", "out of range"),
            ("10.0.2.0/31", "no room"),
            ("10.0.2.0/", "neither"),
            ("10.0.2.0/x", "neither"),
            ("10.0.2.0/255.0.255.0", "not contiguous"),
            ("10.0.2.0/99999999999", "out of range"),
        ] {
            let e = parse_net(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with("net="), "{e}");
        }
    }

    #[test]
    fn net_moves_defaults_by_qemu_rule() {
        let c = applied("net=192.168.76.0/24").expect("ok");
        assert_eq!(c.net, Ipv4Net::parse("192.168.76.0/24").expect("n"));
        assert_eq!(c.gateway, ip("192.168.76.2"));
        assert_eq!(c.dns, ip("192.168.76.3"));
        assert_eq!(c.dhcp_start, ip("192.168.76.15"));
        // /16: QEMU uses net | 0.0.2.2, not net+2.
        let c = applied("net=172.20.0.0/16").expect("ok");
        assert_eq!(c.gateway, ip("172.20.2.2"));
        assert_eq!(c.dns, ip("172.20.2.3"));
        assert_eq!(c.dhcp_start, ip("172.20.2.15"));
        // Bare 10.0.2.0 is a /8 in QEMU, and the defaults still land on 10.0.2.x.
        let c = applied("net=10.0.2.0").expect("ok");
        assert_eq!(c.net.prefix, 8);
        assert_eq!(c.gateway, ip("10.0.2.2"));
        // Explicit addresses win over the defaults.
        let c = applied("net=10.9.0.0/24,host=10.9.0.1,dns=10.9.0.53,dhcpstart=10.9.0.100")
            .expect("ok");
        assert_eq!(
            (c.gateway, c.dns, c.dhcp_start),
            (ip("10.9.0.1"), ip("10.9.0.53"), ip("10.9.0.100"))
        );
        // Legacy ip= is a /24, and net= wins over it.
        let c = applied("ip=10.5.5.0").expect("ok");
        assert_eq!(c.net, Ipv4Net::parse("10.5.5.0/24").expect("n"));
        let c = applied("ip=10.5.5.0,net=10.6.0.0/24").expect("ok");
        assert_eq!(c.net.addr, ip("10.6.0.0"));
        // Without net=, the config's existing plan is kept.
        let mut c = Config {
            net: Ipv4Net::parse("10.7.0.0/24").expect("n"),
            gateway: ip("10.7.0.2"),
            dns: ip("10.7.0.3"),
            dhcp_start: ip("10.7.0.15"),
            ..Config::default()
        };
        p("dns=10.7.0.53").apply(&mut c).expect("ok");
        assert_eq!((c.gateway, c.dns), (ip("10.7.0.2"), ip("10.7.0.53")));
    }

    #[test]
    fn apply_validates_like_qemu() {
        for (s, why) in [
            (
                "host=10.0.3.2",
                "host 10.0.3.2 doesn't belong to network 10.0.2.0/24",
            ),
            ("dns=10.0.3.3", "doesn't belong"),
            ("dns=10.0.2.2", "different from host"),
            ("dhcpstart=10.0.3.15", "doesn't belong"),
            ("dhcpstart=10.0.2.2", "different from host and dns"),
            ("dhcpstart=10.0.2.3", "different from host and dns"),
            ("net=10.0.2.0/24,host=10.0.2.0", "network or broadcast"),
            ("net=10.1.1.0/28", "network or broadcast"),
            ("mtu=100", "MTU 100"),
            ("hostfwd=tcp::1-10.0.3.4:2", "outside"),
            ("guestfwd=tcp:10.0.2.2:80-cmd:cat", "gateway"),
            (
                "guestfwd=tcp::80-cmd:cat,guestfwd=tcp:10.0.2.4:80-cmd:x",
                "twice",
            ),
            ("ipv4=off,ipv6=off", "nothing left"),
            ("ipv6=on,net=10.0.3.0/24", "IPv4 disabled"),
            ("ipv4=off,host=10.0.2.2", "IPv4 disabled"),
            ("ipv6=on,dns=10.0.2.3", "IPv4 disabled"),
            ("ipv6=on,hostfwd=tcp::1-10.0.2.15:2", "IPv4 is off"),
            ("ipv6=off,ipv6-dns=fd00::3", "IPv6 disabled"),
            ("ipv4=on,ipv6-prefix=fd00::", "IPv6 disabled"),
        ] {
            let mut c = Config::default();
            let before = format!("{c:?}");
            let e = p(s).apply(&mut c).expect_err(s).to_string();
            assert!(e.contains(why), "{s}: {e}");
            assert!(!e.contains('\n'));
            assert_eq!(format!("{c:?}"), before, "{s}: config changed on error");
        }
        // Callers can tell the failures apart without reading the text.
        assert_eq!(
            applied("ipv4=off,ipv6=off").err(),
            Some(OptionsError::Ipv4Off)
        );
        assert!(!applied("ipv4=off").expect("IPv6 only").ipv4);
        // QEMU: ipv6=on alone means IPv6 only; ipv4=on alone IPv4 only; both given: both.
        let c = applied("ipv6=on,ipv6-prefix=fd00::,hostfwd=tcp::2222-:22").expect("IPv6 only");
        assert!(!c.ipv4);
        assert!(applied("ipv6=on,ipv4=on").expect("both").ipv4);
        // What QEMU does not check: dhcpstart with IPv4 off, ipv6-prefixlen with IPv6 off.
        assert!(applied("ipv6=on,dhcpstart=10.0.2.20").is_ok());
        assert!(applied("ipv4=on,ipv6-prefixlen=64").is_ok());
        assert!(applied("ipv6=off").expect("IPv4 only").ipv4);
        assert_eq!(
            applied("dns=10.0.2.2").err(),
            Some(OptionsError::DnsIsHost(ip("10.0.2.2")))
        );
        assert!(matches!(
            SlirpOptions::parse("hostfwd=tcp::0-:22"),
            Err(OptionsError::HostFwd(
                crate::hostfwd::HostFwdError::Syntax {
                    kind: crate::hostfwd::HostFwdSyntaxError::Port(
                        crate::hostfwd::PortError::OutOfRange { .. }
                    ),
                    ..
                }
            ))
        ));
        // Both on is fine.
        assert!(applied("ipv4=on,ipv6=on,ipv6-prefix=fd00::,ipv6-prefixlen=64").is_ok());
        // guestfwd to the same port on different addresses is fine.
        assert!(applied("guestfwd=tcp::80-cmd:cat,guestfwd=tcp:10.0.2.5:80-cmd:x").is_ok());
    }

    #[test]
    fn ip_version_rules() {
        let o = p("");
        assert!(o.ipv4_enabled() && o.ipv6_enabled());
        let o = p("ipv6=on");
        assert!(!o.ipv4_enabled() && o.ipv6_enabled());
        let o = p("ipv4=on");
        assert!(o.ipv4_enabled() && !o.ipv6_enabled());
        let o = p("ipv4=on,ipv6=on");
        assert!(o.ipv4_enabled() && o.ipv6_enabled());
        let o = p("ipv6=off");
        assert!(o.ipv4_enabled() && !o.ipv6_enabled());
        let o = p("ipv6-net=fd00:1::/48,ipv6-host=fd00:1::2,ipv6-dns=fd00:1::3");
        assert_eq!(o.ipv6_prefix, Some("fd00:1::".parse().expect("v6")));
        assert_eq!(o.ipv6_prefix_len, Some(48));
        assert_eq!(o.ipv6_host, Some("fd00:1::2".parse().expect("v6")));
        assert_eq!(o.ipv6_dns, Some("fd00:1::3".parse().expect("v6")));
        assert_eq!(p("ipv6-prefixlen=126").ipv6_prefix_len, Some(126));
        assert!(err("ipv6-prefixlen=127").contains("0-126"));
        assert!(err("ipv6-net=fd00::/200").contains("0-126"));
        assert!(err("ipv6-host=10.0.2.2").contains("not an IPv6"));
        assert!(err("ipv6-net=fd00::,ipv6-prefix=fd01::").contains("more than once"));
    }

    #[test]
    fn bad_options_name_the_key() {
        assert_eq!(err("bogus=1"), "unknown option \"bogus\" for -netdev user");
        assert!(err("model=virtio").contains("\"model\""));
        assert!(err("smb=/tmp").contains("not supported by warren"));
        assert!(err("tftp=/srv").contains("tftp"));
        assert!(err("net").contains("net needs a value"));
        assert!(err("host=10.0.2").contains("host=10.0.2: not an IPv4 address"));
        assert!(err("dns=x").contains("dns=x"));
        assert!(err("dhcpstart=").contains("dhcpstart"));
        assert!(err("mtu=big").contains("mtu=big"));
        assert!(err("mtu=70000").contains("mtu"));
        assert!(err("net=10.0.2.0/24,net=10.0.3.0/24").contains("net given more than once"));
        assert!(err("domainname=").contains("cannot be empty"));
        assert!(err(&format!("domainname={}", "a".repeat(256))).contains("255"));
        assert!(err(&format!("hostname={}", "a".repeat(256))).contains("255"));
        assert!(err("dnssearch=").contains("empty"));
        assert!(err("hostname=a\u{7}b").contains("control"));
        assert!(err("hostfwd=tcp::1-:99999").starts_with("hostfwd "));
        assert!(err("guestfwd=tcp::1").starts_with("guestfwd "));
        assert!(err("é=1").contains("unknown option"));
        assert_eq!(
            "hostname=x"
                .parse::<SlirpOptions>()
                .expect("ok")
                .hostname
                .as_deref(),
            Some("x")
        );
    }
}
