//! `warren`'s command line on the real binary: exit statuses, one-line errors, the generated help,
//! completions and man page, the subcommands parsed by hand, and `RUST_LOG` per-module filtering.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn warren(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run warren")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn bad_values_are_one_line_naming_the_option_with_status_2() {
    for (args, name) in [
        (&["--mtu", "lots"][..], "--mtu"),
        (&["--listen", "nowhere"], "--listen"),
        (&["--max-macs", "0"], "--max-macs"),
        (&["--hostfwd", "tcp:1:2"], "--hostfwd"),
        (&["--gateway", "10.0.3.2"], "outside"),
        (&["--no-such-option"], "--no-such-option"),
        (&["--vde-group", "no-such-group-here"], "--vde-group"),
    ] {
        let o = warren(args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("warren: ") && err.contains(name),
            "{args:?}: {err}"
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    let o = warren(&["ctl", "list"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        text(&o.stderr),
        "warren ctl: --api PATH is required (see warren ctl --help)\n"
    );
}

#[test]
fn help_version_completions_and_man_page() {
    let o = warren(&["--help"]);
    assert!(o.status.success());
    let help = text(&o.stdout);
    for want in [
        "--hostfwd",
        "--slirp-options",
        "--max-macs-per-port",
        "ctl",
        "completions",
    ] {
        assert!(help.contains(want), "warren --help lacks {want}");
    }
    for hidden in [
        "__attach",
        "__run-child",
        "__exec-helper",
        "sandbox-selftest",
    ] {
        assert!(!help.contains(hidden), "warren --help shows {hidden}");
    }
    let o = warren(&["ctl", "--help"]);
    assert!(o.status.success());
    let ctl = text(&o.stdout);
    for want in ["--api", "add-hostfwd", "remove", "leases", "stats"] {
        assert!(ctl.contains(want), "warren ctl --help lacks {want}");
    }
    let o = warren(&["--version"]);
    assert_eq!(
        text(&o.stdout),
        format!("warren {}\n", env!("CARGO_PKG_VERSION"))
    );
    let o = warren(&["completions", "bash"]);
    assert!(o.status.success() && text(&o.stdout).contains("--dns-upstream"));
    let o = warren(&["man"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains(".TH warren 1"));
    // slirp4netns keeps its own hand-written command line.
    let o = warren(&["slirp4netns", "--help"]);
    assert!(o.status.success());
    assert!(
        text(&o.stdout).contains("--netns-type"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn rust_log_filters_per_module() {
    // -q: warnings only, except the sandbox module at debug.
    let out = start_up_log(
        "log",
        &["-q"],
        Some("vde_switch::sandbox=debug"),
        "warren: info: sandbox: ",
    );
    assert!(out.contains("warren: debug: sandbox: "), "{out}");
    // Other modules stay at -q's level: the info lines of start-up are not there.
    assert!(!out.contains("file descriptors"), "{out}");
    assert!(!out.contains("NAT flows"), "{out}");
    for line in out.lines() {
        assert!(line.starts_with("warren: "), "{line:?}");
    }
}

/// Starts the daemon with `args` (plus a scratch `--socket`) and `RUST_LOG=rust_log` if given, waits
/// until its log contains `marker` (the sandbox line comes once everything is set up), stops it and
/// returns what it logged.
fn start_up_log(name: &str, args: &[&str], rust_log: Option<&str>, marker: &str) -> String {
    let dir = std::env::temp_dir().join(format!("warren-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let log = dir.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--socket")
        .arg(dir.join("w.sock"))
        .args(["--dns-upstream", "127.0.0.1:9"])
        .args(args)
        .env_remove("RUST_LOG")
        .envs(rust_log.map(|v| ("RUST_LOG", v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start warren");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read().contains(marker) {
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            panic!("warren did not finish starting: {}", read());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let out = read();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn an_mtu_below_1280_serves_ipv4_only_and_says_so() {
    let small = start_up_log("mtu1000", &["--mtu", "1000"], None, "sandbox: ");
    assert!(
        small.contains(
            "warren: warning: MTU 1000 is below IPv6's minimum of 1280: serving IPv4 only"
        ),
        "{small}"
    );
    for quiet in [&["--mtu", "1280"][..], &["--mtu", "1000", "--no-ipv6"]] {
        let out = start_up_log("mtu-quiet", quiet, None, "sandbox: ");
        assert!(!out.contains("IPv6's minimum"), "{quiet:?}: {out}");
    }
}
