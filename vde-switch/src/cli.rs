//! `warren`'s command line (hand-rolled: few dependencies, `--opt VALUE` and `--opt=VALUE`).

use crate::server::Listen;
use netstack::config::{Config, Ipv4Net};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: warren [OPTIONS]

Unprivileged virtual networking for QEMU guests: a virtual switch with a built-in gateway
(DHCP, DNS proxy, NAT of guest TCP/UDP/ICMP to host sockets). Defaults follow QEMU's -netdev user.

Front ends (repeatable; any number of guests on one LAN):
  --socket PATH           unix stream socket for QEMU -netdev stream,addr.type=unix
  --listen HOST:PORT      TCP socket for -netdev stream,addr.type=inet and -netdev socket,connect=
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
Limits and diagnostics:
  --max-flows N           NAT flows per guest (default 4096)
  --pcap FILE             record every frame to and from guests (tcpdump/tshark format)
  -v, --verbose           more logging (twice for debug);  -q, --quiet  warnings only
  -h, --help              this text;  -V, --version
";

#[derive(Debug)]
pub struct Options {
    pub config: Config,
    pub listen: Vec<Listen>,
    pub pcap: Option<PathBuf>,
    pub verbosity: i8,
    pub dns_search_given: bool,
    pub help: bool,
    pub version: bool,
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
        pcap: None,
        verbosity: 0,
        dns_search_given: false,
        help: false,
        version: false,
    };
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
            "--pcap" => o.pcap = Some(PathBuf::from(value(&mut it)?)),
            other => return Err(format!("unknown option {other:?} (see warren --help)")),
        }
    }
    // Addresses default to the same host numbers as slirp's within whatever network was chosen.
    let net = net_given.unwrap_or(o.config.net);
    let host = |n: u32| Ipv4Addr::from(u32::from(net.network()) | n);
    o.config.net = net;
    o.config.gateway = gw.unwrap_or(host(2));
    o.config.dns = dns.unwrap_or(host(3));
    o.config.dhcp_start = start.unwrap_or(host(15));
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
}
