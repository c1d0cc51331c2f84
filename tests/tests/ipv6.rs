//! End-to-end IPv6 on the LAN: a real Linux guest under QEMU TCG configures itself by SLAAC from
//! warren's router advertisements (prefix `fec0::/64`), takes the router's link-local address as
//! its default route, and pings the router `fec0::2` and the DNS address `fec0::3` (answered by
//! the gateway itself). Through the IPv6 NAT it downloads 20 MiB over HTTP from a server the test
//! runs on the host's `[::1]` (via `[fec0::2]:PORT`), uploads 8 MiB over TCP to a sink on `[::1]`
//! (both checked by SHA-256), fetches a file over TFTP (UDP) from `[::1]`, and resolves an A and
//! an AAAA name through the DNS proxy on `fec0::3`, whose upstream is the test's own DNS server
//! on `[::1]` (so the proxy forwards over IPv6 too).
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
use warren_tests::servers::{pseudo_random, DnsServer, HttpServer, TftpServer, UploadSink};

const DNS_NAME: &str = "v6.warren.example";
const DNS_ANSWER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 66);
/// A name with only an IPv6 address, and that address (as busybox prints it).
const AAAA_NAME: &str = "aaaa.warren.example";
const AAAA_ANSWER: &str = "2001:db8::6:66";
/// The download and upload sizes (as in gateway.rs over IPv4).
const BIG_LEN: usize = 20 * 1024 * 1024;
const UPLOAD_LEN: u64 = 8 * 1024 * 1024;

struct Run {
    backend: Backend,
    results: BTreeMap<String, String>,
    context: String,
    http: HttpServer,
    tftp: TftpServer,
    sink: UploadSink,
    dns: DnsServer,
}

impl Run {
    fn get(&self, k: &str) -> &str {
        match self.results.get(k) {
            Some(v) => v,
            None => panic!("guest reported no {k:?}\n{}", self.context),
        }
    }
}

fn script_head() -> String {
    let slaac = warren_tests::guest::slaac_address("fec0:");
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
r ipv6_kernel "$([ -d /proc/sys/net/ipv6 ] && echo yes || echo no)"
{slaac}
ip -6 addr show dev eth0
ip -6 route
r route6 "$(ip -6 route show default | head -n1 | sed 's/ *$//' | tr ' ' '_')"
out=$(timeout 30 ping6 -c 3 -W 3 fec0::2 2>&1); rc=$?
echo "$out"
r ping_router_exit $rc
r ping_router_replies "$(echo "$out" | grep -c 'bytes from fec0::2')"
out=$(timeout 30 ping6 -c 2 -W 3 fec0::3 2>&1); rc=$?
echo "$out"
r ping_dns_exit $rc
r ping_dns_replies "$(echo "$out" | grep -c 'bytes from fec0::3')"
"#
    )
}

fn script(http: u16, upload: u16, tftp: u16) -> String {
    let head = script_head();
    format!(
        r#"{head}
ms() {{ awk '{{ printf "%d", $1 * 1000 }}' /proc/uptime; }}
t0=$(ms)
timeout 240 wget -q -O /tmp/big "http://[fec0::2]:{http}/big.bin"
r http_exit $?
r http_ms $(( $(ms) - t0 ))
r http_sha "$(sha256sum /tmp/big | cut -d' ' -f1)"
r http_bytes "$(wc -c < /tmp/big)"
rm -f /tmp/big
dd if=/dev/urandom of=/tmp/up bs=1M count=8 2>/dev/null
r upload_guest_sha "$(sha256sum /tmp/up | cut -d' ' -f1)"
t0=$(ms)
timeout 180 nc fec0::2 {upload} < /tmp/up > /tmp/up.reply
r upload_exit $?
r upload_ms $(( $(ms) - t0 ))
r upload_reply "$(cat /tmp/up.reply)"
rm -f /tmp/up
cd /tmp && timeout 60 tftp -g -r data.bin -l /tmp/tftp fec0::2 {tftp}
r tftp_exit $?
r tftp_sha "$(sha256sum /tmp/tftp | cut -d' ' -f1)"
out=$(timeout 20 nslookup {DNS_NAME} fec0::3 2>&1); rc=$?
echo "$out"
r dns_exit $rc
r dns_answer "$(echo "$out" | grep -c '{DNS_ANSWER}')"
out=$(timeout 20 nslookup -type=aaaa {AAAA_NAME} fec0::3 2>&1); rc=$?
echo "$out"
r aaaa_exit $rc
r aaaa_answer "$(echo "$out" | sed -n '/^Name:/,$ s/^Address: *//p' | head -n 1)"
"#
    )
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let backend = Backend::from_env();
        let six = std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        let http = HttpServer::start_on(
            BTreeMap::from([("/big.bin".to_owned(), pseudo_random(BIG_LEN, 66))]),
            six,
        );
        let sink = UploadSink::start_on(six);
        let tftp = TftpServer::start_on(
            BTreeMap::from([("data.bin".to_owned(), pseudo_random(70_000, 67))]),
            six,
        );
        // On [::1] only: the proxy on fec0::3 must forward over IPv6.
        let dns = DnsServer::start_with(
            six,
            0,
            BTreeMap::from([
                (DNS_NAME.to_owned(), vec![DNS_ANSWER.into()]),
                (
                    AAAA_NAME.to_owned(),
                    vec![AAAA_ANSWER.parse().expect("v6 literal")],
                ),
            ]),
        );
        let image = Image::build("ipv6", &script(http.port, sink.port, tftp.port));
        let net = Network::start(
            backend,
            &NetOptions {
                dns_upstream: Some(dns.addr()),
                ..NetOptions::default()
            },
        );
        let guest = Guest::spawn_with(&image, &net.attach, DEFAULT_MAC);
        let done = guest.wait_for(DONE_MARKER, Duration::from_secs(600));
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
            sink,
            dns,
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
fn guest_downloads_20mb_over_tcp_from_the_hosts_ipv6_loopback_through_the_router() {
    let run = run();
    assert_eq!(run.get("http_exit"), "0", "{}", run.context);
    assert_eq!(
        run.get("http_bytes"),
        BIG_LEN.to_string(),
        "{}",
        run.context
    );
    assert_eq!(
        run.get("http_sha"),
        run.http.sha256("/big.bin"),
        "{}",
        run.context
    );
    eprintln!(
        "ipv6: 20 MiB download took {} ms in the guest",
        run.get("http_ms")
    );
}

#[test]
fn guest_uploads_8mb_over_tcp_to_the_hosts_ipv6_loopback_through_the_router() {
    let run = run();
    assert_eq!(run.get("upload_exit"), "0", "{}", run.context);
    let guest_sha = run.get("upload_guest_sha");
    let uploads = run.sink.uploads();
    assert_eq!(
        uploads.len(),
        1,
        "upload sink saw {uploads:?}\n{}",
        run.context
    );
    assert_eq!(uploads[0].bytes, UPLOAD_LEN, "{}", run.context);
    assert_eq!(uploads[0].sha256, guest_sha, "{}", run.context);
    // The sink's reply made it back to the guest before the connection closed.
    assert_eq!(
        run.get("upload_reply"),
        format!("{guest_sha} {UPLOAD_LEN}"),
        "{}",
        run.context
    );
    eprintln!(
        "ipv6: 8 MiB upload took {} ms in the guest",
        run.get("upload_ms")
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

#[test]
fn guest_resolves_aaaa_through_the_dns_proxy_from_an_ipv6_upstream() {
    let run = run();
    if !run.backend.dns_upstream_configurable() {
        return;
    }
    assert_eq!(run.get("aaaa_exit"), "0", "{}", run.context);
    assert_eq!(run.get("aaaa_answer"), AAAA_ANSWER, "{}", run.context);
    // The proxy asked the test's server (which listens on [::1] only) for the AAAA record.
    let queries = run.dns.queries();
    assert!(
        queries.iter().any(|q| q.name == AAAA_NAME && q.qtype == 28),
        "upstream saw {queries:?}\n{}",
        run.context
    );
}
