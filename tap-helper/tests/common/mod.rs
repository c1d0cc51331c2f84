//! Shared fixtures for the root-only integration tests.
//!
//! Nothing here touches the machine's real /etc/qemu or /dev: every helper invocation runs in
//! `ip netns exec NS unshare -m`, where a read-only overlay puts the test's ACL files at
//! /etc/qemu and a private tmpfs /dev holds only net/tun and kvm (0666, as on a
//! standard system), null, zero, (u)random and a `log` socket the test
//! listens on (so syslog lines can be checked).  Users and groups get the `wbh-` prefix and
//! are created idempotently; the network namespaces and temp dirs are removed on drop.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use tap_helper::sys;

pub const QEMU_HELPER: &str = "/usr/lib/qemu/qemu-bridge-helper";

static LOCK: Mutex<()> = Mutex::new(());
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Serialize the integration tests: within this process (mutex) and across processes
/// (flock on a lock file), since they share users, groups and the tun driver.
pub struct Serial {
    _g: MutexGuard<'static, ()>,
    _f: fs::File,
}

pub fn serial() -> Serial {
    let g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/wbh-integration.lock")
        .expect("open /tmp/wbh-integration.lock");
    if let Err(e) = sys::lock_exclusive(&f) {
        panic!("flock /tmp/wbh-integration.lock: {e}");
    }
    Serial { _g: g, _f: f }
}

pub fn require_root() {
    let (_, euid, _) = sys::ids();
    assert_eq!(
        euid, 0,
        "these integration tests must run as root (they create users, setuid binaries and network namespaces)"
    );
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn succeeds(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn ensure_group(name: &str) -> u32 {
    if !succeeds("getent", &["group", name]) {
        // -f: succeed if it appeared meanwhile.
        run("groupadd", &["-f", name]);
    }
    let line = run("getent", &["group", name]);
    line.split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .expect("gid")
}

/// Create (or fix up) user `name` with primary group `wbh-users` and exactly `groups` as
/// supplementary groups.  Returns (uid, gid).
pub fn ensure_user(name: &str, groups: &[&str]) -> (u32, u32) {
    let gid = ensure_group("wbh-users");
    for g in groups {
        ensure_group(g);
    }
    let list = groups.join(",");
    if succeeds("id", &["-u", name]) {
        run("usermod", &["-g", "wbh-users", "-G", &list, name]);
    } else {
        let mut a = vec![
            "-M",
            "-N",
            "-d",
            "/nonexistent",
            "-s",
            "/usr/sbin/nologin",
            "-g",
            "wbh-users",
        ];
        if !groups.is_empty() {
            a.extend(["-G", &list]);
        }
        a.push(name);
        // Another process may have created it concurrently; check again on failure.
        if !succeeds("useradd", &a) {
            assert!(succeeds("id", &["-u", name]), "useradd {name} failed");
            run("usermod", &["-g", "wbh-users", "-G", &list, name]);
        }
    }
    let uid = run("id", &["-u", name]).trim().parse().expect("uid");
    (uid, gid)
}

/// The seed scenario's users: (name, supplementary groups).
pub const USERS: &[(&str, &[&str])] = &[
    ("wbh-alice", &["wbh-alice"]),
    ("wbh-bob", &["wbh-bob"]),
    ("wbh-charlie", &["wbh-charlie"]),
    ("wbh-dave", &[]),
    ("wbh-eve", &["wbh-alice", "wbh-charlie"]),
];

pub fn ensure_users() {
    for (u, g) in USERS {
        ensure_user(u, g);
    }
}

pub fn our_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_warren-bridge-helper"))
}

/// One ACL file placed at /etc/qemu/NAME inside the helper's mount namespace.
#[derive(Clone)]
pub struct AclFile {
    pub name: &'static str,
    pub text: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
}

pub fn acl(name: &'static str, text: &str, owner: &str, group: &str, mode: u32) -> AclFile {
    AclFile {
        name,
        text: text.to_string(),
        owner: owner.into(),
        group: group.into(),
        mode,
    }
}

/// The seed scenario: bridge.conf allows br0 and includes one file per group.
pub fn seed_acl() -> Vec<AclFile> {
    vec![
        acl(
            "bridge.conf",
            "# seed scenario\nallow br0\n\ninclude /etc/qemu/alice.conf\ninclude /etc/qemu/bob.conf\ninclude /etc/qemu/charlie.conf\n",
            "root",
            "root",
            0o644,
        ),
        acl("alice.conf", "allow br1\n", "root", "wbh-alice", 0o640),
        acl("bob.conf", "allow all\ndeny br1\n", "root", "wbh-bob", 0o640),
        acl("charlie.conf", "deny all\n", "root", "wbh-charlie", 0o640),
    ]
}

/// A network namespace with bridges, a temp dir with setuid copies of the helpers, ACL files
/// and a syslog socket.
pub struct Fixture {
    pub ns: String,
    pub dir: PathBuf,
    pub ours: PathBuf,
    pub qemu: PathBuf,
    pub log: UnixDatagram,
}

pub struct Outcome {
    pub code: i32,
    pub stderr: String,
    pub tap: Option<OwnedFd>,
    pub log: Vec<String>,
}

impl Outcome {
    pub fn allowed(&self) -> bool {
        self.code == 0 && self.tap.is_some()
    }
}

impl Fixture {
    /// `bridges`: (name, mtu).  Also adds a veth pair `v0`/`v1` (not a bridge).
    pub fn new(bridges: &[(&str, u32)]) -> Fixture {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{n}", std::process::id());
        let ns = format!("wbh-{tag}");
        let dir = PathBuf::from(format!("/tmp/wbh-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        for d in ["", "bin", "etc-add", "etc-add/qemu", "newdev"] {
            let p = dir.join(d);
            fs::create_dir_all(&p).expect("mkdir fixture");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod fixture");
        }
        let ours = dir.join("bin/warren-bridge-helper");
        let qemu = dir.join("bin/qemu-bridge-helper");
        for (src, dst) in [(our_binary(), &ours), (PathBuf::from(QEMU_HELPER), &qemu)] {
            fs::copy(&src, dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
            run("chown", &["root:root", &dst.to_string_lossy()]);
            fs::set_permissions(dst, fs::Permissions::from_mode(0o4755)).expect("chmod u+s");
        }
        fs::write(
            dir.join("run.sh"),
            "#!/bin/sh\n\
             # Runs inside `ip netns exec NS unshare -m`: private /etc/qemu and /dev, then exec.\n\
             set -e\n\
             T=$1; shift\n\
             mount --make-rprivate /\n\
             mount -t overlay wbh-etc -o ro,lowerdir=$T/etc-add:/etc /etc\n\
             mount -t tmpfs -o mode=0755 wbh-dev $T/newdev\n\
             mkdir $T/newdev/net\n\
             mknod -m 0666 $T/newdev/net/tun c 10 200\n\
             mknod -m 0666 $T/newdev/null c 1 3\n\
             mknod -m 0666 $T/newdev/zero c 1 5\n\
             mknod -m 0666 $T/newdev/urandom c 1 9\n\
             mknod -m 0666 $T/newdev/random c 1 8\n\
             if [ -e /dev/kvm ]; then mknod -m 0666 $T/newdev/kvm c 10 232; fi\n\
             : > $T/newdev/log\n\
             mount --bind $T/log.sock $T/newdev/log\n\
             mount --move $T/newdev /dev\n\
             exec \"$@\"\n",
        )
        .expect("write run.sh");
        let log_path = dir.join("log.sock");
        let log = UnixDatagram::bind(&log_path).expect("bind log socket");
        fs::set_permissions(&log_path, fs::Permissions::from_mode(0o666)).expect("chmod log");
        log.set_nonblocking(true).expect("nonblocking log");

        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &ns]);
        let fx = Fixture {
            ns,
            dir,
            ours,
            qemu,
            log,
        };
        for (b, mtu) in bridges {
            fx.ip(&["link", "add", b, "type", "bridge"]);
            fx.ip(&["link", "set", b, "mtu", &mtu.to_string(), "up"]);
        }
        fx.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        fx
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.ns.as_str()];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Replace /etc/qemu's contents with `files`.
    pub fn set_acl(&self, files: &[AclFile]) {
        let d = self.dir.join("etc-add/qemu");
        let _ = fs::remove_dir_all(&d);
        fs::create_dir(&d).expect("mkdir qemu");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod qemu");
        for f in files {
            let p = d.join(f.name);
            let mut h = fs::File::create(&p).expect("create acl");
            h.write_all(f.text.as_bytes()).expect("write acl");
            run(
                "chown",
                &[&format!("{}:{}", f.owner, f.group), &p.to_string_lossy()],
            );
            fs::set_permissions(&p, fs::Permissions::from_mode(f.mode)).expect("chmod acl");
        }
    }

    /// Run `helper` as `user` (None: as root) with `args`; `--fd=N` is appended unless
    /// `fd_arg` overrides it.
    pub fn invoke(&self, helper: &Path, user: Option<&str>, args: &[OsString]) -> Outcome {
        self.invoke_fd(helper, user, args, None)
    }

    pub fn invoke_fd(
        &self,
        helper: &Path,
        user: Option<&str>,
        args: &[OsString],
        fd_arg: Option<&str>,
    ) -> Outcome {
        let (mine, theirs) = sys::socketpair_for_child().expect("socketpair");
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
        ]);
        cmd.arg(self.dir.join("run.sh")).arg(&self.dir);
        if let Some(u) = user {
            cmd.args([
                "setpriv",
                "--reuid",
                u,
                "--regid",
                "wbh-users",
                "--init-groups",
                "--",
            ]);
        }
        cmd.arg(helper).args(args);
        match fd_arg {
            Some(f) => cmd.arg(f),
            None => cmd.arg(format!("--fd={}", theirs.as_raw_fd())),
        };
        cmd.stdin(Stdio::null());
        let out = cmd.output().expect("spawn helper");
        drop(theirs);
        let code = out.status.code().unwrap_or(-1);
        let tap = if code == 0 {
            sys::recv_fd(mine.as_raw_fd()).ok().and_then(|(_, fd)| fd)
        } else {
            None
        };
        std::thread::sleep(Duration::from_millis(20));
        Outcome {
            code,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            tap,
            log: self.drain_log(),
        }
    }

    pub fn drain_log(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.log.recv(&mut buf) {
            v.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        v
    }

    /// `ip -d link show NAME` in the namespace.
    pub fn link(&self, name: &str) -> String {
        self.ip(&["-d", "link", "show", "dev", name])
    }

    pub fn mtu(&self, name: &str) -> u32 {
        let l = self.link(name);
        l.split_whitespace()
            .skip_while(|w| *w != "mtu")
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("no mtu in {l}"))
    }

    /// Names of tun/tap devices in the namespace whose owner is `user`.
    pub fn taps_of(&self, user: &str) -> Vec<String> {
        let out = self.ip(&["-d", "-o", "link", "show", "type", "tun"]);
        out.lines()
            .filter(|l| l.contains(&format!(" user {user} ")))
            .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_string()))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

pub fn os_bytes(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// Check what the helper handed back: a tap on `bridge`, owned by `user`, MAC fe:…, MTU of
/// the bridge, vnet header on, up.
pub fn check_tap(fx: &Fixture, tap: &OwnedFd, bridge: &str, user: &str) -> String {
    let (name, flags) = sys::tun_get_iff(tap.as_raw_fd()).expect("TUNGETIFF on received fd");
    let name = String::from_utf8(name).expect("utf8 tap name");
    assert!(name.starts_with("tap"), "{name}");
    assert_eq!(
        flags & (sys::IFF_TAP | sys::IFF_NO_PI | sys::IFF_VNET_HDR),
        sys::IFF_TAP | sys::IFF_NO_PI | sys::IFF_VNET_HDR,
        "flags {flags:#x}"
    );
    let l = fx.link(&name);
    assert!(
        l.contains(&format!(" master {bridge} ")),
        "not on {bridge}: {l}"
    );
    assert!(l.contains("link/ether fe:"), "MAC not fe:…: {l}");
    assert!(
        l.contains(&format!(" user {user} ")),
        "not owned by {user}: {l}"
    );
    assert!(l.contains("<BROADCAST,MULTICAST,UP"), "not up: {l}");
    assert_eq!(fx.mtu(&name), fx.mtu(bridge), "MTU not copied: {l}");
    name
}

pub fn file_mode(p: &Path) -> u32 {
    fs::metadata(p).map(|m| m.mode()).unwrap_or(0)
}
