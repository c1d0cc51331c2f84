//! Every `unsafe` block of `netstack`, each with a `// SAFETY:` comment, behind safe functions: what
//! `rustix`, `socket2` and std do not wrap (tokio fd registration, `SO_PEEK_OFF`). The socket calls
//! themselves (`send`, `sendmsg`, `recv`, `recvmsg` with `MSG_PEEK`, `recvfrom`) go through `rustix`.

use socket2::Socket;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use tokio::io::unix::AsyncFd;

/// Registers a socket with the tokio reactor.
pub fn register(s: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: a socket2::Socket owns its fd; it stays open and refers to the same socket until the
    // Socket is dropped, which happens only when the AsyncFd that owns it is dropped.
    unsafe { AsyncFd::register(s) }.map_err(|e| io::Error::other(e.to_string()))
}

/// Sets SO_PEEK_OFF: peeks then start `off` bytes into the receive queue and advance it.
/// (Neither rustix, socket2 nor nix wraps this option.)
pub fn set_peek_off(fd: BorrowedFd<'_>, off: libc::c_int) -> io::Result<()> {
    // SAFETY: the fd is a valid socket for the borrow's duration; the option value is a c_int of the
    // size we pass, read by the kernel only during the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&off as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
