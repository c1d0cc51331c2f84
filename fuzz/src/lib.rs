//! Shared pieces of warren's fuzz targets: an input reader, a simulated host for the gateway core,
//! the checks every emitted frame must pass, and the builders the seed corpus is made with.
//!
//! Nothing here is part of warren itself; the targets in `fuzz_targets/` use it, and
//! `examples/gen_corpus.rs` writes `corpus/` with it.

pub mod check;
pub mod input;
pub mod seeds;
pub mod sim;

pub use input::Input;
