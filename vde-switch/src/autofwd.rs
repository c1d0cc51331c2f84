//! pasta's `-t auto` / `-u auto` (pasta's default for a namespace, and what rootlesskit's
//! `--port-driver=implicit` passes): forward a host port to the namespace while a socket in the
//! namespace is bound to it.
//!
//! warren reads nothing once it is sandboxed, and cannot enter another user's namespace from its
//! threaded daemon, so a small helper does the watching: started before the sandbox (`warren
//! __autofwd …`), it enters the namespace's owning user namespace and the network namespace (as
//! the `__attach` helper does), then every second reads `/proc/net/{tcp,tcp6,udp,udp6}` (which show
//! the sockets of the reader's network namespace) and asks warren's control socket to add or remove
//! forwards (`add_hostfwd`/`remove_hostfwd`, the same machinery as `warren ctl` and podman's port
//! handler). As pasta does: TCP forwards follow listening TCP sockets; UDP forwards follow bound UDP
//! sockets and listening TCP sockets (protocols such as iperf3 pair them). Unlike pasta, sockets
//! bound only to a loopback address are skipped: forwarded connections reach the namespace through
//! its tap, not its loopback. A host port that cannot be bound (in use) is retried every scan and
//! logged once. The helper exits when warren's control socket goes away or the namespace does.

use slirp_compat::api::{AddHostFwd, ApiRequest, Family};
use slirp_compat::passt::AutoPorts;
use slirp_compat::Proto;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The helper's subcommand name.
pub const HELPER: &str = "__autofwd";
/// How often the namespace's sockets are scanned (pasta: every second).
const INTERVAL: Duration = Duration::from_secs(1);
/// `TCP_LISTEN` and the state a bound, unconnected UDP socket shows (`TCP_CLOSE`).
const TCP_LISTEN: u8 = 0x0a;
const UDP_BOUND: u8 = 0x07;

fn ports_arg(p: &AutoPorts) -> String {
    let addr = p.addr.map(|a| format!("{a}/")).unwrap_or_default();
    let r: Vec<String> = p.ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    format!(
        "{addr}{}",
        if r.is_empty() {
            "all".into()
        } else {
            r.join(",")
        }
    )
}

fn ports_from_arg(s: &str) -> Result<AutoPorts, String> {
    let (addr, list) = match s.rsplit_once('/') {
        Some((a, l)) => (
            Some(a.parse().map_err(|_| format!("bad address {a:?}"))?),
            l,
        ),
        None => (None, s),
    };
    let mut ranges = Vec::new();
    if list != "all" {
        for r in list.split(',') {
            let (a, b) = r
                .split_once('-')
                .ok_or_else(|| format!("bad range {r:?}"))?;
            let p = |x: &str| x.parse::<u16>().map_err(|_| format!("bad port {x:?}"));
            ranges.push((p(a)?, p(b)?));
        }
    }
    Ok(AutoPorts { addr, ranges })
}

/// What the helper is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoFwd {
    /// warren's control socket.
    pub api: PathBuf,
    /// `--netns` target: a PID or a namespace file.
    pub netns: String,
    pub userns: Option<PathBuf>,
    pub tcp: Option<AutoPorts>,
    pub udp: Option<AutoPorts>,
}

impl AutoFwd {
    /// The helper's arguments (after the subcommand).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            self.api.display().to_string(),
            crate::netns::netns_path(&self.netns).display().to_string(),
            self.userns
                .as_ref()
                .map(|u| u.display().to_string())
                .unwrap_or_else(|| "-".into()),
        ];
        for p in [&self.tcp, &self.udp] {
            a.push(p.as_ref().map(ports_arg).unwrap_or_else(|| "-".into()));
        }
        a
    }

    /// Starts the helper (before the sandbox: it needs `exec`); it outlives nothing of warren's.
    pub fn spawn(&self) -> io::Result<()> {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
        std::process::Command::new(exe)
            .arg(HELPER)
            .args(self.args())
            .stdin(std::process::Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start the auto-forward helper: {e}"),
                )
            })
    }
}

/// Ports of the `/proc/net/{tcp,udp}[6]` lines in `state`, bound to an address other than
/// loopback (the wildcard included). Lines that do not parse are skipped.
pub fn scan(text: &str, state: u8) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for line in text.lines().skip(1) {
        let mut f = line.split_whitespace();
        let (Some(_), Some(local), Some(_), Some(st)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if u8::from_str_radix(st, 16).ok() != Some(state) {
            continue;
        }
        let Some((addr, port)) = local.split_once(':') else {
            continue;
        };
        let (Some(ip), Ok(port)) = (proc_addr(addr), u16::from_str_radix(port, 16)) else {
            continue;
        };
        let loopback = match ip {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
        };
        if port != 0 && !loopback {
            out.insert(port);
        }
    }
    out
}

/// An address as `/proc/net` prints it: the raw bytes, 32 bits at a time in native byte order.
fn proc_addr(h: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(h.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    match h.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

fn open(p: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        p,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| io::Error::other(format!("{}: {}", p.display(), io::Error::from(e))))
}

fn ns_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd).map_err(io::Error::from)?;
    Ok((st.st_dev, st.st_ino))
}

/// Enters the namespace's owning user namespace (unless it is ours) and the network namespace.
fn enter(netns: &Path, userns: Option<&Path>) -> io::Result<()> {
    use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
    let net = open(netns)?;
    let user = match userns {
        Some(u) => Some(open(u)?),
        None => crate::sys::ns_get_userns(net.as_fd()).ok(),
    };
    if let Some(user) = user {
        let own = open(Path::new("/proc/self/ns/user"))?;
        if ns_id(user.as_fd())? != ns_id(own.as_fd())? {
            move_into_link_name_space(user.as_fd(), Some(LinkNameSpaceType::User))
                .map_err(|e| io::Error::other(format!("cannot enter the user namespace: {e}")))?;
        }
    }
    move_into_link_name_space(net.as_fd(), Some(LinkNameSpaceType::Network)).map_err(|e| {
        io::Error::other(format!(
            "cannot enter network namespace {}: {e}",
            netns.display()
        ))
    })
}

/// One request to warren's control socket; `Err` when warren is gone.
fn request(api: &Path, req: &ApiRequest) -> io::Result<serde_json::Value> {
    let mut s = std::os::unix::net::UnixStream::connect(api)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(&req.to_json())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    serde_json::from_slice(&out).map_err(|e| io::Error::other(format!("bad reply: {e}")))
}

fn read_set(files: &[&str], state: u8) -> io::Result<BTreeSet<u16>> {
    let mut out = BTreeSet::new();
    for f in files {
        match std::fs::read_to_string(Path::new("/proc/self/net").join(f)) {
            Ok(t) => out.extend(scan(&t, state)),
            // No IPv6 in the namespace's kernel: nothing bound there.
            Err(e) if e.kind() == io::ErrorKind::NotFound && f.ends_with('6') => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// `warren __autofwd API NETNS USERNS|- TCP|- UDP|-`.
pub fn helper_main(args: &[String]) -> ExitCode {
    match helper(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren: auto-forward helper: {e}");
            ExitCode::FAILURE
        }
    }
}

fn helper(args: &[String]) -> io::Result<()> {
    let [api, netns, userns, tcp, udp] = args else {
        return Err(io::Error::other("internal: bad arguments"));
    };
    let spec = |s: &String| -> io::Result<Option<AutoPorts>> {
        if s == "-" {
            return Ok(None);
        }
        ports_from_arg(s).map(Some).map_err(io::Error::other)
    };
    let (tcp, udp) = (spec(tcp)?, spec(udp)?);
    let userns = (userns != "-").then(|| PathBuf::from(userns));
    // Gone with warren: a signal when it dies, and a check of the parent every scan.
    let parent = rustix::process::getppid();
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    enter(Path::new(netns), userns.as_deref())?;
    let api = Path::new(api);
    // (proto, port) -> the forward's id in warren's table.
    let mut live: BTreeMap<(Proto, u16), u32> = BTreeMap::new();
    let mut failed: BTreeSet<(Proto, u16)> = BTreeSet::new();
    loop {
        if rustix::process::getppid() != parent {
            return Ok(());
        }
        let listening = match read_set(&["tcp", "tcp6"], TCP_LISTEN) {
            Ok(s) => s,
            Err(_) => return Ok(()), // the namespace is gone
        };
        let mut want: BTreeSet<(Proto, u16)> = BTreeSet::new();
        if let Some(t) = &tcp {
            want.extend(
                listening
                    .iter()
                    .filter(|p| t.wants(**p))
                    .map(|p| (Proto::Tcp, *p)),
            );
        }
        if let Some(u) = &udp {
            let mut bound = read_set(&["udp", "udp6"], UDP_BOUND).unwrap_or_default();
            bound.extend(&listening);
            want.extend(
                bound
                    .iter()
                    .filter(|p| u.wants(**p))
                    .map(|p| (Proto::Udp, *p)),
            );
        }
        let gone: Vec<_> = live.keys().filter(|k| !want.contains(k)).copied().collect();
        for k in gone {
            if let Some(id) = live.remove(&k) {
                if request(api, &ApiRequest::RemoveHostFwd { id }).is_err() {
                    return Ok(()); // warren is gone
                }
            }
        }
        failed.retain(|k| want.contains(k));
        let new: Vec<(Proto, u16)> = want
            .iter()
            .filter(|k| !live.contains_key(k))
            .copied()
            .collect();
        for (proto, port) in new {
            let ports = if proto == Proto::Tcp { &tcp } else { &udp };
            let host_addr = ports
                .as_ref()
                .and_then(|p| p.addr)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let req = ApiRequest::AddHostFwd(AddHostFwd {
                proto,
                family: Family::Any,
                host_addr,
                host_port: port,
                guest_addr: None,
                guest_port: port,
            });
            let reply = match request(api, &req) {
                Ok(r) => r,
                Err(_) => return Ok(()), // warren is gone
            };
            match reply["return"]["id"]
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
            {
                Some(id) => {
                    live.insert((proto, port), id);
                    failed.remove(&(proto, port));
                }
                None => {
                    if failed.insert((proto, port)) {
                        let why = reply["error"]["desc"]
                            .as_str()
                            .unwrap_or("no id in the reply");
                        log_line(&format!(
                            "cannot forward {proto} port {port}: {why} (retrying)"
                        ));
                    }
                }
            }
        }
        std::thread::sleep(INTERVAL);
    }
}

fn log_line(s: &str) {
    eprintln!("warren: auto-forward: {s}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_lines() {
        // 0.0.0.0:8080 LISTEN, 127.0.0.1:9090 LISTEN (loopback: skipped), 10.0.2.100:443 LISTEN,
        // 0.0.0.0:5555 ESTABLISHED (skipped), a garbage line.
        let lo = format!("{:08X}", u32::from_ne_bytes([127, 0, 0, 1]));
        let tap = format!("{:08X}", u32::from_ne_bytes([10, 0, 2, 100]));
        let tcp = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1\n\
   1: {lo}:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2\n\
   2: {tap}:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 3\n\
   3: 00000000:15B3 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 4\n\
   4: zz\n"
        );
        assert_eq!(scan(&tcp, TCP_LISTEN), BTreeSet::from([8080, 443]));
        let words = |b: [u8; 16]| -> String {
            b.chunks(4)
                .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        };
        let tcp6 = format!(
            "header\n 0: {any}:0016 {any}:0000 0A x\n 1: {lo}:0017 {any}:0000 0A x\n",
            any = words([0; 16]),
            lo = words(Ipv6Addr::LOCALHOST.octets()),
        );
        assert_eq!(scan(&tcp6, TCP_LISTEN), BTreeSet::from([22]));
        assert_eq!(
            proc_addr(&format!("{:08X}", u32::from_ne_bytes([10, 0, 2, 15]))),
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)))
        );
        assert_eq!(proc_addr("123"), None);
    }

    #[test]
    fn helper_arguments_round_trip() {
        let a = AutoPorts {
            addr: Some("127.0.0.1".parse().expect("ip")),
            ranges: vec![(8000, 8010), (9000, 9000)],
        };
        assert_eq!(ports_from_arg(&ports_arg(&a)), Ok(a.clone()));
        assert!(a.wants(8005) && a.wants(9000) && !a.wants(8999));
        let all = AutoPorts::default();
        assert_eq!(ports_arg(&all), "all");
        assert_eq!(ports_from_arg("all"), Ok(all));
        assert!(ports_from_arg("x/1-2").is_err() && ports_from_arg("5").is_err());
    }
}
