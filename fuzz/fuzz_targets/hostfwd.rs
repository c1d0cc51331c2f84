//! `hostfwd` specs (QEMU's `[tcp|udp]:[HOSTADDR]:HOSTPORT[-HOSTPORT2]-[GUESTADDR]:GUESTPORT[-…]`),
//! as given to `--hostfwd`, `-netdev user,hostfwd=` and `warren ctl add-hostfwd`.
//!
//! Checked: errors are one line; a spec that parses prints back to one that parses equal; its
//! expansion has one rule per port, host and guest ports in step; resolving against the default
//! address plan gives guest addresses on the LAN only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::config::Config;
use slirp_compat::HostFwd;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    match HostFwd::parse(&s) {
        Ok(h) => {
            let printed = h.to_string();
            assert_eq!(HostFwd::parse(&printed).as_ref(), Ok(&h), "{printed}");
            let rules = h.expand();
            assert_eq!(rules.len() as u32, h.host_ports.len());
            assert!(rules.len() <= 65535);
            for (i, r) in rules.iter().enumerate() {
                assert_eq!(r.proto, h.proto);
                assert_eq!(
                    u32::from(r.host.port()),
                    u32::from(h.host_ports.first) + i as u32
                );
                assert_eq!(
                    u32::from(r.guest_port),
                    u32::from(h.guest_ports.first) + i as u32
                );
            }
            let cfg = Config::default();
            match h.resolve(&cfg) {
                Ok(v) => {
                    for r in v {
                        let IpAddr::V4(g) = r.guest.ip() else {
                            panic!("IPv6 guest {r:?}");
                        };
                        assert!(cfg.net.contains(g), "guest {g} off the LAN");
                        assert!(g != cfg.gateway && g != cfg.dns, "guest {g} is virtual");
                        assert!(g != cfg.net.network() && g != cfg.net.broadcast());
                    }
                }
                Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error {e:?}"),
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error {e:?}"),
    }
});
