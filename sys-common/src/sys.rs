//! Every `unsafe` block of the crate, each with a SAFETY comment.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `IFNAMSIZ` including the terminating NUL.
pub const IFNAMSIZ: usize = 16;

/// Sends `data` as one message with `fd` attached (SCM_RIGHTS) if given; retries on EINTR.
/// Returns the bytes sent.
pub fn send_fd(sock: BorrowedFd<'_>, data: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // u64 storage keeps the control buffer aligned for cmsghdr; room for one header and one int.
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain old data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        if space > std::mem::size_of_val(&cbuf) {
            return Err(io::Error::other("control buffer too small"));
        }
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` writable, aligned bytes, so CMSG_FIRSTHDR returns a
        // valid header pointer inside cbuf (checked non-null) and CMSG_DATA has room for one int.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            if c.is_null() {
                return Err(io::Error::other("no room for the control message"));
            }
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: msg and everything it points to (iov, data, cbuf) outlive the call; the kernel only
        // reads through them for sendmsg.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one message into `buf` (blocking unless the socket is not) and the first descriptor
/// attached to it, if any (close-on-exec; any further ones are closed). Retries on EINTR.
/// `(0, None)` on a stream socket means EOF.
pub fn recv_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 16];
    // SAFETY: msghdr is plain old data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    let n = loop {
        // SAFETY: every buffer msg points to is valid and writable for the stated lengths.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut got = None;
    // SAFETY: the kernel filled msg_control/msg_controllen with well-formed control messages; the
    // CMSG_* macros walk within them, and an SCM_RIGHTS payload holds the ints (descriptors, new and
    // ours) that its cmsg_len says.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let payload = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..payload / std::mem::size_of::<RawFd>() {
                    let owned = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                    // The first becomes ours; any others are closed when dropped.
                    if got.is_none() {
                        got = Some(owned);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, got))
}

/// `struct ifreq`: a 16-byte name followed by a 24-byte union, kept as bytes (no union reads).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct IfReq {
    name: [u8; IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    /// An ifreq for a name the kernel accepts in length and bytes (1..=15 bytes, no NUL, no `/`);
    /// further rules are the caller's.
    pub fn with_name(name: &[u8]) -> Option<IfReq> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains(&0) || name.contains(&b'/') {
            return None;
        }
        let mut n = [0u8; IFNAMSIZ];
        n[..name.len()].copy_from_slice(name);
        Some(IfReq::raw(n))
    }
    /// An ifreq with exactly these name bytes (e.g. a `tap%d` template, or all zero).
    pub fn raw(name: [u8; IFNAMSIZ]) -> IfReq {
        IfReq {
            name,
            data: [0; 24],
        }
    }
    /// The name, up to its NUL.
    pub fn name(&self) -> Vec<u8> {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        self.name[..end].to_vec()
    }
    /// The union's bytes.
    pub fn data(&self) -> &[u8; 24] {
        &self.data
    }
    /// The union's bytes, writable.
    pub fn data_mut(&mut self) -> &mut [u8; 24] {
        &mut self.data
    }
    /// The union as an int (`ifr_mtu`, `ifr_ifindex`, `ifr_qlen`).
    pub fn i32(&self) -> i32 {
        i32::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }
    /// Sets the union as an int.
    pub fn set_i32(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }
    /// The union as a short (`ifr_flags`).
    pub fn u16(&self) -> u16 {
        u16::from_ne_bytes([self.data[0], self.data[1]])
    }
    /// Sets the union as a short.
    pub fn set_u16(&mut self, v: u16) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }
    /// Sets the union as a `sockaddr_in` with address `a` (`ifr_addr`, `ifr_netmask`).
    pub fn set_ipv4(&mut self, a: Ipv4Addr) {
        self.data = [0; 24];
        self.data[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        self.data[4..8].copy_from_slice(&a.octets());
    }
}

/// The ioctl requests that read and/or write exactly one `struct ifreq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfReqIoctl {
    /// SIOCGIFFLAGS
    GetFlags,
    /// SIOCSIFFLAGS
    SetFlags,
    /// SIOCGIFMTU
    GetMtu,
    /// SIOCSIFMTU
    SetMtu,
    /// SIOCSIFTXQLEN
    SetTxQueueLen,
    /// SIOCSIFADDR
    SetAddr,
    /// SIOCSIFNETMASK
    SetNetmask,
    /// SIOCGIFINDEX
    GetIndex,
    /// SIOCGIFHWADDR
    GetHwAddr,
    /// SIOCSIFHWADDR
    SetHwAddr,
    /// SIOCBRADDIF (add the interface whose index is in the union to the bridge named)
    BridgeAddIf,
    /// TUNSETIFF (on a /dev/net/tun descriptor)
    TunSetIff,
    /// TUNGETIFF (on a tun/tap descriptor)
    TunGetIff,
}

impl IfReqIoctl {
    fn request(self) -> libc::c_ulong {
        match self {
            IfReqIoctl::GetFlags => libc::SIOCGIFFLAGS,
            IfReqIoctl::SetFlags => libc::SIOCSIFFLAGS,
            IfReqIoctl::GetMtu => libc::SIOCGIFMTU,
            IfReqIoctl::SetMtu => libc::SIOCSIFMTU,
            IfReqIoctl::SetTxQueueLen => libc::SIOCSIFTXQLEN,
            IfReqIoctl::SetAddr => libc::SIOCSIFADDR,
            IfReqIoctl::SetNetmask => libc::SIOCSIFNETMASK,
            IfReqIoctl::GetIndex => libc::SIOCGIFINDEX,
            IfReqIoctl::GetHwAddr => libc::SIOCGIFHWADDR,
            IfReqIoctl::SetHwAddr => libc::SIOCSIFHWADDR,
            IfReqIoctl::BridgeAddIf => 0x89a2,
            IfReqIoctl::TunSetIff => 0x4004_54ca,
            IfReqIoctl::TunGetIff => 0x8004_54d2,
        }
    }
}

/// One `ioctl(fd, req, &mut ifreq)`.
pub fn ioctl_ifreq(fd: BorrowedFd<'_>, req: IfReqIoctl, r: &mut IfReq) -> io::Result<()> {
    // SAFETY: `r` is a properly sized (40 bytes) and aligned struct ifreq, valid for reads and writes;
    // every request IfReqIoctl names reads and/or writes one struct ifreq and nothing else.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req.request() as _, r as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ETHTOOL_STXCSUM`: transmit checksum offload on or off.
pub const ETHTOOL_STXCSUM: u32 = 0x17;

/// `ioctl(fd, SIOCETHTOOL)` with a `struct ethtool_value { cmd, data }` (the `ETHTOOL_S*` commands
/// that take one u32, e.g. [`ETHTOOL_STXCSUM`]) for the interface `name`, through any socket `fd`
/// (what `ethtool -K NAME tx off` does). Tests use it on veths, whose partial checksums a userspace
/// VXLAN endpoint would otherwise receive unfilled.
pub fn ethtool_set_value(fd: BorrowedFd<'_>, name: &[u8], cmd: u32, value: u32) -> io::Result<()> {
    let mut r =
        IfReq::with_name(name).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut v: [u32; 2] = [cmd, value];
    let ptr = std::ptr::addr_of_mut!(v) as usize;
    r.data[..std::mem::size_of::<usize>()].copy_from_slice(&ptr.to_ne_bytes());
    // SAFETY: `r` is a valid, aligned struct ifreq whose ifr_data is a pointer to `v`, a live
    // struct ethtool_value (two u32) the kernel reads and may write during the call only.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL as _, &mut r as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
