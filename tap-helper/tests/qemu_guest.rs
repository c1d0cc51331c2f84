//! Root-only, end to end: an unprivileged user's real QEMU with
//! `-netdev bridge,br=br0,helper=<setuid warren-bridge-helper>` inside a network namespace.
//! Its tap must appear on br0 owned by that user, and the guest (a Debian kernel plus a
//! busybox initramfs running `udhcpc`) must get a DHCP lease from dnsmasq on the bridge.
//!
//! Guest assets are built once and cached under `<target>/wbh-guest/`: the kernel and the
//! virtio modules come from `apt-get download linux-image-<version>-amd64`, userland from
//! the `busybox-static` package (already installed on CI).

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /modules.order); do insmod /lib/modules/$m || echo "WBH-INSMOD-FAIL $m"; done
ip link set lo up
ip link set eth0 up || echo WBH-NO-ETH0
if udhcpc -i eth0 -f -q -n -t 30 -T 1 -s /udhcpc.sh; then
  echo WBH-DHCP-OK
  sleep 4
else
  echo WBH-DHCP-FAIL
fi
poweroff -f
"#;

const UDHCPC: &str = r#"#!/bin/sh
case "$1" in
  bound|renew) echo "WBH-LEASE ip=$ip mask=$subnet router=$router" ;;
esac
exit 0
"#;

/// Modules needed for virtio-net-pci on Debian's kernel (dependencies are resolved from each
/// module's `.modinfo` `depends=` entry, since the .deb ships no modules.dep).
const WANT_MODULES: &[&str] = &["virtio_pci", "virtio_net"];

fn target_dir() -> PathBuf {
    // <target>/<profile>/deps/qemu_guest-HASH
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

fn sh(cmd: &str, dir: &Path) {
    let st = Command::new("sh")
        .args(["-c", cmd])
        .current_dir(dir)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("sh -c {cmd}: {e}"));
    assert!(st.success(), "`{cmd}` failed in {}", dir.display());
}

/// Append one newc cpio entry.
fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
    let namesize = name.len() + 1;
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        data.len() as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        namesize as u32,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while out.len() & 3 != 0 {
        out.push(0);
    }
    out.extend_from_slice(data);
    while out.len() & 3 != 0 {
        out.push(0);
    }
}

fn find_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            find_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The `depends=` list from a module's .modinfo section.
fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .position(|w| w == key)
        .map(|i| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(0);
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Resolve WANT_MODULES and their dependencies, dependencies first: paths of .ko files.
fn module_order(moddir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    find_files(moddir, &mut files);
    let norm = |s: &str| s.replace('-', "_");
    let find = |name: &str| -> PathBuf {
        files
            .iter()
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ko"))
                    .is_some_and(|n| norm(n) == norm(name))
            })
            .cloned()
            .unwrap_or_else(|| panic!("module {name} not found under {}", moddir.display()))
    };
    fn visit(name: &str, find: &dyn Fn(&str) -> PathBuf, out: &mut Vec<PathBuf>) {
        let p = find(name);
        if out.contains(&p) {
            return;
        }
        let ko = fs::read(&p).expect("read module");
        for d in module_depends(&ko) {
            visit(&d, find, out);
        }
        out.push(p);
    }
    let mut out = Vec::new();
    for w in WANT_MODULES {
        visit(w, &find, &mut out);
    }
    out
}

/// Build (once) and return (kernel, initramfs).
fn guest_assets() -> (PathBuf, PathBuf) {
    let dir = target_dir().join("wbh-guest");
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.cpio");
    if kernel.exists() && initrd.exists() {
        return (kernel, initrd);
    }
    fs::create_dir_all(&dir).expect("mkdir wbh-guest");
    let busybox = PathBuf::from("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox missing: apt-get install busybox-static"
    );

    // The kernel package linux-image-amd64 currently points at.
    let deps = run("apt-cache", &["depends", "linux-image-amd64"]);
    let pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .expect("linux-image-amd64 depends on a linux-image-*-amd64")
        .to_string();
    let x = dir.join("x");
    let _ = fs::remove_dir_all(&x);
    fs::create_dir_all(&x).expect("mkdir x");
    sh(
        &format!("rm -f {pkg}_*.deb && apt-get download -q {pkg}"),
        &dir,
    );
    sh(
        &format!(
            "dpkg-deb --fsys-tarfile {pkg}_*.deb | tar -x -C x --wildcards \
             './boot/vmlinuz-*' \
             './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/net/*.ko' \
             './lib/modules/*/kernel/net/core/*.ko' && rm -f {pkg}_*.deb"
        ),
        &dir,
    );
    let vmlinuz = fs::read_dir(x.join("boot"))
        .expect("boot dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
        })
        .expect("vmlinuz in package");
    let moddir = fs::read_dir(x.join("lib/modules"))
        .expect("modules dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .next()
        .expect("a modules dir");
    let order = module_order(&moddir);

    let mut cpio = Vec::new();
    let mut ino = 1;
    let mut add = |name: &str, mode: u32, rdev: (u32, u32), data: &[u8]| {
        cpio_entry(&mut cpio, ino, name, mode, rdev, data);
        ino += 1;
    };
    for d in ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"] {
        add(d, 0o040755, (0, 0), b"");
    }
    add("dev/console", 0o020600, (5, 1), b"");
    add("init", 0o100755, (0, 0), INIT.as_bytes());
    add("udhcpc.sh", 0o100755, (0, 0), UDHCPC.as_bytes());
    add(
        "bin/busybox",
        0o100755,
        (0, 0),
        &fs::read(&busybox).expect("read busybox"),
    );
    let mut names = String::new();
    for m in &order {
        let base = m.file_name().and_then(|n| n.to_str()).expect("module name");
        add(
            &format!("lib/modules/{base}"),
            0o100644,
            (0, 0),
            &fs::read(m).expect("read module"),
        );
        names.push_str(base);
        names.push('\n');
    }
    add("modules.order", 0o100644, (0, 0), names.as_bytes());
    add("TRAILER!!!", 0, (0, 0), b"");
    fs::copy(&vmlinuz, &kernel).expect("copy vmlinuz");
    fs::write(&initrd, cpio).expect("write initrd");
    let _ = fs::remove_dir_all(&x);
    (kernel, initrd)
}

struct Killer(std::process::Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// TCG, not KVM: the guest boots in a few seconds either way, and nested KVM on CI runners is
// not always usable (here it hangs the guest).
#[test]
fn unprivileged_qemu_gets_a_tap_on_br0_and_a_dhcp_lease() {
    require_root();
    let _s = serial();
    ensure_users();
    assert!(
        Path::new("/usr/bin/qemu-system-x86_64").exists(),
        "qemu-system-x86_64 missing: apt-get install qemu-system-x86"
    );
    let (kernel, initrd) = guest_assets();
    let fx = Fixture::new(&[("br0", 1500)]);
    fx.ip(&["addr", "add", "10.77.0.1/24", "dev", "br0"]);
    fx.set_acl(&[acl("bridge.conf", "allow br0\n", "root", "root", 0o644)]);
    // The guest files must be readable by the unprivileged user.
    let gk = fx.dir.join("vmlinuz");
    let gi = fx.dir.join("initrd.cpio");
    fs::copy(&kernel, &gk).expect("copy kernel");
    fs::copy(&initrd, &gi).expect("copy initrd");
    let leases = fx.dir.join("leases");

    let dnsmasq = Command::new("ip")
        .args([
            "netns",
            "exec",
            &fx.ns,
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
        ])
        .args([
            "--interface=br0",
            "--bind-interfaces",
            "--except-interface=lo",
            "--port=0",
        ])
        .args([
            "--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h",
            "--user=root",
        ])
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    let _dnsmasq = Killer(dnsmasq);

    let netdev = format!("bridge,id=n0,br=br0,helper={}", fx.ours.display());
    let mut qemu = Command::new("ip");
    qemu.args([
        "netns",
        "exec",
        &fx.ns,
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
    ])
    .arg(fx.dir.join("run.sh"))
    .arg(&fx.dir)
    .args([
        "setpriv",
        "--reuid",
        "wbh-alice",
        "--regid",
        "wbh-users",
        "--init-groups",
        "--",
    ])
    .args([
        "qemu-system-x86_64",
        "-nodefaults",
        "-no-user-config",
        "-machine",
        "q35,accel=tcg",
    ])
    .args([
        "-m",
        "256",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(&gk)
    .arg("-initrd")
    .arg(&gi)
    .args(["-append", "console=ttyS0 panic=-1 quiet"])
    .args([
        "-netdev",
        &netdev,
        "-device",
        "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:01",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = qemu.spawn().expect("spawn qemu");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let child = Killer(child);
    let (tx, rx) = mpsc::channel::<String>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(format!("stderr: {l}"));
        }
    });

    let deadline = Instant::now() + Duration::from_secs(240);
    let mut console = Vec::new();
    let mut tap_seen = None;
    let mut lease = None;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                let done = l.contains("WBH-DHCP-OK") || l.contains("WBH-DHCP-FAIL");
                if l.contains("WBH-LEASE") {
                    lease = Some(l.clone());
                }
                console.push(l);
                if done {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if tap_seen.is_none() {
            if let Some(t) = fx.taps_of("wbh-alice").first() {
                tap_seen = Some((t.clone(), fx.link(t)));
            }
        }
    }
    // While the guest sleeps before powering off, its tap is still there.
    let taps = fx.taps_of("wbh-alice");
    let log = fx.drain_log();
    drop(child);
    let transcript = console.join("\n");
    let (tap, link) =
        tap_seen.unwrap_or_else(|| panic!("no tap owned by wbh-alice appeared\n{transcript}"));
    assert!(link.contains(" master br0 "), "tap not on br0: {link}");
    assert!(link.contains("link/ether fe:"), "{link}");
    assert!(link.contains(" user wbh-alice "), "{link}");
    assert!(link.contains("vnet_hdr on"), "{link}");
    assert_eq!(
        taps,
        vec![tap.clone()],
        "tap vanished while QEMU ran\n{transcript}"
    );
    let lease = lease.unwrap_or_else(|| panic!("guest got no DHCP lease\n{transcript}"));
    assert!(lease.contains("ip=10.77.0."), "{lease}");
    let leases = fs::read_to_string(&leases).unwrap_or_default();
    assert!(
        leases.contains("52:54:00:77:00:01"),
        "dnsmasq lease file: {leases:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("user=wbh-alice(") && l.contains(&format!("tap={tap}"))),
        "syslog: {log:?}"
    );
    println!("{lease}; tap {tap} on br0 owned by wbh-alice");
}
