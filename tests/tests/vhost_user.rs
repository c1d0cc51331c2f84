//! `--vhost-user`: real TCG guests on QEMU's `-netdev vhost-user` (guest RAM in a shared memfd,
//! `vectors=0`: QEMU 7.2 under TCG crashes with MSI-X on) sharing one LAN with a `-netdev stream`
//! guest.
//!
//! 1. The stream guest leases an address, serves a file over HTTP (busybox httpd) and then fetches a
//!    small file from the host every couple of seconds for as long as it runs, counting failures.
//! 2. A vhost-user guest leases an address, resolves a name through warren's DNS forwarder (the
//!    test's own DNS server upstream), downloads 20 MB from and uploads 8 MB to the host (compared
//!    by checksum), pings the stream guest and fetches its file.
//! 3. That QEMU is killed, and a new one (same MAC, `reconnect=1` on its chardev) connects again:
//!    it gets a new port, leases, reaches the stream guest and the host; the stream guest never
//!    missed a fetch meanwhile.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use warren_tests::guest::{Image, READY_MARKER};
use warren_tests::qemu::{Guest, NetAttach};
use warren_tests::servers::{pseudo_random, DnsServer, HttpServer, UploadSink};
use warren_tests::warren::{Warren, WarrenConfig};

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const CHECKS_TIMEOUT: Duration = Duration::from_secs(900);
const CHECKS_DONE: &str = "@@RESULT checks=done";
const DOWN_LEN: usize = 20 << 20;
const UP_LEN: u64 = 8 << 20;
const SMALL_LEN: usize = 16 << 10;
const PEER_FILE_LEN: usize = 256 << 10;
const DNS_NAME: &str = "vhost.warren.test";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const VHOST_MAC: &str = "52:54:00:00:00:b1";
const STREAM_MAC: &str = "52:54:00:00:00:b2";

/// The guests' common start: result helpers, then a DHCP lease (address in `$ip`).
fn dhcp() -> String {
    format!(
        "r() {{ echo \"@@RESULT $1=$2\"; }}\nms() {{ awk '{{ printf \"%d\", $1 * 1000 }}' /proc/uptime; }}\n{}ip=$(cat /tmp/ip 2>/dev/null)\n",
        warren_tests::guest::dhcp_lease(120, 20, 3)
    )
}

fn stream_script(http_port: u16) -> String {
    let dhcp = dhcp();
    format!(
        r#"
{dhcp}
mkdir -p /www
dd if=/dev/urandom of=/www/peer bs=1k count={kib} 2>/dev/null
r peer_sha "$(sha256sum /www/peer | cut -d' ' -f1)"
httpd -p 8080 -h /www
r httpd_exit $?
ok=0; fail=0
while true; do
  if timeout 60 wget -q -O /tmp/small http://10.0.2.2:{http_port}/small; then ok=$((ok+1)); else fail=$((fail+1)); fi
  r stream_ok $ok
  r stream_fail $fail
  sleep 2
done
"#,
        kib = PEER_FILE_LEN >> 10
    )
}

fn vhost_script(http_port: u16, upload_port: u16, peer: &str, full: bool) -> String {
    let full = u8::from(full);
    let dhcp = dhcp();
    format!(
        r#"
{dhcp}
if [ {full} = 1 ]; then
  out=$(timeout 30 nslookup {DNS_NAME} 10.0.2.3 2>&1)
  r dns_exit $?
  echo "$out"
  r dns_answer "$(echo "$out" | sed -n '/^Name:/,$ s/^Address: *//p' | head -n 1)"
  t0=$(ms)
  timeout 600 wget -q -O /tmp/big http://10.0.2.2:{http_port}/big
  r down_exit $?
  r down_ms $(( $(ms) - t0 ))
  r down_sha "$(sha256sum /tmp/big | cut -d' ' -f1)"
  rm -f /tmp/big
  dd if=/dev/urandom of=/tmp/up bs=64k count={up_blocks} 2>/dev/null
  r up_sha "$(sha256sum /tmp/up | cut -d' ' -f1)"
  t0=$(ms)
  timeout 600 nc 10.0.2.2 {upload_port} < /tmp/up > /tmp/up.reply
  r up_exit $?
  r up_ms $(( $(ms) - t0 ))
  r up_reply "$(cat /tmp/up.reply)"
  rm -f /tmp/up
fi
timeout 60 wget -q -O /tmp/small http://10.0.2.2:{http_port}/small
r small_exit $?
r small_sha "$(sha256sum /tmp/small | cut -d' ' -f1)"
ok=fail
for i in $(seq 1 60); do
  if ping -c 1 -W 2 {peer} > /dev/null 2>&1; then ok=ok; break; fi
  sleep 1
done
r ping_peer $ok
r ping5_peer "$(ping -c 5 -i 0.2 -W 2 {peer} 2>&1 | grep -c 'bytes from')"
timeout 120 wget -q -O /tmp/peer http://{peer}:8080/peer
r peer_exit $?
r peer_sha "$(sha256sum /tmp/peer | cut -d' ' -f1)"
echo "{CHECKS_DONE}"
sleep 100000
"#,
        up_blocks = UP_LEN >> 16
    )
}

struct Phase {
    results: BTreeMap<String, String>,
    error: Option<String>,
    secs: f64,
}

struct Run {
    first: Phase,
    second: Phase,
    stream: BTreeMap<String, String>,
    /// The stream guest's fetch counts when the second vhost-user guest was done, and at the end.
    stream_ok_at_second: u64,
    http: HttpServer,
    sink: UploadSink,
    dns: DnsServer,
    warren_stdout: String,
    warren_stderr: String,
    consoles: String,
}

impl Run {
    fn context(&self) -> String {
        let e = |p: &Phase| p.error.clone().unwrap_or_else(|| "none".into());
        format!(
            "first error: {}\nsecond error: {}\nwarren stdout:\n{}\nwarren stderr:\n{}\n{}",
            e(&self.first),
            e(&self.second),
            self.warren_stdout,
            self.warren_stderr,
            self.consoles
        )
    }

    fn get<'a>(&'a self, p: &'a Phase, key: &str) -> &'a str {
        p.results
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("guest reported no {key:?}\n{}", self.context()))
    }
}

fn count(r: &BTreeMap<String, String>, key: &str) -> u64 {
    r.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn run_vhost_guest(image: &Image, sock: &std::path::Path, label: &str) -> (Guest, Phase) {
    let started = Instant::now();
    let g = Guest::spawn_with(image, &NetAttach::vhost_user(sock), VHOST_MAC);
    let error = g
        .wait_for(READY_MARKER, BOOT_TIMEOUT)
        .and_then(|t| {
            eprintln!("vhost-user: {label} guest booted after {t:?}");
            g.wait_for(CHECKS_DONE, CHECKS_TIMEOUT)
        })
        .map(|t| eprintln!("vhost-user: {label} guest done after {t:?}"))
        .err();
    let phase = Phase {
        results: g.results(),
        error,
        secs: started.elapsed().as_secs_f64(),
    };
    (g, phase)
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let http = HttpServer::start(BTreeMap::from([
            ("/big".to_owned(), pseudo_random(DOWN_LEN, 0x7668)),
            ("/small".to_owned(), pseudo_random(SMALL_LEN, 0x736d)),
        ]));
        let sink = UploadSink::start();
        let dns = DnsServer::start(BTreeMap::from([(DNS_NAME.to_owned(), DNS_ANSWER)]));
        let mut warren = Warren::spawn_with(WarrenConfig {
            args: vec![
                "--vhost-user".into(),
                "{dir}/vhost.sock".into(),
                "--dns-upstream".into(),
                dns.addr().to_string(),
                "-v".into(),
            ],
            ..WarrenConfig::default()
        });
        let dir = warren.dir().to_path_buf();
        let sock = dir.join("vhost.sock");
        warren.wait_for_path(&sock, Duration::from_secs(10));

        let stream_image = Image::build("vhost-stream-peer", &stream_script(http.port));
        let stream = Guest::spawn(&stream_image, &warren.netdev(), STREAM_MAC);
        let peer = stream
            .wait_for(READY_MARKER, BOOT_TIMEOUT)
            .and_then(|_| stream.wait_for("@@RESULT httpd_exit", BOOT_TIMEOUT))
            .map(|_| stream.results().get("ip").cloned().unwrap_or_default())
            .unwrap_or_default();
        assert!(
            !peer.is_empty(),
            "the stream guest got no address\n{}\nwarren:\n{}",
            stream.output(),
            warren.stderr()
        );

        let first_image = Image::build(
            "vhost-first",
            &vhost_script(http.port, sink.port, &peer, true),
        );
        let (g1, first) = run_vhost_guest(&first_image, &sock, "first");
        let mut consoles = format!("===== first vhost-user guest =====\n{}\n", g1.output());
        drop(g1);

        let second_image = Image::build(
            "vhost-second",
            &vhost_script(http.port, sink.port, &peer, false),
        );
        let (g2, second) = run_vhost_guest(&second_image, &sock, "second");
        consoles.push_str(&format!(
            "===== second vhost-user guest =====\n{}\n",
            g2.output()
        ));
        // The stream guest keeps fetching after the reconnect.
        let stream_ok_at_second = count(&stream.results(), "stream_ok");
        let deadline = Instant::now() + Duration::from_secs(240);
        while count(&stream.results(), "stream_ok") < stream_ok_at_second + 2
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_secs(1));
        }
        drop(g2);
        consoles.push_str(&format!("===== stream guest =====\n{}\n", stream.output()));
        let stream_results = stream.results();
        drop(stream);
        warren.stop(Duration::from_secs(5));
        Run {
            first,
            second,
            stream: stream_results,
            stream_ok_at_second,
            http,
            sink,
            dns,
            warren_stdout: warren.stdout(),
            warren_stderr: warren.stderr(),
            consoles,
        }
    })
}

#[test]
fn vhost_user_guest_leases_and_resolves() {
    let run = run();
    let p = &run.first;
    assert_eq!(run.get(p, "dhcp_exit"), "0", "{}", run.context());
    assert!(run.get(p, "ip").starts_with("10.0.2."), "{}", run.context());
    assert_eq!(run.get(p, "dns_exit"), "0", "{}", run.context());
    assert_eq!(
        run.get(p, "dns_answer"),
        DNS_ANSWER.to_string(),
        "{}",
        run.context()
    );
    assert!(
        run.dns.queries().iter().any(|q| q.name.contains("vhost")),
        "the test's DNS server saw no query: {:?}",
        run.dns.queries()
    );
}

#[test]
fn vhost_user_guest_moves_20mb_down_and_8mb_up() {
    let run = run();
    let p = &run.first;
    assert_eq!(run.get(p, "down_exit"), "0", "{}", run.context());
    assert_eq!(
        run.get(p, "down_sha"),
        run.http.sha256("/big"),
        "{}",
        run.context()
    );
    assert_eq!(run.get(p, "up_exit"), "0", "{}", run.context());
    let sha = run.get(p, "up_sha");
    assert_eq!(
        run.get(p, "up_reply"),
        format!("{sha} {UP_LEN}"),
        "{}",
        run.context()
    );
    assert!(
        run.sink
            .uploads()
            .iter()
            .any(|u| u.sha256 == sha && u.bytes == UP_LEN),
        "{:?}",
        run.sink.uploads()
    );
    eprintln!(
        "vhost-user: first guest's checks (boot, DNS, 20 MB down, 8 MB up, peer) took {:.0} s; \
         20 MB down in {} ms, 8 MB up in {} ms (TCG guest)",
        p.secs,
        run.get(p, "down_ms"),
        run.get(p, "up_ms")
    );
}

#[test]
fn vhost_user_guest_talks_to_a_stream_guest() {
    let run = run();
    for p in [&run.first, &run.second] {
        assert_eq!(run.get(p, "ping_peer"), "ok", "{}", run.context());
        assert_eq!(run.get(p, "ping5_peer"), "5", "{}", run.context());
        assert_eq!(run.get(p, "peer_exit"), "0", "{}", run.context());
        assert_eq!(
            run.get(p, "peer_sha"),
            run.stream
                .get("peer_sha")
                .map(String::as_str)
                .unwrap_or("?"),
            "{}",
            run.context()
        );
    }
}

#[test]
fn vhost_user_reconnect_gets_a_new_port_and_others_are_undisturbed() {
    let run = run();
    let p = &run.second;
    assert_eq!(run.get(p, "dhcp_exit"), "0", "{}", run.context());
    assert_eq!(run.get(p, "small_exit"), "0", "{}", run.context());
    assert_eq!(
        run.get(p, "small_sha"),
        run.http.sha256("/small"),
        "{}",
        run.context()
    );
    let connects = run
        .warren_stderr
        .matches("vhost-user guest connected")
        .count();
    assert!(
        connects >= 2,
        "warren saw {connects} vhost-user connections\n{}",
        run.context()
    );
    assert!(
        run.warren_stderr.contains("vhost-user: QEMU disconnected"),
        "{}",
        run.context()
    );
    assert!(
        count(&run.stream, "stream_ok") >= run.stream_ok_at_second + 2,
        "the stream guest stopped fetching after the reconnect: {:?}\n{}",
        run.stream,
        run.context()
    );
    assert_eq!(
        count(&run.stream, "stream_fail"),
        0,
        "the stream guest missed fetches: {:?}\n{}",
        run.stream,
        run.context()
    );
}

#[test]
fn warren_prints_the_qemu_command_line() {
    let run = run();
    for want in [
        "-netdev vhost-user,id=n0,chardev=c0",
        "memory-backend-memfd",
        "share=on",
        "vectors=0",
        "vhost.sock",
    ] {
        assert!(
            run.warren_stdout.contains(want),
            "warren did not print {want:?}:\n{}",
            run.warren_stdout
        );
    }
}
