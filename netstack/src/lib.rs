#![warn(missing_docs)]
//! warren's gateway library.
//!
//! The core is sans-IO, events in and actions out: [`gateway::Gateway`] takes Ethernet frames from
//! guests ([`batch::FrameBatch`]) and [`host::Event`]s from the host with the time, queues its control
//! decisions as [`host::Action`]s for the driver, and moves bytes over the borrowed data path of the
//! [`host::HostIo`] trait (see [`host`] for why that part is a trait).
//! Tests drive it deterministically with a simulated host. The crate does no I/O, reads no clock and
//! has no `unsafe`; the tokio driver that owns the real sockets and timers is `netstack-driver`.
//!
//! Host failures arrive as typed [`host::HostError`]s, and every random choice comes from the seed
//! `Gateway::new` takes (the driver draws it; the core draws no randomness of its own).
//!
//! One protocol per file: [`arp`], [`dhcp`], [`dns`], [`tcp`], [`udp`], [`icmp`]; packet views live in
//! [`wire`]. The gateway only dispatches; the protocol modules see a [`ctx::Ctx`] (configuration,
//! counters, neighbours, leases, the [`flow::FlowTable`], the frame builder), never the gateway, and
//! the files form no import cycle (`tests/module_graph.rs`).

#![forbid(unsafe_code)]

pub mod addr6;
pub mod arp;
pub mod batch;
pub mod config;
pub mod ctx;
pub mod dhcp;
pub mod dhcpv6;
pub mod dns;
pub mod error;
pub mod flow;
pub mod fwd;
pub mod gateway;
pub mod host;
pub mod icmp;
pub mod ndp;
pub mod neigh;
pub mod resolv;
pub mod rng;
pub mod stats;
pub mod tcp;
#[cfg(test)]
mod testkit;
pub mod udp;
pub mod v6;
pub mod wire;

/// Monotonic time as seen by the core. Always passed in; the core never reads a clock.
pub type Instant = std::time::Instant;

/// An Ethernet MAC address.
pub type Mac = [u8; 6];
