//! netbench: TCP throughput of a real Linux TCP stack through user-space
//! gateways speaking QEMU's stream framing (warren vs passt).
//!
//! Topology, per gateway and MTU:
//!
//! ```text
//!  netns wbench-<pid>-guest            netns wbench-<pid>-host
//!  iperf3 -c 10.0.2.2                  iperf3 -s -B 127.0.0.1
//!   └ tap0 10.0.2.15/24 ── adapter ══ unix socket ══ gateway (warren|passt)
//! ```
//!
//! The "host" side is itself an isolated namespace whose only non-loopback
//! interface is a veth pair going nowhere, so nothing the gateways do can
//! reach a non-local address; the guest's default gateway 10.0.2.2 is
//! mapped by both gateways to the host loopback where iperf3 listens.
//!
//! Also measured: two adapters back to back (the adapter's own ceiling).
//!
//! Run as root: `cargo run --release -p warren-benches --bin netbench -- --help`.
// A benchmark tool, not shipped: its few raw calls (setns, setrlimit, sysconf) stay here.
#![allow(unsafe_code)]

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::thread;
use std::time::{Duration, Instant};

use warren_benches::adapter::{self, Peer};
use warren_benches::proc::{
    check_interrupted, install_signal_handlers, ip, remove_stale_netns, tail, wait_timeout, Netns,
    Proc, TempDir, NETNS_PREFIX,
};
use warren_benches::{iperf, median};

type Res<T> = Result<T, String>;

const GUEST_ADDR: &str = "10.0.2.15";
const GW_ADDR: &str = "10.0.2.2";
const IPERF_PORT: &str = "5201";

const USAGE: &str = "\
usage: netbench [options]
       netbench adapter --ifname IF (--connect PATH | --listen PATH) [--tx-mode frame|mmsg|stream]

Measures TCP throughput (iperf3) of a kernel TCP stack on a tap device in a
network namespace, bridged by a QEMU-stream adapter to a user-space gateway
(warren, passt), guest->host (upload) and host->guest (download, -R).
Must run as root; needs ip (iproute2), iperf3 and the gateway binaries.

options:
  --gateways LIST        comma-separated gateways to test (default: warren,passt)
  --gateway-bin NAME=PATH  binary for a gateway (default: warren = newest of
                         <workspace>/target/release/warren and
                         $CARGO_TARGET_DIR/release/warren, else PATH; passt
                         from PATH). Names starting with \"warren\" or \"passt\"
                         select the command line, so e.g.
                         --gateways warren,warren-old,passt
                         --gateway-bin warren-old=/tmp/warren compares builds
  --gateway-arg NAME=ARG extra argument for a gateway (repeatable)
  --mtus LIST            MTUs to test (default: 1500,65520)
  --secs S               seconds per iperf3 run, after 1 s omitted warm-up (default: 5)
  --rounds N             runs per configuration; the median is reported (default: 3)
  --no-ceiling           skip the adapter-to-adapter ceiling measurement
  --ceiling-only         only measure the adapter-to-adapter ceiling
  --adapter-tx MODE      how the adapter writes tap frames to the socket:
                         mmsg (default): all frames the tap has ready in one
                           sendmmsg, one message per frame;
                         frame: one write per frame, exactly like QEMU;
                         stream: frames coalesced into one write (passt 2023
                           stalls on frames split across its reads)
  --txqueuelen N         tap0 transmit ring size in frames (default: 10000).
                         A tap drops frames when its ring is full, where a
                         VM's virtio queue would push back instead; a ring
                         larger than the TCP send buffer avoids those drops
  --cc NAME              TCP congestion control of every namespace (default: reno;
                         inherit keeps the machine's). Namespaces may only pick an
                         allowed one (net.ipv4.tcp_allowed_congestion_control)
  --markdown             print the result table as Markdown
  --keep-logs            keep the logs directory (/tmp/wbench-<pid>)
  -h, --help             this text
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Warren,
    Passt,
}

#[derive(Debug)]
struct Gateway {
    name: String,
    kind: Kind,
    bin: PathBuf,
    extra: Vec<String>,
}

#[derive(Debug)]
struct Options {
    gateways: Vec<String>,
    bins: Vec<(String, PathBuf)>,
    extra: Vec<(String, String)>,
    mtus: Vec<u32>,
    secs: u32,
    rounds: u32,
    ceiling: bool,
    gateways_enabled: bool,
    markdown: bool,
    keep_logs: bool,
    adapter_tx: adapter::TxMode,
    txqueuelen: u32,
    cc: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    Upload,
    Download,
}

impl Dir {
    fn label(self) -> &'static str {
        match self {
            Dir::Upload => "guest->host",
            Dir::Download => "host->guest",
        }
    }
}

/// One table row: a gateway at an MTU in a direction.
struct Row {
    gateway: String,
    mtu: u32,
    dir: Dir,
    s: Samples,
    error: Option<String>,
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("adapter") {
        process::exit(adapter_main(&args[1..]));
    }
    install_signal_handlers();
    match bench_main(&args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("netbench: {e}");
            process::exit(1);
        }
    }
}

fn adapter_main(args: &[String]) -> i32 {
    let mut ifname = "tap0".to_string();
    let mut peer = None;
    let mut tx_mode = adapter::TxMode::Mmsg;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--ifname" => ifname = val(),
            "--connect" => peer = Some(Peer::Connect(val().into())),
            "--listen" => peer = Some(Peer::Listen(val().into())),
            "--tx-mode" => match adapter::TxMode::parse(&val()) {
                Some(m) => tx_mode = m,
                None => {
                    eprintln!("adapter: --tx-mode expects frame, mmsg or stream");
                    return 2;
                }
            },
            _ => {
                eprintln!("adapter: unknown argument {a:?}\n{USAGE}");
                return 2;
            }
        }
    }
    let Some(peer) = peer else {
        eprintln!("adapter: --connect or --listen is required");
        return 2;
    };
    let cfg = adapter::Config {
        ifname,
        peer,
        tx_mode,
    };
    match adapter::run(&cfg, || {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("adapter: {e}");
            1
        }
    }
}

fn parse_options(args: &[String]) -> Res<Options> {
    let mut o = Options {
        gateways: vec!["warren".into(), "passt".into()],
        bins: Vec::new(),
        extra: Vec::new(),
        mtus: vec![1500, 65520],
        secs: 5,
        rounds: 3,
        ceiling: true,
        gateways_enabled: true,
        markdown: false,
        keep_logs: false,
        adapter_tx: adapter::TxMode::Mmsg,
        txqueuelen: 10000,
        cc: Some("reno".into()),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut val = || -> Res<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().cloned().ok_or(format!("{flag} needs a value")),
            }
        };
        let num = |s: String| -> Res<u32> {
            s.parse::<u32>()
                .map_err(|_| format!("{flag}: not a number: {s:?}"))
        };
        let pair = |s: String| -> Res<(String, String)> {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or(format!("{flag} expects NAME=VALUE, got {s:?}"))
        };
        match flag {
            "-h" | "--help" => {
                print!("{USAGE}");
                process::exit(0);
            }
            "--gateways" => {
                o.gateways = val()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "--gateway-bin" => {
                let (k, v) = pair(val()?)?;
                o.bins.push((k, v.into()));
            }
            "--gateway-arg" => o.extra.push(pair(val()?)?),
            "--mtus" => {
                o.mtus = val()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| num(s.to_string()))
                    .collect::<Res<_>>()?
            }
            "--secs" => o.secs = num(val()?)?,
            "--txqueuelen" => o.txqueuelen = num(val()?)?,
            "--rounds" => o.rounds = num(val()?)?,
            "--no-ceiling" => o.ceiling = false,
            "--ceiling-only" => o.gateways_enabled = false,
            "--markdown" => o.markdown = true,
            "--adapter-tx" => {
                let v = val()?;
                o.adapter_tx = adapter::TxMode::parse(&v).ok_or(format!(
                    "--adapter-tx: expected frame, mmsg or stream, got {v:?}"
                ))?;
            }
            "--keep-logs" => o.keep_logs = true,
            "--cc" => {
                let v = val()?;
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("bad --cc {v:?}"));
                }
                o.cc = (v != "inherit").then_some(v);
            }
            _ => return Err(format!("unknown option {a:?}\n{USAGE}")),
        }
    }
    if o.secs == 0 || o.rounds == 0 {
        return Err("--secs and --rounds must be positive".into());
    }
    for &m in &o.mtus {
        if !(576..=65520).contains(&m) {
            return Err(format!("MTU {m} out of range 576..=65520"));
        }
    }
    Ok(o)
}

/// Find an executable in PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Default location of the warren binary: the newer of the workspace's
/// target/release/warren and $CARGO_TARGET_DIR/release/warren, else PATH.
fn default_warren() -> Option<PathBuf> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cands = vec![ws.join("target/release/warren")];
    if let Some(t) = env::var_os("CARGO_TARGET_DIR") {
        cands.push(PathBuf::from(t).join("release/warren"));
    }
    // Prefer the most recently built candidate.
    cands
        .into_iter()
        .filter_map(|p| {
            let t = fs::metadata(&p).ok()?.modified().ok()?;
            p.is_file().then_some((t, p))
        })
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)
        .or_else(|| which("warren"))
}

fn resolve_gateways(o: &Options) -> (Vec<Gateway>, Vec<String>) {
    let mut gws = Vec::new();
    let mut skipped = Vec::new();
    for name in &o.gateways {
        let kind = if name.starts_with("warren") {
            Kind::Warren
        } else if name.starts_with("passt") {
            Kind::Passt
        } else {
            skipped.push(format!(
                "{name}: unknown gateway (names must start with warren or passt)"
            ));
            continue;
        };
        let explicit = o
            .bins
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, p)| p.clone());
        let bin = explicit.or_else(|| match kind {
            Kind::Warren => default_warren(),
            Kind::Passt => which("passt"),
        });
        let Some(bin) = bin else {
            skipped.push(format!(
                "{name}: binary not found (build it, or pass --gateway-bin {name}=PATH)"
            ));
            continue;
        };
        let extra = o
            .extra
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect();
        gws.push(Gateway {
            name: name.clone(),
            kind,
            bin,
            extra,
        });
    }
    (gws, skipped)
}

fn gateway_command(gw: &Gateway, host: &Netns, sock: &Path, mtu: u32) -> Command {
    let mut c = host.command(&gw.bin);
    let mtu = mtu.to_string();
    match gw.kind {
        Kind::Warren => {
            // Same address plan as the slirp defaults, spelled out; DNS
            // upstream pinned to loopback so nothing can leave the host.
            c.arg("--socket")
                .arg(sock)
                .args([
                    "--mtu",
                    &mtu,
                    "--gateway",
                    GW_ADDR,
                    "--dhcp-start",
                    GUEST_ADDR,
                ])
                .args(["--dns-upstream", "127.0.0.1"]);
        }
        Kind::Passt => {
            // Foreground, IPv4 only, no port forwarding; the guest gets the
            // same addressing as under warren, and the gateway address is
            // mapped to the host's loopback (passt's default; no --no-map-gw).
            c.args(["-f", "-e", "-4", "-t", "none", "-u", "none"])
                .arg("-s")
                .arg(sock)
                .args(["-m", &mtu])
                .args(["-a", GUEST_ADDR, "-n", "24", "-g", GW_ADDR])
                .args(["--no-dhcp-dns", "--no-dhcp-search"]);
        }
    }
    c.args(&gw.extra);
    c
}

/// Everything one run shares: the isolated host namespace, a pid-tagged
/// naming scheme, and the log directory.
struct Ctx {
    tag: String,
    dir: TempDir,
    sock_dir: PathBuf,
    exe: PathBuf,
    secs: u32,
    adapter_tx: adapter::TxMode,
    txqueuelen: u32,
    cc: Option<String>,
}

impl Ctx {
    fn log(&self, name: &str) -> PathBuf {
        self.dir.path.join(name)
    }

    fn netns(&self, role: &str) -> Res<Netns> {
        let ns = Netns::create(&format!("{NETNS_PREFIX}{}-{role}", self.tag))?;
        if let Some(cc) = &self.cc {
            ns.set_cc(cc)?;
        }
        Ok(ns)
    }

    /// The "host": loopback plus a veth pair that leads nowhere, carrying
    /// the default route the gateways expect to find.
    fn host_netns(&self) -> Res<Netns> {
        let h = self.netns("host")?;
        let n = h.name().to_string();
        ip(&[
            "-n", &n, "link", "add", "ext0", "type", "veth", "peer", "name", "ext1",
        ])?;
        ip(&["-n", &n, "addr", "add", "10.99.0.2/24", "dev", "ext0"])?;
        ip(&["-n", &n, "link", "set", "ext0", "up"])?;
        ip(&["-n", &n, "link", "set", "ext1", "up"])?;
        ip(&[
            "-n",
            &n,
            "route",
            "add",
            "default",
            "via",
            "10.99.0.1",
            "dev",
            "ext0",
        ])?;
        Ok(h)
    }

    fn spawn_adapter(&self, ns: &Netns, name: &str, peer: &Peer) -> Res<Proc> {
        let mut c = ns.command(&self.exe);
        c.args(["adapter", "--ifname", "tap0"]);
        c.args(["--tx-mode", self.adapter_tx.name()]);
        match peer {
            Peer::Connect(p) => c.arg("--connect").arg(p),
            Peer::Listen(p) => c.arg("--listen").arg(p),
        };
        let log = self.log(&format!("{name}.log"));
        let mut p = Proc::spawn(name, &mut c, &log, true)?;
        let line = p.read_line()?;
        if line.trim() != "ready" {
            thread::sleep(Duration::from_millis(100));
            return Err(format!(
                "{name} did not start: {}",
                tail(&log, 10).trim().to_string() + &line
            ));
        }
        Ok(p)
    }

    /// Save `ip -s link show tap0` (drop counters) to the logs and echo
    /// the dropped counts.
    fn dump_link_stats(&self, ns: &Netns, label: &str) {
        let out = Command::new("ip")
            .args(["-s", "-s", "-n", ns.name(), "link", "show", "tap0"])
            .output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let _ = fs::write(self.log(&format!("{label}.tap0-stats")), &text);
            let mut lines = text.lines();
            let mut drops = Vec::new();
            while let Some(l) = lines.next() {
                let t = l.trim_start();
                if t.starts_with("RX:") || t.starts_with("TX:") {
                    let cols: Vec<&str> = t.split_whitespace().collect();
                    let vals: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
                    if let Some(i) = cols.iter().position(|c| *c == "dropped") {
                        drops.push(format!(
                            "{} dropped {}",
                            cols[0].trim_end_matches(':'),
                            i.checked_sub(1).and_then(|j| vals.get(j)).unwrap_or(&"?")
                        ));
                    }
                }
            }
            if !drops.is_empty() {
                eprintln!("  {label}: tap0 {}", drops.join(", "));
            }
        }
    }

    /// Start a one-off iperf3 server (`-1`) in `ns` and wait until it
    /// listens. A fresh server per run means a run that went wrong cannot
    /// leave the server "busy" for the next one.
    fn iperf_server(&self, ns: &Netns, bind: &str, name: &str) -> Res<Proc> {
        let mut c = ns.command("iperf3");
        c.args(["-s", "-1", "-B", bind, "-p", IPERF_PORT]);
        let mut p = Proc::spawn(name, &mut c, &self.log(&format!("{name}.log")), false)?;
        let port = format!(":{:04X} ", IPERF_PORT.parse::<u16>().unwrap_or(5201));
        let tcp = format!("/proc/{}/net/tcp", p.child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            p.check_alive()?;
            // Local address is column 2, state column 4 (0A = LISTEN).
            let listening = fs::read_to_string(&tcp).is_ok_and(|t| {
                t.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && format!("{} ", f[1]).ends_with(&port) && f[3] == "0A"
                })
            });
            if listening {
                return Ok(p);
            }
            if Instant::now() > deadline {
                return Err(format!("{name}: iperf3 server not listening after 5 s"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// One iperf3 run from `ns` to `target`; returns (Gbit/s, retransmits).
    fn iperf_client(&self, ns: &Netns, target: &str, dir: Dir, label: &str) -> Res<(f64, u64)> {
        let out = self.log(&format!("{label}.json"));
        let err = self.log(&format!("{label}.err"));
        let secs = self.secs.to_string();
        let mut c = ns.command("iperf3");
        c.args(["-c", target, "-p", IPERF_PORT, "-t", &secs, "-O", "1", "-J"])
            .args(["--connect-timeout", "5000"]);
        if dir == Dir::Download {
            c.arg("-R");
        }
        let fo = fs::File::create(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
        let fe = fs::File::create(&err).map_err(|e| format!("create {}: {e}", err.display()))?;
        let mut child = c
            .stdin(process::Stdio::null())
            .stdout(fo)
            .stderr(fe)
            .spawn()
            .map_err(|e| format!("cannot run iperf3: {e}"))?;
        let limit = Duration::from_secs(u64::from(self.secs) + 30);
        let status = wait_timeout(&mut child, limit).map_err(|e| format!("iperf3 {e}"))?;
        check_interrupted()?;
        let json = fs::read_to_string(&out).map_err(|e| format!("read {}: {e}", out.display()))?;
        match iperf::parse(&json) {
            Ok(r) => Ok((r.received_bps / 1e9, r.retransmits)),
            Err(e) if status.success() => Err(e),
            Err(e) => Err(format!("iperf3 failed ({status}): {e} {}", tail(&err, 5))),
        }
    }
}

/// Per-run figures for one direction of one configuration.
#[derive(Default)]
struct Samples {
    gbps: Vec<f64>,
    retrans: Vec<u64>,
    /// CPU use of the adapter process(es), % of one core.
    adapter_cpu: Vec<f64>,
    /// CPU use of the gateway process, % of one core.
    gateway_cpu: Vec<f64>,
    /// Error messages of failed runs.
    failures: Vec<String>,
    /// Throughput divided by the CPU share of one adapter: an estimate of
    /// what one adapter could carry with a core to itself.
    per_adapter_core: Vec<f64>,
}

/// utime + stime of a process (all its threads), in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3, so
    // utime (14) and stime (15) are at indices 11 and 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

fn cpu_total(pids: &[u32]) -> Option<f64> {
    pids.iter().map(|&p| cpu_seconds(p)).sum()
}

/// Measure one topology (already set up) for `rounds` rounds, both
/// directions, alternating the directions within a round. `adapters` and
/// `gateway` are pids whose CPU use is recorded.
#[allow(clippy::too_many_arguments)]
fn measure(
    ctx: &Ctx,
    client_ns: &Netns,
    server_ns: &Netns,
    bind: &str,
    target: &str,
    rounds: u32,
    label: &str,
    adapters: &[u32],
    gateway: Option<u32>,
    mut health: impl FnMut() -> Res<()>,
) -> Res<[Samples; 2]> {
    let mut res: [Samples; 2] = Default::default();
    for round in 1..=rounds {
        for (i, dir) in [Dir::Upload, Dir::Download].into_iter().enumerate() {
            check_interrupted()?;
            let tag = format!("{label}-{}-r{round}", if i == 0 { "up" } else { "down" });
            let server = ctx.iperf_server(server_ns, bind, &format!("{tag}-server"))?;
            let (a0, g0) = (cpu_total(adapters), gateway.and_then(cpu_seconds));
            let t0 = Instant::now();
            let r = ctx.iperf_client(client_ns, target, dir, &tag);
            let wall = t0.elapsed().as_secs_f64();
            let (a1, g1) = (cpu_total(adapters), gateway.and_then(cpu_seconds));
            drop(server);
            health()?;
            check_interrupted()?;
            let (g, rt) = match r {
                Ok(x) => x,
                Err(e) => {
                    // One failed run (e.g. a stalled connection) is a data
                    // point about the gateway, not a reason to stop.
                    eprintln!(
                        "  {label:<24} {:<12} round {round}: failed: {e}",
                        dir.label()
                    );
                    res[i].failures.push(e);
                    continue;
                }
            };
            let pct = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if wall > 0.0 => Some((b - a) / wall * 100.0),
                _ => None,
            };
            let (acpu, gcpu) = (pct(a0, a1), pct(g0, g1));
            eprintln!(
                "  {label:<24} {:<12} round {round}: {g:7.2} Gbit/s  ({rt} retransmits, \
                 adapter CPU {}, gateway CPU {})",
                dir.label(),
                acpu.map_or("-".into(), |x| format!("{x:.0}%")),
                gcpu.map_or("-".into(), |x| format!("{x:.0}%")),
            );
            let s = &mut res[i];
            s.gbps.push(g);
            s.retrans.push(rt);
            s.adapter_cpu.extend(acpu);
            s.gateway_cpu.extend(gcpu);
            if let Some(a) = acpu.filter(|&a| a > 1.0) {
                s.per_adapter_core
                    .push(g / (a / 100.0 / adapters.len().max(1) as f64));
            }
        }
    }
    Ok(res)
}

fn bench_gateway(
    ctx: &Ctx,
    host: &Netns,
    gw: &Gateway,
    mtu: u32,
    rounds: u32,
) -> Res<[Samples; 2]> {
    let label = format!("{}-{mtu}", gw.name);
    let sock = ctx.sock_dir.join(format!("{label}.sock"));
    let mut gwp = Proc::spawn(
        &gw.name,
        &mut gateway_command(gw, host, &sock, mtu),
        &ctx.log(&format!("{label}.log")),
        false,
    )?;
    let guest = ctx.netns("guest")?;
    let mut ad = match ctx.spawn_adapter(&guest, &format!("adapter-{label}"), &Peer::Connect(sock))
    {
        Ok(a) => a,
        Err(e) => {
            gwp.check_alive()?;
            return Err(e);
        }
    };
    let g = guest.name();
    let mtu_s = mtu.to_string();
    let qlen = ctx.txqueuelen.to_string();
    ip(&[
        "-n",
        g,
        "link",
        "set",
        "tap0",
        "mtu",
        &mtu_s,
        "txqueuelen",
        &qlen,
        "up",
    ])?;
    ip(&[
        "-n",
        g,
        "addr",
        "add",
        &format!("{GUEST_ADDR}/24"),
        "dev",
        "tap0",
    ])?;
    ip(&[
        "-n", g, "route", "add", "default", "via", GW_ADDR, "dev", "tap0",
    ])?;
    let pids = [ad.child.id()];
    let gw_pid = gwp.child.id();
    let res = measure(
        ctx,
        &guest,
        host,
        "127.0.0.1",
        GW_ADDR,
        rounds,
        &label,
        &pids,
        Some(gw_pid),
        || {
            gwp.check_alive()?;
            ad.check_alive()
        },
    );
    ctx.dump_link_stats(&guest, &label);
    // Drop order: adapter, guest namespace, gateway, server.
    drop(ad);
    drop(guest);
    drop(gwp);
    res
}

/// Two adapters back to back over a unix socket, each with its own
/// namespace: the ceiling the adapter itself imposes (frames cross two
/// adapters here, one in the gateway setup).
fn bench_ceiling(ctx: &Ctx, mtu: u32, rounds: u32) -> Res<[Samples; 2]> {
    let label = format!("ceiling-{mtu}");
    let sock = ctx.dir.path.join(format!("{label}.sock"));
    let a = ctx.netns("loopa")?;
    let b = ctx.netns("loopb")?;
    let mut ad_b = ctx.spawn_adapter(
        &b,
        &format!("adapter-b-{label}"),
        &Peer::Listen(sock.clone()),
    )?;
    let mut ad_a = ctx.spawn_adapter(&a, &format!("adapter-a-{label}"), &Peer::Connect(sock))?;
    let mtu_s = mtu.to_string();
    let qlen = ctx.txqueuelen.to_string();
    for (ns, addr) in [(&a, "10.0.3.1/24"), (&b, "10.0.3.2/24")] {
        ip(&[
            "-n",
            ns.name(),
            "link",
            "set",
            "tap0",
            "mtu",
            &mtu_s,
            "txqueuelen",
            &qlen,
            "up",
        ])?;
        ip(&["-n", ns.name(), "addr", "add", addr, "dev", "tap0"])?;
    }
    let pids = [ad_a.child.id(), ad_b.child.id()];
    let res = measure(
        ctx,
        &a,
        &b,
        "10.0.3.2",
        "10.0.3.2",
        rounds,
        &label,
        &pids,
        None,
        || {
            ad_a.check_alive()?;
            ad_b.check_alive()
        },
    );
    ctx.dump_link_stats(&a, &format!("{label}-a"));
    ctx.dump_link_stats(&b, &format!("{label}-b"));
    drop(ad_a);
    drop(ad_b);
    res
}

fn preflight(o: &Options, gws: &[Gateway]) -> Res<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("must run as root (network namespaces, tap devices)".into());
    }
    for tool in ["ip", "iperf3"] {
        if which(tool).is_none() {
            return Err(format!(
                "{tool} not found in PATH (apt-get install -y iproute2 iperf3)"
            ));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun missing (modprobe tun)".into());
    }
    if o.gateways_enabled && gws.is_empty() && !o.ceiling {
        return Err("no usable gateway".into());
    }
    Ok(())
}

fn bench_main(args: &[String]) -> Res<()> {
    let o = parse_options(args)?;
    let (gws, skipped) = if o.gateways_enabled {
        resolve_gateways(&o)
    } else {
        (Vec::new(), Vec::new())
    };
    for s in &skipped {
        eprintln!("warning: skipping {s}");
    }
    preflight(&o, &gws)?;
    if let Some(load) = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
    {
        if load > 0.5 {
            eprintln!(
                "warning: load average is {load:.2}; other work on this machine will add noise \
                 (every run needs ~4 busy threads: iperf3 x2, adapter, gateway)"
            );
        }
    }
    remove_stale_netns();
    let tag = process::id().to_string();
    let mut dir = TempDir::create(PathBuf::from(format!("/tmp/wbench-{tag}")))?;
    dir.keep = o.keep_logs;
    let exe = env::current_exe().map_err(|e| format!("cannot locate own binary: {e}"))?;
    // passt drops to "nobody" before binding its socket, so the socket
    // directory must be writable by anyone (sticky, like /tmp).
    let sock_dir = dir.path.join("sock");
    fs::create_dir_all(&sock_dir).map_err(|e| format!("mkdir {}: {e}", sock_dir.display()))?;
    fs::set_permissions(&sock_dir, fs::Permissions::from_mode(0o1777))
        .map_err(|e| format!("chmod {}: {e}", sock_dir.display()))?;
    let ctx = Ctx {
        tag,
        dir,
        sock_dir,
        exe,
        secs: o.secs,
        adapter_tx: o.adapter_tx,
        txqueuelen: o.txqueuelen,
        cc: o.cc.clone(),
    };
    eprintln!(
        "netbench: {} s x {} rounds per point; logs in {}{}",
        o.secs,
        o.rounds,
        ctx.dir.path.display(),
        if o.keep_logs {
            ""
        } else {
            " (removed at exit; --keep-logs)"
        }
    );
    for gw in &gws {
        eprintln!("  {} = {}", gw.name, gw.bin.display());
    }

    let mut rows: Vec<Row> = Vec::new();
    let push = |rows: &mut Vec<Row>, name: &str, mtu: u32, r: Res<[Samples; 2]>| match r {
        Ok([up, down]) => {
            for (dir, samples) in [(Dir::Upload, up), (Dir::Download, down)] {
                rows.push(Row {
                    gateway: name.into(),
                    mtu,
                    dir,
                    s: samples,
                    error: None,
                });
            }
        }
        Err(e) => {
            eprintln!("error: {name} at MTU {mtu}: {e}");
            for dir in [Dir::Upload, Dir::Download] {
                rows.push(Row {
                    gateway: name.into(),
                    mtu,
                    dir,
                    s: Samples::default(),
                    error: Some(e.lines().next().unwrap_or("").to_string()),
                });
            }
        }
    };

    if o.gateways_enabled && !gws.is_empty() {
        let host = ctx.host_netns()?;
        for &mtu in &o.mtus {
            for gw in &gws {
                check_interrupted()?;
                eprintln!("{} at MTU {mtu}:", gw.name);
                let r = bench_gateway(&ctx, &host, gw, mtu, o.rounds);
                if r.is_err() {
                    check_interrupted()?;
                }
                push(&mut rows, &gw.name, mtu, r);
            }
        }
    }
    if o.ceiling {
        for &mtu in &o.mtus {
            check_interrupted()?;
            eprintln!("adapter ceiling at MTU {mtu}:");
            let r = bench_ceiling(&ctx, mtu, o.rounds);
            if r.is_err() {
                check_interrupted()?;
            }
            push(&mut rows, "adapter<->adapter", mtu, r);
        }
    }

    print!("{}", render(&rows, &o, &skipped));
    Ok(())
}

fn fmt_g(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}"))
}

fn render(rows: &[Row], o: &Options, skipped: &[String]) -> String {
    let med = |r: &Row| median(&r.s.gbps);
    let find = |prefix: &str, mtu: u32, dir: Dir| {
        rows.iter()
            .find(|r| r.gateway.starts_with(prefix) && r.mtu == mtu && r.dir == dir)
            .and_then(med)
    };
    let header = [
        "gateway",
        "MTU",
        "direction",
        "Gbit/s (median)",
        "min",
        "max",
        "retrans",
        "failed runs",
        "adapter CPU",
        "gateway CPU",
        "Gbit/s per adapter core",
        "warren/passt",
    ];
    let pct = |v: &[f64]| median(v).map_or("-".into(), |x| format!("{x:.0}%"));
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut errors = Vec::new();
    for r in rows {
        let minmax = |f: fn(f64, f64) -> f64| r.s.gbps.iter().copied().reduce(f);
        let ratio = if r.gateway.starts_with("warren") {
            match (med(r), find("passt", r.mtu, r.dir)) {
                (Some(w), Some(p)) if p > 0.0 => format!("{:.2}", w / p),
                _ => "-".into(),
            }
        } else {
            String::new()
        };
        let rt: Vec<f64> = r.s.retrans.iter().map(|&x| x as f64).collect();
        let gbps = match &r.error {
            Some(e) => {
                if r.dir == Dir::Upload {
                    errors.push(format!("{} at MTU {}: {e}", r.gateway, r.mtu));
                }
                "error".into()
            }
            None => {
                for f in &r.s.failures {
                    errors.push(format!(
                        "{} at MTU {} {}: {f}",
                        r.gateway,
                        r.mtu,
                        r.dir.label()
                    ));
                }
                fmt_g(med(r))
            }
        };
        table.push(vec![
            r.gateway.clone(),
            r.mtu.to_string(),
            r.dir.label().into(),
            gbps,
            fmt_g(minmax(f64::min)),
            fmt_g(minmax(f64::max)),
            median(&rt).map_or("-".into(), |x| format!("{x:.0}")),
            r.s.failures.len().to_string(),
            pct(&r.s.adapter_cpu),
            pct(&r.s.gateway_cpu),
            fmt_g(median(&r.s.per_adapter_core)),
            ratio,
        ]);
    }
    let right = |i: usize| i == 1 || i >= 3;
    let mut s = String::new();
    if o.markdown {
        let _ = writeln!(s, "| {} |", header.join(" | "));
        let seps: Vec<&str> = (0..header.len())
            .map(|i| if right(i) { "---:" } else { "---" })
            .collect();
        let _ = writeln!(s, "| {} |", seps.join(" | "));
        for row in &table {
            let _ = writeln!(s, "| {} |", row.join(" | "));
        }
    } else {
        let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in &table {
            for (i, c) in row.iter().enumerate() {
                w[i] = w[i].max(c.len());
            }
        }
        let line = |cells: &[String]| -> String {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if right(i) {
                        format!("{c:>width$}", width = w[i])
                    } else {
                        format!("{c:<width$}", width = w[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let hdr: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        let _ = writeln!(s, "{}", line(&hdr));
        for row in &table {
            let _ = writeln!(s, "{}", line(row));
        }
    }
    let _ = writeln!(
        s,
        "\niperf3 TCP, 1 stream, {} s (+1 s omitted warm-up) x {} rounds, median shown; \
         adapter tx mode {}, tap txqueuelen {}; TCP congestion control {}; load average {}; \
         guest = Linux TCP stack on a tap, bridged by the QEMU-stream adapter; \
         adapter<->adapter = two adapters back to back (the adapter's own ceiling; \
         \"guest->host\" = a->b there); CPU = % of one core, median (adapter<->adapter: both adapters); \
         Gbit/s per adapter core = throughput / CPU share of one adapter (what one adapter \
         could carry with a core to itself; a rough estimate of its ceiling).",
        o.secs,
        o.rounds,
        o.adapter_tx.name(),
        o.txqueuelen,
        o.cc.as_deref().unwrap_or("inherited"),
        fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_default()
    );
    for e in errors {
        let _ = writeln!(s, "error: {e}");
    }
    for sk in skipped {
        let _ = writeln!(s, "skipped: {sk}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse() {
        let o = parse_options(&args(&[
            "--gateways=passt",
            "--gateway-bin",
            "warren=/x/warren",
            "--gateway-arg",
            "passt=-q",
            "--mtus",
            "1500,9000",
            "--secs=2",
            "--markdown",
        ]))
        .unwrap();
        assert_eq!(o.gateways, vec!["passt"]);
        assert_eq!(
            o.bins,
            vec![("warren".to_string(), PathBuf::from("/x/warren"))]
        );
        assert_eq!(o.extra, vec![("passt".to_string(), "-q".to_string())]);
        assert_eq!(o.mtus, vec![1500, 9000]);
        assert_eq!((o.secs, o.rounds, o.markdown), (2, 3, true));
        assert!(parse_options(&args(&["--mtus", "70000"])).is_err());
        assert!(parse_options(&args(&["--secs"])).is_err());
        assert!(parse_options(&args(&["--gateway-bin", "nopath"])).is_err());
        assert!(parse_options(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn table_has_ratio() {
        let row = |gw: &str, g: f64| Row {
            gateway: gw.into(),
            mtu: 1500,
            dir: Dir::Upload,
            s: Samples {
                gbps: vec![g, g * 2.0, g / 2.0],
                ..Samples::default()
            },
            error: None,
        };
        let o = parse_options(&[]).unwrap();
        let out = render(&[row("warren", 3.0), row("passt", 2.0)], &o, &[]);
        let warren = out.lines().find(|l| l.starts_with("warren")).unwrap();
        assert!(warren.trim_end().ends_with("1.50"), "{out}");
    }
}
