//! Switch ports: the transmit side of every front end.
//!
//! A port is where the switch sends frames: a stream connection (QEMU length framing, queued and flushed
//! in batches), or a datagram destination (a `-netdev dgram` peer on a shared socket, a VDE2 data
//! socket, a tap fd: one frame per write), or whatever a front end brings as a [`Transmit`]. The receive
//! side lives in the front end (`frontend/`), which shares the fd through an `Rc`.

use super::framing;
use rustix::net::SendFlags;
use socket2::{SockAddr, SockRef};
use std::io::{self, IoSlice};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use tokio::io::unix::AsyncFd;

/// Bytes a stream port may have queued towards its guest before frames are dropped.
pub const TX_QUEUE_CAP: usize = 8 << 20;
/// Queued bytes above which a stream port reports congestion (senders pause, nothing is dropped).
pub const TX_QUEUE_SOFT: usize = 1 << 20;
/// Bytes a datagram port may have queued while its peer's receive queue is full.
pub const DGRAM_QUEUE_CAP: usize = 1 << 20;
/// Queued bytes above which a stream port takes no more flooded frames (broadcast, multicast,
/// unknown unicast from other guests): floods may use at most a quarter of the queue, so the
/// gateway's replies and other guests' unicast always find room (the gateway itself pauses its bulk
/// senders at [`TX_QUEUE_SOFT`]).
pub const FLOOD_QUEUE_MAX: usize = TX_QUEUE_CAP / 4;
/// Queued bytes above which a stream port takes no more unicast from other guests (half the queue;
/// the rest is the gateway's).
pub const PEER_QUEUE_MAX: usize = TX_QUEUE_CAP / 2;
/// The same shares for datagram ports.
pub const DGRAM_FLOOD_MAX: usize = DGRAM_QUEUE_CAP / 2;
pub const DGRAM_PEER_MAX: usize = DGRAM_QUEUE_CAP * 3 / 4;
/// Frames at least this long are written directly (no copy into the queue) when the queue is empty.
const DIRECT_WRITE_MIN: usize = 16 << 10;

slotmap::new_key_type! {
    /// A switch port: a key into the switch's port table. A front end keeps the key of its port; once
    /// the port is closed the key no longer finds it, even when its slot (and number) is reused.
    pub struct PortId;
}

impl PortId {
    /// The port's number in log lines and for the gateway: slots are numbered from 0 and a freed
    /// number is reused first (the table is a `slotmap`, whose slot 0 is a sentinel).
    pub fn number(self) -> u32 {
        (self.0.as_ffi() as u32).wrapping_sub(1)
    }
}

impl std::fmt::Display for PortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// Per-port counters.
#[derive(Default, Debug, Clone)]
pub struct PortCounters {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub drop_tx_full: u64,
    pub drop_refused: u64,
    pub drop_oversize: u64,
    /// Frames claiming the gateway's or the DNS forwarder's address (`guard.rs`).
    pub drop_spoofed: u64,
    /// Guest-to-guest frames suppressed by `--isolate`.
    pub drop_isolated: u64,
    /// Flooded frames (broadcast, multicast, unknown unicast) from this port beyond its storm-control
    /// rate (`--bcast-rate`, `--bcast-burst`).
    pub drop_storm: u64,
    /// Flooded frames *to* this port refused because its queue held more than the flood share.
    pub drop_flood_full: u64,
    /// Unicast from other guests *to* this port refused because its queue held more than their share.
    pub drop_peer_full: u64,
    /// Frames from a new MAC beyond `--max-macs` / `--max-macs-per-port`.
    pub drop_mac_limit: u64,
    /// DHCP server messages (UDP from port 67, BOOTREPLY) from this port.
    pub drop_dhcp_server: u64,
    /// ARP/IPv4 claiming a new address while the binding table was full.
    pub drop_bind_limit: u64,
    /// IPv6 router advertisements from this port (RA guard).
    pub drop_rogue_ra: u64,
}

/// The counters' names as `stats` shows the switch-wide totals (the per-port name is without `port_`).
const STAT_NAMES: [&str; 16] = [
    "port_frames_in",
    "port_frames_out",
    "port_bytes_in",
    "port_bytes_out",
    "port_drop_tx_full",
    "port_drop_refused",
    "port_drop_oversize",
    "port_drop_spoofed",
    "port_drop_isolated",
    "port_drop_storm",
    "port_drop_flood_full",
    "port_drop_peer_full",
    "port_drop_mac_limit",
    "port_drop_dhcp_server",
    "port_drop_bind_limit",
    "port_drop_rogue_ra",
];

impl PortCounters {
    fn values(&self) -> [u64; 16] {
        [
            self.frames_in,
            self.frames_out,
            self.bytes_in,
            self.bytes_out,
            self.drop_tx_full,
            self.drop_refused,
            self.drop_oversize,
            self.drop_spoofed,
            self.drop_isolated,
            self.drop_storm,
            self.drop_flood_full,
            self.drop_peer_full,
            self.drop_mac_limit,
            self.drop_dhcp_server,
            self.drop_bind_limit,
            self.drop_rogue_ra,
        ]
    }

    fn fields_mut(&mut self) -> [&mut u64; 16] {
        [
            &mut self.frames_in,
            &mut self.frames_out,
            &mut self.bytes_in,
            &mut self.bytes_out,
            &mut self.drop_tx_full,
            &mut self.drop_refused,
            &mut self.drop_oversize,
            &mut self.drop_spoofed,
            &mut self.drop_isolated,
            &mut self.drop_storm,
            &mut self.drop_flood_full,
            &mut self.drop_peer_full,
            &mut self.drop_mac_limit,
            &mut self.drop_dhcp_server,
            &mut self.drop_bind_limit,
            &mut self.drop_rogue_ra,
        ]
    }

    /// The counters by name (`frames_in`, `drop_storm`, ...).
    pub fn pairs(&self) -> [(&'static str, u64); 16] {
        let v = self.values();
        std::array::from_fn(|i| (&STAT_NAMES[i][5..], v[i]))
    }

    /// The counters by their switch-wide name (`port_frames_in`, `port_drop_storm`, ...).
    pub fn stat_pairs(&self) -> [(&'static str, u64); 16] {
        let v = self.values();
        std::array::from_fn(|i| (STAT_NAMES[i], v[i]))
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &PortCounters) {
        for (f, v) in self.fields_mut().into_iter().zip(other.values()) {
            *f += v;
        }
    }
}

/// Who a frame sent to a port comes from: each class may fill the port's queue only so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// From the gateway: the whole queue.
    Gateway,
    /// Unicast from another guest: up to [`PEER_QUEUE_MAX`].
    Peer,
    /// Flooded from another guest: up to [`FLOOD_QUEUE_MAX`].
    Flood,
}

/// How frames leave a port.
pub enum Tx {
    /// A byte stream with 4-byte big-endian length framing.
    Stream {
        fd: Rc<AsyncFd<OwnedFd>>,
        queue: Vec<u8>,
        off: usize,
        blocked: bool,
    },
    /// One frame per datagram/write: to `peer` on a shared socket, or (None) on a connected socket or a
    /// tap fd.
    Packet {
        fd: Rc<AsyncFd<OwnedFd>>,
        peer: Option<SockAddr>,
    },
    /// One frame per datagram on a connected socket (`-netdev dgram` peers, VDE2 data sockets), queued
    /// (up to [`DGRAM_QUEUE_CAP`]) while the peer's receive queue is full: a unix datagram receiver
    /// holds only `net.unix.max_dgram_qlen` (often 10) datagrams from senders it is not connected to.
    /// The kernel reports the socket writable again once the peer has read.
    Datagram {
        fd: Rc<AsyncFd<OwnedFd>>,
        queue: std::collections::VecDeque<Vec<u8>>,
        bytes: usize,
    },
    /// A transmit side of the front end's own (see [`Transmit`]).
    Custom(Box<dyn Transmit>),
}

/// The transmit side of a front end whose frames leave neither as a length-framed stream nor as
/// plain datagrams (an encapsulating uplink, say): such a front end implements this and creates its
/// port with [`Tx::Custom`], without touching the switch. Class shares are those of datagram ports.
pub trait Transmit {
    /// Sends or queues one frame (counting drops in `counters`). [`Sent::Queued`] asks for a
    /// [`Transmit::flush`] at the end of the batch.
    fn send(&mut self, frame: &[u8], counters: &mut PortCounters) -> Sent;
    /// Writes what is queued: `Ok(true)` all written, `Ok(false)` wait until
    /// [`Transmit::writable_fd`] is writable, `Err` the port fails (and is closed).
    fn flush(&mut self, _counters: &mut PortCounters) -> io::Result<bool> {
        Ok(true)
    }
    /// Bytes queued.
    fn queued(&self) -> usize {
        0
    }
    /// Whether the gateway should pause its senders towards this port.
    fn congested(&self) -> bool {
        false
    }
    /// The fd whose write readiness resumes [`Transmit::flush`].
    fn writable_fd(&self) -> Option<&AsyncFd<OwnedFd>> {
        None
    }
}

/// One datagram on a connected socket.
fn send_datagram(fd: &AsyncFd<OwnedFd>, frame: &[u8]) -> io::Result<()> {
    rustix::net::send(fd, frame, SendFlags::DONTWAIT | SendFlags::NOSIGNAL)?;
    Ok(())
}

pub struct Port {
    pub name: String,
    pub tx: Tx,
    pub counters: PortCounters,
    /// Largest frame this port carries (VDE2 peers: 1518; others: the LAN's MTU + 14).
    pub max_frame: usize,
    /// Storm control of the frames this port floods (set by the server).
    pub storm: Option<super::storm::TokenBucket>,
}

/// What `Port::send` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Written, or queued with nothing else pending.
    Done,
    /// Queued behind earlier bytes: the port needs a flush.
    Queued,
    /// The transport failed: the port should be closed.
    Failed,
}

impl Port {
    pub fn new(name: String, tx: Tx, max_frame: usize) -> Self {
        Port {
            name,
            tx,
            counters: PortCounters::default(),
            max_frame,
            storm: None,
        }
    }

    /// Bytes waiting in this port's queue.
    pub fn queued(&self) -> usize {
        match &self.tx {
            Tx::Stream { queue, off, .. } => queue.len() - off,
            Tx::Datagram { bytes, .. } => *bytes,
            Tx::Packet { .. } => 0,
            Tx::Custom(t) => t.queued(),
        }
    }

    /// Sends or queues one frame of class `class`: refused (and counted) when the queue already holds
    /// more than that class's share.
    pub fn send_class(&mut self, frame: &[u8], class: Class) -> Sent {
        let stream = matches!(self.tx, Tx::Stream { .. });
        let limit = match (class, stream) {
            (Class::Gateway, _) => usize::MAX,
            (Class::Peer, true) => PEER_QUEUE_MAX,
            (Class::Peer, false) => DGRAM_PEER_MAX,
            (Class::Flood, true) => FLOOD_QUEUE_MAX,
            (Class::Flood, false) => DGRAM_FLOOD_MAX,
        };
        if self.queued() > limit {
            match class {
                Class::Flood => self.counters.drop_flood_full += 1,
                _ => self.counters.drop_peer_full += 1,
            }
            return Sent::Done;
        }
        self.send(frame)
    }

    /// Sends or queues one frame.
    pub fn send(&mut self, frame: &[u8]) -> Sent {
        if frame.len() > self.max_frame {
            self.counters.drop_oversize += 1;
            return Sent::Done;
        }
        self.counters.frames_out += 1;
        self.counters.bytes_out += frame.len() as u64;
        match &mut self.tx {
            Tx::Stream {
                fd,
                queue,
                off,
                blocked,
            } => {
                let hdr = framing::header(frame.len());
                if queue.len() == *off && !*blocked && frame.len() >= DIRECT_WRITE_MIN {
                    let iov = [IoSlice::new(&hdr), IoSlice::new(frame)];
                    let n = match rustix::io::writev(fd, &iov) {
                        Ok(n) => n,
                        Err(rustix::io::Errno::AGAIN) => 0,
                        Err(_) => return Sent::Failed,
                    };
                    if n == 4 + frame.len() {
                        return Sent::Done;
                    }
                    queue.clear();
                    *off = 0;
                    if n < 4 {
                        queue.extend_from_slice(&hdr[n..]);
                        queue.extend_from_slice(frame);
                    } else {
                        queue.extend_from_slice(&frame[n - 4..]);
                    }
                    return Sent::Queued;
                }
                if queue.len() - *off + 4 + frame.len() > TX_QUEUE_CAP {
                    self.counters.drop_tx_full += 1;
                    return Sent::Done;
                }
                let was_empty = queue.len() == *off;
                queue.extend_from_slice(&hdr);
                queue.extend_from_slice(frame);
                if was_empty {
                    Sent::Queued
                } else {
                    Sent::Done
                }
            }
            Tx::Datagram { fd, queue, bytes } => {
                if queue.is_empty() {
                    match send_datagram(fd, frame) {
                        Ok(()) => return Sent::Done,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            self.counters.drop_tx_full += 1;
                            return Sent::Done;
                        }
                        Err(_) => return Sent::Failed,
                    }
                } else if *bytes + frame.len() > DGRAM_QUEUE_CAP {
                    self.counters.drop_tx_full += 1;
                    return Sent::Done;
                }
                let was_empty = queue.is_empty();
                queue.push_back(frame.to_vec());
                *bytes += frame.len();
                if was_empty {
                    Sent::Queued
                } else {
                    Sent::Done
                }
            }
            Tx::Packet { fd, peer } => {
                let r = match peer {
                    Some(p) => SockRef::from(fd.get_ref())
                        .send_to_with_flags(frame, p, libc::MSG_DONTWAIT)
                        .map(drop),
                    None => rustix::io::write(fd, frame)
                        .map(drop)
                        .map_err(io::Error::from),
                };
                if let Err(e) = r {
                    match e.kind() {
                        io::ErrorKind::WouldBlock => self.counters.drop_tx_full += 1,
                        // A dgram peer that went away: its socket path is gone. Not fatal for others.
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                            return Sent::Failed
                        }
                        _ if peer.is_some() => self.counters.drop_tx_full += 1,
                        // A tap whose link is down (not configured yet, or set down): drop, keep it.
                        _ if e.raw_os_error() == Some(libc::EIO) => self.counters.drop_tx_full += 1,
                        _ => return Sent::Failed,
                    }
                }
                Sent::Done
            }
            Tx::Custom(t) => t.send(frame, &mut self.counters),
        }
    }

    /// Writes queued stream bytes. `Ok(true)`: all written; `Ok(false)`: the socket is full (wait for
    /// writability); `Err`: the connection failed.
    pub fn flush(&mut self) -> io::Result<bool> {
        if let Tx::Datagram { fd, queue, bytes } = &mut self.tx {
            while let Some(f) = queue.front() {
                match send_datagram(fd, f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        self.counters.drop_tx_full += 1;
                    }
                    Err(e) => return Err(e),
                }
                *bytes -= f.len();
                queue.pop_front();
            }
            return Ok(true);
        }
        if let Tx::Custom(t) = &mut self.tx {
            return t.flush(&mut self.counters);
        }
        let Tx::Stream {
            fd,
            queue,
            off,
            blocked,
        } = &mut self.tx
        else {
            return Ok(true);
        };
        while *off < queue.len() {
            let buf = &queue[*off..];
            match rustix::net::send(&**fd, buf, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
                Ok(n) => *off += n,
                Err(rustix::io::Errno::AGAIN) => {
                    *blocked = true;
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
        queue.clear();
        *off = 0;
        *blocked = false;
        if queue.capacity() > (1 << 20) {
            queue.shrink_to(1 << 16);
        }
        Ok(true)
    }

    /// Whether senders should pause until the queue drains.
    pub fn congested(&self) -> bool {
        match &self.tx {
            Tx::Stream { queue, off, .. } => queue.len() - off > TX_QUEUE_SOFT,
            Tx::Datagram { bytes, .. } => *bytes > DGRAM_QUEUE_CAP / 4,
            Tx::Packet { .. } => false,
            Tx::Custom(t) => t.congested(),
        }
    }

    /// The fd whose write readiness matters (stream and queued datagram ports, custom ones).
    pub fn writable_fd(&self) -> Option<&AsyncFd<OwnedFd>> {
        match &self.tx {
            Tx::Stream { fd, .. } | Tx::Datagram { fd, .. } => Some(fd),
            Tx::Packet { .. } => None,
            Tx::Custom(t) => t.writable_fd(),
        }
    }
}
