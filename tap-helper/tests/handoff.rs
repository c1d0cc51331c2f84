//! Root-only: the fd hand-off itself, `--fd` validation, `max-taps` (sequential and
//! concurrent) and the non-setuid `--acl` modes (root, and an unprivileged user namespace).

mod common;

use common::*;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

#[test]
fn tap_is_handed_over_on_the_bridge_owned_by_the_user() {
    require_root();
    let _s = serial();
    ensure_users();
    let fx = Fixture::new(&[("br0", 1500), ("br1", 1400)]);
    fx.set_acl(&seed_acl());

    let out = fx.invoke(
        &fx.ours,
        Some("wbh-alice"),
        &os(&["--use-vnet", "--br=br1"]),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "stderr on success: {}", out.stderr);
    let tap = out.tap.as_ref().expect("a tap fd arrived");
    let name = check_tap(&fx, tap, "br1", "wbh-alice");
    assert_eq!(fx.mtu(&name), 1400);
    assert_eq!(fx.taps_of("wbh-alice"), vec![name.clone()]);
    assert!(
        out.log.iter().any(|l| l.contains("user=wbh-alice(")
            && l.contains("bridge=br1")
            && l.contains(&format!("tap={name}"))),
        "syslog: {:?}",
        out.log
    );

    // Without --use-vnet: no vnet header.
    let plain = fx.invoke(&fx.ours, Some("wbh-alice"), &os(&["--br=br0"]));
    let fd = plain.tap.as_ref().expect("tap fd");
    let (_, flags) = sys::tun_get_iff(fd.as_raw_fd()).expect("TUNGETIFF");
    assert_eq!(
        flags & sys::IFF_VNET_HDR,
        0,
        "vnet header without --use-vnet"
    );
    assert_eq!(
        flags & (sys::IFF_TAP | sys::IFF_NO_PI),
        sys::IFF_TAP | sys::IFF_NO_PI
    );

    // Closing the fd removes the tap (it is not persistent).
    drop(out);
    drop(plain);
    assert!(fx.taps_of("wbh-alice").is_empty(), "tap survived its fd");
}

#[test]
fn fd_must_be_an_open_unix_stream_socket() {
    require_root();
    let _s = serial();
    ensure_users();
    let fx = Fixture::new(&[("br0", 1500)]);
    fx.set_acl(&[acl("bridge.conf", "allow br0\n", "root", "root", 0o644)]);
    for (fd, why) in [
        ("--fd=0", "not a socket"),
        ("--fd=77", "not an open file descriptor"),
    ] {
        let out = fx.invoke_fd(&fx.ours, Some("wbh-dave"), &os(&["--br=br0"]), Some(fd));
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains(why), "{fd}: {}", out.stderr);
        let q = fx.invoke_fd(&fx.qemu, Some("wbh-dave"), &os(&["--br=br0"]), Some(fd));
        assert_eq!(q.code, 1, "QEMU's helper with {fd}: {}", q.stderr);
    }
    assert!(fx.taps_of("wbh-dave").is_empty(), "a tap was left behind");
}

#[test]
fn max_taps_is_enforced_sequentially_and_concurrently() {
    require_root();
    let _s = serial();
    ensure_users();
    let fx = Fixture::new(&[("br0", 1500)]);
    fx.set_acl(&[acl(
        "bridge.conf",
        "allow br0\nmax-taps 2\n",
        "root",
        "root",
        0o644,
    )]);
    let args = os(&["--use-vnet", "--br=br0"]);

    let a = fx.invoke(&fx.ours, Some("wbh-alice"), &args);
    let b = fx.invoke(&fx.ours, Some("wbh-alice"), &args);
    assert!(a.allowed() && b.allowed(), "{} / {}", a.stderr, b.stderr);
    let c = fx.invoke(&fx.ours, Some("wbh-alice"), &args);
    assert!(!c.allowed());
    assert!(c.stderr.contains("max-taps 2"), "{}", c.stderr);
    assert!(
        c.log
            .iter()
            .any(|l| l.contains("refused") && l.contains("max-taps")),
        "{:?}",
        c.log
    );
    assert_eq!(
        fx.taps_of("wbh-alice").len(),
        2,
        "the refused tap must be gone"
    );
    // Another user is counted separately.
    let other = fx.invoke(&fx.ours, Some("wbh-bob"), &args);
    assert!(other.allowed(), "{}", other.stderr);
    // Releasing one makes room for one.
    drop(a);
    let d = fx.invoke(&fx.ours, Some("wbh-alice"), &args);
    assert!(d.allowed(), "{}", d.stderr);
    drop((b, c, d, other));
    assert!(fx.taps_of("wbh-alice").is_empty());

    // Concurrent: 8 invocations at once may never leave alice holding more than 2.
    for round in 0..3 {
        let outs: Vec<Outcome> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| fx.invoke(&fx.ours, Some("wbh-alice"), &args)))
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let ok = outs.iter().filter(|o| o.allowed()).count();
        let held = fx.taps_of("wbh-alice").len();
        println!("round {round}: {ok} of 8 allowed, alice holds {held}");
        assert!(
            ok <= 2,
            "{ok} concurrent invocations succeeded with max-taps 2"
        );
        assert!(
            ok >= 1,
            "nobody got a tap: {:?}",
            outs.iter().map(|o| &o.stderr).collect::<Vec<_>>()
        );
        assert_eq!(held, ok);
        for o in outs.iter().filter(|o| !o.allowed()) {
            assert!(
                o.stderr.contains("max-taps"),
                "unexpected failure: {}",
                o.stderr
            );
        }
        drop(outs);
        assert!(fx.taps_of("wbh-alice").is_empty());
    }
}

#[test]
fn root_without_setuid_may_use_the_acl_flag() {
    require_root();
    let _s = serial();
    let fx = Fixture::new(&[("br0", 1500)]);
    fx.set_acl(&[]);
    let file = fx.dir.join("test-acl.conf");
    std::fs::write(&file, "allow br0\n").expect("write acl");
    let mut args = os(&["--use-vnet", "--br=br0", "--acl"]);
    args.push(file.clone().into_os_string());
    // The plain (not setuid) build output, run by root.
    let out = fx.invoke(&our_binary(), None, &args);
    assert!(out.allowed(), "{}", out.stderr);
    check_tap(&fx, out.tap.as_ref().expect("fd"), "br0", "root");
    // And the default file is used without --acl (here: empty /etc/qemu, so it fails).
    let out = fx.invoke(&our_binary(), None, &os(&["--br=br0"]));
    assert!(!out.allowed());
    assert!(
        out.stderr.contains("/etc/qemu/bridge.conf"),
        "{}",
        out.stderr
    );
}

#[test]
fn unprivileged_user_namespace_may_use_the_acl_flag() {
    require_root();
    let _s = serial();
    ensure_users();
    let fx = Fixture::new(&[]);
    let file = fx.dir.join("userns-acl.conf");
    std::fs::write(&file, "allow br0\n").expect("write acl");
    let (mine, theirs) = sys::socketpair_for_child().expect("socketpair");
    let script = format!(
        "set -e; ip link add br0 type bridge; ip link set br0 mtu 1280 up; exec {} --use-vnet --br=br0 --fd={} --acl {}",
        our_binary().display(),
        theirs.as_raw_fd(),
        file.display()
    );
    // run.sh gives a private /dev with a 0666 /dev/net/tun, as on a standard system.
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh"])
        .arg(fx.dir.join("run.sh"))
        .arg(&fx.dir)
        .arg("setpriv")
        .args([
            "--reuid",
            "wbh-dave",
            "--regid",
            "wbh-users",
            "--init-groups",
            "--",
        ])
        .args([
            "unshare",
            "--user",
            "--map-root-user",
            "--net",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("spawn");
    drop(theirs);
    assert!(
        out.status.success(),
        "helper in a user namespace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, fd) = sys::recv_fd(mine.as_raw_fd()).expect("recvmsg");
    let fd = fd.expect("an fd arrived");
    let (name, flags) = sys::tun_get_iff(fd.as_raw_fd()).expect("TUNGETIFF");
    assert!(name.starts_with(b"tap"));
    assert_ne!(flags & sys::IFF_VNET_HDR, 0);
}

#[test]
fn file_capabilities_work_like_setuid() {
    require_root();
    let _s = serial();
    ensure_users();
    let fx = Fixture::new(&[("br0", 1500)]);
    fx.set_acl(&[acl("bridge.conf", "allow br0\n", "root", "root", 0o644)]);
    let capped = fx.dir.join("bin/warren-bridge-helper-caps");
    std::fs::copy(our_binary(), &capped).expect("copy");
    run("chmod", &["0755", &capped.to_string_lossy()]);
    run("setcap", &["cap_net_admin+ep", &capped.to_string_lossy()]);
    let out = fx.invoke(&capped, Some("wbh-dave"), &os(&["--use-vnet", "--br=br0"]));
    assert!(out.allowed(), "{}", out.stderr);
    check_tap(&fx, out.tap.as_ref().expect("fd"), "br0", "wbh-dave");
    // The exec is privilege-gaining, so --acl is refused as when setuid.
    let out = fx.invoke(
        &capped,
        Some("wbh-dave"),
        &os(&["--br=br0", "--acl=/tmp/x"]),
    );
    assert!(out.stderr.contains("--acl is refused"), "{}", out.stderr);
    // Without setuid or capabilities an ordinary user gets a clear message.
    let out = fx.invoke(&our_binary(), Some("wbh-dave"), &os(&["--br=br0"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no CAP_NET_ADMIN"), "{}", out.stderr);
}

#[test]
fn acl_directories_and_symlink_targets_are_checked_when_setuid() {
    require_root();
    let _s = serial();
    ensure_users();
    let fx = Fixture::new(&[("br0", 1500)]);
    let args = os(&["--use-vnet", "--br=br0"]);

    // A world-writable /etc/qemu: anyone could swap the file.
    fx.set_acl(&[acl("bridge.conf", "allow br0\n", "root", "root", 0o644)]);
    run(
        "chmod",
        &["0777", &fx.dir.join("etc-add/qemu").to_string_lossy()],
    );
    let out = fx.invoke(&fx.ours, Some("wbh-dave"), &args);
    assert!(!out.allowed());
    assert!(
        out.stderr.contains("directory /etc/qemu is writable"),
        "{}",
        out.stderr
    );
    let q = fx.invoke(&fx.qemu, Some("wbh-dave"), &args);
    assert!(
        q.allowed(),
        "QEMU's helper does not check directories: {}",
        q.stderr
    );

    // bridge.conf as a symlink to a file the user owns.
    fx.set_acl(&[]);
    let evil = fx.dir.join("evil.conf");
    std::fs::write(&evil, "allow all\n").expect("write");
    run("chown", &["wbh-dave", &evil.to_string_lossy()]);
    std::os::unix::fs::symlink(&evil, fx.dir.join("etc-add/qemu/bridge.conf")).expect("symlink");
    let out = fx.invoke(&fx.ours, Some("wbh-dave"), &args);
    assert!(!out.allowed());
    assert!(out.stderr.contains("not root"), "{}", out.stderr);
    let q = fx.invoke(&fx.qemu, Some("wbh-dave"), &args);
    assert!(
        q.allowed(),
        "QEMU's helper follows the symlink: {}",
        q.stderr
    );
}
