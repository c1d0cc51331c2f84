//! The DNS forwarder on its own: guest queries, upstream answers (raw, or built on the latest
//! forwarded query so they get past the id check into the question comparison) and timeouts.
//!
//! Input: a script of records, each an opcode byte:
//! - 0: client u8, chunk: a guest query;
//! - 1: upstream u8, rcode u8, chunk: an answer to the latest forwarded query with the chunk
//!   appended (question section and all, when the chunk is empty);
//! - 2: upstream u8, chunk: a raw datagram on the upstream socket;
//! - 3: u16 milliseconds pass, then the timeouts run.
//!
//! Checked: replies go only to clients that asked, with the id the client used; every reply is a
//! response (QR set) at least a header long; nothing stays pending past the whole budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::dns::{DnsAction, DnsForwarder};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use warren_fuzz::Input;

const TIMEOUT: Duration = Duration::from_secs(5);

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let n_up = usize::from(inp.u8() % 3);
    let upstreams: Vec<SocketAddr> = ["127.0.0.53:53", "192.0.2.53:53", "[2001:db8::53]:53"]
        .iter()
        .take(n_up)
        .map(|s| s.parse().expect("addr"))
        .collect();
    let mut fwd = DnsForwarder::new(upstreams.clone(), TIMEOUT, 7);
    fwd.set_max_pending(16);
    let mut now = Instant::now();
    // (client, id) pairs that asked and may get a reply.
    let mut asked: HashSet<(SocketAddr, u16)> = HashSet::new();
    let mut last_sent: Option<(SocketAddr, Vec<u8>)> = None;

    for _ in 0..256 {
        if inp.is_empty() {
            break;
        }
        let actions = match inp.u8() % 4 {
            0 => {
                let c = inp.u8();
                let client: SocketAddr = format!("10.0.2.{}:{}", 15 + c % 4, 40000 + u16::from(c))
                    .parse()
                    .expect("addr");
                let q = inp.chunk();
                match fwd.on_guest_query(now, client, q) {
                    Ok(a) => {
                        asked.insert((client, u16::from_be_bytes([q[0], q[1]])));
                        a
                    }
                    Err(_) => continue,
                }
            }
            1 => {
                let (u, rcode) = (inp.u8(), inp.u8());
                let extra = inp.chunk();
                let Some((up, q)) = last_sent.clone() else {
                    continue;
                };
                let mut r = q;
                r[2] |= 0x80;
                r[3] = (r[3] & 0xf0) | (rcode & 0x0f);
                r.extend_from_slice(extra);
                // Mostly from the upstream asked; sometimes from another (must be refused).
                let from = if u % 4 == 0 && !upstreams.is_empty() {
                    upstreams[usize::from(u) % upstreams.len()]
                } else {
                    up
                };
                fwd.on_upstream_response(now, from, &r).unwrap_or_default()
            }
            2 => {
                let u = inp.u8();
                let from = upstreams
                    .get(usize::from(u) % upstreams.len().max(1))
                    .copied()
                    .unwrap_or_else(|| "127.0.0.53:53".parse().expect("addr"));
                fwd.on_upstream_response(now, from, inp.chunk())
                    .unwrap_or_default()
            }
            _ => {
                now += Duration::from_millis(u64::from(inp.u16()));
                fwd.poll_timeouts(now)
            }
        };
        for a in actions {
            match a {
                DnsAction::SendUpstream { upstream, query } => {
                    assert!(upstreams.contains(&upstream), "query to a stranger");
                    assert!(query.len() >= 12);
                    last_sent = Some((upstream, query));
                }
                DnsAction::Reply { client, response } => {
                    assert!(response.len() >= 12, "reply shorter than a header");
                    assert!(response[2] & 0x80 != 0, "reply is not a response");
                    let id = u16::from_be_bytes([response[0], response[1]]);
                    assert!(
                        asked.contains(&(client, id)),
                        "reply to {client} id {id}, which never asked"
                    );
                }
            }
        }
        assert!(fwd.pending() <= 16);
    }
    // The whole budget passes: nothing is left waiting.
    now += TIMEOUT + Duration::from_secs(1);
    for a in fwd.poll_timeouts(now) {
        assert!(matches!(
            a,
            DnsAction::Reply { .. } | DnsAction::SendUpstream { .. }
        ));
    }
    now += TIMEOUT + Duration::from_secs(1);
    let _ = fwd.poll_timeouts(now);
    assert_eq!(fwd.pending(), 0, "queries outlived the timeout budget");
});
