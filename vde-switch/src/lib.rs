//! warren's virtual switch and its ports, and the `warren` daemon's pieces.

pub mod cli;
pub mod framing;
pub mod logger;
pub mod port;
pub mod server;
pub mod switch;
