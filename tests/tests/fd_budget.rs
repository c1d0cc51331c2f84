//! File descriptors are a budget (issue 9): warren runs under a hard fd limit of 256 (`prlimit`), so
//! its flow budget is 192 flows in all and 96 per guest. A raw client on `--socket` (QEMU framing)
//! floods UDP to thousands of host loopback ports through the gateway and sends SYNs to a host
//! listener that never gets an ACK back, for as long as a real TCG guest on the same socket boots,
//! leases an address and downloads twice over HTTP (checksums verified). The flood must hit its own
//! per-guest cap (counted) and never the guest. Afterwards the test opens connections to the
//! listener until warren's `accept()` fails with EMFILE, closes them, and a new client must still be
//! accepted and answered (the listener recovered by itself).
//!
//! Every flow goes to 127.0.0.1 only.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warren_tests::guest::{Image, DONE_MARKER, READY_MARKER};
use warren_tests::qemu::{Guest, NetAttach, DEFAULT_MAC};
use warren_tests::servers::{pseudo_random, HttpServer};

const FD_LIMIT: u32 = 256;
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const CHECKS_TIMEOUT: Duration = Duration::from_secs(300);
const HTTP_LEN: usize = 1 << 20;
const FLOOD_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0xf1];
const FLOOD_IP: [u8; 4] = [10, 0, 2, 50];
const LATE_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0xf2];
const LATE_IP: [u8; 4] = [10, 0, 2, 60];
const GATEWAY: [u8; 4] = [10, 0, 2, 2];

/// warren under `prlimit --nofile=256:256`, killed on drop.
struct LimitedWarren {
    child: std::cell::RefCell<Child>,
    dir: tempfile::TempDir,
}

impl LimitedWarren {
    fn start() -> LimitedWarren {
        Self::start_with(Some(FD_LIMIT), &["--dns-upstream", "127.0.0.1:9", "-v"])
    }

    /// warren with `args`, under `prlimit --nofile=N:N` when `limit` is given.
    fn start_with(limit: Option<u32>, args: &[&str]) -> LimitedWarren {
        let dir = tempfile::Builder::new()
            .prefix("warren-fd-budget-")
            .tempdir()
            .expect("temp dir");
        let exe = dir.path().join("warren");
        warren_tests::link_or_copy(&warren_tests::warren::warren_binary(), &exe)
            .expect("link or copy warren");
        let log = |n: &str| std::fs::File::create(dir.path().join(n)).expect("log file");
        let sock = dir.path().join("warren.sock");
        let api = dir.path().join("api.sock");
        let mut attempts = 0;
        let child = loop {
            attempts += 1;
            let mut cmd = Command::new("prlimit");
            if let Some(n) = limit {
                cmd.arg(format!("--nofile={n}:{n}"));
            }
            let mut child = cmd
                .arg("--")
                .arg(&exe)
                .arg("--socket")
                .arg(&sock)
                .arg("--api")
                .arg(&api)
                .args(args)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log("stdout.log"))
                .stderr(log("stderr.log"))
                .spawn()
                .expect("start prlimit (util-linux) with warren");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut exited = false;
            while !(sock.exists() && api.exists()) {
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("warren did not start within 10 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !exited {
                break child;
            }
            let _ = child.wait();
            let err = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            // A fork elsewhere in the test process may hold the copy open for writing (ETXTBSY).
            assert!(
                err.contains("Text file busy") && attempts < 5,
                "warren exited at start:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        LimitedWarren {
            child: std::cell::RefCell::new(child),
            dir,
        }
    }
    fn sock(&self) -> PathBuf {
        self.dir.path().join("warren.sock")
    }
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
    /// warren's resident set size in KiB.
    fn rss_kib(&self) -> u64 {
        let pid = self.child.borrow().id();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
    fn running(&self) -> bool {
        matches!(self.child.borrow_mut().try_wait(), Ok(None))
    }
    /// `warren ctl stats` as a map.
    fn stats(&self) -> BTreeMap<String, u64> {
        let out = Command::new(self.dir.path().join("warren"))
            .args(["ctl", "--api"])
            .arg(self.dir.path().join("api.sock"))
            .arg("stats")
            .output()
            .expect("warren ctl stats");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('\t')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }
}

impl Drop for LimitedWarren {
    fn drop(&mut self) {
        let c = self.child.get_mut();
        let _ = c.kill();
        let _ = c.wait();
    }
}

// ---- Frames, built by hand (QEMU stream framing: a 4-byte big-endian length, then the frame).

fn sum16(data: &[u8], mut sum: u32) -> u32 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4_frame(src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + l4.len());
    f.extend_from_slice(&[0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + l4.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = fold(sum16(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

fn pseudo(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src);
    p[4..8].copy_from_slice(&dst);
    p[9] = proto;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    sum16(&p, 0)
}

fn udp_frame(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_to(FLOOD_MAC, FLOOD_IP, GATEWAY, sport, dport, payload)
}

fn udp_to(
    mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut u = vec![0u8; 8 + payload.len()];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u[8..].copy_from_slice(payload);
    let c = fold(sum16(&u, pseudo(src, dst, 17, u.len())));
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv4_frame(mac, src, dst, 17, &u)
}

fn syn_frame(sport: u16, dport: u16) -> Vec<u8> {
    syn_to(FLOOD_MAC, FLOOD_IP, GATEWAY, sport, dport)
}

fn syn_to(mac: [u8; 6], src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&0x1000_0000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let c = fold(sum16(&t, pseudo(src, dst, 6, t.len())));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4_frame(mac, src, dst, 6, &t)
}

fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

fn send_framed(s: &mut UnixStream, frame: &[u8]) -> std::io::Result<()> {
    let mut buf = (frame.len() as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(frame);
    s.write_all(&buf)
}

/// Reads framed frames from `s` until `want` matches one or `timeout` passes.
fn wait_frame(s: &mut UnixStream, timeout: Duration, want: impl Fn(&[u8]) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut len = [0u8; 4];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(10))));
        if s.read_exact(&mut len).is_err() {
            return false;
        }
        let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
        if s.read_exact(&mut f).is_err() {
            return false;
        }
        if want(&f) {
            return true;
        }
    }
    false
}

fn is_arp_reply_from_gateway(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] && f[28..32] == GATEWAY
}

/// The flood: UDP to thousands of host loopback ports (through 10.0.2.2) plus a SYN to `syn_port`
/// every 16 datagrams, paced at about 2000 frames/s, until `stop`. Returns the frames sent.
fn flood(sock: &Path, syn_port: u16, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let mut s = UnixStream::connect(sock).expect("flooder connects");
    // Read (and discard) everything warren sends back, so only the budget is under test.
    let mut r = s.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
    });
    let mut i: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let port = 20000 + (i % 6000) as u16;
        if send_framed(&mut s, &udp_frame(40000, port, b"flood")).is_err() {
            return;
        }
        if i.is_multiple_of(16) {
            let sport = 30000 + ((i / 16) % 20000) as u16;
            if send_framed(&mut s, &syn_frame(sport, syn_port)).is_err() {
                return;
            }
        }
        i += 1;
        sent.fetch_add(1, Ordering::Relaxed);
        if i.is_multiple_of(4) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn script(http_port: u16) -> String {
    let dhcp = warren_tests::guest::dhcp_lease(90, 10, 3);
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
{dhcp}for n in 1 2; do
  timeout 90 wget -q -O /tmp/f http://10.0.2.2:{http_port}/f
  r http_exit_$n $?
  r http_sha_$n "$(sha256sum /tmp/f | cut -d' ' -f1)"
  rm -f /tmp/f
done
"#
    )
}

#[test]
fn a_flooding_guest_cannot_exhaust_fds_for_others_and_accept_recovers() {
    let http = HttpServer::start(BTreeMap::from([(
        "/f".to_owned(),
        pseudo_random(HTTP_LEN, 0xfdb),
    )]));
    // A host listener for the flood's SYNs: accepts and holds every connection.
    let syn_sink = TcpListener::bind("127.0.0.1:0").expect("bind the SYN sink");
    let syn_port = syn_sink.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in syn_sink.incoming().flatten() {
            held.push(c);
        }
    });
    let warren = LimitedWarren::start();
    let log = warren.stderr();
    assert!(
        log.contains(&format!("fd limit {FD_LIMIT}")),
        "warren should derive its flow budget from the fd limit:\n{log}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (sock, stop, sent) = (warren.sock(), stop.clone(), sent.clone());
        std::thread::spawn(move || flood(&sock, syn_port, stop, sent))
    };
    let image = Image::build("fd-budget", &script(http.port));
    let netdev = format!(
        "stream,id=n0,server=off,addr.type=unix,addr.path={}",
        warren.sock().display()
    );
    let guest = Guest::spawn_with(&image, &NetAttach::netdev(netdev), DEFAULT_MAC);
    let outcome = guest
        .wait_for(READY_MARKER, BOOT_TIMEOUT)
        .and_then(|_| guest.wait_for(DONE_MARKER, CHECKS_TIMEOUT));
    let during = warren.stats();
    stop.store(true, Ordering::Relaxed);
    let _ = flooder.join();
    let ctx = || {
        format!(
            "flood frames sent: {}\nstats: {during:?}\nwarren stderr:\n{}\nguest console:\n{}",
            sent.load(Ordering::Relaxed),
            warren.stderr(),
            guest.output()
        )
    };
    assert!(
        outcome.is_ok(),
        "guest did not finish: {outcome:?}\n{}",
        ctx()
    );
    let r = guest.results();
    assert_eq!(
        r.get("dhcp_exit").map(String::as_str),
        Some("0"),
        "{}",
        ctx()
    );
    assert_eq!(
        r.get("ip").map(String::as_str),
        Some("10.0.2.15"),
        "{}",
        ctx()
    );
    for n in [1, 2] {
        assert_eq!(
            r.get(&format!("http_exit_{n}")).map(String::as_str),
            Some("0"),
            "download {n}\n{}",
            ctx()
        );
        assert_eq!(
            r.get(&format!("http_sha_{n}")),
            Some(&http.sha256("/f")),
            "download {n}\n{}",
            ctx()
        );
    }
    // The flood was really over its budget: it hit its per-guest cap, and warren never ran out.
    assert!(
        sent.load(Ordering::Relaxed) > 2000,
        "the flood sent too little to mean anything\n{}",
        ctx()
    );
    assert!(
        during.get("drop_flow_limit").copied().unwrap_or(0) > 0,
        "{}",
        ctx()
    );
    assert_eq!(during.get("flows_max"), Some(&192), "{}", ctx());
    assert_eq!(during.get("flows_max_per_guest"), Some(&96), "{}", ctx());
    assert!(
        during.get("flows_live").copied().unwrap_or(u64::MAX) <= 192,
        "{}",
        ctx()
    );

    // Now exhaust the fds with plain connections to the listener, until accept() fails.
    let mut hogs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !warren.stderr().contains("accept failed") {
        assert!(
            Instant::now() < deadline && hogs.len() < 1000,
            "accept() never failed with {} connections open\n{}",
            hogs.len(),
            ctx()
        );
        for _ in 0..8 {
            hogs.push(UnixStream::connect(warren.sock()).expect("connect a hog"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = warren.stderr();
    assert!(
        log.contains("Too many open files"),
        "accept failed for another reason:\n{log}"
    );
    drop(hogs);
    // A new client is accepted and answered once the fds are back, without anyone's help.
    let mut late = UnixStream::connect(warren.sock()).expect("connect after the flood");
    let mut answered = false;
    for _ in 0..10 {
        send_framed(&mut late, &arp_request(LATE_MAC, LATE_IP, GATEWAY)).expect("send ARP");
        if wait_frame(&mut late, Duration::from_secs(1), is_arp_reply_from_gateway) {
            answered = true;
            break;
        }
    }
    assert!(answered, "the listener did not recover\n{}", ctx());
    assert!(warren.running(), "warren died\n{}", ctx());
    let after = warren.stats();
    eprintln!(
        "fd-budget: flood frames {}; stats during: {during:?}; after: {after:?}",
        sent.load(Ordering::Relaxed)
    );
}

/// A raw client on warren's socket that reads and discards everything it is sent.
fn raw_client(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock).expect("raw client connects");
    let mut r = s.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
    });
    s
}

fn dns_query(id: u16) -> Vec<u8> {
    let mut q = vec![0u8; 12];
    q[..2].copy_from_slice(&id.to_be_bytes());
    q[2] = 0x01;
    q[5] = 1;
    q.extend_from_slice(b"\x05flood\x07example\x00\x00\x01\x00\x01");
    q
}

/// A fragment: the first part of a UDP datagram with More Fragments set.
fn fragment(id: u16) -> Vec<u8> {
    let mut f = udp_to(
        FLOOD_MAC,
        [10, 0, 0, 50],
        [10, 0, 0, 2],
        40000,
        9,
        &[0u8; 64],
    );
    f[14 + 4..14 + 6].copy_from_slice(&id.to_be_bytes());
    f[14 + 6] = 0x20;
    f[14 + 10] = 0;
    f[14 + 11] = 0;
    let c = fold(sum16(&f[14..34], 0));
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    f
}

/// Bounded memory under abuse: one warren (its usual fd limit, a /16 LAN so that address-based
/// tables could grow) takes a SYN flood, a UDP flood to 50,000 host loopback ports, a DNS query
/// flood, a fragment flood, an ARP flood from 20,000 addresses and 100 guests at once. After each,
/// its RSS must stay under a bound, and the caps' counters must show the floods were capped.
#[test]
fn memory_stays_bounded_under_floods() {
    const BOUND_KIB: u64 = 96 * 1024;
    let syn_sink = TcpListener::bind("127.0.0.1:0").expect("bind the SYN sink");
    let syn_port = syn_sink.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in syn_sink.incoming().flatten() {
            held.push(c);
        }
    });
    // DNS "upstream" that reads and never answers.
    let dns_sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the DNS sink");
    let dns_up = dns_sink.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while dns_sink.recv(&mut buf).is_ok() {}
    });
    let w = LimitedWarren::start_with(
        None,
        // The switch's own MAC caps (`--max-macs-per-port`, default 16) and storm control would stop
        // the ARP flood before the gateway: lift them so the gateway's neighbour table bound is what
        // is tested (the switch's bounds have their own tests in vde-switch/tests/lan_safety.rs).
        &[
            "--net",
            "10.0.0.0/16",
            "--dns-upstream",
            &dns_up,
            "--max-macs",
            "100000",
            "--max-macs-per-port",
            "100000",
            "--bcast-rate",
            "0",
            "-v",
        ],
    );
    let (me, gw, dns) = ([10, 0, 0, 50], [10, 0, 0, 2], [10, 0, 0, 3]);
    let mut c = raw_client(&w.sock());
    let idle = w.rss_kib();
    let mut report = vec![("idle", idle)];
    let settle = |w: &LimitedWarren| {
        std::thread::sleep(Duration::from_millis(500));
        w.rss_kib()
    };
    let pace = |i: u32| {
        if i.is_multiple_of(64) {
            std::thread::sleep(Duration::from_millis(1));
        }
    };

    for i in 0..50_000u32 {
        let f = syn_to(FLOOD_MAC, me, gw, 1024 + (i % 60_000) as u16, syn_port);
        send_framed(&mut c, &f).expect("SYN flood");
        pace(i);
    }
    report.push(("SYN flood (50,000 SYNs)", settle(&w)));
    for i in 0..50_000u32 {
        let f = udp_to(FLOOD_MAC, me, gw, 40000, 10_000 + i as u16, b"flood");
        send_framed(&mut c, &f).expect("UDP flood");
        pace(i);
    }
    report.push(("UDP flood (50,000 ports)", settle(&w)));
    for i in 0..50_000u32 {
        let f = udp_to(
            FLOOD_MAC,
            me,
            dns,
            5000 + (i % 50_000) as u16,
            53,
            &dns_query(i as u16),
        );
        send_framed(&mut c, &f).expect("DNS flood");
        pace(i);
    }
    report.push(("DNS flood (50,000 queries)", settle(&w)));
    for i in 0..50_000u32 {
        send_framed(&mut c, &fragment(i as u16)).expect("fragment flood");
        pace(i);
    }
    report.push(("fragment flood (50,000)", settle(&w)));
    for i in 0..20_000u32 {
        let mac = [0x52, 0x54, 0x02, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let ip = [10, 0, 1 + (i >> 8) as u8 % 250, i as u8];
        send_framed(&mut c, &arp_request(mac, ip, gw)).expect("ARP flood");
        pace(i);
    }
    report.push(("ARP flood (20,000 sources)", settle(&w)));
    let mut many = Vec::new();
    for g in 0..100u32 {
        let mut s = raw_client(&w.sock());
        let mac = [0x52, 0x54, 0x03, 0, 0, g as u8];
        let ip = [10, 0, 200, g as u8 + 1];
        send_framed(&mut s, &arp_request(mac, ip, gw)).expect("guest ARP");
        for p in 0..20u16 {
            send_framed(&mut s, &udp_to(mac, ip, gw, 7000, 30_000 + p, b"hi")).expect("guest UDP");
        }
        many.push(s);
    }
    report.push(("100 guests, 20 flows each", settle(&w)));

    let stats = w.stats();
    let table: Vec<String> = report
        .iter()
        .map(|(what, kib)| format!("{what}: {:.1} MiB", *kib as f64 / 1024.0))
        .collect();
    eprintln!("fd-budget memory: {}", table.join("; "));
    eprintln!("fd-budget memory stats: {stats:?}");
    assert!(w.running(), "warren died\n{}", w.stderr());
    for (what, kib) in &report {
        assert!(
            *kib > 0 && *kib < BOUND_KIB,
            "RSS after {what}: {kib} KiB (bound {BOUND_KIB})\n{table:?}"
        );
    }
    let get = |k: &str| stats.get(k).copied().unwrap_or(0);
    assert!(
        get("drop_syn_flood") + get("drop_flow_limit") > 0,
        "{stats:?}"
    );
    assert!(get("flows_live") <= get("flows_max"), "{stats:?}");
    assert!(get("dns_drop_pending") > 0, "{stats:?}");
    assert!(get("dns_pending") <= 4096, "{stats:?}");
    assert_eq!(get("drop_fragment"), 50_000, "{stats:?}");
    assert!(get("neigh_entries") <= get("neigh_max"), "{stats:?}");
    assert!(get("neigh_full") > 0, "{stats:?}");
}
