//! End-to-end IPv6 host forwards: a real guest (QEMU TCG, busybox) takes an IPv4 lease by DHCP
//! and an IPv6 address by SLAAC (`fec0::/64`), runs an HTTP server, a TCP echo, a TCP service that
//! answers with the guest's `netstat -tn` (so the test sees which peer address the guest saw) and
//! a UDP echo on `[::]`. The host reaches them through `--hostfwd` rules:
//! - `[::1]` to the guest's IPv6 address: an HTTP download checked by SHA-256, and the guest sees
//!   the loopback client as the router `fec0::2`;
//! - `[::1]` with no guest address: the forward follows the listener's family to the guest's
//!   IPv6 address (learnt from its traffic and duplicate address detection);
//! - `127.0.0.1` to the guest's IPv6 address and `[::1]` to its IPv4 address (across families):
//!   echo checks, and the client shows as the gateway of the guest's family;
//! - UDP from `[::1]` to the guest's IPv6 address: echoed, and the guest logs `[fec0::2]`;
//! - `warren ctl leases` lists the guest's IPv6 address next to its IPv4 lease.
//!
//! Everything reached is started by the test on the host's loopback or inside the guest. Always
//! warren (the forwards and the control socket are warren's).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use warren_tests::guest::{Image, READY_MARKER};
use warren_tests::hostcheck::{
    connect, ctl, echo_check, peer_check, udp_check, udp_echo_binary, Check,
};
use warren_tests::qemu::{Guest, NetAttach, DEFAULT_MAC};
use warren_tests::servers::closed_port;
use warren_tests::sha256_hex;
use warren_tests::warren::{Warren, WarrenConfig};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const READY_TIMEOUT: Duration = Duration::from_secs(240);
const GUEST_READY: &str = "@@RESULT guest_ready=1";

const G_HTTP: u16 = 8001;
const G_ECHO: u16 = 8002;
const G_PEER: u16 = 8003;
const G_UDP: u16 = 9000;

/// The guest's SLAAC address: `fec0::/64` and the EUI-64 of [`DEFAULT_MAC`].
fn guest6() -> Ipv6Addr {
    let m: Vec<u8> = DEFAULT_MAC
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("mac"))
        .collect();
    Ipv6Addr::from([
        0xfe,
        0xc0,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

struct Run {
    results: BTreeMap<String, String>,
    context: String,
    checks: BTreeMap<&'static str, Check>,
}

impl Run {
    fn get(&self, k: &str) -> &str {
        match self.results.get(k) {
            Some(v) => v,
            None => panic!("guest reported no {k:?}\n{}", self.context),
        }
    }
    fn check(&self, name: &str) -> &str {
        match self.checks.get(name) {
            Some(Ok(d)) => {
                eprintln!("{name}: {d}");
                d
            }
            Some(Err(e)) => panic!("host-side check {name} failed: {e}\n{}", self.context),
            None => panic!("host-side check {name} did not run\n{}", self.context),
        }
    }
}

fn script() -> String {
    let slaac = warren_tests::guest::slaac_address("fec0:");
    let dhcp = warren_tests::guest::dhcp_lease(60, 5, 2);
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
{dhcp}{slaac}
ip -6 addr show dev eth0
mkdir -p /www
dd if=/dev/urandom of=/www/big.bin bs=1M count=3 2>/dev/null
r big_sha "$(sha256sum /www/big.bin | cut -d' ' -f1)"
httpd -p {G_HTTP} -h /www
nc -ll -p {G_ECHO} -e cat &
printf '#!/bin/sh\nnetstat -tnW 2>/dev/null || netstat -tn\n' > /bin/peer.sh
chmod +x /bin/peer.sh
nc -ll -p {G_PEER} -e /bin/peer.sh &
udp-echo {G_UDP} :: &
# Some traffic from the SLAAC address (the gateway also learnt it from duplicate address detection).
timeout 20 ping6 -c 1 -W 3 fec0::2 >/dev/null 2>&1
r ping6_exit $?
sleep 1
netstat -ltnu
r guest_ready 1
sleep 300
"#
    )
}

/// Host ports of the forwards.
struct Ports {
    http6: u16,
    peer6: u16,
    peer_auto: u16,
    echo4to6: u16,
    peer4to6: u16,
    echo6to4: u16,
    peer6to4: u16,
    udp6: u16,
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)
}
fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// HTTP/1.0 GET of `path` through `addr`: the body's SHA-256.
fn http_sha(addr: SocketAddr, path: &str) -> Check {
    let mut c = connect(addr)?;
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: warren\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    c.read_to_end(&mut all)
        .map_err(|e| format!("read after {} bytes: {e}", all.len()))?;
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header in {} bytes", all.len()))?;
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    if !head.contains(" 200 ") {
        return Err(format!("HTTP answer: {head}"));
    }
    Ok(sha256_hex(&all[end + 4..]))
}

fn host_checks(p: &Ports, api: &Path, guest: &Guest, checks: &mut BTreeMap<&'static str, Check>) {
    checks.insert("http6", http_sha(v6(p.http6), "/big.bin"));
    checks.insert("peer6", peer_check(v6(p.peer6), G_PEER, "fec0::2"));
    checks.insert("peer_auto", peer_check(v6(p.peer_auto), G_PEER, "fec0::2"));
    checks.insert(
        "echo4to6",
        echo_check(
            v4(p.echo4to6),
            &warren_tests::servers::pseudo_random(256 * 1024, 46),
        ),
    );
    checks.insert("peer4to6", peer_check(v4(p.peer4to6), G_PEER, "fec0::2"));
    checks.insert(
        "echo6to4",
        echo_check(
            v6(p.echo6to4),
            &warren_tests::servers::pseudo_random(256 * 1024, 64),
        ),
    );
    checks.insert("peer6to4", peer_check(v6(p.peer6to4), G_PEER, "10.0.2.2"));
    let udp = udp_check(v6(p.udp6), v6(0), 0).and_then(|(details, port)| {
        let seen = format!("@@UDPECHO from [fec0::2]:{port} ");
        guest
            .wait_for(&seen, Duration::from_secs(10))
            .map(|_| format!("{details}; guest saw {seen:?}"))
            .map_err(|e| format!("{details}, but the guest did not log {seen:?}: {e}"))
    });
    checks.insert("udp6", udp);
    checks.insert("leases", ctl(api, &["leases"]));
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let g6 = guest6();
        let p = Ports {
            http6: closed_port(),
            peer6: closed_port(),
            peer_auto: closed_port(),
            echo4to6: closed_port(),
            peer4to6: closed_port(),
            echo6to4: closed_port(),
            peer6to4: closed_port(),
            udp6: closed_port(),
        };
        let image = Image::build_with_files(
            "ipv6-forward",
            &script(),
            &[("/bin/udp-echo", 0o755, &udp_echo_binary())],
        );
        let args: Vec<String> = vec![
            format!("--hostfwd=tcp:[::1]:{}-[{g6}]:{G_HTTP}", p.http6),
            format!("--hostfwd=tcp:[::1]:{}-[{g6}]:{G_PEER}", p.peer6),
            format!("--hostfwd=tcp:[::1]:{}-:{G_PEER}", p.peer_auto),
            format!("--hostfwd=tcp:127.0.0.1:{}-[{g6}]:{G_ECHO}", p.echo4to6),
            format!("--hostfwd=tcp:127.0.0.1:{}-[{g6}]:{G_PEER}", p.peer4to6),
            format!("--hostfwd=tcp:[::1]:{}-10.0.2.15:{G_ECHO}", p.echo6to4),
            format!("--hostfwd=tcp:[::1]:{}-10.0.2.15:{G_PEER}", p.peer6to4),
            format!("--hostfwd=udp:[::1]:{}-[{g6}]:{G_UDP}", p.udp6),
            "--api={dir}/api.sock".to_owned(),
            format!("--dns-upstream=127.0.0.1:{}", closed_port()),
        ];
        let mut warren = Warren::spawn_with(WarrenConfig {
            args,
            ..WarrenConfig::default()
        });
        let api = warren.dir().join("api.sock");
        warren.wait_for_path(&api, Duration::from_secs(10));
        let guest = Guest::spawn_with(&image, &NetAttach::netdev(warren.netdev()), DEFAULT_MAC);
        let mut checks = BTreeMap::new();
        let error = guest
            .wait_for(READY_MARKER, BOOT_TIMEOUT)
            .and_then(|_| guest.wait_for(GUEST_READY, READY_TIMEOUT))
            .map(|t| {
                eprintln!("ipv6-forward: guest ready after {t:?}");
                host_checks(&p, &api, &guest, &mut checks);
            })
            .err();
        let console = guest.output();
        drop(guest);
        let context = format!(
            "(run error: {})\nwarren{} stderr:\n{}\nconsole:\n{console}",
            error.as_deref().unwrap_or("none"),
            if warren.is_running() { "" } else { " (EXITED)" },
            warren.stderr()
        );
        Run {
            results: warren_tests::qemu::parse_results(&console),
            context,
            checks,
        }
    })
}

#[test]
fn guest_has_its_ipv4_lease_and_its_slaac_address() {
    let run = run();
    assert_eq!(run.get("ip"), "10.0.2.15", "{}", run.context);
    assert_eq!(run.get("slaac"), guest6().to_string(), "{}", run.context);
}

#[test]
fn tcp_through_a_v6_forward_carries_the_data_and_the_guest_sees_loopback_as_the_router() {
    let run = run();
    assert_eq!(run.check("http6"), run.get("big_sha"), "{}", run.context);
    run.check("peer6");
}

#[test]
fn a_v6_forward_without_a_guest_address_leads_to_the_guests_v6_address() {
    run().check("peer_auto");
}

#[test]
fn forwards_cross_families_both_ways() {
    let run = run();
    run.check("echo4to6");
    run.check("peer4to6");
    run.check("echo6to4");
    run.check("peer6to4");
}

#[test]
fn udp_through_a_v6_forward_is_echoed_and_the_guest_sees_the_router() {
    run().check("udp6");
}

#[test]
fn ctl_leases_lists_the_guests_v6_address() {
    let run = run();
    let out = run.check("leases");
    let line = out
        .lines()
        .find(|l| l.contains("10.0.2.15"))
        .unwrap_or_else(|| panic!("no lease line for 10.0.2.15 in:\n{out}\n{}", run.context));
    assert!(
        line.rsplit('\t')
            .next()
            .is_some_and(|v6s| v6s.split(',').any(|a| a == guest6().to_string())),
        "the lease line should list {}: {line:?}\n{}",
        guest6(),
        run.context
    );
}
