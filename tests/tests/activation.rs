//! Socket activation (`LISTEN_FDS`/`LISTEN_PID`/`LISTEN_FDNAMES`, systemd's `sd_listen_fds`): warren
//! started by `systemd-socket-activate` (Debian's `systemd` package; it binds the sockets, waits for
//! the first connection, then execs warren with them at fds 3, 4, …) serves the inherited `--socket`
//! and `--api` listeners, including the connection queued before it started, leaves their paths in
//! place when it exits (they belong to the service manager), and closes an inherited socket that
//! no option names, with a warning. The sockets and the command line are those of the shipped
//! units, `contrib/systemd/warren.socket` and `warren.service`.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warren_tests::hostile::{
    dhcp_client_frame, dhcp_reply_info, parse, Parsed, StreamClient, DHCPDISCOVER,
};
use warren_tests::warren::warren_binary;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const OFFER: u8 = 2;

/// Connects to `path` once it exists (systemd-socket-activate binds it shortly after start).
fn connect_when_bound(path: &Path) -> StreamClient {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match StreamClient::connect(path) {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("{}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `Key=` values of a contrib unit, with `%t` (the runtime directory) replaced by `runtime`.
fn unit_values(unit: &str, key: &str, runtime: &Path) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/systemd")
        .join(unit);
    let text = std::fs::read_to_string(&path).expect("contrib unit");
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.replace("%t", &runtime.display().to_string()))
        .collect()
}

#[test]
fn inherited_listeners_serve_and_stay() {
    let dir = tempfile::Builder::new()
        .prefix("warren-activation-")
        .tempdir()
        .expect("temp dir");
    let listen = unit_values("warren.socket", "ListenStream", dir.path());
    let exec = unit_values("warren.service", "ExecStart", dir.path());
    let [sock, api] = [&listen[0], &listen[1]].map(|p| Path::new(p).to_path_buf());
    let extra = dir.path().join("unused.sock");
    let exec: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(
        exec[0], "%h/.local/bin/warren",
        "warren.service runs the installed warren"
    );
    assert_eq!(
        exec[1..],
        [
            "--socket",
            &sock.display().to_string(),
            "--api",
            &api.display().to_string()
        ],
        "warren.service and warren.socket name the same paths"
    );
    let mut child = Command::new("systemd-socket-activate")
        .args(listen.iter().map(|l| format!("--listen={l}")))
        .arg(format!("--listen={}", extra.display()))
        .arg("--fdname=warren:warren:extra")
        .arg(warren_binary())
        .args(&exec[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd)");

    // The first connection starts warren; it is queued on the inherited socket and served.
    let mut guest = connect_when_bound(&sock);
    let inode = std::fs::metadata(&sock).expect("socket file").ino();
    guest
        .send(&dhcp_client_frame(MAC, 0x5a5a, DHCPDISCOVER, None, None))
        .expect("send DISCOVER");
    let offer = guest.recv_matching(Instant::now() + Duration::from_secs(30), |f| {
        match parse(f) {
            Parsed::Udp {
                sport: 67, payload, ..
            } => dhcp_reply_info(&payload).filter(|r| r.0 == OFFER && r.2 == 0x5a5a),
            _ => None,
        }
    });
    let Some(offer) = offer else {
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        panic!(
            "no DHCPOFFER on the inherited --socket; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert_eq!(offer.1.to_string(), "10.0.2.15");

    // The control socket is the inherited one too.
    let mut c = UnixStream::connect(&api).expect("connect --api");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    c.write_all(br#"{"execute": "list_hostfwd"}"#)
        .expect("write request");
    c.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut reply = String::new();
    c.read_to_string(&mut reply).expect("read reply");
    assert!(reply.contains("\"entries\""), "API reply: {reply}");

    // Stopped, warren leaves the service manager's sockets where they are.
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unused.sock (extra) matches no --socket or --api"),
        "no warning about the unused socket:\n{err}"
    );
    assert!(
        !err.contains("cannot bind") && !err.contains("in use"),
        "warren bound its own sockets:\n{err}"
    );
    assert_eq!(
        std::fs::metadata(&sock).map(|m| m.ino()).ok(),
        Some(inode),
        "--socket path removed or replaced:\n{err}"
    );
    assert!(api.exists(), "--api path removed:\n{err}");
}

/// Without activation warren binds and removes its own sockets (the contrast the test above relies
/// on), and variables meant for another process are ignored.
#[test]
fn variables_for_another_process_are_ignored() {
    let dir = tempfile::Builder::new()
        .prefix("warren-activation-")
        .tempdir()
        .expect("temp dir");
    let sock = dir.path().join("w.sock");
    let child = Command::new(warren_binary())
        .arg(format!("--socket={}", sock.display()))
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("warren");
    let mut guest = connect_when_bound(&sock);
    guest
        .send(&dhcp_client_frame(MAC, 7, DHCPDISCOVER, None, None))
        .expect("send");
    let got = guest.recv_matching(Instant::now() + Duration::from_secs(30), |f| {
        match parse(f) {
            Parsed::Udp {
                sport: 67, payload, ..
            } => dhcp_reply_info(&payload).filter(|r| r.0 == OFFER),
            _ => None,
        }
    });
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let out = child.wait_with_output().expect("wait");
    assert!(
        got.is_some(),
        "no DHCPOFFER:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!sock.exists(), "warren's own socket was not removed");
}
