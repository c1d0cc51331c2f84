//! warren's virtual switch and its ports, and the `warren` daemon's pieces.

pub mod api;
pub mod binding;
pub mod cli;
pub mod dgram;
pub mod dropin;
pub mod framing;
pub mod guard;
pub mod logger;
pub mod netns;
pub mod port;
pub mod run;
pub mod sandbox;
pub mod server;
pub mod slirp4netns;
pub mod storm;
pub mod switch;
#[allow(unsafe_code)]
pub mod sys;
pub mod tap;
pub mod vde;
pub mod vxlan;
