//! Choosing what the guest's NIC is attached to: warren (the default) or
//! QEMU's built-in slirp (`WARREN_E2E_BACKEND=slirp`), which has the same
//! address plan and validates the guest side of every scenario.

use std::net::SocketAddr;
use std::path::PathBuf;

use tempfile::TempDir;

use crate::qemu::NetAttach;
use crate::warren::{fresh_netns_prefix, Warren, WarrenConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// warren over a unix stream socket.
    Warren,
    /// QEMU `-netdev user` (libslirp).
    Slirp,
}

impl Backend {
    /// `WARREN_E2E_BACKEND`: `warren` (default) or `slirp`.
    pub fn from_env() -> Backend {
        match std::env::var("WARREN_E2E_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("warren") => Backend::Warren,
            Ok("slirp") => Backend::Slirp,
            Ok(other) => panic!("WARREN_E2E_BACKEND={other:?}: expected `warren` or `slirp`"),
        }
    }

    /// Whether guest DNS queries to 10.0.2.3 go to a test-chosen upstream.
    /// slirp forwards to the host's resolv.conf servers, so tests must not
    /// send DNS queries through it at all.
    pub fn dns_upstream_configurable(self) -> bool {
        self == Backend::Warren
    }
}

/// What the virtual network should offer.
#[derive(Debug, Clone, Default)]
pub struct NetOptions {
    /// DHCP domain search list (`--dns-search` / `dnssearch=`).
    pub dns_search: Option<String>,
    /// DNS upstream for warren (`--dns-upstream`); ignored by slirp.
    pub dns_upstream: Option<SocketAddr>,
    /// `--mtu` for warren; slirp has no such option (it uses 1500).
    pub mtu: Option<u16>,
    /// Capture the guest's traffic to a pcap file (warren `--pcap`, slirp
    /// `-object filter-dump`).
    pub pcap: bool,
    /// Run the gateway inside a fresh network namespace whose
    /// `net.ipv4.ping_group_range` allows unprivileged ICMP echo.
    pub fresh_netns_with_ping: bool,
}

/// A started virtual network for one guest.
pub struct Network {
    pub backend: Backend,
    pub attach: NetAttach,
    pub warren: Option<Warren>,
    pcap: Option<PathBuf>,
    _tmp: Option<TempDir>,
}

impl Network {
    pub fn start(backend: Backend, opts: &NetOptions) -> Network {
        match backend {
            Backend::Warren => {
                let mut args = Vec::new();
                if let Some(d) = &opts.dns_search {
                    args.extend(["--dns-search".to_owned(), d.clone()]);
                }
                if let Some(u) = opts.dns_upstream {
                    args.extend(["--dns-upstream".to_owned(), u.to_string()]);
                }
                if let Some(m) = opts.mtu {
                    args.extend(["--mtu".to_owned(), m.to_string()]);
                }
                let w = Warren::spawn_with(WarrenConfig {
                    args,
                    pcap: opts.pcap,
                    fresh_netns: opts.fresh_netns_with_ping,
                    ..WarrenConfig::default()
                });
                Network {
                    backend,
                    attach: NetAttach::netdev(w.netdev()),
                    pcap: w.pcap().map(PathBuf::from),
                    warren: Some(w),
                    _tmp: None,
                }
            }
            Backend::Slirp => {
                let tmp = tempfile::Builder::new()
                    .prefix("slirp-e2e-")
                    .tempdir()
                    .expect("temp dir");
                let mut netdev = "user,id=n0,net=10.0.2.0/24".to_owned();
                if let Some(d) = &opts.dns_search {
                    netdev.push_str(&format!(",dnssearch={d}"));
                }
                let mut attach = NetAttach::netdev(netdev);
                let pcap = opts.pcap.then(|| tmp.path().join("capture.pcap"));
                if let Some(p) = &pcap {
                    attach.extra_args.extend([
                        "-object".to_owned(),
                        format!("filter-dump,id=f0,netdev=n0,file={}", p.display()),
                    ]);
                }
                if opts.fresh_netns_with_ping {
                    attach.wrapper = fresh_netns_prefix();
                }
                Network {
                    backend,
                    attach,
                    warren: None,
                    pcap,
                    _tmp: Some(tmp),
                }
            }
        }
    }

    /// The capture file, if requested.
    pub fn pcap(&self) -> Option<&std::path::Path> {
        self.pcap.as_deref()
    }

    /// Diagnostics for assertion messages: warren's stderr, if any.
    pub fn diagnostics(&self) -> String {
        match &self.warren {
            Some(w) => format!("warren stderr:\n{}", w.stderr()),
            None => String::from("(slirp backend)"),
        }
    }
}
