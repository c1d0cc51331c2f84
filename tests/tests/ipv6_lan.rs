//! Two real guests (QEMU TCG) talking IPv6 on one warren LAN, switched between them rather than
//! routed through the gateway's NAT: one guest on `-netdev stream`, one on `-netdev vde`. Each
//! configures itself by SLAAC from warren's router advertisements (`fec0::/64`, EUI-64 interface
//! ids from their distinct MACs), pings the other's global and link-local address, and sends the
//! other 2 MiB over TCP (busybox `nc`) that the receiver checks by SHA-256. The guests keep
//! running (answering the other) until both are done, then the test stops them.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use warren_tests::guest::{Image, READY_MARKER};
use warren_tests::qemu::{Guest, NetAttach};
use warren_tests::warren::{Warren, WarrenConfig};

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Until every guest has finished its checks (the faster waits for the other).
const CHECKS_TIMEOUT: Duration = Duration::from_secs(480);
const CHECKS_DONE: &str = "@@RESULT checks=done";
const TCP_PORT: u16 = 7006;
/// Bytes each guest sends the other.
const TCP_LEN: u64 = 2 << 20;

/// The front ends, with the MAC each guest uses.
const GUESTS: [(&str, &str); 2] = [
    ("stream", "52:54:00:00:06:b1"),
    ("vde", "52:54:00:00:06:b2"),
];

/// The EUI-64 interface identifier of `mac` (U/L bit flipped, ff:fe in the middle) in the
/// /64 whose first 16 bits are `prefix` (`0xfec0` global, `0xfe80` link-local).
fn eui64(prefix: u16, mac: &str) -> Ipv6Addr {
    let b: Vec<u16> = mac
        .split(':')
        .map(|x| u16::from_str_radix(x, 16).expect("hex MAC"))
        .collect();
    Ipv6Addr::new(
        prefix,
        0,
        0,
        0,
        ((b[0] ^ 0x02) << 8) | b[1],
        (b[2] << 8) | 0xff,
        0xfe00 | b[3],
        (b[4] << 8) | b[5],
    )
}

struct GuestRun {
    front_end: &'static str,
    mac: &'static str,
    results: BTreeMap<String, String>,
    console: String,
    error: Option<String>,
}

struct Run {
    guests: Vec<GuestRun>,
    warren_stderr: String,
}

impl Run {
    fn context(&self) -> String {
        let mut s = format!("warren stderr:\n{}\n", self.warren_stderr);
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

    fn peer(&self, g: &GuestRun) -> &GuestRun {
        self.guests
            .iter()
            .find(|o| o.front_end != g.front_end)
            .expect("two guests")
    }
}

/// The script for the guest whose peer has MAC `peer_mac`.
fn script(peer_mac: &str) -> String {
    let slaac = warren_tests::guest::slaac_address("fec0:");
    let global = eui64(0xfec0, peer_mac);
    let link_local = eui64(0xfe80, peer_mac);
    let blocks = TCP_LEN / 65536;
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
ms() {{ awk '{{ printf "%d", $1 * 1000 }}' /proc/uptime; }}
{slaac}
r link_local "$(ip -6 addr show dev eth0 | grep 'inet6 fe80:' | sed 's/.*inet6 \([0-9a-f:]*\).*/\1/' | head -n1)"
ip -6 addr show dev eth0

# Receive one connection's worth of data from the peer. nc's stdin is a FIFO it holds open
# itself: at EOF on stdin busybox nc half-closes, and the sender's nc would stop at that FIN.
mkfifo /tmp/hold
( nc -l -p {TCP_PORT} 0<>/tmp/hold > /tmp/rx; r rx_exit $?
  r rx_sha "$(sha256sum /tmp/rx | cut -d' ' -f1)"; r rx_bytes "$(wc -c < /tmp/rx)"
  touch /tmp/rx.done ) &
dd if=/dev/urandom of=/tmp/tx bs=64k count={blocks} 2>/dev/null
r tx_sha "$(sha256sum /tmp/tx | cut -d' ' -f1)"

# The peer may still be booting: wait for its global address to answer.
t0=$(ms); ok=fail
while [ $(( $(ms) - t0 )) -lt 300000 ]; do
  if ping6 -c 1 -W 2 {global} > /dev/null 2>&1; then ok=ok; break; fi
  sleep 1
done
r ping_global_wait $ok
r ping_global "$(ping6 -c 3 -W 3 {global} 2>&1 | grep -c 'bytes from {global}')"
r ping_link_local "$(ping6 -c 3 -W 3 -I eth0 {link_local} 2>&1 | grep -c 'bytes from {link_local}')"

# Send: retry while the peer's listener is not up yet (connection refused).
t0=$(ms); rc=1
while [ $(( $(ms) - t0 )) -lt 120000 ]; do
  timeout 120 nc {global} {TCP_PORT} < /tmp/tx > /dev/null 2>/tmp/tx.err; rc=$?
  [ $rc = 0 ] && break
  cat /tmp/tx.err
  sleep 1
done
r tx_exit $rc
r tx_ms $(( $(ms) - t0 ))

t0=$(ms)
while [ ! -e /tmp/rx.done ] && [ $(( $(ms) - t0 )) -lt 180000 ]; do sleep 1; done
ip -6 neigh show dev eth0
ip -6 route
# Switched, not routed: the peer's global address resolves to the peer's own MAC.
r peer_lladdr "$(ip -6 neigh show dev eth0 | grep '^{global} ' | sed 's/.*lladdr \([0-9a-f:]*\).*/\1/' | head -n1)"
echo "{CHECKS_DONE}"
# Keep answering the peer until the test stops this guest.
sleep 100000
"#
    )
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let mut warren = Warren::spawn_with(WarrenConfig {
            args: ["--vde", "{dir}/vde", "--dns-upstream", "127.0.0.1:9", "-v"]
                .map(String::from)
                .to_vec(),
            ..WarrenConfig::default()
        });
        let dir = warren.dir().to_path_buf();
        warren.wait_for_path(&dir.join("vde/ctl"), Duration::from_secs(10));
        let started = Instant::now();
        let mut guests = Vec::new();
        for (i, (front_end, mac)) in GUESTS.into_iter().enumerate() {
            let peer_mac = GUESTS[1 - i].1;
            let image = Image::build(&format!("ipv6-lan-{front_end}"), &script(peer_mac));
            let attach = match front_end {
                "vde" => NetAttach::netdev(format!("vde,id=n0,sock={}", dir.join("vde").display())),
                _ => NetAttach::netdev(warren.netdev()),
            };
            guests.push((front_end, mac, Guest::spawn_with(&image, &attach, mac)));
        }
        let mut errors = Vec::new();
        for (front_end, _, g) in &guests {
            let error = g
                .wait_for(READY_MARKER, BOOT_TIMEOUT)
                .and_then(|_| g.wait_for(CHECKS_DONE, CHECKS_TIMEOUT))
                .map(|t| eprintln!("ipv6-lan: {front_end} guest checks done after {t:?}"))
                .err();
            errors.push(error);
        }
        eprintln!("ipv6-lan: all done after {:?}", started.elapsed());
        let guests: Vec<GuestRun> = guests
            .into_iter()
            .zip(errors)
            .map(|((front_end, mac, g), error)| GuestRun {
                front_end,
                mac,
                results: g.results(),
                console: g.output(),
                error,
            })
            .collect();
        warren.stop(Duration::from_secs(5));
        Run {
            guests,
            warren_stderr: warren.stderr(),
        }
    })
}

#[test]
fn eui64_of_a_mac() {
    assert_eq!(
        eui64(0xfec0, "52:54:00:12:34:56"),
        "fec0::5054:ff:fe12:3456".parse::<Ipv6Addr>().expect("v6")
    );
}

#[test]
fn each_guest_gets_its_own_slaac_and_link_local_address() {
    let run = run();
    for g in &run.guests {
        assert!(g.error.is_none(), "{}", run.context());
        let slaac: Ipv6Addr = run
            .get(g, "slaac")
            .parse()
            .unwrap_or_else(|_| panic!("{}: no SLAAC address\n{}", g.front_end, run.context()));
        assert_eq!(slaac, eui64(0xfec0, g.mac), "{}", run.context());
        let ll: Ipv6Addr = run.get(g, "link_local").parse().unwrap_or_else(|_| {
            panic!("{}: no link-local address\n{}", g.front_end, run.context())
        });
        assert_eq!(ll, eui64(0xfe80, g.mac), "{}", run.context());
    }
}

#[test]
fn guests_ping_each_others_global_and_link_local_address() {
    let run = run();
    for g in &run.guests {
        assert_eq!(run.get(g, "ping_global_wait"), "ok", "{}", run.context());
        assert_eq!(run.get(g, "ping_global"), "3", "{}", run.context());
        assert_eq!(run.get(g, "ping_link_local"), "3", "{}", run.context());
        // Neighbour discovery found the peer itself on the LAN (not the router's MAC).
        assert_eq!(
            run.get(g, "peer_lladdr"),
            run.peer(g).mac,
            "{}: neighbour entry of the peer\n{}",
            g.front_end,
            run.context()
        );
    }
}

#[test]
fn guests_exchange_2mb_over_tcp_each_way() {
    let run = run();
    for g in &run.guests {
        let peer = run.peer(g);
        assert_eq!(run.get(g, "tx_exit"), "0", "{}", run.context());
        assert_eq!(run.get(peer, "rx_exit"), "0", "{}", run.context());
        assert_eq!(
            run.get(peer, "rx_bytes"),
            TCP_LEN.to_string(),
            "{} -> {}\n{}",
            g.front_end,
            peer.front_end,
            run.context()
        );
        assert_eq!(
            run.get(peer, "rx_sha"),
            run.get(g, "tx_sha"),
            "{} -> {}\n{}",
            g.front_end,
            peer.front_end,
            run.context()
        );
        eprintln!(
            "ipv6-lan: {} -> {}: 2 MiB in {} ms",
            g.front_end,
            peer.front_end,
            run.get(g, "tx_ms")
        );
    }
}
