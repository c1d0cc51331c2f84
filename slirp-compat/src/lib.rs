//! slirp vocabulary (address plan, option strings). Filled in by the slirp-compat issue.
