//! A generator of malformed and abusive frames at every layer, for the hostile-guest soak test
//! (`tests/tests/soak.rs`), plus the small raw-client pieces that test needs (QEMU stream framing,
//! DHCP, ARP and DNS frames, and a parser for what comes back).
//!
//! Everything is built by hand from bytes (no packet library), driven by a seeded [`Rng`] so a run
//! can be replayed from its seed. [`Generator::frames`] returns one batch of frames for a
//! [`Phase`]; the caller interleaves phases and writes the frames to a `--socket` connection with
//! [`framed`]. Frame lengths always stay within QEMU's stream framing (14..=65549 bytes): breaking
//! the framing itself is done on separate connections ([`bad_framings`]).
//!
//! Addresses used: the LAN's own (the gateway, the DNS forwarder, the victim's lease, unleased LAN
//! addresses), loopback/unspecified/broadcast/multicast spellings, and TEST-NET-1 (192.0.2.0/24)
//! for "somewhere outside". Nothing here opens a socket; the soak test runs inside its own network
//! namespace so that nothing warren might forward can leave it.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// warren's default gateway MAC (`52:55:0a:00:02:02`).
pub const GATEWAY_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Smallest and largest frame QEMU's stream framing carries (warren closes the connection outside).
pub const MIN_FRAME: usize = 14;
pub const MAX_FRAME: usize = 65549;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const DHCP_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// TEST-NET-1: "the outside world" for destinations; never routed (and the test has no route).
const TEST_NET: [u8; 3] = [192, 0, 2];

// ------------------------------------------------------------------ randomness

/// A small seeded generator (SplitMix64): the same seed gives the same frames.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    pub fn u16(&mut self) -> u16 {
        (self.next_u64() >> 48) as u16
    }

    pub fn u8(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }

    /// Between `lo` and `hi` (inclusive) random bytes.
    pub fn bytes_in(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let n = self.range(lo, hi);
        self.bytes(n)
    }

    /// A random locally administered unicast MAC.
    pub fn mac(&mut self) -> [u8; 6] {
        let mut m = [0u8; 6];
        for b in &mut m {
            *b = self.u8();
        }
        m[0] = (m[0] & 0xfc) | 0x02;
        m
    }
}

/// A seed from `WARREN_SOAK_SEED` (decimal or `0x` hex), else from the clock.
pub fn seed_from_env() -> u64 {
    match std::env::var("WARREN_SOAK_SEED") {
        Ok(s) if !s.trim().is_empty() => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("WARREN_SOAK_SEED={s:?}: {e}"))
        }
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

// ------------------------------------------------------------------ building frames

/// The internet checksum of `data`, starting from the partial sum `init`.
pub fn checksum(data: &[u8], init: u32) -> u16 {
    let mut sum = init;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [b] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*b) << 8);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let (s, d) = (src.octets(), dst.octets());
    let mut sum = 0u32;
    for w in [[s[0], s[1]], [s[2], s[3]], [d[0], d[1]], [d[2], d[3]]] {
        sum += u32::from(u16::from_be_bytes(w));
    }
    sum + u32::from(proto) + (len as u32 & 0xffff) + (len as u32 >> 16)
}

/// An Ethernet frame.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ARP packet for IPv4 over Ethernet.
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// A well-formed IPv4 packet (no options, DF clear, TTL 64) with a correct header checksum.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    ipv4_with(src, dst, proto, id, 64, 0, &[], payload)
}

/// An IPv4 packet with TTL, flags/fragment-offset word and options (padded to 4 bytes).
#[allow(clippy::too_many_arguments)]
pub fn ipv4_with(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    ttl: u8,
    frag: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    opts.truncate(40);
    let hlen = 20 + opts.len();
    let total = (hlen + payload.len()).min(0xffff);
    let mut p = Vec::with_capacity(hlen + payload.len());
    p.push(0x40 | (hlen / 4) as u8);
    p.push(0);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.push(ttl);
    p.push(proto);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&opts);
    let c = checksum(&p[..hlen], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Recomputes the IPv4 header checksum of `p` (after a mutation), as far as the header is present.
fn fix_ip_checksum(p: &mut [u8]) {
    let hlen = (usize::from(p[0] & 0x0f) * 4).clamp(20, p.len());
    p[10] = 0;
    p[11] = 0;
    let c = checksum(&p[..hlen], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// A TCP segment with a correct checksum.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u16,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(1); // NOP
    }
    opts.truncate(40);
    let hlen = 20 + opts.len();
    let mut s = Vec::with_capacity(hlen + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.push(((hlen / 4) as u8) << 4 | ((flags >> 8) as u8 & 0x0f));
    s.push(flags as u8);
    s.extend_from_slice(&window.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(&opts);
    s.extend_from_slice(payload);
    let c = checksum(&s, pseudo_sum(src, dst, PROTO_TCP, s.len()));
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

/// A UDP datagram with a correct checksum.
pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&(len.min(0xffff) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    let mut c = checksum(&d, pseudo_sum(src, dst, PROTO_UDP, len));
    if c == 0 {
        c = 0xffff;
    }
    d[6..8].copy_from_slice(&c.to_be_bytes());
    d
}

/// An ICMP message with a correct checksum: type, code, the 4 "rest of header" bytes, body.
pub fn icmp(kind: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let c = checksum(&m, 0);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Ethernet + IPv4 + UDP in one go.
#[allow(clippy::too_many_arguments)]
pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    id: u16,
    payload: &[u8],
) -> Vec<u8> {
    let d = udp(src, dst, sport, dport, payload);
    eth(
        dst_mac,
        src_mac,
        ETHERTYPE_IPV4,
        &ipv4(src, dst, PROTO_UDP, id, &d),
    )
}

/// `52:54:00:12:34:56` as bytes, if it is a MAC.
pub fn mac_from_str(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

/// QEMU stream framing: a 4-byte big-endian length, then the frame.
pub fn framed(frame: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + frame.len());
    v.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    v.extend_from_slice(frame);
    v
}

/// Inserts an 802.1Q tag (or, with `qinq`, an 802.1ad outer tag and an 802.1Q inner tag) after the
/// MAC addresses.
pub fn vlan_tag(frame: &[u8], vid: u16, qinq: bool) -> Vec<u8> {
    let mut f = frame.to_vec();
    if f.len() < 12 {
        return f;
    }
    let mut tags = Vec::new();
    if qinq {
        tags.extend_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
        tags.extend_from_slice(&((vid.wrapping_add(1)) & 0x0fff).to_be_bytes());
    }
    tags.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    tags.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.splice(12..12, tags);
    f
}

// ------------------------------------------------------------------ DHCP and DNS messages

/// DHCP message types.
pub const DHCPDISCOVER: u8 = 1;
pub const DHCPOFFER: u8 = 2;
pub const DHCPREQUEST: u8 = 3;
pub const DHCPDECLINE: u8 = 4;
pub const DHCPACK: u8 = 5;
pub const DHCPNAK: u8 = 6;
pub const DHCPRELEASE: u8 = 7;
pub const DHCPINFORM: u8 = 8;

/// A BOOTP/DHCP message: `op` (1 request, 2 reply), xid, ciaddr, chaddr, then `options` verbatim
/// (the caller adds the end option, or not).
pub fn dhcp_message(
    op: u8,
    xid: u32,
    ciaddr: Ipv4Addr,
    chaddr: [u8; 6],
    options: &[u8],
) -> Vec<u8> {
    let mut m = vec![0u8; 240];
    m[0] = op;
    m[1] = 1;
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[10] = 0x80; // broadcast flag
    m[12..16].copy_from_slice(&ciaddr.octets());
    m[28..34].copy_from_slice(&chaddr);
    m[236..240].copy_from_slice(&DHCP_COOKIE);
    m.extend_from_slice(options);
    m
}

/// A client's DHCP message of `kind` from `mac` (broadcast from 0.0.0.0:68 to 255.255.255.255:67),
/// asking for `requested` and naming `server` if given.
pub fn dhcp_client_frame(
    mac: [u8; 6],
    xid: u32,
    kind: u8,
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
) -> Vec<u8> {
    let mut opts = vec![53, 1, kind];
    if let Some(r) = requested {
        opts.extend_from_slice(&[50, 4]);
        opts.extend_from_slice(&r.octets());
    }
    if let Some(s) = server {
        opts.extend_from_slice(&[54, 4]);
        opts.extend_from_slice(&s.octets());
    }
    opts.extend_from_slice(&[55, 3, 1, 3, 6, 255]);
    let m = dhcp_message(1, xid, Ipv4Addr::UNSPECIFIED, mac, &opts);
    udp_frame(
        BROADCAST,
        mac,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        68,
        67,
        xid as u16,
        &m,
    )
}

/// A DNS query (recursion desired) for `name`, type `qtype`.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

// ------------------------------------------------------------------ parsing what comes back

/// What a raw client cares about in a received frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Arp {
        op: u16,
        sha: [u8; 6],
        spa: Ipv4Addr,
        tpa: Ipv4Addr,
    },
    Udp {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// Any other IPv4 packet.
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
    },
    Other,
}

fn ip_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

/// Parses an untagged Ethernet frame far enough for the raw clients; never panics.
pub fn parse(frame: &[u8]) -> Parsed {
    parse_inner(frame).unwrap_or(Parsed::Other)
}

fn parse_inner(f: &[u8]) -> Option<Parsed> {
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let p = f.get(14..)?;
    match ethertype {
        ETHERTYPE_ARP => {
            if p.get(..6)? != [0, 1, 8, 0, 6, 4] {
                return None;
            }
            Some(Parsed::Arp {
                op: u16::from_be_bytes([p[6], p[7]]),
                sha: p.get(8..14)?.try_into().ok()?,
                spa: ip_at(p, 14)?,
                tpa: ip_at(p, 24)?,
            })
        }
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(*p.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?]));
            let (src, dst, proto) = (ip_at(p, 12)?, ip_at(p, 16)?, *p.get(9)?);
            if proto != PROTO_UDP || ihl < 20 {
                return Some(Parsed::Ipv4 { src, dst, proto });
            }
            let d = p.get(ihl..total.max(ihl).min(p.len()))?;
            let len = usize::from(u16::from_be_bytes([*d.get(4)?, *d.get(5)?]));
            Some(Parsed::Udp {
                src,
                dst,
                sport: u16::from_be_bytes([*d.first()?, *d.get(1)?]),
                dport: u16::from_be_bytes([*d.get(2)?, *d.get(3)?]),
                payload: d.get(8..len.clamp(8, d.len()))?.to_vec(),
            })
        }
        _ => Some(Parsed::Other),
    }
}

/// A DHCP reply's (message type, yiaddr, xid), if `payload` is one.
pub fn dhcp_reply_info(payload: &[u8]) -> Option<(u8, Ipv4Addr, u32)> {
    if payload.len() < 240 || payload[0] != 2 || payload[236..240] != DHCP_COOKIE {
        return None;
    }
    let xid = u32::from_be_bytes(payload[4..8].try_into().ok()?);
    let yiaddr = ip_at(payload, 16)?;
    let mut i = 240;
    while i + 1 < payload.len() {
        match payload[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = usize::from(payload[i + 1]);
                if code == 53 && len == 1 {
                    return Some((*payload.get(i + 2)?, yiaddr, xid));
                }
                i += 2 + len;
            }
        }
    }
    None
}

// ------------------------------------------------------------------ a raw stream client

/// A raw client on a `--socket` (QEMU stream framing), as a guest without QEMU.
pub struct StreamClient {
    s: UnixStream,
}

impl StreamClient {
    pub fn connect(path: &Path) -> std::io::Result<StreamClient> {
        let s = UnixStream::connect(path)?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(StreamClient { s })
    }

    pub fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.s.write_all(&framed(frame))
    }

    /// The next frame, waiting until `deadline`; `None` on timeout, EOF or error.
    pub fn recv(&mut self, deadline: Instant) -> Option<Vec<u8>> {
        let left = deadline.checked_duration_since(Instant::now())?;
        self.s
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).ok()?;
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_FRAME {
            return None;
        }
        let mut f = vec![0u8; n];
        // The body follows its length at once; allow a little time even past the deadline.
        self.s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        self.s.read_exact(&mut f).ok()?;
        Some(f)
    }

    /// Waits until `deadline` for a frame `want` accepts, skipping others.
    pub fn recv_matching<T>(
        &mut self,
        deadline: Instant,
        mut want: impl FnMut(&[u8]) -> Option<T>,
    ) -> Option<T> {
        while let Some(f) = self.recv(deadline) {
            if let Some(t) = want(&f) {
                return Some(t);
            }
        }
        None
    }

    pub fn stream(&self) -> &UnixStream {
        &self.s
    }
}

// ------------------------------------------------------------------ the generator

/// The LAN and the victim as the attacker knows them.
#[derive(Clone, Debug)]
pub struct Target {
    pub gateway_ip: Ipv4Addr,
    pub dns_ip: Ipv4Addr,
    pub gateway_mac: [u8; 6],
    /// The first three octets of the /24 LAN.
    pub lan: [u8; 3],
    /// The real guest under attack: its lease and MAC.
    pub victim_ip: Ipv4Addr,
    pub victim_mac: [u8; 6],
    /// Host ports (through the gateway address) the victim's flows go to.
    pub victim_services: Vec<u16>,
    /// Host ports to SYN-flood: a listener that accepts and drops, closed ports.
    pub syn_ports: Vec<u16>,
    /// The attacker's own MAC and an address it uses without a lease.
    pub attacker_mac: [u8; 6],
    pub attacker_ip: Ipv4Addr,
    /// How many distinct host ports the UDP flood cycles through.
    pub udp_flood_ports: u16,
    /// First port of the UDP flood's range.
    pub udp_flood_base: u16,
    /// How many distinct random MACs the DHCP DISCOVER flood cycles through.
    pub discover_macs: u32,
    /// Frames per broadcast-storm batch.
    pub storm_batch: usize,
    /// How many source addresses the SYN flood uses: the attacker's own, then made-up unleased
    /// LAN addresses from .201 upwards (each a "guest" to a gateway that keys flows by address).
    pub syn_sources: u8,
}

impl Target {
    /// QEMU's slirp plan (10.0.2.0/24, gateway .2, DNS .3) with the given victim.
    pub fn slirp_defaults(victim_ip: Ipv4Addr, victim_mac: [u8; 6]) -> Target {
        Target {
            gateway_ip: Ipv4Addr::new(10, 0, 2, 2),
            dns_ip: Ipv4Addr::new(10, 0, 2, 3),
            gateway_mac: GATEWAY_MAC,
            lan: [10, 0, 2],
            victim_ip,
            victim_mac,
            victim_services: Vec::new(),
            syn_ports: Vec::new(),
            attacker_mac: [0x52, 0x54, 0x00, 0x66, 0x66, 0x01],
            attacker_ip: Ipv4Addr::new(10, 0, 2, 200),
            udp_flood_ports: 3000,
            udp_flood_base: 20000,
            discover_macs: 64,
            storm_batch: 256,
            syn_sources: 50,
        }
    }

    fn lan_ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.lan[0], self.lan[1], self.lan[2], host)
    }
}

/// One kind of abuse. Each batch of a phase is a handful to a few hundred frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// ARP replies, gratuitous ARP and requests claiming the gateway's, DNS and the victim's address.
    ArpSpoof,
    /// ARP with odd hardware/protocol types and lengths, unknown opcodes, truncated.
    ArpMalformed,
    /// Short, minimum-size and jumbo frames, unknown ethertypes, multicast/gateway/victim source MACs.
    L2Odd,
    /// IPv4 with version/IHL/length lies, bad checksums, options, TTL 0, odd sources and destinations.
    Ipv4Malformed,
    /// Overlapping, tiny, out-of-range and never-completed IPv4 fragments.
    Fragments,
    /// TCP with data-offset lies, bad checksums, broken options, short headers.
    TcpMalformed,
    /// Every TCP flag combination to host ports.
    TcpFlags,
    /// SYNs to host loopback ports that are never completed.
    SynFlood,
    /// RST/ACK/data with random sequence numbers on the victim's guessed 4-tuples (both directions).
    TcpInject,
    /// UDP with length lies, zero and bad checksums.
    UdpMalformed,
    /// UDP to thousands of host ports.
    UdpPortFlood,
    /// ICMP errors quoting forged headers of the victim's flows, redirects, odd types.
    IcmpForged,
    /// ICMP echo floods (many identifiers, big and bad-checksum requests).
    IcmpEchoFlood,
    /// DHCP with bad option lengths, overlong options, server messages from a client, lease theft.
    DhcpHostile,
    /// DHCP DISCOVERs from many random MACs.
    DhcpDiscoverFlood,
    /// DNS compression loops, pointer chains, bad labels, huge and garbage queries, responses.
    DnsHostile,
    /// 802.1Q and QinQ tagged versions of the other phases' frames.
    Vlan,
    /// IPv6 frames (junk, loopback and link-local sources) to the gateway.
    Ipv6Junk,
    /// Broadcast ARP requests and broadcast UDP, as fast as the connection takes them.
    BroadcastStorm,
    /// Frames from random source MACs to random unicast MACs (flooded by a learning switch).
    RandomMacFlood,
}

impl Phase {
    pub const ALL: [Phase; 20] = [
        Phase::ArpSpoof,
        Phase::ArpMalformed,
        Phase::L2Odd,
        Phase::Ipv4Malformed,
        Phase::Fragments,
        Phase::TcpMalformed,
        Phase::TcpFlags,
        Phase::SynFlood,
        Phase::TcpInject,
        Phase::UdpMalformed,
        Phase::UdpPortFlood,
        Phase::IcmpForged,
        Phase::IcmpEchoFlood,
        Phase::DhcpHostile,
        Phase::DhcpDiscoverFlood,
        Phase::DnsHostile,
        Phase::Vlan,
        Phase::Ipv6Junk,
        Phase::BroadcastStorm,
        Phase::RandomMacFlood,
    ];

    /// The phase's name in `WARREN_SOAK_PHASES` / `WARREN_SOAK_SKIP` (snake case).
    pub fn name(self) -> &'static str {
        match self {
            Phase::ArpSpoof => "arp_spoof",
            Phase::ArpMalformed => "arp_malformed",
            Phase::L2Odd => "l2_odd",
            Phase::Ipv4Malformed => "ipv4_malformed",
            Phase::Fragments => "fragments",
            Phase::TcpMalformed => "tcp_malformed",
            Phase::TcpFlags => "tcp_flags",
            Phase::SynFlood => "syn_flood",
            Phase::TcpInject => "tcp_inject",
            Phase::UdpMalformed => "udp_malformed",
            Phase::UdpPortFlood => "udp_port_flood",
            Phase::IcmpForged => "icmp_forged",
            Phase::IcmpEchoFlood => "icmp_echo_flood",
            Phase::DhcpHostile => "dhcp_hostile",
            Phase::DhcpDiscoverFlood => "dhcp_discover_flood",
            Phase::DnsHostile => "dns_hostile",
            Phase::Vlan => "vlan",
            Phase::Ipv6Junk => "ipv6_junk",
            Phase::BroadcastStorm => "broadcast_storm",
            Phase::RandomMacFlood => "random_mac_flood",
        }
    }

    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == name.trim())
    }

    /// Phases from a comma-separated list of names; an unknown name is an error naming it.
    pub fn parse_list(list: &str) -> Result<Vec<Phase>, String> {
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                Phase::from_name(s).ok_or_else(|| {
                    let all: Vec<_> = Phase::ALL.iter().map(|p| p.name()).collect();
                    format!("unknown soak phase {s:?} (known: {})", all.join(","))
                })
            })
            .collect()
    }
}

/// Produces batches of hostile frames, reproducibly from a seed.
pub struct Generator {
    rng: Rng,
    t: Target,
    ip_id: u16,
    udp_next: u16,
    flags_next: u16,
    discover_macs: Vec<[u8; 6]>,
    discover_next: usize,
}

/// Sources a hostile guest may try on IPv4 packets to the gateway.
fn odd_sources(t: &Target) -> Vec<Ipv4Addr> {
    vec![
        t.attacker_ip,
        t.victim_ip,
        t.gateway_ip,
        t.dns_ip,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(t.lan[0], t.lan[1], t.lan[2], 255),
        Ipv4Addr::new(t.lan[0], t.lan[1], t.lan[2], 0),
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(TEST_NET[0], TEST_NET[1], TEST_NET[2], 9),
    ]
}

/// Destinations that are not the outside world, plus the gateway's services and TEST-NET.
fn odd_destinations(t: &Target) -> Vec<Ipv4Addr> {
    vec![
        t.gateway_ip,
        t.dns_ip,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(0, 1, 2, 3),
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(127, 1, 2, 3),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(t.lan[0], t.lan[1], t.lan[2], 255),
        Ipv4Addr::new(t.lan[0], t.lan[1], t.lan[2], 0),
        Ipv4Addr::new(224, 0, 0, 251),
        Ipv4Addr::new(239, 255, 255, 250),
        t.victim_ip,
        t.attacker_ip,
        Ipv4Addr::new(t.lan[0], t.lan[1], t.lan[2], 99),
        Ipv4Addr::new(TEST_NET[0], TEST_NET[1], TEST_NET[2], 1),
    ]
}

impl Generator {
    pub fn new(seed: u64, target: Target) -> Generator {
        let mut rng = Rng::new(seed);
        let discover_macs = (0..target.discover_macs.max(1))
            .map(|_| rng.mac())
            .collect();
        Generator {
            rng,
            t: target,
            ip_id: 1,
            udp_next: 0,
            flags_next: 0,
            discover_macs,
            discover_next: 0,
        }
    }

    pub fn target(&self) -> &Target {
        &self.t
    }

    fn id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }

    fn ephemeral(&mut self) -> u16 {
        32768 + (self.rng.below(61000 - 32768) as u16)
    }

    fn host_port(&mut self) -> u16 {
        if !self.t.syn_ports.is_empty() && self.rng.chance(50) {
            *self.rng.pick(&self.t.syn_ports)
        } else {
            1024 + self.rng.below(60000) as u16
        }
    }

    /// Ethernet to the gateway from the attacker.
    fn to_gw(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        eth(self.t.gateway_mac, self.t.attacker_mac, ethertype, payload)
    }

    fn ip_to_gw(&mut self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let id = self.id();
        self.to_gw(ETHERTYPE_IPV4, &ipv4(src, dst, proto, id, l4))
    }

    /// One batch of frames for `phase`.
    pub fn frames(&mut self, phase: Phase) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match phase {
            Phase::ArpSpoof => self.arp_spoof(&mut out),
            Phase::ArpMalformed => self.arp_malformed(&mut out),
            Phase::L2Odd => self.l2_odd(&mut out),
            Phase::Ipv4Malformed => self.ipv4_malformed(&mut out),
            Phase::Fragments => self.fragments(&mut out),
            Phase::TcpMalformed => self.tcp_malformed(&mut out),
            Phase::TcpFlags => self.tcp_flags(&mut out),
            Phase::SynFlood => self.syn_flood(&mut out),
            Phase::TcpInject => self.tcp_inject(&mut out),
            Phase::UdpMalformed => self.udp_malformed(&mut out),
            Phase::UdpPortFlood => self.udp_port_flood(&mut out),
            Phase::IcmpForged => self.icmp_forged(&mut out),
            Phase::IcmpEchoFlood => self.icmp_echo_flood(&mut out),
            Phase::DhcpHostile => self.dhcp_hostile(&mut out),
            Phase::DhcpDiscoverFlood => self.dhcp_discover_flood(&mut out),
            Phase::DnsHostile => self.dns_hostile(&mut out),
            Phase::Vlan => self.vlan(&mut out),
            Phase::Ipv6Junk => self.ipv6_junk(&mut out),
            Phase::BroadcastStorm => self.broadcast_storm(&mut out),
            Phase::RandomMacFlood => self.random_mac_flood(&mut out),
        }
        for f in &mut out {
            if f.len() < MIN_FRAME {
                f.resize(MIN_FRAME, 0);
            }
            f.truncate(MAX_FRAME);
        }
        out
    }

    fn arp_spoof(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        for claimed in [t.gateway_ip, t.dns_ip, t.victim_ip] {
            // Reply to the gateway, gratuitous ARP to everyone, reply straight to the victim.
            for (dst, tha, tpa) in [
                (t.gateway_mac, t.gateway_mac, t.gateway_ip),
                (BROADCAST, BROADCAST, claimed),
                (t.victim_mac, t.victim_mac, t.victim_ip),
            ] {
                let op = if self.rng.chance(50) { 2 } else { 1 };
                out.push(eth(
                    dst,
                    t.attacker_mac,
                    ETHERTYPE_ARP,
                    &arp(op, t.attacker_mac, claimed, tha, tpa),
                ));
            }
            // The claim with a random sender MAC (not the frame's source).
            let m = self.rng.mac();
            out.push(eth(
                t.gateway_mac,
                t.attacker_mac,
                ETHERTYPE_ARP,
                &arp(2, m, claimed, t.gateway_mac, t.gateway_ip),
            ));
        }
        // The victim's own MAC as the frame's source (the switch knows it on another port).
        out.push(eth(
            BROADCAST,
            t.victim_mac,
            ETHERTYPE_ARP,
            &arp(1, t.victim_mac, t.victim_ip, [0; 6], t.gateway_ip),
        ));
        // An ARP probe (sender 0.0.0.0) for the victim's address: legal, and must change nothing.
        out.push(eth(
            BROADCAST,
            t.attacker_mac,
            ETHERTYPE_ARP,
            &arp(
                1,
                t.attacker_mac,
                Ipv4Addr::UNSPECIFIED,
                [0; 6],
                t.victim_ip,
            ),
        ));
    }

    fn arp_malformed(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        let good = arp(1, t.attacker_mac, t.attacker_ip, [0; 6], t.gateway_ip);
        for _ in 0..12 {
            let mut a = good.clone();
            match self.rng.below(8) {
                0 => a[4] = *self.rng.pick(&[0, 1, 5, 7, 16, 255]), // hlen
                1 => a[5] = *self.rng.pick(&[0, 1, 3, 5, 16, 255]), // plen
                2 => a[0..2].copy_from_slice(&self.rng.u16().to_be_bytes()), // htype
                3 => a[2..4].copy_from_slice(&[0x86, 0xdd]),        // ptype IPv6
                4 => {
                    a[6..8].copy_from_slice(&self.rng.pick(&[0u16, 3, 4, 8, 0xffff]).to_be_bytes())
                }
                5 => a.truncate(self.rng.range(0, 27)),
                6 => {
                    // Huge hlen with a body that is long enough for it.
                    a[4] = 255;
                    a.extend(self.rng.bytes(600));
                }
                _ => a = self.rng.bytes_in(0, 60),
            }
            let dst = if self.rng.chance(50) {
                BROADCAST
            } else {
                t.gateway_mac
            };
            out.push(eth(dst, t.attacker_mac, ETHERTYPE_ARP, &a));
        }
    }

    fn l2_odd(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        // Short frames, down to the bare 14-byte header.
        for _ in 0..4 {
            let n = self.rng.range(MIN_FRAME, 59);
            let mut f = eth(t.gateway_mac, t.attacker_mac, ETHERTYPE_IPV4, &[]);
            f.extend(self.rng.bytes(n - 14));
            out.push(f);
        }
        out.push(eth(BROADCAST, t.attacker_mac, ETHERTYPE_ARP, &[]));
        // Jumbo frames: above the MTU, up to the framing maximum, valid and junk inside.
        for len in [1515usize, 1519, 9018, MAX_FRAME] {
            let body = self.rng.bytes(len - 14 - 28);
            let u = udp(t.attacker_ip, t.gateway_ip, 4000, self.host_port(), &body);
            let id = self.id();
            let mut f = self.to_gw(
                ETHERTYPE_IPV4,
                &ipv4(t.attacker_ip, t.gateway_ip, PROTO_UDP, id, &u),
            );
            f.truncate(len);
            out.push(f);
        }
        let big = self.rng.bytes(4000);
        out.push(eth(BROADCAST, t.attacker_mac, 0x88b5, &big));
        // Multicast and broadcast source MACs, the gateway's MAC, the victim's MAC as source.
        let probe = ipv4(
            t.attacker_ip,
            t.gateway_ip,
            PROTO_UDP,
            7,
            &udp(t.attacker_ip, t.gateway_ip, 5, 9, b"x"),
        );
        for src in [
            [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01],
            [0x33, 0x33, 0x00, 0x00, 0x00, 0x01],
            BROADCAST,
            t.gateway_mac,
            t.victim_mac,
        ] {
            out.push(eth(t.gateway_mac, src, ETHERTYPE_IPV4, &probe));
            out.push(eth(
                BROADCAST,
                src,
                ETHERTYPE_ARP,
                &arp(1, src, t.attacker_ip, [0; 6], t.gateway_ip),
            ));
        }
        // The all-zero MAC, and frames addressed to the attacker itself.
        out.push(eth(t.gateway_mac, [0; 6], ETHERTYPE_IPV4, &probe));
        out.push(eth(t.attacker_mac, t.attacker_mac, ETHERTYPE_IPV4, &probe));
        // Unknown and 802.3-length ethertypes.
        for et in [0x0000u16, 0x05dc, 0x0600, 0x8035, 0x88cc, 0x9000, 0xffff] {
            let n = self.rng.range(0, 100);
            let body = self.rng.bytes(n);
            out.push(eth(t.gateway_mac, t.attacker_mac, et, &body));
        }
    }

    fn ipv4_malformed(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        let sources = odd_sources(&t);
        let dests = odd_destinations(&t);
        for _ in 0..24 {
            let src = *self.rng.pick(&sources);
            let dst = *self.rng.pick(&dests);
            let port = self.host_port();
            let l4 = udp(src, dst, 40000, port, b"soak");
            let id = self.id();
            let mut p = ipv4(src, dst, PROTO_UDP, id, &l4);
            match self.rng.below(12) {
                0 => {
                    p[0] = (self.rng.u8() & 0xf0 & !0x40) | 5; // version 0..15 except 4
                    fix_ip_checksum(&mut p);
                }
                1 => {
                    p[0] = 0x40 | self.rng.below(5) as u8; // ihl < 5
                }
                2 => {
                    p[0] = 0x4f; // ihl 15: header longer than the packet's options
                    fix_ip_checksum(&mut p);
                }
                3 => {
                    let lie = *self.rng.pick(&[0u16, 1, 19, 21, 27, 1500, 0xffff]);
                    p[2..4].copy_from_slice(&lie.to_be_bytes());
                    fix_ip_checksum(&mut p);
                }
                4 => p[10] ^= 0x5a, // bad header checksum
                5 => {
                    p[8] = 0; // TTL 0
                    fix_ip_checksum(&mut p);
                }
                6 => {
                    // Options: random bytes, or options whose lengths run past the header.
                    let opts = match self.rng.below(4) {
                        0 => self.rng.bytes_in(1, 40),
                        1 => vec![0x07, 0x27, 0x04], // record route claiming 39 bytes
                        2 => vec![0x44, 0x01, 0x05, 0x00], // timestamp, length 1
                        _ => vec![0x83, 0xff],       // loose source route, length 255
                    };
                    p = ipv4_with(src, dst, PROTO_UDP, id, 64, 0, &opts, &l4);
                }
                7 => {
                    // Unknown protocols.
                    p[9] = *self.rng.pick(&[0u8, 2, 4, 41, 47, 50, 132, 255]);
                    fix_ip_checksum(&mut p);
                }
                8 => {
                    // Trailing garbage after total length (Ethernet padding, or not).
                    p.extend(self.rng.bytes_in(1, 64));
                }
                9 => p.truncate(self.rng.range(0, 19)),
                10 => {
                    p[1] = self.rng.u8(); // TOS/ECN
                    p[6] |= 0x80; // the reserved ("evil") bit
                    fix_ip_checksum(&mut p);
                }
                _ => {
                    // Valid packets to destinations that must not become host sockets.
                }
            }
            out.push(self.to_gw(ETHERTYPE_IPV4, &p));
        }
        // Directed and limited broadcast and multicast, at the IP and Ethernet level.
        for dst in [
            Ipv4Addr::BROADCAST,
            t.lan_ip(255),
            Ipv4Addr::new(224, 0, 0, 1),
        ] {
            let l4 = udp(t.attacker_ip, dst, 5353, 5353, b"storm?");
            let id = self.id();
            out.push(eth(
                BROADCAST,
                t.attacker_mac,
                ETHERTYPE_IPV4,
                &ipv4(t.attacker_ip, dst, PROTO_UDP, id, &l4),
            ));
        }
    }

    fn fragments(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        let src = t.attacker_ip;
        let dst = t.gateway_ip;
        let port = self.host_port();
        let body = self.rng.bytes(64);
        let whole = udp(src, dst, 41000, port, &body);
        let mf = 0x2000u16;
        let id = self.id();
        // Overlapping: [0..40) and [16..72) (offsets in 8-byte units).
        out.push(self.to_gw(
            ETHERTYPE_IPV4,
            &ipv4_with(src, dst, PROTO_UDP, id, 64, mf, &[], &whole[..40]),
        ));
        out.push(self.to_gw(
            ETHERTYPE_IPV4,
            &ipv4_with(src, dst, PROTO_UDP, id, 64, 2, &[], &whole[16..]),
        ));
        // Tiny fragments: 8 bytes each, the first splits the transport header.
        let id = self.id();
        let tcp_whole = tcp(
            src,
            dst,
            41001,
            port,
            self.rng.u32(),
            0,
            0x002,
            65535,
            &[2, 4, 5, 0xb4],
            &[],
        );
        for (i, chunk) in tcp_whole.chunks(8).enumerate() {
            let more = if (i + 1) * 8 < tcp_whole.len() { mf } else { 0 };
            out.push(self.to_gw(
                ETHERTYPE_IPV4,
                &ipv4_with(src, dst, PROTO_TCP, id, 64, more | i as u16, &[], chunk),
            ));
        }
        // Offset so large that the reassembled packet would exceed 65535 bytes.
        let id = self.id();
        let far = self.rng.bytes(64);
        out.push(self.to_gw(
            ETHERTYPE_IPV4,
            &ipv4_with(src, dst, PROTO_UDP, id, 64, 0x1fff, &[], &far),
        ));
        // A first fragment whose tail never comes (a reassembly-buffer pit), many ids.
        for _ in 0..8 {
            let id = self.id();
            let l = self.rng.range(8, 1400) & !7;
            let data = self.rng.bytes(l);
            out.push(self.to_gw(
                ETHERTYPE_IPV4,
                &ipv4_with(src, dst, PROTO_UDP, id, 64, mf, &[], &data),
            ));
        }
        // MF with a length that is not a multiple of 8; DF and MF together; fragments of ICMP and
        // to the DNS forwarder; a fragment from the victim's address.
        let id = self.id();
        out.push(self.to_gw(
            ETHERTYPE_IPV4,
            &ipv4_with(src, dst, PROTO_UDP, id, 64, mf, &[], &whole[..13]),
        ));
        let id = self.id();
        out.push(self.to_gw(
            ETHERTYPE_IPV4,
            &ipv4_with(
                src,
                dst,
                PROTO_UDP,
                id,
                64,
                0x4000 | mf | 3,
                &[],
                &whole[..24],
            ),
        ));
        let id = self.id();
        let echo = icmp(8, 0, [0, 1, 0, 1], &self.rng.bytes(100));
        out.push(self.to_gw(
            ETHERTYPE_IPV4,
            &ipv4_with(src, dst, PROTO_ICMP, id, 64, mf, &[], &echo[..48]),
        ));
        let id = self.id();
        let q = udp(
            src,
            t.dns_ip,
            41002,
            53,
            &dns_query(1, "fragmented.soak.test", 1),
        );
        out.push(self.to_gw(
            ETHERTYPE_IPV4,
            &ipv4_with(src, t.dns_ip, PROTO_UDP, id, 64, mf, &[], &q[..16]),
        ));
        let id = self.id();
        let v = udp(t.victim_ip, dst, 41003, port, &body);
        out.push(self.to_gw(
            ETHERTYPE_IPV4,
            &ipv4_with(t.victim_ip, dst, PROTO_UDP, id, 64, 1, &[], &v[8..]),
        ));
    }

    fn tcp_malformed(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        let (src, dst) = (t.attacker_ip, t.gateway_ip);
        for _ in 0..20 {
            let port = self.host_port();
            let sport = self.ephemeral();
            let (seq, ack) = (self.rng.u32(), self.rng.u32());
            let flags = *self
                .rng
                .pick(&[0x002u16, 0x010, 0x018, 0x012, 0x011, 0x004]);
            let mut s = tcp(
                src,
                dst,
                sport,
                port,
                seq,
                ack,
                flags,
                65535,
                &[],
                b"payload",
            );
            match self.rng.below(9) {
                0 => s[12] = (self.rng.below(5) as u8) << 4, // data offset < 5
                1 => s[12] = 0xf0,                           // data offset 15: past the segment
                2 => s[16] ^= 0xff,                          // bad checksum
                3 => s.truncate(self.rng.range(0, 19)),      // shorter than a header
                4 => {
                    // Options with broken lengths: MSS length 0, wscale length 1, length past end,
                    // a huge window shift, SACK with odd lengths, unknown kinds.
                    let opts: Vec<u8> = match self.rng.below(6) {
                        0 => vec![2, 0, 1, 1],
                        1 => vec![3, 1, 1, 1],
                        2 => vec![8, 40, 0, 0],
                        3 => vec![3, 3, 200, 0],
                        4 => vec![5, 7, 0, 0, 0, 0, 0, 0],
                        _ => self.rng.bytes_in(1, 40),
                    };
                    s = tcp(src, dst, sport, port, seq, ack, 0x002, 65535, &opts, &[]);
                }
                5 => {
                    // MSS 0 and window 0 on a SYN.
                    s = tcp(src, dst, sport, port, seq, 0, 0x002, 0, &[2, 4, 0, 0], &[]);
                }
                6 => {
                    // Urgent pointer far beyond the data, URG set.
                    s = tcp(src, dst, sport, port, seq, ack, 0x030, 512, &[], b"u");
                    s[18] = 0xff;
                    s[19] = 0xff;
                    s[16] = 0;
                    s[17] = 0;
                    let c = checksum(&s, pseudo_sum(src, dst, PROTO_TCP, s.len()));
                    s[16..18].copy_from_slice(&c.to_be_bytes());
                }
                7 => {
                    // SYN carrying data, and a SYN to port 0.
                    let p = if self.rng.chance(50) { 0 } else { port };
                    s = tcp(
                        src,
                        dst,
                        sport,
                        p,
                        seq,
                        0,
                        0x002,
                        65535,
                        &[2, 4, 5, 0xb4],
                        &self.rng.bytes(300),
                    );
                }
                _ => {}
            }
            let proto_dst = *self.rng.pick(&odd_destinations(&t));
            let d = if self.rng.chance(25) { proto_dst } else { dst };
            out.push(self.ip_to_gw(src, d, PROTO_TCP, &s));
        }
    }

    fn tcp_flags(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        for _ in 0..32 {
            // Walk all 512 combinations of the 9 flag bits (NS..FIN), then around again.
            let flags = self.flags_next & 0x1ff;
            self.flags_next = self.flags_next.wrapping_add(1);
            let port = self.host_port();
            let sport = self.ephemeral();
            let (seq, ack) = (self.rng.u32(), self.rng.u32());
            let data = if self.rng.chance(30) {
                self.rng.bytes(20)
            } else {
                Vec::new()
            };
            let s = tcp(
                t.attacker_ip,
                t.gateway_ip,
                sport,
                port,
                seq,
                ack,
                flags,
                self.rng.u16(),
                &[],
                &data,
            );
            out.push(self.ip_to_gw(t.attacker_ip, t.gateway_ip, PROTO_TCP, &s));
        }
    }

    fn syn_flood(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        for _ in 0..64 {
            // From the attacker's address, and from unleased LAN addresses it makes up.
            let n = self.rng.below(u64::from(t.syn_sources.max(1)));
            let src = if n == 0 {
                t.attacker_ip
            } else {
                t.lan_ip(200u8.saturating_add(n as u8))
            };
            let port = self.host_port();
            let sport = self.ephemeral();
            let s = tcp(
                src,
                t.gateway_ip,
                sport,
                port,
                self.rng.u32(),
                0,
                0x002,
                65535,
                &[2, 4, 5, 0xb4, 1, 3, 3, 7],
                &[],
            );
            out.push(self.ip_to_gw(src, t.gateway_ip, PROTO_TCP, &s));
        }
    }

    fn tcp_inject(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        if t.victim_services.is_empty() {
            return;
        }
        for _ in 0..48 {
            let service = *self.rng.pick(&t.victim_services);
            let guest_port = self.ephemeral();
            let (seq, ack) = (self.rng.u32(), self.rng.u32());
            let flags = *self
                .rng
                .pick(&[0x004u16, 0x014, 0x010, 0x018, 0x011, 0x001]);
            let data = if flags & 0x008 != 0 {
                self.rng.bytes(64)
            } else {
                Vec::new()
            };
            if self.rng.chance(75) {
                // As the victim, towards the gateway (the victim's flows as the gateway sees them).
                let s = tcp(
                    t.victim_ip,
                    t.gateway_ip,
                    guest_port,
                    service,
                    seq,
                    ack,
                    flags,
                    65535,
                    &[],
                    &data,
                );
                out.push(self.ip_to_gw(t.victim_ip, t.gateway_ip, PROTO_TCP, &s));
            } else {
                // As the gateway, towards the victim (dropped by the switch as a claim of the
                // gateway's address), and from the attacker's own address (the victim ignores it).
                let src = if self.rng.chance(50) {
                    t.gateway_ip
                } else {
                    t.attacker_ip
                };
                let s = tcp(
                    src,
                    t.victim_ip,
                    service,
                    guest_port,
                    seq,
                    ack,
                    flags,
                    65535,
                    &[],
                    &data,
                );
                let id = self.id();
                out.push(eth(
                    t.victim_mac,
                    t.attacker_mac,
                    ETHERTYPE_IPV4,
                    &ipv4(src, t.victim_ip, PROTO_TCP, id, &s),
                ));
            }
        }
    }

    fn udp_malformed(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        let (src, dst) = (t.attacker_ip, t.gateway_ip);
        for _ in 0..20 {
            let port = self.host_port();
            let n = self.rng.range(0, 200);
            let body = self.rng.bytes(n);
            let mut d = udp(src, dst, 42000, port, &body);
            match self.rng.below(6) {
                0 => {
                    let lie = *self.rng.pick(&[0u16, 1, 7, 9, 0xffff]);
                    d[4..6].copy_from_slice(&lie.to_be_bytes()); // length lies (checksum now wrong too)
                }
                1 => {
                    let longer = (d.len() + 100) as u16;
                    d[4..6].copy_from_slice(&longer.to_be_bytes());
                }
                2 => {
                    d[6] = 0; // no checksum (legal in IPv4)
                    d[7] = 0;
                }
                3 => d[7] ^= 0x33,                     // bad checksum
                4 => d.truncate(self.rng.range(0, 7)), // shorter than the header
                _ => {
                    // To port 0, and from port 0.
                    d[2] = 0;
                    d[3] = 0;
                    d[0] = 0;
                    d[1] = 0;
                }
            }
            out.push(self.ip_to_gw(src, dst, PROTO_UDP, &d));
        }
        // To the DHCP and DNS ports with junk.
        let junk = self.rng.bytes(40);
        out.push(udp_frame(
            BROADCAST,
            t.attacker_mac,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            67,
            1,
            &junk,
        ));
        out.push(udp_frame(
            t.gateway_mac,
            t.attacker_mac,
            src,
            t.dns_ip,
            42001,
            53,
            2,
            &junk,
        ));
        out.push(udp_frame(
            t.gateway_mac,
            t.attacker_mac,
            src,
            t.dns_ip,
            42001,
            53,
            3,
            &[],
        ));
    }

    fn udp_port_flood(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        for _ in 0..128 {
            let port = t
                .udp_flood_base
                .wrapping_add(self.udp_next % t.udp_flood_ports.max(1));
            self.udp_next = self.udp_next.wrapping_add(1);
            let id = self.id();
            out.push(udp_frame(
                t.gateway_mac,
                t.attacker_mac,
                t.attacker_ip,
                t.gateway_ip,
                43000,
                port,
                id,
                b"flood",
            ));
        }
    }

    fn icmp_forged(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        for _ in 0..16 {
            // The quoted packet: one of the victim's flows as it would travel either way.
            let service = if t.victim_services.is_empty() {
                80
            } else {
                *self.rng.pick(&t.victim_services)
            };
            let guest_port = self.ephemeral();
            let (qsrc, qdst, qs, qd) = if self.rng.chance(50) {
                (t.victim_ip, t.gateway_ip, guest_port, service)
            } else {
                (t.gateway_ip, t.victim_ip, service, guest_port)
            };
            let proto = if self.rng.chance(70) {
                PROTO_TCP
            } else {
                PROTO_UDP
            };
            let inner_l4 = if proto == PROTO_TCP {
                tcp(
                    qsrc,
                    qdst,
                    qs,
                    qd,
                    self.rng.u32(),
                    self.rng.u32(),
                    0x018,
                    65535,
                    &[],
                    &[],
                )
            } else {
                udp(qsrc, qdst, qs, qd, b"quoted")
            };
            let id = self.rng.u16();
            let mut inner = ipv4(qsrc, qdst, proto, id, &inner_l4);
            match self.rng.below(5) {
                0 => inner.truncate(self.rng.range(0, 27)), // quote shorter than IP + 8
                1 => inner[0] = 0x4f,                       // quoted IHL past the quote
                2 => inner[0] = 0x63,                       // quoted version 6, IHL 3
                _ => inner.truncate(28),                    // the classic IP header + 8 bytes
            }
            let (kind, code, rest) = match self.rng.below(7) {
                0 => (3, self.rng.below(16) as u8, [0, 0, 0, 0]),
                1 => (3, 4, [0, 0, 0, *self.rng.pick(&[0u8, 8, 68])]), // frag needed, tiny MTU
                2 => (11, self.rng.below(2) as u8, [0, 0, 0, 0]),
                3 => (12, 0, [self.rng.u8(), 0, 0, 0]),
                4 => (5, self.rng.below(4) as u8, t.attacker_ip.octets()), // redirect to the attacker
                5 => (4, 0, [0, 0, 0, 0]),
                _ => (self.rng.u8(), self.rng.u8(), [0, 0, 0, 0]),
            };
            let mut m = icmp(kind, code, rest, &inner);
            if self.rng.chance(10) {
                m[2] ^= 0xff;
            }
            match self.rng.below(3) {
                0 => out.push(self.ip_to_gw(t.attacker_ip, t.gateway_ip, PROTO_ICMP, &m)),
                1 => out.push(self.ip_to_gw(t.victim_ip, t.gateway_ip, PROTO_ICMP, &m)),
                _ => {
                    let src = if self.rng.chance(50) {
                        t.gateway_ip
                    } else {
                        t.attacker_ip
                    };
                    let id = self.id();
                    out.push(eth(
                        t.victim_mac,
                        t.attacker_mac,
                        ETHERTYPE_IPV4,
                        &ipv4(src, t.victim_ip, PROTO_ICMP, id, &m),
                    ));
                }
            }
        }
    }

    fn icmp_echo_flood(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        for _ in 0..64 {
            let ident = self.rng.u16();
            let seq = self.rng.u16();
            let n = *self.rng.pick(&[0usize, 8, 56, 1000, 1472]);
            let body = self.rng.bytes(n);
            let mut rest = [0u8; 4];
            rest[..2].copy_from_slice(&ident.to_be_bytes());
            rest[2..].copy_from_slice(&seq.to_be_bytes());
            let mut m = icmp(8, 0, rest, &body);
            if self.rng.chance(10) {
                m[3] ^= 0x01;
            }
            let dst = if self.rng.chance(80) {
                t.gateway_ip
            } else {
                *self.rng.pick(&odd_destinations(&t))
            };
            out.push(self.ip_to_gw(t.attacker_ip, dst, PROTO_ICMP, &m));
        }
    }

    fn dhcp_hostile(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        let me = t.attacker_mac;
        for _ in 0..12 {
            let xid = self.rng.u32();
            let opts: Vec<u8> = match self.rng.below(9) {
                // An option whose length runs past the end.
                0 => vec![53, 1, DHCPDISCOVER, 12, 200, b'a', b'b'],
                // Message type with the wrong length, and none at all.
                1 => vec![53, 4, DHCPDISCOVER, 0, 0, 0, 255],
                2 => vec![12, 3, b'x', b'y', b'z', 255],
                // Overlong: every option at 255 bytes, a few hundred bytes past a normal message.
                3 => {
                    let mut o = vec![53, 1, DHCPDISCOVER];
                    for code in [12u8, 55, 61, 60, 81, 43] {
                        o.push(code);
                        o.push(255);
                        o.extend(self.rng.bytes(255));
                    }
                    o.push(255);
                    o
                }
                // Requested address with the wrong length, host name that is not UTF-8.
                4 => vec![53, 1, DHCPREQUEST, 50, 3, 10, 0, 2, 12, 2, 0xff, 0xfe, 255],
                // No end option, trailing garbage, pads only.
                5 => {
                    let mut o = vec![53, 1, DHCPDISCOVER];
                    o.extend(self.rng.bytes(30));
                    o
                }
                6 => vec![0; 60],
                // Classless static routes with impossible prefixes, option overload.
                7 => vec![53, 1, DHCPINFORM, 121, 5, 40, 10, 0, 2, 2, 52, 1, 3, 255],
                _ => {
                    let n = self.rng.range(0, 300);
                    self.rng.bytes(n)
                }
            };
            let mut m = dhcp_message(1, xid, Ipv4Addr::UNSPECIFIED, me, &opts);
            match self.rng.below(6) {
                0 => m[2] = *self.rng.pick(&[0u8, 5, 16, 255]), // hlen
                1 => m[236] ^= 1,                               // magic cookie
                2 => m.truncate(self.rng.range(0, 239)),        // shorter than BOOTP
                3 => m[28..34].copy_from_slice(&t.victim_mac),  // chaddr of the victim
                _ => {}
            }
            out.push(udp_frame(
                BROADCAST,
                me,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                68,
                67,
                xid as u16,
                &m,
            ));
        }
        // Server messages from a client: OFFER and ACK (op BOOTREPLY, port 67 → 68) handing out
        // the victim's address with the attacker as router and DNS, broadcast and to the victim.
        for kind in [DHCPOFFER, DHCPACK, DHCPNAK] {
            let mut o = vec![53, 1, kind, 54, 4];
            o.extend_from_slice(&t.attacker_ip.octets());
            for code in [3u8, 6] {
                o.extend_from_slice(&[code, 4]);
                o.extend_from_slice(&t.attacker_ip.octets());
            }
            o.extend_from_slice(&[1, 4, 255, 255, 255, 0, 51, 4, 0, 0, 0, 60, 255]);
            let xid = self.rng.u32();
            let mut m = dhcp_message(2, xid, Ipv4Addr::UNSPECIFIED, t.victim_mac, &o);
            m[16..20].copy_from_slice(&t.victim_ip.octets());
            for dst in [BROADCAST, t.victim_mac] {
                out.push(udp_frame(
                    dst,
                    me,
                    t.attacker_ip,
                    Ipv4Addr::BROADCAST,
                    67,
                    68,
                    xid as u16,
                    &m,
                ));
            }
            out.push(udp_frame(
                t.gateway_mac,
                me,
                t.attacker_ip,
                t.gateway_ip,
                67,
                67,
                xid as u16,
                &m,
            ));
        }
        // Lease theft: REQUEST for the victim's address from the attacker's MAC; RELEASE and
        // DECLINE of the victim's address from the attacker's MAC and (dropped by the switch) from
        // the victim's MAC; a relayed message (giaddr set).
        let xid = self.rng.u32();
        out.push(dhcp_client_frame(
            me,
            xid,
            DHCPREQUEST,
            Some(t.victim_ip),
            Some(t.gateway_ip),
        ));
        for mac in [me, t.victim_mac] {
            for kind in [DHCPRELEASE, DHCPDECLINE] {
                let mut o = vec![53, 1, kind, 54, 4];
                o.extend_from_slice(&t.gateway_ip.octets());
                o.extend_from_slice(&[50, 4]);
                o.extend_from_slice(&t.victim_ip.octets());
                o.push(255);
                let m = dhcp_message(1, xid, t.victim_ip, mac, &o);
                out.push(udp_frame(
                    t.gateway_mac,
                    mac,
                    t.victim_ip,
                    t.gateway_ip,
                    68,
                    67,
                    9,
                    &m,
                ));
            }
        }
        let mut m = dhcp_message(
            1,
            xid,
            Ipv4Addr::UNSPECIFIED,
            me,
            &[53, 1, DHCPDISCOVER, 255],
        );
        m[24..28].copy_from_slice(&t.attacker_ip.octets());
        out.push(udp_frame(
            BROADCAST,
            me,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            67,
            10,
            &m,
        ));
    }

    fn dhcp_discover_flood(&mut self, out: &mut Vec<Vec<u8>>) {
        for _ in 0..32 {
            let mac = self.discover_macs[self.discover_next % self.discover_macs.len()];
            self.discover_next += 1;
            let xid = self.rng.u32();
            out.push(dhcp_client_frame(mac, xid, DHCPDISCOVER, None, None));
        }
    }

    fn dns_hostile(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        for _ in 0..16 {
            let id = self.rng.u16();
            let mut q = id.to_be_bytes().to_vec();
            let hdr = |q: &mut Vec<u8>, flags: u16, qd: u16, an: u16, ar: u16| {
                q.extend_from_slice(&flags.to_be_bytes());
                for c in [qd, an, 0, ar] {
                    q.extend_from_slice(&c.to_be_bytes());
                }
            };
            match self.rng.below(12) {
                0 => {
                    // A name that points at itself.
                    hdr(&mut q, 0x0100, 1, 0, 0);
                    q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
                }
                1 => {
                    // Two labels, then a pointer back to the first: a loop through a label.
                    hdr(&mut q, 0x0100, 1, 0, 0);
                    q.extend_from_slice(&[1, b'a', 1, b'b', 0xc0, 12, 0, 1, 0, 1]);
                }
                2 => {
                    // A long chain of pointers, each to the one before.
                    hdr(&mut q, 0x0100, 1, 0, 0);
                    q.extend_from_slice(&[1, b'x', 0]);
                    let mut prev = 12u16;
                    for _ in 0..150 {
                        let here = q.len() as u16;
                        q.extend_from_slice(&(0xc000 | prev).to_be_bytes());
                        prev = here;
                    }
                    q.extend_from_slice(&[0, 1, 0, 1]);
                }
                3 => {
                    // A pointer past the end, and one into the header.
                    hdr(&mut q, 0x0100, 1, 0, 0);
                    let to = *self.rng.pick(&[0x3fffu16, 2, 200]);
                    q.extend_from_slice(&(0xc000 | to).to_be_bytes());
                    q.extend_from_slice(&[0, 1, 0, 1]);
                }
                4 => {
                    // Label lengths with the reserved 0x40/0x80 bits, and a 63+ length.
                    hdr(&mut q, 0x0100, 1, 0, 0);
                    q.extend_from_slice(&[
                        *self.rng.pick(&[0x40u8, 0x80, 0x7f]),
                        b'a',
                        b'b',
                        0,
                        0,
                        1,
                        0,
                        1,
                    ]);
                }
                5 => {
                    // A name longer than 255 bytes.
                    hdr(&mut q, 0x0100, 1, 0, 0);
                    for _ in 0..8 {
                        q.push(63);
                        q.extend_from_slice(&[b'z'; 63]);
                    }
                    q.extend_from_slice(&[0, 0, 1, 0, 1]);
                }
                6 => {
                    // No question, or 65535 questions with one present.
                    let qd = *self.rng.pick(&[0u16, 2, 0xffff]);
                    hdr(&mut q, 0x0100, qd, 0, 0);
                    q.extend_from_slice(&dns_query(0, "soak.test", 1)[12..]);
                }
                7 => {
                    // A response sent as a query; odd opcodes; the Z bit.
                    let flags = *self.rng.pick(&[0x8180u16, 0x2900, 0x7800, 0x0140, 0x0f00]);
                    hdr(&mut q, flags, 1, 1, 0);
                    q.extend_from_slice(&dns_query(0, "soak.test", 1)[12..]);
                    q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 2, 66]);
                }
                8 => {
                    // A truncated header, or nothing at all.
                    q.truncate(self.rng.range(0, 2));
                    q.extend(self.rng.bytes_in(0, 9));
                }
                9 => {
                    // Huge: an EDNS OPT record claiming a big buffer and carrying junk, near the MTU.
                    hdr(&mut q, 0x0100, 1, 0, 1);
                    q.extend_from_slice(&dns_query(0, "big.soak.test", 16)[12..]);
                    let junk = self.rng.bytes(1300);
                    q.extend_from_slice(&[0, 0, 41, 0xff, 0xff, 0, 0, 0, 0]);
                    q.extend_from_slice(&(junk.len() as u16).to_be_bytes());
                    q.extend_from_slice(&junk);
                }
                10 => {
                    // Garbage.
                    q = self.rng.bytes_in(0, 1400);
                }
                _ => {
                    // A plain flood of well-formed queries for names nobody has.
                    q = dns_query(id, &format!("n{}.flood.soak.test", self.rng.u32()), 1);
                }
            }
            let sport = 1024 + self.rng.below(60000) as u16;
            let idn = self.id();
            out.push(udp_frame(
                t.gateway_mac,
                t.attacker_mac,
                t.attacker_ip,
                t.dns_ip,
                sport,
                53,
                idn,
                &q,
            ));
        }
        // A DNS query in the victim's name: the answer must not come to the attacker.
        let idn = self.id();
        let q = dns_query(self.rng.u16(), "soak.test", 1);
        out.push(udp_frame(
            t.gateway_mac,
            t.attacker_mac,
            t.victim_ip,
            t.dns_ip,
            33333,
            53,
            idn,
            &q,
        ));
    }

    fn vlan(&mut self, out: &mut Vec<Vec<u8>>) {
        let inner_phases = [
            Phase::ArpSpoof,
            Phase::Ipv4Malformed,
            Phase::TcpMalformed,
            Phase::DhcpHostile,
            Phase::DnsHostile,
            Phase::IcmpForged,
        ];
        let phase = *self.rng.pick(&inner_phases);
        for f in self.frames(phase) {
            let vid = self.rng.u16();
            let qinq = self.rng.chance(40);
            let mut g = vlan_tag(&f, vid, qinq);
            if self.rng.chance(10) {
                let n = self.rng.range(14, 22).min(g.len());
                g.truncate(n); // a tag and nothing behind it
            }
            out.push(g);
        }
    }

    fn ipv6_junk(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        let ll: [u8; 16] = [
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0x66, 0x66, 1,
        ];
        let mut lo = [0u8; 16];
        lo[15] = 1;
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[127, 0, 0, 1]);
        for _ in 0..8 {
            let n = self.rng.range(0, 120);
            let payload = self.rng.bytes(n);
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            h.push(*self.rng.pick(&[0u8, 6, 17, 58, 59, 44]));
            h.push(*self.rng.pick(&[0u8, 1, 64, 255]));
            let a = *self.rng.pick(&[ll, lo, mapped]);
            h.extend_from_slice(&a);
            let b = *self.rng.pick(&[lo, mapped, ll]);
            h.extend_from_slice(&b);
            h.extend_from_slice(&payload);
            if self.rng.chance(30) {
                h = self.rng.bytes_in(0, 60);
            }
            let dst = if self.rng.chance(70) {
                t.gateway_mac
            } else {
                [0x33, 0x33, 0, 0, 0, 1]
            };
            out.push(eth(dst, t.attacker_mac, ETHERTYPE_IPV6, &h));
        }
    }

    fn broadcast_storm(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        for i in 0..t.storm_batch {
            if i % 4 == 3 {
                let id = self.id();
                let port = self.rng.u16();
                out.push(udp_frame(
                    BROADCAST,
                    t.attacker_mac,
                    t.attacker_ip,
                    Ipv4Addr::BROADCAST,
                    9999,
                    port,
                    id,
                    b"storm",
                ));
            } else {
                let who = t.lan_ip(self.rng.u8());
                out.push(eth(
                    BROADCAST,
                    t.attacker_mac,
                    ETHERTYPE_ARP,
                    &arp(1, t.attacker_mac, t.attacker_ip, [0; 6], who),
                ));
            }
        }
    }

    fn random_mac_flood(&mut self, out: &mut Vec<Vec<u8>>) {
        let t = self.t.clone();
        for _ in 0..128 {
            let (src, dst) = (self.rng.mac(), self.rng.mac());
            let id = self.id();
            let l4 = udp(t.attacker_ip, t.gateway_ip, 44000, 9, b"mac");
            let f = if self.rng.chance(50) {
                eth(
                    dst,
                    src,
                    ETHERTYPE_IPV4,
                    &ipv4(t.attacker_ip, t.gateway_ip, PROTO_UDP, id, &l4),
                )
            } else {
                eth(
                    t.gateway_mac,
                    src,
                    ETHERTYPE_IPV4,
                    &ipv4(t.attacker_ip, t.gateway_ip, PROTO_UDP, id, &l4),
                )
            };
            out.push(f);
        }
    }
}

/// Byte streams that break QEMU's stream framing, each for a connection of its own: (name, bytes,
/// whether warren must close the connection by itself; the others end in an EOF from our side).
pub fn bad_framings(rng: &mut Rng) -> Vec<(&'static str, Vec<u8>, bool)> {
    let valid = framed(&eth(
        BROADCAST,
        [0x52, 0x54, 0, 0x66, 0x66, 0x02],
        ETHERTYPE_ARP,
        &arp(
            1,
            [0x52, 0x54, 0, 0x66, 0x66, 0x02],
            Ipv4Addr::UNSPECIFIED,
            [0; 6],
            Ipv4Addr::new(10, 0, 2, 2),
        ),
    ));
    let len = |n: u32| n.to_be_bytes().to_vec();
    let with_valid = |mut v: Vec<u8>, bad: Vec<u8>| {
        v.extend(bad);
        v
    };
    let mut junk_tail = len(100);
    junk_tail.extend(rng.bytes(10));
    vec![
        ("length 0", len(0), true),
        ("length 13", with_valid(len(13), rng.bytes(13)), true),
        ("length 65550", with_valid(len(65550), rng.bytes(64)), true),
        (
            "length 2^32-1",
            with_valid(len(u32::MAX), rng.bytes(64)),
            true,
        ),
        (
            "valid frame then length 1",
            with_valid(valid.clone(), len(1)),
            true,
        ),
        ("truncated length", vec![0, 0], false),
        ("truncated frame", junk_tail, false),
        (
            "valid frame then garbage",
            with_valid(valid, rng.bytes(3)),
            false,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        let mut t = Target::slirp_defaults(
            Ipv4Addr::new(10, 0, 2, 15),
            [0x52, 0x54, 0, 0x12, 0x34, 0x56],
        );
        t.victim_services = vec![8080, 9090];
        t.syn_ports = vec![7000];
        t
    }

    #[test]
    fn checksums_verify_to_zero() {
        let (s, d) = (Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(10, 0, 2, 2));
        let p = ipv4(s, d, PROTO_UDP, 1, &udp(s, d, 1, 2, b"abc"));
        assert_eq!(checksum(&p[..20], 0), 0);
        let u = &p[20..];
        assert_eq!(checksum(u, pseudo_sum(s, d, PROTO_UDP, u.len())), 0);
        let t = tcp(s, d, 1, 2, 3, 4, 0x018, 100, &[2, 4, 5, 0xb4], b"hello");
        assert_eq!(checksum(&t, pseudo_sum(s, d, PROTO_TCP, t.len())), 0);
        assert_eq!(t[12] >> 4, 6, "data offset counts the options");
        let m = icmp(8, 0, [0, 1, 0, 2], b"ping");
        assert_eq!(checksum(&m, 0), 0);
    }

    #[test]
    fn same_seed_same_frames_and_every_phase_yields_framable_frames() {
        let mut a = Generator::new(42, target());
        let mut b = Generator::new(42, target());
        for _ in 0..3 {
            for p in Phase::ALL {
                let (fa, fb) = (a.frames(p), b.frames(p));
                assert_eq!(fa, fb, "{}", p.name());
                assert!(!fa.is_empty(), "{} produced nothing", p.name());
                for f in &fa {
                    assert!(
                        (MIN_FRAME..=MAX_FRAME).contains(&f.len()),
                        "{}: {}",
                        p.name(),
                        f.len()
                    );
                }
            }
        }
        let mut c = Generator::new(43, target());
        assert_ne!(a.frames(Phase::TcpInject), c.frames(Phase::TcpInject));
    }

    #[test]
    fn dhcp_client_frames_parse_back() {
        let mac = [0x52, 0x54, 0, 1, 2, 3];
        let f = dhcp_client_frame(mac, 0xabcd, DHCPDISCOVER, None, None);
        let Parsed::Udp {
            sport,
            dport,
            payload,
            dst,
            ..
        } = parse(&f)
        else {
            panic!("not UDP");
        };
        assert_eq!((sport, dport, dst), (68, 67, Ipv4Addr::BROADCAST));
        assert_eq!(&payload[28..34], &mac);
        assert_eq!(dhcp_reply_info(&payload), None, "a request is not a reply");
        let mut reply = payload.clone();
        reply[0] = 2;
        reply[16..20].copy_from_slice(&[10, 0, 2, 16]);
        reply[242] = DHCPOFFER;
        assert_eq!(
            dhcp_reply_info(&reply),
            Some((DHCPOFFER, Ipv4Addr::new(10, 0, 2, 16), 0xabcd))
        );
    }

    #[test]
    fn phase_names_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::from_name(p.name()), Some(p));
        }
        assert_eq!(
            Phase::parse_list("vlan, syn_flood").expect("valid"),
            vec![Phase::Vlan, Phase::SynFlood]
        );
        assert!(Phase::parse_list("vlan,nope").unwrap_err().contains("nope"));
    }

    #[test]
    fn vlan_tags_go_after_the_macs() {
        let f = eth(BROADCAST, GATEWAY_MAC, ETHERTYPE_ARP, &[1, 2]);
        let g = vlan_tag(&f, 5, true);
        assert_eq!(&g[12..14], &ETHERTYPE_QINQ.to_be_bytes());
        assert_eq!(&g[16..18], &ETHERTYPE_VLAN.to_be_bytes());
        assert_eq!(&g[20..22], &ETHERTYPE_ARP.to_be_bytes());
        assert_eq!(g.len(), f.len() + 8);
    }
}
