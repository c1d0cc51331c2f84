//! QEMU `-netdev user` option strings (`--slirp-options`): the QemuOpts splitter and the option
//! parser, then applying the options to the default gateway config.
//!
//! Checked: errors are one line; the splitter round-trips (elements joined with `,` and `,,`
//! escapes split back the same); parsed options printed back as an option string parse equal;
//! a config that `apply` accepts passes `Config::validate`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::config::Config;
use slirp_compat::options::{split_qemu_opts, SlirpOptions};
use std::fmt::Display;

fn esc(s: &str) -> String {
    s.replace(',', ",,")
}

fn print(o: &SlirpOptions) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut kv = |k: &str, v: &dyn Display| parts.push(format!("{k}={}", esc(&v.to_string())));
    if let Some(v) = &o.id {
        kv("id", v);
    }
    if let Some(n) = &o.net {
        kv("net", &format!("{}/{}", n.addr, n.prefix));
    }
    let onoff = |b: bool| if b { "on" } else { "off" };
    for (k, v) in [
        ("ip", o.ip),
        ("host", o.host),
        ("dns", o.dns),
        ("dhcpstart", o.dhcp_start),
    ] {
        if let Some(v) = v {
            kv(k, &v);
        }
    }
    for h in &o.hostfwd {
        kv("hostfwd", h);
    }
    for g in &o.guestfwd {
        kv("guestfwd", g);
    }
    for (k, v) in [("restrict", o.restrict), ("ipv4", o.ipv4), ("ipv6", o.ipv6)] {
        if let Some(v) = v {
            kv(k, &onoff(v));
        }
    }
    for d in &o.dns_search {
        kv("dnssearch", d);
    }
    if let Some(v) = &o.domain_name {
        kv("domainname", v);
    }
    if let Some(v) = &o.hostname {
        kv("hostname", v);
    }
    for (k, v) in [
        ("ipv6-prefix", o.ipv6_prefix),
        ("ipv6-host", o.ipv6_host),
        ("ipv6-dns", o.ipv6_dns),
    ] {
        if let Some(v) = v {
            kv(k, &v);
        }
    }
    if let Some(v) = o.ipv6_prefix_len {
        kv("ipv6-prefixlen", &v);
    }
    if let Some(v) = o.mtu {
        kv("mtu", &v);
    }
    parts.join(",")
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    match split_qemu_opts(&s) {
        Ok(elems) => {
            let joined = elems
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{}={}", esc(k), esc(v)),
                    None => esc(k),
                })
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(split_qemu_opts(&joined).as_ref(), Ok(&elems), "{joined:?}");
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error {e:?}"),
    }
    match SlirpOptions::parse(&s) {
        Ok(o) => {
            let printed = print(&o);
            assert_eq!(
                SlirpOptions::parse(&printed).as_ref(),
                Ok(&o),
                "{printed:?}"
            );
            let mut cfg = Config::default();
            match o.apply(&mut cfg) {
                Ok(()) => assert_eq!(cfg.validate(), Ok(()), "apply accepted an invalid config"),
                Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error {e:?}"),
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error {e:?}"),
    }
});
