//! The bridge helper's ACL files: the parser, the include loader (the input split at NUL bytes is
//! files /0, /1, …; /3 is unreadable) and the evaluator (see `tap_helper::acl::fuzz_one`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tap_helper::acl::fuzz_one(data);
});
