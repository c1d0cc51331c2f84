//! Errors of the gateway's entry points that are not about one packet (packets are counted drops,
//! see [`crate::stats`]).

use std::net::{IpAddr, SocketAddr};

/// Why a host-initiated flow (a forward's connection or datagram) could not be made for a guest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// A TCP forward named an IPv6 guest while IPv6 is off.
    #[error("guest {0} is an IPv6 address and IPv6 is off")]
    NotIpv4(IpAddr),
    /// The address is outside the LAN, or one of the gateway's own (gateway, DNS, guestfwd) addresses.
    #[error("{0} is not a guest address on the LAN")]
    NotAGuest(IpAddr),
    /// A TCP flow with this remote address/port and guest address/port is already open.
    #[error("a connection {remote}:{remote_port} -> {guest} already exists")]
    Exists {
        /// The remote address as the guest sees it.
        remote: IpAddr,
        /// The remote (host-side client's) port.
        remote_port: u16,
        /// The guest's address and port the forward targets.
        guest: SocketAddr,
    },
    /// The flow budget refused the flow (the guest's share or the global budget is used up).
    #[error("guest {0} has too many flows")]
    TooManyFlows(IpAddr),
    /// No MAC is known for the guest yet; an ARP request (IPv6: a neighbour solicitation) was sent
    /// and this datagram dropped.
    #[error("guest {0} is not known yet (asked by ARP or neighbour solicitation)")]
    Unresolved(IpAddr),
}
