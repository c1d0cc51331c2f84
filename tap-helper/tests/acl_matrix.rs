//! Root-only: the seed scenario's allow/deny matrix and a list of attacks, each run against
//! a setuid copy of warren-bridge-helper AND a setuid copy of QEMU's own
//! /usr/lib/qemu/qemu-bridge-helper.  Every difference must be one we list as deliberately
//! stricter (we deny, QEMU allows); anything else fails the test.

mod common;

use common::*;
use std::ffi::OsString;

struct Case {
    name: String,
    acl: Vec<AclFile>,
    user: &'static str,
    args: Vec<OsString>,
    ours: bool,
    qemu: bool,
    /// Why we are stricter here (must be non-empty exactly when ours != qemu).
    stricter: &'static str,
    /// A substring our stderr must contain when we deny.
    why: &'static str,
}

fn br(b: &str) -> Vec<OsString> {
    os(&["--use-vnet", &format!("--br={b}")])
}

fn case(name: &str, acl: Vec<AclFile>, user: &'static str, args: Vec<OsString>) -> Case {
    Case {
        name: name.into(),
        acl,
        user,
        args,
        ours: false,
        qemu: false,
        stricter: "",
        why: "",
    }
}

fn matrix_cases() -> Vec<Case> {
    // Expected from QEMU's semantics: bridge.conf allows br0 for everyone; alice.conf (group
    // wbh-alice) allows br1; bob.conf (wbh-bob) allows all but br1; charlie.conf
    // (wbh-charlie) denies all; eve is in wbh-alice and wbh-charlie, so deny all wins.
    let expected: &[(&str, [bool; 3])] = &[
        ("wbh-alice", [true, true, false]),
        ("wbh-bob", [true, false, true]),
        ("wbh-charlie", [false, false, false]),
        ("wbh-dave", [true, false, false]),
        ("wbh-eve", [false, false, false]),
    ];
    let mut v = Vec::new();
    for (user, verdicts) in expected {
        for (b, ok) in ["br0", "br1", "br2"].iter().zip(verdicts) {
            let mut c = case(&format!("seed {user} {b}"), seed_acl(), user, br(b));
            c.ours = *ok;
            c.qemu = *ok;
            c.why = "access to bridge";
            v.push(c);
        }
    }
    v
}

fn attack_cases(fx: &Fixture) -> Vec<Case> {
    let allow_all = || vec![acl("bridge.conf", "allow all\n", "root", "root", 0o644)];
    let pwned = fx.dir.join("pwned");
    let mut v = Vec::new();

    let mut c = case(
        "16-char bridge name",
        allow_all(),
        "wbh-dave",
        br("br0aaaaaaaaaaaaa"),
    );
    c.why = "at most 15";
    v.push(c);

    let mut c = case(
        "40-char bridge name",
        allow_all(),
        "wbh-dave",
        br(&"b".repeat(40)),
    );
    c.why = "at most 15";
    v.push(c);

    let mut c = case(
        "16-char name in the ACL",
        vec![acl(
            "bridge.conf",
            "allow br0\nallow br0aaaaaaaaaaaaa\n",
            "root",
            "root",
            0o644,
        )],
        "wbh-dave",
        br("br0"),
    );
    c.why = "bridge.conf:2:";
    v.push(c);

    let mut c = case("not a bridge (veth)", allow_all(), "wbh-dave", br("v0"));
    c.why = "is not a bridge";
    v.push(c);

    let mut c = case("bridge does not exist", allow_all(), "wbh-dave", br("br9"));
    c.why = "does not exist";
    v.push(c);

    for name in [
        format!("br0;touch {}", pwned.display()),
        format!("$(touch {})", pwned.display()),
        "br0`id`".to_string(),
        "br0|id".to_string(),
        "br0&&id".to_string(),
    ] {
        let mut c = case(
            &format!("shell characters {name:?}"),
            allow_all(),
            "wbh-dave",
            br(&name),
        );
        // Long ones are refused as names; short ones are valid kernel names that do not exist.
        c.why = if name.len() > 15 {
            "bridge name"
        } else {
            "does not exist"
        };
        v.push(c);
    }
    let mut c = case(
        "non-UTF-8 bridge name",
        allow_all(),
        "wbh-dave",
        vec![OsString::from("--use-vnet"), os_bytes(b"--br=br\xff")],
    );
    c.why = "does not exist";
    v.push(c);

    let mut c = case(
        "main file unreadable",
        vec![acl("bridge.conf", "allow all\n", "root", "root", 0o600)],
        "wbh-dave",
        br("br0"),
    );
    c.why = "not readable";
    v.push(c);

    let mut c = case("main file missing", vec![], "wbh-dave", br("br0"));
    c.why = "No such file";
    v.push(c);

    let mut c = case(
        "world-writable main file",
        vec![acl("bridge.conf", "allow br0\n", "root", "root", 0o666)],
        "wbh-dave",
        br("br0"),
    );
    c.qemu = true;
    c.stricter = "ACL files writable by anyone but root are refused when setuid";
    c.why = "writable by group or others";
    v.push(c);

    let mut c = case(
        "main file owned by the user",
        vec![acl("bridge.conf", "allow br0\n", "wbh-dave", "root", 0o644)],
        "wbh-dave",
        br("br0"),
    );
    c.qemu = true;
    c.stricter = "ACL files must be owned by root when setuid";
    c.why = "not root";
    v.push(c);

    let mut files = seed_acl();
    files[1].mode = 0o660; // alice.conf group-writable by wbh-alice
    let mut c = case("group-writable include", files, "wbh-alice", br("br1"));
    c.qemu = true;
    c.stricter = "ACL files writable by anyone but root are refused when setuid";
    c.why = "writable by group or others";
    v.push(c);

    let mut c = case(
        "include loop",
        vec![acl(
            "bridge.conf",
            "allow br0\ninclude /etc/qemu/bridge.conf\n",
            "root",
            "root",
            0o644,
        )],
        "wbh-dave",
        br("br0"),
    );
    // QEMU recurses until fopen fails, then dies without a message: also a denial.
    c.why = "include loop";
    v.push(c);

    let mut c = case(
        "two-file include loop",
        vec![
            acl(
                "bridge.conf",
                "allow br0\ninclude /etc/qemu/a.conf\n",
                "root",
                "root",
                0o644,
            ),
            acl(
                "a.conf",
                "include /etc/qemu/bridge.conf\n",
                "root",
                "root",
                0o644,
            ),
        ],
        "wbh-dave",
        br("br0"),
    );
    c.why = "include loop";
    v.push(c);

    let mut files = seed_acl();
    files[1].text = "allow br1\nallow\n".into();
    let mut c = case(
        "syntax error in a readable include",
        files,
        "wbh-alice",
        br("br1"),
    );
    c.qemu = true;
    c.stricter = "a syntax error in any file read fails closed (QEMU ignores errors in includes)";
    c.why = "alice.conf:2:";
    v.push(c);

    let mut c = case(
        "syntax error in the main file",
        vec![acl(
            "bridge.conf",
            "allow br0\nallow-all\n",
            "root",
            "root",
            0o644,
        )],
        "wbh-dave",
        br("br0"),
    );
    c.why = "bridge.conf:2:";
    v.push(c);

    let mut c = case(
        "missing include",
        vec![acl(
            "bridge.conf",
            "allow br0\ninclude /etc/qemu/gone.conf\n",
            "root",
            "root",
            0o644,
        )],
        "wbh-dave",
        br("br0"),
    );
    c.qemu = true;
    c.stricter = "an include that is missing (not merely unreadable) fails closed";
    c.why = "gone.conf";
    v.push(c);

    let mut c = case(
        "relative include",
        vec![acl(
            "bridge.conf",
            "allow br0\ninclude bridge.conf\n",
            "root",
            "root",
            0o644,
        )],
        "wbh-dave",
        br("br0"),
    );
    c.qemu = true;
    c.stricter = "include paths must be absolute (QEMU resolves them against the caller's cwd)";
    c.why = "absolute";
    v.push(c);

    let mut c = case(
        "trailing comment",
        vec![acl(
            "bridge.conf",
            "allow br0 # lab\n",
            "root",
            "root",
            0o644,
        )],
        "wbh-dave",
        br("br0"),
    );
    c.why = "exactly one argument";
    v.push(c);

    let mut args = br("br0");
    args.push(OsString::from("--acl=/tmp/evil.conf"));
    let mut c = case("--acl when setuid", allow_all(), "wbh-dave", args);
    c.why = "--acl is refused";
    v.push(c);

    let mut args = br("br0");
    args.push(OsString::from("--bogus"));
    let mut c = case("unknown option", allow_all(), "wbh-dave", args);
    c.why = "Usage:";
    v.push(c);

    // Control: the harness itself does allow when it should.
    let mut c = case("control: allow all", allow_all(), "wbh-dave", br("br2"));
    c.ours = true;
    c.qemu = true;
    v.push(c);
    v
}

fn run_cases(fx: &Fixture, cases: &[Case]) {
    let mut failures = Vec::new();
    println!("{:<46} {:>6} {:>6}  note", "case", "ours", "qemu");
    for c in cases {
        fx.set_acl(&c.acl);
        let ours = fx.invoke(&fx.ours, Some(c.user), &c.args);
        let qemu = fx.invoke(&fx.qemu, Some(c.user), &c.args);
        let word = |b: bool| if b { "allow" } else { "deny" };
        println!(
            "{:<46} {:>6} {:>6}  {}{}{}",
            c.name,
            word(ours.allowed()),
            word(qemu.allowed()),
            c.stricter,
            if ours.allowed() {
                String::new()
            } else {
                format!(" [ours: {}]", ours.stderr)
            },
            if qemu.allowed() {
                String::new()
            } else {
                format!(" [qemu: exit {}: {}]", qemu.code, qemu.stderr)
            }
        );
        assert_eq!(
            c.stricter.is_empty(),
            c.ours == c.qemu,
            "case table inconsistent: {}",
            c.name
        );
        if ours.allowed() && !qemu.allowed() {
            failures.push(format!("{}: we allow where QEMU denies", c.name));
        }
        if ours.allowed() != c.ours {
            failures.push(format!(
                "{}: ours expected {}, got {} (code {}, stderr {:?})",
                c.name,
                word(c.ours),
                word(ours.allowed()),
                ours.code,
                ours.stderr
            ));
        }
        if qemu.allowed() != c.qemu {
            failures.push(format!(
                "{}: QEMU's helper expected {}, got {} (stderr {:?})",
                c.name,
                word(c.qemu),
                word(qemu.allowed()),
                qemu.stderr
            ));
        }
        if !ours.allowed() {
            if ours.code != 1 {
                failures.push(format!("{}: exit code {} (want 1)", c.name, ours.code));
            }
            if !c.why.is_empty() && !ours.stderr.contains(c.why) {
                failures.push(format!(
                    "{}: stderr {:?} lacks {:?}",
                    c.name, ours.stderr, c.why
                ));
            }
            if ours.stderr.lines().count() > 2 {
                failures.push(format!(
                    "{}: more than one error line: {:?}",
                    c.name, ours.stderr
                ));
            }
        }
        match &ours.tap {
            Some(tap) => {
                let b = c
                    .args
                    .iter()
                    .find_map(|a| a.to_str()?.strip_prefix("--br="))
                    .unwrap_or("");
                check_tap(fx, tap, b, c.user);
                if !ours.log.iter().any(|l| {
                    l.contains(&format!("user={}(", c.user)) && l.contains("allowed: tap=")
                }) {
                    failures.push(format!(
                        "{}: no syslog line for the allow: {:?}",
                        c.name, ours.log
                    ));
                }
            }
            None => {
                // Usage errors are not decisions; everything else must be logged.
                let usage = ours.stderr.contains("Usage:");
                if !usage
                    && !ours
                        .log
                        .iter()
                        .any(|l| l.contains(&format!("user={}(", c.user)) && l.contains("refused"))
                {
                    failures.push(format!(
                        "{}: no syslog line for the denial: {:?}",
                        c.name, ours.log
                    ));
                }
            }
        }
        drop(ours);
        drop(qemu);
    }
    assert!(
        !fx.dir.join("pwned").exists(),
        "a shell ran a command from a bridge name"
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn seed_matrix_matches_qemu_helper() {
    require_root();
    let _s = serial();
    ensure_users();
    let fx = Fixture::new(&[("br0", 1500), ("br1", 1400), ("br2", 9000)]);
    run_cases(&fx, &matrix_cases());
    assert!(
        fx.taps_of("wbh-alice").is_empty(),
        "taps leaked after fds were closed"
    );
}

#[test]
fn attacks_fail_closed_and_differ_from_qemu_only_where_stricter() {
    require_root();
    let _s = serial();
    ensure_users();
    let fx = Fixture::new(&[("br0", 1500), ("br1", 1400), ("br2", 1500)]);
    let cases = attack_cases(&fx);
    run_cases(&fx, &cases);
}
