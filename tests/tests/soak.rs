//! The hostile-guest soak test (issue 9, part 6).
//!
//! One warren, two ports on its `--socket`: a real Linux guest (QEMU TCG) that leases an address,
//! then downloads (8 MiB, HTTP) and uploads (4 MiB, TCP) with SHA-256 checked against host
//! loopback servers, round after round; and an attacker, a raw client running the seeded generator
//! of `warren_tests::hostile` (ARP spoofing of the gateway and of the guest's lease, broken
//! IPv4/TCP/UDP/ICMP, forged ICMP errors quoting the guest's flows, RST/ACK injection on its
//! guessed 4-tuples, hostile DHCP and DNS, VLAN tags, odd MACs, jumbo and runt frames, floods).
//! Meanwhile other connections break the stream framing (length 0, 13, 65550, 2^32-1,
//! truncated) and must be closed one by one. Afterwards: warren is up, every byte the guest sent
//! and received arrived intact, the guest still holds its lease, the drops were counted, and a new
//! client still gets a lease, an ARP answer and a DNS answer.
//!
//! Everything (warren, QEMU, the servers, the attacker) runs inside a network namespace of its
//! own (the test re-executes itself under `unshare --net` with only `lo` up), so nothing can leave
//! loopback whatever warren does with the attacker's frames. Needs root, like the other e2e tests.
//!
//! Knobs (environment):
//!
//! | variable | meaning (default) |
//! | --- | --- |
//! | `WARREN_SOAK_SEED` | replay a run (the seed is printed at start; decimal or 0x hex) |
//! | `WARREN_SOAK_SECS` | how long the attack runs at least (90); it also lasts until the guest finished one round, but at most 4× this |
//! | `WARREN_SOAK_MAX_FRAMES` | stop the attack after this many frames (100000000) |
//! | `WARREN_SOAK_PPS` | pace the attacker to this many frames/s (default 0 = as fast as warren takes them; 20000 with `GENTLE`) |
//! | `WARREN_SOAK_GENTLE=1` | a lighter run for debugging: leaves out [`PENDING_PHASES`] (broadcast storm, random-MAC flood), SYN flood from the attacker's own address only, paced, no strict checks |
//! | `WARREN_SOAK_PHASES`, `WARREN_SOAK_SKIP` | comma-separated phase names to run / leave out (all; with `GENTLE` all but the pending ones) |
//! | `WARREN_SOAK_STORM` | frames per broadcast-storm batch (256) |
//! | `WARREN_SOAK_UDP_PORTS` | distinct host ports of the UDP flood (3000) |
//! | `WARREN_SOAK_DHCP_MACS` | distinct MACs of the DHCP DISCOVER flood (64; above ~230 the /24 pool is exhausted) |
//! | `WARREN_SOAK_SYN_SOURCES` | source addresses of the SYN flood: the attacker's own plus made-up unleased LAN addresses (50; 1 with `GENTLE`) |
//! | `WARREN_SOAK_NO_READ=1` | the attacker never reads what warren sends it |
//! | `WARREN_SOAK_STRICT=1` (the default unless `GENTLE`) | also require that no frame for the guest's address reached the attacker and that every DNS lookup of the guest succeeded |

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use warren_tests::guest::{Image, READY_MARKER};
use warren_tests::hostile::{self, Generator, Parsed, Phase, Rng, StreamClient, Target};
use warren_tests::qemu::{Guest, NetAttach, DEFAULT_MAC};
use warren_tests::servers::{closed_port, pseudo_random, DnsServer, HttpServer, UploadSink};
use warren_tests::warren::{warren_binary, Warren, WarrenConfig, NETNS_SETUP};

const INNER_ENV: &str = "WARREN_SOAK_INNER";
const TEST_NAME: &str = "hostile_guest_soak";
const DNS_NAME: &str = "soak.test";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const DOWNLOAD_LEN: usize = 8 << 20;
const UPLOAD_LEN: u64 = 4 << 20;
/// Rounds the guest does at most (it stops earlier when the attack is over).
const MAX_ROUNDS: u32 = 200;
const CHECKS_DONE: &str = "@@SOAK checks done";
/// Printed by the guest after its `ip` result line (so that line is complete).
const LEASED: &str = "@@SOAK leased";
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const LEASE_TIMEOUT: Duration = Duration::from_secs(240);
/// The MAC of the client that asks for a lease after the attack.
const NEWCOMER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x77, 0x77, 0x01];

#[test]
fn hostile_guest_soak() {
    if std::env::var_os(INNER_ENV).is_some() {
        return soak_in_namespace();
    }
    assert!(
        warren_tests::is_root(),
        "the soak test makes its own network namespace (unshare --net) and runs warren as nobody: run it as root (CI does)"
    );
    // What needs the outside world happens here, before the namespace: the guest kernel is
    // fetched (apt-get download) on first use.
    let _ = warren_tests::kernel::kernel();
    let _ = warren_binary();
    let exe = std::env::current_exe().expect("current test executable");
    let status = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", NETNS_SETUP, "sh"])
        .arg(&exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(INNER_ENV, "1")
        .status()
        .expect("run unshare (util-linux)");
    assert!(
        status.success(),
        "the soak run inside its own network namespace failed ({status}); its output is above"
    );
}

// ------------------------------------------------------------------ settings

struct Settings {
    full: bool,
    seed: u64,
    secs: Duration,
    max_frames: u64,
    pps: u64,
    phases: Vec<Phase>,
    storm_batch: usize,
    udp_ports: u16,
    dhcp_macs: u32,
    syn_sources: u8,
    no_read: bool,
    strict: bool,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?}: {e}")),
        _ => default,
    }
}

fn env_flag(name: &str) -> bool {
    matches!(
        std::env::var(name).as_deref(),
        Ok("1") | Ok("yes") | Ok("true")
    )
}

/// The heaviest attacks (storm control, fair queues, the MAC caps and the per-port fd budget defend
/// against them). They always run, except with `WARREN_SOAK_GENTLE=1` (a paced run for debugging).
const PENDING_PHASES: [Phase; 2] = [Phase::BroadcastStorm, Phase::RandomMacFlood];
/// SYN-flood source addresses by default (made-up unleased LAN addresses: the budget is charged to
/// the port, whatever addresses it uses); 1 with `WARREN_SOAK_GENTLE=1`.
const FULL_SYN_SOURCES: u8 = 50;
/// The attacker's pace with `WARREN_SOAK_GENTLE=1` (frames/s); by default it is unpaced.
const DEFAULT_PPS: u64 = 20_000;

impl Settings {
    fn from_env() -> Settings {
        let full = !env_flag("WARREN_SOAK_GENTLE");
        let mut phases = match std::env::var("WARREN_SOAK_PHASES") {
            Ok(l) if !l.trim().is_empty() => {
                Phase::parse_list(&l).unwrap_or_else(|e| panic!("{e}"))
            }
            _ if full => Phase::ALL.to_vec(),
            _ => Phase::ALL
                .into_iter()
                .filter(|p| !PENDING_PHASES.contains(p))
                .collect(),
        };
        if let Ok(skip) = std::env::var("WARREN_SOAK_SKIP") {
            let skip = Phase::parse_list(&skip).unwrap_or_else(|e| panic!("{e}"));
            phases.retain(|p| !skip.contains(p));
        }
        assert!(!phases.is_empty(), "no soak phase left to run");
        Settings {
            full,
            seed: hostile::seed_from_env(),
            secs: Duration::from_secs(env_num("WARREN_SOAK_SECS", 90)),
            max_frames: env_num("WARREN_SOAK_MAX_FRAMES", 100_000_000),
            pps: env_num("WARREN_SOAK_PPS", if full { 0 } else { DEFAULT_PPS }),
            phases,
            storm_batch: env_num("WARREN_SOAK_STORM", 256),
            udp_ports: env_num("WARREN_SOAK_UDP_PORTS", 3000),
            dhcp_macs: env_num("WARREN_SOAK_DHCP_MACS", 64),
            syn_sources: env_num(
                "WARREN_SOAK_SYN_SOURCES",
                if full { FULL_SYN_SOURCES } else { 1 },
            ),
            no_read: env_flag("WARREN_SOAK_NO_READ"),
            strict: full || env_flag("WARREN_SOAK_STRICT"),
        }
    }

    fn has(&self, p: Phase) -> bool {
        self.phases.contains(&p)
    }
}

// ------------------------------------------------------------------ the guest's control server

/// Tells the guest when the attack runs: `/go` answers once the attacker has started, `/next`
/// answers `more` while the attack should go on and `stop` once it is over.
struct Control {
    started: Mutex<Option<Instant>>,
    cv: Condvar,
    stop: AtomicBool,
    nexts: AtomicU32,
    /// When the guest finished its first round (its first `/next`).
    first_next: Mutex<Option<Instant>>,
    secs: Duration,
}

impl Control {
    fn start(secs: Duration) -> (Arc<Control>, u16) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind control server");
        let port = l.local_addr().expect("local addr").port();
        let c = Arc::new(Control {
            started: Mutex::new(None),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            nexts: AtomicU32::new(0),
            first_next: Mutex::new(None),
            secs,
        });
        let c2 = c.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let c = c2.clone();
                std::thread::spawn(move || {
                    let _ = c.serve(conn);
                });
            }
        });
        (c, port)
    }

    fn set_started(&self) {
        *self.started.lock().expect("lock") = Some(Instant::now());
        self.cv.notify_all();
    }

    fn serve(&self, conn: TcpStream) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut r = BufReader::new(conn.try_clone()?);
        let mut line = String::new();
        r.read_line(&mut line)?;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
                break;
            }
        }
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let body = match path {
            "/go" => {
                let mut s = self.started.lock().expect("lock");
                let deadline = Instant::now() + Duration::from_secs(600);
                while s.is_none() && Instant::now() < deadline {
                    s = self
                        .cv
                        .wait_timeout(s, Duration::from_secs(1))
                        .expect("lock")
                        .0;
                }
                if s.is_some() {
                    "go"
                } else {
                    "no-attack"
                }
            }
            "/next" => {
                self.nexts.fetch_add(1, Ordering::SeqCst);
                self.first_next
                    .lock()
                    .expect("lock")
                    .get_or_insert_with(Instant::now);
                let started = *self.started.lock().expect("lock");
                if started.is_some_and(|t| t.elapsed() >= self.secs) {
                    self.stop.store(true, Ordering::SeqCst);
                }
                if self.stop.load(Ordering::SeqCst) {
                    "stop"
                } else {
                    "more"
                }
            }
            _ => "?",
        };
        let mut w = conn;
        write!(
            w,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        w.flush()
    }
}

fn guest_script(http: u16, upload: u16, control: u16) -> String {
    let dhcp = warren_tests::guest::dhcp_lease(120, 20, 3);
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
ms() {{ awk '{{ printf "%d", $1 * 1000 }}' /proc/uptime; }}
{dhcp}echo "{LEASED}"
r go "$(timeout 700 wget -q -O - http://10.0.2.2:{control}/go 2>&1)"
n=0
while :; do
  n=$((n+1))
  t0=$(ms)
  timeout 600 wget -q -O /tmp/f http://10.0.2.2:{http}/f
  r dl_exit_$n $?
  t1=$(ms)
  r dl_ms_$n $((t1 - t0))
  r dl_sha_$n "$(sha256sum /tmp/f | cut -d' ' -f1)"
  rm -f /tmp/f
  dd if=/dev/urandom of=/tmp/up bs=64k count={upload_blocks} 2>/dev/null
  r up_sha_$n "$(sha256sum /tmp/up | cut -d' ' -f1)"
  t0=$(ms)
  timeout 600 nc 10.0.2.2 {upload} < /tmp/up > /tmp/up.reply
  r up_exit_$n $?
  t1=$(ms)
  r up_ms_$n $((t1 - t0))
  r up_reply_$n "$(cat /tmp/up.reply)"
  rm -f /tmp/up /tmp/up.reply
  out=$(timeout 30 nslookup {DNS_NAME} 10.0.2.3 2>&1)
  r dns_$n "$(echo "$out" | sed -n '/^Name:/,$ s/^Address: *//p' | head -n 1)"
  st=$(timeout 120 wget -q -O - http://10.0.2.2:{control}/next 2>/dev/null)
  r next_$n "$st"
  [ "$st" = more ] || break
  [ $n -ge {MAX_ROUNDS} ] && break
done
r rounds $n
echo "{CHECKS_DONE}"
sleep 100000
"#,
        upload_blocks = UPLOAD_LEN / (64 << 10),
    )
}

// ------------------------------------------------------------------ the attacker

#[derive(Default, Debug)]
struct AttackReport {
    frames: u64,
    bytes: u64,
    per_phase: BTreeMap<&'static str, u64>,
    reconnects: u32,
    write_errors: Vec<String>,
    elapsed: Duration,
}

/// What the attacker received.
#[derive(Default)]
struct Received {
    frames: AtomicU64,
    /// Unicast IPv4 to the victim's address, or frames to the victim's MAC, delivered to the
    /// attacker's port: traffic the attacker should never see.
    for_victim: AtomicU64,
    first_for_victim: Mutex<Option<String>>,
}

fn victim_mac() -> [u8; 6] {
    hostile::mac_from_str(DEFAULT_MAC).expect("DEFAULT_MAC is a MAC")
}

fn spawn_reader(s: UnixStream, victim_ip: Ipv4Addr, got: Arc<Received>) {
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, s);
        loop {
            let mut len = [0u8; 4];
            if r.read_exact(&mut len).is_err() {
                return;
            }
            let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
            if r.read_exact(&mut f).is_err() {
                return;
            }
            got.frames.fetch_add(1, Ordering::Relaxed);
            let group = f.first().is_some_and(|b| b & 1 == 1);
            let to_victim_mac = f.get(..6) == Some(&victim_mac()[..]);
            let to_victim_ip = match hostile::parse(&f) {
                Parsed::Udp { dst, .. } | Parsed::Ipv4 { dst, .. } => dst == victim_ip && !group,
                _ => false,
            };
            if to_victim_ip || to_victim_mac {
                got.for_victim.fetch_add(1, Ordering::Relaxed);
                let mut first = got.first_for_victim.lock().expect("lock");
                if first.is_none() {
                    *first = Some(format!("{:?} ({} bytes)", hostile::parse(&f), f.len()));
                }
            }
        }
    });
}

fn run_attacker(
    socket: PathBuf,
    mut generator: Generator,
    settings: &Settings,
    stop: Arc<AtomicBool>,
    got: Arc<Received>,
) -> (AttackReport, Option<UnixStream>) {
    let victim_ip = generator.target().victim_ip;
    let connect = || -> Option<UnixStream> {
        let s = UnixStream::connect(&socket).ok()?;
        s.set_write_timeout(Some(Duration::from_secs(10))).ok()?;
        if !settings.no_read {
            spawn_reader(s.try_clone().ok()?, victim_ip, got.clone());
        }
        Some(s)
    };
    let mut report = AttackReport::default();
    let started = Instant::now();
    let hard_cap = settings.secs * 4 + Duration::from_secs(600);
    let mut conn = connect().expect("attacker connects to warren's socket");
    let mut buf = Vec::with_capacity(1 << 20);
    'run: while !stop.load(Ordering::SeqCst) {
        for &phase in &settings.phases {
            if stop.load(Ordering::SeqCst)
                || started.elapsed() >= hard_cap
                || report.frames >= settings.max_frames
            {
                break 'run;
            }
            let frames = generator.frames(phase);
            buf.clear();
            for f in &frames {
                buf.extend_from_slice(&hostile::framed(f));
            }
            if let Err(e) = conn.write_all(&buf) {
                // A framing break is never sent on this connection, so warren has no reason to
                // close it; note it and carry on with a new one.
                report.write_errors.push(format!("{phase:?}: {e}"));
                report.reconnects += 1;
                match connect() {
                    Some(c) => conn = c,
                    None => break 'run,
                }
                continue;
            }
            report.frames += frames.len() as u64;
            report.bytes += buf.len() as u64;
            *report.per_phase.entry(phase.name()).or_default() += frames.len() as u64;
            if settings.pps > 0 {
                let due = Duration::from_secs_f64(report.frames as f64 / settings.pps as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    report.elapsed = started.elapsed();
    (report, Some(conn))
}

/// One broken-framing connection: whether warren closed it, and how long that took.
struct FramingResult {
    name: &'static str,
    closed: bool,
    after: Duration,
    detail: String,
}

fn break_framing(socket: &Path, name: &'static str, bytes: &[u8], we_end: bool) -> FramingResult {
    let started = Instant::now();
    let mut s = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            return FramingResult {
                name,
                closed: false,
                after: started.elapsed(),
                detail: format!("connect failed: {e}"),
            }
        }
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    // warren may close before everything is written (EPIPE): that is fine.
    let _ = s.write_all(bytes);
    if !we_end {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let mut sink = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut sink) {
            Ok(0) => {
                return FramingResult {
                    name,
                    closed: true,
                    after: started.elapsed(),
                    detail: "EOF".into(),
                }
            }
            Ok(_) => continue, // broadcast frames from the LAN before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return FramingResult {
                    name,
                    closed: false,
                    after: started.elapsed(),
                    detail: "still open after 20 s".into(),
                }
            }
            Err(e) => {
                return FramingResult {
                    name,
                    closed: true,
                    after: started.elapsed(),
                    detail: format!("{e}"),
                }
            }
        }
    }
}

fn run_framing_breaker(socket: PathBuf, seed: u64, stop: Arc<AtomicBool>) -> Vec<FramingResult> {
    let mut rng = Rng::new(seed ^ 0x00f7_a3e1);
    let mut out = Vec::new();
    // At least one full pass, however short the attack.
    let mut passes = 0;
    while passes == 0 || !stop.load(Ordering::SeqCst) {
        for (name, bytes, we_end) in hostile::bad_framings(&mut rng) {
            out.push(break_framing(&socket, name, &bytes, we_end));
            std::thread::sleep(Duration::from_millis(300));
        }
        passes += 1;
    }
    out
}

// ------------------------------------------------------------------ after the attack

struct Newcomer {
    lease: Result<Ipv4Addr, String>,
    arp: Result<(), String>,
    dns: Result<(), String>,
}

/// A new client on a new connection: DHCP DISCOVER/REQUEST, ARP for the gateway, a DNS query.
/// Each exchange is retried a few times (its setup, as a real client would), then judged.
fn newcomer(socket: &Path, victim_ip: Ipv4Addr) -> Newcomer {
    let mac = NEWCOMER_MAC;
    let gw = Ipv4Addr::new(10, 0, 2, 2);
    let dns = Ipv4Addr::new(10, 0, 2, 3);
    let fail = |why: String| Newcomer {
        lease: Err(why.clone()),
        arp: Err("no lease".into()),
        dns: Err("no lease".into()),
    };
    let mut c = match StreamClient::connect(socket) {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot connect: {e}")),
    };
    let dhcp_reply = |want: u8, xid: u32| {
        move |f: &[u8]| match hostile::parse(f) {
            Parsed::Udp {
                sport: 67,
                dport: 68,
                payload,
                ..
            } => hostile::dhcp_reply_info(&payload)
                .filter(|(t, _, x)| *x == xid && (*t == want || *t == hostile::DHCPNAK)),
            _ => None,
        }
    };
    let mut offered = None;
    for attempt in 0..6u32 {
        let xid = 0x50a4_0000 + attempt;
        if let Err(e) = c.send(&hostile::dhcp_client_frame(
            mac,
            xid,
            hostile::DHCPDISCOVER,
            None,
            None,
        )) {
            return fail(format!("send DISCOVER: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        if let Some((_, ip, _)) = c.recv_matching(deadline, dhcp_reply(hostile::DHCPOFFER, xid)) {
            offered = Some(ip);
            break;
        }
    }
    let Some(offered) = offered else {
        return fail("no OFFER to 6 DISCOVERs".into());
    };
    let mut lease = Err(format!("offered {offered}, but no ACK to 3 REQUESTs"));
    for attempt in 0..3u32 {
        let xid = 0x50a4_1000 + attempt;
        let f = hostile::dhcp_client_frame(mac, xid, hostile::DHCPREQUEST, Some(offered), Some(gw));
        if c.send(&f).is_err() {
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        match c.recv_matching(deadline, dhcp_reply(hostile::DHCPACK, xid)) {
            Some((hostile::DHCPACK, ip, _)) if ip == offered && ip != victim_ip => {
                lease = Ok(ip);
                break;
            }
            Some((t, ip, _)) => {
                lease = Err(format!(
                    "REQUEST for {offered} answered with type {t}, address {ip}"
                ));
                break;
            }
            None => {}
        }
    }
    let Ok(ip) = lease else {
        return Newcomer {
            lease,
            arp: Err("no lease".into()),
            dns: Err("no lease".into()),
        };
    };
    let mut arp = Err("no ARP reply for the gateway to 3 requests".to_string());
    for _ in 0..3 {
        let req = hostile::eth(
            hostile::BROADCAST,
            mac,
            hostile::ETHERTYPE_ARP,
            &hostile::arp(1, mac, ip, [0; 6], gw),
        );
        if c.send(&req).is_err() {
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = c.recv_matching(deadline, |f| match hostile::parse(f) {
            Parsed::Arp {
                op: 2,
                sha,
                spa,
                tpa,
            } if spa == gw && tpa == ip => Some(sha),
            _ => None,
        });
        if let Some(sha) = got {
            arp = if sha == hostile::GATEWAY_MAC {
                Ok(())
            } else {
                Err(format!("the gateway's address answered from {sha:02x?}"))
            };
            break;
        }
    }
    let mut dns_result = Err("no DNS answer to 3 queries".to_string());
    for attempt in 0..3u16 {
        let id = 0x7a00 + attempt;
        let q = hostile::dns_query(id, DNS_NAME, 1);
        let f = hostile::udp_frame(hostile::GATEWAY_MAC, mac, ip, dns, 40999, 53, id, &q);
        if c.send(&f).is_err() {
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = c.recv_matching(deadline, |f| match hostile::parse(f) {
            Parsed::Udp {
                src,
                sport: 53,
                dport: 40999,
                payload,
                ..
            } if src == dns && payload.get(..2) == Some(&id.to_be_bytes()[..]) => Some(payload),
            _ => None,
        });
        if let Some(answer) = got {
            dns_result = if answer.ends_with(&DNS_ANSWER.octets()) {
                Ok(())
            } else {
                Err(format!("DNS answer without {DNS_ANSWER}: {answer:02x?}"))
            };
            break;
        }
    }
    Newcomer {
        lease: Ok(ip),
        arp,
        dns: dns_result,
    }
}

/// `warren ctl --api PATH ARGS`: stdout, or the error.
fn ctl(api: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(warren_binary())
        .arg("ctl")
        .arg("--api")
        .arg(api)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run warren ctl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "warren ctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `name value` lines of `warren ctl stats`.
fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// Per-port counters from warren's log: every `closed: ...; PortCounters { name: n, ... }` line,
/// summed by name.
fn port_counters_from_log(log: &str) -> BTreeMap<String, u64> {
    let mut sums = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains(" closed: ")) {
        let Some((_, body)) = line.split_once('{') else {
            continue;
        };
        for field in body.trim_end_matches(['}', ' ']).split(',') {
            if let Some((k, v)) = field.split_once(':') {
                if let Ok(n) = v.trim().parse::<u64>() {
                    *sums.entry(k.trim().to_owned()).or_default() += n;
                }
            }
        }
    }
    sums
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ------------------------------------------------------------------ the run

fn soak_in_namespace() {
    // /proc/self/net/dev lists this network namespace's interfaces (sysfs may show another's).
    let links: Vec<String> = std::fs::read_to_string("/proc/self/net/dev")
        .expect("read /proc/self/net/dev")
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_owned()))
        .collect();
    assert_eq!(
        links,
        ["lo"],
        "the soak must run in a namespace with only loopback"
    );

    let settings = Settings::from_env();
    let phase_names: Vec<_> = settings.phases.iter().map(|p| p.name()).collect();
    eprintln!(
        "soak: seed {:#x} (replay: WARREN_SOAK_SEED={:#x}){}; attack for at least {:?}; phases: {}",
        settings.seed,
        settings.seed,
        if settings.full { ", full" } else { "" },
        settings.secs,
        phase_names.join(",")
    );

    let http = HttpServer::start(BTreeMap::from([(
        "/f".to_owned(),
        pseudo_random(DOWNLOAD_LEN, settings.seed | 1),
    )]));
    let sink = UploadSink::start();
    let dns = DnsServer::start(BTreeMap::from([(DNS_NAME.to_owned(), DNS_ANSWER)]));
    // A listener for the SYN flood that takes every connection and drops it.
    let drop_listener = TcpListener::bind("127.0.0.1:0").expect("bind drop listener");
    let drop_port = drop_listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        for c in drop_listener.incoming() {
            drop(c);
        }
    });
    let (control, control_port) = Control::start(settings.secs);

    let mut warren = Warren::spawn_with(WarrenConfig {
        args: vec![
            "--api".into(),
            "{dir}/api.sock".into(),
            "--dns-upstream".into(),
            dns.addr().to_string(),
        ],
        ..WarrenConfig::default()
    });
    let api = warren.dir().join("api.sock");
    warren.wait_for_path(&api, Duration::from_secs(10));
    let socket = warren.socket().to_path_buf();

    let image = Image::build(
        "soak-victim",
        &guest_script(http.port, sink.port, control_port),
    );
    let guest = Guest::spawn_with(&image, &NetAttach::netdev(warren.netdev()), DEFAULT_MAC);
    let booted = guest.wait_for(READY_MARKER, BOOT_TIMEOUT);
    let leased = booted.and_then(|_| guest.wait_for(LEASED, LEASE_TIMEOUT));
    if let Err(e) = leased {
        panic!(
            "the victim guest did not boot and lease an address: {e}\nwarren stderr:\n{}",
            warren.stderr()
        );
    }
    let victim_ip: Ipv4Addr = guest
        .results()
        .get("ip")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the victim guest got no address\n{}", guest.output()));
    eprintln!(
        "soak: the victim leased {victim_ip} after {:?}",
        guest.elapsed()
    );

    let mut target = Target::slirp_defaults(victim_ip, victim_mac());
    target.victim_services = vec![http.port, sink.port, control_port];
    target.syn_ports = vec![drop_port, closed_port(), closed_port(), closed_port()];
    target.udp_flood_ports = settings.udp_ports.max(1);
    target.discover_macs = settings.dhcp_macs;
    target.storm_batch = settings.storm_batch;
    target.syn_sources = settings.syn_sources;
    let generator = Generator::new(settings.seed, target);

    let stop = control_stop(&control);
    let attack_started = Instant::now();
    let got = Arc::new(Received::default());
    let settings = Arc::new(settings);
    let attacker = {
        let (socket, stop, got, s) = (socket.clone(), stop.clone(), got.clone(), settings.clone());
        std::thread::spawn(move || run_attacker(socket, generator, &s, stop, got))
    };
    let breaker = {
        let (socket, stop, seed) = (socket.clone(), stop.clone(), settings.seed);
        std::thread::spawn(move || run_framing_breaker(socket, seed, stop))
    };
    control.set_started();

    // The attack goes on until the guest has done at least one round and the minimum time has
    // passed (the control server decides, on the guest's /next), or the attacker's own caps.
    let overall = settings.secs * 4 + Duration::from_secs(1200);
    let done = loop {
        match guest.wait_for(CHECKS_DONE, Duration::from_secs(30)) {
            Ok(t) => break Ok(t),
            Err(e) if attack_started.elapsed() >= overall || !e.starts_with("timed out") => {
                break Err(e)
            }
            Err(_) => {
                let last = guest
                    .output()
                    .lines()
                    .rev()
                    .find(|l| l.starts_with("@@RESULT"))
                    .unwrap_or("")
                    .to_owned();
                eprintln!(
                    "soak: {:.0} s into the attack{}; the guest's latest: {last}",
                    attack_started.elapsed().as_secs_f64(),
                    if stop.load(Ordering::SeqCst) {
                        " (attack over)"
                    } else {
                        ""
                    }
                );
            }
        }
    };
    stop.store(true, Ordering::SeqCst);
    let (attack, attacker_conn) = attacker.join().expect("attacker thread");
    let framing = breaker.join().expect("framing thread");
    eprintln!(
        "soak: attack over after {:?}: {} frames, {} MiB, {:.0} frames/s; guest checks {}",
        attack.elapsed,
        attack.frames,
        attack.bytes >> 20,
        attack.frames as f64 / attack.elapsed.as_secs_f64().max(0.001),
        if done.is_ok() { "done" } else { "NOT done" }
    );

    // State after the attack, while the attacker is still connected.
    let warren_up = warren.is_running();
    let pid = warren.pid();
    let rss_hwm = proc_status_kib(pid, "VmHWM");
    let rss_now = proc_status_kib(pid, "VmRSS");
    let stats = ctl(&api, &["stats"]);
    let leases = ctl(&api, &["leases"]);
    // The attacker leaves; its port's counters go to the log.
    let closes_before = warren.stderr().matches(" closed: ").count();
    // (Shut it down: the reader thread holds a clone of the socket.)
    if let Some(c) = attacker_conn {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while warren.stderr().matches(" closed: ").count() <= closes_before && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let newcomer = newcomer(&socket, victim_ip);
    let warren_still_up = warren.is_running();
    let results = guest.results();
    let console = guest.output();
    drop(guest);
    warren.stop(Duration::from_secs(5));
    let log = warren.stderr();
    let log_path = warren_tests::paths::cache_dir()
        .join("logs")
        .join("soak-warren.log");
    let _ = std::fs::create_dir_all(log_path.parent().expect("logs dir"));
    let _ = std::fs::write(&log_path, &log);
    eprintln!("soak: warren's log: {}", log_path.display());

    // ---- judging
    let mut failures: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    check(warren_up && warren_still_up, format!("warren stopped running (after the attack: {warren_up}, after the newcomer: {warren_still_up})"));
    check(
        done.is_ok(),
        format!(
            "the guest did not finish its rounds: {}",
            done.as_ref()
                .err()
                .map(|e| e.lines().next().unwrap_or(""))
                .unwrap_or("")
        ),
    );
    check(
        results.get("go").map(String::as_str) == Some("go"),
        format!("the guest never got the go signal: {:?}", results.get("go")),
    );

    let rounds: u32 = results
        .get("rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    check(
        rounds >= 1,
        "the guest completed no round of transfers".into(),
    );
    let uploads = sink.uploads();
    let want_dl = http.sha256("/f");
    let mut dns_ok = 0;
    for n in 1..=rounds {
        let get = |k: &str| {
            results
                .get(&format!("{k}_{n}"))
                .cloned()
                .unwrap_or_default()
        };
        check(
            get("dl_exit") == "0",
            format!(
                "round {n}: download failed (wget exit {:?})",
                get("dl_exit")
            ),
        );
        check(
            get("dl_sha") == want_dl,
            format!(
                "round {n}: downloaded data corrupted or short: sha {} want {want_dl}",
                get("dl_sha")
            ),
        );
        let up_sha = get("up_sha");
        check(
            get("up_exit") == "0",
            format!("round {n}: upload failed (nc exit {:?})", get("up_exit")),
        );
        check(
            get("up_reply") == format!("{up_sha} {UPLOAD_LEN}"),
            format!("round {n}: the sink received something else than the guest sent: reply {:?}, sent {up_sha} {UPLOAD_LEN}", get("up_reply")),
        );
        check(
            uploads
                .iter()
                .any(|u| u.sha256 == up_sha && u.bytes == UPLOAD_LEN),
            format!("round {n}: the upload {up_sha} is not among the sink's complete uploads"),
        );
        if get("dns") == DNS_ANSWER.to_string() {
            dns_ok += 1;
        }
        eprintln!(
            "soak: round {n}: download {} ms, upload {} ms, DNS {:?}",
            get("dl_ms"),
            get("up_ms"),
            get("dns")
        );
    }
    let next_1 = results.get("next_1").cloned().unwrap_or_default();
    check(
        rounds == 0 || !next_1.is_empty(),
        "the guest's first /next request got no answer".into(),
    );
    // The attack must have covered the guest's whole first round (unless capped by frame count).
    let attack_end = attack_started + attack.elapsed;
    let first_next = *control.first_next.lock().expect("lock");
    check(
        attack.frames >= settings.max_frames || first_next.is_some_and(|t| t <= attack_end),
        format!(
            "the attack ({:?}) ended before the guest finished its first round ({:?} after the start)",
            attack.elapsed,
            first_next.map(|t| t.saturating_duration_since(attack_started))
        ),
    );
    for p in &settings.phases {
        check(
            attack.per_phase.get(p.name()).copied().unwrap_or(0) > 0,
            format!("phase {} sent nothing", p.name()),
        );
    }

    // One line per kind of broken framing: how many of its connections stayed open.
    let mut open_by_kind: BTreeMap<&str, (usize, usize, String)> = BTreeMap::new();
    for f in &framing {
        let e = open_by_kind.entry(f.name).or_default();
        e.1 += 1;
        if !f.closed {
            e.0 += 1;
            e.2 = f.detail.clone();
        }
    }
    for (name, (open, all, detail)) in &open_by_kind {
        check(
            *open == 0,
            format!("broken framing {name:?}: {open} of {all} connections not closed ({detail})"),
        );
    }
    let framing_summary: BTreeMap<&str, (usize, f64)> =
        framing.iter().fold(BTreeMap::new(), |mut m, f| {
            let e = m.entry(f.name).or_insert((0, 0.0));
            e.0 += 1;
            e.1 = f64::max(e.1, f.after.as_secs_f64());
            m
        });

    match &newcomer.lease {
        Ok(ip) => check(
            *ip != victim_ip,
            format!("the newcomer was given the victim's address {ip}"),
        ),
        Err(e) => check(
            false,
            format!("a new client got no lease after the attack: {e}"),
        ),
    }
    check(
        newcomer.arp.is_ok(),
        format!("a new client's ARP for the gateway: {:?}", newcomer.arp),
    );
    check(
        newcomer.dns.is_ok(),
        format!("a new client's DNS query: {:?}", newcomer.dns),
    );

    let victim_mac = DEFAULT_MAC.to_ascii_lowercase();
    match &leases {
        Ok(l) => check(
            l.lines().any(|line| {
                line.to_ascii_lowercase().starts_with(&victim_mac)
                    && line.split_whitespace().nth(1) == Some(&victim_ip.to_string())
            }),
            format!("the victim's lease ({victim_mac} -> {victim_ip}) is gone:\n{l}"),
        ),
        Err(e) => check(false, e.clone()),
    }

    // Counters: the gateway's (API) and the switch ports' (log), summed by name.
    let gw = stats.clone().map(|s| parse_stats(&s)).unwrap_or_default();
    check(
        stats.is_ok(),
        format!("warren ctl stats: {:?}", stats.as_ref().err()),
    );
    let ports = port_counters_from_log(&log);
    let total =
        |name: &str| gw.get(name).copied().unwrap_or(0) + ports.get(name).copied().unwrap_or(0);
    if settings.has(Phase::ArpSpoof) {
        check(
            total("drop_spoofed") > 0,
            "drop_spoofed did not move".into(),
        );
    }
    if settings.has(Phase::L2Odd) {
        check(
            total("drop_refused") > 0,
            "drop_refused did not move (gateway and multicast source MACs)".into(),
        );
    }
    if settings.has(Phase::Ipv4Malformed) || settings.has(Phase::TcpMalformed) {
        check(
            total("drop_malformed") + total("drop_bad_checksum") > 0,
            "neither drop_malformed nor drop_bad_checksum moved".into(),
        );
    }
    if settings.has(Phase::DhcpHostile) {
        check(total("dhcp_bad") > 0, "dhcp_bad did not move".into());
    }
    if settings.has(Phase::DnsHostile) {
        check(total("dns_bad") > 0, "dns_bad did not move".into());
    }

    let stolen = got.for_victim.load(Ordering::Relaxed);
    if settings.strict {
        check(
            stolen == 0,
            format!(
                "{stolen} frames for the victim reached the attacker, first: {:?}",
                got.first_for_victim.lock().expect("lock")
            ),
        );
        check(
            dns_ok == rounds,
            format!("only {dns_ok} of {rounds} DNS lookups of the guest succeeded"),
        );
    }

    // ---- the report
    eprintln!("soak: frames per phase: {:?}", attack.per_phase);
    eprintln!(
        "soak: attacker received {} frames; {} of them were for the victim (first: {:?}); reconnects {} {:?}",
        got.frames.load(Ordering::Relaxed),
        stolen,
        got.first_for_victim.lock().expect("lock"),
        attack.reconnects,
        attack.write_errors.iter().take(3).collect::<Vec<_>>()
    );
    eprintln!("soak: broken framings (count, slowest close in s): {framing_summary:?}");
    eprintln!("soak: guest DNS lookups answered: {dns_ok} of {rounds}");
    eprintln!(
        "soak: newcomer: lease {:?}, ARP {:?}, DNS {:?}",
        newcomer.lease, newcomer.arp, newcomer.dns
    );
    eprintln!("soak: warren RSS {rss_now:?} KiB, peak {rss_hwm:?} KiB");
    let nonzero = |m: &BTreeMap<String, u64>| {
        m.iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!("soak: gateway counters: {}", nonzero(&gw));
    eprintln!(
        "soak: switch port counters (closed ports): {}",
        nonzero(&ports)
    );

    if !failures.is_empty() {
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "soak (seed {:#x}) failed:\n  - {}\n\nguest console:\n{console}\n\nwarren log (last 60 lines):\n{}",
            settings.seed,
            failures.join("\n  - "),
            tail.join("\n")
        );
    }
    eprintln!("soak: passed (seed {:#x})", settings.seed);
}

/// The stop flag the attacker and the framing breaker watch: the control server's.
fn control_stop(control: &Arc<Control>) -> Arc<AtomicBool> {
    // Share the control server's flag so that `/next` after the minimum time stops the attack.
    let c = control.clone();
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        while !f.load(Ordering::SeqCst) {
            if c.stop.load(Ordering::SeqCst) {
                f.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        c.stop.store(true, Ordering::SeqCst);
    });
    flag
}
