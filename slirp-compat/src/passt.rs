//! The `passt` and `pasta` command lines, for warren's drop-ins (`pasta.rs` adds pasta's operands).
//!
//! passt and pasta share one option grammar (passt's `conf.c`, tag 2026_07_16, read for behaviour
//! only; this is an independent implementation). It is parsed the way its `getopt_long` call does
//! (short string `+dqfel:hs:c:F:I:p:P:m:a:n:M:g:i:o:D:S:H:461t:u:T:U:`):
//! - `--opt=V` and `--opt V`; unique prefixes of long options; short options clustered (`-46`)
//!   with an argument attached or following (`-t22`, `-t 22`);
//! - parsing stops at the first operand (the leading `+`): later words are operands (pasta's PID,
//!   namespace path or command); `--` ends the options.
//!
//! Every option passt or pasta knows is recognised. Each is either *accepted* (with passt's
//! meaning, or with a documented different meaning, see [`Parsed::notes`]) or *refused* with a
//! one-line error naming it. Anything else is an unknown-option error. Nothing is ignored silently.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// A passt or pasta command line that does not parse or asks for what warren does not do; the
/// texts are passt's own (getopt's) where it has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasstError {
    #[error("unrecognized option '--{0}'")]
    Unrecognized(String),
    #[error("option '--{name}' is ambiguous; possibilities:{}", possibilities(.candidates))]
    Ambiguous {
        name: String,
        candidates: Vec<&'static str>,
    },
    #[error("invalid option -- '{0}'")]
    InvalidOption(char),
    #[error("option '--{0}' doesn't allow an argument")]
    NoArgumentAllowed(&'static str),
    #[error("option '--{0}' requires an argument")]
    RequiresArgument(&'static str),
    #[error("option requires an argument -- '{0}'")]
    ShortRequiresArgument(char),
    #[error("--{opt} {value:?}: not an IP address")]
    NotIp { opt: String, value: String },
    #[error("--{opt} {value}: IPv6 is not served by warren yet (IPv4 only)")]
    Ipv6NotServed { opt: String, value: String },
    #[error("--netmask {0}: prefix length must be 1..30")]
    NetmaskPrefix(String),
    #[error("--netmask {0:?}: expected a prefix length or a dotted netmask")]
    NetmaskSyntax(String),
    #[error("--netmask {0}: not a contiguous netmask of /1../30")]
    NetmaskGaps(String),
    #[error("port spec {spec:?}: bad port {port:?}")]
    BadPort { spec: String, port: String },
    #[error("port spec {spec:?}: range {range} goes backwards")]
    Backwards { spec: String, range: String },
    #[error("--{opt} {spec}: 'auto' (forward the ports bound inside the namespace) is a pasta option only")]
    AutoInPorts { opt: String, spec: String },
    #[error("--{opt} {spec}: 'auto' is a pasta option only")]
    AutoPastaOnly { opt: String, spec: String },
    #[error("--{opt} {spec}: 'all' (every free port, one host socket each) is not supported by warren: list the ports, e.g. 8080 or 8000-8100")]
    All { opt: String, spec: String },
    #[error(
        "--{opt} {spec}: binding a forward to an interface (ADDR%IFACE) is not supported by warren"
    )]
    Interface { opt: String, spec: String },
    #[error("port spec {spec:?}: {from} and {to} differ in length")]
    LengthMismatch {
        spec: String,
        from: String,
        to: String,
    },
    #[error(
        "--{opt} {spec}: exclusions alone mean \"all other ports\", which warren does not support"
    )]
    ExclusionsOnly { opt: String, spec: String },
    #[error(
        "--{opt} {spec}: with 'auto', warren takes plain port ranges (no mapping, no exclusions)"
    )]
    AutoWithMapping { opt: String, spec: String },
    /// An option of the other program (`only` names the one that has it).
    #[error("--{opt} is a {only} option only")]
    WrongProgram {
        opt: &'static str,
        only: &'static str,
    },
    /// A real passt/pasta option that warren refuses, and why.
    #[error("{}: --{opt}: {why}", .kind.name())]
    Refused {
        kind: Kind,
        opt: &'static str,
        why: &'static str,
    },
    #[error("--fd {0:?}: expected a descriptor number, 3 or above")]
    BadFd(String),
    #[error("--mtu {0:?}: not a number")]
    MtuNotNumber(String),
    #[error("--mtu {0}: warren needs 576..65520")]
    MtuRange(u16),
    #[error("passt takes no operands (got {0:?})")]
    PasstOperands(String),
    #[error("{}: --tcp-ns: {ports} ports; warren forwards at most {MAX_NS_PORTS} namespace ports to the host", .kind.name())]
    TooManyNsPorts { kind: Kind, ports: usize },
    #[error("{}: -T/-U auto|all with --no-map-gw: warren reaches host ports through the gateway address; list the TCP ports (-T 5432) or drop --no-map-gw", .0.name())]
    NsAllWithNoMapGw(Kind),
    #[error("{}: --udp-ns with --no-map-gw: warren forwards only TCP namespace ports by themselves (-T); drop --no-map-gw to reach the host's UDP ports through the gateway address", .0.name())]
    UdpNsWithNoMapGw(Kind),
}

fn possibilities(names: &[&str]) -> String {
    names.iter().map(|l| format!(" '--{l}'")).collect()
}

/// Which of the two programs is emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Passt,
    Pasta,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Passt => "passt",
            Kind::Pasta => "pasta",
        }
    }
}

/// One forwarded range: host ports `host.0..=host.1` to guest ports starting at `guest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortForward {
    /// Host address to bind (`ADDR/PORTS`); `None`: all addresses.
    pub addr: Option<IpAddr>,
    pub host: (u16, u16),
    pub guest: u16,
}

/// A `-t`/`-u`/`-T`/`-U` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    /// `none`.
    None,
    /// Explicit ranges (exclusions already subtracted).
    Specs(Vec<PortForward>),
}

/// pasta's `auto` (`-t auto`, `-t ADDR/auto`, `-t 8000-8010,auto`): forward the ports in `ranges`
/// (all when empty) while they are bound inside the namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoPorts {
    /// Host address the forwards bind (`ADDR/auto`); `None`: all addresses.
    pub addr: Option<IpAddr>,
    pub ranges: Vec<(u16, u16)>,
}

impl AutoPorts {
    pub fn wants(&self, port: u16) -> bool {
        self.ranges.is_empty() || self.ranges.iter().any(|&(a, b)| (a..=b).contains(&port))
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub help: bool,
    pub version: bool,
    /// `-f`: stay in the foreground (both programs daemonize by default).
    pub foreground: bool,
    /// `-q` (negative) / `-d`, `--trace` (positive).
    pub verbosity: i8,
    /// `-l FILE`: where the daemon's log goes.
    pub log_file: Option<PathBuf>,
    /// `-1`/`--one-off` (passt): exit when the guest disconnects.
    pub one_off: bool,
    /// `-F`/`--fd` (passt): an inherited, connected stream socket to the guest (QEMU's `-netdev
    /// passt` passes `--fd 3`); implies `one_off`.
    pub fd: Option<i32>,
    /// `-s`/`--socket` (passt).
    pub socket: Option<PathBuf>,
    /// `-P`/`--pid`.
    pub pid_file: Option<PathBuf>,
    /// `-p`/`--pcap`.
    pub pcap: Option<PathBuf>,
    pub mtu: Option<u16>,
    /// `-a` with an IPv4 address.
    pub address: Option<Ipv4Addr>,
    /// `-a` with an IPv6 address: its /64 becomes warren's IPv6 prefix (`--net6`), and pasta's
    /// `--config-net` gives it to the namespace.
    pub address6: Option<Ipv6Addr>,
    /// `-g` with an IPv6 address: warren's IPv6 router (`--gateway6`).
    pub gateway6: Option<Ipv6Addr>,
    /// `--dns-forward` with an IPv6 address: warren's IPv6 DNS address (`--dns-addr6`).
    pub dns_forward6: Option<Ipv6Addr>,
    /// `-4`/`--ipv4-only` (`--no-ipv6`).
    pub ipv4_only: bool,
    /// `-6`/`--ipv6-only` (`--no-ipv4`).
    pub ipv6_only: bool,
    /// `-n` as a prefix length.
    pub prefix: Option<u8>,
    pub gateway: Option<Ipv4Addr>,
    /// `-D`: resolvers; warren's DNS proxy forwards to them.
    pub dns: Vec<IpAddr>,
    /// `-S`: the search list (`Some(empty)` for `none`).
    pub search: Option<Vec<String>>,
    /// `--dns-forward`: the address the guest sends DNS to (warren's DNS address).
    pub dns_forward: Option<Ipv4Addr>,
    /// `--dns-host`: where those queries go on the host.
    pub dns_host: Option<IpAddr>,
    /// `--no-map-gw`: the gateway does not reach the host's loopback.
    pub no_map_gw: bool,
    pub tcp: Vec<Ports>,
    pub udp: Vec<Ports>,
    /// pasta `-t auto` (also pasta's default when no `-t` is given).
    pub tcp_auto: Option<AutoPorts>,
    /// pasta `-u auto` (also the default when no `-u` is given).
    pub udp_auto: Option<AutoPorts>,
    /// pasta `-T`: namespace ports (`host` here) reaching host loopback ports (`guest` here).
    pub tcp_ns: Vec<PortForward>,
    /// pasta `-U` ranges (accepted only while the gateway reaches the host's loopback).
    pub udp_ns: Vec<PortForward>,
    /// pasta `-T auto|all` / `-U auto|all`.
    pub ns_all: bool,
    /// pasta: `--netns`.
    pub netns: Option<String>,
    /// pasta: `--userns`.
    pub userns: Option<PathBuf>,
    /// pasta: `-I`.
    pub ns_ifname: Option<String>,
    /// pasta: `--config-net`.
    pub config_net: bool,
    /// pasta: `--no-netns-quit`: keep running when the namespace file is removed.
    pub no_netns_quit: bool,
    /// Operands (pasta: PID, namespace path or command; passt takes none).
    pub operands: Vec<String>,
    /// One line each about options accepted with a different meaning.
    pub notes: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    No,
    Req,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Both,
    Passt,
    Pasta,
}

/// (long name, short, argument, scope). passt's `conf.c` option table, 2026_07_16.
const OPTS: &[(&str, Option<char>, Arg, Scope)] = &[
    ("debug", Some('d'), Arg::No, Scope::Both),
    ("quiet", Some('q'), Arg::No, Scope::Both),
    ("foreground", Some('f'), Arg::No, Scope::Both),
    ("stderr", Some('e'), Arg::No, Scope::Both),
    ("log-file", Some('l'), Arg::Req, Scope::Both),
    ("help", Some('h'), Arg::No, Scope::Both),
    ("socket", Some('s'), Arg::Req, Scope::Passt),
    ("socket-path", None, Arg::Req, Scope::Passt),
    ("fd", Some('F'), Arg::Req, Scope::Both),
    ("ns-ifname", Some('I'), Arg::Req, Scope::Pasta),
    ("pcap", Some('p'), Arg::Req, Scope::Both),
    ("pid", Some('P'), Arg::Req, Scope::Both),
    ("mtu", Some('m'), Arg::Req, Scope::Both),
    ("address", Some('a'), Arg::Req, Scope::Both),
    ("netmask", Some('n'), Arg::Req, Scope::Both),
    ("mac-addr", Some('M'), Arg::Req, Scope::Both),
    ("gateway", Some('g'), Arg::Req, Scope::Both),
    ("interface", Some('i'), Arg::Req, Scope::Both),
    ("outbound", Some('o'), Arg::Req, Scope::Both),
    ("dns", Some('D'), Arg::Req, Scope::Both),
    ("search", Some('S'), Arg::Req, Scope::Both),
    ("hostname", Some('H'), Arg::Req, Scope::Both),
    ("no-tcp", None, Arg::No, Scope::Both),
    ("no-udp", None, Arg::No, Scope::Both),
    ("no-icmp", None, Arg::No, Scope::Both),
    ("no-dhcp", None, Arg::No, Scope::Both),
    ("no-dhcpv6", None, Arg::No, Scope::Both),
    ("no-ndp", None, Arg::No, Scope::Both),
    ("no-ra", None, Arg::No, Scope::Both),
    ("no-splice", None, Arg::No, Scope::Pasta),
    ("splice-only", None, Arg::No, Scope::Pasta),
    ("freebind", None, Arg::No, Scope::Both),
    ("no-map-gw", None, Arg::No, Scope::Both),
    ("map-gw", None, Arg::No, Scope::Both),
    ("ipv4-only", Some('4'), Arg::No, Scope::Both),
    ("ipv6-only", Some('6'), Arg::No, Scope::Both),
    ("one-off", Some('1'), Arg::No, Scope::Passt),
    ("tcp-ports", Some('t'), Arg::Req, Scope::Both),
    ("udp-ports", Some('u'), Arg::Req, Scope::Both),
    ("tcp-ns", Some('T'), Arg::Req, Scope::Pasta),
    ("udp-ns", Some('U'), Arg::Req, Scope::Pasta),
    ("userns", None, Arg::Req, Scope::Pasta),
    ("netns", None, Arg::Req, Scope::Pasta),
    ("ns-mac-addr", None, Arg::Req, Scope::Pasta),
    ("dhcp-dns", None, Arg::No, Scope::Both),
    ("no-dhcp-dns", None, Arg::No, Scope::Both),
    ("dhcp-search", None, Arg::No, Scope::Both),
    ("no-dhcp-search", None, Arg::No, Scope::Both),
    ("dns-forward", None, Arg::Req, Scope::Both),
    ("no-netns-quit", None, Arg::No, Scope::Pasta),
    ("trace", None, Arg::No, Scope::Both),
    ("runas", None, Arg::Req, Scope::Both),
    ("log-size", None, Arg::Req, Scope::Both),
    ("version", None, Arg::No, Scope::Both),
    ("outbound-if4", None, Arg::Req, Scope::Both),
    ("outbound-if6", None, Arg::Req, Scope::Both),
    ("config-net", None, Arg::No, Scope::Pasta),
    ("no-copy-routes", None, Arg::No, Scope::Pasta),
    ("no-copy-addrs", None, Arg::No, Scope::Pasta),
    ("netns-only", None, Arg::No, Scope::Pasta),
    ("map-host-loopback", None, Arg::Req, Scope::Both),
    ("map-guest-addr", None, Arg::Req, Scope::Both),
    ("host-lo-to-ns-lo", None, Arg::No, Scope::Pasta),
    ("dns-host", None, Arg::Req, Scope::Both),
    ("vhost-user", None, Arg::No, Scope::Passt),
    ("print-capabilities", None, Arg::No, Scope::Passt),
    ("fqdn", None, Arg::Req, Scope::Both),
    ("repair-path", None, Arg::Req, Scope::Passt),
    ("migrate-exit", None, Arg::No, Scope::Passt),
    ("migrate-no-linger", None, Arg::No, Scope::Passt),
    ("stats", None, Arg::Req, Scope::Both),
    ("conf-path", Some('c'), Arg::Req, Scope::Both),
    ("chroot-fallback", None, Arg::No, Scope::Both),
];

fn find_long(name: &str) -> Result<(&'static str, Arg), PasstError> {
    if let Some(&(l, _, a, _)) = OPTS.iter().find(|(l, ..)| *l == name) {
        return Ok((l, a));
    }
    let m: Vec<_> = OPTS.iter().filter(|(l, ..)| l.starts_with(name)).collect();
    match m.as_slice() {
        [] => Err(PasstError::Unrecognized(name.to_string())),
        [&(l, _, a, _)] => Ok((l, a)),
        many => Err(PasstError::Ambiguous {
            name: name.to_string(),
            candidates: many.iter().map(|(l, ..)| *l).collect(),
        }),
    }
}

fn find_short(c: char) -> Result<(&'static str, Arg), PasstError> {
    OPTS.iter()
        .find(|(_, s, ..)| *s == Some(c))
        .map(|&(l, _, a, _)| (l, a))
        .ok_or(PasstError::InvalidOption(c))
}

/// Splits the words into (long option name, value) pairs and the operands, as `getopt_long` with
/// a leading `+` does.
/// Options as (long name, value) in order, and the operands.
type Tokens = (Vec<(&'static str, Option<String>)>, Vec<String>);

fn tokenize(args: &[String]) -> Result<Tokens, PasstError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            return Ok((out, args[i..].to_vec()));
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let (long, arg) = find_long(name)?;
            let v = match (arg, inline) {
                (Arg::No, Some(_)) => return Err(PasstError::NoArgumentAllowed(long)),
                (Arg::No, None) => None,
                (Arg::Req, Some(v)) => Some(v),
                (Arg::Req, None) => {
                    let v = args.get(i).ok_or(PasstError::RequiresArgument(long))?;
                    i += 1;
                    Some(v.clone())
                }
            };
            out.push((long, v));
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let (long, arg) = find_short(c)?;
                if arg == Arg::Req {
                    let rest: String = chars[j..].iter().collect();
                    let v = if !rest.is_empty() {
                        rest
                    } else {
                        let v = args.get(i).ok_or(PasstError::ShortRequiresArgument(c))?;
                        i += 1;
                        v.clone()
                    };
                    out.push((long, Some(v)));
                    break;
                }
                out.push((long, None));
            }
        } else {
            // The leading '+': the first operand ends the options.
            return Ok((out, args[i - 1..].to_vec()));
        }
    }
    Ok((out, Vec::new()))
}

fn ip(opt: &str, v: &str) -> Result<IpAddr, PasstError> {
    v.parse().map_err(|_| PasstError::NotIp {
        opt: opt.to_string(),
        value: v.to_string(),
    })
}

/// IPv4 only for now: an IPv6 value is refused by name.
fn ipv4(opt: &str, v: &str) -> Result<Ipv4Addr, PasstError> {
    match ip(opt, v)? {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(PasstError::Ipv6NotServed {
            opt: opt.to_string(),
            value: v.to_string(),
        }),
    }
}

/// `-n`: a prefix length or a dotted netmask.
pub fn parse_netmask(v: &str) -> Result<u8, PasstError> {
    if let Ok(n) = v.parse::<u8>() {
        if (1..=30).contains(&n) {
            return Ok(n);
        }
        return Err(PasstError::NetmaskPrefix(v.to_string()));
    }
    let m: Ipv4Addr = v
        .parse()
        .map_err(|_| PasstError::NetmaskSyntax(v.to_string()))?;
    let bits = u32::from(m);
    let n = bits.leading_ones();
    if bits.checked_shl(n).unwrap_or(0) != 0 || !(1..=30).contains(&n) {
        return Err(PasstError::NetmaskGaps(v.to_string()));
    }
    Ok(n as u8)
}

fn port(s: &str, spec: &str) -> Result<u16, PasstError> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p > 0 && !s.starts_with('+'))
        .ok_or_else(|| PasstError::BadPort {
            spec: spec.to_string(),
            port: s.to_string(),
        })
}

fn range(s: &str, spec: &str) -> Result<(u16, u16), PasstError> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a, spec)?, port(b, spec)?);
            if b < a {
                return Err(PasstError::Backwards {
                    spec: spec.to_string(),
                    range: s.to_string(),
                });
            }
            Ok((a, b))
        }
        None => {
            let p = port(s, spec)?;
            Ok((p, p))
        }
    }
}

/// Parses a `-t`/`-u` spec: `none`, or `[ADDR/]RANGES` where RANGES is a comma list of
/// `[~]FIRST[-LAST][:TO[-TOLAST]]`. `all` (passt), `auto` (pasta), exclusion-only lists (meaning
/// "all but") and `ADDR%IFACE/` are refused: warren forwards the ports it is given.
pub fn parse_ports(opt: &str, spec: &str) -> Result<Ports, PasstError> {
    let (o, sp) = (|| opt.to_string(), || spec.to_string());
    if spec == "none" {
        return Ok(Ports::None);
    }
    if spec.split(',').any(|s| s == "auto" || s.ends_with("/auto")) {
        return Err(PasstError::AutoInPorts {
            opt: o(),
            spec: sp(),
        });
    }
    if spec
        .split(',')
        .any(|s| s == "all" || s.ends_with("/all") || s.starts_with("all:"))
    {
        return Err(PasstError::All {
            opt: o(),
            spec: sp(),
        });
    }
    // The address part: everything up to the last '/' (IPv6 addresses contain ':' but no '/').
    let (addr, list) = match spec.rsplit_once('/') {
        Some((a, l)) => {
            if a.contains('%') {
                return Err(PasstError::Interface {
                    opt: o(),
                    spec: sp(),
                });
            }
            let a = a.trim_start_matches('[').trim_end_matches(']');
            (Some(ip(opt, a)?), l)
        }
        None => (None, spec),
    };
    let mut incl: Vec<((u16, u16), u16)> = Vec::new();
    let mut excl: Vec<(u16, u16)> = Vec::new();
    for item in list.split(',') {
        if let Some(x) = item.strip_prefix('~') {
            excl.push(range(x, spec)?);
            continue;
        }
        let (from, to) = match item.split_once(':') {
            Some((f, t)) => (f, Some(t)),
            None => (item, None),
        };
        let host = range(from, spec)?;
        let guest = match to {
            Some(t) => {
                let g = range(t, spec)?;
                if g.1 - g.0 != host.1 - host.0 {
                    return Err(PasstError::LengthMismatch {
                        spec: sp(),
                        from: from.to_string(),
                        to: t.to_string(),
                    });
                }
                g.0
            }
            None => host.0,
        };
        incl.push((host, guest));
    }
    if incl.is_empty() {
        return Err(PasstError::ExclusionsOnly {
            opt: o(),
            spec: sp(),
        });
    }
    // Subtract the exclusions, range by range.
    let mut out = Vec::new();
    for ((h0, h1), g0) in incl {
        let mut pieces = vec![(h0, h1)];
        for &(x0, x1) in &excl {
            let mut next = Vec::new();
            for (a, b) in pieces {
                if x1 < a || x0 > b {
                    next.push((a, b));
                    continue;
                }
                if x0 > a {
                    next.push((a, x0 - 1));
                }
                if x1 < b {
                    next.push((x1 + 1, b));
                }
            }
            pieces = next;
        }
        for (a, b) in pieces {
            out.push(PortForward {
                addr,
                host: (a, b),
                guest: g0 + (a - h0),
            });
        }
    }
    Ok(Ports::Specs(out))
}

/// pasta's `auto` in a `-t`/`-u` spec: `[ADDR/]auto` or `[ADDR/]RANGES,auto` (RANGES without
/// port mapping or exclusions). `None` when the spec has no `auto`.
fn parse_auto(kind: Kind, opt: &str, spec: &str) -> Result<Option<AutoPorts>, PasstError> {
    let (o, sp) = (|| opt.to_string(), || spec.to_string());
    let (addr, list) = match spec.rsplit_once('/') {
        Some((a, l)) => (Some(a), l),
        None => (None, spec),
    };
    if !list.split(',').any(|i| i == "auto") {
        return Ok(None);
    }
    if kind == Kind::Passt {
        return Err(PasstError::AutoPastaOnly {
            opt: o(),
            spec: sp(),
        });
    }
    let addr = match addr {
        Some(a) if a.contains('%') => {
            return Err(PasstError::Interface {
                opt: o(),
                spec: sp(),
            })
        }
        Some(a) => Some(ip(opt, a.trim_start_matches('[').trim_end_matches(']'))?),
        None => None,
    };
    let mut ranges = Vec::new();
    for item in list.split(',').filter(|i| *i != "auto") {
        if item.contains(':') || item.starts_with('~') {
            return Err(PasstError::AutoWithMapping {
                opt: o(),
                spec: sp(),
            });
        }
        ranges.push(range(item, spec)?);
    }
    Ok(Some(AutoPorts { addr, ranges }))
}

fn refused(kind: Kind, opt: &'static str, why: &'static str) -> PasstError {
    PasstError::Refused { kind, opt, why }
}

/// Parses a passt or pasta command line (without argv[0]).
pub fn parse(kind: Kind, args: &[String]) -> Result<Parsed, PasstError> {
    let (opts, operands) = tokenize(args)?;
    let mut p = Parsed {
        operands,
        ..Parsed::default()
    };
    let mut no_ndp = false;
    for (long, v) in opts {
        let scope = OPTS
            .iter()
            .find(|(l, ..)| *l == long)
            .map(|o| o.3)
            .unwrap_or(Scope::Both);
        match (scope, kind) {
            (Scope::Passt, Kind::Pasta) | (Scope::Pasta, Kind::Passt) => {
                return Err(PasstError::WrongProgram {
                    opt: long,
                    only: if kind == Kind::Passt {
                        "pasta"
                    } else {
                        "passt"
                    },
                })
            }
            _ => {}
        }
        let v = v.unwrap_or_default();
        let mut note = |s: String| p.notes.push(format!("{}: --{long}: {s}", kind.name()));
        match long {
            "help" => p.help = true,
            "version" => p.version = true,
            "foreground" => p.foreground = true,
            "debug" | "trace" => p.verbosity = p.verbosity.max(0).saturating_add(1),
            "quiet" => p.verbosity = -1,
            "stderr" => {}
            "log-file" => p.log_file = Some(PathBuf::from(v)),
            "log-size" => note("accepted; the log file is not rotated".into()),
            "one-off" => p.one_off = true,
            "fd" if kind == Kind::Passt => {
                let n: i32 = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 3)
                    .ok_or_else(|| PasstError::BadFd(v.clone()))?;
                p.fd = Some(n);
                p.one_off = true;
            }
            "socket" | "socket-path" => p.socket = Some(PathBuf::from(v)),
            "pid" => p.pid_file = Some(PathBuf::from(v)),
            "pcap" => p.pcap = Some(PathBuf::from(v)),
            "mtu" => {
                let m: u16 = v
                    .parse()
                    .map_err(|_| PasstError::MtuNotNumber(v.clone()))?;
                if !(576..=65520).contains(&m) {
                    return Err(PasstError::MtuRange(m));
                }
                p.mtu = Some(m);
            }
            "address" => match ip(long, &v)? {
                IpAddr::V4(a) => p.address = Some(a),
                IpAddr::V6(a) => p.address6 = Some(a),
            },
            "netmask" => p.prefix = Some(parse_netmask(&v)?),
            "gateway" => match ip(long, &v)? {
                IpAddr::V4(a) => p.gateway = Some(a),
                IpAddr::V6(a) => p.gateway6 = Some(a),
            },
            "mac-addr" => note(format!(
                "accepted; warren's gateway keeps its own MAC address (not {v})"
            )),
            "interface" => note(format!(
                "accepted; warren copies no addresses from host interfaces and its connections follow the host's routing table (not bound to {v})"
            )),
            "dns" => {
                if v != "none" {
                    p.dns.push(ip(long, &v)?);
                }
            }
            "search" => {
                p.search = Some(if v == "none" {
                    Vec::new()
                } else {
                    v.split_whitespace().map(String::from).collect()
                })
            }
            "dns-forward" => match ip(long, &v)? {
                IpAddr::V4(a) => p.dns_forward = Some(a),
                IpAddr::V6(a) => p.dns_forward6 = Some(a),
            },
            "dns-host" => p.dns_host = Some(ip(long, &v)?),
            "no-map-gw" => p.no_map_gw = true,
            "map-gw" => p.no_map_gw = false,
            "map-host-loopback" => {
                if v == "none" {
                    p.no_map_gw = true;
                } else {
                    // The gateway is what reaches the host's loopback in warren.
                    p.gateway = Some(ipv4(long, &v)?);
                    p.no_map_gw = false;
                }
            }
            "map-guest-addr" => note(format!(
                "accepted; warren does not translate {v} to the host (reach the host through the gateway address instead)"
            )),
            "ipv4-only" => p.ipv4_only = true,
            "ipv6-only" => p.ipv6_only = true,
            "no-ndp" => no_ndp = true,
            "no-ra" | "no-dhcpv6" => note(
                "accepted; warren's router still sends router advertisements and answers DHCPv6 (with --config-net the namespace's IPv6 address and route are set statically anyway)".into(),
            ),
            "no-splice" | "no-copy-routes" | "no-copy-addrs" => {
                // True in warren anyway: no splicing, nothing copied from the host.
            }
            "no-netns-quit" => p.no_netns_quit = true,
            "tcp-ports" | "udp-ports" => {
                let tcp = long == "tcp-ports";
                match parse_auto(kind, long, &v)? {
                    Some(a) if tcp => p.tcp_auto = Some(a),
                    Some(a) => p.udp_auto = Some(a),
                    None if tcp => p.tcp.push(parse_ports(long, &v)?),
                    None => p.udp.push(parse_ports(long, &v)?),
                }
            }
            "tcp-ns" | "udp-ns" => match v.as_str() {
                "none" => {}
                "auto" | "all" => p.ns_all = true,
                _ => {
                    let Ports::Specs(f) = parse_ports(long, &v)? else {
                        continue;
                    };
                    if long == "tcp-ns" {
                        p.tcp_ns.extend(f);
                    } else {
                        p.udp_ns.extend(f);
                    }
                }
            },
            "netns" => p.netns = Some(v),
            "userns" => p.userns = Some(PathBuf::from(v)),
            "ns-ifname" => p.ns_ifname = Some(v),
            "config-net" => p.config_net = true,
            "runas" => {
                let me = rustix_free_uid();
                let uid = v.split(':').next().unwrap_or_default();
                if uid.parse::<u32>().ok() != Some(me) {
                    return Err(refused(
                        kind,
                        long,
                        "warren does not change user: start it as that user instead",
                    ));
                }
            }
            "outbound-if4" | "outbound-if6" => {
                return Err(refused(
                    kind,
                    long,
                    "binding outbound sockets to an interface is not supported by warren (its connections follow the host's routing table)",
                ))
            }
            "fd" | "outbound" | "hostname" | "fqdn"
            | "no-tcp" | "no-udp" | "no-icmp" | "no-dhcp" | "splice-only" | "freebind"
            | "ns-mac-addr" | "dhcp-dns" | "no-dhcp-dns" | "dhcp-search" | "no-dhcp-search"
            | "netns-only" | "host-lo-to-ns-lo" | "vhost-user" | "print-capabilities"
            | "repair-path" | "migrate-exit" | "migrate-no-linger" | "stats" | "conf-path"
            | "chroot-fallback" => {
                return Err(refused(kind, long, "not supported by warren"));
            }
            other => return Err(PasstError::Unrecognized(other.to_string())),
        }
    }
    if kind == Kind::Pasta && !p.help && !p.version {
        // pasta's default for both: auto.
        if p.tcp.is_empty() && p.tcp_auto.is_none() {
            p.tcp_auto = Some(AutoPorts::default());
        }
        if p.udp.is_empty() && p.udp_auto.is_none() {
            p.udp_auto = Some(AutoPorts::default());
        }
    }
    namespace_to_host(kind, &mut p)?;
    if p.ipv4_only && p.ipv6_only {
        return Err(refused(
            kind,
            "ipv6-only",
            "-4/--ipv4-only and -6/--ipv6-only exclude each other",
        ));
    }
    if no_ndp && !p.ipv4_only {
        return Err(refused(
            kind,
            "no-ndp",
            "warren's IPv6 needs neighbour discovery (guests resolve its router and DNS addresses with it); add -4 for IPv4 only",
        ));
    }
    if p.ipv4_only && (p.address6.is_some() || p.gateway6.is_some() || p.dns_forward6.is_some()) {
        return Err(refused(
            kind,
            "ipv4-only",
            "IPv6 addresses given (-a/-g/--dns-forward) but IPv6 is off",
        ));
    }
    // passt refuses to listen on an address of a disabled family (EAFNOSUPPORT, fatal).
    let fwd_addrs = (p.tcp.iter().chain(p.udp.iter()))
        .filter_map(|ports| match ports {
            Ports::Specs(f) => Some(f.iter().filter_map(|f| f.addr)),
            Ports::None => None,
        })
        .flatten()
        .chain(
            p.tcp_auto
                .iter()
                .chain(p.udp_auto.iter())
                .filter_map(|a| a.addr),
        );
    for a in fwd_addrs.collect::<Vec<_>>() {
        if p.ipv4_only && a.is_ipv6() {
            return Err(refused(
                kind,
                "ipv4-only",
                "an IPv6 -t/-u address given but IPv6 is off",
            ));
        }
        if p.ipv6_only && a.is_ipv4() {
            return Err(refused(
                kind,
                "ipv6-only",
                "an IPv4 -t/-u address given but IPv4 is off",
            ));
        }
    }
    if kind == Kind::Passt && !p.operands.is_empty() && !p.help && !p.version {
        return Err(PasstError::PasstOperands(p.operands.join(" ")));
    }
    Ok(p)
}

/// Most namespace ports `-T` may name (each is one entry the gateway checks per new TCP flow).
pub const MAX_NS_PORTS: usize = 1024;

/// pasta's `-T`/`-U` (namespace to host: the namespace connects to a port on its own loopback and
/// reaches the host's loopback). In warren the namespace reaches the host's loopback through the
/// gateway address instead: `-T P[:Q]` makes GATEWAY:P lead to the host's 127.0.0.1:Q even with
/// `--no-map-gw`; `auto`/`all` and `-U` need the gateway's host-loopback mapping (no `--no-map-gw`),
/// which reaches every host loopback port, TCP and UDP.
fn namespace_to_host(kind: Kind, p: &mut Parsed) -> Result<(), PasstError> {
    let n: usize = p
        .tcp_ns
        .iter()
        .map(|f| usize::from(f.host.1 - f.host.0) + 1)
        .sum();
    if n > MAX_NS_PORTS {
        return Err(PasstError::TooManyNsPorts { kind, ports: n });
    }
    if p.no_map_gw && p.ns_all {
        return Err(PasstError::NsAllWithNoMapGw(kind));
    }
    if p.no_map_gw && !p.udp_ns.is_empty() {
        return Err(PasstError::UdpNsWithNoMapGw(kind));
    }
    if !p.tcp_ns.is_empty() || !p.udp_ns.is_empty() || p.ns_all {
        p.notes.push(format!(
            "{}: -T/-U: the namespace reaches these host loopback ports at the gateway address (pasta: at the namespace's own loopback){}",
            kind.name(),
            if p.no_map_gw {
                ""
            } else {
                "; without --no-map-gw every host loopback port is reachable there"
            }
        ));
    }
    Ok(())
}

/// The real uid, read without unsafe code (`/proc/self/status`); `u32::MAX` if unreadable.
fn rustix_free_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(String::from))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

impl Parsed {
    /// The forwards as warren `--hostfwd` specs (`proto:[ADDR]:H0-H1-:G0-G1`).
    pub fn hostfwd_specs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (proto, list) in [("tcp", &self.tcp), ("udp", &self.udp)] {
            for ports in list {
                let Ports::Specs(fw) = ports else { continue };
                for f in fw {
                    // No address: passt binds both families (one dual-stack socket on `::`),
                    // only 0.0.0.0 with -4, only `::` with -6. warren's `[::]` is dual stack
                    // and its connections follow the client's family.
                    let addr = match f.addr {
                        None if self.ipv4_only => String::new(),
                        None => "[::]".to_string(),
                        Some(IpAddr::V4(a)) => a.to_string(),
                        Some(IpAddr::V6(a)) => format!("[{a}]"),
                    };
                    let (h0, h1) = f.host;
                    let g1 = f.guest + (h1 - h0);
                    if h0 == h1 {
                        out.push(format!("{proto}:{addr}:{h0}-:{}", f.guest));
                    } else {
                        out.push(format!("{proto}:{addr}:{h0}-{h1}-:{}-{g1}", f.guest));
                    }
                }
            }
        }
        out
    }

    /// pasta `-T`: (gateway port, host loopback port) pairs.
    pub fn gateway_forwards(&self) -> Vec<(u16, u16)> {
        self.tcp_ns
            .iter()
            .flat_map(|f| (f.host.0..=f.host.1).map(move |p| (p, f.guest + (p - f.host.0))))
            .collect()
    }

    /// warren's address-plan options for what was asked: `-a`/`-n` choose the network (and the
    /// guest's address), `-g` the gateway, `--dns-forward` the DNS address, `-D`/`--dns-host`
    /// the upstreams, `-S` the search list, `-m`, `--no-map-gw`, `-p`.
    pub fn plan_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |k: &str, v: String| {
            a.push(k.into());
            a.push(v);
        };
        if let Some(addr) = self.address {
            let prefix = self.prefix.unwrap_or(24);
            let net = u32::from(addr) & (u32::MAX << (32 - u32::from(prefix)));
            push("--net", format!("{}/{prefix}", Ipv4Addr::from(net)));
        } else if let Some(prefix) = self.prefix {
            push("--net", format!("10.0.2.0/{prefix}"));
        }
        if let Some(g) = self.gateway {
            push("--gateway", g.to_string());
        }
        if let Some(d) = self.dns_forward {
            push("--dns-addr", d.to_string());
        }
        if let Some(a6) = self.address6 {
            let net = u128::from(a6) & (u128::MAX << 64);
            push("--net6", format!("{}/64", Ipv6Addr::from(net)));
        }
        if let Some(g) = self.gateway6 {
            push("--gateway6", g.to_string());
        }
        if let Some(d) = self.dns_forward6 {
            push("--dns-addr6", d.to_string());
        }
        for d in self.dns.iter().chain(self.dns_host.iter()) {
            push("--dns-upstream", d.to_string());
        }
        if let Some(s) = &self.search {
            for d in s {
                push("--dns-search", d.clone());
            }
        }
        if let Some(m) = self.mtu {
            push("--mtu", m.to_string());
        }
        if let Some(p) = &self.pcap {
            push("--pcap", p.display().to_string());
        }
        for f in self.hostfwd_specs() {
            push("--hostfwd", f);
        }
        if self.no_map_gw {
            a.push("--no-host-loopback".into());
        }
        if self.ipv4_only {
            a.push("--no-ipv6".into());
        }
        if self.ipv6_only {
            a.push("--no-ipv4".into());
        }
        match self.verbosity {
            v if v < 0 => a.push("-q".into()),
            0 => {}
            v => a.extend((0..v.min(2)).map(|_| "-v".to_string())),
        }
        a
    }
}

/// `passt --help` / `pasta --help`: what this drop-in accepts.
pub fn help_text(kind: Kind) -> String {
    let name = kind.name();
    let specific = match kind {
        Kind::Passt => "  -s, --socket PATH      unix socket for QEMU's -netdev stream (default: $XDG_RUNTIME_DIR/warren.sock)\n  -1, --one-off          exit when the guest disconnects\n  -F, --fd N             serve this inherited, connected stream socket (QEMU's -netdev passt); implies --one-off\n",
        Kind::Pasta => "  --netns PATH|NAME      the network namespace to serve (or a PID operand)\n  --userns PATH          its user namespace\n  -I, --ns-ifname NAME   the tap's name (default tap0)\n  --config-net           configure the tap (address, route, MTU, up)\n  -T, -U SPEC            namespace to host: GATEWAY:P reaches the host's 127.0.0.1:P (auto|all|-U: needs the gateway mapped)\n",
    };
    format!(
        "Usage: {name} [OPTION]... {}\n\
warren's {name} drop-in: warren's NAT gateway under {name}'s command line.\n\n\
{specific}\
  -f, --foreground       do not daemonize\n\
  -P, --pid FILE         write the daemon's PID to FILE\n\
  -l, --log-file FILE    log there (the daemon's output)\n\
  -q, --quiet / -d, --debug\n\
  -m, --mtu N            576..65520\n\
  -a, --address ADDR     the guest's IPv4 address (its network: with -n, default /24)\n\
  -n, --netmask MASK     prefix length or dotted mask\n\
  -g, --gateway ADDR     the gateway (reaches the host's loopback unless --no-map-gw)\n\
  -D, --dns ADDR         upstream resolver; -S, --search LIST\n\
  --dns-forward ADDR     the guest's DNS address (warren's DNS proxy; may lie outside the network)\n\
  -t, -u SPEC            host-to-guest forwards: none | [ADDR/]P[-Q][:R[-S]][,~X]...\n\
  -p, --pcap FILE        capture\n\
  -4, --ipv4-only        IPv4 only; -6, --ipv6-only: IPv6 only (-a/-g/--dns-forward take either family)\n\
  --no-map-gw; --no-ra, --no-dhcpv6, -i/--interface, -M/--mac-addr, --map-guest-addr (accepted, see README)\n\
  -h, --help; --version\n",
        if kind == Kind::Pasta { "[PID|PATH|COMMAND [ARGS]...]" } else { "" }
    )
}

/// `--version`.
pub fn version_text(kind: Kind, warren_version: &str) -> String {
    format!(
        "{} (warren {warren_version} drop-in, option set of passt 2026_07_16)\n",
        kind.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// The argv libvirt's `src/qemu/qemu_passt.c` builds (`qemuPasstStart`, libvirt 9.x/10.x):
    /// `--one-off --socket S --pid F [--mtu N] [--interface DEV] [--log-file F]
    /// [--address A [--netmask P]]... [--tcp-ports|--udp-ports [ADDR/]RANGES]...`; libvirt 9.0
    /// passed `--mac-addr MAC` instead of `--pid`.
    #[test]
    fn libvirt_argv() {
        let p = parse(
            Kind::Passt,
            &s(&[
                "--one-off",
                "--socket",
                "/run/user/1000/libvirt/qemu/run/passt/1-vm-net0.socket",
                "--pid",
                "/run/user/1000/libvirt/qemu/run/passt/1-vm-net0-passt.pid",
                "--mtu",
                "1500",
                "--interface",
                "eth0",
                "--address",
                "192.168.122.50",
                "--netmask",
                "24",
                "--tcp-ports",
                "127.0.0.1/2222:22",
                "--udp-ports",
                "5000-5002:6000-6002",
                "--tcp-ports",
                "8000-8010,~8005",
                "--mac-addr",
                "52:54:00:12:34:56",
            ]),
        )
        .expect("ok");
        assert!(p.one_off);
        assert_eq!(p.address, Some(Ipv4Addr::new(192, 168, 122, 50)));
        assert_eq!(p.prefix, Some(24));
        assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
        assert_eq!(
            p.hostfwd_specs(),
            vec![
                "tcp:127.0.0.1:2222-:22",
                "tcp:[::]:8000-8004-:8000-8004",
                "tcp:[::]:8006-8010-:8006-8010",
                "udp:[::]:5000-5002-:6000-6002"
            ]
        );
        let a = p.plan_args().join(" ");
        assert!(a.contains("--net 192.168.122.0/24"), "{a}");
        assert!(a.contains("--mtu 1500"), "{a}");
    }

    /// podman 5.x's `createPastaArgs` (containers/common libnetwork/pasta/pasta_linux.go) and
    /// rootlesskit 2.x's `pkg/network/pasta/pasta.go`.
    #[test]
    fn podman_and_rootlesskit_argv() {
        let p = parse(
            Kind::Pasta,
            &s(&[
                "--config-net",
                "-t",
                "127.0.0.1/8080-8080:80-80",
                "--dns-forward",
                "169.254.1.1",
                "-u",
                "none",
                "-T",
                "none",
                "-U",
                "none",
                "--no-map-gw",
                "--quiet",
                "--netns",
                "/run/user/1000/netns/netns-1234",
                "--map-guest-addr",
                "169.254.1.2",
            ]),
        )
        .expect("podman");
        assert!(p.config_net && p.no_map_gw && p.verbosity < 0);
        assert_eq!(p.netns.as_deref(), Some("/run/user/1000/netns/netns-1234"));
        assert_eq!(p.hostfwd_specs(), vec!["tcp:127.0.0.1:8080-:80"]);
        let p = parse(
            Kind::Pasta,
            &s(&[
                "--stderr",
                "--ns-ifname=tap0",
                "--mtu=65520",
                "--config-net",
                "--address=10.0.2.100",
                "--netmask=24",
                "--gateway=10.0.2.2",
                "--dns-forward=10.0.2.3",
                "--ipv4-only",
                "--tcp-ports=none",
                "--udp-ports=none",
                "--userns=/proc/42/ns/user",
                "--netns=/run/user/1000/rk/netns",
            ]),
        )
        .expect("rootlesskit");
        assert_eq!(p.ns_ifname.as_deref(), Some("tap0"));
        let a = p.plan_args().join(" ");
        assert!(
            a.contains("--net 10.0.2.0/24 --gateway 10.0.2.2 --dns-addr 10.0.2.3 --mtu 65520"),
            "{a}"
        );
        let p = parse(Kind::Pasta, &s(&["--config-net", "-t", "none", "4242"])).expect("pid");
        assert_eq!(p.operands, vec!["4242"]);
    }

    /// pasta's -T/-U: namespace ports reaching host loopback ports, at the gateway address.
    #[test]
    fn namespace_to_host() {
        let p = parse(
            Kind::Pasta,
            &s(&[
                "-T",
                "5432,6000-6001:7000-7001",
                "--no-map-gw",
                "-U",
                "none",
            ]),
        )
        .expect("-T list");
        assert_eq!(
            p.gateway_forwards(),
            vec![(5432, 5432), (6000, 7000), (6001, 7001)]
        );
        assert!(p.notes.iter().any(|n| n.contains("-T/-U")), "{:?}", p.notes);
        let p =
            parse(Kind::Pasta, &s(&["-T", "auto", "-U", "53"])).expect("with the gateway mapped");
        assert!(p.ns_all && p.gateway_forwards().is_empty());
        assert_eq!(p.udp_ns.len(), 1);
        let p = parse(
            Kind::Pasta,
            &s(&["-T", "none", "-U", "none", "--no-map-gw"]),
        )
        .expect("none");
        assert!(p.gateway_forwards().is_empty() && !p.ns_all);
        let e = parse(Kind::Pasta, &s(&["-T", "1-1025"]))
            .expect_err("too many")
            .to_string();
        assert!(e.contains("1025 ports"), "{e}");
        // -t/-u auto, and pasta's default (auto) when no -t/-u is given.
        let p = parse(Kind::Pasta, &s(&["-t", "127.0.0.1/8000-8010,auto", "1"])).expect("auto");
        let a = p.tcp_auto.clone().expect("tcp auto");
        assert_eq!(a.addr, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(a.wants(8000) && !a.wants(7999));
        assert_eq!(p.udp_auto, Some(AutoPorts::default()));
        let p = parse(Kind::Pasta, &s(&["-t", "none", "-u", "53", "1"])).expect("explicit");
        assert!(p.tcp_auto.is_none() && p.udp_auto.is_none());
        let e = parse(Kind::Passt, &s(&["-t", "auto"]))
            .expect_err("passt")
            .to_string();
        assert!(e.contains("pasta option only"), "{e}");
    }

    #[test]
    fn grammar() {
        let p = parse(Kind::Pasta, &s(&["-4qf", "-t22", "--tcp-p=33", "--", "-x"])).expect("ok");
        assert!(p.foreground && p.verbosity < 0);
        assert_eq!(p.operands, vec!["-x"]);
        assert_eq!(p.hostfwd_specs(), vec!["tcp::22-:22", "tcp::33-:33"]);
        // The first operand ends the options (getopt's '+').
        let p = parse(Kind::Pasta, &s(&["sh", "-c", "true"])).expect("ok");
        assert_eq!(p.operands, vec!["sh", "-c", "true"]);
        assert!(parse(Kind::Passt, &s(&["--bogus"]))
            .unwrap_err()
            .to_string()
            .contains("unrecognized"));
        assert!(parse(Kind::Passt, &s(&["-Z"]))
            .unwrap_err()
            .to_string()
            .contains("invalid option"));
        assert!(parse(Kind::Passt, &s(&["--no"]))
            .unwrap_err()
            .to_string()
            .contains("ambiguous"));
        assert!(parse(Kind::Passt, &s(&["--mtu"]))
            .unwrap_err()
            .to_string()
            .contains("requires"));
        assert!(parse(Kind::Passt, &s(&["--netns", "x"]))
            .unwrap_err()
            .to_string()
            .contains("pasta option"));
        assert!(parse(Kind::Pasta, &s(&["--one-off"]))
            .unwrap_err()
            .to_string()
            .contains("passt option"));
        assert!(parse(Kind::Passt, &s(&["x"]))
            .unwrap_err()
            .to_string()
            .contains("no operands"));
    }

    #[test]
    fn ipv6_options() {
        let p = parse(
            Kind::Pasta,
            &s(&[
                "-a",
                "fd12:3::77",
                "-g",
                "fd12:3::1",
                "--dns-forward",
                "fd12:3::53",
                "-D",
                "2001:db8::53",
                "--no-ra",
                "--no-dhcpv6",
                "-6",
                "1234",
            ]),
        )
        .expect("IPv6 options");
        assert_eq!(p.address6, Some("fd12:3::77".parse().unwrap()));
        assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
        let a = p.plan_args().join(" ");
        for want in [
            "--net6 fd12:3::/64",
            "--gateway6 fd12:3::1",
            "--dns-addr6 fd12:3::53",
            "--dns-upstream 2001:db8::53",
            "--no-ipv4",
        ] {
            assert!(a.contains(want), "{want:?} missing from {a:?}");
        }
        let p = parse(Kind::Pasta, &s(&["-4", "--no-ndp", "1234"])).expect("-4 --no-ndp");
        assert!(p.plan_args().contains(&"--no-ipv6".to_string()));
    }

    #[test]
    fn port_without_address_binds_both_families() {
        // passt's pif_listen(): no address = one dual-stack socket on ::, -4 = 0.0.0.0 only,
        // -6 = :: only; an address of a disabled family fails (EAFNOSUPPORT).
        let specs = |a: &[&str]| parse(Kind::Passt, &s(a)).expect("ok").hostfwd_specs();
        assert_eq!(
            specs(&["-t", "22", "-u", "53"]),
            vec!["tcp:[::]:22-:22", "udp:[::]:53-:53"]
        );
        assert_eq!(specs(&["-4", "-t", "22"]), vec!["tcp::22-:22"]);
        assert_eq!(specs(&["-6", "-t", "22"]), vec!["tcp:[::]:22-:22"]);
        assert_eq!(specs(&["-t", "0.0.0.0/22"]), vec!["tcp:0.0.0.0:22-:22"]);
        assert_eq!(specs(&["-t", "::/22"]), vec!["tcp:[::]:22-:22"]);
        for bad in [&["-4", "-t", "::1/22"][..], &["-6", "-u", "127.0.0.1/53"]] {
            let e = parse(Kind::Passt, &s(bad))
                .expect_err("family off")
                .to_string();
            assert!(e.contains("is off") && !e.contains('\n'), "{e}");
        }
        let e = parse(Kind::Pasta, &s(&["-6", "-t", "0.0.0.0/auto", "1"])).expect_err("auto");
        assert!(e.to_string().contains("IPv4 is off"), "{e}");
    }

    #[test]
    fn refused_and_noted() {
        for bad in [
            &["--outbound-if4", "eth0"][..],
            &["--outbound-if6", "eth0"],
            &["-t", "all"],
            &["-t", "auto"],
            &["-t", "~22"],
            &["-t", "10.0.0.1%eth0/22"],
            &["-t", "22-21"],
            &["-t", "22-23:80"],
            &["-t", "0"],
            &["-4", "-6"],
            &["--no-ndp"],
            &["-4", "-a", "fd00::5"],
            &["--vhost-user"],
            &["--mtu", "100"],
            &["-n", "255.0.255.0"],
            &["--runas", "4000000000"],
        ] {
            let e = parse(Kind::Passt, &s(bad))
                .expect_err(&format!("{bad:?}"))
                .to_string();
            assert!(!e.contains('\n'), "{e}");
        }
        let p = parse(
            Kind::Passt,
            &s(&["--quiet", "--pid", "/x.pid", "--fd", "3"]),
        )
        .expect("--fd");
        assert_eq!(p.fd, Some(3));
        assert!(p.one_off);
        assert!(parse(Kind::Passt, &s(&["-F", "2"])).is_err());
        assert!(parse(Kind::Passt, &s(&["-F", "x"])).is_err());
        assert!(parse(Kind::Pasta, &s(&["-F", "3"])).is_err());
        for bad in [
            &["-T", "1-2000"][..],
            &["-c", "/x"],
            &["-T", "auto", "--no-map-gw"],
            &["--no-map-gw", "-U", "53"],
            &["-t", "8000:80,auto"],
            &["-u", "::1/all"],
        ] {
            assert!(parse(Kind::Pasta, &s(bad)).is_err(), "{bad:?}");
        }
        let p = parse(
            Kind::Passt,
            &s(&["-M", "52:54:00:00:00:01", "--interface", "x"]),
        )
        .expect("ok");
        assert_eq!(p.notes.len(), 2);
        assert_eq!(parse_netmask("255.255.255.0"), Ok(24));
        let p = parse(Kind::Passt, &s(&["-t", "[::1]/2222:22", "-u", "53"])).expect("v6 bind");
        assert_eq!(
            p.hostfwd_specs(),
            vec!["tcp:[::1]:2222-:22", "udp:[::]:53-:53"]
        );
        // The IPv6 listener resolves (no guest: it follows the listener's family at run time).
        let r = crate::hostfwd::HostFwd::parse(&p.hostfwd_specs()[0])
            .expect("spec")
            .resolve(&netstack::config::Config::default())
            .expect("resolves");
        assert_eq!(r[0].host, "[::1]:2222".parse().expect("sa"));
        assert!(r[0].follow_family);
    }
}
