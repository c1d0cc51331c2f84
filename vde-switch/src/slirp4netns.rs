//! The slirp4netns drop-in: when warren runs as `slirp4netns` (argv[0]) or as `warren slirp4netns …`,
//! it accepts slirp4netns' command line (parsed by `slirp_compat::slirp4netns`) and serves the
//! namespace the same way, so rootlesskit and podman can drive it unchanged.

use slirp_compat::slirp4netns::{self as s4n, Slirp4netnsCommand, Slirp4netnsError, Target};

/// Why the slirp4netns drop-in cannot serve a command line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropInError {
    /// slirp4netns itself would refuse it (its wording).
    #[error(transparent)]
    Parse(#[from] Slirp4netnsError),
    #[error("--target-type=bess is not supported by warren")]
    Bess,
    #[error("--outbound-addr is not supported by warren yet")]
    OutboundAddr,
}

/// What the drop-in should do.
#[derive(Debug, PartialEq, Eq)]
pub enum DropIn {
    /// Print this and exit 0 (`--help`, `--version`).
    Print(String),
    /// Run warren with these (warren-syntax) arguments.
    Run(Vec<String>),
}

/// Whether argv[0] names slirp4netns.
pub fn invoked_as_slirp4netns(argv0: &str) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        == Some("slirp4netns")
}

/// Translates slirp4netns' arguments into warren's. Errors use slirp4netns' wording where it has
/// one. Options warren does not need are accepted (rootlesskit passes them after probing `--help`).
pub fn translate<I: IntoIterator<Item = String>>(
    argv0: &str,
    args: I,
) -> Result<DropIn, DropInError> {
    let o = match s4n::parse_args(args)? {
        Slirp4netnsCommand::Help => return Ok(DropIn::Print(s4n::help_text(argv0))),
        Slirp4netnsCommand::Version => {
            return Ok(DropIn::Print(s4n::version_text(env!("CARGO_PKG_VERSION"))))
        }
        Slirp4netnsCommand::Run(o) => o,
    };
    for w in &o.warnings {
        println!("{w}");
    }
    let mut a: Vec<String> = Vec::new();
    // `--opt=VALUE` in one word: a value that starts with `-` (a tap named `--x`, taken after `--`)
    // stays a value (found by the slirp4netns_cli fuzz target).
    let mut push = |k: &str, v: String| a.push(format!("{k}={v}"));
    match &o.target {
        Target::Pid(pid) => push("--netns", pid.to_string()),
        Target::NetnsPath(p) => push("--netns", p.display().to_string()),
        Target::Bess(_) => return Err(DropInError::Bess),
    }
    if let Some(t) = &o.tap_name {
        push("--tap", t.clone());
    }
    if let Some(u) = &o.userns_path {
        push("--userns", u.display().to_string());
    }
    push("--mtu", o.mtu.min(65520).to_string());
    push("--net", format!("{}/{}", o.cidr.network(), o.cidr.prefix));
    if let Some(fd) = o.ready_fd {
        push("--ready-fd", fd.to_string());
    }
    if let Some(fd) = o.exit_fd {
        push("--exit-fd", fd.to_string());
    }
    if let Some(p) = &o.api_socket {
        push("--api", p.display().to_string());
    }
    if o.configure {
        a.push("--configure".into());
    }
    if o.disable_host_loopback {
        a.push("--no-host-loopback".into());
    }
    // slirp4netns serves IPv6 only with --enable-ipv6 (fd00::/64, router ::2, DNS ::3, the
    // namespace autoconfigures from the router advertisements); warren's namespace plan is the
    // same, and --configure adds fd00::100 and a default route via fd00::2.
    if !o.enable_ipv6 {
        a.push("--no-ipv6".into());
    }
    if o.outbound_addr.is_some() || o.outbound_addr6.is_some() {
        return Err(DropInError::OutboundAddr);
    }
    if o.mac_address.is_some() {
        eprintln!("WARNING: --macaddress is ignored: the tap keeps the kernel's address");
    }
    // warren's sandbox (no_new_privs, Landlock, seccomp) is on by default; --enable-sandbox and
    // --enable-seccomp make it mandatory, as slirp4netns fails when it cannot set up its own.
    if o.enable_sandbox || o.enable_seccomp {
        a.push("--require-sandbox".into());
    }
    // --disable-dns is accepted as a no-op (the DNS address simply stays unused if the container's
    // resolv.conf does not name it).
    Ok(DropIn::Run(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Result<DropIn, DropInError> {
        translate("slirp4netns", args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn rootlesskit_command_line() {
        let r = t(&[
            "--mtu",
            "65520",
            "-r",
            "3",
            "--netns-type=path",
            "--userns-path=/proc/42/ns/user",
            "--cidr",
            "10.0.2.0/24",
            "--disable-host-loopback",
            "--api-socket",
            "/tmp/api.sock",
            "--configure",
            "--enable-sandbox",
            "--enable-seccomp",
            "/proc/42/ns/net",
            "tap0",
        ])
        .expect("ok");
        let DropIn::Run(a) = r else {
            panic!("run expected")
        };
        let s = a.join(" ");
        for want in [
            "--netns=/proc/42/ns/net",
            "--tap=tap0",
            "--userns=/proc/42/ns/user",
            "--mtu=65520",
            "--net=10.0.2.0/24",
            "--ready-fd=3",
            "--api=/tmp/api.sock",
            "--configure",
            "--no-host-loopback",
            "--require-sandbox",
        ] {
            assert!(s.contains(want), "{want:?} missing from {s:?}");
        }
        // And warren's own parser accepts the result's non-namespace part.
        let plain: Vec<String> = vec!["--mtu=65520".into(), "--net=10.0.2.0/24".into()];
        assert!(crate::cli::parse(plain).is_ok());
    }

    #[test]
    fn option_like_operands_stay_values() {
        // After `--`, slirp4netns takes `--netns-user` as the tap's name; warren must too (found by
        // the slirp4netns_cli fuzz target).
        let DropIn::Run(a) = t(&["--mtu", "1500", "--", "3", "--netns-user"]).expect("ok") else {
            panic!("run expected")
        };
        assert!(a.contains(&"--tap=--netns-user".to_string()), "{a:?}");
        let o = crate::cli::parse(a).expect("warren accepts the translation");
        assert_eq!(o.netns.tap.as_deref(), Some("--netns-user"));
    }

    #[test]
    fn pid_target_help_and_errors() {
        let DropIn::Run(a) = t(&["-c", "1234", "tap0"]).expect("ok") else {
            panic!("run expected")
        };
        // Without --enable-sandbox/--enable-seccomp the sandbox stays on, best effort.
        assert!(!a.iter().any(|x| x == "--require-sandbox"), "{a:?}");
        // IPv6 is off unless --enable-ipv6, as in slirp4netns.
        assert!(a.iter().any(|x| x == "--no-ipv6"), "{a:?}");
        let o = crate::cli::parse(a).expect("warren accepts it");
        assert!(o.config.v6.is_none());
        let DropIn::Run(a) = t(&["-c", "--enable-ipv6", "1234", "tap0"]).expect("ok") else {
            panic!("run expected")
        };
        assert!(!a.iter().any(|x| x == "--no-ipv6"), "{a:?}");
        let o = crate::cli::parse(a).expect("warren accepts it");
        let v6 = o.config.v6.expect("IPv6 on with --enable-ipv6");
        assert_eq!(
            (v6.net.to_string(), v6.router, v6.dns),
            (
                "fd00::/64".to_string(),
                "fd00::2".parse().unwrap(),
                "fd00::3".parse().unwrap()
            )
        );
        let DropIn::Run(a) = t(&["-c", "1234", "tap0"]).expect("ok") else {
            panic!()
        };
        assert_eq!(a[0], "--netns=1234");
        assert!(
            matches!(t(&["--help"]), Ok(DropIn::Print(h)) if h.contains("--netns-type") && h.contains("--enable-sandbox"))
        );
        assert!(
            matches!(t(&["--version"]), Ok(DropIn::Print(v)) if v.starts_with("slirp4netns version"))
        );
        assert_eq!(
            t(&["--bogus", "1", "tap0"]).map_err(|e| e.to_string()),
            Err("unrecognized option '--bogus'".into())
        );
        assert_eq!(
            t(&["--outbound-addr=10.0.0.1", "1", "tap0"]),
            Err(DropInError::OutboundAddr)
        );
        assert_eq!(t(&["--target-type=bess", "/tmp/b"]), Err(DropInError::Bess));
        assert!(invoked_as_slirp4netns("/usr/local/bin/slirp4netns"));
        assert!(!invoked_as_slirp4netns("warren"));
    }
}
