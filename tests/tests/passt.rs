//! warren as libvirt's `passt`: the contract of libvirt's passt backend
//! (`<interface type='user'><backend type='passt'/>`), tested without libvirt.
//!
//! Debian 12's libvirt 9.0 refuses `<backend type='passt'/>` in `virsh -c qemu:///session create`
//! ("Invalid value for attribute 'type' in element 'backend'"), so the test replays what libvirt
//! does, read from libvirt's `src/qemu/qemu_passt.c`:
//! - `qemuPasstStart` (libvirt 9.5 .. 10.x; commit a8262cb331db of libvirt/libvirt) runs
//!   `passt --one-off --socket DIR/NAME-net0.socket --pid DIR/NAME-net0-passt.pid [--mtu N]
//!   [--interface DEV] [--log-file F] [--address A [--netmask P]] [--tcp-ports|--udp-ports
//!   [ADDR/]START[-END][:TO[-TOEND]]]...` and waits for it to exit 0 (passt daemonizes); libvirt
//!   9.0..9.4 (commit 02355840ced2) passed `--mac-addr MAC` instead of `--pid`;
//! - it then reads the PID file and `qemuPasstAddNetProps` gives QEMU
//!   `-netdev {"type":"stream","addr":{"type":"unix","path":SOCKET},"server":false}` (plus
//!   `"reconnect":5` on QEMU >= 8.0; Debian 12's QEMU 7.2 has no reconnect);
//! - `qemuPasstStop` kills the PID from the file; with `--one-off` passt also exits by itself
//!   when QEMU disconnects.
//!
//! The guest (QEMU TCG, busybox) gets its lease (the `--address` libvirt passed), fetches a file
//! from a host loopback server through the gateway, and serves HTTP that the host reaches through
//! the `--tcp-ports` forward. When QEMU goes, warren must exit and remove its socket and PID file.
//! warren runs as `nobody`, as a session libvirt would run it as the user.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use warren_tests::guest::Image;
use warren_tests::is_root;
use warren_tests::qemu::{Guest, NetAttach, DEFAULT_MAC};
use warren_tests::servers::{closed_port, pseudo_random, HttpServer};
use warren_tests::warren::{warren_binary, NOBODY};

const GUEST_ADDR: &str = "192.168.100.20";
const GUEST_GW: &str = "192.168.100.2";
const G_HTTP: u16 = 8001;

fn guest_script(host_http: u16) -> String {
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
cat > /tmp/dhcp.sh <<'EOS'
#!/bin/sh
case "$1" in
bound|renew)
  echo "@@RESULT dhcp_ip=$ip"
  echo "@@RESULT dhcp_router=$router"
  ip addr flush dev "$interface"
  ip addr add "$ip/$mask" dev "$interface"
  for gw in $router; do ip route add default via "$gw" dev "$interface"; done
  ;;
esac
exit 0
EOS
chmod +x /tmp/dhcp.sh
ip link set eth0 up
timeout 60 udhcpc -i eth0 -s /tmp/dhcp.sh -q -f -n -t 5 -T 2
r dhcp_exit $?
timeout 60 wget -q -O /tmp/f http://{GUEST_GW}:{host_http}/f
r wget_exit $?
r wget_sha "$(sha256sum /tmp/f | cut -d' ' -f1)"
mkdir -p /www
echo "served by the guest behind warren-as-passt" > /www/g.txt
httpd -p {G_HTTP} -h /www
r httpd_exit $?
r guest_ready 1
sleep 600
"#
    )
}

/// Whether `pid` still runs (a zombie waiting for its reaper counts as gone).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn libvirt_passt_contract() {
    assert!(is_root(), "runs warren as nobody: needs root");
    let data = pseudo_random(200_000, 13);
    let http = HttpServer::start(BTreeMap::from([("/f".to_owned(), data)]));
    // libvirt's passtStateDir holds the socket and PID file; warren (as nobody) must write there.
    let dir = tempfile::Builder::new()
        .prefix("warren-passt-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let bin = dir.path().join("passt");
    warren_tests::link_or_copy(&warren_binary(), &bin).expect("warren as passt");
    let socket = dir.path().join("vm1-net0.socket");
    let pidfile = dir.path().join("vm1-net0-passt.pid");
    let log = dir.path().join("vm1-net0-passt.log");
    let fwd = closed_port();
    // qemuPasstStart's argv for <portForward proto='tcp' address='127.0.0.1'><range start=FWD to=8001/>,
    // <ip address='192.168.100.20' prefix='24'/>, <mtu size='1500'/>, <backend logFile=.../>.
    let argv = [
        "--one-off".to_string(),
        "--socket".into(),
        socket.display().to_string(),
        "--pid".into(),
        pidfile.display().to_string(),
        "--mtu".into(),
        "1500".into(),
        "--log-file".into(),
        log.display().to_string(),
        "--address".into(),
        GUEST_ADDR.into(),
        "--netmask".into(),
        "24".into(),
        "--tcp-ports".into(),
        format!("127.0.0.1/{fwd}:{G_HTTP}"),
    ];
    let started = Instant::now();
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(&bin)
        .args(&argv)
        .output()
        .expect("run setpriv passt");
    assert!(
        out.status.success(),
        "passt drop-in failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("passt drop-in daemonized in {:?}", started.elapsed());
    // What libvirt relies on once passt has exited 0: the socket and the PID file exist.
    assert!(socket.exists(), "no socket after passt returned");
    let pid: u32 = fs::read_to_string(&pidfile)
        .expect("PID file written before passt returned")
        .trim()
        .parse()
        .expect("PID file holds a number");
    assert!(alive(pid), "the daemon {pid} is not running");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&NOBODY.to_string())),
        "daemon not running as nobody: {status}"
    );

    let image = Image::build("passt-libvirt", &guest_script(http.port));
    // qemuPasstAddNetProps on a QEMU without stream reconnect (Debian 12's 7.2).
    let netdev = format!(
        "stream,id=n0,server=off,addr.type=unix,addr.path={}",
        socket.display()
    );
    let guest = Guest::spawn_with(&image, &NetAttach::netdev(netdev), DEFAULT_MAC);
    let ready = guest.wait_for("@@RESULT guest_ready=1", Duration::from_secs(240));
    let r = guest.results();
    let ctx = format!(
        "{}\n--- warren log ---\n{}",
        guest.output(),
        fs::read_to_string(&log).unwrap_or_default()
    );
    ready.unwrap_or_else(|e| panic!("guest not ready: {e}\n{ctx}"));
    assert_eq!(r.get("dhcp_exit").map(String::as_str), Some("0"), "{ctx}");
    assert_eq!(
        r.get("dhcp_ip").map(String::as_str),
        Some(GUEST_ADDR),
        "{ctx}"
    );
    assert_eq!(
        r.get("dhcp_router").map(String::as_str),
        Some(GUEST_GW),
        "{ctx}"
    );
    assert_eq!(r.get("wget_exit").map(String::as_str), Some("0"), "{ctx}");
    assert_eq!(r.get("wget_sha"), Some(&http.sha256("/f")), "{ctx}");
    assert_eq!(r.get("httpd_exit").map(String::as_str), Some("0"), "{ctx}");

    // The --tcp-ports forward from the host's loopback to the guest's httpd.
    let mut got = Err(String::new());
    for _ in 0..5 {
        got = http_get(fwd, "/g.txt");
        if got.as_ref().is_ok_and(|b| b.contains("200")) {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let body = got.unwrap_or_else(|e| panic!("forward 127.0.0.1:{fwd}: {e}\n{ctx}"));
    assert!(
        body.contains("served by the guest behind warren-as-passt"),
        "{body}\n{ctx}"
    );

    // --one-off: when QEMU goes, so does warren, with its socket and PID file.
    assert!(alive(pid), "warren exited while the guest was connected");
    drop(guest);
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !alive(pid),
        "warren ({pid}) still runs 20 s after the guest left\n{log_text}"
    );
    assert!(!socket.exists(), "socket left behind");
    assert!(!pidfile.exists(), "PID file left behind");
    assert!(
        log_text.contains("--one-off: the guest left"),
        "the log file (--log-file) should say why warren stopped:\n{log_text}"
    );
}

/// The errors a caller sees come from the daemon before it detaches: libvirt reports passt's
/// stderr when it exits non-zero.
#[test]
fn passt_reports_errors_before_detaching() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("passt");
    warren_tests::link_or_copy(&warren_binary(), &bin).expect("warren as passt");
    let out = Command::new(&bin)
        .args(["--one-off", "--socket"])
        .arg(dir.path().join("no/such/dir/s.socket"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/dir/s.socket"), "{err}");
    let out = Command::new(&bin)
        .args(["--outbound-if4", "eth0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--outbound-if4") && err.lines().count() == 1,
        "{err}"
    );
}

/// QEMU's own `-netdev passt` backend (QEMU 10.1, `net/passt.c`: `net_passt_decode_args` and
/// `net_passt_start_daemon`): QEMU makes a socketpair, runs `passt --quiet [options] --pid FILE
/// --fd 3` with the other end at descriptor 3, waits for it to exit 0, reads the PID file and
/// speaks the stream framing (4-byte length, frame) on its end; it kills the PID at cleanup, and
/// passt exits by itself when the connection closes (`--fd` implies `--one-off`). Debian 12's
/// QEMU 7.2 predates that backend, so the test plays QEMU, with `--fd N` for the number its end
/// got: a DHCP exchange over the descriptor, then warren exits and removes its PID file when
/// "QEMU" closes its end, and binds no socket of its own meanwhile.
#[test]
fn qemu_netdev_passt_fd_contract() {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use warren_tests::hostile::{
        dhcp_client_frame, dhcp_reply_info, framed, parse, Parsed, DHCPDISCOVER,
    };
    let dir = tempfile::Builder::new()
        .prefix("warren-passt-fd-")
        .tempdir()
        .expect("temp dir");
    let bin = dir.path().join("passt");
    warren_tests::link_or_copy(&warren_binary(), &bin).expect("warren as passt");
    let pidfile = dir.path().join("passt.pid");
    let (mut qemu_end, passt_end) = UnixStream::pair().expect("socketpair");
    // The child inherits it (QEMU: g_subprocess_launcher_take_fd).
    rustix::io::fcntl_setfd(&passt_end, rustix::io::FdFlags::empty()).expect("clear CLOEXEC");
    let out = Command::new(&bin)
        .current_dir(dir.path())
        .env("XDG_RUNTIME_DIR", dir.path())
        .args(["--quiet", "--pid"])
        .arg(&pidfile)
        .args(["--fd", &passt_end.as_raw_fd().to_string()])
        .output()
        .expect("run passt");
    drop(passt_end);
    assert!(
        out.status.success(),
        "passt --fd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = fs::read_to_string(&pidfile)
        .expect("PID file")
        .trim()
        .parse()
        .expect("PID");
    assert!(alive(pid), "the daemon is not running");
    assert!(
        !dir.path().join("warren.sock").exists(),
        "warren bound its default socket besides --fd"
    );

    qemu_end
        .write_all(&framed(&dhcp_client_frame(
            DEFAULT_MAC_BYTES,
            0x0f0f,
            DHCPDISCOVER,
            None,
            None,
        )))
        .expect("send DISCOVER");
    qemu_end
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut offered = None;
    while offered.is_none() && Instant::now() < deadline {
        let mut len = [0u8; 4];
        if qemu_end.read_exact(&mut len).is_err() {
            break;
        }
        let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
        qemu_end.read_exact(&mut f).expect("frame body");
        if let Parsed::Udp {
            sport: 67, payload, ..
        } = parse(&f)
        {
            offered = dhcp_reply_info(&payload).filter(|r| r.0 == 2 && r.2 == 0x0f0f);
        }
    }
    let offered = offered.expect("no DHCPOFFER over the --fd connection");
    assert_eq!(offered.1.to_string(), "10.0.2.15");

    // "QEMU" goes: warren exits and removes its PID file.
    drop(qemu_end);
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !alive(pid),
        "warren still runs after its --fd connection closed"
    );
    assert!(!pidfile.exists(), "PID file left behind");
}

const DEFAULT_MAC_BYTES: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
