//! Errors of the gateway's entry points that are not about one packet (packets are counted drops,
//! see [`crate::stats`]).

use crate::host::HostError;
use std::net::{IpAddr, SocketAddr};

/// Why a host-initiated flow (a forward's connection or datagram) could not be made for a guest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("guest {0} is not an IPv4 address on the LAN")]
    NotIpv4(IpAddr),
    #[error("{0} is not a guest address on the LAN")]
    NotAGuest(IpAddr),
    #[error("a connection {remote}:{remote_port} -> {guest} already exists")]
    Exists {
        remote: IpAddr,
        remote_port: u16,
        guest: SocketAddr,
    },
    #[error("guest {0} has too many flows")]
    TooManyFlows(IpAddr),
    #[error("guest {0} is not known yet (asked by ARP)")]
    Unresolved(IpAddr),
    #[error("cannot track UDP peer {client}: {error}")]
    Host {
        client: SocketAddr,
        error: HostError,
    },
}
