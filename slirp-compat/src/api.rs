//! The slirp4netns API socket protocol (QMP-like JSON, one request per connection), plus
//! warren's `list_leases` and `stats`.
//!
//! Checked against slirp4netns's `api.c`, its `slirp4netns(1)` page and
//! `tests/test-slirp4netns-api-socket.sh`:
//! - requests: `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0",
//!   "host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}`, `{"execute":"list_hostfwd"}`,
//!   `{"execute":"remove_hostfwd","arguments":{"id":N}}`; a request is under 4096 bytes
//!   ([`MAX_REQUEST`]); the client shuts down its write side after sending.
//! - `proto` is `tcp`/`udp`, optionally suffixed `4` or `6` to pick one family. `host_addr`
//!   defaults to 0.0.0.0; `::` and `::0` also mean 0.0.0.0 (as slirp4netns rewrites them).
//!   `guest_addr` defaults to the `--configure` address (network + 100), filled in by the daemon.
//!   `host_port`/`guest_port` 0 or missing is an error.
//! - replies: `{"return":{"id":N}}`, `{"return":{}}`, `{"error":{"desc":"bad request: …"}}` with
//!   slirp4netns's exact descriptions for the cases it has.
//! - `list_hostfwd`: slirp4netns's code answers `{"entries":[…]}` (its test reads `.entries[0]`)
//!   while its man page shows `{"return":{"entries":[…]}}`. warren sends both keys —
//!   `{"return":{"entries":[…]},"entries":[…]}` — so clients written against either work. Each
//!   entry is `{"id","proto","host_addr","host_port","guest_addr","guest_port"}`; IPv6 addresses
//!   go in `host_addr6`/`guest_addr6` as slirp4netns does.
//!
//! Where warren is stricter: ports must be JSON integers 1..=65535 (slirp4netns truncates
//! floats and wraps large numbers), `proto` must be exactly one of the six spellings, unknown
//! argument keys are ignored (as slirp4netns does), and a rule whose protocol, host port and
//! host address (or either one unspecified) collide with an existing one is refused up front.

use crate::hostfwd::Proto;
use serde::Serialize;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// slirp4netns reads one request with a single `read` of this many bytes and refuses it if the
/// read filled the buffer. The daemon should read until EOF or this many bytes (clients shut
/// down their write side after the request) and pass what it got to [`parse_request`].
pub const MAX_REQUEST: usize = 4096;

/// An error reply: `{"error":{"desc":"…"}}`, `desc` being the `Display` text (slirp4netns's
/// wording where it has one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("bad request: too large message")]
    TooLarge,
    #[error("bad request: cannot parse JSON")]
    NotJson,
    #[error("bad request: json_object() failed")]
    NotObject,
    #[error("bad request: no execute found")]
    NoExecute,
    #[error("bad request: unknown execute")]
    UnknownExecute,
    /// `bad request: {command}: bad arguments.{field}`.
    #[error("bad request: {command}: bad arguments.{field}")]
    BadArgument {
        command: &'static str,
        field: &'static str,
    },
    #[error("bad request: add_hostfwd: {proto} {host} is already forwarded (id {id})")]
    AlreadyForwarded {
        proto: Proto,
        host: SocketAddr,
        id: u32,
    },
    #[error("bad request: add_hostfwd: too many forwardings (at most {0})")]
    TooMany(usize),
    #[error("bad request: add_hostfwd: out of ids")]
    OutOfIds,
    /// The backend could not open the forwarding (its message, e.g. a bind error).
    #[error("bad request: add_hostfwd: {0}")]
    Open(String),
    /// A VXLAN request to a daemon without an uplink (warren's daemon answers them when it has one).
    #[error("no VXLAN uplink")]
    NoVxlan,
}

impl ApiError {
    /// `bad request: {command}: bad arguments.{field}` (slirp4netns's wording).
    pub fn bad_argument(command: &'static str, field: &'static str) -> Self {
        ApiError::BadArgument { command, field }
    }
    /// The JSON reply bytes.
    pub fn to_json(&self) -> Vec<u8> {
        error_response(&self.to_string())
    }
}

/// Why an [`ApiBackend`] could not open a forwarding (the daemon's own error type).
pub type OpenError = Box<dyn std::error::Error + Send + Sync>;

/// Which address families an `add_hostfwd` asked for (`tcp4`/`tcp6` vs `tcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `tcp`/`udp`: the family of `host_addr` (the wildcard means IPv4, plus IPv6 when enabled).
    Any,
    V4,
    V6,
}

/// A decoded `add_hostfwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddHostFwd {
    pub proto: Proto,
    pub family: Family,
    /// 0.0.0.0 when absent/empty/`::`; `::` only with `tcp6`/`udp6`.
    pub host_addr: IpAddr,
    pub host_port: u16,
    /// `None`: the daemon's default guest (network + 100 in slirp4netns).
    pub guest_addr: Option<IpAddr>,
    pub guest_port: u16,
}

impl AddHostFwd {
    /// The host and guest socket addresses, and whether the guest was left to the default: an
    /// absent guest address is `default_guest` (network + 100 for slirp4netns) and then the
    /// connections of an IPv6 listener go to that guest's IPv6 address when the gateway knows one
    /// (the `bool`). IPv6 (`tcp6`, an IPv6 host or guest address) needs `ipv6_enabled`. The
    /// families may differ (an IPv6 listener may lead to an IPv4 guest and the other way round),
    /// where slirp4netns keeps them apart.
    pub fn resolve(
        &self,
        default_guest: IpAddr,
        ipv6_enabled: bool,
    ) -> Result<(SocketAddr, SocketAddr, bool), ApiError> {
        let bad = |f: &'static str| ApiError::bad_argument("add_hostfwd", f);
        if self.family == Family::V6 && !ipv6_enabled {
            return Err(bad("proto"));
        }
        if self.host_addr.is_ipv6() && !ipv6_enabled {
            return Err(bad("host_addr"));
        }
        if self.guest_addr.is_some_and(|g| g.is_ipv6()) && !ipv6_enabled {
            return Err(bad("guest_addr"));
        }
        let guest = self.guest_addr.unwrap_or(default_guest);
        Ok((
            SocketAddr::new(self.host_addr, self.host_port),
            SocketAddr::new(guest, self.guest_port),
            self.guest_addr.is_none(),
        ))
    }
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiRequest {
    AddHostFwd(AddHostFwd),
    ListHostFwd,
    RemoveHostFwd {
        id: u32,
    },
    /// warren: the DHCP leases.
    ListLeases,
    /// warren: the gateway's counters.
    Stats,
    /// warren: the VXLAN uplink's VTEPs and learnt MACs (`list_vxlan`).
    ListVxlan,
    /// warren: add a static remote VTEP (`add_vxlan_remote`, `{"remote":"ADDR[:PORT]"}`).
    AddVxlanRemote {
        remote: String,
    },
    /// warren: remove a static remote VTEP (`remove_vxlan_remote`).
    RemoveVxlanRemote {
        remote: String,
    },
}

impl ApiRequest {
    /// The request as JSON bytes (what `warren ctl` sends), keys in slirp4netns's order:
    /// `{"execute":"add_hostfwd","arguments":{"proto":…,"host_addr":…,"host_port":…,
    /// "guest_addr":…,"guest_port":…}}`.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Req<A: Serialize> {
            execute: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            arguments: Option<A>,
        }
        #[derive(Serialize)]
        struct AddArgs {
            proto: String,
            host_addr: String,
            host_port: u16,
            #[serde(skip_serializing_if = "Option::is_none")]
            guest_addr: Option<String>,
            guest_port: u16,
        }
        #[derive(Serialize)]
        struct IdArg {
            id: u32,
        }
        #[derive(Serialize)]
        struct RemoteArg<'a> {
            remote: &'a str,
        }
        let bare = |execute| {
            to_bytes(&Req::<()> {
                execute,
                arguments: None,
            })
        };
        match self {
            ApiRequest::AddHostFwd(a) => {
                let proto = match a.family {
                    Family::Any => a.proto.as_str().to_string(),
                    Family::V4 => format!("{}4", a.proto),
                    Family::V6 => format!("{}6", a.proto),
                };
                to_bytes(&Req {
                    execute: "add_hostfwd",
                    arguments: Some(AddArgs {
                        proto,
                        host_addr: a.host_addr.to_string(),
                        host_port: a.host_port,
                        guest_addr: a.guest_addr.map(|g| g.to_string()),
                        guest_port: a.guest_port,
                    }),
                })
            }
            ApiRequest::ListHostFwd => bare("list_hostfwd"),
            ApiRequest::RemoveHostFwd { id } => to_bytes(&Req {
                execute: "remove_hostfwd",
                arguments: Some(IdArg { id: *id }),
            }),
            ApiRequest::ListLeases => bare("list_leases"),
            ApiRequest::Stats => bare("stats"),
            ApiRequest::ListVxlan => bare("list_vxlan"),
            ApiRequest::AddVxlanRemote { remote } => to_bytes(&Req {
                execute: "add_vxlan_remote",
                arguments: Some(RemoteArg { remote }),
            }),
            ApiRequest::RemoveVxlanRemote { remote } => to_bytes(&Req {
                execute: "remove_vxlan_remote",
                arguments: Some(RemoteArg { remote }),
            }),
        }
    }
}

/// Decodes one request (the bytes read from one connection).
pub fn parse_request(buf: &[u8]) -> Result<ApiRequest, ApiError> {
    if buf.len() >= MAX_REQUEST {
        return Err(ApiError::TooLarge);
    }
    let v: Value = serde_json::from_slice(buf).map_err(|_| ApiError::NotJson)?;
    let obj = v.as_object().ok_or(ApiError::NotObject)?;
    let execute = obj
        .get("execute")
        .and_then(Value::as_str)
        .ok_or(ApiError::NoExecute)?;
    let args = obj.get("arguments").and_then(Value::as_object);
    let arg = |k: &str| args.and_then(|a| a.get(k));
    match execute {
        "add_hostfwd" => {
            let bad = |f: &'static str| ApiError::bad_argument("add_hostfwd", f);
            let (proto, family) = match arg("proto").and_then(Value::as_str) {
                Some("tcp") => (Proto::Tcp, Family::Any),
                Some("udp") => (Proto::Udp, Family::Any),
                Some("tcp4") => (Proto::Tcp, Family::V4),
                Some("udp4") => (Proto::Udp, Family::V4),
                Some("tcp6") => (Proto::Tcp, Family::V6),
                Some("udp6") => (Proto::Udp, Family::V6),
                _ => return Err(bad("proto")),
            };
            let host_addr = match arg("host_addr") {
                None | Some(Value::Null) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Some(Value::String(s)) if s.is_empty() || s == "::" || s == "::0" => {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                }
                Some(Value::String(s)) => s.parse().map_err(|_| bad("host_addr"))?,
                Some(_) => return Err(bad("host_addr")),
            };
            // tcp6 + wildcard means the IPv6 wildcard; a family suffix must match the address.
            let host_addr = match (family, host_addr) {
                (Family::V6, a) if a == IpAddr::V4(Ipv4Addr::UNSPECIFIED) => {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                }
                (Family::V4, IpAddr::V6(_)) | (Family::V6, IpAddr::V4(_)) => {
                    return Err(bad("host_addr"))
                }
                (_, a) => a,
            };
            let port = |f: &'static str| -> Result<u16, ApiError> {
                arg(f)
                    .and_then(Value::as_u64)
                    .filter(|p| (1..=65535).contains(p))
                    .map(|p| p as u16)
                    .ok_or_else(|| bad(f))
            };
            let host_port = port("host_port")?;
            let guest_port = port("guest_port")?;
            let guest_addr = match arg("guest_addr") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(s.parse::<IpAddr>().map_err(|_| bad("guest_addr"))?),
                Some(_) => return Err(bad("guest_addr")),
            };
            Ok(ApiRequest::AddHostFwd(AddHostFwd {
                proto,
                family,
                host_addr,
                host_port,
                guest_addr,
                guest_port,
            }))
        }
        "list_hostfwd" => Ok(ApiRequest::ListHostFwd),
        "remove_hostfwd" => {
            let id = arg("id")
                .and_then(Value::as_u64)
                .filter(|id| (1..=u64::from(u32::MAX)).contains(id))
                .ok_or_else(|| ApiError::bad_argument("remove_hostfwd", "id"))?;
            Ok(ApiRequest::RemoveHostFwd { id: id as u32 })
        }
        "list_leases" => Ok(ApiRequest::ListLeases),
        "stats" => Ok(ApiRequest::Stats),
        _ => Err(ApiError::UnknownExecute),
    }
}

/// One forwarding in the table (and in `list_hostfwd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFwdEntry {
    pub id: u32,
    pub proto: Proto,
    pub host: SocketAddr,
    pub guest: SocketAddr,
}

#[derive(Serialize)]
struct EntryJson {
    id: u32,
    proto: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_addr6: Option<String>,
    host_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guest_addr6: Option<String>,
    guest_port: u16,
}

impl HostFwdEntry {
    fn json(&self) -> EntryJson {
        let (h4, h6) = match self.host.ip() {
            IpAddr::V4(a) => (Some(a.to_string()), None),
            IpAddr::V6(a) => (None, Some(a.to_string())),
        };
        let (g4, g6) = match self.guest.ip() {
            IpAddr::V4(a) => (Some(a.to_string()), None),
            IpAddr::V6(a) => (None, Some(a.to_string())),
        };
        EntryJson {
            id: self.id,
            proto: self.proto.as_str(),
            host_addr: h4,
            host_addr6: h6,
            host_port: self.host.port(),
            guest_addr: g4,
            guest_addr6: g6,
            guest_port: self.guest.port(),
        }
    }
}

/// The daemon's forwarding table: ids from 1 up, never reused (as slirp4netns), insertion order.
#[derive(Clone, Debug)]
pub struct HostFwdTable {
    entries: Vec<HostFwdEntry>,
    next_id: u32,
    /// Most entries (each holds a host socket).
    pub max_entries: usize,
}

impl Default for HostFwdTable {
    fn default() -> Self {
        HostFwdTable::new()
    }
}

impl HostFwdTable {
    pub fn new() -> Self {
        HostFwdTable {
            entries: Vec::new(),
            next_id: 1,
            max_entries: 4096,
        }
    }

    /// The entry a new `proto` listener on `host` would collide with: same protocol and port,
    /// and the same address or either side the wildcard of its family (binding would fail with
    /// EADDRINUSE). The IPv6 wildcard also covers IPv4 (dual-stack sockets).
    pub fn conflict(&self, proto: Proto, host: SocketAddr) -> Option<&HostFwdEntry> {
        self.entries.iter().find(|e| {
            e.proto == proto && e.host.port() == host.port() && overlaps(e.host.ip(), host.ip())
        })
    }

    /// Checks whether a rule could be added (the daemon calls this, binds, then [`Self::add`]).
    pub fn check(&self, proto: Proto, host: SocketAddr) -> Result<(), ApiError> {
        if let Some(e) = self.conflict(proto, host) {
            return Err(ApiError::AlreadyForwarded {
                proto,
                host,
                id: e.id,
            });
        }
        if self.entries.len() >= self.max_entries {
            return Err(ApiError::TooMany(self.max_entries));
        }
        if self.next_id == u32::MAX {
            return Err(ApiError::OutOfIds);
        }
        Ok(())
    }

    /// Adds a rule and returns its id.
    pub fn add(
        &mut self,
        proto: Proto,
        host: SocketAddr,
        guest: SocketAddr,
    ) -> Result<u32, ApiError> {
        if host.port() == 0 || guest.port() == 0 {
            return Err(ApiError::bad_argument(
                "add_hostfwd",
                if host.port() == 0 {
                    "host_port"
                } else {
                    "guest_port"
                },
            ));
        }
        self.check(proto, host)?;
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push(HostFwdEntry {
            id,
            proto,
            host,
            guest,
        });
        Ok(id)
    }

    /// Removes a rule by id, returning it (so the daemon can close its listener).
    pub fn remove(&mut self, id: u32) -> Result<HostFwdEntry, ApiError> {
        let i = self
            .entries
            .iter()
            .position(|e| e.id == id)
            .ok_or_else(|| ApiError::bad_argument("remove_hostfwd", "id"))?;
        Ok(self.entries.remove(i))
    }

    pub fn get(&self, id: u32) -> Option<&HostFwdEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// In the order added.
    pub fn list(&self) -> &[HostFwdEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    let v6_any = |x: IpAddr| x.is_ipv6() && x.is_unspecified();
    a == b
        || v6_any(a)
        || v6_any(b)
        || (a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
}

#[derive(Serialize)]
struct Return<T: Serialize> {
    #[serde(rename = "return")]
    ret: T,
}

fn to_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail; fall back to an error reply rather than panic.
    serde_json::to_vec(v).unwrap_or_else(|_| error_response("internal: cannot serialize reply"))
}

/// `{"return":{"id":N}}`
pub fn id_response(id: u32) -> Vec<u8> {
    #[derive(Serialize)]
    struct Id {
        id: u32,
    }
    to_bytes(&Return { ret: Id { id } })
}

/// `{"return":{}}`
pub fn empty_response() -> Vec<u8> {
    b"{\"return\":{}}".to_vec()
}

/// `{"error":{"desc":"…"}}`
pub fn error_response(desc: &str) -> Vec<u8> {
    serde_json::json!({"error": {"desc": desc}})
        .to_string()
        .into_bytes()
}

/// `{"return":{"entries":[…]},"entries":[…]}` (see the module docs for why both).
pub fn list_response(entries: &[HostFwdEntry]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Entries {
        entries: Vec<EntryJson>,
    }
    #[derive(Serialize)]
    struct Both {
        #[serde(rename = "return")]
        ret: Entries,
        entries: Vec<EntryJson>,
    }
    let e = || entries.iter().map(HostFwdEntry::json).collect::<Vec<_>>();
    to_bytes(&Both {
        ret: Entries { entries: e() },
        entries: e(),
    })
}

/// One DHCP lease for `list_leases`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaseInfo {
    /// `52:54:00:12:34:56`
    pub mac: String,
    /// The guest's DHCP lease; left out for a guest known only by IPv6 addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Seconds until the DHCP lease (or offer) lapses; left out with `ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// The guest's IPv6 addresses: its DHCPv6 leases and the addresses the gateway saw it use
    /// (traffic, duplicate address detection, neighbour advertisements). Left out when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<std::net::Ipv6Addr>,
}

impl LeaseInfo {
    pub fn new(mac: [u8; 6], ip: Ipv4Addr, hostname: Option<String>, expires_in: u64) -> Self {
        LeaseInfo {
            mac: fmt_mac(mac),
            ip: Some(ip),
            hostname,
            expires_in: Some(expires_in),
            ipv6: Vec::new(),
        }
    }
    /// A guest without a DHCP lease, known by its IPv6 addresses (IPv6 only: `--no-ipv4`, or
    /// SLAAC/DHCPv6 alone): the IPv4 fields are left out.
    pub fn ipv6_only(mac: [u8; 6], addrs: Vec<std::net::Ipv6Addr>) -> Self {
        LeaseInfo {
            mac: fmt_mac(mac),
            ip: None,
            hostname: None,
            expires_in: None,
            ipv6: addrs,
        }
    }
    /// The same with the guest's IPv6 addresses.
    pub fn with_ipv6(mut self, addrs: Vec<std::net::Ipv6Addr>) -> Self {
        self.ipv6 = addrs;
        self
    }
    /// From the gateway's DHCP server view at time `now`.
    pub fn from_lease(l: &netstack::dhcp::Lease, now: std::time::Instant) -> Self {
        LeaseInfo::new(
            l.mac,
            l.ip,
            l.hostname.clone(),
            l.expires.saturating_duration_since(now).as_secs(),
        )
    }
}

/// `aa:bb:cc:dd:ee:ff`
pub fn fmt_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// `{"return":{"leases":[{"mac":…,"ip":…,"hostname":…,"expires_in":…,"ipv6":[…]}]}}`
pub fn leases_response(leases: &[LeaseInfo]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Leases<'a> {
        leases: &'a [LeaseInfo],
    }
    to_bytes(&Return {
        ret: Leases { leases },
    })
}

/// `{"return":{"NAME":N,…}}` from counter pairs, in the given order (e.g. netstack's
/// `Stats::pairs()`).
pub fn stats_response<'a>(pairs: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<u8> {
    let mut out = String::from("{\"return\":{");
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(k).to_string());
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push_str("}}");
    out.into_bytes()
}

/// What [`handle_request`] needs from the daemon: the side effects and the live data.
pub trait ApiBackend {
    /// The guest address for an `add_hostfwd` without `guest_addr`.
    fn default_guest(&self) -> IpAddr;
    /// Whether IPv6 forwarding is available.
    fn ipv6_enabled(&self) -> bool {
        false
    }
    /// Starts listening for a new forwarding (bind the host socket). `follow_family`: the request
    /// named no guest (`guest` is the default one; see [`AddHostFwd::resolve`]). The error's text
    /// ends up in the reply after "bad request: add_hostfwd: ".
    fn open_hostfwd(
        &mut self,
        proto: Proto,
        host: SocketAddr,
        guest: SocketAddr,
        follow_family: bool,
    ) -> Result<(), OpenError>;
    /// Stops a forwarding that was removed from the table.
    fn close_hostfwd(&mut self, entry: &HostFwdEntry);
    fn leases(&self) -> Vec<LeaseInfo>;
    fn stats(&self) -> Vec<(&'static str, u64)>;
}

/// One whole API exchange: request bytes in, reply bytes out, side effects through `backend`,
/// forwardings recorded in `table` (checked before `open_hostfwd`, added only if it succeeds,
/// so a failed bind uses no id).
pub fn handle_request(
    buf: &[u8],
    table: &mut HostFwdTable,
    backend: &mut dyn ApiBackend,
) -> Vec<u8> {
    let req = match parse_request(buf) {
        Ok(r) => r,
        Err(e) => return e.to_json(),
    };
    let result = match req {
        ApiRequest::AddHostFwd(a) => (|| {
            let (host, guest, follow) =
                a.resolve(backend.default_guest(), backend.ipv6_enabled())?;
            table.check(a.proto, host)?;
            backend
                .open_hostfwd(a.proto, host, guest, follow)
                .map_err(|e| ApiError::Open(e.to_string()))?;
            match table.add(a.proto, host, guest) {
                Ok(id) => Ok(id_response(id)),
                Err(e) => {
                    // Unreachable after check(); undo the listener rather than leak it.
                    backend.close_hostfwd(&HostFwdEntry {
                        id: 0,
                        proto: a.proto,
                        host,
                        guest,
                    });
                    Err(e)
                }
            }
        })(),
        ApiRequest::ListHostFwd => Ok(list_response(table.list())),
        ApiRequest::RemoveHostFwd { id } => table.remove(id).map(|e| {
            backend.close_hostfwd(&e);
            empty_response()
        }),
        ApiRequest::ListLeases => Ok(leases_response(&backend.leases())),
        ApiRequest::Stats => Ok(stats_response(backend.stats())),
        // warren's daemon answers these itself (vde-switch/src/vxlan.rs) when it has an uplink.
        ApiRequest::ListVxlan
        | ApiRequest::AddVxlanRemote { .. }
        | ApiRequest::RemoveVxlanRemote { .. } => Err(ApiError::NoVxlan),
    };
    result.unwrap_or_else(|e| e.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<ApiRequest, ApiError> {
        parse_request(s.as_bytes())
    }
    fn add(s: &str) -> AddHostFwd {
        match req(s) {
            Ok(ApiRequest::AddHostFwd(a)) => a,
            other => panic!("{s}: {other:?}"),
        }
    }
    fn desc(s: &str) -> String {
        req(s).expect_err(s).to_string()
    }
    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("sa")
    }
    fn json(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("json")
    }

    #[test]
    fn add_hostfwd_requests() {
        let a = add(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}}"#,
        );
        assert_eq!(a.proto, Proto::Tcp);
        assert_eq!(a.family, Family::Any);
        assert_eq!(a.host_addr, "0.0.0.0".parse::<IpAddr>().expect("ip"));
        assert_eq!((a.host_port, a.guest_port), (8080, 80));
        assert_eq!(a.guest_addr, Some("10.0.2.100".parse().expect("ip")));
        // slirp4netns's man page form, with spaces and no host/guest address.
        let a = add(
            r#"{"execute": "add_hostfwd", "arguments": {"proto": "udp", "host_port": 5353, "guest_port": 53}}"#,
        );
        assert_eq!(a.proto, Proto::Udp);
        assert_eq!(a.host_addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(a.guest_addr, None);
        for wild in ["", "::", "::0"] {
            let a = add(&format!(
                r#"{{"execute":"add_hostfwd","arguments":{{"proto":"tcp","host_addr":"{wild}","host_port":1,"guest_port":2,"guest_addr":""}}}}"#
            ));
            assert_eq!(a.host_addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED), "{wild}");
            assert_eq!(a.guest_addr, None);
        }
        let a = add(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp6","host_port":1,"guest_port":2}}"#,
        );
        assert_eq!(a.family, Family::V6);
        assert_eq!(a.host_addr, "::".parse::<IpAddr>().expect("ip"));
        let a = add(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"udp4","host_addr":"127.0.0.1","host_port":1,"guest_port":2}}"#,
        );
        assert_eq!((a.proto, a.family), (Proto::Udp, Family::V4));
        let a = add(
            r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":1,"guest_port":2,"extra":true}}"#,
        );
        assert_eq!(a.host_addr, "::1".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn slirp4netns_error_descriptions() {
        assert_eq!(desc("badjson"), "bad request: cannot parse JSON");
        assert_eq!(desc(""), "bad request: cannot parse JSON");
        assert_eq!(desc("[1]"), "bad request: json_object() failed");
        assert_eq!(
            desc(r#"{"unexpectedjson": 42}"#),
            "bad request: no execute found"
        );
        assert_eq!(desc(r#"{"execute": 42}"#), "bad request: no execute found");
        assert_eq!(
            desc(r#"{"execute": "bad"}"#),
            "bad request: unknown execute"
        );
        assert_eq!(
            desc(r#"{"execute": "add_hostfwd", "arguments":{"proto": "bad"}}"#),
            "bad request: add_hostfwd: bad arguments.proto"
        );
        assert_eq!(
            desc(r#"{"execute": "add_hostfwd"}"#),
            "bad request: add_hostfwd: bad arguments.proto"
        );
        assert_eq!(
            parse_request(&vec![b' '; MAX_REQUEST])
                .expect_err("big")
                .to_string(),
            "bad request: too large message"
        );
        assert!(parse_request(&[0xff, 0xfe, 0x00]).is_err());
        let a = |args: &str| {
            desc(&format!(
                r#"{{"execute":"add_hostfwd","arguments":{args}}}"#
            ))
        };
        for (args, field) in [
            (
                r#"{"proto":"tcp","host_port":0,"guest_port":80}"#,
                "host_port",
            ),
            (r#"{"proto":"tcp","guest_port":80}"#, "host_port"),
            (
                r#"{"proto":"tcp","host_port":"80","guest_port":80}"#,
                "host_port",
            ),
            (
                r#"{"proto":"tcp","host_port":65536,"guest_port":80}"#,
                "host_port",
            ),
            (
                r#"{"proto":"tcp","host_port":-1,"guest_port":80}"#,
                "host_port",
            ),
            (
                r#"{"proto":"tcp","host_port":80.5,"guest_port":80}"#,
                "host_port",
            ),
            (r#"{"proto":"tcp","host_port":80}"#, "guest_port"),
            (
                r#"{"proto":"tcp","host_port":80,"guest_port":0}"#,
                "guest_port",
            ),
            (
                r#"{"proto":"tcp","host_addr":"nope","host_port":80,"guest_port":80}"#,
                "host_addr",
            ),
            (
                r#"{"proto":"tcp","host_addr":7,"host_port":80,"guest_port":80}"#,
                "host_addr",
            ),
            (
                r#"{"proto":"tcp4","host_addr":"::1","host_port":80,"guest_port":80}"#,
                "host_addr",
            ),
            (
                r#"{"proto":"tcp6","host_addr":"1.2.3.4","host_port":80,"guest_port":80}"#,
                "host_addr",
            ),
            (
                r#"{"proto":"tcp","host_port":80,"guest_port":80,"guest_addr":"x"}"#,
                "guest_addr",
            ),
            (
                r#"{"proto":"tcp","host_port":80,"guest_port":80,"guest_addr":[]}"#,
                "guest_addr",
            ),
            (
                r#"{"proto":"tcpx","host_port":80,"guest_port":80}"#,
                "proto",
            ),
            (r#"{"proto":"TCP","host_port":80,"guest_port":80}"#, "proto"),
            (r#"{"proto":1,"host_port":80,"guest_port":80}"#, "proto"),
        ] {
            assert_eq!(
                a(args),
                format!("bad request: add_hostfwd: bad arguments.{field}"),
                "{args}"
            );
        }
        for bad_id in [
            r#"{}"#,
            r#"{"id":0}"#,
            r#"{"id":"1"}"#,
            r#"{"id":-3}"#,
            r#"{"id":1.5}"#,
            r#"{"id":4294967296}"#,
        ] {
            assert_eq!(
                desc(&format!(
                    r#"{{"execute":"remove_hostfwd","arguments":{bad_id}}}"#
                )),
                "bad request: remove_hostfwd: bad arguments.id"
            );
        }
    }

    #[test]
    fn other_requests() {
        assert_eq!(
            req(r#"{"execute": "list_hostfwd"}"#),
            Ok(ApiRequest::ListHostFwd)
        );
        assert_eq!(
            req(r#"{"execute":"remove_hostfwd","arguments":{"id":42}}"#),
            Ok(ApiRequest::RemoveHostFwd { id: 42 })
        );
        assert_eq!(
            req(r#"{"execute":"list_leases"}"#),
            Ok(ApiRequest::ListLeases)
        );
        assert_eq!(req("{\"execute\":\"stats\"}\n"), Ok(ApiRequest::Stats));
    }

    #[test]
    fn requests_round_trip_through_json() {
        for r in [
            ApiRequest::ListHostFwd,
            ApiRequest::RemoveHostFwd { id: 7 },
            ApiRequest::ListLeases,
            ApiRequest::Stats,
            ApiRequest::AddHostFwd(AddHostFwd {
                proto: Proto::Udp,
                family: Family::Any,
                host_addr: "127.0.0.1".parse().expect("ip"),
                host_port: 5353,
                guest_addr: Some("10.0.2.15".parse().expect("ip")),
                guest_port: 53,
            }),
            ApiRequest::AddHostFwd(AddHostFwd {
                proto: Proto::Tcp,
                family: Family::V6,
                host_addr: "::".parse().expect("ip"),
                host_port: 1,
                guest_addr: None,
                guest_port: 2,
            }),
        ] {
            assert_eq!(parse_request(&r.to_json()), Ok(r.clone()), "{r:?}");
        }
        assert_eq!(
            ApiRequest::RemoveHostFwd { id: 3 }.to_json(),
            br#"{"execute":"remove_hostfwd","arguments":{"id":3}}"#.to_vec()
        );
    }

    #[test]
    fn responses() {
        assert_eq!(id_response(1), br#"{"return":{"id":1}}"#.to_vec());
        assert_eq!(empty_response(), br#"{"return":{}}"#.to_vec());
        assert_eq!(
            error_response("bad \"x\""),
            br#"{"error":{"desc":"bad \"x\""}}"#.to_vec()
        );
        assert_eq!(
            ApiError::bad_argument("a", "b").to_json(),
            error_response("bad request: a: bad arguments.b")
        );
        let mut t = HostFwdTable::new();
        t.add(Proto::Tcp, sa("0.0.0.0:8080"), sa("10.0.2.100:80"))
            .expect("add");
        t.add(Proto::Udp, sa("[::1]:53"), sa("10.0.2.100:53"))
            .expect("add");
        let out = list_response(t.list());
        assert_eq!(
            String::from_utf8(out.clone()).expect("utf8"),
            r#"{"return":{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80},{"id":2,"proto":"udp","host_addr6":"::1","host_port":53,"guest_addr":"10.0.2.100","guest_port":53}]},"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80},{"id":2,"proto":"udp","host_addr6":"::1","host_port":53,"guest_addr":"10.0.2.100","guest_port":53}]}"#
        );
        let v = json(&out);
        assert_eq!(v["entries"][0]["id"], 1);
        assert_eq!(v["return"]["entries"][1]["host_addr6"], "::1");
        assert_eq!(
            list_response(&[]),
            br#"{"return":{"entries":[]},"entries":[]}"#.to_vec()
        );

        let l = LeaseInfo::new(
            [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            Ipv4Addr::new(10, 0, 2, 15),
            Some("vm".into()),
            86000,
        );
        assert_eq!(
            leases_response(&[l, LeaseInfo::new([2; 6], Ipv4Addr::new(10, 0, 2, 16), None, 5)]),
            br#"{"return":{"leases":[{"mac":"52:54:00:12:34:56","ip":"10.0.2.15","hostname":"vm","expires_in":86000},{"mac":"02:02:02:02:02:02","ip":"10.0.2.16","expires_in":5}]}}"#.to_vec()
        );
        // A guest known only by IPv6: the IPv4 fields are left out.
        let only6 =
            LeaseInfo::ipv6_only([2; 6], vec!["fec0::5054:ff:fe12:3456".parse().expect("v6")]);
        assert_eq!(
            leases_response(&[only6]),
            br#"{"return":{"leases":[{"mac":"02:02:02:02:02:02","ipv6":["fec0::5054:ff:fe12:3456"]}]}}"#.to_vec()
        );
        assert_eq!(
            stats_response([("frames_in", 3), ("we\"ird", 4)]),
            br#"{"return":{"frames_in":3,"we\"ird":4}}"#.to_vec()
        );
        assert_eq!(stats_response([]), br#"{"return":{}}"#.to_vec());
        let s = netstack::stats::Stats::default();
        let v = json(&stats_response(s.pairs()));
        assert_eq!(v["return"]["frames_in"], 0);
    }

    #[test]
    fn lease_from_netstack() {
        let now = std::time::Instant::now();
        let l = netstack::dhcp::Lease {
            mac: [1, 2, 3, 4, 5, 6],
            ip: Ipv4Addr::new(10, 0, 2, 15),
            hostname: None,
            expires: now + std::time::Duration::from_secs(100),
        };
        let i = LeaseInfo::from_lease(&l, now);
        assert_eq!(i.mac, "01:02:03:04:05:06");
        assert_eq!(i.expires_in, Some(100));
        // An expired lease reads 0, not a panic.
        let i = LeaseInfo::from_lease(&l, now + std::time::Duration::from_secs(200));
        assert_eq!(i.expires_in, Some(0));
    }

    #[test]
    fn table_ids_and_removal() {
        let mut t = HostFwdTable::default();
        assert!(t.is_empty());
        assert_eq!(
            t.add(Proto::Tcp, sa("0.0.0.0:8080"), sa("10.0.2.100:80")),
            Ok(1)
        );
        assert_eq!(
            t.add(Proto::Tcp, sa("0.0.0.0:8081"), sa("10.0.2.100:81")),
            Ok(2)
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(2).map(|e| e.host.port()), Some(8081));
        let e = t.remove(1).expect("remove");
        assert_eq!(e.host, sa("0.0.0.0:8080"));
        assert_eq!(
            t.remove(1),
            Err(ApiError::bad_argument("remove_hostfwd", "id"))
        );
        assert_eq!(
            t.remove(99).expect_err("x").to_string(),
            "bad request: remove_hostfwd: bad arguments.id"
        );
        // Ids are not reused.
        assert_eq!(
            t.add(Proto::Tcp, sa("0.0.0.0:8080"), sa("10.0.2.100:80")),
            Ok(3)
        );
        assert_eq!(
            t.list().iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(t
            .add(Proto::Tcp, sa("0.0.0.0:0"), sa("10.0.2.100:80"))
            .is_err());
        assert!(t
            .add(Proto::Tcp, sa("0.0.0.0:1"), sa("10.0.2.100:0"))
            .is_err());
    }

    #[test]
    fn table_conflicts() {
        let mut t = HostFwdTable::new();
        t.add(Proto::Tcp, sa("127.0.0.1:8080"), sa("10.0.2.100:80"))
            .expect("add");
        let e = t
            .add(Proto::Tcp, sa("127.0.0.1:8080"), sa("10.0.2.101:80"))
            .expect_err("dup");
        assert_eq!(
            e.to_string(),
            "bad request: add_hostfwd: tcp 127.0.0.1:8080 is already forwarded (id 1)"
        );
        // Wildcard overlaps a specific address of its family, and the IPv6 wildcard overlaps all.
        assert!(t
            .add(Proto::Tcp, sa("0.0.0.0:8080"), sa("10.0.2.100:80"))
            .is_err());
        assert!(t
            .add(Proto::Tcp, sa("[::]:8080"), sa("10.0.2.100:80"))
            .is_err());
        // Different protocol, port or specific address: fine.
        assert_eq!(
            t.add(Proto::Udp, sa("127.0.0.1:8080"), sa("10.0.2.100:80")),
            Ok(2)
        );
        assert_eq!(
            t.add(Proto::Tcp, sa("127.0.0.1:8081"), sa("10.0.2.100:80")),
            Ok(3)
        );
        assert_eq!(
            t.add(Proto::Tcp, sa("127.0.0.2:8080"), sa("10.0.2.100:80")),
            Ok(4)
        );
        assert_eq!(
            t.add(Proto::Tcp, sa("[::1]:8080"), sa("10.0.2.100:80")),
            Ok(5)
        );
        assert!(t.check(Proto::Tcp, sa("[::1]:8080")).is_err());
        assert!(t.check(Proto::Tcp, sa("127.0.0.3:8080")).is_ok());
        // Failed adds do not use up ids.
        assert_eq!(
            t.add(Proto::Tcp, sa("127.0.0.3:8080"), sa("10.0.2.100:80")),
            Ok(6)
        );
        let mut small = HostFwdTable::new();
        small.max_entries = 1;
        small
            .add(Proto::Tcp, sa("0.0.0.0:1"), sa("10.0.2.100:1"))
            .expect("add");
        assert!(small
            .add(Proto::Tcp, sa("0.0.0.0:2"), sa("10.0.2.100:1"))
            .expect_err("full")
            .to_string()
            .contains("too many"));
    }

    struct Mock {
        open: Vec<(Proto, SocketAddr, SocketAddr)>,
        closed: Vec<u32>,
        fail_bind: bool,
        v6: bool,
    }
    impl ApiBackend for Mock {
        fn default_guest(&self) -> IpAddr {
            "10.0.2.100".parse().expect("ip")
        }
        fn ipv6_enabled(&self) -> bool {
            self.v6
        }
        fn open_hostfwd(
            &mut self,
            p: Proto,
            h: SocketAddr,
            g: SocketAddr,
            _follow: bool,
        ) -> Result<(), OpenError> {
            if self.fail_bind {
                return Err(format!("cannot listen on {h}: Address in use").into());
            }
            self.open.push((p, h, g));
            Ok(())
        }
        fn close_hostfwd(&mut self, e: &HostFwdEntry) {
            self.closed.push(e.id);
        }
        fn leases(&self) -> Vec<LeaseInfo> {
            vec![LeaseInfo::new([2; 6], Ipv4Addr::new(10, 0, 2, 15), None, 9)
                .with_ipv6(vec!["fec0::15".parse().expect("v6")])]
        }
        fn stats(&self) -> Vec<(&'static str, u64)> {
            vec![("frames_in", 1)]
        }
    }

    #[test]
    fn whole_exchanges() {
        let mut m = Mock {
            open: vec![],
            closed: vec![],
            fail_bind: false,
            v6: false,
        };
        let mut t = HostFwdTable::new();
        let mut h = |s: &str, m: &mut Mock| {
            String::from_utf8(handle_request(s.as_bytes(), &mut t, m)).expect("utf8")
        };
        assert_eq!(
            h(
                r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":80}}"#,
                &mut m
            ),
            r#"{"return":{"id":1}}"#
        );
        assert_eq!(
            m.open,
            vec![(Proto::Tcp, sa("0.0.0.0:8080"), sa("10.0.2.100:80"))]
        );
        assert!(h(r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":81}}"#, &mut m)
            .contains("already forwarded (id 1)"));
        assert_eq!(m.open.len(), 1);
        m.fail_bind = true;
        assert_eq!(
            h(
                r#"{"execute":"add_hostfwd","arguments":{"proto":"udp","host_port":53,"guest_port":53}}"#,
                &mut m
            ),
            r#"{"error":{"desc":"bad request: add_hostfwd: cannot listen on 0.0.0.0:53: Address in use"}}"#
        );
        m.fail_bind = false;
        assert_eq!(
            h(
                r#"{"execute":"add_hostfwd","arguments":{"proto":"udp","host_port":53,"guest_port":53,"guest_addr":"10.0.2.15"}}"#,
                &mut m
            ),
            r#"{"return":{"id":2}}"#
        );
        assert!(h(r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp6","host_port":1,"guest_port":1}}"#, &mut m)
            .contains("bad arguments.proto"));
        assert!(h(r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":1,"guest_port":1}}"#, &mut m)
            .contains("bad arguments.host_addr"));
        assert!(h(r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":1,"guest_port":1,"guest_addr":"fd00::5"}}"#, &mut m)
            .contains("bad arguments.guest_addr"), "IPv6 guest with IPv6 off");
        let list = h(r#"{"execute":"list_hostfwd"}"#, &mut m);
        let v = json(list.as_bytes());
        assert_eq!(v["entries"][1]["guest_addr"], "10.0.2.15");
        assert_eq!(v["return"]["entries"][0]["host_port"], 8080);
        assert_eq!(
            h(
                r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#,
                &mut m
            ),
            r#"{"return":{}}"#
        );
        assert_eq!(m.closed, vec![1]);
        assert!(h(
            r#"{"execute":"remove_hostfwd","arguments":{"id":1}}"#,
            &mut m
        )
        .contains("bad arguments.id"));
        assert!(h(r#"{"execute":"list_leases"}"#, &mut m).contains("02:02:02:02:02:02"));
        assert_eq!(
            h(r#"{"execute":"list_leases"}"#, &mut m),
            r#"{"return":{"leases":[{"mac":"02:02:02:02:02:02","ip":"10.0.2.15","expires_in":9,"ipv6":["fec0::15"]}]}}"#
        );
        assert_eq!(
            h(r#"{"execute":"stats"}"#, &mut m),
            r#"{"return":{"frames_in":1}}"#
        );
        assert_eq!(
            h("nope", &mut m),
            r#"{"error":{"desc":"bad request: cannot parse JSON"}}"#
        );
        m.v6 = true;
        assert_eq!(
            h(
                r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp6","host_port":1,"guest_port":1,"guest_addr":"fd00::100"}}"#,
                &mut m
            ),
            r#"{"return":{"id":3}}"#
        );
        // With IPv6 on, the families may cross: a v6 listener to the default (v4) guest, a v4
        // listener to a v6 guest.
        assert_eq!(
            h(
                r#"{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":2,"guest_port":2}}"#,
                &mut m
            ),
            r#"{"return":{"id":4}}"#
        );
        assert_eq!(
            h(
                r#"{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"127.0.0.1","host_port":3,"guest_port":3,"guest_addr":"fd00::100"}}"#,
                &mut m
            ),
            r#"{"return":{"id":5}}"#
        );
        assert_eq!(
            m.open[m.open.len() - 2..],
            [
                (Proto::Tcp, sa("[::1]:2"), sa("10.0.2.100:2")),
                (Proto::Udp, sa("127.0.0.1:3"), sa("[fd00::100]:3"))
            ]
        );
        let v = json(h(r#"{"execute":"list_hostfwd"}"#, &mut m).as_bytes());
        // id 1 is gone: ids 2, 3, 4, 5.
        assert_eq!(v["entries"][2]["host_addr6"], "::1");
        assert_eq!(v["entries"][2]["guest_addr"], "10.0.2.100");
        assert_eq!(v["entries"][3]["guest_addr6"], "fd00::100");
    }
}
