//! The `pasta` command line: pasta's options (shared with passt, see [`crate::passt`]) plus what
//! it serves: `--netns PATH|NAME`, a PID operand, or a command to run in a new namespace.
//!
//! Clients read for this (cited in the tests): podman 5.x `createPastaArgs` in containers/common
//! `libnetwork/pasta/pasta_linux.go` (`--config-net [-t|-u SPEC]... --dns-forward 169.254.x.1
//! [-t none] [-u none] [-T none] [-U none] --no-map-gw --quiet --netns PATH`, newer releases add
//! `--map-guest-addr 169.254.1.2`), and rootlesskit 2.x `pkg/network/pasta/pasta.go`
//! (`--stderr --ns-ifname=tap0 --mtu=N --config-net --address=A --netmask=N --gateway=G
//! --dns-forward=D [--no-map-gw] [--ipv4-only] --tcp-ports=none|auto --udp-ports=none|auto`
//! then `PID` or `--userns=/proc/PID/ns/user --netns=PATH`).

use crate::passt::{self, Kind, Parsed, PasstError};
use std::path::PathBuf;

/// A pasta command line that does not parse or does not say what to serve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PastaError {
    /// The options pasta shares with passt.
    #[error(transparent)]
    Options(#[from] PasstError),
    /// `--netns` and operands given together (the operands, space-separated).
    #[error("pasta: --netns and operands ({0}) exclude each other")]
    NetnsAndOperands(String),
    #[error(
        "pasta: give --netns PATH, a PID or a command (warren does not start a shell by itself)"
    )]
    NoTarget,
    #[error("pasta: --userns needs --netns or a PID")]
    UsernsWithoutNetns,
}

/// What pasta serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A network namespace: a PID (as a string of digits) or a namespace file path.
    Netns {
        target: String,
        userns: Option<PathBuf>,
    },
    /// Run this command in a new user and network namespace (pasta's `pasta CMD ARGS`).
    Command(Vec<String>),
}

/// A parsed pasta command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pasta {
    pub opts: Parsed,
    pub target: Target,
}

/// pasta's `--netns NAME` without a `/` means `/run/netns/NAME`.
fn netns_file(v: &str) -> String {
    if v.contains('/') {
        v.to_string()
    } else {
        format!("/run/netns/{v}")
    }
}

/// Parses pasta's arguments (without argv[0]). `--help`/`--version` come back with
/// [`Target::Command`] empty; callers look at `opts.help`/`opts.version` first.
pub fn parse(args: &[String]) -> Result<Pasta, PastaError> {
    let opts = passt::parse(Kind::Pasta, args)?;
    if opts.help || opts.version {
        return Ok(Pasta {
            opts,
            target: Target::Command(Vec::new()),
        });
    }
    let target = match (&opts.netns, opts.operands.as_slice()) {
        (Some(ns), []) => Target::Netns {
            target: netns_file(ns),
            userns: opts.userns.clone(),
        },
        (Some(_), more) => return Err(PastaError::NetnsAndOperands(more.join(" "))),
        (None, [pid]) if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => {
            Target::Netns {
                target: pid.clone(),
                userns: opts.userns.clone(),
            }
        }
        (None, []) => return Err(PastaError::NoTarget),
        (None, cmd) => {
            if opts.userns.is_some() {
                return Err(PastaError::UsernsWithoutNetns);
            }
            Target::Command(cmd.to_vec())
        }
    };
    Ok(Pasta { opts, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn targets() {
        let p = parse(&s(&[
            "--config-net",
            "--netns",
            "/run/user/1/netns/x",
            "--quiet",
        ]))
        .expect("path");
        assert_eq!(
            p.target,
            Target::Netns {
                target: "/run/user/1/netns/x".into(),
                userns: None
            }
        );
        let p = parse(&s(&["--netns", "foo"])).expect("name");
        assert!(matches!(p.target, Target::Netns { ref target, .. } if target == "/run/netns/foo"));
        let p = parse(&s(&["--config-net", "1234"])).expect("pid");
        assert!(matches!(p.target, Target::Netns { ref target, .. } if target == "1234"));
        let p = parse(&s(&["--config-net", "curl", "-s", "http://x/"])).expect("cmd");
        assert_eq!(p.target, Target::Command(s(&["curl", "-s", "http://x/"])));
        assert_eq!(parse(&s(&["--config-net"])), Err(PastaError::NoTarget));
        assert_eq!(
            parse(&s(&["--netns", "/x", "123"])).map_err(|e| e.to_string()),
            Err("pasta: --netns and operands (123) exclude each other".into())
        );
        assert_eq!(
            parse(&s(&["--userns", "/u", "true"])),
            Err(PastaError::UsernsWithoutNetns)
        );
        assert!(parse(&s(&["--help"])).expect("help").opts.help);
    }
}
