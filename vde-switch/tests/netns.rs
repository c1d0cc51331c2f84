//! Real-namespace end-to-end tests of `warren --netns` and `warren run`, with warren running as an
//! ordinary user (`nobody` when the tests run as root, as in CI) on namespaces made by that user
//! (`unshare -Urn`). Traffic goes only to servers these tests start on the host's 127.0.0.1 (reached
//! through the gateway 10.0.2.2) and to their own DNS server on 127.0.0.1 (`--dns-upstream`).
//!
//! The tests drive the namespace's side from a thread that has entered it (setns), which needs root;
//! run as another user they fail with a message saying so (CI runs them as root).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NOBODY: &str = "65534";
const DNS_NAME: &str = "warren-netns.test";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 55);

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Fails unless the machine can run these tests. As root, makes /dev/net/tun usable by
/// ordinary users (mode 0666, Debian's default) if it is not.
fn require_usable() {
    assert!(
        is_root(),
        "these tests enter namespaces from a thread, which needs root: run them as root (CI does)"
    );
    let max: u64 = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        max > 0,
        "unprivileged user namespaces are disabled (/proc/sys/user/max_user_namespaces = 0)"
    );
    let tun = Path::new("/dev/net/tun");
    let mode = std::fs::metadata(tun)
        .expect("/dev/net/tun exists")
        .permissions()
        .mode();
    if mode & 0o006 != 0o006 {
        eprintln!("note: /dev/net/tun was mode {:o}; setting 0666 (Debian's default) so ordinary users can make taps", mode & 0o777);
        std::fs::set_permissions(tun, std::fs::Permissions::from_mode(0o20666))
            .expect("chmod /dev/net/tun");
    }
}

fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "warren-netns-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))
        .expect("chmod scratch dir");
    d
}

/// A copy of the warren binary that `nobody` can run (the target directory may not be reachable).
fn warren_copy(dir: &Path) -> PathBuf {
    let bin = dir.join("warren");
    // A hard link where possible: a copy's write descriptor, inherited by a child another test thread
    // forks, makes exec fail with ETXTBSY until that child execs.
    let src = Path::new(env!("CARGO_BIN_EXE_warren"));
    if std::fs::hard_link(src, &bin).is_err() {
        std::fs::copy(src, &bin).expect("copy warren");
    }
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod warren");
    bin
}

/// `cmd` run as nobody.
fn as_nobody(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
    ])
    .arg(program);
    c
}

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A network namespace made by nobody with `unshare -Urn`, held open by a sleeping process.
fn user_netns() -> Killed {
    let child = as_nobody(Path::new("unshare"))
        .args(["-Urn", "sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .expect("setpriv unshare");
    let pid = child.id();
    let ours = std::fs::read_link("/proc/self/ns/net").expect("own netns");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(l) = std::fs::read_link(format!("/proc/{pid}/ns/net")) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if l != ours && comm.trim() == "sleep" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "unshare -Urn did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Killed(child)
}

/// Runs `f` on a thread inside the network namespace of `pid`.
fn in_netns<T: Send + 'static>(pid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open netns");
    std::thread::spawn(move || {
        // Changes only this thread's network namespace.
        let r = rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        );
        assert!(r.is_ok(), "setns: {r:?}");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// A TCP echo server on 127.0.0.1; every accepted connection's end (EOF or error) is reported.
fn tcp_echo() -> (u16, mpsc::Receiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let port = l.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = tx.send(());
            });
        }
    });
    (port, rx)
}

fn udp_echo() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = s.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    port
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q
}

fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend(encode_name(name));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// A DNS server on 127.0.0.1 that knows one name (A record); everything else gets an empty answer.
fn dns_server() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
    let port = s.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let q = &buf[..n];
            if n < 17 {
                continue;
            }
            // The question ends at the root label, then type and class.
            let Some(end) = q[12..].iter().position(|&b| b == 0).map(|p| 12 + p + 1) else {
                continue;
            };
            if end + 4 > n {
                continue;
            }
            let qname = &q[12..end];
            let qtype = u16::from_be_bytes([q[end], q[end + 1]]);
            let known = qname.eq_ignore_ascii_case(&encode_name(DNS_NAME)) && qtype == 1;
            let mut r = q[..2].to_vec();
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(known), 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..end + 4]);
            if known {
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                r.extend_from_slice(&DNS_ANSWER.octets());
            }
            let _ = s.send_to(&r, from);
        }
    });
    port
}

/// The processes running the binary at `bin` (the warren copy of one test).
fn processes_of(bin: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == bin) {
            found.push(pid);
        }
    }
    found
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Connects from inside the namespace, retrying while warren attaches.
fn connect_retry(to: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("connect {to} from the namespace: {e}"),
        }
    }
}

#[test]
fn netns_configure_tcp_udp_dns_and_cleanup() {
    require_usable();
    let dir = scratch_dir("attach");
    let bin = warren_copy(&dir);
    let (tcp_port, tcp_closed) = tcp_echo();
    let udp_port = udp_echo();
    let dns_port = dns_server();
    let ns = user_netns();
    let pid = ns.0.id();
    let mut warren = Killed(
        as_nobody(&bin)
            .args([
                "--netns",
                &pid.to_string(),
                "--configure",
                "--mtu",
                "65520",
                "-q",
            ])
            .arg(format!("--dns-upstream=127.0.0.1:{dns_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warren"),
    );
    let started = Instant::now();
    let held = in_netns(pid, move || {
        let gw = Ipv4Addr::new(10, 0, 2, 2);
        let mut s = connect_retry(SocketAddr::from((gw, tcp_port)));
        eprintln!("attached and reachable after {:?}", started.elapsed());
        // --configure: the slirp4netns address, a route via the gateway.
        assert_eq!(
            s.local_addr().expect("local").ip(),
            Ipv4Addr::new(10, 0, 2, 100)
        );
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // Bulk both ways through the echo server: 4 MiB.
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut w = s.try_clone().expect("clone");
        let sent = data.clone();
        let writer = std::thread::spawn(move || w.write_all(&sent).expect("write"));
        let mut back = vec![0u8; data.len()];
        s.read_exact(&mut back).expect("echo back");
        writer.join().expect("writer");
        assert!(back == data, "echoed bytes differ");
        // A closed loopback port is refused, not timed out.
        let closed = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let e = TcpStream::connect_timeout(&SocketAddr::from((gw, closed)), Duration::from_secs(5))
            .expect_err("nothing listens there");
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        // UDP through the gateway.
        let u = UdpSocket::bind("0.0.0.0:0").expect("udp");
        u.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        u.send_to(b"ping over udp", (gw, udp_port))
            .expect("udp send");
        let mut buf = [0u8; 64];
        let (n, from) = u.recv_from(&mut buf).expect("udp echo");
        assert_eq!(&buf[..n], b"ping over udp");
        assert_eq!(from, SocketAddr::from((gw, udp_port)));
        // DNS through the forwarder at 10.0.2.3.
        let d = UdpSocket::bind("0.0.0.0:0").expect("udp");
        d.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        d.send_to(&dns_query(0x5151, DNS_NAME, 1), ("10.0.2.3", 53))
            .expect("dns send");
        let mut r = [0u8; 512];
        let n = d.recv(&mut r).expect("dns answer");
        assert!(n >= 16 && r[..2] == [0x51, 0x51], "answer to our query");
        assert_eq!(
            &r[n - 4..n],
            &DNS_ANSWER.octets(),
            "the A record of our server"
        );
        // A connection left open: warren must close its host side when the namespace goes.
        s
    });
    // The namespace's process exits: warren stops, and the flow's host socket is closed.
    drop(ns);
    let st = wait_exit(&mut warren.0, Duration::from_secs(5))
        .expect("warren stops when the namespace's process exits");
    let mut err = String::new();
    if let Some(mut e) = warren.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(st.success(), "warren exited with {st}: {err}");
    tcp_closed
        .recv_timeout(Duration::from_secs(5))
        .expect("the host side of the open connection was closed");
    drop(held);
    assert!(
        processes_of(&bin).is_empty(),
        "no warren process left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn run_warren(bin: &Path, extra: &[String], script: &str) -> Output {
    let started = Instant::now();
    let out = as_nobody(bin)
        .arg("run")
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("warren run");
    eprintln!(
        "warren run -- sh -c {script:?}: {:?} in {:?}",
        out.status,
        started.elapsed()
    );
    out
}

#[test]
fn run_passes_status_dns_and_tcp() {
    require_usable();
    let dir = scratch_dir("run");
    let bin = warren_copy(&dir);
    let dns_port = dns_server();
    let (tcp_port, _closed) = tcp_echo();
    let opts = vec![
        format!("--dns-upstream=127.0.0.1:{dns_port}"),
        "--dns-search=example.test".into(),
    ];
    // Exit status passthrough, and only the command's output on stdout.
    let out = run_warren(&bin, &opts, "echo out; exit 7");
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let out = run_warren(&bin, &opts, "kill -9 $$");
    assert_eq!(out.status.code(), Some(137), "killed by SIGKILL: 128+9");
    let out = run_warren(&bin, &opts, "exec /nonexistent/command");
    assert_ne!(out.status.code(), Some(0));
    // Inside: root (the user mapped to 0), the slirp4netns address, resolv.conf naming 10.0.2.3, name
    // resolution through warren's DNS forwarder, TCP to the host's loopback through the gateway.
    let script = format!(
        "set -e; id -u; ip -4 -o addr show dev tap0 | grep -q 10.0.2.100/24; ip route | grep -q 'default via 10.0.2.2'; \
         grep -q 'nameserver 10.0.2.3' /etc/resolv.conf; grep -q 'search example.test' /etc/resolv.conf; \
         getent hosts {DNS_NAME}; \
         bash -c 'exec 3<>/dev/tcp/10.0.2.2/{tcp_port}; echo hello-through-warren >&3; head -n1 <&3'"
    );
    let out = run_warren(&bin, &opts, &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inside checks failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("0\n"), "uid 0 inside: {stdout}");
    assert!(
        stdout.contains(&DNS_ANSWER.to_string()),
        "resolved through warren: {stdout}"
    );
    assert!(
        stdout.contains("hello-through-warren"),
        "tcp echo: {stdout}"
    );
    // The host's resolv.conf is untouched.
    assert!(!std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .contains("generated by warren"));
    // Nothing outlives the command: no warren, no helper, no namespace process.
    assert!(
        processes_of(&bin).is_empty(),
        "no warren process left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn attach_errors_are_one_line() {
    require_usable();
    let dir = scratch_dir("errors");
    let bin = warren_copy(&dir);
    let run = |args: &[&str]| {
        let out = as_nobody(&bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("warren");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--netns", "/nonexistent/ns"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot open network namespace /nonexistent/ns"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The host's own namespace belongs to root: nobody may not create a tap there.
    let (code, err) = run(&["--netns", "1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--netns 1:"), "{err}");
    let (code, err) = run(&["--tap", "tap1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("need --netns"), "{err}");
    let (code, err) = run(&["run"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("needs -- CMD"), "{err}");
    let (code, err) = run(&["--netns", "1", "--tap", "this-name-is-too-long"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad interface name"), "{err}");
    assert!(processes_of(&bin).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
