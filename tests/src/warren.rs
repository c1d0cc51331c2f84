//! Running the `warren` binary for a test.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// uid/gid warren runs as when the tests run as root (`nobody`).
pub const NOBODY: u32 = 65534;

/// Shell snippet run as root inside a fresh network namespace before the
/// real command: loopback up, unprivileged ICMP echo sockets allowed for all
/// groups (the sysctl is per network namespace).
pub const NETNS_SETUP: &str = "ip link set lo up && \
    echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range && exec \"$@\"";

/// Command prefix running the rest inside a fresh network namespace set up
/// by [`NETNS_SETUP`]. Needs root.
pub fn fresh_netns_prefix() -> Vec<String> {
    assert!(
        crate::is_root(),
        "a fresh network namespace (unshare --net) needs root"
    );
    ["unshare", "--net", "--", "sh", "-c", NETNS_SETUP, "sh"]
        .map(String::from)
        .to_vec()
}

/// The `warren` binary built alongside the tests: `WARREN_BIN` if set, else
/// `target/<profile>/warren`.
pub fn warren_binary() -> PathBuf {
    let bin = std::env::var_os("WARREN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::profile_dir().join("warren"));
    assert!(
        bin.is_file(),
        "warren binary not found at {}: build it first: cargo build --workspace --bins",
        bin.display()
    );
    bin
}

/// How to start warren.
#[derive(Debug, Clone, Default)]
pub struct WarrenConfig {
    /// Arguments after `--socket PATH`. `{dir}` in an argument is replaced by warren's directory
    /// ([`Warren::dir`]), e.g. `--dgram {dir}/dgram.sock` or `--vde {dir}/vde`.
    pub args: Vec<String>,
    /// Also pass `--pcap DIR/capture.pcap`.
    pub pcap: bool,
    /// Run inside a fresh network namespace (see [`NETNS_SETUP`]).
    pub fresh_netns: bool,
    /// Run inside this named network namespace (`ip netns exec NAME`; one the test made).
    pub netns: Option<String>,
}

/// A running warren; killed on drop.
pub struct Warren {
    child: Child,
    dir: TempDir,
    socket: PathBuf,
    pcap: Option<PathBuf>,
}

impl Warren {
    /// Starts `warren --socket DIR/warren.sock ARGS...`.
    pub fn spawn(args: &[&str]) -> Warren {
        Self::spawn_with(WarrenConfig {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..WarrenConfig::default()
        })
    }

    /// Starts warren as `cfg` says. As root, it runs as `nobody`
    /// (`setpriv --reuid=65534 --regid=65534 --clear-groups`) from a copy of
    /// the binary in a temp dir owned by that user. Waits for the socket.
    pub fn spawn_with(cfg: WarrenConfig) -> Warren {
        let bin = warren_binary();
        let dir = tempfile::Builder::new()
            .prefix("warren-e2e-")
            .tempdir()
            .expect("create temp dir for warren");
        let exe = dir.path().join("warren");
        crate::link_or_copy(&bin, &exe).expect("link or copy the warren binary");
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod warren");
        let root = crate::is_root();
        if root {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY))
                .expect("chown warren dir to nobody");
        }
        let socket = dir.path().join("warren.sock");
        let pcap = cfg.pcap.then(|| dir.path().join("capture.pcap"));

        let mut argv: Vec<String> = Vec::new();
        if cfg.fresh_netns {
            argv.extend(fresh_netns_prefix());
        }
        if let Some(ns) = &cfg.netns {
            argv.extend(["ip", "netns", "exec", ns.as_str()].map(String::from));
        }
        if root {
            argv.extend(
                [
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "--",
                ]
                .map(String::from),
            );
        }
        argv.push(exe.display().to_string());
        argv.push("--socket".into());
        argv.push(socket.display().to_string());
        if let Some(p) = &pcap {
            argv.push("--pcap".into());
            argv.push(p.display().to_string());
        }
        let dir_str = dir.path().display().to_string();
        argv.extend(cfg.args.iter().map(|a| a.replace("{dir}", &dir_str)));

        let log =
            |name: &str| fs::File::create(dir.path().join(name)).expect("create warren log file");
        let stderr_text = || fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
        // Exec of the freshly copied binary can fail with ETXTBSY ("Text file busy") when another
        // test thread forked while the copy's write descriptor was open (the child holds it until
        // its own exec). That is a property of fork, not of warren: start again, a few times.
        let mut attempts = 0;
        let child = 'start: loop {
            attempts += 1;
            let mut child = Command::new(&argv[0])
                .args(&argv[1..])
                .current_dir(dir.path())
                .env("RUST_BACKTRACE", "1")
                .stdin(Stdio::null())
                .stdout(log("stdout.log"))
                .stderr(log("stderr.log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !socket.exists() {
                if let Ok(Some(status)) = child.try_wait() {
                    let err = stderr_text();
                    if err.contains("Text file busy") && attempts < 5 {
                        std::thread::sleep(Duration::from_millis(50 * attempts));
                        continue 'start;
                    }
                    panic!(
                        "warren exited ({status}) before creating its socket; argv {argv:?}\nstderr:\n{err}"
                    );
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!(
                        "warren did not create {} within 10 s; argv {argv:?}\nstderr:\n{}",
                        socket.display(),
                        stderr_text()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            break child;
        };
        Warren {
            child,
            dir,
            socket,
            pcap,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Waits until `path` exists (a socket or directory warren creates after its main socket).
    pub fn wait_for_path(&mut self, path: &Path, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !path.exists() {
            assert!(
                self.is_running() && Instant::now() < deadline,
                "warren did not create {} within {timeout:?}\nstderr:\n{}",
                path.display(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// warren's stdout so far (the QEMU arguments it printed at start).
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// The QEMU `-netdev` value connecting to this warren (id `n0`).
    pub fn netdev(&self) -> String {
        format!(
            "stream,id=n0,server=off,addr.type=unix,addr.path={}",
            self.socket.display()
        )
    }

    /// The pcap file, if [`WarrenConfig::pcap`] was set.
    pub fn pcap(&self) -> Option<&Path> {
        self.pcap.as_deref()
    }

    /// The directory warren runs in (owned by nobody when root).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// warren's stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// warren's process id (`setpriv`, `unshare` and `sh -c exec` all exec, so it is warren's own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether warren is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops warren with SIGTERM (so it can flush e.g. the pcap), waiting up
    /// to `timeout` before SIGKILL.
    pub fn stop(&mut self, timeout: Duration) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // Our own child, not yet reaped.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
