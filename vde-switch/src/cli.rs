//! `warren`'s command line (hand-rolled: few dependencies, `--opt VALUE` and `--opt=VALUE`).

use crate::server::Listen;
use netstack::config::{Config, Ipv4Net};
use slirp_compat::guestfwd::{GuestFwd, GuestFwdTarget};
use slirp_compat::hostfwd::HostFwd;
use slirp_compat::options::SlirpOptions;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: warren [OPTIONS]
       warren run [OPTIONS] -- CMD [ARGS...]

Unprivileged virtual networking for QEMU guests: a virtual switch with a built-in gateway
(DHCP, DNS proxy, NAT of guest TCP/UDP/ICMP to host sockets). Defaults follow QEMU's -netdev user.

Front ends (repeatable; any number of guests on one LAN):
  --socket PATH           unix stream socket for QEMU -netdev stream,addr.type=unix
  --listen HOST:PORT      TCP socket for -netdev stream,addr.type=inet and -netdev socket,connect=
  --dgram PATH            unix datagram socket for -netdev dgram (remote.path=PATH; one port per guest)
  --dgram-idle SECS       a dgram guest silent this long loses its port (default 300)
  --vde DIR               VDE2 switch directory for -netdev vde,sock=DIR and vde_plug (frames <= 1518)
  --vde-mode MODE         permissions of the VDE sockets, octal (default 0600; directory gets +x, setgid)
  --vde-group GROUP       group owner of the VDE directory and sockets
  --isolate               guests reach only the gateway, not each other
Namespaces (rootless containers; as slirp4netns and pasta):
  --netns PID|PATH        serve a tap inside that network namespace (stops when PID exits)
  --userns PATH           user namespace to enter first (default: the one owning the netns)
  --tap NAME              the tap's name (default tap0)
  --configure             set 10.0.2.100/24 (.100 of --net), default route via the gateway, MTU, up
  --ready-fd FD, --exit-fd FD  write 1 to FD when ready; stop when FD closes (slirp4netns -r/-e)
  run [OPTIONS] -- CMD    run CMD in a new user+network namespace served by warren, with a
                          resolv.conf naming the DNS address; exits with CMD's status
Address plan:
  --net CIDR              virtual network (default 10.0.2.0/24)
  --gateway IP            gateway address, = host loopback (default 10.0.2.2)
  --dns-addr IP           DNS forwarder address (default 10.0.2.3)
  --dhcp-start IP         first DHCP lease (default 10.0.2.15)
  --mtu N                 link MTU, 576..65520 (default 1500)
  --no-host-loopback      the gateway address does not reach the host's 127.0.0.1
DNS and DHCP:
  --dns-upstream ADDR[:PORT]  upstream DNS server (repeatable; default: /etc/resolv.conf's)
  --dns-search DOMAIN     DHCP domain search list entry (repeatable; default: resolv.conf's)
  --domain NAME           DHCP domain name
Forwarding and control:
  --hostfwd [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT
                          host port to guest (QEMU syntax; ranges A-B; guest defaults to the first lease)
  --guestfwd tcp:[GUESTADDR]:PORT-HOST:PORT | tcp:[GUESTADDR]:PORT-cmd:COMMAND
                          a virtual service in the LAN leading to a host address or a command
  --restrict              guests may not open outbound connections (forwards, guestfwds, DNS still work)
  --slirp-options STRING  a QEMU -netdev user option string (net=,host=,dns=,dhcpstart=,hostfwd=,...)
  --api PATH              control socket (slirp4netns JSON API; see warren ctl --help)
Sandbox (on by default: no_new_privs, Landlock, seccomp; see README, Security):
  --no-sandbox            run unconfined (debugging)
  --require-sandbox       refuse to start if a sandbox layer fails (no Landlock at all: a warning)
Limits and diagnostics:
  --max-flows N           NAT flows per guest (default 4096; never more than half the fd budget)
  --max-cmd N             running guestfwd cmd: children per guest (default 16)
  --bcast-rate N          broadcast/multicast/unknown-unicast frames per second each port may
                          flood (default 1000; 0: unlimited); excess is dropped (drop_storm)
  --bcast-burst N         storm-control burst (default 200)
  --max-macs N            MACs the switch learns in all, and addresses it binds without a
                          DHCP lease (default 4096)
  --max-macs-per-port N   MACs one port may use (default 16)
  --pcap FILE             record every frame to and from guests (tcpdump/tshark format)
  -v, --verbose           more logging (twice for debug);  -q, --quiet  warnings only
  -h, --help              this text;  -V, --version
";

#[derive(Debug)]
pub struct Options {
    pub config: Config,
    pub listen: Vec<Listen>,
    pub dgram: Vec<PathBuf>,
    pub dgram_idle: std::time::Duration,
    pub vde: Vec<PathBuf>,
    pub vde_mode: Option<u32>,
    pub vde_group: Option<u32>,
    pub isolate: bool,
    pub pcap: Option<PathBuf>,
    pub verbosity: i8,
    pub dns_search_given: bool,
    pub help: bool,
    pub version: bool,
    /// Host→guest forwards (`--hostfwd`, and those of `--slirp-options`).
    pub hostfwd: Vec<HostFwd>,
    /// The control socket (`--api`).
    pub api: Option<PathBuf>,
    /// `--netns`, `--tap`, … and `warren run`'s command (`netns.rs`).
    pub netns: crate::netns::NetnsOptions,
    /// `--no-sandbox` / `--require-sandbox` (`sandbox.rs`).
    pub sandbox: crate::sandbox::Mode,
    /// Hidden `--sandbox-selftest FILE` (tests only): report what the sandbox lets through.
    pub sandbox_selftest: Option<PathBuf>,
    /// Storm control and table bounds (`--bcast-rate`, `--max-macs`, …).
    pub lan: crate::server::LanOptions,
}

/// Turns a parsed `guestfwd` into the gateway's form (host names resolved now).
fn netstack_guestfwd(g: &GuestFwd, cfg: &Config) -> Result<netstack::config::GuestFwd, String> {
    use std::net::ToSocketAddrs;
    let addr = g
        .resolved_addr(cfg)
        .map_err(|e| format!("--guestfwd {g}: {e}"))?;
    let target = match &g.target {
        GuestFwdTarget::Tcp { host, port } => {
            let a = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("--guestfwd {g}: cannot resolve {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("--guestfwd {g}: {host} has no address"))?;
            netstack::config::GuestFwdTarget::Connect(a)
        }
        GuestFwdTarget::Cmd(c) => netstack::config::GuestFwdTarget::Command(c.clone()),
        GuestFwdTarget::Unix(p) => {
            return Err(format!("--guestfwd {g}: unix socket targets ({}) are not supported yet; use cmd:socat - UNIX-CONNECT:PATH", p.display()))
        }
    };
    Ok(netstack::config::GuestFwd {
        addr,
        port: g.guest_port,
        target,
    })
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

fn ipv4(opt: &str, v: &str) -> Result<Ipv4Addr, String> {
    v.parse()
        .map_err(|_| format!("{opt} {v:?}: not an IPv4 address"))
}

pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let mut o = Options {
        config: Config::default(),
        listen: Vec::new(),
        dgram: Vec::new(),
        dgram_idle: crate::dgram::IDLE,
        vde: Vec::new(),
        vde_mode: None,
        vde_group: None,
        isolate: false,
        pcap: None,
        verbosity: 0,
        dns_search_given: false,
        help: false,
        version: false,
        hostfwd: Vec::new(),
        api: None,
        netns: Default::default(),
        sandbox: Default::default(),
        sandbox_selftest: None,
        lan: Default::default(),
    };
    let (mut no_sandbox, mut require_sandbox) = (false, false);
    let mut guestfwd: Vec<GuestFwd> = Vec::new();
    let mut slirp: Option<SlirpOptions> = None;
    let mut net_given = None;
    let (mut gw, mut dns, mut start) = (None, None, None);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let value = |it: &mut I::IntoIter| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => o.help = true,
            "-V" | "--version" => o.version = true,
            "-v" | "--verbose" => o.verbosity += 1,
            "-vv" => o.verbosity += 2,
            "-q" | "--quiet" => o.verbosity = -1,
            "--socket" => o.listen.push(Listen::Unix(PathBuf::from(value(&mut it)?))),
            "--listen" => {
                let v = value(&mut it)?;
                let a: SocketAddr = v.parse().map_err(|_| {
                    format!("--listen {v:?}: expected HOST:PORT (e.g. 127.0.0.1:5555)")
                })?;
                o.listen.push(Listen::Tcp(a));
            }
            "--dgram" => o.dgram.push(PathBuf::from(value(&mut it)?)),
            "--dgram-idle" => {
                let v = value(&mut it)?;
                o.dgram_idle = v
                    .parse()
                    .ok()
                    .filter(|&s: &u64| s > 0)
                    .map(std::time::Duration::from_secs)
                    .ok_or_else(|| format!("--dgram-idle {v:?}: expected seconds > 0"))?;
            }
            "--vde" => o.vde.push(PathBuf::from(value(&mut it)?)),
            "--vde-mode" => {
                let v = value(&mut it)?;
                o.vde_mode = Some(
                    u32::from_str_radix(&v, 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| format!("--vde-mode {v:?}: expected octal 000..777"))?,
                );
            }
            "--vde-group" => o.vde_group = Some(crate::vde::group_id(&value(&mut it)?)?),
            "--isolate" => o.isolate = true,
            "--no-sandbox" => no_sandbox = true,
            "--require-sandbox" => require_sandbox = true,
            "--sandbox-selftest" => o.sandbox_selftest = Some(PathBuf::from(value(&mut it)?)),
            "--net" => {
                net_given =
                    Some(Ipv4Net::parse(&value(&mut it)?).map_err(|e| format!("--net: {e}"))?)
            }
            "--gateway" | "--host" => gw = Some(ipv4("--gateway", &value(&mut it)?)?),
            "--dns-addr" => dns = Some(ipv4("--dns-addr", &value(&mut it)?)?),
            "--dhcp-start" => start = Some(ipv4("--dhcp-start", &value(&mut it)?)?),
            "--mtu" => {
                let v = value(&mut it)?;
                o.config.mtu = v
                    .parse()
                    .map_err(|_| format!("--mtu {v:?}: not a number"))?;
            }
            "--no-host-loopback" => o.config.host_loopback = false,
            "--dns-upstream" => o
                .config
                .dns_upstreams
                .push(parse_dns_upstream(&value(&mut it)?)?),
            "--dns-search" => {
                o.dns_search_given = true;
                o.config.dns_search.push(value(&mut it)?);
            }
            "--domain" => o.config.domain_name = Some(value(&mut it)?),
            "--max-flows" => {
                let v = value(&mut it)?;
                o.config.max_flows_per_guest = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| format!("--max-flows {v:?}: expected a positive number"))?;
            }
            "--max-cmd" => {
                let v = value(&mut it)?;
                o.config.max_cmd_per_guest = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| format!("--max-cmd {v:?}: expected a positive number"))?;
            }
            "--bcast-rate" | "--bcast-burst" | "--max-macs" | "--max-macs-per-port" => {
                let v = value(&mut it)?;
                let n: u32 = v
                    .parse()
                    .map_err(|_| format!("{name} {v:?}: expected a number"))?;
                let positive = || {
                    if n == 0 {
                        Err(format!("{name} {v:?}: expected a number > 0"))
                    } else {
                        Ok(n)
                    }
                };
                match name.as_str() {
                    "--bcast-rate" => o.lan.storm.rate = n,
                    "--bcast-burst" => o.lan.storm.burst = positive()?,
                    "--max-macs" => {
                        // The source guard's table of addresses without a lease has the same bound.
                        o.lan.max_macs = positive()? as usize;
                        o.lan.max_bindings = o.lan.max_macs;
                    }
                    _ => o.lan.max_macs_per_port = positive()? as usize,
                }
            }
            "--pcap" => o.pcap = Some(PathBuf::from(value(&mut it)?)),
            "--hostfwd" => o
                .hostfwd
                .push(HostFwd::parse(&value(&mut it)?).map_err(|e| format!("--hostfwd: {e}"))?),
            "--guestfwd" => guestfwd
                .push(GuestFwd::parse(&value(&mut it)?).map_err(|e| format!("--guestfwd: {e}"))?),
            "--restrict" => o.config.restrict = true,
            "--api" => o.api = Some(PathBuf::from(value(&mut it)?)),
            "--netns" => o.netns.target = Some(value(&mut it)?),
            "--userns" => o.netns.userns = Some(PathBuf::from(value(&mut it)?)),
            "--tap" => o.netns.tap = Some(value(&mut it)?),
            "--configure" => o.netns.configure = true,
            "--ready-fd" | "--exit-fd" => {
                let v = value(&mut it)?;
                let fd =
                    v.parse().ok().filter(|&f: &i32| f >= 0).ok_or_else(|| {
                        format!("{name} {v:?}: expected a file descriptor number")
                    })?;
                if name == "--ready-fd" {
                    o.netns.ready_fd = Some(fd)
                } else {
                    o.netns.exit_fd = Some(fd)
                }
            }
            "--" => o.netns.command = Some(it.by_ref().collect()),
            "--slirp-options" => {
                if slirp.is_some() {
                    return Err("--slirp-options given twice".into());
                }
                slirp = Some(
                    SlirpOptions::parse(&value(&mut it)?)
                        .map_err(|e| format!("--slirp-options: {e}"))?,
                );
            }
            other => return Err(format!("unknown option {other:?} (see warren --help)")),
        }
    }
    o.sandbox = match (no_sandbox, require_sandbox) {
        (true, true) => {
            return Err("--no-sandbox and --require-sandbox contradict each other".into())
        }
        (true, false) => crate::sandbox::Mode::Off,
        (false, true) => crate::sandbox::Mode::Required,
        (false, false) => crate::sandbox::Mode::On,
    };
    // Addresses default to the same host numbers as slirp's within whatever network was chosen.
    let net = net_given.unwrap_or(o.config.net);
    let host = |n: u32| Ipv4Addr::from(u32::from(net.network()) | n);
    o.config.net = net;
    o.config.gateway = gw.unwrap_or(host(2));
    o.config.dns = dns.unwrap_or(host(3));
    o.config.dhcp_start = start.unwrap_or(host(15));
    // A -netdev user option string: same meaning and defaults as QEMU's.
    if let Some(so) = slirp {
        so.apply(&mut o.config)
            .map_err(|e| format!("--slirp-options: {e}"))?;
        if so.restrict == Some(true) {
            o.config.restrict = true;
        }
        if !so.dns_search.is_empty() {
            o.dns_search_given = true;
        }
        o.hostfwd.extend(so.hostfwd.iter().cloned());
        guestfwd.extend(so.guestfwd.iter().cloned());
    }
    for g in &guestfwd {
        o.config.guestfwds.push(netstack_guestfwd(g, &o.config)?);
    }
    o.config.validate()?;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, String> {
        parse(args.iter().map(|s| s.to_string()))
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
        assert!(p(&["--mtu"]).unwrap_err().contains("needs a value"));
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
        assert_eq!(o.lan, crate::server::LanOptions::default());
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
