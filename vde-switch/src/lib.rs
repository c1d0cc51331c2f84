//! warren's virtual switch and its ports, and the `warren` daemon's pieces.
//!
//! Layers, each depending only on those above it (no import cycles: `tests/layout.rs` checks):
//! - `sys` (every `unsafe` but the sandbox's, which is in `sandbox/sys.rs`), `atexit`, `helper`;
//! - `reactor`: front-end table, tokens, fd registration, waiting;
//! - `switch/`: ports, MAC table, guards, framing;
//! - `forwards`: the host-forward table behind `--hostfwd` and the control socket;
//! - `frontend/`: one file per front end, against `frontend::{Host, Context}`;
//! - `server`: the event loop wiring the three;
//! - namespaces (`netns`, `run`), the sandbox, the command line (`cli`, `dropin`, `slirp4netns`),
//!   `logger`.

pub mod activation;
pub mod atexit;
pub mod autofwd;
pub mod cli;
pub mod dropin;
pub mod forwards;
pub mod frontend;
pub mod helper;
pub mod logger;
pub mod netns;
pub mod reactor;
pub mod run;
pub mod sandbox;
pub mod server;
pub mod slirp4netns;
pub mod switch;
#[allow(unsafe_code)]
pub mod sys;
pub mod vxlan;

// The paths the fuzz targets (`fuzz/`) use.
pub use frontend::{dgram, vde};
pub use switch::framing;
