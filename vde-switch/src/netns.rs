//! `--netns PID|PATH`: serve a tap device inside another network namespace (what slirp4netns and pasta
//! do for rootless containers), and the pieces `warren run` shares with it.
//!
//! Joining a user namespace needs a single-threaded process, so the joining is done by a short-lived
//! helper: warren re-executes itself (`/proc/self/exe __attach …`) with one end of a socketpair as fd 3.
//! The helper enters the namespace's owning user namespace when it is not ours (found with
//! `NS_GET_USERNS`, or `--userns PATH`), then the network namespace, creates the tap (IFF_TAP|IFF_NO_PI),
//! optionally configures it with plain ioctls (no `ip` needed), sends the tap fd back with SCM_RIGHTS and
//! exits. warren then serves the fd as one more port of its LAN (`tap.rs`).
//!
//! warren stops when the namespace's process exits (`--netns PID`, watched through a pidfd), when the
//! `--exit-fd` closes, or on SIGINT/SIGTERM.

use crate::server::{poll_ready, register, Endpoint, Keep, Server};
use std::ffi::{CString, OsStr};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use tokio::io::unix::AsyncFd;

/// The tap's name when `--tap` is not given.
pub const DEFAULT_TAP: &str = "tap0";
/// Host number of the address `--configure` gives the namespace (10.0.2.100 on slirp's plan, as
/// slirp4netns does).
pub const CONFIGURED_HOST: u32 = 100;
/// Transmit ring of the tap (frames the namespace may queue towards warren). A tap drops what does
/// not fit, and drops stall TCP far more than a deeper queue costs.
const TAP_TXQUEUELEN: i32 = 5000;
/// The fd number the helpers find their socket at.
const HELPER_FD: RawFd = 3;

/// The namespace options of the command line.
#[derive(Clone, Debug, Default)]
pub struct NetnsOptions {
    /// `--netns PID|PATH`.
    pub target: Option<String>,
    /// `--userns PATH`: the user namespace to enter first (default: the network namespace's owner).
    pub userns: Option<PathBuf>,
    /// `--tap NAME` (default tap0).
    pub tap: Option<String>,
    /// `--configure`: address, route, MTU and link up inside the namespace.
    pub configure: bool,
    /// `--ready-fd FD`: "1" is written there once the tap is served (slirp4netns' `-r`).
    pub ready_fd: Option<RawFd>,
    /// `--exit-fd FD`: warren stops when it becomes readable or closes (slirp4netns' `-e`).
    pub exit_fd: Option<RawFd>,
    /// `warren run … -- CMD ARGS`: the command (the words after `--`).
    pub command: Option<Vec<String>>,
    /// The address `--configure` gives the tap, instead of .100 of the network (pasta's `-a`).
    pub address: Option<Ipv4Addr>,
}

impl NetnsOptions {
    /// Whether warren serves a namespace (so it needs no default socket).
    pub fn active(&self) -> bool {
        self.target.is_some() || self.command.is_some()
    }
}

/// What `--configure` sets inside the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapConfig {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u16,
}

impl TapConfig {
    /// The slirp4netns plan within warren's network: host .100, default route via the gateway.
    pub fn for_config(cfg: &netstack::config::Config) -> Self {
        TapConfig {
            addr: Ipv4Addr::from(u32::from(cfg.net.network()) | CONFIGURED_HOST),
            prefix: cfg.net.prefix,
            gateway: cfg.gateway,
            mtu: cfg.mtu,
        }
    }
}

fn err(msg: String) -> io::Error {
    io::Error::other(msg)
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn cstring(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes())
        .map_err(|_| err(format!("{}: contains a NUL byte", p.to_string_lossy())))
}

fn open_path(p: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstring(p.as_os_str())?;
    // SAFETY: c is a valid NUL-terminated string for the call's duration.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(os_err(&p.display().to_string()));
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A connected `SOCK_SEQPACKET` pair (close-on-exec).
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is valid for writes of two ints.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(os_err("socketpair"));
    }
    // SAFETY: socketpair returned two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one message, with `fd` attached (SCM_RIGHTS) if given.
pub(crate) fn send_msg(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // Room for one control message carrying one int, 8-byte aligned.
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain old data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` (<= 32) writable, aligned bytes, so CMSG_FIRSTHDR returns
        // a valid header pointer inside cbuf and CMSG_DATA has room for one int.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    // SAFETY: msg points at valid iovec and control buffers that outlive the call.
    let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if r < 0 {
        return Err(os_err("sendmsg"));
    }
    Ok(())
}

/// Receives one message (blocking) and the fd attached to it, if any. An empty message means EOF.
pub(crate) fn recv_msg(sock: BorrowedFd<'_>) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut data = vec![0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain old data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: msg points at valid, writable buffers of the lengths it states.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::new(e.kind(), format!("recvmsg: {e}")));
        }
    };
    data.truncate(n);
    let mut fd = None;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of well-formed control messages;
    // CMSG_FIRSTHDR/CMSG_NXTHDR stay within them, and an SCM_RIGHTS message carries ints it gave us.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..payload / std::mem::size_of::<RawFd>() {
                    let raw = std::ptr::read_unaligned(data.add(i));
                    // The first becomes ours; any others are closed when dropped.
                    let owned = OwnedFd::from_raw_fd(raw);
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((data, fd))
}

/// Runs `/proc/self/exe ARGS` with `sock` as its fd 3 (the helpers' protocol).
pub(crate) fn spawn_helper(args: &[&OsStr], sock: &OwnedFd) -> io::Result<std::process::Child> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("warren").args(args).stdin(Stdio::null());
    let raw = sock.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and calls only dup2 and fcntl, which are
    // async-signal-safe; it captures a plain integer.
    unsafe {
        cmd.pre_exec(move || {
            let r = if raw == HELPER_FD {
                libc::fcntl(raw, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, HELPER_FD)
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot start a warren helper process: {e}"),
        )
    })
}

/// The helper side of the protocol: fd 3, if it is open.
pub(crate) fn helper_socket() -> Option<OwnedFd> {
    // SAFETY: F_GETFD only queries whether fd 3 is open.
    if unsafe { libc::fcntl(HELPER_FD, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: fd 3 is open, and in a helper it was handed to us for our sole use by `spawn_helper`.
    Some(unsafe { OwnedFd::from_raw_fd(HELPER_FD) })
}

/// Creates tap `tap` inside the network namespace at `netns` and returns its fd (non-blocking),
/// configured as `cfg` says if given.
pub fn attach(
    netns: &Path,
    userns: Option<&Path>,
    tap: &str,
    cfg: Option<&TapConfig>,
) -> io::Result<OwnedFd> {
    let (ours, theirs) = seqpacket_pair()?;
    let mut args: Vec<std::ffi::OsString> = vec![
        "__attach".into(),
        netns.as_os_str().into(),
        userns.map_or_else(|| "-".into(), |p| p.as_os_str().into()),
        tap.into(),
    ];
    if let Some(c) = cfg {
        args.push(format!("{}/{}", c.addr, c.prefix).into());
        args.push(c.gateway.to_string().into());
        args.push(c.mtu.to_string().into());
    }
    let refs: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let mut child = spawn_helper(&refs, &theirs)?;
    drop(theirs);
    let got = recv_msg(ours.as_fd());
    let _ = child.wait();
    let (msg, fd) = got?;
    match (msg.first(), fd) {
        (Some(b'K'), Some(fd)) => {
            set_nonblocking(&fd)?;
            Ok(fd)
        }
        (Some(b'E'), _) => Err(err(String::from_utf8_lossy(&msg[1..]).into_owned())),
        _ => Err(err(format!(
            "the namespace helper for {} failed without a word",
            netns.display()
        ))),
    }
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if fl < 0 || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
        return Err(os_err("fcntl O_NONBLOCK"));
    }
    Ok(())
}

/// `warren __attach NETNS USERNS|- TAP [ADDR/PREFIX GATEWAY MTU]`, run by [`attach`].
pub fn attach_main(args: &[String]) -> ExitCode {
    let Some(sock) = helper_socket() else {
        eprintln!("warren __attach: internal helper, not for direct use");
        return ExitCode::from(2);
    };
    let r = attach_here(args);
    let sent = match &r {
        Ok(tap) => send_msg(sock.as_fd(), b"K", Some(tap.as_fd())),
        Err(e) => send_msg(sock.as_fd(), format!("E{e}").as_bytes(), None),
    };
    if let Err(e) = sent {
        eprintln!("warren __attach: {e}");
    }
    if r.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Inode and device of a namespace file, to compare namespaces.
fn ns_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    // SAFETY: stat is plain old data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is valid for writes.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(os_err("fstat"));
    }
    Ok((st.st_dev, st.st_ino))
}

fn setns(fd: BorrowedFd<'_>, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: setns on a namespace fd we hold; affects only this (single-threaded) process.
    if unsafe { libc::setns(fd.as_raw_fd(), kind) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Resolves a `--netns` argument: a PID means `/proc/PID/ns/net`.
pub fn netns_path(target: &str) -> PathBuf {
    if !target.is_empty() && target.bytes().all(|b| b.is_ascii_digit()) {
        PathBuf::from(format!("/proc/{target}/ns/net"))
    } else {
        PathBuf::from(target)
    }
}

fn attach_here(args: &[String]) -> io::Result<OwnedFd> {
    let (netns, userns, tap, rest) = match args {
        [n, u, t, rest @ ..] if rest.is_empty() || rest.len() == 3 => (n, u, t, rest),
        _ => return Err(err("internal: bad __attach arguments".into())),
    };
    let net = open_path(Path::new(netns), libc::O_RDONLY)
        .map_err(|e| err(format!("cannot open network namespace {e}")))?;
    // The user namespace owning the network namespace: entering it gives us CAP_NET_ADMIN there.
    let user = if userns == "-" {
        // SAFETY: NS_GET_USERNS on a namespace fd returns a new fd (or fails); no memory is passed.
        let fd = unsafe { libc::ioctl(net.as_raw_fd(), libc::NS_GET_USERNS as _) };
        // EPERM: the owner is an ancestor of our own user namespace; setns(net) alone may still work.
        // SAFETY: a non-negative return is a new descriptor that nothing else owns.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    } else {
        Some(
            open_path(Path::new(userns), libc::O_RDONLY)
                .map_err(|e| err(format!("cannot open user namespace {e}")))?,
        )
    };
    if let Some(user) = &user {
        let own = open_path(Path::new("/proc/self/ns/user"), libc::O_RDONLY)?;
        if ns_id(user.as_fd())? != ns_id(own.as_fd())? {
            setns(user.as_fd(), libc::CLONE_NEWUSER).map_err(|e| {
                err(format!(
                    "cannot enter the user namespace owning {netns}: {e} (run warren as the user who made it, or pass --userns)"
                ))
            })?;
        }
    }
    setns(net.as_fd(), libc::CLONE_NEWNET)
        .map_err(|e| err(format!("cannot enter network namespace {netns}: {e}")))?;
    let fd = open_tap(tap)?;
    if let [addr, gw, mtu] = rest {
        let (a, p) = addr
            .split_once('/')
            .and_then(|(a, p)| Some((a.parse().ok()?, p.parse().ok()?)))
            .ok_or_else(|| err(format!("internal: bad address {addr}")))?;
        let cfg = TapConfig {
            addr: a,
            prefix: p,
            gateway: gw
                .parse()
                .map_err(|_| err(format!("internal: bad gateway {gw}")))?,
            mtu: mtu
                .parse()
                .map_err(|_| err(format!("internal: bad MTU {mtu}")))?,
        };
        configure(tap, &cfg)?;
    }
    Ok(fd)
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) || b.contains(&b'/') {
        return Err(err(format!(
            "bad interface name {name:?} (1..15 bytes, no '/')"
        )));
    }
    for (d, s) in r.ifr_name.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    Ok(r)
}

/// Opens /dev/net/tun and creates (or attaches to) tap `name` in the current network namespace.
fn open_tap(name: &str) -> io::Result<OwnedFd> {
    let fd = open_path(Path::new("/dev/net/tun"), libc::O_RDWR).map_err(|e| {
        err(format!(
            "cannot open {e} (it must be readable and writable by this user: mode 0666 is the usual)"
        ))
    })?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which req is.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req) } < 0 {
        let e = io::Error::last_os_error();
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) => {
                " (no CAP_NET_ADMIN over the namespace: run warren as its owner or pass --userns)"
            }
            Some(libc::EBUSY) => " (a tap of that name is already in use)",
            Some(libc::EINVAL) => " (an interface of that name exists and is not a tap)",
            _ => "",
        };
        return Err(err(format!("cannot create tap {name}: {e}{hint}")));
    }
    Ok(fd)
}

fn sockaddr_in(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes of plain old data; this is how the sockets API
    // passes an IPv4 address in a sockaddr field.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl_ifreq(
    sock: &OwnedFd,
    req: libc::c_ulong,
    r: &mut libc::ifreq,
    what: &str,
) -> io::Result<()> {
    // SAFETY: the SIOC[GS]IF* requests used here read/write one ifreq, which r is.
    if unsafe { libc::ioctl(sock.as_raw_fd(), req as _, r as *mut libc::ifreq) } < 0 {
        return Err(os_err(what));
    }
    Ok(())
}

fn set_up(sock: &OwnedFd, name: &str) -> io::Result<()> {
    let mut r = ifreq(name)?;
    ioctl_ifreq(
        sock,
        libc::SIOCGIFFLAGS,
        &mut r,
        &format!("cannot read the flags of {name}"),
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { r.ifr_ifru.ifru_flags };
    r.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl_ifreq(
        sock,
        libc::SIOCSIFFLAGS,
        &mut r,
        &format!("cannot bring {name} up"),
    )
}

/// Inside the namespace: loopback up; the tap's MTU, queue, address, netmask, up; default route.
pub fn configure(tap: &str, c: &TapConfig) -> io::Result<()> {
    // SAFETY: plain socket creation.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(os_err("socket"));
    }
    // SAFETY: a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    set_up(&sock, "lo")?;
    let mut r = ifreq(tap)?;
    r.ifr_ifru.ifru_mtu = libc::c_int::from(c.mtu);
    ioctl_ifreq(
        &sock,
        libc::SIOCSIFMTU,
        &mut r,
        &format!("cannot set the MTU of {tap} to {}", c.mtu),
    )?;
    let mut r = ifreq(tap)?;
    r.ifr_ifru.ifru_metric = TAP_TXQUEUELEN; // ifr_qlen
    let _ = ioctl_ifreq(&sock, libc::SIOCSIFTXQLEN, &mut r, "txqueuelen");
    let mut r = ifreq(tap)?;
    r.ifr_ifru.ifru_addr = sockaddr_in(c.addr);
    ioctl_ifreq(
        &sock,
        libc::SIOCSIFADDR,
        &mut r,
        &format!("cannot give {tap} address {}", c.addr),
    )?;
    let mask = if c.prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(c.prefix.min(32)))
    };
    let mut r = ifreq(tap)?;
    r.ifr_ifru.ifru_netmask = sockaddr_in(Ipv4Addr::from(mask));
    ioctl_ifreq(
        &sock,
        libc::SIOCSIFNETMASK,
        &mut r,
        &format!("cannot set the netmask of {tap}"),
    )?;
    set_up(&sock, tap)?;
    // SAFETY: rtentry is plain old data; all-zero is valid (null rt_dev: the kernel picks the interface).
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_in(c.gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // SAFETY: SIOCADDRT reads one rtentry, which rt is.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT as _, &mut rt) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(err(format!(
                "cannot add a default route via {}: {e}",
                c.gateway
            )));
        }
    }
    Ok(())
}

/// `pidfd_open(pid)`: readable once the process exits.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(os_err(&format!("pidfd_open({pid})")));
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Something whose readiness means "stop": a pidfd of the namespace's process, or `--exit-fd`.
pub struct ExitWatch {
    fd: AsyncFd<OwnedFd>,
    what: String,
}

impl Server {
    /// Stops the server when `fd` becomes readable (`what` is logged).
    pub fn stop_when_readable(&mut self, fd: OwnedFd, what: String) -> io::Result<()> {
        set_nonblocking(&fd)?;
        let fd = register(fd)?;
        self.add_endpoint(Endpoint::ExitWatch(ExitWatch { fd, what }));
        Ok(())
    }

    pub(crate) fn exit_watch_readable(&mut self, idx: usize, w: &mut ExitWatch) -> Keep {
        let (waker, _) = self.endpoint_waker(idx);
        if !poll_ready(&w.fd, &waker, false) {
            return Keep::Yes;
        }
        log::info!("{}: stopping", w.what);
        self.request_stop();
        Keep::No
    }
}

/// A namespace attached before the event loop starts, waiting to be served.
pub struct Attachment {
    tap: Option<OwnedFd>,
    tap_name: String,
    watch: Vec<(OwnedFd, String)>,
    ready_fd: Option<RawFd>,
    /// `warren run`: told to exec the command once the tap is served.
    go: Option<OwnedFd>,
}

/// Attaches to `--netns`, or (`warren run`) makes the namespaces and starts the command's process.
/// Returns nothing when neither was asked for.
pub fn prepare(
    n: &NetnsOptions,
    cfg: &netstack::config::Config,
    dns_search: &[String],
) -> io::Result<Option<(Attachment, Option<crate::run::Running>)>> {
    let tap = n.tap.clone().unwrap_or_else(|| DEFAULT_TAP.to_string());
    ifreq(&tap).map_err(|e| err(format!("--tap: {e}")))?;
    let mut watch = Vec::new();
    for (fd, opt) in [(n.ready_fd, "--ready-fd"), (n.exit_fd, "--exit-fd")] {
        let Some(fd) = fd else { continue };
        // SAFETY: F_GETFD/F_SETFD only query and set the descriptor's close-on-exec flag.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(err(format!("{opt} {fd}: not an open descriptor")));
        }
        // Not inherited by the helpers, nor by warren run's command.
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    if let Some(fd) = n.exit_fd {
        // SAFETY: the descriptor is open and was handed to warren for this purpose on its command line.
        watch.push((
            unsafe { OwnedFd::from_raw_fd(fd) },
            format!("--exit-fd {fd} closed"),
        ));
    }
    if let Some(command) = &n.command {
        if n.target.is_some() {
            return Err(err(
                "warren run makes its own namespace: --netns does not apply".into(),
            ));
        }
        let tc = TapConfig::for_config(cfg);
        let running = crate::run::start(command, cfg.dns, dns_search)?;
        let pid = running.pid();
        // The command owns stdout: warren's own lines go to stderr (with -v) or nowhere.
        let to = if log::log_enabled!(log::Level::Info) {
            io::stderr().as_fd().try_clone_to_owned()
        } else {
            open_path(Path::new("/dev/null"), libc::O_WRONLY)
        }?;
        // SAFETY: dup2 between descriptors we hold; stdout is only written through the fd number.
        unsafe { libc::dup2(to.as_raw_fd(), libc::STDOUT_FILENO) };
        let fd = attach(
            Path::new(&format!("/proc/{pid}/ns/net")),
            Some(Path::new(&format!("/proc/{pid}/ns/user"))),
            &tap,
            Some(&tc),
        )?;
        watch.push((pidfd_open(pid)?, format!("the command (pid {pid}) exited")));
        let go = running.take_go();
        let a = Attachment {
            tap: Some(fd),
            tap_name: tap,
            watch,
            ready_fd: n.ready_fd,
            go,
        };
        return Ok(Some((a, Some(running))));
    }
    let Some(target) = &n.target else {
        if n.configure || n.userns.is_some() || n.tap.is_some() {
            return Err(err(
                "--configure, --userns and --tap need --netns PID|PATH".into()
            ));
        }
        return Ok(None);
    };
    let path = netns_path(target);
    let tc = n.configure.then(|| TapConfig {
        addr: n.address.unwrap_or_else(|| TapConfig::for_config(cfg).addr),
        ..TapConfig::for_config(cfg)
    });
    // A PID is watched before attaching: if it exits meanwhile, the pidfd is readable at once.
    if let Ok(pid) = target.parse::<libc::pid_t>() {
        watch.push((
            pidfd_open(pid).map_err(|e| err(format!("--netns {target}: {e}")))?,
            format!("the namespace's process {pid} exited"),
        ));
    }
    let fd = attach(&path, n.userns.as_deref(), &tap, tc.as_ref())
        .map_err(|e| err(format!("--netns {target}: {e}")))?;
    if let Some(c) = &tc {
        log::info!(
            "namespace {target}: {tap} {}/{} via {}, MTU {}",
            c.addr,
            c.prefix,
            c.gateway,
            c.mtu
        );
    }
    Ok(Some((
        Attachment {
            tap: Some(fd),
            tap_name: tap,
            watch,
            ready_fd: n.ready_fd,
            go: None,
        },
        None,
    )))
}

impl Attachment {
    /// Serves the tap as a port of `server`, arms the watches, reports readiness.
    pub fn install(&mut self, server: &mut Server) -> io::Result<()> {
        if let Some(fd) = self.tap.take() {
            crate::tap::add_tap(server, fd, &self.tap_name)?;
        }
        for (fd, what) in self.watch.drain(..) {
            server.stop_when_readable(fd, what)?;
        }
        if let Some(fd) = self.ready_fd.take() {
            // SAFETY: write to a descriptor given on the command line for exactly this; 1 valid byte.
            let r = unsafe { libc::write(fd, b"1".as_ptr().cast(), 1) };
            if r < 0 {
                log::warn!("--ready-fd {fd}: {}", io::Error::last_os_error());
            }
            // SAFETY: the descriptor is ours to close once written (slirp4netns does the same).
            unsafe { libc::close(fd) };
        }
        if let Some(go) = self.go.take() {
            send_msg(go.as_fd(), b"G", None)
                .map_err(|e| err(format!("cannot start the command: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_targets() {
        assert_eq!(netns_path("1234"), PathBuf::from("/proc/1234/ns/net"));
        assert_eq!(netns_path("/run/netns/x"), PathBuf::from("/run/netns/x"));
    }

    #[test]
    fn configured_address_follows_the_plan() {
        let mut cfg = netstack::config::Config::default();
        let t = TapConfig::for_config(&cfg);
        assert_eq!(t.addr, Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(
            (t.prefix, t.gateway, t.mtu),
            (24, Ipv4Addr::new(10, 0, 2, 2), 1500)
        );
        cfg.mtu = 65520;
        assert_eq!(TapConfig::for_config(&cfg).mtu, 65520);
    }

    #[test]
    fn interface_names() {
        assert!(ifreq("tap0").is_ok());
        assert!(ifreq("").is_err());
        assert!(ifreq("a-name-too-long-x").is_err());
        assert!(ifreq("a/b").is_err());
    }

    #[test]
    fn fd_passing() {
        let (a, b) = seqpacket_pair().expect("pair");
        let (p, _q) = seqpacket_pair().expect("pair");
        send_msg(a.as_fd(), b"K", Some(p.as_fd())).expect("send");
        let (msg, fd) = recv_msg(b.as_fd()).expect("recv");
        assert_eq!(msg, b"K");
        assert!(fd.is_some());
        drop(a);
        let (msg, fd) = recv_msg(b.as_fd()).expect("eof");
        assert!(msg.is_empty() && fd.is_none());
    }
}
