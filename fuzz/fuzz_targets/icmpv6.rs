//! ICMPv6 and NDP: the wire parsers and the NDP/RA responder, on virtual time.
//!
//! Input: a seed byte for the responder, then records of `[op u8][advance u16 ms]`, an optional
//! hop limit, a chunk (an ICMPv6 message; its checksum is fixed up unless `op & 2`), and when
//! `op & 0x10` a second chunk parsed as a raw IPv6 packet. Sources and destinations come from a
//! small set of interesting addresses picked by `op`.
//!
//! Checked: every message the parser accepts emits bytes that parse back to the same message
//! (errors quote at most 1232 bytes; empty DNSSL options are not emitted); an accepted IPv6
//! header re-emits byte for byte; the responder only ever sends NAs for the gateway's own
//! addresses (a DAD probe for anything else gets nothing), from that address, solicited ones to
//! the soliciting node and unsolicited ones to all-nodes; it never learns one of its own
//! addresses as a guest's; RAs come from the router's link-local address, at most one per
//! MIN_DELAY_BETWEEN_RAS; the next deadline is always in the future after a poll; errors are one
//! line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::addr6::Plan6;
use netstack::ndp::{NdpConfig, NdpResponder, NdpTx, MIN_DELAY_BETWEEN_RAS};
use netstack::wire::ethernet::Frame;
use netstack::wire::icmpv6::{Icmpv6Repr, NdpRepr, MAX_INVOKING};
use netstack::wire::ipv6::{
    solicited_node, upper_checksum, Ipv6Packet, Ipv6Repr, ALL_NODES, ALL_ROUTERS, NH_ICMPV6,
};
use netstack::Mac;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};
use warren_fuzz::Input;

const GW: Mac = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
const GUEST: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn a(s: &str) -> Ipv6Addr {
    s.parse().expect("addr")
}

/// The message as it should come back from its own bytes.
fn normalised(r: &Icmpv6Repr<'_>) -> String {
    let r = match r {
        Icmpv6Repr::Ndp(NdpRepr::RouterAdvert {
            hop_limit,
            managed,
            other,
            router_lifetime,
            reachable_time,
            retrans_time,
            source_lladdr,
            mtu,
            prefixes,
            rdnss,
            dnssl,
        }) => Icmpv6Repr::Ndp(NdpRepr::RouterAdvert {
            hop_limit: *hop_limit,
            managed: *managed,
            other: *other,
            router_lifetime: *router_lifetime,
            reachable_time: *reachable_time,
            retrans_time: *retrans_time,
            source_lladdr: *source_lladdr,
            mtu: *mtu,
            prefixes: prefixes.clone(),
            rdnss: rdnss.clone(),
            dnssl: dnssl
                .iter()
                .filter(|d| !d.domains.is_empty())
                .cloned()
                .collect(),
        }),
        other => other.clone(),
    };
    format!("{r:?}")
}

fn parse_tx(plan: &Plan6, tx: &NdpTx) -> NdpRepr {
    let f = tx.to_frame(GW);
    let eth = Frame::parse(&f).expect("eth");
    assert_eq!(eth.src(), GW);
    let ip = Ipv6Packet::parse(eth.payload()).expect("our IPv6 parses");
    assert_eq!(ip.hop_limit(), 255, "NDP must leave with hop limit 255");
    let u = ip.upper_layer().expect("our headers walk");
    assert_eq!(u.proto, NH_ICMPV6);
    match Icmpv6Repr::parse(ip.src(), ip.dst(), u.data).expect("our ICMPv6 parses") {
        Icmpv6Repr::Ndp(n) => {
            if let NdpRepr::RouterAdvert { .. } = n {
                assert_eq!(ip.src(), plan.router_ll);
            }
            n
        }
        other => panic!("sent a non-NDP message {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let plan = Plan6::slirp(GW);
    let mut cfg = NdpConfig::new(plan.clone(), 1500);
    cfg.dns_search = vec!["example.org".into(), "b.example".into()];
    cfg.min_interval = Duration::from_secs(4);
    cfg.max_interval = Duration::from_secs(10);
    let t0 = Instant::now();
    let mut now = t0;
    let mut ndp = NdpResponder::new(cfg, u64::from(inp.u8()), now);
    let mut last_ra: Option<Instant> = None;
    let srcs = [
        Ipv6Addr::UNSPECIFIED,
        a("fe80::5054:ff:fe12:3456"),
        a("fec0::15"),
        a("fec0::2"),
        plan.router_ll,
        a("ff02::1"),
        a("2001:db8::1"),
        a("fec0::5054:ff:fe12:3456"),
    ];
    let dsts = [
        ALL_NODES,
        ALL_ROUTERS,
        solicited_node(&plan.router),
        solicited_node(&plan.dns),
        solicited_node(&plan.router_ll),
        plan.router,
        plan.router_ll,
        a("ff02::1:ff12:3456"),
    ];

    for _ in 0..128 {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        now += Duration::from_millis(u64::from(inp.u16()));
        for tx in ndp.poll(now) {
            assert!(matches!(parse_tx(&plan, &tx), NdpRepr::RouterAdvert { .. }));
            assert_eq!(tx.dst, ALL_NODES);
            if let Some(l) = last_ra {
                assert!(now - l >= MIN_DELAY_BETWEEN_RAS, "RAs too close");
            }
            last_ra = Some(now);
        }
        assert!(ndp.next_deadline() > now, "deadline not in the future");

        let src = srcs[usize::from(op >> 2) % srcs.len()];
        let dst = dsts[usize::from(op >> 5) % dsts.len()];
        let hop = if op & 1 == 0 { 255 } else { inp.u8() };
        let mut icmp = inp.chunk().to_vec();
        if icmp.len() >= 4 && op & 2 == 0 {
            icmp[2] = 0;
            icmp[3] = 0;
            let c = upper_checksum(src, dst, NH_ICMPV6, &icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
        }

        // The parser: accepted messages round-trip.
        match Icmpv6Repr::parse(src, dst, &icmp) {
            Ok(repr) => {
                let quoted_too_long = match &repr {
                    Icmpv6Repr::DstUnreachable { invoking, .. }
                    | Icmpv6Repr::PacketTooBig { invoking, .. }
                    | Icmpv6Repr::TimeExceeded { invoking, .. }
                    | Icmpv6Repr::ParamProblem { invoking, .. } => invoking.len() > MAX_INVOKING,
                    _ => false,
                };
                let again = repr.to_bytes(src, dst);
                let back = Icmpv6Repr::parse(src, dst, &again).expect("own bytes parse");
                if !quoted_too_long {
                    assert_eq!(normalised(&back), normalised(&repr), "round trip");
                }
            }
            Err(e) => assert!(!e.to_string().contains('\n')),
        }

        // The responder.
        let pkt = Ipv6Repr::new(src, dst, NH_ICMPV6, 0, hop).packet(&icmp);
        match ndp.handle_packet(now, GUEST, &pkt) {
            Ok(out) => {
                for tx in &out.replies {
                    match parse_tx(&plan, tx) {
                        NdpRepr::NeighborAdvert {
                            solicited,
                            target,
                            target_lladdr,
                            ..
                        } => {
                            assert!(plan.is_own(&target), "NA for a foreign address {target}");
                            assert_eq!(tx.src, target);
                            assert_eq!(target_lladdr, Some(GW));
                            if solicited {
                                assert!(!src.is_unspecified());
                                assert_eq!(tx.dst, src);
                            } else {
                                assert!(src.is_unspecified());
                                assert_eq!(tx.dst, ALL_NODES);
                            }
                        }
                        other => panic!("handle sent {other:?}"),
                    }
                }
                if let Some((ip, _)) = out.learned {
                    assert!(!plan.is_own(&ip), "learnt our own address {ip}");
                    assert!(!ip.is_unspecified() && !ip.is_multicast());
                }
            }
            Err(e) => assert!(!e.to_string().contains('\n')),
        }

        // Raw IPv6 packets: the header re-emits byte for byte; the walk never panics.
        if op & 0x10 != 0 {
            let raw = inp.chunk();
            if let Ok(p) = Ipv6Packet::parse(raw) {
                let mut h = [0u8; 40];
                Ipv6Repr::parse(&p).emit(&mut h);
                assert_eq!(&h[..], p.header());
                if let Ok(u) = p.upper_layer() {
                    assert!(u.offset <= p.as_bytes().len());
                    assert_eq!(u.offset + u.data.len(), p.as_bytes().len());
                }
            }
        }
    }
});
