//! `warren ctl`: the client side of the API socket.
//!
//! `warren ctl --api PATH add-hostfwd SPEC | list | remove ID | leases | stats`
//! turns into request bytes ([`CtlCommand::request_bytes`], one request per connection) and
//! [`render_reply`] turns each reply into text for the terminal. SPEC is a QEMU hostfwd rule
//! (`tcp::8080-:80`, ranges allowed); a range becomes one `add_hostfwd` per port.

use crate::api::{AddHostFwd, ApiRequest, Family};
use crate::hostfwd::HostFwd;
use serde_json::Value;
use std::path::PathBuf;

pub const CTL_USAGE: &str = "\
usage: warren ctl --api PATH COMMAND

Talks to a running warren (or slirp4netns) API socket.

Commands:
  add-hostfwd SPEC   forward a host port: [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT
                     (e.g. tcp::8080-:80, udp:127.0.0.1:5353-10.0.2.15:53, tcp::2000-2010-:2000-2010)
  list               list forwardings (list-hostfwd)
  remove ID          remove a forwarding (remove-hostfwd)
  leases             list DHCP leases
  stats              show the gateway's counters
";

/// What `warren ctl` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ctl {
    Run(CtlCommand),
    /// `-h`/`--help`: print [`CTL_USAGE`].
    Help,
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

/// Parses the arguments after `ctl`.
pub fn parse_ctl_args<I, S>(args: I) -> Result<Ctl, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    parse_ctl_args_raw(args).map_err(crate::one_line)
}

fn parse_ctl_args_raw<I, S>(args: I) -> Result<Ctl, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut api = None;
    let mut words = Vec::new();
    let mut it = args.into_iter().map(Into::into);
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            return Ok(Ctl::Help);
        } else if a == "--api" {
            api = Some(it.next().ok_or("--api needs a PATH")?);
        } else if let Some(p) = a.strip_prefix("--api=") {
            api = Some(p.to_string());
        } else if a.starts_with('-') && a.len() > 1 {
            return Err(format!("unknown option {a:?} (see warren ctl --help)"));
        } else {
            words.push(a);
        }
    }
    let api = match api {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        Some(_) => return Err("--api needs a PATH".into()),
        None => return Err("--api PATH is required (see warren ctl --help)".into()),
    };
    let (cmd, rest) = words
        .split_first()
        .ok_or("missing command: add-hostfwd, list, remove, leases or stats")?;
    let want = |n: usize, usage: &str| -> Result<(), String> {
        if rest.len() == n {
            Ok(())
        } else {
            Err(format!("usage: warren ctl --api PATH {usage}"))
        }
    };
    let requests = match cmd.as_str() {
        "add-hostfwd" | "add" => {
            want(1, "add-hostfwd SPEC")?;
            HostFwd::parse(&rest[0])?
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
        "list" | "list-hostfwd" => {
            want(0, "list")?;
            vec![ApiRequest::ListHostFwd]
        }
        "remove" | "remove-hostfwd" | "rm" => {
            want(1, "remove ID")?;
            let id = rest[0]
                .parse::<u32>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| format!("remove {:?}: ID must be a positive number", rest[0]))?;
            vec![ApiRequest::RemoveHostFwd { id }]
        }
        "leases" | "list-leases" => {
            want(0, "leases")?;
            vec![ApiRequest::ListLeases]
        }
        "stats" => {
            want(0, "stats")?;
            vec![ApiRequest::Stats]
        }
        other => {
            return Err(format!(
                "unknown command {other:?}: add-hostfwd, list, remove, leases or stats"
            ))
        }
    };
    Ok(Ctl::Run(CtlCommand { api, requests }))
}

/// Turns a reply into terminal text (`Err` carries the server's error description).
pub fn render_reply(req: &ApiRequest, reply: &[u8]) -> Result<String, String> {
    let v: Value = serde_json::from_slice(reply).map_err(|_| {
        format!(
            "unreadable reply: {:?}",
            String::from_utf8_lossy(&reply[..reply.len().min(200)])
        )
    })?;
    if let Some(e) = v.get("error") {
        return Err(e
            .get("desc")
            .and_then(Value::as_str)
            .unwrap_or("error without a description")
            .to_string());
    }
    let ret = v.get("return");
    let s = |x: &Value| match x {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    Ok(match req {
        ApiRequest::AddHostFwd(_) => {
            let id = ret.and_then(|r| r.get("id")).ok_or("reply has no id")?;
            format!("id {}\n", s(id))
        }
        ApiRequest::RemoveHostFwd { .. } => String::new(),
        ApiRequest::ListHostFwd => {
            // warren and slirp4netns's man page: return.entries; slirp4netns's code: entries.
            let entries = ret
                .and_then(|r| r.get("entries"))
                .or_else(|| v.get("entries"))
                .and_then(Value::as_array)
                .ok_or("reply has no entries")?;
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
                .ok_or("reply has no leases")?;
            let mut out = String::from("MAC\tIP\tEXPIRES_IN\tHOSTNAME\n");
            for l in leases {
                out.push_str(&format!(
                    "{}\t{}\t{}s\t{}\n",
                    l.get("mac").map(s).unwrap_or_default(),
                    l.get("ip").map(s).unwrap_or_default(),
                    l.get("expires_in").map(s).unwrap_or_default(),
                    l.get("hostname").map(s).unwrap_or_else(|| "-".into()),
                ));
            }
            out
        }
        ApiRequest::Stats => {
            let m = ret
                .and_then(Value::as_object)
                .ok_or("reply has no counters")?;
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
        let e = parse_ctl_args(args.iter().copied()).expect_err("should fail");
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
        assert_eq!(parse_ctl_args(["--help"]), Ok(Ctl::Help));
        assert_eq!(parse_ctl_args(["--api", "/x", "list", "-h"]), Ok(Ctl::Help));
    }

    #[test]
    fn bad_command_lines() {
        assert!(err(&["list"]).contains("--api PATH is required"));
        assert!(err(&["--api"]).contains("--api needs a PATH"));
        assert!(err(&["--api=", "list"]).contains("--api needs a PATH"));
        assert!(err(&["--api", "/x"]).contains("missing command"));
        assert!(err(&["--api", "/x", "frob"]).contains("unknown command \"frob\""));
        assert!(err(&["--api", "/x", "--frob", "list"]).contains("unknown option"));
        assert!(
            err(&["--api", "/x", "list", "extra"]).contains("usage: warren ctl --api PATH list")
        );
        assert!(err(&["--api", "/x", "remove"]).contains("remove ID"));
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
            Err("bad request: add_hostfwd: bad arguments.proto".into())
        );
        assert!(render_reply(&add, b"garbage")
            .unwrap_err()
            .contains("unreadable reply"));
        assert!(render_reply(&add, b"{}").unwrap_err().contains("no id"));
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
        let leases = api::leases_response(&[LeaseInfo::new(
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 0, 2, 15),
            None,
            60,
        )]);
        assert_eq!(
            render_reply(&ApiRequest::ListLeases, &leases),
            Ok("MAC\tIP\tEXPIRES_IN\tHOSTNAME\n02:00:00:00:00:01\t10.0.2.15\t60s\t-\n".into())
        );
        assert_eq!(
            render_reply(&ApiRequest::Stats, &api::stats_response([("frames_in", 5)])),
            Ok("frames_in\t5\n".into())
        );
        assert!(render_reply(&ApiRequest::Stats, b"{\"return\":3}").is_err());
        assert!(render_reply(&ApiRequest::ListLeases, b"{\"return\":{}}").is_err());
    }
}
