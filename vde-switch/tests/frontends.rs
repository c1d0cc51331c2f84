//! The front ends against a running `warren`, without QEMU: raw clients speaking each wire format
//! (unix stream with 4-byte lengths, `-netdev dgram` datagrams, the VDE2 handshake and data socket),
//! plus Debian's `vde_plug` as a peer we did not write.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vde_switch::vde::{decode_sockaddr, encode_request, SUN_LEN};

const ETHERTYPE_TEST: [u8; 2] = [0x88, 0xb5];
const BCAST: [u8; 6] = [0xff; 6];
const WAIT: Duration = Duration::from_secs(2);
/// How long to wait to be sure that nothing arrives.
const QUIET: Duration = Duration::from_millis(400);

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0x12, 0x34, n]
}

fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE_TEST);
    f.extend_from_slice(payload);
    f
}

fn arp(oper: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&BCAST);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&oper.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f
}

fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "warren-fe-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// A running warren with a stream socket, a dgram socket and a VDE directory in its own dir.
struct Warren {
    child: Child,
    dir: PathBuf,
}

impl Warren {
    fn start(tag: &str, extra: &[&str]) -> Warren {
        let dir = scratch_dir(tag);
        let child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("--socket")
            .arg(dir.join("stream.sock"))
            .arg("--dgram")
            .arg(dir.join("dgram.sock"))
            .arg("--vde")
            .arg(dir.join("vde"))
            .args(["--dns-upstream", "127.0.0.1:9", "-v"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).expect("log"))
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log"))
            .spawn()
            .expect("start warren");
        let w = Warren { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(w.vde().join("ctl").exists() && w.dgram().exists()) {
            assert!(
                Instant::now() < deadline,
                "warren did not start: {}",
                w.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        w
    }
    fn vde(&self) -> PathBuf {
        self.dir.join("vde")
    }
    fn dgram(&self) -> PathBuf {
        self.dir.join("dgram.sock")
    }
    fn stream(&self) -> PathBuf {
        self.dir.join("stream.sock")
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }
    fn stop(&mut self) {
        // Our own child, not yet reaped.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Anything that carries frames.
trait Link {
    fn send(&mut self, f: &[u8]);
    /// The next frame of the test ethertype (or ARP when `arp`), within `t`.
    fn recv_kind(&mut self, t: Duration, arp: bool) -> Option<Vec<u8>>;
    fn recv(&mut self, t: Duration) -> Option<Vec<u8>> {
        self.recv_kind(t, false)
    }
}

fn wanted(f: &[u8], arp: bool) -> bool {
    f.len() >= 14 && f[12..14] == if arp { [0x08, 0x06] } else { ETHERTYPE_TEST }
}

struct VdeClient {
    _ctl: UnixStream,
    data: UnixDatagram,
    /// The data socket warren answered with.
    switch_path: PathBuf,
}

/// The raw VDE2 handshake, as libvdeplug does it. `Err` carries what happened when refused.
fn vde_handshake(dir: &Path, request: &[u8], data: &UnixDatagram) -> Result<PathBuf, String> {
    let mut ctl = UnixStream::connect(dir.join("ctl")).map_err(|e| e.to_string())?;
    ctl.write_all(request).map_err(|e| e.to_string())?;
    let _ = ctl.shutdown(std::net::Shutdown::Write);
    ctl.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reply = [0u8; SUN_LEN];
    let mut got = 0;
    while got < SUN_LEN {
        match ctl.read(&mut reply[got..]) {
            Ok(0) => return Err(format!("closed after {got} bytes")),
            Ok(n) => got += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    let p = decode_sockaddr(&reply).ok_or("empty reply")?;
    data.connect(&p).map_err(|e| e.to_string())?;
    Ok(p)
}

impl VdeClient {
    fn connect(dir: &Path, port: u32) -> VdeClient {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::fs::canonicalize(dir).expect("canonical vde dir");
        let own = dir.join(format!(
            ".{:05}-{:05}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let data = UnixDatagram::bind(&own).expect("bind client data socket");
        let req = encode_request(port, own.as_os_str().as_bytes(), "warren frontends test");
        let mut ctl = UnixStream::connect(dir.join("ctl")).expect("connect ctl");
        ctl.write_all(&req).expect("send request");
        let mut reply = [0u8; SUN_LEN];
        ctl.read_exact(&mut reply).expect("read reply");
        let switch_path = decode_sockaddr(&reply).expect("reply names a socket");
        data.connect(&switch_path).expect("connect data socket");
        let _ = std::fs::remove_file(&own);
        VdeClient {
            _ctl: ctl,
            data,
            switch_path,
        }
    }
}

fn recv_dgram(s: &UnixDatagram, t: Duration, arp: bool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + t;
    let mut buf = vec![0u8; 70000];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok();
        match s.recv(&mut buf) {
            Ok(n) if wanted(&buf[..n], arp) => return Some(buf[..n].to_vec()),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

impl Link for VdeClient {
    fn send(&mut self, f: &[u8]) {
        self.data.send(f).expect("vde send");
    }
    fn recv_kind(&mut self, t: Duration, arp: bool) -> Option<Vec<u8>> {
        recv_dgram(&self.data, t, arp)
    }
}

struct DgramClient {
    sock: UnixDatagram,
    _dir: PathBuf,
    /// Where to send when the socket is not connected (as QEMU does it: sendto, no connect).
    to: Option<PathBuf>,
}

impl DgramClient {
    fn connect(w: &Warren, name: &str) -> DgramClient {
        let path = w.dir.join(name);
        let sock = UnixDatagram::bind(&path).expect("bind dgram client");
        sock.connect(w.dgram()).expect("connect dgram");
        DgramClient {
            sock,
            _dir: path,
            to: None,
        }
    }

    /// Like QEMU's `-netdev dgram`: bound, sending with sendto, never connected.
    fn like_qemu(w: &Warren, name: &str) -> DgramClient {
        let path = w.dir.join(name);
        DgramClient {
            sock: UnixDatagram::bind(&path).expect("bind dgram client"),
            _dir: path,
            to: Some(w.dgram()),
        }
    }
}

impl Link for DgramClient {
    fn send(&mut self, f: &[u8]) {
        match &self.to {
            Some(to) => self.sock.send_to(f, to),
            None => self.sock.send(f),
        }
        .expect("dgram send");
    }
    fn recv_kind(&mut self, t: Duration, arp: bool) -> Option<Vec<u8>> {
        recv_dgram(&self.sock, t, arp)
    }
}

struct StreamClient {
    s: UnixStream,
    buf: Vec<u8>,
}

impl StreamClient {
    fn connect(w: &Warren) -> StreamClient {
        StreamClient {
            s: UnixStream::connect(w.stream()).expect("connect stream"),
            buf: Vec::new(),
        }
    }
}

impl Link for StreamClient {
    fn send(&mut self, f: &[u8]) {
        self.s
            .write_all(&(f.len() as u32).to_be_bytes())
            .expect("stream send");
        self.s.write_all(f).expect("stream send");
    }
    fn recv_kind(&mut self, t: Duration, arp: bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + t;
        loop {
            while self.buf.len() >= 4 {
                let n = u32::from_be_bytes(self.buf[..4].try_into().expect("4")) as usize;
                if self.buf.len() < 4 + n {
                    break;
                }
                let f: Vec<u8> = self.buf.drain(..4 + n).skip(4).collect();
                if wanted(&f, arp) {
                    return Some(f);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.s
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok();
            let mut b = [0u8; 65536];
            match self.s.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }
}

/// `from` sends a broadcast; every link in `to` gets it.
fn broadcast_reaches(from: &mut dyn Link, src: [u8; 6], to: &mut [&mut dyn Link], ctx: &Warren) {
    let f = frame(BCAST, src, format!("hello from {src:02x?}").as_bytes());
    from.send(&f);
    for (i, l) in to.iter_mut().enumerate() {
        assert_eq!(l.recv(WAIT), Some(f.clone()), "link {i}:\n{}", ctx.log());
    }
}

/// `l` (MAC `m`) asks who has 10.0.2.2 and gets the gateway's answer (other guests' ARP broadcasts
/// may arrive first and are skipped). Each MAC claims its own address (10.0.2.20 + its last byte):
/// the switch's IP source guard refuses a claim of an address another MAC uses.
fn assert_gateway_answers_arp(l: &mut dyn Link, m: [u8; 6], ctx: &Warren) {
    l.send(&arp(1, m, [10, 0, 2, 20 + m[5]], [10, 0, 2, 2]));
    let deadline = Instant::now() + WAIT;
    while let Some(r) = l.recv_kind(deadline.saturating_duration_since(Instant::now()), true) {
        if r[0..6] == m && r[20..22] == [0, 2] {
            assert_eq!(&r[28..32], &[10, 0, 2, 2]);
            return;
        }
    }
    panic!("no ARP reply from the gateway to {m:02x?}:\n{}", ctx.log());
}

#[test]
fn vde_dgram_and_stream_guests_share_one_lan() {
    let w = Warren::start("mixed", &[]);
    let out = w.stdout();
    assert!(out.contains("-netdev vde,id=net0,sock="), "{out}");
    assert!(out.contains("-netdev dgram,id=net0,"), "{out}");
    assert!(out.contains("-netdev stream,id=net0,"), "{out}");
    let mut v = VdeClient::connect(&w.vde(), 0);
    let mut d = DgramClient::connect(&w, "guest-d.sock");
    let mut s = StreamClient::connect(&w);
    // The dgram peer becomes a port with its first datagram; everyone learns from the broadcasts.
    broadcast_reaches(&mut d, mac(2), &mut [&mut v, &mut s], &w);
    broadcast_reaches(&mut v, mac(1), &mut [&mut d, &mut s], &w);
    broadcast_reaches(&mut s, mac(3), &mut [&mut v, &mut d], &w);
    // Unicast goes to the learned port only.
    let f = frame(mac(2), mac(1), b"vde to dgram");
    v.send(&f);
    assert_eq!(d.recv(WAIT), Some(f));
    assert_eq!(s.recv(QUIET), None);
    let f = frame(mac(1), mac(3), b"stream to vde");
    s.send(&f);
    assert_eq!(v.recv(WAIT), Some(f));
    assert_eq!(d.recv(QUIET), None);
    let f = frame(mac(3), mac(2), b"dgram to stream");
    d.send(&f);
    assert_eq!(s.recv(WAIT), Some(f));
    assert_eq!(v.recv(QUIET), None);
    // The gateway answers ARP on every front end.
    for (l, m) in [
        (&mut v as &mut dyn Link, mac(1)),
        (&mut d, mac(2)),
        (&mut s, mac(3)),
    ] {
        assert_gateway_answers_arp(l, m, &w);
    }
}

#[test]
fn vde_frames_are_capped_at_1518_bytes() {
    let w = Warren::start("mtu", &["--mtu", "9000"]);
    let mut v = VdeClient::connect(&w.vde(), 0);
    let mut d = DgramClient::connect(&w, "guest-d.sock");
    let mut s = StreamClient::connect(&w);
    // The dgram peer becomes a port with its first datagram.
    broadcast_reaches(&mut d, mac(2), &mut [&mut v, &mut s], &w);
    let max = frame(BCAST, mac(3), &[7u8; 1518 - 14]);
    let big = frame(BCAST, mac(3), &[8u8; 3000]);
    s.send(&big);
    assert_eq!(
        d.recv(WAIT),
        Some(big.clone()),
        "dgram carries the LAN's MTU"
    );
    s.send(&max);
    // The big one was dropped for the VDE port; the 1518-byte one arrives.
    assert_eq!(v.recv(WAIT), Some(max.clone()), "{}", w.log());
    assert_eq!(d.recv(WAIT), Some(max));
    // And from VDE, oversize frames are not taken in.
    v.send(&frame(BCAST, mac(1), &[9u8; 2000]));
    assert_eq!(d.recv(QUIET), None);
}

#[test]
fn vde_port_requests_and_reconnects() {
    let gid = rustix::process::getegid().as_raw().to_string();
    let w = Warren::start("ports", &["--vde-mode", "0660", "--vde-group", &gid]);
    // Modes as vde_switch applies them: sockets as given, the directory with search bits and setgid.
    let mode = |p: &Path| {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = std::fs::metadata(p).expect("stat");
        (m.permissions().mode() & 0o7777, m.gid().to_string())
    };
    assert_eq!(mode(&w.vde()), (0o2770, gid.clone()));
    assert_eq!(mode(&w.vde().join("ctl")), (0o660, gid.clone()));
    let a = VdeClient::connect(&w.vde(), 5);
    let name = a
        .switch_path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("005."), "{name}");
    assert_eq!(mode(&a.switch_path), (0o660, gid.clone()));
    assert_eq!(
        a.switch_path.parent(),
        Some(std::fs::canonicalize(w.vde()).expect("c").as_path())
    );
    // Taken: another port is picked.
    let mut b = VdeClient::connect(&w.vde(), 5);
    let nb = b
        .switch_path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(nb.starts_with("001."), "{nb}");
    let mut other = DgramClient::connect(&w, "other.sock");
    broadcast_reaches(&mut other, mac(9), &mut [&mut b], &w);
    let mut a = a;
    broadcast_reaches(&mut a, mac(1), &mut [&mut b, &mut other], &w);
    // a goes away (its control connection closes): its data socket file goes too.
    let a_path = a.switch_path.clone();
    drop(a);
    let deadline = Instant::now() + WAIT;
    while a_path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!a_path.exists(), "{} left behind", a_path.display());
    // It comes back with the same MAC and port 5; the others did not notice.
    let mut a = VdeClient::connect(&w.vde(), 5);
    assert!(a
        .switch_path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .starts_with("005."));
    let f = frame(mac(1), mac(9), b"to a again");
    other.send(&f);
    // Unknown again after the port closed: flooded, so b sees it too.
    assert_eq!(a.recv(WAIT), Some(f.clone()));
    assert_eq!(b.recv(WAIT), Some(f));
    broadcast_reaches(&mut a, mac(1), &mut [&mut b, &mut other], &w);
    let f = frame(mac(1), mac(9), b"learned");
    other.send(&f);
    assert_eq!(a.recv(WAIT), Some(f));
    assert_eq!(b.recv(QUIET), None);
    drop(b);
    // On SIGTERM the directory is cleaned up.
    let mut w = w;
    drop(a);
    w.stop();
    assert!(!w.vde().exists(), "{} left behind", w.vde().display());
}

#[test]
fn hostile_vde_handshakes_are_refused() {
    let w = Warren::start("hostile", &[]);
    let dir = std::fs::canonicalize(w.vde()).expect("canonical");
    let sock_in_dir = dir.join(".hostile-sock");
    let data = UnixDatagram::bind(&sock_in_dir).expect("bind");
    let good = |p: &Path| encode_request(0, p.as_os_str().as_bytes(), "hostile test");
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("short", good(&sock_in_dir)[..100].to_vec()),
        ("wrong magic", {
            let mut b = good(&sock_in_dir);
            b[0] ^= 0xff;
            b
        }),
        ("version 2", {
            let mut b = good(&sock_in_dir);
            b[4..8].copy_from_slice(&2u32.to_ne_bytes());
            b
        }),
        ("long", {
            let mut b = good(&sock_in_dir);
            b.extend_from_slice(&[b'x'; 200]);
            b
        }),
    ];
    // A socket outside the directory.
    let outside_dir = scratch_dir("outside");
    let outside = outside_dir.join("s");
    let _outside = UnixDatagram::bind(&outside).expect("bind outside");
    cases.push(("outside the directory", good(&outside)));
    cases.push(("dot-dot", good(&dir.join("..").join("outside"))));
    // Not a socket, a symlink to a socket, nothing at all.
    let file = dir.join(".file");
    std::fs::write(&file, b"x").expect("file");
    cases.push(("regular file", good(&file)));
    let link = dir.join(".link");
    std::os::unix::fs::symlink(&sock_in_dir, &link).expect("symlink");
    cases.push(("symlink", good(&link)));
    cases.push(("missing", good(&dir.join(".missing"))));
    // Somebody else's socket (root can arrange that).
    if rustix::process::geteuid().is_root() {
        let theirs = dir.join(".theirs");
        let _t = UnixDatagram::bind(&theirs).expect("bind");
        std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown");
        cases.push(("other user's socket", good(&theirs)));
        std::mem::forget(_t);
    }
    for (what, req) in &cases {
        let client = UnixDatagram::unbound().expect("socket");
        let r = vde_handshake(&dir, req, &client);
        assert!(r.is_err(), "{what}: accepted: {r:?}\n{}", w.log());
    }
    // Half a request, then nothing: the others are not held up.
    let mut stalled = UnixStream::connect(dir.join("ctl")).expect("connect");
    stalled.write_all(&good(&sock_in_dir)[..50]).expect("write");
    // warren is still fine and serves a proper client.
    let mut a = VdeClient::connect(&w.vde(), 0);
    let mut b = VdeClient::connect(&w.vde(), 0);
    broadcast_reaches(&mut a, mac(1), &mut [&mut b], &w);
    let log = w.log();
    for what in [
        "bad magic",
        "unsupported version 2",
        "too long",
        "neither in the switch directory",
        "is not a socket",
        "short request",
    ] {
        assert!(log.contains(what), "no {what:?} in the log:\n{log}");
    }
    drop(data);
    let _ = std::fs::remove_dir_all(&outside_dir);
}

#[test]
fn isolate_keeps_guests_apart_but_not_from_the_gateway() {
    let w = Warren::start("isolate", &["--isolate"]);
    let mut a = VdeClient::connect(&w.vde(), 0);
    let mut b = DgramClient::connect(&w, "b.sock");
    let mut c = StreamClient::connect(&w);
    for (l, m) in [
        (&mut a as &mut dyn Link, mac(1)),
        (&mut b, mac(2)),
        (&mut c, mac(3)),
    ] {
        l.send(&frame(BCAST, m, b"anyone?"));
    }
    assert_eq!(a.recv(QUIET), None);
    assert_eq!(b.recv(QUIET), None);
    assert_eq!(c.recv(QUIET), None);
    a.send(&frame(mac(2), mac(1), b"unicast"));
    assert_eq!(b.recv(QUIET), None);
    // The gateway still answers everybody.
    for (l, m) in [
        (&mut a as &mut dyn Link, mac(1)),
        (&mut b, mac(2)),
        (&mut c, mac(3)),
    ] {
        assert_gateway_answers_arp(l, m, &w);
    }
    assert!(w.stdout().contains("--isolate"));
}

#[test]
fn arp_claiming_the_gateway_or_dns_is_not_delivered() {
    let w = Warren::start("spoof", &[]);
    let mut a = VdeClient::connect(&w.vde(), 0);
    let mut b = StreamClient::connect(&w);
    let mut c = DgramClient::connect(&w, "c.sock");
    broadcast_reaches(&mut c, mac(3), &mut [&mut a, &mut b], &w);
    for claimed in [[10, 0, 2, 2], [10, 0, 2, 3]] {
        // Gratuitous ARP and an ARP reply claiming the gateway's/DNS address.
        a.send(&arp(1, mac(1), claimed, claimed));
        a.send(&arp(2, mac(1), claimed, [10, 0, 2, 16]));
        assert_eq!(b.recv_kind(QUIET, true), None, "{claimed:?}");
        assert_eq!(c.recv_kind(QUIET, true), None, "{claimed:?}");
    }
    // An ordinary gratuitous ARP goes through.
    let g = arp(1, mac(1), [10, 0, 2, 50], [10, 0, 2, 50]);
    a.send(&g);
    assert_eq!(b.recv_kind(WAIT, true), Some(g.clone()));
    assert_eq!(c.recv_kind(WAIT, true), Some(g));
    // The drops are counted on the port (shown when it closes).
    drop(a);
    let deadline = Instant::now() + WAIT;
    while !w.log().contains("drop_spoofed: 4") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(w.log().contains("drop_spoofed: 4"), "{}", w.log());
}

/// Debian's `vde_plug` (vdeplug4, the library QEMU's `-netdev vde` uses too) on stdin/stdout, which
/// carry frames with a 2-byte big-endian length.
struct VdePlug {
    child: Child,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl VdePlug {
    fn start(url: &str) -> VdePlug {
        let mut child = Command::new("vde_plug")
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run vde_plug: {e} (apt-get install vdeplug, part of vde2)")
            });
        let mut out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut b = [0u8; 4096];
            while let Ok(n) = out.read(&mut b) {
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&b[..n]);
                while buf.len() >= 2 {
                    let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
                    if buf.len() < 2 + len {
                        break;
                    }
                    let f: Vec<u8> = buf.drain(..2 + len).skip(2).collect();
                    if tx.send(f).is_err() {
                        return;
                    }
                }
            }
        });
        VdePlug { child, rx }
    }
}

impl Link for VdePlug {
    fn send(&mut self, f: &[u8]) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(&(f.len() as u16).to_be_bytes())
            .expect("write");
        stdin.write_all(f).expect("write");
        stdin.flush().expect("flush");
    }
    fn recv_kind(&mut self, t: Duration, arp: bool) -> Option<Vec<u8>> {
        let deadline = Instant::now() + t;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(f) if wanted(&f, arp) => return Some(f),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for VdePlug {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn debian_vde_plug_interoperates() {
    let w = Warren::start("vdeplug", &[]);
    let vde = w.vde().display().to_string();
    let mut p1 = VdePlug::start(&vde);
    let mut p2 = VdePlug::start(&format!("vde://{vde}[4]"));
    let mut s = StreamClient::connect(&w);
    // vde_plug connects asynchronously: wait until both data sockets exist (one is port 4).
    let deadline = Instant::now() + Duration::from_secs(5);
    let ports = || {
        std::fs::read_dir(w.vde())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "ctl" && !n.starts_with('.'))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    while ports().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let names = ports();
    assert!(
        names.iter().any(|n| n.starts_with("004.")),
        "{names:?}\n{}",
        w.log()
    );
    broadcast_reaches(&mut p1, mac(1), &mut [&mut p2, &mut s], &w);
    broadcast_reaches(&mut p2, mac(2), &mut [&mut p1, &mut s], &w);
    broadcast_reaches(&mut s, mac(3), &mut [&mut p1, &mut p2], &w);
    let f = frame(mac(2), mac(1), &[0x5a; 1400]);
    p1.send(&f);
    assert_eq!(p2.recv(WAIT), Some(f));
    // The gateway answers vde_plug's ARP.
    assert_gateway_answers_arp(&mut p1, mac(1), &w);
    assert!(
        w.log().contains("vdeplug"),
        "description logged:\n{}",
        w.log()
    );
    // vde_plug going away removes its port and its socket file.
    drop(p1);
    let deadline = Instant::now() + WAIT;
    while ports().len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ports().len(), 1, "{:?}", ports());
}

#[test]
fn datagram_guests_that_read_slowly_lose_nothing() {
    // A unix datagram receiver holds only net.unix.max_dgram_qlen (often 10) datagrams from an
    // unconnected sender: warren queues for its dgram and VDE ports instead of dropping.
    let w = Warren::start("slow", &[]);
    let mut v = VdeClient::connect(&w.vde(), 0);
    let mut d = DgramClient::like_qemu(&w, "slow-d.sock");
    let mut e = DgramClient::connect(&w, "slow-e.sock");
    let mut s = StreamClient::connect(&w);
    broadcast_reaches(&mut d, mac(2), &mut [&mut v, &mut s], &w);
    broadcast_reaches(&mut e, mac(4), &mut [&mut d, &mut s, &mut v], &w);
    broadcast_reaches(&mut v, mac(1), &mut [&mut d, &mut s, &mut e], &w);
    const N: u32 = 300;
    for i in 0..N {
        for m in [1, 2, 4] {
            s.send(&frame(
                mac(m),
                mac(3),
                &[&i.to_be_bytes()[..], &[m; 1000]].concat(),
            ));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    for (name, l) in [
        ("dgram like QEMU", &mut d as &mut dyn Link),
        ("vde", &mut v),
        ("dgram connected", &mut e),
    ] {
        for i in 0..N {
            let f = l
                .recv(WAIT)
                .unwrap_or_else(|| panic!("{name}: frame {i} of {N} missing\n{}", w.log()));
            assert_eq!(&f[14..18], &i.to_be_bytes(), "{name}: out of order");
        }
    }
}

#[test]
fn silent_dgram_peers_lose_their_port() {
    // QEMU's dgram peers never say goodbye: a peer silent for --dgram-idle loses its port (checked
    // every 30 s while the switch is busy), and comes back with its next datagram.
    let w = Warren::start("idle", &["--dgram-idle", "1"]);
    let mut d = DgramClient::connect(&w, "idle-d.sock");
    let mut s = StreamClient::connect(&w);
    broadcast_reaches(&mut d, mac(2), &mut [&mut s], &w);
    let deadline = Instant::now() + Duration::from_secs(45);
    while !w.log().contains("closed: idle") {
        assert!(Instant::now() < deadline, "no idle expiry:\n{}", w.log());
        // Other traffic keeps the loop turning.
        s.send(&frame(BCAST, mac(3), b"tick"));
        std::thread::sleep(Duration::from_millis(500));
    }
    // Its MAC went with the port; the same peer is a new port once it speaks again.
    broadcast_reaches(&mut d, mac(2), &mut [&mut s], &w);
    let f = frame(mac(2), mac(3), b"back");
    s.send(&f);
    // (Skipping the ticks it was sent meanwhile.)
    let deadline = Instant::now() + WAIT;
    while let Some(got) = d.recv(deadline.saturating_duration_since(Instant::now())) {
        if got == f {
            break;
        }
    }
    assert!(Instant::now() < deadline, "{}", w.log());
    assert_eq!(
        w.log().matches("connected (dgram").count(),
        2,
        "{}",
        w.log()
    );
}
