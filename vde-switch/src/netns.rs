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

use crate::frontend::Host;
use crate::helper::{
    helper_socket, recv_msg, send_msg, seqpacket_pair, set_nonblocking, spawn_helper,
};
use std::ffi::{CString, OsStr};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use sys_common::{ioctl_ifreq, IfReq, IfReqIoctl};

/// The tap's name when `--tap` is not given.
pub const DEFAULT_TAP: &str = "tap0";
/// Host number of the address `--configure` gives the namespace (10.0.2.100 on slirp's plan, as
/// slirp4netns does).
pub const CONFIGURED_HOST: u32 = 100;
/// Transmit ring of the tap (frames the namespace may queue towards warren). A tap drops what does
/// not fit, and drops stall TCP far more than a deeper queue costs.
const TAP_TXQUEUELEN: i32 = 5000;

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
    /// The IPv6 address `--configure` gives the tap, instead of `::100` of the prefix (pasta's
    /// `-a` with an IPv6 address).
    pub address6: Option<Ipv6Addr>,
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
    /// IPv4 address, prefix and default route (skipped with `--no-ipv4`).
    pub ipv4: bool,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u16,
    /// The IPv6 address, prefix length and router (default route), unless `--no-ipv6`.
    pub v6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
}

impl TapConfig {
    /// The slirp4netns plan within warren's network: host .100, default route via the gateway;
    /// on IPv6 `::100` of the prefix (slirp4netns' API's default guest address), default route
    /// via the router.
    pub fn for_config(cfg: &netstack::config::Config) -> Self {
        TapConfig {
            ipv4: cfg.ipv4,
            addr: Ipv4Addr::from(u32::from(cfg.net.network()) | CONFIGURED_HOST),
            prefix: cfg.net.prefix,
            gateway: cfg.gateway,
            mtu: cfg.mtu,
            v6: cfg.v6.as_ref().map(|p| {
                (
                    p.net.host(netstack::addr6::NAMESPACE_HOST),
                    p.net.prefix_len(),
                    p.router,
                )
            }),
        }
    }
}

fn err(msg: String) -> io::Error {
    io::Error::other(msg)
}

fn cstring(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes())
        .map_err(|_| err(format!("{}: contains a NUL byte", p.to_string_lossy())))
}

fn open_path(p: &Path, flags: rustix::fs::OFlags) -> io::Result<OwnedFd> {
    let c = cstring(p.as_os_str())?;
    rustix::fs::open(
        c.as_c_str(),
        flags | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| err(format!("{}: {}", p.display(), io::Error::from(e))))
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
        if c.ipv4 {
            args.push(format!("{}/{}", c.addr, c.prefix).into());
            args.push(c.gateway.to_string().into());
        } else {
            args.push("-".into());
            args.push("-".into());
        }
        args.push(c.mtu.to_string().into());
        if let Some((a, p, r)) = c.v6 {
            args.push(format!("{a}/{p}").into());
            args.push(r.to_string().into());
        }
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

/// `warren __attach NETNS USERNS|- TAP [ADDR/PREFIX|- GATEWAY|- MTU [ADDR6/PREFIX ROUTER6]]`, run
/// by [`attach`].
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
    let st = rustix::fs::fstat(fd).map_err(|e| err(format!("fstat: {}", io::Error::from(e))))?;
    Ok((st.st_dev, st.st_ino))
}

fn setns(fd: BorrowedFd<'_>, kind: rustix::thread::LinkNameSpaceType) -> io::Result<()> {
    // Affects only this (single-threaded) helper process.
    rustix::thread::move_into_link_name_space(fd, Some(kind)).map_err(io::Error::from)
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
        [n, u, t, rest @ ..] if matches!(rest.len(), 0 | 3 | 5) => (n, u, t, rest),
        _ => return Err(err("internal: bad __attach arguments".into())),
    };
    let net = open_path(Path::new(netns), rustix::fs::OFlags::RDONLY)
        .map_err(|e| err(format!("cannot open network namespace {e}")))?;
    // The user namespace owning the network namespace: entering it gives us CAP_NET_ADMIN there.
    let user = if userns == "-" {
        // EPERM: the owner is an ancestor of our own user namespace; setns(net) alone may still work.
        crate::sys::ns_get_userns(net.as_fd()).ok()
    } else {
        Some(
            open_path(Path::new(userns), rustix::fs::OFlags::RDONLY)
                .map_err(|e| err(format!("cannot open user namespace {e}")))?,
        )
    };
    if let Some(user) = &user {
        let own = open_path(Path::new("/proc/self/ns/user"), rustix::fs::OFlags::RDONLY)?;
        if ns_id(user.as_fd())? != ns_id(own.as_fd())? {
            setns(user.as_fd(), rustix::thread::LinkNameSpaceType::User).map_err(|e| {
                err(format!(
                    "cannot enter the user namespace owning {netns}: {e} (run warren as the user who made it, or pass --userns)"
                ))
            })?;
        }
    }
    setns(net.as_fd(), rustix::thread::LinkNameSpaceType::Network)
        .map_err(|e| err(format!("cannot enter network namespace {netns}: {e}")))?;
    let fd = open_tap(tap)?;
    if let [addr, gw, mtu, v6 @ ..] = rest {
        let bad = |what: &str, v: &str| err(format!("internal: bad {what} {v}"));
        let ipv4 = addr != "-";
        let (a, p) = if ipv4 {
            addr.split_once('/')
                .and_then(|(a, p)| Some((a.parse().ok()?, p.parse().ok()?)))
                .ok_or_else(|| bad("address", addr))?
        } else {
            (Ipv4Addr::UNSPECIFIED, 0)
        };
        let v6 = match v6 {
            [a6, r6] => Some(
                a6.split_once('/')
                    .and_then(|(a, p)| Some((a.parse().ok()?, p.parse().ok()?, r6.parse().ok()?)))
                    .ok_or_else(|| bad("IPv6 address", a6))?,
            ),
            _ => None,
        };
        let cfg = TapConfig {
            ipv4,
            addr: a,
            prefix: p,
            gateway: if ipv4 {
                gw.parse().map_err(|_| bad("gateway", gw))?
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            mtu: mtu.parse().map_err(|_| bad("MTU", mtu))?,
            v6,
        };
        configure(tap, &cfg)?;
    }
    Ok(fd)
}

fn ifreq(name: &str) -> io::Result<IfReq> {
    IfReq::with_name(name.as_bytes())
        .ok_or_else(|| err(format!("bad interface name {name:?} (1..15 bytes, no '/')")))
}

/// Opens /dev/net/tun and creates (or attaches to) tap `name` in the current network namespace.
fn open_tap(name: &str) -> io::Result<OwnedFd> {
    let fd = open_path(Path::new("/dev/net/tun"), rustix::fs::OFlags::RDWR).map_err(|e| {
        err(format!(
            "cannot open {e} (it must be readable and writable by this user: mode 0666 is the usual)"
        ))
    })?;
    let mut req = ifreq(name)?;
    req.set_u16((libc::IFF_TAP | libc::IFF_NO_PI) as u16);
    if let Err(e) = ioctl_ifreq(fd.as_fd(), IfReqIoctl::TunSetIff, &mut req) {
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

fn ioctl(sock: &OwnedFd, req: IfReqIoctl, r: &mut IfReq, what: &str) -> io::Result<()> {
    ioctl_ifreq(sock.as_fd(), req, r).map_err(|e| err(format!("{what}: {e}")))
}

fn set_up(sock: &OwnedFd, name: &str) -> io::Result<()> {
    let mut r = ifreq(name)?;
    ioctl(
        sock,
        IfReqIoctl::GetFlags,
        &mut r,
        &format!("cannot read the flags of {name}"),
    )?;
    let flags = r.u16();
    r.set_u16(flags | (libc::IFF_UP | libc::IFF_RUNNING) as u16);
    ioctl(
        sock,
        IfReqIoctl::SetFlags,
        &mut r,
        &format!("cannot bring {name} up"),
    )
}

/// Inside the namespace: loopback up; the tap's MTU, queue, address, netmask, up; default route.
pub fn configure(tap: &str, c: &TapConfig) -> io::Result<()> {
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| err(format!("socket: {}", io::Error::from(e))))?;
    set_up(&sock, "lo")?;
    let mut r = ifreq(tap)?;
    r.set_i32(i32::from(c.mtu));
    ioctl(
        &sock,
        IfReqIoctl::SetMtu,
        &mut r,
        &format!("cannot set the MTU of {tap} to {}", c.mtu),
    )?;
    let mut r = ifreq(tap)?;
    r.set_i32(TAP_TXQUEUELEN); // ifr_qlen
    let _ = ioctl(&sock, IfReqIoctl::SetTxQueueLen, &mut r, "txqueuelen");
    if c.ipv4 {
        let mut r = ifreq(tap)?;
        r.set_ipv4(c.addr);
        ioctl(
            &sock,
            IfReqIoctl::SetAddr,
            &mut r,
            &format!("cannot give {tap} address {}", c.addr),
        )?;
        let mask = if c.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(c.prefix.min(32)))
        };
        let mut r = ifreq(tap)?;
        r.set_ipv4(Ipv4Addr::from(mask));
        ioctl(
            &sock,
            IfReqIoctl::SetNetmask,
            &mut r,
            &format!("cannot set the netmask of {tap}"),
        )?;
    }
    if c.v6.is_some() {
        // The namespace's addresses are the only ones on this link (the gateway never claims
        // them): no duplicate address detection, so they are usable at once. If the write
        // fails, configure_v6 waits for DAD instead.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{tap}/accept_dad"), "0");
    }
    set_up(&sock, tap)?;
    if c.ipv4 {
        if let Err(e) = crate::sys::add_default_route(sock.as_fd(), c.gateway) {
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(err(format!(
                    "cannot add a default route via {}: {e}",
                    c.gateway
                )));
            }
        }
    }
    if let Some((addr, prefix, router)) = c.v6 {
        configure_v6(tap, addr, prefix, router)?;
    }
    Ok(())
}

/// The IPv6 part of [`configure`] (the tap is up): address, default route via the router, and a
/// wait (at most 3 s) until the address is no longer tentative, so the first connect works.
fn configure_v6(tap: &str, addr: Ipv6Addr, prefix: u8, router: Ipv6Addr) -> io::Result<()> {
    let sock = match rustix::net::socket_with(
        rustix::net::AddressFamily::INET6,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    ) {
        Ok(s) => s,
        // IPv6 disabled in this kernel (ipv6.disable=1): IPv4 only, as a kernel without it.
        Err(rustix::io::Errno::AFNOSUPPORT) => return Ok(()),
        Err(e) => return Err(err(format!("socket(AF_INET6): {}", io::Error::from(e)))),
    };
    let index = crate::sys::if_index(tap).map_err(|e| err(format!("{tap}: {e}")))?;
    if let Err(e) = crate::sys::add_ipv6_address(sock.as_fd(), index, addr, prefix) {
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(err(format!(
                "cannot give {tap} address {addr}/{prefix}: {e}"
            )));
        }
    }
    if let Err(e) = crate::sys::add_ipv6_default_route(sock.as_fd(), index, router) {
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(err(format!(
                "cannot add an IPv6 default route via {router}: {e}"
            )));
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while tentative(index, addr) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// Whether `addr` on interface `index` is still tentative (DAD running), from /proc/net/if_inet6
/// (this process's network namespace). Unreadable: not tentative.
fn tentative(index: u32, addr: Ipv6Addr) -> bool {
    const IFA_F_TENTATIVE: u32 = 0x40;
    let hex: String = addr.octets().iter().map(|b| format!("{b:02x}")).collect();
    std::fs::read_to_string("/proc/self/net/if_inet6")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|f| {
            f.len() >= 5
                && f[0] == hex
                && u32::from_str_radix(f[1], 16).ok() == Some(index)
                && u32::from_str_radix(f[4], 16).is_ok_and(|fl| fl & IFA_F_TENTATIVE != 0)
        })
}

/// `pidfd_open(pid)`: readable once the process exits.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    let what = || format!("pidfd_open({pid})");
    let p = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| err(format!("{}: not a process id", what())))?;
    rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
        .map_err(|e| err(format!("{}: {}", what(), io::Error::from(e))))
}

/// A namespace attached before the event loop starts, waiting to be served.
pub struct Attachment {
    tap: Option<OwnedFd>,
    tap_name: String,
    watch: Vec<(OwnedFd, String)>,
    ready_fd: Option<(RawFd, OwnedFd)>,
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
    // Claimed here, once: not inherited by the helpers, nor by warren run's command.
    let claim = |fd: Option<RawFd>, opt: &str| -> io::Result<Option<(RawFd, OwnedFd)>> {
        let Some(fd) = fd else { return Ok(None) };
        match crate::sys::claim_inherited_fd(fd) {
            Some(owned) => Ok(Some((fd, owned))),
            None => Err(err(format!("{opt} {fd}: not an open descriptor"))),
        }
    };
    let mut ready_fd = claim(n.ready_fd, "--ready-fd")?;
    if let Some((fd, owned)) = claim(n.exit_fd, "--exit-fd")? {
        watch.push((owned, format!("--exit-fd {fd} closed")));
    }
    if let Some(command) = &n.command {
        if n.target.is_some() {
            return Err(err(
                "warren run makes its own namespace: --netns does not apply".into(),
            ));
        }
        let tc = TapConfig::for_config(cfg);
        let mut dns = Vec::new();
        if cfg.ipv4 {
            dns.push(std::net::IpAddr::V4(cfg.dns));
        }
        if let Some(p) = &cfg.v6 {
            dns.push(std::net::IpAddr::V6(p.dns));
        }
        let running = crate::run::start(command, &dns, dns_search)?;
        let pid = running.pid();
        // The command owns stdout: warren's own lines go to stderr (with -v) or nowhere.
        let to = if log::log_enabled!(log::Level::Info) {
            io::stderr().as_fd().try_clone_to_owned()
        } else {
            open_path(Path::new("/dev/null"), rustix::fs::OFlags::WRONLY)
        }?;
        rustix::stdio::dup2_stdout(&to)
            .map_err(|e| err(format!("dup2: {}", io::Error::from(e))))?;
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
            ready_fd: ready_fd.take(),
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
        // Nothing to report readiness of: left open, as given.
        if let Some((_, owned)) = ready_fd {
            let _ = std::os::fd::IntoRawFd::into_raw_fd(owned);
        }
        return Ok(None);
    };
    let path = netns_path(target);
    let tc = n.configure.then(|| {
        let mut t = TapConfig::for_config(cfg);
        if let Some(a) = n.address {
            t.addr = a;
        }
        if let (Some(a), Some(v6)) = (n.address6, t.v6.as_mut()) {
            v6.0 = a;
        }
        t
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
        let v4 = if c.ipv4 {
            format!(" {}/{} via {}", c.addr, c.prefix, c.gateway)
        } else {
            String::new()
        };
        let v6 =
            c.v6.map(|(a, p, r)| format!(" {a}/{p} via {r}"))
                .unwrap_or_default();
        log::info!("namespace {target}: {tap}{v4}{v6}, MTU {}", c.mtu);
    }
    Ok(Some((
        Attachment {
            tap: Some(fd),
            tap_name: tap,
            watch,
            ready_fd: ready_fd.take(),
            go: None,
        },
        None,
    )))
}

impl Attachment {
    /// Serves the tap as a port of the switch, arms the watches, reports readiness.
    pub fn install(&mut self, host: &mut Host<'_>) -> io::Result<()> {
        if let Some(fd) = self.tap.take() {
            crate::frontend::tap::add_tap(host, fd, &self.tap_name)?;
        }
        for (fd, what) in self.watch.drain(..) {
            crate::frontend::watch::stop_when_readable(host, fd, what)?;
        }
        if let Some((fd, owned)) = self.ready_fd.take() {
            if let Err(e) = rustix::io::write(&owned, b"1") {
                log::warn!("--ready-fd {fd}: {}", io::Error::from(e));
            }
            // Closed once written (slirp4netns does the same).
            drop(owned);
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
        assert!(t.ipv4);
        assert_eq!(
            t.v6,
            Some(("fec0::100".parse().unwrap(), 64, "fec0::2".parse().unwrap()))
        );
        cfg.mtu = 65520;
        cfg.ipv4 = false;
        cfg.v6 = Some(netstack::addr6::Plan6::slirp4netns(cfg.gateway_mac));
        let t = TapConfig::for_config(&cfg);
        assert_eq!(t.mtu, 65520);
        assert!(!t.ipv4);
        assert_eq!(t.v6.map(|v| v.0), Some("fd00::100".parse().unwrap()));
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
