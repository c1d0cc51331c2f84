//! A UDP echo server for test guests (busybox has no UDP server): `udp-echo PORT [ADDR]` binds
//! ADDR:PORT (default 0.0.0.0; `::` for IPv6), sends every datagram back to its sender and prints
//! `@@UDPECHO from ADDR LEN` on stdout (the guest's console) for each one.
//!
//! Built by the forwarding test with `rustc -C target-feature=+crt-static` into a static binary
//! and put into the guest's initramfs.

use std::io::Write;
use std::net::UdpSocket;

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: udp-echo PORT [ADDR]");
    let addr = std::env::args().nth(2).unwrap_or_else(|| "0.0.0.0".into());
    let s = UdpSocket::bind((addr.as_str(), port)).expect("bind");
    println!("@@UDPECHO listening on {port}");
    let mut buf = [0u8; 65536];
    loop {
        let (n, from) = match s.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                println!("@@UDPECHO recv error {e}");
                continue;
            }
        };
        let _ = s.send_to(&buf[..n], from);
        println!("@@UDPECHO from {from} {n}");
        let _ = std::io::stdout().flush();
    }
}
