//! DNS forwarder (sans-IO) built on `hickory-proto`. PLACEHOLDER: the DNS helper replaces the bodies.

use crate::Instant;
use std::net::SocketAddr;
use std::time::Duration;

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsAction {
    /// Send `query` to `upstream` over UDP from the forwarder's upstream socket.
    SendUpstream { upstream: SocketAddr, query: Vec<u8> },
    /// Send `response` to the guest at `client` (from the DNS address, port 53).
    Reply { client: SocketAddr, response: Vec<u8> },
}

#[derive(Debug, PartialEq, Eq)]
pub enum DnsError {
    Malformed(String),
    NotAQuery,
    NoUpstream,
    TooManyPending,
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

pub struct DnsForwarder {
    _upstreams: Vec<SocketAddr>,
    _timeout: Duration,
}

impl DnsForwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        DnsForwarder { _upstreams: upstreams, _timeout: timeout }
    }
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self._upstreams
    }
    /// A query from a guest (`client` = guest address and port).
    pub fn on_guest_query(&mut self, _now: Instant, _client: SocketAddr, _payload: &[u8]) -> Result<Vec<DnsAction>, DnsError> {
        Ok(Vec::new())
    }
    /// A datagram arrived on the upstream socket from `from`.
    pub fn on_upstream_response(&mut self, _now: Instant, _from: SocketAddr, _payload: &[u8]) -> Result<Vec<DnsAction>, DnsError> {
        Ok(Vec::new())
    }
    /// Retries and SERVFAILs for queries whose time is up.
    pub fn poll_timeouts(&mut self, _now: Instant) -> Vec<DnsAction> {
        Vec::new()
    }
    pub fn next_deadline(&self) -> Option<Instant> {
        None
    }
    /// Number of queries waiting for an upstream.
    pub fn pending(&self) -> usize {
        0
    }
}
