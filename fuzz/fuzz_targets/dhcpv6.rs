//! The DHCPv6 server on its own: client messages from a handful of clients, with time passing,
//! against one `Dhcpv6Server` (on a tiny /124 prefix, so the pool runs out, or on slirp's /64).
//!
//! Input: a byte choosing the prefix, then records of `[client u8][advance u8 × 10 min][mode u8]`
//! followed by either a raw chunk (`mode & 1`) or the fields of a structured message: type,
//! whether to send a client id / our server id / another server id / rapid commit, and up to
//! three IA_NAs with up to two addresses each (from a small set, some in the pool).
//!
//! Checked: every reply decodes, is an Advertise or Reply with the request's transaction id,
//! our server id and the client's id when one was sent, goes to the sender; every address handed
//! out with a non-zero lifetime is inside the prefix and none of the gateway's; leases are
//! distinct, each is reported as held by its MAC, and the table stays within its bound; errors
//! are one line.
#![no_main]

use dhcproto::v6::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use netstack::addr6::{link_local, Ipv6Net, Plan6};
use netstack::dhcpv6::{Dhcpv6Config, Dhcpv6Server};
use netstack::Mac;
use std::collections::HashSet;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};
use warren_fuzz::Input;

const GW: Mac = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

fn opt(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

fn duid(mac: &Mac) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend_from_slice(mac);
    d
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let small = inp.bool();
    let plan = if small {
        Plan6::new(Ipv6Net::parse("fd00::/124").expect("net"), None, None, GW).expect("plan")
    } else {
        Plan6::slirp(GW)
    };
    let mut cfg = Dhcpv6Config::new(plan.clone());
    cfg.domains = vec!["example.org".into(), "a.example".into()];
    cfg.max_leases = if small { 8 } else { 64 };
    let max = cfg.max_leases;
    let mut server = Dhcpv6Server::new(cfg);
    let sid = server.duid().to_vec();
    let addrs: Vec<Ipv6Addr> = [
        plan.net.host(1),
        plan.net.host(5),
        plan.net.host(0x1_0005),
        plan.router,
        plan.dns,
        "2001:db8::5".parse().expect("addr"),
    ]
    .to_vec();
    let mut now = Instant::now();

    for _ in 0..256 {
        if inp.is_empty() {
            break;
        }
        let c = inp.u8();
        let mac: Mac = [0x52, 0x54, 0, 0, 0, c % 8];
        let src = link_local(&mac);
        now += Duration::from_secs(u64::from(inp.u8()) * 600);
        let mode = inp.u8();
        let (payload, sent_client) = if mode & 1 == 1 {
            (inp.chunk().to_vec(), None)
        } else {
            let kinds = [1u8, 3, 4, 5, 6, 8, 9, 11];
            let kind = kinds[usize::from(mode >> 1) % kinds.len()];
            let flags = inp.u8();
            let mut m = vec![kind, c, flags, 7];
            let client = (flags & 1 == 1).then(|| duid(&mac));
            if let Some(d) = &client {
                opt(&mut m, 1, d);
            }
            if flags & 2 != 0 {
                opt(&mut m, 2, &sid);
            }
            if flags & 4 != 0 {
                opt(&mut m, 2, &[0, 3, 0, 1, 9, 9, 9, 9, 9, 9]);
            }
            if flags & 8 != 0 {
                opt(&mut m, 14, &[]);
            }
            opt(&mut m, 6, &[0, 23, 0, 24]);
            for _ in 0..(flags >> 4) % 4 {
                let iaid = u32::from(inp.u8() % 4);
                let mut ia = iaid.to_be_bytes().to_vec();
                ia.extend_from_slice(&[0; 8]);
                for _ in 0..inp.u8() % 3 {
                    let a = addrs[usize::from(inp.u8()) % addrs.len()];
                    let mut x = a.octets().to_vec();
                    x.extend_from_slice(&[0; 8]);
                    opt(&mut ia, 5, &x);
                }
                opt(&mut m, 3, &ia);
            }
            (m, client)
        };
        match server.handle(now, mac, src, &payload) {
            Ok(Some(reply)) => {
                assert_eq!((reply.dst, reply.dst_mac), (src, mac));
                let msg =
                    Message::decode(&mut Decoder::new(&reply.payload)).expect("our reply decodes");
                assert!(matches!(
                    msg.msg_type(),
                    MessageType::Advertise | MessageType::Reply
                ));
                assert_eq!(&msg.xid()[..], &payload[1..4]);
                assert_eq!(
                    msg.opts().get(OptionCode::ServerId),
                    Some(&DhcpOption::ServerId(sid.clone()))
                );
                if let Some(d) = sent_client {
                    assert_eq!(
                        msg.opts().get(OptionCode::ClientId),
                        Some(&DhcpOption::ClientId(d))
                    );
                }
                for o in msg.opts().iter() {
                    if let DhcpOption::IANA(ia) = o {
                        for s in ia.opts.iter() {
                            if let DhcpOption::IAAddr(x) = s {
                                if x.valid_life > 0 {
                                    assert!(plan.net.contains(x.addr), "{} outside", x.addr);
                                    assert!(!plan.is_own(&x.addr), "{} is ours", x.addr);
                                    assert_ne!(x.addr, plan.net.addr());
                                }
                            }
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                let s = e.to_string();
                assert!(!s.contains('\n'), "multi-line error {s:?}");
            }
        }
        let leases = server.leases();
        let mut seen = HashSet::new();
        for l in &leases {
            assert!(seen.insert(l.addr), "{} leased twice", l.addr);
            assert!(plan.net.contains(l.addr) && !plan.is_own(&l.addr));
            assert_eq!(server.mac_for_addr(l.addr), Some(l.mac));
        }
        assert!(server.table_len() <= max);
    }
});
