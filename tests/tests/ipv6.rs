//! End-to-end IPv6 on the LAN: a real Linux guest under QEMU TCG configures itself by SLAAC from
//! warren's router advertisements (prefix `fec0::/64`), takes the router's link-local address as
//! its default route, and pings the router `fec0::2` and the DNS address `fec0::3` (answered by
//! the gateway itself). Busybox has no DHCPv6 client; DHCPv6 is covered by the core's tests.
//!
//! One guest boot runs every check; each `#[test]` asserts its own part.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use warren_tests::backend::{Backend, NetOptions, Network};
use warren_tests::guest::{Image, DONE_MARKER};
use warren_tests::qemu::{Guest, DEFAULT_MAC};

struct Run {
    results: BTreeMap<String, String>,
    context: String,
}

impl Run {
    fn get(&self, k: &str) -> &str {
        match self.results.get(k) {
            Some(v) => v,
            None => panic!("guest reported no {k:?}\n{}", self.context),
        }
    }
}

const SCRIPT: &str = r#"
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

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let backend = Backend::from_env();
        let image = Image::build("ipv6-slaac", SCRIPT);
        let net = Network::start(backend, &NetOptions::default());
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
            results: guest.results(),
            context,
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
