//! `guestfwd` rules in QEMU's syntax: `[tcp]:[GUESTADDR]:GUESTPORT-TARGET`.
//!
//! A guest connecting to GUESTADDR:GUESTPORT (a virtual address on the LAN, no real host behind
//! it) is connected to TARGET. As in QEMU's `net/slirp.c` `slirp_guestfwd()`:
//! - the protocol field must be present and be `tcp` or empty (guestfwd is TCP only);
//! - GUESTPORT is decimal 1..=65535;
//! - an empty GUESTADDR means network | 0.0.0.4 (10.0.2.4 by default): libslirp's
//!   `check_guestfwd()`/`slirp_add_exec()` fill in `vnetwork | (0x0204 & ~vnetmask)`. QEMU's own
//!   examples spell 10.0.2.100 out explicitly. The address must be on the LAN and be neither the
//!   gateway nor the DNS address; one address:port can be forwarded once.
//! - TARGET `cmd:COMMAND` runs COMMAND (through `/bin/sh -c`) per connection with the
//!   connection on its stdin/stdout; anything else is a QEMU character device. warren accepts
//!   the chardevs that make sense here: `tcp:HOST:PORT` and `unix:PATH`, plus a bare
//!   `HOST:PORT` as shorthand for `tcp:HOST:PORT`. Chardev options (`,server`, `,nodelay`…)
//!   are not supported.

use crate::hostfwd::{parse_port, GuestAddrError, PortError};
use netstack::config::{Config, Ipv4Net};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a guestfwd connection goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestFwdTarget {
    /// Connect to a TCP address on the host side (`host` may be a name, or `[v6]` without
    /// brackets here; resolved by the daemon).
    Tcp { host: String, port: u16 },
    /// Connect to a unix stream socket.
    Unix(PathBuf),
    /// Run a shell command per connection, connection on stdin/stdout.
    Cmd(String),
}

/// One `guestfwd` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestFwd {
    /// `None`: the default virtual address, see [`default_guestfwd_addr`].
    pub guest_addr: Option<Ipv4Addr>,
    pub guest_port: u16,
    pub target: GuestFwdTarget,
}

const GUESTFWD_SYNTAX: &str =
    "expected [tcp]:[GUESTADDR]:GUESTPORT-HOST:PORT, -tcp:HOST:PORT, -unix:PATH or -cmd:COMMAND";

/// What is wrong with a `guestfwd` spec (shown after `guestfwd "SPEC": `).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestFwdSyntaxError {
    #[error("no ':' separators ({GUESTFWD_SYNTAX})")]
    NoSeparators,
    #[error("guestfwd is TCP only (as in QEMU)")]
    Udp,
    #[error("bad protocol {0:?}: only tcp")]
    BadProto(String),
    #[error("missing ':' after guest address ({GUESTFWD_SYNTAX})")]
    MissingColonAfterAddr,
    #[error("guest address {0:?} is not an IPv4 address")]
    NotIpv4(String),
    #[error("missing '-' before the target ({GUESTFWD_SYNTAX})")]
    MissingDash,
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("empty command after cmd:")]
    EmptyCommand,
    #[error("target {0:?}: character device options are not supported")]
    ChardevOptions(String),
    #[error("empty path after unix:")]
    EmptyPath,
    #[error("unsupported target kind {0:?} ({GUESTFWD_SYNTAX})")]
    UnsupportedKind(String),
    #[error("missing target ({GUESTFWD_SYNTAX})")]
    MissingTarget,
    #[error("target {0:?}: missing ']'")]
    MissingBracket(String),
    #[error("target {0:?}: missing ':PORT'")]
    MissingBracketedPort(String),
    #[error("target {target:?}: {host:?} is not an IPv6 address")]
    NotIpv6 { target: String, host: String },
    #[error("target {0:?}: missing ':PORT' ({GUESTFWD_SYNTAX})")]
    MissingPort(String),
    #[error(
        "target {0:?}: unsupported target kind or unbracketed IPv6 address ({GUESTFWD_SYNTAX})"
    )]
    KindOrUnbracketed(String),
    #[error("target {0:?}: missing host")]
    MissingHost(String),
    #[error("target {target:?}: bad host name {host:?}")]
    BadHost { target: String, host: String },
}

/// A `guestfwd` rule that does not parse or whose address does not fit the gateway's LAN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestFwdError {
    #[error("guestfwd {spec:?}: {kind}")]
    Syntax {
        spec: String,
        kind: GuestFwdSyntaxError,
    },
    #[error("guestfwd {}: {why}", crate::one_line(.rule.to_string()))]
    Guest {
        rule: Box<GuestFwd>,
        why: GuestAddrError,
    },
}

/// libslirp's default guestfwd address: network | (0.0.2.4 & ~mask), i.e. 10.0.2.4 by default.
pub fn default_guestfwd_addr(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) | (0x0204 & !u32::from(net.mask())))
}

impl GuestFwd {
    pub fn parse(spec: &str) -> Result<Self, GuestFwdError> {
        Self::parse_inner(spec).map_err(|kind| GuestFwdError::Syntax {
            spec: spec.to_string(),
            kind,
        })
    }

    fn parse_inner(spec: &str) -> Result<Self, GuestFwdSyntaxError> {
        use GuestFwdSyntaxError as E;
        let (proto, rest) = spec.split_once(':').ok_or(E::NoSeparators)?;
        match proto {
            "" | "tcp" => {}
            "udp" => return Err(E::Udp),
            other => return Err(E::BadProto(other.to_string())),
        }
        let (addr_s, rest) = rest.split_once(':').ok_or(E::MissingColonAfterAddr)?;
        let guest_addr = if addr_s.is_empty() {
            None
        } else {
            Some(
                addr_s
                    .parse::<Ipv4Addr>()
                    .map_err(|_| E::NotIpv4(addr_s.to_string()))?,
            )
        };
        let (port_s, target_s) = rest.split_once('-').ok_or(E::MissingDash)?;
        let guest_port = parse_port(port_s, "guest port")?;
        let target = parse_target(target_s)?;
        Ok(GuestFwd {
            guest_addr,
            guest_port,
            target,
        })
    }

    /// The guest-side address with the default filled in for `cfg`'s network, checked as
    /// libslirp does (on the LAN, not the gateway or DNS) plus not the network/broadcast address.
    pub fn resolved_addr(&self, cfg: &Config) -> Result<Ipv4Addr, GuestFwdError> {
        let ip = self
            .guest_addr
            .unwrap_or_else(|| default_guestfwd_addr(cfg.net));
        crate::hostfwd::check_guest_addr(cfg, ip).map_err(|why| GuestFwdError::Guest {
            rule: Box::new(self.clone()),
            why,
        })?;
        Ok(ip)
    }
}

/// QEMU character device backends other than tcp/unix: refused by name rather than taken for a
/// host name.
const CHARDEV_KINDS: &[&str] = &[
    "udp",
    "file",
    "pipe",
    "pty",
    "serial",
    "tty",
    "stdio",
    "null",
    "vc",
    "mon",
    "telnet",
    "tn3270",
    "websocket",
    "chardev",
    "socket",
    "msmouse",
    "braille",
    "spicevmc",
    "spiceport",
    "memory",
    "ringbuf",
    "parallel",
    "par",
    "vdagent",
    "qemu-vdagent",
    "dbus",
    "testdev",
    "wctablet",
];

fn parse_target(s: &str) -> Result<GuestFwdTarget, GuestFwdSyntaxError> {
    use GuestFwdSyntaxError as E;
    if let Some(cmd) = s.strip_prefix("cmd:") {
        if cmd.trim().is_empty() {
            return Err(E::EmptyCommand);
        }
        return Ok(GuestFwdTarget::Cmd(cmd.to_string()));
    }
    if s.contains(',') {
        return Err(E::ChardevOptions(s.to_string()));
    }
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(E::EmptyPath);
        }
        return Ok(GuestFwdTarget::Unix(PathBuf::from(path)));
    }
    let hp = s.strip_prefix("tcp:").unwrap_or(s);
    let kind = hp.split(':').next().unwrap_or_default();
    if CHARDEV_KINDS.contains(&kind) {
        return Err(E::UnsupportedKind(kind.to_string()));
    }
    if hp.is_empty() {
        return Err(E::MissingTarget);
    }
    let (host, port_s) = if let Some(inner) = hp.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| E::MissingBracket(s.to_string()))?;
        let p = after
            .strip_prefix(':')
            .ok_or_else(|| E::MissingBracketedPort(s.to_string()))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(E::NotIpv6 {
                target: s.to_string(),
                host: h.to_string(),
            });
        }
        (h, p)
    } else {
        let (h, p) = hp.rsplit_once(':').ok_or_else(|| {
            if let Some((kind, _)) = hp.split_once(':') {
                E::UnsupportedKind(kind.to_string())
            } else {
                E::MissingPort(s.to_string())
            }
        })?;
        if h.contains(':') {
            return Err(E::KindOrUnbracketed(s.to_string()));
        }
        (h, p)
    };
    if host.is_empty() {
        return Err(E::MissingHost(s.to_string()));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
    {
        return Err(E::BadHost {
            target: s.to_string(),
            host: host.to_string(),
        });
    }
    let port = parse_port(port_s, "target port")?;
    Ok(GuestFwdTarget::Tcp {
        host: host.to_string(),
        port,
    })
}

impl FromStr for GuestFwd {
    type Err = GuestFwdError;
    fn from_str(s: &str) -> Result<Self, GuestFwdError> {
        GuestFwd::parse(s)
    }
}

impl fmt::Display for GuestFwdTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFwdTarget::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp:[{host}]:{port}")
            }
            GuestFwdTarget::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            GuestFwdTarget::Unix(p) => write!(f, "unix:{}", p.display()),
            GuestFwdTarget::Cmd(c) => write!(f, "cmd:{c}"),
        }
    }
}

/// Writes the rule in QEMU syntax (`tcp:10.0.2.100:1234-tcp:127.0.0.1:4321`); round-trips.
impl fmt::Display for GuestFwd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = self.guest_addr.map(|a| a.to_string()).unwrap_or_default();
        write!(f, "tcp:{addr}:{}-{}", self.guest_port, self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> GuestFwd {
        GuestFwd::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn err(s: &str) -> String {
        match GuestFwd::parse(s) {
            Ok(g) => panic!("{s} parsed as {g:?}"),
            Err(e) => {
                let e = e.to_string();
                assert!(!e.contains('\n'));
                assert!(e.starts_with("guestfwd "), "{e}");
                e
            }
        }
    }

    #[test]
    fn qemu_forms() {
        let g = p("tcp:10.0.2.100:1234-tcp:127.0.0.1:4321");
        assert_eq!(g.guest_addr, Some(Ipv4Addr::new(10, 0, 2, 100)));
        assert_eq!(g.guest_port, 1234);
        assert_eq!(
            g.target,
            GuestFwdTarget::Tcp {
                host: "127.0.0.1".into(),
                port: 4321
            }
        );
        let g = p("tcp:10.0.2.100:1234-cmd:netcat 10.10.1.1 4321");
        assert_eq!(
            g.target,
            GuestFwdTarget::Cmd("netcat 10.10.1.1 4321".into())
        );
        // A command may contain '-' and ':'.
        let g = p("tcp:10.0.2.100:80-cmd:cat > /tmp/out-1:2");
        assert_eq!(g.target, GuestFwdTarget::Cmd("cat > /tmp/out-1:2".into()));
        let g = p(":10.0.2.5:80-unix:/run/x.sock");
        assert_eq!(g.target, GuestFwdTarget::Unix("/run/x.sock".into()));
        let g = p("tcp::80-localhost:8080");
        assert_eq!(g.guest_addr, None);
        assert_eq!(
            g.target,
            GuestFwdTarget::Tcp {
                host: "localhost".into(),
                port: 8080
            }
        );
        let g = p("tcp::80-tcp:[::1]:8080");
        assert_eq!(
            g.target,
            GuestFwdTarget::Tcp {
                host: "::1".into(),
                port: 8080
            }
        );
    }

    #[test]
    fn bad_specs() {
        assert!(err("").contains("no ':'"));
        assert!(err("udp:10.0.2.100:53-cmd:x").contains("TCP only"));
        assert!(err("sctp::1-cmd:x").contains("bad protocol"));
        assert!(err("10.0.2.100:1234-cmd:cat").contains("bad protocol"));
        assert!(err("tcp:10.0.2.100").contains("missing ':'"));
        assert!(err("tcp:10.0.2.100:1234").contains("missing '-'"));
        assert!(err("tcp:10.0.2:1234-cmd:cat").contains("not an IPv4"));
        assert!(err("tcp:10.0.2.100:0-cmd:cat").contains("out of range"));
        assert!(err("tcp:10.0.2.100:x-cmd:cat").contains("decimal"));
        assert!(err("tcp:10.0.2.100:1-cmd:").contains("empty command"));
        assert!(err("tcp:10.0.2.100:1-cmd:   ").contains("empty command"));
        assert!(err("tcp:10.0.2.100:1-unix:").contains("empty path"));
        assert!(err("tcp:10.0.2.100:1-").contains("missing target"));
        assert!(err("tcp:10.0.2.100:1-tcp:").contains("missing target"));
        assert!(err("tcp:10.0.2.100:1-tcp:h:1,server").contains("options"));
        assert!(err("tcp:10.0.2.100:1-file:/a:b").contains("unsupported"));
        assert!(err("tcp:10.0.2.100:1-stdio").contains("unsupported target kind"));
        assert!(err("tcp:10.0.2.100:1-pty:x").contains("unsupported target kind"));
        assert!(err("tcp:10.0.2.100:1-myhost").contains("missing ':PORT'"));
        assert!(err("tcp:10.0.2.100:1-host:99999").contains("out of range"));
        assert!(err("tcp:10.0.2.100:1-:80").contains("missing host"));
        assert!(err("tcp:10.0.2.100:1-tcp:[::1:80").contains("']'"));
        assert!(err("tcp:10.0.2.100:1-tcp:[::1]80").contains("':PORT'"));
        assert!(err("tcp:10.0.2.100:1-tcp:[zz]:80").contains("IPv6"));
        assert!(err("tcp:10.0.2.100:1-tcp:a b:80").contains("bad host"));
        assert!(err("tcp:é:1-cmd:x").contains("IPv4"));
    }

    #[test]
    fn default_address_follows_libslirp() {
        let cfg = Config::default();
        assert_eq!(default_guestfwd_addr(cfg.net), Ipv4Addr::new(10, 0, 2, 4));
        let n = Ipv4Net::parse("192.168.0.0/16").expect("net");
        assert_eq!(default_guestfwd_addr(n), Ipv4Addr::new(192, 168, 2, 4));
        let n = Ipv4Net::parse("10.1.1.0/28").expect("net");
        assert_eq!(default_guestfwd_addr(n), Ipv4Addr::new(10, 1, 1, 4));
        let g = p("tcp::80-cmd:cat");
        assert_eq!(g.resolved_addr(&cfg), Ok(Ipv4Addr::new(10, 0, 2, 4)));
        assert!(p("tcp:10.0.2.2:80-cmd:cat").resolved_addr(&cfg).is_err());
        assert!(p("tcp:10.0.2.3:80-cmd:cat").resolved_addr(&cfg).is_err());
        assert!(p("tcp:10.0.3.9:80-cmd:cat").resolved_addr(&cfg).is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "tcp:10.0.2.100:1234-tcp:127.0.0.1:4321",
            "tcp:10.0.2.100:1234-cmd:netcat 10.10.1.1 4321",
            "tcp::80-unix:/run/x.sock",
            "tcp::80-tcp:[::1]:8080",
            "tcp::80-tcp:example.org:8080",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
        assert_eq!(p(":10.0.2.5:1-h:2").to_string(), "tcp:10.0.2.5:1-tcp:h:2");
        assert_eq!("tcp::1-h:2".parse::<GuestFwd>(), Ok(p("tcp::1-h:2")));
    }
}
