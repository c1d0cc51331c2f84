//! DHCPv6 against the real binary: busybox has no DHCPv6 client, so this test is the client. Two
//! raw clients on warren's `--socket` (QEMU stream framing) send link-local DHCPv6 messages built
//! with `dhcproto` to `ff02::1:2` and read warren's answers off the LAN:
//! Solicit -> Advertise, Request -> Reply, Solicit with Rapid Commit -> Reply, Renew -> Reply,
//! Release -> Reply (Success), Information-Request -> Reply (stateless). Checked: the IA_NA
//! address lies in the prefix (`fec0::/64`), is stable per DUID and distinct for two DUIDs, the
//! DNS servers option (23) names `fec0::3` and the domain list (24) carries `--dns-search`.
//! Nothing leaves the machine: the clients talk to warren only.

use std::io::{Read, Write};
use std::net::Ipv6Addr;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, Message, MessageType, OptionCode, Status, IANA,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use warren_tests::warren::Warren;

const DOMAIN: &str = "v6.warren.example";
const ALL_DHCP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// The modified EUI-64 link-local address of `mac`.
fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

fn sum16(mut acc: u32, b: &[u8]) -> u32 {
    for c in b.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

/// An Ethernet frame carrying UDP `sport` -> `dport` over IPv6, with a valid checksum.
fn udp6_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let ulen = 8 + payload.len();
    let mut udp = Vec::with_capacity(ulen);
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&(ulen as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut acc = sum16(0, &src.octets());
    acc = sum16(acc, &dst.octets());
    acc += ulen as u32 + 17;
    acc = sum16(acc, &udp);
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    let c = match !(acc as u16) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + ulen);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(ulen as u16).to_be_bytes());
    f.extend_from_slice(&[17, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&udp);
    f
}

/// A raw DHCPv6 client on warren's stream socket.
struct Client {
    sock: UnixStream,
    mac: [u8; 6],
    duid: Vec<u8>,
    xid: u8,
}

impl Client {
    fn connect(w: &Warren, n: u8) -> Client {
        let sock = UnixStream::connect(w.socket()).expect("connect to warren's socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let mac = [0x52, 0x54, 0, 0x66, 0, n];
        // DUID-LL (type 3, hardware type 1) from the MAC.
        let mut duid = vec![0, 3, 0, 1];
        duid.extend_from_slice(&mac);
        Client {
            sock,
            mac,
            duid,
            xid: n.wrapping_mul(16),
        }
    }

    fn ll(&self) -> Ipv6Addr {
        link_local(self.mac)
    }

    /// Sends `kind` with the client id, elapsed time and `opts`; returns warren's answer.
    fn exchange(&mut self, kind: MessageType, opts: Vec<DhcpOption>) -> Message {
        self.xid = self.xid.wrapping_add(1);
        let xid = [0x77, self.mac[5], self.xid];
        let mut m = Message::new_with_id(kind, xid);
        m.opts_mut().insert(DhcpOption::ClientId(self.duid.clone()));
        m.opts_mut().insert(DhcpOption::ElapsedTime(0));
        m.opts_mut().insert(DhcpOption::ORO(dhcproto::v6::ORO {
            opts: vec![OptionCode::DomainNameServers, OptionCode::DomainSearchList],
        }));
        for o in opts {
            m.opts_mut().insert(o);
        }
        let mut payload = Vec::new();
        m.encode(&mut Encoder::new(&mut payload)).expect("encode");
        let frame = udp6_frame(
            [0x33, 0x33, 0, 1, 0, 2],
            self.mac,
            self.ll(),
            ALL_DHCP,
            546,
            547,
            &payload,
        );
        let mut framed = (frame.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&frame);
        self.sock.write_all(&framed).expect("send to warren");
        self.answer(xid)
            .unwrap_or_else(|| panic!("no DHCPv6 answer to {kind:?} within 5 s"))
    }

    /// The DHCPv6 message with `xid` from port 547 to this client, within 5 s.
    fn answer(&mut self, xid: [u8; 3]) -> Option<Message> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let mut len = [0u8; 4];
            if self.sock.read_exact(&mut len).is_err() {
                continue;
            }
            let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
            self.sock
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("read timeout");
            self.sock.read_exact(&mut f).expect("frame body");
            self.sock
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("read timeout");
            // Ethernet to us, IPv6, UDP 547 -> 546, to our link-local address.
            if f.len() < 14 + 48 || f[..6] != self.mac || f[12..14] != [0x86, 0xdd] || f[20] != 17 {
                continue;
            }
            let dst: [u8; 16] = f[38..54].try_into().expect("16 bytes");
            let (sport, dport) = (
                u16::from_be_bytes([f[54], f[55]]),
                u16::from_be_bytes([f[56], f[57]]),
            );
            if Ipv6Addr::from(dst) != self.ll() || (sport, dport) != (547, 546) {
                continue;
            }
            let m = Message::decode(&mut Decoder::new(&f[62..])).expect("warren's DHCPv6 decodes");
            if m.xid() == xid {
                return Some(m);
            }
        }
        None
    }
}

fn ia_na(iaid: u32, addr: Option<Ipv6Addr>) -> DhcpOption {
    let mut opts = DhcpOptions::new();
    if let Some(addr) = addr {
        opts.insert(DhcpOption::IAAddr(IAAddr {
            addr,
            preferred_life: 0,
            valid_life: 0,
            opts: DhcpOptions::new(),
        }));
    }
    DhcpOption::IANA(IANA {
        id: iaid,
        t1: 0,
        t2: 0,
        opts,
    })
}

/// The single IA_NA address of `m` with its preferred and valid lifetimes.
fn address(m: &Message) -> (Ipv6Addr, u32, u32) {
    let mut found = Vec::new();
    for o in m.opts().iter() {
        if let DhcpOption::IANA(ia) = o {
            for s in ia.opts.iter() {
                if let DhcpOption::IAAddr(a) = s {
                    found.push((a.addr, a.preferred_life, a.valid_life));
                }
            }
        }
    }
    assert_eq!(found.len(), 1, "one IA_NA address expected: {m:?}");
    found[0]
}

fn server_id(m: &Message) -> DhcpOption {
    m.opts()
        .get(OptionCode::ServerId)
        .cloned()
        .unwrap_or_else(|| panic!("no server id: {m:?}"))
}

/// Option 23 and option 24 as warren sends them.
fn config_options(m: &Message) -> (Vec<Ipv6Addr>, Vec<String>) {
    let dns = match m.opts().get(OptionCode::DomainNameServers) {
        Some(DhcpOption::DomainNameServers(a)) => a.clone(),
        other => panic!("no DNS servers option: {other:?}"),
    };
    let domains = match m.opts().get(OptionCode::DomainSearchList) {
        Some(DhcpOption::DomainSearchList(n)) => n.iter().map(|n| n.to_ascii()).collect(),
        other => panic!("no domain list option: {other:?}"),
    };
    (dns, domains)
}

fn in_prefix(a: Ipv6Addr) -> bool {
    a.segments()[..4] == [0xfec0, 0, 0, 0]
}

#[test]
fn dhcpv6_stateful_and_stateless_against_the_real_binary() {
    let w = Warren::spawn(&["--dns-search", DOMAIN]);
    let router_dns: Ipv6Addr = "fec0::3".parse().unwrap();
    let want_domains = vec![format!("{DOMAIN}.")];
    let domains_ok = |d: &[String]| d == want_domains || d == [DOMAIN.to_string()];

    // Stateless: Information-Request gets DNS and domains, no address.
    let mut a = Client::connect(&w, 1);
    let r = a.exchange(MessageType::InformationRequest, vec![]);
    assert_eq!(r.msg_type(), MessageType::Reply);
    let (dns, domains) = config_options(&r);
    assert_eq!(dns, vec![router_dns]);
    assert!(domains_ok(&domains), "{domains:?}");
    assert!(r.opts().get(OptionCode::IANA).is_none());

    // Stateful, four messages: Solicit -> Advertise, Request -> Reply.
    let adv = a.exchange(MessageType::Solicit, vec![ia_na(1, None)]);
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    let (offered, _, _) = address(&adv);
    assert!(in_prefix(offered), "{offered}");
    assert_ne!(offered, router_dns);
    let sid = server_id(&adv);
    let (dns, domains) = config_options(&adv);
    assert_eq!(dns, vec![router_dns]);
    assert!(domains_ok(&domains), "{domains:?}");
    let rep = a.exchange(
        MessageType::Request,
        vec![sid.clone(), ia_na(1, Some(offered))],
    );
    assert_eq!(rep.msg_type(), MessageType::Reply);
    let (leased, preferred, valid) = address(&rep);
    assert_eq!(leased, offered);
    assert!(preferred > 0 && valid >= preferred, "{preferred} {valid}");
    assert_eq!(server_id(&rep), sid);

    // Stable per DUID: a new Solicit of the same client is offered the same address.
    let again = a.exchange(MessageType::Solicit, vec![ia_na(1, None)]);
    assert_eq!(address(&again).0, leased);

    // A second DUID, with Rapid Commit: a Reply at once, with a different address.
    let mut b = Client::connect(&w, 2);
    let rc = b.exchange(
        MessageType::Solicit,
        vec![ia_na(1, None), DhcpOption::RapidCommit],
    );
    assert_eq!(rc.msg_type(), MessageType::Reply);
    assert!(rc.opts().get(OptionCode::RapidCommit).is_some());
    let (other, _, _) = address(&rc);
    assert!(in_prefix(other), "{other}");
    assert_ne!(other, leased, "two DUIDs, two addresses");

    // Renew keeps the address with fresh lifetimes.
    let ren = a.exchange(
        MessageType::Renew,
        vec![sid.clone(), ia_na(1, Some(leased))],
    );
    assert_eq!(ren.msg_type(), MessageType::Reply);
    let (renewed, _, valid) = address(&ren);
    assert_eq!(renewed, leased);
    assert!(valid > 0);

    // Release: a Reply with status Success.
    let rel = a.exchange(MessageType::Release, vec![sid, ia_na(1, Some(leased))]);
    assert_eq!(rel.msg_type(), MessageType::Reply);
    match rel.opts().get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => assert_eq!(s.status, Status::Success),
        other => panic!("no status in the Release reply: {other:?}"),
    }
    // Released, it is still this client's preference: a new Solicit offers it again, while the
    // other client keeps its own.
    let back = a.exchange(MessageType::Solicit, vec![ia_na(1, None)]);
    assert_eq!(address(&back).0, leased);
    let b_again = b.exchange(MessageType::Solicit, vec![ia_na(1, None)]);
    assert_eq!(address(&b_again).0, other);
    assert!(
        w.stderr().lines().all(|l| !l.contains("panicked")),
        "{}",
        w.stderr()
    );
}
