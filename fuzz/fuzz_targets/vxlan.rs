//! The VXLAN uplink's parsers (`vde-switch/src/vxlan.rs`): the header of every datagram a remote VTEP
//! sends, the ICMP "fragmentation needed" built from a guest's oversized frame, the learning table fed
//! with the inner source MACs, and the `REMOTE[:PORT]` / `START-END` option values.
//!
//! Checked: an accepted datagram has a 24-bit VNI and an inner frame of at least an Ethernet header
//! that is exactly the rest of the datagram, and the header we write for that VNI parses back to it;
//! a frag-needed reply is a well-formed IPv4 ICMP type 3 code 4 (valid checksums) addressed to the
//! frame's sender, quoting at most its IP header + 8 bytes; the table never holds more than its bound
//! nor a group MAC; an accepted endpoint prints and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::wire::{ethernet, icmp, ip};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use vde_switch::vxlan::{self, TooBig, VtepTable};

fuzz_target!(|data: &[u8]| {
    match vxlan::parse(data) {
        Ok((vni, inner)) => {
            assert!(vni <= vxlan::MAX_VNI);
            assert!(inner.len() >= ethernet::HEADER_LEN);
            assert_eq!(inner.len() + vxlan::HEADER_LEN, data.len());
            let mut again = vxlan::header(vni).to_vec();
            again.extend_from_slice(inner);
            assert_eq!(vxlan::parse(&again), Ok((vni, inner)));
        }
        Err(e) => assert!(!e.to_string().contains('\n')),
    }

    // The datagram's payload as a guest frame too big for the uplink.
    let frame = data.get(vxlan::HEADER_LEN..).unwrap_or_default();
    let mtu = data
        .get(..2)
        .map_or(1450, |b| u16::from_be_bytes([b[0], b[1]]).max(68));
    let gw_mac = [0x52, 0x55, 10, 0, 2, 2];
    let gw = Ipv4Addr::new(10, 0, 2, 2);
    if let TooBig::Reply(r) = vxlan::frag_needed(frame, mtu, gw_mac, gw) {
        let eth = ethernet::Frame::parse(&r).expect("reply has an Ethernet header");
        assert_eq!(eth.src(), gw_mac);
        assert_eq!(
            eth.dst(),
            ethernet::Frame::parse(frame).expect("frame").src()
        );
        assert!(!ethernet::is_group(&eth.dst()));
        let p = ip::IpPacket::parse_v4(eth.payload()).expect("reply is valid IPv4");
        assert_eq!(p.src, IpAddr::V4(gw));
        assert_eq!(p.proto, ip::PROTO_ICMP);
        let m = icmp::IcmpMessage::parse(p.payload).expect("valid ICMP checksum");
        assert_eq!((m.kind, m.code), (icmp::DEST_UNREACHABLE, 4));
        assert_eq!(m.seq, mtu);
        assert!(m.payload.len() <= 60 + 8);
    }

    // Learning: inner source MACs from 6-byte chunks, VTEPs from the next byte.
    let t0 = Instant::now();
    let mut t = VtepTable::new(8, Duration::from_secs(5));
    for (i, c) in data.chunks_exact(7).enumerate() {
        let mac: [u8; 6] = c[..6].try_into().expect("6 bytes");
        let vtep = SocketAddr::new(Ipv4Addr::new(192, 0, 2, c[6]).into(), 4789);
        let now = t0 + Duration::from_secs(i as u64 / 4);
        let learnt = t.learn(now, mac, vtep);
        if learnt {
            assert_eq!(t.lookup(now, &mac), Some(vtep));
        }
        assert!(!(learnt && ethernet::is_group(&mac)));
        assert!(t.len() <= 8);
    }

    // Option values.
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(a) = vxlan::parse_endpoint(s) {
            assert_eq!(vxlan::parse_endpoint(&a.to_string()), Ok(a));
        }
        if let Ok((a, b)) = vxlan::parse_dhcp_range(s) {
            assert!(u32::from(a) <= u32::from(b));
        }
    }
});
