//! The daemon's sandbox (issue 9): once every socket, tap and file warren needs is open, and before it
//! serves a single frame, the process confines itself in layers, each of which degrades to one log line
//! where the kernel lacks it (or, with `--require-sandbox`, to a refusal to start):
//!
//! 0. Namespaces with an empty root (as passt does): the process detaches into a new user namespace
//!    (its uid and gid mapped to themselves) and a new mount namespace whose root is an empty,
//!    read-only tmpfs; the host's file system is unmounted from its view. Skipped (one log line) when
//!    something needs the file system by path at run time (`--vde`/`--dgram` peers' socket paths, a
//!    second thread such as pasta's `--netns` path watch), or when the kernel refuses. A process with
//!    capabilities (root) detaches its mounts only: a new user namespace would cost it CAP_NET_RAW
//!    (raw ICMP), CAP_NET_BIND_SERVICE (API forwards below 1024) and its file permissions.
//!    Exit-time removal of warren's own files goes through directory descriptors opened beforehand
//!    ([`AtExit`]).
//! 1. `PR_SET_NO_NEW_PRIVS`: nothing warren (or a child) execs can gain privileges.
//! 2. Landlock: every filesystem access right is handled and denied, except, beneath the directories
//!    that hold warren's own sockets, creating sockets (VDE per-port data sockets) and removing files
//!    and directories (its sockets at exit). The pcap file, the API socket and every listener are
//!    already open. No reading, writing, creating or executing of any file anywhere.
//! 3. seccomp-BPF: an allowlist of the system calls the running daemon makes (collected with
//!    `strace -f` over the end-to-end suites), a few narrowed by argument: `socket` only for
//!    IPv4/IPv6 (and unix only where VDE/dgram peers need it), `socketpair` only unix stream,
//!    `openat` only `O_PATH`, `clone` only for threads, `kill` only of itself or `warren run`'s
//!    command. Any other system call fails with `EPERM` (not a kill: a rarely used path shows up
//!    as one clear error instead of a dead LAN).
//!    `execve`, `fork`, `ptrace`, `mount`, `bpf`, … are all outside the list.
//!
//! `guestfwd … cmd:` needs fork and exec, which the sandboxed daemon cannot do: when such guestfwds are
//! configured, a small exec helper (`warren __exec-helper`) is started *before* the sandbox goes on.
//! It knows only the configured commands; the daemon sends it a command's index and the connection's
//! socket (SCM_RIGHTS), it runs `/bin/sh -c COMMAND` on that socket and reaps its children. A daemon
//! taken over by a guest can therefore run nothing but the commands the user configured.

#[allow(unsafe_code)]
mod sys;

pub use crate::atexit::AtExit;
use crate::atexit::{open_dir, parent};
use landlock::BitFlags;
use landlock::{
    Access, AccessFs, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use crate::cli::SandboxMode as Mode;

/// What the running daemon still needs from the filesystem and the process table.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// Directories in which sockets are created at run time (VDE switch directories).
    pub socket_dirs: Vec<PathBuf>,
    /// Directories beneath which warren removes its own files and directories at exit.
    pub cleanup_dirs: Vec<PathBuf>,
    /// Whether front ends connect to their peers' unix sockets at run time (VDE data sockets, dgram
    /// peers): then Landlock may not confine resolving unix socket paths, and (dgram) abstract ones.
    pub unix_peers: bool,
    pub abstract_peers: bool,
    /// The `cmd:` guestfwds' commands (run by the exec helper).
    pub commands: Vec<String>,
    /// `warren run`'s command: the one process the daemon may signal.
    pub child: Option<u32>,
    /// Hidden `--sandbox-selftest FILE`: after each layer, try to open FILE, to connect to the unix
    /// socket FILE.sock (FILE with its extension replaced), to create a file and to exec, and report.
    pub selftest: Option<PathBuf>,
}

impl Plan {
    /// The plan for a daemon started with `opts` (and `warren run`'s command `child`).
    pub fn new(opts: &crate::cli::Options, child: Option<u32>) -> Plan {
        let mut p = Plan {
            mode: opts.sandbox,
            child,
            selftest: opts.sandbox_selftest.clone(),
            ..Plan::default()
        };
        for l in &opts.listen {
            if let crate::frontend::stream::Listen::Unix(path) = l {
                p.cleanup_dirs.push(parent(path));
            }
        }
        for d in opts.dgram.iter().chain(opts.api.iter()) {
            p.cleanup_dirs.push(parent(d));
        }
        for v in &opts.vde {
            p.socket_dirs.push(v.clone());
            p.cleanup_dirs.push(parent(v));
        }
        p.unix_peers = !opts.vde.is_empty() || !opts.dgram.is_empty();
        p.abstract_peers = !opts.dgram.is_empty();
        for g in &opts.config.guestfwds {
            if let netstack::config::GuestFwdTarget::Command(c) = &g.target {
                if !p.commands.contains(c) {
                    p.commands.push(c.clone());
                }
            }
        }
        p
    }

    /// Lets the daemon remove `file` at exit (e.g. the `--pid` file of the passt/pasta drop-ins).
    pub fn remove_at_exit(&mut self, file: &Path) {
        let dir = parent(file);
        if !self.cleanup_dirs.contains(&dir) {
            self.cleanup_dirs.push(dir);
        }
    }
}

/// What was applied (for the start-up line and the tests).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub namespaces: Detached,
    pub no_new_privs: bool,
    pub landlock: bool,
    pub seccomp: bool,
}

fn fail_or_warn(mode: Mode, what: String) -> io::Result<()> {
    if mode == Mode::Required {
        return Err(io::Error::other(format!(
            "{what} (--require-sandbox; --no-sandbox turns the sandbox off)"
        )));
    }
    log::warn!("sandbox: {what}; continuing without it");
    Ok(())
}

/// How far the namespace layer went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Detached {
    /// Still in the host's namespaces (skipped, refused, or `--no-sandbox`).
    #[default]
    No,
    /// A new mount namespace with an empty root, the user namespace kept (a process with capabilities).
    Mount,
    /// New user and mount namespaces with an empty root.
    UserMount,
}

/// Confines the calling process as `plan` says; `driver` gets the exec helper for `cmd:` guestfwds.
/// Call once, after everything is bound and attached and before serving.
pub fn enter(plan: &Plan, driver: &mut crate::reactor::Driver) -> io::Result<Applied> {
    let mut done = Applied::default();
    if plan.mode == Mode::Off {
        log::info!("sandbox: off (--no-sandbox)");
        return Ok(done);
    }
    let threads = thread_count();
    // Landlock's directories are opened now: after the namespace layer the paths are gone.
    let rules = landlock_rules(plan);
    if threads > 1 {
        // Landlock confines only the calling thread; seccomp is synchronised across threads.
        fail_or_warn(
            plan.mode,
            format!("{threads} threads at sandbox time: Landlock confines only this one"),
        )?;
    }
    if !plan.commands.is_empty() {
        let helper = ExecHelper::start(&plan.commands)?;
        driver
            .socks
            .set_command_spawner(Box::new(move |cmd, stream| helper.run(cmd, stream)));
    }
    // After the exec helper started: it (and the commands it runs) keep the host's file system.
    done.namespaces = detach(plan, threads)?;
    if done.namespaces != Detached::No {
        selftest(plan, "after namespaces");
    }
    match sys::set_no_new_privs() {
        Ok(()) => done.no_new_privs = true,
        Err(e) => fail_or_warn(plan.mode, format!("cannot set no_new_privs: {e}"))?,
    }
    match rules.and_then(|r| landlock(plan, r)) {
        Ok(Some(abi)) => {
            done.landlock = true;
            log::debug!("sandbox: Landlock enforced (kernel ABI {abi})");
        }
        // A kernel without Landlock is one warning even with --require-sandbox (seccomp still keeps
        // the daemon from opening files); one that has it but refuses the rules is not.
        Ok(None) => log::warn!(
            "sandbox: this kernel has no Landlock (or it is disabled): the filesystem is confined by seccomp only"
        ),
        Err(e) => fail_or_warn(plan.mode, format!("Landlock: {e}"))?,
    }
    selftest(plan, "after landlock");
    match seccomp(plan) {
        Ok(n) => {
            done.seccomp = true;
            log::debug!("sandbox: seccomp allowlist of {n} system calls, EPERM for others");
        }
        Err(e) => fail_or_warn(plan.mode, format!("seccomp: {e}"))?,
    }
    selftest(plan, "after seccomp");
    log::info!(
        "sandbox: no_new_privs {}, Landlock {}, seccomp {}, empty root {}{}",
        onoff(done.no_new_privs),
        onoff(done.landlock),
        onoff(done.seccomp),
        match done.namespaces {
            Detached::No => "off",
            Detached::Mount => "on (mount namespace)",
            Detached::UserMount => "on (user and mount namespaces)",
        },
        if plan.commands.is_empty() {
            ""
        } else {
            "; guestfwd cmd: runs through the exec helper"
        }
    );
    Ok(done)
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// Whether this process has any effective capability (root, or a binary with file capabilities).
fn privileged() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps != 0)
}

/// The namespace layer: detaches into new namespaces with an empty root where nothing at run time
/// needs the file system by path. A refusal is one log line (even with `--require-sandbox`); only a
/// user namespace left without its uid map (the process would lose its own files) is an error.
fn detach(plan: &Plan, threads: usize) -> io::Result<Detached> {
    if plan.unix_peers {
        log::info!(
            "sandbox: --vde/--dgram peers' sockets are reached by path: staying in the host's mount namespace"
        );
        return Ok(Detached::No);
    }
    if threads > 1 {
        log::info!(
            "sandbox: {threads} threads (e.g. a --netns path watch): staying in the host's namespaces"
        );
        return Ok(Detached::No);
    }
    let user = !privileged();
    let refused = |what: &str, e: io::Error| {
        log::warn!("sandbox: cannot {what} ({e}): no empty root; continuing without it");
        Ok(Detached::No)
    };
    let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
    if let Err(e) = sys::unshare_user_mount(user) {
        return refused(
            if user {
                "create user and mount namespaces"
            } else {
                "create a mount namespace"
            },
            e,
        );
    }
    if user {
        // Map this user and group to themselves, so files and sockets keep their owner.
        let maps = match std::fs::write("/proc/self/setgroups", "deny") {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => std::fs::write("/proc/self/uid_map", format!("{0} {0} 1", uid.as_raw())).and_then(
                |()| std::fs::write("/proc/self/gid_map", format!("{0} {0} 1", gid.as_raw())),
            ),
        };
        maps.map_err(|e| io::Error::new(e.kind(), format!("sandbox: user namespace: {e}")))?;
    }
    if let Err(e) = empty_root() {
        return refused("switch to an empty root", e);
    }
    Ok(if user {
        Detached::UserMount
    } else {
        Detached::Mount
    })
}

/// In a fresh mount namespace: an empty read-only tmpfs becomes the root, the old root is unmounted.
fn empty_root() -> io::Result<()> {
    use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
    // Nothing below propagates back to the host (and pivot_root needs private mounts).
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )?;
    rustix::mount::mount(
        "warren",
        "/tmp",
        "tmpfs",
        MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::NOSUID | MountFlags::RDONLY,
        c"nr_inodes=2,nr_blocks=0",
    )?;
    rustix::process::chdir("/tmp")?;
    rustix::process::pivot_root(".", ".")?;
    rustix::mount::unmount(".", UnmountFlags::DETACH)?;
    rustix::process::chdir("/")?;
    Ok(())
}

/// Landlock's rules, their directories opened before the namespace layer hides the paths.
/// Why a confinement layer could not be applied (one line after `Landlock: ` or `seccomp: `).
#[derive(Debug, thiserror::Error)]
enum LayerError {
    /// A directory of the plan cannot be opened.
    #[error("{0}")]
    Dir(#[from] io::Error),
    #[error("{0}")]
    Landlock(#[from] landlock::RulesetError),
    /// The seccomp filter cannot be built for this architecture.
    #[error("{0}")]
    Filter(#[from] seccompiler::BackendError),
    /// The kernel refused the seccomp filter.
    #[error("{0}")]
    Apply(#[from] seccompiler::Error),
}

fn landlock_rules(plan: &Plan) -> Result<Vec<(OwnedFd, BitFlags<AccessFs>)>, LayerError> {
    let mut rules = Vec::new();
    for d in &plan.socket_dirs {
        let fd = open_dir(d)?;
        rules.push((fd, AccessFs::MakeSock | AccessFs::RemoveFile));
    }
    for d in &plan.cleanup_dirs {
        let fd = open_dir(d)?;
        rules.push((fd, AccessFs::RemoveFile | AccessFs::RemoveDir));
    }
    Ok(rules)
}

/// Applies the Landlock ruleset; `Ok(None)` when the kernel has no Landlock.
fn landlock(
    plan: &Plan,
    rules: Vec<(OwnedFd, BitFlags<AccessFs>)>,
) -> Result<Option<i32>, LayerError> {
    // Every filesystem right this crate knows of (best effort: those the kernel has are handled).
    let mut handled = AccessFs::from_all(ABI::V10);
    if plan.unix_peers {
        // Peers' sockets may be anywhere (a dgram guest's own path, libvdeplug's /tmp/vde.*).
        handled.remove(AccessFs::ResolveUnix);
    }
    // No connecting to abstract sockets made outside the sandbox (unless dgram peers may use them),
    // no signals to processes outside it (unless warren run's command is ours to stop).
    let mut scopes = BitFlags::<Scope>::empty();
    if !plan.abstract_peers {
        scopes |= Scope::AbstractUnixSocket;
    }
    if plan.child.is_none() {
        scopes |= Scope::Signal;
    }
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(handled)?
        .scope(scopes)?
        .create()?;
    for (fd, access) in rules {
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
    }
    let status = ruleset.restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::NotEnforced => None,
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => {
            Some(sys::landlock_abi())
        }
    })
}

fn eq(arg: u8, v: u64) -> Cond {
    // Only fails for arg > 5, which we never pass.
    Cond::new(arg, Len::Dword, Op::Eq, v).expect("argument index below 6")
}

fn masked(arg: u8, mask: u64, v: u64) -> Cond {
    Cond::new(arg, Len::Qword, Op::MaskedEq(mask), v).expect("argument index below 6")
}

fn rule(c: Vec<Cond>) -> SeccompRule {
    SeccompRule::new(c).expect("a rule with conditions")
}

/// The system calls the running daemon makes, unconditionally allowed: those `strace -f` saw the
/// daemon make after the sandbox went on over the `gateway`, `forwarding`, `multi_guest`, `netns`
/// and `frontends` suites, plus what a thread start needs (should a later change start one) and
/// the paths of `warren run`'s shutdown.
const ALLOWED: &[libc::c_long] = &[
    // event loop and time
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    // memory
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    // signals, threads, exit
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // file descriptors
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    // sockets
    libc::SYS_connect,
    libc::SYS_accept4,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_shutdown,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    // the daemon's own files: VDE sockets' modes and owners, removal at exit (Landlock decides
    // where; these are the *at forms, the x86-64 names are below)
    libc::SYS_fchmodat,
    libc::SYS_fchownat,
    libc::SYS_unlinkat,
    // warren run's command
    libc::SYS_wait4,
];

/// The same calls under their x86-64-only names.
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[libc::c_long] = &[
    libc::SYS_epoll_wait,
    libc::SYS_unlink,
    libc::SYS_rmdir,
    libc::SYS_chmod,
    libc::SYS_chown,
];

#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[libc::c_long] = &[];

/// The allowlist filter: allowed calls, plus those allowed only with certain arguments.
fn allowlist(plan: &Plan) -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .map(|&n| (n, Vec::new()))
        .collect();
    // socket(): IPv4 and IPv6; unix too only where VDE or dgram peers are connected to at run
    // time. Without a fresh unix socket the daemon cannot reach any unix socket on the host (a
    // session bus, a container engine's socket): its own are bound, listening or connected.
    let mut domains = vec![libc::AF_INET, libc::AF_INET6];
    if plan.unix_peers {
        domains.push(libc::AF_UNIX);
    }
    rules.insert(
        libc::SYS_socket,
        domains
            .iter()
            .map(|&d| rule(vec![eq(0, d as u64)]))
            .collect(),
    );
    // socketpair(): connected unix stream pairs only (guestfwd cmd:, the signal driver).
    rules.insert(
        libc::SYS_socketpair,
        vec![rule(vec![
            eq(0, libc::AF_UNIX as u64),
            masked(1, 0xf, libc::SOCK_STREAM as u64),
        ])],
    );
    // openat(): O_PATH only (VDE pins its client's socket inode); reading or writing a file is refused.
    rules.insert(
        libc::SYS_openat,
        vec![rule(vec![masked(
            2,
            libc::O_PATH as u64,
            libc::O_PATH as u64,
        )])],
    );
    // clone(): threads only (a thread shares this filter); never a new process.
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![masked(
            0,
            libc::CLONE_THREAD as u64,
            libc::CLONE_THREAD as u64,
        )])],
    );
    // clone3(): answered ENOSYS by the other filter (see `seccomp_program`).
    rules.insert(libc::SYS_clone3, Vec::new());
    // prctl(): naming threads only.
    rules.insert(
        libc::SYS_prctl,
        vec![rule(vec![eq(0, libc::PR_SET_NAME as u64)])],
    );
    // Signals: to this process's own threads, and to warren run's command.
    let me = std::process::id() as u64;
    rules.insert(libc::SYS_tgkill, vec![rule(vec![eq(0, me)])]);
    let mut kill = vec![rule(vec![eq(0, me)])];
    if let Some(child) = plan.child {
        kill.push(rule(vec![eq(0, u64::from(child))]));
    }
    rules.insert(libc::SYS_kill, kill);
    rules
}

/// The two filter programs: the allowlist, and clone3 → ENOSYS.
fn seccomp_program(plan: &Plan) -> Result<(BpfProgram, BpfProgram, usize), LayerError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let rules = allowlist(plan);
    let n = rules.len();
    let allow: BpfProgram = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .and_then(TryInto::try_into)?;
    // clone3's arguments live in memory a filter cannot read: make it ENOSYS so that the C library
    // falls back to clone(), whose flags the allowlist checks. The allowlist lets clone3 through and
    // this filter, installed first, answers it.
    let clone3: BpfProgram = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .and_then(TryInto::try_into)?;
    Ok((allow, clone3, n))
}

/// Installs the seccomp filters on every thread; returns the number of allowed system calls.
fn seccomp(plan: &Plan) -> Result<usize, LayerError> {
    let (allow, clone3, n) = seccomp_program(plan)?;
    seccompiler::apply_filter_all_threads(&clone3)?;
    seccompiler::apply_filter_all_threads(&allow)?;
    Ok(n)
}

/// The hidden `--sandbox-selftest FILE`: tries what the sandbox forbids and prints what happened,
/// one line each, so a test can check the real daemon's confinement (not a copy of it).
fn selftest(plan: &Plan, stage: &str) {
    let Some(file) = &plan.selftest else { return };
    let open = match std::fs::File::open(file) {
        Ok(_) => "allowed".to_string(),
        Err(e) => format!("denied ({e})"),
    };
    eprintln!(
        "warren: sandbox selftest {stage}: open {}: {open}",
        file.display()
    );
    let sock = file.with_extension("sock");
    let connect = match std::os::unix::net::UnixStream::connect(&sock) {
        Ok(_) => "allowed".to_string(),
        Err(e) => format!("denied ({e})"),
    };
    eprintln!(
        "warren: sandbox selftest {stage}: connect {}: {connect}",
        sock.display()
    );
    let create = dir_probe(plan);
    eprintln!("warren: sandbox selftest {stage}: create a file beside the sockets: {create}");
    // exec() replaces this process if it succeeds: then the daemon is gone and the test sees it.
    use std::os::unix::process::CommandExt;
    let e = std::process::Command::new("/bin/true").exec();
    eprintln!("warren: sandbox selftest {stage}: exec /bin/true: denied ({e})");
    let spawn = match std::process::Command::new("/bin/true").spawn() {
        Ok(mut c) => {
            let _ = c.wait();
            "allowed".to_string()
        }
        Err(e) => format!("denied ({e})"),
    };
    eprintln!("warren: sandbox selftest {stage}: spawn /bin/true: {spawn}");
}

fn dir_probe(plan: &Plan) -> String {
    let Some(dir) = plan.cleanup_dirs.first() else {
        return "no directory".into();
    };
    let p = dir.join(format!(".warren-selftest-{}", std::process::id()));
    match std::fs::File::create(&p) {
        Ok(_) => {
            let _ = std::fs::remove_file(&p);
            "allowed".into()
        }
        Err(e) => format!("denied ({e})"),
    }
}

/// The daemon's side of the exec helper.
struct ExecHelper {
    sock: OwnedFd,
    commands: Vec<String>,
}

impl ExecHelper {
    fn start(commands: &[String]) -> io::Result<ExecHelper> {
        let (ours, theirs) = crate::helper::seqpacket_pair()?;
        let mut args: Vec<OsString> = vec!["__exec-helper".into()];
        args.extend(commands.iter().map(OsString::from));
        let argv: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        // The helper outlives nothing: it exits when this end closes, i.e. when warren exits.
        let _child = crate::helper::spawn_helper(&argv, &theirs)?;
        drop(theirs);
        // A helper that falls behind must not stall the event loop: the send fails instead.
        socket2::SockRef::from(&ours).set_nonblocking(true)?;
        Ok(ExecHelper {
            sock: ours,
            commands: commands.to_vec(),
        })
    }

    /// Asks the helper to run `command` (one of the configured ones) on `stream`.
    fn run(&self, command: &str, stream: OwnedFd) -> io::Result<()> {
        let idx = self
            .commands
            .iter()
            .position(|c| c == command)
            .ok_or_else(|| io::Error::other("not a configured guestfwd command"))?;
        crate::helper::send_msg(
            self.sock.as_fd(),
            &(idx as u32).to_le_bytes(),
            Some(stream.as_fd()),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("exec helper: {e}")))
    }
}

/// Children the exec helper runs at once, at most (more are refused: the connection closes).
const MAX_CHILDREN: usize = 1024;

/// `warren __exec-helper COMMAND…`: runs `/bin/sh -c COMMAND[i]` on each socket the daemon sends with
/// index i, and reaps its children. Exits when the daemon's end closes.
pub fn exec_helper_main(commands: &[String]) -> ExitCode {
    let Some(sock) = crate::helper::helper_socket() else {
        eprintln!("warren: __exec-helper is started by warren itself");
        return ExitCode::from(2);
    };
    // Wake up once a second to reap children even when no request comes.
    if let Err(e) =
        socket2::SockRef::from(&sock).set_read_timeout(Some(std::time::Duration::from_secs(1)))
    {
        eprintln!("warren: exec helper: {e}");
        return ExitCode::FAILURE;
    }
    let mut children: Vec<std::process::Child> = Vec::new();
    loop {
        children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        let (data, fd) = match crate::helper::recv_msg(sock.as_fd()) {
            Ok(m) => m,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                eprintln!("warren: exec helper: {e}");
                return ExitCode::FAILURE;
            }
        };
        if data.is_empty() {
            return ExitCode::SUCCESS;
        }
        let (Some(fd), Ok(idx)) = (fd, <[u8; 4]>::try_from(data.as_slice())) else {
            eprintln!("warren: exec helper: malformed request ignored");
            continue;
        };
        let Some(command) = commands.get(u32::from_le_bytes(idx) as usize) else {
            eprintln!("warren: exec helper: unknown command index ignored");
            continue;
        };
        if children.len() >= MAX_CHILDREN {
            eprintln!(
                "warren: guestfwd cmd:{command}: {MAX_CHILDREN} commands already running; connection refused"
            );
            continue;
        }
        let spawned = fd.try_clone().and_then(|stdin| {
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(command)
                .stdin(stdin)
                .stdout(fd)
                .spawn()
        });
        match spawned {
            Ok(c) => children.push(c),
            Err(e) => eprintln!("warren: guestfwd cmd:{command}: cannot start /bin/sh: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> crate::cli::Options {
        let mut o = crate::cli::parse(args.iter().map(|s| s.to_string())).expect("valid options");
        o.resolve(std::path::Path::new("/nonexistent/resolv.conf"))
            .expect("resolves");
        o
    }

    #[test]
    fn plan_lists_socket_dirs_and_commands() {
        let p = Plan::new(
            &opts(&[
                "--socket",
                "/run/w/a.sock",
                "--api",
                "api.sock",
                "--vde",
                "/tmp/sw",
                "--guestfwd",
                "tcp:10.0.2.100:7-cmd:cat",
                "--guestfwd",
                "tcp:10.0.2.101:7-cmd:cat",
            ]),
            None,
        );
        assert_eq!(p.mode, Mode::On);
        assert_eq!(p.socket_dirs, vec![PathBuf::from("/tmp/sw")]);
        assert_eq!(
            p.cleanup_dirs,
            vec![
                PathBuf::from("/run/w"),
                PathBuf::from("."),
                PathBuf::from("/tmp")
            ]
        );
        assert_eq!(p.commands, vec!["cat".to_string()]);
    }

    #[test]
    fn at_exit_removes_through_the_directory_it_opened() {
        let base = std::env::temp_dir().join(format!("warren-atexit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("run")).expect("mkdir");
        std::fs::write(base.join("run/w.sock"), "").expect("file");
        let file = AtExit::new(base.join("run/w.sock"));
        let dir = AtExit::new(base.join("run"));
        // The path no longer leads there (as in the empty root): removal still finds the file.
        std::fs::rename(base.join("run"), base.join("moved")).expect("rename");
        std::fs::create_dir(base.join("run")).expect("a different run/");
        std::fs::write(base.join("run/w.sock"), "").expect("a different file");
        file.remove(false);
        assert!(!base.join("moved/w.sock").exists());
        assert!(base.join("run/w.sock").exists(), "only the registered file");
        // A directory is removed only when empty (through its parent's descriptor).
        AtExit::new(base.join("run")).remove(true);
        assert!(base.join("run").exists(), "not empty: kept");
        dir.remove(true);
        assert!(
            base.join("run").exists(),
            "the parent fd names run/, which is the new one"
        );
        std::fs::remove_file(base.join("run/w.sock")).expect("rm");
        dir.remove(true);
        assert!(!base.join("run").exists());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn modes_from_the_command_line() {
        assert_eq!(Plan::new(&opts(&["--no-sandbox"]), None).mode, Mode::Off);
        assert_eq!(
            Plan::new(&opts(&["--require-sandbox"]), None).mode,
            Mode::Required
        );
        assert!(
            crate::cli::parse(["--no-sandbox", "--require-sandbox"].map(String::from)).is_err()
        );
    }

    #[test]
    fn allowlist_narrows_dangerous_calls() {
        let r = allowlist(&Plan::default());
        for banned in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_process_vm_writev,
        ] {
            assert!(!r.contains_key(&banned), "syscall {banned} allowed");
        }
        for narrowed in [
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_openat,
            libc::SYS_clone,
            libc::SYS_kill,
        ] {
            assert!(!r[&narrowed].is_empty(), "syscall {narrowed} unconditional");
        }
        // Compiles for this architecture.
        assert!(seccomp_program(&Plan::default()).is_ok());
    }
}
