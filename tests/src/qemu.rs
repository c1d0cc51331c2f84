//! Running a guest under `qemu-system-x86_64 -accel tcg`.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::guest::Image;

/// The MAC every test guest uses (QEMU's default prefix).
pub const DEFAULT_MAC: &str = "52:54:00:12:34:56";

/// How to attach the guest's NIC, plus anything else QEMU needs for it.
#[derive(Debug, Clone)]
pub struct NetAttach {
    /// The `-netdev` value; its id must be `n0`.
    pub netdev: String,
    /// Extra QEMU arguments (e.g. `-object filter-dump,...`).
    pub extra_args: Vec<String>,
    /// A command prefix QEMU runs under (e.g. `unshare --net ...`), if any.
    pub wrapper: Vec<String>,
    /// Appended to the `-device virtio-net-pci,...` value (e.g. `,vectors=0`).
    pub device_extra: String,
}

impl NetAttach {
    /// A plain `-netdev` with no extras.
    pub fn netdev(netdev: impl Into<String>) -> Self {
        NetAttach {
            netdev: netdev.into(),
            extra_args: Vec::new(),
            wrapper: Vec::new(),
            device_extra: String::new(),
        }
    }

    /// A vhost-user NIC served on the unix socket `path` (QEMU connects, retrying every second
    /// while the backend is away): guest RAM in a shared memfd, and MSI-X off (`vectors=0`), without
    /// which QEMU 7.2 under TCG crashes once the guest driver starts the device.
    pub fn vhost_user(path: &std::path::Path) -> Self {
        NetAttach {
            netdev: "vhost-user,id=n0,chardev=c0".into(),
            extra_args: [
                "-chardev".to_owned(),
                format!("socket,id=c0,path={},reconnect=1", path.display()),
                "-object".to_owned(),
                format!("memory-backend-memfd,id=mem,size={GUEST_RAM_MB}M,share=on"),
                "-machine".to_owned(),
                "memory-backend=mem".to_owned(),
            ]
            .to_vec(),
            wrapper: Vec::new(),
            device_extra: ",vectors=0".into(),
        }
    }
}

/// The guest's RAM (`-m`), in MiB.
pub const GUEST_RAM_MB: u32 = 256;

#[derive(Default)]
struct Console {
    text: String,
    /// Output streams (stdout, stderr) not yet at EOF.
    open: usize,
    eof: bool,
}

/// A running QEMU guest; killed on drop.
pub struct Guest {
    child: Child,
    console: Arc<(Mutex<Console>, Condvar)>,
    started: Instant,
    log: std::path::PathBuf,
}

impl Guest {
    /// Boots `image` with a virtio-net NIC (`mac`) on `-netdev <netdev>`.
    pub fn spawn(image: &Image, netdev: &str, mac: &str) -> Guest {
        Self::spawn_with(image, &NetAttach::netdev(netdev), mac)
    }

    /// Boots `image` with the NIC attached as `net` describes.
    pub fn spawn_with(image: &Image, net: &NetAttach, mac: &str) -> Guest {
        let mut argv: Vec<String> = net.wrapper.clone();
        argv.push("qemu-system-x86_64".into());
        for a in [
            "-accel",
            "tcg",
            "-m",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ] {
            argv.push(a.into());
            if a == "-m" {
                argv.push(GUEST_RAM_MB.to_string());
            }
        }
        argv.push("-kernel".into());
        argv.push(image.kernel.display().to_string());
        argv.push("-initrd".into());
        argv.push(image.initrd.display().to_string());
        argv.push("-append".into());
        // no_timer_check: under heavy load TCG guests can fail the IO-APIC timer check and panic.
        argv.push("console=ttyS0 panic=-1 loglevel=4 rdinit=/init no_timer_check".into());
        argv.push("-netdev".into());
        argv.push(net.netdev.clone());
        argv.push("-device".into());
        argv.push(format!(
            "virtio-net-pci,netdev=n0,mac={mac},romfile={}",
            net.device_extra
        ));
        argv.extend(net.extra_args.iter().cloned());

        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {argv:?}: {e} (apt-get install qemu-system-x86)")
        });
        let console: Arc<(Mutex<Console>, Condvar)> = Arc::new((
            Mutex::new(Console {
                open: 2,
                ..Console::default()
            }),
            Condvar::new(),
        ));
        for stream in [
            Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped stderr")),
        ] {
            let console = console.clone();
            std::thread::spawn(move || pump(stream, console));
        }
        let logs = crate::paths::cache_dir().join("logs");
        let _ = std::fs::create_dir_all(&logs);
        Guest {
            child,
            console,
            started: Instant::now(),
            log: logs.join(format!("{}.console.log", image.name)),
        }
    }

    /// Waits until the console output contains `marker`. On timeout or if
    /// QEMU exits first, returns an error carrying the console output.
    pub fn wait_for(&self, marker: &str, timeout: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.console;
        let mut c = lock.lock().expect("console lock");
        loop {
            if c.text.contains(marker) {
                return Ok(self.started.elapsed());
            }
            if c.eof {
                return Err(format!(
                    "QEMU exited before printing {marker:?}; console:\n{}",
                    c.text
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {marker:?}; console:\n{}",
                    c.text
                ));
            }
            c = cv.wait_timeout(c, deadline - now).expect("console lock").0;
        }
    }

    /// Waits for QEMU to exit (the guest powers off after its script).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => return Err(format!("QEMU still running after {timeout:?}")),
                Err(e) => return Err(format!("waiting for QEMU: {e}")),
            }
        }
    }

    /// Where the console output is saved when the guest is dropped
    /// (`target/e2e-cache/logs/<image>.console.log`).
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// The console output so far (serial + QEMU's stderr).
    pub fn output(&self) -> String {
        self.console.0.lock().expect("console lock").text.clone()
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// All `@@RESULT key=value` lines so far (last one wins per key).
    pub fn results(&self) -> BTreeMap<String, String> {
        parse_results(&self.output())
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::write(&self.log, self.output());
    }
}

fn pump(mut r: Box<dyn Read + Send>, console: Arc<(Mutex<Console>, Condvar)>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = r.read(&mut buf).unwrap_or(0);
        let (lock, cv) = &*console;
        let mut c = lock.lock().expect("console lock");
        if n == 0 {
            c.open -= 1;
            c.eof = c.open == 0;
            cv.notify_all();
            return;
        }
        c.text
            .push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
        cv.notify_all();
    }
}

/// Parses `@@RESULT key=value` lines (value = rest of the line, trimmed).
pub fn parse_results(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once("@@RESULT ").map(|(_, rest)| rest))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}
