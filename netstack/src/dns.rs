//! DNS forwarder (sans-IO) built on `hickory-proto`.
//!
//! Guests send UDP queries to the gateway's DNS address; the forwarder relays them to the host's
//! upstream servers and the answers back. It never builds answers itself, except a SERVFAIL when no
//! upstream answers in time, and it forwards the guest's bytes unchanged (EDNS included) apart
//! from the 16-bit message id:
//!
//! * Each forwarded query gets a fresh random-looking id, unique among pending queries, so
//!   upstream answers cannot be confused between guests and are hard to spoof.
//! * An upstream response is accepted only from an upstream the query was sent to, with a pending
//!   id, QR=1, opcode QUERY and the same question section; its id is then restored.
//! * The total budget per query is `timeout`, split evenly across the upstreams: when one does not
//!   answer within its share (or answers SERVFAIL/REFUSED), the next one is tried. When all have
//!   been tried and time is up, the guest gets a SERVFAIL echoing its question.
//! * The upstream that last answered is tried first for new queries.
//!
//! Only the header and the question section of a message are parsed; answer, authority and
//! additional sections (and truncated TC=1 answers) pass through untouched. A guest that
//! retransmits a pending query (same source, id and question) has it re-sent to the current
//! upstream rather than queued twice.

use crate::rng::{Rng, STREAM_DNS_ID};
use crate::Instant;
use hickory_proto::op::Query;
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

/// Most queries waiting for upstreams at once (must stay below 65536, the id space).
pub const MAX_PENDING: usize = 4096;
const HEADER_LEN: usize = 12;
const QR: u8 = 0x80;
const OPCODE_MASK: u8 = 0x78;
const RD: u8 = 0x01;
const RA: u8 = 0x80;
const CD: u8 = 0x10;
const RCODE_MASK: u8 = 0x0f;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsAction {
    /// Send `query` to `upstream` over UDP from the forwarder's upstream socket.
    SendUpstream {
        /// One of the configured upstream servers.
        upstream: SocketAddr,
        /// The guest's query with the forwarder's upstream id in bytes 0..2.
        query: Vec<u8>,
    },
    /// Send `response` to the guest at `client` (from the DNS address, port 53).
    Reply {
        /// The guest's address and source port.
        client: SocketAddr,
        /// The upstream answer with the guest's id restored, or a SERVFAIL.
        response: Vec<u8>,
    },
}

/// Why a datagram was dropped (counted as `dns_bad`). Upstream responses that do not match a
/// pending query (wrong source, id or question: possible spoofing) are `Malformed` with the reason.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Undecodable, no question, or an upstream response matching no pending query.
    #[error("bad DNS message: {0}")]
    Malformed(String),
    /// From a guest: QR set or an opcode other than QUERY.
    #[error("DNS message is not a standard query")]
    NotAQuery,
    /// No upstream server. Not returned at present: with no upstreams the forwarder
    /// answers the guest with a SERVFAIL instead.
    #[error("no upstream DNS server")]
    NoUpstream,
    /// [`MAX_PENDING`] queries (or the per-guest cap) are already waiting for upstreams.
    #[error("too many DNS queries pending")]
    TooManyPending,
}

/// One query waiting for an upstream, keyed by the id it was forwarded with.
struct Pending {
    client: SocketAddr,
    client_id: u16,
    /// The guest's query with the upstream id patched in.
    query: Vec<u8>,
    /// The raw question section and its parsed form.
    question: Vec<u8>,
    questions: Vec<Query>,
    /// Header bytes 2 and 3 of the guest's query (opcode, RD, CD for the SERVFAIL).
    flags: [u8; 2],
    /// Indexes into `upstreams`, in the order tried; never empty.
    tried: Vec<usize>,
    /// When the current upstream's share of the budget runs out.
    deadline: Instant,
    /// When the whole budget runs out.
    final_deadline: Instant,
}

/// The parts of a message's header and question section the forwarder looks at.
struct Parsed {
    id: u16,
    flags: [u8; 2],
    qdcount: u16,
    /// End of the question section.
    qend: usize,
    questions: Vec<Query>,
}

/// The gateway's DNS forwarder: pending queries keyed by upstream id, with deadlines.
pub struct DnsForwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    pending: HashMap<u16, Pending>,
    /// (client, client id) → upstream id, to recognise retransmissions.
    by_client: HashMap<(SocketAddr, u16), u16>,
    /// (deadline, upstream id) for every pending query.
    deadlines: BTreeSet<(Instant, u16)>,
    /// The upstream tried first: the one that last gave a usable answer.
    preferred: usize,
    /// Upstream query ids (seeded from `Config::seed`).
    rng: Rng,
    max_pending: usize,
    /// Pending queries per guest address, and the cap on them.
    per_client: HashMap<std::net::IpAddr, usize>,
    max_per_client: usize,
    servfails: u64,
}

impl DnsForwarder {
    /// A forwarder to `upstreams` (tried in order, the last good one first) with a per-query
    /// budget of `timeout`; upstream query ids come from `seed`. They must stay unpredictable to a
    /// spoofer: the driver draws the seed at random, a fixed seed is for tests and fuzzing only.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, seed: u64) -> Self {
        DnsForwarder {
            upstreams,
            timeout,
            pending: HashMap::new(),
            by_client: HashMap::new(),
            deadlines: BTreeSet::new(),
            preferred: 0,
            rng: Rng::new(seed, STREAM_DNS_ID),
            max_pending: MAX_PENDING,
            per_client: HashMap::new(),
            max_per_client: MAX_PENDING,
            servfails: 0,
        }
    }

    /// The configured upstream servers, in configuration order.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The upstream new queries go to first: the one that last gave a usable answer (initially
    /// the first). A good target for DNS-over-TCP retries from guests.
    pub fn preferred_upstream(&self) -> Option<SocketAddr> {
        self.upstreams
            .get(self.preferred)
            .or(self.upstreams.first())
            .copied()
    }

    /// Changes the cap on pending queries of one guest address (so one guest cannot take the whole
    /// table from the others).
    pub fn set_max_pending_per_client(&mut self, n: usize) {
        self.max_per_client = n.max(1);
    }

    /// Pending queries of guest address `ip`.
    pub fn pending_of(&self, ip: std::net::IpAddr) -> usize {
        self.per_client.get(&ip).copied().unwrap_or(0)
    }

    /// Changes the cap on pending queries (at most 65535, the id space less one).
    pub fn set_max_pending(&mut self, n: usize) {
        self.max_pending = n.min(usize::from(u16::MAX));
    }

    /// How many SERVFAILs the forwarder has made up itself (timeouts, no upstream) so far.
    pub fn servfails(&self) -> u64 {
        self.servfails
    }

    /// A query from a guest (`client` = guest address and port).
    pub fn on_guest_query(
        &mut self,
        now: Instant,
        client: SocketAddr,
        payload: &[u8],
    ) -> Result<Vec<DnsAction>, DnsError> {
        let q = parse(payload)?;
        if q.flags[0] & QR != 0 || q.flags[0] & OPCODE_MASK != 0 {
            return Err(DnsError::NotAQuery);
        }
        if q.qdcount == 0 {
            return Err(DnsError::Malformed("query has no question".into()));
        }
        check_records(payload, q.qend)?;
        let question = &payload[HEADER_LEN..q.qend];
        if self.upstreams.is_empty() {
            // Answer at once so the guest does not sit out its own timeouts.
            self.servfails += 1;
            let response = servfail(q.id, q.flags, q.qdcount, question);
            return Ok(vec![DnsAction::Reply { client, response }]);
        }
        if let Some(uid) = self.by_client.get(&(client, q.id)) {
            if let Some(p) = self.pending.get(uid).filter(|p| p.question == question) {
                // A retransmission: send it again to the upstream currently asked.
                let upstream = self.upstream_at(p.tried.last().copied().unwrap_or(0));
                return Ok(vec![DnsAction::SendUpstream {
                    upstream,
                    query: p.query.clone(),
                }]);
            }
        }
        if self.pending.len() >= self.max_pending
            || self.pending_of(client.ip()) >= self.max_per_client
        {
            return Err(DnsError::TooManyPending);
        }
        let uid = self.fresh_id();
        let mut query = payload.to_vec();
        query[..2].copy_from_slice(&uid.to_be_bytes());
        let first = self.preferred % self.upstreams.len();
        let final_deadline = add(now, self.timeout);
        let deadline = self.attempt_deadline(now, 1, final_deadline);
        let upstream = self.upstream_at(first);
        let action = DnsAction::SendUpstream {
            upstream,
            query: query.clone(),
        };
        self.pending.insert(
            uid,
            Pending {
                client,
                client_id: q.id,
                query,
                question: question.to_vec(),
                questions: q.questions,
                flags: q.flags,
                tried: vec![first],
                deadline,
                final_deadline,
            },
        );
        self.by_client.insert((client, q.id), uid);
        *self.per_client.entry(client.ip()).or_insert(0) += 1;
        self.deadlines.insert((deadline, uid));
        Ok(vec![action])
    }

    /// A datagram arrived on the upstream socket from `from`.
    pub fn on_upstream_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        payload: &[u8],
    ) -> Result<Vec<DnsAction>, DnsError> {
        if payload.len() < HEADER_LEN {
            return Err(DnsError::Malformed(format!(
                "{} bytes, shorter than a DNS header",
                payload.len()
            )));
        }
        let uid = u16::from_be_bytes([payload[0], payload[1]]);
        let Some(p) = self.pending.get(&uid) else {
            return Err(DnsError::Malformed(format!(
                "response id {uid} from {from} matches no pending query"
            )));
        };
        if payload[2] & QR == 0 {
            return Err(DnsError::Malformed(format!(
                "message from upstream {from} is not a response"
            )));
        }
        if payload[2] & OPCODE_MASK != 0 {
            return Err(DnsError::Malformed(format!(
                "response from {from} has a non-QUERY opcode"
            )));
        }
        let Some(&from_idx) = p
            .tried
            .iter()
            .find(|i| same_endpoint(self.upstream_at(**i), from))
        else {
            return Err(DnsError::Malformed(format!(
                "response id {uid} from {from}, which was not asked"
            )));
        };
        let r = parse(payload)?;
        if r.questions.len() != p.questions.len()
            || r.questions.iter().zip(&p.questions).any(|(a, b)| a != b)
        {
            return Err(DnsError::Malformed(format!(
                "response from {from} does not match the question asked"
            )));
        }
        let rcode = payload[3] & RCODE_MASK;
        if (rcode == RCODE_SERVFAIL || rcode == RCODE_REFUSED)
            && p.tried.len() < self.upstreams.len()
        {
            // This upstream cannot help; ask the next one straight away.
            return Ok(self.try_next(now, uid).into_iter().collect());
        }
        let Some(p) = self.remove(uid) else {
            return Err(DnsError::Malformed(format!(
                "response id {uid} matches no pending query"
            )));
        };
        if rcode != RCODE_SERVFAIL && rcode != RCODE_REFUSED {
            self.preferred = from_idx;
        }
        let mut response = payload.to_vec();
        response[..2].copy_from_slice(&p.client_id.to_be_bytes());
        Ok(vec![DnsAction::Reply {
            client: p.client,
            response,
        }])
    }

    /// Retries and SERVFAILs for queries whose time is up.
    pub fn poll_timeouts(&mut self, now: Instant) -> Vec<DnsAction> {
        let mut actions = Vec::new();
        while let Some(&(deadline, uid)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, uid));
            let untried = self
                .pending
                .get(&uid)
                .is_some_and(|p| p.tried.len() < self.upstreams.len());
            if untried {
                actions.extend(self.try_next(now, uid));
            } else if let Some(p) = self.remove(uid) {
                self.servfails += 1;
                let qdcount = u16::try_from(p.questions.len()).unwrap_or(u16::MAX);
                let response = servfail(p.client_id, p.flags, qdcount, &p.question);
                actions.push(DnsAction::Reply {
                    client: p.client,
                    response,
                });
            }
        }
        actions
    }

    /// The earliest instant at which an upstream's share or a query's budget runs out;
    /// the driver calls [`DnsForwarder::poll_timeouts`] then.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Number of queries waiting for an upstream.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    // ---- internals ----

    fn upstream_at(&self, i: usize) -> SocketAddr {
        // `i` always comes from `0..upstreams.len()`; fall back to the first rather than index.
        match self.upstreams.get(i).or(self.upstreams.first()) {
            Some(a) => *a,
            None => SocketAddr::from(([0, 0, 0, 0], 53)),
        }
    }

    /// Sends pending query `uid` to its next untried upstream.
    fn try_next(&mut self, now: Instant, uid: u16) -> Option<DnsAction> {
        let n = self.upstreams.len();
        let (old_deadline, next, attempts, final_deadline) = {
            let p = self.pending.get(&uid)?;
            let last = p.tried.last().copied().unwrap_or(0);
            let next = (1..=n)
                .map(|k| (last + k) % n)
                .find(|i| !p.tried.contains(i))?;
            (p.deadline, next, p.tried.len() + 1, p.final_deadline)
        };
        let deadline = self.attempt_deadline(now, attempts, final_deadline);
        let upstream = self.upstream_at(next);
        let p = self.pending.get_mut(&uid)?;
        p.tried.push(next);
        p.deadline = deadline;
        let query = p.query.clone();
        self.deadlines.remove(&(old_deadline, uid));
        self.deadlines.insert((deadline, uid));
        Some(DnsAction::SendUpstream { upstream, query })
    }

    /// The deadline for the `attempt`-th upstream (1-based): an even share of the budget, with the
    /// last attempt running to the end of the budget.
    fn attempt_deadline(&self, now: Instant, attempt: usize, final_deadline: Instant) -> Instant {
        let n = self.upstreams.len().max(1);
        if attempt >= n {
            return final_deadline;
        }
        let share = self.timeout / u32::try_from(n).unwrap_or(u32::MAX);
        add(now, share).min(final_deadline)
    }

    fn remove(&mut self, uid: u16) -> Option<Pending> {
        let p = self.pending.remove(&uid)?;
        self.deadlines.remove(&(p.deadline, uid));
        if let Some(n) = self.per_client.get_mut(&p.client.ip()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_client.remove(&p.client.ip());
            }
        }
        if self.by_client.get(&(p.client, p.client_id)) == Some(&uid) {
            self.by_client.remove(&(p.client, p.client_id));
        }
        Some(p)
    }

    /// A random id not used by any pending query.
    fn fresh_id(&mut self) -> u16 {
        for _ in 0..32 {
            let id = self.rng.next_u16();
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
        // The table is nearly full of collisions (cannot happen below the cap, but stay total).
        let start = self.rng.next_u16();
        (0..=u16::MAX)
            .map(|k| start.wrapping_add(k))
            .find(|id| !self.pending.contains_key(id))
            .unwrap_or(start)
    }
}

/// Parses the header and the question section.
fn parse(payload: &[u8]) -> Result<Parsed, DnsError> {
    if payload.len() < HEADER_LEN {
        return Err(DnsError::Malformed(format!(
            "{} bytes, shorter than a DNS header",
            payload.len()
        )));
    }
    let id = u16::from_be_bytes([payload[0], payload[1]]);
    let flags = [payload[2], payload[3]];
    let qdcount = u16::from_be_bytes([payload[4], payload[5]]);
    let mut d = BinDecoder::new(payload);
    d.read_slice(HEADER_LEN)
        .map_err(|e| DnsError::Malformed(format!("header: {e}")))?;
    let mut questions = Vec::with_capacity(usize::from(qdcount.min(4)));
    for n in 0..qdcount {
        let q = Query::read(&mut d)
            .map_err(|e| DnsError::Malformed(format!("question {}: {e}", n + 1)))?;
        questions.push(q);
    }
    Ok(Parsed {
        id,
        flags,
        qdcount,
        qend: d.index(),
        questions,
    })
}

/// Checks that the answer, authority and additional sections of a guest's query are well formed
/// (names, fixed fields, RDATA lengths) without interpreting any record.
fn check_records(payload: &[u8], qend: usize) -> Result<(), DnsError> {
    let count = |at: usize| usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
    let records = count(6) + count(8) + count(10);
    let mut d = BinDecoder::new(payload);
    d.read_slice(qend)
        .map_err(|e| DnsError::Malformed(format!("question section: {e}")))?;
    for n in 0..records {
        let bad = |e: hickory_proto::serialize::binary::DecodeError| {
            DnsError::Malformed(format!("record {}: {e}", n + 1))
        };
        Name::read(&mut d).map_err(bad)?;
        // type, class, TTL
        d.read_slice(8).map_err(bad)?;
        let rdlen = d.read_u16().map_err(bad)?.unverified(/* any length; read_slice checks it */);
        d.read_slice(usize::from(rdlen)).map_err(bad)?;
    }
    Ok(())
}

/// A SERVFAIL for a query: same id and opcode, RD and CD copied, RA set, the question echoed.
fn servfail(id: u16, flags: [u8; 2], qdcount: u16, question: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + question.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(QR | (flags[0] & (OPCODE_MASK | RD)));
    out.push(RA | (flags[1] & CD) | RCODE_SERVFAIL);
    out.extend_from_slice(&qdcount.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(question);
    out
}

/// Same address (IPv4-mapped IPv6 counts as IPv4; scope and flow info ignored) and port.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

fn add(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86400)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record, RecordType};
    use std::net::Ipv4Addr;

    const TIMEOUT: Duration = Duration::from_secs(6);

    fn up(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 53))
    }

    fn guest(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 2, 15], port))
    }

    fn query_msg(id: u16, name: &str, rtype: RecordType) -> Message {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        m
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = query_msg(id, name, RecordType::A);
        m.set_edns(Edns::new());
        m.to_vec().unwrap()
    }

    fn answer(id: u16, name: &str, rcode: ResponseCode) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.recursion_available = true;
        m.metadata.response_code = rcode;
        let n = Name::from_ascii(name).unwrap();
        m.add_query(Query::query(n.clone(), RecordType::A));
        if rcode == ResponseCode::NoError {
            m.add_answer(Record::from_rdata(
                n,
                300,
                RData::A(A(Ipv4Addr::new(198, 51, 100, 7))),
            ));
        }
        m.to_vec().unwrap()
    }

    fn fwd(n: usize) -> DnsForwarder {
        DnsForwarder::new((1..=n as u8).map(up).collect(), TIMEOUT, 42)
    }

    fn sent(actions: &[DnsAction]) -> (SocketAddr, Vec<u8>) {
        match actions {
            [DnsAction::SendUpstream { upstream, query }] => (*upstream, query.clone()),
            other => panic!("expected one SendUpstream, got {other:?}"),
        }
    }

    fn replied(actions: &[DnsAction]) -> (SocketAddr, Vec<u8>) {
        match actions {
            [DnsAction::Reply { client, response }] => (*client, response.clone()),
            other => panic!("expected one Reply, got {other:?}"),
        }
    }

    fn id_of(b: &[u8]) -> u16 {
        u16::from_be_bytes([b[0], b[1]])
    }

    fn with_id(b: &[u8], id: u16) -> Vec<u8> {
        let mut v = b.to_vec();
        v[..2].copy_from_slice(&id.to_be_bytes());
        v
    }

    fn check_servfail(resp: &[u8], id: u16, name: &str) {
        let m = Message::from_vec(resp).unwrap();
        assert_eq!(m.id, id);
        assert_eq!(m.message_type, MessageType::Response);
        assert_eq!(m.op_code, OpCode::Query);
        assert_eq!(m.response_code, ResponseCode::ServFail);
        assert!(m.recursion_available);
        assert!(m.recursion_desired);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].name, Name::from_ascii(name).unwrap());
        assert_eq!(m.queries[0].query_type, RecordType::A);
        assert!(m.answers.is_empty());
    }

    #[test]
    fn round_trip_rewrites_and_restores_id() {
        let mut f = fwd(2);
        let now = Instant::now();
        let q = query(0x1234, "example.com.");
        let (to, fq) = sent(&f.on_guest_query(now, guest(40000), &q).unwrap());
        assert_eq!(to, up(1));
        // Only the id differs; EDNS and everything else are the guest's bytes.
        assert_eq!(fq[2..], q[2..]);
        assert_eq!(f.pending(), 1);
        assert_eq!(f.next_deadline(), Some(now + TIMEOUT / 2));

        let a = answer(id_of(&fq), "example.com.", ResponseCode::NoError);
        let (client, resp) = replied(&f.on_upstream_response(now, up(1), &a).unwrap());
        assert_eq!(client, guest(40000));
        assert_eq!(id_of(&resp), 0x1234);
        assert_eq!(resp[2..], a[2..]);
        assert_eq!(f.pending(), 0);
        assert_eq!(f.next_deadline(), None);
        // A duplicate answer is now unsolicited.
        assert!(matches!(
            f.on_upstream_response(now, up(1), &a),
            Err(DnsError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_answers_pass_through() {
        let mut f = fwd(1);
        let now = Instant::now();
        let (_, fq) = sent(
            &f.on_guest_query(now, guest(1), &query(7, "big.example."))
                .unwrap(),
        );
        let mut m =
            Message::from_vec(&answer(id_of(&fq), "big.example.", ResponseCode::NoError)).unwrap();
        m.metadata.truncation = true;
        m.answers.clear();
        let a = m.to_vec().unwrap();
        let (_, resp) = replied(&f.on_upstream_response(now, up(1), &a).unwrap());
        assert_eq!(resp, with_id(&a, 7));
        assert!(Message::from_vec(&resp).unwrap().truncation);
    }

    #[test]
    fn spoofed_responses_rejected() {
        let mut f = fwd(2);
        let now = Instant::now();
        let (_, fq) = sent(
            &f.on_guest_query(now, guest(5353), &query(99, "bank.example."))
                .unwrap(),
        );
        let uid = id_of(&fq);
        let good = answer(uid, "bank.example.", ResponseCode::NoError);

        // Wrong source address, wrong port, an upstream not (yet) asked.
        for from in [
            SocketAddr::from(([203, 0, 113, 1], 53)),
            SocketAddr::from(([192, 0, 2, 1], 5353)),
            up(2),
        ] {
            assert!(
                matches!(
                    f.on_upstream_response(now, from, &good),
                    Err(DnsError::Malformed(_))
                ),
                "{from}"
            );
        }
        // Wrong id.
        let wrong_id = answer(uid.wrapping_add(1), "bank.example.", ResponseCode::NoError);
        assert!(matches!(
            f.on_upstream_response(now, up(1), &wrong_id),
            Err(DnsError::Malformed(_))
        ));
        // Wrong question (name, type).
        let wrong_q = answer(uid, "evil.example.", ResponseCode::NoError);
        assert!(matches!(
            f.on_upstream_response(now, up(1), &wrong_q),
            Err(DnsError::Malformed(_))
        ));
        let mut m = query_msg(uid, "bank.example.", RecordType::AAAA);
        m.metadata.message_type = MessageType::Response;
        assert!(matches!(
            f.on_upstream_response(now, up(1), &m.to_vec().unwrap()),
            Err(DnsError::Malformed(_))
        ));
        // No question at all.
        let m = Message::new(uid, MessageType::Response, OpCode::Query);
        assert!(matches!(
            f.on_upstream_response(now, up(1), &m.to_vec().unwrap()),
            Err(DnsError::Malformed(_))
        ));
        // The query echoed back (QR=0).
        assert!(matches!(
            f.on_upstream_response(now, up(1), &fq),
            Err(DnsError::Malformed(_))
        ));
        // Garbage and short datagrams.
        assert!(matches!(
            f.on_upstream_response(now, up(1), &[]),
            Err(DnsError::Malformed(_))
        ));
        assert!(matches!(
            f.on_upstream_response(now, up(1), &good[..11]),
            Err(DnsError::Malformed(_))
        ));
        assert!(matches!(
            f.on_upstream_response(now, up(1), &good[..20]),
            Err(DnsError::Malformed(_))
        ));

        // None of that disturbed the pending query; the real answer still goes through.
        assert_eq!(f.pending(), 1);
        let (client, resp) = replied(&f.on_upstream_response(now, up(1), &good).unwrap());
        assert_eq!((client, id_of(&resp)), (guest(5353), 99));
    }

    #[test]
    fn question_match_ignores_case() {
        let mut f = fwd(1);
        let now = Instant::now();
        let (_, fq) = sent(
            &f.on_guest_query(now, guest(1), &query(1, "Example.COM."))
                .unwrap(),
        );
        let a = answer(id_of(&fq), "example.com.", ResponseCode::NoError);
        assert!(f.on_upstream_response(now, up(1), &a).is_ok());
    }

    #[test]
    fn ipv4_mapped_source_accepted() {
        let mut f = fwd(1);
        let now = Instant::now();
        let (_, fq) = sent(
            &f.on_guest_query(now, guest(1), &query(1, "a.example."))
                .unwrap(),
        );
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:53".parse().unwrap();
        let a = answer(id_of(&fq), "a.example.", ResponseCode::NoError);
        assert!(f.on_upstream_response(now, mapped, &a).is_ok());
    }

    #[test]
    fn timeout_moves_to_next_upstream_then_servfails() {
        let mut f = fwd(3);
        let t0 = Instant::now();
        let share = TIMEOUT / 3;
        let (to, fq) = sent(
            &f.on_guest_query(t0, guest(33333), &query(0xbeef, "slow.example."))
                .unwrap(),
        );
        assert_eq!(to, up(1));
        assert!(f
            .poll_timeouts(t0 + share - Duration::from_millis(1))
            .is_empty());

        let (to, fq2) = sent(&f.poll_timeouts(t0 + share));
        assert_eq!(to, up(2));
        assert_eq!(fq2, fq, "the same bytes and id go to the next upstream");
        assert_eq!(f.next_deadline(), Some(t0 + share + share));

        let (to, _) = sent(&f.poll_timeouts(t0 + share * 2));
        assert_eq!(to, up(3));
        // The last upstream runs to the end of the whole budget.
        assert_eq!(f.next_deadline(), Some(t0 + TIMEOUT));
        assert!(f
            .poll_timeouts(t0 + TIMEOUT - Duration::from_millis(1))
            .is_empty());

        let (client, resp) = replied(&f.poll_timeouts(t0 + TIMEOUT));
        assert_eq!(client, guest(33333));
        check_servfail(&resp, 0xbeef, "slow.example.");
        assert_eq!(f.pending(), 0);
        assert_eq!(f.next_deadline(), None);
        assert_eq!(f.servfails(), 1);
        assert!(f.poll_timeouts(t0 + TIMEOUT * 10).is_empty());
    }

    #[test]
    fn late_answer_from_earlier_upstream_accepted() {
        let mut f = fwd(2);
        let t0 = Instant::now();
        let (_, fq) = sent(
            &f.on_guest_query(t0, guest(1), &query(5, "late.example."))
                .unwrap(),
        );
        let (to, _) = sent(&f.poll_timeouts(t0 + TIMEOUT / 2));
        assert_eq!(to, up(2));
        let a = answer(id_of(&fq), "late.example.", ResponseCode::NoError);
        let (_, resp) = replied(&f.on_upstream_response(t0 + TIMEOUT / 2, up(1), &a).unwrap());
        assert_eq!(id_of(&resp), 5);
        // up(1) answered, so it stays first for the next query.
        let (to, _) = sent(
            &f.on_guest_query(t0, guest(1), &query(6, "next.example."))
                .unwrap(),
        );
        assert_eq!(to, up(1));
    }

    #[test]
    fn servfail_or_refused_tries_next_upstream() {
        let mut f = fwd(2);
        let now = Instant::now();
        let (_, fq) = sent(
            &f.on_guest_query(now, guest(1), &query(77, "x.example."))
                .unwrap(),
        );
        let uid = id_of(&fq);
        let (to, again) = sent(
            &f.on_upstream_response(
                now,
                up(1),
                &answer(uid, "x.example.", ResponseCode::Refused),
            )
            .unwrap(),
        );
        assert_eq!(to, up(2));
        assert_eq!(again, fq);
        // The second upstream's SERVFAIL is the last word: passed to the guest.
        let sf = answer(uid, "x.example.", ResponseCode::ServFail);
        let (_, resp) = replied(&f.on_upstream_response(now, up(2), &sf).unwrap());
        assert_eq!(resp, with_id(&sf, 77));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn good_upstream_becomes_preferred() {
        let mut f = fwd(2);
        let t0 = Instant::now();
        let (_, fq) = sent(
            &f.on_guest_query(t0, guest(1), &query(1, "a.example."))
                .unwrap(),
        );
        sent(&f.poll_timeouts(t0 + TIMEOUT / 2));
        let a = answer(id_of(&fq), "a.example.", ResponseCode::NoError);
        assert_eq!(f.preferred_upstream(), Some(up(1)));
        f.on_upstream_response(t0 + TIMEOUT / 2, up(2), &a).unwrap();
        assert_eq!(f.preferred_upstream(), Some(up(2)));
        let (to, _) = sent(
            &f.on_guest_query(t0 + TIMEOUT, guest(1), &query(2, "b.example."))
                .unwrap(),
        );
        assert_eq!(to, up(2));
        // And the one after it is tried next, wrapping around.
        let (to, _) = sent(&f.poll_timeouts(t0 + TIMEOUT + TIMEOUT / 2));
        assert_eq!(to, up(1));
    }

    #[test]
    fn single_upstream_gets_whole_budget() {
        let mut f = fwd(1);
        let t0 = Instant::now();
        sent(
            &f.on_guest_query(t0, guest(1), &query(3, "one.example."))
                .unwrap(),
        );
        assert_eq!(f.next_deadline(), Some(t0 + TIMEOUT));
        let (_, resp) = replied(&f.poll_timeouts(t0 + TIMEOUT));
        check_servfail(&resp, 3, "one.example.");
    }

    #[test]
    fn no_upstream_servfails_at_once() {
        let mut f = DnsForwarder::new(Vec::new(), TIMEOUT, 3);
        let now = Instant::now();
        let (client, resp) = replied(
            &f.on_guest_query(now, guest(9), &query(0x4242, "any.example."))
                .unwrap(),
        );
        assert_eq!(client, guest(9));
        check_servfail(&resp, 0x4242, "any.example.");
        assert_eq!(f.pending(), 0);
        assert_eq!(f.next_deadline(), None);
        assert_eq!(f.servfails(), 1);
        assert_eq!(f.preferred_upstream(), None);
        // Still validates input first.
        assert!(f.on_guest_query(now, guest(9), b"junk").is_err());
    }

    #[test]
    fn servfail_copies_cd_and_echoes_all_questions() {
        let mut m = query_msg(11, "cd.example.", RecordType::A);
        m.metadata.checking_disabled = true;
        m.metadata.recursion_desired = false;
        m.add_query(Query::query(
            Name::from_ascii("second.example.").unwrap(),
            RecordType::MX,
        ));
        let mut f = DnsForwarder::new(Vec::new(), TIMEOUT, 3);
        let (_, resp) = replied(
            &f.on_guest_query(Instant::now(), guest(1), &m.to_vec().unwrap())
                .unwrap(),
        );
        let r = Message::from_vec(&resp).unwrap();
        assert!(r.checking_disabled);
        assert!(!r.recursion_desired);
        assert_eq!(r.queries.len(), 2);
        assert_eq!(r.queries[1].query_type, RecordType::MX);
    }

    #[test]
    fn malformed_queries_rejected() {
        let mut f = fwd(1);
        let now = Instant::now();
        let c = guest(1);
        assert!(matches!(
            f.on_guest_query(now, c, &[]),
            Err(DnsError::Malformed(_))
        ));
        assert!(matches!(
            f.on_guest_query(now, c, &[1, 2, 3]),
            Err(DnsError::Malformed(_))
        ));
        let q = query(1, "t.example.");
        for cut in 0..q.len() {
            // Any cut, in the header, the question or the EDNS record, is an error.
            assert!(f.on_guest_query(now, c, &q[..cut]).is_err(), "cut at {cut}");
        }
        // Trailing bytes after the last record are tolerated (forwarded as they are).
        let mut padded = q.clone();
        padded.extend([0, 0]);
        assert!(f.on_guest_query(now, c, &padded).is_ok());
        // An OPT record whose RDATA length runs past the end is not.
        let mut long = q.clone();
        let n = long.len();
        long[n - 1] = 5;
        assert!(matches!(
            f.on_guest_query(now, c, &long),
            Err(DnsError::Malformed(_))
        ));
        f = fwd(1);
        // A response instead of a query.
        let resp = answer(1, "t.example.", ResponseCode::NoError);
        assert_eq!(f.on_guest_query(now, c, &resp), Err(DnsError::NotAQuery));
        // Other opcodes (NOTIFY, UPDATE).
        for op in [OpCode::Notify, OpCode::Update, OpCode::Status] {
            let mut m = query_msg(1, "t.example.", RecordType::A);
            m.metadata.op_code = op;
            let mut b = m.to_vec().unwrap();
            // Set the opcode bits directly in case the encoder normalises them.
            b[2] = (b[2] & !OPCODE_MASK) | (u8::from(op) << 3);
            assert_eq!(
                f.on_guest_query(now, c, &b),
                Err(DnsError::NotAQuery),
                "{op:?}"
            );
        }
        // Zero questions.
        let m = Message::new(1, MessageType::Query, OpCode::Query);
        assert!(matches!(
            f.on_guest_query(now, c, &m.to_vec().unwrap()),
            Err(DnsError::Malformed(_))
        ));
        // A question count larger than the questions present.
        let mut b = query_msg(1, "t.example.", RecordType::A).to_vec().unwrap();
        b[5] = 2;
        assert!(matches!(
            f.on_guest_query(now, c, &b),
            Err(DnsError::Malformed(_))
        ));
        // A compression pointer loop in the name.
        let mut b = vec![0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        b.extend([0xc0, 12, 0, 1, 0, 1]);
        assert!(matches!(
            f.on_guest_query(now, c, &b),
            Err(DnsError::Malformed(_))
        ));
        assert_eq!(f.pending(), 0);
        for e in [
            DnsError::Malformed("x".into()),
            DnsError::NotAQuery,
            DnsError::NoUpstream,
            DnsError::TooManyPending,
        ] {
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn many_queries_get_distinct_ids() {
        let mut f = fwd(2);
        let now = Instant::now();
        let mut ids = std::collections::HashSet::new();
        for n in 0..MAX_PENDING {
            // Every guest uses the same id; the upstream ids must still all differ.
            let (_, fq) = sent(
                &f.on_guest_query(
                    now,
                    guest(1024 + (n % 60000) as u16),
                    &query(1, "same.example."),
                )
                .unwrap(),
            );
            assert!(ids.insert(id_of(&fq)), "id reused after {n} queries");
        }
        assert_eq!(f.pending(), MAX_PENDING);
        assert_eq!(
            f.on_guest_query(now, guest(9), &query(2, "one.more.")),
            Err(DnsError::TooManyPending)
        );
        // Each answer goes back to its own client.
        let fq_for = |f: &DnsForwarder, port: u16| *f.by_client.get(&(guest(port), 1)).unwrap();
        let uid = fq_for(&f, 1024 + 17);
        let (client, resp) = replied(
            &f.on_upstream_response(
                now,
                up(1),
                &answer(uid, "same.example.", ResponseCode::NoError),
            )
            .unwrap(),
        );
        assert_eq!((client, id_of(&resp)), (guest(1024 + 17), 1));
        // Timeouts drain everything to SERVFAILs.
        let mut total = 0;
        for k in 1..=2 {
            total += f
                .poll_timeouts(now + TIMEOUT * k)
                .iter()
                .filter(|a| matches!(a, DnsAction::Reply { .. }))
                .count();
        }
        assert_eq!(total, MAX_PENDING - 1);
        assert_eq!(f.pending(), 0);
        assert!(f.by_client.is_empty());
        assert!(f.deadlines.is_empty());
    }

    #[test]
    fn ids_look_random() {
        let mut f = fwd(1);
        let now = Instant::now();
        let ids: Vec<u16> = (0..64u16)
            .map(|n| {
                id_of(
                    &sent(
                        &f.on_guest_query(now, guest(n + 1), &query(n, "r.example."))
                            .unwrap(),
                    )
                    .1,
                )
            })
            .collect();
        // Not the guest's ids, not sequential.
        assert!(
            ids.iter()
                .enumerate()
                .filter(|(n, id)| **id == *n as u16)
                .count()
                < 2
        );
        assert!(
            ids.windows(2)
                .filter(|w| w[1] == w[0].wrapping_add(1))
                .count()
                < 2
        );
        // Two forwarders with different seeds pick different ids.
        let mut a = DnsForwarder::new(vec![up(1)], TIMEOUT, 1);
        let mut b = DnsForwarder::new(vec![up(1)], TIMEOUT, 2);
        let ia: Vec<u16> = (0..4).map(|_| a.fresh_id()).collect();
        let ib: Vec<u16> = (0..4).map(|_| b.fresh_id()).collect();
        assert_ne!(ia, ib);
    }

    #[test]
    fn retransmission_is_resent_not_duplicated() {
        let mut f = fwd(2);
        let now = Instant::now();
        let q = query(21, "retry.example.");
        let (to1, fq1) = sent(&f.on_guest_query(now, guest(7), &q).unwrap());
        let (to2, fq2) = sent(&f.on_guest_query(now, guest(7), &q).unwrap());
        assert_eq!((to1, &fq1), (to2, &fq2));
        assert_eq!(f.pending(), 1);
        // After moving on to the second upstream, a retransmission goes there.
        sent(&f.poll_timeouts(now + TIMEOUT / 2));
        let (to3, _) = sent(&f.on_guest_query(now, guest(7), &q).unwrap());
        assert_eq!(to3, up(2));
        // Same id but a different question from the same client is a new query.
        let (_, fq4) = sent(
            &f.on_guest_query(now, guest(7), &query(21, "other.example."))
                .unwrap(),
        );
        assert_ne!(id_of(&fq4), id_of(&fq1));
        assert_eq!(f.pending(), 2);
        // Both complete independently.
        let (_, r1) = replied(
            &f.on_upstream_response(
                now,
                up(1),
                &answer(id_of(&fq1), "retry.example.", ResponseCode::NoError),
            )
            .unwrap(),
        );
        let (_, r4) = replied(
            &f.on_upstream_response(
                now,
                up(1),
                &answer(id_of(&fq4), "other.example.", ResponseCode::NoError),
            )
            .unwrap(),
        );
        assert_eq!((id_of(&r1), id_of(&r4)), (21, 21));
        assert_eq!(f.pending(), 0);
        assert!(f.by_client.is_empty());
    }

    #[test]
    fn zero_timeout_does_not_spin() {
        let mut f = DnsForwarder::new(vec![up(1), up(2)], Duration::ZERO, 1);
        let now = Instant::now();
        sent(
            &f.on_guest_query(now, guest(1), &query(1, "z.example."))
                .unwrap(),
        );
        let acts = f.poll_timeouts(now);
        assert_eq!(acts.len(), 2, "{acts:?}");
        assert!(matches!(acts[0], DnsAction::SendUpstream { upstream, .. } if upstream == up(2)));
        assert!(matches!(acts[1], DnsAction::Reply { .. }));
        assert_eq!(f.pending(), 0);
    }

    /// xorshift64*, deterministic.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn fuzz_no_panic() {
        let mut f = fwd(3);
        f.set_max_pending(64);
        let mut rng = Rng(0x1234_5678_9abc_def0);
        let t0 = Instant::now();
        let seeds = [
            query(1, "a.example."),
            answer(1, "a.example.", ResponseCode::NoError),
            query_msg(2, "b.example.", RecordType::TXT)
                .to_vec()
                .unwrap(),
        ];
        let mut ids: Vec<u16> = Vec::new();
        for i in 0..30_000u64 {
            let now = t0 + Duration::from_millis(i * 7);
            let mut buf: Vec<u8> = match rng.next() % 3 {
                0 => (0..rng.next() % 80).map(|_| rng.next() as u8).collect(),
                1 => {
                    let s = &seeds[(rng.next() % 3) as usize];
                    s[..(rng.next() as usize % (s.len() + 1))].to_vec()
                }
                _ => {
                    let mut s = seeds[(rng.next() % 3) as usize].clone();
                    for _ in 0..rng.next() % 6 {
                        let at = rng.next() as usize % s.len();
                        s[at] = rng.next() as u8;
                    }
                    s
                }
            };
            if rng.next().is_multiple_of(2) {
                if let Ok(acts) = f.on_guest_query(now, guest((rng.next() % 4) as u16), &buf) {
                    for a in acts {
                        if let DnsAction::SendUpstream { query, .. } = a {
                            ids.push(id_of(&query));
                        }
                    }
                }
            } else {
                // Sometimes aim at a live id so deeper checks run.
                if buf.len() >= 2 && !ids.is_empty() && rng.next().is_multiple_of(2) {
                    let id = ids[(rng.next() as usize) % ids.len()];
                    buf[..2].copy_from_slice(&id.to_be_bytes());
                }
                let _ = f.on_upstream_response(now, up((rng.next() % 4) as u8), &buf);
            }
            let _ = f.poll_timeouts(now);
            assert_eq!(f.pending.len(), f.deadlines.len());
            assert!(f.pending() <= 64);
        }
    }
}
