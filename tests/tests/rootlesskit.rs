//! warren as a slirp4netns drop-in under Debian's rootlesskit, run by an unprivileged user:
//! the container reaches a host loopback service through 10.0.2.2, and a port published with
//! rootlesskit's slirp4netns port driver (our JSON API) reaches a server inside the namespace.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warren_tests::is_root;
use warren_tests::servers::{closed_port, HttpServer};
use warren_tests::warren::warren_binary;

const USER: &str = "warren-rk";

/// An unprivileged user with subordinate id ranges (rootlesskit maps them with newuidmap). Done once
/// per test process: concurrent useradd/usermod would rewrite /etc/passwd under rootlesskit's feet.
fn ensure_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(create_user);
}

fn create_user() {
    warren_tests::ensure_user_with_subids(USER, "300000-365535");
}

/// A directory the test user can read, holding warren under the name `slirp4netns`.
fn drop_in_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("warren-s4n-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let bin = dir.path().join("slirp4netns");
    warren_tests::link_or_copy(&warren_binary(), &bin).expect("link warren as slirp4netns");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod binary");
    dir
}

fn rootlesskit(dir: &std::path::Path, extra: &[&str], script: &str) -> Child {
    let mut cmd = format!(
        "cd /tmp && exec rootlesskit --net=slirp4netns --slirp4netns-binary={}/slirp4netns --copy-up=/etc",
        dir.display()
    );
    for e in extra {
        cmd.push(' ');
        cmd.push_str(e);
    }
    cmd.push_str(" -- sh -c '");
    cmd.push_str(script);
    cmd.push('\'');
    Command::new("su")
        .args([USER, "-s", "/bin/sh", "-c", &cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rootlesskit (apt-get install rootlesskit uidmap)")
}

fn finish(child: Child, limit: Duration) -> (bool, String, String) {
    let deadline = Instant::now() + limit;
    let mut child = child;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("rootlesskit output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rootlesskit_container_reaches_host_loopback_through_the_gateway() {
    assert!(
        is_root(),
        "this test creates a user and must run as root (CI does)"
    );
    ensure_user();
    let dir = drop_in_dir();
    let body = b"hello through warren as slirp4netns\n".to_vec();
    let http = HttpServer::start(BTreeMap::from([("/hello.txt".to_owned(), body.clone())]));
    let script = format!(
        "ip -4 addr show tap0 | grep -o \"inet [0-9./]*\"; ip route | grep default; wget -q -O - http://10.0.2.2:{}/hello.txt",
        http.port
    );
    let (ok, out, err) = finish(
        rootlesskit(dir.path(), &[], &script),
        Duration::from_secs(60),
    );
    assert!(ok, "rootlesskit failed\nstdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("inet 10.0.2.100/24"),
        "tap0 not configured as slirp4netns would: {out}\n{err}"
    );
    assert!(
        out.contains("default via 10.0.2.2"),
        "no default route via the gateway: {out}"
    );
    assert!(
        out.ends_with(&String::from_utf8_lossy(&body).to_string()),
        "the loopback service's reply is missing: {out}\n{err}"
    );
}

#[test]
fn rootlesskit_published_port_reaches_the_namespace() {
    assert!(
        is_root(),
        "this test creates a user and must run as root (CI does)"
    );
    ensure_user();
    let dir = drop_in_dir();
    let host_port = closed_port();
    let publish = format!("-p 127.0.0.1:{host_port}:8082/tcp");
    let script = "echo published-through-warren | timeout 25 busybox nc -l -p 8082";
    let child = rootlesskit(dir.path(), &["--port-driver=slirp4netns", &publish], script);
    let addr: SocketAddr = format!("127.0.0.1:{host_port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = String::new();
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.contains("published-through-warren") {
                got = buf;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // Once answered, the container has done its part: stop it rather than wait out its sleep.
    let limit = if got.is_empty() {
        Duration::from_secs(30)
    } else {
        Duration::from_millis(100)
    };
    let (_, out, err) = finish(child, limit);
    assert!(
        got.contains("published-through-warren"),
        "no reply through the published port\nstdout:\n{out}\nstderr:\n{err}"
    );
}
