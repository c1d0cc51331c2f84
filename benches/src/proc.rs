//! Process, namespace and temporary-directory guards that clean up on drop
//! (including when the benchmark bails out with an error).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Prefix of every network namespace this tool creates.
pub const NETNS_PREFIX: &str = "wbench-";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turn SIGINT/SIGTERM/SIGHUP into a flag checked by [`check_interrupted`],
/// so that guards get to run instead of the process dying on the spot.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; `on_signal` has the C ABI signal() expects.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Error out if a termination signal arrived.
pub fn check_interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Describe a command for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run a command to completion; error (with its stderr) unless it succeeds.
pub fn run(cmd: &mut Command) -> Result<Output, String> {
    let what = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{what}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}

/// Shorthand for `run(Command::new("ip").args(args))`.
pub fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args)).map(|_| ())
}

/// A network namespace created with `ip netns add`, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns, String> {
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.into() };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        // Only IPv4 is measured; keep IPv6 autoconfiguration chatter out.
        // Best effort: the kernel may be built without IPv6.
        let _ = run(Command::new("ip").args([
            "netns",
            "exec",
            name,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; \
             echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
        ]));
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets this namespace's TCP congestion control (`net.ipv4.tcp_congestion_control`). A namespace
    /// other than the initial one may only choose an allowed algorithm
    /// (`net.ipv4.tcp_allowed_congestion_control`).
    pub fn set_cc(&self, cc: &str) -> Result<(), String> {
        run(self
            .command("sysctl")
            .args(["-qw", &format!("net.ipv4.tcp_congestion_control={cc}")]))
        .map(|_| ())
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: {e}");
        }
    }
}

/// Delete namespaces left over by earlier runs that died without cleanup
/// (named `wbench-<pid>-...` where `<pid>` is no longer alive).
pub fn remove_stale_netns() {
    let Ok(out) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("removing stale namespace {name}");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A background process, terminated (SIGTERM, then SIGKILL) on drop.
/// Its stderr (and stdout unless piped) go to a log file.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawn `cmd` with output to `log`; stdout is piped instead if
    /// `pipe_stdout`.
    pub fn spawn(
        name: &str,
        cmd: &mut Command,
        log: &Path,
        pipe_stdout: bool,
    ) -> Result<Proc, String> {
        let what = describe(cmd);
        let f = fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let f2 = f
            .try_clone()
            .map_err(|e| format!("dup {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stderr(f);
        if pipe_stdout {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(f2);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{what}`: {e}"))?;
        Ok(Proc {
            name: name.into(),
            child,
            log: log.into(),
        })
    }

    /// Error if the process has already exited, quoting its log.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!(
                "{} exited early ({st}); log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 20)
            )),
            Err(e) => Err(format!("{}: wait: {e}", self.name)),
        }
    }

    /// Read one line from the piped stdout (blocking) — used for "ready"
    /// handshakes.
    pub fn read_line(&mut self) -> Result<String, String> {
        let Some(out) = self.child.stdout.as_mut() else {
            return Err(format!("{}: stdout not piped", self.name));
        };
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match out.read(&mut b) {
                Ok(0) => break,
                Ok(_) if b[0] == b'\n' => break,
                Ok(_) => line.push(b[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{}: read stdout: {e}", self.name)),
            }
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: plain syscall on the pid of our own, not yet reaped,
            // child (so the pid cannot have been recycled).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Wait for a child with a deadline; kills it when the deadline passes.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st),
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("interrupted".into());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", limit.as_secs()));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Last `n` lines of a file, for error reports.
pub fn tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            let lines: Vec<&str> = s
                .lines()
                .filter(|l| !l.starts_with("Failed to send"))
                .collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read log: {e})"),
    }
}

/// A directory removed (recursively) on drop.
pub struct TempDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl TempDir {
    pub fn create(path: PathBuf) -> Result<TempDir, String> {
        fs::create_dir_all(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        Ok(TempDir { path, keep: false })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
