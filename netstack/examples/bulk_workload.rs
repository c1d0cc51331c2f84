//! A fixed, deterministic TCP bulk workload for the gateway core, for instruction counts
//! (`valgrind --tool=callgrind`) and profiles: one guest connection, then `UP` batches of 32
//! full-sized guest->host segments (gathered writes) and `DOWN` host->guest pushes acknowledged by
//! the guest. No sockets, no clock: a stand-in host accepts every write and has endless data.
//!
//! `cargo build --release -p netstack --example bulk_workload` then
//! `valgrind --tool=callgrind target/release/examples/bulk_workload [MTU]`.

use netstack::batch::FrameBatch;
use netstack::config::Config;
use netstack::flow::FlowId;
use netstack::gateway::Gateway;
use netstack::host::{Action, Event, HostError, HostIo, HostResult};
use netstack::wire::ethernet;
use netstack::wire::ip;
use netstack::wire::tcp::{self as tcpw, TcpHeader, ACK, SYN};
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const UP: usize = 400;
const DOWN: usize = 40;
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

fn would_block<T>() -> HostResult<T> {
    Err(HostError::WouldBlock)
}

#[derive(Default)]
struct Host {
    conn: Option<FlowId>,
    written: usize,
    /// Frames sent to the guest, and the sequence number just past the last byte sent.
    frames: usize,
    guest_ack: u32,
}

impl HostIo for Host {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        self.frames += 1;
        // Raw field reads (the gateway's frames are valid): sequence, flags, data offset.
        let t = ethernet::HEADER_LEN + ip::IPV4_HEADER_LEN;
        if frame.len() >= t + tcpw::HEADER_LEN {
            let seq = u32::from_be_bytes([frame[t + 4], frame[t + 5], frame[t + 6], frame[t + 7]]);
            let off = usize::from(frame[t + 12] >> 4) * 4;
            let end = seq.wrapping_add((frame.len() - t - off) as u32);
            if frame[t + 13] & SYN != 0 {
                self.guest_ack = seq.wrapping_add(1);
            } else if end.wrapping_sub(self.guest_ack) < 1 << 30 {
                self.guest_ack = end;
            }
        }
        true
    }
    fn tcp_send(&mut self, _id: FlowId, data: &[u8]) -> HostResult<usize> {
        self.written += data.len();
        Ok(data.len())
    }
    fn tcp_send_vectored(&mut self, _id: FlowId, bufs: &[IoSlice<'_>]) -> HostResult<usize> {
        let n: usize = bufs.iter().map(|b| b.len()).sum();
        self.written += n;
        Ok(n)
    }
    fn tcp_peek(
        &mut self,
        _id: FlowId,
        _offset: usize,
        bufs: &mut [IoSliceMut<'_>],
    ) -> HostResult<usize> {
        let mut n = 0;
        for b in bufs.iter_mut() {
            b.fill(0x5a);
            n += b.len();
        }
        Ok(n)
    }
    fn tcp_consume(&mut self, _id: FlowId, _n: usize) {}
    fn udp_send(&mut self, _id: FlowId, _data: &[u8]) -> HostResult<()> {
        would_block()
    }
    fn udp_recv(&mut self, _id: FlowId, _buf: &mut [u8]) -> HostResult<usize> {
        would_block()
    }
    fn icmp_send(&mut self, _id: FlowId, _msg: &[u8]) -> HostResult<()> {
        would_block()
    }
    fn icmp_recv(&mut self, _id: FlowId, _buf: &mut [u8]) -> HostResult<usize> {
        would_block()
    }
    fn dns_send(&mut self, _upstream: SocketAddr, _query: &[u8]) -> HostResult<()> {
        would_block()
    }
    fn dns_recv(&mut self, _buf: &mut [u8]) -> HostResult<(usize, SocketAddr)> {
        would_block()
    }
}

/// A guest TCP segment in an Ethernet frame to the gateway.
fn segment(gw_mac: [u8; 6], h: &TcpHeader, payload: &[u8]) -> Vec<u8> {
    let (g, r) = (
        IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)),
    );
    let t0 = ethernet::HEADER_LEN + ip::IPV4_HEADER_LEN;
    let tlen = h.len() + payload.len();
    let mut f = vec![0u8; t0 + tlen];
    f[t0 + h.len()..].copy_from_slice(payload);
    tcpw::write_header(&mut f[t0..], h, g, r);
    ip::write_header(&mut f[ethernet::HEADER_LEN..], g, r, ip::PROTO_TCP, tlen);
    ethernet::write_header(&mut f, gw_mac, GUEST_MAC, ethernet::ETHERTYPE_IPV4);
    f
}

impl Host {
    /// Carries out the gateway's queued actions, as the driver does after every call.
    fn drain(&mut self, gw: &mut Gateway) {
        while let Some(a) = gw.poll_action() {
            if let Action::TcpConnect { id, .. } = a {
                self.conn = Some(id);
            }
        }
    }
}

fn main() {
    let mtu: u16 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1500);
    let cfg = Config {
        mtu,
        ..Config::default()
    };
    let mut gw = Gateway::new(cfg, 1);
    let gw_mac = gw.mac();
    let mut host = Host::default();
    let now = std::time::Instant::now();
    let mss = mtu - 40;
    let hdr = |seq: u32, ack: u32, flags: u8, opts: Option<(u16, Option<u8>)>| TcpHeader {
        src_port: 40000,
        dst_port: 80,
        seq,
        ack,
        flags,
        window: 65535,
        syn_opts: opts,
    };
    let isn = 1000u32;
    gw.handle_frame(
        now,
        &segment(gw_mac, &hdr(isn, 0, SYN, Some((mss, Some(7)))), b""),
        &mut host,
    );
    host.drain(&mut gw);
    let id = host.conn.expect("the SYN made a host connect");
    gw.handle_event(now, Event::TcpConnected { id, result: Ok(()) }, &mut host);
    host.drain(&mut gw);
    let ours = host.guest_ack;
    gw.handle_frame(
        now,
        &segment(gw_mac, &hdr(isn + 1, ours, ACK, None), b""),
        &mut host,
    );

    // Upload: batches of 32 full segments, gathered into one write each.
    let payload = vec![0xa5u8; usize::from(mss)];
    let mut seq = isn + 1;
    for _ in 0..UP {
        let frames: Vec<Vec<u8>> = (0..32)
            .map(|i| {
                let s = seq.wrapping_add(i * u32::from(mss));
                segment(gw_mac, &hdr(s, ours, ACK, None), &payload)
            })
            .collect();
        seq = seq.wrapping_add(32 * u32::from(mss));
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        gw.handle_batch(now, FrameBatch::new(&refs), &mut host);
        host.drain(&mut gw);
        gw.end_batch(now, &mut host);
        host.drain(&mut gw);
    }
    // Download: the host has data; the guest acknowledges what it got after every push.
    for _ in 0..DOWN {
        gw.handle_event(now, Event::TcpReadable(id), &mut host);
        host.drain(&mut gw);
        let ack = segment(gw_mac, &hdr(seq, host.guest_ack, ACK, None), b"");
        gw.handle_batch(now, FrameBatch::new(&[&ack]), &mut host);
        host.drain(&mut gw);
        gw.end_batch(now, &mut host);
        host.drain(&mut gw);
    }
    println!(
        "mtu {mtu}: {} bytes written to the host, {} frames to the guest",
        host.written, host.frames
    );
}
