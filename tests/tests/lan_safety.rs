//! LAN safety with a real guest: the scenario of issue 9. One raw client on warren's `--socket`
//! floods broadcast ARP requests at full speed and never reads its replies; a real guest (QEMU TCG)
//! on the same LAN gets its lease by DHCP, downloads over HTTP from a host loopback server (checksum
//! verified) and uploads. Before storm control and fair queues the flood filled the guest's port
//! queue and the guest failed with "No route to host"; now the flood is rate-limited on its own port
//! and the guest's traffic is untouched.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warren_tests::guest::{Image, READY_MARKER};
use warren_tests::qemu::{Guest, NetAttach};
use warren_tests::servers::{pseudo_random, HttpServer, UploadSink};
use warren_tests::warren::{Warren, WarrenConfig};

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const CHECKS_TIMEOUT: Duration = Duration::from_secs(300);
const CHECKS_DONE: &str = "@@RESULT checks=done";
const HTTP_LEN: usize = 2 << 20;
const UPLOAD_LEN: u64 = 1 << 20;
const GUEST_MAC: &str = "52:54:00:00:00:c1";
const FLOOD_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xf1];

fn script(http_port: u16, upload_port: u16) -> String {
    let dhcp = warren_tests::guest::dhcp_lease(60, 10, 3);
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
{dhcp}timeout 120 wget -q -O /tmp/f http://10.0.2.2:{http_port}/f
r http_exit $?
r http_sha "$(sha256sum /tmp/f | cut -d' ' -f1)"
rm -f /tmp/f
dd if=/dev/urandom of=/tmp/up bs=64k count=16 2>/dev/null
r upload_sha "$(sha256sum /tmp/up | cut -d' ' -f1)"
timeout 120 nc 10.0.2.2 {upload_port} < /tmp/up > /tmp/up.reply
r upload_exit $?
r upload_reply "$(cat /tmp/up.reply)"
echo "{CHECKS_DONE}"
sleep 100000
"#
    )
}

/// A broadcast ARP request (who has 10.0.2.2, from 10.0.2.60), QEMU stream framing.
fn flood_batch() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&FLOOD_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&FLOOD_MAC);
    f.extend_from_slice(&[10, 0, 2, 60, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2]);
    let mut b = Vec::new();
    for _ in 0..256 {
        b.extend_from_slice(&(f.len() as u32).to_be_bytes());
        b.extend_from_slice(&f);
    }
    b
}

/// Floods from its own thread until stopped; never reads.
struct Flooder {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    /// The flooder's socket, to unblock its writer when stopping.
    sock: UnixStream,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flooder {
    fn start(socket: &Path) -> Flooder {
        let mut s = UnixStream::connect(socket).expect("flooder connects");
        let sock = s.try_clone().expect("clone the flooder's socket");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (st, se) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let batch = flood_batch();
            // Blocking writes, as fast as warren reads, until stopped (the socket is shut down).
            while !st.load(Ordering::SeqCst) && s.write_all(&batch).is_ok() {
                se.fetch_add(256, Ordering::Relaxed);
            }
        });
        Flooder {
            stop,
            sent,
            sock,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One counter of the API's `stats` reply.
fn stat(api: &Path, key: &str) -> Option<u64> {
    let mut s = UnixStream::connect(api).ok()?;
    s.write_all(b"{\"execute\":\"stats\"}\n").ok()?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let rest = &out[out.find(&format!("\"{key}\""))? + key.len() + 2..];
    let digits: String = rest
        .trim_start_matches([':', ' '])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn a_guest_gets_its_lease_and_downloads_through_a_broadcast_flood() {
    let http = HttpServer::start(BTreeMap::from([(
        "/f".to_owned(),
        pseudo_random(HTTP_LEN, 0x1a75),
    )]));
    let sink = UploadSink::start();
    let mut warren = Warren::spawn_with(WarrenConfig {
        args: [
            "--api",
            "{dir}/api.sock",
            "--dns-upstream",
            "127.0.0.1:9",
            "-v",
        ]
        .map(String::from)
        .to_vec(),
        ..WarrenConfig::default()
    });
    let dir = warren.dir().to_path_buf();
    let api = dir.join("api.sock");
    warren.wait_for_path(&api, Duration::from_secs(10));
    // The flooder is port 0; the guest will be port 1.
    let mut flood = Flooder::start(warren.socket());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !warren.stderr().contains("port 0 connected") {
        assert!(Instant::now() < deadline, "{}", warren.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let image = Image::build("lan-safety-flood", &script(http.port, sink.port));
    let guest = Guest::spawn_with(&image, &NetAttach::netdev(warren.netdev()), GUEST_MAC);
    let outcome = guest
        .wait_for(READY_MARKER, BOOT_TIMEOUT)
        .and_then(|t| {
            eprintln!("lan-safety: guest booted after {t:?}");
            guest.wait_for(CHECKS_DONE, CHECKS_TIMEOUT)
        })
        .map(|t| eprintln!("lan-safety: guest checks done after {t:?}"));
    let storm = stat(&api, "port_drop_storm");
    let sent = flood.stop();
    warren.stop(Duration::from_secs(5));
    let (results, console, log) = (guest.results(), guest.output(), warren.stderr());
    let ctx = format!("warren stderr:\n{log}\nguest console:\n{console}");
    let get = |k: &str| {
        results
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("guest reported no {k:?} ({outcome:?})\n{ctx}"))
    };
    assert_eq!(get("dhcp_exit"), "0", "{ctx}");
    assert_eq!(get("ip"), "10.0.2.15", "{ctx}");
    assert_eq!(get("http_exit"), "0", "{ctx}");
    assert_eq!(get("http_sha"), http.sha256("/f"), "{ctx}");
    assert_eq!(get("upload_exit"), "0", "{ctx}");
    let up = get("upload_sha");
    assert_eq!(get("upload_reply"), format!("{up} {UPLOAD_LEN}"), "{ctx}");
    assert!(
        sink.uploads()
            .iter()
            .any(|u| u.sha256 == up && u.bytes == UPLOAD_LEN),
        "{ctx}"
    );
    outcome.unwrap_or_else(|e| panic!("{e}\n{ctx}"));
    // The flood was real, and storm control dropped it on the flooder's own port.
    eprintln!("lan-safety: flooder sent {sent} frames; drop_storm {storm:?}");
    assert!(
        sent > 100_000,
        "the flood was too weak to mean anything: {sent}"
    );
    assert!(
        storm.is_some_and(|n| n > sent / 2),
        "storm control: {storm:?} of {sent}\n{ctx}"
    );
    // The exit log lists each open port's nonzero counters (the guest still runs): nothing of the
    // guest's was dropped. The flooder's port closed when it stopped: its close line counts the storm.
    let guest_port = log
        .lines()
        .find(|l| l.contains("port 1 (stream unix:") && l.contains("):"))
        .unwrap_or_else(|| panic!("no exit summary of the guest's port\n{ctx}"));
    for k in [
        "drop_tx_full",
        "drop_flood_full",
        "drop_peer_full",
        "drop_storm",
    ] {
        assert!(!guest_port.contains(k), "{guest_port}\n{ctx}");
    }
    let flooder_port = log
        .lines()
        .find(|l| l.contains("port 0 (stream unix:") && l.contains("drop_storm"))
        .unwrap_or_else(|| panic!("no counters of the flooder's port\n{ctx}"));
    assert!(!flooder_port.contains("drop_storm: 0,"), "{flooder_port}");
}
