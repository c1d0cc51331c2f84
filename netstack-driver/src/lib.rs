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

/// A fresh random seed for `netstack::gateway::Gateway::new`: the core draws no randomness of its
/// own, so the driver draws this once per gateway. std's `RandomState` keys come from the OS's
/// random source once per thread (and are advanced on every call); the stack address adds a little
/// more per call.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let marker = 0u8;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(std::ptr::addr_of!(marker) as usize);
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_seeds_differ() {
        // RandomState::new() advances its per-thread keys, so two calls differ.
        assert_ne!(super::random_seed(), super::random_seed());
    }
}
