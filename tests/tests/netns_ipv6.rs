//! IPv6 on the namespace path: `warren run`, `warren --netns PID --configure`, the slirp4netns
//! drop-in with `--enable-ipv6` and rootlesskit `--ipv6` with warren as slirp4netns.
//!
//! Each test runs warren inside a network namespace it owns (`ip netns add`) holding the "host"
//! side: an HTTP server on `[::1]` (reached from the namespace through the router `fd00::2`) and
//! one on a global IPv6 address of an interface of that namespace (a dummy interface, or a veth
//! pair where the kernel has no dummy driver), reached through warren's IPv6 NAT. Nothing leaves
//! the test's namespaces.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warren_tests::servers::HttpServer;
use warren_tests::warren::warren_binary;
use warren_tests::{is_root, run_checked};

/// The "remote" address: global, on an interface of the test's namespace.
const REMOTE: &str = "2001:db8:6::1";
const BODY_LO: &[u8] = b"reached [::1] through fd00::2\n";
const BODY_REMOTE: &[u8] = b"reached 2001:db8:6::1 through warren's IPv6 NAT\n";
/// rootlesskit runs as this user (its own subordinate ids; rootlesskit.rs and podman.rs use others).
const USER: &str = "warren-rk6";

/// A named network namespace made by the test, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        assert!(is_root(), "these tests need root (network namespaces)");
        let name = format!("w6n{}{tag}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run_checked(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // The remote address on an interface of its own (no DAD: usable at once).
        let dummy = Command::new("ip")
            .args(["-n", &ns.name, "link", "add", "rem0", "type", "dummy"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !dummy {
            ns.ip(&[
                "link", "add", "rem0", "type", "veth", "peer", "name", "rem1",
            ]);
            ns.ip(&["link", "set", "rem1", "up"]);
        }
        ns.ip(&[
            "addr",
            "add",
            &format!("{REMOTE}/64"),
            "dev",
            "rem0",
            "nodad",
        ]);
        ns.ip(&["link", "set", "rem0", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip netns exec NAME PROG`.
    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    /// Runs `f` on a thread that entered this namespace (sockets it makes live there).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&fd),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// The two HTTP servers: (port on [::1], port on REMOTE).
    fn servers(&self) -> (HttpServer, HttpServer) {
        self.run(|| {
            let lo = HttpServer::start_on(
                BTreeMap::from([("/lo.txt".to_owned(), BODY_LO.to_vec())]),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            );
            let remote = HttpServer::start_on(
                BTreeMap::from([("/remote.txt".to_owned(), BODY_REMOTE.to_vec())]),
                IpAddr::V6(REMOTE.parse().expect("address")),
            );
            (lo, remote)
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Shell: fetch both servers over IPv6, each body on its own line after a marker.
fn fetch_script(lo: &HttpServer, remote: &HttpServer) -> String {
    format!(
        "echo @@lo; wget -q -T 10 -O - 'http://[fd00::2]:{}/lo.txt'; \
         echo @@remote; wget -q -T 10 -O - 'http://[{REMOTE}]:{}/remote.txt'; echo @@end",
        lo.port, remote.port
    )
}

fn assert_fetched(out: &str, err: &str) {
    let lo = String::from_utf8_lossy(BODY_LO);
    let remote = String::from_utf8_lossy(BODY_REMOTE);
    assert!(
        out.contains(&format!("@@lo\n{lo}@@remote\n{remote}@@end")),
        "the bodies fetched over IPv6 are missing or wrong\nstdout:\n{out}\nstderr:\n{err}"
    );
}

fn output_within(mut child: Child, limit: Duration) -> (bool, String, String) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn warren_run(ns: &Netns, args: &[&str], script: &str) -> (bool, String, String) {
    let child = ns
        .cmd(warren_binary().to_str().expect("utf-8 path"))
        .arg("run")
        .args(args)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warren run");
    output_within(child, Duration::from_secs(60))
}

#[test]
fn warren_run_configures_ipv6_and_reaches_host_loopback_and_a_remote_address() {
    let ns = Netns::new("r");
    let (lo, remote) = ns.servers();
    let script = format!(
        "ip -6 addr show dev tap0 scope global; ip -6 route show default; cat /etc/resolv.conf; {}",
        fetch_script(&lo, &remote)
    );
    let (ok, out, err) = warren_run(&ns, &[], &script);
    assert!(ok, "warren run failed\nstdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("inet6 fd00::100/64"), "no fd00::100: {out}");
    assert!(out.contains("default via fd00::2 dev tap0"), "{out}");
    assert!(out.contains("nameserver fd00::3"), "{out}");
    assert_fetched(&out, &err);
    assert_eq!(lo.served().len(), 1);
    assert_eq!(remote.served().len(), 1);
}

#[test]
fn warren_run_no_ipv4_serves_ipv6_only() {
    let ns = Netns::new("4");
    let (lo, remote) = ns.servers();
    // An IPv4 server too: it must stay unreachable (no IPv4 address, nothing answers on IPv4).
    let v4 = ns.run(|| HttpServer::start(BTreeMap::from([("/v4.txt".to_owned(), b"v4".to_vec())])));
    let script = format!(
        "echo v4addr=$(ip -4 addr show dev tap0 | grep -c inet); \
         if wget -q -T 3 -O - http://10.0.2.2:{}/v4.txt; then echo v4=reached; else echo v4=unreachable; fi; \
         cat /etc/resolv.conf; {}",
        v4.port,
        fetch_script(&lo, &remote)
    );
    let (ok, out, err) = warren_run(&ns, &["--no-ipv4"], &script);
    assert!(
        ok,
        "warren run --no-ipv4 failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("v4addr=0"), "tap0 has an IPv4 address: {out}");
    assert!(out.contains("v4=unreachable"), "{out}");
    assert!(!out.contains("nameserver 10.0.2.3"), "{out}");
    assert!(out.contains("nameserver fd00::3"), "{out}");
    assert!(v4.served().is_empty());
    assert_fetched(&out, &err);
    // And the contradiction is one clear line.
    let o = Command::new(warren_binary())
        .args(["run", "--no-ipv4", "--net", "10.1.0.0/24", "--", "true"])
        .output()
        .expect("warren");
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("--no-ipv4 contradicts --net") && e.trim().lines().count() == 1,
        "{e}"
    );
}

/// A process in a fresh network namespace inside `ns` (a child of it), and its PID.
fn namespace_process(ns: &Netns) -> (Child, u32) {
    let child = ns
        .cmd("unshare")
        .args(["--net", "--", "sleep", "120"])
        .spawn()
        .expect("unshare");
    // `ip netns exec` execs unshare, which execs sleep once its namespace exists: same PID.
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the namespace process did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, pid)
}

fn nsenter(pid: u32, script: &str) -> (bool, String, String) {
    let o = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "--", "sh", "-c", script])
        .output()
        .expect("nsenter");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Waits until `tap0` in `pid`'s namespace has a global address matching `want`.
fn wait_for_addr(pid: u32, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, out, _) = nsenter(pid, "ip -6 addr show dev tap0 scope global 2>&1");
        if out.contains(want) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn netns_configure_sets_the_ipv6_address_and_route() {
    let ns = Netns::new("n");
    let (lo, remote) = ns.servers();
    let (target, pid) = namespace_process(&ns);
    let _target = Killed(target);
    let w = Killed(
        ns.cmd(warren_binary().to_str().expect("utf-8 path"))
            .args(["--netns", &pid.to_string(), "--configure", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("warren --netns"),
    );
    let addrs = wait_for_addr(pid, "fd00::100/64");
    assert!(addrs.contains("inet6 fd00::100/64"), "{addrs}");
    let (ok, out, err) = nsenter(
        pid,
        &format!("ip -6 route show default; {}", fetch_script(&lo, &remote)),
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("default via fd00::2 dev tap0"), "{out}");
    assert_fetched(&out, &err);
    drop(w);
}

#[test]
fn slirp4netns_drop_in_serves_ipv6_only_with_enable_ipv6() {
    let ns = Netns::new("s");
    let (lo, remote) = ns.servers();
    for enable in [false, true] {
        let (target, pid) = namespace_process(&ns);
        let _target = Killed(target);
        let mut args = vec!["slirp4netns", "--configure"];
        if enable {
            args.push("--enable-ipv6");
        }
        let pid_s = pid.to_string();
        args.extend([pid_s.as_str(), "tap0"]);
        let _w = Killed(
            ns.cmd(warren_binary().to_str().expect("utf-8 path"))
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("warren slirp4netns"),
        );
        let addrs = wait_for_addr(pid, if enable { "fd00::100/64" } else { "10.0.2.100" });
        if !enable {
            // IPv4 is configured; give router advertisements time to arrive, were there any.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !nsenter(pid, "ip -4 addr show dev tap0")
                .1
                .contains("10.0.2.100")
            {
                assert!(Instant::now() < deadline, "tap0 never configured");
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_secs(3));
            let (_, out, _) = nsenter(pid, "ip -6 addr show dev tap0 scope global");
            assert!(
                !out.contains("inet6"),
                "IPv6 served without --enable-ipv6: {out}"
            );
            continue;
        }
        assert!(addrs.contains("inet6 fd00::100/64"), "{addrs}");
        let (ok, out, err) = nsenter(pid, &fetch_script(&lo, &remote));
        assert!(ok, "{out}\n{err}");
        assert_fetched(&out, &err);
    }
}

/// The unprivileged user rootlesskit runs as, once per test process.
fn ensure_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| warren_tests::ensure_user_with_subids(USER, "500000-565535"));
}

#[test]
fn rootlesskit_ipv6_with_warren_as_slirp4netns() {
    ensure_user();
    // rootlesskit creates the tap as the unprivileged user: /dev/net/tun must be open to all
    // (Debian's udev rule makes it 0666; minimal images may leave it 0600).
    let tun = fs::metadata("/dev/net/tun").expect("/dev/net/tun");
    if tun.permissions().mode() & 0o006 != 0o006 {
        fs::set_permissions("/dev/net/tun", fs::Permissions::from_mode(0o666))
            .expect("chmod /dev/net/tun");
    }
    let ns = Netns::new("k");
    let (lo, remote) = ns.servers();
    let dir = tempfile::Builder::new()
        .prefix("warren-s4n6-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let bin = dir.path().join("slirp4netns");
    warren_tests::link_or_copy(&warren_binary(), &bin).expect("warren as slirp4netns");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod binary");
    // rootlesskit configures IPv4 itself and leaves IPv6 to the router advertisements (as with
    // slirp4netns): wait for the SLAAC address in fd00::/64, then fetch.
    let script = format!(
        "i=0; until ip -6 addr show dev tap0 scope global | grep -q \"inet6 fd00::\"; do \
           i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done; \
         ip -6 addr show dev tap0 scope global; {}",
        fetch_script(&lo, &remote)
    );
    let cmd = format!(
        "cd /tmp && exec rootlesskit --net=slirp4netns --slirp4netns-binary={} --ipv6 --copy-up=/etc -- sh -c \"{}\"",
        bin.display(),
        script.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$")
    );
    let child = ns
        .cmd("su")
        .args([USER, "-s", "/bin/sh", "-c", &cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rootlesskit (apt-get install rootlesskit uidmap)");
    let (ok, out, err) = output_within(child, Duration::from_secs(90));
    assert!(ok, "rootlesskit failed\nstdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("inet6 fd00::"),
        "no address in fd00::/64: {out}"
    );
    assert_fetched(&out, &err);
}
