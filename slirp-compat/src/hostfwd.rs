//! `hostfwd` rules in QEMU's syntax: `[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`.
//!
//! Accepted, as in QEMU's `net/slirp.c` `slirp_hostfwd()`:
//! - the protocol field must be present but may be empty (`::8080-:80` is TCP);
//! - an empty HOSTADDR means 0.0.0.0 (QEMU binds INADDR_ANY);
//! - an empty GUESTADDR means "the first DHCP lease" (libslirp forwards to `vdhcp_start` then),
//!   kept as `None` here and resolved by [`HostFwd::resolve`].
//!
//! warren's extensions and where it is stricter:
//! - **Port ranges**: HOSTPORT and GUESTPORT may each be `A-B` (inclusive), e.g.
//!   `tcp::2000-2010-:3000-3010`, mapping port by port (as passt's `-t 2000-2010:3000-3010`).
//!   A guest range needs a host range of the same length; a host range needs a guest range of the
//!   same length. QEMU has no ranges.
//! - **How the `-` separator is found**: ports never contain `:` and addresses never contain `-`,
//!   so after the protocol and host address, the *last* `:` starts GUESTPORT and the *last* `-`
//!   before it starts GUESTADDR. Everything between the host address and that `-` is HOSTPORT
//!   (which may itself be a range `A-B`). In other words: the separator is the `-` followed by
//!   a `:` with no other `-` in between.
//! - **IPv6** host and guest addresses in brackets: `tcp:[::1]:2222-:22`,
//!   `tcp:[::]:8080-[fec0::15]:80`. The families may differ: a v6 listener may lead to the guest's
//!   IPv4 address and a v4 listener to its IPv6 address (libslirp's `slirp_add_hostxfwd` takes any
//!   pair). An IPv6 guest address must lie in the IPv6 prefix (or be link-local) and not be the
//!   router's or the DNS address.
//! - **An empty GUESTADDR follows the listener's family**: the forward goes to the default guest
//!   (the first DHCP lease, [`ResolvedHostFwd::follow_family`]); for an IPv6 client the gateway
//!   uses that guest's IPv6 address (its DHCPv6 lease, or the address it was seen using on the
//!   prefix: traffic or duplicate address detection) when it knows one, else its IPv4 address.
//! - Addresses must be dotted quads (QEMU's `inet_aton` also takes `127.1` or hex parts).
//! - Ports are decimal without leading zeros (QEMU reads ports with base 0, so `080` would be
//!   octal 64 there; rejecting it avoids a silent difference), and host port 0 is refused (QEMU
//!   would bind an ephemeral port nobody can find out).
//! - `unix:` host forwarding (libslirp ≥ 4.7) is not supported.

use crate::esc;
use netstack::config::Config;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// A protocol name that is neither `tcp` nor `udp`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad protocol {0:?}: expected tcp or udp")]
pub struct ProtoError(pub String);

/// A port or port range that does not parse; `what` names the field (`host port`, ...).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("missing {}", esc(.what))]
    Missing { what: String },
    #[error("{} {value:?} is not a decimal number", esc(.what))]
    NotDecimal { what: String, value: String },
    #[error("{} {value:?} has a leading zero (ambiguous: QEMU's hostfwd reads it as octal)", esc(.what))]
    LeadingZero { what: String, value: String },
    #[error("{} {value:?} out of range 1-65535", esc(.what))]
    OutOfRange { what: String, value: String },
    #[error("{} range {value:?} is backwards (first port above last)", esc(.what))]
    Backwards { what: String, value: String },
}

/// An address field (`[v6]` or a dotted quad) that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("{} {value:?}: missing ']'", esc(.what))]
    MissingBracket { what: String, value: String },
    #[error("{} {value:?} is not an IPv6 address", esc(.what))]
    NotIpv6 { what: String, value: String },
    #[error("{} {value:?}: put IPv6 addresses in brackets, e.g. [::1]", esc(.what))]
    Unbracketed { what: String, value: String },
    #[error("{} {value:?} is not an IPv4 address", esc(.what))]
    NotIpv4 { what: String, value: String },
}

/// A guest address that cannot be a guest on the gateway's LAN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestAddrError {
    #[error("guest address {ip} is outside {net}/{prefix}")]
    OutsideNet {
        ip: Ipv4Addr,
        net: Ipv4Addr,
        prefix: u8,
    },
    #[error("guest address {0} is the network or broadcast address")]
    NetworkOrBroadcast(Ipv4Addr),
    #[error("guest address {0} is the gateway's or the DNS forwarder's")]
    GatewayOrDns(Ipv4Addr),
    #[error(
        "IPv4 guest address {0}: IPv4 is off (--no-ipv4; give the guest's IPv6 address or none)"
    )]
    Ipv4Off(Ipv4Addr),
    #[error("IPv6 guest address {0}: IPv6 is off")]
    Ipv6Off(Ipv6Addr),
    #[error("IPv6 guest address {ip} is outside {net} (and not link-local)")]
    OutsideNet6 { ip: Ipv6Addr, net: String },
    #[error("IPv6 guest address {0} is multicast, the prefix's own address, the router's or the DNS address")]
    NotAGuest6(Ipv6Addr),
}

/// What is wrong with a `hostfwd` spec (shown after `hostfwd "SPEC": `).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostFwdSyntaxError {
    #[error("no ':' separators ({HOSTFWD_SYNTAX})")]
    NoSeparators,
    #[error("unix: host forwarding is not supported")]
    Unix,
    #[error("bad protocol {0:?}: expected tcp or udp ({HOSTFWD_SYNTAX})")]
    BadProto(String),
    #[error("host address {0:?}: missing ']'")]
    HostMissingBracket(String),
    #[error("missing ':' after host address ({HOSTFWD_SYNTAX})")]
    MissingColonAfterHost,
    #[error("missing guest address ({HOSTFWD_SYNTAX})")]
    MissingGuestAddr,
    #[error("missing '-' between host and guest ({HOSTFWD_SYNTAX})")]
    MissingDash,
    #[error("guest address {0:?}: missing '['")]
    GuestMissingBracket(String),
    #[error(transparent)]
    Addr(#[from] AddrError),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("guest port range {0} needs a host port range of the same length")]
    GuestRangeNeedsHostRange(PortRange),
    #[error(
        "host port range {host} ({} ports) and guest port range {guest} ({} ports) differ in length",
        .host.len(),
        .guest.len()
    )]
    RangeLengths { host: PortRange, guest: PortRange },
}

/// A `hostfwd` rule that does not parse or does not fit the gateway's LAN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostFwdError {
    #[error("hostfwd {spec:?}: {kind}")]
    Syntax {
        spec: String,
        kind: HostFwdSyntaxError,
    },
    #[error("hostfwd {rule}: {why}")]
    Guest {
        rule: Box<HostFwd>,
        why: GuestAddrError,
    },
}

/// Transport protocol of a forwarding rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, ProtoError> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(ProtoError(s.to_string())),
        }
    }
}

/// An inclusive port range; a single port has `first == last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }
    /// Number of ports in the range (1 for a single port).
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }
    /// Never true: a range holds at least one port. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn is_single(&self) -> bool {
        self.first == self.last
    }
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
    /// Parses `P` or `A-B` (decimal, 1..=65535, A <= B). `what` names the field in errors.
    pub fn parse(s: &str, what: &str) -> Result<Self, PortError> {
        match s.split_once('-') {
            None => Ok(PortRange::single(parse_port(s, what)?)),
            Some((a, b)) => {
                let first = parse_port(a, what)?;
                let last = parse_port(b, what)?;
                if first > last {
                    return Err(PortError::Backwards {
                        what: what.to_string(),
                        value: s.to_string(),
                    });
                }
                Ok(PortRange { first, last })
            }
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Parses a decimal port 1..=65535 without sign or leading zeros.
pub(crate) fn parse_port(s: &str, what: &str) -> Result<u16, PortError> {
    let what = what.to_string();
    let value = s.to_string();
    if s.is_empty() {
        return Err(PortError::Missing { what });
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortError::NotDecimal { what, value });
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(PortError::LeadingZero { what, value });
    }
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(PortError::OutOfRange { what, value }),
    }
}

/// Parses an address field: empty → `None`, `[v6]` or a dotted quad.
pub(crate) fn parse_addr_field(s: &str, what: &str) -> Result<Option<IpAddr>, AddrError> {
    if s.is_empty() {
        return Ok(None);
    }
    let what = what.to_string();
    let value = s.to_string();
    if let Some(inner) = s.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(AddrError::MissingBracket { what, value });
        };
        return inner
            .parse::<Ipv6Addr>()
            .map(|a| Some(IpAddr::V6(a)))
            .map_err(|_| AddrError::NotIpv6 { what, value });
    }
    s.parse::<Ipv4Addr>()
        .map(|a| Some(IpAddr::V4(a)))
        .map_err(|_| {
            if s.contains(':') {
                AddrError::Unbracketed { what, value }
            } else {
                AddrError::NotIpv4 { what, value }
            }
        })
}

/// Formats an address as the spec syntax wants it (IPv6 in brackets).
pub(crate) fn fmt_addr(a: &IpAddr) -> String {
    match a {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// One `hostfwd` rule, possibly covering a range of ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFwd {
    pub proto: Proto,
    /// Where the host listens; 0.0.0.0 when the spec left it empty.
    pub host_addr: IpAddr,
    pub host_ports: PortRange,
    /// The guest's address; `None` means the first DHCP lease (QEMU's default).
    pub guest_addr: Option<IpAddr>,
    /// Same length as `host_ports`.
    pub guest_ports: PortRange,
}

/// One single-port forwarding, as produced by [`HostFwd::expand`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFwdRule {
    pub proto: Proto,
    pub host: SocketAddr,
    pub guest_addr: Option<IpAddr>,
    pub guest_port: u16,
}

/// A single-port forwarding with the guest address filled in against a gateway config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedHostFwd {
    pub proto: Proto,
    pub host: SocketAddr,
    pub guest: SocketAddr,
    /// The spec named no guest address: `guest` is the default guest's IPv4 address, and an IPv6
    /// listener's connections go to that guest's IPv6 address when the gateway knows one.
    pub follow_family: bool,
}

const HOSTFWD_SYNTAX: &str = "expected [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT";

impl HostFwd {
    /// Parses a QEMU `hostfwd=` value (see the module docs for the exact rules).
    pub fn parse(spec: &str) -> Result<Self, HostFwdError> {
        Self::parse_inner(spec).map_err(|kind| HostFwdError::Syntax {
            spec: spec.to_string(),
            kind,
        })
    }

    fn parse_inner(spec: &str) -> Result<Self, HostFwdSyntaxError> {
        use HostFwdSyntaxError as E;
        let (proto_s, rest) = spec.split_once(':').ok_or(E::NoSeparators)?;
        let proto = match proto_s {
            "" | "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "unix" => return Err(E::Unix),
            other => return Err(E::BadProto(other.to_string())),
        };
        // Host address: bracketed IPv6 up to ']' then ':', otherwise up to the next ':'.
        let (host_s, rest) = if rest.starts_with('[') {
            let close = rest
                .find(']')
                .ok_or_else(|| E::HostMissingBracket(rest.to_string()))?;
            let after = &rest[close + 1..];
            let after = after.strip_prefix(':').ok_or(E::MissingColonAfterHost)?;
            (&rest[..=close], after)
        } else {
            rest.split_once(':').ok_or(E::MissingColonAfterHost)?
        };
        let host_addr =
            parse_addr_field(host_s, "host address")?.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        // rest = HOSTPORT[-HOSTPORT2]-[GUESTADDR]:GUESTPORT[-GUESTPORT2]
        let colon = rest.rfind(':').ok_or(E::MissingGuestAddr)?;
        let (before, guest_ports_s) = (&rest[..colon], &rest[colon + 1..]);
        let dash = before.rfind('-').ok_or(E::MissingDash)?;
        let (host_ports_s, guest_s) = (&before[..dash], &before[dash + 1..]);
        if guest_s.contains(']') && !guest_s.starts_with('[') {
            return Err(E::GuestMissingBracket(guest_s.to_string()));
        }
        let host_ports = PortRange::parse(host_ports_s, "host port")?;
        let guest_addr = parse_addr_field(guest_s, "guest address")?;
        let guest_ports = PortRange::parse(guest_ports_s, "guest port")?;
        if host_ports.len() != guest_ports.len() {
            return Err(if host_ports.is_single() {
                E::GuestRangeNeedsHostRange(guest_ports)
            } else {
                E::RangeLengths {
                    host: host_ports,
                    guest: guest_ports,
                }
            });
        }
        Ok(HostFwd {
            proto,
            host_addr,
            host_ports,
            guest_addr,
            guest_ports,
        })
    }

    /// The single-port rules this rule stands for, in port order.
    pub fn expand(&self) -> Vec<HostFwdRule> {
        (0..self.host_ports.len())
            .map(|i| HostFwdRule {
                proto: self.proto,
                host: SocketAddr::new(
                    self.host_addr,
                    (u32::from(self.host_ports.first) + i) as u16,
                ),
                guest_addr: self.guest_addr,
                guest_port: (u32::from(self.guest_ports.first) + i) as u16,
            })
            .collect()
    }

    /// Expands and fills in the guest address against `cfg` (an empty guest address means the
    /// first DHCP lease, as in libslirp, with [`ResolvedHostFwd::follow_family`] set). An IPv4
    /// guest address must be on the LAN other than the gateway, DNS, network and broadcast
    /// addresses; an IPv6 one needs IPv6 on and must be a guest address of the prefix (or
    /// link-local). The listener's family does not have to match the guest's.
    pub fn resolve(&self, cfg: &Config) -> Result<Vec<ResolvedHostFwd>, HostFwdError> {
        let guest = self.guest_addr.unwrap_or(IpAddr::V4(cfg.dhcp_start));
        let checked = check_forward_guest(cfg, guest, self.guest_addr.is_none());
        checked.map_err(|why| HostFwdError::Guest {
            rule: Box::new(self.clone()),
            why,
        })?;
        Ok(self
            .expand()
            .into_iter()
            .map(|r| ResolvedHostFwd {
                proto: r.proto,
                host: r.host,
                guest: SocketAddr::new(guest, r.guest_port),
                follow_family: self.guest_addr.is_none(),
            })
            .collect())
    }
}

/// Checks a forward's guest address: [`check_guest_addr`] or [`check_guest_addr6`], and an IPv4
/// one is refused with IPv4 off. `follow_family` (the rule named no guest; `ip` is the default
/// guest's IPv4 address): with IPv4 off it goes to that guest's IPv6 address, so it passes.
pub fn check_forward_guest(
    cfg: &Config,
    ip: IpAddr,
    follow_family: bool,
) -> Result<(), GuestAddrError> {
    match ip {
        IpAddr::V4(_) if !cfg.ipv4 && follow_family => Ok(()),
        IpAddr::V4(a) if !cfg.ipv4 => Err(GuestAddrError::Ipv4Off(a)),
        IpAddr::V4(a) => check_guest_addr(cfg, a),
        IpAddr::V6(a) => check_guest_addr6(cfg, a),
    }
}

/// Checks that `ip` can be a guest on `cfg`'s LAN.
pub fn check_guest_addr(cfg: &Config, ip: Ipv4Addr) -> Result<(), GuestAddrError> {
    if !cfg.net.contains(ip) {
        return Err(GuestAddrError::OutsideNet {
            ip,
            net: cfg.net.addr,
            prefix: cfg.net.prefix,
        });
    }
    if ip == cfg.net.network() || ip == cfg.net.broadcast() {
        return Err(GuestAddrError::NetworkOrBroadcast(ip));
    }
    if ip == cfg.gateway || ip == cfg.dns {
        return Err(GuestAddrError::GatewayOrDns(ip));
    }
    Ok(())
}

/// Checks that `ip` can be a guest's IPv6 address under `cfg`'s IPv6 plan: inside the prefix or
/// link-local, unicast, not the prefix's own (subnet-router anycast) address, the router's or the
/// DNS address.
pub fn check_guest_addr6(cfg: &Config, ip: Ipv6Addr) -> Result<(), GuestAddrError> {
    let Some(plan) = &cfg.v6 else {
        return Err(GuestAddrError::Ipv6Off(ip));
    };
    let ll = ip.segments()[0] & 0xffc0 == 0xfe80;
    if !ll && !plan.net.contains(ip) {
        return Err(GuestAddrError::OutsideNet6 {
            ip,
            net: plan.net.to_string(),
        });
    }
    if ip.is_multicast() || ip == plan.net.addr() || ip == plan.router || ip == plan.dns {
        return Err(GuestAddrError::NotAGuest6(ip));
    }
    Ok(())
}

impl FromStr for HostFwd {
    type Err = HostFwdError;
    fn from_str(s: &str) -> Result<Self, HostFwdError> {
        HostFwd::parse(s)
    }
}

/// Writes the rule back in the spec syntax, with the protocol and host address explicit
/// (`tcp:0.0.0.0:2222-:22`); parsing the output gives the same rule.
impl fmt::Display for HostFwd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guest = self.guest_addr.as_ref().map(fmt_addr).unwrap_or_default();
        write!(
            f,
            "{}:{}:{}-{}:{}",
            self.proto,
            fmt_addr(&self.host_addr),
            self.host_ports,
            guest,
            self.guest_ports
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostFwd {
        HostFwd::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn err(s: &str) -> String {
        match HostFwd::parse(s) {
            Ok(h) => panic!("{s} parsed as {h:?}"),
            Err(e) => {
                let e = e.to_string();
                assert!(!e.contains('\n'), "multi-line error {e:?}");
                assert!(e.starts_with("hostfwd "), "{e}");
                e
            }
        }
    }
    fn v4(a: &str) -> IpAddr {
        a.parse().expect("addr")
    }

    #[test]
    fn qemu_forms() {
        let h = p("tcp::2222-:22");
        assert_eq!(h.proto, Proto::Tcp);
        assert_eq!(h.host_addr, v4("0.0.0.0"));
        assert_eq!(h.host_ports, PortRange::single(2222));
        assert_eq!(h.guest_addr, None);
        assert_eq!(h.guest_ports, PortRange::single(22));

        let h = p("udp:127.0.0.1:5353-10.0.2.15:53");
        assert_eq!(h.proto, Proto::Udp);
        assert_eq!(h.host_addr, v4("127.0.0.1"));
        assert_eq!(h.guest_addr, Some(v4("10.0.2.15")));
        assert_eq!(h.guest_ports.first, 53);

        let h = p("::8080-:80");
        assert_eq!(h.proto, Proto::Tcp);
        assert_eq!(h.host_ports.first, 8080);
        assert_eq!(h.guest_ports.first, 80);

        let h = p(":127.0.0.1:65535-10.0.2.100:1");
        assert_eq!(h.host_ports.first, 65535);
        assert_eq!(h.guest_ports.first, 1);
    }

    #[test]
    fn ranges() {
        let h = p("tcp::2000-2010-:3000-3010");
        assert_eq!(
            h.host_ports,
            PortRange {
                first: 2000,
                last: 2010
            }
        );
        assert_eq!(
            h.guest_ports,
            PortRange {
                first: 3000,
                last: 3010
            }
        );
        let rules = h.expand();
        assert_eq!(rules.len(), 11);
        assert_eq!(rules[0].host.port(), 2000);
        assert_eq!(rules[0].guest_port, 3000);
        assert_eq!(rules[10].host.port(), 2010);
        assert_eq!(rules[10].guest_port, 3010);

        let h = p("udp:127.0.0.1:2000-2001-10.0.2.15:2000-2001");
        assert_eq!(h.guest_addr, Some(v4("10.0.2.15")));
        assert_eq!(h.expand().len(), 2);

        // A range up to the last port does not overflow.
        let h = p("tcp::65534-65535-:1-2");
        let r = h.expand();
        assert_eq!((r[1].host.port(), r[1].guest_port), (65535, 2));
    }

    #[test]
    fn range_errors() {
        assert!(err("tcp::2000-:3000-3010").contains("needs a host port range"));
        assert!(err("tcp::2000-2010-:3000-3005").contains("differ in length"));
        assert!(err("tcp::2000-2010-:3000").contains("differ in length"));
        assert!(err("tcp::2010-2000-:3010-3000").contains("backwards"));
        assert!(err("tcp::2000-2010-2020-:1-11").contains("host port"));
    }

    #[test]
    fn ipv6_in_brackets() {
        let h = p("tcp:[::1]:2222-:22");
        assert_eq!(h.host_addr, "::1".parse::<IpAddr>().expect("v6"));
        assert_eq!(h.to_string(), "tcp:[::1]:2222-:22");
        let h = p("tcp:[fd00::1]:2222-[fd00::5]:22");
        assert_eq!(h.guest_addr, Some("fd00::5".parse().expect("v6")));
        assert!(err("tcp:::1:2222-:22").contains("host"));
        assert!(err("tcp:[::1:2222-:22").contains("']'"));
        assert!(err("tcp:[::1]2222-:22").contains("missing ':'"));
        assert!(err("tcp:[1.2.3.4]:1-:2").contains("IPv6"));
        assert!(err("tcp::1-fd00::5]:2").contains("'['"));
        // Either family may lead to the other.
        let h = p("tcp:[::1]:1-10.0.2.15:2");
        assert_eq!(h.guest_addr, Some(v4("10.0.2.15")));
        let h = p("udp:127.0.0.1:5353-[fec0::15]:53");
        assert_eq!(h.guest_addr, Some("fec0::15".parse().expect("v6")));
        assert_eq!(h.to_string(), "udp:127.0.0.1:5353-[fec0::15]:53");
        let h = p("tcp:[::]:8080-8081-[fec0::15]:80-81");
        assert_eq!(h.host_addr, "::".parse::<IpAddr>().expect("v6"));
        assert_eq!(h.expand().len(), 2);
    }

    #[test]
    fn bad_specs_have_clear_errors() {
        assert!(err("").contains("no ':'"));
        assert!(err("2222-:22").contains("bad protocol"));
        assert!(err("sctp::1-:2").contains("bad protocol"));
        assert!(err("unix:/tmp/s-:22").contains("not supported"));
        assert!(err("tcp:2222-:22").contains("host address"));
        assert!(err("tcp::2222:22").contains("'-'"));
        assert!(err("tcp::2222-22").contains("missing guest address"));
        assert!(err("tcp::-:22").contains("missing host port"));
        assert!(err("tcp::2222-:").contains("missing guest port"));
        assert!(err("tcp::0-:22").contains("out of range"));
        assert!(err("tcp::2222-:0").contains("out of range"));
        assert!(err("tcp::65536-:22").contains("out of range"));
        assert!(err("tcp::99999999999999999999-:22").contains("out of range"));
        assert!(err("tcp::080-:22").contains("leading zero"));
        assert!(err("tcp::0x50-:22").contains("decimal"));
        assert!(err("tcp::+80-:22").contains("decimal"));
        assert!(err("tcp:localhost:80-:22").contains("not an IPv4"));
        assert!(err("tcp:127.1:80-:22").contains("not an IPv4"));
        assert!(err("tcp::80-10.0.2:22").contains("guest address"));
        assert!(err("tcp::80-:22:23").contains("guest address"));
        assert!(err("tcp::80-:2 2").contains("decimal"));
        // Non-ASCII input never panics on a char boundary.
        assert!(err("tcp:é:80-:22").contains("host address"));
        assert!(err("tcp:[é]:80-:22").contains("IPv6"));
        assert!(err("é").contains("no ':'"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "tcp::2222-:22",
            "udp:127.0.0.1:5353-10.0.2.15:53",
            "::8080-:80",
            "tcp::2000-2010-:3000-3010",
            "tcp:[::1]:2222-:22",
            "tcp:[fd00::1]:1-2-[fd00::5]:3-4",
        ] {
            let h = p(s);
            let shown = h.to_string();
            assert_eq!(p(&shown), h, "{s} -> {shown}");
        }
        assert_eq!(p("::8080-:80").to_string(), "tcp:0.0.0.0:8080-:80");
        assert_eq!(
            p("udp:127.0.0.1:2000-2001-10.0.2.15:3000-3001").to_string(),
            "udp:127.0.0.1:2000-2001-10.0.2.15:3000-3001"
        );
        assert_eq!("tcp::1-:2".parse::<HostFwd>().expect("ok"), p("tcp::1-:2"));
    }

    #[test]
    fn resolve_against_config() {
        let cfg = Config::default();
        let r = p("tcp::2222-:22").resolve(&cfg).expect("ok");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].guest, "10.0.2.15:22".parse().expect("sa"));
        assert_eq!(r[0].host, "0.0.0.0:2222".parse().expect("sa"));
        let r = p("udp::5000-5001-10.0.2.100:6000-6001")
            .resolve(&cfg)
            .expect("ok");
        assert_eq!(r[1].guest, "10.0.2.100:6001".parse().expect("sa"));
        assert_eq!(r[1].proto, Proto::Udp);
        for bad in [
            "tcp::1-10.0.3.5:2",
            "tcp::1-10.0.2.2:2",
            "tcp::1-10.0.2.3:2",
            "tcp::1-10.0.2.0:2",
            "tcp::1-10.0.2.255:2",
            "tcp::1-[fd00::5]:2",
            "tcp::1-[fec0::]:2",
            "tcp::1-[fec0::2]:2",
            "tcp::1-[fec0::3]:2",
            "tcp::1-[ff02::1]:2",
        ] {
            let e = p(bad).resolve(&cfg).unwrap_err().to_string();
            assert!(e.starts_with("hostfwd tcp:"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(p("tcp::1-[fd00::5]:2")
            .resolve(&cfg)
            .unwrap_err()
            .to_string()
            .contains("outside fec0::/64"));
    }

    #[test]
    fn resolve_ipv6_and_cross_family() {
        let cfg = Config::default();
        assert!(cfg.v6.is_some(), "IPv6 is on by default");
        let sa = |s: &str| s.parse::<SocketAddr>().expect("sa");
        // v6 listener, v6 guest; a range.
        let r = p("tcp:[::1]:8080-8081-[fec0::15]:80-81")
            .resolve(&cfg)
            .expect("ok");
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[1].host, r[1].guest),
            (sa("[::1]:8081"), sa("[fec0::15]:81"))
        );
        assert!(!r[1].follow_family);
        // v4 listener to a v6 guest, v6 listener to a v4 guest.
        let r = p("udp:127.0.0.1:5353-[fec0::15]:53")
            .resolve(&cfg)
            .expect("ok");
        assert_eq!(r[0].guest, sa("[fec0::15]:53"));
        let r = p("tcp:[::]:8080-10.0.2.15:80").resolve(&cfg).expect("ok");
        assert_eq!(
            (r[0].host, r[0].guest),
            (sa("[::]:8080"), sa("10.0.2.15:80"))
        );
        // No guest address: the default guest's v4 address, following the listener's family.
        let r = p("tcp:[::1]:8080-:80").resolve(&cfg).expect("ok");
        assert_eq!(r[0].guest, sa("10.0.2.15:80"));
        assert!(r[0].follow_family);
        // Link-local guest addresses are on the link too.
        assert!(p("tcp:[::1]:1-[fe80::5054:ff:fe12:3456]:2")
            .resolve(&cfg)
            .is_ok());
        // IPv6 off: v6 guests are refused with a clear reason; v6 listeners to v4 guests work.
        let off = Config {
            v6: None,
            ..Config::default()
        };
        let e = p("tcp::1-[fec0::15]:2")
            .resolve(&off)
            .unwrap_err()
            .to_string();
        assert!(e.contains("IPv6 is off"), "{e}");
        assert!(p("tcp:[::1]:1-:2").resolve(&off).is_ok());
        // IPv4 off: a v4 guest is refused (it could never be reached), either listener family;
        // no guest address resolves (the gateway picks the guest's IPv6 address at run time);
        // a v6 guest works from either listener family.
        let no4 = Config {
            ipv4: false,
            ..Config::default()
        };
        for bad in ["tcp::1-10.0.2.15:2", "udp:[::1]:1-10.0.2.15:2"] {
            let e = p(bad).resolve(&no4).unwrap_err().to_string();
            assert!(e.contains("IPv4 is off"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        for good in ["tcp::1-:2", "tcp:[::]:1-:2", "tcp:127.0.0.1:1-[fec0::15]:2"] {
            let r = p(good).resolve(&no4).expect(good);
            assert_eq!(r[0].follow_family, !good.contains("fec0"), "{good}");
        }
    }

    #[test]
    fn port_range_helpers() {
        let r = PortRange::parse("10-12", "port").expect("ok");
        assert_eq!(r.len(), 3);
        assert!(r.contains(11) && !r.contains(13));
        assert!(!r.is_empty() && !r.is_single());
        assert_eq!(r.to_string(), "10-12");
        assert_eq!(PortRange::parse("1-65535", "p").expect("ok").len(), 65535);
        assert!("ftp".parse::<Proto>().is_err());
        assert_eq!("udp".parse::<Proto>(), Ok(Proto::Udp));
    }
}
