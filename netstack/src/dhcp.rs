//! DHCPv4 server (RFC 2131) built on `dhcproto`. PLACEHOLDER: the DHCP helper replaces the bodies.

use crate::config::Config;
use crate::{Instant, Mac};
use std::net::Ipv4Addr;

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
    pub expires: Instant,
}

/// A reply to send: the UDP payload (server port 67 → client port 68) and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpReply {
    pub payload: Vec<u8>,
    pub dst_ip: Ipv4Addr,
    pub dst_mac: Mac,
}

/// Why a DHCP message was ignored (counted as `dhcp_bad`).
#[derive(Debug, PartialEq, Eq)]
pub enum DhcpError {
    Malformed(String),
    NotBootRequest,
    NoMessageType,
    PoolExhausted,
}

impl std::fmt::Display for DhcpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

pub struct DhcpServer {
    _cfg: Config,
}

impl DhcpServer {
    pub fn new(cfg: &Config) -> Self {
        DhcpServer { _cfg: cfg.clone() }
    }
    /// Handles one message from `client_mac` (the Ethernet source). `Ok(None)` means "no reply due".
    pub fn handle(&mut self, _now: Instant, _client_mac: Mac, _payload: &[u8]) -> Result<Option<DhcpReply>, DhcpError> {
        Ok(None)
    }
    /// The address leased (or offered) to `mac`.
    pub fn lease_for_mac(&self, _mac: &Mac) -> Option<Ipv4Addr> {
        None
    }
    /// The MAC holding `ip`.
    pub fn mac_for_ip(&self, _ip: Ipv4Addr) -> Option<Mac> {
        None
    }
    pub fn leases(&self) -> Vec<Lease> {
        Vec::new()
    }
}
