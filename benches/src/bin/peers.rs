//! peers: warren, slirp4netns and pasta (current and Debian's) side by side, each serving a tap inside
//! an identical `unshare -Urn` network namespace (the rootless-container setup), in one run on one
//! machine, against a kernel veth pair as the ceiling.
//!
//! ```text
//!  guest netns (unshare -Urn)                 netns wbench-<pid>-peers ("host")
//!  10.0.2.100/24 tap0, default via 10.0.2.2   iperf3 -s -B 0.0.0.0, probe/RR/idle servers
//!   └ tap0 ══ warren --netns | slirp4netns --configure | pasta --config-net ──▶ 127.0.0.1
//!   └ tap0 ══ veth ══ wbv0 10.0.2.2/24 (veth baseline: the kernel forwards, no tool)
//! ```
//!
//! The "host" is an isolated namespace whose only other interfaces are a veth pair with both ends in
//! it (and the baseline's veth while it runs), so nothing any tool does can leave the machine; every
//! tool maps the gateway 10.0.2.2 to that namespace's loopback.
//! Measured: iperf3 TCP both ways and UDP guest→host at each MTU (medians of rounds, tools
//! interleaved), TCP request/response latency, TCP connection setup rate, each tool's RSS idle and with
//! 10,000 idle connections, and the tool's CPU time per packet with 10 and with 10,000 flows open.
//!
//! Run as root: `cargo run --release -p warren-benches --bin peers -- --help`.
// A benchmark tool, not shipped: its few raw calls (setns, setrlimit, sysconf) stay here.
#![allow(unsafe_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use warren_benches::median;
use warren_benches::proc::{
    check_interrupted, install_signal_handlers, ip, remove_stale_netns, run, tail, wait_timeout,
    Netns, Proc, TempDir, NETNS_PREFIX,
};

type Res<T> = Result<T, String>;

const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const IPERF_PORT: u16 = 5201;
/// The IPv6 iperf3 server's port (on the host's `::`).
const IPERF6_PORT: u16 = 5202;
/// The host end of the veth baseline's pair (the guest end is `tap0`, like the tools' taps).
const VETH_HOST: &str = "wbv0";

const USAGE: &str = "\
usage: peers [options]

Compares warren (--netns), slirp4netns and pasta serving a tap in identical unshare -Urn
namespaces: iperf3 TCP both ways and UDP at each MTU, TCP request/response latency, connection
setup rate, RSS idle and with N idle connections, CPU per packet with 10 vs N flows open.
Must run as root; needs iproute2, util-linux (unshare, nsenter), iperf3, slirp4netns, passt (pasta).

options:
  --tools LIST       comma-separated from warren, slirp4netns, pasta, pasta-debian, veth
                     (default: warren,slirp4netns,pasta,veth); veth is a kernel veth pair, the
                     ceiling every row is also divided by
  --warren PATH      warren binary (default: $WARREN_BIN, else newest of target/release/warren and
                     $CARGO_TARGET_DIR/release/warren)
  --pasta PATH       pasta binary (default: $PASTA_BIN, else pasta from PATH); e.g. the current
                     passt built by ../shared/peers/build-passt.sh DIR: --pasta DIR/pasta
  --pasta-debian PATH  the second pasta column, pasta-debian (default /usr/bin/pasta, Debian's)
  --cc NAME          TCP congestion control of the guest and host namespaces (default reno; `inherit`
                     keeps the machine's). A namespace may only pick an allowed one
                     (net.ipv4.tcp_allowed_congestion_control): reno and the machine's default.
                     pasta collapses guest->host under bbr (see benches/README.md)
  --mtus LIST        default: 1500,65520
  --rounds N         throughput rounds per tool and MTU; medians are reported (default 3)
  --secs S           iperf3 seconds per run, after 1 s omitted (default 5)
  --flows N          idle connections for the RSS and per-packet-cost runs (default 10000)
  --quick            --rounds 1 --secs 2 --flows 2000
  --markdown         print the table as Markdown
  --out FILE         also write the Markdown table to FILE
  --keep-logs        keep /tmp/wbench-<pid>-peers (tool logs)
  --no-throughput    only the latency, connection, RSS and flow measurements
  --no-small         only the throughput rows (no latency, connection, RSS and flow measurements)
  --ipv6             also TCP both ways over IPv6 at each MTU: the guest reaches the host's [::1]
                     through its IPv6 default router (warren --net6 fd00::/64, slirp4netns
                     --enable-ipv6, pasta's copy of the host's address and route, veth fd00::2).
                     A tool that configures no IPv6 in the namespace gets fd00::100/64 via fd00::2
                     set by hand if it is warren (its gateway serves the LAN either way; the
                     namespace set-up may not), and a failed cell otherwise
  --perf             perf record the tools during the per-packet cost runs (implies --keep-logs)
  -h, --help
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Warren,
    Slirp,
    Pasta,
    PastaDebian,
    Veth,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Warren => "warren",
            Tool::Slirp => "slirp4netns",
            Tool::Pasta => "pasta",
            Tool::PastaDebian => "pasta-debian",
            Tool::Veth => "veth",
        }
    }
    fn parse(s: &str) -> Option<Tool> {
        match s {
            "warren" => Some(Tool::Warren),
            "slirp4netns" | "slirp" => Some(Tool::Slirp),
            "pasta" => Some(Tool::Pasta),
            "pasta-debian" | "pasta-deb" => Some(Tool::PastaDebian),
            "veth" => Some(Tool::Veth),
            _ => None,
        }
    }
}

struct Options {
    tools: Vec<Tool>,
    warren: Option<PathBuf>,
    pasta: PathBuf,
    pasta_debian: PathBuf,
    cc: Option<String>,
    mtus: Vec<u16>,
    rounds: usize,
    secs: u32,
    flows: usize,
    markdown: bool,
    out: Option<PathBuf>,
    keep_logs: bool,
    throughput: bool,
    perf: bool,
    ipv6: bool,
    small: bool,
}

fn parse_options(args: &[String]) -> Res<Option<Options>> {
    let mut o = Options {
        tools: vec![Tool::Warren, Tool::Slirp, Tool::Pasta, Tool::Veth],
        warren: std::env::var_os("WARREN_BIN").map(PathBuf::from),
        pasta: std::env::var_os("PASTA_BIN").map_or_else(|| PathBuf::from("pasta"), PathBuf::from),
        pasta_debian: PathBuf::from("/usr/bin/pasta"),
        cc: Some("reno".into()),
        mtus: vec![1500, 65520],
        rounds: 3,
        secs: 5,
        flows: 10_000,
        markdown: false,
        out: None,
        keep_logs: false,
        throughput: true,
        perf: false,
        ipv6: false,
        small: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |n: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{n} needs a value"))
        };
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--tools" => {
                o.tools = val(a)?
                    .split(',')
                    .map(|t| Tool::parse(t).ok_or_else(|| format!("unknown tool {t:?}")))
                    .collect::<Res<_>>()?
            }
            "--warren" => o.warren = Some(PathBuf::from(val(a)?)),
            "--pasta" => o.pasta = PathBuf::from(val(a)?),
            "--pasta-debian" => o.pasta_debian = PathBuf::from(val(a)?),
            "--cc" => {
                let v = val(a)?;
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("bad --cc {v:?}"));
                }
                o.cc = (v != "inherit").then_some(v);
            }
            "--mtus" => {
                o.mtus = val(a)?
                    .split(',')
                    .map(|m| m.parse().map_err(|_| format!("bad MTU {m:?}")))
                    .collect::<Res<_>>()?
            }
            "--rounds" => o.rounds = val(a)?.parse().map_err(|_| "bad --rounds".to_string())?,
            "--secs" => o.secs = val(a)?.parse().map_err(|_| "bad --secs".to_string())?,
            "--flows" => o.flows = val(a)?.parse().map_err(|_| "bad --flows".to_string())?,
            "--quick" => {
                o.rounds = 1;
                o.secs = 2;
                o.flows = 2000;
            }
            "--markdown" => o.markdown = true,
            "--out" => o.out = Some(PathBuf::from(val(a)?)),
            "--keep-logs" => o.keep_logs = true,
            "--no-throughput" => o.throughput = false,
            "--ipv6" => o.ipv6 = true,
            "--no-small" => o.small = false,
            "--perf" => {
                o.perf = true;
                o.keep_logs = true;
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if o.rounds == 0 || o.secs == 0 || o.flows < 20 || o.tools.is_empty() || o.mtus.is_empty() {
        return Err(
            "--rounds, --secs must be positive, --flows >= 20, --tools and --mtus non-empty".into(),
        );
    }
    Ok(Some(o))
}

fn default_warren() -> Option<PathBuf> {
    let mut c = vec![PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/release/warren"
    ))];
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        c.push(PathBuf::from(t).join("release/warren"));
    }
    c.into_iter()
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

/// Runs `f` on a thread inside network namespace `ns` (a /proc/PID/ns/net or /run/netns path).
fn in_ns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> Res<T> {
    let file = fs::File::open(ns).map_err(|e| format!("open {}: {e}", ns.display()))?;
    thread::spawn(move || {
        // SAFETY: setns on an open namespace fd; it changes only this thread's network namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| "namespace thread panicked".to_string())?
}

/// Servers on the host namespace's loopback.
struct HostServers {
    /// Accepts and closes (readiness probe, connection rate).
    probe: u16,
    /// 1-byte echo per connection (request/response).
    rr: u16,
    /// Accepts and holds connections (idle flows).
    idle: u16,
    held: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl HostServers {
    fn start(host_ns: &Path) -> Res<HostServers> {
        let (p, r, i) = in_ns(host_ns, || -> std::io::Result<_> {
            Ok((
                TcpListener::bind("0.0.0.0:0")?,
                TcpListener::bind("0.0.0.0:0")?,
                TcpListener::bind("0.0.0.0:0")?,
            ))
        })?
        .map_err(|e| format!("host servers: {e}"))?;
        let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).unwrap_or(0);
        let s = HostServers {
            probe: port(&p),
            rr: port(&r),
            idle: port(&i),
            held: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        thread::spawn(move || {
            for c in p.incoming() {
                drop(c);
            }
        });
        thread::spawn(move || {
            for c in r.incoming().flatten() {
                thread::spawn(move || {
                    let mut c = c;
                    let _ = c.set_nodelay(true);
                    let mut b = [0u8; 64];
                    while let Ok(n) = c.read(&mut b) {
                        if n == 0 || c.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let held = s.held.clone();
        thread::spawn(move || {
            for c in i.incoming().flatten() {
                if let Ok(mut h) = held.lock() {
                    h.push(c);
                }
            }
        });
        Ok(s)
    }
}

/// One tool serving one guest namespace.
struct Instance {
    /// The tool's process (killed on drop, before the namespace).
    proc_: Option<Proc>,
    /// `unshare -Urn sleep`: holds the guest namespace.
    _ns: Proc,
    guest_ns: PathBuf,
    /// veth: the host namespace holding the host end (`wbv0`), deleted on drop.
    veth_host: Option<String>,
}

impl Instance {
    fn pid(&self) -> u32 {
        self.proc_.as_ref().map_or(0, |p| p.child.id())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // The tool goes first: it may exit by itself when the namespace goes.
        drop(self.proc_.take());
        if let Some(h) = self.veth_host.take() {
            let _ = ip(&["-n", &h, "link", "del", VETH_HOST]);
        }
    }
}

struct Ctx {
    o: Options,
    warren: PathBuf,
    dir: TempDir,
    host: Netns,
    servers: HostServers,
    _iperf: Proc,
    _iperf6: Option<Proc>,
}

impl Ctx {
    fn log(&self, name: &str) -> PathBuf {
        self.dir.path.join(format!("{name}.log"))
    }

    fn start(&self, tool: Tool, mtu: u16, tag: &str) -> Res<Instance> {
        check_interrupted()?;
        let ns = Proc::spawn(
            "guest namespace",
            Command::new("unshare").args(["-Urn", "sleep", "1000000"]),
            &self.log(&format!("ns-{tag}")),
            false,
        )?;
        let gpid = ns.child.id();
        let guest_ns = PathBuf::from(format!("/proc/{gpid}/ns/net"));
        let ours = fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::read_link(&guest_ns).map_or(true, |l| l == ours)
            || fs::read_to_string(format!("/proc/{gpid}/comm"))
                .unwrap_or_default()
                .trim()
                != "sleep"
        {
            if Instant::now() > deadline {
                return Err("unshare -Urn did not start".into());
            }
            thread::sleep(Duration::from_millis(10));
        }
        if let Some(cc) = &self.o.cc {
            set_cc(&guest_ns, cc)?;
        }
        let m = mtu.to_string();
        let p = gpid.to_string();
        if tool == Tool::Veth {
            let h = self.host.name().to_string();
            let inst = Instance {
                proc_: None,
                _ns: ns,
                guest_ns,
                veth_host: Some(h.clone()),
            };
            veth_pair(&h, &p, &m, self.o.ipv6)?;
            return self.ready(inst, tool);
        }
        let mut cmd = self.host.command(match tool {
            Tool::Warren => self.warren.as_os_str(),
            Tool::Slirp => "slirp4netns".as_ref(),
            Tool::Pasta => self.o.pasta.as_os_str(),
            Tool::PastaDebian => self.o.pasta_debian.as_os_str(),
            Tool::Veth => unreachable!("handled above"),
        });
        match tool {
            Tool::Warren if self.o.ipv6 => cmd.args([
                "--netns",
                &p,
                "--configure",
                "--mtu",
                &m,
                "--dns-upstream",
                "127.0.0.1",
                "-q",
                "--max-flows",
                "40000",
                "--net6",
                "fd00::/64",
            ]),
            Tool::Slirp if self.o.ipv6 => {
                cmd.args(["--configure", "--enable-ipv6", "--mtu", &m, &p, "tap0"])
            }
            Tool::Warren => cmd.args([
                "--netns",
                &p,
                "--configure",
                "--mtu",
                &m,
                "--dns-upstream",
                "127.0.0.1",
                "-q",
                "--max-flows",
                "40000",
            ]),
            Tool::Slirp => cmd.args(["--configure", "--mtu", &m, &p, "tap0"]),
            Tool::Pasta | Tool::PastaDebian => cmd
                // -4 only without --ipv6: then the IPv6 of the host namespace is copied in.
                .args(["-f", "-q"])
                .args((!self.o.ipv6).then_some("-4"))
                .args([
                    "--config-net",
                    "-I",
                    "tap0",
                    "-a",
                    "10.0.2.100",
                    "-n",
                    "24",
                    "-g",
                    "10.0.2.2",
                    "-m",
                    &m,
                    "-t",
                    "none",
                    "-u",
                    "none",
                    "-T",
                    "none",
                    "-U",
                    "none",
                    "--runas",
                    "0",
                    &p,
                ]),
            Tool::Veth => &mut cmd,
        };
        let proc_ = Proc::spawn(
            tool.name(),
            &mut cmd,
            &self.log(&format!("{}-{tag}", tool.name())),
            false,
        )?;
        let mut inst = Instance {
            proc_: Some(proc_),
            _ns: ns,
            guest_ns,
            veth_host: None,
        };
        if let Some(p) = inst.proc_.as_mut() {
            p.check_alive()?;
        }
        self.ready(inst, tool)
    }

    /// Waits until the guest of `inst` reaches the host's probe server through 10.0.2.2.
    fn ready(&self, mut inst: Instance, tool: Tool) -> Res<Instance> {
        // Ready once the guest reaches the host's loopback through the gateway.
        let probe = SocketAddr::from((GW, self.servers.probe));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(p) = inst.proc_.as_mut() {
                p.check_alive()?;
            }
            let ok = in_ns(&inst.guest_ns, move || {
                TcpStream::connect_timeout(&probe, Duration::from_secs(1)).is_ok()
            })?;
            if ok {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not connect the namespace within 15 s",
                    tool.name()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(inst)
    }

    /// iperf3 from the guest; returns (receiver) Gbit/s.
    fn iperf(&self, inst: &Instance, args: &[&str], label: &str) -> Res<f64> {
        self.iperf_to(inst, "10.0.2.2", IPERF_PORT, args, label)
    }

    /// iperf3 from the guest to `server`:`port`; returns (receiver) Gbit/s.
    fn iperf_to(
        &self,
        inst: &Instance,
        server: &str,
        port: u16,
        args: &[&str],
        label: &str,
    ) -> Res<f64> {
        check_interrupted()?;
        let secs = self.o.secs.to_string();
        let port = port.to_string();
        let log = self.log(&format!("iperf-{label}"));
        let out = fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", inst.guest_ns.display()))
            .args([
                "iperf3", "-c", server, "-p", &port, "-t", &secs, "-O", "1", "-J",
            ])
            .args(args)
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("iperf3: {e}"))?;
        wait_timeout(&mut child, Duration::from_secs(u64::from(self.o.secs) + 30))
            .map_err(|e| format!("iperf3 {label}: {e}"))?;
        let json = fs::read_to_string(&log).map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| format!("iperf3 {label}: {e}: {}", tail(&log, 5)))?;
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            return Err(format!("iperf3 {label}: {e}"));
        }
        let end = &v["end"];
        let bps = if args.contains(&"-u") {
            // Goodput at the receiver (iperf3 >= 3.11 reports it as sum_received).
            end["sum_received"]["bits_per_second"]
                .as_f64()
                .ok_or("iperf3 UDP: no end.sum_received")?
        } else {
            end["sum_received"]["bits_per_second"]
                .as_f64()
                .ok_or("iperf3: no end.sum_received")?
        };
        Ok(bps / 1e9)
    }
}

/// CPU nanoseconds the process `pid` has run (all its threads).
fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

fn rss_kib(pid: u32) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Up to `n` request/response transactions of 1 byte from the guest, stopping after `limit`;
/// per-transaction microseconds.
fn rr(guest_ns: &Path, port: u16, n: usize, limit: Duration) -> Res<Vec<f64>> {
    in_ns(guest_ns, move || -> Res<Vec<f64>> {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from((GW, port)), Duration::from_secs(5))
                .map_err(|e| format!("rr connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(n);
        let mut b = [0u8; 1];
        let start = Instant::now();
        for _ in 0..n {
            if start.elapsed() > limit {
                break;
            }
            let t = Instant::now();
            s.write_all(b"x").map_err(|e| format!("rr write: {e}"))?;
            s.read_exact(&mut b).map_err(|e| format!("rr read: {e}"))?;
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(out)
    })?
}

/// Connections per second the guest can open (and close) to the host for `secs`.
fn conn_rate(guest_ns: &Path, port: u16, secs: f64) -> Res<f64> {
    in_ns(guest_ns, move || -> Res<f64> {
        let to = SocketAddr::from((GW, port));
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < secs {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
                .map_err(|e| format!("connect #{n}: {e}"))?;
            // Wait for the server's close, so each connection is set up and torn down.
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
            n += 1;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    })?
}

/// Opens idle connections from the guest until `total` are open; returns them.
fn open_idle(
    guest_ns: &Path,
    port: u16,
    mut have: Vec<TcpStream>,
    total: usize,
) -> Res<Vec<TcpStream>> {
    in_ns(guest_ns, move || -> Res<Vec<TcpStream>> {
        let to = SocketAddr::from((GW, port));
        while have.len() < total {
            let s = TcpStream::connect_timeout(&to, Duration::from_secs(10))
                .map_err(|e| format!("idle connection #{}: {e}", have.len()))?;
            have.push(s);
        }
        Ok(have)
    })?
}

#[derive(Default, Clone)]
struct Cell {
    samples: Vec<f64>,
    err: Option<String>,
}

impl Cell {
    fn value(&self) -> Option<f64> {
        median(&self.samples)
    }
}

struct Row {
    metric: String,
    /// True when bigger is better.
    higher_better: bool,
    cells: Vec<Cell>,
}

struct Table {
    tools: Vec<Tool>,
    rows: Vec<Row>,
}

impl Table {
    fn row(&mut self, metric: &str, higher_better: bool) -> usize {
        if let Some(i) = self.rows.iter().position(|r| r.metric == metric) {
            return i;
        }
        self.rows.push(Row {
            metric: metric.into(),
            higher_better,
            cells: vec![Cell::default(); self.tools.len()],
        });
        self.rows.len() - 1
    }

    fn add(&mut self, metric: &str, higher_better: bool, tool: Tool, r: Res<f64>) {
        let i = self.row(metric, higher_better);
        let Some(t) = self.tools.iter().position(|x| *x == tool) else {
            return;
        };
        match r {
            Ok(v) => self.rows[i].cells[t].samples.push(v),
            Err(e) => {
                eprintln!("  {metric} / {}: {e}", tool.name());
                self.rows[i].cells[t].err.get_or_insert(e);
            }
        }
    }

    fn render(&self, markdown: bool) -> String {
        let mut head = vec!["metric".to_string()];
        head.extend(self.tools.iter().map(|t| t.name().to_string()));
        let w = self.tools.iter().position(|t| *t == Tool::Warren);
        let veth = self.tools.iter().position(|t| *t == Tool::Veth);
        let peers: Vec<usize> = (0..self.tools.len())
            .filter(|i| Some(*i) != w && Some(*i) != veth)
            .collect();
        if w.is_some() {
            head.extend(
                peers
                    .iter()
                    .map(|&p| format!("warren/{}", self.tools[p].name())),
            );
        }
        // Each tool's ratio to the veth ceiling.
        let to_veth: Vec<usize> = (0..self.tools.len())
            .filter(|i| veth.is_some() && Some(*i) != veth)
            .collect();
        head.extend(
            to_veth
                .iter()
                .map(|&p| format!("{}/veth", self.tools[p].name())),
        );
        let mut lines = vec![head];
        for r in &self.rows {
            let mut l = vec![format!(
                "{}{}",
                r.metric,
                if r.higher_better {
                    ""
                } else {
                    " (lower is better)"
                }
            )];
            for c in &r.cells {
                l.push(match c.value() {
                    Some(v) if c.samples.len() > 1 => {
                        let (lo, hi) = c
                            .samples
                            .iter()
                            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
                        format!("{} ({}–{})", fmt(v), fmt(lo), fmt(hi))
                    }
                    Some(v) => fmt(v),
                    None if c.err.is_some() => "failed".into(),
                    None => "–".into(),
                });
            }
            let ratio = |a: usize, b: usize| match (r.cells[a].value(), r.cells[b].value()) {
                (Some(a), Some(b)) if b > 0.0 && a / b < 0.1 => format!("{:.3}×", a / b),
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "–".into(),
            };
            if let Some(w) = w {
                for &p in &peers {
                    l.push(ratio(w, p));
                }
            }
            if let Some(v) = veth {
                for &p in &to_veth {
                    l.push(ratio(p, v));
                }
            }
            lines.push(l);
        }
        let mut out = String::new();
        if markdown {
            for (i, l) in lines.iter().enumerate() {
                out.push_str(&format!("| {} |\n", l.join(" | ")));
                if i == 0 {
                    out.push_str(&format!("|{}\n", " --- |".repeat(l.len())));
                }
            }
        } else {
            let widths: Vec<usize> = (0..lines[0].len())
                .map(|c| {
                    lines
                        .iter()
                        .map(|l| l[c].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for l in &lines {
                let cells: Vec<String> = l
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (s, w))| {
                        if i == 0 {
                            format!("{s:<w$}")
                        } else {
                            format!("{s:>w$}")
                        }
                    })
                    .collect();
                out.push_str(cells.join("  ").trim_end());
                out.push('\n');
            }
        }
        out
    }
}

fn fmt(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn host_netns(dir: &TempDir, ipv6: bool) -> Res<Netns> {
    let name = format!("{NETNS_PREFIX}{}-peers", std::process::id());
    let h = Netns::create(&name)?;
    // An interface with a default route (pasta derives its defaults from one) that leads nowhere: a
    // veth pair with both ends in this namespace.
    ip(&[
        "-n", &name, "link", "add", "wb0", "type", "veth", "peer", "name", "wb1",
    ])?;
    ip(&["-n", &name, "addr", "add", "192.0.2.1/24", "dev", "wb0"])?;
    ip(&["-n", &name, "link", "set", "wb0", "up"])?;
    ip(&["-n", &name, "link", "set", "wb1", "up"])?;
    ip(&["-n", &name, "route", "add", "default", "via", "192.0.2.254"])?;
    if ipv6 {
        // Netns::create turned IPv6 off; the host's [::1] and a global address with a default route
        // (pasta copies both into the namespace) that leads nowhere either.
        run(h.command("sh").args([
            "-c",
            "for i in all default lo wb0 wb1; do echo 0 > /proc/sys/net/ipv6/conf/$i/disable_ipv6; done",
        ]))?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            "2001:db8:1::1/64",
            "dev",
            "wb0",
            "nodad",
        ])?;
        ip(&[
            "-n",
            &name,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:1::fe",
        ])?;
    }
    let _ = dir;
    Ok(h)
}

/// Sets the TCP congestion control of the namespace `ns` (a path to a netns file).
fn set_cc(ns: &Path, cc: &str) -> Res<()> {
    let cc = cc.to_string();
    let f = "/proc/sys/net/ipv4/tcp_congestion_control";
    in_ns(ns, move || {
        fs::write(f, &cc).map_err(|e| {
            format!(
                "set {f} to {cc}: {e} (allowed in namespaces: {})",
                fs::read_to_string("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
                    .unwrap_or_default()
                    .trim()
            )
        })?;
        match fs::read_to_string(f) {
            Ok(v) if v.trim() == cc => Ok(()),
            Ok(v) => Err(format!("{f} is {} after writing {cc}", v.trim())),
            Err(e) => Err(format!("read {f}: {e}")),
        }
    })?
}

/// The veth baseline: a veth pair from host namespace `host` (`wbv0`, 10.0.2.2/24) to the guest
/// namespace of process `gpid` (`tap0`, 10.0.2.100/24, default route via 10.0.2.2), both at MTU `mtu`,
/// with the kernel's default offloads. The host servers listen on all addresses of the host
/// namespace, so the guest reaches them at 10.0.2.2 as it does through the tools.
fn veth_pair(host: &str, gpid: &str, mtu: &str, ipv6: bool) -> Res<()> {
    let gns = format!("/proc/{gpid}/ns/net");
    ip(&[
        "-n", host, "link", "add", VETH_HOST, "mtu", mtu, "type", "veth", "peer", "name", "tap0",
        "mtu", mtu, "netns", gpid,
    ])?;
    ip(&["-n", host, "addr", "add", "10.0.2.2/24", "dev", VETH_HOST])?;
    ip(&["-n", host, "link", "set", VETH_HOST, "up"])?;
    let g = |args: &[&str]| {
        run(Command::new("nsenter")
            .arg(format!("--net={gns}"))
            .arg("ip")
            .args(args))
        .map(|_| ())
    };
    g(&["link", "set", "lo", "up"])?;
    g(&["addr", "add", "10.0.2.100/24", "dev", "tap0"])?;
    if ipv6 {
        ip(&[
            "-n",
            host,
            "addr",
            "add",
            "fd00::2/64",
            "dev",
            VETH_HOST,
            "nodad",
        ])?;
        g(&["addr", "add", "fd00::100/64", "dev", "tap0", "nodad"])?;
    }
    g(&["link", "set", "tap0", "up"])?;
    if ipv6 {
        g(&["-6", "route", "add", "default", "via", "fd00::2"])?;
    }
    g(&["route", "add", "default", "via", "10.0.2.2"])
}

/// A global address for the IPv6 router `via` of a default route: itself if global; for a link-local
/// router (slirp4netns announces fe80::2 in its RAs), `::2` of the prefix of the first global
/// address in `addrs` (`ip -6 -o addr` lines), which is where slirp4netns and warren put the router.
fn router_global(via: &str, addrs: &str) -> Option<String> {
    let via: std::net::Ipv6Addr = via.parse().ok()?;
    if via.segments()[0] & 0xffc0 != 0xfe80 {
        return Some(via.to_string());
    }
    let a: std::net::Ipv6Addr = addrs
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    let s = a.segments();
    Some(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 2).to_string())
}

/// The guest's IPv6 router, once it has a global address that passed DAD and a default route via a
/// global router; warren gets fd00::100/64 via fd00::2 by hand if its namespace set-up left none.
fn guest_router6(inst: &Instance, tool: Tool) -> Res<String> {
    let g = |args: &[&str]| -> Res<String> {
        run(Command::new("nsenter")
            .arg(format!("--net={}", inst.guest_ns.display()))
            .arg("ip")
            .args(args))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut by_hand = false;
    loop {
        let addrs = g(&["-6", "-o", "addr", "show", "dev", "tap0", "scope", "global"])?;
        let route = g(&["-6", "route", "show", "default"])?;
        let via = route
            .split_whitespace()
            .skip_while(|w| *w != "via")
            .nth(1)
            .and_then(|v| router_global(v, &addrs));
        if !addrs.trim().is_empty() && !addrs.contains("tentative") {
            if let Some(v) = via {
                return Ok(v);
            }
        }
        if Instant::now() > deadline {
            if tool != Tool::Warren || by_hand {
                return Err(format!(
                    "no global IPv6 address and router in the namespace (addresses: {:?}, \
                     routes: {:?})",
                    addrs.trim(),
                    route.trim()
                ));
            }
            eprintln!(
                "  warren: its namespace set-up configured no IPv6; fd00::100/64 via fd00::2 set \
                 by hand"
            );
            let _ = g(&["-6", "addr", "flush", "dev", "tap0", "scope", "global"]);
            g(&["addr", "add", "fd00::100/64", "dev", "tap0", "nodad"])?;
            let _ = g(&["-6", "route", "del", "default"]);
            g(&[
                "-6", "route", "add", "default", "via", "fd00::2", "dev", "tap0",
            ])?;
            by_hand = true;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn throughput(ctx: &Ctx, t: &mut Table, tool: Tool, mtu: u16, round: usize) -> Res<()> {
    let tag = format!("{}-{mtu}-r{round}", tool.name());
    let inst = ctx.start(tool, mtu, &tag)?;
    let udp_len = (usize::from(mtu) - 28).min(32_000).to_string();
    t.add(
        &format!("TCP guest→host, MTU {mtu} (Gbit/s)"),
        true,
        tool,
        ctx.iperf(&inst, &[], &format!("{tag}-up")),
    );
    t.add(
        &format!("TCP host→guest, MTU {mtu} (Gbit/s)"),
        true,
        tool,
        ctx.iperf(&inst, &["-R"], &format!("{tag}-down")),
    );
    t.add(
        &format!("UDP guest→host, MTU {mtu} (Gbit/s received)"),
        true,
        tool,
        ctx.iperf(
            &inst,
            &["-u", "-b", "0", "-l", &udp_len],
            &format!("{tag}-udp"),
        ),
    );
    if ctx.o.ipv6 {
        let up = format!("TCP guest→host IPv6, MTU {mtu} (Gbit/s)");
        let down = format!("TCP host→guest IPv6, MTU {mtu} (Gbit/s)");
        match guest_router6(&inst, tool) {
            Ok(gw) => {
                let r = ctx.iperf_to(&inst, &gw, IPERF6_PORT, &[], &format!("{tag}-up6"));
                t.add(&up, true, tool, r);
                let r = ctx.iperf_to(&inst, &gw, IPERF6_PORT, &["-R"], &format!("{tag}-down6"));
                t.add(&down, true, tool, r);
            }
            Err(e) => {
                t.add(&up, true, tool, Err(e.clone()));
                t.add(&down, true, tool, Err(e));
            }
        }
    }
    Ok(())
}

/// Latency, connection rate, RSS and per-packet cost against the number of open flows.
fn small_packets(ctx: &Ctx, t: &mut Table, tool: Tool) -> Res<()> {
    let inst = ctx.start(tool, 1500, &format!("{}-small", tool.name()))?;
    let pid = inst.pid();
    thread::sleep(Duration::from_millis(300));
    if tool == Tool::Veth {
        // No process of its own: latency and connection rate only.
        let lat = rr(
            &inst.guest_ns,
            ctx.servers.rr,
            20_000,
            Duration::from_secs(10),
        )?;
        t.add(
            "TCP request/response latency (µs, median)",
            false,
            tool,
            median(&lat).ok_or_else(|| "no samples".into()),
        );
        t.add(
            "TCP connections set up per second",
            true,
            tool,
            conn_rate(&inst.guest_ns, ctx.servers.probe, 2.0),
        );
        return Ok(());
    }
    t.add(
        "RSS idle (MiB)",
        false,
        tool,
        rss_kib(pid)
            .map(|k| k / 1024.0)
            .ok_or_else(|| "no VmRSS".to_string()),
    );
    let lat = rr(
        &inst.guest_ns,
        ctx.servers.rr,
        20_000,
        Duration::from_secs(10),
    )?;
    t.add(
        "TCP request/response latency (µs, median)",
        false,
        tool,
        median(&lat).ok_or_else(|| "no samples".into()),
    );
    t.add(
        "TCP connections set up per second",
        true,
        tool,
        conn_rate(&inst.guest_ns, ctx.servers.probe, 2.0),
    );
    let n = 20_000;
    // Cost per packet (CPU time of the tool / (2 × transactions)), 3 runs each, at 10 and N flows.
    let cost = |inst: &Instance, label: &str| -> Res<f64> {
        // --perf: a profile of the tool during the cost runs, in the log directory.
        let perf = ctx.o.perf.then(|| {
            let out = ctx
                .dir
                .path
                .join(format!("perf-{}-{label}.data", tool.name()));
            Command::new("perf")
                .args(["record", "-g", "-q", "-p", &pid.to_string(), "-o"])
                .arg(out)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
        });
        let mut v = Vec::new();
        for _ in 0..5 {
            let c0 = cpu_ns(pid);
            // A tool that slows down with many flows gets fewer transactions, not endless minutes.
            let done = rr(&inst.guest_ns, ctx.servers.rr, n, Duration::from_secs(4))?
                .len()
                .max(1);
            v.push((cpu_ns(pid) - c0) as f64 / 1e3 / (2 * done) as f64);
        }
        if let Some(Ok(mut p)) = perf {
            // SAFETY: SIGINT to our own, not yet reaped child.
            unsafe { libc::kill(p.id() as libc::pid_t, libc::SIGINT) };
            let _ = p.wait();
        }
        median(&v).ok_or_else(|| "no samples".into())
    };
    let idle = open_idle(&inst.guest_ns, ctx.servers.idle, Vec::new(), 10)?;
    let c10 = cost(&inst, "10");
    let flows = ctx.o.flows;
    let rss10 = rss_kib(pid);
    let opened = Instant::now();
    let more = idle_helper(&inst.guest_ns, ctx.servers.idle, flows - idle.len());
    let opened = opened.elapsed();
    let (cn, per_conn) = match more {
        Ok(mut more) => {
            thread::sleep(Duration::from_millis(500));
            let rss_n = rss_kib(pid);
            eprintln!(
                "  {}: {flows} idle connections opened in {:.1} s",
                tool.name(),
                opened.as_secs_f64()
            );
            let per = match (rss10, rss_n) {
                (Some(a), Some(b)) => Ok((b - a) / (flows - 10) as f64),
                _ => Err("no VmRSS".to_string()),
            };
            t.add(
                &format!("RSS with {flows} idle connections (MiB)"),
                false,
                tool,
                rss_n
                    .map(|k| k / 1024.0)
                    .ok_or_else(|| "no VmRSS".to_string()),
            );
            let cn = cost(&inst, "many");
            drop(more.stdin.take());
            let _ = more.wait();
            (cn, per)
        }
        Err(e) => (Err(e.clone()), Err(e)),
    };
    t.add("RSS per idle connection (KiB)", false, tool, per_conn);
    let ratio = match (&c10, &cn) {
        (Ok(a), Ok(b)) if *a > 0.0 => Ok(b / a),
        _ => Err("no cost".to_string()),
    };
    t.add("CPU per packet, 10 flows open (µs)", false, tool, c10);
    t.add(
        &format!("CPU per packet, {flows} flows open (µs)"),
        false,
        tool,
        cn,
    );
    t.add(
        &format!("per-packet cost {flows} / 10 flows"),
        false,
        tool,
        ratio,
    );
    if let Ok(mut h) = ctx.servers.held.lock() {
        h.clear();
    }
    Ok(())
}

/// The 1-minute load average, as text.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn raise_nofile() {
    let lim = libc::rlimit {
        rlim_cur: 200_000,
        rlim_max: 200_000,
    };
    // SAFETY: setrlimit reads one valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit, then setrlimit reads it.
        unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur);
            cur.rlim_cur = cur.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &cur);
        }
    }
}

fn bench(o: Options) -> Res<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root (it creates namespaces)".into());
    }
    for bin in ["ip", "unshare", "nsenter", "iperf3"] {
        run(Command::new("sh").args(["-c", &format!("command -v {bin}")]))
            .map_err(|_| format!("{bin} not found"))?;
    }
    for t in &o.tools {
        let bin = match t {
            Tool::Warren => continue,
            Tool::Slirp => "slirp4netns".to_string(),
            Tool::Pasta => o.pasta.display().to_string(),
            Tool::PastaDebian => o.pasta_debian.display().to_string(),
            Tool::Veth => continue,
        };
        run(Command::new("sh").args(["-c", &format!("command -v '{bin}'")])).map_err(|_| {
            format!("{bin} not found (apt-get install slirp4netns passt, or --pasta PATH)")
        })?;
    }
    for (tool, bin) in [
        (Tool::Pasta, &o.pasta),
        (Tool::PastaDebian, &o.pasta_debian),
    ] {
        if o.tools.contains(&tool) {
            if let Ok(out) = Command::new(bin).arg("--version").output() {
                let v = String::from_utf8_lossy(&out.stdout);
                eprintln!(
                    "{}: {} ({})",
                    tool.name(),
                    bin.display(),
                    v.lines().next().unwrap_or("?")
                );
            }
        }
    }
    let warren = o
        .warren
        .clone()
        .or_else(default_warren)
        .ok_or("no warren binary: cargo build --release -p vde-switch, or --warren PATH")?;
    raise_nofile();
    install_signal_handlers();
    remove_stale_netns();
    if let Ok(l) = fs::read_to_string("/proc/loadavg") {
        if l.split_whitespace()
            .next()
            .and_then(|x| x.parse::<f64>().ok())
            .is_some_and(|x| x > 0.5)
        {
            eprintln!(
                "warning: load average {} — other work skews the numbers",
                l.trim()
            );
        }
    }
    let mut dir = TempDir::create(PathBuf::from(format!(
        "/tmp/{NETNS_PREFIX}{}-peers",
        std::process::id()
    )))?;
    dir.keep = o.keep_logs;
    let host = host_netns(&dir, o.ipv6)?;
    let host_ns = PathBuf::from(format!("/run/netns/{}", host.name()));
    let machine_cc = fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .unwrap_or_default()
        .trim()
        .to_string();
    if let Some(cc) = &o.cc {
        set_cc(&host_ns, cc)?;
    }
    let load0 = loadavg();
    let iperf = Proc::spawn(
        "iperf3 server",
        host.command("iperf3")
            .args(["-s", "-B", "0.0.0.0", "-p", &IPERF_PORT.to_string()]),
        &dir.path.join("iperf3-server.log"),
        false,
    )?;
    let iperf6 = if o.ipv6 {
        Some(Proc::spawn(
            "iperf3 IPv6 server",
            host.command("iperf3")
                .args(["-s", "-B", "::", "-p", &IPERF6_PORT.to_string()]),
            &dir.path.join("iperf3-server6.log"),
            false,
        )?)
    } else {
        None
    };
    let servers = HostServers::start(&host_ns)?;
    thread::sleep(Duration::from_millis(300));
    let ctx = Ctx {
        warren,
        dir,
        host,
        servers,
        _iperf: iperf,
        _iperf6: iperf6,
        o,
    };
    eprintln!("warren: {}", ctx.warren.display());
    let mut t = Table {
        tools: ctx.o.tools.clone(),
        rows: Vec::new(),
    };
    for round in 0..if ctx.o.throughput { ctx.o.rounds } else { 0 } {
        for &mtu in &ctx.o.mtus {
            for &tool in &ctx.o.tools {
                eprintln!(
                    "round {}/{}: {} MTU {mtu}",
                    round + 1,
                    ctx.o.rounds,
                    tool.name()
                );
                if let Err(e) = throughput(&ctx, &mut t, tool, mtu, round) {
                    eprintln!("  {}: {e}", tool.name());
                }
            }
        }
    }
    for &tool in ctx.o.tools.iter().filter(|_| ctx.o.small) {
        eprintln!("latency, connection rate, RSS, flows: {}", tool.name());
        if let Err(e) = small_packets(&ctx, &mut t, tool) {
            eprintln!("  {}: {e}", tool.name());
        }
    }
    ctx.servers.stop.store(true, Ordering::SeqCst);
    let md = t.render(true);
    if let Some(p) = &ctx.o.out {
        fs::write(p, &md).map_err(|e| format!("write {}: {e}", p.display()))?;
    }
    let mut out = String::new();
    out.push_str(&format!(
        "peers: {} rounds × {} s per iperf3 run; medians (min–max); {} cores; ratios: warren / peer\n",
        ctx.o.rounds,
        ctx.o.secs,
        thread::available_parallelism().map_or(0, |n| n.get())
    ));
    out.push_str(&format!(
        "TCP congestion control in the namespaces: {} (machine default {machine_cc}); load average \
         (1 min) {load0} at start, {} at end\n",
        ctx.o.cc.as_deref().unwrap_or(&machine_cc),
        loadavg()
    ));
    out.push_str(&t.render(ctx.o.markdown));
    Ok(out)
}

/// `peers __idle NETNS PORT N`: opens N connections from NETNS to 10.0.2.2:PORT, prints "ok", holds
/// them until stdin closes (a process of its own: the file descriptor limit is per process).
fn idle_main(args: &[String]) -> i32 {
    let [ns, port, n] = args else { return 2 };
    let (Ok(port), Ok(n)) = (port.parse::<u16>(), n.parse::<usize>()) else {
        return 2;
    };
    match open_idle(Path::new(ns), port, Vec::new(), n) {
        Ok(held) => {
            println!("ok");
            let _ = std::io::stdout().flush();
            let mut b = [0u8; 1];
            let _ = std::io::stdin().read(&mut b);
            drop(held);
            0
        }
        Err(e) => {
            println!("{e}");
            1
        }
    }
}

/// Holds `n` idle connections from the guest in a helper process; they close when it is dropped.
fn idle_helper(guest_ns: &Path, port: u16, n: usize) -> Res<std::process::Child> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut c = Command::new(exe)
        .arg("__idle")
        .arg(guest_ns)
        .args([port.to_string(), n.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("idle helper: {e}"))?;
    let mut line = String::new();
    if let Some(out) = c.stdout.as_mut() {
        let mut b = [0u8; 1];
        while out.read(&mut b).is_ok_and(|n| n == 1) && b[0] != b'\n' {
            line.push(b[0] as char);
        }
    }
    if line != "ok" {
        let _ = c.kill();
        let _ = c.wait();
        return Err(line);
    }
    Ok(c)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__idle") {
        std::process::exit(idle_main(&args[1..]));
    }
    let o = match parse_options(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("peers: {e}");
            std::process::exit(2);
        }
    };
    match bench(o) {
        Ok(table) => print!("{table}"),
        Err(e) => {
            eprintln!("peers: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let a = |s: &[&str]| parse_options(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let o = a(&["--tools", "warren,pasta", "--mtus", "1500", "--quick"])
            .expect("ok")
            .expect("some");
        assert_eq!(o.tools, vec![Tool::Warren, Tool::Pasta]);
        assert_eq!((o.rounds, o.secs, o.flows), (1, 2, 2000));
        assert!(a(&["--tools", "qemu"]).is_err());
        let o = a(&[]).expect("ok").expect("some");
        assert_eq!(
            o.tools,
            vec![Tool::Warren, Tool::Slirp, Tool::Pasta, Tool::Veth]
        );
        assert_eq!(o.cc.as_deref(), Some("reno"));
        assert!(!o.ipv6 && o.small);
        let o = a(&[
            "--cc",
            "inherit",
            "--tools",
            "pasta-debian,veth",
            "--ipv6",
            "--no-small",
        ])
        .expect("ok")
        .expect("some");
        assert_eq!(o.cc, None);
        assert_eq!(o.tools, vec![Tool::PastaDebian, Tool::Veth]);
        assert!(o.ipv6 && !o.small);
        assert_eq!(
            a(&["--cc", "bbr"])
                .expect("ok")
                .expect("some")
                .cc
                .as_deref(),
            Some("bbr")
        );
        assert!(a(&["--cc", "x; rm"]).is_err());
        assert!(a(&["--help"]).expect("ok").is_none());
    }

    #[test]
    fn table_ratios() {
        let mut t = Table {
            tools: vec![Tool::Warren, Tool::Slirp, Tool::Pasta],
            rows: Vec::new(),
        };
        for v in [4.0, 6.0, 5.0] {
            t.add("TCP", true, Tool::Warren, Ok(v));
        }
        t.add("TCP", true, Tool::Slirp, Ok(2.5));
        t.add("TCP", true, Tool::Pasta, Err("x".into()));
        let md = t.render(true);
        assert!(
            md.contains("| TCP | 5.00 (4.00–6.00) | 2.50 | failed | 2.00× | – |"),
            "{md}"
        );
        assert!(t.render(false).contains("warren/slirp4netns"));
    }

    #[test]
    fn ipv6_router_address() {
        let addrs = "2: tap0    inet6 fd00::24ee:4ff:fe47:ccfa/64 scope global dynamic mngtmpaddr";
        assert_eq!(router_global("fe80::2", addrs).as_deref(), Some("fd00::2"));
        assert_eq!(
            router_global("2001:db8:1::fe", addrs).as_deref(),
            Some("2001:db8:1::fe")
        );
        assert_eq!(router_global("fe80::2", ""), None);
        assert_eq!(router_global("bogus", addrs), None);
    }

    #[test]
    fn table_ratios_to_veth() {
        let mut t = Table {
            tools: vec![Tool::Warren, Tool::Pasta, Tool::Veth],
            rows: Vec::new(),
        };
        t.add("TCP", true, Tool::Warren, Ok(7.0));
        t.add("TCP", true, Tool::Pasta, Ok(3.5));
        t.add("TCP", true, Tool::Veth, Ok(10.0));
        t.add("RSS", false, Tool::Warren, Ok(4.0));
        t.add("RSS", false, Tool::Pasta, Ok(8.0));
        let md = t.render(true);
        assert!(
            md.starts_with(
                "| metric | warren | pasta | veth | warren/pasta | warren/veth | pasta/veth |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| TCP | 7.00 | 3.50 | 10.00 | 2.00× | 0.70× | 0.35× |"),
            "{md}"
        );
        // No veth value: no ratio to it, and veth is never a "peer" of warren.
        assert!(
            md.contains("| RSS (lower is better) | 4.00 | 8.00 | – | 0.50× | – | – |"),
            "{md}"
        );
    }
}
