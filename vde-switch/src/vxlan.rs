//! `--vxlan REMOTE[:PORT]`, `--vxlan-group ADDR`: a VXLAN uplink (RFC 7348) as one more switch port.
//!
//! warren is a VXLAN tunnel endpoint (VTEP): frames the switch sends to the uplink port are wrapped in
//! an 8-byte VXLAN header (flags 0x08, 24-bit VNI) and sent as UDP datagrams (default port 4789) to
//! the remote VTEP that last sent from the destination MAC, or, for broadcast, multicast and unknown
//! unicast, to every static remote (head-end replication) and to the multicast group. Datagrams
//! received from a configured remote (or on the group) with our VNI are unwrapped and switched like
//! any port's frames, under the same guards (storm control, MAC caps, source guard, DHCP snooping).
//!
//! VXLAN has no authentication: datagrams are accepted only from the addresses of static remotes
//! (any source port: kernel VTEPs send from a per-flow source port), from VTEPs heard on the group, and
//! on the group itself; everything else is dropped and counted (`vxlan_drop_source`). The gateway's
//! MAC is never learned from the uplink.
//!
//! One UDP socket per local bind (`--vxlan-local`, default the wildcard address of each family a
//! remote or the group needs, port 4789); the group gets a socket of its own bound to the group
//! address, so that only datagrams sent to the group arrive there.
//!
//! This file holds the pure parts (header, size math, the learning table, the ICMP "fragmentation
//! needed" reply, the options), fuzzed by `fuzz/fuzz_targets/vxlan.rs`; the sockets, the port and the
//! control-socket commands are the front end `frontend/vxlan.rs`.

use netstack::wire::{ethernet, icmp, ip};
use netstack::Mac;
use rustc_hash::FxHashMap;
use socket2::{Domain, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The IANA port of VXLAN.
pub const DEFAULT_PORT: u16 = 4789;
/// The VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The "I" flag: the VNI is valid (RFC 7348 section 5).
pub const FLAG_VNI: u8 = 0x08;
/// VXLAN-GPE's "P" flag (a next-protocol byte follows); warren carries Ethernet only.
const FLAG_GPE_NEXT: u8 = 0x04;
/// VXLAN-GPE's next-protocol value for Ethernet.
const GPE_ETHERNET: u8 = 0x03;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// Underlay bytes per frame besides the inner IP packet: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner
/// Ethernet (14).
pub const OVERHEAD_V4: u16 = 50;
/// The same over IPv6 (40-byte outer header).
pub const OVERHEAD_V6: u16 = 70;
/// How long a learned MAC stays bound to its VTEP without traffic (as the kernel's `ageing`).
pub const DEFAULT_AGE: Duration = Duration::from_secs(300);
/// Learned MACs at most (the switch's own `--max-macs` bounds the LAN as well).
pub const MAX_LEARNT: usize = 4096;
/// VTEPs heard on the group at most.
pub const MAX_DYNAMIC: usize = 256;

// ---- the header ----

/// Why a datagram is not a VXLAN frame for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than the VXLAN header plus an Ethernet header.
    Truncated,
    /// The I flag is clear (no valid VNI).
    NoVni,
    /// VXLAN-GPE with a payload other than Ethernet.
    NotEthernet,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderError::Truncated => "truncated VXLAN datagram",
            HeaderError::NoVni => "VXLAN header without the VNI flag",
            HeaderError::NotEthernet => "VXLAN-GPE payload is not Ethernet",
        })
    }
}

/// The 8-byte header for `vni` (flags 0x08, reserved bits zero). `vni` is masked to 24 bits.
pub fn header(vni: u32) -> [u8; HEADER_LEN] {
    let v = (vni & MAX_VNI).to_be_bytes();
    [FLAG_VNI, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// Parses a VXLAN datagram (the UDP payload): its VNI and the inner Ethernet frame. Reserved bits are
/// ignored on receipt, as RFC 7348 requires; the inner frame is at least an Ethernet header.
pub fn parse(dgram: &[u8]) -> Result<(u32, &[u8]), HeaderError> {
    if dgram.len() < HEADER_LEN + ethernet::HEADER_LEN {
        return Err(HeaderError::Truncated);
    }
    let flags = dgram[0];
    if flags & FLAG_VNI == 0 {
        return Err(HeaderError::NoVni);
    }
    if flags & FLAG_GPE_NEXT != 0 && dgram[3] != GPE_ETHERNET {
        return Err(HeaderError::NotEthernet);
    }
    let vni = u32::from_be_bytes([0, dgram[4], dgram[5], dgram[6]]);
    Ok((vni, &dgram[HEADER_LEN..]))
}

/// The underlay bytes per frame besides the inner IP packet, by the underlay's family.
pub fn overhead(underlay: IpAddr) -> u16 {
    match underlay {
        IpAddr::V4(_) => OVERHEAD_V4,
        IpAddr::V6(_) => OVERHEAD_V6,
    }
}

/// The largest inner IP MTU an underlay path of `path_mtu` bytes carries (at least 576... as far as
/// the path allows: a path too small for 576 gives what fits, never below 68).
pub fn inner_mtu(path_mtu: u32, underlay: IpAddr) -> u16 {
    let m = path_mtu.saturating_sub(u32::from(overhead(underlay)));
    m.clamp(68, 65520) as u16
}

/// An IPv4-mapped IPv6 address as IPv4 (a dual-stack socket reports IPv4 peers so).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses `ADDR`, `ADDR:PORT`, `[V6]:PORT` or a bare IPv6 address; the port defaults to 4789.
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(SocketAddr::new(canonical(a.ip()), a.port()));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(canonical(ip), DEFAULT_PORT));
    }
    Err(format!(
        "expected ADDR or ADDR:PORT (e.g. 192.0.2.7, 192.0.2.7:4789, [2001:db8::7]:4789), got {s:?}"
    ))
}

// ---- what to do with a frame too big for the underlay ----

/// The fate of a frame to the uplink that is larger than the uplink carries.
#[derive(Debug, PartialEq, Eq)]
pub enum TooBig {
    /// Drop it silently (counted): not IPv4 with DF, or an ICMP error itself.
    Drop,
    /// Drop it and send this ICMP "fragmentation needed" frame back to the sender.
    Reply(Vec<u8>),
}

/// For an IPv4 frame with DF set that is too big for an uplink carrying IP packets of `mtu` bytes: the
/// ICMP "fragmentation needed" (type 3 code 4, RFC 1191) from `gw_ip`/`gw_mac` to its sender, quoting
/// its IP header and 8 bytes. Anything else (IPv6, no DF, ICMP errors, malformed): [`TooBig::Drop`].
pub fn frag_needed(frame: &[u8], mtu: u16, gw_mac: Mac, gw_ip: Ipv4Addr) -> TooBig {
    let Ok(eth) = ethernet::Frame::parse(frame) else {
        return TooBig::Drop;
    };
    if eth.ethertype() != ethernet::ETHERTYPE_IPV4 || ethernet::is_group(&eth.src()) {
        return TooBig::Drop;
    }
    let p = eth.payload();
    if p.len() < 20 || p[0] >> 4 != 4 {
        return TooBig::Drop;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let df = p[6] & 0x40 != 0;
    let frag_off = u16::from_be_bytes([p[6] & 0x1f, p[7]]);
    if ihl < 20 || p.len() < ihl || !df || frag_off != 0 {
        return TooBig::Drop;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    if src.is_unspecified() || src.is_broadcast() || src.is_multicast() || src.is_loopback() {
        return TooBig::Drop;
    }
    // Never an error about an ICMP error (RFC 1122 3.2.2).
    if p[9] == ip::PROTO_ICMP && p.len() > ihl && ![0u8, 8, 13, 14, 15, 16].contains(&p[ihl]) {
        return TooBig::Drop;
    }
    let quote = &p[..(ihl + 8).min(p.len())];
    let hdr = ethernet::HEADER_LEN + 20;
    let mut out = vec![0u8; hdr + icmp::HEADER_LEN + quote.len()];
    ethernet::write_header(&mut out, eth.src(), gw_mac, ethernet::ETHERTYPE_IPV4);
    ip::write_header(
        &mut out[ethernet::HEADER_LEN..],
        IpAddr::V4(gw_ip),
        IpAddr::V4(src),
        ip::PROTO_ICMP,
        icmp::HEADER_LEN + quote.len(),
    );
    out[hdr + icmp::HEADER_LEN..].copy_from_slice(quote);
    let m = mtu.to_be_bytes();
    icmp::write(
        &mut out[hdr..],
        icmp::DEST_UNREACHABLE,
        4,
        [0, 0, m[0], m[1]],
    );
    TooBig::Reply(out)
}

// ---- the learning table ----

#[derive(Clone, Copy, Debug)]
struct Learnt {
    vtep: SocketAddr,
    seen: Instant,
}

/// MAC → remote VTEP, learned from the inner source MACs of received datagrams, with aging and a bound.
#[derive(Debug)]
pub struct VtepTable {
    macs: FxHashMap<Mac, Learnt>,
    max: usize,
    age: Duration,
}

impl VtepTable {
    pub fn new(max: usize, age: Duration) -> Self {
        VtepTable {
            macs: FxHashMap::default(),
            max: max.max(1),
            age,
        }
    }

    /// Records that `mac` lives behind `vtep`. False when the table is full (nothing aged out).
    pub fn learn(&mut self, now: Instant, mac: Mac, vtep: SocketAddr) -> bool {
        if ethernet::is_group(&mac) {
            return false;
        }
        if let Some(e) = self.macs.get_mut(&mac) {
            e.vtep = vtep;
            e.seen = now;
            return true;
        }
        if self.macs.len() >= self.max {
            self.expire(now);
            if self.macs.len() >= self.max {
                return false;
            }
        }
        self.macs.insert(mac, Learnt { vtep, seen: now });
        true
    }

    /// The VTEP behind `mac`, if learned and not aged out.
    pub fn lookup(&self, now: Instant, mac: &Mac) -> Option<SocketAddr> {
        self.macs
            .get(mac)
            .filter(|e| now.saturating_duration_since(e.seen) < self.age)
            .map(|e| e.vtep)
    }

    /// Forgets entries older than the aging time.
    pub fn expire(&mut self, now: Instant) {
        let age = self.age;
        self.macs
            .retain(|_, e| now.saturating_duration_since(e.seen) < age);
    }

    /// Forgets every MAC behind a VTEP at `ip`.
    pub fn forget_vtep(&mut self, ip: IpAddr) {
        self.macs.retain(|_, e| canonical(e.vtep.ip()) != ip);
    }

    /// Live entries: MAC, VTEP, seconds since last heard, sorted by MAC.
    pub fn entries(&self, now: Instant) -> Vec<(Mac, SocketAddr, u64)> {
        let mut v: Vec<_> = self
            .macs
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.seen) < self.age)
            .map(|(m, e)| (*m, e.vtep, now.saturating_duration_since(e.seen).as_secs()))
            .collect();
        v.sort();
        v
    }

    /// The aging time.
    pub fn age(&self) -> Duration {
        self.age
    }

    pub fn len(&self) -> usize {
        self.macs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.macs.is_empty()
    }
}

// ---- options ----

/// The overlay's command-line options (flattened into warren's; see `cli.rs`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct VxlanArgs {
    /// Remote VTEP (repeatable): broadcast, multicast and unknown unicast go to each (port 4789)
    #[arg(long, value_name = "REMOTE[:PORT]", value_parser = parse_endpoint, help_heading = "Overlay (VXLAN, RFC 7348)")]
    pub vxlan: Vec<SocketAddr>,
    /// Multicast group for flood-and-learn (as kernel vxlan's `group`)
    #[arg(long, value_name = "MCAST_ADDR[:PORT]", value_parser = parse_endpoint, help_heading = "Overlay (VXLAN, RFC 7348)")]
    pub vxlan_group: Option<SocketAddr>,
    /// VXLAN network identifier, 0..16777215 (default 1)
    #[arg(long, value_name = "N", value_parser = parse_vni, allow_negative_numbers = true, help_heading = "Overlay (VXLAN, RFC 7348)")]
    pub vxlan_vni: Option<u32>,
    /// Local address to bind (repeatable; default the wildcard of each family needed, port 4789)
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_endpoint, help_heading = "Overlay (VXLAN, RFC 7348)")]
    pub vxlan_local: Vec<SocketAddr>,
    /// A MAC learned behind a remote VTEP is forgotten after this long without traffic (default 300)
    #[arg(long, value_name = "SECS", value_parser = positive_secs, allow_negative_numbers = true, help_heading = "Overlay (VXLAN, RFC 7348)")]
    pub vxlan_age: Option<u64>,
    /// A pure switch: no DHCP, DNS, NAT or ARP answers (another warren on the overlay is the gateway)
    #[arg(long, help_heading = "Overlay (VXLAN, RFC 7348)")]
    pub no_gateway: bool,
    /// DHCP pool (instead of --dhcp-start to the end of the network)
    #[arg(long, value_name = "START-END", value_parser = parse_dhcp_range, help_heading = "Overlay (VXLAN, RFC 7348)")]
    pub dhcp_range: Option<(Ipv4Addr, Ipv4Addr)>,
}

fn parse_vni(v: &str) -> Result<u32, String> {
    v.parse()
        .ok()
        .filter(|n| *n <= MAX_VNI)
        .ok_or_else(|| format!("expected a VNI 0..={MAX_VNI}"))
}

fn positive_secs(v: &str) -> Result<u64, String> {
    v.parse()
        .ok()
        .filter(|&s: &u64| s > 0)
        .ok_or_else(|| "expected seconds > 0".to_string())
}

/// `START-END`, two IPv4 addresses, START <= END.
pub fn parse_dhcp_range(v: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (a, b) = v
        .split_once('-')
        .ok_or_else(|| "expected START-END (e.g. 10.0.2.100-10.0.2.199)".to_string())?;
    let a: Ipv4Addr = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
    let b: Ipv4Addr = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not an IPv4 address"))?;
    if u32::from(a) > u32::from(b) {
        return Err(format!("{a} is above {b}"));
    }
    Ok((a, b))
}

/// The checked overlay options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanOptions {
    pub remotes: Vec<SocketAddr>,
    pub group: Option<SocketAddr>,
    pub vni: u32,
    pub locals: Vec<SocketAddr>,
    pub age: Duration,
    /// `--no-gateway`.
    pub no_gateway: bool,
    /// `--mtu` was given: do not lower the MTU to fit the underlay.
    pub mtu_given: bool,
    /// The largest IP packet the uplink carries (set by [`plan_mtu`]; 0 until then).
    pub uplink_mtu: u16,
}

impl VxlanOptions {
    /// Whether an uplink is configured.
    pub fn active(&self) -> bool {
        !self.remotes.is_empty() || self.group.is_some()
    }
}

/// Checks the overlay options and applies `--dhcp-range` to `config`. `dhcp_start_given`: the
/// command line also had `--dhcp-start` (an error with `--dhcp-range`).
pub fn options(
    a: VxlanArgs,
    config: &mut netstack::config::Config,
    mtu_given: bool,
    dhcp_start_given: bool,
) -> Result<VxlanOptions, String> {
    if let Some((start, end)) = a.dhcp_range {
        if dhcp_start_given {
            return Err("--dhcp-range and --dhcp-start contradict each other".into());
        }
        config.dhcp_start = start;
        config.dhcp_end = Some(end);
        if !config.net.contains(end) {
            return Err(format!(
                "--dhcp-range: {end} is outside {}/{}",
                config.net.addr, config.net.prefix
            ));
        }
    }
    if let Some(g) = a.vxlan_group {
        if !g.ip().is_multicast() {
            return Err(format!("--vxlan-group {}: not a multicast address", g.ip()));
        }
    }
    for r in &a.vxlan {
        let ip = r.ip();
        if ip.is_unspecified() || ip.is_multicast() || r.port() == 0 {
            return Err(format!(
                "--vxlan {r}: a remote VTEP needs a unicast address and a port"
            ));
        }
    }
    let active = !a.vxlan.is_empty() || a.vxlan_group.is_some();
    if !active && (!a.vxlan_local.is_empty() || a.vxlan_vni.is_some() || a.vxlan_age.is_some()) {
        return Err(
            "--vxlan-local, --vxlan-vni and --vxlan-age need --vxlan or --vxlan-group".into(),
        );
    }
    Ok(VxlanOptions {
        remotes: a.vxlan,
        group: a.vxlan_group,
        vni: a.vxlan_vni.unwrap_or(1),
        locals: a.vxlan_local,
        age: a.vxlan_age.map_or(DEFAULT_AGE, Duration::from_secs),
        no_gateway: a.no_gateway,
        mtu_given,
        uplink_mtu: 0,
    })
}

/// The MTU of the underlay route towards `to` (a connected UDP socket's `IP_MTU`; no packet is sent),
/// or 1500 when it cannot be told.
fn path_mtu(to: SocketAddr) -> u32 {
    let probe = || -> io::Result<u32> {
        let s = Socket::new(Domain::for_address(to), Type::DGRAM, None)?;
        s.connect(&SockAddr::from(to))?;
        Ok(match to {
            SocketAddr::V4(_) => rustix::net::sockopt::ip_mtu(&s)?,
            SocketAddr::V6(_) => rustix::net::sockopt::ipv6_mtu(&s)?,
        })
    };
    probe().unwrap_or(1500)
}

/// Works out the largest IP packet the uplink carries (the smallest over the remotes and the group)
/// and, unless `--mtu` was given, lowers the LAN's MTU to it, so that DHCP (option 26) advertises a
/// guest MTU that fits the underlay. Returns a line for the log.
pub fn plan_mtu(config: &mut netstack::config::Config, o: &mut VxlanOptions) -> Option<String> {
    if !o.active() {
        return None;
    }
    let mtu = o
        .remotes
        .iter()
        .chain(o.group.iter())
        .map(|r| inner_mtu(path_mtu(*r), r.ip()))
        .min()
        .unwrap_or(1450);
    o.uplink_mtu = mtu;
    if o.mtu_given {
        if config.mtu > mtu {
            return Some(format!(
                "VXLAN: --mtu {} exceeds what the underlay carries ({mtu}); larger packets to the \
                 uplink are dropped (ICMP fragmentation needed to the sender)",
                config.mtu
            ));
        }
        return None;
    }
    if config.mtu > mtu {
        config.mtu = mtu.max(576);
    }
    Some(format!(
        "VXLAN: guest MTU {} (underlay overhead included)",
        config.mtu
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn header_round_trip() {
        let h = header(0x12_3456);
        assert_eq!(h, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let mut d = h.to_vec();
        d.extend_from_slice(&[0xaa; 14]);
        let (vni, inner) = parse(&d).expect("parses");
        assert_eq!(vni, 0x12_3456);
        assert_eq!(inner, &[0xaa; 14]);
        // Reserved bits are ignored on receipt (RFC 7348).
        d[0] = 0x88;
        d[1] = 0xff;
        d[7] = 0xff;
        assert_eq!(parse(&d).expect("parses").0, 0x12_3456);
        d[0] = 0;
        assert_eq!(parse(&d), Err(HeaderError::NoVni));
        d[0] = 0x0c;
        d[3] = 0x01; // GPE carrying IPv4
        assert_eq!(parse(&d), Err(HeaderError::NotEthernet));
        d[3] = 0x03;
        assert!(parse(&d).is_ok());
        assert_eq!(parse(&d[..21]), Err(HeaderError::Truncated));
        assert_eq!(header(0xffff_ffff)[4..7], [0xff, 0xff, 0xff]);
    }

    #[test]
    fn mtu_math() {
        let v4: IpAddr = Ipv4Addr::LOCALHOST.into();
        let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
        assert_eq!(inner_mtu(1500, v4), 1450);
        assert_eq!(inner_mtu(1500, v6), 1430);
        assert_eq!(inner_mtu(9000, v4), 8950);
        assert_eq!(inner_mtu(10, v4), 68);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("192.0.2.7").expect("ok"),
            "192.0.2.7:4789".parse().expect("addr")
        );
        assert_eq!(
            parse_endpoint("192.0.2.7:8472").expect("ok"),
            "192.0.2.7:8472".parse().expect("addr")
        );
        assert_eq!(
            parse_endpoint("2001:db8::7").expect("ok"),
            "[2001:db8::7]:4789".parse().expect("addr")
        );
        assert_eq!(
            parse_endpoint("[::ffff:192.0.2.7]:5").expect("ok"),
            "192.0.2.7:5".parse().expect("addr")
        );
        assert!(parse_endpoint("host.example").is_err());
        assert_eq!(
            parse_dhcp_range("10.0.2.100-10.0.2.150"),
            Ok((Ipv4Addr::new(10, 0, 2, 100), Ipv4Addr::new(10, 0, 2, 150)))
        );
        assert!(parse_dhcp_range("10.0.2.150-10.0.2.100").is_err());
        assert!(parse_dhcp_range("10.0.2.150").is_err());
    }

    #[test]
    fn command_line() {
        let p = |a: &[&str]| crate::cli::parse(a.iter().map(|s| s.to_string()));
        let o = p(&[
            "--vxlan",
            "192.0.2.7",
            "--vxlan",
            "[2001:db8::7]:8472",
            "--vxlan-vni",
            "42",
            "--vxlan-age",
            "9",
            "--no-gateway",
            "--dhcp-range",
            "10.0.2.100-10.0.2.120",
        ])
        .expect("ok");
        assert_eq!(
            o.vxlan.remotes,
            vec![
                "192.0.2.7:4789".parse::<SocketAddr>().expect("addr"),
                "[2001:db8::7]:8472".parse().expect("addr")
            ]
        );
        assert_eq!(o.vxlan.vni, 42);
        assert_eq!(o.vxlan.age, Duration::from_secs(9));
        assert!(o.vxlan.no_gateway && o.vxlan.active() && !o.vxlan.mtu_given);
        assert_eq!(o.config.dhcp_start, Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(o.config.dhcp_end, Some(Ipv4Addr::new(10, 0, 2, 120)));
        assert_eq!(
            p(&[]).expect("ok").vxlan,
            VxlanOptions {
                vni: 1,
                age: DEFAULT_AGE,
                ..VxlanOptions::default()
            }
        );
        for (bad, what) in [
            (&["--vxlan-vni", "16777216"][..], "--vxlan-vni"),
            (&["--vxlan", "foo"], "--vxlan"),
            (&["--vxlan-group", "192.0.2.1"], "multicast"),
            (&["--vxlan", "0.0.0.0"], "unicast"),
            (&["--vxlan-vni", "5"], "need --vxlan"),
            (
                &["--no-gateway", "--hostfwd", "tcp::2222-:22"],
                "forwards need the gateway",
            ),
            (&["--dhcp-range", "10.0.2.100-10.0.3.1"], "outside"),
            (
                &[
                    "--dhcp-range",
                    "10.0.2.1-10.0.2.9",
                    "--dhcp-start",
                    "10.0.2.3",
                ],
                "contradict",
            ),
        ] {
            let e = p(bad).expect_err(what).to_string();
            assert!(e.contains(what), "{bad:?}: {e}");
        }
    }

    #[test]
    fn mtu_planning() {
        let mut cfg = netstack::config::Config::default();
        let mut o = VxlanOptions {
            remotes: vec!["127.0.0.1:4789".parse().expect("addr")],
            ..VxlanOptions::default()
        };
        // Loopback's route MTU is about 64 KiB: the uplink carries ~65485, the LAN keeps 1500.
        plan_mtu(&mut cfg, &mut o);
        assert_eq!(cfg.mtu, 1500);
        assert!(o.uplink_mtu > 65000, "{}", o.uplink_mtu);
        // --mtu is kept as given.
        let mut cfg = netstack::config::Config {
            mtu: 9000,
            ..Default::default()
        };
        o.mtu_given = true;
        assert!(plan_mtu(&mut cfg, &mut o).is_none());
        assert_eq!(cfg.mtu, 9000);
        o.mtu_given = false;
        plan_mtu(&mut cfg, &mut o);
        assert_eq!(cfg.mtu, 9000, "below the underlay's 65486: unchanged");
        assert!(plan_mtu(&mut cfg, &mut VxlanOptions::default()).is_none());
    }

    #[test]
    fn learning_and_aging() {
        let t0 = Instant::now();
        let mut t = VtepTable::new(2, Duration::from_secs(10));
        let a: SocketAddr = "192.0.2.1:4789".parse().expect("addr");
        let b: SocketAddr = "192.0.2.2:4789".parse().expect("addr");
        assert!(t.learn(t0, [2, 0, 0, 0, 0, 1], a));
        assert!(
            !t.learn(t0, [1, 0, 0, 0, 0, 1], a),
            "group MACs are not learned"
        );
        assert!(t.learn(t0, [2, 0, 0, 0, 0, 2], b));
        assert!(!t.learn(t0, [2, 0, 0, 0, 0, 3], b), "full");
        assert_eq!(t.lookup(t0, &[2, 0, 0, 0, 0, 1]), Some(a));
        // A MAC that moves follows its new VTEP.
        assert!(t.learn(t0, [2, 0, 0, 0, 0, 1], b));
        assert_eq!(t.lookup(t0, &[2, 0, 0, 0, 0, 1]), Some(b));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(t.lookup(later, &[2, 0, 0, 0, 0, 1]), None, "aged out");
        assert!(t.entries(later).is_empty());
        assert!(
            t.learn(later, [2, 0, 0, 0, 0, 3], a),
            "aged entries make room"
        );
        t.forget_vtep(a.ip());
        assert!(t.is_empty());
    }

    fn ipv4_frame(df: bool, proto: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + len];
        ethernet::write_header(
            &mut f,
            [0x52, 0x55, 10, 0, 2, 2],
            [2, 0, 0, 0, 0, 9],
            0x0800,
        );
        ip::write_header(
            &mut f[14..],
            IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 2, 16)),
            proto,
            len - 20,
        );
        if !df {
            f[14 + 6] = 0;
        }
        f
    }

    #[test]
    fn fragmentation_needed() {
        let gw_mac = [0x52, 0x55, 10, 0, 2, 2];
        let gw = Ipv4Addr::new(10, 0, 2, 2);
        let f = ipv4_frame(true, 6, 1500);
        let TooBig::Reply(r) = frag_needed(&f, 1450, gw_mac, gw) else {
            panic!("expected a reply");
        };
        let eth = ethernet::Frame::parse(&r).expect("eth");
        assert_eq!(eth.dst(), [2, 0, 0, 0, 0, 9]);
        assert_eq!(eth.src(), gw_mac);
        let p = ip::IpPacket::parse_v4(eth.payload()).expect("ip");
        assert_eq!(p.src, IpAddr::V4(gw));
        assert_eq!(p.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)));
        let m = icmp::IcmpMessage::parse(p.payload).expect("icmp checksum");
        assert_eq!((m.kind, m.code), (3, 4));
        assert_eq!(m.seq, 1450, "next-hop MTU");
        assert_eq!(m.payload, &f[14..14 + 28]);
        assert_eq!(
            frag_needed(&ipv4_frame(false, 6, 1500), 1450, gw_mac, gw),
            TooBig::Drop
        );
        // An ICMP error is not answered with one; an echo request is.
        let mut e = ipv4_frame(true, 1, 1500);
        e[34] = 3;
        assert_eq!(frag_needed(&e, 1450, gw_mac, gw), TooBig::Drop);
        e[34] = 8;
        assert!(matches!(
            frag_needed(&e, 1450, gw_mac, gw),
            TooBig::Reply(_)
        ));
        assert_eq!(frag_needed(&f[..30], 1450, gw_mac, gw), TooBig::Drop);
    }
}
