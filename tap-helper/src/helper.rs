//! The helper's one job, in order: clear the environment, set NO_NEW_PRIVS, drop to
//! CAP_NET_ADMIN alone as the real user, validate the arguments, the QEMU socket and the
//! bridge, read the ACL as the real user, decide, then create the tap, enforce `max-taps`,
//! copy the bridge MTU, set MAC byte 0 to 0xFE, enslave it, bring it up and pass the fd.

use crate::acl::{self, AclError, Decision, OpenError, Opened, Source, Unsafe};
use crate::ifname::{IfName, IfNameError};
use crate::sys::{
    self, Caps, FdKind, CAP_NET_ADMIN, CAP_SETPCAP, IFF_NO_PI, IFF_TAP, IFF_VNET_HDR,
};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The ACL file read when `--acl` is not given (QEMU's default).
pub const DEFAULT_ACL: &str = "/etc/qemu/bridge.conf";

pub const USAGE: &str = "Usage: warren-bridge-helper [--use-vnet] --br=bridge --fd=unixfd";

pub const HELP: &str = "\
Usage: warren-bridge-helper [--use-vnet] --br=BRIDGE --fd=FD [--acl FILE]

Create a tap device, attach it to BRIDGE and pass its file descriptor over the unix stream
socket FD (SCM_RIGHTS), if the ACL allows the calling user to use BRIDGE.  A drop-in for
qemu-bridge-helper: -netdev bridge,br=BRIDGE,helper=/path/to/warren-bridge-helper

Options:
  --use-vnet      request IFF_VNET_HDR if the kernel offers it
  --br=BRIDGE     the bridge (1-15 bytes, compared exactly)
  --fd=FD         the connected AF_UNIX SOCK_STREAM socket to send the tap fd on
  --acl FILE      read FILE instead of /etc/qemu/bridge.conf (refused when setuid)
  --help          this text

ACL (default /etc/qemu/bridge.conf), one directive per line, read as the calling user:
  allow NAME|all   deny NAME|all   include /ABSOLUTE/PATH   max-taps N   # comment
Default deny; any matching deny beats any allow; an include the user cannot read adds
nothing; any syntax error, missing include, loop or unsafe file permission denies.

Exit status: 0 when the fd was sent, 1 otherwise (one line on stderr says why).";

/// Parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub use_vnet: bool,
    pub bridge: Vec<u8>,
    pub fd: RawFd,
    pub acl: Option<PathBuf>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Cmd {
    Help,
    Run(Args),
}

/// Everything that can go wrong; each variant is one line of explanation.
#[derive(Debug)]
pub enum Error {
    Usage(String),
    ClearEnv(io::Error),
    NoNewPrivs(io::Error),
    CapGet(io::Error),
    NoNetAdmin,
    DropPrivileges(&'static str, io::Error),
    PrivilegesRemain(String),
    AclFlagWhenSetuid,
    BadBridgeName(Vec<u8>, IfNameError),
    FdNotOpen(RawFd),
    FdNotSocket(RawFd),
    FdNotUnix(RawFd, i32),
    FdNotStream(RawFd, i32),
    ListLinks(io::Error),
    NoSuchBridge(IfName),
    NotABridge(IfName, String),
    Acl(AclError),
    Denied(IfName, Decision),
    TooManyTaps {
        limit: u32,
        held: usize,
        at: acl::Origin,
    },
    OpenTun(io::Error),
    CreateTap(io::Error),
    SetOwner(IfName, io::Error),
    ControlSocket(io::Error),
    GetMtu(IfName, io::Error),
    SetMtu(IfName, i32, io::Error),
    SetMac(IfName, io::Error),
    IfIndex(IfName, io::Error),
    AddToBridge(IfName, IfName, io::Error),
    Up(IfName, io::Error),
    SendFd(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::ClearEnv(e) => write!(f, "failed to clear the environment: {e}"),
            Error::NoNewPrivs(e) => write!(f, "failed to set no_new_privs: {e}"),
            Error::CapGet(e) => write!(f, "failed to read capabilities: {e}"),
            Error::NoNetAdmin => write!(
                f,
                "no CAP_NET_ADMIN: install setuid root (chown root:root; chmod u+s) or run with CAP_NET_ADMIN"
            ),
            Error::DropPrivileges(step, e) => write!(f, "failed to drop privileges ({step}): {e}"),
            Error::PrivilegesRemain(m) => write!(f, "privileges remain after dropping: {m}"),
            Error::AclFlagWhenSetuid => {
                write!(f, "--acl is refused when running setuid; edit {DEFAULT_ACL} instead")
            }
            Error::BadBridgeName(n, e) => {
                write!(f, "bridge name `{}` refused: {e}", n.escape_ascii())
            }
            Error::FdNotOpen(fd) => write!(f, "--fd={fd} is not an open file descriptor"),
            Error::FdNotSocket(fd) => write!(f, "--fd={fd} is not a socket"),
            Error::FdNotUnix(fd, d) => write!(f, "--fd={fd} is not a unix socket (domain {d})"),
            Error::FdNotStream(fd, t) => {
                write!(f, "--fd={fd} is not a stream socket (type {t})")
            }
            Error::ListLinks(e) => write!(f, "failed to list network interfaces: {e}"),
            Error::NoSuchBridge(b) => write!(f, "bridge `{b}` does not exist"),
            Error::NotABridge(b, k) => write!(f, "`{b}` is not a bridge (kind {k})"),
            Error::Acl(e) => write!(f, "access denied, ACL error: {e}"),
            Error::Denied(b, d) => write!(f, "access to bridge `{b}` {d}"),
            Error::TooManyTaps { limit, held, at } => write!(
                f,
                "access denied: user would hold {held} taps, max-taps {limit} (set at {at})"
            ),
            Error::OpenTun(e) => write!(f, "failed to open /dev/net/tun: {e}"),
            Error::CreateTap(e) => write!(f, "failed to create tap device: {e}"),
            Error::SetOwner(t, e) => write!(f, "failed to set owner of `{t}`: {e}"),
            Error::ControlSocket(e) => write!(f, "failed to open control socket: {e}"),
            Error::GetMtu(b, e) => write!(f, "failed to get MTU of bridge `{b}`: {e}"),
            Error::SetMtu(t, m, e) => write!(f, "failed to set MTU of `{t}` to {m}: {e}"),
            Error::SetMac(t, e) => write!(f, "failed to set MAC address of `{t}`: {e}"),
            Error::IfIndex(t, e) => write!(f, "failed to get index of `{t}`: {e}"),
            Error::AddToBridge(t, b, e) => {
                write!(f, "failed to add interface `{t}` to bridge `{b}`: {e}")
            }
            Error::Up(t, e) => write!(f, "failed to bring up interface `{t}`: {e}"),
            Error::SendFd(e) => write!(f, "failed to write fd to unix socket: {e}"),
        }
    }
}

/// Parse the arguments (without argv\[0\]).  QEMU's syntax: `--use-vnet`, `--br=NAME`,
/// `--fd=N` in any order.  Stricter: duplicates and non-decimal fds are refused.
pub fn parse_args(args: &[OsString]) -> Result<Cmd, Error> {
    let usage = |why: String| Error::Usage(format!("{why}\n{USAGE}"));
    let (mut use_vnet, mut bridge, mut fd, mut acl) = (false, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let b = a.as_bytes();
        if b == b"--help" {
            return Ok(Cmd::Help);
        } else if b == b"--use-vnet" {
            if use_vnet {
                return Err(usage("--use-vnet given twice".into()));
            }
            use_vnet = true;
        } else if let Some(v) = b.strip_prefix(b"--br=") {
            if bridge.replace(v.to_vec()).is_some() {
                return Err(usage("--br given twice".into()));
            }
        } else if let Some(v) = b.strip_prefix(b"--fd=") {
            let n = std::str::from_utf8(v)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|s| s.parse::<RawFd>().ok())
                .ok_or_else(|| usage(format!("--fd needs a number, not `{}`", v.escape_ascii())))?;
            if fd.replace(n).is_some() {
                return Err(usage("--fd given twice".into()));
            }
        } else if b == b"--acl" || b.starts_with(b"--acl=") {
            let v = match b.strip_prefix(b"--acl=") {
                Some(v) => OsStr::from_bytes(v).to_os_string(),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| usage("--acl needs a file".into()))?,
            };
            if v.is_empty() {
                return Err(usage("--acl needs a file".into()));
            }
            if acl.replace(PathBuf::from(v)).is_some() {
                return Err(usage("--acl given twice".into()));
            }
        } else {
            return Err(usage(format!("unknown option `{}`", b.escape_ascii())));
        }
    }
    match (bridge, fd) {
        (Some(bridge), Some(fd)) => Ok(Cmd::Run(Args {
            use_vnet,
            bridge,
            fd,
            acl,
        })),
        (None, _) => Err(usage("missing --br".into())),
        (_, None) => Err(usage("missing --fd".into())),
    }
}

/// Become the real user with CAP_NET_ADMIN (effective + permitted) and nothing else, keeping
/// the supplementary groups.  Also clears the bounding and ambient sets when possible and
/// makes the process non-dumpable.
pub fn drop_privileges() -> Result<(), Error> {
    let caps = sys::capget().map_err(Error::CapGet)?;
    if caps.permitted & (1 << CAP_NET_ADMIN) == 0 {
        return Err(Error::NoNetAdmin);
    }
    let (ruid, euid, rgid) = sys::ids();
    if caps.effective & (1 << CAP_SETPCAP) != 0 {
        sys::drop_bounding_set_except(CAP_NET_ADMIN)
            .map_err(|e| Error::DropPrivileges("bounding set", e))?;
    }
    sys::clear_ambient().map_err(|e| Error::DropPrivileges("ambient set", e))?;
    sys::set_keepcaps(true).map_err(|e| Error::DropPrivileges("keepcaps", e))?;
    sys::setresgid(rgid).map_err(|e| Error::DropPrivileges("setresgid", e))?;
    if euid != ruid {
        sys::setresuid(ruid).map_err(|e| Error::DropPrivileges("setresuid", e))?;
    }
    sys::set_keepcaps(false).map_err(|e| Error::DropPrivileges("keepcaps", e))?;
    sys::capset(Caps::only(CAP_NET_ADMIN)).map_err(|e| Error::DropPrivileges("capset", e))?;
    sys::set_not_dumpable().map_err(|e| Error::DropPrivileges("dumpable", e))?;

    // Verify rather than trust.
    let now = sys::capget().map_err(Error::CapGet)?;
    if now != Caps::only(CAP_NET_ADMIN) {
        return Err(Error::PrivilegesRemain(format!("capabilities {now:x?}")));
    }
    let (u, e, g) = sys::ids();
    if u != ruid || e != ruid || g != rgid {
        return Err(Error::PrivilegesRemain(format!("uid {u} euid {e} gid {g}")));
    }
    Ok(())
}

/// ACL files from the file system, opened as the (already dropped-to) real user.
pub struct FsSource {
    /// Refuse files (and their directories) writable by anyone but root.
    pub require_root_owned: bool,
}

impl FsSource {
    fn check_safe(&self, file: &std::fs::File, meta: &std::fs::Metadata) -> Result<(), OpenError> {
        let unsafe_meta = |m: &std::fs::Metadata| -> Option<Unsafe> {
            if m.uid() != 0 {
                Some(Unsafe::NotRootOwned(m.uid()))
            } else if m.mode() & 0o022 != 0 {
                Some(Unsafe::Writable(m.mode() & 0o7777))
            } else {
                None
            }
        };
        if let Some(why) = unsafe_meta(meta) {
            return Err(OpenError::UnsafeFile(why));
        }
        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(|e| OpenError::RealPath(Box::new(OpenError::from_io(&e))))?;
        let mut dir: &Path = &real;
        while let Some(parent) = dir.parent() {
            let m = std::fs::metadata(parent).map_err(|e| OpenError::Stat {
                dir: parent.to_path_buf(),
                why: Box::new(OpenError::from_io(&e)),
            })?;
            if let Some(why) = unsafe_meta(&m) {
                return Err(OpenError::UnsafeDir {
                    dir: parent.to_path_buf(),
                    why,
                });
            }
            dir = parent;
        }
        Ok(())
    }
}

impl Source for FsSource {
    fn open(&mut self, path: &[u8]) -> Result<Opened, OpenError> {
        let p = Path::new(OsStr::from_bytes(path));
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(p)
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => return Ok(Opened::NotReadable),
            Err(e) => return Err(OpenError::from_io(&e)),
        };
        let meta = file.metadata().map_err(|e| OpenError::from_io(&e))?;
        if !meta.file_type().is_file() {
            return Err(OpenError::NotRegular);
        }
        if self.require_root_owned {
            self.check_safe(&file, &meta)?;
        }
        let mut data = Vec::new();
        (&file)
            .take(acl::MAX_FILE_SIZE + 1)
            .read_to_end(&mut data)
            .map_err(|e| OpenError::from_io(&e))?;
        if data.len() as u64 > acl::MAX_FILE_SIZE {
            return Err(OpenError::TooLarge(acl::MAX_FILE_SIZE));
        }
        Ok(Opened::Text {
            data,
            id: (meta.dev(), meta.ino()),
        })
    }
}

/// Best-effort user name for logs, read from /etc/passwd without NSS.
fn user_name(uid: u32) -> String {
    let found = std::fs::read("/etc/passwd").ok().and_then(|text| {
        text.split(|&b| b == b'\n').find_map(|line| {
            let mut f = line.split(|&b| b == b':');
            let name = f.next()?;
            let _pw = f.next()?;
            let id = f.next()?;
            (id == uid.to_string().as_bytes()).then(|| String::from_utf8_lossy(name).into_owned())
        })
    });
    match found {
        Some(n) => format!("{n}({uid})"),
        None => format!("uid {uid}"),
    }
}

/// Everything after privileges are dropped.  Returns the tap name on success.
fn serve(args: &Args, setuid: bool) -> Result<IfName, Error> {
    let bridge =
        IfName::new(&args.bridge).map_err(|e| Error::BadBridgeName(args.bridge.clone(), e))?;

    match sys::fd_kind(args.fd) {
        FdKind::UnixStream => {}
        FdKind::NotOpen => return Err(Error::FdNotOpen(args.fd)),
        FdKind::NotSocket => return Err(Error::FdNotSocket(args.fd)),
        FdKind::NotUnix(d) => return Err(Error::FdNotUnix(args.fd, d)),
        FdKind::NotStream(t) => return Err(Error::FdNotStream(args.fd, t)),
    }

    let links = sys::dump_links().map_err(Error::ListLinks)?;
    let link = links
        .iter()
        .find(|l| l.name == bridge.as_bytes())
        .ok_or_else(|| Error::NoSuchBridge(bridge.clone()))?;
    if link.kind.as_deref() != Some(b"bridge") {
        let kind = match &link.kind {
            Some(k) => k.escape_ascii().to_string(),
            None => "none".into(),
        };
        return Err(Error::NotABridge(bridge, kind));
    }

    let acl_path: Vec<u8> = match &args.acl {
        Some(p) => p.as_os_str().as_bytes().to_vec(),
        None => DEFAULT_ACL.as_bytes().to_vec(),
    };
    let mut source = FsSource {
        require_root_owned: setuid,
    };
    let acl = acl::load(&mut source, &acl_path).map_err(Error::Acl)?;
    let decision = acl.decide(&bridge);
    if !decision.is_allowed() {
        return Err(Error::Denied(bridge, decision));
    }

    let (ruid, _, _) = sys::ids();
    let tun = sys::open_tun().map_err(Error::OpenTun)?;
    let mut flags = IFF_TAP | IFF_NO_PI;
    if args.use_vnet {
        if let Ok(features) = sys::tun_features(&tun) {
            if features & u32::from(IFF_VNET_HDR) != 0 {
                flags |= IFF_VNET_HDR;
            }
        }
    }
    let tap = sys::tun_create(&tun, flags).map_err(Error::CreateTap)?;
    sys::tun_set_owner(&tun, ruid).map_err(|e| Error::SetOwner(tap.clone(), e))?;

    // max-taps: count after creating ours (it already carries the owner), so concurrent
    // invocations can never together exceed the limit: the last one to count sees them all.
    // If we are over, dropping `tun` destroys our tap.
    if let Some((limit, at)) = &acl.max_taps {
        let held = sys::dump_links()
            .map_err(Error::ListLinks)?
            .iter()
            .filter(|l| l.kind.as_deref() == Some(b"tun") && l.tun_owner == Some(ruid))
            .count();
        if held > *limit as usize {
            return Err(Error::TooManyTaps {
                limit: *limit,
                held,
                at: at.clone(),
            });
        }
    }

    let ctl = sys::Ctl::new().map_err(Error::ControlSocket)?;
    let mtu = ctl
        .mtu(&bridge)
        .map_err(|e| Error::GetMtu(bridge.clone(), e))?;
    ctl.set_mtu(&tap, mtu)
        .map_err(|e| Error::SetMtu(tap.clone(), mtu, e))?;
    // The bridge takes the lowest MAC of its ports; keep ours high so it never changes.
    ctl.edit_mac(&tap, |mac| mac[0] = 0xFE)
        .map_err(|e| Error::SetMac(tap.clone(), e))?;
    let index = ctl
        .ifindex(&tap)
        .map_err(|e| Error::IfIndex(tap.clone(), e))?;
    ctl.bridge_add(&bridge, index)
        .map_err(|e| Error::AddToBridge(tap.clone(), bridge.clone(), e))?;
    ctl.set_up(&tap).map_err(|e| Error::Up(tap.clone(), e))?;
    sys::send_fd(args.fd, tun.as_raw_fd()).map_err(Error::SendFd)?;
    Ok(tap)
}

/// What the helper does after dropping privileges (`strace -f` over the `handoff` and `acl_matrix`
/// tests, plus the C library's quieter paths: allocation, syslog's reconnect and time zone, signal
/// return): read ACL files and /etc/passwd, rtnetlink, the tun/bridge ioctls, the fd hand-off,
/// syslog, stderr, exit. Everything else (exec, fork, ptrace, mount, module loading, bpf, …) kills
/// the process: the helper fails closed.
const SYSCALLS: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_openat,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_ioctl,
    libc::SYS_socket,
    libc::SYS_bind,
    libc::SYS_connect,
    libc::SYS_getsockname,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_capget,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_futex,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_exit,
    libc::SYS_exit_group,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_readlink,
];

/// The whole program; returns the exit status.
pub fn run(argv: Vec<OsString>) -> i32 {
    let fail = |e: &Error| eprintln!("warren-bridge-helper: {e}");
    if let Err(e) = sys::clear_env() {
        fail(&Error::ClearEnv(e));
        return 1;
    }
    if let Err(e) = sys::set_no_new_privs() {
        fail(&Error::NoNewPrivs(e));
        return 1;
    }
    let setuid = sys::at_secure();
    let args: Vec<OsString> = argv.into_iter().skip(1).collect();
    // --help needs no privilege: answer it before anything else, but after NO_NEW_PRIVS.
    if args.iter().any(|a| a.as_bytes() == b"--help") {
        println!("{HELP}");
        return 0;
    }
    let (ruid, _, _) = sys::ids();
    // Nothing is opened or read before this point.
    let dropped = drop_privileges();
    sys::openlog();
    if let Err(e) = dropped {
        fail(&e);
        sys::syslog(libc::LOG_ERR, &format!("user=uid {ruid} refused: {e}"));
        return 1;
    }
    // From here on the helper needs only these system calls; anything else kills it.
    if let Err(e) = sys::seccomp_allow_only(SYSCALLS) {
        let e = Error::DropPrivileges("seccomp", e);
        fail(&e);
        sys::syslog(libc::LOG_ERR, &format!("user=uid {ruid} refused: {e}"));
        return 1;
    }
    let who = user_name(ruid);
    let args = match parse_args(&args) {
        Ok(Cmd::Run(a)) => a,
        Ok(Cmd::Help) => {
            println!("{HELP}");
            return 0;
        }
        Err(e) => {
            fail(&e);
            return 1;
        }
    };
    if setuid && args.acl.is_some() {
        let e = Error::AclFlagWhenSetuid;
        fail(&e);
        sys::syslog(libc::LOG_WARNING, &format!("user={who} refused: {e}"));
        return 1;
    }
    let bridge_shown = args.bridge.escape_ascii().to_string();
    match serve(&args, setuid) {
        Ok(tap) => {
            sys::syslog(
                libc::LOG_NOTICE,
                &format!("user={who} bridge={bridge_shown} allowed: tap={tap} attached"),
            );
            0
        }
        Err(e) => {
            fail(&e);
            sys::syslog(
                libc::LOG_WARNING,
                &format!("user={who} bridge={bridge_shown} refused: {e}"),
            );
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a re-executed copy of this test binary: NO_NEW_PRIVS, the helper's filter, then one
    /// allowed call and one that is not on the list (`getppid`), which must kill the process.
    #[test]
    fn seccomp_filter_kills_calls_outside_the_list() {
        const CHILD: &str = "WBH_SECCOMP_PROBE";
        if std::env::var_os(CHILD).is_some() {
            sys::set_no_new_privs().expect("no_new_privs");
            sys::seccomp_allow_only(SYSCALLS).expect("seccomp");
            eprintln!("filter on, uid {}", sys::ids().0);
            // Expected never to return.
            let ppid = sys::parent_pid();
            eprintln!("getppid returned {ppid}");
            std::process::exit(0);
        }
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "helper::tests::seccomp_filter_kills_calls_outside_the_list",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .expect("run the probe");
        let err = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert!(
            err.contains("filter on, uid"),
            "allowed calls still work: {err}"
        );
        assert!(!err.contains("getppid returned"), "{err}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "{:?} {err}",
            out.status
        );
    }

    fn a(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn qemu_argument_forms() {
        let want = Args {
            use_vnet: true,
            bridge: b"br0".to_vec(),
            fd: 3,
            acl: None,
        };
        for argv in [
            a(&["--use-vnet", "--fd=3", "--br=br0"]),
            a(&["--br=br0", "--use-vnet", "--fd=3"]),
        ] {
            assert_eq!(parse_args(&argv).expect("parses"), Cmd::Run(want.clone()));
        }
        let r = parse_args(&a(&["--br=x", "--fd=7", "--acl", "/tmp/a"])).expect("parses");
        assert_eq!(
            r,
            Cmd::Run(Args {
                use_vnet: false,
                bridge: b"x".to_vec(),
                fd: 7,
                acl: Some(PathBuf::from("/tmp/a"))
            })
        );
        assert_eq!(parse_args(&a(&["--help"])).expect("parses"), Cmd::Help);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for argv in [
            a(&[]),
            a(&["--br=br0"]),
            a(&["--fd=3"]),
            a(&["--br=br0", "--fd=x"]),
            a(&["--br=br0", "--fd=-1"]),
            a(&["--br=br0", "--fd="]),
            a(&["--br=br0", "--fd=3", "--bogus"]),
            a(&["--br=br0", "--fd=3", "--use-vnet=1"]),
            a(&["--br=br0", "--br=br1", "--fd=3"]),
            a(&["--br=br0", "--fd=3", "--acl"]),
            a(&["--br=br0", "--fd=99999999999"]),
        ] {
            match parse_args(&argv) {
                Err(Error::Usage(m)) => assert!(m.ends_with(USAGE), "{m}"),
                other => panic!("{argv:?}: expected usage error, got {other:?}"),
            }
        }
    }
}
