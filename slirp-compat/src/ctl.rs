//! `warren ctl`: the client side of the API socket.
//!
//! `warren ctl --api PATH add-hostfwd SPEC | list | remove ID | leases | stats`
//! turns into request bytes ([`CtlCommand::request_bytes`], one request per connection) and
//! [`render_reply`] turns each reply into text for the terminal. SPEC is a QEMU hostfwd rule
//! (`tcp::8080-:80`, ranges allowed); a range becomes one `add_hostfwd` per port.

use crate::api::{AddHostFwd, ApiRequest, Family};
use crate::esc;
use crate::hostfwd::{HostFwd, HostFwdError};
use serde_json::Value;
use std::path::PathBuf;

const COMMANDS: &str = "add-hostfwd, list, remove, leases, stats, vxlan, vxlan-add or vxlan-remove";

/// A `warren ctl` command line that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    #[error("unknown option {0:?} (see warren ctl --help)")]
    UnknownOption(String),
    #[error("unexpected argument {0:?} (see warren ctl --help)")]
    UnexpectedArgument(String),
    #[error("unknown command {0:?}: {COMMANDS}")]
    UnknownCommand(String),
    #[error("--api needs a PATH")]
    ApiNeedsPath,
    /// Any other complaint of clap's, as one line ([`clap_error_line`]).
    #[error("{}", esc(.0))]
    Clap(String),
    #[error("--api PATH is required (see warren ctl --help)")]
    ApiRequired,
    #[error("missing command: {COMMANDS}")]
    MissingCommand,
    #[error("usage: warren ctl --api PATH {0}")]
    Usage(&'static str),
    #[error(transparent)]
    HostFwd(#[from] HostFwdError),
    #[error("remove {0:?}: ID must be a positive number")]
    BadId(String),
}

/// A reply from the API socket that is an error or cannot be shown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The server's own error description.
    #[error("{0}")]
    Server(String),
    /// Not JSON (the first 200 bytes, lossily decoded).
    #[error("unreadable reply: {0:?}")]
    Unreadable(String),
    /// The reply lacks the member this request's answer needs.
    #[error("reply has no {0}")]
    Missing(&'static str),
}

/// `warren ctl`'s command line (also a subcommand of `warren`'s own definition, so `warren --help`,
/// the completions and the man page describe it from this one place).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
#[command(
    about = "Talk to a running warren (or slirp4netns) API socket",
    long_about = "Talks to a running warren (or slirp4netns) API socket (warren --api PATH, \
                  slirp4netns --api-socket PATH). Each command is one request on its own connection."
)]
pub struct CtlArgs {
    /// The API socket (warren --api PATH)
    #[arg(long, value_name = "PATH", global = true)]
    pub api: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<CtlSubcommand>,
}

/// The commands of `warren ctl`.
#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum CtlSubcommand {
    /// Forward a host port: [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT
    /// (e.g. tcp::8080-:80, udp:127.0.0.1:5353-10.0.2.15:53, tcp::2000-2010-:2000-2010)
    #[command(visible_alias = "add")]
    AddHostfwd {
        /// The QEMU hostfwd rule (a range becomes one forwarding per port)
        #[arg(value_name = "SPEC")]
        spec: Option<String>,
    },
    /// List forwardings
    #[command(visible_alias = "list-hostfwd")]
    List,
    /// Remove a forwarding
    #[command(visible_alias = "remove-hostfwd", alias = "rm")]
    Remove {
        /// The forwarding's id (as `list` shows it)
        #[arg(value_name = "ID")]
        id: Option<String>,
    },
    /// List DHCP leases
    #[command(visible_alias = "list-leases")]
    Leases,
    /// Show the gateway's counters
    Stats,
    /// List the VXLAN uplink's remote VTEPs and learnt MACs
    Vxlan,
    /// Add a remote VTEP to the VXLAN uplink: ADDR[:PORT] (port 4789)
    VxlanAdd {
        #[arg(value_name = "REMOTE")]
        remote: Option<String>,
    },
    /// Remove a remote VTEP from the VXLAN uplink
    #[command(alias = "vxlan-rm")]
    VxlanRemove {
        #[arg(value_name = "REMOTE")]
        remote: Option<String>,
    },
}

// `warren ctl` alone (for parsing the words after `ctl`); `//`: a doc comment would be its about.
#[derive(clap::Parser, Debug)]
#[command(name = "ctl", bin_name = "warren ctl", disable_help_subcommand = true)]
struct CtlCli {
    #[command(flatten)]
    args: CtlArgs,
}

/// What `warren ctl` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ctl {
    Run(CtlCommand),
    /// `-h`/`--help`: print this (generated from [`CtlArgs`]).
    Help(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlCommand {
    pub api: PathBuf,
    /// Sent one per connection, in order.
    pub requests: Vec<ApiRequest>,
}

impl CtlCommand {
    pub fn request_bytes(&self) -> Vec<Vec<u8>> {
        self.requests.iter().map(ApiRequest::to_json).collect()
    }
}

/// A clap error as one line without the `error: ` prefix (usage and tips dropped; a list that
/// follows a colon, such as missing arguments, joined in).
pub fn clap_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut out = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            if out.is_empty() {
                continue;
            }
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(line);
    }
    out.strip_prefix("error: ").unwrap_or(&out).to_string()
}

/// The value clap reports as the offending argument, if it names one.
fn clap_invalid_arg(e: &clap::Error, kind: clap::error::ContextKind) -> Option<String> {
    match e.get(kind) {
        Some(clap::error::ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Parses the arguments after `ctl`.
pub fn parse_ctl_args<I, S>(args: I) -> Result<Ctl, CtlError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    use clap::error::{ContextKind, ErrorKind};
    use clap::Parser;
    let argv = std::iter::once("warren ctl".to_string()).chain(args.into_iter().map(Into::into));
    let a = match CtlCli::try_parse_from(argv) {
        Ok(c) => c.args,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let mut text = e.render().to_string();
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    Ok(Ctl::Help(text))
                }
                ErrorKind::UnknownArgument => {
                    let a = clap_invalid_arg(&e, ContextKind::InvalidArg)
                        .unwrap_or_else(|| clap_error_line(&e));
                    if a.starts_with('-') && a.len() > 1 {
                        Err(CtlError::UnknownOption(a))
                    } else {
                        Err(CtlError::UnexpectedArgument(a))
                    }
                }
                ErrorKind::InvalidSubcommand => {
                    let c = clap_invalid_arg(&e, ContextKind::InvalidSubcommand)
                        .unwrap_or_else(|| clap_error_line(&e));
                    Err(CtlError::UnknownCommand(c))
                }
                ErrorKind::InvalidValue if e.get(ContextKind::InvalidArg).is_some() => {
                    Err(CtlError::ApiNeedsPath)
                }
                _ => Err(CtlError::Clap(clap_error_line(&e))),
            };
        }
    };
    let api = match a.api {
        Some(p) if !p.as_os_str().is_empty() => p,
        Some(_) => return Err(CtlError::ApiNeedsPath),
        None => return Err(CtlError::ApiRequired),
    };
    let requests = match a.command.ok_or(CtlError::MissingCommand)? {
        CtlSubcommand::AddHostfwd { spec } => {
            let spec = spec.ok_or(CtlError::Usage("add-hostfwd SPEC"))?;
            HostFwd::parse(&spec)?
                .expand()
                .into_iter()
                .map(|r| {
                    ApiRequest::AddHostFwd(AddHostFwd {
                        proto: r.proto,
                        family: Family::Any,
                        host_addr: r.host.ip(),
                        host_port: r.host.port(),
                        guest_addr: r.guest_addr,
                        guest_port: r.guest_port,
                    })
                })
                .collect()
        }
        CtlSubcommand::List => vec![ApiRequest::ListHostFwd],
        CtlSubcommand::Remove { id } => {
            let raw = id.ok_or(CtlError::Usage("remove ID"))?;
            let id = raw
                .parse::<u32>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| CtlError::BadId(raw.clone()))?;
            vec![ApiRequest::RemoveHostFwd { id }]
        }
        CtlSubcommand::Leases => vec![ApiRequest::ListLeases],
        CtlSubcommand::Stats => vec![ApiRequest::Stats],
        CtlSubcommand::Vxlan => vec![ApiRequest::ListVxlan],
        CtlSubcommand::VxlanAdd { remote } => vec![ApiRequest::AddVxlanRemote {
            remote: remote.ok_or(CtlError::Usage("vxlan-add REMOTE[:PORT]"))?,
        }],
        CtlSubcommand::VxlanRemove { remote } => vec![ApiRequest::RemoveVxlanRemote {
            remote: remote.ok_or(CtlError::Usage("vxlan-remove REMOTE[:PORT]"))?,
        }],
    };
    Ok(Ctl::Run(CtlCommand { api, requests }))
}

/// Turns a reply into terminal text (`Err` carries the server's error description).
pub fn render_reply(req: &ApiRequest, reply: &[u8]) -> Result<String, ReplyError> {
    let v: Value = serde_json::from_slice(reply).map_err(|_| {
        ReplyError::Unreadable(String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned())
    })?;
    if let Some(e) = v.get("error") {
        return Err(ReplyError::Server(
            e.get("desc")
                .and_then(Value::as_str)
                .unwrap_or("error without a description")
                .to_string(),
        ));
    }
    let ret = v.get("return");
    let s = |x: &Value| match x {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    Ok(match req {
        ApiRequest::AddHostFwd(_) => {
            let id = ret
                .and_then(|r| r.get("id"))
                .ok_or(ReplyError::Missing("id"))?;
            format!("id {}\n", s(id))
        }
        ApiRequest::RemoveHostFwd { .. }
        | ApiRequest::AddVxlanRemote { .. }
        | ApiRequest::RemoveVxlanRemote { .. } => String::new(),
        ApiRequest::ListVxlan => {
            let r = ret.ok_or(ReplyError::Missing("return"))?;
            let mut out = format!(
                "VNI {}  local {}  group {}  MTU {}\nVTEP\tKIND\n",
                r.get("vni").map(s).unwrap_or_default(),
                r.get("local").map(s).unwrap_or_default(),
                r.get("group").map(s).unwrap_or_else(|| "-".into()),
                r.get("mtu").map(s).unwrap_or_default(),
            );
            for v in r
                .get("vteps")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "{}\t{}\n",
                    v.get("vtep").map(s).unwrap_or_default(),
                    v.get("kind").map(s).unwrap_or_default()
                ));
            }
            out.push_str("MAC\tVTEP\tIDLE\n");
            for m in r
                .get("macs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "{}\t{}\t{}s\n",
                    m.get("mac").map(s).unwrap_or_default(),
                    m.get("vtep").map(s).unwrap_or_default(),
                    m.get("idle_secs").map(s).unwrap_or_default()
                ));
            }
            out
        }
        ApiRequest::ListHostFwd => {
            // warren and slirp4netns's man page: return.entries; slirp4netns's code: entries.
            let entries = ret
                .and_then(|r| r.get("entries"))
                .or_else(|| v.get("entries"))
                .and_then(Value::as_array)
                .ok_or(ReplyError::Missing("entries"))?;
            let mut out = String::from("ID\tPROTO\tHOST\tGUEST\n");
            for e in entries {
                let addr = |k4: &str, k6: &str| {
                    e.get(k4)
                        .map(s)
                        .or_else(|| e.get(k6).map(|a| format!("[{}]", s(a))))
                        .unwrap_or_else(|| "-".into())
                };
                out.push_str(&format!(
                    "{}\t{}\t{}:{}\t{}:{}\n",
                    e.get("id").map(s).unwrap_or_default(),
                    e.get("proto").map(s).unwrap_or_default(),
                    addr("host_addr", "host_addr6"),
                    e.get("host_port").map(s).unwrap_or_default(),
                    addr("guest_addr", "guest_addr6"),
                    e.get("guest_port").map(s).unwrap_or_default(),
                ));
            }
            out
        }
        ApiRequest::ListLeases => {
            let leases = ret
                .and_then(|r| r.get("leases"))
                .and_then(Value::as_array)
                .ok_or(ReplyError::Missing("leases"))?;
            let mut out = String::from("MAC\tIP\tEXPIRES_IN\tHOSTNAME\tIPV6\n");
            for l in leases {
                let v6: Vec<String> = l
                    .get("ipv6")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(s).collect())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    l.get("mac").map(s).unwrap_or_default(),
                    l.get("ip").map(s).unwrap_or_else(|| "-".into()),
                    l.get("expires_in")
                        .map(|e| format!("{}s", s(e)))
                        .unwrap_or_else(|| "-".into()),
                    l.get("hostname").map(s).unwrap_or_else(|| "-".into()),
                    if v6.is_empty() {
                        "-".into()
                    } else {
                        v6.join(",")
                    },
                ));
            }
            out
        }
        ApiRequest::Stats => {
            let m = ret
                .and_then(Value::as_object)
                .ok_or(ReplyError::Missing("counters"))?;
            m.iter().map(|(k, x)| format!("{k}\t{}\n", s(x))).collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{self, HostFwdTable, LeaseInfo};
    use crate::hostfwd::Proto;
    use std::net::Ipv4Addr;

    fn run(args: &[&str]) -> CtlCommand {
        match parse_ctl_args(args.iter().copied()) {
            Ok(Ctl::Run(c)) => c,
            other => panic!("{args:?}: {other:?}"),
        }
    }
    fn err(args: &[&str]) -> String {
        let e = parse_ctl_args(args.iter().copied())
            .expect_err("should fail")
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn commands_to_requests() {
        let c = run(&["--api", "/tmp/a.sock", "add-hostfwd", "tcp::8080-:80"]);
        assert_eq!(c.api, PathBuf::from("/tmp/a.sock"));
        assert_eq!(
            c.request_bytes(),
            vec![br#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_port":80}}"#.to_vec()]
        );
        let c = run(&["add-hostfwd", "udp:127.0.0.1:5353-10.0.2.15:53", "--api=/x"]);
        let r = api::parse_request(&c.request_bytes()[0]).expect("parse");
        match r {
            ApiRequest::AddHostFwd(a) => {
                assert_eq!(a.proto, Proto::Udp);
                assert_eq!(a.guest_addr, Some("10.0.2.15".parse().expect("ip")));
                assert_eq!((a.host_port, a.guest_port), (5353, 53));
            }
            other => panic!("{other:?}"),
        }
        let c = run(&["--api", "/x", "add", "tcp::2000-2002-:3000-3002"]);
        assert_eq!(c.requests.len(), 3);
        assert_eq!(
            run(&["--api", "/x", "list"]).requests,
            vec![ApiRequest::ListHostFwd]
        );
        assert_eq!(
            run(&["--api", "/x", "remove", "4"]).request_bytes(),
            vec![br#"{"execute":"remove_hostfwd","arguments":{"id":4}}"#.to_vec()]
        );
        assert_eq!(
            run(&["--api", "/x", "leases"]).requests,
            vec![ApiRequest::ListLeases]
        );
        assert_eq!(
            run(&["--api", "/x", "stats"]).request_bytes(),
            vec![br#"{"execute":"stats"}"#.to_vec()]
        );
        assert!(
            matches!(parse_ctl_args(["--help"]), Ok(Ctl::Help(h)) if h.contains("add-hostfwd") && h.contains("--api"))
        );
        assert!(matches!(
            parse_ctl_args(["--api", "/x", "list", "-h"]),
            Ok(Ctl::Help(_))
        ));
        // Old spellings stay accepted.
        for (alias, want) in [
            ("list-hostfwd", ApiRequest::ListHostFwd),
            ("list-leases", ApiRequest::ListLeases),
        ] {
            assert_eq!(run(&["--api", "/x", alias]).requests, vec![want]);
        }
        for alias in ["rm", "remove-hostfwd"] {
            assert_eq!(
                run(&["--api", "/x", alias, "3"]).requests,
                vec![ApiRequest::RemoveHostFwd { id: 3 }]
            );
        }
    }

    #[test]
    fn vxlan_commands() {
        assert_eq!(
            run(&["--api", "/a", "vxlan"]).request_bytes(),
            vec![br#"{"execute":"list_vxlan"}"#.to_vec()]
        );
        assert_eq!(
            run(&["--api", "/a", "vxlan-add", "192.0.2.7:4789"]).request_bytes(),
            vec![
                br#"{"execute":"add_vxlan_remote","arguments":{"remote":"192.0.2.7:4789"}}"#
                    .to_vec()
            ]
        );
        assert_eq!(
            run(&["--api", "/a", "vxlan-remove", "192.0.2.7"]).request_bytes(),
            vec![
                br#"{"execute":"remove_vxlan_remote","arguments":{"remote":"192.0.2.7"}}"#.to_vec()
            ]
        );
        assert!(err(&["--api", "/a", "vxlan-add"]).contains("vxlan-add REMOTE"));
        let text = render_reply(
            &ApiRequest::ListVxlan,
            br#"{"return":{"vni":42,"local":["0.0.0.0:4789"],"group":null,"mtu":1450,
               "vteps":[{"vtep":"192.0.2.7:4789","kind":"static"}],
               "macs":[{"mac":"02:00:00:00:00:01","vtep":"192.0.2.7:4789","idle_secs":3}]}}"#,
        )
        .expect("renders");
        assert!(text.contains("VNI 42"), "{text}");
        assert!(text.contains("192.0.2.7:4789\tstatic"), "{text}");
        assert!(
            text.contains("02:00:00:00:00:01\t192.0.2.7:4789\t3s"),
            "{text}"
        );
        assert_eq!(
            render_reply(
                &ApiRequest::ListVxlan,
                br#"{"error":{"desc":"no VXLAN uplink"}}"#
            ),
            Err(ReplyError::Server("no VXLAN uplink".into()))
        );
    }

    #[test]
    fn bad_command_lines() {
        assert!(err(&["list"]).contains("--api PATH is required"));
        assert!(err(&["--api"]).contains("--api needs a PATH"));
        assert!(err(&["--api=", "list"]).contains("--api needs a PATH"));
        assert!(err(&["--api", "/x"]).contains("missing command"));
        assert!(err(&["--api", "/x", "frob"]).contains("unknown command \"frob\""));
        assert!(err(&["--api", "/x", "--frob", "list"]).contains("unknown option"));
        assert!(err(&["--api", "/x", "list", "extra"]).contains("unexpected argument \"extra\""));
        assert!(err(&["--api", "/x", "remove"]).contains("usage: warren ctl --api PATH remove ID"));
        assert!(err(&["--api", "/x", "remove", "0"]).contains("positive"));
        assert!(err(&["--api", "/x", "remove", "x"]).contains("positive"));
        assert!(err(&["--api", "/x", "add-hostfwd"]).contains("add-hostfwd SPEC"));
        assert!(err(&["--api", "/x", "add-hostfwd", "tcp::1-:99999"]).starts_with("hostfwd "));
    }

    #[test]
    fn rendering() {
        let add = ApiRequest::AddHostFwd(AddHostFwd {
            proto: Proto::Tcp,
            family: Family::Any,
            host_addr: "0.0.0.0".parse().expect("ip"),
            host_port: 1,
            guest_addr: None,
            guest_port: 2,
        });
        assert_eq!(
            render_reply(&add, &api::id_response(7)),
            Ok("id 7\n".into())
        );
        assert_eq!(
            render_reply(
                &add,
                &api::error_response("bad request: add_hostfwd: bad arguments.proto")
            ),
            Err(ReplyError::Server(
                "bad request: add_hostfwd: bad arguments.proto".into()
            ))
        );
        assert!(render_reply(&add, b"garbage")
            .unwrap_err()
            .to_string()
            .contains("unreadable reply"));
        assert_eq!(
            render_reply(&add, b"{}").unwrap_err().to_string(),
            "reply has no id"
        );
        assert_eq!(
            render_reply(&ApiRequest::RemoveHostFwd { id: 1 }, &api::empty_response()),
            Ok(String::new())
        );
        let mut t = HostFwdTable::new();
        t.add(
            Proto::Tcp,
            "0.0.0.0:8080".parse().expect("sa"),
            "10.0.2.100:80".parse().expect("sa"),
        )
        .expect("add");
        t.add(
            Proto::Udp,
            "[::1]:53".parse().expect("sa"),
            "10.0.2.100:53".parse().expect("sa"),
        )
        .expect("add");
        let text =
            render_reply(&ApiRequest::ListHostFwd, &api::list_response(t.list())).expect("ok");
        assert_eq!(
            text,
            "ID\tPROTO\tHOST\tGUEST\n1\ttcp\t0.0.0.0:8080\t10.0.2.100:80\n2\tudp\t[::1]:53\t10.0.2.100:53\n"
        );
        // slirp4netns's own list reply (no "return") renders too.
        let real = br#"{"entries":[{"id":42,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}"#;
        assert!(render_reply(&ApiRequest::ListHostFwd, real)
            .expect("ok")
            .contains("42\ttcp\t0.0.0.0:8080"));
        let leases = api::leases_response(&[
            LeaseInfo::new([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 2, 15), None, 60),
            LeaseInfo::new([2, 0, 0, 0, 0, 2], Ipv4Addr::new(10, 0, 2, 16), None, 61).with_ipv6(
                vec![
                    "fec0::16".parse().expect("v6"),
                    "fe80::2".parse().expect("v6"),
                ],
            ),
        ]);
        assert_eq!(
            render_reply(&ApiRequest::ListLeases, &leases),
            Ok("MAC\tIP\tEXPIRES_IN\tHOSTNAME\tIPV6\n02:00:00:00:00:01\t10.0.2.15\t60s\t-\t-\n02:00:00:00:00:02\t10.0.2.16\t61s\t-\tfec0::16,fe80::2\n".into())
        );
        // An IPv6-only guest: "-" for the IPv4 columns.
        let leases = api::leases_response(&[LeaseInfo::ipv6_only(
            [2, 0, 0, 0, 0, 3],
            vec!["fec0::3".parse().expect("v6")],
        )]);
        assert_eq!(
            render_reply(&ApiRequest::ListLeases, &leases),
            Ok("MAC\tIP\tEXPIRES_IN\tHOSTNAME\tIPV6\n02:00:00:00:00:03\t-\t-\t-\tfec0::3\n".into())
        );
        assert_eq!(
            render_reply(&ApiRequest::Stats, &api::stats_response([("frames_in", 5)])),
            Ok("frames_in\t5\n".into())
        );
        assert!(render_reply(&ApiRequest::Stats, b"{\"return\":3}").is_err());
        assert!(render_reply(&ApiRequest::ListLeases, b"{\"return\":{}}").is_err());
    }
}
