//! Every `unsafe` block of the switch and the `warren` binary (the seccomp/Landlock calls apart, in
//! `sandbox/sys.rs`), each with a `// SAFETY:` comment, behind safe functions. What std, `rustix` and
//! `socket2` wrap safely is called through them at the call sites instead; what is here is what they
//! do not cover: tokio fd registration, a `pre_exec` closure, adopting descriptors inherited by
//! number, a `MaybeUninit` view for socket2's `recvfrom`, and the ioctls and libc calls without a safe
//! wrapper (`NS_GET_USERNS`, `SIOCADDRT`, `unshare`, `mount`, `getgrnam_r`). The fd passing and the
//! `ifreq` ioctls live in the `sys-common` crate, shared with the setuid bridge helper.

use socket2::{SockAddr, SockRef};
use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use tokio::io::unix::AsyncFd;

/// Registers an fd with the tokio reactor.
pub fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd owns its descriptor; it stays open and refers to the same file description until
    // the OwnedFd is dropped, which happens only when the AsyncFd that owns it is dropped.
    unsafe { AsyncFd::register(fd) }.map_err(|e| io::Error::other(e.to_string()))
}

/// Makes `cmd`'s child find `sock` as descriptor `target` (and nothing else changes): a `pre_exec`
/// closure doing `dup2` (or clearing close-on-exec when it is already there).
pub fn child_fd(cmd: &mut Command, sock: BorrowedFd<'_>, target: RawFd) {
    let raw = sock.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and calls only dup2 and fcntl, which are
    // async-signal-safe; it captures two plain integers (the caller keeps `sock` open until spawn).
    unsafe {
        cmd.pre_exec(move || {
            let r = if raw == target {
                libc::fcntl(raw, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, target)
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Takes ownership of descriptor `fd`, inherited by number (a helper's fd 3, `--exit-fd`,
/// `--ready-fd`), if it is open; sets close-on-exec on it.
///
/// Each such number is handed to warren for exactly one purpose and claimed once per process (the
/// callers guarantee it: a helper claims fd 3 once, and the options are claimed once at start-up), so
/// nothing else in the process owns or closes it.
pub fn claim_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only asks whether `fd` is open; no memory is passed.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: `fd` is open and, as documented above, nothing else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC);
    Some(owned)
}

/// One `recvfrom` with `flags` into an initialised buffer (socket2 takes `MaybeUninit` bytes).
/// With `MSG_TRUNC` the length returned is the datagram's, which may exceed `buf`.
pub fn recv_from_with_flags(
    s: SockRef<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, SockAddr)> {
    // SAFETY: u8 and MaybeUninit<u8> have the same layout, and recvfrom only writes initialised bytes
    // into the buffer, so it stays a valid [u8].
    let buf = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    s.recv_from_with_flags(buf, flags)
}

/// `ioctl(NS_GET_USERNS)`: the user namespace owning namespace `ns`.
pub fn ns_get_userns(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: NS_GET_USERNS on a namespace fd returns a new fd (or fails); no memory is passed.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_USERNS as _) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative return is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// `SIOCADDRT`: a default route via `gateway` (the kernel picks the interface).
pub fn add_default_route(sock: BorrowedFd<'_>, gateway: Ipv4Addr) -> io::Result<()> {
    // SAFETY: rtentry is plain old data; all-zero is valid (null rt_dev: the kernel picks the interface).
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_in(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // SAFETY: SIOCADDRT reads one rtentry, which rt is.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT as _, &mut rt) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The index of interface `name` (`if_nametoindex`).
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::other("interface name contains NUL"))?;
    // SAFETY: c is a NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}

/// `SIOCSIFADDR` on an IPv6 socket: adds `addr/prefix` to interface `ifindex`.
pub fn add_ipv6_address(
    sock: BorrowedFd<'_>,
    ifindex: u32,
    addr: std::net::Ipv6Addr,
    prefix: u8,
) -> io::Result<()> {
    let mut r = libc::in6_ifreq {
        ifr6_addr: libc::in6_addr {
            s6_addr: addr.octets(),
        },
        ifr6_prefixlen: u32::from(prefix),
        ifr6_ifindex: ifindex as libc::c_int,
    };
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads one in6_ifreq, which r is.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR as _, &mut r) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's `struct in6_rtmsg` (linux/ipv6_route.h; libc's has private fields).
#[repr(C)]
struct In6Rtmsg {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    rtype: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

/// `SIOCADDRT` on an IPv6 socket: a default route (`::/0`) via `gateway` on interface `ifindex`,
/// metric 1 (ahead of the router advertisement's, 1024).
pub fn add_ipv6_default_route(
    sock: BorrowedFd<'_>,
    ifindex: u32,
    gateway: std::net::Ipv6Addr,
) -> io::Result<()> {
    let zero = libc::in6_addr { s6_addr: [0; 16] };
    let mut rt = In6Rtmsg {
        dst: zero,
        src: zero,
        gateway: libc::in6_addr {
            s6_addr: gateway.octets(),
        },
        rtype: 0,
        dst_len: 0,
        src_len: 0,
        metric: 1,
        info: 0,
        flags: u32::from(libc::RTF_UP | libc::RTF_GATEWAY),
        ifindex: ifindex as libc::c_int,
    };
    // SAFETY: SIOCADDRT on an AF_INET6 socket reads one in6_rtmsg, which rt is (same layout).
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT as _, &mut rt) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS)`. Call it only while the process is
/// single-threaded (warren run's child, a fresh exec): then no other thread can observe the change.
pub fn unshare_user_net_mount() -> io::Result<()> {
    // SAFETY: unshare with flags only; CLONE_FILES is not among them, so no descriptor table is split;
    // the caller is single-threaded as documented.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWNS) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mount(src, target, NULL, flags, NULL)` (bind mounts and propagation changes).
pub fn mount(src: Option<&CString>, target: &CString, flags: libc::c_ulong) -> io::Result<()> {
    // SAFETY: all pointers are NUL-terminated strings (or null, which mount accepts for source, type and
    // data with these flags) that outlive the call.
    let r = unsafe {
        libc::mount(
            src.map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getgrnam_r`: the gid of group `name`, or None when there is no such group.
pub fn group_gid(name: &CString) -> Option<u32> {
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: an all-zero `group` is a valid value for getgrnam_r to fill.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call's duration; buf's length is passed.
    let r = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    (r == 0 && !out.is_null()).then_some(grp.gr_gid)
}

/// `getsockopt(SO_PEERCRED)`: the peer's pid, uid and gid. (rustix's `socket_peercred` types the pid
/// as non-zero, but the kernel reports 0 for a peer outside our pid namespace.)
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred is valid for writes of len bytes; fd is an open socket.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred)
}
