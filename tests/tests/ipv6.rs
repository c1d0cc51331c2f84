//! End-to-end IPv6 on the LAN: a real Linux guest under QEMU TCG configures itself by SLAAC from
//! warren's router advertisements (prefix `fec0::/64`), takes the router's link-local address as
//! its default route, and pings the router `fec0::2` and the DNS address `fec0::3` (answered by
//! the gateway itself). Through the IPv6 NAT it fetches a file over HTTP from a server the test
//! runs on the host's `[::1]` (via `[fec0::2]:PORT`) and one over TFTP (UDP) from `[::1]`, and it
//! resolves a name through the DNS proxy on `fec0::3` (the test's own DNS server upstream).
//! Busybox has no DHCPv6 client: DHCPv6 is covered by the core's tests and by `dhcpv6.rs` (a scripted
//! client against the real binary); ICMPv6 echo to the outside by `ipv6_icmp.rs`.
//!
//! One guest boot runs every check; each `#[test]` asserts its own part.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use warren_tests::backend::{Backend, NetOptions, Network};
use warren_tests::guest::{Image, DONE_MARKER};
use warren_tests::qemu::{Guest, DEFAULT_MAC};
use warren_tests::servers::{pseudo_random, DnsServer, HttpServer, TftpServer};

const DNS_NAME: &str = "v6.warren.example";
const DNS_ANSWER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 66);

struct Run {
    backend: Backend,
    results: BTreeMap<String, String>,
    context: String,
    http: HttpServer,
    tftp: TftpServer,
}

impl Run {
    fn get(&self, k: &str) -> &str {
        match self.results.get(k) {
            Some(v) => v,
            None => panic!("guest reported no {k:?}\n{}", self.context),
        }
    }
}

const SCRIPT_HEAD: &str = r#"
r() { echo "@@RESULT $1=$2"; }
r ipv6_kernel "$([ -d /proc/sys/net/ipv6 ] && echo yes || echo no)"
echo 1 > /proc/sys/net/ipv6/conf/eth0/accept_ra 2>/dev/null
ip link set eth0 up
a=""
for i in $(seq 1 60); do
  a=$(ip -6 addr show dev eth0 | grep 'inet6 fec0:' | grep -v tentative | sed 's/.*inet6 \([0-9a-f:]*\).*/\1/' | head -n1)
  [ -n "$a" ] && break
  sleep 0.5
done
ip -6 addr show dev eth0
ip -6 route
r slaac "$a"
r route6 "$(ip -6 route show default | head -n1 | sed 's/ *$//' | tr ' ' '_')"
out=$(timeout 30 ping6 -c 3 -W 3 fec0::2 2>&1); rc=$?
echo "$out"
r ping_router_exit $rc
r ping_router_replies "$(echo "$out" | grep -c 'bytes from fec0::2')"
out=$(timeout 30 ping6 -c 2 -W 3 fec0::3 2>&1); rc=$?
echo "$out"
r ping_dns_exit $rc
r ping_dns_replies "$(echo "$out" | grep -c 'bytes from fec0::3')"
"#;

fn script(http: u16, tftp: u16) -> String {
    format!(
        r#"{SCRIPT_HEAD}
timeout 120 wget -q -O /tmp/big "http://[fec0::2]:{http}/big.bin"
r http_exit $?
r http_sha "$(sha256sum /tmp/big | cut -d' ' -f1)"
cd /tmp && timeout 60 tftp -g -r data.bin -l /tmp/tftp fec0::2 {tftp}
r tftp_exit $?
r tftp_sha "$(sha256sum /tmp/tftp | cut -d' ' -f1)"
out=$(timeout 20 nslookup {DNS_NAME} fec0::3 2>&1); rc=$?
echo "$out"
r dns_exit $rc
r dns_answer "$(echo "$out" | grep -c '{DNS_ANSWER}')"
"#
    )
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let backend = Backend::from_env();
        let six = std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        let http = HttpServer::start_on(
            BTreeMap::from([("/big.bin".to_owned(), pseudo_random(4 << 20, 66))]),
            six,
        );
        let tftp = TftpServer::start_on(
            BTreeMap::from([("data.bin".to_owned(), pseudo_random(70_000, 67))]),
            six,
        );
        let dns = DnsServer::start(BTreeMap::from([(DNS_NAME.to_owned(), DNS_ANSWER)]));
        let image = Image::build("ipv6", &script(http.port, tftp.port));
        let net = Network::start(
            backend,
            &NetOptions {
                dns_upstream: Some(dns.addr()),
                ..NetOptions::default()
            },
        );
        let guest = Guest::spawn_with(&image, &net.attach, DEFAULT_MAC);
        let done = guest.wait_for(DONE_MARKER, Duration::from_secs(240));
        let context = format!(
            "({backend:?} backend)\n{}\nconsole:\n{}",
            net.diagnostics(),
            guest.output()
        );
        if let Err(e) = done {
            panic!("ipv6 guest did not finish: {e}\n{context}");
        }
        eprintln!("ipv6: done after {:?}", guest.elapsed());
        Run {
            backend,
            results: guest.results(),
            context,
            http,
            tftp,
        }
    })
}

#[test]
fn guest_gets_a_slaac_address_and_a_default_route_from_the_router_advert() {
    let run = run();
    assert_eq!(run.get("ipv6_kernel"), "yes", "{}", run.context);
    let a = run.get("slaac");
    // The default MAC's EUI-64 interface id inside fec0::/64.
    let addr: std::net::Ipv6Addr = a
        .parse()
        .unwrap_or_else(|_| panic!("no SLAAC address ({a:?})\n{}", run.context));
    assert_eq!(addr.segments()[..4], [0xfec0, 0, 0, 0], "{}", run.context);
    assert_eq!(addr.segments()[5] & 0x00ff, 0x00ff, "EUI-64 id: {addr}");
    let route = run.get("route6");
    assert!(
        route.starts_with("default_via_fe80::") && route.contains("dev_eth0"),
        "default route {route:?}\n{}",
        run.context
    );
}

#[test]
fn guest_pings_the_router_and_the_dns_address() {
    let run = run();
    assert_eq!(run.get("ping_router_exit"), "0", "{}", run.context);
    assert_eq!(run.get("ping_router_replies"), "3", "{}", run.context);
    assert_eq!(run.get("ping_dns_exit"), "0", "{}", run.context);
    assert_eq!(run.get("ping_dns_replies"), "2", "{}", run.context);
}

#[test]
fn guest_fetches_over_tcp_from_the_hosts_ipv6_loopback_through_the_router() {
    let run = run();
    assert_eq!(run.get("http_exit"), "0", "{}", run.context);
    assert_eq!(
        run.get("http_sha"),
        run.http.sha256("/big.bin"),
        "{}",
        run.context
    );
}

#[test]
fn guest_fetches_over_udp_from_the_hosts_ipv6_loopback_through_the_router() {
    let run = run();
    assert_eq!(run.get("tftp_exit"), "0", "{}", run.context);
    assert_eq!(
        run.get("tftp_sha"),
        run.tftp.sha256("data.bin"),
        "{}",
        run.context
    );
}

#[test]
fn guest_resolves_through_the_dns_proxy_on_its_ipv6_address() {
    let run = run();
    if !run.backend.dns_upstream_configurable() {
        return;
    }
    assert_eq!(run.get("dns_exit"), "0", "{}", run.context);
    assert_ne!(run.get("dns_answer"), "0", "{}", run.context);
}
