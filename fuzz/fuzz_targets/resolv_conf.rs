//! /etc/resolv.conf parsing (`netstack::resolv`), with IPv6 scope names resolved by a stand-in for
//! sysfs.
//!
//! Checked: nameservers are unique, on port 53, never unspecified (that means loopback);
//! search domains are unique and non-empty without whitespace.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::resolv::{self, DNS_PORT};
use std::collections::HashSet;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let a = resolv::parse(&text);
    let rc = resolv::parse_with_scopes(&text, |name| match name {
        "eth0" => Some(2),
        "lo" => Some(1),
        _ => None,
    });
    // Names only add servers that numeric scopes could not give.
    for ns in &a.nameservers {
        assert!(
            rc.nameservers.contains(ns),
            "{ns} lost when scope names resolve"
        );
    }
    let mut seen = HashSet::new();
    for ns in &rc.nameservers {
        assert!(seen.insert(*ns), "{ns} listed twice");
        assert_eq!(ns.port(), DNS_PORT);
        assert!(!ns.ip().is_unspecified(), "unspecified nameserver {ns}");
    }
    let mut seen = HashSet::new();
    for d in &rc.search {
        assert!(
            !d.is_empty() && !d.contains(char::is_whitespace),
            "search {d:?}"
        );
        assert!(seen.insert(d.clone()), "search {d:?} twice");
    }
    if let Some(d) = &rc.domain {
        assert!(!d.is_empty());
    }
});
