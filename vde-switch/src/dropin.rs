//! The passt and pasta drop-ins: when warren runs as `passt`/`pasta` (argv[0]) or as `warren passt …` /
//! `warren pasta …`, it takes their command line (parsed by `slirp_compat::passt` and `::pasta`),
//! turns it into warren's own options, and behaves as they do towards their callers:
//!
//! - **daemon**: both daemonize by default and their callers (libvirt's `qemuPasstStart`, podman's
//!   `pasta.Setup2`, rootlesskit) wait for the command to exit 0 and only then use the socket or
//!   the namespace. warren re-executes itself in the foreground (`-f`) as a new session, with
//!   stdin/stdout to /dev/null and stderr to a pipe; the child closes that pipe once it serves
//!   (socket bound, namespace attached, forwards listening, `--pid` file written). The parent
//!   then exits 0, or, if the child died first, prints what it said and exits with its status.
//!   After that point the daemon logs to `-l FILE` or nowhere.
//! - **`--one-off`** (passt): stop when the guest disconnects.
//! - **`--pid FILE`**: the serving process's PID, written before the caller is released.
//! - pasta with `--netns PATH`: stop when PATH disappears (podman removes the namespace file when
//!   the container stops, and relies on pasta quitting then); with a PID, when it exits.

use slirp_compat::passt::{self, Kind, Parsed};
use slirp_compat::pasta::{self, Target};
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// Set in the daemon child's environment: it closes its stderr once ready.
const DAEMON_ENV: &str = "WARREN_DROPIN_DAEMON";

/// What warren does beyond its own command line when it is a drop-in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    pub pid_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub one_off: bool,
    /// passt `--fd N`: serve this inherited, connected stream socket (and no listening socket).
    pub stream_fd: Option<i32>,
    /// pasta `-a` with `--config-net`: the tap's address.
    pub tap_address: Option<Ipv4Addr>,
    /// pasta `-a` with an IPv6 address and `--config-net`: the tap's IPv6 address.
    pub tap_address6: Option<std::net::Ipv6Addr>,
    /// pasta `--netns PATH`: stop when it disappears.
    pub watch_path: Option<PathBuf>,
    /// Daemonize (neither `-f` nor a command to run).
    pub daemon: bool,
    /// pasta `-T`: (gateway port, host loopback port): guestfwds on the gateway's own address.
    pub gateway_tcp: Vec<(u16, u16)>,
    /// pasta `-t auto`/`-u auto`: the helper that follows the namespace's bound ports.
    pub autofwd: Option<Box<crate::autofwd::AutoFwd>>,
}

/// What the drop-in should do.
#[derive(Debug, PartialEq, Eq)]
pub enum DropIn {
    /// Print this and exit 0 (`--help`, `--version`).
    Print(String),
    /// Run warren with these (warren-syntax) arguments and extras.
    Run(Vec<String>, Extras),
}

/// Whether argv[0] names passt or pasta.
pub fn invoked_as(argv0: &str) -> Option<Kind> {
    match Path::new(argv0).file_name().and_then(|n| n.to_str()) {
        Some("passt") => Some(Kind::Passt),
        Some("pasta") => Some(Kind::Pasta),
        _ => None,
    }
}

/// The subcommand form: `warren passt …`, `warren pasta …`.
pub fn subcommand(word: Option<&str>) -> Option<Kind> {
    match word {
        Some("passt") => Some(Kind::Passt),
        Some("pasta") => Some(Kind::Pasta),
        _ => None,
    }
}

fn common(p: &Parsed) -> Extras {
    Extras {
        pid_file: p.pid_file.clone(),
        log_file: p.log_file.clone(),
        one_off: p.one_off,
        stream_fd: p.fd,
        tap_address: None,
        tap_address6: None,
        watch_path: None,
        daemon: !p.foreground,
        gateway_tcp: p.gateway_forwards(),
        autofwd: None,
    }
}

/// Why a passt or pasta command line cannot be served.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropInError {
    #[error(transparent)]
    Passt(#[from] passt::PasstError),
    #[error(transparent)]
    Pasta(#[from] pasta::PastaError),
    /// `-t/-u auto` needs a private directory for the helper's control socket.
    #[error(
        "{}: not a private directory of this user (needed for -t/-u auto's control socket)",
        .0.display()
    )]
    PrivateDir(PathBuf),
}

/// Translates a passt or pasta command line into warren's. Notes about options accepted with a
/// different meaning go to stderr (once, by the process the caller started).
pub fn translate(kind: Kind, args: &[String]) -> Result<DropIn, DropInError> {
    let p = passt::parse(kind, args)?;
    if p.help {
        return Ok(DropIn::Print(passt::help_text(kind)));
    }
    if p.version {
        return Ok(DropIn::Print(passt::version_text(
            kind,
            env!("CARGO_PKG_VERSION"),
        )));
    }
    if std::env::var_os(DAEMON_ENV).is_none() {
        for n in &p.notes {
            eprintln!("{n}");
        }
    }
    let mut a = p.plan_args();
    let mut x = common(&p);
    match kind {
        Kind::Passt => {
            if let Some(s) = &p.socket {
                // `--opt=VALUE` in one word, so a value starting with `-` stays a value.
                a.push(format!("--socket={}", s.display()));
            }
            if let Some(addr) = p.address {
                a.push("--dhcp-start".into());
                a.push(addr.to_string());
            }
        }
        Kind::Pasta => {
            let pa = pasta::parse(args)?;
            let mut ns = Vec::new();
            if let Some(t) = &p.ns_ifname {
                ns.push(format!("--tap={t}"));
            }
            if p.config_net {
                ns.push("--configure".into());
                x.tap_address = p.address;
                x.tap_address6 = p.address6;
            }
            match pa.target {
                Target::Netns { target, userns } => {
                    if !target.bytes().all(|b| b.is_ascii_digit()) && !p.no_netns_quit {
                        x.watch_path = Some(PathBuf::from(&target));
                    }
                    if p.tcp_auto.is_some() || p.udp_auto.is_some() {
                        // The helper talks to warren through a private control socket.
                        let api = private_dir()?.join(format!("pasta-{}.api", std::process::id()));
                        a.push(format!("--api={}", api.display()));
                        x.autofwd = Some(Box::new(crate::autofwd::AutoFwd {
                            api,
                            netns: target.clone(),
                            userns: userns.clone(),
                            tcp: p.tcp_auto.clone().map(|a| auto_both(a, p.ipv4_only)),
                            udp: p.udp_auto.clone().map(|a| auto_both(a, p.ipv4_only)),
                        }));
                    }
                    ns.push(format!("--netns={target}"));
                    if let Some(u) = userns {
                        ns.push(format!("--userns={}", u.display()));
                    }
                    a.extend(ns);
                }
                Target::Command(cmd) => {
                    if (p.tcp_auto.is_some() || p.udp_auto.is_some())
                        && std::env::var_os(DAEMON_ENV).is_none()
                    {
                        eprintln!("pasta: with a command, warren forwards no ports automatically (pasta: -t/-u auto); give -t/-u PORTS");
                    }
                    // As `warren run`: the command's namespace, configured; warren exits with it.
                    let mut r = vec!["run".to_string()];
                    r.append(&mut a);
                    r.push("--".into());
                    r.extend(cmd);
                    a = r;
                    x.daemon = false;
                }
            }
        }
    }
    Ok(DropIn::Run(a, x))
}

/// `$XDG_RUNTIME_DIR/warren`, or a `warren-UID` directory in the temporary directory: created
/// mode 0700 and used only if it is ours and closed to others.
fn private_dir() -> Result<PathBuf, DropInError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("warren"),
        None => std::env::temp_dir().join(format!("warren-{}", rustix::process::getuid().as_raw())),
    };
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    match std::fs::symlink_metadata(&dir) {
        Ok(m)
            if m.is_dir()
                && m.uid() == rustix::process::getuid().as_raw()
                && m.mode() & 0o077 == 0 =>
        {
            Ok(dir)
        }
        _ => Err(DropInError::PrivateDir(dir)),
    }
}

impl Extras {
    /// Applies what warren's command line cannot say.
    pub fn apply(&self, opts: &mut crate::cli::Options) {
        if self.tap_address.is_some() {
            opts.netns.address = self.tap_address;
        }
        if self.tap_address6.is_some() {
            opts.netns.address6 = self.tap_address6;
        }
        // pasta -T: GATEWAY:P leads to the host's 127.0.0.1:Q, with or without --no-map-gw
        // (`Options::resolve` keeps these next to the `--guestfwd` ones).
        let gw = opts.config.gateway;
        opts.config
            .guestfwds
            .extend(
                self.gateway_tcp
                    .iter()
                    .map(|&(p, q)| netstack::config::GuestFwd {
                        addr: gw,
                        port: p,
                        target: netstack::config::GuestFwdTarget::Connect(
                            std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, q)),
                        ),
                    }),
            );
    }

    /// Called once everything is bound and attached, right before serving: arms `--one-off` and
    /// the namespace-path watch, writes the PID file, and releases the waiting caller.
    pub fn ready(&self, server: &mut crate::server::Server) -> io::Result<()> {
        if self.one_off {
            server.stop_when_guest_leaves();
        }
        if let Some(n) = self.stream_fd {
            let fd = crate::sys::claim_inherited_fd(n)
                .ok_or_else(|| io::Error::other(format!("--fd {n}: not an open descriptor")))?;
            let s = socket2::Socket::from(fd);
            if s.r#type().ok() != Some(socket2::Type::STREAM) {
                return Err(io::Error::other(format!("--fd {n}: not a stream socket")));
            }
            // "stream…": `--one-off` stops warren when this port closes.
            server.add_stream(s, format!("stream passt --fd {n}"))?;
        }
        if let Some(path) = &self.watch_path {
            let (mine, theirs) = std::os::unix::net::UnixStream::pair()?;
            let path = path.clone();
            let what = format!("the namespace file {} is gone", path.display());
            std::thread::spawn(move || {
                // Holding `theirs` until the path is gone; dropping it makes `mine` readable.
                while std::fs::symlink_metadata(&path).is_ok() {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                drop(theirs);
            });
            server.stop_when_readable(mine.into(), what)?;
        }
        if let Some(p) = &self.pid_file {
            std::fs::write(p, format!("{}\n", std::process::id()))
                .map_err(|e| io::Error::new(e.kind(), format!("--pid {}: {e}", p.display())))?;
            server.remove_on_exit(p.clone());
        }
        if std::env::var_os(DAEMON_ENV).is_some() {
            // Release the parent: our stderr (its pipe) goes to the log file or /dev/null.
            let to = match &self.log_file {
                Some(f) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(f)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("--log-file {}: {e}", f.display()))
                    })?,
                None => std::fs::OpenOptions::new().write(true).open("/dev/null")?,
            };
            rustix::stdio::dup2_stdout(&to)?;
            rustix::stdio::dup2_stderr(&to)?;
        }
        if let Some(a) = &self.autofwd {
            a.spawn()?;
        }
        Ok(())
    }
}

/// The daemonizing parent: starts `warren KIND -f ARGS…` as a new session and waits until it
/// serves (its stderr closes) or dies. Returns the exit code for the caller.
pub fn daemonize(kind: Kind, args: &[String]) -> ExitCode {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut child = match Command::new(&exe)
        .arg(kind.name())
        .arg("-f")
        .args(args)
        .env(DAEMON_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: cannot start the daemon: {e}", kind.name());
            return ExitCode::FAILURE;
        }
    };
    let mut said = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut said);
    }
    // EOF: the child released us, or died. A dying child is reaped promptly; give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                eprint!("{}", String::from_utf8_lossy(&said));
                eprintln!("{}: the daemon exited before serving ({st})", kind.name());
                return ExitCode::from(crate::run::status_byte(st).max(1));
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Ok(None) => break,
            Err(e) => {
                eprintln!("{}: {e}", kind.name());
                return ExitCode::FAILURE;
            }
        }
    }
    eprint!("{}", String::from_utf8_lossy(&said));
    ExitCode::SUCCESS
}

/// The daemon child starts its own session (no controlling terminal, no caller's signals).
pub fn detach_if_daemon() {
    if std::env::var_os(DAEMON_ENV).is_some() {
        let _ = rustix::process::setsid();
    }
}

/// pasta `-t auto` without an address binds both families (a dual-stack `[::]`; warren's
/// connections then follow the client's family), only 0.0.0.0 with `-4`.
fn auto_both(mut a: passt::AutoPorts, ipv4_only: bool) -> passt::AutoPorts {
    if a.addr.is_none() && !ipv4_only {
        a.addr = Some(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn run(kind: Kind, v: &[&str]) -> (Vec<String>, Extras) {
        match translate(kind, &s(v)).expect("ok") {
            DropIn::Run(a, x) => (a, x),
            DropIn::Print(t) => panic!("print {t}"),
        }
    }

    #[test]
    fn libvirt_passt() {
        let (a, x) = run(
            Kind::Passt,
            &[
                "--one-off",
                "--socket",
                "/tmp/vm-net0.socket",
                "--pid",
                "/tmp/vm-net0-passt.pid",
                "--address",
                "192.168.100.20",
                "--netmask",
                "24",
                "--tcp-ports",
                "2222:22",
            ],
        );
        assert!(x.one_off && x.daemon);
        assert_eq!(x.pid_file, Some(PathBuf::from("/tmp/vm-net0-passt.pid")));
        let o = crate::cli::parse(a.clone()).expect("warren accepts the translation");
        assert_eq!(o.config.dhcp_start, Ipv4Addr::new(192, 168, 100, 20));
        assert_eq!(o.config.gateway, Ipv4Addr::new(192, 168, 100, 2));
        assert_eq!(o.hostfwd.len(), 1);
        assert!(
            matches!(&o.listen[0], crate::server::Listen::Unix(p) if p == Path::new("/tmp/vm-net0.socket"))
        );
        let (_, x) = run(Kind::Passt, &["-f", "-s", "/tmp/s"]);
        assert!(!x.daemon && !x.one_off);
    }

    /// podman 5.x's default argv (containers/common libnetwork/pasta `createPastaArgs`: DNS at
    /// 169.254.1.1, outside warren's network) plus a `-T` forward.
    #[test]
    fn podman5_defaults() {
        let (a, x) = run(
            Kind::Pasta,
            &[
                "--config-net",
                "--dns-forward",
                "169.254.1.1",
                "-t",
                "none",
                "-u",
                "none",
                "-T",
                "5432:15432",
                "-U",
                "none",
                "--no-map-gw",
                "--quiet",
                "--map-guest-addr",
                "169.254.1.2",
                "--netns",
                "/run/user/1000/netns/x",
            ],
        );
        let mut o = crate::cli::parse(a).expect("warren accepts the DNS address");
        x.apply(&mut o);
        o.resolve(Path::new("/nonexistent/resolv.conf"))
            .expect("resolves");
        assert_eq!(o.config.dns, Ipv4Addr::new(169, 254, 1, 1));
        assert!(!o.config.host_loopback);
        assert_eq!(
            o.config.guestfwds,
            vec![netstack::config::GuestFwd {
                addr: Ipv4Addr::new(10, 0, 2, 2),
                port: 5432,
                target: netstack::config::GuestFwdTarget::Connect(
                    "127.0.0.1:15432".parse().expect("addr")
                ),
            }]
        );
        for bad in ["127.0.0.1", "0.1.2.3", "224.0.0.1", "255.255.255.255"] {
            let (a, _) = run(Kind::Pasta, &["--dns-forward", bad, "1"]);
            let e = crate::cli::parse(a).expect_err(bad);
            assert!(
                e.to_string()
                    .contains("cannot be reached through the gateway"),
                "{e}"
            );
        }
    }

    #[test]
    fn pasta_ipv6_options() {
        let (a, x) = run(
            Kind::Pasta,
            &[
                "--config-net",
                "-a",
                "fd12:3::77",
                "-g",
                "fd12:3::1",
                "-t",
                "none",
                "-u",
                "none",
                "--netns",
                "/run/user/1000/netns/x",
            ],
        );
        let mut o = crate::cli::parse(a).expect("warren accepts it");
        x.apply(&mut o);
        assert_eq!(o.netns.address6, Some("fd12:3::77".parse().unwrap()));
        let v6 = o.config.v6.expect("IPv6 on");
        assert_eq!(v6.net.to_string(), "fd12:3::/64");
        assert_eq!(
            v6.router,
            "fd12:3::1".parse::<std::net::Ipv6Addr>().unwrap()
        );
        let (a, _) = run(Kind::Pasta, &["-6", "-t", "none", "-u", "none", "4242"]);
        let o = crate::cli::parse(a).expect("IPv6 only");
        assert!(!o.config.ipv4 && o.config.v6.is_some());
        let (a, _) = run(Kind::Pasta, &["-4", "-t", "none", "-u", "none", "4242"]);
        let o = crate::cli::parse(a).expect("IPv4 only");
        assert!(o.config.ipv4 && o.config.v6.is_none());
        // -6 with an IPv4 address: warren's one-line contradiction.
        let (a, _) = run(Kind::Pasta, &["-6", "-a", "10.0.2.100", "4242"]);
        let e = crate::cli::parse(a).expect_err("contradiction").to_string();
        assert!(e.starts_with("--no-ipv4 contradicts --net"), "{e}");
    }

    #[test]
    fn pasta_namespaces() {
        let (a, x) = run(
            Kind::Pasta,
            &[
                "--config-net",
                "--address=10.0.2.100",
                "--netmask=24",
                "--gateway=10.0.2.2",
                "--dns-forward=10.0.2.3",
                "-I",
                "tap0",
                "--tcp-ports=none",
                "--userns=/proc/42/ns/user",
                "--netns=/run/user/1000/netns/x",
            ],
        );
        assert_eq!(x.watch_path, Some(PathBuf::from("/run/user/1000/netns/x")));
        let (_, y) = run(
            Kind::Pasta,
            &[
                "--no-netns-quit",
                "-t",
                "none",
                "-u",
                "none",
                "--netns",
                "/n",
            ],
        );
        assert_eq!(y.watch_path, None, "--no-netns-quit: no watch");
        assert_eq!(x.tap_address, Some(Ipv4Addr::new(10, 0, 2, 100)));
        let mut o = crate::cli::parse(a).expect("warren accepts it");
        x.apply(&mut o);
        assert!(o.netns.configure);
        assert_eq!(o.netns.target.as_deref(), Some("/run/user/1000/netns/x"));
        assert_eq!(o.netns.userns, Some(PathBuf::from("/proc/42/ns/user")));
        assert_eq!(o.netns.address, Some(Ipv4Addr::new(10, 0, 2, 100)));
        let (a, x) = run(Kind::Pasta, &["--config-net", "-t", "8080:80", "4242"]);
        assert_eq!(x.watch_path, None);
        let o = crate::cli::parse(a).expect("pid");
        assert_eq!(o.netns.target.as_deref(), Some("4242"));
        assert_eq!(o.hostfwd.len(), 1);
        let (a, x) = run(Kind::Pasta, &["--config-net", "true"]);
        assert_eq!(a.first().map(String::as_str), Some("run"));
        assert!(!x.daemon);
        assert!(
            matches!(translate(Kind::Pasta, &s(&["--help"])), Ok(DropIn::Print(h)) if h.contains("--netns"))
        );
        assert_eq!(
            translate(Kind::Passt, &s(&["--outbound-if4", "eth0"])).map_err(|e| e.to_string()),
            Err("passt: --outbound-if4: binding outbound sockets to an interface is not supported by warren (its connections follow the host's routing table)".into())
        );
        assert!(matches!(
            translate(Kind::Pasta, &s(&["--config-net"])),
            Err(DropInError::Pasta(pasta::PastaError::NoTarget))
        ));
        assert_eq!(invoked_as("/usr/bin/passt"), Some(Kind::Passt));
        assert_eq!(invoked_as("pasta"), Some(Kind::Pasta));
        assert_eq!(invoked_as("warren"), None);
    }
}
