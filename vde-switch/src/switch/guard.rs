//! Guest safety on a shared LAN: frames in which a guest claims an address that only the gateway may
//! use (its own, the DNS forwarder's) are dropped by the switch before they reach anyone. [`inspect`]
//! also gives the server the claimed source address for the IP source guard (`binding.rs`) and spots
//! DHCP server messages from guests.
//!
//! The gateway already ignores such frames; this check keeps them from other guests too, so a guest
//! cannot poison its neighbours' ARP caches with a reply or gratuitous ARP for 10.0.2.2, nor send IPv4
//! packets from that address to them. One or two 802.1Q/802.1ad tags are looked through, so tagging a
//! frame does not hide it.

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
const DHCPV6_SERVER_PORT: u16 = 547;

/// What a refused frame claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// An ARP packet whose sender protocol address is protected.
    Arp([u8; 4]),
    /// An IPv4 packet whose source address is protected.
    Ipv4([u8; 4]),
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, a) = match self {
            Claim::Arp(a) => ("sends ARP for", a),
            Claim::Ipv4(a) => ("sends IPv4 from", a),
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

/// What the switch's guest-safety rules look at in a frame (after up to two VLAN tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3 {
    /// ARP for IPv4: the sender protocol address.
    Arp { spa: [u8; 4] },
    /// IPv4: the source address, and whether the packet is a DHCP *server* message (UDP from port
    /// 67, or a BOOTREPLY to port 67/68), which no guest may send.
    Ipv4 { src: [u8; 4], dhcp_server: bool },
    /// IPv6: whether the packet is a router advertisement (ICMPv6 type 134) or a DHCPv6 server
    /// message (UDP from port 547), which no guest may send (RA guard, DHCPv6 guard). Only a
    /// header chain without extension headers is looked into.
    Ipv6 {
        router_advert: bool,
        dhcp_server: bool,
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
            let next = frame.get(off + 6).copied();
            let l4 = off + 40;
            Some(L3::Ipv6 {
                router_advert: next == Some(IPPROTO_ICMPV6) && frame.get(l4) == Some(&ICMPV6_RA),
                dhcp_server: next == Some(IPPROTO_UDP)
                    && be16(frame, l4) == Some(DHCPV6_SERVER_PORT),
            })
        }
        _ => None,
    }
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
        let mut f = ipv4(GW);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        let plain = L3::Ipv6 {
            router_advert: false,
            dhcp_server: false,
        };
        assert_eq!(inspect(&f), plain);
        assert_eq!(inspect(&f[..13]), L3::Other);
    }

    fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[14 + 6] = next;
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn ipv6_router_adverts_and_dhcpv6_server_messages_are_spotted() {
        let l3 = |ra, ds| L3::Ipv6 {
            router_advert: ra,
            dhcp_server: ds,
        };
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
        // IPv6 is not looked at.
        let mut f = ipv4(GW);
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(claims(&f, P), None);
    }
}
