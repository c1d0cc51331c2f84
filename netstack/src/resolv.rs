//! Reading the host's /etc/resolv.conf. PLACEHOLDER: the DNS helper replaces the bodies.

use std::net::SocketAddr;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub domain: Option<String>,
}

/// Parses resolv.conf text. Unknown lines are ignored; bad nameserver lines are skipped.
pub fn parse(_text: &str) -> ResolvConf {
    ResolvConf::default()
}

/// Reads and parses a file (usually /etc/resolv.conf).
pub fn read(path: &std::path::Path) -> std::io::Result<ResolvConf> {
    Ok(parse(&std::fs::read_to_string(path)?))
}
