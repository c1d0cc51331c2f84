//! The VXLAN uplink (`--vxlan`, RFC 7348), as root, in network namespaces each test makes itself
//! (`ip netns add`), joined by veth pairs that carry the underlay. No traffic leaves them.
//!
//! - `runtime_remotes_learning_aging_and_mtu`: raw VXLAN datagrams from two addresses of a "remote"
//!   namespace and a raw guest on warren's stream socket (no QEMU, fast): only configured remotes are
//!   heard, wrong VNIs are dropped, replies go to the VTEP a MAC was learned behind, floods are
//!   replicated to every remote, a remote added over the API starts carrying traffic and a removed one
//!   stops, learned MACs age out, DHCP advertises the underlay-derived MTU (1450), and an oversized
//!   frame towards the uplink is answered with ICMP "fragmentation needed".
//! - `kernel_vxlan_interop`: a Linux `vxlan` device bridged to a veth whose far end is a kernel TCP/IP
//!   stack in its own namespace; that stack leases an address from warren's DHCP (busybox udhcpc),
//!   pings a real warren guest (QEMU) and exchanges data with it both ways, checked by SHA-256.
//! - `two_warrens_one_lan`: two warrens in two namespaces, the far one `--no-gateway`, a real guest on
//!   each: the far guest leases from the near warren, reaches a host service through the one gateway,
//!   and the guests exchange 8 MiB each way (SHA-256) and ping each other.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warren_tests::guest::{Image, READY_MARKER};
use warren_tests::hostile::{self, arp, dhcp_client_frame, eth, Parsed, StreamClient};
use warren_tests::qemu::Guest;
use warren_tests::servers::{pseudo_random, HttpServer};
use warren_tests::warren::{Warren, WarrenConfig};
use warren_tests::{is_root, run_checked, sha256_hex};

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const CHECKS_TIMEOUT: Duration = Duration::from_secs(600);
const CHECKS_DONE: &str = "@@RESULT checks=done";

// ------------------------------------------------------------------ namespaces

/// A named network namespace made by the test (`ip netns add`), deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        assert!(is_root(), "the VXLAN tests need root (network namespaces)");
        let name = format!("wvx{}{tag}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run_checked(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command inside the namespace.
    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    /// Runs `f` on a thread that entered this namespace (sockets it makes live there).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&fd),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair from `a` (interface `a_if`, address `a_cidr`) to `b`, both up.
fn veth(a: &Netns, a_if: &str, a_cidr: &str, b: &Netns, b_if: &str, b_cidr: &str) {
    run_checked(Command::new("ip").args([
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]));
    for (ns, i, cidr) in [(a, a_if, a_cidr), (b, b_if, b_cidr)] {
        if !cidr.is_empty() {
            ns.ip(&["addr", "add", cidr, "dev", i]);
        }
        ns.ip(&["link", "set", i, "up"]);
    }
}

fn warren_in(ns: &Netns, args: &[&str]) -> Warren {
    Warren::spawn_with(WarrenConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        netns: Some(ns.name.clone()),
        ..WarrenConfig::default()
    })
}

// ------------------------------------------------------------------ the API

fn api(path: &Path, req: &str) -> String {
    let mut s = UnixStream::connect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    s.write_all(req.as_bytes()).expect("write request");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read reply");
    out
}

/// A counter of `stats` (the reply is a flat JSON object of numbers).
fn stat(path: &Path, name: &str) -> u64 {
    let reply = api(path, r#"{"execute":"stats"}"#);
    let key = format!("\"{name}\":");
    let at = reply
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in stats: {reply}"));
    reply[at + key.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("bad {name} in {reply}"))
}

// ------------------------------------------------------------------ raw VXLAN

const VNI: u32 = 4242;

fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let v = vni.to_be_bytes();
    let mut d = vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0];
    d.extend_from_slice(frame);
    d
}

/// The next datagram on `s` whose inner frame `want` accepts (checking the header: flags 0x08 and
/// VNI), until `deadline`.
fn recv_vx<T>(
    s: &UdpSocket,
    deadline: Instant,
    mut want: impl FnMut(&[u8]) -> Option<T>,
) -> Option<T> {
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let Ok((n, _)) = s.recv_from(&mut buf) else {
            if Instant::now() >= deadline {
                return None;
            }
            continue;
        };
        let d = &buf[..n];
        assert!(n >= 8 + 14, "short VXLAN datagram {d:?}");
        assert_eq!(d[0], 0x08, "VXLAN flags");
        assert_eq!(
            u32::from_be_bytes([0, d[4], d[5], d[6]]),
            VNI,
            "VNI of {d:?}"
        );
        if let Some(t) = want(&d[8..]) {
            return Some(t);
        }
    }
}

fn arp_reply_for(mac: [u8; 6]) -> impl FnMut(&[u8]) -> Option<Ipv4Addr> {
    move |f: &[u8]| match hostile::parse(f) {
        Parsed::Arp { op: 2, spa, .. } if f[..6] == mac => Some(spa),
        _ => None,
    }
}

fn who_has(mac: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    eth([0xff; 6], mac, 0x0806, &arp(1, mac, spa, [0; 6], tpa))
}

/// A frame carrying `tag` in the payload (an IPv4 packet with an unused protocol number), to tell
/// floods apart.
fn tagged(dst: [u8; 6], src: [u8; 6], tag: &[u8]) -> Vec<u8> {
    let ip = hostile::ipv4(
        Ipv4Addr::new(10, 0, 2, 60),
        Ipv4Addr::new(10, 0, 2, 61),
        253,
        1,
        tag,
    );
    eth(dst, src, 0x0800, &ip)
}

fn carries(tag: &'static [u8]) -> impl FnMut(&[u8]) -> Option<()> {
    move |f: &[u8]| f.windows(tag.len()).any(|w| w == tag).then_some(())
}

#[test]
fn runtime_remotes_learning_aging_and_mtu() {
    let w_ns = Netns::new("rw");
    let r_ns = Netns::new("rr");
    veth(
        &w_ns,
        "uw",
        "192.168.79.1/24",
        &r_ns,
        "ur",
        "192.168.79.2/24",
    );
    r_ns.ip(&["addr", "add", "192.168.79.3/24", "dev", "ur"]);
    let vni = VNI.to_string();
    let w = warren_in(
        &w_ns,
        &[
            "--vxlan",
            "192.168.79.2",
            "--vxlan-vni",
            &vni,
            "--vxlan-age",
            "5",
            "--api",
            "{dir}/api",
            "--dns-upstream",
            "127.0.0.1:9",
            "-v",
        ],
    );
    let api_path = w.dir().join("api");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !api_path.exists() {
        assert!(Instant::now() < deadline, "no API socket\n{}", w.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        w.stdout().contains("guest MTU 1450"),
        "warren plans the MTU from the underlay (1500 - 50):\n{}",
        w.stdout()
    );
    let socket = w.socket().to_path_buf();
    let report = r_ns.run(move || runtime_checks(&socket, &api_path));
    let stderr = w.stderr();
    assert!(
        report.is_ok(),
        "{}\nwarren stderr:\n{stderr}",
        report.unwrap_err()
    );
}

fn runtime_checks(socket: &Path, api_path: &Path) -> Result<(), String> {
    let r1 = UdpSocket::bind("192.168.79.2:4789").expect("bind remote 1");
    let r2 = UdpSocket::bind("192.168.79.3:4789").expect("bind remote 2");
    let warren: std::net::SocketAddr = "192.168.79.1:4789".parse().expect("addr");
    let gw = Ipv4Addr::new(10, 0, 2, 2);
    let (m1, m2) = ([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 2]);
    let (ip1, ip2) = (Ipv4Addr::new(10, 0, 2, 51), Ipv4Addr::new(10, 0, 2, 52));
    let soon = || Instant::now() + Duration::from_secs(10);
    let quiet = || Instant::now() + Duration::from_millis(1500);

    // A configured remote: the gateway answers its ARP, encapsulated, to that VTEP.
    r1.send_to(&vxlan(VNI, &who_has(m1, ip1, gw)), warren)
        .expect("send");
    let spa =
        recv_vx(&r1, soon(), arp_reply_for(m1)).ok_or("no ARP reply over VXLAN to remote 1")?;
    assert_eq!(spa, gw);

    // Not a remote: dropped and counted, unanswered.
    let before = stat(api_path, "vxlan_drop_source");
    r2.send_to(&vxlan(VNI, &who_has(m2, ip2, gw)), warren)
        .expect("send");
    assert!(
        recv_vx(&r2, quiet(), arp_reply_for(m2)).is_none(),
        "an unknown VTEP was answered"
    );
    assert!(
        stat(api_path, "vxlan_drop_source") > before,
        "drop_source not counted"
    );
    // Another VNI: dropped and counted.
    let before = stat(api_path, "vxlan_drop_vni");
    r1.send_to(&vxlan(7, &who_has([2, 0, 0, 0, 1, 7], ip1, gw)), warren)
        .expect("send");
    assert!(recv_vx(&r1, quiet(), arp_reply_for([2, 0, 0, 0, 1, 7])).is_none());
    assert!(
        stat(api_path, "vxlan_drop_vni") > before,
        "drop_vni not counted"
    );

    // Added over the API, remote 2 is heard and answered.
    let reply = api(
        api_path,
        r#"{"execute":"add_vxlan_remote","arguments":{"remote":"192.168.79.3"}}"#,
    );
    assert_eq!(reply, r#"{"return":{}}"#);
    r2.send_to(&vxlan(VNI, &who_has(m2, ip2, gw)), warren)
        .expect("send");
    recv_vx(&r2, soon(), arp_reply_for(m2)).ok_or("no ARP reply to the added remote")?;

    // A raw guest on the stream socket: DHCP advertises MTU 1450 (option 26).
    let g = [2, 0, 0, 0, 0, 0x0a];
    let mut c = StreamClient::connect(socket).map_err(|e| format!("stream: {e}"))?;
    c.send(&dhcp_client_frame(g, 0x1234, 1, None, None))
        .expect("send");
    let mtu = c
        .recv_matching(soon(), |f| match hostile::parse(f) {
            Parsed::Udp {
                sport: 67, payload, ..
            } => dhcp_option(&payload, 26),
            _ => None,
        })
        .ok_or("no DHCP offer with option 26")?;
    assert_eq!(mtu, vec![0x05, 0xaa], "DHCP MTU 1450");

    // Broadcast from the guest: replicated to both remotes.
    c.send(&tagged([0xff; 6], g, b"flood-one")).expect("send");
    recv_vx(&r1, soon(), carries(b"flood-one")).ok_or("flood missed remote 1")?;
    recv_vx(&r2, soon(), carries(b"flood-one")).ok_or("flood missed remote 2")?;
    // Unicast to a MAC learned behind remote 1: to remote 1 only. (Both remotes speak first: the
    // aging time is short.)
    let refresh = || -> Result<(), String> {
        r1.send_to(&vxlan(VNI, &who_has(m1, ip1, gw)), warren)
            .expect("send");
        recv_vx(&r1, soon(), arp_reply_for(m1)).ok_or("no ARP reply to remote 1")?;
        r2.send_to(&vxlan(VNI, &who_has(m2, ip2, gw)), warren)
            .expect("send");
        recv_vx(&r2, soon(), arp_reply_for(m2)).ok_or("no ARP reply to remote 2")?;
        Ok(())
    };
    refresh()?;
    c.send(&tagged(m1, g, b"unicast-m1")).expect("send");
    recv_vx(&r1, soon(), carries(b"unicast-m1")).ok_or("unicast missed remote 1")?;
    assert!(
        recv_vx(&r2, quiet(), carries(b"unicast-m1")).is_none(),
        "unicast to a learned MAC went to another VTEP"
    );

    // Too big for the underlay (IP 1500 > 1450, DF): ICMP fragmentation needed, MTU 1450.
    let big = {
        let ip = hostile::ipv4_with(
            Ipv4Addr::new(10, 0, 2, 60),
            ip1,
            17,
            2,
            64,
            0x4000,
            &[],
            &vec![0x5a; 1480],
        );
        eth(m1, g, 0x0800, &ip)
    };
    let before = stat(api_path, "icmp_frag_needed");
    c.send(&big).expect("send");
    let next_hop = c
        .recv_matching(soon(), |f| match hostile::parse(f) {
            Parsed::Ipv4 { proto: 1, .. } if f.len() > 42 && f[34] == 3 && f[35] == 4 => {
                Some(u16::from_be_bytes([f[40], f[41]]))
            }
            _ => None,
        })
        .ok_or("no ICMP fragmentation needed")?;
    assert_eq!(next_hop, 1450);
    assert!(stat(api_path, "icmp_frag_needed") > before);
    assert!(
        recv_vx(&r1, quiet(), |f| (f.len() > 1464).then_some(())).is_none(),
        "an oversized frame crossed the uplink"
    );

    // warren ctl's view: both VTEPs, both learned MACs.
    refresh()?;
    let listing = String::from_utf8_lossy(
        &Command::new(warren_tests::warren::warren_binary())
            .args(["ctl", "--api"])
            .arg(api_path)
            .arg("vxlan")
            .output()
            .map_err(|e| format!("warren ctl: {e}"))?
            .stdout,
    )
    .into_owned();
    for want in [
        "192.168.79.2:4789\tstatic",
        "192.168.79.3:4789\tstatic",
        "02:00:00:00:01:01\t192.168.79.2:4789",
        "02:00:00:00:01:02\t192.168.79.3:4789",
    ] {
        if !listing.contains(want) {
            return Err(format!("warren ctl vxlan lacks {want:?}:\n{listing}"));
        }
    }

    // Aging (--vxlan-age 5): the MACs are forgotten; unicast to m1 is flooded to both remotes again.
    std::thread::sleep(Duration::from_secs(6));
    let list = api(api_path, r#"{"execute":"list_vxlan"}"#);
    if !list.contains(r#""macs":[]"#) {
        return Err(format!("learned MACs did not age out: {list}"));
    }
    c.send(&tagged(m1, g, b"after-aging")).expect("send");
    recv_vx(&r1, soon(), carries(b"after-aging")).ok_or("aged unicast missed remote 1")?;
    recv_vx(&r2, soon(), carries(b"after-aging")).ok_or("aged unicast not flooded to remote 2")?;

    // Removed, remote 2 carries nothing more either way.
    let reply = api(
        api_path,
        r#"{"execute":"remove_vxlan_remote","arguments":{"remote":"192.168.79.3:4789"}}"#,
    );
    assert_eq!(reply, r#"{"return":{}}"#);
    c.send(&tagged([0xff; 6], g, b"flood-two")).expect("send");
    recv_vx(&r1, soon(), carries(b"flood-two")).ok_or("flood missed remote 1")?;
    assert!(
        recv_vx(&r2, quiet(), carries(b"flood-two")).is_none(),
        "a removed remote still gets floods"
    );
    let before = stat(api_path, "vxlan_drop_source");
    r2.send_to(&vxlan(VNI, &who_has(m2, ip2, gw)), warren)
        .expect("send");
    assert!(recv_vx(&r2, quiet(), arp_reply_for(m2)).is_none());
    assert!(stat(api_path, "vxlan_drop_source") > before);
    // A bad request is a one-line error, not a crash.
    let reply = api(
        api_path,
        r#"{"execute":"add_vxlan_remote","arguments":{"remote":"not an address"}}"#,
    );
    assert!(reply.contains("\"error\""), "{reply}");
    Ok(())
}

/// An IPv6 underlay: 70 bytes of overhead (guest MTU 1430), the same header and learning.
#[test]
fn ipv6_underlay() {
    let w_ns = Netns::new("6w");
    let r_ns = Netns::new("6r");
    veth(&w_ns, "uw", "", &r_ns, "ur", "");
    w_ns.ip(&["addr", "add", "fd00:4789::1/64", "dev", "uw", "nodad"]);
    r_ns.ip(&["addr", "add", "fd00:4789::2/64", "dev", "ur", "nodad"]);
    let vni = VNI.to_string();
    let w = warren_in(
        &w_ns,
        &["--vxlan", "[fd00:4789::2]:4789", "--vxlan-vni", &vni, "-v"],
    );
    assert!(
        w.stdout().contains("guest MTU 1430"),
        "1500 - 70 over IPv6:\n{}",
        w.stdout()
    );
    let socket = w.socket().to_path_buf();
    let report = r_ns.run(move || -> Result<(), String> {
        let r = UdpSocket::bind("[fd00:4789::2]:4789").expect("bind remote");
        let warren: std::net::SocketAddr = "[fd00:4789::1]:4789".parse().expect("addr");
        let (m, ip, gw) = (
            [2, 0, 0, 0, 6, 1],
            Ipv4Addr::new(10, 0, 2, 70),
            Ipv4Addr::new(10, 0, 2, 2),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        r.send_to(&vxlan(VNI, &who_has(m, ip, gw)), warren)
            .expect("send");
        recv_vx(&r, deadline, arp_reply_for(m)).ok_or("no ARP reply over the IPv6 underlay")?;
        // A guest's broadcast reaches the remote over IPv6.
        let g = [2, 0, 0, 0, 0, 0x0b];
        let mut c = StreamClient::connect(&socket).map_err(|e| format!("stream: {e}"))?;
        c.send(&tagged([0xff; 6], g, b"over-ipv6")).expect("send");
        recv_vx(&r, deadline, carries(b"over-ipv6")).ok_or("flood missed the IPv6 remote")?;
        Ok(())
    });
    assert!(
        report.is_ok(),
        "{}\nwarren stderr:\n{}",
        report.unwrap_err(),
        w.stderr()
    );
}

/// `--vxlan-group`: floods go to the multicast group; a VTEP heard on the group is learned and
/// answered by unicast; a stranger's unicast is still refused.
#[test]
fn multicast_group_flood_and_learn() {
    let w_ns = Netns::new("mw");
    let r_ns = Netns::new("mr");
    veth(
        &w_ns,
        "uw",
        "192.168.82.1/24",
        &r_ns,
        "ur",
        "192.168.82.2/24",
    );
    r_ns.ip(&["addr", "add", "192.168.82.3/24", "dev", "ur"]);
    w_ns.ip(&["route", "add", "224.0.0.0/4", "dev", "uw"]);
    r_ns.ip(&["route", "add", "224.0.0.0/4", "dev", "ur"]);
    let vni = VNI.to_string();
    let w = warren_in(
        &w_ns,
        &[
            "--vxlan-group",
            "239.1.1.1",
            "--vxlan-vni",
            &vni,
            "--api",
            "{dir}/api",
            "-v",
        ],
    );
    let api_path = w.dir().join("api");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !api_path.exists() {
        assert!(Instant::now() < deadline, "no API socket\n{}", w.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let socket = w.socket().to_path_buf();
    let report = r_ns.run(move || -> Result<(), String> {
        let group = Ipv4Addr::new(239, 1, 1, 1);
        let member = UdpSocket::bind("239.1.1.1:4789").expect("bind group");
        member
            .join_multicast_v4(&group, &Ipv4Addr::new(192, 168, 82, 2))
            .expect("join");
        let vtep = UdpSocket::bind("192.168.82.2:4789").expect("bind vtep");
        let stranger = UdpSocket::bind("192.168.82.3:4789").expect("bind stranger");
        let soon = || Instant::now() + Duration::from_secs(10);
        // A guest's broadcast goes to the group.
        let g = [2, 0, 0, 0, 0, 0x0c];
        let mut c = StreamClient::connect(&socket).map_err(|e| format!("stream: {e}"))?;
        c.send(&tagged([0xff; 6], g, b"to-the-group"))
            .expect("send");
        recv_vx(&member, soon(), carries(b"to-the-group")).ok_or("the group got no flood")?;
        // A VTEP speaking on the group is learned and answered by unicast.
        let (m, gw) = ([2, 0, 0, 0, 8, 1], Ipv4Addr::new(10, 0, 2, 2));
        vtep.send_to(
            &vxlan(VNI, &who_has(m, Ipv4Addr::new(10, 0, 2, 80), gw)),
            "239.1.1.1:4789",
        )
        .expect("send to the group");
        recv_vx(&vtep, soon(), arp_reply_for(m)).ok_or("no unicast reply to the group member")?;
        let list = api(&api_path, r#"{"execute":"list_vxlan"}"#);
        if !list.contains(r#""kind":"group","vtep":"192.168.82.2:4789""#)
            || !list.contains(r#""mac":"02:00:00:00:08:01","vtep":"192.168.82.2:4789""#)
        {
            return Err(format!("list_vxlan: {list}"));
        }
        // Unicast from an address never heard on the group: dropped.
        let before = stat(&api_path, "vxlan_drop_source");
        let m2 = [2, 0, 0, 0, 8, 2];
        stranger
            .send_to(
                &vxlan(VNI, &who_has(m2, Ipv4Addr::new(10, 0, 2, 81), gw)),
                "192.168.82.1:4789",
            )
            .expect("send");
        let quiet = Instant::now() + Duration::from_millis(1500);
        if recv_vx(&stranger, quiet, arp_reply_for(m2)).is_some() {
            return Err("a stranger was answered".into());
        }
        if stat(&api_path, "vxlan_drop_source") <= before {
            return Err("drop_source not counted".into());
        }
        Ok(())
    });
    assert!(
        report.is_ok(),
        "{}\nwarren stderr:\n{}",
        report.unwrap_err(),
        w.stderr()
    );
}

/// The value of DHCP option `code` in a DHCP message.
fn dhcp_option(p: &[u8], code: u8) -> Option<Vec<u8>> {
    if p.len() < 240 {
        return None;
    }
    let mut i = 240;
    while i + 1 < p.len() {
        match p[i] {
            0 => i += 1,
            255 => return None,
            c => {
                let len = usize::from(p[i + 1]);
                if c == code {
                    return p.get(i + 2..i + 2 + len).map(<[u8]>::to_vec);
                }
                i += 2 + len;
            }
        }
    }
    None
}

// ------------------------------------------------------------------ guests

/// The udhcpc script the guests and the kernel stack use: address, route, MTU (option 26).
const DHCP_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
bound|renew)
  ip addr flush dev "$interface"
  ip addr add "$ip/$mask" dev "$interface"
  [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
  for gw in $router; do ip route add default via "$gw" dev "$interface"; done
  echo "$ip" > "$STATE/ip"
  echo "$mtu" > "$STATE/mtu"
  echo "$router" > "$STATE/router"
  ;;
esac
exit 0
"#;

fn guest_prelude() -> String {
    format!(
        r#"
r() {{ echo "@@RESULT $1=$2"; }}
ms() {{ awk '{{ printf "%d", $1 * 1000 }}' /proc/uptime; }}
export STATE=/tmp
cat > /tmp/dhcp.sh <<'EOS'
{DHCP_SCRIPT}EOS
chmod +x /tmp/dhcp.sh
ip link set eth0 up
timeout 120 udhcpc -i eth0 -s /tmp/dhcp.sh -q -f -n -t 20 -T 3
r dhcp_exit $?
ip=$(cat /tmp/ip 2>/dev/null)
r ip "$ip"
r mtu "$(cat /tmp/mtu 2>/dev/null)"
r router "$(cat /tmp/router 2>/dev/null)"
"#
    )
}

fn results_of(g: &Guest) -> BTreeMap<String, String> {
    g.results()
}

fn get<'a>(r: &'a BTreeMap<String, String>, key: &str, ctx: &str) -> &'a str {
    r.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {key:?} reported\n{ctx}"))
}

/// A kernel TCP/IP stack behind a Linux `vxlan` device, and a real warren guest.
#[test]
fn kernel_vxlan_interop() {
    let w_ns = Netns::new("kw");
    let k_ns = Netns::new("kk");
    let s_ns = Netns::new("ks");
    veth(
        &w_ns,
        "uw",
        "192.168.80.1/24",
        &k_ns,
        "uk",
        "192.168.80.2/24",
    );
    k_ns.ip(&[
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "remote",
        "192.168.80.1",
        "local",
        "192.168.80.2",
        "dstport",
        "4789",
        "dev",
        "uk",
    ]);
    k_ns.ip(&["link", "add", "br0", "type", "bridge"]);
    veth(&k_ns, "kb", "", &s_ns, "eth0", "");
    for i in ["vx0", "kb"] {
        k_ns.ip(&["link", "set", i, "master", "br0"]);
        k_ns.ip(&["link", "set", i, "up"]);
    }
    k_ns.ip(&["link", "set", "br0", "up"]);
    // A veth leaves transmit checksums to "hardware" that never computes them, so the kernel stack's
    // TCP would reach warren (a userspace VTEP) with unfilled inner checksums: compute them in
    // software, as a real NIC would on the wire (what `ethtool -K eth0 tx off` does).
    s_ns.run(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
        sys_common::ethtool_set_value(
            std::os::fd::AsFd::as_fd(&s),
            b"eth0",
            sys_common::ETHTOOL_STXCSUM,
            0,
        )
        .expect("tx checksum offload off on the kernel stack's veth");
    });
    let w = warren_in(
        &w_ns,
        &[
            "--vxlan",
            "192.168.80.2",
            "--vxlan-vni",
            "42",
            "--dns-upstream",
            "127.0.0.1:9",
            "-v",
        ],
    );
    const LEN: usize = 4 << 20;
    // The guest leases first (10.0.2.15); the kernel stack then gets 10.0.2.16.
    let script = format!(
        r#"{prelude}
dd if=/dev/urandom of=/tmp/mine bs=64k count={blocks} 2>/dev/null
r mine_sha "$(sha256sum /tmp/mine | cut -d' ' -f1)"
# (-e: busybox nc stops reading the network once its own stdin ends.)
( nc -l -p 7000 -e sh -c 'cat > /tmp/theirs'; r theirs_len "$(wc -c < /tmp/theirs)"; r theirs_sha "$(sha256sum /tmp/theirs | cut -d' ' -f1)"; touch /tmp/recv_done ) &
peer=10.0.2.16
t0=$(ms); ok=fail
while [ $(( $(ms) - t0 )) -lt 400000 ]; do
  if ping -c 1 -W 2 $peer > /dev/null 2>&1; then ok=ok; break; fi
  sleep 1
done
r ping_peer $ok
t0=$(ms); sent=fail
while [ $(( $(ms) - t0 )) -lt 120000 ]; do
  if timeout 120 nc $peer 7001 < /tmp/mine; then sent=ok; break; fi
  sleep 1
done
r send $sent
t0=$(ms)
while [ ! -e /tmp/recv_done ] && [ $(( $(ms) - t0 )) -lt 300000 ]; do sleep 1; done
echo "{CHECKS_DONE}"
sleep 100000
"#,
        prelude = guest_prelude(),
        blocks = LEN / 65536,
    );
    let image = Image::build("vxlan-kernel", &script);
    let guest = Guest::spawn(&image, &w.netdev(), "52:54:00:00:0b:01");
    let ctx = |g: &Guest| format!("console:\n{}\nwarren stderr:\n{}", g.output(), w.stderr());
    guest
        .wait_for(READY_MARKER, BOOT_TIMEOUT)
        .and_then(|_| guest.wait_for("@@RESULT router=", BOOT_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}\n{}", ctx(&guest)));

    // The kernel stack: a DHCP lease from warren through the kernel's VXLAN device.
    let state = tempfile::tempdir().expect("tempdir");
    std::fs::write(state.path().join("dhcp.sh"), DHCP_SCRIPT).expect("write dhcp script");
    run_checked(
        Command::new("chmod")
            .arg("+x")
            .arg(state.path().join("dhcp.sh")),
    );
    let mut attempt = 0;
    loop {
        attempt += 1;
        let out = s_ns
            .cmd("busybox")
            .args([
                "udhcpc", "-i", "eth0", "-q", "-f", "-n", "-t", "10", "-T", "2", "-s",
            ])
            .arg(state.path().join("dhcp.sh"))
            .env("STATE", state.path())
            .output()
            .expect("run busybox udhcpc");
        if out.status.success() || attempt == 3 {
            assert!(
                out.status.success(),
                "udhcpc in the kernel stack's namespace failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                ctx(&guest)
            );
            break;
        }
    }
    let leased = std::fs::read_to_string(state.path().join("ip")).expect("lease");
    assert_eq!(leased.trim(), "10.0.2.16", "{}", ctx(&guest));
    let mtu = std::fs::read_to_string(state.path().join("mtu")).expect("mtu");
    assert_eq!(
        mtu.trim(),
        "1450",
        "DHCP option 26 through the kernel's VXLAN"
    );

    // guest -> kernel stack: the guest sends once it can ping us.
    let recv_file = state.path().join("from-guest");
    let mut listener: Child = s_ns
        .cmd("sh")
        .arg("-c")
        .arg(format!(
            "exec busybox nc -l -p 7001 -e sh -c 'cat > {}'",
            recv_file.display()
        ))
        .spawn()
        .expect("nc -l in the kernel stack's namespace");
    let ping = s_ns
        .cmd("busybox")
        .args(["ping", "-c", "3", "-W", "5", "10.0.2.15"])
        .output()
        .expect("busybox ping");
    let replies = String::from_utf8_lossy(&ping.stdout)
        .matches("bytes from")
        .count();
    assert_eq!(
        replies,
        3,
        "the kernel stack's pings of the warren guest: {}{}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr),
        ctx(&guest)
    );
    // kernel stack -> guest.
    let data = pseudo_random(LEN, 0x766b);
    let send_file = state.path().join("to-guest");
    std::fs::write(&send_file, &data).expect("write");
    let mut sent = false;
    for _ in 0..30 {
        let st = s_ns
            .cmd("sh")
            .arg("-c")
            .arg(format!(
                "timeout 120 busybox nc 10.0.2.15 7000 < {}",
                send_file.display()
            ))
            .status()
            .expect("nc");
        if st.success() {
            sent = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(sent, "could not send to the guest\n{}", ctx(&guest));
    guest
        .wait_for(CHECKS_DONE, CHECKS_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", ctx(&guest)));
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(listener.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = listener.kill();
    let _ = listener.wait();
    let r = results_of(&guest);
    let c = ctx(&guest);
    assert_eq!(get(&r, "ip", &c), "10.0.2.15", "{c}");
    assert_eq!(get(&r, "mtu", &c), "1450", "{c}");
    assert_eq!(get(&r, "ping_peer", &c), "ok", "{c}");
    assert_eq!(get(&r, "send", &c), "ok", "{c}");
    assert_eq!(get(&r, "theirs_len", &c), LEN.to_string(), "{c}");
    assert_eq!(
        get(&r, "theirs_sha", &c),
        sha256_hex(&data),
        "kernel -> guest\n{c}"
    );
    let got = std::fs::read(&recv_file).expect("received file");
    assert_eq!(got.len(), LEN, "guest -> kernel length\n{c}");
    assert_eq!(
        sha256_hex(&got),
        get(&r, "mine_sha", &c),
        "guest -> kernel\n{c}"
    );
}

/// Two warrens, one LAN: the far one is a pure switch.
#[test]
fn two_warrens_one_lan() {
    let a_ns = Netns::new("ta");
    let b_ns = Netns::new("tb");
    veth(
        &a_ns,
        "ua",
        "192.168.81.1/24",
        &b_ns,
        "ub",
        "192.168.81.2/24",
    );
    // The host service lives on the near warren's host loopback (its namespace).
    let http = a_ns.run(|| {
        HttpServer::start(BTreeMap::from([(
            "/f".to_owned(),
            pseudo_random(1 << 20, 0x7477),
        )]))
    });
    let near = warren_in(
        &a_ns,
        &[
            "--vxlan",
            "192.168.81.2",
            "--dns-upstream",
            "127.0.0.1:9",
            "-v",
        ],
    );
    let far = warren_in(&b_ns, &["--vxlan", "192.168.81.1", "--no-gateway", "-v"]);
    const LEN: usize = 8 << 20;
    let script = format!(
        r#"{prelude}
timeout 120 wget -q -O /tmp/f http://10.0.2.2:{port}/f
r http_exit $?
r http_sha "$(sha256sum /tmp/f | cut -d' ' -f1)"
rm -f /tmp/f
dd if=/dev/urandom of=/tmp/mine bs=64k count={blocks} 2>/dev/null
r mine_sha "$(sha256sum /tmp/mine | cut -d' ' -f1)"
# (-e: busybox nc stops reading the network once its own stdin ends.)
( nc -l -p 7000 -e sh -c 'cat > /tmp/theirs'; r theirs_len "$(wc -c < /tmp/theirs)"; r theirs_sha "$(sha256sum /tmp/theirs | cut -d' ' -f1)"; touch /tmp/recv_done ) &
for n in 15 16; do
  peer=10.0.2.$n
  [ "$peer" = "$ip" ] && continue
  t0=$(ms); ok=fail
  while [ $(( $(ms) - t0 )) -lt 400000 ]; do
    if ping -c 1 -W 2 $peer > /dev/null 2>&1; then ok=ok; break; fi
    sleep 1
  done
  r ping_peer $ok
  t0=$(ms); sent=fail
  while [ $(( $(ms) - t0 )) -lt 200000 ]; do
    if timeout 200 nc $peer 7000 < /tmp/mine; then sent=ok; break; fi
    sleep 1
  done
  r send $sent
  r ping3 "$(ping -c 3 -W 2 $peer 2>&1 | grep -c 'bytes from')"
done
t0=$(ms)
while [ ! -e /tmp/recv_done ] && [ $(( $(ms) - t0 )) -lt 300000 ]; do sleep 1; done
echo "{CHECKS_DONE}"
sleep 100000
"#,
        prelude = guest_prelude(),
        port = http.port,
        blocks = LEN / 65536,
    );
    let image = Image::build("vxlan-two", &script);
    let g_near = Guest::spawn(&image, &near.netdev(), "52:54:00:00:0c:01");
    let g_far = Guest::spawn(&image, &far.netdev(), "52:54:00:00:0c:02");
    let ctx = || {
        format!(
            "near console:\n{}\nfar console:\n{}\nnear stderr:\n{}\nfar stderr:\n{}",
            g_near.output(),
            g_far.output(),
            near.stderr(),
            far.stderr()
        )
    };
    for g in [&g_near, &g_far] {
        g.wait_for(READY_MARKER, BOOT_TIMEOUT)
            .and_then(|_| g.wait_for(CHECKS_DONE, CHECKS_TIMEOUT))
            .unwrap_or_else(|e| panic!("{e}\n{}", ctx()));
    }
    let (rn, rf) = (results_of(&g_near), results_of(&g_far));
    let c = ctx();
    let mut ips = Vec::new();
    for r in [&rn, &rf] {
        assert_eq!(get(r, "dhcp_exit", &c), "0", "{c}");
        assert_eq!(get(r, "router", &c), "10.0.2.2", "one gateway\n{c}");
        assert_eq!(get(r, "mtu", &c), "1450", "{c}");
        assert_eq!(get(r, "http_exit", &c), "0", "{c}");
        assert_eq!(get(r, "http_sha", &c), http.sha256("/f"), "{c}");
        assert_eq!(get(r, "ping_peer", &c), "ok", "{c}");
        assert_eq!(get(r, "ping3", &c), "3", "{c}");
        assert_eq!(get(r, "send", &c), "ok", "{c}");
        ips.push(get(r, "ip", &c).to_owned());
    }
    ips.sort();
    assert_eq!(
        ips,
        ["10.0.2.15", "10.0.2.16"],
        "both leases from the near warren\n{c}"
    );
    for r in [&rn, &rf] {
        assert_eq!(get(r, "theirs_len", &c), LEN.to_string(), "{c}");
    }
    assert_eq!(
        get(&rn, "theirs_sha", &c),
        get(&rf, "mine_sha", &c),
        "far -> near\n{c}"
    );
    assert_eq!(
        get(&rf, "theirs_sha", &c),
        get(&rn, "mine_sha", &c),
        "near -> far\n{c}"
    );
}
