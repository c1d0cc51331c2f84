//! overlay: guest ↔ guest across a VXLAN overlay between two warrens (issue 14's benchmark row).
//!
//! ```text
//!  netns G1 (guest 1)          netns H1 ("host 1")         netns H2 ("host 2")         netns G2 (guest 2)
//!  10.0.2.101/24 tap0 ══ warren --vxlan 192.168.90.2 ══ veth ══ warren --vxlan 192.168.90.1 ══ tap0 10.0.2.102/24
//!                        (gateway)  192.168.90.1/24            192.168.90.2/24 --no-gateway
//! ```
//!
//! Each warren serves a tap in its guest namespace (`--netns PATH`); the underlay is a veth pair
//! between the two host namespaces. iperf3 TCP runs guest 1 → guest 2 and back; the CPU time both
//! warrens used (utime + stime from /proc) is divided by the bytes moved. Nothing leaves the
//! namespaces this tool makes.
//!
//! Run as root: `cargo build --release -p vde-switch -p warren-benches && sudo target/release/overlay`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use warren_benches::median;
use warren_benches::proc::{
    install_signal_handlers, ip, remove_stale_netns, run, Netns, Proc, TempDir, NETNS_PREFIX,
};

type Res<T> = Result<T, String>;

const USAGE: &str = "\
usage: overlay [--warren PATH] [--rounds N] [--secs S] [--markdown]

Two warrens joined by a VXLAN overlay over a veth pair, a tap guest namespace on each; iperf3
TCP guest 1 -> guest 2 and back (medians of rounds) and both warrens' CPU time per GB moved.
Must run as root; needs iproute2 and iperf3.
";

struct Opts {
    warren: PathBuf,
    rounds: usize,
    secs: u64,
    markdown: bool,
}

fn parse_args() -> Res<Opts> {
    let mut o = Opts {
        warren: std::env::var_os("WARREN_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target/release/warren")),
        rounds: 3,
        secs: 5,
        markdown: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--warren" => o.warren = PathBuf::from(val("--warren")?),
            "--rounds" => o.rounds = val("--rounds")?.parse().map_err(|_| "bad --rounds")?,
            "--secs" => o.secs = val("--secs")?.parse().map_err(|_| "bad --secs")?,
            "--markdown" => o.markdown = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !o.warren.is_file() {
        return Err(format!("no warren binary at {}", o.warren.display()));
    }
    Ok(o)
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_secs(pid: u32) -> Res<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is [0]; utime [11], stime [12].
    Ok((ticks(11) + ticks(12)) / 100.0)
}

fn wait_for_tap(ns: &Netns) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if run(Command::new("ip").args(["-n", ns.name(), "link", "show", "tap0"])).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("no tap0 in {}", ns.name()))
}

fn main() {
    install_signal_handlers();
    if let Err(e) = main_() {
        eprintln!("overlay: {e}");
        std::process::exit(1);
    }
}

fn main_() -> Res<()> {
    let o = parse_args()?;
    remove_stale_netns();
    let pid = std::process::id();
    let name = |t: &str| format!("{NETNS_PREFIX}{pid}-{t}");
    let (h1, h2) = (Netns::create(&name("h1"))?, Netns::create(&name("h2"))?);
    let (g1, g2) = (Netns::create(&name("g1"))?, Netns::create(&name("g2"))?);
    ip(&[
        "link",
        "add",
        "u1",
        "netns",
        h1.name(),
        "type",
        "veth",
        "peer",
        "name",
        "u2",
        "netns",
        h2.name(),
    ])?;
    for (ns, i, a) in [
        (&h1, "u1", "192.168.90.1/24"),
        (&h2, "u2", "192.168.90.2/24"),
    ] {
        ip(&["-n", ns.name(), "addr", "add", a, "dev", i])?;
        ip(&["-n", ns.name(), "link", "set", i, "up"])?;
    }
    let dir = TempDir::create(std::env::temp_dir().join(format!("warren-overlay-{pid}")))?;
    let spawn = |host: &Netns, guest: &Netns, args: &[&str], tag: &str| -> Res<Proc> {
        let mut c = host.command(&o.warren);
        c.arg("--socket")
            .arg(dir.path.join(format!("{tag}.sock")))
            .arg("--netns")
            .arg(Path::new("/run/netns").join(guest.name()))
            .args(args);
        Proc::spawn(tag, &mut c, &dir.path.join(format!("{tag}.log")), false)
    };
    let mut w1 = spawn(&h1, &g1, &["--vxlan", "192.168.90.2"], "warren1")?;
    let mut w2 = spawn(
        &h2,
        &g2,
        &["--vxlan", "192.168.90.1", "--no-gateway"],
        "warren2",
    )?;
    for (g, a) in [(&g1, "10.0.2.101/24"), (&g2, "10.0.2.102/24")] {
        wait_for_tap(g)?;
        ip(&["-n", g.name(), "addr", "add", a, "dev", "tap0"])?;
        ip(&["-n", g.name(), "link", "set", "tap0", "mtu", "1450", "up"])?;
    }
    w1.check_alive()?;
    w2.check_alive()?;
    let _server = Proc::spawn(
        "iperf3 -s",
        g2.command("iperf3").args(["-s", "-B", "10.0.2.102"]),
        &dir.path.join("iperf3-s.log"),
        false,
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let mut rows = Vec::new();
    for (label, reverse) in [("guest 1 → guest 2", false), ("guest 2 → guest 1", true)] {
        let (mut gbps, mut cpu_per_gb) = (Vec::new(), Vec::new());
        for _ in 0..o.rounds {
            let (c1, c2) = (cpu_secs(w1.child.id())?, cpu_secs(w2.child.id())?);
            let mut c = g1.command("iperf3");
            c.args([
                "-c",
                "10.0.2.102",
                "-J",
                "-O",
                "1",
                "-t",
                &o.secs.to_string(),
            ]);
            if reverse {
                c.arg("-R");
            }
            let out = c.output().map_err(|e| format!("iperf3: {e}"))?;
            let r = warren_benches::iperf::parse(&String::from_utf8_lossy(&out.stdout))?;
            let cpu = cpu_secs(w1.child.id())? - c1 + cpu_secs(w2.child.id())? - c2;
            let bytes = r.received_bps / 8.0 * (o.secs + 1) as f64;
            gbps.push(r.received_bps / 1e9);
            cpu_per_gb.push(cpu / (bytes / 1e9));
        }
        rows.push((
            label,
            median(&gbps).unwrap_or(0.0),
            median(&cpu_per_gb).unwrap_or(0.0),
        ));
    }
    if o.markdown {
        println!("| path (MTU 1450, VXLAN over veth) | Gbit/s | CPU s per GB (both warrens) |");
        println!("| --- | ---: | ---: |");
    }
    for (label, g, c) in rows {
        if o.markdown {
            println!("| {label} | {g:.2} | {c:.2} |");
        } else {
            println!("{label}: {g:.2} Gbit/s, {c:.2} CPU s per GB (both warrens)");
        }
    }
    Ok(())
}
