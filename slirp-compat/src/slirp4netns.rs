//! The `slirp4netns` command line, for a drop-in `slirp4netns` binary:
//! `slirp4netns [OPTION]... PID|PATH [TAPNAME]`.
//!
//! Options and messages follow slirp4netns 1.2.0 (`main.c` `parse_args()`, `usage()`,
//! `parse_cidr()`, and the installed `slirp4netns --help`), parsed the way its `getopt_long`
//! call does (short string `ce:r:m:a:6hv`):
//! - `--opt=V` and `--opt V`; unique prefixes of long options (`--conf`); short options
//!   clustered (`-c6`) with an argument attached or following (`-m1500`, `-m 1500`);
//! - options and operands in any order (GNU permutation); `--` ends the options;
//! - `-h`/`-v` act when reached (a later bad option is not looked at);
//! - deprecated `--no-host-loopback` and `--create-sandbox` work, with slirp4netns's warning.
//!
//! Checks slirp4netns makes and we make too: exit/ready fd non-negative; MTU 1..=65521 (warren's
//! gateway then wants 576..=65520); `--cidr A.B.C.D/N` with N in 1..=25 and no host bits;
//! `--macaddress` only with `--configure`; PID a positive integer with `--netns-type=pid`.
//! Left to the daemon (it touches the file system): that the `--userns-path` and netns PATH
//! exist. Stricter: `--netns-type` must be `pid` or `path` (slirp4netns takes anything but
//! `pid` as path). More than two operands is only a warning, as in slirp4netns.

use crate::esc;
use netstack::config::{Config, Ipv4Net};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

/// A `slirp4netns` command line that does not parse; the texts are slirp4netns's own where it
/// has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Slirp4netnsError {
    #[error("unrecognized option '--{}'", esc(.0))]
    Unrecognized(String),
    #[error("option '--{}' is ambiguous; possibilities:{}", esc(.name), possibilities(.candidates))]
    Ambiguous {
        name: String,
        candidates: Vec<&'static str>,
    },
    #[error("option '--{0}' requires an argument")]
    RequiresArgument(&'static str),
    #[error("option '--{0}' doesn't allow an argument")]
    NoArgumentAllowed(&'static str),
    #[error("invalid option -- '{}'", esc(.0))]
    InvalidOption(String),
    #[error("option requires an argument -- '{}'", esc(.0))]
    ShortRequiresArgument(String),
    #[error("invalid CIDR: {}", esc(.0))]
    InvalidCidr(String),
    #[error("invalid network address: {}", esc(.0))]
    InvalidNetworkAddr(String),
    #[error("prefix length needs to be 1-25")]
    PrefixLength,
    /// netstack's `Ipv4Net::new` refused the network.
    #[error("{}", esc(&.0.to_string()))]
    Net(netstack::config::ConfigError),
    #[error("CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24")]
    NotNetworkAddr,
    #[error("\"{}\" is an invalid MAC address.", esc(.0))]
    InvalidMac(String),
    #[error(
        "outbound-addr{} {value:?} has to be a valid ipv{} address or interface name",
        if *.six { "6" } else { "" },
        if *.six { "6" } else { "4" }
    )]
    Outbound { six: bool, value: String },
    #[error("{0} must be a non-negative integer")]
    BadFd(&'static str),
    #[error("MTU must be a positive integer (< 65522)")]
    Mtu,
    #[error("userns path doesn't exist: ")]
    EmptyUsernsPath,
    #[error("--api-socket needs a path")]
    EmptyApiSocket,
    #[error("--macaddr cannot be specified when --configure or -c is not specified")]
    MacWithoutConfigure,
    #[error("--target-type must be either \"netns\" or \"bess\"")]
    TargetType,
    #[error("--target-type=bess conflicts with --configure, --netns-type and --userns-path")]
    BessConflicts,
    #[error("missing the BESS socket PATH (see slirp4netns --help)")]
    MissingBessPath,
    #[error("missing PID|PATH and TAPNAME (see slirp4netns --help)")]
    MissingPidAndTap,
    #[error("missing TAPNAME (see slirp4netns --help)")]
    MissingTap,
    #[error("PID must be a positive integer")]
    BadPid,
    #[error("existing path expected when --netns-type=path")]
    EmptyNetnsPath,
    #[error("--netns-type={}: expected pid or path", esc(.0))]
    NetnsType(String),
    #[error("TAPNAME {0:?}: not a valid interface name (1-15 characters, no '/' or spaces)")]
    TapName(String),
    /// netstack's `Config::validate` refused the resulting config.
    #[error("{}", esc(&.0.to_string()))]
    Config(netstack::config::ConfigError),
}

fn possibilities(names: &[&str]) -> String {
    names.iter().map(|l| format!(" '--{l}'")).collect()
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slirp4netnsCommand {
    Run(Box<Slirp4netnsOptions>),
    /// `-h`/`--help`: print [`help_text`] and exit 0.
    Help,
    /// `-v`/`--version`: print [`version_text`] and exit 0.
    Version,
}

/// Whose network namespace to join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `--netns-type=pid` (the default): `/proc/PID/ns/net` (and `/proc/PID/ns/user` unless
    /// `--userns-path` is given).
    Pid(i32),
    /// `--netns-type=path`: a netns file such as `/run/netns/foo` or `/proc/PID/ns/net`.
    NetnsPath(PathBuf),
    /// `--target-type=bess`: serve User Mode Linux's BESS transport on this socket path.
    Bess(PathBuf),
}

/// `--outbound-addr`/`--outbound-addr6`: an address, or an interface whose address to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundAddr {
    Addr(IpAddr),
    Interface(String),
}

/// A parsed `slirp4netns` command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slirp4netnsOptions {
    pub target: Target,
    /// The tap device to create in the namespace (absent only in BESS mode).
    pub tap_name: Option<String>,
    /// `-c`: bring the tap up with the recommended address, route and MTU (and `lo`).
    pub configure: bool,
    /// `-e FD`: exit when this fd becomes readable/closed.
    pub exit_fd: Option<i32>,
    /// `-r FD`: write "1" here and close it when ready.
    pub ready_fd: Option<i32>,
    /// `-m` (default 1500).
    pub mtu: u16,
    /// `--cidr` (default 10.0.2.0/24).
    pub cidr: Ipv4Net,
    pub disable_host_loopback: bool,
    /// `--userns-path`.
    pub userns_path: Option<PathBuf>,
    /// `-a PATH`: the JSON API socket.
    pub api_socket: Option<PathBuf>,
    pub enable_ipv6: bool,
    pub enable_sandbox: bool,
    pub enable_seccomp: bool,
    pub disable_dns: bool,
    pub outbound_addr: Option<OutboundAddr>,
    pub outbound_addr6: Option<OutboundAddr>,
    /// `--macaddress` for the tap (needs `-c`).
    pub mac_address: Option<[u8; 6]>,
    /// Lines slirp4netns prints to stdout while parsing ("WARNING: …"), in order.
    pub warnings: Vec<String>,
}

pub const DEFAULT_MTU: u16 = 1500;
pub const DEFAULT_CIDR: &str = "10.0.2.0/24";
/// The version of slirp4netns whose interface this reproduces.
pub const COMPAT_VERSION: &str = "1.2.0";

/// `slirp4netns --help`: slirp4netns 1.2.0's text (every option is listed, including those
/// rootlesskit and podman look for in it: `--netns-type`, `--userns-path`, `--enable-sandbox`,
/// `--enable-seccomp`, `--enable-ipv6`, `--disable-dns`, `--outbound-addr`, `--cidr`, `--mtu`,
/// `--api-socket`, `--disable-host-loopback`).
pub fn help_text(argv0: &str) -> String {
    format!(
        "\
Usage: {argv0} [OPTION]... PID|PATH [TAPNAME]
User-mode networking for unprivileged network namespaces.

-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
-r, --ready-fd=FD        specify the FD to write to when the network is configured
-m, --mtu=MTU            specify MTU (default=1500, max=65521)
-6, --enable-ipv6        enable IPv6 (experimental)
-a, --api-socket=PATH    specify API socket path
--cidr=CIDR              specify network address CIDR (default=10.0.2.0/24)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
--netns-type=TYPE        specify network namespace type ([path|pid], default=pid)
--userns-path=PATH       specify user namespace path
--enable-sandbox         create a new mount namespace (and drop all caps except CAP_NET_BIND_SERVICE if running as the root)
--enable-seccomp         enable seccomp to limit syscalls (experimental)
--outbound-addr=IPv4     sets outbound ipv4 address to bound to (experimental)
--outbound-addr6=IPv6    sets outbound ipv6 address to bound to (experimental)
--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect (experimental)
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
--target-type=TYPE       specify the target type ([netns|bess], default=netns)
-h, --help               show this help and exit
-v, --version            show version and exit
"
    )
}

/// `slirp4netns --version`, in slirp4netns's runc-style machine-parsable layout.
pub fn version_text(warren_version: &str) -> String {
    format!(
        "slirp4netns version {COMPAT_VERSION}\ncommit: warren-{warren_version}\n\
         libslirp: none (warren {warren_version})\nSLIRP_CONFIG_VERSION_MAX: 4\n"
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Configure,
    ExitFd,
    ReadyFd,
    Mtu,
    Cidr,
    DisableHostLoopback,
    NoHostLoopback,
    NetnsType,
    UsernsPath,
    ApiSocket,
    EnableIpv6,
    EnableSandbox,
    CreateSandbox,
    EnableSeccomp,
    Help,
    Version,
    OutboundAddr,
    OutboundAddr6,
    DisableDns,
    MacAddress,
    TargetType,
}

/// (long name, short, takes an argument, option) — slirp4netns's `longopts` and short string.
const OPTS: &[(&str, Option<char>, bool, Opt)] = &[
    ("configure", Some('c'), false, Opt::Configure),
    ("exit-fd", Some('e'), true, Opt::ExitFd),
    ("ready-fd", Some('r'), true, Opt::ReadyFd),
    ("mtu", Some('m'), true, Opt::Mtu),
    ("cidr", None, true, Opt::Cidr),
    (
        "disable-host-loopback",
        None,
        false,
        Opt::DisableHostLoopback,
    ),
    ("no-host-loopback", None, false, Opt::NoHostLoopback),
    ("netns-type", None, true, Opt::NetnsType),
    ("userns-path", None, true, Opt::UsernsPath),
    ("api-socket", Some('a'), true, Opt::ApiSocket),
    ("enable-ipv6", Some('6'), false, Opt::EnableIpv6),
    ("enable-sandbox", None, false, Opt::EnableSandbox),
    ("create-sandbox", None, false, Opt::CreateSandbox),
    ("enable-seccomp", None, false, Opt::EnableSeccomp),
    ("help", Some('h'), false, Opt::Help),
    ("version", Some('v'), false, Opt::Version),
    ("outbound-addr", None, true, Opt::OutboundAddr),
    ("outbound-addr6", None, true, Opt::OutboundAddr6),
    ("disable-dns", None, false, Opt::DisableDns),
    ("macaddress", None, true, Opt::MacAddress),
    ("target-type", None, true, Opt::TargetType),
];

fn find_long(name: &str) -> Result<(&'static str, bool, Opt), Slirp4netnsError> {
    if let Some(&(l, _, a, o)) = OPTS.iter().find(|(l, ..)| *l == name) {
        return Ok((l, a, o));
    }
    let matches: Vec<_> = OPTS.iter().filter(|(l, ..)| l.starts_with(name)).collect();
    match matches.as_slice() {
        [] => Err(Slirp4netnsError::Unrecognized(name.to_string())),
        [&(l, _, a, o)] => Ok((l, a, o)),
        many => Err(Slirp4netnsError::Ambiguous {
            name: name.to_string(),
            candidates: many.iter().map(|(l, ..)| *l).collect(),
        }),
    }
}

fn find_short(c: char) -> Option<(&'static str, bool, Opt)> {
    OPTS.iter()
        .find(|(_, s, ..)| *s == Some(c))
        .map(|&(l, _, a, o)| (l, a, o))
}

/// Parses slirp4netns's `--cidr`: `A.B.C.D/N`, N in 1..=25, a network address.
pub fn parse_cidr(s: &str) -> Result<Ipv4Net, Slirp4netnsError> {
    let bad = || Slirp4netnsError::InvalidCidr(s.to_string());
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let quad_ok = {
        let parts: Vec<&str> = a.split('.').collect();
        parts.len() == 4
            && parts
                .iter()
                .all(|x| (1..=3).contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit()))
    };
    if !quad_ok || !(1..=2).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| Slirp4netnsError::InvalidNetworkAddr(a.to_string()))?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    if !(1..=25).contains(&prefix) {
        return Err(Slirp4netnsError::PrefixLength);
    }
    let net = Ipv4Net::new(addr, prefix).map_err(Slirp4netnsError::Net)?;
    if net.addr != addr {
        return Err(Slirp4netnsError::NotNetworkAddr);
    }
    Ok(net)
}

/// Parses `xx:xx:xx:xx:xx:xx` (1 or 2 hex digits per byte, as slirp4netns's `%x` loop).
pub fn parse_mac(s: &str) -> Result<[u8; 6], Slirp4netnsError> {
    let bad = || Slirp4netnsError::InvalidMac(s.to_string());
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(&parts) {
        if !(1..=2).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

fn parse_outbound(v: &str, six: bool) -> Result<OutboundAddr, Slirp4netnsError> {
    let bad = || Slirp4netnsError::Outbound {
        six,
        value: v.to_string(),
    };
    if let Ok(ip) = v.parse::<IpAddr>() {
        if ip.is_ipv6() != six {
            return Err(bad());
        }
        return Ok(OutboundAddr::Addr(ip));
    }
    let ok_name = !v.is_empty()
        && v.len() <= 15
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !ok_name {
        return Err(bad());
    }
    Ok(OutboundAddr::Interface(v.to_string()))
}

fn parse_fd(v: &str, what: &'static str) -> Result<i32, Slirp4netnsError> {
    v.parse::<i32>()
        .ok()
        .filter(|n| *n >= 0 && !v.starts_with('+'))
        .ok_or(Slirp4netnsError::BadFd(what))
}

/// Parses the arguments after `argv[0]`.
pub fn parse_args<I, S>(args: I) -> Result<Slirp4netnsCommand, Slirp4netnsError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut operands = Vec::new();
    let mut pending: Vec<(Opt, Option<String>)> = Vec::new();
    let mut i = 0;
    // First pass: getopt_long's scan, handling -h/-v the moment they are reached.
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            operands.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let (long, takes, opt) = find_long(name)?;
            let val = if takes {
                match inline {
                    Some(v) => Some(v),
                    None => {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or(Slirp4netnsError::RequiresArgument(long))?;
                        i += 1;
                        Some(v)
                    }
                }
            } else {
                if inline.is_some() {
                    return Err(Slirp4netnsError::NoArgumentAllowed(long));
                }
                None
            };
            match opt {
                Opt::Help => return Ok(Slirp4netnsCommand::Help),
                Opt::Version => return Ok(Slirp4netnsCommand::Version),
                _ => pending.push((opt, val)),
            }
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a.chars().skip(1).collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let (_, takes, opt) =
                    find_short(c).ok_or_else(|| Slirp4netnsError::InvalidOption(c.to_string()))?;
                let val = if takes {
                    if j < chars.len() {
                        let v: String = chars[j..].iter().collect();
                        j = chars.len();
                        Some(v)
                    } else {
                        let v = args.get(i).cloned().ok_or_else(|| {
                            Slirp4netnsError::ShortRequiresArgument(c.to_string())
                        })?;
                        i += 1;
                        Some(v)
                    }
                } else {
                    None
                };
                match opt {
                    Opt::Help => return Ok(Slirp4netnsCommand::Help),
                    Opt::Version => return Ok(Slirp4netnsCommand::Version),
                    _ => pending.push((opt, val)),
                }
            }
        } else {
            operands.push(a.clone());
        }
    }

    let mut o = Slirp4netnsOptions {
        target: Target::Pid(0),
        tap_name: None,
        configure: false,
        exit_fd: None,
        ready_fd: None,
        mtu: DEFAULT_MTU,
        cidr: Ipv4Net::new(Ipv4Addr::new(10, 0, 2, 0), 24).map_err(Slirp4netnsError::Net)?,
        disable_host_loopback: false,
        userns_path: None,
        api_socket: None,
        enable_ipv6: false,
        enable_sandbox: false,
        enable_seccomp: false,
        disable_dns: false,
        outbound_addr: None,
        outbound_addr6: None,
        mac_address: None,
        warnings: Vec::new(),
    };
    let mut netns_type: Option<String> = None;
    let mut target_type: Option<String> = None;
    let mut mac: Option<String> = None;
    for (opt, val) in pending {
        let v = val.unwrap_or_default();
        match opt {
            Opt::Configure => o.configure = true,
            Opt::ExitFd => o.exit_fd = Some(parse_fd(&v, "exit-fd")?),
            Opt::ReadyFd => o.ready_fd = Some(parse_fd(&v, "ready-fd")?),
            Opt::Mtu => {
                o.mtu = v
                    .parse::<u16>()
                    .ok()
                    .filter(|m| (1..=65521).contains(m) && !v.starts_with('+'))
                    .ok_or(Slirp4netnsError::Mtu)?
            }
            Opt::Cidr => o.cidr = parse_cidr(&v)?,
            Opt::NoHostLoopback => {
                o.warnings.push(
                    "WARNING: --no-host-loopback is deprecated and will be removed in future \
                     releases, please use --disable-host-loopback instead."
                        .into(),
                );
                o.disable_host_loopback = true;
            }
            Opt::DisableHostLoopback => o.disable_host_loopback = true,
            Opt::CreateSandbox => {
                o.warnings.push(
                    "WARNING: --create-sandbox is deprecated and will be removed in future \
                     releases, please use --enable-sandbox instead."
                        .into(),
                );
                o.enable_sandbox = true;
            }
            Opt::EnableSandbox => o.enable_sandbox = true,
            Opt::EnableSeccomp => {
                o.warnings
                    .push("WARNING: Support for seccomp is experimental".into());
                o.enable_seccomp = true;
            }
            Opt::NetnsType => netns_type = Some(v),
            Opt::UsernsPath => {
                if v.is_empty() {
                    return Err(Slirp4netnsError::EmptyUsernsPath);
                }
                o.userns_path = Some(PathBuf::from(v));
            }
            Opt::ApiSocket => {
                if v.is_empty() {
                    return Err(Slirp4netnsError::EmptyApiSocket);
                }
                o.api_socket = Some(PathBuf::from(v));
            }
            Opt::EnableIpv6 => {
                o.warnings
                    .push("WARNING: Support for IPv6 is experimental".into());
                o.enable_ipv6 = true;
            }
            Opt::OutboundAddr => {
                o.warnings
                    .push("WARNING: Support for --outbound-addr is experimental".into());
                o.outbound_addr = Some(parse_outbound(&v, false)?);
            }
            Opt::OutboundAddr6 => {
                o.warnings
                    .push("WARNING: Support for --outbound-addr6 is experimental".into());
                o.outbound_addr6 = Some(parse_outbound(&v, true)?);
            }
            Opt::DisableDns => o.disable_dns = true,
            Opt::MacAddress => mac = Some(v),
            Opt::TargetType => target_type = Some(v),
            // Acted on during the scan; never queued.
            Opt::Help | Opt::Version => {}
        }
    }
    if let Some(m) = mac {
        if !o.configure {
            return Err(Slirp4netnsError::MacWithoutConfigure);
        }
        o.mac_address = Some(parse_mac(&m)?);
    }
    let bess = match target_type.as_deref() {
        None | Some("netns") => false,
        Some("bess") => true,
        Some(_) => return Err(Slirp4netnsError::TargetType),
    };
    if bess {
        if o.configure || netns_type.is_some() || o.userns_path.is_some() {
            return Err(Slirp4netnsError::BessConflicts);
        }
        let path = operands.first().ok_or(Slirp4netnsError::MissingBessPath)?;
        if operands.len() > 1 {
            o.warnings.push("WARNING: too many arguments".into());
        }
        o.target = Target::Bess(PathBuf::from(path));
        return Ok(Slirp4netnsCommand::Run(Box::new(o)));
    }
    if operands.len() < 2 {
        return Err(if operands.is_empty() {
            Slirp4netnsError::MissingPidAndTap
        } else {
            Slirp4netnsError::MissingTap
        });
    }
    if operands.len() > 2 {
        o.warnings.push("WARNING: too many arguments".into());
    }
    o.target = match netns_type.as_deref() {
        None | Some("pid") => Target::Pid(
            operands[0]
                .parse::<i32>()
                .ok()
                .filter(|p| *p > 0 && !operands[0].starts_with('+'))
                .ok_or(Slirp4netnsError::BadPid)?,
        ),
        Some("path") => {
            if operands[0].is_empty() {
                return Err(Slirp4netnsError::EmptyNetnsPath);
            }
            Target::NetnsPath(PathBuf::from(&operands[0]))
        }
        Some(other) => return Err(Slirp4netnsError::NetnsType(other.to_string())),
    };
    let tap = &operands[1];
    if tap.is_empty() || tap.len() > 15 || tap.contains('/') || tap.chars().any(char::is_whitespace)
    {
        return Err(Slirp4netnsError::TapName(tap.clone()));
    }
    o.tap_name = Some(tap.clone());
    Ok(Slirp4netnsCommand::Run(Box::new(o)))
}

impl Slirp4netnsOptions {
    fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + n)
    }
    /// Gateway/host: network + 2.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(2)
    }
    /// Built-in DNS: network + 3.
    pub fn dns(&self) -> Ipv4Addr {
        self.host(3)
    }
    /// First DHCP lease: network + 15.
    pub fn dhcp_start(&self) -> Ipv4Addr {
        self.host(15)
    }
    /// The address `--configure` gives the tap and the API's default guest: network + 100.
    pub fn recommended_guest(&self) -> Ipv4Addr {
        self.host(100)
    }
    /// The gateway config for this command line (slirp4netns's plain +2/+3/+15 offsets),
    /// starting from `base` for everything the command line does not say.
    pub fn to_config(&self, base: Config) -> Result<Config, Slirp4netnsError> {
        let mut c = base;
        c.net = self.cidr;
        c.gateway = self.gateway();
        c.dns = self.dns();
        c.dhcp_start = self.dhcp_start();
        c.mtu = self.mtu;
        c.host_loopback = !self.disable_host_loopback;
        c.validate().map_err(Slirp4netnsError::Config)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Slirp4netnsOptions {
        match parse_args(args.iter().copied()) {
            Ok(Slirp4netnsCommand::Run(o)) => *o,
            other => panic!("{args:?}: {other:?}"),
        }
    }
    fn err(args: &[&str]) -> String {
        let e = parse_args(args.iter().copied())
            .expect_err("should fail")
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn rootlesskit_command_line() {
        let o = run(&[
            "--mtu",
            "65520",
            "-r",
            "3",
            "--netns-type=path",
            "--userns-path=/proc/42/ns/user",
            "--cidr",
            "10.0.2.0/24",
            "--disable-host-loopback",
            "--api-socket",
            "/run/user/1000/slirp.sock",
            "--enable-sandbox",
            "--enable-seccomp",
            "--configure",
            "/run/user/1000/netns",
            "tap0",
        ]);
        assert_eq!(o.mtu, 65520);
        assert_eq!(o.ready_fd, Some(3));
        assert_eq!(o.target, Target::NetnsPath("/run/user/1000/netns".into()));
        assert_eq!(o.userns_path, Some("/proc/42/ns/user".into()));
        assert!(o.disable_host_loopback && o.configure && o.enable_sandbox && o.enable_seccomp);
        assert_eq!(o.api_socket, Some("/run/user/1000/slirp.sock".into()));
        assert_eq!(o.tap_name.as_deref(), Some("tap0"));
        assert_eq!(
            o.warnings,
            vec!["WARNING: Support for seccomp is experimental"]
        );
        let c = o.to_config(Config::default()).expect("config");
        assert_eq!(c.mtu, 65520);
        assert!(!c.host_loopback);
    }

    #[test]
    fn defaults() {
        let o = run(&["1234", "tap0"]);
        assert_eq!(o.target, Target::Pid(1234));
        assert_eq!(o.mtu, 1500);
        assert_eq!(o.cidr, Ipv4Net::parse(DEFAULT_CIDR).expect("n"));
        assert_eq!(o.recommended_guest(), Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(o.gateway(), Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(o.dns(), Ipv4Addr::new(10, 0, 2, 3));
        assert_eq!(o.dhcp_start(), Ipv4Addr::new(10, 0, 2, 15));
        assert!(!o.configure && o.exit_fd.is_none() && o.api_socket.is_none());
        assert!(o.warnings.is_empty());
        let c = o.to_config(Config::default()).expect("config");
        assert_eq!(c.gateway, Ipv4Addr::new(10, 0, 2, 2));
        assert!(c.host_loopback);
    }

    #[test]
    fn getopt_forms() {
        // Clustered shorts with attached and separate arguments, permuted operands.
        let o = run(&["-c6", "-m1400", "1234", "-e", "5", "tap1", "-a/tmp/api"]);
        assert!(o.configure && o.enable_ipv6);
        assert_eq!(o.mtu, 1400);
        assert_eq!(o.exit_fd, Some(5));
        assert_eq!(o.api_socket, Some("/tmp/api".into()));
        assert_eq!(o.tap_name.as_deref(), Some("tap1"));
        let o = run(&["-cm", "9000", "-r0", "1", "t"]);
        assert_eq!((o.mtu, o.ready_fd), (9000, Some(0)));
        // Long prefixes and both value forms.
        let o = run(&[
            "--conf",
            "--mtu=1280",
            "--exit-fd",
            "7",
            "--ci=10.1.0.0/16",
            "9",
            "tap0",
        ]);
        assert!(o.configure);
        assert_eq!((o.mtu, o.exit_fd), (1280, Some(7)));
        assert_eq!(o.cidr.prefix, 16);
        // A value that starts with '-' is still the value.
        assert!(err(&["--mtu", "-5", "1", "t"]).contains("MTU"));
        // -- ends the options.
        let o = run(&["--", "1", "-tap"]);
        assert_eq!(o.tap_name.as_deref(), Some("-tap"));
        // "-" alone is an operand (and here not a valid PID).
        assert!(err(&["-", "tap0"]).contains("PID"));
        // Exact match beats prefix: outbound-addr vs outbound-addr6.
        let o = run(&[
            "--outbound-addr=10.0.0.5",
            "--outbound-addr6=eth0",
            "1",
            "t",
        ]);
        assert_eq!(
            o.outbound_addr,
            Some(OutboundAddr::Addr("10.0.0.5".parse().expect("ip")))
        );
        assert_eq!(
            o.outbound_addr6,
            Some(OutboundAddr::Interface("eth0".into()))
        );
        assert_eq!(o.warnings.len(), 2);
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_args(["-h"]), Ok(Slirp4netnsCommand::Help));
        assert_eq!(parse_args(["--help"]), Ok(Slirp4netnsCommand::Help));
        assert_eq!(parse_args(["--he"]), Ok(Slirp4netnsCommand::Help));
        assert_eq!(parse_args(["-ch"]), Ok(Slirp4netnsCommand::Help));
        assert_eq!(parse_args(["-v"]), Ok(Slirp4netnsCommand::Version));
        assert_eq!(
            parse_args(["--version", "--bogus"]),
            Ok(Slirp4netnsCommand::Version)
        );
        // An error before -h wins, as getopt reaches it first.
        assert!(parse_args(["--bogus", "-h"]).is_err());
        let h = help_text("slirp4netns");
        for probe in [
            "--enable-sandbox",
            "--enable-seccomp",
            "--enable-ipv6",
            "--disable-dns",
            "--outbound-addr",
            "--outbound-addr6",
            "--netns-type",
            "--userns-path",
            "--disable-host-loopback",
            "--cidr",
            "--mtu",
            "--api-socket",
            "--configure",
            "--exit-fd",
            "--ready-fd",
            "--macaddress",
            "--target-type",
            "--help",
            "--version",
        ] {
            assert!(h.contains(probe), "help lacks {probe}");
        }
        // Every option in the table is in the help, except the deprecated aliases.
        for (l, ..) in OPTS {
            if !matches!(*l, "no-host-loopback" | "create-sandbox") {
                assert!(h.contains(&format!("--{l}")), "help lacks --{l}");
            }
        }
        let v = version_text("0.1.0");
        assert!(v.starts_with("slirp4netns version 1.2.0\n"));
        assert!(v.contains("SLIRP_CONFIG_VERSION_MAX: 4"));
    }

    #[test]
    fn deprecated_aliases_warn() {
        let o = run(&["--no-host-loopback", "--create-sandbox", "1", "t"]);
        assert!(o.disable_host_loopback && o.enable_sandbox);
        assert_eq!(o.warnings.len(), 2);
        assert!(o.warnings[0].contains("--no-host-loopback is deprecated"));
    }

    #[test]
    fn operands() {
        let o = run(&["1", "tap0", "extra"]);
        assert_eq!(o.warnings, vec!["WARNING: too many arguments"]);
        assert!(err(&[]).contains("missing PID|PATH and TAPNAME"));
        assert!(err(&["1234"]).contains("missing TAPNAME"));
        assert_eq!(err(&["0", "tap0"]), "PID must be a positive integer");
        assert_eq!(err(&["-1x", "tap0"]), "invalid option -- '1'");
        assert_eq!(err(&["12a", "tap0"]), "PID must be a positive integer");
        assert_eq!(err(&["+12", "tap0"]), "PID must be a positive integer");
        assert_eq!(
            err(&["99999999999", "tap0"]),
            "PID must be a positive integer"
        );
        assert!(err(&["--netns-type=path", "", "tap0"]).contains("existing path"));
        assert!(err(&["--netns-type=ns", "1", "tap0"]).contains("expected pid or path"));
        assert!(err(&["1", "a-very-long-tap-name"]).contains("TAPNAME"));
        assert!(err(&["1", ""]).contains("TAPNAME"));
        assert!(err(&["1", "ta/p"]).contains("TAPNAME"));
        let o = run(&["--netns-type", "pid", "77", "tap0"]);
        assert_eq!(o.target, Target::Pid(77));
    }

    #[test]
    fn bess_mode() {
        let o = run(&["--target-type=bess", "/tmp/bess.sock"]);
        assert_eq!(o.target, Target::Bess("/tmp/bess.sock".into()));
        assert_eq!(o.tap_name, None);
        assert!(err(&["--target-type=bess", "-c", "/tmp/b"]).contains("conflicts"));
        assert!(err(&["--target-type=bess"]).contains("BESS socket"));
        assert!(err(&["--target-type=vde", "1", "t"]).contains("\"netns\" or \"bess\""));
        let o = run(&["--target-type=netns", "1", "t"]);
        assert_eq!(o.target, Target::Pid(1));
    }

    #[test]
    fn bad_values() {
        for (args, want) in [
            (
                &["-e", "x", "1", "t"][..],
                "exit-fd must be a non-negative integer",
            ),
            (
                &["-e", "-1", "1", "t"][..],
                "exit-fd must be a non-negative integer",
            ),
            (
                &["--ready-fd=", "1", "t"][..],
                "ready-fd must be a non-negative integer",
            ),
            (
                &["-m", "0", "1", "t"][..],
                "MTU must be a positive integer (< 65522)",
            ),
            (
                &["-m", "65522", "1", "t"][..],
                "MTU must be a positive integer (< 65522)",
            ),
            (
                &["-m", "1500x", "1", "t"][..],
                "MTU must be a positive integer (< 65522)",
            ),
            (&["--cidr=10.0.2.0", "1", "t"][..], "invalid CIDR: 10.0.2.0"),
            (
                &["--cidr=10.0.2/24", "1", "t"][..],
                "invalid CIDR: 10.0.2/24",
            ),
            (
                &["--cidr=10.0.2.0/100", "1", "t"][..],
                "invalid CIDR: 10.0.2.0/100",
            ),
            (
                &["--cidr=300.0.2.0/24", "1", "t"][..],
                "invalid network address: 300.0.2.0",
            ),
            (
                &["--cidr=10.0.2.0/26", "1", "t"][..],
                "prefix length needs to be 1-25",
            ),
            (
                &["--cidr=10.0.2.0/0", "1", "t"][..],
                "prefix length needs to be 1-25",
            ),
            (
                &["--cidr=10.0.2.100/24", "1", "t"][..],
                "CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24",
            ),
            (
                &["--macaddress=02:00:00:00:00:01", "1", "t"][..],
                "--macaddr cannot be specified",
            ),
            (
                &["-c", "--macaddress=02:00:00:00:00", "1", "t"][..],
                "invalid MAC address",
            ),
            (
                &["-c", "--macaddress=02:00:00:00:00:001", "1", "t"][..],
                "invalid MAC address",
            ),
            (
                &["-c", "--macaddress=zz:00:00:00:00:01", "1", "t"][..],
                "invalid MAC address",
            ),
            (
                &["--outbound-addr=fe80::1", "1", "t"][..],
                "valid ipv4 address",
            ),
            (
                &["--outbound-addr6=10.0.0.1", "1", "t"][..],
                "valid ipv6 address",
            ),
            (&["--outbound-addr=", "1", "t"][..], "valid ipv4"),
            (&["--outbound-addr=a/b", "1", "t"][..], "valid ipv4"),
            (&["--bogus", "1", "t"][..], "unrecognized option '--bogus'"),
            (&["--dis", "1", "t"][..], "option '--dis' is ambiguous"),
            (&["-x", "1", "t"][..], "invalid option -- 'x'"),
            (
                &["--configure=yes", "1", "t"][..],
                "option '--configure' doesn't allow an argument",
            ),
            (
                &["1", "t", "--mtu"][..],
                "option '--mtu' requires an argument",
            ),
            (&["1", "t", "-m"][..], "option requires an argument -- 'm'"),
            (
                &["--api-socket=", "1", "t"][..],
                "--api-socket needs a path",
            ),
            (&["--userns-path=", "1", "t"][..], "userns path"),
            (&["-é", "1", "t"][..], "invalid option -- 'é'"),
        ] {
            let e = err(args);
            assert!(e.contains(want), "{args:?}: {e}");
        }
        // Valid MAC forms, including slirp4netns's one-digit groups.
        let o = run(&["-c", "--macaddress=2:0:a:B:c:ff", "1", "t"]);
        assert_eq!(o.mac_address, Some([2, 0, 0xa, 0xb, 0xc, 0xff]));
        // slirp4netns accepts 65521; warren's gateway tops out at 65520 and says so.
        let o = run(&["-m", "65521", "1", "t"]);
        assert!(o
            .to_config(Config::default())
            .unwrap_err()
            .to_string()
            .contains("MTU"));
        let o = run(&["-m", "100", "1", "t"]);
        assert!(o.to_config(Config::default()).is_err());
    }

    #[test]
    fn cidr_moves_addresses() {
        let o = run(&["--cidr=192.168.0.0/16", "1", "t"]);
        assert_eq!(o.gateway(), Ipv4Addr::new(192, 168, 0, 2));
        assert_eq!(o.recommended_guest(), Ipv4Addr::new(192, 168, 0, 100));
        let c = o.to_config(Config::default()).expect("config");
        assert_eq!(c.net.prefix, 16);
        assert_eq!(c.dhcp_start, Ipv4Addr::new(192, 168, 0, 15));
        let o = run(&["--cidr=10.0.0.128/25", "1", "t"]);
        assert_eq!(o.recommended_guest(), Ipv4Addr::new(10, 0, 0, 228));
        assert!(o.to_config(Config::default()).is_ok());
    }
}
