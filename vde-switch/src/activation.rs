//! Socket activation: systemd's `sd_listen_fds` protocol for the `--socket` and `--api` listeners.
//!
//! When `LISTEN_PID` is this process's PID, descriptors `3 .. 3+LISTEN_FDS` are listening sockets
//! opened by the service manager (systemd, `systemd-socket-activate`, …), named by the optional
//! colon-separated `LISTEN_FDNAMES`. [`init`] claims them once at start-up (close-on-exec) and removes
//! the three variables, so that no child sees them. A `--socket PATH` or `--api PATH` whose unix
//! socket is one of them (the same path, or the same socket file) then serves the inherited socket
//! instead of binding a new one, and warren does not remove that path when it exits: the socket
//! belongs to the service manager, which keeps it (and the connections queued on it) across
//! restarts. Inherited sockets that match no option are closed with one warning each.
//!
//! Bad variables (a `LISTEN_FDS` that is not a number or above [`MAX_FDS`], a descriptor that is
//! not open or not a unix stream socket) are one warning each and are otherwise ignored.

use socket2::{SockRef, Socket, Type};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;
/// Most descriptors accepted from `LISTEN_FDS`.
pub const MAX_FDS: u32 = 64;

/// One inherited listening socket.
#[derive(Debug)]
struct Slot {
    /// Taken by a listener (then `None`).
    fd: Option<OwnedFd>,
    /// The unix path it is bound to.
    path: PathBuf,
    /// `LISTEN_FDNAMES`' entry, for messages.
    name: String,
    /// Once taken: warren must not remove `path` at exit.
    taken: bool,
}

static SLOTS: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

/// What the environment says, before any descriptor is touched (pure; see [`init`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Listen {
    /// How many descriptors from [`FIRST_FD`] on.
    pub count: u32,
    /// Their names (`LISTEN_FDNAMES`; missing entries are "unknown", as systemd says).
    pub names: Vec<String>,
}

/// Reads `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` for process `pid`: `Ok(None)` when they are
/// absent or meant for another process, `Err` (one line) when they are malformed.
pub fn parse_env(
    pid: u32,
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
) -> Result<Option<Listen>, String> {
    let (Some(lp), Some(lf)) = (listen_pid, listen_fds) else {
        return Ok(None);
    };
    let lp: u32 = lp
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_PID={lp:?} is not a process id"))?;
    if lp != pid {
        return Ok(None);
    }
    let count: u32 = lf
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS={lf:?} is not a number"))?;
    if count > MAX_FDS {
        return Err(format!(
            "LISTEN_FDS={count}: at most {MAX_FDS} are accepted"
        ));
    }
    let given: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
    let names = (0..count as usize)
        .map(|i| match given.get(i) {
            Some(n) if !n.is_empty() => (*n).to_string(),
            _ => "unknown".to_string(),
        })
        .collect();
    Ok(Some(Listen { count, names }))
}

/// Claims the descriptors the service manager passed (once, at start-up, before any thread or child
/// is started) and removes the variables from the environment.
pub fn init() {
    let env = |k: &str| std::env::var(k).ok();
    let parsed = parse_env(
        std::process::id(),
        env("LISTEN_PID").as_deref(),
        env("LISTEN_FDS").as_deref(),
        env("LISTEN_FDNAMES").as_deref(),
    );
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(k);
    }
    let listen = match parsed {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            log::warn!("socket activation ignored: {e}");
            return;
        }
    };
    let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    for (i, name) in (0..listen.count).zip(listen.names) {
        let n = FIRST_FD + i as i32;
        let Some(fd) = crate::sys::claim_inherited_fd(n) else {
            log::warn!("socket activation: descriptor {n} ({name}) is not open");
            continue;
        };
        let path = {
            let s = SockRef::from(&fd);
            match (s.r#type(), s.local_addr()) {
                (Ok(t), Ok(a)) if t == Type::STREAM => a.as_pathname().map(Path::to_path_buf),
                _ => None,
            }
        };
        match path {
            Some(path) => slots.push(Slot {
                fd: Some(fd),
                path,
                name,
                taken: false,
            }),
            None => log::warn!(
                "socket activation: descriptor {n} ({name}) is not a unix stream socket bound to a path: closed"
            ),
        }
    }
}

fn same_socket(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::symlink_metadata(a), std::fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}

/// The inherited listening socket for `path`, if the service manager passed one.
pub fn take(path: &Path) -> Option<Socket> {
    let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    let slot = slots
        .iter_mut()
        .find(|s| s.fd.is_some() && same_socket(&s.path, path))?;
    slot.taken = true;
    log::info!(
        "{}: using the socket passed by the service manager ({})",
        path.display(),
        slot.name
    );
    slot.fd.take().map(Socket::from)
}

/// Whether `path` is served from an inherited socket (so warren leaves it in place at exit).
pub fn is_inherited(path: &Path) -> bool {
    let slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    slots.iter().any(|s| s.taken && same_socket(&s.path, path))
}

/// Closes the inherited sockets no option asked for, with one warning each (called once the
/// listeners are set up).
pub fn close_unused() {
    let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    for s in slots.iter_mut().filter(|s| s.fd.is_some()) {
        log::warn!(
            "socket activation: {} ({}) matches no --socket or --api: closed",
            s.path.display(),
            s.name
        );
        s.fd = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment() {
        assert_eq!(parse_env(10, None, Some("2"), None), Ok(None));
        assert_eq!(parse_env(10, Some("11"), Some("2"), None), Ok(None));
        assert_eq!(
            parse_env(10, Some("10"), Some("2"), Some("socket")),
            Ok(Some(Listen {
                count: 2,
                names: vec!["socket".into(), "unknown".into()]
            }))
        );
        assert_eq!(
            parse_env(10, Some("10"), Some("1"), Some("a:b")),
            Ok(Some(Listen {
                count: 1,
                names: vec!["a".into()]
            }))
        );
        for (pid, fds) in [("x", "1"), ("10", "-1"), ("10", "two"), ("10", "65")] {
            let e = parse_env(10, Some(pid), Some(fds), None).expect_err(fds);
            assert!(!e.contains('\n') && e.starts_with("LISTEN_"), "{e}");
        }
    }

    #[test]
    fn paths_match_by_name_or_file() {
        let dir = std::env::temp_dir().join(format!("warren-activation-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("s.sock");
        let _ = std::fs::remove_file(&p);
        let _l = std::os::unix::net::UnixListener::bind(&p).expect("bind");
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        assert!(same_socket(&p, &p));
        assert!(same_socket(&p, &link.join("s.sock")));
        assert!(!same_socket(&p, &dir.join("other.sock")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
