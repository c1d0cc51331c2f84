//! Writes the seed corpus: `cargo run --example gen_corpus` in `fuzz/` (re)creates the generated
//! files `corpus/<target>/gen-*` from real frames and messages. Hand-written seeds and crash
//! reproducers (other names) are left alone.

use dhcproto::v4::{DhcpOption, MessageType};
use netstack::wire::tcp::{ACK, FIN, PSH, SYN};
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use vde_switch::framing;
use warren_fuzz::input::Script;
use warren_fuzz::seeds::*;

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join(format!("gen-{name}")), data).expect("write");
}

fn clean(target: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("gen-") {
                fs::remove_file(e.path()).expect("rm");
            }
        }
    }
}

const TARGETS: &[&str] = &[
    "frame_path",
    "dhcp",
    "dns",
    "vde_handshake",
    "framing",
    "api_json",
    "slirp_options",
    "hostfwd",
    "guestfwd",
    "slirp4netns_cli",
    "acl",
    "resolv_conf",
    "vxlan",
];

fn main() {
    for t in TARGETS {
        clean(t);
    }
    frame_path();
    dhcp();
    dns();
    vde();
    framing_seeds();
    api();
    text_seeds();
    vxlan_seeds();
    let total: u64 = TARGETS
        .iter()
        .flat_map(|t| {
            fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(t))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    println!("corpus: {total} bytes");
}

fn guest4() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 2, 15)
}

fn frame_path() {
    let lease = |s: &mut FrameScript| {
        let d = dhcp_discover(GUEST_MAC);
        s.frame(&dhcp_frame(GUEST_MAC, &d));
        let r = dhcp_request(GUEST_MAC, guest4());
        s.frame(&dhcp_frame(GUEST_MAC, &r));
    };
    // DHCP, then ARP for the gateway and DNS.
    let mut s = FrameScript::new(0);
    lease(&mut s);
    s.frame(&arp_request(
        GUEST_MAC,
        guest4(),
        Ipv4Addr::new(10, 0, 2, 2),
    ));
    s.frame(&arp_request(
        GUEST_MAC,
        guest4(),
        Ipv4Addr::new(10, 0, 2, 3),
    ));
    s.frame(&arp_reply(GUEST_MAC, guest4(), Ipv4Addr::new(10, 0, 2, 2)));
    write("frame_path", "dhcp-arp", &s.bytes());

    // DNS through two upstreams: a query, its answer, then one that times out.
    let mut s = FrameScript::new(cfg_flags::UPSTREAMS);
    lease(&mut s);
    let q = dns_query(0x1234, "example.org", 1, true);
    s.frame(&udp(GUEST_MAC, guest_ip(), 5353, dns_ip(), 53, &q));
    s.op(Op::DnsAnswer).u8(0).u8(0).chunk(&[]);
    let q2 = dns_query(0x2345, "www.example.org", 28, false);
    s.frame(&udp(GUEST_MAC, guest_ip(), 5354, dns_ip(), 53, &q2));
    s.advance_s(3).advance_s(3);
    write("frame_path", "dns", &s.bytes());

    // IPv6: NS for the router, RS (then the RA timer), echo to the router, a DNS query to ::3,
    // a TCP connection to an IPv6 host and a UDP datagram above a small MTU.
    {
        use netstack::wire::icmpv6::{Icmpv6Repr, NdpRepr};
        use std::net::{IpAddr, Ipv6Addr};
        let ll: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().expect("addr");
        let g6: Ipv6Addr = "fec0::5054:ff:fe12:3456".parse().expect("addr");
        let router: Ipv6Addr = "fec0::2".parse().expect("addr");
        let far: Ipv6Addr = "2001:db8::80".parse().expect("addr");
        let mut s = FrameScript::new(cfg_flags::MTU_576);
        let ns = Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit {
            target: router,
            source_lladdr: Some(GUEST_MAC),
        });
        let sn: Ipv6Addr = "ff02::1:ff00:2".parse().expect("addr");
        s.frame(&icmpv6(ll, sn, [0x33, 0x33, 0xff, 0, 0, 2], &ns));
        let rs = Icmpv6Repr::Ndp(NdpRepr::RouterSolicit {
            source_lladdr: Some(GUEST_MAC),
        });
        let all_routers: Ipv6Addr = "ff02::2".parse().expect("addr");
        s.frame(&icmpv6(ll, all_routers, [0x33, 0x33, 0, 0, 0, 2], &rs));
        s.advance_ms(600);
        let echo = Icmpv6Repr::EchoRequest {
            ident: 1,
            seq: 1,
            data: b"ping",
        };
        s.frame(&icmpv6(g6, router, GW_MAC, &echo));
        let q = dns_query(0x3456, "example.org", 28, true);
        let dns6 = IpAddr::V6("fec0::3".parse().expect("addr"));
        s.frame(&udp(GUEST_MAC, IpAddr::V6(g6), 5353, dns6, 53, &q));
        s.frame(&tcp(
            IpAddr::V6(g6),
            40000,
            IpAddr::V6(far),
            80,
            1000,
            0,
            SYN,
            b"",
        ));
        s.op(Op::TcpConnected).u8(0).u8(0);
        s.frame(&udp(
            GUEST_MAC,
            IpAddr::V6(g6),
            5000,
            IpAddr::V6(far),
            9,
            &[1; 700],
        ));
        s.advance_s(60);
        write("frame_path", "ipv6", &s.bytes());
    }

    // DNS with no upstream: SERVFAIL at once.
    let mut s = FrameScript::new(0);
    lease(&mut s);
    s.frame(&udp(GUEST_MAC, guest_ip(), 5353, dns_ip(), 53, &q));
    write("frame_path", "dns-no-upstream", &s.bytes());

    // TCP: SYN, connect completes, ACK, data both ways, FIN both ways.
    for (name, cfg) in [
        ("tcp", 0),
        ("tcp-mtu576", cfg_flags::MTU_576),
        ("tcp-jumbo", cfg_flags::MTU_65520),
    ] {
        let mut s = FrameScript::new(cfg);
        lease(&mut s);
        let isn = 1000u32;
        s.frame(&tcp(guest_ip(), 40000, remote_ip(), 80, isn, 0, SYN, b""));
        s.op(Op::TcpConnected).u8(0).u8(0);
        tcp_rel(&mut s, 0, ACK, 0, 0, 65535, b"");
        tcp_rel(&mut s, 0, ACK | PSH, 0, 0, 65535, b"GET / HTTP/1.0\r\n\r\n");
        s.op(Op::TcpData).u8(0).chunk(&[b'x'; 3000]);
        tcp_rel(&mut s, 0, ACK, 18, 1460, 65535, b"");
        s.op(Op::TcpWritable).u8(0).u16(10);
        s.op(Op::TcpEof).u8(0);
        tcp_rel(&mut s, 0, ACK | FIN, 18, 3001, 65535, b"");
        s.advance_ms(200).advance_s(60);
        write("frame_path", name, &s.bytes());
    }

    // TCP to the gateway (host loopback), refused; and to a guestfwd command.
    let mut s = FrameScript::new(cfg_flags::LOW_LIMITS);
    lease(&mut s);
    s.frame(&tcp(guest_ip(), 40001, gw_ip(), 22, 5, 0, SYN, b""));
    s.op(Op::TcpConnected).u8(0).u8(2);
    s.frame(&tcp(guest_ip(), 40002, v4(10, 0, 2, 11), 7, 9, 0, SYN, b""));
    s.op(Op::TcpConnected).u8(0).u8(0);
    s.op(Op::FailNextOpen).u8(0);
    s.frame(&tcp(guest_ip(), 40003, remote_ip(), 443, 9, 0, SYN, b""));
    write("frame_path", "tcp-refused-guestfwd", &s.bytes());

    // UDP out and back, with an error; ICMP echo out and back.
    let mut s = FrameScript::new(0);
    lease(&mut s);
    s.frame(&udp(GUEST_MAC, guest_ip(), 6000, remote_ip(), 7, b"hello"));
    s.op(Op::UdpFromHost).u8(0).chunk(b"hello back");
    s.op(Op::UdpFromHost).u8(0).chunk(&[0xee, 0]);
    s.frame(&icmp_echo(remote_ip(), 77, 1, b"ping"));
    s.op(Op::IcmpFromHost)
        .u8(0)
        .chunk(&icmp_reply_msg(77, 1, b"ping"));
    s.advance_s(200);
    write("frame_path", "udp-icmp", &s.bytes());

    // Inbound forwards: a TCP connection and a UDP datagram for the guest; congestion.
    let mut s = FrameScript::new(cfg_flags::NO_HOST_LOOPBACK);
    s.op(Op::TcpInbound)
        .u8(0)
        .u16(50000)
        .u8(2 | (15 << 2))
        .u16(22);
    s.frame(&arp_reply(GUEST_MAC, guest4(), Ipv4Addr::new(10, 0, 2, 2)));
    tcp_rel(&mut s, 0, SYN | ACK, 0, 0, 65535, b"");
    tcp_rel(&mut s, 0, ACK | PSH, 0, 0, 65535, b"SSH-2.0-guest\r\n");
    s.op(Op::UdpInbound)
        .u8(1)
        .u8(1)
        .u16(5000)
        .u8(2 | (15 << 2))
        .u16(53)
        .chunk(b"datagram");
    s.op(Op::Congest);
    s.op(Op::TcpData).u8(0).chunk(&[b'y'; 5000]);
    s.op(Op::LinkReady);
    write("frame_path", "inbound", &s.bytes());

    // A batch of mixed frames, on a small network with restrict on.
    let mut s = FrameScript::new(cfg_flags::SMALL_NET | cfg_flags::RESTRICT);
    let frames = [
        dhcp_frame(GUEST2_MAC, &dhcp_discover(GUEST2_MAC)),
        arp_request(
            GUEST2_MAC,
            Ipv4Addr::new(10, 0, 2, 8),
            Ipv4Addr::new(10, 0, 2, 2),
        ),
        udp(GUEST2_MAC, v4(10, 0, 2, 8), 7, remote_ip(), 7, b"x"),
    ];
    s.op(Op::Batch).u8(frames.len() as u8 - 1);
    for f in &frames {
        s.0.chunk(f);
    }
    write("frame_path", "batch-small-restrict", &s.bytes());
}

fn dhcp() {
    let rec = |s: &mut Script, mac: u8, secs: u8, payload: &[u8]| {
        s.u8(mac).u8(secs).chunk(payload);
    };
    let mac = |n: u8| [0x52, 0x54, 0, 0, 0, n];
    let mut s = Script::default();
    s.u8(0);
    rec(&mut s, 1, 0, &dhcp_discover(mac(1)));
    rec(
        &mut s,
        1,
        1,
        &dhcp_request(mac(1), Ipv4Addr::new(10, 0, 2, 15)),
    );
    rec(
        &mut s,
        1,
        100,
        &dhcp_msg(
            mac(1),
            MessageType::Release,
            Ipv4Addr::new(10, 0, 2, 15),
            vec![DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2))],
        ),
    );
    write("dhcp", "lease-release", &s.0);

    // Small pool: many clients, a decline, an inform.
    let mut s = Script::default();
    s.u8(1);
    for n in 0..8 {
        rec(&mut s, n, 0, &dhcp_discover(mac(n)));
        rec(
            &mut s,
            n,
            0,
            &dhcp_request(mac(n), Ipv4Addr::new(10, 0, 2, 10 + n)),
        );
    }
    rec(
        &mut s,
        3,
        5,
        &dhcp_msg(
            mac(3),
            MessageType::Decline,
            Ipv4Addr::UNSPECIFIED,
            vec![
                DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 2, 13)),
                DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)),
            ],
        ),
    );
    rec(
        &mut s,
        4,
        5,
        &dhcp_msg(
            mac(4),
            MessageType::Inform,
            Ipv4Addr::new(10, 0, 2, 14),
            vec![],
        ),
    );
    rec(&mut s, 9, 200, &dhcp_discover(mac(9)));
    write("dhcp", "small-pool", &s.0);

    // Renewing (ciaddr set, no server id) and an INIT-REBOOT for a foreign address.
    let mut s = Script::default();
    s.u8(0);
    rec(&mut s, 2, 0, &dhcp_discover(mac(2)));
    rec(
        &mut s,
        2,
        0,
        &dhcp_request(mac(2), Ipv4Addr::new(10, 0, 2, 15)),
    );
    rec(
        &mut s,
        2,
        250,
        &dhcp_msg(
            mac(2),
            MessageType::Request,
            Ipv4Addr::new(10, 0, 2, 15),
            vec![],
        ),
    );
    rec(
        &mut s,
        5,
        0,
        &dhcp_msg(
            mac(5),
            MessageType::Request,
            Ipv4Addr::UNSPECIFIED,
            vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                192, 168, 1, 5,
            ))],
        ),
    );
    write("dhcp", "renew-reboot", &s.0);
}

fn dns() {
    let mut s = Script::default();
    s.u8(2);
    s.u8(0).u8(0).chunk(&dns_query(1, "example.org", 1, true));
    s.u8(1).u8(1).u8(0).chunk(&[]);
    s.u8(0).u8(1).chunk(&dns_query(2, "example.com", 28, false));
    s.u8(3).u16(3000);
    s.u8(3).u16(3000);
    write("dns", "answer-timeout", &s.0);

    let mut s = Script::default();
    s.u8(2);
    let q = dns_query(7, "a.b.c.example", 16, false);
    s.u8(0).u8(3).chunk(&q);
    // SERVFAIL from the first upstream: the second is asked.
    s.u8(1).u8(1).u8(2).chunk(&[]);
    s.u8(2).u8(1).chunk(&dns_answer(&q, 0, [192, 0, 2, 1]));
    // A compression loop in the answer.
    let mut lp = dns_answer(&q, 0, [1, 2, 3, 4]);
    lp.extend_from_slice(&[0xc0, 0x0c]);
    s.u8(2).u8(0).chunk(&lp);
    write("dns", "servfail-loop", &s.0);

    let mut s = Script::default();
    s.u8(0);
    s.u8(0)
        .u8(0)
        .chunk(&dns_query(9, "nothing.example", 1, false));
    write("dns", "no-upstream", &s.0);
}

fn vde() {
    write(
        "vde_handshake",
        "libvdeplug",
        &vde_switch::vde::encode_request(0, b"/run/user/1000/warren.vde/.1234-00000", "qemu"),
    );
    write(
        "vde_handshake",
        "port5",
        &vde_switch::vde::encode_request(5, b"/tmp/vde.4321-00001", "vde_plug user=me"),
    );
    write(
        "vde_handshake",
        "dotdot",
        &vde_switch::vde::encode_request(0, b"/run/user/1000/warren.vde/../x", ""),
    );
}

fn framing_seeds() {
    let mut stream = vec![7u8];
    for f in [
        arp_request(GUEST_MAC, guest4(), Ipv4Addr::new(10, 0, 2, 2)),
        dhcp_frame(GUEST_MAC, &dhcp_discover(GUEST_MAC)),
    ] {
        stream.extend_from_slice(&framing::header(f.len()));
        stream.extend_from_slice(&f);
    }
    write("framing", "two-frames", &stream);
    let mut bad = stream.clone();
    bad.extend_from_slice(&[0, 0, 0, 5, 1, 2, 3, 4, 5]);
    write("framing", "bad-length", &bad);
    write("framing", "dgram-path", b"/run/user/1000/qemu-guest.sock");
    write("framing", "dgram-abstract", b"\0qemu-guest");
}

fn api() {
    let reqs = [
        r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}"#,
        r#"{"execute":"add_hostfwd","arguments":{"proto":"udp6","host_addr":"::","host_port":53,"guest_port":53}}"#,
        r#"{"execute":"list_hostfwd"}"#,
        r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#,
        r#"{"execute":"list_leases"}"#,
        r#"{"execute":"stats"}"#,
    ];
    write(
        "api_json",
        "session",
        format!("\x01{}", reqs.join("\n")).as_bytes(),
    );
    write(
        "api_json",
        "refused",
        format!("\x3f{}\n{}\n{}", reqs[0], reqs[0], reqs[2]).as_bytes(),
    );
    write("api_json", "bad", b"\x00{\"execute\":1}\n[]\n{\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"tcp\",\"host_port\":1e3}}");
}

fn text_seeds() {
    let opts = [
        "user,id=n0,net=192.168.76.0/24,hostfwd=tcp::2222-:22,restrict=on,dnssearch=example.org",
        "net=10.0.0.0/255.255.0.0,host=10.0.2.2,dns=10.0.2.3,dhcpstart=10.0.2.50,mtu=9000",
        "ip=172.16.5.1,guestfwd=tcp:10.0.2.100:8080-cmd:echo a,,b,hostname=vm,domainname=local",
        "ipv6=on,ipv4=on,ipv6-net=fd00::/64,ipv6-host=fd00::2,ipv6-dns=fd00::3",
        "tftp=/srv",
        "net=10.0.2.0",
    ];
    for (i, o) in opts.iter().enumerate() {
        write("slirp_options", &i.to_string(), o.as_bytes());
    }
    let hf = [
        "tcp::2222-:22",
        "udp:127.0.0.1:5353-10.0.2.15:53",
        "tcp:[::1]:8000-8010-:8000-8010",
        ":0.0.0.0:80-[fd00::5]:80",
        "tcp::1-65535-:1-65535",
    ];
    for (i, h) in hf.iter().enumerate() {
        write("hostfwd", &i.to_string(), h.as_bytes());
    }
    let gf = [
        "tcp:10.0.2.100:8080-127.0.0.1:80",
        "tcp:10.0.2.101:7-cmd:cat",
        ":10.0.2.5:22-unix:/run/ssh.sock",
        "tcp::4321-tcp:[::1]:4321",
        "tcp:10.0.2.2:1-h:1",
    ];
    for (i, g) in gf.iter().enumerate() {
        write("guestfwd", &i.to_string(), g.as_bytes());
    }
    let argv = [
        &[
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
        ][..],
        &["-c", "-e", "4", "1234", "tap0"],
        &[
            "--cidr=192.168.5.0/28",
            "-m",
            "576",
            "--disable-dns",
            "99",
            "tap9",
        ],
        &["--target-type=bess", "/tmp/bess.sock"],
        &["--help"],
    ];
    for (i, a) in argv.iter().enumerate() {
        write("slirp4netns_cli", &i.to_string(), a.join("\0").as_bytes());
    }
    let rc = [
        "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org lan.\n",
        "# comment\nnameserver 192.0.2.1 ; trailing\nnameserver fe80::1%eth0\nnameserver 0.0.0.0\ndomain corp.example\n",
        "nameserver ::\nnameserver 2001:db8::53%2\nsearch a.b c..d .\n",
    ];
    for (i, r) in rc.iter().enumerate() {
        write("resolv_conf", &i.to_string(), r.as_bytes());
    }
}

fn vxlan_seeds() {
    // A datagram as Linux's vxlan device sends it: ARP over VNI 42.
    let mut d = vde_switch::vxlan::header(42).to_vec();
    d.extend_from_slice(&arp_request(
        GUEST_MAC,
        guest4(),
        Ipv4Addr::new(10, 0, 2, 2),
    ));
    write("vxlan", "arp-vni42", &d);
    // VXLAN-GPE carrying Ethernet, reserved bits set.
    let mut g = d.clone();
    g[0] = 0x0c;
    g[3] = 0x03;
    g[7] = 0xff;
    write("vxlan", "gpe-ethernet", &g);
    // A guest's DF frame too big for a 1450-byte uplink (the first two bytes are the MTU).
    let mut big = vec![0x05, 0xaa, 0, 0, 0, 0, 0, 0];
    big.extend_from_slice(&[0x52, 0x55, 10, 0, 2, 2]);
    big.extend_from_slice(&GUEST_MAC);
    big.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    big.extend_from_slice(&[10, 0, 2, 15, 10, 0, 2, 16]);
    big.resize(8 + 14 + 1500, 0x5a);
    write("vxlan", "frag-needed", &big);
    write("vxlan", "endpoint-v6", b"[2001:db8::7]:4789");
    write("vxlan", "dhcp-range", b"10.0.2.100-10.0.2.199");
}
