//! End-to-end test harness for warren.
//!
//! Boots a real Linux guest (Debian bookworm's kernel + busybox-static in a
//! generated initramfs) under `qemu-system-x86_64 -accel tcg`, attaches it to
//! warren (or, for validating the guest side, QEMU's built-in slirp), and
//! provides small host-loopback servers (HTTP, upload sink, TFTP/UDP, DNS)
//! for the guest to talk to through the gateway address 10.0.2.2.
//!
//! Everything here assumes the Debian packages listed in `README.md` of this
//! package are installed; a missing tool fails with a message naming it.

pub mod backend;
pub mod cpio;
pub mod guest;
pub mod hostcheck;
pub mod hostile;
pub mod kernel;
pub mod paths;
pub mod qemu;
pub mod servers;
pub mod warren;

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(data))
}

/// Lower-case hex encoding.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Makes `dst` the same file as `src`: a hard link where possible (nothing is written, so no forked
/// child can hold the file open for writing and make its exec fail with ETXTBSY), else a copy.
pub fn link_or_copy(src: &std::path::Path, dst: &std::path::Path) -> std::io::Result<()> {
    match std::fs::hard_link(src, dst) {
        Ok(()) => Ok(()),
        Err(_) => std::fs::copy(src, dst).map(|_| ()),
    }
}

/// Whether the current process runs as root (euid 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs `cmd`, panicking with a clear message (including stderr) unless it
/// exits successfully. Returns stdout.
pub fn run_checked(cmd: &mut std::process::Command) -> String {
    let what = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("failed to run {what}: {e} (is the Debian package providing it installed?)")
    });
    if !out.status.success() {
        panic!(
            "{what} failed with {}:\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes sure the unprivileged test user `user` exists (with a home directory) and owns the
/// subordinate uid and gid range `subids` ("FIRST-LAST"), as rootless podman and rootlesskit need.
/// Callers serialise calls per process: concurrent useradd/usermod rewrite /etc/passwd.
pub fn ensure_user_with_subids(user: &str, subids: &str) {
    use std::process::{Command, Stdio};
    let exists = Command::new("id")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        run_checked(Command::new("useradd").args(["-m", "-s", "/bin/sh", user]));
    }
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    if !subuid.lines().any(|l| l.starts_with(&format!("{user}:"))) {
        run_checked(Command::new("usermod").args([
            "--add-subuids",
            subids,
            "--add-subgids",
            subids,
            user,
        ]));
    }
}
