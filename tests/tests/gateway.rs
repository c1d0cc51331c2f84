//! End-to-end tests of the gateway: a real Linux guest under QEMU TCG gets
//! its address by DHCP, resolves a name, downloads and uploads over TCP,
//! exchanges UDP, sees a refused connection, and pings the gateway.
//!
//! One guest boot runs most checks in sequence (TCG is slow); each check
//! prints its own `@@RESULT` lines and each `#[test]` asserts its own part.
//! The backend is warren unless `WARREN_E2E_BACKEND=slirp` (QEMU's slirp,
//! used to validate the guest side; the DNS check does not apply there).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use warren_tests::backend::{Backend, NetOptions, Network};
use warren_tests::guest::{Image, DONE_MARKER, READY_MARKER};
use warren_tests::qemu::{Guest, DEFAULT_MAC};
use warren_tests::servers::{
    closed_port, pseudo_random, DnsServer, HttpServer, TftpServer, UploadSink,
};

const DNS_SEARCH: &str = "e2e.warren.example";
const DNS_NAME: &str = "test.warren.example";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
/// MTU warren is told to announce (not the 1500 default, so it shows).
const WARREN_MTU: u16 = 1400;
const BIG_LEN: usize = 20 * 1024 * 1024;
const TFTP_LEN: usize = 64 * 1024 + 100;
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// Outcome of the shared guest run.
struct MainRun {
    backend: Backend,
    /// Set if the guest did not complete its script.
    error: Option<String>,
    results: BTreeMap<String, String>,
    console: String,
    diagnostics: String,
    http: HttpServer,
    sink: UploadSink,
    tftp: TftpServer,
    dns: DnsServer,
    http_port: u16,
    /// `tshark -r` output per display filter, when a capture was taken.
    pcap: Option<PcapSummary>,
}

struct PcapSummary {
    dhcp: String,
    http_tcp: String,
}

impl MainRun {
    /// The value of `@@RESULT key=...`, or a panic explaining why it's absent.
    fn get(&self, key: &str) -> &str {
        match self.results.get(key) {
            Some(v) => v,
            None => panic!(
                "guest reported no {key:?} ({:?} backend); run error: {}\n{}\nconsole:\n{}",
                self.backend,
                self.error.as_deref().unwrap_or("none"),
                self.diagnostics,
                self.console
            ),
        }
    }

    fn context(&self) -> String {
        format!(
            "({:?} backend)\n{}\nconsole:\n{}",
            self.backend, self.diagnostics, self.console
        )
    }
}

/// A DNS query for `name` (type A) framed for TCP (2-byte length first), as `printf` octal escapes.
fn tcp_dns_query_escaped(name: &str) -> String {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    framed.iter().map(|b| format!("\\{b:03o}")).collect()
}

fn main_script(http: u16, upload: u16, tftp: u16, closed: u16, dns: bool) -> String {
    let dns = u8::from(dns);
    let tcp_query = tcp_dns_query_escaped(DNS_NAME);
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
ms() {{ awk '{{ printf "%d", $1 * 1000 }}' /proc/uptime; }}

cat > /tmp/dhcp.sh <<'EOS'
#!/bin/sh
case "$1" in
bound|renew)
  echo "@@RESULT dhcp_ip=$ip"
  echo "@@RESULT dhcp_subnet=$subnet"
  echo "@@RESULT dhcp_router=$router"
  echo "@@RESULT dhcp_dns=$dns"
  echo "@@RESULT dhcp_domain=$domain"
  echo "@@RESULT dhcp_search=$search"
  echo "@@RESULT dhcp_mtu=$mtu"
  echo "@@RESULT dhcp_lease=$lease"
  echo "@@RESULT dhcp_serverid=$serverid"
  ip addr flush dev "$interface"
  ip addr add "$ip/$mask" dev "$interface"
  [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
  for gw in $router; do ip route add default via "$gw" dev "$interface"; done
  ;;
esac
exit 0
EOS
chmod +x /tmp/dhcp.sh
ip link set eth0 up
timeout 60 udhcpc -i eth0 -s /tmp/dhcp.sh -q -f -n -t 5 -T 2 -O mtu -O search -O domain
r dhcp_exit $?
ip addr show eth0; ip route

if [ {dns} = 1 ]; then
  out=$(timeout 20 nslookup {DNS_NAME} 10.0.2.3 2>&1); rc=$?
  echo "$out"
  r dns_exit $rc
  r dns_answer "$(echo "$out" | sed -n '/^Name:/,$ s/^Address: *//p' | head -n 1)"
  # DNS over TCP (what a resolver does after a truncated answer): a length-prefixed query.
  r dns_tcp_hex "$(printf '{tcp_query}' | timeout 10 nc 10.0.2.3 53 | od -An -tx1 | tr -d ' \n')"
fi

t0=$(ms)
timeout 60 wget -q -O /tmp/small http://10.0.2.2:{http}/small.txt
r http_small_exit $?
r http_small_sha "$(sha256sum /tmp/small | cut -d' ' -f1)"
t1=$(ms)
timeout 120 wget -q -O /tmp/big http://10.0.2.2:{http}/big.bin
r http_big_exit $?
t2=$(ms)
r http_big_sha "$(sha256sum /tmp/big | cut -d' ' -f1)"
r http_big_bytes "$(wc -c < /tmp/big)"
r http_big_ms $((t2 - t1))
rm -f /tmp/big

dd if=/dev/urandom of=/tmp/up bs=1M count=8 2>/dev/null
r upload_guest_sha "$(sha256sum /tmp/up | cut -d' ' -f1)"
t0=$(ms)
timeout 120 nc 10.0.2.2 {upload} < /tmp/up > /tmp/up.reply
r upload_exit $?
t1=$(ms)
r upload_ms $((t1 - t0))
r upload_reply "$(cat /tmp/up.reply)"
rm -f /tmp/up

timeout 60 tftp -g -r data.bin -l /tmp/tftp 10.0.2.2 {tftp}
r udp_tftp_exit $?
r udp_tftp_sha "$(sha256sum /tmp/tftp | cut -d' ' -f1)"

t0=$(ms)
out=$(timeout 10 nc 10.0.2.2 {closed} < /dev/null 2>&1); rc=$?
t1=$(ms)
r refused_exit $rc
r refused_msg "$out"
r refused_ms $((t1 - t0))
"#
    )
}

/// The shared guest run, done once; a panic while setting it up is kept and
/// reported by every test instead of re-running the guest per test.
fn main_run() -> &'static MainRun {
    static RUN: OnceLock<Result<MainRun, String>> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        // Boot the ping guest alongside (TCG guests are single-threaded).
        std::thread::spawn(|| {
            let _ = ping_run();
        });
        std::panic::catch_unwind(run_main_guest).map_err(panic_message)
    });
    match run {
        Ok(run) => run,
        Err(e) => panic!("setting up the shared guest run failed: {e}"),
    }
}

fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn run_main_guest() -> MainRun {
    let backend = Backend::from_env();
    let http = HttpServer::start(BTreeMap::from([
        (
            "/small.txt".to_owned(),
            b"hello from the warren e2e http server\n".to_vec(),
        ),
        ("/big.bin".to_owned(), pseudo_random(BIG_LEN, 0x5eed)),
    ]));
    let sink = UploadSink::start();
    let tftp = TftpServer::start(BTreeMap::from([(
        "data.bin".to_owned(),
        pseudo_random(TFTP_LEN, 77),
    )]));
    let dns = DnsServer::start(BTreeMap::from([(DNS_NAME.to_owned(), DNS_ANSWER)]));
    let closed = closed_port();

    let image = Image::build(
        "gateway-main",
        &main_script(
            http.port,
            sink.port,
            tftp.port,
            closed,
            backend.dns_upstream_configurable(),
        ),
    );
    let mut net = Network::start(
        backend,
        &NetOptions {
            dns_search: Some(DNS_SEARCH.to_owned()),
            dns_upstream: Some(dns.addr()),
            mtu: Some(WARREN_MTU),
            pcap: true,
            fresh_netns_with_ping: false,
        },
    );
    let started = Instant::now();
    let mut guest = Guest::spawn_with(&image, &net.attach, DEFAULT_MAC);
    let error = guest
        .wait_for(READY_MARKER, BOOT_TIMEOUT)
        .and_then(|boot| {
            eprintln!("gateway-main: guest ready after {boot:?}");
            guest.wait_for(DONE_MARKER, RUN_TIMEOUT)
        })
        .map(|done| eprintln!("gateway-main: script done after {done:?}"))
        .err();
    let _ = guest.wait_exit(Duration::from_secs(10));
    eprintln!("gateway-main: QEMU gone after {:?}", started.elapsed());
    let console = guest.output();
    drop(guest);
    let mut diagnostics = net.diagnostics();
    if let Some(w) = net.warren.as_mut() {
        if !w.is_running() {
            diagnostics.insert_str(0, "warren had EXITED before the guest run ended\n");
        }
        w.stop(Duration::from_secs(5));
    }
    let t = Instant::now();
    let pcap = net.pcap().filter(|p| p.exists()).map(|p| {
        // One tshark run (it is slow to start); split the frames after.
        let frames = tshark(p, &format!("dhcp || tcp.port == {}", http.port));
        let (dhcp, http_tcp): (Vec<&str>, Vec<&str>) =
            frames.lines().partition(|l| l.contains("DHCP"));
        PcapSummary {
            dhcp: dhcp.join("\n"),
            http_tcp: http_tcp.join("\n"),
        }
    });
    eprintln!("gateway-main: pcap summarised in {:?}", t.elapsed());
    MainRun {
        backend,
        error,
        results: warren_tests::qemu::parse_results(&console),
        console,
        diagnostics,
        http_port: http.port,
        http,
        sink,
        tftp,
        dns,
        pcap,
    }
}

/// `tshark -r FILE -Y FILTER` output (one line per matching frame).
fn tshark(file: &std::path::Path, filter: &str) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-n", "-Y", filter])
        .output()
        .expect("run tshark (apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark -r {} -Y {filter:?} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn expect_eq(run: &MainRun, key: &str, want: &str) {
    let got = run.get(key);
    assert_eq!(got, want, "guest {key} {}", run.context());
}

#[test]
fn dhcp_lease_values() {
    let run = main_run();
    expect_eq(run, "dhcp_exit", "0");
    expect_eq(run, "dhcp_ip", "10.0.2.15");
    expect_eq(run, "dhcp_subnet", "255.255.255.0");
    expect_eq(run, "dhcp_router", "10.0.2.2");
    expect_eq(run, "dhcp_dns", "10.0.2.3");
    expect_eq(run, "dhcp_search", DNS_SEARCH);
    let mtu = match run.backend {
        Backend::Warren => WARREN_MTU.to_string(),
        // QEMU's slirp cannot be told an MTU and does not announce one.
        Backend::Slirp => String::new(),
    };
    expect_eq(run, "dhcp_mtu", &mtu);
    let lease: u32 = run
        .get("dhcp_lease")
        .parse()
        .unwrap_or_else(|e| panic!("lease time not a number: {e} {}", run.context()));
    assert!(
        lease >= 60,
        "lease time {lease} s is too short {}",
        run.context()
    );
}

#[test]
fn dns_query_reaches_configured_upstream() {
    let run = main_run();
    if !run.backend.dns_upstream_configurable() {
        // slirp would forward the query to the host's real resolvers, which
        // tests must never contact; this check exists for warren only.
        eprintln!("DNS check not applicable to the slirp backend");
        return;
    }
    expect_eq(run, "dns_exit", "0");
    expect_eq(run, "dns_answer", &DNS_ANSWER.to_string());
    // Over TCP too: the reply (id 0x1234, a response) carries the answer's address.
    let hex = run.get("dns_tcp_hex");
    let want: String = DNS_ANSWER
        .octets()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        hex.len() > 4 && hex[4..].starts_with("1234") && hex.contains(&want),
        "DNS over TCP through 10.0.2.3 gave {hex:?} (want id 1234 and {want}) {}",
        run.context()
    );
    assert!(
        run.dns
            .queries()
            .iter()
            .any(|q| q.name == DNS_NAME && q.qtype == 1),
        "the test's DNS server on 127.0.0.1 never saw the A query: {:?} {}",
        run.dns.queries(),
        run.context()
    );
}

#[test]
fn http_get_small_and_20mb_file() {
    let run = main_run();
    expect_eq(run, "http_small_exit", "0");
    expect_eq(run, "http_small_sha", &run.http.sha256("/small.txt"));
    expect_eq(run, "http_big_exit", "0");
    expect_eq(run, "http_big_bytes", &BIG_LEN.to_string());
    expect_eq(run, "http_big_sha", &run.http.sha256("/big.bin"));
    eprintln!(
        "20 MB download took {} ms in the guest",
        run.get("http_big_ms")
    );
}

#[test]
fn tcp_upload_8mb() {
    let run = main_run();
    expect_eq(run, "upload_exit", "0");
    let guest_sha = run.get("upload_guest_sha");
    let uploads = run.sink.uploads();
    assert_eq!(
        uploads.len(),
        1,
        "upload sink saw {uploads:?} {}",
        run.context()
    );
    assert_eq!(uploads[0].bytes, 8 * 1024 * 1024, "{}", run.context());
    assert_eq!(uploads[0].sha256, guest_sha, "{}", run.context());
    // The sink's reply made it back to the guest after the half-close.
    expect_eq(
        run,
        "upload_reply",
        &format!("{} {}", guest_sha, 8 * 1024 * 1024),
    );
    eprintln!("8 MB upload took {} ms in the guest", run.get("upload_ms"));
}

#[test]
fn udp_round_trips_via_tftp() {
    let run = main_run();
    expect_eq(run, "udp_tftp_exit", "0");
    expect_eq(run, "udp_tftp_sha", &run.tftp.sha256("data.bin"));
    assert_eq!(
        run.tftp.completed(),
        vec!["data.bin".to_owned()],
        "TFTP server did not see the transfer complete {}",
        run.context()
    );
}

#[test]
fn closed_host_port_is_refused_at_once() {
    let run = main_run();
    assert_ne!(run.get("refused_exit"), "0", "{}", run.context());
    let msg = run.get("refused_msg");
    assert!(
        msg.contains("Connection refused"),
        "expected 'Connection refused', got {msg:?} {}",
        run.context()
    );
    let ms: u64 = run
        .get("refused_ms")
        .parse()
        .expect("refused_ms is a number");
    assert!(ms < 1000, "refusal took {ms} ms {}", run.context());
}

#[test]
fn pcap_shows_dhcp_and_tcp() {
    let run = main_run();
    let pcap = run
        .pcap
        .as_ref()
        .unwrap_or_else(|| panic!("no capture file was written {}", run.context()));
    let dhcp = pcap.dhcp.lines().count();
    assert!(
        dhcp >= 4,
        "expected DISCOVER/OFFER/REQUEST/ACK in the capture, got {dhcp} DHCP frames:\n{}",
        pcap.dhcp
    );
    for kind in ["Discover", "Offer", "Request", "ACK"] {
        assert!(
            pcap.dhcp.contains(kind),
            "no DHCP {kind} in capture:\n{}",
            pcap.dhcp
        );
    }
    let syns = pcap
        .http_tcp
        .lines()
        .filter(|l| l.contains("[SYN]") || l.contains("[SYN, ACK]"))
        .count();
    assert!(
        syns >= 4,
        "expected SYN and SYN-ACK of both HTTP connections to port {} in the capture:\n{}",
        run.http_port,
        pcap.http_tcp
            .lines()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Outcome of the ping guest (a separate boot: its gateway lives in a fresh
/// network namespace).
struct PingRun {
    results: BTreeMap<String, String>,
    context: String,
}

/// The ping guest, booted once. [`main_run`] starts it in the background so
/// both guests boot in parallel whatever order the tests run in.
fn ping_run() -> &'static Result<PingRun, String> {
    static RUN: OnceLock<Result<PingRun, String>> = OnceLock::new();
    RUN.get_or_init(|| std::panic::catch_unwind(run_ping_guest).map_err(panic_message))
}

fn run_ping_guest() -> PingRun {
    let backend = Backend::from_env();
    let image = Image::build(
        "gateway-ping",
        r#"
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
out=$(timeout 30 ping -c 3 -W 3 10.0.2.2 2>&1); rc=$?
echo "$out"
echo "@@RESULT ping_exit=$rc"
echo "@@RESULT ping_replies=$(echo "$out" | grep -c 'bytes from 10.0.2.2')"
"#,
    );
    let net = Network::start(
        backend,
        &NetOptions {
            fresh_netns_with_ping: true,
            ..NetOptions::default()
        },
    );
    let guest = Guest::spawn_with(&image, &net.attach, DEFAULT_MAC);
    let done = guest.wait_for(DONE_MARKER, Duration::from_secs(180));
    let context = format!(
        "({backend:?} backend)\n{}\nconsole:\n{}",
        net.diagnostics(),
        guest.output()
    );
    if let Err(e) = done {
        panic!("ping guest did not finish: {e}\n{context}");
    }
    eprintln!("gateway-ping: done after {:?}", guest.elapsed());
    PingRun {
        results: guest.results(),
        context,
    }
}

#[test]
fn ping_gateway_in_fresh_netns() {
    let run = match ping_run() {
        Ok(run) => run,
        Err(e) => panic!("ping guest run failed: {e}"),
    };
    let get = |k: &str| run.results.get(k).map(String::as_str);
    assert_eq!(get("ping_exit"), Some("0"), "{}", run.context);
    assert_eq!(get("ping_replies"), Some("3"), "{}", run.context);
}
