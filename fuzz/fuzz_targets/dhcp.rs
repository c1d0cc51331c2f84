//! The DHCP server on its own: a sequence of client messages (from a handful of MACs, with time
//! passing) against one `DhcpServer` on a small network, so pools fill up, offers lapse and
//! declines quarantine addresses.
//!
//! Input: a script of `[mac u8][advance u8 seconds][chunk: BOOTP payload]` records. Checked: every
//! reply decodes as a BOOTREPLY to the right client, at least 300 bytes; every address handed out
//! is inside the network and not the gateway's, the DNS address, the network or the broadcast
//! address; no two MACs hold the same address.
#![no_main]

use dhcproto::v4::{Message, Opcode};
use dhcproto::{Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use netstack::config::{Config, Ipv4Net};
use netstack::dhcp::DhcpServer;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use warren_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let small = inp.bool();
    let mut cfg = Config::default();
    if small {
        // 14 usable addresses, 5 of them in the pool: exhaustion is reachable.
        cfg.net = Ipv4Net::new(Ipv4Addr::new(10, 0, 2, 0), 28).expect("valid /28");
        cfg.dhcp_start = Ipv4Addr::new(10, 0, 2, 10);
    }
    cfg.dns_search = vec!["example.org".into(), "a.example".into()];
    cfg.domain_name = Some("example.org".into());
    cfg.lease_time = Duration::from_secs(600);
    let mut server = DhcpServer::new(&cfg);
    let mut now = Instant::now();

    for _ in 0..256 {
        if inp.is_empty() {
            break;
        }
        let m = inp.u8();
        // MACs 52:54:00:00:00:0X; the fuzzer can still write any chaddr (then it is refused).
        let mac = [0x52, 0x54, 0, 0, 0, m % 16];
        now += Duration::from_secs(u64::from(inp.u8()) * 4);
        let payload = inp.chunk();
        match server.handle(now, mac, payload) {
            Ok(Some(reply)) => {
                assert!(reply.payload.len() >= 300, "short reply");
                let msg =
                    Message::decode(&mut Decoder::new(&reply.payload)).expect("our reply decodes");
                assert_eq!(msg.opcode(), Opcode::BootReply);
                assert_eq!(msg.chaddr(), &mac[..], "reply for another client");
                assert!(
                    reply.dst_mac == mac || reply.dst_mac == [0xff; 6],
                    "reply to a third MAC"
                );
                let y = msg.yiaddr();
                if !y.is_unspecified() {
                    assert_usable(&cfg, y);
                }
            }
            Ok(None) => {}
            Err(e) => {
                let s = e.to_string();
                assert!(!s.contains('\n'), "multi-line error {s:?}");
            }
        }
        let leases = server.leases();
        let mut seen_ip = HashSet::new();
        let mut seen_mac = HashSet::new();
        for l in &leases {
            assert_usable(&cfg, l.ip);
            assert!(seen_ip.insert(l.ip), "{} leased twice", l.ip);
            assert!(seen_mac.insert(l.mac), "a MAC holds two leases");
            assert_eq!(server.lease_for_mac(&l.mac), Some(l.ip));
            assert_eq!(server.mac_for_ip(l.ip), Some(l.mac));
            if let Some(h) = &l.hostname {
                assert!(h.len() <= 63 && h.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }
});

fn assert_usable(cfg: &Config, ip: Ipv4Addr) {
    assert!(cfg.net.contains(ip), "{ip} outside the network");
    assert!(
        ![cfg.gateway, cfg.dns, cfg.net.network(), cfg.net.broadcast()].contains(&ip),
        "{ip} is not a guest address"
    );
}
