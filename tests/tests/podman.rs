//! Debian 12's podman (4.3) rootless, `--network slirp4netns`, with warren as its slirp4netns
//! (`[engine] network_cmd_path` in containers.conf), run by an unprivileged user with subuids.
//!
//! containers.conf as the README gives it, plus what this kind of machine needs: crun refuses the
//! hybrid cgroup layout, so `runtime = "runc"`, `cgroup_manager = "cgroupfs"`,
//! `events_logger = "file"`; storage is `vfs` (no fuse-overlayfs needed). The image is built
//! offline: `podman import` of a busybox-static rootfs.
//!
//! Checks: a container reaches a host loopback service through the gateway
//! (`allow_host_loopback=true`), resolves a name through 10.0.2.3 by the test's own DNS server
//! (warren reads the host's /etc/resolv.conf, so the test runs podman in a mount namespace where
//! that file names 127.0.0.77, where the server listens), and a port published with
//! `-p 127.0.0.1:PORT:80` (podman's slirp4netns port handler, i.e. warren's API socket) reaches
//! busybox httpd in the container.
//!
//! Everything runs in one test function: podman's rootless pause process is per user, and the
//! test restarts it (`podman system migrate`) inside its mount namespace.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use warren_tests::servers::{closed_port, DnsServer, HttpServer};
use warren_tests::warren::warren_binary;
use warren_tests::{is_root, run_checked};

const USER: &str = "warren-pm";
const DNS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);
const DNS_NAME: &str = "podman.warren.example";
const DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 78);

fn ensure_user() -> String {
    warren_tests::ensure_user_with_subids(USER, "700000-765535");
    let home = run_checked(
        Command::new("sh").args(["-c", &format!("getent passwd {USER} | cut -d: -f6")]),
    );
    home.trim().to_string()
}

fn write(path: &Path, content: &str) {
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Configuration, the drop-in and the rootfs tarball in the user's home; returns the home.
fn setup() -> String {
    let home = ensure_user();
    let h = Path::new(&home);
    let conf = h.join(".config/containers");
    fs::create_dir_all(&conf).expect("config dir");
    let bin = h.join("warren-bin");
    fs::create_dir_all(&bin).expect("bin dir");
    let s4n = bin.join("slirp4netns");
    let _ = fs::remove_file(&s4n);
    fs::copy(warren_binary(), &s4n).expect("copy warren as slirp4netns");
    fs::set_permissions(&s4n, fs::Permissions::from_mode(0o755)).expect("chmod");
    write(
        &conf.join("containers.conf"),
        &format!(
            "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nnetwork_cmd_path = \"{}\"\n",
            s4n.display()
        ),
    );
    write(&conf.join("storage.conf"), "[storage]\ndriver = \"vfs\"\n");
    let root = h.join("bb-rootfs");
    let _ = fs::remove_dir_all(&root);
    for d in ["bin", "etc", "tmp", "www"] {
        fs::create_dir_all(root.join(d)).expect("rootfs dir");
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    for a in ["sh", "wget", "httpd", "nslookup", "cat", "ip", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("applet link");
    }
    write(&root.join("www/index.html"), "published by the container\n");
    run_checked(
        Command::new("tar")
            .args(["-C"])
            .arg(&root)
            .args(["-cf"])
            .arg(h.join("bb-rootfs.tar"))
            .arg("."),
    );
    run_checked(
        Command::new("chown")
            .args(["-R", &format!("{USER}:{USER}")])
            .arg(h),
    );
    home
}

#[test]
fn podman_rootless_slirp4netns_is_warren() {
    assert!(
        is_root(),
        "creates a user and a mount namespace: run as root (CI does)"
    );
    let home = setup();
    let _dns = DnsServer::start_at(
        DNS_IP,
        53,
        BTreeMap::from([(DNS_NAME.to_string(), DNS_ANSWER)]),
    );
    let http = HttpServer::start(BTreeMap::from([(
        "/hello.txt".to_owned(),
        b"hello through warren as podman's slirp4netns".to_vec(),
    )]));
    let published = closed_port();
    let rc = tempfile::NamedTempFile::new().expect("resolv.conf");
    fs::write(rc.path(), format!("nameserver {DNS_IP}\n")).expect("write resolv.conf");
    fs::set_permissions(rc.path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    let user_script = format!(
        r#"cd {home} || exit 1
podman system migrate >/dev/null 2>&1
podman image exists localhost/warren-bb:1 || podman import bb-rootfs.tar localhost/warren-bb:1 >/dev/null || exit 1
podman run --rm --network slirp4netns:allow_host_loopback=true localhost/warren-bb:1 sh -c '
  echo "fetch=$(wget -q -O - http://10.0.2.2:{port}/hello.txt)"
  echo "dns=$(nslookup {DNS_NAME} 10.0.2.3 2>&1 | grep -o 192.0.2.78 | head -1)"
  echo "addr=$(ip -4 addr show tap0 | grep -o "inet [0-9./]*")"
'
echo "run_exit=$?"
podman rm -f -t 0 warren-web >/dev/null 2>&1
podman run -d --name warren-web --network slirp4netns:port_handler=slirp4netns -p 127.0.0.1:{published}:80 localhost/warren-bb:1 httpd -f -p 80 -h /www >/dev/null
echo "detach_exit=$?"
for i in 1 2 3 4 5 6 7 8 9 10; do
  out=$(wget -q -T 5 -O - http://127.0.0.1:{published}/index.html) && break
  sleep 1
done
echo "published=$out"
podman rm -f -t 0 warren-web >/dev/null
"#,
        port = http.port
    );
    let out = Command::new("timeout")
        .args(["300", "unshare", "-m", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /etc/resolv.conf && exec su {USER} -s /bin/sh -c \"$0\"",
            rc.path().display()
        ))
        .arg(&user_script)
        .output()
        .expect("run podman (apt-get install podman runc)");
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("run_exit=0"), "podman run failed:\n{text}");
    assert!(
        text.contains("fetch=hello through warren as podman's slirp4netns"),
        "host loopback service through the gateway:\n{text}"
    );
    assert!(text.contains("addr=inet 10.0.2.100/24"), "tap0:\n{text}");
    assert!(
        text.contains("dns=192.0.2.78"),
        "DNS through 10.0.2.3:\n{text}"
    );
    assert!(
        text.contains("detach_exit=0"),
        "podman run -d failed:\n{text}"
    );
    assert!(
        text.contains("published=published by the container"),
        "-p 127.0.0.1:{published}:80 through warren's API:\n{text}"
    );
}
