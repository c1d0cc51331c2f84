//! Fuzz the ACL parser, include loader and evaluator (see `tap_helper::acl::fuzz_one`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tap_helper::acl::fuzz_one(data);
});
