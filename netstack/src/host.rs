//! The host side of the core: every socket operation the gateway asks for goes through [`HostIo`].
//!
//! The tokio driver implements it over real non-blocking sockets; tests implement it with a simulated
//! host. All calls are non-blocking: "would block" is [`HostError::WouldBlock`], and the driver later
//! reports readiness through the gateway's `on_*` methods.
//!
//! Failures arrive as a [`HostError`], never as an errno: the driver maps the OS's errors once
//! (`netstack_driver::host_error`), and the core decides on the variant (RST, which ICMP code, a
//! counted drop, a budget reaction).

use crate::flow::FlowId;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

/// Why a host operation failed, in the terms the core reacts to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing to read, or no room to write, now; readiness will be reported later.
    #[error("operation would block")]
    WouldBlock,
    /// The peer refused (ECONNREFUSED; for UDP, an ICMP port unreachable came back).
    #[error("connection refused")]
    Refused,
    /// No route to the destination network (ENETUNREACH).
    #[error("network is unreachable")]
    NetUnreachable,
    /// The destination host is unreachable (EHOSTUNREACH).
    #[error("no route to host")]
    HostUnreachable,
    /// The connection attempt timed out (ETIMEDOUT, or the core's own connect timeout).
    #[error("connection timed out")]
    TimedOut,
    /// The peer reset the connection (ECONNRESET).
    #[error("connection reset by peer")]
    Reset,
    /// The process is out of file descriptors or the kernel out of buffers or memory
    /// (EMFILE, ENFILE, ENOBUFS, ENOMEM): a budget reaction, not the destination's fault.
    #[error("out of file descriptors or kernel memory")]
    NoBuffers,
    /// This host may not do it (ping sockets and raw sockets both forbidden, EACCES, EPERM).
    #[error("{0}")]
    NotPermitted(String),
    /// No host socket for this flow (closed already).
    #[error("no host socket for this flow")]
    NotOpen,
    /// Anything else, with the OS's own one-line description.
    #[error("{0}")]
    Other(String),
}

/// The result of a host operation.
pub type HostResult<T> = Result<T, HostError>;

/// Everything the sans-IO gateway asks of the host: frames out to the LAN and the sockets of
/// NAT flows, addressed by [`FlowId`]. Implemented by the tokio driver (`netstack-driver`) and by the
/// test kit's simulated host; results come back as `Gateway` events.
pub trait HostIo {
    /// Delivers a frame from the gateway to the LAN. Returns false when the way to that guest is
    /// congested: the frame was still accepted, but bulk senders should pause until
    /// `Gateway::on_link_ready`.
    fn transmit(&mut self, frame: &[u8]) -> bool;

    /// Starts a non-blocking connect; completion comes back as `Gateway::on_tcp_connected`.
    fn tcp_connect(&mut self, id: FlowId, dst: SocketAddr) -> HostResult<()>;
    /// Runs `command` (through `/bin/sh -c`) with one end of a socket pair on its stdin/stdout; the other
    /// end becomes the flow's host socket. Completion is reported like a connect.
    fn tcp_spawn(&mut self, id: FlowId, command: &str) -> HostResult<()>;
    /// Writes what the socket accepts now.
    fn tcp_send(&mut self, id: FlowId, data: &[u8]) -> HostResult<usize>;
    /// Writes what the socket accepts now from several buffers, in order.
    fn tcp_send_vectored(&mut self, id: FlowId, bufs: &[IoSlice<'_>]) -> HostResult<usize>;
    /// Copies received-but-unconsumed bytes starting `offset` bytes past the oldest one into `bufs`,
    /// without consuming them. `Ok(0)` means the host closed its side and nothing is left past `offset`.
    fn tcp_peek(
        &mut self,
        id: FlowId,
        offset: usize,
        bufs: &mut [IoSliceMut<'_>],
    ) -> HostResult<usize>;
    /// Drops the oldest `n` received bytes (the guest acknowledged them).
    fn tcp_consume(&mut self, id: FlowId, n: usize);
    /// Asks for one `on_tcp_writable` call when the socket can take more data.
    fn tcp_want_write(&mut self, id: FlowId);
    /// Half-closes the socket (FIN to the host peer) after the guest's FIN and the data before it.
    fn tcp_shutdown_write(&mut self, id: FlowId);
    /// Closes the socket; `reset` aborts it (RST to the peer).
    fn tcp_close(&mut self, id: FlowId, reset: bool);

    /// Makes `id` a flow of UDP forward `fwd`: datagrams to the host go out of the forward's socket to
    /// `client`; datagrams from `client` arrive through `Gateway::udp_inbound`.
    fn udp_open_forward(&mut self, id: FlowId, fwd: u32, client: SocketAddr) -> HostResult<()>;
    /// Opens a UDP socket connected to `dst`.
    fn udp_open(&mut self, id: FlowId, dst: SocketAddr) -> HostResult<()>;
    /// Sends one datagram on the flow's socket (to its connected destination or forward client).
    fn udp_send(&mut self, id: FlowId, data: &[u8]) -> HostResult<()>;
    /// Receives one datagram into `buf`, returning its length; `WouldBlock` when none is queued.
    fn udp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> HostResult<usize>;
    /// Releases the flow's UDP socket (or its forward client); the id is not used again.
    fn udp_close(&mut self, id: FlowId);

    /// Opens an ICMP echo socket towards `dst` (ping socket or raw socket).
    fn icmp_open(&mut self, id: FlowId, dst: IpAddr) -> HostResult<()>;
    /// Sends one ICMP echo request (header included; the socket may rewrite the identifier).
    fn icmp_send(&mut self, id: FlowId, msg: &[u8]) -> HostResult<()>;
    /// Receives one ICMP message (header first, no IP header).
    fn icmp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> HostResult<usize>;
    /// Closes the flow's ICMP echo socket.
    fn icmp_close(&mut self, id: FlowId);

    /// Sends a DNS query to an upstream over UDP.
    fn dns_send(&mut self, upstream: SocketAddr, query: &[u8]) -> HostResult<()>;
    /// Receives a datagram from the upstream socket.
    fn dns_recv(&mut self, buf: &mut [u8]) -> HostResult<(usize, SocketAddr)>;
}
