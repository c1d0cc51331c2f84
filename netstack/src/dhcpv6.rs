//! DHCPv6 server (RFC 8415) built on `dhcproto::v6`, sans-IO.
//!
//! [`Dhcpv6Server::handle`] takes one UDP payload a guest sent to port 547, with the guest's
//! Ethernet source MAC, its IPv6 source address and the time, and returns the reply (to the
//! guest's address, port 546), if one is due.
//!
//! * Stateless: Information-Request → Reply with DNS servers (option 23), the domain search list
//!   (24) and an information refresh time (32).
//! * Stateful IA_NA: Solicit → Advertise (or Reply with Rapid Commit, when both sides want it),
//!   Request → Reply, Renew and Rebind extend, Release frees, Decline quarantines the address for
//!   [`DECLINE_HOLD`], Confirm says whether the client's addresses are on the link.
//! * Every (DUID, IAID) gets a stable address: its hash picks a slot in the pool, so the same
//!   client gets the same address after a release or a gateway restart (the hash key is
//!   [`Dhcpv6Config::hash_key`]; keep it constant). Distinct (DUID, IAID) pairs never hold the
//!   same address. The pool is `prefix::1:0`–`prefix::1:ffff` on prefixes of /104 or shorter
//!   (interface ids no SLAAC address has: not EUI-64, and random ones land there with
//!   probability 2^-48), otherwise the small prefix's addresses from `::10` (or `::1` on tiny
//!   ones); never the router, DNS, subnet-router anycast or slirp4netns' `::100` address.
//! * The lease table is bounded ([`Dhcpv6Config::max_leases`]): expired or released leases stay
//!   as preferences and the oldest of them is forgotten first.
//! * The server DUID is DUID-LL (type 3) of the gateway MAC.
//!
//! `dhcproto`'s decoder trusts some lengths (it subtracts from a Status Code, Vendor Class or
//! Authentication option length without checking, and recurses into nested options without a
//! bound), so guest bytes never reach it unfiltered: [`sanitize`] copies only the options the
//! server reads, each with a checked length, with at most one level of IA_NA → IAAddr nesting.

use crate::addr6::Plan6;
use crate::wire::icmpv6::{encode_name, valid_domain};
use crate::{Instant, Mac};
use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, Message, MessageType, OptionCode, Status, StatusCode,
    UnknownOption, IANA,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::Hasher;
use std::net::Ipv6Addr;
use std::time::Duration;

/// The UDP port the DHCPv6 server listens on (547).
pub const SERVER_PORT: u16 = 547;
/// The UDP port DHCPv6 clients listen on (546).
pub const CLIENT_PORT: u16 = 546;
/// How long an Advertise reserves its address for the client.
pub const OFFER_HOLD: Duration = Duration::from_secs(60);
/// How long an address a client declined stays out of the pool.
pub const DECLINE_HOLD: Duration = Duration::from_secs(600);
/// Default bound of the lease table.
pub const MAX_LEASES: usize = 4096;
/// The most IA_NA options and addresses per IA_NA read from one message.
const MAX_IAS: usize = 8;
const MAX_IA_ADDRS: usize = 8;
/// A DUID is at most 128 bytes after its 2-byte type (RFC 8415 §11.1).
const MAX_DUID_LEN: usize = 130;

const OPT_CLIENT_ID: u16 = 1;
const OPT_SERVER_ID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ORO: u16 = 6;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_RAPID_COMMIT: u16 = 14;
const OPT_DOMAIN_LIST: u16 = 24;

/// Server settings.
#[derive(Clone, Debug)]
pub struct Dhcpv6Config {
    /// The IPv6 addresses (router, DNS, pool) the server hands out from.
    pub plan: Plan6,
    /// Option 23 (default: the plan's DNS address).
    pub dns_servers: Vec<Ipv6Addr>,
    /// Option 24 (invalid names are left out).
    pub domains: Vec<String>,
    /// Preferred lifetime of leased addresses (default 12 h).
    pub preferred_lifetime: Duration,
    /// Valid lifetime of leased addresses (default 24 h).
    pub valid_lifetime: Duration,
    /// Answer a Solicit carrying Rapid Commit with a Reply at once.
    pub rapid_commit: bool,
    /// Option 32 in Information-Request replies.
    pub info_refresh: Duration,
    /// Key of the address hash; constant across restarts keeps addresses stable.
    pub hash_key: u64,
    /// Most leases kept (default `MAX_LEASES`).
    pub max_leases: usize,
}

impl Dhcpv6Config {
    /// Default settings for `plan`: its DNS address, no domains, 12 h/24 h lifetimes, Rapid Commit on, 24 h refresh, hash key from the router MAC.
    pub fn new(plan: Plan6) -> Self {
        let dns = plan.dns;
        let mac = plan.router_mac;
        Dhcpv6Config {
            plan,
            dns_servers: vec![dns],
            domains: Vec::new(),
            preferred_lifetime: Duration::from_secs(43200),
            valid_lifetime: Duration::from_secs(86400),
            rapid_commit: true,
            info_refresh: Duration::from_secs(86400),
            hash_key: u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]),
            max_leases: MAX_LEASES,
        }
    }
}

/// A reply: UDP payload from port 547 to the client's port 546.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dhcpv6Reply {
    /// The DHCPv6 message.
    pub payload: Vec<u8>,
    /// The client's (link-local) address.
    pub dst: Ipv6Addr,
    /// The client's MAC.
    pub dst_mac: Mac,
}

/// Why a message was ignored (counted as a DHCPv6 drop).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dhcpv6Error {
    /// The message did not parse; the text says why.
    Malformed(String),
    /// A server or relay message type from a guest.
    NotClientMessage(u8),
}

impl std::fmt::Display for Dhcpv6Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dhcpv6Error::Malformed(why) => write!(f, "malformed DHCPv6 message: {why}"),
            Dhcpv6Error::NotClientMessage(t) => {
                write!(f, "DHCPv6 message type {t} is not a client message")
            }
        }
    }
}

impl std::error::Error for Dhcpv6Error {}

fn malformed(s: impl Into<String>) -> Dhcpv6Error {
    Dhcpv6Error::Malformed(s.into())
}

/// One lease as reported to the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease6 {
    /// The client's DUID.
    pub duid: Vec<u8>,
    /// The IA_NA's identity association ID.
    pub iaid: u32,
    /// The leased address.
    pub addr: Ipv6Addr,
    /// The MAC the client sent from.
    pub mac: Mac,
    /// When the lease runs out.
    pub expires: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Advertised(Instant),
    Bound(Instant),
    /// Released or run out: a preference only.
    Free,
}

#[derive(Clone, Debug)]
struct Binding {
    addr: Ipv6Addr,
    mac: Mac,
    state: State,
    touched: Instant,
}

impl Binding {
    fn active_until(&self, now: Instant) -> Option<Instant> {
        match self.state {
            State::Advertised(t) | State::Bound(t) if t > now => Some(t),
            _ => None,
        }
    }
}

type Key = (Vec<u8>, u32);

/// The parts of a validated client message the server reads.
struct Request {
    kind: MessageType,
    xid: [u8; 3],
    client_id: Option<Vec<u8>>,
    server_id: Option<Vec<u8>>,
    /// (IAID, addresses the client listed).
    ias: Vec<(u32, Vec<Ipv6Addr>)>,
    rapid_commit: bool,
}

/// A stateful DHCPv6 server (IA_NA addresses, Information-Request) for the guests; sans-IO, time passed in.
pub struct Dhcpv6Server {
    cfg: Dhcpv6Config,
    duid: Vec<u8>,
    bindings: HashMap<Key, Binding>,
    by_addr: HashMap<Ipv6Addr, Key>,
    declined: HashMap<Ipv6Addr, Instant>,
    last_now: Option<Instant>,
}

impl Dhcpv6Server {
    /// A server with no leases; its DUID is DUID-LL from the router MAC.
    pub fn new(cfg: Dhcpv6Config) -> Self {
        let m = cfg.plan.router_mac;
        // DUID-LL: type 3, hardware type 1 (Ethernet), the MAC.
        let duid = vec![0, 3, 0, 1, m[0], m[1], m[2], m[3], m[4], m[5]];
        Dhcpv6Server {
            cfg,
            duid,
            bindings: HashMap::new(),
            by_addr: HashMap::new(),
            declined: HashMap::new(),
            last_now: None,
        }
    }

    /// The server's DUID (DUID-LL of the gateway MAC).
    pub fn duid(&self) -> &[u8] {
        &self.duid
    }

    /// Handles one message from a guest. `Ok(None)`: nothing to send (not for us, or no reply
    /// due).
    pub fn handle(
        &mut self,
        now: Instant,
        client_mac: Mac,
        src: Ipv6Addr,
        payload: &[u8],
    ) -> Result<Option<Dhcpv6Reply>, Dhcpv6Error> {
        self.advance(now);
        if src.is_unspecified() || src.is_multicast() {
            return Err(malformed(format!("source address {src}")));
        }
        let req = parse_request(payload)?;
        let ours = |sid: &Option<Vec<u8>>| sid.as_deref() == Some(&self.duid[..]);
        let need_client = |r: &Request| -> Result<Vec<u8>, Dhcpv6Error> {
            r.client_id
                .clone()
                .ok_or_else(|| malformed(format!("{:?} without a client id", r.kind)))
        };
        let reply = match req.kind {
            MessageType::Solicit => {
                let duid = need_client(&req)?;
                if req.server_id.is_some() {
                    return Err(malformed("Solicit with a server id"));
                }
                self.solicit(now, client_mac, &req, duid)?
            }
            MessageType::Request
            | MessageType::Renew
            | MessageType::Release
            | MessageType::Decline => {
                let duid = need_client(&req)?;
                match &req.server_id {
                    None => return Err(malformed(format!("{:?} without a server id", req.kind))),
                    Some(_) if !ours(&req.server_id) => return Ok(None),
                    Some(_) => {}
                }
                match req.kind {
                    MessageType::Request => self.request(now, client_mac, &req, duid)?,
                    MessageType::Renew => self.renew(now, client_mac, &req, duid, false)?,
                    MessageType::Release => self.release(now, &req, duid)?,
                    _ => self.decline(now, &req, duid)?,
                }
            }
            MessageType::Rebind | MessageType::Confirm => {
                let duid = need_client(&req)?;
                if req.server_id.is_some() {
                    return Err(malformed(format!("{:?} with a server id", req.kind)));
                }
                if req.kind == MessageType::Rebind {
                    self.renew(now, client_mac, &req, duid, true)?
                } else {
                    match self.confirm(&req, duid)? {
                        Some(m) => m,
                        None => return Ok(None),
                    }
                }
            }
            MessageType::InformationRequest => {
                if req.server_id.is_some() && !ours(&req.server_id) {
                    return Ok(None);
                }
                if !req.ias.is_empty() {
                    return Err(malformed("Information-Request with an IA_NA"));
                }
                let mut m = self.reply_base(MessageType::Reply, &req, req.client_id.clone());
                self.add_config(&mut m);
                let refresh = secs(self.cfg.info_refresh);
                m.opts_mut()
                    .insert(DhcpOption::InformationRefreshTime(refresh));
                m
            }
            other => return Err(Dhcpv6Error::NotClientMessage(u8::from(other))),
        };
        let mut payload = Vec::with_capacity(128);
        reply
            .encode(&mut Encoder::new(&mut payload))
            .map_err(|e| malformed(format!("reply does not encode: {e}")))?;
        Ok(Some(Dhcpv6Reply {
            payload,
            dst: src,
            dst_mac: client_mac,
        }))
    }

    /// Moves time forward for the accessors; drops lapsed declines.
    pub fn advance(&mut self, now: Instant) {
        if self.last_now.is_none_or(|t| now > t) {
            self.last_now = Some(now);
        }
        self.declined.retain(|_, until| *until > now);
    }

    /// Leases and outstanding advertisements in force as of the latest time seen, by address.
    pub fn leases(&self) -> Vec<Lease6> {
        let Some(now) = self.last_now else {
            return Vec::new();
        };
        let mut v: Vec<Lease6> = self
            .bindings
            .iter()
            .filter_map(|((duid, iaid), b)| {
                Some(Lease6 {
                    duid: duid.clone(),
                    iaid: *iaid,
                    addr: b.addr,
                    mac: b.mac,
                    expires: b.active_until(now)?,
                })
            })
            .collect();
        v.sort_by_key(|l| l.addr);
        v
    }

    /// The MAC holding `addr` (leased or advertised), as of the latest time seen.
    pub fn mac_for_addr(&self, addr: Ipv6Addr) -> Option<Mac> {
        let now = self.last_now?;
        let b = self.bindings.get(self.by_addr.get(&addr)?)?;
        b.active_until(now).map(|_| b.mac)
    }

    /// Entries in the lease table (active or preference).
    pub fn table_len(&self) -> usize {
        self.bindings.len()
    }

    // ---- the pool ----

    /// (first interface id, number of ids) of the pool.
    fn pool_range(&self) -> (u128, u128) {
        let h = self.cfg.plan.net.host_bits();
        if h >= 24 {
            (0x1_0000, 0x1_0000)
        } else if h > 4 {
            (0x10, (1u128 << h) - 0x10)
        } else {
            (1, (1u128 << h) - 1)
        }
    }

    fn in_pool(&self, a: Ipv6Addr) -> bool {
        let p = &self.cfg.plan;
        let (base, size) = self.pool_range();
        let off = p.net.host_part(a);
        p.net.contains(a)
            && off >= base
            && off - base < size
            && !p.is_own(&a)
            && a != p.namespace_addr()
            && a != p.net.addr()
    }

    /// Whether `key` may take `a` now: in the pool, not declined, not another key's active
    /// lease or advertisement.
    fn available_for(&self, now: Instant, key: &Key, a: Ipv6Addr) -> bool {
        if !self.in_pool(a) || self.declined.get(&a).is_some_and(|t| *t > now) {
            return false;
        }
        match self.by_addr.get(&a) {
            Some(owner) if owner != key => self
                .bindings
                .get(owner)
                .is_none_or(|b| b.active_until(now).is_none()),
            _ => true,
        }
    }

    fn hash_slot(&self, key: &Key, size: u128) -> u128 {
        let mut h = DefaultHasher::new();
        h.write_u64(self.cfg.hash_key);
        h.write(&key.0);
        h.write_u32(key.1);
        u128::from(h.finish()) % size
    }

    /// The address for `key`: its current or preferred one if still available, else the first
    /// free slot from its hash, else the first slot that is only someone's preference.
    fn allocate(&self, now: Instant, key: &Key) -> Option<Ipv6Addr> {
        if let Some(b) = self.bindings.get(key) {
            if self.available_for(now, key, b.addr) {
                return Some(b.addr);
            }
        }
        let (base, size) = self.pool_range();
        if size == 0 {
            return None;
        }
        let start = self.hash_slot(key, size);
        // Every slot that is not free is in `by_addr`, `declined` or one of the handful of
        // reserved addresses, so this many probes reach a free one if any exists.
        let limit = (self.by_addr.len() + self.declined.len() + 8).min(usize::MAX / 2) as u128;
        let mut fallback = None;
        for i in 0..limit.min(size) {
            let a = self.cfg.plan.net.host(base + (start + i) % size);
            if !self.in_pool(a) || self.declined.get(&a).is_some_and(|t| *t > now) {
                continue;
            }
            match self.by_addr.get(&a) {
                None => return Some(a),
                Some(owner) if owner == key => return Some(a),
                Some(owner) => {
                    let active = self
                        .bindings
                        .get(owner)
                        .is_some_and(|b| b.active_until(now).is_some());
                    if !active && fallback.is_none() {
                        fallback = Some(a);
                    }
                }
            }
        }
        fallback
    }

    /// Binds `key` to `a` in `state`; false when the table is full of active leases.
    fn bind(&mut self, now: Instant, key: &Key, mac: Mac, a: Ipv6Addr, state: State) -> bool {
        if let Some(owner) = self.by_addr.get(&a).cloned() {
            if &owner != key {
                self.bindings.remove(&owner);
            }
        }
        if !self.bindings.contains_key(key)
            && self.bindings.len() >= self.cfg.max_leases
            && !self.forget_oldest_preference(now)
        {
            return false;
        }
        let b = self.bindings.entry(key.clone()).or_insert(Binding {
            addr: a,
            mac,
            state,
            touched: now,
        });
        if b.addr != a {
            self.by_addr.remove(&b.addr);
        }
        b.addr = a;
        b.mac = mac;
        b.state = state;
        b.touched = now;
        self.by_addr.insert(a, key.clone());
        true
    }

    fn forget_oldest_preference(&mut self, now: Instant) -> bool {
        let oldest = self
            .bindings
            .iter()
            .filter(|(_, b)| b.active_until(now).is_none())
            // Ties broken by key, not by the map's random iteration order.
            .min_by(|(ka, a), (kb, b)| (a.touched, *ka).cmp(&(b.touched, *kb)))
            .map(|(k, b)| (k.clone(), b.addr));
        match oldest {
            Some((k, a)) => {
                self.bindings.remove(&k);
                if self.by_addr.get(&a) == Some(&k) {
                    self.by_addr.remove(&a);
                }
                true
            }
            None => false,
        }
    }

    // ---- replies ----

    fn reply_base(&self, kind: MessageType, req: &Request, client: Option<Vec<u8>>) -> Message {
        let mut m = Message::new_with_id(kind, req.xid);
        m.opts_mut().insert(DhcpOption::ServerId(self.duid.clone()));
        if let Some(c) = client {
            m.opts_mut().insert(DhcpOption::ClientId(c));
        }
        m
    }

    fn add_config(&self, m: &mut Message) {
        if !self.cfg.dns_servers.is_empty() {
            m.opts_mut()
                .insert(DhcpOption::DomainNameServers(self.cfg.dns_servers.clone()));
        }
        // Encoded here, uncompressed (RFC 8415 §10): dhcproto's encoder would let the DNS
        // library compress repeated suffixes.
        let mut names = Vec::new();
        for d in self.cfg.domains.iter().filter(|d| valid_domain(d)) {
            encode_name(&mut names, d);
        }
        if !names.is_empty() && names.len() <= usize::from(u16::MAX) {
            m.opts_mut().insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::from(OPT_DOMAIN_LIST),
                names,
            )));
        }
    }

    fn ia_with(&self, iaid: u32, addrs: Vec<(Ipv6Addr, u32, u32)>) -> DhcpOption {
        let pref = secs(self.cfg.preferred_lifetime.min(self.cfg.valid_lifetime));
        let mut opts = DhcpOptions::new();
        for (a, p, v) in addrs {
            opts.insert(DhcpOption::IAAddr(IAAddr {
                addr: a,
                preferred_life: p,
                valid_life: v,
                opts: DhcpOptions::new(),
            }));
        }
        DhcpOption::IANA(IANA {
            id: iaid,
            // RFC 8415 §21.4: T1 0.5 and T2 0.8 of the preferred lifetime.
            t1: pref / 2,
            t2: pref / 5 * 4,
            opts,
        })
    }

    fn ia_status(iaid: u32, status: Status, msg: &str) -> DhcpOption {
        let mut opts = DhcpOptions::new();
        opts.insert(DhcpOption::StatusCode(StatusCode {
            status,
            msg: msg.into(),
        }));
        DhcpOption::IANA(IANA {
            id: iaid,
            t1: 0,
            t2: 0,
            opts,
        })
    }

    fn lifetimes(&self) -> (u32, u32) {
        let v = secs(self.cfg.valid_lifetime);
        (secs(self.cfg.preferred_lifetime).min(v), v)
    }

    fn solicit(
        &mut self,
        now: Instant,
        mac: Mac,
        req: &Request,
        duid: Vec<u8>,
    ) -> Result<Message, Dhcpv6Error> {
        let commit = req.rapid_commit && self.cfg.rapid_commit;
        let mut ias = Vec::new();
        let mut granted = 0;
        for (iaid, _) in &req.ias {
            let key = (duid.clone(), *iaid);
            let state = match self.bindings.get(&key) {
                _ if commit => State::Bound(now + self.cfg.valid_lifetime),
                // A client that holds a lease and solicits again keeps its lease.
                Some(b) if matches!(b.state, State::Bound(t) if t > now) => b.state,
                _ => State::Advertised(now + OFFER_HOLD),
            };
            match self.allocate(now, &key) {
                Some(a) if self.bind(now, &key, mac, a, state) => {
                    let (p, v) = self.lifetimes();
                    ias.push(self.ia_with(*iaid, vec![(a, p, v)]));
                    granted += 1;
                }
                _ => ias.push(Self::ia_status(
                    *iaid,
                    Status::NoAddrsAvail,
                    "no addresses available",
                )),
            }
        }
        if !req.ias.is_empty() && granted == 0 {
            // RFC 8415 §18.3.9: only a status, no IAs.
            let mut m = self.reply_base(MessageType::Advertise, req, Some(duid));
            m.opts_mut().insert(DhcpOption::StatusCode(StatusCode {
                status: Status::NoAddrsAvail,
                msg: "no addresses available".into(),
            }));
            return Ok(m);
        }
        let kind = if commit {
            MessageType::Reply
        } else {
            MessageType::Advertise
        };
        let mut m = self.reply_base(kind, req, Some(duid));
        if commit {
            m.opts_mut().insert(DhcpOption::RapidCommit);
        } else {
            m.opts_mut().insert(DhcpOption::Preference(255));
        }
        for ia in ias {
            m.opts_mut().insert(ia);
        }
        self.add_config(&mut m);
        Ok(m)
    }

    fn request(
        &mut self,
        now: Instant,
        mac: Mac,
        req: &Request,
        duid: Vec<u8>,
    ) -> Result<Message, Dhcpv6Error> {
        let mut m = self.reply_base(MessageType::Reply, req, Some(duid.clone()));
        for (iaid, _) in &req.ias {
            let key = (duid.clone(), *iaid);
            let state = State::Bound(now + self.cfg.valid_lifetime);
            let ia = match self.allocate(now, &key) {
                Some(a) if self.bind(now, &key, mac, a, state) => {
                    let (p, v) = self.lifetimes();
                    self.ia_with(*iaid, vec![(a, p, v)])
                }
                _ => Self::ia_status(*iaid, Status::NoAddrsAvail, "no addresses available"),
            };
            m.opts_mut().insert(ia);
        }
        self.add_config(&mut m);
        Ok(m)
    }

    /// Renew (`rebind` false) and Rebind.
    fn renew(
        &mut self,
        now: Instant,
        mac: Mac,
        req: &Request,
        duid: Vec<u8>,
        rebind: bool,
    ) -> Result<Message, Dhcpv6Error> {
        let mut m = self.reply_base(MessageType::Reply, req, Some(duid.clone()));
        for (iaid, listed) in &req.ias {
            let key = (duid.clone(), *iaid);
            let state = State::Bound(now + self.cfg.valid_lifetime);
            // Ours: the binding's address, or (after a restart) a listed address that is free.
            let held = self
                .bindings
                .get(&key)
                .filter(|b| b.state != State::Free || listed.contains(&b.addr))
                .map(|b| b.addr)
                .filter(|a| self.available_for(now, &key, *a));
            // Adopting a listed address: the one the hash would give this IA first, so a
            // client renewing several addresses after a restart keeps its stable one.
            let adopt = || {
                self.allocate(now, &key)
                    .filter(|a| listed.contains(a))
                    .or_else(|| {
                        listed
                            .iter()
                            .copied()
                            .find(|a| self.available_for(now, &key, *a))
                    })
            };
            let addr = held.or_else(adopt);
            let ia = match addr {
                Some(a) if self.bind(now, &key, mac, a, state) => {
                    let (p, v) = self.lifetimes();
                    let mut addrs = vec![(a, p, v)];
                    // Addresses the client lists that are not its own: lifetimes 0.
                    for other in listed.iter().filter(|x| **x != a) {
                        addrs.push((*other, 0, 0));
                    }
                    self.ia_with(*iaid, addrs)
                }
                _ if rebind && !listed.is_empty() => {
                    self.ia_with(*iaid, listed.iter().map(|x| (*x, 0, 0)).collect())
                }
                _ => Self::ia_status(*iaid, Status::NoBinding, "no binding for this IA"),
            };
            m.opts_mut().insert(ia);
        }
        self.add_config(&mut m);
        Ok(m)
    }

    fn release(
        &mut self,
        now: Instant,
        req: &Request,
        duid: Vec<u8>,
    ) -> Result<Message, Dhcpv6Error> {
        let mut m = self.reply_base(MessageType::Reply, req, Some(duid.clone()));
        for (iaid, listed) in &req.ias {
            let key = (duid.clone(), *iaid);
            match self.bindings.get_mut(&key) {
                Some(b) if listed.is_empty() || listed.contains(&b.addr) => {
                    // The address stays this client's preference.
                    b.state = State::Free;
                    b.touched = now;
                }
                _ => m.opts_mut().insert(Self::ia_status(
                    *iaid,
                    Status::NoBinding,
                    "no binding for this IA",
                )),
            }
        }
        m.opts_mut().insert(DhcpOption::StatusCode(StatusCode {
            status: Status::Success,
            msg: "released".into(),
        }));
        Ok(m)
    }

    fn decline(
        &mut self,
        now: Instant,
        req: &Request,
        duid: Vec<u8>,
    ) -> Result<Message, Dhcpv6Error> {
        let mut m = self.reply_base(MessageType::Reply, req, Some(duid.clone()));
        for (iaid, listed) in &req.ias {
            let key = (duid.clone(), *iaid);
            match self.bindings.get(&key).map(|b| b.addr) {
                Some(a) if listed.contains(&a) => {
                    self.bindings.remove(&key);
                    if self.by_addr.get(&a) == Some(&key) {
                        self.by_addr.remove(&a);
                    }
                    self.declined.insert(a, now + DECLINE_HOLD);
                }
                _ => m.opts_mut().insert(Self::ia_status(
                    *iaid,
                    Status::NoBinding,
                    "no binding for this IA",
                )),
            }
        }
        m.opts_mut().insert(DhcpOption::StatusCode(StatusCode {
            status: Status::Success,
            msg: "declined".into(),
        }));
        Ok(m)
    }

    fn confirm(&self, req: &Request, duid: Vec<u8>) -> Result<Option<Message>, Dhcpv6Error> {
        let addrs: Vec<Ipv6Addr> = req.ias.iter().flat_map(|(_, l)| l.clone()).collect();
        if addrs.is_empty() {
            // RFC 8415 §18.3.3: nothing to confirm, no reply.
            return Ok(None);
        }
        let on_link = addrs.iter().all(|a| self.cfg.plan.net.contains(*a));
        let mut m = self.reply_base(MessageType::Reply, req, Some(duid));
        m.opts_mut().insert(DhcpOption::StatusCode(if on_link {
            StatusCode {
                status: Status::Success,
                msg: "all addresses on link".into(),
            }
        } else {
            StatusCode {
                status: Status::NotOnLink,
                msg: "addresses not on this link".into(),
            }
        }));
        Ok(Some(m))
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Walks `b` as DHCPv6 option TLVs, calling `f(code, data)`; one running past the end is an
/// error.
fn walk(
    mut b: &[u8],
    mut f: impl FnMut(u16, &[u8]) -> Result<(), Dhcpv6Error>,
) -> Result<(), Dhcpv6Error> {
    while !b.is_empty() {
        if b.len() < 4 {
            return Err(malformed("option header runs past the end"));
        }
        let (code, len) = (be16(b, 0), usize::from(be16(b, 2)));
        let Some(data) = b.get(4..4 + len) else {
            return Err(malformed(format!("option {code} runs past the end")));
        };
        f(code, data)?;
        b = &b[4 + len..];
    }
    Ok(())
}

fn push_opt(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// Copies the header and only the options the server reads, each with a valid length: client
/// and server id (1-130 bytes, first copy), IA_NA (at least 12 bytes, at most `MAX_IAS`, with
/// only its IAAddr sub-options cut to their fixed 24 bytes, at most `MAX_IA_ADDRS`), ORO (even
/// length), Elapsed Time (2 bytes), Rapid Commit (empty). Everything else is dropped, so
/// `dhcproto` never sees a length it could trust wrongly, nor nesting deeper than one level.
pub fn sanitize(payload: &[u8]) -> Result<Vec<u8>, Dhcpv6Error> {
    if payload.len() < 4 {
        return Err(malformed(format!(
            "{} bytes, shorter than the 4-byte header",
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(payload.len().min(1024));
    out.extend_from_slice(&payload[..4]);
    let (mut client, mut server, mut ias) = (false, false, 0usize);
    walk(&payload[4..], |code, data| {
        match code {
            OPT_CLIENT_ID | OPT_SERVER_ID => {
                let seen = if code == OPT_CLIENT_ID {
                    &mut client
                } else {
                    &mut server
                };
                if !*seen && (1..=MAX_DUID_LEN).contains(&data.len()) {
                    *seen = true;
                    push_opt(&mut out, code, data);
                }
            }
            OPT_IA_NA if data.len() >= 12 && ias < MAX_IAS => {
                ias += 1;
                let mut ia = data[..12].to_vec();
                let mut n = 0;
                walk(&data[12..], |sub, sdata| {
                    if sub == OPT_IAADDR && sdata.len() >= 24 && n < MAX_IA_ADDRS {
                        n += 1;
                        push_opt(&mut ia, OPT_IAADDR, &sdata[..24]);
                    }
                    Ok(())
                })?;
                push_opt(&mut out, OPT_IA_NA, &ia);
            }
            OPT_ORO if data.len() % 2 == 0 => push_opt(&mut out, code, data),
            OPT_ELAPSED_TIME if data.len() == 2 => push_opt(&mut out, code, data),
            OPT_RAPID_COMMIT if data.is_empty() => push_opt(&mut out, code, data),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn parse_request(payload: &[u8]) -> Result<Request, Dhcpv6Error> {
    let t = *payload.first().ok_or_else(|| malformed("empty message"))?;
    // Client message types (RFC 8415 §7.3): 1 Solicit, 3 Request, 4 Confirm, 5 Renew, 6 Rebind,
    // 8 Release, 9 Decline, 11 Information-Request. Relayed messages are not for an on-link
    // server.
    if !matches!(t, 1 | 3 | 4 | 5 | 6 | 8 | 9 | 11) {
        return Err(Dhcpv6Error::NotClientMessage(t));
    }
    let clean = sanitize(payload)?;
    let msg = Message::decode(&mut Decoder::new(&clean))
        .map_err(|e| malformed(format!("undecodable: {e}")))?;
    let mut req = Request {
        kind: msg.msg_type(),
        xid: msg.xid(),
        client_id: None,
        server_id: None,
        ias: Vec::new(),
        rapid_commit: false,
    };
    for o in msg.opts().iter() {
        match o {
            DhcpOption::ClientId(d) => req.client_id = Some(d.clone()),
            DhcpOption::ServerId(d) => req.server_id = Some(d.clone()),
            DhcpOption::IANA(ia) => {
                if req.ias.iter().any(|(id, _)| *id == ia.id) {
                    continue;
                }
                let addrs = ia
                    .opts
                    .iter()
                    .filter_map(|o| match o {
                        DhcpOption::IAAddr(a) => Some(a.addr),
                        _ => None,
                    })
                    .collect();
                req.ias.push((ia.id, addrs));
            }
            DhcpOption::RapidCommit => req.rapid_commit = true,
            _ => {}
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr6::{looks_eui64, Ipv6Net};

    const GW: Mac = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

    fn a(s: &str) -> Ipv6Addr {
        s.parse().expect("addr")
    }

    fn mac(n: u8) -> Mac {
        [0x52, 0x54, 0, 0, 0, n]
    }

    fn duid(n: u8) -> Vec<u8> {
        let m = mac(n);
        vec![0, 3, 0, 1, m[0], m[1], m[2], m[3], m[4], m[5]]
    }

    fn ll(n: u8) -> Ipv6Addr {
        crate::addr6::link_local(&mac(n))
    }

    fn server() -> Dhcpv6Server {
        let mut c = Dhcpv6Config::new(Plan6::slirp(GW));
        c.domains = vec!["example.org".into(), "b.example.org".into()];
        Dhcpv6Server::new(c)
    }

    fn small_server(max_leases: usize) -> Dhcpv6Server {
        let plan =
            Plan6::new(Ipv6Net::parse("fd00::/124").expect("net"), None, None, GW).expect("plan");
        let mut c = Dhcpv6Config::new(plan);
        c.max_leases = max_leases;
        Dhcpv6Server::new(c)
    }

    struct Msg {
        kind: MessageType,
        opts: Vec<DhcpOption>,
    }

    fn msg(kind: MessageType, client: Option<u8>) -> Msg {
        let mut opts = Vec::new();
        if let Some(c) = client {
            opts.push(DhcpOption::ClientId(duid(c)));
        }
        opts.push(DhcpOption::ElapsedTime(0));
        Msg { kind, opts }
    }

    impl Msg {
        fn ia(mut self, iaid: u32, addrs: &[Ipv6Addr]) -> Self {
            let mut o = DhcpOptions::new();
            for x in addrs {
                o.insert(DhcpOption::IAAddr(IAAddr {
                    addr: *x,
                    preferred_life: 0,
                    valid_life: 0,
                    opts: DhcpOptions::new(),
                }));
            }
            self.opts.push(DhcpOption::IANA(IANA {
                id: iaid,
                t1: 0,
                t2: 0,
                opts: o,
            }));
            self
        }
        fn opt(mut self, o: DhcpOption) -> Self {
            self.opts.push(o);
            self
        }
        fn bytes(&self) -> Vec<u8> {
            let mut m = Message::new_with_id(self.kind, [1, 2, 3]);
            for o in &self.opts {
                m.opts_mut().insert(o.clone());
            }
            let mut b = Vec::new();
            m.encode(&mut Encoder::new(&mut b)).expect("encode");
            b
        }
    }

    fn send(s: &mut Dhcpv6Server, now: Instant, client: u8, m: &Msg) -> Option<Message> {
        let r = s
            .handle(now, mac(client), ll(client), &m.bytes())
            .expect("valid message")?;
        assert_eq!((r.dst, r.dst_mac), (ll(client), mac(client)));
        let back = Message::decode(&mut Decoder::new(&r.payload)).expect("reply decodes");
        assert_eq!(back.xid(), [1, 2, 3]);
        assert_eq!(
            back.opts().get(OptionCode::ServerId),
            Some(&DhcpOption::ServerId(s.duid().to_vec()))
        );
        Some(back)
    }

    /// (IAID, address, valid lifetime) of each IA_NA with an address; (IAID, status) otherwise.
    fn ia_addrs(m: &Message) -> Vec<(u32, Ipv6Addr, u32)> {
        let mut v = Vec::new();
        for o in m.opts().iter() {
            if let DhcpOption::IANA(ia) = o {
                for s in ia.opts.iter() {
                    if let DhcpOption::IAAddr(x) = s {
                        v.push((ia.id, x.addr, x.valid_life));
                    }
                }
            }
        }
        v.sort_by_key(|(id, a, _)| (*id, *a));
        v
    }

    fn ia_statuses(m: &Message) -> Vec<(u32, Status)> {
        let mut v = Vec::new();
        for o in m.opts().iter() {
            if let DhcpOption::IANA(ia) = o {
                for s in ia.opts.iter() {
                    if let DhcpOption::StatusCode(sc) = s {
                        v.push((ia.id, sc.status));
                    }
                }
            }
        }
        v
    }

    fn status(m: &Message) -> Option<Status> {
        match m.opts().get(OptionCode::StatusCode) {
            Some(DhcpOption::StatusCode(s)) => Some(s.status),
            _ => None,
        }
    }

    fn domain_list(m: &Message) -> Option<Vec<String>> {
        match m.opts().get(OptionCode::DomainSearchList) {
            Some(DhcpOption::DomainSearchList(names)) => {
                Some(names.iter().map(|n| n.to_ascii()).collect())
            }
            _ => None,
        }
    }

    #[test]
    fn information_request_gets_dns_and_domains() {
        let mut s = server();
        let t = Instant::now();
        let r = send(&mut s, t, 1, &msg(MessageType::InformationRequest, Some(1))).expect("reply");
        assert_eq!(r.msg_type(), MessageType::Reply);
        assert_eq!(
            r.opts().get(OptionCode::DomainNameServers),
            Some(&DhcpOption::DomainNameServers(vec![a("fec0::3")]))
        );
        assert_eq!(
            r.opts().get(OptionCode::ClientId),
            Some(&DhcpOption::ClientId(duid(1)))
        );
        assert_eq!(
            domain_list(&r).expect("option 24"),
            vec!["example.org.".to_string(), "b.example.org.".to_string()]
        );
        // Uncompressed on the wire: b.example.org in full, no pointer to example.org.
        let raw = s
            .handle(
                t,
                mac(1),
                ll(1),
                &msg(MessageType::InformationRequest, Some(1)).bytes(),
            )
            .expect("valid")
            .expect("reply")
            .payload;
        let want = b"\x00\x18\x00\x1c\x07example\x03org\x00\x01b\x07example\x03org\x00";
        assert!(raw.windows(want.len()).any(|w| w == want), "{raw:?}");
        // dhcproto encodes option 32 but decodes it as an unknown option.
        match r.opts().get(OptionCode::InformationRefreshTime) {
            Some(DhcpOption::InformationRefreshTime(t)) => assert_eq!(*t, 86400),
            Some(DhcpOption::Unknown(u)) => assert_eq!(u.data(), &86400u32.to_be_bytes()),
            other => panic!("no information refresh time: {other:?}"),
        }
        assert!(ia_addrs(&r).is_empty());
        // Without a client id too; with another server's id: not for us; with an IA: refused.
        assert!(send(&mut s, t, 1, &msg(MessageType::InformationRequest, None)).is_some());
        let other = msg(MessageType::InformationRequest, Some(1))
            .opt(DhcpOption::ServerId(vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6]));
        assert_eq!(s.handle(t, mac(1), ll(1), &other.bytes()), Ok(None));
        let with_ia = msg(MessageType::InformationRequest, Some(1)).ia(1, &[]);
        assert!(s.handle(t, mac(1), ll(1), &with_ia.bytes()).is_err());
    }

    #[test]
    fn solicit_advertise_request_reply() {
        let mut s = server();
        let t = Instant::now();
        let adv = send(&mut s, t, 1, &msg(MessageType::Solicit, Some(1)).ia(7, &[])).expect("adv");
        assert_eq!(adv.msg_type(), MessageType::Advertise);
        assert_eq!(
            adv.opts().get(OptionCode::Preference),
            Some(&DhcpOption::Preference(255))
        );
        let got = ia_addrs(&adv);
        assert_eq!(got.len(), 1);
        let (iaid, addr, valid) = got[0];
        assert_eq!((iaid, valid), (7, 86400));
        let net = Ipv6Net::parse("fec0::/64").expect("net");
        assert!(net.contains(addr) && !looks_eui64(&addr));
        assert_eq!(net.host_part(addr) >> 16, 1, "pool is prefix::1:xxxx");
        assert!(domain_list(&adv).is_some());
        // Advertised: reserved, but not yet a lease... it is reported as held by the MAC.
        assert_eq!(s.mac_for_addr(addr), Some(mac(1)));
        let sid = s.duid().to_vec();
        let rep = send(
            &mut s,
            t,
            1,
            &msg(MessageType::Request, Some(1))
                .opt(DhcpOption::ServerId(sid))
                .ia(7, &[addr]),
        )
        .expect("reply");
        assert_eq!(rep.msg_type(), MessageType::Reply);
        assert_eq!(ia_addrs(&rep), vec![(7, addr, 86400)]);
        match rep.opts().get(OptionCode::IANA) {
            Some(DhcpOption::IANA(ia)) => assert_eq!((ia.t1, ia.t2), (21600, 34560)),
            other => panic!("no IA_NA: {other:?}"),
        }
        let leases = s.leases();
        assert_eq!(leases.len(), 1);
        assert_eq!(
            (leases[0].addr, leases[0].mac, leases[0].iaid),
            (addr, mac(1), 7)
        );
        // A Request naming another server is not for us.
        let other = msg(MessageType::Request, Some(1))
            .opt(DhcpOption::ServerId(vec![0, 3, 0, 1, 9, 9, 9, 9, 9, 9]))
            .ia(7, &[]);
        assert_eq!(s.handle(t, mac(1), ll(1), &other.bytes()), Ok(None));
    }

    fn lease(s: &mut Dhcpv6Server, t: Instant, client: u8, iaid: u32) -> Ipv6Addr {
        let m = msg(MessageType::Solicit, Some(client))
            .ia(iaid, &[])
            .opt(DhcpOption::RapidCommit);
        let r = send(s, t, client, &m).expect("reply");
        assert_eq!(r.msg_type(), MessageType::Reply);
        assert_eq!(
            r.opts().get(OptionCode::RapidCommit),
            Some(&DhcpOption::RapidCommit)
        );
        ia_addrs(&r)[0].1
    }

    #[test]
    fn rapid_commit_and_distinct_stable_addresses() {
        let mut s = server();
        let t = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for c in 1..=40 {
            let x = lease(&mut s, t, c, 1);
            assert!(seen.insert(x), "{x} handed out twice");
            assert!(!s.cfg.plan.is_own(&x));
            // Same DUID, same IAID: the same address again.
            assert_eq!(lease(&mut s, t, c, 1), x);
        }
        // Two IAs of one client: two addresses.
        let y = lease(&mut s, t, 1, 2);
        assert!(seen.insert(y));
        assert_eq!(s.leases().len(), 41);
        // A restarted server with the same hash key hands out the same addresses.
        let mut s2 = server();
        for c in 1..=40 {
            assert_eq!(lease(&mut s2, t, c, 1), lease(&mut s, t, c, 1));
        }
        // Rapid commit off: an Advertise even when the client asks.
        let mut c = Dhcpv6Config::new(Plan6::slirp(GW));
        c.rapid_commit = false;
        let mut s3 = Dhcpv6Server::new(c);
        let m = msg(MessageType::Solicit, Some(1))
            .ia(1, &[])
            .opt(DhcpOption::RapidCommit);
        let r = send(&mut s3, t, 1, &m).expect("adv");
        assert_eq!(r.msg_type(), MessageType::Advertise);
        assert_eq!(r.opts().get(OptionCode::RapidCommit), None);
    }

    #[test]
    fn renew_rebind_and_restart() {
        let mut s = server();
        let t = Instant::now();
        let x = lease(&mut s, t, 1, 1);
        let sid = s.duid().to_vec();
        let t1 = t + Duration::from_secs(40000);
        let renew = msg(MessageType::Renew, Some(1))
            .opt(DhcpOption::ServerId(sid.clone()))
            .ia(1, &[x, a("fec0::1:9999")]);
        let r = send(&mut s, t1, 1, &renew).expect("renew");
        // Ours renewed; an address it is not entitled to: lifetimes 0.
        let mut want = vec![(1, x, 86400), (1, a("fec0::1:9999"), 0)];
        want.sort_by_key(|(id, a, _)| (*id, *a));
        assert_eq!(ia_addrs(&r), want);
        assert!(s.leases()[0].expires > t1 + Duration::from_secs(80000));
        let rebind = msg(MessageType::Rebind, Some(1)).ia(1, &[x]);
        assert_eq!(
            ia_addrs(&send(&mut s, t1, 1, &rebind).expect("rebind")),
            vec![(1, x, 86400)]
        );
        // Renew of an IA the server never saw, listing nothing: NoBinding.
        let r = send(
            &mut s,
            t1,
            2,
            &msg(MessageType::Renew, Some(2))
                .opt(DhcpOption::ServerId(sid.clone()))
                .ia(9, &[]),
        )
        .expect("reply");
        assert_eq!(ia_statuses(&r), vec![(9, Status::NoBinding)]);
        // Rebind of another link's address: lifetimes 0.
        let r = send(
            &mut s,
            t1,
            2,
            &msg(MessageType::Rebind, Some(2)).ia(9, &[a("2001:db8::5")]),
        )
        .expect("reply");
        assert_eq!(ia_addrs(&r), vec![(9, a("2001:db8::5"), 0)]);
        // Rebind listing x from another client: x is taken, so lifetimes 0, not a steal.
        let r = send(
            &mut s,
            t1,
            3,
            &msg(MessageType::Rebind, Some(3)).ia(1, &[x]),
        )
        .expect("r");
        assert_eq!(ia_addrs(&r), vec![(1, x, 0)]);
        // After a restart the client renews and keeps its address.
        let mut s2 = server();
        let r = send(&mut s2, t1, 1, &renew).expect("renew after restart");
        assert!(ia_addrs(&r).contains(&(1, x, 86400)));
        assert_eq!(s2.mac_for_addr(x), Some(mac(1)));
    }

    #[test]
    fn release_keeps_a_preference_and_decline_quarantines() {
        let mut s = server();
        let t = Instant::now();
        let x = lease(&mut s, t, 1, 1);
        let sid = s.duid().to_vec();
        let rel = msg(MessageType::Release, Some(1))
            .opt(DhcpOption::ServerId(sid.clone()))
            .ia(1, &[x]);
        let r = send(&mut s, t, 1, &rel).expect("reply");
        assert_eq!(status(&r), Some(Status::Success));
        assert!(s.leases().is_empty() && s.mac_for_addr(x).is_none());
        // Released: the client gets it back.
        assert_eq!(lease(&mut s, t, 1, 1), x);
        // Release of an unknown IA: NoBinding inside the IA.
        let r = send(
            &mut s,
            t,
            2,
            &msg(MessageType::Release, Some(2))
                .opt(DhcpOption::ServerId(sid.clone()))
                .ia(5, &[]),
        )
        .expect("reply");
        assert_eq!(ia_statuses(&r), vec![(5, Status::NoBinding)]);
        // Decline: the address is out of the pool for DECLINE_HOLD, the client gets another.
        let dec = msg(MessageType::Decline, Some(1))
            .opt(DhcpOption::ServerId(sid))
            .ia(1, &[x]);
        let r = send(&mut s, t, 1, &dec).expect("reply");
        assert_eq!(status(&r), Some(Status::Success));
        let y = lease(&mut s, t, 1, 1);
        assert_ne!(y, x);
        for c in 2..20 {
            assert_ne!(lease(&mut s, t, c, 1), x, "declined address handed out");
        }
    }

    #[test]
    fn confirm() {
        let mut s = server();
        let t = Instant::now();
        let ok = msg(MessageType::Confirm, Some(1)).ia(1, &[a("fec0::1:5")]);
        assert_eq!(
            status(&send(&mut s, t, 1, &ok).expect("r")),
            Some(Status::Success)
        );
        let off = msg(MessageType::Confirm, Some(1)).ia(1, &[a("fec0::1:5"), a("fd00::1:5")]);
        assert_eq!(
            status(&send(&mut s, t, 1, &off).expect("r")),
            Some(Status::NotOnLink)
        );
        let none = msg(MessageType::Confirm, Some(1)).ia(1, &[]);
        assert_eq!(s.handle(t, mac(1), ll(1), &none.bytes()), Ok(None));
    }

    #[test]
    fn small_pool_exhaustion_expiry_and_bounded_table() {
        let mut s = small_server(64);
        let t = Instant::now();
        let mut got = Vec::new();
        // fd00::/124: ::1 and ::4-::f (::2 router, ::3 DNS, :: anycast are never given).
        for c in 1..=13 {
            got.push(lease(&mut s, t, c, 1));
        }
        got.sort();
        let want: Vec<Ipv6Addr> = [1u16, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
            .iter()
            .map(|n| Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, *n))
            .collect();
        assert_eq!(got, want);
        // Exhausted: a status only.
        let r = send(
            &mut s,
            t,
            14,
            &msg(MessageType::Solicit, Some(14)).ia(1, &[]),
        )
        .expect("adv");
        assert_eq!(status(&r), Some(Status::NoAddrsAvail));
        assert!(ia_addrs(&r).is_empty());
        // After the leases run out, the new client takes an expired one.
        let later = t + Duration::from_secs(86401);
        let x = lease(&mut s, later, 14, 1);
        assert!(want.contains(&x));
        // The lease table stays bounded however many clients come.
        let mut s = small_server(8);
        for c in 1..=200u8 {
            let now = t + Duration::from_secs(86401 * u64::from(c));
            let _ = s.handle(
                now,
                mac(c),
                ll(c),
                &msg(MessageType::Solicit, Some(c))
                    .ia(1, &[])
                    .opt(DhcpOption::RapidCommit)
                    .bytes(),
            );
            assert!(s.table_len() <= 8);
        }
    }

    #[test]
    fn validation_errors() {
        let mut s = server();
        let t = Instant::now();
        let sid = s.duid().to_vec();
        let bad = |s: &mut Dhcpv6Server, m: &Msg| s.handle(t, mac(1), ll(1), &m.bytes());
        assert!(bad(&mut s, &msg(MessageType::Solicit, None).ia(1, &[])).is_err());
        assert!(bad(
            &mut s,
            &msg(MessageType::Solicit, Some(1)).opt(DhcpOption::ServerId(sid.clone()))
        )
        .is_err());
        assert!(bad(&mut s, &msg(MessageType::Request, Some(1)).ia(1, &[])).is_err());
        assert!(bad(
            &mut s,
            &msg(MessageType::Rebind, Some(1)).opt(DhcpOption::ServerId(sid))
        )
        .is_err());
        for kind in [2u8, 7, 10, 12, 13, 200] {
            assert_eq!(
                s.handle(t, mac(1), ll(1), &[kind, 0, 0, 0]),
                Err(Dhcpv6Error::NotClientMessage(kind))
            );
        }
        assert!(s.handle(t, mac(1), ll(1), &[1, 0, 0]).is_err());
        assert!(s
            .handle(
                t,
                mac(1),
                Ipv6Addr::UNSPECIFIED,
                &msg(MessageType::Solicit, Some(1)).bytes()
            )
            .is_err());
        // Option running past the end.
        assert!(s
            .handle(t, mac(1), ll(1), &[1, 0, 0, 0, 0, 1, 0, 9, 1])
            .is_err());
    }

    /// Builds a raw Solicit with `opts` appended after a valid client id.
    fn raw(opts: &[u8]) -> Vec<u8> {
        let mut b = vec![1, 9, 9, 9, 0, 1, 0, 10];
        b.extend_from_slice(&duid(1));
        b.extend_from_slice(opts);
        b
    }

    #[test]
    fn hostile_options_never_reach_dhcproto() {
        let mut s = server();
        let t = Instant::now();
        // Options dhcproto would underflow on: Status Code, Vendor Class, Vendor Opts and
        // Authentication shorter than their fixed parts.
        for code in [13u16, 16, 17, 11] {
            let mut o = code.to_be_bytes().to_vec();
            o.extend_from_slice(&[0, 1, 0]);
            let r = s.handle(t, mac(1), ll(1), &raw(&o));
            assert!(r.is_ok(), "option {code}: {r:?}");
        }
        // Deeply nested IA_NA in IA_NA in …: only one level is copied.
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..2000 {
            let mut ia = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
            ia.extend_from_slice(&inner);
            let mut o = vec![0, 3];
            o.extend_from_slice(&(ia.len().min(65535) as u16).to_be_bytes());
            o.extend_from_slice(&ia);
            if o.len() > 60000 {
                break;
            }
            inner = o;
        }
        let r = s.handle(t, mac(1), ll(1), &raw(&inner));
        assert!(r.is_ok() || r.is_err());
        let clean = sanitize(&raw(&inner)).expect("sanitizes");
        assert!(
            clean.len() < 64,
            "nested IAs were copied: {} bytes",
            clean.len()
        );
        // Relay messages with a relay-message option: not a client message.
        assert_eq!(
            s.handle(t, mac(1), ll(1), &[12, 0, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4]),
            Err(Dhcpv6Error::NotClientMessage(12))
        );
        // Odd-length ORO, a long DUID, wrong-size elapsed time, rapid commit with data: dropped.
        let mut o = vec![0, 6, 0, 3, 0, 23, 0];
        o.extend_from_slice(&[0, 8, 0, 1, 0]);
        o.extend_from_slice(&[0, 14, 0, 2, 0, 0]);
        o.extend_from_slice(&[0, 2, 0, 200]);
        o.extend_from_slice(&[7; 200]);
        let clean = sanitize(&raw(&o)).expect("sanitizes");
        assert_eq!(clean, raw(&[]));
    }

    #[test]
    fn random_bytes_and_flips_never_panic() {
        let mut s = small_server(16);
        let t = Instant::now();
        let base = msg(MessageType::Solicit, Some(1))
            .ia(1, &[a("fd00::5")])
            .opt(DhcpOption::RapidCommit)
            .opt(DhcpOption::ORO(dhcproto::v6::ORO {
                opts: vec![OptionCode::DomainNameServers],
            }))
            .bytes();
        for kind in [1u8, 3, 4, 5, 6, 8, 9, 11] {
            let mut b = base.clone();
            b[0] = kind;
            for i in 0..b.len() {
                for v in [0u8, 1, 0x7f, 0xff] {
                    let mut m = b.clone();
                    m[i] = v;
                    let _ = s.handle(t, mac(1), ll(1), &m);
                    let _ = s.handle(t, mac(1), ll(1), &m[..i]);
                }
            }
        }
        let mut x: u32 = 1;
        for n in 0..2000 {
            let len = n % 97;
            let b: Vec<u8> = (0..len)
                .map(|i| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    if i == 0 {
                        [1u8, 3, 5, 6, 11][(x >> 16) as usize % 5]
                    } else {
                        (x >> 16) as u8
                    }
                })
                .collect();
            let _ = s.handle(t, mac(1), ll(1), &b);
        }
        // Invariant: distinct addresses, all in the pool.
        let leases = s.leases();
        let mut addrs: Vec<Ipv6Addr> = leases.iter().map(|l| l.addr).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), leases.len());
        assert!(addrs.iter().all(|x| s.in_pool(*x)));
    }
}
