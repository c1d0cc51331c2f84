//! `--vde DIR`: a VDE2 switch directory, so that QEMU `-netdev vde,sock=DIR` and `vde_plug` connect
//! unchanged (see `../shared/contracts.md`, VDE2).
//!
//! The client connects a stream socket to `DIR/ctl`, binds a datagram socket of its own (libvdeplug:
//! `DIR/.PID-SEQ`, else `/tmp/vde.PID-SEQ` and the like) and sends one `struct request_v3` naming it.
//! warren checks the request, connects a datagram socket of its own to the client's, binds it at
//! `DIR/NNN.FD` (VDE port number, fd) and answers with that address; from then on each datagram is one
//! Ethernet frame (at most 1518 bytes, as in VDE2). Closing the control connection removes the port.
//!
//! Where warren is stricter than vde_switch (which only checks `access(R_OK|W_OK)` on the path):
//! - the client's socket must be in `DIR` itself or be one of libvdeplug's fallback names
//!   (`/tmp/vde.*`, `/var/tmp/vde.*`, `/var/run/vde.*`), with no `.`/`..` components;
//! - it must be a socket (a symlink is refused) owned by the uid at the other end of the control
//!   connection (`SO_PEERCRED`), so a client can only make warren send to its own sockets;
//! - the connect goes through the inode that was checked (`O_PATH` + `/proc/self/fd`), so the path
//!   cannot be swapped in between;
//! - a request must be 122..=250 bytes, version 3, and arrive within 10 s.

use super::{bind_unix, Context, FrontEnd, Host};
use crate::reactor::{clear_ready, poll_ready, register, Keep};
use crate::switch::port::{PortId, Tx};
use netstack::wire::ethernet;
use rustix::net::{RecvFlags, SendFlags};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// VDE2's largest frame (1500-byte payload + header + 802.1Q tag).
pub const MAX_VDE_FRAME: usize = 1518;
/// Highest VDE port number handed out (data sockets are named `DIR/NNN.FD`).
pub const MAX_PORT: u32 = 999;
/// `request_v3`: magic, version, type, `sockaddr_un` (2 + 108).
pub const REQ_FIXED: usize = 4 + 4 + 4 + SUN_LEN;
/// Longest description libvdeplug sends.
pub const MAX_DESCR: usize = 128;
pub const REQ_MAX: usize = REQ_FIXED + MAX_DESCR;
/// `sizeof(struct sockaddr_un)` on Linux.
pub const SUN_LEN: usize = 110;
const SUN_PATH: usize = SUN_LEN - 2;
pub const SWITCH_MAGIC: u32 = 0xfeed_face;
const REQ_NEW_CONTROL: u32 = 0;
const REQ_NEW_PORT0: u32 = 1;
/// A client that has not sent its request by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Control connections still in their handshake, per directory.
pub const MAX_PENDING: usize = 32;
/// Datagrams handled per wakeup before the other endpoints get their turn (and handed to the gateway
/// together).
const BATCH: usize = 32;
/// Directories where libvdeplug binds its data socket when it cannot bind in the switch directory.
const FALLBACK_PREFIXES: [&str; 3] = ["/var/run/vde.", "/var/tmp/vde.", "/tmp/vde."];

/// How to serve one VDE2 switch directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdeOptions {
    pub dir: PathBuf,
    /// Permissions of `ctl` and the data sockets (vde_switch `-m`; default 0600). The directory gets
    /// the same with search bits added, plus setgid (default 02700), as vde_switch does.
    pub mode: Option<u32>,
    /// Group owner of the directory and sockets (vde_switch `-g`).
    pub group: Option<u32>,
}

/// Why `--vde-group` names no group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("--vde-group {0:?}: bad name")]
    BadName(String),
    #[error("--vde-group {0:?}: no such group")]
    NoSuchGroup(String),
}

/// A group name or number to its gid.
pub fn group_id(name: &str) -> Result<u32, GroupError> {
    if let Ok(g) = name.parse::<u32>() {
        return Ok(g);
    }
    let c = CString::new(name).map_err(|_| GroupError::BadName(name.to_string()))?;
    crate::sys::group_gid(&c).ok_or_else(|| GroupError::NoSuchGroup(name.to_string()))
}

/// The socket and directory modes for `mode` (vde_switch's rules).
pub fn modes(mode: Option<u32>) -> (u32, u32) {
    match mode {
        None => (0o600, 0o2700),
        Some(m) => {
            let add = |mask: u32, x: u32| if m & mask != 0 { (m & mask) | x } else { 0 };
            (
                m & 0o777,
                0o2000 | add(0o600, 0o100) | add(0o060, 0o010) | add(0o006, 0o001),
            )
        }
    }
}

/// Which port a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRequest {
    Any,
    Number(u32),
    /// `REQ_NEW_PORT0` (vde_switch's management port): served as any port.
    Port0,
}

/// A parsed `request_v3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub port: PortRequest,
    /// The client's data socket path (no NUL).
    pub path: Vec<u8>,
    /// Printable description (others replaced by `?`).
    pub description: String,
}

/// Why a handshake was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadRequest {
    Short(usize),
    Long(usize),
    Magic(u32),
    Version(u32),
    Type(i32),
    Family(u16),
    /// Unnamed or abstract client socket.
    NoPath,
    /// The path fills `sun_path` with no terminating NUL.
    Unterminated,
    /// Not in the switch directory nor a libvdeplug fallback name.
    OutsideDir(String),
    NotSocket(String),
    /// The socket belongs to another user than the client.
    Owner {
        path: String,
        owner: u32,
        peer: u32,
    },
    Io(String),
    /// Every port number is taken.
    Full,
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRequest::Short(n) => write!(f, "short request ({n} bytes, need {REQ_FIXED})"),
            BadRequest::Long(n) => write!(f, "request too long ({n} bytes, at most {REQ_MAX})"),
            BadRequest::Magic(m) => write!(f, "bad magic {m:#010x}"),
            BadRequest::Version(v) => write!(f, "unsupported version {v} (only 3)"),
            BadRequest::Type(t) => write!(f, "bad request type {t:#x}"),
            BadRequest::Family(a) => write!(f, "client address family {a} is not AF_UNIX"),
            BadRequest::NoPath => write!(f, "client socket has no path"),
            BadRequest::Unterminated => write!(f, "client socket path is not terminated"),
            BadRequest::OutsideDir(p) => write!(
                f,
                "client socket {p} is neither in the switch directory nor a libvdeplug fallback"
            ),
            BadRequest::NotSocket(p) => write!(f, "{p} is not a socket"),
            BadRequest::Owner { path, owner, peer } => write!(
                f,
                "{path} belongs to uid {owner}, but the client is uid {peer}"
            ),
            BadRequest::Io(e) => write!(f, "{e}"),
            BadRequest::Full => write!(f, "no free port (at most {MAX_PORT})"),
        }
    }
}

fn printable(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Parses a `request_v3` (host-endian, packed) as received on the control connection.
pub fn parse_request(buf: &[u8]) -> Result<Request, BadRequest> {
    if buf.len() < 8 {
        return Err(BadRequest::Short(buf.len()));
    }
    let u32_at = |o: usize| u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
    let magic = u32_at(0);
    if magic != SWITCH_MAGIC {
        return Err(BadRequest::Magic(magic));
    }
    let version = u32_at(4);
    if version != 3 {
        return Err(BadRequest::Version(version));
    }
    if buf.len() < REQ_FIXED {
        return Err(BadRequest::Short(buf.len()));
    }
    if buf.len() > REQ_MAX {
        return Err(BadRequest::Long(buf.len()));
    }
    let ty = u32_at(8) as i32;
    if ty < 0 {
        return Err(BadRequest::Type(ty));
    }
    let (kind, number) = ((ty & 0xff) as u32, (ty >> 8) as u32);
    let port = match (kind, number) {
        (REQ_NEW_CONTROL, 0) => PortRequest::Any,
        (REQ_NEW_CONTROL, n) => PortRequest::Number(n),
        (REQ_NEW_PORT0, _) => PortRequest::Port0,
        _ => return Err(BadRequest::Type(ty)),
    };
    let family = u16::from_ne_bytes([buf[12], buf[13]]);
    if family != libc::AF_UNIX as u16 {
        return Err(BadRequest::Family(family));
    }
    let sun_path = &buf[14..14 + SUN_PATH];
    let Some(end) = sun_path.iter().position(|&c| c == 0) else {
        return Err(BadRequest::Unterminated);
    };
    if end == 0 {
        return Err(BadRequest::NoPath);
    }
    let descr = &buf[REQ_FIXED..];
    let descr = &descr[..descr.iter().position(|&c| c == 0).unwrap_or(descr.len())];
    Ok(Request {
        port,
        path: sun_path[..end].to_vec(),
        description: printable(descr),
    })
}

/// Builds a `request_v3` as libvdeplug does (for tests and clients).
pub fn encode_request(port: u32, path: &[u8], description: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(REQ_MAX);
    b.extend_from_slice(&SWITCH_MAGIC.to_ne_bytes());
    b.extend_from_slice(&3u32.to_ne_bytes());
    b.extend_from_slice(&(REQ_NEW_CONTROL | (port << 8)).to_ne_bytes());
    b.extend_from_slice(&encode_sockaddr(path));
    b.extend_from_slice(&description.as_bytes()[..description.len().min(MAX_DESCR)]);
    b
}

/// A `struct sockaddr_un` (110 bytes, host-endian family) for `path` (truncated to 107 bytes).
pub fn encode_sockaddr(path: &[u8]) -> [u8; SUN_LEN] {
    let mut b = [0u8; SUN_LEN];
    b[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    let n = path.len().min(SUN_PATH - 1);
    b[2..2 + n].copy_from_slice(&path[..n]);
    b
}

/// The path inside a `sockaddr_un` (up to its first NUL).
pub fn decode_sockaddr(b: &[u8]) -> Option<PathBuf> {
    let p = b.get(2..)?;
    let p = &p[..p.iter().position(|&c| c == 0).unwrap_or(p.len())];
    (!p.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
}

/// Whether the client's socket `path` is somewhere warren agrees to send to: directly in `dir`
/// (canonical), or a libvdeplug fallback name; no `.`, `..` or empty components.
pub fn check_path(path: &[u8], dir: &Path) -> Result<(), BadRequest> {
    let shown = || printable(path);
    let Some(rest) = path.strip_prefix(b"/") else {
        return Err(BadRequest::OutsideDir(shown()));
    };
    if rest
        .split(|&c| c == b'/')
        .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        return Err(BadRequest::OutsideDir(shown()));
    }
    let slash = path.iter().rposition(|&c| c == b'/').unwrap_or(0);
    let parent = if slash == 0 {
        &b"/"[..]
    } else {
        &path[..slash]
    };
    if parent == dir.as_os_str().as_bytes() {
        return Ok(());
    }
    for prefix in FALLBACK_PREFIXES {
        if let Some(name) = path.strip_prefix(prefix.as_bytes()) {
            if !name.is_empty() && !name.contains(&b'/') {
                return Ok(());
            }
        }
    }
    Err(BadRequest::OutsideDir(shown()))
}

/// Opens the client's socket file without following a final symlink and checks that it is a socket
/// owned by `peer_uid`. The returned `O_PATH` fd pins the inode that was checked.
fn open_client_socket(path: &[u8], peer_uid: u32) -> Result<OwnedFd, BadRequest> {
    let shown = || printable(path);
    let c = CString::new(path).map_err(|_| BadRequest::NoPath)?;
    // openat and statx: the calls the sandbox allows (an O_PATH open, a stat of the open file).
    use rustix::fs::{AtFlags, FileType, OFlags, StatxFlags, CWD};
    let fd = match rustix::fs::openat(
        CWD,
        c.as_c_str(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => return Err(BadRequest::NotSocket(shown())),
        Err(e) => {
            return Err(BadRequest::Io(format!(
                "{}: {}",
                shown(),
                io::Error::from(e)
            )))
        }
    };
    let st = rustix::fs::statx(
        &fd,
        c"",
        AtFlags::EMPTY_PATH,
        StatxFlags::TYPE | StatxFlags::UID,
    )
    .map_err(|e| BadRequest::Io(format!("{}: {}", shown(), io::Error::from(e))))?;
    let st_uid = st.stx_uid;
    if FileType::from_raw_mode(u32::from(st.stx_mode)) != FileType::Socket {
        return Err(BadRequest::NotSocket(shown()));
    }
    if st_uid != peer_uid {
        return Err(BadRequest::Owner {
            path: shown(),
            owner: st_uid,
            peer: peer_uid,
        });
    }
    Ok(fd)
}

/// One switch directory's shared state.
struct Dir {
    path: PathBuf,
    mode: u32,
    group: Option<u32>,
    used: BTreeSet<u32>,
    pending: usize,
}

impl Dir {
    fn alloc(&mut self, req: PortRequest) -> Option<u32> {
        let n = match req {
            PortRequest::Number(n) if (1..=MAX_PORT).contains(&n) && !self.used.contains(&n) => n,
            _ => (1..=MAX_PORT).find(|n| !self.used.contains(n))?,
        };
        self.used.insert(n);
        Some(n)
    }
}

/// The listening `DIR/ctl`.
pub struct VdeListener {
    fd: AsyncFd<OwnedFd>,
    dir: Rc<RefCell<Dir>>,
}

/// Counts a handshake in progress for as long as it lives.
struct Pending(Rc<RefCell<Dir>>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.borrow_mut().pending -= 1;
    }
}

/// A port number and its data socket's name, given back (number freed, file removed) when dropped.
struct Reserved {
    number: u32,
    path: PathBuf,
    dir: Rc<RefCell<Dir>>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        self.dir.borrow_mut().used.remove(&self.number);
    }
}

struct Attached {
    data: Rc<AsyncFd<OwnedFd>>,
    port: PortId,
    buf: Vec<u8>,
    _name: Reserved,
}

enum State {
    Handshake {
        buf: Vec<u8>,
        since: Instant,
        _pending: Pending,
    },
    Attached(Attached),
}

/// A control connection: in its handshake, or attached to a port with its data socket.
pub struct VdeConn {
    ctl: AsyncFd<OwnedFd>,
    dir: Rc<RefCell<Dir>>,
    peer: libc::ucred,
    state: State,
}

/// One non-blocking `recv` (with extra `flags`).
fn recv_some(fd: &impl AsFd, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
    // The length received (with MSG_TRUNC the datagram's, which may exceed buf).
    Ok(rustix::net::recv(fd, buf, RecvFlags::DONTWAIT | flags)?.1)
}

fn peer_cred(fd: &impl AsFd) -> io::Result<libc::ucred> {
    crate::sys::peer_cred(fd.as_fd())
}

fn chmod_chown(path: &Path, mode: u32, group: Option<u32>) -> io::Result<()> {
    if let Some(g) = group {
        std::os::unix::fs::chown(path, None, Some(g)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot give {} to group {g}: {e}", path.display()),
            )
        })?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot chmod {:o} {}: {e}", mode, path.display()),
        )
    })
}

/// Creates (or reuses) the switch directory, binds `DIR/ctl` and registers it as a front end.
pub fn bind(s: &mut Host<'_>, o: &VdeOptions) -> io::Result<()> {
    let (mode, dirmode) = modes(o.mode);
    let created = match fs::symlink_metadata(&o.dir) {
        Ok(m) if m.is_dir() => false,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("--vde {}: exists and is not a directory", o.dir.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&o.dir)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("--vde: cannot create {}: {e}", o.dir.display()),
                    )
                })?;
            true
        }
        Err(e) => return Err(e),
    };
    let dir = fs::canonicalize(&o.dir)?;
    // DIR/NNN.FFFFFFFFFF must fit in sun_path with its NUL.
    if dir.as_os_str().len() + 16 > SUN_PATH - 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "--vde {}: path too long for its sockets (at most {} bytes)",
                dir.display(),
                SUN_PATH - 17
            ),
        ));
    }
    chmod_chown(&dir, dirmode, o.group)?;
    // Bound and listening under a temporary name, then renamed: a client that sees `ctl` can connect.
    let ctl = dir.join("ctl");
    let tmp = dir.join(format!(".ctl-{}", std::process::id()));
    let sock = bind_unix(&tmp, Type::STREAM)?;
    let ready = (|| {
        chmod_chown(&tmp, mode, o.group)?;
        sock.listen(64)?;
        sock.set_nonblocking(true)?;
        // Refuses a live ctl of another switch, or a non-socket; replaces a stale one.
        if let Ok(m) = fs::symlink_metadata(&ctl) {
            use std::os::unix::fs::FileTypeExt;
            if !m.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", ctl.display()),
                ));
            }
            if std::os::unix::net::UnixStream::connect(&ctl).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by another switch", ctl.display()),
                ));
            }
        }
        fs::rename(&tmp, &ctl)
    })();
    if let Err(e) = ready {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    s.remove_on_exit(ctl);
    if created {
        s.remove_dir_on_exit(dir.clone());
    }
    let fd = register(OwnedFd::from(sock))?;
    s.add_front_end(Box::new(VdeListener {
        fd,
        dir: Rc::new(RefCell::new(Dir {
            path: dir,
            mode,
            group: o.group,
            used: BTreeSet::new(),
            pending: 0,
        })),
    }));
    Ok(())
}

impl FrontEnd for VdeListener {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        let l = self;
        let (waker, tok) = cx.waker();
        loop {
            if !poll_ready(&l.fd, &waker, false) {
                return Keep::Yes;
            }
            let s = match SockRef::from(l.fd.get_ref()).accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    clear_ready(&l.fd, &waker, false, cx.queue(), tok);
                    return Keep::Yes;
                }
                Err(e) => {
                    log::warn!("vde {}: accept failed: {e}", l.dir.borrow().path.display());
                    return Keep::Yes;
                }
            };
            let dir = l.dir.clone();
            if dir.borrow().pending >= MAX_PENDING {
                log::warn!(
                    "vde {}: {MAX_PENDING} handshakes in progress; refusing a connection",
                    dir.borrow().path.display()
                );
                continue;
            }
            let peer = match peer_cred(&s) {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("vde: cannot get the client's credentials: {e}");
                    continue;
                }
            };
            if let Err(e) = s.set_nonblocking(true) {
                log::warn!("vde: {e}");
                continue;
            }
            let ctl = match register(OwnedFd::from(s)) {
                Ok(f) => f,
                Err(e) => {
                    log::warn!("vde: {e}");
                    continue;
                }
            };
            dir.borrow_mut().pending += 1;
            let now = cx.now;
            cx.add_front_end(Box::new(VdeConn {
                ctl,
                dir: dir.clone(),
                peer,
                state: State::Handshake {
                    buf: Vec::with_capacity(REQ_MAX + 1),
                    since: now,
                    _pending: Pending(dir),
                },
            }));
        }
    }
}

impl FrontEnd for VdeConn {
    fn on_readable(&mut self, cx: &mut Context<'_>) -> Keep {
        let c = self;
        let (waker, tok) = cx.waker();
        if let State::Attached(a) = &c.state {
            if !cx.port_exists(a.port) {
                return Keep::No;
            }
        }
        // The control connection: the request, then only its end matters.
        let mut scratch = [0u8; 512];
        while poll_ready(&c.ctl, &waker, false) {
            let r = match &mut c.state {
                State::Handshake { buf, .. } => {
                    let n = buf.len();
                    buf.resize(REQ_MAX + 1, 0);
                    let r = recv_some(&c.ctl, &mut buf[n..], RecvFlags::empty());
                    buf.truncate(n + r.as_ref().map_or(0, |&k| k));
                    r
                }
                State::Attached(_) => recv_some(&c.ctl, &mut scratch, RecvFlags::empty()),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    clear_ready(&c.ctl, &waker, false, cx.queue(), tok);
                    break;
                }
                Ok(0) | Err(_) => {
                    match &c.state {
                        State::Attached(a) => {
                            cx.close_port(a.port, "VDE control connection closed")
                        }
                        State::Handshake { buf, .. } if !buf.is_empty() => log::warn!(
                            "vde {}: refused a client (pid {} uid {}): {}",
                            c.dir.borrow().path.display(),
                            c.peer.pid,
                            c.peer.uid,
                            parse_request(buf)
                                .err()
                                .unwrap_or(BadRequest::Short(buf.len()))
                        ),
                        State::Handshake { .. } => {}
                    }
                    return Keep::No;
                }
                Ok(_) => {}
            }
            let State::Handshake { buf, .. } = &c.state else {
                continue;
            };
            let wrong_magic = buf.len() >= 4 && buf[..4] != SWITCH_MAGIC.to_ne_bytes();
            if buf.len() < REQ_FIXED && !wrong_magic {
                continue;
            }
            match parse_request(buf).and_then(|r| c.attach(cx, r)) {
                Ok(a) => c.state = State::Attached(a),
                Err(e) => {
                    log::warn!(
                        "vde {}: refused a client (pid {} uid {}): {e}",
                        c.dir.borrow().path.display(),
                        c.peer.pid,
                        c.peer.uid
                    );
                    return Keep::No;
                }
            }
        }
        // The data socket: a batch of frames, switched, then handed to the gateway together.
        let State::Attached(a) = &mut c.state else {
            return Keep::Yes;
        };
        let (mut frames, mut used, mut more, mut failed) =
            (Vec::with_capacity(BATCH), 0, true, None);
        while frames.len() < BATCH {
            if !poll_ready(&a.data, &waker, false) {
                more = false;
                break;
            }
            match recv_some(
                &a.data,
                &mut a.buf[used..used + MAX_VDE_FRAME + 1],
                RecvFlags::TRUNC,
            ) {
                Ok(n) if n > MAX_VDE_FRAME => {
                    if let Some(ctr) = cx.port_counters_mut(a.port) {
                        ctr.drop_oversize += 1;
                    }
                }
                Ok(n) if n < ethernet::HEADER_LEN => {}
                Ok(n) => {
                    frames.push(used..used + n);
                    used += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    clear_ready(&a.data, &waker, false, cx.queue(), tok);
                    more = false;
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let mut for_gateway: Vec<&[u8]> = Vec::new();
        for r in frames {
            let f = &a.buf[r];
            if cx.switch(a.port, f) {
                for_gateway.push(f);
            }
        }
        if !for_gateway.is_empty() {
            cx.to_gateway(a.port, &for_gateway);
        }
        if let Some(e) = failed {
            log::warn!("port {}: VDE data socket: {e}", a.port);
            cx.close_port(a.port, "VDE data socket failed");
            return Keep::No;
        }
        if !cx.port_exists(a.port) {
            return Keep::No;
        }
        if more {
            // More may be waiting: come back after the others had their turn.
            cx.again();
        }
        Keep::Yes
    }

    /// Drops handshakes that stalled and connections whose port was closed elsewhere.
    fn tick(&mut self, cx: &mut Context<'_>) -> Keep {
        let c = self;
        match &c.state {
            State::Handshake { since, .. }
                if cx.now.saturating_duration_since(*since) >= HANDSHAKE_TIMEOUT =>
            {
                log::warn!(
                    "vde {}: client (pid {} uid {}) sent no request within {HANDSHAKE_TIMEOUT:?}",
                    c.dir.borrow().path.display(),
                    c.peer.pid,
                    c.peer.uid
                );
                Keep::No
            }
            State::Attached(a) if !cx.port_exists(a.port) => Keep::No,
            _ => Keep::Yes,
        }
    }
}

impl VdeConn {
    /// Checks the client's socket, creates the data socket and the port, and answers the client.
    fn attach(&self, cx: &mut Context<'_>, req: Request) -> Result<Attached, BadRequest> {
        let c = self;
        let io = |e: io::Error| BadRequest::Io(e.to_string());
        let (dir_path, mode, group) = {
            let d = c.dir.borrow();
            (d.path.clone(), d.mode, d.group)
        };
        check_path(&req.path, &dir_path)?;
        let client = open_client_socket(&req.path, c.peer.uid)?;
        let sock = Socket::new(Domain::UNIX, Type::DGRAM, None).map_err(io)?;
        sock.set_nonblocking(true).map_err(io)?;
        let _ = sock.set_send_buffer_size(1 << 20);
        let _ = sock.set_recv_buffer_size(1 << 20);
        // Through the inode checked above, so the name cannot be swapped in between.
        let by_fd = SockAddr::unix(format!("/proc/self/fd/{}", client.as_raw_fd())).map_err(io)?;
        let connected = sock.connect(&by_fd).or_else(|e| {
            if Path::new("/proc/self/fd").is_dir() {
                Err(e)
            } else {
                // No /proc: connect by name (the checks above are then only as good as the path).
                sock.connect(&SockAddr::unix(std::ffi::OsStr::from_bytes(&req.path))?)
            }
        });
        drop(client);
        connected.map_err(|e| {
            BadRequest::Io(format!(
                "cannot connect to client socket {}: {e}",
                printable(&req.path)
            ))
        })?;
        let number = c.dir.borrow_mut().alloc(req.port).ok_or(BadRequest::Full)?;
        let name = Reserved {
            number,
            path: dir_path.join(format!("{number:03}.{}", sock.as_raw_fd())),
            dir: c.dir.clone(),
        };
        // A stale socket file of a previous run may hold the name.
        if fs::symlink_metadata(&name.path).is_ok() {
            let _ = fs::remove_file(&name.path);
        }
        sock.bind(&SockAddr::unix(&name.path).map_err(io)?)
            .map_err(|e| BadRequest::Io(format!("cannot bind {}: {e}", name.path.display())))?;
        chmod_chown(&name.path, mode, group).map_err(io)?;
        let data = Rc::new(register(OwnedFd::from(sock)).map_err(io)?);
        let reply = encode_sockaddr(name.path.as_os_str().as_bytes());
        match rustix::net::send(&c.ctl, &reply, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(n) if n == reply.len() => {}
            Ok(n) => {
                return Err(BadRequest::Io(format!(
                    "cannot answer the client: short write ({n} of {} bytes)",
                    reply.len()
                )))
            }
            Err(e) => {
                return Err(BadRequest::Io(format!(
                    "cannot answer the client: {}",
                    io::Error::from(e)
                )))
            }
        }
        let port = cx.add_port(
            format!(
                "vde {} port {number} \"{}\" pid {} uid {}",
                dir_path.display(),
                req.description,
                c.peer.pid,
                c.peer.uid
            ),
            Tx::Datagram {
                fd: data.clone(),
                queue: Default::default(),
                bytes: 0,
            },
            MAX_VDE_FRAME,
        );
        // Data may already be waiting: look at once.
        cx.again();
        Ok(Attached {
            data,
            port,
            buf: vec![0; BATCH * MAX_VDE_FRAME + 1],
            _name: name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "/run/user/1000/vde";

    fn req(path: &str) -> Vec<u8> {
        encode_request(0, path.as_bytes(), "QEMU user=alice PID=42")
    }

    #[test]
    fn parses_what_libvdeplug_sends() {
        let b = req("/run/user/1000/vde/.01234-00000");
        assert_eq!(b.len(), REQ_FIXED + "QEMU user=alice PID=42".len());
        let r = parse_request(&b).expect("valid");
        assert_eq!(r.port, PortRequest::Any);
        assert_eq!(r.path, b"/run/user/1000/vde/.01234-00000");
        assert_eq!(r.description, "QEMU user=alice PID=42");
        assert!(check_path(&r.path, Path::new(DIR)).is_ok());
        // port=N rides in the type's upper bits; an empty description is fine.
        let b = encode_request(7, b"/tmp/vde.01234-00000", "");
        let r = parse_request(&b).expect("valid");
        assert_eq!(r.port, PortRequest::Number(7));
        assert_eq!(r.description, "");
        assert!(check_path(&r.path, Path::new(DIR)).is_ok());
        // REQ_NEW_PORT0.
        let mut b = req("/run/user/1000/vde/.1-0");
        b[8..12].copy_from_slice(&1u32.to_ne_bytes());
        assert_eq!(parse_request(&b).expect("valid").port, PortRequest::Port0);
        // A description with a NUL or control bytes.
        let mut b = req("/run/user/1000/vde/.1-0");
        b.extend_from_slice(b"\x1b[2J\0junk");
        let r = parse_request(&b).expect("valid");
        assert_eq!(r.description, "QEMU user=alice PID=42?[2J");
    }

    #[test]
    fn hostile_headers_are_refused() {
        assert_eq!(parse_request(&[]), Err(BadRequest::Short(0)));
        assert_eq!(parse_request(&[0xce, 0xfa]), Err(BadRequest::Short(2)));
        let good = req("/run/user/1000/vde/.1-0");
        assert_eq!(parse_request(&good[..121]), Err(BadRequest::Short(121)));
        assert_eq!(parse_request(&good[..8]), Err(BadRequest::Short(8)));
        let mut long = encode_request(0, b"/run/user/1000/vde/.1-0", &"x".repeat(128));
        assert!(parse_request(&long).is_ok());
        long.push(b'y');
        assert_eq!(parse_request(&long), Err(BadRequest::Long(REQ_MAX + 1)));
        let mut b = good.clone();
        b[..4].copy_from_slice(&0xcefaedfeu32.to_ne_bytes());
        assert_eq!(parse_request(&b), Err(BadRequest::Magic(0xcefaedfe)));
        for v in [1u32, 2, 4, u32::MAX] {
            let mut b = good.clone();
            b[4..8].copy_from_slice(&v.to_ne_bytes());
            assert_eq!(parse_request(&b), Err(BadRequest::Version(v)));
        }
        for t in [2i32, 0x1ff, -1, i32::MIN] {
            let mut b = good.clone();
            b[8..12].copy_from_slice(&t.to_ne_bytes());
            assert_eq!(parse_request(&b), Err(BadRequest::Type(t)));
        }
        let mut b = good.clone();
        b[12..14].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        assert_eq!(
            parse_request(&b),
            Err(BadRequest::Family(libc::AF_INET as u16))
        );
        // Unnamed/abstract, and a path filling sun_path with no NUL.
        let b = encode_request(0, b"", "d");
        assert_eq!(parse_request(&b), Err(BadRequest::NoPath));
        let mut b = good.clone();
        b[14] = 0;
        b[15] = b'x';
        assert_eq!(parse_request(&b), Err(BadRequest::NoPath));
        let mut b = good;
        b[14..14 + SUN_PATH].fill(b'a');
        assert_eq!(parse_request(&b), Err(BadRequest::Unterminated));
    }

    #[test]
    fn paths_outside_the_directory_are_refused() {
        let dir = Path::new(DIR);
        for ok in [
            "/run/user/1000/vde/.01234-00000",
            "/run/user/1000/vde/x",
            "/tmp/vde.01234-00000",
            "/var/tmp/vde.1-2",
            "/var/run/vde.1-2",
        ] {
            assert_eq!(check_path(ok.as_bytes(), dir), Ok(()), "{ok}");
        }
        for bad in [
            "relative/x",
            "/run/user/1000/vde",
            "/run/user/1000/vde/",
            "/run/user/1000/vde/sub/x",
            "/run/user/1000/vde/../vde/x",
            "/run/user/1000/vde/./x",
            "/run/user/1000//vde/x",
            "/run/user/1000/vde/..",
            "/run/user/1000/vdex/y",
            "/run/user/1000/x",
            "/tmp/vde.",
            "/tmp/vde.x/y",
            "/tmp/other",
            "/home/alice/.ssh/agent.sock",
            "/",
        ] {
            assert!(
                matches!(
                    check_path(bad.as_bytes(), dir),
                    Err(BadRequest::OutsideDir(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn sockaddr_round_trip() {
        let b = encode_sockaddr(b"/run/user/1000/vde/001.7");
        assert_eq!(b.len(), SUN_LEN);
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), libc::AF_UNIX as u16);
        assert_eq!(
            decode_sockaddr(&b),
            Some(PathBuf::from("/run/user/1000/vde/001.7"))
        );
        assert_eq!(decode_sockaddr(&encode_sockaddr(b"")), None);
    }

    #[test]
    fn modes_follow_vde_switch() {
        assert_eq!(modes(None), (0o600, 0o2700));
        assert_eq!(modes(Some(0o660)), (0o660, 0o2770));
        assert_eq!(modes(Some(0o666)), (0o666, 0o2777));
        assert_eq!(modes(Some(0o600)), (0o600, 0o2700));
    }

    #[test]
    fn port_numbers_honour_requests_when_free() {
        let mut d = Dir {
            path: PathBuf::from(DIR),
            mode: 0o600,
            group: None,
            used: BTreeSet::new(),
            pending: 0,
        };
        assert_eq!(d.alloc(PortRequest::Any), Some(1));
        assert_eq!(d.alloc(PortRequest::Number(5)), Some(5));
        assert_eq!(d.alloc(PortRequest::Number(5)), Some(2));
        assert_eq!(d.alloc(PortRequest::Number(MAX_PORT + 1)), Some(3));
        assert_eq!(d.alloc(PortRequest::Port0), Some(4));
        assert_eq!(d.alloc(PortRequest::Any), Some(6));
        d.used.remove(&5);
        assert_eq!(d.alloc(PortRequest::Number(5)), Some(5));
        d.used = (1..=MAX_PORT).collect();
        assert_eq!(d.alloc(PortRequest::Any), None);
    }

    #[test]
    fn open_client_socket_checks_type_and_owner() {
        let tmp = std::env::temp_dir().join(format!("warren-vde-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).expect("mkdir");
        let sock = tmp.join("s");
        let _keep = std::os::unix::net::UnixDatagram::bind(&sock).expect("bind");
        let file = tmp.join("f");
        fs::write(&file, b"x").expect("write");
        let link = tmp.join("l");
        std::os::unix::fs::symlink(&sock, &link).expect("symlink");
        let me = rustix::process::getuid().as_raw();
        let b = |p: &Path| p.as_os_str().as_bytes().to_vec();
        assert!(open_client_socket(&b(&sock), me).is_ok());
        assert!(matches!(
            open_client_socket(&b(&sock), me.wrapping_add(1)),
            Err(BadRequest::Owner { .. })
        ));
        assert!(matches!(
            open_client_socket(&b(&file), me),
            Err(BadRequest::NotSocket(_))
        ));
        assert!(matches!(
            open_client_socket(&b(&link), me),
            Err(BadRequest::NotSocket(_))
        ));
        assert!(matches!(
            open_client_socket(&b(&tmp.join("missing")), me),
            Err(BadRequest::Io(_))
        ));
        let _ = fs::remove_dir_all(&tmp);
    }
}
