//! Guest images: the cached kernel plus a generated initramfs holding
//! busybox-static, the virtio-net modules, an `/init` and the test's script.

use std::fs;
use std::path::PathBuf;

use crate::cpio::Archive;
use crate::kernel::kernel;

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Marker `/init` prints once the network modules are loaded and `lo` is up.
pub const READY_MARKER: &str = "@@INIT ready";
/// Marker `/init` prints after the test script returned (before poweroff).
pub const DONE_MARKER: &str = "@@DONE";

/// Guest shell lines that take a DHCP lease with busybox `udhcpc` and report it: write `/tmp/dhcp.sh`
/// (applies the address and default route, records the address in `/tmp/ip`), bring `eth0` up, run
/// `udhcpc` for at most `timeout_secs` with `tries` discovers `gap_secs` apart, then report
/// `@@RESULT dhcp_exit=N` and `@@RESULT ip=ADDR`. Expects the script to define `r()` (report a result).
/// Only IPv4 addresses are flushed on a new lease, so a SLAAC address taken before survives.
pub fn dhcp_lease(timeout_secs: u32, tries: u32, gap_secs: u32) -> String {
    format!(
        r#"cat > /tmp/dhcp.sh <<'EOS'
#!/bin/sh
case "$1" in
bound|renew)
  ip -4 addr flush dev "$interface"
  ip addr add "$ip/$mask" dev "$interface"
  for gw in $router; do ip route add default via "$gw" dev "$interface"; done
  echo "$ip" > /tmp/ip
  ;;
esac
exit 0
EOS
chmod +x /tmp/dhcp.sh
ip link set eth0 up
timeout {timeout_secs} udhcpc -i eth0 -s /tmp/dhcp.sh -q -f -n -t {tries} -T {gap_secs}
r dhcp_exit $?
r ip "$(cat /tmp/ip 2>/dev/null)"
"#
    )
}

/// Shell snippet for a guest script: accept router advertisements on eth0, bring it up, wait up to
/// 30 s for a usable (not tentative) SLAAC address in `prefix` (e.g. `"fec0:"`) and report it as
/// `@@RESULT slaac=ADDR` (empty when none came); the address is left in `$a`. Expects `r()`.
pub fn slaac_address(prefix: &str) -> String {
    format!(
        r#"echo 1 > /proc/sys/net/ipv6/conf/eth0/accept_ra 2>/dev/null
ip link set eth0 up
a=""
for i in $(seq 1 60); do
  a=$(ip -6 addr show dev eth0 | grep 'inet6 {prefix}' | grep -v tentative | sed 's/.*inet6 \([0-9a-f:]*\).*/\1/' | head -n1)
  [ -n "$a" ] && break
  sleep 0.5
done
r slaac "$a"
"#
    )
}

/// A bootable guest: kernel + initramfs.
#[derive(Debug, Clone)]
pub struct Image {
    /// Name given to [`Image::build`]; also names the console log.
    pub name: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

impl Image {
    /// Builds `target/e2e-cache/images/<name>.cpio` whose `/init` sets up
    /// the guest and then runs `init_script` with busybox `sh`. All output
    /// goes to ttyS0. After the script, `/init` prints
    /// `@@RESULT script_exit=N` and [`DONE_MARKER`], then powers off.
    ///
    /// Scripts report results as lines `@@RESULT key=value`
    /// (see [`crate::qemu::Guest::results`]).
    pub fn build(name: &str, init_script: &str) -> Image {
        Self::build_with_files(name, init_script, &[])
    }

    /// Like [`Image::build`], with extra files in the initramfs: `(path, mode, content)`, e.g.
    /// `("/bin/udp-echo", 0o755, &bytes)` for a static helper program. Parent directories must be
    /// among those every image has (`/bin`, `/usr/bin`, `/etc`, `/root`, `/tmp`, ...).
    pub fn build_with_files(name: &str, init_script: &str, extra: &[(&str, u32, &[u8])]) -> Image {
        let k = kernel();
        let busybox = fs::read(BUSYBOX).unwrap_or_else(|e| {
            panic!("cannot read {BUSYBOX}: {e} (apt-get install busybox-static)")
        });
        assert!(
            is_static_elf(&busybox),
            "{BUSYBOX} is not a static binary: install the busybox-static package"
        );

        let mut insmods = String::new();
        let mut a = Archive::new();
        for d in [
            "/bin",
            "/sbin",
            "/usr",
            "/usr/bin",
            "/usr/sbin",
            "/proc",
            "/sys",
            "/dev",
            "/tmp",
            "/run",
            "/etc",
            "/root",
            "/lib",
            "/lib/modules",
        ] {
            a.dir(d, 0o755);
        }
        a.char_dev("/dev/console", 0o600, 5, 1);
        a.char_dev("/dev/ttyS0", 0o600, 4, 64);
        a.char_dev("/dev/null", 0o666, 1, 3);
        a.file("/bin/busybox", 0o755, &busybox);
        a.symlink("/bin/sh", "busybox");
        for m in &k.modules {
            let file = m.file_name().expect("module file name").to_string_lossy();
            let data = fs::read(m).unwrap_or_else(|e| panic!("read {}: {e}", m.display()));
            a.file(&format!("/lib/modules/{file}"), 0o644, &data);
            insmods.push_str(&format!(
                "insmod /lib/modules/{file} || echo \"@@INIT insmod failed: {file}\"\n"
            ));
        }
        a.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
        a.file("/etc/group", 0o644, b"root:x:0:\n");
        a.file("/init", 0o755, init(&insmods).as_bytes());
        a.file("/test.sh", 0o755, init_script.as_bytes());
        for (path, mode, data) in extra {
            a.file(path, *mode, data);
        }

        let dir = crate::paths::cache_dir().join("images");
        fs::create_dir_all(&dir).expect("create image dir");
        let initrd = dir.join(format!("{name}.cpio"));
        let tmp = dir.join(format!("{name}.cpio.tmp{}", std::process::id()));
        fs::write(&tmp, a.finish()).expect("write initramfs");
        fs::rename(&tmp, &initrd).expect("move initramfs into place");
        Image {
            name: name.to_owned(),
            kernel: k.vmlinuz.clone(),
            initrd,
        }
    }
}

fn init(insmods: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/ttyS0 >/dev/ttyS0 2>&1
echo "@@INIT kernel $(uname -r)"
{insmods}
ip link set lo up
echo "{READY_MARKER}"
sh /test.sh
echo "@@RESULT script_exit=$?"
echo "{DONE_MARKER}"
poweroff -f
"#
    )
}

/// A statically linked ELF has no PT_INTERP program header.
fn is_static_elf(data: &[u8]) -> bool {
    // ELF64 little-endian only (x86-64 hosts).
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[32..40].try_into().expect("8 bytes")) as usize;
    let phentsize = u16_at(54);
    let phnum = u16_at(56);
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        data.get(o..o + 4)
            .map(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != 3) // PT_INTERP
            .unwrap_or(false)
    })
}
