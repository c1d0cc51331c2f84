//! One LAN, many front ends: three real guests (QEMU TCG) on one warren, one over `-netdev vde`, one
//! over `-netdev stream`, one over `-netdev dgram`. Each leases its own address by DHCP, downloads
//! (2 MiB, HTTP) from and uploads (1 MiB, TCP) to host loopback services through the gateway, and
//! reaches both other guests by ping and TCP
//! (busybox `nc`). The guests keep serving until all three are done, then the test stops them.
//!
//! warren runs as `nobody` (when the tests run as root) while QEMU runs as root, so the VDE handshake
//! and the dgram peer sockets are exercised across users.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use warren_tests::guest::{Image, READY_MARKER};
use warren_tests::qemu::{Guest, NetAttach};
use warren_tests::servers::{pseudo_random, HttpServer, UploadSink};
use warren_tests::warren::{Warren, WarrenConfig};

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Until every guest has finished its checks (the slowest waits for the others to boot).
const CHECKS_TIMEOUT: Duration = Duration::from_secs(480);
const CHECKS_DONE: &str = "@@RESULT checks=done";
const TCP_PORT: u16 = 7000;
/// Bytes each guest downloads from the host (and uploads: 1 MiB).
const HTTP_LEN: usize = 2 << 20;
const UPLOAD_LEN: u64 = 1 << 20;
/// The leases three guests get from a fresh warren (dhcp-start 10.0.2.15).
const LEASES: [u8; 3] = [15, 16, 17];

/// The three front ends, with the MAC each guest uses.
const GUESTS: [(&str, &str); 3] = [
    ("vde", "52:54:00:00:00:a1"),
    ("stream", "52:54:00:00:00:a2"),
    ("dgram", "52:54:00:00:00:a3"),
];

struct GuestRun {
    front_end: &'static str,
    results: BTreeMap<String, String>,
    console: String,
    error: Option<String>,
    checks_secs: f64,
}

struct Run {
    guests: Vec<GuestRun>,
    http: HttpServer,
    sink: UploadSink,
    warren_stdout: String,
    warren_stderr: String,
}

impl Run {
    fn context(&self) -> String {
        let mut s = format!(
            "warren stdout:\n{}\nwarren stderr:\n{}\n",
            self.warren_stdout, self.warren_stderr
        );
        for g in &self.guests {
            s.push_str(&format!(
                "\n===== guest on {} (error: {}) =====\n{}\n",
                g.front_end,
                g.error.as_deref().unwrap_or("none"),
                g.console
            ));
        }
        s
    }

    fn get<'a>(&'a self, g: &'a GuestRun, key: &str) -> &'a str {
        g.results.get(key).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "guest on {} reported no {key:?}\n{}",
                g.front_end,
                self.context()
            )
        })
    }
}

fn script(http_port: u16, upload_port: u16) -> String {
    let leases = LEASES.map(|l| l.to_string()).join(" ");
    let dhcp = warren_tests::guest::dhcp_lease(90, 10, 3);
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
ms() {{ awk '{{ printf "%d", $1 * 1000 }}' /proc/uptime; }}
{dhcp}ip=$(cat /tmp/ip 2>/dev/null)

timeout 60 wget -q -O /tmp/f http://10.0.2.2:{http_port}/f
r http_exit $?
r http_sha "$(sha256sum /tmp/f | cut -d' ' -f1)"
rm -f /tmp/f

dd if=/dev/urandom of=/tmp/up bs=64k count=16 2>/dev/null
r upload_sha "$(sha256sum /tmp/up | cut -d' ' -f1)"
timeout 60 nc 10.0.2.2 {upload_port} < /tmp/up > /tmp/up.reply
r upload_exit $?
r upload_reply "$(cat /tmp/up.reply)"
rm -f /tmp/up

# Serve every peer that connects, for as long as the guest runs.
( while true; do echo "tcp-ok-from-$ip" | nc -l -p {TCP_PORT} > /dev/null; done ) &

for n in {leases}; do
  peer=10.0.2.$n
  [ "$peer" = "$ip" ] && continue
  t0=$(ms); ok=fail
  while [ $(( $(ms) - t0 )) -lt 300000 ]; do
    if ping -c 1 -W 2 $peer > /dev/null 2>&1; then ok=ok; break; fi
    sleep 1
  done
  r "ping_$peer" $ok
  r "ping_${{peer}}_ms" $(( $(ms) - t0 ))
  out=""
  t0=$(ms)
  while [ $(( $(ms) - t0 )) -lt 60000 ]; do
    out=$(echo "hello-from-$ip" | timeout 10 nc $peer {TCP_PORT} 2>&1)
    case "$out" in tcp-ok-from-*) break;; esac
    sleep 1
  done
  r "tcp_$peer" "$out"
  out=$(ping -c 5 -i 0.2 -W 2 $peer 2>&1 | grep -c 'bytes from')
  r "ping5_$peer" "$out"
done
ip neigh show dev eth0
echo "{CHECKS_DONE}"
# Keep serving the others until the test stops this guest.
sleep 100000
"#
    )
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let http = HttpServer::start(BTreeMap::from([(
            "/f".to_owned(),
            pseudo_random(HTTP_LEN, 0x6d75),
        )]));
        let sink = UploadSink::start();
        let mut warren = Warren::spawn_with(WarrenConfig {
            args: [
                "--dgram",
                "{dir}/dgram.sock",
                "--vde",
                "{dir}/vde",
                "--dns-upstream",
                "127.0.0.1:9",
                "-v",
            ]
            .map(String::from)
            .to_vec(),
            ..WarrenConfig::default()
        });
        let dir = warren.dir().to_path_buf();
        warren.wait_for_path(&dir.join("vde/ctl"), Duration::from_secs(10));
        warren.wait_for_path(&dir.join("dgram.sock"), Duration::from_secs(10));
        let script = script(http.port, sink.port);
        let started = Instant::now();
        let mut guests = Vec::new();
        for (front_end, mac) in GUESTS {
            let image = Image::build(&format!("multi-{front_end}"), &script);
            let attach = match front_end {
                "vde" => NetAttach::netdev(format!("vde,id=n0,sock={}", dir.join("vde").display())),
                "stream" => NetAttach::netdev(warren.netdev()),
                _ => {
                    // QEMU binds its own end; warren (another user) must be able to send to it.
                    let mut a = NetAttach::netdev(format!(
                        "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                        dir.join("guest-dgram.sock").display(),
                        dir.join("dgram.sock").display()
                    ));
                    a.wrapper = ["sh", "-c", "umask 000 && exec \"$@\"", "sh"]
                        .map(String::from)
                        .to_vec();
                    a
                }
            };
            guests.push((front_end, Guest::spawn_with(&image, &attach, mac)));
        }
        let mut out = Vec::new();
        for (front_end, g) in &guests {
            let error = g
                .wait_for(READY_MARKER, BOOT_TIMEOUT)
                .and_then(|t| {
                    eprintln!("multi-guest: {front_end} guest booted after {t:?}");
                    g.wait_for(CHECKS_DONE, CHECKS_TIMEOUT)
                })
                .map(|t| eprintln!("multi-guest: {front_end} guest checks done after {t:?}"))
                .err();
            out.push((error, started.elapsed().as_secs_f64()));
        }
        let guests: Vec<GuestRun> = guests
            .into_iter()
            .zip(out)
            .map(|((front_end, g), (error, secs))| {
                let console = g.output();
                GuestRun {
                    front_end,
                    results: g.results(),
                    console,
                    error,
                    checks_secs: secs,
                }
            })
            .collect();
        eprintln!("multi-guest: all done after {:?}", started.elapsed());
        warren.stop(Duration::from_secs(5));
        Run {
            guests,
            http,
            sink,
            warren_stdout: warren.stdout(),
            warren_stderr: warren.stderr(),
        }
    })
}

#[test]
fn each_guest_leases_a_distinct_address() {
    let run = run();
    let mut ips = Vec::new();
    for g in &run.guests {
        assert_eq!(run.get(g, "dhcp_exit"), "0", "{}", run.context());
        ips.push(run.get(g, "ip").to_owned());
    }
    let mut uniq = ips.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 3, "leases {ips:?}\n{}", run.context());
    for ip in &ips {
        assert!(
            LEASES.iter().any(|l| *ip == format!("10.0.2.{l}")),
            "lease {ip} not among the first three\n{}",
            run.context()
        );
    }
}

#[test]
fn each_guest_reaches_a_host_service_through_the_gateway() {
    let run = run();
    let uploads = run.sink.uploads();
    for g in &run.guests {
        assert_eq!(run.get(g, "upload_exit"), "0", "{}", g.front_end);
        let sha = run.get(g, "upload_sha");
        assert_eq!(
            run.get(g, "upload_reply"),
            format!("{sha} {UPLOAD_LEN}"),
            "{} guest's upload",
            g.front_end
        );
        assert!(
            uploads
                .iter()
                .any(|u| u.sha256 == sha && u.bytes == UPLOAD_LEN),
            "{}: {uploads:?}",
            g.front_end
        );
        assert_eq!(run.get(g, "http_exit"), "0", "{}", g.front_end);
        assert_eq!(
            run.get(g, "http_sha"),
            run.http.sha256("/f"),
            "{}",
            g.front_end
        );
    }
}

/// Every guest's view of every other guest: (this guest, peer address).
fn pairs(run: &Run) -> Vec<(&GuestRun, String)> {
    let mut v = Vec::new();
    for g in &run.guests {
        for other in &run.guests {
            if !std::ptr::eq(g, other) {
                if let Some(ip) = other.results.get("ip") {
                    v.push((g, ip.clone()));
                }
            }
        }
    }
    assert_eq!(
        v.len(),
        6,
        "not every guest got an address\n{}",
        run.context()
    );
    v
}

#[test]
fn guests_ping_each_other_across_front_ends() {
    let run = run();
    for (g, peer) in pairs(run) {
        assert_eq!(
            run.get(g, &format!("ping_{peer}")),
            "ok",
            "{} guest could not ping {peer}\n{}",
            g.front_end,
            run.context()
        );
        assert_eq!(
            run.get(g, &format!("ping5_{peer}")),
            "5",
            "{} guest lost pings to {peer}\n{}",
            g.front_end,
            run.context()
        );
    }
}

#[test]
fn guests_reach_each_other_over_tcp_across_front_ends() {
    let run = run();
    for (g, peer) in pairs(run) {
        assert_eq!(
            run.get(g, &format!("tcp_{peer}")),
            format!("tcp-ok-from-{peer}"),
            "{} guest could not reach {peer}:{TCP_PORT}\n{}",
            g.front_end,
            run.context()
        );
    }
    for g in &run.guests {
        eprintln!(
            "multi-guest: {} guest finished its checks {:.0} s after start",
            g.front_end, g.checks_secs
        );
    }
}

#[test]
fn warren_serves_and_announces_every_front_end() {
    let run = run();
    for want in ["-netdev stream,", "-netdev dgram,", "-netdev vde,"] {
        assert!(
            run.warren_stdout.contains(want),
            "warren did not print {want:?}:\n{}",
            run.warren_stdout
        );
    }
    for want in ["(vde ", "(stream unix:", "(dgram "] {
        assert!(
            run.warren_stderr.contains(&format!("connected {want}")),
            "no port {want:?} in warren's log:\n{}",
            run.warren_stderr
        );
    }
}
