//! The host side of the core, in three parts (the quinn-proto shape: events in, actions out, time
//! passed in):
//!
//! * [`Action`]s: the control decisions the core makes (connect this flow, run this command, tell me
//!   when it is writable, shut down, close; open or close a flow's UDP or ICMP socket). The core
//!   queues them; the driver drains them with `Gateway::poll_action` after every call into the
//!   gateway and carries them out in order (an eviction's close before the open that replaces it).
//! * [`Event`]s: what the host has to say (a connect finished, a UDP/ICMP socket opened or could not
//!   be opened, a socket is readable or writable, the link drained). They all come in through one
//!   entry point, `Gateway::handle_event`. Timers are `Gateway::poll_timeout` /
//!   `Gateway::handle_timeout`. A host forward's accepted connection or datagram
//!   (`Gateway::tcp_inbound` / `Gateway::udp_inbound`) stays a method of its own: it answers with
//!   the flow id the driver binds the accepted socket to. Until a UDP/ICMP flow's [`Event::Opened`],
//!   the core holds its first datagrams (a few, bounded) and sends them once it is open.
//! * [`HostIo`]: only the borrowed, zero-copy data path that cannot be an owned action without a copy
//!   per byte: frames out (written into the core's own buffer and lent to the driver), host bytes
//!   peeked straight into the frame being built, gathered guest writes, datagram send/receive into
//!   the core's buffers. It is the analogue of quinn's `poll_transmit(now, buf)`: memory one side
//!   lends the other for the length of a call.
//!
//! The tokio driver implements all of it over real non-blocking sockets; tests with a simulated host.
//! All calls are non-blocking: "would block" is [`HostError::WouldBlock`], and the driver later
//! reports readiness as an [`Event`].
//!
//! Failures arrive as a [`HostError`], never as an errno: the driver maps the OS's errors once
//! (`netstack_driver::host_error`), and the core decides on the variant (RST, which ICMP code, a
//! counted drop, a budget reaction).

use crate::flow::FlowId;
use crate::Mac;
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

/// A control decision of the core for the driver to carry out (drained with
/// `Gateway::poll_action`). The driver executes every queued action after each call into the
/// gateway, before the next one, in order (a close before a later connect may reuse its fd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a non-blocking TCP connect for flow `id` to `dst`. The result comes back as
    /// [`Event::TcpConnected`], also when the connect fails at once (`Err`: refused, unreachable,
    /// out of fds — the core answers the guest with RST, an ICMP unreachable or a budget reaction).
    TcpConnect {
        /// The flow the socket belongs to.
        id: FlowId,
        /// Where to connect.
        dst: SocketAddr,
    },
    /// Run `command` (through `/bin/sh -c`) with one end of a socket pair on its stdin/stdout; the
    /// other end becomes the flow's host socket. Reported like a connect ([`Event::TcpConnected`]).
    TcpSpawn {
        /// The flow the socket pair belongs to.
        id: FlowId,
        /// The `guestfwd ... cmd:` command line.
        command: String,
    },
    /// Report [`Event::TcpWritable`] once, when the socket can take more data.
    TcpWantWrite(FlowId),
    /// Half-close the socket (FIN to the host peer) after the guest's FIN and the data before it.
    TcpShutdownWrite(FlowId),
    /// Close the socket; `reset` aborts it (RST to the peer). The id is not used again.
    TcpClose {
        /// The flow whose socket to close.
        id: FlowId,
        /// Abort (RST) rather than close gracefully.
        reset: bool,
    },
    /// Open a UDP socket for flow `id`, connected to `dst`. The result comes back as
    /// [`Event::Opened`] or [`Event::OpenFailed`]; until then the core holds the flow's first
    /// datagrams (a few, bounded) and sends them once it is open.
    UdpOpen {
        /// The flow the socket belongs to.
        id: FlowId,
        /// Where the socket is connected.
        dst: SocketAddr,
    },
    /// Make `id` a flow of UDP forward `fwd`: datagrams to the host go out of the forward's socket
    /// to `client`; datagrams from `client` arrive through `Gateway::udp_inbound`. Reported like
    /// [`Action::UdpOpen`].
    UdpOpenForward {
        /// The flow.
        id: FlowId,
        /// The forward's index.
        fwd: u32,
        /// The forward's client the flow answers.
        client: SocketAddr,
    },
    /// Release the flow's UDP socket (or its forward client); the id is not used again.
    UdpClose(FlowId),
    /// Open an ICMP echo socket for flow `id` towards `dst` (ping socket or raw socket). Reported
    /// like [`Action::UdpOpen`].
    IcmpOpen {
        /// The flow the socket belongs to.
        id: FlowId,
        /// The echo's destination.
        dst: IpAddr,
    },
    /// Close the flow's ICMP echo socket; the id is not used again.
    IcmpClose(FlowId),
}

/// Something the host reports to the core, through `Gateway::handle_event`.
pub enum Event<'a> {
    /// The connect (or command start) of [`Action::TcpConnect`] / [`Action::TcpSpawn`] for `id`
    /// finished.
    TcpConnected {
        /// The flow.
        id: FlowId,
        /// `Ok` when connected; otherwise why not.
        result: HostResult<()>,
    },
    /// The socket of [`Action::UdpOpen`], [`Action::UdpOpenForward`] or [`Action::IcmpOpen`] for
    /// this flow is open: the core sends the datagrams it held.
    Opened(FlowId),
    /// The socket of [`Action::UdpOpen`], [`Action::UdpOpenForward`] or [`Action::IcmpOpen`] could
    /// not be made: the core forgets the flow and answers the guest (an ICMP unreachable, a budget
    /// reaction on [`HostError::NoBuffers`], a counted drop).
    OpenFailed(FlowId, HostError),
    /// The flow's TCP socket has data (or EOF) for the guest.
    TcpReadable(FlowId),
    /// The flow's TCP socket can take the guest bytes the core holds (after [`Action::TcpWantWrite`]).
    TcpWritable(FlowId),
    /// The flow's UDP socket has datagrams (or an error) for the guest.
    UdpReadable(FlowId),
    /// The flow's ICMP socket has replies.
    IcmpReadable(FlowId),
    /// The upstream DNS socket is readable.
    DnsReadable,
    /// The way to the guests has room again: flows that paused on congestion resume.
    LinkReady,
    /// Like [`Event::LinkReady`], but flows towards a guest MAC for which the function holds stay
    /// paused (the way to that guest is still congested; others must not wait for it).
    LinkReadyExcept(&'a dyn Fn(&Mac) -> bool),
}

impl std::fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::TcpConnected { id, result } => write!(f, "TcpConnected({id:?}, {result:?})"),
            Event::Opened(id) => write!(f, "Opened({id:?})"),
            Event::OpenFailed(id, e) => write!(f, "OpenFailed({id:?}, {e:?})"),
            Event::TcpReadable(id) => write!(f, "TcpReadable({id:?})"),
            Event::TcpWritable(id) => write!(f, "TcpWritable({id:?})"),
            Event::UdpReadable(id) => write!(f, "UdpReadable({id:?})"),
            Event::IcmpReadable(id) => write!(f, "IcmpReadable({id:?})"),
            Event::DnsReadable => f.write_str("DnsReadable"),
            Event::LinkReady => f.write_str("LinkReady"),
            Event::LinkReadyExcept(_) => f.write_str("LinkReadyExcept(..)"),
        }
    }
}

/// The borrowed data path between the core and the host: frames out to the LAN, bytes and datagrams
/// to and from the sockets of NAT flows (addressed by [`FlowId`]), in memory one side lends the other
/// for the length of the call (no copies beyond the one into or out of the kernel). Control decisions
/// are [`Action`]s and results [`Event`]s, not calls here. Implemented by the tokio driver
/// (`netstack-driver`) and by the test kit's simulated host.
pub trait HostIo {
    /// Delivers a frame from the gateway to the LAN. Returns false when the way to that guest is
    /// congested: the frame was still accepted, but bulk senders should pause until
    /// [`Event::LinkReady`].
    fn transmit(&mut self, frame: &[u8]) -> bool;

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

    /// Sends one datagram on the flow's socket (to its connected destination or forward client).
    fn udp_send(&mut self, id: FlowId, data: &[u8]) -> HostResult<()>;
    /// Receives one datagram into `buf`, returning its length; `WouldBlock` when none is queued.
    fn udp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> HostResult<usize>;

    /// Sends one ICMP echo request (header included; the socket may rewrite the identifier).
    fn icmp_send(&mut self, id: FlowId, msg: &[u8]) -> HostResult<()>;
    /// Receives one ICMP message (header first, no IP header).
    fn icmp_recv(&mut self, id: FlowId, buf: &mut [u8]) -> HostResult<usize>;

    /// Sends a DNS query to an upstream over UDP.
    fn dns_send(&mut self, upstream: SocketAddr, query: &[u8]) -> HostResult<()>;
    /// Receives a datagram from the upstream socket.
    fn dns_recv(&mut self, buf: &mut [u8]) -> HostResult<(usize, SocketAddr)>;
}
