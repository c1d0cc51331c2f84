//! The daemon's sandbox, checked on the real `warren` process: `/proc/PID/status` shows
//! no_new_privs and a seccomp filter, the hidden `--sandbox-selftest FILE` makes the running daemon
//! try what the sandbox forbids (open a file, create one, exec, spawn) after each layer and report,
//! and the confined daemon still serves frames, its API, and cleans up its sockets at exit.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "warren-sb-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

struct Warren {
    child: Child,
    dir: PathBuf,
}

impl Warren {
    /// Starts warren with a stream socket and an API socket in its own directory, and waits until
    /// it has passed the sandbox (its start-up line about the sandbox is logged).
    fn start(tag: &str, extra: &[&str]) -> Warren {
        Warren::start_as(tag, extra, None)
    }
    /// Like `start`, as user and group `uid` (the test must be root for that).
    fn start_as(tag: &str, extra: &[&str], uid: Option<u32>) -> Warren {
        use std::os::unix::process::CommandExt;
        let dir = scratch_dir(tag);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).expect("chown scratch dir");
            cmd.uid(uid).gid(uid);
        }
        let child = cmd
            .arg("--socket")
            .arg(dir.join("w.sock"))
            .arg("--api")
            .arg(dir.join("api.sock"))
            .arg("--pcap")
            .arg(dir.join("capture.pcap"))
            .args(["--dns-upstream", "127.0.0.1:9", "-v"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).expect("log"))
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log"))
            .spawn()
            .expect("start warren");
        let w = Warren { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        // The sandbox's last line: every layer is on (or off).
        while !(w.log().contains("warren: info: sandbox: no_new_privs")
            || w.log().contains("warren: info: sandbox: off"))
        {
            assert!(
                Instant::now() < deadline,
                "warren did not start: {}",
                w.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        w
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
    fn status(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("warren is running")
    }
    /// SIGTERM, then the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        // Our own child, not yet reaped.
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "warren did not stop: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// Asks the gateway's ARP for 10.0.2.2 over the stream socket and checks the reply.
fn arp_through_stream(sock: &Path) {
    let mut s = UnixStream::connect(sock).expect("connect to warren's socket");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mac = [0x52, 0x54, 0, 0x5b, 0, 1];
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[10, 0, 2, 15]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 2, 2]);
    f.resize(60, 0);
    let mut msg = (f.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&f);
    s.write_all(&msg).expect("send ARP request");
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)
            .expect("a frame back from the gateway");
        let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut reply).expect("frame");
        if reply.len() >= 42 && reply[12..14] == [0x08, 0x06] && reply[20..22] == [0, 2] {
            assert_eq!(&reply[28..32], &[10, 0, 2, 2], "ARP reply for the gateway");
            assert_eq!(&reply[32..38], &mac, "ARP reply to us");
            return;
        }
    }
}

fn api_stats(api: &Path) -> String {
    let mut s = UnixStream::connect(api).expect("connect to the API socket");
    s.write_all(br#"{"execute": "stats"}"#).expect("request");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("reply");
    out
}

#[test]
fn daemon_runs_with_no_new_privs_and_seccomp_and_still_serves() {
    let own = std::fs::read_to_string("/proc/self/status").expect("own status");
    let mut w = Warren::start("on", &[]);
    let st = w.status();
    assert_eq!(field(&st, "NoNewPrivs"), Some(1), "{st}");
    assert_eq!(field(&st, "Seccomp"), Some(2), "{st}");
    // Its own two filters on top of whatever the test runs under.
    assert_eq!(
        field(&st, "Seccomp_filters"),
        field(&own, "Seccomp_filters").map(|n| n + 2),
        "{st}"
    );
    let log = w.log();
    assert!(
        log.contains("sandbox: no_new_privs on, Landlock on, seccomp on")
            || log.contains("no Landlock"),
        "{log}"
    );
    // Frames, the API and the pcap still work inside the sandbox.
    arp_through_stream(&w.dir.join("w.sock"));
    let stats = api_stats(&w.dir.join("api.sock"));
    assert!(stats.contains("arp_replies"), "{stats}");
    assert!(w.stop().success(), "{}", w.log());
    // At exit it removed its own sockets (Landlock lets it remove files there, nothing else).
    assert!(!w.dir.join("w.sock").exists(), "{}", w.log());
    assert!(!w.dir.join("api.sock").exists(), "{}", w.log());
    assert!(
        std::fs::metadata(w.dir.join("capture.pcap"))
            .expect("pcap")
            .len()
            > 24,
        "the pcap recorded frames"
    );
    assert!(!w.log().contains("Operation not permitted"), "{}", w.log());
}

#[test]
fn sandboxed_daemon_cannot_open_create_or_exec() {
    // A file the test itself can read, outside every directory warren uses.
    let other = scratch_dir("secret");
    let secret = other.join("secret.txt");
    std::fs::write(&secret, "not for warren").expect("write");
    // And a unix socket someone else listens on (a session bus, a container engine's socket).
    let listener = std::os::unix::net::UnixListener::bind(other.join("secret.sock")).expect("bind");
    let w = Warren::start(
        "selftest",
        &["--sandbox-selftest", secret.to_str().expect("utf-8")],
    );
    let log = w.log();
    for stage in ["after landlock", "after seccomp"] {
        for probe in [
            format!("open {}", secret.display()),
            "create a file beside the sockets".to_string(),
            "exec /bin/true".to_string(),
            "spawn /bin/true".to_string(),
        ] {
            let line = format!("warren: sandbox selftest {stage}: {probe}: ");
            let got = log
                .lines()
                .find_map(|l| l.strip_prefix(&line))
                .unwrap_or_else(|| panic!("no {line:?} in {log}"));
            assert!(got.starts_with("denied"), "{line}{got}");
        }
    }
    // Without VDE or dgram front ends, no unix socket can be made, so none can be reached.
    let connect = format!(
        "warren: sandbox selftest after seccomp: connect {}: denied (Operation not permitted",
        other.join("secret.sock").display()
    );
    assert!(log.contains(&connect), "{log}");
    drop(listener);
    // Landlock refuses with EACCES, seccomp with EPERM; in the empty root the file is not even there.
    let open =
        |stage: &str, why: &str| format!("{stage}: open {}: denied ({why}", secret.display());
    if log.contains("empty root on") {
        assert!(
            log.contains(&open("after namespaces", "No such file")),
            "{log}"
        );
        assert!(
            log.contains(&open("after landlock", "No such file")),
            "{log}"
        );
    } else {
        assert!(
            log.contains(&open("after landlock", "Permission denied")),
            "{log}"
        );
    }
    assert!(log.contains("after seccomp: exec /bin/true: denied (Operation not permitted"));
    // Still warren (an exec would have replaced it), still serving.
    let exe = std::fs::read_link(format!("/proc/{}/exe", w.pid())).expect("exe");
    assert_eq!(exe.file_name().and_then(|n| n.to_str()), Some("warren"));
    arp_through_stream(&w.dir.join("w.sock"));
    let _ = std::fs::remove_dir_all(&other);
}

#[test]
fn no_sandbox_turns_every_layer_off() {
    let own = std::fs::read_to_string("/proc/self/status").expect("own status");
    let w = Warren::start("off", &["--no-sandbox"]);
    let st = w.status();
    // Exactly what the test itself has (a CI runner may run everything with no_new_privs).
    assert_eq!(field(&st, "NoNewPrivs"), field(&own, "NoNewPrivs"), "{st}");
    assert_eq!(
        field(&st, "Seccomp_filters"),
        field(&own, "Seccomp_filters"),
        "{st}"
    );
    assert!(
        w.log().contains("sandbox: off (--no-sandbox)"),
        "{}",
        w.log()
    );
    arp_through_stream(&w.dir.join("w.sock"));
}

#[test]
fn contradictory_sandbox_options_are_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--no-sandbox", "--require-sandbox"])
        .output()
        .expect("run warren");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("contradict"), "{err}");
}

#[test]
fn guestfwd_commands_run_from_an_exec_helper_outside_the_filter() {
    let mut w = Warren::start(
        "cmd",
        &[
            "--require-sandbox",
            "--guestfwd",
            "tcp:10.0.2.100:7-cmd:cat",
        ],
    );
    // The daemon itself is confined; its one child is the exec helper, started before the filter.
    let st = w.status();
    assert_eq!(field(&st, "Seccomp"), Some(2), "{st}");
    let helpers: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            field(&s, "PPid") == Some(u64::from(w.pid()))
        })
        .collect();
    assert_eq!(helpers.len(), 1, "one exec helper: {helpers:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", helpers[0])).expect("cmdline");
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    assert_eq!(
        args.get(1).copied(),
        Some(&b"__exec-helper"[..]),
        "{args:?}"
    );
    assert_eq!(args.get(2).copied(), Some(&b"cat"[..]), "{args:?}");
    let hs = std::fs::read_to_string(format!("/proc/{}/status", helpers[0])).expect("helper");
    let own = std::fs::read_to_string("/proc/self/status").expect("own status");
    assert_eq!(
        field(&hs, "Seccomp_filters"),
        field(&own, "Seccomp_filters"),
        "the helper is not under warren's filters: {hs}"
    );
    // It goes away with the daemon.
    assert!(w.stop().success(), "{}", w.log());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{}/cmdline", helpers[0])).exists()
        && std::fs::read(format!("/proc/{}/cmdline", helpers[0])).unwrap_or_default() == cmdline
    {
        assert!(Instant::now() < deadline, "the exec helper outlived warren");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs warren (arguments in `WARREN_DEGRADED_ARGS`, one per line) under a seccomp filter that
/// makes the kernel look as if it had neither Landlock nor seccomp (`ENOSYS`), then checks that
/// each missing layer is one warning and the daemon still serves, and that `--require-sandbox`
/// refuses to start. The test binary re-executes itself for the first part (the filter must be in
/// place before warren's exec).
#[test]
fn missing_layers_degrade_to_one_line_each() {
    const CHILD: &str = "WARREN_DEGRADED_ARGS";
    if let Some(args) = std::env::var_os(CHILD) {
        use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
        use std::os::unix::process::CommandExt;
        let arch = TargetArch::try_from(std::env::consts::ARCH).expect("arch");
        let prog: BpfProgram = SeccompFilter::new(
            [
                (libc::SYS_landlock_create_ruleset, Vec::new()),
                (libc::SYS_seccomp, Vec::new()),
            ]
            .into_iter()
            .collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .and_then(TryInto::try_into)
        .expect("filter");
        seccompiler::apply_filter(&prog).expect("apply");
        let args = args.to_str().expect("utf-8").to_string();
        let e = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(args.lines())
            .exec();
        panic!("exec warren: {e}");
    }
    let run = |tag: &str, extra: &[&str]| {
        let dir = scratch_dir(tag);
        let mut args = vec![
            "-v".to_string(),
            "--socket".into(),
            dir.join("w.sock").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "missing_layers_degrade_to_one_line_each"])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD, args.join("\n"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).expect("log"))
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log"))
            .spawn()
            .expect("start");
        Warren { child, dir }
    };
    // Best effort: one warning per missing layer, then it serves.
    let w = run("degraded", &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.log().contains("warren: info: sandbox: no_new_privs") {
        assert!(Instant::now() < deadline, "no sandbox line: {}", w.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = w.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("warning: sandbox:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{log}");
    assert!(warnings[0].contains("no Landlock"), "{log}");
    assert!(warnings[1].contains("seccomp") && warnings[1].contains("continuing without it"));
    assert!(
        log.contains("sandbox: no_new_privs on, Landlock off, seccomp off"),
        "{log}"
    );
    assert_eq!(field(&w.status(), "NoNewPrivs"), Some(1));
    arp_through_stream(&w.dir.join("w.sock"));
    // Required: a missing seccomp stops it before serving, with one line.
    let mut w = run("required", &["--require-sandbox"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        if let Some(st) = w.child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "still running: {}", w.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!st.success());
    let log = w.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("warren: ") && l.contains("--require-sandbox"))
        .collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("seccomp"), "{log}");
}

fn ns(pid: &str, kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("namespace link")
}

fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").expect("/proc/self").uid()
}

/// The namespace layer for an unprivileged daemon: new user and mount namespaces, its uid mapped to
/// itself, an empty root; it still serves and removes its sockets at exit (through directory fds).
#[test]
fn unprivileged_daemon_detaches_into_user_and_mount_namespaces_with_an_empty_root() {
    // As root, run it as nobody (a root daemon keeps its user namespace: see the next test).
    let uid = (own_uid() == 0).then_some(65534);
    let mut w = Warren::start_as("userns", &["--sandbox-selftest", "/etc/passwd"], uid);
    let pid = w.pid().to_string();
    let log = w.log();
    assert!(
        log.contains("empty root on (user and mount namespaces)"),
        "{log}"
    );
    assert_ne!(ns(&pid, "user"), ns("self", "user"));
    assert_ne!(ns(&pid, "mnt"), ns("self", "mnt"));
    let expected = uid.unwrap_or_else(own_uid);
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(
        fields,
        [expected.to_string(), expected.to_string(), "1".to_string()],
        "{map}"
    );
    let setgroups = std::fs::read_to_string(format!("/proc/{pid}/setgroups")).expect("setgroups");
    assert_eq!(setgroups.trim(), "deny");
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .expect("its root")
        .collect();
    assert!(root.is_empty(), "its root is not empty: {root:?}");
    assert!(
        log.contains("selftest after namespaces: open /etc/passwd: denied (No such file"),
        "{log}"
    );
    // Its sockets keep their owner, and it still serves frames and its API.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(w.dir.join("w.sock")).expect("socket");
    assert_eq!(meta.uid(), expected);
    arp_through_stream(&w.dir.join("w.sock"));
    let stats = api_stats(&w.dir.join("api.sock"));
    assert!(stats.contains("arp_replies"), "{stats}");
    // A forward added at run time binds a new host listener from inside the namespaces.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut s = UnixStream::connect(w.dir.join("api.sock")).expect("connect to the API socket");
    let req = format!(
        r#"{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_addr":"127.0.0.1","host_port":{port},"guest_addr":"10.0.2.15","guest_port":80}}}}"#
    );
    s.write_all(req.as_bytes()).expect("request");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    assert!(reply.contains("\"return\""), "{reply}");
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the new forward listens");
    assert!(w.stop().success(), "{}", w.log());
    assert!(!w.dir.join("w.sock").exists(), "{}", w.log());
    assert!(!w.dir.join("api.sock").exists(), "{}", w.log());
}

/// A daemon with capabilities (root) detaches its mounts only: a new user namespace would cost it
/// raw ICMP sockets and ports below 1024 for forwards added through the API.
#[test]
fn privileged_daemon_detaches_its_mounts_only() {
    if own_uid() != 0 {
        eprintln!("not root: the unprivileged case is the other test");
        return;
    }
    let mut w = Warren::start("mntns", &[]);
    let pid = w.pid().to_string();
    assert!(
        w.log().contains("empty root on (mount namespace)"),
        "{}",
        w.log()
    );
    assert_eq!(ns(&pid, "user"), ns("self", "user"));
    assert_ne!(ns(&pid, "mnt"), ns("self", "mnt"));
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .expect("its root")
        .collect();
    assert!(root.is_empty(), "its root is not empty: {root:?}");
    arp_through_stream(&w.dir.join("w.sock"));
    assert!(w.stop().success(), "{}", w.log());
    assert!(!w.dir.join("w.sock").exists(), "{}", w.log());
    assert!(!w.dir.join("api.sock").exists(), "{}", w.log());
}

/// With `--vde` the daemon connects to its peers' socket paths at run time: it stays in the host's
/// namespaces (one log line) and works as before.
#[test]
fn vde_daemon_stays_in_the_host_mount_namespace() {
    let dir = scratch_dir("vde-switch");
    let sw = dir.join("sw");
    let mut w = Warren::start("vde", &["--vde", sw.to_str().expect("utf-8")]);
    let pid = w.pid().to_string();
    let log = w.log();
    assert!(
        log.contains("staying in the host's mount namespace"),
        "{log}"
    );
    assert!(log.contains("empty root off"), "{log}");
    assert_eq!(ns(&pid, "mnt"), ns("self", "mnt"));
    assert_eq!(ns(&pid, "user"), ns("self", "user"));
    assert!(sw.join("ctl").exists(), "the VDE control socket");
    arp_through_stream(&w.dir.join("w.sock"));
    assert!(w.stop().success(), "{}", w.log());
    assert!(!w.dir.join("w.sock").exists(), "{}", w.log());
    assert!(!sw.join("ctl").exists(), "{}", w.log());
    let _ = std::fs::remove_dir_all(&dir);
}
