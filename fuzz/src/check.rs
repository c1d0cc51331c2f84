//! What every frame the gateway emits must be, whatever the guests sent: a well-formed Ethernet
//! frame from the gateway's MAC, no longer than MTU + 14, to a MAC the gateway has heard from (or
//! broadcast, or IPv6 multicast), carrying ARP, IPv4 or IPv6 whose header, length and checksums
//! are right.

use netstack::config::Config;
use netstack::wire::arp::{self, ArpRepr};
use netstack::wire::ethernet::{self, Frame};
use netstack::wire::icmp::IcmpMessage;
use netstack::wire::ip::{self, IpPacket};
use netstack::wire::tcp::TcpSegment;
use netstack::wire::udp::UdpDatagram;
use netstack::Mac;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

/// Panics (with the frame in hex) unless `frame` is one the gateway may emit. `known_macs` are the
/// source MACs of the frames fed to the gateway so far.
pub fn gateway_frame(cfg: &Config, known_macs: &HashSet<Mac>, frame: &[u8]) {
    if let Err(why) = check(cfg, known_macs, frame) {
        panic!("gateway emitted a bad frame: {why}\nframe: {}", hex(frame));
    }
}

fn check(cfg: &Config, known_macs: &HashSet<Mac>, frame: &[u8]) -> Result<(), String> {
    let max = usize::from(cfg.mtu) + ethernet::HEADER_LEN;
    if frame.len() > max {
        return Err(format!("{} bytes, more than MTU+14 = {max}", frame.len()));
    }
    let eth = Frame::parse(frame).map_err(|e| format!("ethernet: {e:?}"))?;
    if eth.src() != cfg.gateway_mac {
        return Err(format!(
            "source MAC {:02x?} is not the gateway's",
            eth.src()
        ));
    }
    let dst = eth.dst();
    // IPv6 multicast (33:33:…) carries router advertisements to all nodes.
    let v6_multicast = dst[0] == 0x33 && dst[1] == 0x33;
    if eth.ethertype() == ethernet::ETHERTYPE_IPV6 && v6_multicast {
        return check_v6(cfg, eth.payload());
    }
    if dst != ethernet::BROADCAST && !known_macs.contains(&dst) {
        return Err(format!("destination MAC {dst:02x?} was never a guest's"));
    }
    match eth.ethertype() {
        ethernet::ETHERTYPE_ARP => {
            let a = ArpRepr::parse(eth.payload()).map_err(|e| format!("arp: {e:?}"))?;
            if a.sender_mac != cfg.gateway_mac {
                return Err("ARP sender MAC is not the gateway's".into());
            }
            let virt = a.sender_ip == cfg.gateway
                || a.sender_ip == cfg.dns
                || cfg.guestfwds.iter().any(|g| g.addr == a.sender_ip);
            if !virt {
                return Err(format!("ARP for {} which is not ours", a.sender_ip));
            }
            if a.op != arp::OP_REQUEST && a.op != arp::OP_REPLY {
                return Err(format!("ARP op {}", a.op));
            }
            Ok(())
        }
        ethernet::ETHERTYPE_IPV4 => {
            let p = IpPacket::parse_v4(eth.payload()).map_err(|e| format!("ipv4: {e:?}"))?;
            if p.header.len() + p.payload.len() != eth.payload().len() {
                return Err("IPv4 total length disagrees with the frame".into());
            }
            let IpAddr::V4(d) = p.dst else {
                return Err("IPv6 destination in IPv4".into());
            };
            if !(cfg.net.contains(d) || d == Ipv4Addr::BROADCAST) {
                return Err(format!("IPv4 destination {d} is not on the LAN"));
            }
            if cfg.net.contains(d) && (d == cfg.gateway || d == cfg.dns) {
                return Err(format!("IPv4 destination {d} is the gateway's own"));
            }
            match p.proto {
                ip::PROTO_TCP => TcpSegment::parse(p.payload, p.src, p.dst)
                    .map(|_| ())
                    .map_err(|e| format!("tcp: {e:?}")),
                ip::PROTO_UDP => {
                    let d = UdpDatagram::parse(p.payload, p.src, p.dst)
                        .map_err(|e| format!("udp: {e:?}"))?;
                    if d.payload.len() + 8 != p.payload.len() {
                        return Err("UDP length disagrees with IPv4".into());
                    }
                    Ok(())
                }
                ip::PROTO_ICMP => IcmpMessage::parse(p.payload)
                    .map(|_| ())
                    .map_err(|e| format!("icmp: {e:?}")),
                other => Err(format!("IP protocol {other}")),
            }
        }
        ethernet::ETHERTYPE_IPV6 => check_v6(cfg, eth.payload()),
        other => Err(format!("ethertype {other:#06x}")),
    }
}

/// An IPv6 packet the gateway may emit: well-formed, to a guest (on the prefix, link-local or
/// all-nodes), never to the gateway's own addresses, with a valid TCP/UDP/ICMPv6 message.
fn check_v6(cfg: &Config, b: &[u8]) -> Result<(), String> {
    use netstack::wire::icmpv6::Icmpv6Repr;
    use netstack::wire::ipv6::{Ipv6Packet, ALL_NODES, NH_ICMPV6, NH_TCP, NH_UDP};
    let Some(plan) = &cfg.v6 else {
        return Err("IPv6 with IPv6 off".into());
    };
    let p = Ipv6Packet::parse(b).map_err(|e| format!("ipv6: {e:?}"))?;
    if p.as_bytes().len() != b.len() {
        return Err("IPv6 payload length disagrees with the frame".into());
    }
    let (src, dst) = (p.src(), p.dst());
    let link_local = dst.segments()[0] & 0xffc0 == 0xfe80;
    if !(plan.net.contains(dst) || link_local || dst == ALL_NODES) {
        return Err(format!("IPv6 destination {dst} is not on the LAN"));
    }
    if plan.is_own(&dst) || dst == plan.router_ll {
        return Err(format!("IPv6 destination {dst} is the gateway's own"));
    }
    let u = p.upper_layer().map_err(|e| format!("ipv6 chain: {e:?}"))?;
    let (s, d) = (IpAddr::V6(src), IpAddr::V6(dst));
    match u.proto {
        NH_TCP => TcpSegment::parse(u.data, s, d)
            .map(|_| ())
            .map_err(|e| format!("tcp6: {e:?}")),
        NH_UDP => UdpDatagram::parse(u.data, s, d)
            .map(|_| ())
            .map_err(|e| format!("udp6: {e:?}")),
        NH_ICMPV6 => Icmpv6Repr::parse(src, dst, u.data)
            .map(|_| ())
            .map_err(|e| format!("icmpv6: {e:?}")),
        other => Err(format!("IPv6 next header {other}")),
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
