//! Stops the server when an fd becomes readable: the namespace's process exited (a pidfd), the
//! `--exit-fd` closed, the drop-ins' namespace file went away (`netns.rs`, `dropin.rs`).

use super::{Context, FrontEnd, Host};
use crate::reactor::{poll_ready, register, Keep};
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;

/// Something whose readiness means "stop".
pub struct ExitWatch {
    fd: AsyncFd<OwnedFd>,
    what: String,
}

/// Stops the server when `fd` becomes readable (`what` is logged).
pub fn stop_when_readable(h: &mut Host<'_>, fd: OwnedFd, what: String) -> io::Result<()> {
    crate::helper::set_nonblocking(&fd)?;
    let fd = register(fd)?;
    h.add_front_end(Box::new(ExitWatch { fd, what }));
    Ok(())
}

impl FrontEnd for ExitWatch {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        let (waker, _) = cx.waker();
        if !poll_ready(&self.fd, &waker, false) {
            return Keep::Yes;
        }
        log::info!("{}: stopping", self.what);
        cx.stopper().stop();
        Keep::No
    }
}
