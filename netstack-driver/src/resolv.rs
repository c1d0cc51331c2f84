//! Reading the host's /etc/resolv.conf: the file and sysfs reads around the core's pure parser
//! ([`netstack::resolv`]).

pub use netstack::resolv::{parse, parse_with_scopes, ResolvConf, DNS_PORT};

/// Reads and parses a file (usually /etc/resolv.conf). IPv6 scope names are resolved through
/// /sys/class/net/NAME/ifindex.
pub fn read(path: &std::path::Path) -> std::io::Result<ResolvConf> {
    Ok(parse_with_scopes(
        &std::fs::read_to_string(path)?,
        sysfs_ifindex,
    ))
}

/// Looks up an interface index by name through sysfs (Linux); `None` elsewhere or when absent.
fn sysfs_ifindex(name: &str) -> Option<u32> {
    if name.is_empty() || name.len() > 15 || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), DNS_PORT)
    }

    #[test]
    fn read_from_file() {
        let dir = std::env::temp_dir().join(format!("warren-resolv-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        std::fs::write(&path, "nameserver 10.1.2.3\ndomain home.example\n").unwrap();
        let rc = read(&path).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(rc.nameservers, vec![v4(10, 1, 2, 3)]);
        assert_eq!(rc.domain.as_deref(), Some("home.example"));
        assert!(read(std::path::Path::new("/nonexistent/warren/resolv.conf")).is_err());
    }

    #[test]
    fn sysfs_lookup_rejects_paths() {
        assert_eq!(sysfs_ifindex("../../etc"), None);
        assert_eq!(sysfs_ifindex(""), None);
        assert_eq!(sysfs_ifindex(".."), None);
        // "lo" exists on every Linux host with sysfs; elsewhere this is just None.
        if std::path::Path::new("/sys/class/net/lo/ifindex").exists() {
            assert!(sysfs_ifindex("lo").is_some());
        }
    }
}
