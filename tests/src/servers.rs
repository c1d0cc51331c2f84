//! Small host-side servers on 127.0.0.1 (ephemeral ports), each served by
//! background threads, for guests to reach through the gateway 10.0.2.2.
//!
//! They never connect anywhere themselves. Threads are detached; servers live
//! until the test process exits (their listening sockets are tiny).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sha256_hex;

/// Deterministic pseudo-random bytes (xorshift64*), reproducible from `seed`.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    l.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------- HTTP

/// An HTTP/1.0-style GET server for a fixed set of files.
pub struct HttpServer {
    pub port: u16,
    files: Arc<BTreeMap<String, Vec<u8>>>,
    served: Arc<Mutex<Vec<(String, u16)>>>,
}

impl HttpServer {
    /// Serves `files` (URL path such as `/small.txt` -> content).
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> HttpServer {
        Self::start_on(files, std::net::IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Like [`HttpServer::start`] on loopback address `ip` (`::1` for IPv6 tests).
    pub fn start_on(files: BTreeMap<String, Vec<u8>>, ip: std::net::IpAddr) -> HttpServer {
        let l = TcpListener::bind((ip, 0)).expect("bind loopback listener");
        let port = l.local_addr().expect("local addr").port();
        let files = Arc::new(files);
        let served = Arc::new(Mutex::new(Vec::new()));
        let (f, s) = (files.clone(), served.clone());
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (f, s) = (f.clone(), s.clone());
                std::thread::spawn(move || {
                    let _ = serve_http(conn, &f, &s);
                });
            }
        });
        HttpServer {
            port,
            files,
            served,
        }
    }

    /// SHA-256 (hex) of the file served at `path`.
    pub fn sha256(&self, path: &str) -> String {
        sha256_hex(
            self.files
                .get(path)
                .expect("no such file on the HTTP server"),
        )
    }

    /// Requests answered so far: (path, status).
    pub fn served(&self) -> Vec<(String, u16)> {
        self.served.lock().expect("lock").clone()
    }
}

fn serve_http(
    conn: TcpStream,
    files: &BTreeMap<String, Vec<u8>>,
    served: &Mutex<Vec<(String, u16)>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    r.read_line(&mut request_line)?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut w = conn;
    let status = match (method, files.get(path)) {
        ("GET", Some(body)) => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            w.write_all(body)?;
            200
        }
        _ => {
            w.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            404
        }
    };
    w.flush()?;
    served.lock().expect("lock").push((path.to_owned(), status));
    Ok(())
}

// ---------------------------------------------------------------- upload

/// What one connection to the [`UploadSink`] delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub bytes: u64,
    pub sha256: String,
}

/// Accepts TCP connections, hashes everything received until EOF, records
/// it, replies `<sha256> <bytes>\n` and closes.
pub struct UploadSink {
    pub port: u16,
    uploads: Arc<Mutex<Vec<Upload>>>,
}

impl UploadSink {
    pub fn start() -> UploadSink {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Like [`UploadSink::start`] on loopback address `ip` (`::1` for IPv6 tests).
    pub fn start_on(ip: IpAddr) -> UploadSink {
        use sha2::{Digest, Sha256};
        let l = TcpListener::bind((ip, 0)).expect("bind loopback listener");
        let port = l.local_addr().expect("local addr").port();
        let uploads = Arc::new(Mutex::new(Vec::new()));
        let u = uploads.clone();
        std::thread::spawn(move || {
            for mut conn in l.incoming().flatten() {
                let u = u.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
                    let mut h = Sha256::new();
                    let mut bytes = 0u64;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                h.update(&buf[..n]);
                                bytes += n as u64;
                            }
                            // A reset or timeout: record nothing, the test
                            // will see no complete upload.
                            Err(_) => return,
                        }
                    }
                    let up = Upload {
                        bytes,
                        sha256: crate::hex(&h.finalize()),
                    };
                    let _ = writeln!(conn, "{} {}", up.sha256, up.bytes);
                    u.lock().expect("lock").push(up);
                });
            }
        });
        UploadSink { port, uploads }
    }

    /// Completed uploads (connections that reached EOF), in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.uploads.lock().expect("lock").clone()
    }
}

// ---------------------------------------------------------------- UDP

/// A read-only TFTP server (RFC 1350, octet mode, 512-byte blocks) for
/// busybox `tftp -g`: a UDP request/response exchange with one round trip
/// per block. Replies come from the server's own port (busybox accepts that),
/// so it behaves like an echo-style UDP service behind NAT.
pub struct TftpServer {
    pub port: u16,
    files: Arc<BTreeMap<String, Vec<u8>>>,
    completed: Arc<Mutex<Vec<String>>>,
}

impl TftpServer {
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> TftpServer {
        Self::start_on(files, std::net::IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Like [`TftpServer::start`] on loopback address `ip` (`::1` for IPv6 tests).
    pub fn start_on(files: BTreeMap<String, Vec<u8>>, ip: std::net::IpAddr) -> TftpServer {
        let s = UdpSocket::bind((ip, 0)).expect("bind udp loopback");
        let port = s.local_addr().expect("local addr").port();
        let files = Arc::new(files);
        let completed = Arc::new(Mutex::new(Vec::new()));
        let (f, c) = (files.clone(), completed.clone());
        std::thread::spawn(move || tftp_loop(s, &f, &c));
        TftpServer {
            port,
            files,
            completed,
        }
    }

    pub fn sha256(&self, name: &str) -> String {
        sha256_hex(
            self.files
                .get(name)
                .expect("no such file on the TFTP server"),
        )
    }

    /// Names of files whose transfer was acknowledged to the end.
    pub fn completed(&self) -> Vec<String> {
        self.completed.lock().expect("lock").clone()
    }
}

fn tftp_loop(s: UdpSocket, files: &BTreeMap<String, Vec<u8>>, completed: &Mutex<Vec<String>>) {
    struct Transfer {
        name: String,
        data: Vec<u8>,
        block: u16,
    }
    fn data_packet(t: &Transfer) -> Vec<u8> {
        let start = (usize::from(t.block) - 1) * 512;
        let end = (start + 512).min(t.data.len());
        let mut p = vec![0, 3];
        p.extend_from_slice(&t.block.to_be_bytes());
        p.extend_from_slice(&t.data[start.min(end)..end]);
        p
    }
    let mut transfers: BTreeMap<SocketAddr, Transfer> = BTreeMap::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = s.recv_from(&mut buf) {
        let p = &buf[..n];
        if n < 4 {
            continue;
        }
        match u16::from_be_bytes([p[0], p[1]]) {
            1 => {
                // RRQ: filename \0 mode \0 [options]
                let name = p[2..].split(|&b| b == 0).next().unwrap_or(&[]);
                let name = String::from_utf8_lossy(name).into_owned();
                match files.get(&name) {
                    Some(data) => {
                        let t = Transfer {
                            name,
                            data: data.clone(),
                            block: 1,
                        };
                        let _ = s.send_to(&data_packet(&t), from);
                        transfers.insert(from, t);
                    }
                    None => {
                        let mut e = vec![0, 5, 0, 1];
                        e.extend_from_slice(b"File not found\0");
                        let _ = s.send_to(&e, from);
                    }
                }
            }
            4 => {
                let acked = u16::from_be_bytes([p[2], p[3]]);
                let Some(t) = transfers.get_mut(&from) else {
                    continue;
                };
                if acked != t.block {
                    // Duplicate/old ACK: resend the current block.
                    let _ = s.send_to(&data_packet(t), from);
                    continue;
                }
                if usize::from(t.block) * 512 > t.data.len() {
                    // The last (short) block was acknowledged.
                    if let Some(t) = transfers.remove(&from) {
                        completed.lock().expect("lock").push(t.name);
                    }
                    continue;
                }
                t.block = t.block.wrapping_add(1);
                let _ = s.send_to(&data_packet(t), from);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- DNS

/// A tiny authoritative DNS server on 127.0.0.1 or `::1` (UDP and TCP, same
/// port) answering A and AAAA queries for fixed names; other types (and a type
/// the name has no address of) get an empty NOERROR answer for known names,
/// NXDOMAIN for unknown ones.
pub struct DnsServer {
    pub port: u16,
    ip: IpAddr,
    queries: Arc<Mutex<Vec<DnsQuery>>>,
}

/// One query the [`DnsServer`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery {
    pub name: String,
    pub qtype: u16,
    pub tcp: bool,
}

impl DnsServer {
    /// `records`: lower-case name without trailing dot -> address.
    pub fn start(records: BTreeMap<String, Ipv4Addr>) -> DnsServer {
        Self::start_at(Ipv4Addr::LOCALHOST, 0, records)
    }

    /// Like [`DnsServer::start`] on `ip:port` (port 0: any free port), e.g. `127.0.0.77:53` for
    /// clients that cannot be told a port.
    pub fn start_at(ip: Ipv4Addr, port: u16, records: BTreeMap<String, Ipv4Addr>) -> DnsServer {
        let records = records
            .into_iter()
            .map(|(name, a)| (name, vec![IpAddr::V4(a)]))
            .collect();
        Self::start_with(IpAddr::V4(ip), port, records)
    }

    /// Like [`DnsServer::start_at`] on any loopback address (`::1` for an IPv6 upstream), with
    /// any number of IPv4 (A) and IPv6 (AAAA) addresses per name.
    pub fn start_with(ip: IpAddr, port: u16, records: BTreeMap<String, Vec<IpAddr>>) -> DnsServer {
        // Bind UDP first, then TCP on the same port (retry if taken).
        let (udp, tcp, port) = (0..20)
            .find_map(|_| {
                let u = UdpSocket::bind((ip, port)).ok()?;
                let port = u.local_addr().ok()?.port();
                let t = TcpListener::bind((ip, port)).ok()?;
                Some((u, t, port))
            })
            .expect("could not bind UDP and TCP DNS sockets on one port");
        let records = Arc::new(records);
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (r, q) = (records.clone(), queries.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                if let Some((reply, query)) = dns_answer(&buf[..n], &r, false) {
                    q.lock().expect("lock").push(query);
                    let _ = udp.send_to(&reply, from);
                }
            }
        });
        let (r, q) = (records, queries.clone());
        std::thread::spawn(move || {
            for mut conn in tcp.incoming().flatten() {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                // One or more length-prefixed messages per connection.
                loop {
                    let mut len = [0u8; 2];
                    if conn.read_exact(&mut len).is_err() {
                        break;
                    }
                    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut msg).is_err() {
                        break;
                    }
                    let Some((reply, query)) = dns_answer(&msg, &r, true) else {
                        break;
                    };
                    q.lock().expect("lock").push(query);
                    let mut out = u16::try_from(reply.len())
                        .expect("small reply")
                        .to_be_bytes()
                        .to_vec();
                    out.extend_from_slice(&reply);
                    if conn.write_all(&out).is_err() {
                        break;
                    }
                }
            }
        });
        DnsServer { port, ip, queries }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// Queries answered so far.
    pub fn queries(&self) -> Vec<DnsQuery> {
        self.queries.lock().expect("lock").clone()
    }
}

/// Builds the reply to one DNS query message; `None` if it is not a
/// well-formed single-question query.
fn dns_answer(
    msg: &[u8],
    records: &BTreeMap<String, Vec<IpAddr>>,
    tcp: bool,
) -> Option<(Vec<u8>, DnsQuery)> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // no compression in questions
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    let question_end = i + 4;
    msg.get(..question_end)?;
    let name = labels.join(".");
    let addrs = records.get(&name);

    let mut reply = Vec::with_capacity(question_end + 16);
    reply.extend_from_slice(&msg[0..2]); // id
    let rd = msg[2] & 0x01;
    reply.push(0x84 | rd); // QR, AA, RD copied
    let rcode = if addrs.is_some() { 0 } else { 3 }; // NOERROR / NXDOMAIN
    reply.push(rcode);
    // A (1) answers the IPv4 addresses, AAAA (28) the IPv6 ones.
    let answers: Vec<Vec<u8>> = addrs
        .into_iter()
        .flatten()
        .filter_map(|a| match (a, qtype) {
            (IpAddr::V4(a), 1) => Some(a.octets().to_vec()),
            (IpAddr::V6(a), 28) => Some(a.octets().to_vec()),
            _ => None,
        })
        .collect();
    let count = u16::try_from(answers.len()).unwrap_or(u16::MAX);
    reply.extend_from_slice(&[0, 1]);
    reply.extend_from_slice(&count.to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(&msg[12..question_end]);
    for rdata in answers.iter().take(usize::from(count)) {
        reply.extend_from_slice(&[0xc0, 12]);
        reply.extend_from_slice(&qtype.to_be_bytes());
        reply.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, rdata.len() as u8]);
        reply.extend_from_slice(rdata);
    }
    Some((reply, DnsQuery { name, qtype, tcp }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, 0, qtype as u8, 0, 1]);
        m
    }

    fn server() -> DnsServer {
        DnsServer::start(BTreeMap::from([(
            "test.warren.example".to_owned(),
            Ipv4Addr::new(192, 0, 2, 7),
        )]))
    }

    #[test]
    fn dns_udp_answers_a_record() {
        let d = server();
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.send_to(&query(0x1234, "Test.Warren.Example", 1), d.addr())
            .expect("send");
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).expect("reply");
        let r = &buf[..n];
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[n - 4..], &[192, 0, 2, 7]);
        s.send_to(&query(7, "nope.example", 1), d.addr())
            .expect("send");
        let n = s.recv(&mut buf).expect("reply");
        assert_eq!(buf[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 0);
        assert!(n > 12);
        assert_eq!(d.queries().len(), 2);
        assert!(!d.queries()[0].tcp);
    }

    #[test]
    fn dns_answers_aaaa_and_a_on_ipv6_loopback() {
        let v6: std::net::Ipv6Addr = "2001:db8::6:66".parse().expect("v6");
        let d = DnsServer::start_with(
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            0,
            BTreeMap::from([
                ("six.example".to_owned(), vec![IpAddr::V6(v6)]),
                (
                    "both.example".to_owned(),
                    vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), IpAddr::V6(v6)],
                ),
            ]),
        );
        assert!(d.addr().is_ipv6());
        let s = UdpSocket::bind("[::1]:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        s.send_to(&query(1, "six.example", 28), d.addr())
            .expect("send");
        let n = s.recv(&mut buf).expect("reply");
        assert_eq!(buf[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 1, "one answer");
        assert_eq!(&buf[n - 18..n - 16], &[0, 16], "rdlength");
        assert_eq!(&buf[n - 16..n], &v6.octets());
        // A for a v6-only name: NOERROR, no answer.
        s.send_to(&query(2, "six.example", 1), d.addr())
            .expect("send");
        s.recv(&mut buf).expect("reply");
        assert_eq!(buf[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 0);
        s.send_to(&query(3, "both.example", 1), d.addr())
            .expect("send");
        let n = s.recv(&mut buf).expect("reply");
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 1);
        assert_eq!(&buf[n - 4..n], &[192, 0, 2, 9]);
        let q = d.queries();
        assert_eq!(q.len(), 3);
        assert_eq!((q[0].qtype, q[1].qtype), (28, 1));
    }

    #[test]
    fn dns_tcp_answers_a_record() {
        let d = server();
        let mut c = TcpStream::connect(d.addr()).expect("connect");
        let q = query(0x4242, "test.warren.example", 1);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        c.write_all(&framed).expect("write");
        let mut len = [0u8; 2];
        c.read_exact(&mut len).expect("len");
        let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut r).expect("reply");
        assert_eq!(&r[..2], &[0x42, 0x42]);
        assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 7]);
        assert!(d.queries()[0].tcp);
    }

    #[test]
    fn tftp_serves_file_block_by_block() {
        let data = pseudo_random(1300, 9);
        let t = TftpServer::start(BTreeMap::from([("f".to_owned(), data.clone())]));
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.send_to(b"\x00\x01f\x00octet\x00", ("127.0.0.1", t.port))
            .expect("rrq");
        let mut got = Vec::new();
        let mut buf = [0u8; 600];
        loop {
            let n = s.recv(&mut buf).expect("data");
            assert_eq!(&buf[..2], &[0, 3]);
            got.extend_from_slice(&buf[4..n]);
            s.send_to(&[0, 4, buf[2], buf[3]], ("127.0.0.1", t.port))
                .expect("ack");
            if n < 516 {
                break;
            }
        }
        assert_eq!(got, data);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(t.completed(), vec!["f".to_owned()]);
    }

    #[test]
    fn upload_sink_hashes_until_eof() {
        let u = UploadSink::start();
        let data = pseudo_random(100_000, 3);
        let mut c = TcpStream::connect(("127.0.0.1", u.port)).expect("connect");
        c.write_all(&data).expect("write");
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut reply = String::new();
        c.read_to_string(&mut reply).expect("reply");
        assert_eq!(reply, format!("{} {}\n", sha256_hex(&data), data.len()));
        assert_eq!(u.uploads()[0].sha256, sha256_hex(&data));
    }
}
