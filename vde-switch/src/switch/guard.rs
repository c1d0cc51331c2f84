//! Guest safety on a shared LAN: frames in which a guest claims an address that only the gateway may
//! use (its own, the DNS forwarder's) are dropped by the switch before they reach anyone. [`inspect`]
//! also gives the server the claimed source address for the IP source guard (`binding.rs`) and spots
//! DHCP server messages from guests.
//!
//! The gateway already ignores such frames; this check keeps them from other guests too, so a guest
//! cannot poison its neighbours' ARP caches with a reply or gratuitous ARP for 10.0.2.2, nor send IPv4
//! packets from that address to them. One or two 802.1Q/802.1ad tags are looked through, so tagging a
//! frame does not hide it. For IPv6 the same holds for the source address and the target of a
//! neighbour advertisement ([`claims6`]); the extension-header chain is walked (bounded) so that a
//! Hop-by-Hop or Destination Options header does not hide a router advertisement (RFC 7113).

use std::fmt;

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_RA: u8 = 134;
const ICMPV6_NA: u8 = 136;
const DHCPV6_SERVER_PORT: u16 = 547;
/// Extension headers walked before giving up (the gateway's own walk is bounded the same way).
const MAX_EXT_HEADERS: usize = 8;

/// What a refused frame claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// An ARP packet whose sender protocol address is protected.
    Arp([u8; 4]),
    /// An IPv4 packet whose source address is protected.
    Ipv4([u8; 4]),
    /// An IPv6 packet whose source address is protected.
    Ipv6([u8; 16]),
    /// An IPv6 neighbour advertisement for a protected target address.
    NeighborAdvert([u8; 16]),
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, a) = match self {
            Claim::Arp(a) => ("sends ARP for", a),
            Claim::Ipv4(a) => ("sends IPv4 from", a),
            Claim::Ipv6(a) => {
                let a = std::net::Ipv6Addr::from(*a);
                return write!(f, "sends IPv6 from the gateway's address {a}");
            }
            Claim::NeighborAdvert(a) => {
                let a = std::net::Ipv6Addr::from(*a);
                return write!(f, "advertises the gateway's IPv6 address {a}");
            }
        };
        write!(
            f,
            "{what} the gateway's address {}.{}.{}.{}",
            a[0], a[1], a[2], a[3]
        )
    }
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

fn ip_at(f: &[u8], at: usize) -> Option<[u8; 4]> {
    f.get(at..at + 4)?.try_into().ok()
}

/// Whether `frame` (from a guest) claims one of the `protected` IPv4 addresses.
pub fn claims(frame: &[u8], protected: &[[u8; 4]]) -> Option<Claim> {
    match inspect(frame) {
        L3::Arp { spa } => protected.contains(&spa).then_some(Claim::Arp(spa)),
        L3::Ipv4 { src, .. } => protected.contains(&src).then_some(Claim::Ipv4(src)),
        _ => None,
    }
}

/// Whether `frame` (from a guest) claims one of the `protected` IPv6 addresses (the router's global
/// and link-local ones, the DNS address) as its source or as the target of a neighbour
/// advertisement.
pub fn claims6(frame: &[u8], protected: &[[u8; 16]]) -> Option<Claim> {
    match inspect(frame) {
        L3::Ipv6 { src, .. } if protected.contains(&src) => Some(Claim::Ipv6(src)),
        L3::Ipv6 {
            na_target: Some(t), ..
        } if protected.contains(&t) => Some(Claim::NeighborAdvert(t)),
        _ => None,
    }
}

/// What the switch's guest-safety rules look at in a frame (after up to two VLAN tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3 {
    /// ARP for IPv4: the sender protocol address.
    Arp { spa: [u8; 4] },
    /// IPv4: the source address, and whether the packet is a DHCP *server* message (UDP from port
    /// 67, or a BOOTREPLY to port 67/68), which no guest may send.
    Ipv4 { src: [u8; 4], dhcp_server: bool },
    /// IPv6: the source address, whether the packet is a router advertisement (ICMPv6 type 134)
    /// or a DHCPv6 server message (UDP from port 547), which no guest may send (RA guard, DHCPv6
    /// guard), and the target of a neighbour advertisement. Up to [`MAX_EXT_HEADERS`] extension
    /// headers are walked; a longer chain, or a first fragment that ends before the upper-layer
    /// header (RFC 7112 forbids both), counts as a router advertisement (dropped). Later fragments
    /// carry no upper-layer header and are judged by their source alone.
    Ipv6 {
        src: [u8; 16],
        router_advert: bool,
        dhcp_server: bool,
        na_target: Option<[u8; 16]>,
    },
    /// Anything else (or too short to say).
    Other,
}

/// Parses the parts of `frame` the safety rules need. Never panics on any input.
pub fn inspect(frame: &[u8]) -> L3 {
    inspect_opt(frame).unwrap_or(L3::Other)
}

fn inspect_opt(frame: &[u8]) -> Option<L3> {
    let mut off = ETH_HEADER;
    let mut ethertype = be16(frame, 12)?;
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        ethertype = be16(frame, off + 2)?;
        off += 4;
    }
    match ethertype {
        ETHERTYPE_ARP => {
            // htype(2) ptype(2) hlen(1) plen(1) oper(2) sha(hlen) spa(plen) ...
            let ptype = be16(frame, off + 2)?;
            let (hlen, plen) = (*frame.get(off + 4)? as usize, *frame.get(off + 5)?);
            if ptype != ETHERTYPE_IPV4 || plen != 4 {
                return None;
            }
            let spa = ip_at(frame, off + 8 + hlen)?;
            Some(L3::Arp { spa })
        }
        ETHERTYPE_IPV4 => {
            let src = ip_at(frame, off + 12)?;
            Some(L3::Ipv4 {
                src,
                dhcp_server: dhcp_server(frame, off),
            })
        }
        ETHERTYPE_IPV6 => {
            let src: [u8; 16] = frame.get(off + 8..off + 24)?.try_into().ok()?;
            let (mut ra, mut dhcp_server, mut na_target) = (false, false, None);
            match upper_layer(frame, off) {
                Upper::Header(next, l4) => {
                    ra = next == IPPROTO_ICMPV6 && frame.get(l4) == Some(&ICMPV6_RA);
                    dhcp_server =
                        next == IPPROTO_UDP && be16(frame, l4) == Some(DHCPV6_SERVER_PORT);
                    if next == IPPROTO_ICMPV6 && frame.get(l4) == Some(&ICMPV6_NA) {
                        na_target = frame.get(l4 + 8..l4 + 24).and_then(|t| t.try_into().ok());
                    }
                }
                Upper::LaterFragment => {}
                Upper::Hidden => ra = true,
            }
            Some(L3::Ipv6 {
                src,
                router_advert: ra,
                dhcp_server,
                na_target,
            })
        }
        _ => None,
    }
}

/// Where the upper-layer header of the IPv6 packet at `off` is.
enum Upper {
    /// Protocol number and offset of the upper-layer header.
    Header(u8, usize),
    /// A fragment other than the first: no upper-layer header.
    LaterFragment,
    /// Not found: too many extension headers, or the frame ends inside the chain.
    Hidden,
}

/// Walks at most [`MAX_EXT_HEADERS`] extension headers (Hop-by-Hop, Routing, Fragment,
/// Destination Options, AH) of the IPv6 packet at `off`. Never panics; always terminates.
fn upper_layer(f: &[u8], off: usize) -> Upper {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const AH: u8 = 51;
    const DST_OPTS: u8 = 60;
    let Some(&first) = f.get(off + 6) else {
        return Upper::Hidden;
    };
    let (mut next, mut at) = (first, off + 40);
    for _ in 0..MAX_EXT_HEADERS {
        let len = match next {
            HOP_BY_HOP | ROUTING | DST_OPTS => f.get(at + 1).map(|l| (usize::from(*l) + 1) * 8),
            AH => f.get(at + 1).map(|l| (usize::from(*l) + 2) * 4),
            FRAGMENT => {
                let Some(frag_off) = be16(f, at + 2) else {
                    return Upper::Hidden;
                };
                if frag_off & 0xfff8 != 0 {
                    return Upper::LaterFragment;
                }
                Some(8)
            }
            _ => return Upper::Header(next, at),
        };
        let (Some(len), Some(&n)) = (len, f.get(at)) else {
            return Upper::Hidden;
        };
        next = n;
        at += len;
    }
    Upper::Hidden
}

/// Whether the IPv4 packet at `off` is UDP from the DHCP server port, or a BOOTREPLY (op 2) to a
/// DHCP port. Only the first fragment carries the UDP header; later fragments are not DHCP.
fn dhcp_server(f: &[u8], off: usize) -> bool {
    let Some(&vihl) = f.get(off) else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    let frag_off = be16(f, off + 6).unwrap_or(0) & 0x1fff;
    if vihl >> 4 != 4 || ihl < 20 || f.get(off + 9) != Some(&IPPROTO_UDP) || frag_off != 0 {
        return false;
    }
    let udp = off + ihl;
    let (Some(sport), Some(dport)) = (be16(f, udp), be16(f, udp + 2)) else {
        return false;
    };
    if sport == DHCP_SERVER_PORT {
        return true;
    }
    (dport == DHCP_SERVER_PORT || dport == DHCP_CLIENT_PORT) && f.get(udp + 8) == Some(&2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: [u8; 4] = [10, 0, 2, 2];
    const DNS: [u8; 4] = [10, 0, 2, 3];
    const P: &[[u8; 4]] = &[GW, DNS];

    fn arp(oper: u16, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
        f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
        f.extend_from_slice(&oper.to_be_bytes());
        f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
        f.extend_from_slice(&spa);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa);
        f
    }

    fn ipv4(src: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 8, 0];
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&[10, 0, 2, 16]);
        f.extend_from_slice(&ip);
        f
    }

    fn tagged(mut f: Vec<u8>, tpid: u16) -> Vec<u8> {
        let tag = [tpid.to_be_bytes(), 5u16.to_be_bytes()].concat();
        f.splice(12..12, tag);
        f
    }

    #[test]
    fn arp_claiming_gateway_or_dns_is_caught() {
        // Gratuitous ARP and ARP reply for the gateway, reply for DNS.
        assert_eq!(claims(&arp(1, GW, GW), P), Some(Claim::Arp(GW)));
        assert_eq!(claims(&arp(2, GW, [10, 0, 2, 15]), P), Some(Claim::Arp(GW)));
        assert_eq!(
            claims(&arp(2, DNS, [10, 0, 2, 15]), P),
            Some(Claim::Arp(DNS))
        );
        // Asking for the gateway (target) is fine; so is announcing one's own address.
        assert_eq!(claims(&arp(1, [10, 0, 2, 15], GW), P), None);
        assert_eq!(claims(&arp(1, [10, 0, 2, 15], [10, 0, 2, 15]), P), None);
        assert_eq!(claims(&arp(1, [0, 0, 0, 0], [10, 0, 2, 15]), P), None);
    }

    #[test]
    fn ipv4_from_gateway_is_caught() {
        assert_eq!(claims(&ipv4(GW), P), Some(Claim::Ipv4(GW)));
        assert_eq!(claims(&ipv4([10, 0, 2, 15]), P), None);
    }

    #[test]
    fn vlan_tags_do_not_hide_a_claim() {
        let f = tagged(arp(2, GW, [10, 0, 2, 15]), ETHERTYPE_VLAN);
        assert_eq!(claims(&f, P), Some(Claim::Arp(GW)));
        let f = tagged(tagged(ipv4(DNS), ETHERTYPE_VLAN), ETHERTYPE_QINQ);
        assert_eq!(claims(&f, P), Some(Claim::Ipv4(DNS)));
    }

    fn udp(src_port: u16, dst_port: u16, op: u8) -> Vec<u8> {
        let mut f = ipv4([10, 0, 2, 16]);
        f[14 + 9] = IPPROTO_UDP;
        let mut u = vec![0u8; 8 + 240];
        u[0..2].copy_from_slice(&src_port.to_be_bytes());
        u[2..4].copy_from_slice(&dst_port.to_be_bytes());
        u[8] = op;
        f.extend_from_slice(&u);
        f
    }

    #[test]
    fn dhcp_server_messages_are_spotted() {
        let server = |f: &[u8]| {
            matches!(
                inspect(f),
                L3::Ipv4 {
                    dhcp_server: true,
                    ..
                }
            )
        };
        // OFFER/ACK from a rogue server: port 67 -> 68, op 2.
        assert!(server(&udp(67, 68, 2)));
        // From port 67 whatever the op (relay agents send from 67 too; no guest relays to us).
        assert!(server(&udp(67, 67, 1)));
        // A BOOTREPLY from another port to either DHCP port.
        assert!(server(&udp(1000, 68, 2)));
        assert!(server(&udp(1000, 67, 2)));
        // Client messages are fine: DISCOVER/REQUEST 68 -> 67, op 1.
        assert!(!server(&udp(68, 67, 1)));
        // Other UDP with a 2 in the first payload byte.
        assert!(!server(&udp(5000, 53, 2)));
        // Through VLAN tags too.
        assert!(server(&tagged(udp(67, 68, 2), ETHERTYPE_VLAN)));
        // A later fragment has no UDP header.
        let mut f = udp(67, 68, 2);
        f[14 + 7] = 10;
        assert!(!server(&f));
        // IP options move the UDP header.
        let mut f = udp(68, 67, 1);
        f[14] = 0x46;
        f.splice(34..34, [0u8; 4]);
        assert!(!server(&f));
        f[38..40].copy_from_slice(&67u16.to_be_bytes());
        assert!(server(&f));
        // Truncated before the UDP ports.
        assert!(!server(&udp(67, 68, 2)[..36]));
    }

    #[test]
    fn inspect_reports_claims_and_ipv6() {
        assert_eq!(
            inspect(&arp(2, [10, 0, 2, 15], GW)),
            L3::Arp {
                spa: [10, 0, 2, 15]
            }
        );
        assert_eq!(
            inspect(&ipv4([10, 0, 2, 16])),
            L3::Ipv4 {
                src: [10, 0, 2, 16],
                dhcp_server: false
            }
        );
        let f = ipv6(59, &[]);
        let plain = L3::Ipv6 {
            src: SRC6,
            router_advert: false,
            dhcp_server: false,
            na_target: None,
        };
        assert_eq!(inspect(&f), plain);
        assert_eq!(inspect(&f[..13]), L3::Other);
        assert_eq!(
            inspect(&f[..14 + 23]),
            L3::Other,
            "ends inside the source address"
        );
    }

    const SRC6: [u8; 16] = [
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0, 0, 1,
    ];

    fn ipv6_from(src: [u8; 16], next: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[14 + 6] = next;
        f[14 + 8..14 + 24].copy_from_slice(&src);
        f.extend_from_slice(l4);
        f
    }

    fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
        ipv6_from(SRC6, next, l4)
    }

    fn l3(ra: bool, ds: bool) -> L3 {
        L3::Ipv6 {
            src: SRC6,
            router_advert: ra,
            dhcp_server: ds,
            na_target: None,
        }
    }

    #[test]
    fn ipv6_router_adverts_and_dhcpv6_server_messages_are_spotted() {
        assert_eq!(inspect(&ipv6(58, &[134, 0, 0, 0])), l3(true, false));
        assert_eq!(inspect(&ipv6(58, &[133, 0, 0, 0])), l3(false, false));
        assert_eq!(
            inspect(&ipv6(17, &[2, 35, 2, 34, 0, 8, 0, 0])),
            l3(false, true)
        );
        assert_eq!(
            inspect(&ipv6(17, &[2, 34, 2, 35, 0, 8, 0, 0])),
            l3(false, false)
        );
        // Truncated: nothing claimed, no panic.
        assert_eq!(inspect(&ipv6(58, &[])), l3(false, false));
        assert_eq!(inspect(&ipv6(17, &[2])), l3(false, false));
    }

    /// `l4` of protocol `next` behind `hops` extension headers of `kind` (8 bytes each).
    fn behind(kind: u8, hops: usize, next: u8, l4: &[u8]) -> Vec<u8> {
        let mut chain = Vec::new();
        for i in 0..hops {
            let n = if i + 1 == hops { next } else { kind };
            chain.extend_from_slice(&[n, 0, 0, 0, 0, 0, 0, 0]);
        }
        chain.extend_from_slice(l4);
        ipv6(if hops == 0 { next } else { kind }, &chain)
    }

    #[test]
    fn extension_headers_do_not_hide_a_router_advert() {
        let ra = [134u8, 0, 0, 0];
        // Hop-by-Hop, Destination Options, Routing, a first fragment (offset 0) in front.
        for kind in [0u8, 60, 43, 44] {
            assert_eq!(
                inspect(&behind(kind, 1, 58, &ra)),
                l3(true, false),
                "{kind}"
            );
            assert_eq!(
                inspect(&behind(kind, 3, 58, &ra)),
                l3(true, false),
                "{kind}"
            );
        }
        let dhcp = [2u8, 35, 2, 34, 0, 8, 0, 0];
        assert_eq!(inspect(&behind(60, 2, 17, &dhcp)), l3(false, true));
        // A Destination Options header of 16 bytes (length 1).
        let mut l4 = vec![58u8, 1];
        l4.extend_from_slice(&[0; 14]);
        l4.extend_from_slice(&ra);
        assert_eq!(inspect(&ipv6(60, &l4)), l3(true, false));
        // Too long a chain, or one cut short: treated as a router advert (dropped).
        assert_eq!(
            inspect(&behind(60, MAX_EXT_HEADERS + 1, 58, &ra)),
            l3(true, false)
        );
        assert_eq!(
            inspect(&behind(60, 1, 58, &ra)[..14 + 40 + 1]),
            l3(true, false)
        );
        // A later fragment carries no upper-layer header: only its source is judged.
        let mut later = behind(44, 1, 58, &ra);
        later[14 + 40 + 3] = 8;
        assert_eq!(inspect(&later), l3(false, false));
        // A chain of 255-length headers runs past the frame, never past the bound.
        let mut long = vec![60u8, 255];
        long.extend_from_slice(&[0; 30]);
        assert_eq!(inspect(&ipv6(60, &long)), l3(true, false));
    }

    fn na(target: [u8; 16]) -> Vec<u8> {
        let mut m = vec![ICMPV6_NA, 0, 0, 0, 0x20, 0, 0, 0];
        m.extend_from_slice(&target);
        m
    }

    #[test]
    fn ipv6_claims_of_protected_addresses_are_caught() {
        let router: [u8; 16] = std::net::Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 2).octets();
        let dns: [u8; 16] = std::net::Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 3).octets();
        let guest: [u8; 16] = std::net::Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0x15).octets();
        let p6 = &[router, dns];
        // Traffic from the router's address, and an NA for the DNS address from the guest's.
        assert_eq!(
            claims6(&ipv6_from(router, 59, &[]), p6),
            Some(Claim::Ipv6(router))
        );
        assert_eq!(
            claims6(&ipv6_from(guest, 58, &na(dns)), p6),
            Some(Claim::NeighborAdvert(dns))
        );
        // Behind a Destination Options header too.
        let mut hidden = vec![58u8, 0, 0, 0, 0, 0, 0, 0];
        hidden.extend_from_slice(&na(router));
        assert_eq!(
            claims6(&ipv6_from(guest, 60, &hidden), p6),
            Some(Claim::NeighborAdvert(router))
        );
        // A guest's own NA, and asking for the router (NS), are fine.
        assert_eq!(claims6(&ipv6_from(guest, 58, &na(guest)), p6), None);
        let mut ns = na(router);
        ns[0] = 135;
        assert_eq!(claims6(&ipv6_from(guest, 58, &ns), p6), None);
        assert_eq!(
            inspect(&ipv6_from(guest, 58, &na(guest))),
            L3::Ipv6 {
                src: guest,
                router_advert: false,
                dhcp_server: false,
                na_target: Some(guest)
            }
        );
        // A truncated NA names no target; IPv4 claims are not IPv6 ones.
        assert_eq!(claims6(&ipv6_from(guest, 58, &na(dns)[..20]), p6), None);
        assert_eq!(claims6(&ipv4(GW), p6), None);
        assert!(Claim::NeighborAdvert(dns).to_string().contains("fec0::3"));
    }

    #[test]
    fn short_and_odd_frames_are_not_misread() {
        assert_eq!(claims(&[], P), None);
        assert_eq!(claims(&arp(2, GW, GW)[..20], P), None);
        assert_eq!(claims(&ipv4(GW)[..20], P), None);
        // ARP for another protocol, or with an odd address length.
        let mut f = arp(2, GW, GW);
        f[16] = 0x86;
        assert_eq!(claims(&f, P), None);
        let mut f = arp(2, GW, GW);
        f[19] = 16;
        assert_eq!(claims(&f, P), None);
        // `claims` is IPv4's: IPv6 is `claims6`'s.
        let mut f = ipv4(GW);
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(claims(&f, P), None);
    }
}
