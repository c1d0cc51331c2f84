//! DHCPv4 server (RFC 2131) built on `dhcproto`.
//!
//! Sans-IO: [`DhcpServer::handle`] takes one UDP payload (client port 68 → server port 67) with the
//! Ethernet source MAC and the current time, and returns the reply to send, if any.
//!
//! Address plan: leases come from `dhcp_start` upward to the end of the network, skipping the
//! network, broadcast, gateway and DNS addresses. The Ethernet source MAC is the client's identity
//! (`chaddr` must agree with it). Each MAC keeps a binding to one address; after a RELEASE or when
//! the lease or offer runs out, the binding stays as a *preference*: the MAC gets the same address
//! back as long as nobody else took it, and new clients are steered away from addresses other MACs
//! prefer until the pool has nothing else left. Distinct MACs never hold the same address.
//!
//! Requests:
//! * DISCOVER → OFFER (an offer reserves the address for [`OFFER_HOLD`]). The client's current
//!   binding wins, then a free requested address (option 50), then its preference, then a new one.
//! * REQUEST → ACK or NAK. SELECTING (server id present): another server's id means the client
//!   chose someone else, so our offer is withdrawn and nothing is sent. INIT-REBOOT (option 50, no
//!   ciaddr) and RENEWING/REBINDING (ciaddr): ACK when the address is the one this MAC holds (or was
//!   offered); a MAC we have no record of may adopt a free pool address (so guests keep their
//!   address across a gateway restart); anything else is NAKed.
//! * RELEASE frees the lease (the preference stays); DECLINE quarantines the address for
//!   [`DECLINE_HOLD`]; INFORM → ACK with configuration only.
//!
//! Messages through a relay (giaddr set) are ignored: the gateway is on the guest's link.

use crate::config::Config;
use crate::{Instant, Mac};
use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder, Name};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// How long an OFFER reserves its address for the client.
pub const OFFER_HOLD: Duration = Duration::from_secs(60);
/// How long an address a client DECLINEd (found in use) stays out of the pool.
pub const DECLINE_HOLD: Duration = Duration::from_secs(600);
/// The most bindings (active leases and preferences) kept. Beyond this the oldest preference is
/// forgotten; when all are active the pool counts as exhausted. Bounds memory on huge networks.
pub const MAX_BINDINGS: usize = 4096;
/// Fixed BOOTP header plus the magic cookie.
const HEADER_LEN: usize = 240;
/// Replies are padded to the minimum BOOTP message size some clients insist on.
const MIN_REPLY_LEN: usize = 300;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const BROADCAST_MAC: Mac = [0xff; 6];

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The client's MAC (its identity: the Ethernet source, equal to `chaddr`).
    pub mac: Mac,
    /// The leased or offered address.
    pub ip: Ipv4Addr,
    /// Host Name (option 12) the client last sent, if it was a plain name of at most 63 bytes.
    pub hostname: Option<String>,
    /// When the lease (or the offer's reservation) ends.
    pub expires: Instant,
}

/// A reply to send: the UDP payload (server port 67 → client port 68) and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpReply {
    /// The encoded DHCP message (padded to at least 300 bytes).
    pub payload: Vec<u8>,
    /// IPv4 destination: the client's `ciaddr`, or `yiaddr`, or 255.255.255.255 (RFC 2131 §4.1).
    pub dst_ip: Ipv4Addr,
    /// Ethernet destination: the client's MAC, or broadcast when `dst_ip` is.
    pub dst_mac: Mac,
}

/// Why a DHCP message was ignored (counted as `dhcp_bad`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// Undecodable, or a field that breaks the rules (the text says which).
    #[error("malformed DHCP message: {0}")]
    Malformed(String),
    /// `op` is not BOOTREQUEST (1): a server's message seen on the link.
    #[error("not a BOOTREQUEST")]
    NotBootRequest,
    /// A BOOTP message without DHCP Message Type (option 53); BOOTP is not served.
    #[error("no DHCP message type option")]
    NoMessageType,
    /// No address left to offer or bind (all active, declined or taken).
    #[error("DHCP address pool exhausted")]
    PoolExhausted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Offered, reserved until the instant.
    Offered(Instant),
    /// Leased until the instant.
    Bound(Instant),
    /// Released or run out: only a preference for the address.
    Free,
}

#[derive(Clone, Debug)]
struct Binding {
    ip: Ipv4Addr,
    hostname: Option<String>,
    state: State,
    /// When the binding last changed; the oldest preference is forgotten first.
    touched: Instant,
}

impl Binding {
    /// The instant the offer or lease ends, if it is still in force at `now`.
    fn active_until(&self, now: Instant) -> Option<Instant> {
        match self.state {
            State::Offered(t) | State::Bound(t) if t > now => Some(t),
            _ => None,
        }
    }
}

/// How a REQUEST identifies itself (RFC 2131 §4.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RequestKind {
    Selecting,
    InitReboot,
    Renewing,
}

/// The DHCPv4 server of one gateway: bindings by MAC, offers, leases and declined addresses.
pub struct DhcpServer {
    cfg: Config,
    bindings: HashMap<Mac, Binding>,
    /// Every bound, offered or preferred address → its MAC (one MAC per address).
    by_ip: HashMap<Ipv4Addr, Mac>,
    /// Declined addresses and when they return to the pool.
    declined: HashMap<Ipv4Addr, Instant>,
    /// The latest time seen, for the accessors that take no `now`.
    last_now: Option<Instant>,
    max_bindings: usize,
}

/// The parts of a validated request the server uses.
struct Request {
    msg: Message,
    kind: MessageType,
    mac: Mac,
}

impl DhcpServer {
    /// A server with no bindings, serving the network, pool and options of `cfg`.
    pub fn new(cfg: &Config) -> Self {
        DhcpServer {
            cfg: cfg.clone(),
            bindings: HashMap::new(),
            by_ip: HashMap::new(),
            declined: HashMap::new(),
            last_now: None,
            max_bindings: MAX_BINDINGS,
        }
    }

    /// Handles one message from `client_mac` (the Ethernet source). `Ok(None)` means "no reply due".
    pub fn handle(
        &mut self,
        now: Instant,
        client_mac: Mac,
        payload: &[u8],
    ) -> Result<Option<DhcpReply>, DhcpError> {
        self.advance(now);
        let req = parse_request(client_mac, payload)?;
        if !req.msg.giaddr().is_unspecified() {
            // Relayed: the gateway sits on the guest's own link and is nobody's relay target.
            return Ok(None);
        }
        match req.kind {
            MessageType::Discover => self.discover(now, &req).map(Some),
            MessageType::Request => self.request(now, &req),
            MessageType::Release => {
                self.release(now, &req);
                Ok(None)
            }
            MessageType::Decline => {
                self.decline(now, &req);
                Ok(None)
            }
            MessageType::Inform => self.inform(&req).map(Some),
            other => Err(DhcpError::Malformed(format!(
                "unexpected message type {other:?} from a client"
            ))),
        }
    }

    /// The address leased (or offered) to `mac`, as of the latest time passed in.
    pub fn lease_for_mac(&self, mac: &Mac) -> Option<Ipv4Addr> {
        let b = self.bindings.get(mac)?;
        self.is_active(b).then_some(b.ip)
    }

    /// The MAC holding `ip` (leased or offered), as of the latest time passed in.
    pub fn mac_for_ip(&self, ip: Ipv4Addr) -> Option<Mac> {
        let mac = self.by_ip.get(&ip)?;
        let b = self.bindings.get(mac)?;
        self.is_active(b).then_some(*mac)
    }

    /// Leases and outstanding offers in force as of the latest time passed in, by address.
    pub fn leases(&self) -> Vec<Lease> {
        let mut v: Vec<Lease> = self
            .bindings
            .iter()
            .filter_map(|(mac, b)| {
                let expires = match (self.last_now, b.state) {
                    (Some(now), _) => b.active_until(now)?,
                    (None, State::Offered(t) | State::Bound(t)) => t,
                    (None, State::Free) => return None,
                };
                Some(Lease {
                    mac: *mac,
                    ip: b.ip,
                    hostname: b.hostname.clone(),
                    expires,
                })
            })
            .collect();
        v.sort_by_key(|l| u32::from(l.ip));
        v
    }

    /// Moves the server's notion of time forward (for the accessors), dropping lapsed declines.
    /// `handle` does this too; call it from a timer if the accessors must track expiry without
    /// DHCP traffic.
    pub fn advance(&mut self, now: Instant) {
        if self.last_now.is_none_or(|t| now > t) {
            self.last_now = Some(now);
        }
        self.declined.retain(|_, until| *until > now);
    }

    /// Whether `ip` is quarantined after a DECLINE, as of the latest time passed in.
    pub fn is_declined(&self, ip: Ipv4Addr) -> bool {
        match (self.declined.get(&ip), self.last_now) {
            (Some(until), Some(now)) => *until > now,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn is_active(&self, b: &Binding) -> bool {
        match self.last_now {
            Some(now) => b.active_until(now).is_some(),
            None => b.state != State::Free,
        }
    }

    // ---- the address pool ----

    /// Whether `ip` may be handed out at all: in the net, from `dhcp_start` to `dhcp_end`, and not the
    /// network, broadcast, gateway or DNS address.
    fn in_pool(&self, ip: Ipv4Addr) -> bool {
        let net = &self.cfg.net;
        net.contains(ip)
            && u32::from(ip) >= u32::from(self.cfg.dhcp_start)
            && self
                .cfg
                .dhcp_end
                .is_none_or(|e| u32::from(ip) <= u32::from(e))
            && ip != net.network()
            && ip != net.broadcast()
            && ip != self.cfg.gateway
            && ip != self.cfg.dns
    }

    /// Whether `mac` may take `ip` now: a pool address, not declined, and not offered to or leased
    /// by another MAC (another MAC's mere preference does not block it).
    fn available_for(&self, now: Instant, mac: &Mac, ip: Ipv4Addr) -> bool {
        if !self.in_pool(ip) || self.declined.get(&ip).is_some_and(|t| *t > now) {
            return false;
        }
        match self.by_ip.get(&ip) {
            Some(owner) if owner != mac => match self.bindings.get(owner) {
                Some(b) => b.active_until(now).is_none(),
                None => true,
            },
            _ => true,
        }
    }

    /// Pool addresses from `dhcp_start` upward.
    fn pool(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let start =
            u32::from(self.cfg.dhcp_start).max(u32::from(self.cfg.net.network()).saturating_add(1));
        let end = u32::from(self.cfg.net.broadcast()).min(
            self.cfg
                .dhcp_end
                .map_or(u32::MAX, |e| u32::from(e).saturating_add(1)),
        );
        (start..end)
            .map(Ipv4Addr::from)
            .filter(|ip| self.in_pool(*ip))
    }

    /// A new address for `mac`: the first one nobody uses or prefers, else the first one that is
    /// only another MAC's preference.
    fn allocate(&self, now: Instant, mac: &Mac) -> Option<Ipv4Addr> {
        // Every address that is neither free nor declined is in `by_ip` or `declined`, so at most
        // that many candidates are skipped before a free one turns up.
        let limit = self.by_ip.len() + self.declined.len() + 1;
        let mut fallback = None;
        for ip in self.pool().take(limit) {
            if self.declined.get(&ip).is_some_and(|t| *t > now) {
                continue;
            }
            match self.by_ip.get(&ip) {
                None => return Some(ip),
                Some(owner) if owner == mac => return Some(ip),
                Some(owner) => {
                    let active = self
                        .bindings
                        .get(owner)
                        .is_some_and(|b| b.active_until(now).is_some());
                    if !active && fallback.is_none() {
                        fallback = Some(ip);
                    }
                }
            }
        }
        fallback
    }

    /// Binds `mac` to `ip` in `state`, taking the address from any other MAC's preference.
    fn bind(
        &mut self,
        now: Instant,
        mac: Mac,
        ip: Ipv4Addr,
        state: State,
        hostname: Option<String>,
    ) -> Result<(), DhcpError> {
        if let Some(owner) = self.by_ip.get(&ip).copied() {
            if owner != mac {
                self.bindings.remove(&owner);
            }
        }
        if !self.bindings.contains_key(&mac)
            && self.bindings.len() >= self.max_bindings
            && !self.forget_oldest_preference(now)
        {
            return Err(DhcpError::PoolExhausted);
        }
        let b = self.bindings.entry(mac).or_insert(Binding {
            ip,
            hostname: None,
            state,
            touched: now,
        });
        if b.ip != ip {
            self.by_ip.remove(&b.ip);
        }
        b.ip = ip;
        b.state = state;
        b.touched = now;
        if hostname.is_some() {
            b.hostname = hostname;
        }
        self.by_ip.insert(ip, mac);
        Ok(())
    }

    fn forget_oldest_preference(&mut self, now: Instant) -> bool {
        let oldest = self
            .bindings
            .iter()
            .filter(|(_, b)| b.active_until(now).is_none())
            // Ties broken by MAC, not by the map's (per-process random) iteration order.
            .min_by_key(|(mac, b)| (b.touched, **mac))
            .map(|(mac, b)| (*mac, b.ip));
        match oldest {
            Some((mac, ip)) => {
                self.bindings.remove(&mac);
                self.by_ip.remove(&ip);
                true
            }
            None => false,
        }
    }

    fn unbind(&mut self, mac: &Mac) {
        if let Some(b) = self.bindings.remove(mac) {
            if self.by_ip.get(&b.ip) == Some(mac) {
                self.by_ip.remove(&b.ip);
            }
        }
    }

    // ---- message handlers ----

    fn discover(&mut self, now: Instant, req: &Request) -> Result<DhcpReply, DhcpError> {
        let mac = req.mac;
        let current = self
            .bindings
            .get(&mac)
            .map(|b| (b.ip, b.active_until(now).is_some(), b.state));
        let requested = requested_ip(&req.msg);
        let ip = match current {
            Some((ip, true, _)) => ip,
            _ => match requested.filter(|ip| self.available_for(now, &mac, *ip)) {
                Some(ip) => ip,
                None => match current
                    .map(|c| c.0)
                    .filter(|ip| self.available_for(now, &mac, *ip))
                {
                    Some(ip) => ip,
                    None => self.allocate(now, &mac).ok_or(DhcpError::PoolExhausted)?,
                },
            },
        };
        // A client that still holds a lease and DISCOVERs again keeps its lease; otherwise the
        // offer reserves the address for a while.
        let state = match current {
            Some((cur_ip, true, State::Bound(t))) if cur_ip == ip => State::Bound(t),
            _ => State::Offered(add(now, OFFER_HOLD)),
        };
        self.bind(now, mac, ip, state, hostname(&req.msg))?;
        let reply = self.reply(
            &req.msg,
            MessageType::Offer,
            Ipv4Addr::UNSPECIFIED,
            ip,
            true,
        );
        Ok(self.address(&req.msg, reply?, ip, mac))
    }

    fn request(&mut self, now: Instant, req: &Request) -> Result<Option<DhcpReply>, DhcpError> {
        let msg = &req.msg;
        let mac = req.mac;
        let ciaddr = msg.ciaddr();
        let (kind, ip) = match (server_id(msg), requested_ip(msg)) {
            (Some(sid), requested) => {
                if sid != self.cfg.gateway {
                    // The client chose another server: withdraw our offer.
                    if let Some(b) = self.bindings.get_mut(&mac) {
                        if matches!(b.state, State::Offered(_)) {
                            b.state = State::Free;
                            b.touched = now;
                        }
                    }
                    return Ok(None);
                }
                let ip = requested
                    .or((!ciaddr.is_unspecified()).then_some(ciaddr))
                    .ok_or_else(|| {
                        DhcpError::Malformed(
                            "REQUEST names a server but no requested address".into(),
                        )
                    })?;
                (RequestKind::Selecting, ip)
            }
            (None, Some(ip)) if ciaddr.is_unspecified() => (RequestKind::InitReboot, ip),
            (None, _) if !ciaddr.is_unspecified() => (RequestKind::Renewing, ciaddr),
            (None, _) => {
                return Err(DhcpError::Malformed(
                    "REQUEST without server id, requested address or ciaddr".into(),
                ))
            }
        };

        let holds = self.bindings.get(&mac).map(|b| b.ip);
        let ok = match holds {
            Some(held) => held == ip && self.available_for(now, &mac, ip),
            // No record of this client (say the gateway restarted): it may adopt a free address.
            None => self.available_for(now, &mac, ip),
        };
        if !ok {
            if let Some(b) = self.bindings.get_mut(&mac) {
                if matches!(b.state, State::Offered(_)) && kind == RequestKind::Selecting {
                    b.state = State::Free;
                    b.touched = now;
                }
            }
            return self
                .nak(
                    msg,
                    &format!("address {ip} is not available to this client"),
                )
                .map(Some);
        }
        self.bind(
            now,
            mac,
            ip,
            State::Bound(add(now, self.cfg.lease_time)),
            hostname(msg),
        )?;
        // RENEWING/REBINDING clients already use ciaddr: the ACK echoes it and goes there.
        let ack_ciaddr = if kind == RequestKind::Renewing {
            ciaddr
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let reply = self.reply(msg, MessageType::Ack, ack_ciaddr, ip, true)?;
        Ok(Some(self.address(msg, reply, ip, mac)))
    }

    fn release(&mut self, now: Instant, req: &Request) {
        if server_id(&req.msg).is_some_and(|sid| sid != self.cfg.gateway) {
            return;
        }
        if let Some(b) = self.bindings.get_mut(&req.mac) {
            if b.ip == req.msg.ciaddr() {
                b.state = State::Free;
                b.touched = now;
            }
        }
    }

    fn decline(&mut self, now: Instant, req: &Request) {
        if server_id(&req.msg).is_some_and(|sid| sid != self.cfg.gateway) {
            return;
        }
        let Some(ip) = requested_ip(&req.msg) else {
            return;
        };
        if self.bindings.get(&req.mac).is_some_and(|b| b.ip == ip) {
            self.unbind(&req.mac);
            self.declined.insert(ip, add(now, DECLINE_HOLD));
        }
    }

    fn inform(&self, req: &Request) -> Result<DhcpReply, DhcpError> {
        let ciaddr = self.answerable(req.msg.ciaddr());
        let payload = self.reply(
            &req.msg,
            MessageType::Ack,
            ciaddr,
            Ipv4Addr::UNSPECIFIED,
            false,
        )?;
        if ciaddr.is_unspecified() {
            return Ok(DhcpReply {
                payload,
                dst_ip: Ipv4Addr::BROADCAST,
                dst_mac: BROADCAST_MAC,
            });
        }
        Ok(DhcpReply {
            payload,
            dst_ip: ciaddr,
            dst_mac: req.mac,
        })
    }

    fn nak(&self, req: &Message, why: &str) -> Result<DhcpReply, DhcpError> {
        let mut m = reply_header(req, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED);
        m.set_flags(Flags::default().set_broadcast());
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(MessageType::Nak));
        opts.insert(DhcpOption::ServerIdentifier(self.cfg.gateway));
        opts.insert(DhcpOption::Message(why.to_string()));
        Ok(DhcpReply {
            payload: encode(&m)?,
            dst_ip: Ipv4Addr::BROADCAST,
            dst_mac: BROADCAST_MAC,
        })
    }

    /// A client's `ciaddr` if a reply may be unicast to it: a guest address on the LAN. Anything
    /// else (another network, 255.x, the gateway's own addresses) is treated as unspecified, so
    /// the reply is broadcast rather than sent, and learned, off the LAN (found by fuzzing).
    fn answerable(&self, ciaddr: Ipv4Addr) -> Ipv4Addr {
        let c = &self.cfg;
        let guest = c.net.contains(ciaddr)
            && ![c.gateway, c.dns, c.net.network(), c.net.broadcast()].contains(&ciaddr)
            && !c.guestfwds.iter().any(|g| g.addr == ciaddr);
        if guest {
            ciaddr
        } else {
            Ipv4Addr::UNSPECIFIED
        }
    }

    /// Where a reply goes (RFC 2131 §4.1, giaddr already excluded).
    fn address(&self, req: &Message, payload: Vec<u8>, yiaddr: Ipv4Addr, mac: Mac) -> DhcpReply {
        let ciaddr = self.answerable(req.ciaddr());
        if !ciaddr.is_unspecified() {
            DhcpReply {
                payload,
                dst_ip: ciaddr,
                dst_mac: mac,
            }
        } else if req.flags().broadcast() {
            DhcpReply {
                payload,
                dst_ip: Ipv4Addr::BROADCAST,
                dst_mac: BROADCAST_MAC,
            }
        } else {
            DhcpReply {
                payload,
                dst_ip: yiaddr,
                dst_mac: mac,
            }
        }
    }

    /// An OFFER or ACK with the configuration options; `lease` adds the lease times (not in an
    /// ACK to INFORM).
    fn reply(
        &self,
        req: &Message,
        kind: MessageType,
        ciaddr: Ipv4Addr,
        yiaddr: Ipv4Addr,
        lease: bool,
    ) -> Result<Vec<u8>, DhcpError> {
        let cfg = &self.cfg;
        let mut m = reply_header(req, ciaddr, yiaddr);
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ServerIdentifier(cfg.gateway));
        if lease {
            let secs = u32::try_from(cfg.lease_time.as_secs()).unwrap_or(u32::MAX);
            opts.insert(DhcpOption::AddressLeaseTime(secs));
            if secs != u32::MAX {
                opts.insert(DhcpOption::Renewal(secs / 2));
                opts.insert(DhcpOption::Rebinding((u64::from(secs) * 7 / 8) as u32));
            }
        }
        opts.insert(DhcpOption::SubnetMask(cfg.net.mask()));
        opts.insert(DhcpOption::Router(vec![cfg.gateway]));
        opts.insert(DhcpOption::DomainNameServer(vec![cfg.dns]));
        opts.insert(DhcpOption::BroadcastAddr(cfg.net.broadcast()));
        opts.insert(DhcpOption::InterfaceMtu(cfg.mtu));
        if let Some(d) = cfg.domain_name.as_deref().filter(|d| !d.is_empty()) {
            opts.insert(DhcpOption::DomainName(d.to_string()));
        }
        let search: Vec<Name> = cfg
            .dns_search
            .iter()
            .filter_map(|d| search_name(d))
            .collect();
        if !search.is_empty() {
            opts.insert(DhcpOption::DomainSearch(search));
        }
        encode(&m)
    }
}

/// Checks the fixed header and decodes; returns the message, its type and the client MAC.
fn parse_request(client_mac: Mac, payload: &[u8]) -> Result<Request, DhcpError> {
    if payload.len() < HEADER_LEN {
        return Err(DhcpError::Malformed(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte BOOTP header",
            payload.len()
        )));
    }
    if payload[0] != 1 {
        return Err(DhcpError::NotBootRequest);
    }
    if payload[236..240] != MAGIC_COOKIE {
        return Err(DhcpError::Malformed("bad DHCP magic cookie".into()));
    }
    // htype 1 (Ethernet), hlen 6; checked on the raw bytes because dhcproto slices chaddr by hlen.
    if payload[1] != 1 || payload[2] != 6 {
        return Err(DhcpError::Malformed(format!(
            "hardware type {} length {}, want Ethernet (1, 6)",
            payload[1], payload[2]
        )));
    }
    let clean = sanitize_options(payload)?;
    let msg = Message::decode(&mut Decoder::new(&clean))
        .map_err(|e| DhcpError::Malformed(format!("undecodable: {e}")))?;
    if msg.opcode() != Opcode::BootRequest {
        return Err(DhcpError::NotBootRequest);
    }
    if msg.htype() != HType::Eth || msg.hlen() != 6 || msg.chaddr().len() != 6 {
        return Err(DhcpError::Malformed("not an Ethernet client".into()));
    }
    if msg.chaddr() != client_mac {
        return Err(DhcpError::Malformed(format!(
            "chaddr {} differs from Ethernet source {}",
            fmt_mac(msg.chaddr()),
            fmt_mac(&client_mac)
        )));
    }
    let kind = match msg.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => *t,
        _ => return Err(DhcpError::NoMessageType),
    };
    Ok(Request {
        msg,
        kind,
        mac: client_mac,
    })
}

/// Copies the fixed header and only the options the server reads, each with a valid length.
///
/// `dhcproto`'s option decoder trusts some lengths (it can panic on, for example, a classless
/// static route with a prefix over 32, or assert on bulk-leasequery lengths), so guest bytes never
/// reach it unfiltered. Options are walked as TLVs; one running past the end is an error. Unknown
/// or badly sized options are dropped; for a repeated option the first copy counts.
fn sanitize_options(payload: &[u8]) -> Result<Vec<u8>, DhcpError> {
    let mut out = Vec::with_capacity(payload.len().min(1024));
    out.extend_from_slice(&payload[..HEADER_LEN]);
    let mut seen = [false; 256];
    let mut i = HEADER_LEN;
    while i < payload.len() {
        let code = payload[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some(&len) = payload.get(i + 1) else {
            return Err(DhcpError::Malformed(format!(
                "option {code} has no length byte"
            )));
        };
        let len = usize::from(len);
        let Some(data) = payload.get(i + 2..i + 2 + len) else {
            return Err(DhcpError::Malformed(format!(
                "option {code} runs past the end of the message"
            )));
        };
        i += 2 + len;
        let keep = match code {
            // Message type, requested address, server identifier.
            53 => len == 1,
            50 | 54 => len == 4,
            // Host name: valid UTF-8 only (dhcproto would stop decoding at the first bad one).
            12 => len > 0 && std::str::from_utf8(data).is_ok(),
            // Parameter request list, client identifier.
            55 | 61 => len > 0,
            _ => false,
        };
        if keep && !seen[usize::from(code)] {
            seen[usize::from(code)] = true;
            out.extend_from_slice(&payload[i - 2 - len..i]);
        }
    }
    out.push(255);
    Ok(out)
}

fn reply_header(req: &Message, ciaddr: Ipv4Addr, yiaddr: Ipv4Addr) -> Message {
    let mut m = Message::new_with_id(
        req.xid(),
        ciaddr,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        req.chaddr(),
    );
    m.set_opcode(Opcode::BootReply);
    m.set_htype(HType::Eth);
    m.set_flags(req.flags());
    m
}

fn encode(m: &Message) -> Result<Vec<u8>, DhcpError> {
    let mut buf = Vec::with_capacity(MIN_REPLY_LEN + 64);
    m.encode(&mut Encoder::new(&mut buf))
        .map_err(|e| DhcpError::Malformed(format!("cannot encode reply: {e}")))?;
    if buf.len() < MIN_REPLY_LEN {
        buf.resize(MIN_REPLY_LEN, 0);
    }
    Ok(buf)
}

fn requested_ip(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) if !ip.is_unspecified() => Some(*ip),
        _ => None,
    }
}

fn server_id(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

/// The client's host name (option 12), if it is a plausible one: printable ASCII, at most 63 bytes.
fn hostname(m: &Message) -> Option<String> {
    match m.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => {
            let h = h.trim_end_matches('\0');
            let ok = !h.is_empty()
                && h.len() <= 63
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            ok.then(|| h.to_string())
        }
        _ => None,
    }
}

/// A search-list entry as a fully qualified name; `None` for names that cannot be encoded.
fn search_name(d: &str) -> Option<Name> {
    let d = d.trim();
    if d.is_empty() || d == "." {
        return None;
    }
    let mut n = Name::from_ascii(d).ok()?;
    n.set_fqdn(true);
    Some(n)
}

fn add(now: Instant, d: Duration) -> Instant {
    // Saturate instead of panicking on absurd configured durations.
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86400)))
        .unwrap_or(now)
}

fn fmt_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Ipv4Net;

    const MAC_A: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const MAC_B: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x57];
    const MAC_C: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x58];

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn mac(n: u32) -> Mac {
        let b = n.to_be_bytes();
        [0x02, 0x00, b[0], b[1], b[2], b[3]]
    }

    struct Client {
        mac: Mac,
        xid: u32,
        broadcast: bool,
    }

    impl Client {
        fn new(mac: Mac) -> Self {
            Client {
                mac,
                xid: u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
                broadcast: false,
            }
        }
        fn msg(&self, kind: MessageType, ciaddr: Ipv4Addr, opts: Vec<DhcpOption>) -> Vec<u8> {
            let mut m = Message::new_with_id(
                self.xid,
                ciaddr,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                &self.mac,
            );
            if self.broadcast {
                m.set_flags(Flags::default().set_broadcast());
            }
            m.opts_mut().insert(DhcpOption::MessageType(kind));
            for o in opts {
                m.opts_mut().insert(o);
            }
            let mut buf = Vec::new();
            m.encode(&mut Encoder::new(&mut buf)).unwrap();
            buf
        }
        fn discover(&self) -> Vec<u8> {
            self.msg(
                MessageType::Discover,
                Ipv4Addr::UNSPECIFIED,
                vec![DhcpOption::ParameterRequestList(vec![
                    OptionCode::SubnetMask,
                    OptionCode::Router,
                    OptionCode::DomainNameServer,
                ])],
            )
        }
        fn discover_wanting(&self, want: Ipv4Addr) -> Vec<u8> {
            self.msg(
                MessageType::Discover,
                Ipv4Addr::UNSPECIFIED,
                vec![DhcpOption::RequestedIpAddress(want)],
            )
        }
        fn select(&self, server: Ipv4Addr, want: Ipv4Addr) -> Vec<u8> {
            self.msg(
                MessageType::Request,
                Ipv4Addr::UNSPECIFIED,
                vec![
                    DhcpOption::ServerIdentifier(server),
                    DhcpOption::RequestedIpAddress(want),
                ],
            )
        }
        fn init_reboot(&self, want: Ipv4Addr) -> Vec<u8> {
            self.msg(
                MessageType::Request,
                Ipv4Addr::UNSPECIFIED,
                vec![DhcpOption::RequestedIpAddress(want)],
            )
        }
        fn renew(&self, have: Ipv4Addr) -> Vec<u8> {
            self.msg(MessageType::Request, have, vec![])
        }
        fn release(&self, have: Ipv4Addr) -> Vec<u8> {
            self.msg(
                MessageType::Release,
                have,
                vec![DhcpOption::ServerIdentifier(ip("10.0.2.2"))],
            )
        }
    }

    fn decode(r: &DhcpReply) -> Message {
        Message::decode(&mut Decoder::new(&r.payload)).unwrap()
    }

    fn msg_type(m: &Message) -> MessageType {
        m.opts().msg_type().unwrap()
    }

    /// DISCOVER + REQUEST; returns the ACKed address.
    fn dora(s: &mut DhcpServer, now: Instant, c: &Client) -> Ipv4Addr {
        let offer = decode(&s.handle(now, c.mac, &c.discover()).unwrap().unwrap());
        assert_eq!(msg_type(&offer), MessageType::Offer);
        let ack = decode(
            &s.handle(now, c.mac, &c.select(ip("10.0.2.2"), offer.yiaddr()))
                .unwrap()
                .unwrap(),
        );
        assert_eq!(msg_type(&ack), MessageType::Ack);
        assert_eq!(ack.yiaddr(), offer.yiaddr());
        ack.yiaddr()
    }

    fn opt(m: &Message, code: OptionCode) -> &DhcpOption {
        m.opts()
            .get(code)
            .unwrap_or_else(|| panic!("option {code:?} missing"))
    }

    fn check_config_options(m: &Message, cfg: &Config) {
        assert_eq!(
            opt(m, OptionCode::ServerIdentifier),
            &DhcpOption::ServerIdentifier(cfg.gateway)
        );
        assert_eq!(
            opt(m, OptionCode::SubnetMask),
            &DhcpOption::SubnetMask(cfg.net.mask())
        );
        assert_eq!(
            opt(m, OptionCode::Router),
            &DhcpOption::Router(vec![cfg.gateway])
        );
        assert_eq!(
            opt(m, OptionCode::DomainNameServer),
            &DhcpOption::DomainNameServer(vec![cfg.dns])
        );
        assert_eq!(
            opt(m, OptionCode::BroadcastAddr),
            &DhcpOption::BroadcastAddr(cfg.net.broadcast())
        );
        assert_eq!(
            opt(m, OptionCode::InterfaceMtu),
            &DhcpOption::InterfaceMtu(cfg.mtu)
        );
    }

    #[test]
    fn full_dora_default_plan() {
        let cfg = Config {
            domain_name: Some("vm.example".into()),
            dns_search: vec!["vm.example".into(), "example.org".into()],
            mtu: 1400,
            ..Config::default()
        };
        let mut s = DhcpServer::new(&cfg);
        let now = Instant::now();
        let c = Client::new(MAC_A);

        let r = s.handle(now, MAC_A, &c.discover()).unwrap().unwrap();
        assert!(r.payload.len() >= MIN_REPLY_LEN);
        assert_eq!(r.dst_ip, ip("10.0.2.15"));
        assert_eq!(r.dst_mac, MAC_A);
        let offer = decode(&r);
        assert_eq!(offer.opcode(), Opcode::BootReply);
        assert_eq!(offer.xid(), c.xid);
        assert_eq!(offer.chaddr(), &MAC_A);
        assert_eq!(offer.yiaddr(), ip("10.0.2.15"));
        assert_eq!(offer.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(offer.giaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(msg_type(&offer), MessageType::Offer);
        check_config_options(&offer, &cfg);
        assert_eq!(
            opt(&offer, OptionCode::AddressLeaseTime),
            &DhcpOption::AddressLeaseTime(86400)
        );
        assert_eq!(
            opt(&offer, OptionCode::Renewal),
            &DhcpOption::Renewal(43200)
        );
        assert_eq!(
            opt(&offer, OptionCode::Rebinding),
            &DhcpOption::Rebinding(75600)
        );
        assert_eq!(
            opt(&offer, OptionCode::DomainName),
            &DhcpOption::DomainName("vm.example".into())
        );
        match opt(&offer, OptionCode::DomainSearch) {
            DhcpOption::DomainSearch(names) => {
                let names: Vec<String> = names.iter().map(|n| n.to_ascii()).collect();
                assert_eq!(
                    names,
                    vec!["vm.example.".to_string(), "example.org.".to_string()]
                );
            }
            other => panic!("{other:?}"),
        }
        // The offer is visible right away and reserves the address.
        assert_eq!(s.lease_for_mac(&MAC_A), Some(ip("10.0.2.15")));
        assert_eq!(s.mac_for_ip(ip("10.0.2.15")), Some(MAC_A));

        let r = s
            .handle(now, MAC_A, &c.select(ip("10.0.2.2"), ip("10.0.2.15")))
            .unwrap()
            .unwrap();
        assert_eq!(r.dst_ip, ip("10.0.2.15"));
        assert_eq!(r.dst_mac, MAC_A);
        let ack = decode(&r);
        assert_eq!(msg_type(&ack), MessageType::Ack);
        assert_eq!(ack.yiaddr(), ip("10.0.2.15"));
        assert_eq!(ack.xid(), c.xid);
        check_config_options(&ack, &cfg);
        assert_eq!(
            opt(&ack, OptionCode::AddressLeaseTime),
            &DhcpOption::AddressLeaseTime(86400)
        );

        let leases = s.leases();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].mac, MAC_A);
        assert_eq!(leases[0].ip, ip("10.0.2.15"));
        assert_eq!(leases[0].expires, now + Duration::from_secs(86400));
    }

    #[test]
    fn domain_search_is_rfc3397_encoded() {
        let cfg = Config {
            dns_search: vec!["eng.example.com".into(), "example.com".into()],
            ..Config::default()
        };
        let mut s = DhcpServer::new(&cfg);
        let r = s
            .handle(Instant::now(), MAC_A, &Client::new(MAC_A).discover())
            .unwrap()
            .unwrap();
        // Find option 119 in the raw options and check its wire form (labels, with compression).
        let mut i = HEADER_LEN;
        let mut found = None;
        while i < r.payload.len() && r.payload[i] != 255 {
            if r.payload[i] == 0 {
                i += 1;
                continue;
            }
            let (code, len) = (r.payload[i], r.payload[i + 1] as usize);
            if code == 119 {
                found = Some(r.payload[i + 2..i + 2 + len].to_vec());
            }
            i += 2 + len;
        }
        let raw = found.expect("option 119 present");
        assert!(raw.starts_with(b"\x03eng\x07example\x03com\x00"), "{raw:?}");
        // The second name is either spelled out or a pointer into the first.
        let rest = &raw[17..];
        assert!(
            rest == b"\x07example\x03com\x00" || rest == [0xc0, 4],
            "{rest:?}"
        );
    }

    #[test]
    fn no_domain_options_when_unset() {
        let mut s = DhcpServer::new(&Config::default());
        let offer = decode(
            &s.handle(Instant::now(), MAC_A, &Client::new(MAC_A).discover())
                .unwrap()
                .unwrap(),
        );
        assert!(offer.opts().get(OptionCode::DomainName).is_none());
        assert!(offer.opts().get(OptionCode::DomainSearch).is_none());
        // The MTU is always sent, even the default.
        assert_eq!(
            opt(&offer, OptionCode::InterfaceMtu),
            &DhcpOption::InterfaceMtu(1500)
        );
    }

    #[test]
    fn second_mac_gets_next_address_and_distinct_offers() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        // Two DISCOVERs before any REQUEST still get distinct offers.
        let oa = decode(
            &s.handle(now, MAC_A, &Client::new(MAC_A).discover())
                .unwrap()
                .unwrap(),
        );
        let ob = decode(
            &s.handle(now, MAC_B, &Client::new(MAC_B).discover())
                .unwrap()
                .unwrap(),
        );
        assert_eq!(oa.yiaddr(), ip("10.0.2.15"));
        assert_eq!(ob.yiaddr(), ip("10.0.2.16"));
        assert_eq!(dora(&mut s, now, &Client::new(MAC_A)), ip("10.0.2.15"));
        assert_eq!(dora(&mut s, now, &Client::new(MAC_B)), ip("10.0.2.16"));
        assert_eq!(dora(&mut s, now, &Client::new(MAC_C)), ip("10.0.2.17"));
        assert_eq!(s.mac_for_ip(ip("10.0.2.16")), Some(MAC_B));
        assert_eq!(
            s.leases().iter().map(|l| l.ip).collect::<Vec<_>>(),
            vec![ip("10.0.2.15"), ip("10.0.2.16"), ip("10.0.2.17")]
        );
    }

    #[test]
    fn same_mac_gets_same_address() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let c = Client::new(MAC_A);
        assert_eq!(dora(&mut s, now, &c), ip("10.0.2.15"));
        dora(&mut s, now, &Client::new(MAC_B));
        // Re-DISCOVER while bound: same address, lease kept.
        let t = now + Duration::from_secs(10);
        assert_eq!(dora(&mut s, t, &c), ip("10.0.2.15"));
        let offer = decode(&s.handle(t, MAC_A, &c.discover()).unwrap().unwrap());
        assert_eq!(offer.yiaddr(), ip("10.0.2.15"));
        assert_eq!(s.lease_for_mac(&MAC_A), Some(ip("10.0.2.15")));
        // A requested address does not move a bound client.
        let offer = decode(
            &s.handle(t, MAC_A, &c.discover_wanting(ip("10.0.2.40")))
                .unwrap()
                .unwrap(),
        );
        assert_eq!(offer.yiaddr(), ip("10.0.2.15"));
    }

    #[test]
    fn renewing_unicasts_to_ciaddr() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let c = Client::new(MAC_A);
        let got = dora(&mut s, now, &c);
        let t = now + Duration::from_secs(43200);
        let r = s.handle(t, MAC_A, &c.renew(got)).unwrap().unwrap();
        assert_eq!((r.dst_ip, r.dst_mac), (got, MAC_A));
        let ack = decode(&r);
        assert_eq!(msg_type(&ack), MessageType::Ack);
        assert_eq!(ack.ciaddr(), got);
        assert_eq!(ack.yiaddr(), got);
        assert_eq!(s.leases()[0].expires, t + Duration::from_secs(86400));
        // Renewing an address this MAC does not hold is NAKed.
        let r = s
            .handle(t, MAC_A, &c.renew(ip("10.0.2.99")))
            .unwrap()
            .unwrap();
        assert_eq!(msg_type(&decode(&r)), MessageType::Nak);
    }

    #[test]
    fn request_for_wrong_address_is_naked() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let b = Client::new(MAC_B);
        dora(&mut s, now, &a);
        s.handle(now, MAC_B, &b.discover()).unwrap();

        // Selecting an address other than the one offered.
        let r = s
            .handle(now, MAC_B, &b.select(ip("10.0.2.2"), ip("10.0.2.30")))
            .unwrap()
            .unwrap();
        assert_eq!((r.dst_ip, r.dst_mac), (Ipv4Addr::BROADCAST, BROADCAST_MAC));
        let nak = decode(&r);
        assert_eq!(msg_type(&nak), MessageType::Nak);
        assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(nak.flags().broadcast());
        assert_eq!(
            opt(&nak, OptionCode::ServerIdentifier),
            &DhcpOption::ServerIdentifier(ip("10.0.2.2"))
        );
        assert!(nak.opts().get(OptionCode::AddressLeaseTime).is_none());

        // Init-reboot into A's address.
        let r = s
            .handle(now, MAC_B, &b.init_reboot(ip("10.0.2.15")))
            .unwrap()
            .unwrap();
        assert_eq!(msg_type(&decode(&r)), MessageType::Nak);
        // Outside the network.
        let c = Client::new(MAC_C);
        let r = s
            .handle(now, MAC_C, &c.init_reboot(ip("192.168.1.10")))
            .unwrap()
            .unwrap();
        assert_eq!(msg_type(&decode(&r)), MessageType::Nak);
        // The gateway, DNS, network and broadcast addresses, and below the pool.
        for bad in ["10.0.2.2", "10.0.2.3", "10.0.2.0", "10.0.2.255", "10.0.2.5"] {
            let r = s
                .handle(now, MAC_C, &c.init_reboot(ip(bad)))
                .unwrap()
                .unwrap();
            assert_eq!(msg_type(&decode(&r)), MessageType::Nak, "{bad}");
        }
        assert_eq!(s.lease_for_mac(&MAC_C), None);
        assert_eq!(s.mac_for_ip(ip("10.0.2.15")), Some(MAC_A));
    }

    #[test]
    fn request_for_another_server_withdraws_offer_silently() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        s.handle(now, MAC_A, &a.discover()).unwrap();
        assert_eq!(s.lease_for_mac(&MAC_A), Some(ip("10.0.2.15")));
        assert_eq!(
            s.handle(now, MAC_A, &a.select(ip("10.0.2.99"), ip("10.0.2.15")))
                .unwrap(),
            None
        );
        assert_eq!(s.lease_for_mac(&MAC_A), None);
        // The preference remains: the next DISCOVER offers the same address.
        let offer = decode(&s.handle(now, MAC_A, &a.discover()).unwrap().unwrap());
        assert_eq!(offer.yiaddr(), ip("10.0.2.15"));
    }

    #[test]
    fn release_keeps_preference_while_free() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let b = Client::new(MAC_B);
        assert_eq!(dora(&mut s, now, &a), ip("10.0.2.15"));
        assert_eq!(
            s.handle(now, MAC_A, &a.release(ip("10.0.2.15"))).unwrap(),
            None
        );
        assert_eq!(s.lease_for_mac(&MAC_A), None);
        assert_eq!(s.mac_for_ip(ip("10.0.2.15")), None);
        assert!(s.leases().is_empty());
        // A newcomer is steered away from A's preferred address...
        assert_eq!(dora(&mut s, now, &b), ip("10.0.2.16"));
        // ...and A gets its address back.
        assert_eq!(dora(&mut s, now, &a), ip("10.0.2.15"));
    }

    #[test]
    fn released_address_can_be_taken_by_another_mac() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let b = Client::new(MAC_B);
        assert_eq!(dora(&mut s, now, &a), ip("10.0.2.15"));
        s.handle(now, MAC_A, &a.release(ip("10.0.2.15"))).unwrap();
        // B asks for it explicitly and gets it.
        let offer = decode(
            &s.handle(now, MAC_B, &b.discover_wanting(ip("10.0.2.15")))
                .unwrap()
                .unwrap(),
        );
        assert_eq!(offer.yiaddr(), ip("10.0.2.15"));
        let ack = decode(
            &s.handle(now, MAC_B, &b.select(ip("10.0.2.2"), ip("10.0.2.15")))
                .unwrap()
                .unwrap(),
        );
        assert_eq!(msg_type(&ack), MessageType::Ack);
        assert_eq!(s.mac_for_ip(ip("10.0.2.15")), Some(MAC_B));
        // A now gets another address, and cannot init-reboot into B's.
        let r = s
            .handle(now, MAC_A, &a.init_reboot(ip("10.0.2.15")))
            .unwrap()
            .unwrap();
        assert_eq!(msg_type(&decode(&r)), MessageType::Nak);
        assert_eq!(dora(&mut s, now, &a), ip("10.0.2.16"));
    }

    #[test]
    fn release_with_wrong_address_or_server_ignored() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        dora(&mut s, now, &a);
        s.handle(now, MAC_A, &a.release(ip("10.0.2.99"))).unwrap();
        assert_eq!(s.lease_for_mac(&MAC_A), Some(ip("10.0.2.15")));
        let other = a.msg(
            MessageType::Release,
            ip("10.0.2.15"),
            vec![DhcpOption::ServerIdentifier(ip("10.9.9.9"))],
        );
        s.handle(now, MAC_A, &other).unwrap();
        assert_eq!(s.lease_for_mac(&MAC_A), Some(ip("10.0.2.15")));
        // Someone else's RELEASE for A's address does nothing either.
        let b = Client::new(MAC_B);
        s.handle(now, MAC_B, &b.release(ip("10.0.2.15"))).unwrap();
        assert_eq!(s.lease_for_mac(&MAC_A), Some(ip("10.0.2.15")));
    }

    #[test]
    fn discover_honours_requested_address() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let b = Client::new(MAC_B);
        let offer = decode(
            &s.handle(now, MAC_A, &a.discover_wanting(ip("10.0.2.100")))
                .unwrap()
                .unwrap(),
        );
        assert_eq!(offer.yiaddr(), ip("10.0.2.100"));
        // Taken, outside, or reserved addresses are not honoured.
        for want in [
            "10.0.2.100",
            "10.0.3.1",
            "10.0.2.2",
            "10.0.2.3",
            "10.0.2.255",
            "10.0.2.4",
        ] {
            let offer = decode(
                &s.handle(now, MAC_B, &b.discover_wanting(ip(want)))
                    .unwrap()
                    .unwrap(),
            );
            assert_eq!(offer.yiaddr(), ip("10.0.2.15"), "{want}");
        }
    }

    /// fuzz/corpus/frame_path/crash-5eaad9a5cb61: a ciaddr off the LAN made the gateway unicast
    /// the reply (and learn a neighbour) at that address.
    #[test]
    fn ciaddr_off_the_lan_gets_a_broadcast_reply() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        for bad in [
            "255.0.0.0",
            "8.8.8.8",
            "127.0.0.1",
            "10.0.2.2",
            "10.0.2.255",
        ] {
            let r = s
                .handle(now, MAC_A, &a.msg(MessageType::Inform, ip(bad), vec![]))
                .unwrap()
                .unwrap();
            assert_eq!(
                (r.dst_ip, r.dst_mac),
                (Ipv4Addr::BROADCAST, BROADCAST_MAC),
                "{bad}"
            );
            // No broadcast flag: the offer goes to the offered address.
            let r = s
                .handle(now, MAC_A, &a.msg(MessageType::Discover, ip(bad), vec![]))
                .unwrap()
                .unwrap();
            assert_eq!((r.dst_ip, r.dst_mac), (ip("10.0.2.15"), MAC_A), "{bad}");
        }
    }

    #[test]
    fn inform_acks_without_address() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let r = s
            .handle(
                now,
                MAC_A,
                &a.msg(MessageType::Inform, ip("10.0.2.7"), vec![]),
            )
            .unwrap()
            .unwrap();
        assert_eq!((r.dst_ip, r.dst_mac), (ip("10.0.2.7"), MAC_A));
        let ack = decode(&r);
        assert_eq!(msg_type(&ack), MessageType::Ack);
        assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(ack.ciaddr(), ip("10.0.2.7"));
        check_config_options(&ack, &Config::default());
        assert!(ack.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert!(ack.opts().get(OptionCode::Renewal).is_none());
        assert!(s.leases().is_empty());
    }

    #[test]
    fn init_reboot() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let got = dora(&mut s, now, &a);
        // Reboot later (after the lease ran out too): the same address is confirmed.
        for t in [
            now + Duration::from_secs(60),
            now + Duration::from_secs(100_000),
        ] {
            let r = s.handle(t, MAC_A, &a.init_reboot(got)).unwrap().unwrap();
            let ack = decode(&r);
            assert_eq!(msg_type(&ack), MessageType::Ack);
            assert_eq!(ack.yiaddr(), got);
            assert_eq!((r.dst_ip, r.dst_mac), (got, MAC_A));
        }
        // With the broadcast flag, the ACK is broadcast.
        let now = now + Duration::from_secs(100_001);
        let mut bc = Client::new(MAC_A);
        bc.broadcast = true;
        let r = s.handle(now, MAC_A, &bc.init_reboot(got)).unwrap().unwrap();
        assert_eq!((r.dst_ip, r.dst_mac), (Ipv4Addr::BROADCAST, BROADCAST_MAC));
        // A different address is NAKed.
        let r = s
            .handle(now, MAC_A, &a.init_reboot(ip("10.0.2.50")))
            .unwrap()
            .unwrap();
        assert_eq!(msg_type(&decode(&r)), MessageType::Nak);
        assert_eq!(s.lease_for_mac(&MAC_A), Some(got));
    }

    #[test]
    fn unknown_client_may_adopt_free_address_after_restart() {
        // A fresh server (the gateway restarted) sees a client renewing an address it never gave.
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let r = s
            .handle(now, MAC_A, &a.renew(ip("10.0.2.20")))
            .unwrap()
            .unwrap();
        assert_eq!(msg_type(&decode(&r)), MessageType::Ack);
        assert_eq!(s.lease_for_mac(&MAC_A), Some(ip("10.0.2.20")));
        let b = Client::new(MAC_B);
        let r = s
            .handle(now, MAC_B, &b.init_reboot(ip("10.0.2.21")))
            .unwrap()
            .unwrap();
        assert_eq!(msg_type(&decode(&r)), MessageType::Ack);
        // But not an address someone else holds.
        let c = Client::new(MAC_C);
        let r = s
            .handle(now, MAC_C, &c.init_reboot(ip("10.0.2.20")))
            .unwrap()
            .unwrap();
        assert_eq!(msg_type(&decode(&r)), MessageType::Nak);
        // New allocations skip the adopted addresses.
        assert_eq!(dora(&mut s, now, &c), ip("10.0.2.15"));
    }

    #[test]
    fn broadcast_flag_and_unicast_replies() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let mut a = Client::new(MAC_A);
        a.broadcast = true;
        let r = s.handle(now, MAC_A, &a.discover()).unwrap().unwrap();
        assert_eq!((r.dst_ip, r.dst_mac), (Ipv4Addr::BROADCAST, BROADCAST_MAC));
        assert!(decode(&r).flags().broadcast());
        let r = s
            .handle(now, MAC_A, &a.select(ip("10.0.2.2"), ip("10.0.2.15")))
            .unwrap()
            .unwrap();
        assert_eq!((r.dst_ip, r.dst_mac), (Ipv4Addr::BROADCAST, BROADCAST_MAC));
    }

    #[test]
    fn dhcp_end_bounds_the_pool() {
        // --dhcp-range 10.0.2.100-10.0.2.101: two addresses, then exhausted.
        let cfg = Config {
            dhcp_start: ip("10.0.2.100"),
            dhcp_end: Some(ip("10.0.2.101")),
            ..Config::default()
        };
        let mut s = DhcpServer::new(&cfg);
        let now = Instant::now();
        let (a, b, c) = (
            Client::new(MAC_A),
            Client::new(MAC_B),
            Client::new([2, 0, 0, 0, 0, 0xc]),
        );
        assert_eq!(dora(&mut s, now, &a), ip("10.0.2.100"));
        assert_eq!(dora(&mut s, now, &b), ip("10.0.2.101"));
        assert_eq!(
            s.handle(now, [2, 0, 0, 0, 0, 0xc], &c.discover()),
            Err(DhcpError::PoolExhausted)
        );
    }

    #[test]
    fn expired_leases_and_offers_are_reused() {
        // A one-address pool: 10.0.2.0/29 with dhcp_start .6 → only .6.
        let cfg = Config {
            net: Ipv4Net::new(ip("10.0.2.0"), 29).unwrap(),
            dhcp_start: ip("10.0.2.6"),
            lease_time: Duration::from_secs(100),
            ..Config::default()
        };
        cfg.validate().unwrap();
        let mut s = DhcpServer::new(&cfg);
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let b = Client::new(MAC_B);
        // An unanswered offer holds the address for OFFER_HOLD.
        s.handle(now, MAC_A, &a.discover()).unwrap();
        assert_eq!(
            s.handle(now, MAC_B, &b.discover()),
            Err(DhcpError::PoolExhausted)
        );
        let t1 = now + OFFER_HOLD + Duration::from_secs(1);
        assert_eq!(dora(&mut s, t1, &b), ip("10.0.2.6"));
        assert_eq!(
            s.handle(t1, MAC_A, &a.discover()),
            Err(DhcpError::PoolExhausted)
        );
        // B's lease runs out; A can have the address.
        let t2 = t1 + Duration::from_secs(101);
        assert_eq!(dora(&mut s, t2, &a), ip("10.0.2.6"));
        assert_eq!(s.mac_for_ip(ip("10.0.2.6")), Some(MAC_A));
        // B's renewal is now refused.
        let r = s
            .handle(t2, MAC_B, &b.renew(ip("10.0.2.6")))
            .unwrap()
            .unwrap();
        assert_eq!(msg_type(&decode(&r)), MessageType::Nak);
    }

    #[test]
    fn accessors_follow_time() {
        let cfg = Config {
            lease_time: Duration::from_secs(100),
            ..Config::default()
        };
        let mut s = DhcpServer::new(&cfg);
        let now = Instant::now();
        dora(&mut s, now, &Client::new(MAC_A));
        assert_eq!(s.lease_for_mac(&MAC_A), Some(ip("10.0.2.15")));
        s.advance(now + Duration::from_secs(101));
        assert_eq!(s.lease_for_mac(&MAC_A), None);
        assert_eq!(s.mac_for_ip(ip("10.0.2.15")), None);
        assert!(s.leases().is_empty());
        // The MAC still gets its old address back.
        assert_eq!(
            dora(&mut s, now + Duration::from_secs(200), &Client::new(MAC_A)),
            ip("10.0.2.15")
        );
    }

    #[test]
    fn pool_exhaustion_small_net() {
        // 10.0.2.0/29: .1 .. .6 usable, gateway .2 and DNS .3 excluded, start .1 → .1 .4 .5 .6.
        let cfg = Config {
            net: Ipv4Net::new(ip("10.0.2.0"), 29).unwrap(),
            dhcp_start: ip("10.0.2.1"),
            ..Config::default()
        };
        cfg.validate().unwrap();
        let mut s = DhcpServer::new(&cfg);
        let now = Instant::now();
        let mut got = Vec::new();
        for n in 0..4 {
            got.push(dora(&mut s, now, &Client::new(mac(n))));
        }
        assert_eq!(
            got,
            vec![
                ip("10.0.2.1"),
                ip("10.0.2.4"),
                ip("10.0.2.5"),
                ip("10.0.2.6")
            ]
        );
        let e = Client::new(mac(99));
        assert_eq!(
            s.handle(now, e.mac, &e.discover()),
            Err(DhcpError::PoolExhausted)
        );
        // A release lets the newcomer take the released (preferred) address as a last resort.
        let c1 = Client::new(mac(1));
        s.handle(
            now,
            c1.mac,
            &c1.msg(MessageType::Release, ip("10.0.2.4"), vec![]),
        )
        .unwrap();
        assert_eq!(dora(&mut s, now, &e), ip("10.0.2.4"));
        assert_eq!(
            s.handle(now, c1.mac, &c1.discover()),
            Err(DhcpError::PoolExhausted)
        );
    }

    #[test]
    fn decline_quarantines_address() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let got = dora(&mut s, now, &a);
        let decline = a.msg(
            MessageType::Decline,
            Ipv4Addr::UNSPECIFIED,
            vec![
                DhcpOption::RequestedIpAddress(got),
                DhcpOption::ServerIdentifier(ip("10.0.2.2")),
            ],
        );
        assert_eq!(s.handle(now, MAC_A, &decline).unwrap(), None);
        assert!(s.is_declined(got));
        assert_eq!(s.lease_for_mac(&MAC_A), None);
        // Neither A nor anyone else gets it while quarantined.
        assert_eq!(dora(&mut s, now, &a), ip("10.0.2.16"));
        assert_eq!(dora(&mut s, now, &Client::new(MAC_B)), ip("10.0.2.17"));
        let c = Client::new(MAC_C);
        let offer = decode(
            &s.handle(now, MAC_C, &c.discover_wanting(got))
                .unwrap()
                .unwrap(),
        );
        assert_ne!(offer.yiaddr(), got);
        // Afterwards it returns to the pool.
        let later = now + DECLINE_HOLD + Duration::from_secs(1);
        let d = Client::new(mac(7));
        assert_eq!(dora(&mut s, later, &d), got);
        assert!(!s.is_declined(got));
    }

    #[test]
    fn decline_for_foreign_address_ignored() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        dora(&mut s, now, &Client::new(MAC_A));
        let b = Client::new(MAC_B);
        let decline = b.msg(
            MessageType::Decline,
            Ipv4Addr::UNSPECIFIED,
            vec![DhcpOption::RequestedIpAddress(ip("10.0.2.15"))],
        );
        assert_eq!(s.handle(now, MAC_B, &decline).unwrap(), None);
        assert!(!s.is_declined(ip("10.0.2.15")));
        assert_eq!(s.lease_for_mac(&MAC_A), Some(ip("10.0.2.15")));
    }

    #[test]
    fn custom_address_plan() {
        let cfg = Config {
            net: Ipv4Net::parse("192.168.100.0/24").unwrap(),
            gateway: ip("192.168.100.1"),
            dns: ip("192.168.100.53"),
            dhcp_start: ip("192.168.100.50"),
            ..Config::default()
        };
        cfg.validate().unwrap();
        let mut s = DhcpServer::new(&cfg);
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let offer = decode(&s.handle(now, MAC_A, &a.discover()).unwrap().unwrap());
        assert_eq!(offer.yiaddr(), ip("192.168.100.50"));
        check_config_options(&offer, &cfg);
        assert_eq!(
            opt(&offer, OptionCode::SubnetMask),
            &DhcpOption::SubnetMask(ip("255.255.255.0"))
        );
        assert_eq!(
            opt(&offer, OptionCode::BroadcastAddr),
            &DhcpOption::BroadcastAddr(ip("192.168.100.255"))
        );
        let ack = decode(
            &s.handle(
                now,
                MAC_A,
                &a.select(ip("192.168.100.1"), ip("192.168.100.50")),
            )
            .unwrap()
            .unwrap(),
        );
        assert_eq!(msg_type(&ack), MessageType::Ack);
        // Selecting with the default plan's server id means "another server".
        let b = Client::new(MAC_B);
        s.handle(now, MAC_B, &b.discover()).unwrap();
        assert_eq!(
            s.handle(now, MAC_B, &b.select(ip("10.0.2.2"), ip("192.168.100.51")))
                .unwrap(),
            None
        );
        // The DNS address inside the pool is skipped.
        let mut cfg2 = cfg.clone();
        cfg2.dns = ip("192.168.100.51");
        let mut s2 = DhcpServer::new(&cfg2);
        let got: Vec<_> = (0..3)
            .map(|n| dora_with(&mut s2, now, &Client::new(mac(n)), cfg2.gateway))
            .collect();
        assert_eq!(
            got,
            vec![
                ip("192.168.100.50"),
                ip("192.168.100.52"),
                ip("192.168.100.53")
            ]
        );
    }

    fn dora_with(s: &mut DhcpServer, now: Instant, c: &Client, server: Ipv4Addr) -> Ipv4Addr {
        let offer = decode(&s.handle(now, c.mac, &c.discover()).unwrap().unwrap());
        let ack = decode(
            &s.handle(now, c.mac, &c.select(server, offer.yiaddr()))
                .unwrap()
                .unwrap(),
        );
        assert_eq!(msg_type(&ack), MessageType::Ack);
        ack.yiaddr()
    }

    #[test]
    fn hostname_recorded() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let d = a.msg(
            MessageType::Discover,
            Ipv4Addr::UNSPECIFIED,
            vec![DhcpOption::Hostname("guest-1".into())],
        );
        s.handle(now, MAC_A, &d).unwrap();
        assert_eq!(s.leases()[0].hostname.as_deref(), Some("guest-1"));
        let b = Client::new(MAC_B);
        let d = b.msg(
            MessageType::Discover,
            Ipv4Addr::UNSPECIFIED,
            vec![DhcpOption::Hostname("bad name\u{7}".into())],
        );
        s.handle(now, MAC_B, &d).unwrap();
        assert_eq!(s.leases()[1].hostname, None);
    }

    #[test]
    fn bad_messages_are_errors() {
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let a = Client::new(MAC_A);
        let good = a.discover();

        assert!(matches!(
            s.handle(now, MAC_A, &[]),
            Err(DhcpError::Malformed(_))
        ));
        assert!(matches!(
            s.handle(now, MAC_A, &good[..239]),
            Err(DhcpError::Malformed(_))
        ));
        assert!(matches!(
            s.handle(now, MAC_A, &[0xab; 600]),
            Err(DhcpError::NotBootRequest)
        ));

        let mut reply = good.clone();
        reply[0] = 2;
        assert_eq!(s.handle(now, MAC_A, &reply), Err(DhcpError::NotBootRequest));

        let mut cookie = good.clone();
        cookie[236] = 0;
        assert!(matches!(
            s.handle(now, MAC_A, &cookie),
            Err(DhcpError::Malformed(_))
        ));

        // hlen beyond the 16-byte chaddr must not make anything slice out of bounds.
        for hlen in [0u8, 5, 7, 16, 17, 255] {
            let mut m = good.clone();
            m[2] = hlen;
            assert!(
                matches!(s.handle(now, MAC_A, &m), Err(DhcpError::Malformed(_))),
                "hlen {hlen}"
            );
        }
        let mut htype = good.clone();
        htype[1] = 6;
        assert!(matches!(
            s.handle(now, MAC_A, &htype),
            Err(DhcpError::Malformed(_))
        ));

        // chaddr must match the Ethernet source.
        assert!(matches!(
            s.handle(now, MAC_B, &good),
            Err(DhcpError::Malformed(_))
        ));

        // Missing message type.
        let mut m = Message::new_with_id(
            1,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &MAC_A,
        );
        m.opts_mut().insert(DhcpOption::Hostname("x".into()));
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        assert_eq!(s.handle(now, MAC_A, &buf), Err(DhcpError::NoMessageType));
        // No options at all (plain BOOTP).
        assert_eq!(
            s.handle(now, MAC_A, &good[..240]),
            Err(DhcpError::NoMessageType)
        );

        // Server-to-client types from a client.
        for t in [MessageType::Offer, MessageType::Ack, MessageType::Nak] {
            assert!(matches!(
                s.handle(now, MAC_A, &a.msg(t, Ipv4Addr::UNSPECIFIED, vec![])),
                Err(DhcpError::Malformed(_))
            ));
        }
        // REQUEST with nothing to go on.
        assert!(matches!(
            s.handle(
                now,
                MAC_A,
                &a.msg(MessageType::Request, Ipv4Addr::UNSPECIFIED, vec![])
            ),
            Err(DhcpError::Malformed(_))
        ));
        assert!(s.leases().is_empty());
        // Every error has a one-line description.
        for e in [
            DhcpError::Malformed("x".into()),
            DhcpError::NotBootRequest,
            DhcpError::NoMessageType,
            DhcpError::PoolExhausted,
        ] {
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn every_option_code_with_odd_lengths_is_safe() {
        // dhcproto's decoder would panic on some of these (option 121 with prefix 200, 81 or 151
        // shorter than their fixed part, ...); none may reach it.
        let mut s = DhcpServer::new(&Config::default());
        let now = Instant::now();
        let good = Client::new(MAC_A).discover();
        let end = good.iter().rposition(|b| *b == 255).unwrap();
        for code in 1..=254u8 {
            for len in 0..=9u8 {
                for fill in [0u8, 0x20, 0xc8, 0xff] {
                    let mut m = good[..end].to_vec();
                    m.push(code);
                    m.push(len);
                    m.extend(vec![fill; usize::from(len)]);
                    m.push(255);
                    let _ = s.handle(now, MAC_A, &m);
                }
            }
        }
        // A truncated option is an error.
        let mut m = good[..end].to_vec();
        m.extend([12, 10, b'a']);
        assert!(matches!(
            s.handle(now, MAC_A, &m),
            Err(DhcpError::Malformed(_))
        ));
        let mut m = good[..end].to_vec();
        m.push(12);
        assert!(matches!(
            s.handle(now, MAC_A, &m),
            Err(DhcpError::Malformed(_))
        ));
        // A missing End option is tolerated.
        assert!(s.handle(now, MAC_A, &good[..end]).unwrap().is_some());
        // A bad-length message type is no message type.
        let mut m = good[..240].to_vec();
        m.extend([53, 2, 1, 1, 255]);
        assert_eq!(s.handle(now, MAC_A, &m), Err(DhcpError::NoMessageType));
    }

    #[test]
    fn relayed_messages_ignored() {
        let mut s = DhcpServer::new(&Config::default());
        let mut m = Message::new_with_id(
            1,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            ip("10.0.2.1"),
            &MAC_A,
        );
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        assert_eq!(s.handle(Instant::now(), MAC_A, &buf), Ok(None));
        assert!(s.leases().is_empty());
    }

    #[test]
    fn binding_table_is_bounded() {
        let mut s = DhcpServer::new(&Config {
            net: Ipv4Net::new(ip("10.0.0.0"), 16).unwrap(),
            ..Config::default()
        });
        s.max_bindings = 8;
        let now = Instant::now();
        for n in 0..8 {
            dora(&mut s, now, &Client::new(mac(n)));
        }
        let extra = Client::new(mac(100));
        assert_eq!(
            s.handle(now, extra.mac, &extra.discover()),
            Err(DhcpError::PoolExhausted)
        );
        // Once some lapse, the oldest preference is forgotten to make room.
        let later = now + Duration::from_secs(86401);
        assert!(s
            .handle(later, extra.mac, &extra.discover())
            .unwrap()
            .is_some());
        assert!(s.bindings.len() <= 8);
        assert_eq!(s.bindings.len(), s.by_ip.len());
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
        let cfg = Config {
            net: Ipv4Net::new(ip("10.0.2.0"), 28).unwrap(),
            dhcp_start: ip("10.0.2.4"),
            dns_search: vec!["a.example".into()],
            ..Config::default()
        };
        let mut s = DhcpServer::new(&cfg);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let t0 = Instant::now();
        let seeds: Vec<Vec<u8>> = {
            let c = Client::new(MAC_A);
            vec![
                c.discover(),
                c.select(ip("10.0.2.2"), ip("10.0.2.4")),
                c.renew(ip("10.0.2.4")),
                c.init_reboot(ip("10.0.2.5")),
                c.release(ip("10.0.2.4")),
            ]
        };
        for i in 0..20_000u64 {
            let now = t0 + Duration::from_secs(i / 10);
            let r = rng.next();
            let mut buf = match r % 4 {
                // Pure noise, possibly with a valid-looking header.
                0 => {
                    let len = (rng.next() % 600) as usize;
                    let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    if len >= 240 && rng.next().is_multiple_of(2) {
                        b[0] = 1;
                        b[1] = 1;
                        b[2] = 6;
                        b[28..34].copy_from_slice(&MAC_A);
                        b[236..240].copy_from_slice(&MAGIC_COOKIE);
                    }
                    b
                }
                // Truncated valid messages.
                1 => {
                    let seed = &seeds[(rng.next() % seeds.len() as u64) as usize];
                    seed[..(rng.next() as usize % (seed.len() + 1))].to_vec()
                }
                // Valid messages with flipped bytes (options are where the fun is).
                _ => {
                    let mut b = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
                    for _ in 0..(rng.next() % 8) {
                        let at = (rng.next() as usize) % b.len();
                        b[at] = rng.next() as u8;
                    }
                    b
                }
            };
            if rng.next().is_multiple_of(16) {
                buf.extend((0..rng.next() % 64).map(|_| rng.next() as u8));
            }
            let src = if rng.next().is_multiple_of(4) {
                mac(rng.next() as u32 % 8)
            } else {
                MAC_A
            };
            if let Ok(Some(reply)) = s.handle(now, src, &buf) {
                // Whatever we send must itself decode.
                let m = Message::decode(&mut Decoder::new(&reply.payload)).unwrap();
                assert_eq!(m.opcode(), Opcode::BootReply);
            }
            // Invariants: no two MACs share an address; every active address is in the pool.
            let leases = s.leases();
            let mut ips: Vec<_> = leases.iter().map(|l| l.ip).collect();
            ips.sort();
            ips.dedup();
            assert_eq!(ips.len(), leases.len());
            assert!(leases.iter().all(|l| s.in_pool(l.ip)));
            assert_eq!(s.bindings.len(), s.by_ip.len());
        }
    }
}
