//! End-to-end tests of forwarding: services in a real guest (QEMU TCG, busybox) reached from the
//! host through `--hostfwd` (TCP and UDP), forwards added and removed at runtime over the control
//! socket while another forward carries a long transfer, the client address the guest sees,
//! `--guestfwd` to a host loopback service and to a command, `--restrict`, and `--slirp-options`.
//!
//! Three guests boot in parallel, each once:
//! - the *main* guest (no restrictions) runs an HTTP server (busybox `httpd`), a TCP echo
//!   (`nc -ll -e cat`), a TCP service that answers with the guest's `netstat -tn` (so the test sees
//!   which peer address the guest saw), and a UDP echo (a tiny static helper built from
//!   `tests/tools/udp_echo.rs`, since busybox has no UDP server). It then uses two guestfwds itself,
//!   reports, and waits while the test drives the host side.
//! - the *restricted* guest runs under `--restrict` with its forward and DNS search list given as
//!   `--slirp-options`; it checks that outbound connections fail while DNS and a guestfwd work, and
//!   the test checks that its forward still works from the host.
//! - the *netns* guest's warren runs in a network namespace the test made, with a veth pair to a
//!   second one holding a client: the forward listens on 192.168.77.1 and the guest must see the
//!   client's own address 192.168.77.2 (not the gateway's).
//!
//! Everything reached is started by the test on 127.0.0.1 or inside the test's own namespaces.
//! These tests always use warren (`WARREN_E2E_BACKEND` does not apply: the API, `--restrict` with
//! guestfwds and the namespace set-up are warren's). `WARREN_E2E_FWD_PCAP=FILE` saves the main
//! guest's capture to FILE for debugging.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use warren_tests::guest::{Image, READY_MARKER};
use warren_tests::hostcheck::{
    connect, ctl, echo_check, peer_check, udp_check, udp_echo_binary, Check,
};
use warren_tests::qemu::{Guest, NetAttach, DEFAULT_MAC};
use warren_tests::servers::{closed_port, pseudo_random, DnsServer, HttpServer};
use warren_tests::sha256_hex;
use warren_tests::warren::{Warren, WarrenConfig};

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Until a guest has run its own checks and started waiting for the host's.
const READY_TIMEOUT: Duration = Duration::from_secs(240);
const GUEST_READY: &str = "@@RESULT guest_ready=1";

/// Guest ports of the main guest's services.
const G_HTTP: u16 = 8001;
const G_ECHO: u16 = 8002;
const G_PEER: u16 = 8003;
const G_UDP: u16 = 9000;
/// The restricted guest's echo service.
const G_R_ECHO: u16 = 8005;
/// Size of the file the main guest serves for the long download (MiB).
const BIG_MB: usize = 12;
/// The guestfwds (QEMU's conventional addresses for them).
const GF_HTTP: &str = "10.0.2.100:8080";
const GF_CMD: &str = "10.0.2.101:7";
const GF_CMD_LINE: &str = "hello through the cmd guestfwd";
const DNS_NAME: &str = "fwd.warren.example";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 55);
const DNS_SEARCH: &str = "example.test";

/// One guest run: the guest's `@@RESULT`s and console, plus the host-side checks made while it ran.
struct Run {
    name: &'static str,
    error: Option<String>,
    results: BTreeMap<String, String>,
    console: String,
    diagnostics: String,
    checks: BTreeMap<&'static str, Check>,
}

impl Run {
    fn context(&self) -> String {
        format!(
            "({} guest; run error: {})\n{}\nconsole:\n{}",
            self.name,
            self.error.as_deref().unwrap_or("none"),
            self.diagnostics,
            self.console
        )
    }

    /// The guest's `@@RESULT key=...`.
    fn get(&self, key: &str) -> &str {
        match self.results.get(key) {
            Some(v) => v,
            None => panic!("guest reported no {key:?} {}", self.context()),
        }
    }

    fn expect(&self, key: &str, want: &str) {
        assert_eq!(self.get(key), want, "guest {key} {}", self.context());
    }

    /// The details of a host-side check that must have passed.
    fn check(&self, name: &str) -> &str {
        match self.checks.get(name) {
            Some(Ok(details)) => {
                eprintln!("{name}: {details}");
                details
            }
            Some(Err(e)) => panic!("host-side check {name} failed: {e}\n{}", self.context()),
            None => panic!("host-side check {name} did not run {}", self.context()),
        }
    }
}

fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// The DHCP client part of a guest script: `udhcpc` with a script that reports and applies the lease.
const DHCP: &str = r#"
r() { echo "@@RESULT $1=$2"; }
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
cat > /tmp/dhcp.sh <<'EOS'
#!/bin/sh
case "$1" in
bound|renew)
  echo "@@RESULT dhcp_ip=$ip"
  echo "@@RESULT dhcp_search=$search"
  ip addr flush dev "$interface"
  ip addr add "$ip/$mask" dev "$interface"
  for gw in $router; do ip route add default via "$gw" dev "$interface"; done
  ;;
esac
exit 0
EOS
chmod +x /tmp/dhcp.sh
ip link set eth0 up
timeout 60 udhcpc -i eth0 -s /tmp/dhcp.sh -q -f -n -t 5 -T 2 -O search
r dhcp_exit $?
"#;

// ------------------------------------------------------------------ host-side helpers

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One raw JSON request on the control socket (one request per connection); the reply.
fn api_raw(api: &Path, request: &str) -> Result<String, String> {
    let mut s = std::os::unix::net::UnixStream::connect(api)
        .map_err(|e| format!("connect {}: {e}", api.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    Ok(reply)
}

/// Sets a small receive buffer, so that a slow reader really holds the sender back.
fn small_rcvbuf(c: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(c, 64 * 1024);
}

/// A download of `path` over HTTP/1.0 from `addr`, read slowly while `slow` is set.
struct Download {
    received: Arc<AtomicU64>,
    slow: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Result<Vec<u8>, String>>,
}

impl Download {
    fn start(addr: SocketAddr, path: &str) -> Result<Download, String> {
        let c = connect(addr)?;
        small_rcvbuf(&c);
        let received = Arc::new(AtomicU64::new(0));
        let slow = Arc::new(AtomicBool::new(true));
        let (r, s) = (received.clone(), slow.clone());
        let request = format!("GET {path} HTTP/1.0\r\nHost: warren\r\n\r\n");
        let handle = std::thread::spawn(move || -> Result<Vec<u8>, String> {
            let mut c = c;
            c.write_all(request.as_bytes())
                .map_err(|e| format!("send request: {e}"))?;
            let mut all = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let want = if s.load(Ordering::Relaxed) {
                    8 * 1024
                } else {
                    buf.len()
                };
                match c.read(&mut buf[..want]) {
                    Ok(0) => break,
                    Ok(n) => {
                        all.extend_from_slice(&buf[..n]);
                        r.store(all.len() as u64, Ordering::Relaxed);
                        if s.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    Err(e) => return Err(format!("download after {} bytes: {e}", all.len())),
                }
            }
            let head_end = all
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .ok_or_else(|| format!("no HTTP header in {} bytes", all.len()))?;
            let head = String::from_utf8_lossy(&all[..head_end]).into_owned();
            if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
                return Err(format!("HTTP answer: {head}"));
            }
            Ok(all.split_off(head_end + 4))
        });
        Ok(Download {
            received,
            slow,
            handle,
        })
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// Boots `image` on `warren` and waits for `/init`. Under heavy load a TCG guest kernel sometimes
/// panics in its early timer check ("IO-APIC + timer doesn't work"); such a boot is retried once.
fn boot(image: &Image, warren: &Warren) -> Guest {
    let attach = NetAttach::netdev(warren.netdev());
    let guest = Guest::spawn_with(image, &attach, DEFAULT_MAC);
    match guest.wait_for(READY_MARKER, BOOT_TIMEOUT) {
        Err(e) if e.contains("Kernel panic") && !e.contains(READY_MARKER) => {
            eprintln!(
                "{}: the guest kernel panicked while booting; booting it again. Console:\n{}",
                image.name,
                guest.output()
            );
            drop(guest);
            Guest::spawn_with(image, &attach, DEFAULT_MAC)
        }
        _ => guest,
    }
}

/// Waits until the guest console shows `marker` (the guest keeps running).
fn wait_console(guest: &Guest, marker: &str, timeout: Duration) -> Result<(), String> {
    guest.wait_for(marker, timeout).map(|_| ())
}

// ------------------------------------------------------------------ the main guest

struct MainPorts {
    http: u16,
    echo: u16,
    peer: u16,
    udp: u16,
    added: u16,
}

fn main_script(host_http: u16) -> String {
    format!(
        r#"{DHCP}
mkdir -p /www
dd if=/dev/urandom of=/www/big.bin bs=1M count={BIG_MB} 2>/dev/null
r big_sha "$(sha256sum /www/big.bin | cut -d' ' -f1)"
echo "small file from the guest" > /www/small.txt
httpd -p {G_HTTP} -h /www
r httpd_exit $?
nc -ll -p {G_ECHO} -e cat &
printf '#!/bin/sh\nnetstat -tn\n' > /bin/peer.sh
chmod +x /bin/peer.sh
nc -ll -p {G_PEER} -e /bin/peer.sh &
udp-echo {G_UDP} &

# Control: the host loopback server is reachable directly through the gateway.
timeout 60 wget -q -O /tmp/direct http://10.0.2.2:{host_http}/gf.bin
r direct_exit $?

# guestfwd to a host loopback service.
timeout 60 wget -q -O /tmp/gf http://{GF_HTTP}/gf.bin
r gf_http_exit $?
r gf_http_sha "$(sha256sum /tmp/gf | cut -d' ' -f1)"

# guestfwd to a command (cat: an echo).
out=$(echo "{GF_CMD_LINE}" | timeout 20 nc {gf_cmd_host} {gf_cmd_port} 2>&1)
r gf_cmd_exit $?
r gf_cmd_out "$out"

sleep 1
netstat -ltnu
r guest_ready 1
sleep 300
"#,
        gf_cmd_host = GF_CMD.split(':').next().expect("host"),
        gf_cmd_port = GF_CMD.split(':').nth(1).expect("port"),
    )
}

fn run_main_guest() -> Run {
    let http = HttpServer::start(BTreeMap::from([(
        "/gf.bin".to_owned(),
        pseudo_random(300 * 1024, 0xf0f0),
    )]));
    let p = MainPorts {
        http: closed_port(),
        echo: closed_port(),
        peer: closed_port(),
        udp: closed_port(),
        added: closed_port(),
    };
    let image = Image::build_with_files(
        "forwarding-main",
        &main_script(http.port),
        &[("/bin/udp-echo", 0o755, &udp_echo_binary())],
    );
    let args: Vec<String> = [
        format!("--hostfwd=tcp:127.0.0.1:{}-:{G_HTTP}", p.http),
        format!("--hostfwd=tcp:127.0.0.1:{}-:{G_ECHO}", p.echo),
        format!("--hostfwd=tcp:127.0.0.1:{}-:{G_PEER}", p.peer),
        format!("--hostfwd=udp:127.0.0.1:{}-:{G_UDP}", p.udp),
        format!("--guestfwd=tcp:{GF_HTTP}-127.0.0.1:{}", http.port),
        format!("--guestfwd=tcp:{GF_CMD}-cmd:cat"),
        "--api={dir}/api.sock".to_owned(),
        // Never the host's resolvers; this guest sends no DNS queries anyway.
        format!("--dns-upstream=127.0.0.1:{}", closed_port()),
        "--dns-search=main.warren.example".to_owned(),
    ]
    .to_vec();
    let mut warren = Warren::spawn_with(WarrenConfig {
        args,
        pcap: std::env::var_os("WARREN_E2E_FWD_PCAP").is_some(),
        ..WarrenConfig::default()
    });
    let api = warren.dir().join("api.sock");
    warren.wait_for_path(&api, Duration::from_secs(10));
    let guest = boot(&image, &warren);
    let mut checks = BTreeMap::new();
    let error = guest
        .wait_for(READY_MARKER, BOOT_TIMEOUT)
        .and_then(|t| {
            eprintln!("forwarding-main: booted after {t:?}");
            guest.wait_for(GUEST_READY, READY_TIMEOUT)
        })
        .map(|t| {
            eprintln!("forwarding-main: guest checks done after {t:?}");
            main_host_checks(&p, &api, &guest, &mut checks);
            eprintln!(
                "forwarding-main: host checks done after {:?}",
                guest.elapsed()
            );
        })
        .err();
    let console = guest.output();
    drop(guest);
    let mut diagnostics = format!("warren stderr:\n{}", warren.stderr());
    if !warren.is_running() {
        diagnostics.insert_str(0, "warren had EXITED before the guest run ended\n");
    }
    if let (Some(dst), Some(src)) = (
        std::env::var_os("WARREN_E2E_FWD_PCAP"),
        warren.pcap().map(Path::to_path_buf),
    ) {
        warren.stop(Duration::from_secs(5));
        let _ = std::fs::copy(src, dst);
    }
    Run {
        name: "main",
        error,
        results: warren_tests::qemu::parse_results(&console),
        console,
        diagnostics,
        checks,
    }
}

fn main_host_checks(
    p: &MainPorts,
    api: &Path,
    guest: &Guest,
    checks: &mut BTreeMap<&'static str, Check>,
) {
    checks.insert(
        "hostfwd_tcp_echo",
        echo_check(loopback(p.echo), &pseudo_random(1024 * 1024, 0xec40)),
    );
    checks.insert(
        "hostfwd_peer_loopback",
        peer_check(loopback(p.peer), G_PEER, "10.0.2.2"),
    );
    let udp = udp_check(loopback(p.udp), loopback(0), 900).and_then(|(details, port)| {
        // The helper logs every datagram's source: the host loopback client is the gateway.
        let seen = format!("@@UDPECHO from 10.0.2.2:{port} ");
        wait_console(guest, &seen, Duration::from_secs(10))
            .map(|()| format!("{details}; guest saw {seen:?}"))
            .map_err(|e| format!("{details}, but the guest did not log {seen:?}: {e}"))
    });
    checks.insert("hostfwd_udp_echo", udp);
    let (api_check, download) = api_while_downloading(p, api);
    checks.insert("api_add_remove", api_check);
    checks.insert("long_download", download);
}

/// Starts a long download from the guest's httpd through the first forward; while it is running
/// (read slowly), adds a forward over the API, uses it, lists, removes it and checks that it is
/// gone. Returns (the API check, the download check); the download's content is compared with the
/// guest's SHA-256 by the test.
fn api_while_downloading(p: &MainPorts, api: &Path) -> (Check, Check) {
    let dl = match Download::start(loopback(p.http), "/big.bin") {
        Ok(d) => d,
        Err(e) => return (Err(format!("download did not start: {e}")), Err(e)),
    };
    let t = Instant::now();
    while dl.received() < 256 * 1024 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = dl.received();
    let api_check = (|| -> Check {
        if before < 256 * 1024 {
            return Err(format!(
                "the download had only {before} bytes after 60 s; not starting the API part"
            ));
        }
        let spec = format!("tcp:127.0.0.1:{}-:{G_ECHO}", p.added);
        let added = ctl(api, &["add-hostfwd", &spec])?;
        let id: u32 = added
            .trim()
            .strip_prefix("id ")
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| format!("add-hostfwd printed {added:?}, expected `id N`"))?;
        let list = ctl(api, &["list"])?;
        for port in [p.http, p.added] {
            if !list.contains(&format!("127.0.0.1:{port}\t")) {
                return Err(format!("list lacks the forward on port {port}:\n{list}"));
            }
        }
        let echoed = echo_check(loopback(p.added), &pseudo_random(200 * 1024, 0xadd))
            .map_err(|e| format!("the added forward does not work: {e}"))?;
        let mid = dl.received();
        let reply = api_raw(
            api,
            &format!(r#"{{"execute": "remove_hostfwd", "arguments": {{"id": {id}}}}}"#),
        )?;
        if !reply.contains(r#""return""#) || reply.contains("error") {
            return Err(format!("remove_hostfwd {id} answered {reply}"));
        }
        let list_after = api_raw(api, r#"{"execute": "list_hostfwd"}"#)?;
        if list_after.contains(&format!("\"host_port\":{}", p.added))
            || list_after.contains(&format!("\"host_port\": {}", p.added))
        {
            return Err(format!("the removed forward is still listed: {list_after}"));
        }
        let t = Instant::now();
        match TcpStream::connect_timeout(&loopback(p.added), Duration::from_secs(5)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(format!("after remove, connecting gave {e} (want refused)")),
            Ok(mut c) => {
                // Accepted by something: it must at least not carry data to the guest.
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = c.write_all(b"still there?\n");
                let mut b = [0u8; 64];
                let r = c.read(&mut b);
                return Err(format!(
                    "after remove, port {} still accepts connections (read: {r:?})",
                    p.added
                ));
            }
        }
        let refused_in = t.elapsed();
        let after = dl.received();
        Ok(format!(
            "added id {id} with {before} bytes of the download in, used it ({echoed}) at {mid}, \
             removed it; then refused in {refused_in:?}, download at {after} bytes"
        ))
    })();
    let during = dl.received();
    dl.slow.store(false, Ordering::Relaxed);
    let download = match dl.handle.join() {
        Ok(Ok(body)) => Ok(format!(
            "{} {} (download had {during} bytes when the API part ended)",
            body.len(),
            sha256_hex(&body)
        )),
        Ok(Err(e)) => Err(e),
        Err(p) => Err(panic_message(p)),
    };
    // The API part must have happened while the download was still going.
    let api_check = api_check.and_then(|d| {
        let total = (BIG_MB * 1024 * 1024) as u64;
        if during >= total {
            Err(format!(
                "the download was complete ({during} bytes) before the API part ended: {d}"
            ))
        } else {
            Ok(d)
        }
    });
    (api_check, download)
}

/// The guest runs, done once, in parallel (each TCG guest uses one core); a panic while running
/// one is kept and reported by each of its tests.
struct Runs {
    main: Result<Run, String>,
    restricted: Result<RestrictedRun, String>,
    netns: Result<Run, String>,
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let t = Instant::now();
        let restricted = std::thread::spawn(|| {
            std::panic::catch_unwind(run_restricted_guest).map_err(panic_message)
        });
        let netns =
            std::thread::spawn(|| std::panic::catch_unwind(run_netns_guest).map_err(panic_message));
        let main = std::panic::catch_unwind(run_main_guest).map_err(panic_message);
        let restricted = restricted.join().unwrap_or_else(|e| Err(panic_message(e)));
        let netns = netns.join().unwrap_or_else(|e| Err(panic_message(e)));
        eprintln!("forwarding: the guest runs took {:?}", t.elapsed());
        Runs {
            main,
            restricted,
            netns,
        }
    })
}

fn main_run() -> &'static Run {
    match &runs().main {
        Ok(r) => r,
        Err(e) => panic!("the main forwarding guest run failed: {e}"),
    }
}

fn restricted_run() -> &'static RestrictedRun {
    match &runs().restricted {
        Ok(r) => r,
        Err(e) => panic!("the restricted guest run failed: {e}"),
    }
}

#[test]
fn hostfwd_tcp_reaches_guest_echo_service() {
    let run = main_run();
    run.expect("dhcp_ip", "10.0.2.15");
    run.check("hostfwd_tcp_echo");
}

#[test]
fn hostfwd_long_download_is_intact_while_api_changes_forwards() {
    let run = main_run();
    run.expect("httpd_exit", "0");
    let want = format!("{} {}", BIG_MB * 1024 * 1024, run.get("big_sha"));
    let got = run.check("long_download");
    assert!(
        got.starts_with(&want),
        "downloaded {got}, the guest's file is {want} {}",
        run.context()
    );
}

#[test]
fn api_added_forward_works_then_is_refused_after_remove() {
    main_run().check("api_add_remove");
}

#[test]
fn guest_sees_loopback_client_as_gateway() {
    main_run().check("hostfwd_peer_loopback");
}

#[test]
fn hostfwd_udp_round_trip() {
    main_run().check("hostfwd_udp_echo");
}

#[test]
fn guestfwd_to_host_loopback_service() {
    let run = main_run();
    run.expect("gf_http_exit", "0");
    run.expect(
        "gf_http_sha",
        &sha256_hex(&pseudo_random(300 * 1024, 0xf0f0)),
    );
}

#[test]
fn guestfwd_to_command() {
    let run = main_run();
    run.expect("gf_cmd_exit", "0");
    run.expect("gf_cmd_out", GF_CMD_LINE);
}

// ------------------------------------------------------------------ the restricted guest

fn restricted_script(host_http: u16) -> String {
    format!(
        r#"{DHCP}
nc -ll -p {G_R_ECHO} -e cat &

t0=$(ms)
out=$(timeout 20 nc 10.0.2.2 {host_http} </dev/null 2>&1); rc=$?
t1=$(ms)
r out_nc_exit $rc
r out_nc_msg "$out"
r out_nc_ms $((t1 - t0))
t0=$(ms)
timeout 30 wget -q -O /tmp/x http://10.0.2.2:{host_http}/small.txt
r out_wget_exit $?
t1=$(ms)
r out_wget_ms $((t1 - t0))

out=$(timeout 20 nslookup {DNS_NAME} 10.0.2.3 2>&1); rc=$?
echo "$out"
r dns_exit $rc
r dns_answer "$(echo "$out" | sed -n '/^Name:/,$ s/^Address: *//p' | head -n 1)"

out=$(echo "{GF_CMD_LINE}" | timeout 20 nc 10.0.2.101 7 2>&1)
r gf_cmd_exit $?
r gf_cmd_out "$out"

r guest_ready 1
sleep 300
"#
    )
}

struct RestrictedRun {
    run: Run,
    http: HttpServer,
    dns: DnsServer,
}

fn run_restricted_guest() -> RestrictedRun {
    let http = HttpServer::start(BTreeMap::from([(
        "/small.txt".to_owned(),
        b"must not be reachable under --restrict\n".to_vec(),
    )]));
    let dns = DnsServer::start(BTreeMap::from([(DNS_NAME.to_owned(), DNS_ANSWER)]));
    let echo_port = closed_port();
    let image = Image::build("forwarding-restricted", &restricted_script(http.port));
    let args = vec![
        "--restrict".to_owned(),
        "--slirp-options".to_owned(),
        format!("hostfwd=tcp:127.0.0.1:{echo_port}-:{G_R_ECHO},dnssearch={DNS_SEARCH}"),
        format!("--dns-upstream={}", dns.addr()),
        format!("--guestfwd=tcp:{GF_CMD}-cmd:cat"),
    ];
    let mut warren = Warren::spawn_with(WarrenConfig {
        args,
        ..WarrenConfig::default()
    });
    let guest = boot(&image, &warren);
    let mut checks = BTreeMap::new();
    let error = guest
        .wait_for(READY_MARKER, BOOT_TIMEOUT)
        .and_then(|_| guest.wait_for(GUEST_READY, READY_TIMEOUT))
        .map(|t| {
            eprintln!("forwarding-restricted: guest checks done after {t:?}");
            checks.insert(
                "restricted_hostfwd_echo",
                echo_check(loopback(echo_port), &pseudo_random(64 * 1024, 0x7e57)),
            );
        })
        .err();
    let console = guest.output();
    drop(guest);
    let mut diagnostics = format!("warren stderr:\n{}", warren.stderr());
    if !warren.is_running() {
        diagnostics.insert_str(0, "warren had EXITED before the guest run ended\n");
    }
    RestrictedRun {
        run: Run {
            name: "restricted",
            error,
            results: warren_tests::qemu::parse_results(&console),
            console,
            diagnostics,
            checks,
        },
        http,
        dns,
    }
}

#[test]
fn restrict_blocks_outbound_but_keeps_forwards_and_dns() {
    let r = restricted_run();
    let run = &r.run;
    // Outbound TCP to the host's loopback server: refused at once, by warren.
    assert_ne!(run.get("out_nc_exit"), "0", "{}", run.context());
    let msg = run.get("out_nc_msg");
    assert!(
        msg.contains("refused"),
        "guest nc to 10.0.2.2 under --restrict: {msg:?} {}",
        run.context()
    );
    assert_ne!(run.get("out_wget_exit"), "0", "{}", run.context());
    assert!(
        r.http.served().is_empty(),
        "the host server was reached under --restrict: {:?} {}",
        r.http.served(),
        run.context()
    );
    // DNS still works and reaches the configured upstream.
    run.expect("dns_exit", "0");
    run.expect("dns_answer", &DNS_ANSWER.to_string());
    assert!(
        r.dns.queries().iter().any(|q| q.name == DNS_NAME),
        "the DNS upstream saw {:?} {}",
        r.dns.queries(),
        run.context()
    );
    // A guestfwd (a virtual service) still works.
    run.expect("gf_cmd_out", GF_CMD_LINE);
    // The host-to-guest forward still works.
    run.check("restricted_hostfwd_echo");
}

#[test]
fn slirp_options_hostfwd_and_dnssearch() {
    let run = &restricted_run().run;
    run.expect("dhcp_ip", "10.0.2.15");
    run.expect("dhcp_search", DNS_SEARCH);
    // The forward came from the option string only.
    run.check("restricted_hostfwd_echo");
}

// ------------------------------------------------------------------ a non-loopback client

/// The addresses on the veth pair between the test's two namespaces.
const NS_WARREN_ADDR: &str = "192.168.77.1";
const NS_CLIENT_ADDR: &str = "192.168.77.2";
/// The forward's port inside warren's namespace (nothing else lives there).
const NS_FWD_PORT: u16 = 2222;

/// Two named network namespaces joined by a veth pair; deleted on drop.
struct NetnsPair {
    warren: String,
    client: String,
}

impl NetnsPair {
    fn create() -> NetnsPair {
        assert!(
            warren_tests::is_root(),
            "the non-loopback client check creates network namespaces: run as root"
        );
        let id = std::process::id();
        let pair = NetnsPair {
            warren: format!("wfwd-w{id}"),
            client: format!("wfwd-c{id}"),
        };
        let ip = |args: &[&str]| {
            warren_tests::run_checked(Command::new("ip").args(args));
        };
        let (a, b) = (format!("wfw{id}a"), format!("wfw{id}b"));
        for (ns, dev, addr) in [
            (&pair.warren, &a, NS_WARREN_ADDR),
            (&pair.client, &b, NS_CLIENT_ADDR),
        ] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            if dev == &a {
                ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            }
            ip(&["link", "set", dev, "netns", ns]);
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.warren, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a thread that has joined the named network namespace (processes it starts are in
/// that namespace too; sockets keep the namespace they were made in).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // Changes only this thread's network namespace.
        let rc = rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        );
        assert!(rc.is_ok(), "setns {path}: {rc:?}");
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn netns_script() -> String {
    format!(
        r#"{DHCP}
printf '#!/bin/sh\nnetstat -tn\n' > /bin/peer.sh
chmod +x /bin/peer.sh
nc -ll -p {G_PEER} -e /bin/peer.sh &
sleep 1
r guest_ready 1
sleep 300
"#
    )
}

fn run_netns_guest() -> Run {
    let pair = NetnsPair::create();
    let image = Image::build("forwarding-netns", &netns_script());
    let args = vec![
        format!("--hostfwd=tcp:{NS_WARREN_ADDR}:{NS_FWD_PORT}-:{G_PEER}"),
        // Nothing listens there (a fresh namespace): never the host's resolvers.
        "--dns-upstream=127.0.0.1:53".to_owned(),
        "--dns-search=netns.warren.example".to_owned(),
    ];
    let mut warren = in_netns(&pair.warren, move || {
        Warren::spawn_with(WarrenConfig {
            args,
            ..WarrenConfig::default()
        })
    });
    let guest = boot(&image, &warren);
    let mut checks = BTreeMap::new();
    let error = guest
        .wait_for(READY_MARKER, BOOT_TIMEOUT)
        .and_then(|_| guest.wait_for(GUEST_READY, READY_TIMEOUT))
        .map(|t| {
            eprintln!("forwarding-netns: guest ready after {t:?}");
            let target: SocketAddr = format!("{NS_WARREN_ADDR}:{NS_FWD_PORT}")
                .parse()
                .expect("address");
            checks.insert(
                "hostfwd_peer_veth",
                in_netns(&pair.client, move || {
                    peer_check(target, G_PEER, NS_CLIENT_ADDR)
                }),
            );
        })
        .err();
    let console = guest.output();
    drop(guest);
    let mut diagnostics = format!("warren stderr:\n{}", warren.stderr());
    if !warren.is_running() {
        diagnostics.insert_str(0, "warren had EXITED before the guest run ended\n");
    }
    drop(warren);
    drop(pair);
    Run {
        name: "netns",
        error,
        results: warren_tests::qemu::parse_results(&console),
        console,
        diagnostics,
        checks,
    }
}

#[test]
fn guest_sees_non_loopback_client_address() {
    let run = match &runs().netns {
        Ok(r) => r,
        Err(e) => panic!("the netns guest run failed: {e}"),
    };
    run.expect("dhcp_ip", "10.0.2.15");
    run.check("hostfwd_peer_veth");
}
