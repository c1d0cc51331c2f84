//! Host-side checks of services a guest offers through forwards: TCP echo, the guest's view of a
//! client's address (its `netstat` line), UDP echo, `warren ctl`, and the static UDP echo helper the
//! guests run. Each check returns a one-line description or the reason it failed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::sha256_hex;
use crate::warren::warren_binary;

/// What a check found, or why it failed.
pub type Check = Result<String, String>;

/// The static UDP echo helper (`tools/udp_echo.rs`) for guests, built once and cached by source hash.
pub fn udp_echo_binary() -> Vec<u8> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/udp_echo.rs");
    let code = std::fs::read(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let dir = crate::paths::cache_dir().join("bin");
    std::fs::create_dir_all(&dir).expect("create helper cache dir");
    let out = dir.join(format!("udp-echo-{}", &sha256_hex(&code)[..16]));
    if !out.is_file() {
        let tmp = dir.join(format!("udp-echo.tmp{}", std::process::id()));
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        crate::run_checked(
            Command::new(rustc)
                .args([
                    "--edition",
                    "2021",
                    "-O",
                    "-C",
                    "target-feature=+crt-static",
                ])
                .args(["-C", "strip=symbols", "-o"])
                .arg(&tmp)
                .arg(&src),
        );
        std::fs::rename(&tmp, &out).expect("move helper into place");
    }
    std::fs::read(&out).expect("read udp-echo helper")
}

/// A TCP connection with 10 s to connect and 30 s read/write timeouts.
pub fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    c.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    Ok(c)
}

/// Sends `data` to the echo service at `addr`, half-closes, reads until EOF: the bytes must come back.
pub fn echo_check(addr: SocketAddr, data: &[u8]) -> Check {
    let t = Instant::now();
    let c = connect(addr)?;
    let mut w = c.try_clone().map_err(|e| e.to_string())?;
    let payload = data.to_vec();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        w.write_all(&payload)?;
        w.shutdown(Shutdown::Write)
    });
    let mut got = Vec::with_capacity(data.len());
    let read = (&c).read_to_end(&mut got);
    let wrote = writer
        .join()
        .map_err(|_| format!("the writer to {addr} panicked"))?;
    wrote.map_err(|e| format!("writing to {addr}: {e}"))?;
    read.map_err(|e| format!("reading from {addr} after {} bytes: {e}", got.len()))?;
    if got != data {
        return Err(format!(
            "echo through {addr} returned {} bytes (sha {}), sent {} (sha {})",
            got.len(),
            sha256_hex(&got),
            data.len(),
            sha256_hex(data)
        ));
    }
    Ok(format!(
        "{} bytes echoed through {addr} in {:?}",
        data.len(),
        t.elapsed()
    ))
}

/// Connects to the guest's netstat service at `addr` and returns the guest's view of this
/// connection: the `netstat -tn` line for local port `guest_port`, which must show `want_peer`
/// with the client's port.
pub fn peer_check(addr: SocketAddr, guest_port: u16, want_peer: &str) -> Check {
    let c = connect(addr)?;
    let me = c.local_addr().map_err(|e| e.to_string())?;
    let mut out = String::new();
    (&c).read_to_string(&mut out)
        .map_err(|e| format!("reading the guest's netstat from {addr}: {e}"))?;
    let line = out
        .lines()
        .find(|l| l.contains(&format!(":{guest_port} ")) && l.contains("ESTABLISHED"))
        .ok_or_else(|| format!("no ESTABLISHED line for port {guest_port} in:\n{out}"))?;
    let want = format!("{want_peer}:{}", me.port());
    // busybox netstat shows connections on a dual-stack listener as v4-mapped IPv6 addresses.
    if !line
        .split_whitespace()
        .any(|f| f.strip_prefix("::ffff:").unwrap_or(f) == want)
    {
        return Err(format!(
            "client {me} should appear as {want} in the guest; its netstat says:\n{line}\n(all:\n{out})"
        ));
    }
    Ok(format!("client {me} seen by the guest as {want}: {line}"))
}

/// Sends datagrams (padded by `pad` bytes) from a socket bound to `from` to the UDP echo forward at
/// `addr` until one comes back (UDP may drop): the description and the client's port.
pub fn udp_check(addr: SocketAddr, from: SocketAddr, pad: usize) -> Result<(String, u16), String> {
    let s = UdpSocket::bind(from).map_err(|e| e.to_string())?;
    let me = s.local_addr().map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    for attempt in 0..5u8 {
        let msg = format!("warren udp forward check {attempt} {}", "x".repeat(pad));
        s.send_to(msg.as_bytes(), addr)
            .map_err(|e| format!("send to {addr}: {e}"))?;
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                if from != addr {
                    return Err(format!(
                        "reply came from {from}, not from the forward {addr}"
                    ));
                }
                if &buf[..n] != msg.as_bytes() {
                    return Err(format!(
                        "reply differs: {:?}",
                        String::from_utf8_lossy(&buf[..n])
                    ));
                }
                return Ok((
                    format!("datagram of {n} bytes echoed from {from} (attempt {attempt})"),
                    me.port(),
                ));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("receive from {addr}: {e}")),
        }
    }
    Err(format!("no reply from {addr} to 5 datagrams"))
}

/// `warren ctl --api PATH ARGS...`: stdout, or the failure.
pub fn ctl(api: &Path, args: &[&str]) -> Check {
    let out = Command::new(warren_binary())
        .arg("ctl")
        .arg("--api")
        .arg(api)
        .args(args)
        .output()
        .map_err(|e| format!("run warren ctl: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "warren ctl {args:?} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}
