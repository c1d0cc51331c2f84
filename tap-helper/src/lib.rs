//! warren-bridge-helper: an ACL-gated setuid tap-and-bridge helper, a drop-in replacement for
//! `qemu-bridge-helper`.  See README.md for the ACL grammar and the differences from QEMU's.

pub mod acl;
pub mod helper;
pub mod ifname;
#[allow(unsafe_code)]
pub mod sys;
