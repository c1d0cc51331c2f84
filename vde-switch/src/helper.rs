//! warren's helper processes (`/proc/self/exe __attach …`, `warren run`'s child, the sandbox's exec
//! helper): how they are started with one end of a `SOCK_SEQPACKET` pair as fd 3, and the messages
//! (with an fd attached) that go over it. Shared by `netns.rs`, `run.rs` and `sandbox.rs`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The helper's end of the socket pair.
const HELPER_FD: RawFd = 3;

fn err(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// A connected `SOCK_SEQPACKET` pair (close-on-exec).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| err(format!("socketpair: {}", io::Error::from(e))))
}

/// Sends one message, with `fd` attached (SCM_RIGHTS) if given.
pub fn send_msg(sock: BorrowedFd<'_>, data: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    sys_common::send_fd(sock, data, fd)
        .map(|_| ())
        .map_err(|e| io::Error::new(e.kind(), format!("sendmsg: {e}")))
}

/// Receives one message (blocking) and the fd attached to it, if any. An empty message means EOF.
pub fn recv_msg(sock: BorrowedFd<'_>) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut data = vec![0u8; 4096];
    let (n, fd) = sys_common::recv_fd(sock, &mut data)
        .map_err(|e| io::Error::new(e.kind(), format!("recvmsg: {e}")))?;
    data.truncate(n);
    Ok((data, fd))
}

/// Runs `/proc/self/exe ARGS` with `sock` as its fd 3 (the helpers' protocol).
pub fn spawn_helper(args: &[&OsStr], sock: &OwnedFd) -> io::Result<std::process::Child> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("warren").args(args).stdin(Stdio::null());
    crate::sys::child_fd(&mut cmd, sock.as_fd(), HELPER_FD);
    cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot start a warren helper process: {e}"),
        )
    })
}

/// The helper side of the protocol: fd 3, if it is open.
pub fn helper_socket() -> Option<OwnedFd> {
    crate::sys::claim_inherited_fd(HELPER_FD)
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    fcntl_getfl(fd)
        .and_then(|fl| fcntl_setfl(fd, fl | OFlags::NONBLOCK))
        .map_err(|e| err(format!("fcntl O_NONBLOCK: {}", io::Error::from(e))))
}
