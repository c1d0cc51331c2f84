//! The slirp4netns command line (warren as a slirp4netns drop-in): the input split at NUL bytes is
//! argv after argv[0]. It goes through slirp4netns's parser, the address plan it implies, and the
//! translation into warren's own options, which warren's parser must then accept.
//!
//! Checked: errors are one line; a command line slirp4netns accepts gives a valid gateway config,
//! and then `warren`'s own command-line parser accepts what the drop-in translates it to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::config::Config;
use slirp_compat::slirp4netns::{parse_args, Slirp4netnsCommand};
use vde_switch::slirp4netns::{translate, DropIn};

fuzz_target!(|data: &[u8]| {
    let args: Vec<String> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == 0)
            .take(64)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    };
    let o = match parse_args(args.clone()) {
        Ok(Slirp4netnsCommand::Run(o)) => o,
        Ok(_) => return,
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "multi-line error {e:?}");
            return;
        }
    };
    for w in &o.warnings {
        assert!(!w.contains('\n'), "multi-line warning {w:?}");
    }
    let plan_ok = match o.to_config(Config::default()) {
        Ok(c) => {
            assert_eq!(
                c.validate(),
                Ok(()),
                "slirp4netns options gave an invalid config"
            );
            true
        }
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "multi-line error {e:?}");
            false
        }
    };
    // The drop-in prints warnings (stdout: closed by scripts/fuzz; stderr for these two: skip).
    if o.enable_ipv6 || o.mac_address.is_some() {
        return;
    }
    match translate("slirp4netns", args) {
        Ok(DropIn::Run(a)) => {
            // An address plan slirp4netns's side refuses (say `--mtu 6`) warren refuses too, with
            // its own one-line error; one it accepts, warren must accept.
            if let (true, Err(e)) = (plan_ok, vde_switch::cli::parse(a.clone())) {
                panic!("warren refuses the translated command line {a:?}: {e}");
            }
        }
        Ok(DropIn::Print(_)) => panic!("parse_args said run, translate said print"),
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error {e:?}"),
    }
});
