//! Thin, safe wrappers over the few system calls the helper needs.
//!
//! Every `unsafe` block is here, each with a SAFETY comment.  Nothing in this module decides
//! policy; it only turns syscalls into `io::Result`s.

use crate::ifname::{IfName, IFNAMSIZ};
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use sys_common::{IfReq, IfReqIoctl};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

// ---------------------------------------------------------------------------------------------
// Process state

/// Remove every environment variable.
pub fn clear_env() -> io::Result<()> {
    // SAFETY: clearenv() only touches the process environment; the helper is single-threaded
    // at this point (called first thing in main), so no other thread can be reading it.
    cvt(unsafe { libc::clearenv() }).map(|_| ())
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: nothing we could ever exec gains privileges.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments, no pointers.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) }).map(|_| ())
}

/// `prctl(PR_SET_DUMPABLE, 0)`: the user may not ptrace us or read our memory.
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments, no pointers.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) }).map(|_| ())
}

/// `prctl(PR_SET_KEEPCAPS, on)`.
pub fn set_keepcaps(on: bool) -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments, no pointers.
    cvt(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0) }).map(|_| ())
}

/// The architecture a seccomp filter checks before looking at system call numbers.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// Installs a seccomp filter under which only the system calls in `allowed` run; any other
/// (and any call through another architecture's entry point, e.g. x32 or i386) kills the
/// process. Needs `NO_NEW_PRIVS` (set first thing). At most 254 numbers.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn seccomp_allow_only(allowed: &[libc::c_long]) -> io::Result<()> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    // struct seccomp_data { int nr; __u32 arch; ... }
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let n = allowed.len();
    if n > 254 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let op = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    let mut prog = vec![
        op(LD_W_ABS, ARCH, 0, 0),
        op(JEQ_K, AUDIT_ARCH, 1, 0),
        op(RET_K, libc::SECCOMP_RET_KILL_PROCESS, 0, 0),
        op(LD_W_ABS, NR, 0, 0),
    ];
    for (i, &nr) in allowed.iter().enumerate() {
        // On a match, skip the remaining comparisons and the kill: land on the allow.
        prog.push(op(JEQ_K, nr as u32, (n - i) as u8, 0));
    }
    prog.push(op(RET_K, libc::SECCOMP_RET_KILL_PROCESS, 0, 0));
    prog.push(op(RET_K, libc::SECCOMP_RET_ALLOW, 0, 0));
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: fprog points at `prog`, a valid array of `len` BPF instructions that outlives the
    // call (the kernel copies it); PR_SET_SECCOMP reads nothing else.
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    })
    .map(|_| ())
}

/// Elsewhere there is no filter (the helper is only built and tested on x86-64 and aarch64).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn seccomp_allow_only(_allowed: &[libc::c_long]) -> io::Result<()> {
    Ok(())
}

/// True when the kernel flagged this exec as privilege-gaining (setuid/setgid/file caps).
pub fn at_secure() -> bool {
    // SAFETY: getauxval reads the auxiliary vector; AT_SECURE is always present on Linux.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// (real uid, effective uid, real gid).
pub fn ids() -> (u32, u32, u32) {
    // SAFETY: these getters cannot fail and take no arguments.
    unsafe { (libc::getuid(), libc::geteuid(), libc::getgid()) }
}

pub fn setresuid(uid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::setresuid(uid, uid, uid) }).map(|_| ())
}

pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::setresgid(gid, gid, gid) }).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Capabilities

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SETPCAP: u32 = 8;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Capability sets as 64-bit masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

impl Caps {
    pub fn only(cap: u32) -> Caps {
        Caps {
            effective: 1 << cap,
            permitted: 1 << cap,
            inheritable: 0,
        }
    }
}

pub fn capget() -> io::Result<Caps> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array as required by _LINUX_CAPABILITY_VERSION_3;
    // both live for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(Caps {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

pub fn capset(c: Caps) -> io::Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(c.effective);
    let (p0, p1) = split(c.permitted);
    let (i0, i1) = split(c.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: header and a two-element data array as required by _LINUX_CAPABILITY_VERSION_3;
    // the kernel only reads them during the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drop every capability from the bounding set except `keep` (needs CAP_SETPCAP).
pub fn drop_bounding_set_except(keep: u32) -> io::Result<()> {
    for cap in 0..64u32 {
        if cap == keep {
            continue;
        }
        // SAFETY: integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break; // past the kernel's last capability
            }
            return Err(e);
        }
    }
    Ok(())
}

pub fn clear_ambient() -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// The QEMU socket

/// What `--fd` refers to.
#[derive(Debug, PartialEq, Eq)]
pub enum FdKind {
    NotOpen,
    NotSocket,
    NotUnix(i32),
    NotStream(i32),
    UnixStream,
}

pub fn fd_kind(fd: RawFd) -> FdKind {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is a valid, writable stat buffer; fstat on a bad fd just fails.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } < 0 {
        return FdKind::NotOpen;
    }
    // SAFETY: fstat succeeded, so it filled `st` (and it was zeroed before anyway).
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return FdKind::NotSocket;
    }
    let domain = match getsockopt_int(fd, libc::SO_DOMAIN) {
        Ok(v) => v,
        Err(_) => return FdKind::NotSocket,
    };
    if domain != libc::AF_UNIX {
        return FdKind::NotUnix(domain);
    }
    match getsockopt_int(fd, libc::SO_TYPE) {
        Ok(libc::SOCK_STREAM) => FdKind::UnixStream,
        Ok(t) => FdKind::NotStream(t),
        Err(_) => FdKind::NotSocket,
    }
}

fn getsockopt_int(fd: RawFd, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes and `len` states the size of `v`.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// Send one byte (0x00) with `fd` attached as SCM_RIGHTS, as qemu-bridge-helper does.
pub fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    // SAFETY: `sock` and `fd` are open descriptors for the duration of this call (the helper's
    // --fd, checked by fd_kind, and the tun fd it holds); the borrows end with the call.
    let (sock, fd) = unsafe { (BorrowedFd::borrow_raw(sock), BorrowedFd::borrow_raw(fd)) };
    match sys_common::send_fd(sock, &[0u8], Some(fd))? {
        1 => Ok(()),
        _ => Err(io::Error::other("short write")),
    }
}

/// Receive what [`send_fd`] sends: (bytes received, the fd if one came).  Used by tests.
pub fn recv_fd(sock: RawFd) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut byte = [0u8; 16];
    // SAFETY: the caller passes a descriptor it holds open for the duration of this call.
    let sock = unsafe { BorrowedFd::borrow_raw(sock) };
    sys_common::recv_fd(sock, &mut byte)
}

/// `getppid()`. (The helper itself never calls it: its seccomp filter's test uses it as the call
/// outside the list.)
pub fn parent_pid() -> i32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() }
}

/// `flock(fd, LOCK_EX)`: waits for an exclusive lock on `f`.  Used by tests.
pub fn lock_exclusive(f: &File) -> io::Result<()> {
    // SAFETY: flock on a descriptor `f` holds open for the call's duration.
    cvt(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }).map(|_| ())
}

/// `socketpair(AF_UNIX, SOCK_STREAM)`; the second end is inheritable (no CLOEXEC).  For tests.
pub fn socketpair_for_child() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair succeeded, both fds are new and owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on an fd we own.
    cvt(unsafe { libc::fcntl(a.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok((a, b))
}

// ---------------------------------------------------------------------------------------------
// Netlink: list links

/// One network interface as rtnetlink reports it.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: i32,
    pub name: Vec<u8>,
    pub mtu: Option<u32>,
    /// IFLA_INFO_KIND, e.g. "bridge", "tun", "dummy".
    pub kind: Option<Vec<u8>>,
    /// IFLA_TUN_OWNER for tun/tap devices that have an owner.
    pub tun_owner: Option<u32>,
    /// IFLA_MASTER.
    pub master: Option<i32>,
}

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_TUN_OWNER: u16 = 1;

fn rd_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Iterate over netlink attributes: (type without flags, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(rd_u16(b, 0)?);
        let ty = rd_u16(b, 2)? & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
        Some((ty, payload))
    })
}

fn c_str(payload: &[u8]) -> Vec<u8> {
    payload.iter().take_while(|&&b| b != 0).copied().collect()
}

/// Parse one RTM_NEWLINK message body (after the nlmsghdr).
pub fn parse_link(body: &[u8]) -> Option<Link> {
    let index = i32::from_ne_bytes(body.get(4..8)?.try_into().ok()?);
    let mut link = Link {
        index,
        name: Vec::new(),
        mtu: None,
        kind: None,
        tun_owner: None,
        master: None,
    };
    for (ty, p) in attrs(body.get(IFINFOMSG..)?) {
        match ty {
            IFLA_IFNAME => link.name = c_str(p),
            IFLA_MTU => link.mtu = rd_u32(p, 0),
            IFLA_MASTER => link.master = rd_u32(p, 0).map(|v| v as i32),
            IFLA_LINKINFO => {
                for (ity, ip) in attrs(p) {
                    match ity {
                        IFLA_INFO_KIND => link.kind = Some(c_str(ip)),
                        IFLA_INFO_DATA => {
                            for (dty, dp) in attrs(ip) {
                                if dty == IFLA_TUN_OWNER {
                                    link.tun_owner = rd_u32(dp, 0);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

/// All links of the current network namespace (RTM_GETLINK dump).
pub fn dump_links() -> io::Result<Vec<Link>> {
    // SAFETY: plain socket() call; the result is checked before use.
    let raw = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: `raw` is a new fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };

    let seq: u32 = 1;
    let mut req = Vec::with_capacity(NLMSG_HDR + IFINFOMSG);
    req.extend_from_slice(&((NLMSG_HDR + IFINFOMSG) as u32).to_ne_bytes());
    req.extend_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[0u8; IFINFOMSG]); // AF_UNSPEC, all links
                                              // SAFETY: an all-zero sockaddr_nl is the kernel address once nl_family is set.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `req` and `kernel` are valid for reads of the given lengths.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut links = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: an all-zero sockaddr_nl is a valid value to be overwritten.
        let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut fromlen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `buf` is valid for writes of buf.len() bytes; `from`/`fromlen` describe a
        // writable sockaddr_nl.
        let n = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_nl).cast(),
                &mut fromlen,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if from.nl_pid != 0 {
            continue; // not from the kernel: ignore
        }
        let mut msgs = &buf[..n as usize];
        if msgs.is_empty() {
            return Err(io::Error::other("netlink closed during link dump"));
        }
        while msgs.len() >= NLMSG_HDR {
            let len = rd_u32(msgs, 0).unwrap_or(0) as usize;
            let ty = rd_u16(msgs, 4).unwrap_or(0);
            let mseq = rd_u32(msgs, 8).unwrap_or(0);
            if len < NLMSG_HDR || len > msgs.len() {
                return Err(io::Error::other("malformed netlink message"));
            }
            let body = &msgs[NLMSG_HDR..len];
            if mseq == seq {
                match i32::from(ty) {
                    libc::NLMSG_DONE => return Ok(links),
                    libc::NLMSG_ERROR => {
                        let err = rd_u32(body, 0).map(|v| v as i32).unwrap_or(-libc::EIO);
                        if err != 0 {
                            return Err(io::Error::from_raw_os_error(-err));
                        }
                    }
                    _ if ty == libc::RTM_NEWLINK => {
                        if let Some(l) = parse_link(body) {
                            links.push(l);
                        }
                    }
                    _ => {}
                }
            }
            msgs = msgs.get((len + 3) & !3..).unwrap_or(&[]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tun/tap

const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNGETFEATURES: libc::c_ulong = 0x8004_54cf;
pub const IFF_TAP: u16 = 0x0002;
pub const IFF_NO_PI: u16 = 0x1000;
pub const IFF_VNET_HDR: u16 = 0x4000;

fn ifreq(name: &IfName) -> IfReq {
    IfReq::raw(name.to_ifr_name())
}

fn ioctl_ifreq(fd: RawFd, req: IfReqIoctl, ifr: &mut IfReq) -> io::Result<()> {
    // SAFETY: every caller passes a descriptor it holds open for the duration of this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    sys_common::ioctl_ifreq(fd, req, ifr)
}

/// Open `/dev/net/tun` (close-on-exec).
pub fn open_tun() -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open("/dev/net/tun")
}

/// TUNGETFEATURES: the IFF_* flags this kernel's tun driver supports.
pub fn tun_features(tun: &File) -> io::Result<u32> {
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one unsigned int to the pointer.
    cvt(unsafe { libc::ioctl(tun.as_raw_fd(), TUNGETFEATURES as _, &mut features) })?;
    Ok(features)
}

/// TUNSETIFF with the name template `tap%d`; returns the name the kernel chose.
pub fn tun_create(tun: &File, flags: u16) -> io::Result<IfName> {
    let mut tmpl = [0u8; IFNAMSIZ];
    tmpl[..5].copy_from_slice(b"tap%d");
    let mut ifr = IfReq::raw(tmpl);
    ifr.set_u16(flags);
    ioctl_ifreq(tun.as_raw_fd(), IfReqIoctl::TunSetIff, &mut ifr)?;
    IfName::new(&ifr.name()).map_err(|e| io::Error::other(e.to_string()))
}

/// TUNSETOWNER.
pub fn tun_set_owner(tun: &File, uid: u32) -> io::Result<()> {
    // SAFETY: TUNSETOWNER takes the uid as the integer argument itself, not a pointer.
    cvt(unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETOWNER as _, libc::c_ulong::from(uid)) })
        .map(|_| ())
}

/// TUNGETIFF: (name, flags) of the device attached to `fd`.  Used by tests.
pub fn tun_get_iff(fd: RawFd) -> io::Result<(Vec<u8>, u16)> {
    let mut ifr = IfReq::raw([0; IFNAMSIZ]);
    ioctl_ifreq(fd, IfReqIoctl::TunGetIff, &mut ifr)?;
    Ok((ifr.name(), ifr.u16()))
}

/// An AF_INET datagram socket for interface ioctls.
pub struct Ctl(OwnedFd);

impl Ctl {
    pub fn new() -> io::Result<Ctl> {
        // SAFETY: plain socket() call; the result is checked before use.
        let raw =
            cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `raw` is a new fd that nothing else owns.
        Ok(Ctl(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    pub fn mtu(&self, name: &IfName) -> io::Result<i32> {
        let mut ifr = ifreq(name);
        ioctl_ifreq(self.0.as_raw_fd(), IfReqIoctl::GetMtu, &mut ifr)?;
        Ok(ifr.i32())
    }

    pub fn set_mtu(&self, name: &IfName, mtu: i32) -> io::Result<()> {
        let mut ifr = ifreq(name);
        ifr.set_i32(mtu);
        ioctl_ifreq(self.0.as_raw_fd(), IfReqIoctl::SetMtu, &mut ifr)
    }

    /// Read the MAC, let `f` change it, write it back.
    pub fn edit_mac(&self, name: &IfName, f: impl FnOnce(&mut [u8; 6])) -> io::Result<[u8; 6]> {
        let mut ifr = ifreq(name);
        ioctl_ifreq(self.0.as_raw_fd(), IfReqIoctl::GetHwAddr, &mut ifr)?;
        // struct sockaddr: u16 family, then sa_data.
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&ifr.data()[2..8]);
        f(&mut mac);
        ifr.data_mut()[2..8].copy_from_slice(&mac);
        ioctl_ifreq(self.0.as_raw_fd(), IfReqIoctl::SetHwAddr, &mut ifr)?;
        Ok(mac)
    }

    pub fn ifindex(&self, name: &IfName) -> io::Result<i32> {
        let mut ifr = ifreq(name);
        ioctl_ifreq(self.0.as_raw_fd(), IfReqIoctl::GetIndex, &mut ifr)?;
        Ok(ifr.i32())
    }

    pub fn bridge_add(&self, bridge: &IfName, ifindex: i32) -> io::Result<()> {
        let mut ifr = ifreq(bridge);
        ifr.set_i32(ifindex);
        ioctl_ifreq(self.0.as_raw_fd(), IfReqIoctl::BridgeAddIf, &mut ifr)
    }

    pub fn set_up(&self, name: &IfName) -> io::Result<()> {
        let mut ifr = ifreq(name);
        ioctl_ifreq(self.0.as_raw_fd(), IfReqIoctl::GetFlags, &mut ifr)?;
        let flags = ifr.u16() | libc::IFF_UP as u16;
        ifr.set_u16(flags);
        ioctl_ifreq(self.0.as_raw_fd(), IfReqIoctl::SetFlags, &mut ifr)
    }
}

// ---------------------------------------------------------------------------------------------
// syslog

static IDENT: &CStr = c"warren-bridge-helper";

pub fn openlog() {
    // SAFETY: IDENT is a 'static NUL-terminated string, as openlog requires (it keeps the
    // pointer).
    unsafe { libc::openlog(IDENT.as_ptr(), libc::LOG_PID, libc::LOG_AUTHPRIV) }
}

/// Log one line at `priority` (e.g. `libc::LOG_NOTICE`).  Non-printable bytes are escaped,
/// so there is never an interior NUL.
pub fn syslog(priority: libc::c_int, msg: &str) {
    let clean: Vec<u8> = msg
        .bytes()
        .flat_map(|b| {
            if (0x20..0x7f).contains(&b) {
                vec![b]
            } else {
                format!("\\x{b:02x}").into_bytes()
            }
        })
        .collect();
    let Ok(c) = std::ffi::CString::new(clean) else {
        return;
    };
    // SAFETY: fixed "%s" format with one NUL-terminated string argument.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netlink_dump_sees_loopback() {
        let links = dump_links().expect("RTM_GETLINK dump");
        assert!(
            links.iter().any(|l| l.name == b"lo" && l.index > 0),
            "{links:?}"
        );
    }

    #[test]
    fn attrs_stop_on_garbage() {
        assert_eq!(attrs(&[0xff, 0xff, 1, 0, 9]).count(), 0);
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0);
        assert!(parse_link(&[1, 2, 3]).is_none());
    }

    #[test]
    fn fd_kind_classifies() {
        let (a, _b) = socketpair_for_child().expect("socketpair");
        assert_eq!(fd_kind(a.as_raw_fd()), FdKind::UnixStream);
        let f = File::open("/dev/null").expect("open /dev/null");
        assert_eq!(fd_kind(f.as_raw_fd()), FdKind::NotSocket);
        assert_eq!(fd_kind(999_999), FdKind::NotOpen);
    }
}
