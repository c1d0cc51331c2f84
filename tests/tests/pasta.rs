//! warren as `pasta`, driven the way podman 5.x and rootlesskit 2.x drive pasta, as an
//! unprivileged user (Debian 12's podman 4.3 and rootlesskit 1.1 predate pasta, so the test
//! replays their sequences, read from their source):
//!
//! - podman 5.x, containers/common `libnetwork/pasta/pasta_linux.go` `createPastaArgs` /
//!   `Setup` (the go.podman.io/common version with `dnsForwardIpv4 = "169.254.1.1"` and
//!   `mapGuestAddrIpv4 = "169.254.1.2"`; earlier 5.x used 169.254.0.1 and no `--map-guest-addr`):
//!   inside podman's rootless user+mount namespace, the container's netns is a file bind-mounted
//!   under the runtime directory; podman runs `pasta --config-net [pasta_options from
//!   containers.conf, --map-gw removed] -t [HOSTIP/]H-H:C-C --dns-forward 169.254.1.1 -u none -T none
//!   -U none [--no-map-gw] --quiet --map-guest-addr 169.254.1.2 --netns PATH`, waits for it to exit
//!   0 (pasta daemonizes) and writes `nameserver 169.254.1.1` into the container; pasta quits when
//!   PATH is removed. The only `pasta_options` here are `--map-gw` (podman removes it and then
//!   does not pass `--no-map-gw`) and `--dns-host` (below): podman's own DNS address is used.
//! - rootlesskit 2.x, `pkg/network/pasta/pasta.go` `ConfigureNetwork` (commit 0b4ed7b5ca2e):
//!   `pasta --stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24
//!   --gateway=10.0.2.2 --dns-forward=10.0.2.3 --ipv4-only --tcp-ports=none --udp-ports=none PID`
//!   for the child's PID (`--port-driver=implicit` would pass `auto`, which warren refuses).
//!
//! Both add `--dns-host 127.0.0.77` so DNS reaches the test's own server (on 127.0.0.77:53), not
//! the machine's resolver. Checks from inside: the tap's address and route, a host loopback
//! service through the gateway, a name through the DNS address; from outside: a `-t` forward
//! into the namespace; and that warren exits when the namespace goes (path removed / PID exited).

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use warren_tests::is_root;
use warren_tests::servers::{closed_port, DnsServer, HttpServer};
use warren_tests::warren::warren_binary;

const USER: &str = "warren-pa";
const DNS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);
const DNS_NAME: &str = "pasta.warren.example";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

fn ensure_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        warren_tests::ensure_user_with_subids(USER, "400000-465535");
    });
}

/// One DNS server on 127.0.0.77:53 for the whole test binary (the port cannot be chosen in pasta).
fn dns() -> &'static DnsServer {
    static DNS: OnceLock<DnsServer> = OnceLock::new();
    DNS.get_or_init(|| {
        DnsServer::start_at(
            DNS_IP,
            53,
            BTreeMap::from([(DNS_NAME.to_string(), DNS_ANSWER)]),
        )
    })
}

/// A directory the test user can use, holding warren under the name `pasta`.
fn work_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("warren-pasta-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod dir");
    let bin = dir.path().join("pasta");
    warren_tests::link_or_copy(&warren_binary(), &bin).expect("link warren as pasta");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod binary");
    fs::create_dir(dir.path().join("www")).expect("www");
    fs::write(
        dir.path().join("www/in-ns.txt"),
        "served from inside the namespace\n",
    )
    .expect("www file");
    fs::set_permissions(dir.path().join("www"), fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Runs `script` as the test user with a time limit; returns (success, stdout + stderr).
fn as_user(script: &str, limit: Duration) -> (bool, String) {
    let out = Command::new("timeout")
        .arg(limit.as_secs().to_string())
        .args(["su", USER, "-s", "/bin/sh", "-c", script])
        .output()
        .expect("run su");
    (
        out.status.success(),
        format!(
            "{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Checks made inside the namespace (entered with `$ENTER`), and the forward from outside.
fn checks(http_port: u16, fwd: u16, dns: &str) -> String {
    format!(
        r#"
$ENTER ip -4 addr show tap0 | grep -o "inet [0-9./]*"
$ENTER ip route | grep default
$ENTER ip link show tap0 | grep -o "mtu [0-9]*"
echo "fetch=$($ENTER wget -q -T 20 -O - http://10.0.2.2:{http_port}/hello.txt)"
echo "dns=$($ENTER busybox nslookup {DNS_NAME} {dns} 2>&1 | grep -o 192.0.2.77 | head -1)"
$ENTER busybox httpd -f -p 8080 -h "$D/www" </dev/null >/dev/null 2>&1 &
HTTPD=$!
sleep 1
echo "fwd=$(wget -q -T 20 -O - http://127.0.0.1:{fwd}/in-ns.txt)"
kill $HTTPD; wait $HTTPD 2>/dev/null
"#
    )
}

fn expect_common(out: &str, ok: bool, mtu: &str) {
    assert!(ok, "the sequence failed:\n{out}");
    assert!(
        out.contains("pasta_exit=0"),
        "pasta did not return 0:\n{out}"
    );
    assert!(out.contains("inet 10.0.2.100/24"), "tap0 address:\n{out}");
    assert!(
        out.contains("default via 10.0.2.2"),
        "default route:\n{out}"
    );
    assert!(out.contains(&format!("mtu {mtu}")), "MTU:\n{out}");
    assert!(
        out.contains("fetch=hello through warren as pasta"),
        "host loopback service through the gateway:\n{out}"
    );
    assert!(
        out.contains("dns=192.0.2.77"),
        "name through the DNS address:\n{out}"
    );
    assert!(
        dns().queries().iter().any(|q| q.name == DNS_NAME),
        "the test's DNS server saw no query:\n{out}"
    );
    assert!(
        out.contains("fwd=served from inside the namespace"),
        "-t forward into the namespace:\n{out}"
    );
    assert!(
        out.contains("gone=1"),
        "warren did not exit with the namespace:\n{out}"
    );
}

#[test]
fn podman5_sequence() {
    assert!(is_root(), "creates a user: run as root (CI does)");
    ensure_user();
    dns();
    let dir = work_dir();
    let http = HttpServer::start(BTreeMap::from([(
        "/hello.txt".to_owned(),
        b"hello through warren as pasta".to_vec(),
    )]));
    let fwd = closed_port();
    let d = dir.path().display();
    // podman's rootless user+mount namespace, a bind-mounted netns file, then createPastaArgs's argv
    // (containers.conf pasta_options = ["--map-gw", "--dns-host", "127.0.0.77"]: --map-gw is
    // removed by podman and suppresses --no-map-gw; podman adds its default --dns-forward).
    let script = format!(
        r#"D={d}; export D; exec unshare -Urm sh -c '
set -u
mkdir -p "$D/netns" && touch "$D/netns/netns-1" && unshare --net="$D/netns/netns-1" true || {{ echo "netns setup failed"; exit 1; }}
"$D/pasta" --config-net --dns-host {DNS_IP} -t 127.0.0.1/{fwd}-{fwd}:8080-8080 --dns-forward 169.254.1.1 -u none -T none -U none --quiet --map-guest-addr 169.254.1.2 --netns "$D/netns/netns-1"
echo "pasta_exit=$?"
ENTER="nsenter --net=$D/netns/netns-1"
{checks}
# podman removes the namespace when the container stops; pasta quits then.
umount "$D/netns/netns-1"; rm -f "$D/netns/netns-1"
for i in $(seq 1 50); do pgrep -f "$D/netns/netns-1" >/dev/null || {{ echo gone=1; break; }}; sleep 0.2; done
'"#,
        checks = checks(http.port, fwd, "169.254.1.1")
    );
    let (ok, out) = as_user(&script, Duration::from_secs(120));
    expect_common(&out, ok, "1500");
}

#[test]
fn rootlesskit2_sequence() {
    assert!(is_root(), "creates a user: run as root (CI does)");
    ensure_user();
    dns();
    let dir = work_dir();
    let http = HttpServer::start(BTreeMap::from([(
        "/hello.txt".to_owned(),
        b"hello through warren as pasta".to_vec(),
    )]));
    let fwd = closed_port();
    let d = dir.path().display();
    // rootlesskit's child: a new user+network namespace; the parent runs pasta with its PID.
    // The -t forward is what a user adds to rootlesskit's pasta (rootlesskit itself passes none).
    let script = format!(
        r#"D={d}; export D
unshare -Urn sh -c 'exec sleep 300' &
CHILD=$!
sleep 0.5
"$D/pasta" --stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --ipv4-only --tcp-ports=127.0.0.1/{fwd}:8080 --udp-ports=none --dns-host={DNS_IP} $CHILD
echo "pasta_exit=$?"
ENTER="nsenter -t $CHILD -U -n --preserve-credentials"
{checks}
# rootlesskit's child exits: pasta (watching the PID) exits too.
kill $CHILD
for i in $(seq 1 50); do pgrep -f "dns-host={DNS_IP} $CHILD" >/dev/null || {{ echo gone=1; break; }}; sleep 0.2; done
"#,
        checks = checks(http.port, fwd, "10.0.2.3")
    );
    let (ok, out) = as_user(&script, Duration::from_secs(120));
    expect_common(&out, ok, "65520");
}

/// pasta's `-T` (namespace to host) as podman passes user options (`--no-map-gw` stays): the
/// namespace reaches the listed host loopback port at the gateway address, and nothing else of
/// the host's loopback.
#[test]
fn tcp_ns_reaches_listed_host_ports_only() {
    assert!(is_root(), "creates a user: run as root (CI does)");
    ensure_user();
    let dir = work_dir();
    let http = HttpServer::start(BTreeMap::from([(
        "/hello.txt".to_owned(),
        b"hello through pasta -T".to_vec(),
    )]));
    let ns_port = closed_port();
    let d = dir.path().display();
    let script = format!(
        r#"D={d}; export D; exec unshare -Urm sh -c '
set -u
mkdir -p "$D/netns" && touch "$D/netns/netns-1" && unshare --net="$D/netns/netns-1" true || {{ echo "netns setup failed"; exit 1; }}
"$D/pasta" --config-net -T {ns_port}:{http_port} --dns-forward 169.254.1.1 -t none -u none -U none --no-map-gw --quiet --netns "$D/netns/netns-1"
echo "pasta_exit=$?"
ENTER="nsenter --net=$D/netns/netns-1"
echo "listed=$($ENTER wget -q -T 20 -O - http://10.0.2.2:{ns_port}/hello.txt)"
echo "unlisted=$($ENTER wget -q -T 10 -O - http://10.0.2.2:{http_port}/hello.txt 2>/dev/null || echo refused)"
umount "$D/netns/netns-1"; rm -f "$D/netns/netns-1"
for i in $(seq 1 50); do pgrep -f "$D/netns/netns-1" >/dev/null || {{ echo gone=1; break; }}; sleep 0.2; done
'"#,
        http_port = http.port
    );
    let (ok, out) = as_user(&script, Duration::from_secs(120));
    assert!(
        ok && out.contains("pasta_exit=0"),
        "the sequence failed:\n{out}"
    );
    assert!(
        out.contains("listed=hello through pasta -T"),
        "-T port through the gateway:\n{out}"
    );
    assert!(
        out.contains("unlisted=refused"),
        "--no-map-gw must keep other host loopback ports closed:\n{out}"
    );
    assert!(out.contains("gone=1"), "warren did not exit:\n{out}");
}

/// pasta's `-t auto`/`-u auto`, as rootlesskit 2.x's `--port-driver=implicit` passes them
/// (`pkg/network/pasta/pasta.go`: `--tcp-ports=auto --udp-ports=auto` instead of `none`): a port
/// bound in the namespace is forwarded from the host (TCP, and UDP for the same number, as pasta
/// does) within a few scans, and the forward goes away when the socket does.
#[test]
fn auto_forwards_follow_ports_bound_in_the_namespace() {
    assert!(is_root(), "creates a user: run as root (CI does)");
    ensure_user();
    let dir = work_dir();
    let port = closed_port();
    let d = dir.path().display();
    let script = format!(
        r#"D={d}; export D
mkdir -m 700 "$D/run"; export XDG_RUNTIME_DIR="$D/run"
unshare -Urn sh -c 'exec sleep 300' &
CHILD=$!
sleep 0.5
"$D/pasta" --stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --ipv4-only --tcp-ports=auto --udp-ports=auto $CHILD
echo "pasta_exit=$?"
ENTER="nsenter -t $CHILD -U -n --preserve-credentials"
listening() {{ ss -Hln"$1" "sport = :{port}" | grep -q . && echo yes || echo no; }}
echo "before=$(listening t)"
$ENTER busybox httpd -f -p {port} -h "$D/www" </dev/null >/dev/null 2>&1 &
HTTPD=$!
for i in $(seq 1 80); do [ "$(listening t)" = yes ] && [ "$(listening u)" = yes ] && break; sleep 0.25; done
echo "tcp=$(listening t) udp=$(listening u)"
echo "fetch=$(wget -q -T 20 -O - http://127.0.0.1:{port}/in-ns.txt)"
kill $HTTPD; wait $HTTPD 2>/dev/null
for i in $(seq 1 80); do [ "$(listening t)" = no ] && break; sleep 0.25; done
echo "after=$(listening t)"
kill $CHILD
for i in $(seq 1 50); do pgrep -f "udp-ports=auto $CHILD" >/dev/null || {{ echo gone=1; break; }}; sleep 0.2; done
"#
    );
    let (ok, out) = as_user(&script, Duration::from_secs(120));
    assert!(
        ok && out.contains("pasta_exit=0"),
        "the sequence failed:\n{out}"
    );
    assert!(
        out.contains("before=no"),
        "port forwarded before it was bound:\n{out}"
    );
    assert!(
        out.contains("tcp=yes udp=yes"),
        "no forward for the bound port:\n{out}"
    );
    assert!(
        out.contains("fetch=served from inside the namespace"),
        "the automatic forward does not reach the namespace:\n{out}"
    );
    assert!(
        out.contains("after=no"),
        "the forward stayed after the socket closed:\n{out}"
    );
    assert!(out.contains("gone=1"), "warren did not exit:\n{out}");
}

/// What warren cannot do as pasta: rootlesskit's `--port-driver=implicit` (`--tcp-ports=auto`),
/// `-T auto` without the gateway's host mapping, a DNS address no guest can route to the gateway,
/// `--outbound-if4`: clear one-line errors, exit status non-zero, before daemonizing.
#[test]
fn unsupported_client_settings_are_clear_errors() {
    let dir = work_dir();
    let bin = dir.path().join("pasta");
    for (args, want) in [
        (
            &[
                "--config-net",
                "--dns-forward",
                "127.0.0.1",
                "--netns",
                "/nonexistent",
            ][..],
            "127.0.0.1 cannot be reached through the gateway",
        ),
        (
            &["--config-net", "--tcp-ports=80:8080,auto", "1"][..],
            "auto",
        ),
        (
            &["--config-net", "-T", "auto", "--no-map-gw", "1"][..],
            "--no-map-gw",
        ),
        (&["--outbound-if4", "eth0", "1"][..], "--outbound-if4"),
        (&["--bogus-option"][..], "--bogus-option"),
    ] {
        let out = Command::new(&bin).args(args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
