//! warren's gateway driver: the I/O half of the gateway.
//!
//! [`netstack`] is the sans-IO core (no sockets, no clock, no `unsafe`). This crate owns what the core
//! must not: the tokio-registered host sockets behind [`netstack::host::HostIo`] ([`IoCtx`]), the
//! ready queue that turns socket readiness into [`Token`]s, host forwards (listeners), `guestfwd
//! cmd:` children, reading `/etc/resolv.conf` ([`resolv`]) and pcap capture files ([`pcap`]).
//! Every `unsafe` block of the gateway lives in its private `sys` module.

mod driver;
pub mod pcap;
pub mod resolv;
#[allow(unsafe_code)]
mod sys;

pub use driver::*;
