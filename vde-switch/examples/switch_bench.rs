//! Guest-to-guest switching throughput: two kernel network stacks (network namespaces, each with a
//! tap device plugged into the switch by Debian's `vde_plug tap://`) run iperf3 through
//!
//! - warren (`--vde DIR`, the switch and gateway in one), and
//! - VDE2's own `vde_switch`, for comparison (same plugs, same MTU 1500).
//!
//! Needs root (namespaces, taps), `vde_plug`/`vde_switch` (vde2), `iperf3` and busybox. Run:
//! `cargo build --release -p vde-switch && cargo run --release -p vde-switch --example switch_bench`
//! (`WARREN_BIN` overrides the warren binary; `BENCH_SECS` the iperf3 duration, default 10).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?} failed: {st}");
}

/// Started with stdin a pipe that stays open (vde_switch exits at EOF on its console).
fn spawn(args: &[&str]) -> Child {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

struct Netns(String);

impl Netns {
    fn new(name: &str, ip: &str) -> Netns {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        sh(&["ip", "netns", "add", name]);
        let n = Netns(name.to_owned());
        n.exec(&["ip", "link", "set", "lo", "up"]);
        n.exec(&["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        n.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "tap0"]);
        n.exec(&["ip", "link", "set", "tap0", "up"]);
        n
    }
    fn cmd(&self, args: &[&str]) -> Vec<String> {
        ["ip", "netns", "exec", &self.0]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    }
    fn exec(&self, args: &[&str]) {
        let c = self.cmd(args);
        sh(&c.iter().map(String::as_str).collect::<Vec<_>>());
    }
    fn spawn(&self, args: &[&str]) -> Child {
        let c = self.cmd(args);
        spawn(&c.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time (user + system) of process `pid` so far, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = rustix::param::clock_ticks_per_second() as f64;
    (ticks(11) + ticks(12)) / hz
}

/// iperf3 from a to b (b runs the server): (bits per second, bytes) received.
fn iperf(a: &Netns, b: &Netns, b_ip: &str, secs: u32, reverse: bool) -> Option<(f64, f64)> {
    let mut srv = Kill(vec![b.spawn(&["iperf3", "-s", "-1"])]);
    std::thread::sleep(Duration::from_millis(300));
    // Wait until the path works (ARP, plugs up).
    let c = a.cmd(&["busybox", "ping", "-c", "1", "-W", "1", b_ip]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Command::new(&c[0])
        .args(&c[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "{b_ip} unreachable");
    }
    let mut args = vec!["iperf3", "-c", b_ip, "-J"];
    let t = secs.to_string();
    args.extend(["-t", &t]);
    if reverse {
        args.push("-R");
    }
    let c = a.cmd(&args);
    let out = Command::new(&c[0])
        .args(&c[1..])
        .output()
        .expect("run iperf3");
    let _ = srv.0[0].wait();
    srv.0.clear();
    let json = String::from_utf8_lossy(&out.stdout);
    // "sum_received": { ... "bytes": N, ... "bits_per_second": N ... }
    let field = |name: &str| {
        json.split("\"sum_received\"")
            .nth(1)
            .and_then(|s| s.split(&format!("\"{name}\":")).nth(1))
            .and_then(|s| s.split([',', '\n', '}']).next())
            .and_then(|s| s.trim().parse::<f64>().ok())
    };
    let r = field("bits_per_second").zip(field("bytes"));
    if r.is_none() {
        eprintln!("iperf3 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    r
}

fn main() {
    let secs: u32 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let warren = std::env::var_os("WARREN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .expect("exe")
                .parent()
                .and_then(Path::parent)
                .expect("target dir")
                .join("warren")
        });
    let dir = std::env::temp_dir().join(format!("warren-switch-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let a = Netns::new(&format!("wsb{}-a", std::process::id()), "10.0.2.101");
    let b = Netns::new(&format!("wsb{}-b", std::process::id()), "10.0.2.102");

    let mut results = Vec::new();
    for (name, sw) in [("warren --vde", "warren"), ("vde_switch", "vde_switch")] {
        let sock = dir.join(sw);
        let mut procs = Kill(Vec::new());
        let s = sock.display().to_string();
        if sw == "warren" {
            procs.0.push(spawn(&[
                warren.to_str().expect("utf-8 path"),
                "--vde",
                &s,
                "--dns-upstream",
                "127.0.0.1:9",
                "-q",
            ]));
        } else {
            procs.0.push(spawn(&["vde_switch", "-s", &s]));
        }
        wait_for(&sock.join("ctl"));
        std::thread::sleep(Duration::from_millis(200));
        procs.0.push(a.spawn(&["vde_plug", &s, "tap://tap0"]));
        procs.0.push(b.spawn(&["vde_plug", &s, "tap://tap0"]));
        std::thread::sleep(Duration::from_millis(500));
        let pid = procs.0[0].id();
        let cpu0 = cpu_secs(pid);
        let fwd = iperf(&a, &b, "10.0.2.102", secs, false);
        let rev = iperf(&a, &b, "10.0.2.102", secs, true);
        let cpu = cpu_secs(pid) - cpu0;
        let gbit = |r: Option<(f64, f64)>| {
            r.map_or("failed".into(), |(b, _)| format!("{:.2} Gbit/s", b / 1e9))
        };
        let bytes: f64 = [fwd, rev].iter().flatten().map(|r| r.1).sum();
        let per_gb = format!("{:.2} CPU-s per GB switched", cpu / (bytes / 1e9));
        println!("{name}: a->b {}, b->a {}, {per_gb}", gbit(fwd), gbit(rev));
        results.push((name, gbit(fwd), gbit(rev), per_gb));
        drop(procs);
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("\nguest<->guest TCP through the switch (iperf3 {secs} s, MTU 1500, vde_plug tap:// plugs):");
    for (name, fwd, rev, per_gb) in results {
        println!("  {name:<14} {fwd:>14}  (reverse {rev});  switch process: {per_gb}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
