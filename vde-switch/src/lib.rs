//! warren's virtual switch and its ports, and the `warren` daemon's pieces.

pub mod api;
pub mod cli;
pub mod dgram;
pub mod framing;
pub mod guard;
pub mod logger;
pub mod port;
pub mod server;
pub mod switch;
pub mod vde;
