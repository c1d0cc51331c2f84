//! warren's gateway library.
//!
//! The core is sans-IO: [`gateway::Gateway`] takes Ethernet frames from guests and events from the host,
//! and emits frames to guests and socket operations through the [`host::HostIo`] trait; time is passed in.
//! Tests drive it deterministically with a simulated host. [`driver`] is the tokio driver that owns the
//! real sockets and timers.
//!
//! One protocol per file: [`arp`], [`dhcp`], [`dns`], [`tcp`], [`udp`], [`icmp`]; packet views live in
//! [`wire`].

pub mod addr6;
pub mod arp;
pub mod config;
pub mod dhcp;
pub mod dhcpv6;
pub mod dns;
pub mod driver;
pub mod flow;
pub mod fwd;
pub mod gateway;
pub mod host;
pub mod icmp;
pub mod ndp;
pub mod neigh;
pub mod pcap;
pub mod resolv;
pub mod rng;
pub mod stats;
#[allow(unsafe_code)]
mod sys;
pub mod tcp;
pub mod udp;
pub mod wire;

/// Monotonic time as seen by the core. Always passed in; the core never reads a clock.
pub type Instant = std::time::Instant;

/// An Ethernet MAC address.
pub type Mac = [u8; 6];
