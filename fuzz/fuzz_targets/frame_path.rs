//! The whole frame path of the gateway core: a `netstack::Gateway` fed the frames in the input (as
//! the switch would hand them over, alone or in batches) and the host events it asks for (connects
//! completing, data and EOF from host peers, UDP/ICMP replies, DNS answers, inbound forwards,
//! congestion), with virtual time. Every frame it emits is checked (`warren_fuzz::check`); at the
//! end, idle UDP/ICMP flows must expire and leave no host socket behind.
//!
//! Input: one config byte, then a script of operations (see `warren_fuzz::seeds::Op`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::batch::FrameBatch;
use netstack::config::{Config, GuestFwd, GuestFwdTarget, Ipv4Net};
use netstack::gateway::Gateway;
use netstack::host::{Event, HostError};
use netstack::wire::ethernet::{self, Frame};
use netstack::wire::tcp::SYN;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use warren_fuzz::seeds::{cfg_flags, tcp_seg, Op};
use warren_fuzz::sim::{drain, SimHost};
use warren_fuzz::Input;

const MAX_OPS: usize = 400;

fn config(flags: u8) -> Config {
    let mut c = Config {
        restrict: flags & cfg_flags::RESTRICT != 0,
        host_loopback: flags & cfg_flags::NO_HOST_LOOPBACK == 0,
        mtu: match (flags >> 2) & 3 {
            0 => 1500,
            1 => 576,
            2 => 65520,
            _ => 9000,
        },
        ..Config::default()
    };
    if flags & cfg_flags::SMALL_NET != 0 {
        c.net = Ipv4Net::new(Ipv4Addr::new(10, 0, 2, 0), 28).expect("valid /28");
        c.dhcp_start = Ipv4Addr::new(10, 0, 2, 8);
    }
    if flags & cfg_flags::UPSTREAMS != 0 {
        c.dns_upstreams = vec![
            "127.0.0.53:53".parse().expect("addr"),
            "192.0.2.53:53".parse().expect("addr"),
        ];
    }
    if flags & cfg_flags::LOW_LIMITS != 0 {
        c.max_flows_per_guest = 4;
        c.max_pending_per_guest = 2;
    }
    c.dns_search = vec!["example.org".into()];
    c.domain_name = Some("example.org".into());
    c.guestfwds = vec![
        GuestFwd {
            addr: Ipv4Addr::new(10, 0, 2, 10),
            port: 8080,
            target: GuestFwdTarget::Connect("127.0.0.1:80".parse().expect("addr")),
        },
        GuestFwd {
            addr: Ipv4Addr::new(10, 0, 2, 11),
            port: 7,
            target: GuestFwdTarget::Command("cat".into()),
        },
    ];
    c.validate().expect("the fuzz configs are valid");
    c
}

/// Records the frame's source as the switch learns it; false if the switch would drop the frame
/// before the gateway sees it (group or gateway source MAC).
fn admit(host: &mut SimHost, frame: &[u8]) -> bool {
    let Ok(eth) = Frame::parse(frame) else {
        return true;
    };
    let src = eth.src();
    if ethernet::is_group(&src) || src == host.cfg.gateway_mac {
        return false;
    }
    host.known_macs.insert(src);
    host.note_syn(frame, true);
    true
}

fn addr(inp: &mut Input, cfg: &Config) -> IpAddr {
    let b = inp.u8();
    match b % 4 {
        0 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        1 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, b)),
        2 => IpAddr::V4(Ipv4Addr::from(
            u32::from(cfg.net.network()) | u32::from(b >> 2),
        )),
        _ => IpAddr::V6(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x7f00, 1)),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = config(inp.u8());
    let mut gw = Gateway::new(cfg.clone(), 0x5eed); // fixed seed: a crash replays byte for byte
    let mut host = SimHost::new(cfg.clone());
    let mut now = Instant::now();
    let upstreams = cfg.dns_upstreams.clone();

    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match Op::from(inp.u8()) {
            Op::Frame => {
                let f = inp.chunk();
                if admit(&mut host, f) {
                    gw.handle_frame(now, f, &mut host);
                }
            }
            Op::Batch => {
                let n = usize::from(inp.u8() % 8) + 1;
                let frames: Vec<&[u8]> = (0..n).map(|_| inp.chunk()).collect();
                let frames: Vec<&[u8]> =
                    frames.into_iter().filter(|f| admit(&mut host, f)).collect();
                gw.handle_batch(now, FrameBatch::new(&frames), &mut host);
            }
            Op::Advance => {
                let v = inp.u16();
                now += if v & 0x8000 != 0 {
                    Duration::from_secs(u64::from(v & 0x7fff))
                } else {
                    Duration::from_millis(u64::from(v))
                };
                gw.handle_timeout(now, &mut host);
            }
            Op::TcpConnected => {
                let (n, r) = (inp.u8(), inp.u8());
                if let Some(id) = host.pick_tcp(n) {
                    let result = match r % 4 {
                        0 | 1 => Ok(()),
                        2 => Err(HostError::Refused),
                        _ => Err(HostError::HostUnreachable),
                    };
                    gw.handle_event(now, Event::TcpConnected { id, result }, &mut host);
                }
            }
            Op::TcpData => {
                let n = inp.u8();
                let d = inp.chunk();
                if let Some(id) = host.pick_tcp(n) {
                    if let Some(s) = host.tcp.get_mut(&id) {
                        s.rx.extend(d);
                    }
                    gw.handle_event(now, Event::TcpReadable(id), &mut host);
                }
            }
            Op::TcpEof => {
                if let Some(id) = host.pick_tcp(inp.u8()) {
                    if let Some(s) = host.tcp.get_mut(&id) {
                        s.rx_eof = true;
                    }
                    gw.handle_event(now, Event::TcpReadable(id), &mut host);
                }
            }
            Op::TcpWritable => {
                let (n, room) = (inp.u8(), inp.u16());
                if let Some(id) = host.pick_tcp(n) {
                    let mut wake = false;
                    if let Some(s) = host.tcp.get_mut(&id) {
                        s.send_room = (room != u16::MAX).then_some(usize::from(room));
                        wake = std::mem::take(&mut s.want_write);
                    }
                    if wake {
                        gw.handle_event(now, Event::TcpWritable(id), &mut host);
                    }
                }
            }
            Op::UdpFromHost => {
                let n = inp.u8();
                let d = inp.chunk();
                if let Some(id) = host.pick_udp(n) {
                    if let Some(s) = host.udp.get_mut(&id) {
                        s.rx.push_back(d.to_vec());
                    }
                    gw.handle_event(now, Event::UdpReadable(id), &mut host);
                }
            }
            Op::IcmpFromHost => {
                let n = inp.u8();
                let d = inp.chunk();
                if let Some(id) = host.pick_icmp(n) {
                    if let Some(s) = host.icmp.get_mut(&id) {
                        s.rx.push_back(d.to_vec());
                    }
                    gw.handle_event(now, Event::IcmpReadable(id), &mut host);
                }
            }
            Op::DnsAnswer => {
                let (mode, rcode) = (inp.u8(), inp.u8());
                let extra = inp.chunk();
                let msg = match (mode % 3, host.dns_sent.back()) {
                    // An answer to the latest query: its id and question, QR set.
                    (0 | 1, Some((up, q))) => {
                        let mut r = q.clone();
                        if r.len() >= 4 {
                            r[2] |= 0x80;
                            r[3] = (r[3] & 0xf0) | (rcode & 0x0f);
                        }
                        r.extend_from_slice(extra);
                        Some((*up, r))
                    }
                    _ => upstreams
                        .get(usize::from(rcode) % upstreams.len().max(1))
                        .map(|up| (*up, extra.to_vec())),
                };
                if let Some(m) = msg {
                    host.dns_rx.push_back(m);
                }
                gw.handle_event(now, Event::DnsReadable, &mut host);
            }
            Op::TcpInbound => {
                let client = SocketAddr::new(addr(&mut inp, &cfg), inp.u16());
                let guest = SocketAddr::new(addr(&mut inp, &cfg), inp.u16());
                if let Ok(id) = gw.tcp_inbound(now, client, guest, &mut host) {
                    // The driver binds the accepted socket to the flow.
                    host.tcp.insert(id, Default::default());
                }
            }
            Op::UdpInbound => {
                let fwd = u32::from(inp.u8());
                let client = SocketAddr::new(addr(&mut inp, &cfg), inp.u16());
                let guest = SocketAddr::new(addr(&mut inp, &cfg), inp.u16());
                let payload = inp.chunk();
                let _ = gw.udp_inbound(now, fwd, client, guest, payload, &mut host);
            }
            Op::TcpSeg => {
                let (sel, flags, seq_off, ack_off) = (inp.u8(), inp.u8(), inp.u16(), inp.u16());
                let window = inp.u16();
                let payload = inp.chunk();
                if host.conns.is_empty() {
                    continue;
                }
                let c = host.conns[usize::from(sel) % host.conns.len()].clone();
                let isn = c.guest_isn.unwrap_or(1000);
                let seq = if flags & SYN != 0 {
                    isn
                } else {
                    isn.wrapping_add(1).wrapping_add(u32::from(seq_off))
                };
                let ack = c.gw_isn.map_or(0, |i| {
                    i.wrapping_add(1).wrapping_add(ack_off as i16 as i32 as u32)
                });
                let f = tcp_seg(
                    c.guest_mac,
                    c.guest,
                    c.remote,
                    seq,
                    ack,
                    flags,
                    window,
                    payload,
                );
                if admit(&mut host, &f) {
                    gw.handle_frame(now, &f, &mut host);
                }
            }
            Op::Congest => host.congested = !host.congested,
            Op::LinkReady => {
                host.congested = false;
                gw.handle_event(now, Event::LinkReady, &mut host);
            }
            Op::FailNextOpen => {
                let k = inp.u8();
                host.fail_open = Some(match k % 3 {
                    // The top bit: no route (an ICMP echo then gets a destination unreachable).
                    _ if k & 0x80 != 0 && k & 1 == 0 => HostError::NetUnreachable,
                    _ if k & 0x80 != 0 => HostError::HostUnreachable,
                    0 => HostError::NotPermitted("simulated failure".into()),
                    1 => HostError::Other("simulated failure".into()),
                    _ => HostError::NoBuffers,
                })
            }
        }
        drain(&mut gw, &mut host, now);
        gw.end_batch(now, &mut host);
        drain(&mut gw, &mut host, now);
        if let Some(d) = gw.poll_timeout() {
            assert!(
                d <= now + Duration::from_secs(7 * 86400),
                "a timer is set more than a week ahead"
            );
        }
    }

    // Idle UDP and ICMP flows expire, and their host sockets with them.
    host.congested = false;
    gw.handle_event(now, Event::LinkReady, &mut host);
    drain(&mut gw, &mut host, now);
    for _ in 0..3 {
        now += Duration::from_secs(3600);
        gw.handle_timeout(now, &mut host);
        drain(&mut gw, &mut host, now);
        gw.end_batch(now, &mut host);
        drain(&mut gw, &mut host, now);
    }
    let (_, udp, icmp) = gw.flow_counts();
    assert_eq!(
        (udp, icmp),
        (0, 0),
        "UDP/ICMP flows outlived their idle timeout"
    );
    assert!(host.udp.is_empty(), "a UDP host socket was never closed");
    assert!(host.icmp.is_empty(), "an ICMP host socket was never closed");
});
