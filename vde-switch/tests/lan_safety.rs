//! LAN safety against a running `warren`, with raw clients speaking QEMU's stream framing: storm
//! control and fair queues (a broadcast flood from one client does not starve another's DHCP, ARP,
//! DNS and TCP), the IP source guard (a client claiming another's lease is dropped; the victim still
//! gets its DNS replies), DHCP snooping (server messages from guests are dropped), the per-port MAC
//! cap, and per-port pausing (a client that stops reading does not stall another's download).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BCAST: [u8; 6] = [0xff; 6];
const GW_IP: [u8; 4] = [10, 0, 2, 2];
const DNS_IP: [u8; 4] = [10, 0, 2, 3];
/// How long one exchange (DHCP, ARP, DNS, TCP handshake) may take, under load, on a busy machine.
const EXCHANGE: Duration = Duration::from_secs(5);

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0x77, 0, n]
}

fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "warren-lan-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

// ---------------------------------------------------------------- host-side servers

/// A DNS server on 127.0.0.1 answering every A query with 192.0.2.1.
struct DnsServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    fn start() -> DnsServer {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
        s.set_read_timeout(Some(Duration::from_millis(100))).ok();
        let port = s.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 1500];
            while !st.load(Ordering::SeqCst) {
                let Ok((n, from)) = s.recv_from(&mut b) else {
                    continue;
                };
                if n < 12 {
                    continue;
                }
                let mut r = b[..n].to_vec();
                r[2] = 0x81;
                r[3] = 0x80;
                r[6..8].copy_from_slice(&1u16.to_be_bytes());
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
                let _ = s.send_to(&r, from);
            }
        });
        DnsServer { port, stop }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A TCP server on 127.0.0.1 sending `len` pattern bytes to each client, then closing.
fn download_server(len: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..len).map(pattern).collect();
                let _ = c.write_all(&data);
            });
        }
    });
    port
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

// ---------------------------------------------------------------- warren

struct Warren {
    child: Child,
    dir: PathBuf,
    _dns: DnsServer,
}

impl Warren {
    fn start(tag: &str, extra: &[&str]) -> Warren {
        let dir = scratch_dir(tag);
        let dns = DnsServer::start();
        let child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("--socket")
            .arg(dir.join("stream.sock"))
            .arg("--api")
            .arg(dir.join("api.sock"))
            .args(["--dns-upstream", &format!("127.0.0.1:{}", dns.port), "-vv"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log"))
            .spawn()
            .expect("start warren");
        let w = Warren {
            child,
            dir,
            _dns: dns,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(w.dir.join("stream.sock").exists() && w.dir.join("api.sock").exists()) {
            assert!(
                Instant::now() < deadline,
                "warren did not start: {}",
                w.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        w
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// A new stream client and the switch port warren gave it.
    fn connect(&self, m: [u8; 6]) -> (Client, u32) {
        let before = self.log().matches(" connected (stream").count();
        let s = UnixStream::connect(self.dir.join("stream.sock")).expect("connect");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(" connected (stream"))
                .collect();
            if lines.len() > before {
                let l = lines[before];
                let id = l
                    .split("port ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .expect("port number in the log");
                return (Client::new(s, m), id);
            }
            assert!(Instant::now() < deadline, "no port for the client: {log}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `warren ctl stats` over the API socket.
    fn stats(&self) -> HashMap<String, u64> {
        let mut s = UnixStream::connect(self.dir.join("api.sock")).expect("api");
        s.write_all(b"{\"execute\":\"stats\"}\n")
            .expect("api write");
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.read_to_end(&mut out).expect("api read");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        v["return"]
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect()
    }

    /// The counters warren logged when port `id` closed.
    fn closed_port_counters(&self, id: u32) -> HashMap<String, u64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let prefix = format!("port {id} (");
        loop {
            let log = self.log();
            if let Some(line) = log.lines().rev().find(|l| {
                // A line still being written does not count yet.
                l.contains(&prefix) && l.contains(") closed: ") && l.ends_with('}')
            }) {
                let body = line
                    .split("PortCounters {")
                    .nth(1)
                    .expect("counters in the close line");
                return body
                    .trim_end_matches(['}', ' '])
                    .split(',')
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once(':')?;
                        Some((k.trim().to_string(), v.trim().parse().ok()?))
                    })
                    .collect();
            }
            assert!(Instant::now() < deadline, "port {id} never closed: {log}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------- packets

fn csum(data: &[u8], init: u32) -> u16 {
    let mut sum = init;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp(oper: u16, dst: [u8; 6], sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4];
    p.extend_from_slice(&oper.to_be_bytes());
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa);
    p.extend_from_slice(&tha);
    p.extend_from_slice(&tpa);
    eth(dst, sha, 0x0806, &p)
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = csum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn pseudo(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for c in src.chunks(2).chain(dst.chunks(2)) {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    s + u32::from(proto) + len as u32
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = csum(&u, pseudo(src, dst, 17, u.len()));
    u[6..8].copy_from_slice(&if c == 0 { 0xffff } else { c }.to_be_bytes());
    ipv4(src, dst, 17, &u)
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

#[allow(clippy::too_many_arguments)]
fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[5 << 4, flags]);
    t.extend_from_slice(&window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    let c = csum(&t, pseudo(src, dst, 6, t.len()));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 6, &t)
}

/// A DHCP client message (op 1) or, with `op` 2, a server message.
fn dhcp(op: u8, m: [u8; 6], xid: u32, msg_type: u8, extra: &[(u8, &[u8])]) -> Vec<u8> {
    let mut d = vec![0u8; 240];
    d[0] = op;
    d[1] = 1;
    d[2] = 6;
    d[4..8].copy_from_slice(&xid.to_be_bytes());
    d[10] = 0x80;
    d[28..34].copy_from_slice(&m);
    d[236..240].copy_from_slice(&[99, 130, 83, 99]);
    d.extend_from_slice(&[53, 1, msg_type]);
    for (code, v) in extra {
        d.push(*code);
        d.push(v.len() as u8);
        d.extend_from_slice(v);
    }
    d.push(255);
    d
}

fn dns_query(id: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in ["lan", "test"] {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The parts of a received frame the tests look at.
struct Rx<'a> {
    f: &'a [u8],
}

impl<'a> Rx<'a> {
    fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.f[12], self.f[13]])
    }
    fn ip(&self) -> Option<&'a [u8]> {
        let f: &'a [u8] = self.f;
        (self.ethertype() == 0x0800 && f.len() >= 34).then(|| &f[14..])
    }
    fn l4(&self, proto: u8) -> Option<(&'a [u8], &'a [u8])> {
        let ip = self.ip()?;
        if ip[9] != proto {
            return None;
        }
        let ihl = usize::from(ip[0] & 15) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        Some((ip, ip.get(ihl..total)?))
    }
    fn udp_to(&self, port: u16) -> Option<&'a [u8]> {
        let (_, u) = self.l4(17)?;
        (u.len() >= 8 && u16::from_be_bytes([u[2], u[3]]) == port).then(|| &u[8..])
    }
}

// ---------------------------------------------------------------- a raw client

struct Client {
    s: UnixStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
    mac: [u8; 6],
    ip: [u8; 4],
    gw_mac: [u8; 6],
}

impl Client {
    fn new(s: UnixStream, mac: [u8; 6]) -> Client {
        Client {
            s,
            buf: Vec::new(),
            pos: 0,
            mac,
            ip: [0; 4],
            gw_mac: [0; 6],
        }
    }

    fn send(&mut self, f: &[u8]) {
        let mut b = (f.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(f);
        self.s.write_all(&b).expect("stream send");
    }

    fn send_ip(&mut self, dst_mac: [u8; 6], packet: &[u8]) {
        let f = eth(dst_mac, self.mac, 0x0800, packet);
        self.send(&f);
    }

    /// The next frame for which `want` holds, within `t`. ARP requests for our address are answered
    /// on the way, as a guest would.
    fn recv_until(&mut self, t: Duration, mut want: impl FnMut(&Rx) -> bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + t;
        loop {
            while self.buf.len() - self.pos >= 4 {
                let at = self.pos;
                let n = u32::from_be_bytes(self.buf[at..at + 4].try_into().expect("4")) as usize;
                if self.buf.len() - at < 4 + n {
                    break;
                }
                let f: Vec<u8> = self.buf[at + 4..at + 4 + n].to_vec();
                self.pos += 4 + n;
                if f.len() < 14 {
                    continue;
                }
                let rx = Rx { f: &f };
                if rx.ethertype() == 0x0806
                    && f.len() >= 42
                    && f[20..22] == [0, 1]
                    && f[38..42] == self.ip
                    && self.ip != [0; 4]
                {
                    let (sha, spa) = (mac_of(&f[22..28]), ip_of(&f[28..32]));
                    let r = arp(2, sha, self.mac, self.ip, sha, spa);
                    self.send(&r);
                }
                if want(&rx) {
                    return Some(f);
                }
            }
            self.buf.drain(..self.pos);
            self.pos = 0;
            let left = deadline.checked_duration_since(Instant::now())?;
            self.s
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok();
            let mut b = vec![0u8; 256 << 10];
            match self.s.read(&mut b) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return None
                }
                Err(e) => panic!("stream read: {e}"),
            }
        }
    }

    /// DISCOVER, OFFER, REQUEST, ACK: the client's address.
    fn dhcp(&mut self, w: &Warren) -> [u8; 4] {
        let xid = u32::from_be_bytes([self.mac[2], self.mac[3], self.mac[4], self.mac[5]]);
        let d = dhcp(1, self.mac, xid, 1, &[]);
        self.send_ip(BCAST, &udp([0; 4], [255; 4], 68, 67, &d));
        let offer = self
            .recv_until(EXCHANGE, |r| is_dhcp(r, xid, 2))
            .unwrap_or_else(|| panic!("no DHCP OFFER for {:02x?}: {}", self.mac, w.log()));
        let yiaddr = ip_of(&Rx { f: &offer }.udp_to(68).expect("dhcp")[16..20]);
        let req = dhcp(1, self.mac, xid, 3, &[(50, &yiaddr), (54, &GW_IP)]);
        self.send_ip(BCAST, &udp([0; 4], [255; 4], 68, 67, &req));
        self.recv_until(EXCHANGE, |r| is_dhcp(r, xid, 5))
            .unwrap_or_else(|| panic!("no DHCP ACK for {:02x?}: {}", self.mac, w.log()));
        self.ip = yiaddr;
        yiaddr
    }

    /// ARP for the gateway: its MAC.
    fn arp_gateway(&mut self, w: &Warren) -> [u8; 6] {
        let (m, ip) = (self.mac, self.ip);
        self.send(&arp(1, BCAST, m, ip, [0; 6], GW_IP));
        let r = self
            .recv_until(EXCHANGE, |r| {
                r.ethertype() == 0x0806
                    && r.f.len() >= 42
                    && r.f[20..22] == [0, 2]
                    && r.f[28..32] == GW_IP
                    && r.f[0..6] == m
            })
            .unwrap_or_else(|| panic!("no ARP reply from the gateway to {m:02x?}: {}", w.log()));
        self.gw_mac = mac_of(&r[22..28]);
        self.gw_mac
    }

    /// A DNS query through 10.0.2.3 from `src_ip`; true if the answer arrived.
    fn dns(&mut self, src_ip: [u8; 4], id: u16, t: Duration) -> bool {
        let q = dns_query(id);
        let gw = self.gw_mac;
        self.send_ip(gw, &udp(src_ip, DNS_IP, 40000 + id, 53, &q));
        self.recv_until(t, |r| {
            r.udp_to(40000 + id)
                .is_some_and(|p| p.len() >= 12 && p[..2] == id.to_be_bytes() && p[3] & 15 == 0)
        })
        .is_some()
    }

    /// A TCP connection to 10.0.2.2:`port` (the host's loopback): reads `len` bytes, checking them;
    /// after `hook_at` bytes, runs `hook` (not reading meanwhile). Returns the bytes received.
    fn download(&mut self, port: u16, len: usize, hook_at: usize, hook: &mut dyn FnMut()) -> usize {
        let (ip, gw) = (self.ip, self.gw_mac);
        let sport = 50000 + u16::from(self.mac[5]);
        let iss = 1000u32;
        self.send_ip(gw, &tcp(ip, GW_IP, sport, port, iss, 0, SYN, 65535));
        let Some(sa) = self.recv_until(EXCHANGE, |r| {
            r.l4(6).is_some_and(|(_, t)| {
                t.len() >= 20
                    && u16::from_be_bytes([t[2], t[3]]) == sport
                    && t[13] & (SYN | ACK) == SYN | ACK
            })
        }) else {
            return 0;
        };
        let t = Rx { f: &sa }.l4(6).expect("tcp").1.to_vec();
        let mut rcv_nxt = u32::from_be_bytes([t[4], t[5], t[6], t[7]]).wrapping_add(1);
        let snd = iss.wrapping_add(1);
        self.send_ip(gw, &tcp(ip, GW_IP, sport, port, snd, rcv_nxt, ACK, 65535));
        let mut got = 0usize;
        let mut hooked = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        while got < len && Instant::now() < deadline {
            if !hooked && got >= hook_at {
                hooked = true;
                hook();
            }
            let seg = self.recv_until(Duration::from_secs(2), |r| {
                r.l4(6).is_some_and(|(_, t)| {
                    t.len() >= 20 && u16::from_be_bytes([t[2], t[3]]) == sport
                })
            });
            let Some(seg) = seg else {
                // Nothing for a while: repeat the ACK (the gateway retransmits on its own too).
                self.send_ip(gw, &tcp(ip, GW_IP, sport, port, snd, rcv_nxt, ACK, 65535));
                continue;
            };
            let t = Rx { f: &seg }.l4(6).expect("tcp").1;
            if t[13] & RST != 0 {
                break;
            }
            let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            let data = &t[usize::from(t[12] >> 4) * 4..];
            if seq == rcv_nxt && !data.is_empty() {
                for (i, b) in data.iter().enumerate() {
                    assert_eq!(*b, pattern(got + i), "byte {} corrupted", got + i);
                }
                got += data.len();
                rcv_nxt = rcv_nxt.wrapping_add(data.len() as u32);
            }
            if t[13] & FIN != 0 && seq.wrapping_add(data.len() as u32) == rcv_nxt {
                rcv_nxt = rcv_nxt.wrapping_add(1);
                self.send_ip(
                    gw,
                    &tcp(ip, GW_IP, sport, port, snd, rcv_nxt, ACK | FIN, 65535),
                );
                break;
            }
            self.send_ip(gw, &tcp(ip, GW_IP, sport, port, snd, rcv_nxt, ACK, 65535));
        }
        got
    }
}

fn is_dhcp(r: &Rx, xid: u32, msg_type: u8) -> bool {
    r.udp_to(68).is_some_and(|d| {
        d.len() > 240
            && d[0] == 2
            && d[4..8] == xid.to_be_bytes()
            && dhcp_type(&d[240..]) == Some(msg_type)
    })
}

/// Option 53 in a DHCP option list.
fn dhcp_type(mut o: &[u8]) -> Option<u8> {
    loop {
        match *o.first()? {
            255 => return None,
            0 => o = &o[1..],
            code => {
                let len = usize::from(*o.get(1)?);
                if code == 53 && len == 1 {
                    return o.get(2).copied();
                }
                o = o.get(2 + len..)?;
            }
        }
    }
}

fn mac_of(b: &[u8]) -> [u8; 6] {
    b.try_into().expect("6 bytes")
}

fn ip_of(b: &[u8]) -> [u8; 4] {
    b.try_into().expect("4 bytes")
}

/// A client that floods broadcast ARP requests (who has 10.0.2.2) at full speed from its own
/// thread, and never reads. Returns the frames it managed to send when stopped.
struct Flooder {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    /// The flooder's socket, to unblock its writer when stopping.
    sock: UnixStream,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flooder {
    fn start(mut c: Client, spa: [u8; 4]) -> Flooder {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (st, se) = (stop.clone(), sent.clone());
        let sock = c.s.try_clone().expect("clone the flooder's socket");
        let thread = std::thread::spawn(move || {
            let f = arp(1, BCAST, c.mac, spa, [0; 6], GW_IP);
            let mut batch = Vec::new();
            for _ in 0..256 {
                batch.extend_from_slice(&(f.len() as u32).to_be_bytes());
                batch.extend_from_slice(&f);
            }
            // Blocking writes, as fast as warren reads, until stopped (the socket is shut down).
            while !st.load(Ordering::SeqCst) && c.s.write_all(&batch).is_ok() {
                se.fetch_add(256, Ordering::Relaxed);
            }
        });
        Flooder {
            stop,
            sent,
            sock,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The victim's checks while a flood runs: DHCP, ARP for the gateway, DNS, and a TCP download with
/// every byte checked, each within normal time.
fn victim_checks(w: &Warren, v: &mut Client, http: u16) {
    let t0 = Instant::now();
    let ip = v.dhcp(w);
    v.arp_gateway(w);
    for id in 1..=5 {
        assert!(
            v.dns(ip, id, EXCHANGE),
            "DNS query {id} got no answer: {}",
            w.log()
        );
    }
    let got = v.download(http, 256 << 10, usize::MAX, &mut || {});
    assert_eq!(got, 256 << 10, "download cut short: {}", w.log());
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "the victim's exchange took {:?}",
        t0.elapsed()
    );
}

#[test]
fn a_broadcast_flood_does_not_starve_another_client() {
    let w = Warren::start("storm", &[]);
    let http = download_server(256 << 10);
    let (flooder, flooder_port) = w.connect(mac(1));
    let mut flood = Flooder::start(flooder, [10, 0, 2, 60]);
    // Let the flood get going, then run the victim's checks through it.
    std::thread::sleep(Duration::from_millis(300));
    let (mut v, victim_port) = w.connect(mac(2));
    victim_checks(&w, &mut v, http);
    let stats = w.stats();
    let sent = flood.stop();
    assert!(
        sent > 10_000,
        "the flood was too weak to mean anything: {sent}"
    );
    assert!(
        stats["port_drop_storm"] > 1000,
        "storm control dropped little of {sent} frames: {stats:?}"
    );
    drop(v);
    let c = w.closed_port_counters(victim_port);
    for k in [
        "drop_tx_full",
        "drop_peer_full",
        "drop_storm",
        "drop_spoofed",
    ] {
        assert_eq!(
            c[k],
            0,
            "victim port {victim_port}: {k} in {c:?}\n{}",
            w.log()
        );
    }
    let f = w.closed_port_counters(flooder_port);
    assert!(f["drop_storm"] > 1000, "flooder port: {f:?}");
}

#[test]
fn without_storm_control_the_flood_share_keeps_room_for_unicast() {
    // No rate limit: the whole flood reaches the victim's port, but only up to the flood share of
    // its queue; the gateway's unicast replies to the victim always fit.
    let w = Warren::start("share", &["--bcast-rate", "0"]);
    let http = download_server(256 << 10);
    let (flooder, _) = w.connect(mac(3));
    let mut flood = Flooder::start(flooder, [10, 0, 2, 61]);
    std::thread::sleep(Duration::from_millis(300));
    let (mut v, victim_port) = w.connect(mac(4));
    // A victim that is slow to read: the flood piles up in its queue until it reaches the share.
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.stats()["port_drop_flood_full"] == 0 {
        assert!(
            Instant::now() < deadline,
            "the flood never filled the share"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    victim_checks(&w, &mut v, http);
    let sent = flood.stop();
    assert!(
        sent > 10_000,
        "the flood was too weak to mean anything: {sent}"
    );
    drop(v);
    let c = w.closed_port_counters(victim_port);
    assert!(
        c["drop_flood_full"] > 0,
        "the flood never reached the share ({sent} frames sent): {c:?}"
    );
    assert_eq!(c["drop_tx_full"], 0, "victim's unicast dropped: {c:?}");
    assert_eq!(c["drop_peer_full"], 0, "victim's unicast dropped: {c:?}");
}

#[test]
fn a_client_claiming_anothers_lease_is_dropped() {
    let w = Warren::start("spoof", &["--guestfwd", "tcp:10.0.2.100:8080-127.0.0.1:9"]);
    let (mut victim, _) = w.connect(mac(10));
    let (mut attacker, attacker_port) = w.connect(mac(11));
    let (mut observer, _) = w.connect(mac(12));
    let vip = victim.dhcp(&w);
    victim.arp_gateway(&w);
    // The attacker (no lease) learns the gateway's MAC with an address nobody holds.
    attacker.ip = [10, 0, 2, 77];
    let gw = attacker.arp_gateway(&w);
    assert!(attacker.dns([10, 0, 2, 77], 1, EXCHANGE), "{}", w.log());
    // Whatever the observer got so far (the attacker's ARP broadcast) does not count.
    let _ = observer.recv_until(Duration::from_millis(300), |_| false);
    let before = w.stats()["port_drop_spoofed"];
    // Gratuitous ARP, an ARP reply to the gateway and an ARP reply to the observer, all claiming
    // the victim's address; then IPv4 (a DNS query) from it.
    attacker.send(&arp(1, BCAST, mac(11), vip, [0; 6], vip));
    attacker.send(&arp(2, gw, mac(11), vip, gw, GW_IP));
    attacker.send(&arp(2, mac(12), mac(11), vip, mac(12), [10, 0, 2, 99]));
    // The same reply inside an 802.1Q tag.
    let mut tagged = arp(2, mac(12), mac(11), vip, mac(12), [10, 0, 2, 99]);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    attacker.send(&tagged);
    // And a guestfwd service's address, which belongs to the gateway.
    attacker.send(&arp(
        1,
        BCAST,
        mac(11),
        [10, 0, 2, 100],
        [0; 6],
        [10, 0, 2, 100],
    ));
    assert!(
        !attacker.dns(vip, 2, Duration::from_millis(800)),
        "the attacker got an answer for the victim's address: {}",
        w.log()
    );
    // Nothing of it reached the observer (only the victim's and gateway's own traffic could).
    let leaked = observer.recv_until(Duration::from_millis(300), |r| r.f[6..12] == mac(11));
    assert!(leaked.is_none(), "a spoofed frame reached a neighbour");
    // The victim still gets its DNS answers, and the gateway still knows where it is.
    for id in 3..=5 {
        assert!(
            victim.dns(vip, id, EXCHANGE),
            "victim lost DNS: {}",
            w.log()
        );
    }
    let after = w.stats()["port_drop_spoofed"];
    assert!(
        after >= before + 6,
        "spoofed frames not counted: {before} -> {after}"
    );
    // The address the attacker uses without a lease is now bound to it: another client without a
    // lease cannot take it over, but may use a free one.
    observer.gw_mac = gw;
    assert!(!observer.dns([10, 0, 2, 77], 6, Duration::from_millis(800)));
    observer.ip = [10, 0, 2, 78];
    assert!(observer.dns([10, 0, 2, 78], 7, EXCHANGE), "{}", w.log());
    drop(attacker);
    let c = w.closed_port_counters(attacker_port);
    assert!(c["drop_spoofed"] >= 6, "{c:?}");
}

#[test]
fn dhcp_server_messages_from_clients_are_dropped() {
    let w = Warren::start("rogue-dhcp", &[]);
    let (mut rogue, rogue_port) = w.connect(mac(20));
    let (mut other, _) = w.connect(mac(21));
    // A broadcast OFFER and a unicast ACK, as a rogue DHCP server would send them.
    let offer = dhcp(2, mac(21), 0x1234, 2, &[(54, &[10, 0, 2, 66])]);
    rogue.send_ip(BCAST, &udp([10, 0, 2, 66], [255; 4], 67, 68, &offer));
    let ack = dhcp(2, mac(21), 0x1234, 5, &[(54, &[10, 0, 2, 66])]);
    rogue.send_ip(mac(21), &udp([10, 0, 2, 66], [10, 0, 2, 40], 67, 68, &ack));
    let got = other.recv_until(Duration::from_millis(500), |r| r.udp_to(68).is_some());
    assert!(got.is_none(), "a rogue DHCP message reached a client");
    // The real server still serves the other client.
    other.dhcp(&w);
    drop(rogue);
    let c = w.closed_port_counters(rogue_port);
    assert_eq!(c["drop_dhcp_server"], 2, "{c:?}");
}

#[test]
fn one_port_may_not_carry_many_macs() {
    let w = Warren::start("macs", &["--max-macs-per-port", "4"]);
    let (mut many, many_port) = w.connect(mac(30));
    let (mut other, _) = w.connect(mac(31));
    for n in 0..10u8 {
        let m = [0x52, 0x54, 0, 0x78, 0, n];
        many.send(&eth(BCAST, m, 0x88b5, &[n; 50]));
    }
    let mut seen = Vec::new();
    while let Some(f) = other.recv_until(Duration::from_millis(500), |r| r.ethertype() == 0x88b5) {
        seen.push(f[19]);
    }
    assert_eq!(seen, vec![0, 1, 2, 3], "{}", w.log());
    // Its first MACs keep working; another port is unaffected.
    many.send(&eth(BCAST, [0x52, 0x54, 0, 0x78, 0, 1], 0x88b5, &[1; 50]));
    assert!(other
        .recv_until(Duration::from_secs(2), |r| r.ethertype() == 0x88b5)
        .is_some());
    let (mut third, _) = w.connect(mac(32));
    other.send(&eth(BCAST, mac(31), 0x88b5, &[9; 50]));
    assert!(third
        .recv_until(Duration::from_secs(2), |r| r.ethertype() == 0x88b5)
        .is_some());
    assert_eq!(w.stats()["port_drop_mac_limit"], 6);
    drop(many);
    let c = w.closed_port_counters(many_port);
    assert_eq!(c["drop_mac_limit"], 6, "{c:?}");
}

/// How many 1400-byte frames fill a stream port's socket (warren asks for a 4 MiB send buffer; the
/// kernel caps it at `net.core.wmem_max` and doubles it) and then `queued` bytes of its queue.
fn frames_to_queue(queued: usize) -> usize {
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4 << 20);
    (2 * wmem_max.min(4 << 20) + queued) / 1400
}

/// `p` sends `n` unicast frames of 1400 bytes to `to`.
fn push_unicast(p: &mut Client, to: [u8; 6], n: usize) {
    let f = eth(to, p.mac, 0x88b5, &[0x5a; 1386]);
    let mut batch = Vec::new();
    for _ in 0..n {
        batch.extend_from_slice(&(f.len() as u32).to_be_bytes());
        batch.extend_from_slice(&f);
    }
    p.s.write_all(&batch).expect("push");
}

#[test]
fn a_client_that_stops_reading_does_not_stall_another_download() {
    let w = Warren::start("stall", &[]);
    const LEN: usize = 4 << 20;
    let http = download_server(LEN);
    // A client that never reads, whose port a neighbour fills: it stays congested for good.
    let (mut stalled, stalled_port) = w.connect(mac(40));
    stalled.send(&eth(BCAST, mac(40), 0x88b5, b"here"));
    let (mut pusher, _) = w.connect(mac(42));
    std::thread::sleep(Duration::from_millis(200));
    push_unicast(&mut pusher, mac(40), frames_to_queue(6 << 20));
    // Another client downloads through the gateway. Midway it stops reading while the neighbour
    // fills its port too, so the gateway pauses the download on congestion; once it reads again
    // the download must resume although the never-reading port is still congested.
    let (mut v, _) = w.connect(mac(41));
    v.dhcp(&w);
    v.arp_gateway(&w);
    let t0 = Instant::now();
    let got = v.download(http, LEN, 256 << 10, &mut || {
        push_unicast(&mut pusher, mac(41), frames_to_queue(5 << 19));
        std::thread::sleep(Duration::from_millis(1000));
    });
    assert_eq!(got, LEN, "download stalled after {got} bytes: {}", w.log());
    assert!(t0.elapsed() < Duration::from_secs(60));
    let stats = w.stats();
    assert!(
        stats["tcp_link_paused"] > 0,
        "the download never paused: {stats:?}"
    );
    drop(stalled);
    // The neighbour's unicast filled only its share of the stalled port's queue.
    let c = w.closed_port_counters(stalled_port);
    assert!(c["drop_peer_full"] > 0, "{c:?}");
}

// ---------------------------------------------------------------- IPv6 (appended)

/// An IPv6 frame (hop limit 255) carrying `payload` of protocol `next`; checksums are not filled in
/// (the switch does not look at them).
fn ipv6_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    next: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 255]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    eth(dst_mac, src_mac, 0x86dd, &p)
}

/// A neighbour advertisement (override) for `target`.
fn na(target: std::net::Ipv6Addr) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m
}

#[test]
fn ipv6_claims_of_the_router_dns_or_another_guest_and_rogue_servers_are_dropped() {
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().expect("addr");
    let all_nodes = [0x33, 0x33, 0, 0, 0, 1];
    let w = Warren::start("spoof6", &[]);
    let (mut victim, _) = w.connect(mac(40));
    let (mut attacker, attacker_port) = w.connect(mac(41));
    let (mut observer, _) = w.connect(mac(42));
    let (vip, aip) = (v6("fec0::40"), v6("fec0::41"));
    // The victim announces its address first (it is bound to the victim's MAC): the observer
    // sees it.
    victim.send(&ipv6_frame(
        all_nodes,
        mac(40),
        vip,
        v6("ff02::1"),
        58,
        &na(vip),
    ));
    assert!(
        observer
            .recv_until(EXCHANGE, |r| r.ethertype() == 0x86dd
                && r.f[6..12] == mac(40))
            .is_some(),
        "the victim's own NA did not reach a neighbour: {}",
        w.log()
    );
    // The attacker's own address is fine too.
    attacker.send(&ipv6_frame(
        all_nodes,
        mac(41),
        aip,
        v6("ff02::1"),
        58,
        &na(aip),
    ));
    assert!(observer
        .recv_until(EXCHANGE, |r| r.ethertype() == 0x86dd
            && r.f[6..12] == mac(41))
        .is_some());
    // NAs for the router's address, the DNS address and the victim's; traffic from the router's
    // link-local address and from the victim's address; an RA behind a Hop-by-Hop header; a
    // DHCPv6 Advertise.
    let ll_router = v6("fe80::2");
    let echo = [128u8, 0, 0, 0, 0, 1, 0, 1];
    let mut hbh_ra = vec![58u8, 0, 1, 4, 0, 0, 0, 0];
    hbh_ra.extend_from_slice(&[134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let advertise = [2u8, 35, 2, 34, 0, 12, 0, 0, 2, 0, 0, 1];
    let frames = [
        ipv6_frame(
            all_nodes,
            mac(41),
            aip,
            v6("ff02::1"),
            58,
            &na(v6("fec0::2")),
        ),
        ipv6_frame(
            all_nodes,
            mac(41),
            aip,
            v6("ff02::1"),
            58,
            &na(v6("fec0::3")),
        ),
        ipv6_frame(all_nodes, mac(41), aip, v6("ff02::1"), 58, &na(vip)),
        ipv6_frame(mac(42), mac(41), vip, v6("fec0::42"), 58, &echo),
        ipv6_frame(mac(42), mac(41), v6("fec0::3"), v6("fec0::42"), 58, &echo),
        ipv6_frame(all_nodes, mac(41), ll_router, v6("ff02::1"), 0, &hbh_ra),
        ipv6_frame(
            mac(42),
            mac(41),
            v6("fe80::41"),
            v6("fe80::42"),
            17,
            &advertise,
        ),
    ];
    for f in &frames {
        attacker.send(f);
    }
    let leaked = observer.recv_until(Duration::from_millis(800), |r| r.f[6..12] == mac(41));
    assert!(
        leaked.is_none(),
        "a spoofed IPv6 frame reached a neighbour: {leaked:02x?}"
    );
    drop(attacker);
    let c = w.closed_port_counters(attacker_port);
    // The router's link-local address is the gateway's own (fe80::2 is not: the RA is dropped as
    // an RA).
    assert_eq!(c["drop_spoofed"], 5, "{c:?}");
    assert_eq!(c["drop_rogue_ra"], 1, "{c:?}");
    assert_eq!(c["drop_dhcp_server"], 1, "{c:?}");
}
