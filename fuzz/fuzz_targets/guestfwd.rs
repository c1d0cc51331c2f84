//! `guestfwd` specs (QEMU's `[tcp]:[GUESTADDR]:GUESTPORT-TARGET`, TARGET `tcp:HOST:PORT`,
//! `HOST:PORT`, `unix:PATH` or `cmd:COMMAND`).
//!
//! Checked: errors are one line; a spec that parses prints back to one that parses equal; the
//! address it resolves to on the default LAN is a free address on it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::config::Config;
use slirp_compat::GuestFwd;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    match GuestFwd::parse(&s) {
        Ok(g) => {
            let printed = g.to_string();
            assert_eq!(GuestFwd::parse(&printed).as_ref(), Ok(&g), "{printed}");
            assert!(g.guest_port != 0);
            let cfg = Config::default();
            match g.resolved_addr(&cfg) {
                Ok(a) => {
                    assert!(cfg.net.contains(a), "{a} off the LAN");
                    assert!(
                        ![cfg.gateway, cfg.dns, cfg.net.network(), cfg.net.broadcast()]
                            .contains(&a)
                    );
                }
                Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error {e:?}"),
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error {e:?}"),
    }
});
