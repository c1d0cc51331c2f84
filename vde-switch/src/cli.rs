//! `warren`'s command line: one clap definition ([`Cli`]) gives the parser, `--help`, the shell
//! completions (`warren completions SHELL`) and the man page (`warren man`).
//!
//! Parsing does no I/O: [`parse`] checks every value and builds [`Options`]; [`Options::resolve`]
//! then looks up group names and guestfwd host names and reads `/etc/resolv.conf`. The slirp4netns
//! drop-in, `--slirp-options` and the hidden internal subcommands keep their own hand-written
//! grammars (someone else's contract); they are dispatched before clap (see `main.rs`).

use crate::frontend::stream::Listen;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};
use netstack::config::{Config, Ipv4Net};
use slirp_compat::guestfwd::{GuestFwd, GuestFwdError, GuestFwdTarget};
use slirp_compat::hostfwd::{HostFwd, HostFwdError};
use slirp_compat::options::SlirpOptions;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

const ABOUT: &str = "Unprivileged virtual networking for QEMU guests and rootless containers";
const LONG_ABOUT: &str = "\
Unprivileged virtual networking for QEMU guests: a virtual switch with a built-in gateway
(DHCP, DNS proxy, NAT of guest TCP/UDP/ICMP to host sockets). Defaults follow QEMU's -netdev user.
Front ends are repeatable: any number of guests on one LAN. Without a front end or namespace,
warren listens on $XDG_RUNTIME_DIR/warren.sock.";

// `warren [OPTIONS]`, `warren run [OPTIONS] -- CMD`, `warren ctl …`, `warren completions SHELL`,
// `warren man`. (`warren slirp4netns …` and the hidden internal subcommands are dispatched before
// clap sees the command line.) A `//` comment: a doc comment would replace LONG_ABOUT.
#[derive(Parser, Debug)]
#[command(
    name = "warren",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub opts: DaemonArgs,
    /// A command after `--` (only `warren run` takes one; kept to say so clearly).
    #[arg(last = true, hide = true, value_name = "CMD")]
    pub stray_command: Vec<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// warren's subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run CMD in a new user+network namespace served by warren, with a resolv.conf naming the
    /// DNS address; exits with CMD's status
    #[command(args_override_self = true)]
    Run {
        #[command(flatten)]
        opts: Box<DaemonArgs>,
        /// The command and its arguments (after --)
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Talk to a running warren's control socket (--api)
    Ctl(slirp_compat::CtlArgs),
    /// Act as slirp4netns (its own command line; see warren slirp4netns --help). A link or copy
    /// named slirp4netns does the same
    #[command(disable_help_flag = true)]
    Slirp4netns {
        /// slirp4netns' arguments
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): warren man > warren.1
    Man,
}

/// The daemon's options (`warren` and `warren run`). Values are checked here; nothing is looked up.
#[derive(Args, Debug, Clone, Default)]
pub struct DaemonArgs {
    // Front ends
    /// Unix stream socket for QEMU -netdev stream,addr.type=unix
    #[arg(long, value_name = "PATH", help_heading = "Front ends")]
    pub socket: Vec<PathBuf>,
    /// TCP socket for -netdev stream,addr.type=inet and -netdev socket,connect=
    #[arg(long, value_name = "HOST:PORT", value_parser = listen_addr, help_heading = "Front ends")]
    pub listen: Vec<SocketAddr>,
    /// Unix datagram socket for -netdev dgram (remote.path=PATH; one port per guest)
    #[arg(long, value_name = "PATH", help_heading = "Front ends")]
    pub dgram: Vec<PathBuf>,
    /// A dgram guest silent this long loses its port (default 300)
    #[arg(long, value_name = "SECS", value_parser = positive_secs, allow_negative_numbers = true, help_heading = "Front ends")]
    pub dgram_idle: Option<u64>,
    /// vhost-user socket for -netdev vhost-user (QEMU connects; one port per guest)
    #[arg(long, value_name = "PATH", help_heading = "Front ends")]
    pub vhost_user: Vec<PathBuf>,
    /// VDE2 switch directory for -netdev vde,sock=DIR and vde_plug (frames <= 1518)
    #[arg(long, value_name = "DIR", help_heading = "Front ends")]
    pub vde: Vec<PathBuf>,
    /// Permissions of the VDE sockets, octal (default 0600; directory gets +x, setgid)
    #[arg(long, value_name = "MODE", value_parser = octal_mode, help_heading = "Front ends")]
    pub vde_mode: Option<u32>,
    /// Group owner (name or number) of the VDE directory and sockets
    #[arg(long, value_name = "GROUP", help_heading = "Front ends")]
    pub vde_group: Option<String>,
    /// Guests reach only the gateway, not each other
    #[arg(long, help_heading = "Front ends")]
    pub isolate: bool,

    // Namespaces
    /// Serve a tap inside that network namespace (stops when PID exits)
    #[arg(
        long,
        value_name = "PID|PATH",
        help_heading = "Namespaces (rootless containers; as slirp4netns and pasta)"
    )]
    pub netns: Option<String>,
    /// User namespace to enter first (default: the one owning the netns)
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "Namespaces (rootless containers; as slirp4netns and pasta)"
    )]
    pub userns: Option<PathBuf>,
    /// The tap's name (default tap0)
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "Namespaces (rootless containers; as slirp4netns and pasta)"
    )]
    pub tap: Option<String>,
    /// Set 10.0.2.100/24 (.100 of --net) and fd00::100/64 (::100 of --net6), default routes via
    /// the gateway, MTU, link up
    #[arg(
        long,
        help_heading = "Namespaces (rootless containers; as slirp4netns and pasta)"
    )]
    pub configure: bool,
    /// Write 1 to FD when ready (slirp4netns -r)
    #[arg(long, value_name = "FD", value_parser = fd_number, allow_negative_numbers = true, help_heading = "Namespaces (rootless containers; as slirp4netns and pasta)")]
    pub ready_fd: Option<i32>,
    /// Stop when FD closes or becomes readable (slirp4netns -e)
    #[arg(long, value_name = "FD", value_parser = fd_number, allow_negative_numbers = true, help_heading = "Namespaces (rootless containers; as slirp4netns and pasta)")]
    pub exit_fd: Option<i32>,

    // Address plan
    /// Virtual network (default 10.0.2.0/24)
    #[arg(long, value_name = "CIDR", value_parser = net_cidr, help_heading = "Address plan")]
    pub net: Option<Ipv4Net>,
    /// Gateway address, = host loopback (default 10.0.2.2, .2 of --net)
    #[arg(long, alias = "host", value_name = "IP", value_parser = ipv4, help_heading = "Address plan")]
    pub gateway: Option<Ipv4Addr>,
    /// DNS forwarder address (default 10.0.2.3)
    #[arg(long, value_name = "IP", value_parser = ipv4, help_heading = "Address plan")]
    pub dns_addr: Option<Ipv4Addr>,
    /// First DHCP lease (default 10.0.2.15)
    #[arg(long, value_name = "IP", value_parser = ipv4, help_heading = "Address plan")]
    pub dhcp_start: Option<Ipv4Addr>,
    /// Link MTU, 576..65520 (default 1500)
    #[arg(long, value_name = "N", value_parser = mtu, allow_negative_numbers = true, help_heading = "Address plan")]
    pub mtu: Option<u16>,
    /// The gateway address does not reach the host's 127.0.0.1
    #[arg(long, help_heading = "Address plan")]
    pub no_host_loopback: bool,
    /// IPv6 prefix of the LAN (default fec0::/64, namespaces fd00::/64; router ::2, DNS ::3 of it)
    #[arg(long, value_name = "PREFIX/LEN", help_heading = "Address plan")]
    pub net6: Option<String>,
    /// IPv6 router address, = host ::1 (default ::2 of --net6)
    #[arg(long, value_name = "IP6", help_heading = "Address plan")]
    pub gateway6: Option<String>,
    /// IPv6 DNS forwarder address (default ::3 of --net6)
    #[arg(long, value_name = "IP6", help_heading = "Address plan")]
    pub dns_addr6: Option<String>,
    /// IPv4 only: no NDP, router advertisements or DHCPv6
    #[arg(long, help_heading = "Address plan")]
    pub no_ipv6: bool,
    /// IPv6 only: the gateway answers nothing on IPv4 (no ARP, DHCP, DNS or NAT over IPv4)
    #[arg(long, help_heading = "Address plan")]
    pub no_ipv4: bool,

    // DNS and DHCP
    /// Upstream DNS server (repeatable; default: /etc/resolv.conf's)
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = dns_upstream, help_heading = "DNS and DHCP")]
    pub dns_upstream: Vec<SocketAddr>,
    /// DHCP domain search list entry (repeatable; default: resolv.conf's)
    #[arg(long, value_name = "DOMAIN", help_heading = "DNS and DHCP")]
    pub dns_search: Vec<String>,
    /// DHCP domain name
    #[arg(long, value_name = "NAME", help_heading = "DNS and DHCP")]
    pub domain: Option<String>,

    // Forwarding and control
    /// Host port to guest (QEMU syntax; ranges A-B; guest defaults to the first lease)
    #[arg(long, value_name = "[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT", value_parser = hostfwd, help_heading = "Forwarding and control")]
    pub hostfwd: Vec<HostFwd>,
    /// A virtual service in the LAN leading to a host address or a command:
    /// tcp:[GUESTADDR]:PORT-HOST:PORT | tcp:[GUESTADDR]:PORT-cmd:COMMAND
    #[arg(long, value_name = "SPEC", value_parser = guestfwd, help_heading = "Forwarding and control")]
    pub guestfwd: Vec<GuestFwd>,
    /// Guests may not open outbound connections (forwards, guestfwds, DNS still work)
    #[arg(long, help_heading = "Forwarding and control")]
    pub restrict: bool,
    /// A QEMU -netdev user option string (net=,host=,dns=,dhcpstart=,hostfwd=,...)
    #[arg(long, value_name = "STRING", action = ArgAction::Append, help_heading = "Forwarding and control")]
    pub slirp_options: Vec<String>,
    /// Control socket (slirp4netns JSON API; see warren ctl --help)
    #[arg(long, value_name = "PATH", help_heading = "Forwarding and control")]
    pub api: Option<PathBuf>,

    // Sandbox
    /// Run unconfined (debugging)
    #[arg(
        long,
        help_heading = "Sandbox (on by default: no_new_privs, Landlock, seccomp)"
    )]
    pub no_sandbox: bool,
    /// Refuse to start if a sandbox layer fails (no Landlock at all: a warning)
    #[arg(
        long,
        help_heading = "Sandbox (on by default: no_new_privs, Landlock, seccomp)"
    )]
    pub require_sandbox: bool,
    /// Tests only: report what the sandbox lets through to FILE.
    #[arg(long, hide = true, value_name = "FILE")]
    pub sandbox_selftest: Option<PathBuf>,

    // Limits and diagnostics
    /// NAT flows per guest (default 4096; never more than half the fd budget)
    #[arg(long, value_name = "N", value_parser = positive_usize, allow_negative_numbers = true, help_heading = "Limits and diagnostics")]
    pub max_flows: Option<usize>,
    /// Running guestfwd cmd: children per guest (default 16)
    #[arg(long, value_name = "N", value_parser = positive_usize, allow_negative_numbers = true, help_heading = "Limits and diagnostics")]
    pub max_cmd: Option<usize>,
    /// Broadcast/multicast/unknown-unicast frames per second each port may flood (default 1000;
    /// 0: unlimited); excess is dropped (drop_storm)
    #[arg(long, value_name = "N", value_parser = number_u32, allow_negative_numbers = true, help_heading = "Limits and diagnostics")]
    pub bcast_rate: Option<u32>,
    /// Storm-control burst (default 200)
    #[arg(long, value_name = "N", value_parser = positive_u32, allow_negative_numbers = true, help_heading = "Limits and diagnostics")]
    pub bcast_burst: Option<u32>,
    /// MACs the switch learns in all, and addresses it binds without a DHCP lease (default 4096)
    #[arg(long, value_name = "N", value_parser = positive_u32, allow_negative_numbers = true, help_heading = "Limits and diagnostics")]
    pub max_macs: Option<u32>,
    /// MACs one port may use (default 16)
    #[arg(long, value_name = "N", value_parser = positive_u32, allow_negative_numbers = true, help_heading = "Limits and diagnostics")]
    pub max_macs_per_port: Option<u32>,
    /// Record every frame to and from guests (tcpdump/tshark format)
    #[arg(long, value_name = "FILE", help_heading = "Limits and diagnostics")]
    pub pcap: Option<PathBuf>,
    /// More logging (twice for debug); RUST_LOG=module=level filters further
    #[arg(short, long, action = ArgAction::Count, help_heading = "Limits and diagnostics")]
    pub verbose: u8,
    /// Warnings only
    #[arg(short, long, help_heading = "Limits and diagnostics")]
    pub quiet: bool,

    // Overlay
    #[command(flatten)]
    pub vxlan: crate::vxlan::VxlanArgs,
}

// Value checks: each message follows clap's "invalid value 'V' for '--opt <V>': ".
fn listen_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| "expected HOST:PORT (e.g. 127.0.0.1:5555)".to_string())
}
fn positive_secs(v: &str) -> Result<u64, String> {
    v.parse()
        .ok()
        .filter(|&s: &u64| s > 0)
        .ok_or_else(|| "expected seconds > 0".to_string())
}
fn octal_mode(v: &str) -> Result<u32, String> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| "expected octal 000..777".to_string())
}
fn fd_number(v: &str) -> Result<i32, String> {
    v.parse()
        .ok()
        .filter(|&f: &i32| f >= 0)
        .ok_or_else(|| "expected a file descriptor number".to_string())
}
fn net_cidr(v: &str) -> Result<Ipv4Net, String> {
    Ipv4Net::parse(v).map_err(String::from)
}
fn ipv4(v: &str) -> Result<Ipv4Addr, String> {
    v.parse().map_err(|_| "not an IPv4 address".to_string())
}
fn mtu(v: &str) -> Result<u16, String> {
    v.parse().map_err(|_| "not a number".to_string())
}
fn dns_upstream(v: &str) -> Result<SocketAddr, String> {
    parse_dns_upstream(v)
}
fn hostfwd(v: &str) -> Result<HostFwd, HostFwdError> {
    HostFwd::parse(v)
}
fn guestfwd(v: &str) -> Result<GuestFwd, GuestFwdError> {
    GuestFwd::parse(v)
}
fn positive_usize(v: &str) -> Result<usize, String> {
    v.parse()
        .ok()
        .filter(|&n: &usize| n > 0)
        .ok_or_else(|| "expected a positive number".to_string())
}
fn number_u32(v: &str) -> Result<u32, String> {
    v.parse().map_err(|_| "expected a number".to_string())
}
fn positive_u32(v: &str) -> Result<u32, String> {
    match number_u32(v)? {
        0 => Err("expected a number > 0".into()),
        n => Ok(n),
    }
}

/// Parses `ADDR`, `ADDR:PORT`, `[V6]:PORT` or a bare IPv6 address; the port defaults to 53.
pub fn parse_dns_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!("--dns-upstream {s:?}: expected ADDR or ADDR:PORT"))
}

/// Whether and how strictly to confine the daemon (`sandbox.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// `--no-sandbox`.
    Off,
    /// The default: every layer the kernel offers; a missing one is one log line.
    #[default]
    On,
    /// `--require-sandbox` (and the slirp4netns drop-in's `--enable-sandbox`/`--enable-seccomp`): a
    /// layer that cannot be applied stops warren before it serves (a kernel without Landlock at all
    /// stays a warning: seccomp alone already refuses every file open).
    Required,
}

/// The checked options of `warren` / `warren run` (nothing looked up yet: see [`Options::resolve`]).
#[derive(Debug)]
pub struct Options {
    pub config: Config,
    pub listen: Vec<Listen>,
    pub dgram: Vec<PathBuf>,
    pub dgram_idle: std::time::Duration,
    pub vhost_user: Vec<PathBuf>,
    pub vde: Vec<PathBuf>,
    pub vde_mode: Option<u32>,
    /// `--vde-group` as given; [`Options::resolve`] fills `vde_group`.
    pub vde_group_name: Option<String>,
    pub vde_group: Option<u32>,
    pub isolate: bool,
    pub pcap: Option<PathBuf>,
    pub verbosity: i8,
    pub dns_search_given: bool,
    /// Host→guest forwards (`--hostfwd`, and those of `--slirp-options`).
    pub hostfwd: Vec<HostFwd>,
    /// Guest→host services (`--guestfwd`, and those of `--slirp-options`); [`Options::resolve`]
    /// turns them into `config.guestfwds`.
    pub guestfwd: Vec<GuestFwd>,
    /// The control socket (`--api`).
    pub api: Option<PathBuf>,
    /// `--netns`, `--tap`, … and `warren run`'s command (`netns.rs`).
    pub netns: crate::netns::NetnsOptions,
    /// `--no-sandbox` / `--require-sandbox` (`sandbox.rs`).
    pub sandbox: SandboxMode,
    /// Hidden `--sandbox-selftest FILE` (tests only): report what the sandbox lets through.
    pub sandbox_selftest: Option<PathBuf>,
    /// Storm control and table bounds (`--bcast-rate`, `--max-macs`, …).
    pub lan: crate::switch::LanOptions,
    /// The VXLAN uplink, `--no-gateway`, `--dhcp-range` (`vxlan.rs`, `frontend/vxlan.rs`).
    pub vxlan: crate::vxlan::VxlanOptions,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Serve (`warren [OPTIONS]`, or `warren run [OPTIONS] -- CMD` with `netns.command` set).
    Serve(Box<Options>),
    /// Print this to stdout and exit 0 (`--help`, `--version`, completions, man page).
    Print(String),
}

/// A command-line error: one line, printed as `warren: …`, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The clap command (for help, completions and the man page).
pub fn command() -> clap::Command {
    Cli::command()
}

fn clap_error(e: clap::Error) -> UsageError {
    let s = |k| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    UsageError(match e.kind() {
        ErrorKind::UnknownArgument => match s(ContextKind::InvalidArg) {
            Some(a) => format!("unknown option {a:?} (see warren --help)"),
            None => slirp_compat::ctl::clap_error_line(&e),
        },
        ErrorKind::InvalidSubcommand => match s(ContextKind::InvalidSubcommand) {
            Some(a) => format!("unknown option {a:?} (see warren --help)"),
            None => slirp_compat::ctl::clap_error_line(&e),
        },
        _ => slirp_compat::ctl::clap_error_line(&e),
    })
}

/// Parses warren's whole command line (the words after argv[0]).
pub fn parse_command_line<I: IntoIterator<Item = String>>(
    args: I,
) -> Result<Invocation, UsageError> {
    let argv = std::iter::once("warren".to_string()).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let mut text = e.render().to_string();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            return Ok(Invocation::Print(text));
        }
        Err(e) => return Err(clap_error(e)),
    };
    match cli.command {
        None => {
            if !cli.stray_command.is_empty() {
                return Err(UsageError("a command after -- needs warren run".into()));
            }
            Ok(Invocation::Serve(Box::new(options(cli.opts, None)?)))
        }
        Some(Command::Run { opts, command }) => {
            if command.is_empty() {
                return Err(UsageError("warren run needs -- CMD [ARGS...]".into()));
            }
            let mut o = options(*opts, Some(command))?;
            // warren run's own output goes to stderr only with -v.
            if o.verbosity == 0 {
                o.verbosity = -1;
            }
            Ok(Invocation::Serve(Box::new(o)))
        }
        // main hands these to their own parsers before clap (their errors keep their wording);
        // they are defined here for help, completions and the man page.
        Some(Command::Ctl(_)) => Err(UsageError(
            "ctl must come first: warren ctl --api PATH COMMAND".into(),
        )),
        Some(Command::Slirp4netns { .. }) => Err(UsageError(
            "slirp4netns must come first: warren slirp4netns ARGS".into(),
        )),
        Some(Command::Completions { shell }) => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command(), "warren", &mut out);
            Ok(Invocation::Print(
                String::from_utf8_lossy(&out).into_owned(),
            ))
        }
        Some(Command::Man) => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command())
                .render(&mut out)
                .map_err(|e| UsageError(format!("man page: {e}")))?;
            Ok(Invocation::Print(
                String::from_utf8_lossy(&out).into_owned(),
            ))
        }
    }
}

/// Why the options do not make sense together, or a name in them does not resolve. One line each,
/// printed as `warren: …` (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// What clap refuses (its message, reworded as [`UsageError`] has it).
    #[error("{0}")]
    Usage(String),
    #[error("a subcommand is not an option here")]
    SubcommandHere,
    #[error("--no-sandbox and --require-sandbox contradict each other")]
    SandboxContradiction,
    #[error("--slirp-options given twice")]
    SlirpOptionsTwice,
    #[error("--slirp-options: {0}")]
    SlirpOptions(String),
    /// The IPv6 plan (`--net6`, `--gateway6`, `--dns-addr6`, `ipv6-*` slirp options).
    #[error("{0}")]
    Ipv6(String),
    #[error("--no-ipv6 contradicts --net6/--gateway6/--dns-addr6")]
    NoIpv6Contradiction,
    /// `--no-ipv4` with an IPv4 setting, or with `--no-ipv6` (the option names).
    #[error("--no-ipv4 contradicts {0}")]
    NoIpv4Contradiction(String),
    /// A `--guestfwd` (or `guestfwd=` in `--slirp-options`) the gateway's plan cannot take.
    #[error("--guestfwd {spec}: {why}")]
    GuestFwd { spec: String, why: String },
    #[error("--guestfwd {spec}: unix socket targets ({}) are not supported yet; use cmd:socat - UNIX-CONNECT:PATH", path.display())]
    GuestFwdUnix { spec: String, path: PathBuf },
    #[error("--guestfwd {spec}: cannot resolve {host}: {why}")]
    GuestFwdResolve {
        spec: String,
        host: String,
        why: String,
    },
    #[error("--guestfwd {spec}: {host} has no address")]
    GuestFwdNoAddress { spec: String, host: String },
    /// The gateway's configuration check (`netstack::config::Config::validate`).
    #[error(transparent)]
    Config(#[from] netstack::config::ConfigError),
    #[error(transparent)]
    Group(#[from] crate::frontend::vde::GroupError),
    /// The overlay's options (`--vxlan…`, `--no-gateway`, `--dhcp-range`).
    #[error("{0}")]
    Vxlan(String),
}

impl From<OptionsError> for UsageError {
    fn from(e: OptionsError) -> Self {
        UsageError(e.to_string())
    }
}

/// Parses the daemon options alone (no `run`, no subcommand; as the slirp4netns drop-in produces).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, OptionsError> {
    let argv = std::iter::once("warren".to_string()).chain(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| OptionsError::Usage(clap_error(e).0))?;
    if cli.command.is_some() {
        return Err(OptionsError::SubcommandHere);
    }
    let command = (!cli.stray_command.is_empty()).then_some(cli.stray_command);
    options(cli.opts, command)
}

/// Checks the parsed values together and builds [`Options`] (no I/O).
fn options(a: DaemonArgs, command: Option<Vec<String>>) -> Result<Options, OptionsError> {
    let mut config = Config::default();
    let mut lan = crate::switch::LanOptions::default();
    if let Some(m) = a.mtu {
        config.mtu = m;
    }
    config.host_loopback = !a.no_host_loopback;
    config.dns_upstreams = a.dns_upstream;
    let mut dns_search_given = !a.dns_search.is_empty();
    config.dns_search = a.dns_search;
    config.domain_name = a.domain;
    config.restrict = a.restrict;
    if let Some(n) = a.max_flows {
        config.max_flows_per_guest = n;
    }
    if let Some(n) = a.max_cmd {
        config.max_cmd_per_guest = n;
    }
    if let Some(n) = a.bcast_rate {
        lan.storm.rate = n;
    }
    if let Some(n) = a.bcast_burst {
        lan.storm.burst = n;
    }
    if let Some(n) = a.max_macs {
        // The source guard's table of addresses without a lease has the same bound.
        lan.max_macs = n as usize;
        lan.max_bindings = lan.max_macs;
    }
    if let Some(n) = a.max_macs_per_port {
        lan.max_macs_per_port = n as usize;
    }
    let sandbox = match (a.no_sandbox, a.require_sandbox) {
        (true, true) => return Err(OptionsError::SandboxContradiction),
        (true, false) => SandboxMode::Off,
        (false, true) => SandboxMode::Required,
        (false, false) => SandboxMode::On,
    };
    if a.slirp_options.len() > 1 {
        return Err(OptionsError::SlirpOptionsTwice);
    }
    let slirp = match a.slirp_options.first() {
        Some(s) => {
            Some(SlirpOptions::parse(s).map_err(|e| OptionsError::SlirpOptions(e.to_string()))?)
        }
        None => None,
    };
    // Addresses default to the same host numbers as slirp's within whatever network was chosen.
    let net = a.net.unwrap_or(config.net);
    let host = |n: u32| Ipv4Addr::from(u32::from(net.network()) | n);
    config.net = net;
    config.gateway = a.gateway.unwrap_or(host(2));
    config.dns = a.dns_addr.unwrap_or(host(3));
    config.dhcp_start = a.dhcp_start.unwrap_or(host(15));
    let vxlan = crate::vxlan::options(
        a.vxlan,
        &mut config,
        a.mtu.is_some(),
        a.dhcp_start.is_some(),
    )
    .map_err(OptionsError::Vxlan)?;
    let mut hostfwd = a.hostfwd;
    let mut guestfwd = a.guestfwd;
    let slirp_v6_given = slirp.as_ref().is_some_and(|so| {
        so.ipv6_prefix.is_some()
            || so.ipv6_prefix_len.is_some()
            || so.ipv6_host.is_some()
            || so.ipv6_dns.is_some()
    });
    // A -netdev user option string: same meaning and defaults as QEMU's.
    if let Some(so) = slirp {
        so.apply(&mut config)
            .map_err(|e| OptionsError::SlirpOptions(e.to_string()))?;
        if so.restrict == Some(true) {
            config.restrict = true;
        }
        if !so.dns_search.is_empty() {
            dns_search_given = true;
        }
        hostfwd.extend(so.hostfwd.iter().cloned());
        guestfwd.extend(so.guestfwd.iter().cloned());
        if !so.ipv6_enabled() {
            config.v6 = None;
        } else if so.ipv6_prefix.is_some()
            || so.ipv6_prefix_len.is_some()
            || so.ipv6_host.is_some()
            || so.ipv6_dns.is_some()
        {
            let p = netstack::addr6::Plan6::from_qemu_typed(
                so.ipv6_prefix,
                so.ipv6_prefix_len,
                so.ipv6_host,
                so.ipv6_dns,
                so.restrict == Some(true),
                config.gateway_mac,
            )
            .map_err(|e| OptionsError::SlirpOptions(e.to_string()))?;
            config.v6 = Some(p);
        }
    }
    let v6_given = a.net6.is_some() || a.gateway6.is_some() || a.dns_addr6.is_some();
    // Namespaces (--netns, warren run, the slirp4netns and pasta drop-ins) follow slirp4netns'
    // IPv6 plan, fd00::/64 (the namespace gets ::100); QEMU front ends keep QEMU's fec0::/64.
    if (a.netns.is_some() || command.is_some()) && !slirp_v6_given && config.v6.is_some() {
        config.v6 = Some(netstack::addr6::Plan6::slirp4netns(config.gateway_mac));
    }
    if a.no_ipv6 {
        if v6_given {
            return Err(OptionsError::NoIpv6Contradiction);
        }
        config.v6 = None;
    } else if v6_given {
        if let Some(base) = &config.v6 {
            let p = netstack::addr6::Plan6::from_options(
                base,
                a.net6.as_deref(),
                a.gateway6.as_deref(),
                a.dns_addr6.as_deref(),
            )
            .map_err(OptionsError::Ipv6)?;
            config.v6 = Some(p);
        }
    }
    if a.no_ipv4 {
        let v4_opts: Vec<&str> = [
            (a.no_ipv6, "--no-ipv6"),
            (a.net.is_some(), "--net"),
            (a.gateway.is_some(), "--gateway"),
            (a.dns_addr.is_some(), "--dns-addr"),
            (a.dhcp_start.is_some(), "--dhcp-start"),
            (
                config.mtu < netstack::addr6::MIN_MTU,
                "an MTU below 1280 (IPv6's minimum)",
            ),
        ]
        .iter()
        .filter(|(given, _)| *given)
        .map(|&(_, name)| name)
        .collect();
        if !v4_opts.is_empty() {
            return Err(OptionsError::NoIpv4Contradiction(v4_opts.join("/")));
        }
        config.ipv4 = false;
    }
    if !config.ipv4 && config.v6.is_none() {
        return Err(OptionsError::NoIpv4Contradiction(
            "an IPv4-only setup (no IPv6 plan: MTU below 1280, ipv6=off or --no-ipv6)".into(),
        ));
    }
    for g in &guestfwd {
        g.resolved_addr(&config)
            .map_err(|e| OptionsError::GuestFwd {
                spec: g.to_string(),
                why: e.to_string(),
            })?;
        if let GuestFwdTarget::Unix(p) = &g.target {
            return Err(OptionsError::GuestFwdUnix {
                spec: g.to_string(),
                path: p.clone(),
            });
        }
    }
    if vxlan.no_gateway && (!hostfwd.is_empty() || !guestfwd.is_empty()) {
        return Err(OptionsError::Vxlan(
            "--no-gateway: forwards need the gateway (set them on the warren that has it)".into(),
        ));
    }
    config.validate().map_err(OptionsError::Config)?;
    Ok(Options {
        config,
        listen: a
            .socket
            .into_iter()
            .map(Listen::Unix)
            .chain(a.listen.into_iter().map(Listen::Tcp))
            .collect(),
        dgram: a.dgram,
        vhost_user: a.vhost_user,
        dgram_idle: a
            .dgram_idle
            .map(std::time::Duration::from_secs)
            .unwrap_or(crate::frontend::dgram::IDLE),
        vde: a.vde,
        vde_mode: a.vde_mode,
        vde_group: None,
        vde_group_name: a.vde_group,
        isolate: a.isolate,
        pcap: a.pcap,
        verbosity: if a.quiet {
            -1
        } else {
            a.verbose.min(100) as i8
        },
        dns_search_given,
        hostfwd,
        guestfwd,
        api: a.api,
        netns: crate::netns::NetnsOptions {
            target: a.netns,
            userns: a.userns,
            tap: a.tap,
            configure: a.configure,
            ready_fd: a.ready_fd,
            exit_fd: a.exit_fd,
            command,
            address: None,
            address6: None,
        },
        sandbox,
        sandbox_selftest: a.sandbox_selftest,
        lan,
        vxlan,
    })
}

impl Options {
    /// The lookups parsing leaves out: `--vde-group` names, guestfwd host names, and (when no
    /// `--dns-upstream`/`--dns-search` was given) `resolv_conf`'s nameservers and search list.
    pub fn resolve(&mut self, resolv_conf: &Path) -> Result<(), OptionsError> {
        if let Some(g) = &self.vde_group_name {
            self.vde_group = Some(crate::frontend::vde::group_id(g)?);
        }
        let given: Vec<_> = self
            .guestfwd
            .iter()
            .map(|g| netstack_guestfwd(g, &self.config))
            .collect::<Result<_, _>>()?;
        self.config.guestfwds.extend(given); // after the drop-ins' own (pasta -T)
        self.config.validate().map_err(OptionsError::Config)?;
        if self.config.dns_upstreams.is_empty() || !self.dns_search_given {
            let rc = netstack_driver::resolv::read(resolv_conf).unwrap_or_default();
            if self.config.dns_upstreams.is_empty() {
                self.config.dns_upstreams = rc.nameservers.clone();
                if self.config.dns_upstreams.is_empty() {
                    log::warn!(
                        "no DNS upstream: {} names no nameserver and no --dns-upstream was given",
                        resolv_conf.display()
                    );
                }
            }
            if !self.dns_search_given {
                self.config.dns_search = rc.search;
            }
        }
        Ok(())
    }
}

/// Turns a parsed `guestfwd` into the gateway's form (host names resolved now).
fn netstack_guestfwd(
    g: &GuestFwd,
    cfg: &Config,
) -> Result<netstack::config::GuestFwd, OptionsError> {
    use std::net::ToSocketAddrs;
    let spec = || g.to_string();
    let addr = g.resolved_addr(cfg).map_err(|e| OptionsError::GuestFwd {
        spec: spec(),
        why: e.to_string(),
    })?;
    let target = match &g.target {
        GuestFwdTarget::Tcp { host, port } => {
            let a = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| OptionsError::GuestFwdResolve {
                    spec: spec(),
                    host: host.clone(),
                    why: e.to_string(),
                })?
                .next()
                .ok_or_else(|| OptionsError::GuestFwdNoAddress {
                    spec: spec(),
                    host: host.clone(),
                })?;
            netstack::config::GuestFwdTarget::Connect(a)
        }
        GuestFwdTarget::Cmd(c) => netstack::config::GuestFwdTarget::Command(c.clone()),
        GuestFwdTarget::Unix(p) => {
            return Err(OptionsError::GuestFwdUnix {
                spec: spec(),
                path: p.clone(),
            })
        }
    };
    Ok(netstack::config::GuestFwd {
        addr,
        port: g.guest_port,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, String> {
        let mut o = parse(args.iter().map(|s| s.to_string())).map_err(|e| e.to_string())?;
        o.resolve(Path::new("/nonexistent/resolv.conf"))
            .map_err(|e| e.to_string())?;
        Ok(o)
    }

    #[test]
    fn defaults_follow_slirp() {
        let o = p(&["--socket", "/tmp/x"]).expect("ok");
        assert_eq!(o.config.gateway, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(o.config.dns, Ipv4Addr::new(10, 0, 2, 3));
        assert_eq!(o.config.dhcp_start, Ipv4Addr::new(10, 0, 2, 15));
        assert!(matches!(o.listen[0], Listen::Unix(_)));
    }

    #[test]
    fn custom_net_moves_default_addresses() {
        let o = p(&["--net=192.168.76.0/24", "--mtu", "65520"]).expect("ok");
        assert_eq!(o.config.gateway, Ipv4Addr::new(192, 168, 76, 2));
        assert_eq!(o.config.dhcp_start, Ipv4Addr::new(192, 168, 76, 15));
        assert_eq!(o.config.mtu, 65520);
    }

    #[test]
    fn bad_options_are_clear_errors() {
        assert!(p(&["--bogus"]).unwrap_err().contains("unknown option"));
        assert!(p(&["--mtu"]).unwrap_err().contains("--mtu"));
        assert!(p(&["--mtu", "70000"]).is_err());
        assert!(p(&["--gateway", "10.0.3.2"])
            .unwrap_err()
            .contains("outside"));
        assert!(p(&["--dns-upstream", "nope"]).is_err());
        assert!(p(&["--listen", "nope"]).is_err());
        assert!(p(&["--max-flows", "0"]).is_err());
        assert!(p(&["--vde-mode", "0800"]).is_err());
        assert!(p(&["--vde-mode", "1777"]).is_err());
        assert!(p(&["--vde-group", "no-such-group-here"]).is_err());
    }

    #[test]
    fn no_ipv4_and_the_namespace_plan() {
        let six = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        let o = p(&["--no-ipv4"]).expect("IPv6 only");
        assert!(!o.config.ipv4 && o.config.v6.is_some());
        assert!(p(&[]).unwrap().config.ipv4);
        for (args, named) in [
            (&["--no-ipv4", "--no-ipv6"][..], "--no-ipv6"),
            (&["--no-ipv4", "--net", "10.1.0.0/24"][..], "--net"),
            (&["--no-ipv4", "--gateway", "10.0.2.9"][..], "--gateway"),
            (&["--no-ipv4", "--dns-addr", "10.0.2.9"][..], "--dns-addr"),
            (
                &["--no-ipv4", "--dhcp-start", "10.0.2.20"][..],
                "--dhcp-start",
            ),
            (&["--no-ipv4", "--mtu", "1000"][..], "MTU below 1280"),
        ] {
            let e = p(args).expect_err(named);
            assert!(
                e.starts_with("--no-ipv4 contradicts") && e.contains(named),
                "{e}"
            );
            assert!(!e.contains('\n'));
        }
        // slirp's ipv4=off is --no-ipv4; both off is refused.
        let o = p(&["--slirp-options", "ipv4=off"]).expect("IPv6 only");
        assert!(!o.config.ipv4);
        assert!(p(&["--slirp-options", "ipv4=off,ipv6=off"]).is_err());
        // Namespaces follow slirp4netns' plan, QEMU front ends QEMU's, explicit options win.
        let ns = p(&["--netns", "1234"]).unwrap().config.v6.expect("v6");
        assert_eq!((ns.router, ns.dns), (six("fd00::2"), six("fd00::3")));
        let q = p(&["--socket", "/tmp/x.sock"])
            .unwrap()
            .config
            .v6
            .expect("v6");
        assert_eq!(q.router, six("fec0::2"));
        let e = p(&["--netns", "1234", "--net6", "fd00:9::/64"]).unwrap();
        assert_eq!(e.config.v6.expect("v6").router, six("fd00:9::2"));
        let words = ["run", "--no-ipv4", "--", "true"].map(String::from);
        let Ok(Invocation::Serve(o)) = parse_command_line(words) else {
            panic!("warren run --no-ipv4")
        };
        assert!(!o.config.ipv4);
        assert_eq!(o.config.v6.expect("v6").router, six("fd00::2"));
    }

    #[test]
    fn ipv6_plan_options() {
        let six = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        let v6 = p(&[]).unwrap().config.v6.expect("IPv6 on by default");
        assert_eq!((v6.router, v6.dns), (six("fec0::2"), six("fec0::3")));
        assert!(p(&["--no-ipv6"]).unwrap().config.v6.is_none());
        let v6 = p(&["--net6", "fd00:1::/64", "--dns-addr6", "fd00:1::53"])
            .unwrap()
            .config
            .v6
            .unwrap();
        assert_eq!((v6.router, v6.dns), (six("fd00:1::2"), six("fd00:1::53")));
        let v6 = p(&[
            "--slirp-options",
            "ipv6-net=fd00:2::/64,ipv6-host=fd00:2::1",
        ])
        .unwrap()
        .config
        .v6
        .unwrap();
        assert_eq!((v6.router, v6.dns), (six("fd00:2::1"), six("fd00:2::3")));
        assert!(p(&["--slirp-options", "ipv4=on"])
            .unwrap()
            .config
            .v6
            .is_none());
        assert!(p(&["--net6", "fd00::"]).unwrap_err().contains("--net6"));
        assert!(p(&["--gateway6", "2001:db8::2"]).is_err());
        assert!(p(&["--no-ipv6", "--net6", "fd00::/64"])
            .unwrap_err()
            .contains("--no-ipv6"));
    }

    #[test]
    fn front_ends_and_isolation() {
        let o = p(&[
            "--dgram",
            "/tmp/d",
            "--vde=/tmp/v",
            "--vde-mode",
            "0660",
            "--vde-group",
            "0",
            "--isolate",
        ])
        .expect("ok");
        assert_eq!(o.dgram, vec![PathBuf::from("/tmp/d")]);
        assert_eq!(o.vde, vec![PathBuf::from("/tmp/v")]);
        assert_eq!(o.vde_mode, Some(0o660));
        assert_eq!(o.vde_group, Some(0));
        assert!(o.isolate);
        assert_eq!(o.lan, crate::switch::LanOptions::default());
        assert!(o.listen.is_empty());
    }

    #[test]
    fn forwarding_options() {
        let o = p(&[
            "--hostfwd",
            "tcp::2222-:22",
            "--hostfwd=udp:127.0.0.1:5353-:53",
            "--restrict",
            "--api",
            "/tmp/a",
        ])
        .expect("ok");
        assert_eq!(o.hostfwd.len(), 2);
        assert!(o.config.restrict);
        assert_eq!(o.api, Some(PathBuf::from("/tmp/a")));
        let o = p(&["--guestfwd", "tcp:10.0.2.100:8080-127.0.0.1:80"]).expect("ok");
        assert_eq!(o.config.guestfwds.len(), 1);
        assert_eq!(o.config.guestfwds[0].addr, Ipv4Addr::new(10, 0, 2, 100));
        assert!(p(&["--hostfwd", "tcp:2222:22"]).is_err());
        assert!(
            p(&["--guestfwd", "tcp:10.0.2.2:80-127.0.0.1:80"]).is_err(),
            "not the gateway's address"
        );
    }

    #[test]
    fn slirp_options_string() {
        let o = p(&[
            "--slirp-options",
            "net=192.168.50.0/24,hostfwd=tcp::2222-:22,restrict=on,dnssearch=example.org",
        ])
        .expect("ok");
        assert_eq!(o.config.gateway, Ipv4Addr::new(192, 168, 50, 2));
        assert_eq!(o.config.dhcp_start, Ipv4Addr::new(192, 168, 50, 15));
        assert!(o.config.restrict);
        assert_eq!(o.hostfwd.len(), 1);
        assert_eq!(o.config.dns_search, vec!["example.org".to_string()]);
        assert!(p(&["--slirp-options", "bogus=1"])
            .unwrap_err()
            .contains("bogus"));
    }

    #[test]
    fn dns_upstream_forms() {
        assert_eq!(
            parse_dns_upstream("127.0.0.1").expect("ok"),
            "127.0.0.1:53".parse().expect("addr")
        );
        assert_eq!(
            parse_dns_upstream("127.0.0.1:5353").expect("ok"),
            "127.0.0.1:5353".parse().expect("addr")
        );
        assert_eq!(
            parse_dns_upstream("::1").expect("ok"),
            "[::1]:53".parse().expect("addr")
        );
    }

    #[test]
    fn lan_safety_limits() {
        let o = p(&[
            "--bcast-rate",
            "50",
            "--bcast-burst=10",
            "--max-macs",
            "100",
            "--max-macs-per-port",
            "2",
        ])
        .expect("ok");
        assert_eq!(o.lan.storm.rate, 50);
        assert_eq!(o.lan.storm.burst, 10);
        assert_eq!(o.lan.max_macs, 100);
        assert_eq!(o.lan.max_bindings, 100);
        assert_eq!(o.lan.max_macs_per_port, 2);
        assert_eq!(p(&["--bcast-rate", "0"]).expect("ok").lan.storm.rate, 0);
        for bad in [
            ["--bcast-burst", "0"],
            ["--max-macs", "0"],
            ["--max-macs-per-port", "0"],
            ["--bcast-rate", "-1"],
            ["--bcast-rate", "lots"],
        ] {
            assert!(p(&bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod generated {
    use super::*;

    fn run(args: &[&str]) -> Result<Invocation, UsageError> {
        parse_command_line(args.iter().map(|s| s.to_string()))
    }
    fn printed(args: &[&str]) -> String {
        match run(args) {
            Ok(Invocation::Print(t)) => t,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    /// Every `--option` in the first column of README.md's option tables.
    fn readme_options() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let mut out = Vec::new();
        for line in readme.lines() {
            let Some(first) = line.strip_prefix('|').and_then(|l| l.split(" | ").next()) else {
                continue;
            };
            let mut rest = first;
            while let Some(i) = rest.find("`--") {
                let opt: String = rest[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if opt.len() > 2 && !out.contains(&opt) {
                    out.push(opt);
                }
                rest = &rest[i + 3..];
            }
            // `--net CIDR`, `--gateway IP`: each in its own backticks.
        }
        out
    }

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn help_lists_every_readme_option() {
        let opts = readme_options();
        assert!(
            opts.len() >= 25,
            "README tables parsed too few options: {opts:?}"
        );
        for want in [
            "--socket",
            "--vde-group",
            "--ready-fd",
            "--exit-fd",
            "--dhcp-start",
        ] {
            assert!(
                opts.iter().any(|o| o == want),
                "{want} not found in README tables"
            );
        }
        let help = printed(&["--help"]);
        let run_help = printed(&["run", "--help"]);
        for o in &opts {
            assert!(
                help.contains(&format!("{o} ")) || help.contains(&format!("{o}\n")),
                "warren --help lacks {o}"
            );
            assert!(run_help.contains(o.as_str()), "warren run --help lacks {o}");
        }
        for sub in ["run", "ctl", "slirp4netns", "completions", "man"] {
            assert!(help.contains(sub), "warren --help lacks {sub}");
        }
        assert!(!help.contains("sandbox-selftest"), "hidden option shown");
        let short = printed(&["-h"]);
        assert!(
            short.contains("--hostfwd") && short.len() < help.len(),
            "-h: the short help"
        );
        assert!(help.contains(LONG_ABOUT), "--help has the long description");
        assert!(
            printed(&["--version"]).starts_with(&format!("warren {}", env!("CARGO_PKG_VERSION")))
        );
    }

    #[test]
    fn completions_and_man_page() {
        for shell in ["bash", "zsh", "fish"] {
            let c = printed(&["completions", shell]);
            for o in ["hostfwd", "slirp-options", "max-macs-per-port"] {
                assert!(c.contains(o), "{shell} completions lack {o}");
            }
            assert!(
                c.contains("ctl") && c.contains("add-hostfwd"),
                "{shell}: no ctl"
            );
        }
        assert!(run(&["completions", "tcsh"]).is_err());
        let man = printed(&["man"]);
        assert!(
            man.starts_with(".ie") || man.contains(".TH warren"),
            "{}",
            &man[..200.min(man.len())]
        );
        for o in ["hostfwd", "slirp\\-options", "dns\\-upstream", "RUST_LOG"] {
            assert!(man.contains(o), "man page lacks {o}");
        }
    }

    #[test]
    fn errors_are_one_line_and_name_the_option() {
        for (args, want) in [
            (&["--bogus"][..], "unknown option \"--bogus\""),
            (&["frob"], "unknown option \"frob\""),
            (&["--mtu"], "--mtu"),
            (&["--mtu", "x"], "--mtu"),
            (&["--listen", "nope"], "expected HOST:PORT"),
            (&["--vde-mode", "0800"], "--vde-mode"),
            (&["--max-flows", "0"], "--max-flows"),
            (&["--bcast-burst", "0"], "--bcast-burst"),
            (&["--dns-upstream", "nope"], "--dns-upstream"),
            (&["--hostfwd", "tcp:2222:22"], "--hostfwd"),
            (&["--guestfwd", "bogus"], "--guestfwd"),
            (&["--net", "10.0.2.0/33"], "--net"),
            (&["--ready-fd", "-3"], "--ready-fd"),
            (
                &["--slirp-options", "a=1", "--slirp-options", "b=2"],
                "--slirp-options given twice",
            ),
            (&["--", "true"], "a command after -- needs warren run"),
            (&["run"], "warren run needs -- CMD"),
            (&["run", "--"], "warren run needs -- CMD"),
            (&["--no-sandbox", "--require-sandbox"], "contradict"),
            (&["--socket", "/x", "run", "--", "true"], "run"),
        ] {
            let e = run(args).expect_err(&format!("{args:?}")).0;
            assert!(e.contains(want), "{args:?}: {e:?} lacks {want:?}");
            assert!(
                !e.contains('\n') && !e.starts_with("error"),
                "{args:?}: {e:?}"
            );
        }
    }

    #[test]
    fn run_and_repeated_options() {
        let Ok(Invocation::Serve(o)) =
            run(&["run", "--mtu", "9000", "-v", "--", "sh", "-c", "exit 3"])
        else {
            panic!("run")
        };
        assert_eq!(
            o.netns.command.as_deref(),
            Some(&["sh".to_string(), "-c".into(), "exit 3".into()][..])
        );
        assert_eq!(o.config.mtu, 9000);
        assert_eq!(o.verbosity, 1);
        let Ok(Invocation::Serve(o)) = run(&["run", "--", "true"]) else {
            panic!("run")
        };
        assert_eq!(o.verbosity, -1, "warren run is quiet by default");
        // The last of a repeated single-valued option wins, as before; repeatable ones collect.
        let Ok(Invocation::Serve(o)) = run(&[
            "--mtu",
            "1400",
            "--mtu=1450",
            "-vv",
            "--host",
            "10.0.2.4",
            "--dns-search",
            "a",
            "--dns-search",
            "b",
        ]) else {
            panic!("serve")
        };
        assert_eq!(o.config.mtu, 1450);
        assert_eq!(o.verbosity, 2);
        assert_eq!(o.config.gateway, Ipv4Addr::new(10, 0, 2, 4));
        assert_eq!(o.config.dns_search, vec!["a".to_string(), "b".into()]);
        let Ok(Invocation::Serve(o)) = run(&["-q"]) else {
            panic!("serve")
        };
        assert_eq!(o.verbosity, -1);
        assert!(o.netns.command.is_none() && !o.netns.active());
    }

    #[test]
    fn parsing_does_no_lookups() {
        // A group name and a guestfwd host name are looked up by resolve, not by parse.
        let mut o = parse(
            [
                "--vde-group",
                "no-such-group-here",
                "--guestfwd",
                "tcp:10.0.2.100:80-no-such-host.invalid:80",
            ]
            .map(String::from),
        )
        .expect("parses");
        assert_eq!(o.vde_group, None);
        assert!(o.config.guestfwds.is_empty());
        let e = o.resolve(Path::new("/nonexistent")).unwrap_err();
        assert_eq!(
            e,
            OptionsError::Group(crate::frontend::vde::GroupError::NoSuchGroup(
                "no-such-group-here".into()
            ))
        );
        assert_eq!(
            e.to_string(),
            "--vde-group \"no-such-group-here\": no such group"
        );
        let mut o = parse(["--guestfwd", "tcp:10.0.2.100:80-localhost:80"].map(String::from))
            .expect("parses");
        o.resolve(Path::new("/nonexistent")).expect("resolves");
        assert_eq!(o.config.guestfwds.len(), 1);
    }

    #[test]
    fn resolv_conf_fills_dns_defaults() {
        let dir = std::env::temp_dir().join(format!("warren-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let rc = dir.join("resolv.conf");
        std::fs::write(&rc, "nameserver 127.0.0.53\nsearch example.org\n").expect("write");
        let mut o = parse(Vec::new()).expect("parses");
        o.resolve(&rc).expect("resolves");
        assert_eq!(
            o.config.dns_upstreams,
            vec!["127.0.0.53:53".parse().expect("addr")]
        );
        assert_eq!(o.config.dns_search, vec!["example.org".to_string()]);
        let mut o =
            parse(["--dns-upstream", "127.0.0.1:5353", "--dns-search", "x.test"].map(String::from))
                .expect("parses");
        o.resolve(&rc).expect("resolves");
        assert_eq!(
            o.config.dns_upstreams,
            vec!["127.0.0.1:5353".parse().expect("addr")]
        );
        assert_eq!(o.config.dns_search, vec!["x.test".to_string()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
