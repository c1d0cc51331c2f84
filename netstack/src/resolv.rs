//! Parsing the host's /etc/resolv.conf (resolv.conf(5)); reading the file is the driver's job
//! (`netstack_driver::resolv::read`).
//!
//! Only the parts the gateway needs are understood: `nameserver`, `search` and `domain`. Everything
//! else (options, sortlist, junk) is ignored, and a bad `nameserver` line is skipped rather than
//! failing the whole file, as glibc does.
//!
//! * `nameserver ADDR`: an IPv4 or IPv6 address; IPv6 link-local addresses may carry a `%scope`
//!   (a numeric index, or an interface name resolved by the caller's lookup, see
//!   [`parse_with_scopes`]). Servers are always used on port 53. Loopback servers (systemd-resolved's
//!   127.0.0.53, a local dnsmasq) are kept: the gateway talks to them on the guest's behalf. An
//!   unspecified address (`0.0.0.0`, `::`), which the kernel treats as "this host", becomes the
//!   matching loopback address so replies come back from the address the query went to.
//! * `search a b c` and `domain x` are mutually exclusive; the last one wins. `domain x` also sets
//!   the search list to `x`.
//! * Comments start with `#` or `;` (anywhere on a line).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// What the gateway uses of a resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// The `nameserver` addresses in file order without duplicates, each on [`DNS_PORT`].
    pub nameservers: Vec<SocketAddr>,
    /// The search list of the last `search` or `domain` line, in order, without duplicates.
    pub search: Vec<String>,
    /// The argument of the last valid `domain` line, if any.
    pub domain: Option<String>,
}

/// The DNS port used for every nameserver from resolv.conf.
pub const DNS_PORT: u16 = 53;

/// Parses resolv.conf text. Unknown lines are ignored; bad nameserver lines are skipped.
///
/// IPv6 scopes must be numeric here (`fe80::1%2`); use [`parse_with_scopes`] to resolve interface
/// names.
pub fn parse(text: &str) -> ResolvConf {
    parse_with_scopes(text, |_| None)
}

/// Like [`parse`], with `scope_index` turning a non-numeric IPv6 scope (an interface name such as
/// `eth0`) into an interface index. A scope that is neither numeric nor resolvable skips the line.
pub fn parse_with_scopes(text: &str, scope_index: impl Fn(&str) -> Option<u32>) -> ResolvConf {
    let mut rc = ResolvConf::default();
    for raw in text.lines() {
        let line = match raw.find(['#', ';']) {
            Some(i) => &raw[..i],
            None => raw,
        };
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        match keyword {
            "nameserver" => {
                if let Some(addr) = words.next().and_then(|w| parse_nameserver(w, &scope_index)) {
                    if !rc.nameservers.contains(&addr) {
                        rc.nameservers.push(addr);
                    }
                }
            }
            "search" => {
                rc.search = words
                    .filter_map(normalize_domain)
                    .fold(Vec::new(), |mut v, d| {
                        if !v.contains(&d) {
                            v.push(d);
                        }
                        v
                    });
            }
            "domain" => {
                if let Some(d) = words.next().and_then(normalize_domain) {
                    rc.search = vec![d.clone()];
                    rc.domain = Some(d);
                }
            }
            _ => {}
        }
    }
    rc
}

/// One `nameserver` value: `1.2.3.4`, `2001:db8::1`, `fe80::1%eth0`, `fe80::1%3`.
fn parse_nameserver(word: &str, scope_index: &impl Fn(&str) -> Option<u32>) -> Option<SocketAddr> {
    if let Some((addr, scope)) = word.split_once('%') {
        let ip: Ipv6Addr = addr.parse().ok()?;
        let scope_id = match scope.parse::<u32>() {
            Ok(n) => n,
            Err(_) if !scope.is_empty() => scope_index(scope)?,
            Err(_) => return None,
        };
        // `::%eth0` is "this host" like a plain `::`.
        let ip = if ip.is_unspecified() {
            Ipv6Addr::LOCALHOST
        } else {
            ip
        };
        return Some(SocketAddr::V6(SocketAddrV6::new(ip, DNS_PORT, 0, scope_id)));
    }
    let ip: IpAddr = word.parse().ok()?;
    let ip = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    Some(SocketAddr::new(ip, DNS_PORT))
}

/// Checks a search domain: ASCII letters, digits, `-` and `_`, labels of 1..=63 bytes, at most 253
/// bytes in all. A trailing dot is dropped; the root (`.`) is no search domain at all.
fn normalize_domain(word: &str) -> Option<String> {
    let d = word.strip_suffix('.').unwrap_or(word);
    if d.is_empty() || d.len() > 253 {
        return None;
    }
    let ok = d.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    ok.then(|| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fuzz/corpus/resolv_conf/scoped-unspecified: `::` with a scope stayed unspecified.
    #[test]
    fn scoped_unspecified_is_loopback() {
        let rc = parse("nameserver ::%2\n");
        assert_eq!(
            rc.nameservers,
            vec![SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::LOCALHOST,
                53,
                0,
                2
            ))]
        );
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), 53)
    }

    #[test]
    fn empty_and_junk() {
        assert_eq!(parse(""), ResolvConf::default());
        assert_eq!(parse("\n\n   \n\t\n"), ResolvConf::default());
        assert_eq!(
            parse("garbage line\n\u{1}\u{2}\u{ff}\noptions edns0 trust-ad\nsortlist 1.2.3.4\n"),
            ResolvConf::default()
        );
    }

    #[test]
    fn nameservers_v4_v6_and_loopback() {
        let rc = parse("nameserver 8.8.8.8\nnameserver 2001:4860:4860::8888\nnameserver 127.0.0.53\nnameserver ::1\n");
        assert_eq!(
            rc.nameservers,
            vec![
                v4(8, 8, 8, 8),
                SocketAddr::new("2001:4860:4860::8888".parse().unwrap(), 53),
                v4(127, 0, 0, 53),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 53),
            ]
        );
        assert!(rc.search.is_empty());
        assert_eq!(rc.domain, None);
    }

    #[test]
    fn bad_nameserver_lines_skipped() {
        let rc = parse(
            "nameserver\nnameserver not-an-ip\nnameserver 1.2.3\nnameserver 300.1.1.1\nnameserver 1.1.1.1:53\n\
             nameserver fe80::1%\nnameserver 1.2.3.4%eth0\nnameserver 9.9.9.9\n",
        );
        assert_eq!(rc.nameservers, vec![v4(9, 9, 9, 9)]);
    }

    #[test]
    fn extra_words_after_nameserver_ignored_and_duplicates_dropped() {
        let rc = parse(
            "nameserver 1.1.1.1 extra stuff\nnameserver   1.1.1.1\n\tnameserver\t1.0.0.1  \n",
        );
        assert_eq!(rc.nameservers, vec![v4(1, 1, 1, 1), v4(1, 0, 0, 1)]);
    }

    #[test]
    fn unspecified_becomes_loopback() {
        let rc = parse("nameserver 0.0.0.0\nnameserver ::\n");
        assert_eq!(
            rc.nameservers,
            vec![
                v4(127, 0, 0, 1),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 53)
            ]
        );
    }

    #[test]
    fn link_local_scopes() {
        let rc = parse("nameserver fe80::1%3\nnameserver fe80::2%eth0\n");
        // A numeric scope is kept; a name cannot be resolved by plain `parse`, so that line is skipped.
        assert_eq!(
            rc.nameservers,
            vec![SocketAddr::V6(SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                53,
                0,
                3
            ))]
        );

        let rc = parse_with_scopes(
            "nameserver fe80::2%eth0\nnameserver fe80::3%wlan9\n",
            |name| (name == "eth0").then_some(7),
        );
        assert_eq!(
            rc.nameservers,
            vec![SocketAddr::V6(SocketAddrV6::new(
                "fe80::2".parse().unwrap(),
                53,
                0,
                7
            ))]
        );
    }

    #[test]
    fn comments() {
        let text = "# a comment\n; another\nnameserver 1.1.1.1 # trailing\nnameserver 2.2.2.2;x\n#nameserver 3.3.3.3\n  ; nameserver 4.4.4.4\nsearch a.example # b.example\n";
        let rc = parse(text);
        assert_eq!(rc.nameservers, vec![v4(1, 1, 1, 1), v4(2, 2, 2, 2)]);
        assert_eq!(rc.search, vec!["a.example".to_string()]);
    }

    #[test]
    fn search_last_wins() {
        let rc = parse("search one.example two.example\nsearch three.example four.example\n");
        assert_eq!(
            rc.search,
            vec!["three.example".to_string(), "four.example".to_string()]
        );
        assert_eq!(rc.domain, None);
    }

    #[test]
    fn domain_and_search_are_exclusive_last_wins() {
        let rc = parse("search a.example b.example\ndomain corp.example\n");
        assert_eq!(rc.search, vec!["corp.example".to_string()]);
        assert_eq!(rc.domain.as_deref(), Some("corp.example"));

        let rc = parse("domain corp.example\nsearch a.example b.example\n");
        assert_eq!(
            rc.search,
            vec!["a.example".to_string(), "b.example".to_string()]
        );
        assert_eq!(rc.domain.as_deref(), Some("corp.example"));
    }

    #[test]
    fn search_normalization() {
        let rc = parse("search Example.COM. . bad..name a.example a.example -ok_.x ünïcode\n");
        assert_eq!(
            rc.search,
            vec![
                "Example.COM".to_string(),
                "a.example".to_string(),
                "-ok_.x".to_string()
            ]
        );
        let long = format!("search {}.example\n", "a".repeat(64));
        assert!(parse(&long).search.is_empty());
        // An empty search line clears the list.
        assert!(parse("search a.example\nsearch\n").search.is_empty());
    }

    #[test]
    fn typical_systemd_resolved_file() {
        let text =
            "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\n\
                    # Do not edit.\n\
                    \n\
                    nameserver 127.0.0.53\n\
                    options edns0 trust-ad\n\
                    search lan\n";
        let rc = parse(text);
        assert_eq!(rc.nameservers, vec![v4(127, 0, 0, 53)]);
        assert_eq!(rc.search, vec!["lan".to_string()]);
    }

    #[test]
    fn crlf_lines() {
        let rc = parse("nameserver 1.1.1.1\r\nsearch x.example\r\n");
        assert_eq!(rc.nameservers, vec![v4(1, 1, 1, 1)]);
        assert_eq!(rc.search, vec!["x.example".to_string()]);
    }
}
