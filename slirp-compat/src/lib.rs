//! slirp's vocabulary for warren: QEMU `hostfwd`/`guestfwd` rules, `-netdev user` option
//! strings, the `slirp4netns` command line, and the slirp4netns API socket's JSON protocol.
//!
//! Everything here is pure (no sockets, no processes): parsers, validators, response builders
//! and a forwarding table the daemon owns. Errors are typed enums (one per parser, one variant
//! per failure) whose `Display` is a single line (control characters that came with user input
//! are shown escaped); never panics on user input.

pub mod api;
pub mod ctl;
pub mod guestfwd;
pub mod hostfwd;
pub mod options;
pub mod passt;
pub mod pasta;
pub mod slirp4netns;

pub use api::{
    handle_request, parse_request, AddHostFwd, ApiBackend, ApiError, ApiRequest, HostFwdEntry,
    HostFwdTable, LeaseInfo,
};
pub use ctl::{parse_ctl_args, render_reply, Ctl, CtlArgs, CtlCommand};
pub use guestfwd::{GuestFwd, GuestFwdTarget};
pub use hostfwd::{HostFwd, HostFwdRule, PortRange, Proto, ResolvedHostFwd};
pub use options::SlirpOptions;
pub use slirp4netns::{Slirp4netnsCommand, Slirp4netnsOptions};

/// Shows user text on one line inside an error message: control characters are escaped as
/// [`one_line`] does (`\n`, `\u{0}`); used by the error enums' `Display` for text that is not
/// already `{:?}`-quoted.
pub(crate) struct Esc<'a>(&'a str);

pub(crate) fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

impl std::fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.0.chars().any(char::is_control) {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_debug())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Keeps an error message on one line: control characters that came in with user input (a
/// newline in an option value, a NUL in a command) are shown escaped (`\n`, `\u{0}`).
pub(crate) fn one_line(e: String) -> String {
    if !e.chars().any(char::is_control) {
        return e;
    }
    e.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod one_line_tests {
    use super::*;

    /// Inputs the fuzz targets found (fuzz/corpus/*/crash-*): values with newlines and NULs
    /// came back verbatim inside error messages.
    #[test]
    fn errors_with_control_characters_stay_one_line() {
        let errs = [
            GuestFwd::parse("tcp:10.0.112.0:7-cmd:\0e \n\0: x")
                .and_then(|g| {
                    g.resolved_addr(&netstack::config::Config::default())
                        .map(|_| g)
                })
                .expect_err("outside the LAN")
                .to_string(),
            SlirpOptions::parse("ipv6=on,ipv4=on,ipv6-host=\\6=on\n\0::3")
                .expect_err("bad v6")
                .to_string(),
            slirp4netns::parse_args(["--disable-\u{1b}[2J\nhost-loopback"])
                .expect_err("unknown")
                .to_string(),
            HostFwd::parse("tcp::1-:2\n3")
                .expect_err("bad port")
                .to_string(),
            SlirpOptions::parse("hostname=a\nb,host=1\n")
                .expect_err("bad host")
                .to_string(),
        ];
        for e in errs {
            assert!(!e.chars().any(char::is_control), "{e:?}");
        }
        assert_eq!(one_line("a\nb\u{0}c é".into()), "a\\nb\\0c é");
        assert_eq!(one_line("plain".into()), "plain");
    }
}

#[cfg(test)]
mod fuzz {
    //! Deterministic pseudo-random inputs: no parser may panic, errors are one line, and
    //! whatever parses prints back to the same value.
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[(self.next() % xs.len() as u64) as usize]
        }
    }

    const PIECES: &[&str] = &[
        "tcp",
        "udp",
        ":",
        ":",
        "-",
        "-",
        "[",
        "]",
        "::1",
        "10.0.2.15",
        "0.0.0.0",
        "127.0.0.1",
        "22",
        "80",
        "0",
        "65535",
        "65536",
        "2000-2010",
        "cmd:",
        "unix:",
        "/x",
        ",",
        ",,",
        "=",
        "net",
        "host",
        "dns",
        "hostfwd=",
        "guestfwd=",
        "restrict",
        "on",
        "user",
        "id",
        "é",
        " ",
        "10.0.2.0/24",
        "/",
        "255.255.255.0",
        "--mtu",
        "-c",
        "-m",
        "--cidr",
        "{",
        "}",
        "\"",
        "execute",
        "add_hostfwd",
        "arguments",
        "proto",
        "host_port",
        "1e3",
        "null",
        "\u{0}",
    ];

    fn gen(r: &mut Rng) -> String {
        let n = (r.next() % 12) as usize;
        (0..n).map(|_| r.pick(PIECES)).collect()
    }

    /// Mostly well-formed forwarding specs with random fields.
    fn gen_spec(r: &mut Rng) -> String {
        let proto = r.pick(&["tcp", "udp", "", "tcp", "sctp"]);
        let addr = |r: &mut Rng| {
            r.pick(&[
                "",
                "",
                "127.0.0.1",
                "10.0.2.15",
                "[::1]",
                "[fd00::5]",
                "1.2.3",
                "[x]",
            ])
        };
        let ports =
            |r: &mut Rng| r.pick(&["22", "80", "2000-2002", "3000-3002", "0", "1-65535", "9-8"]);
        let (h, hp, g, gp) = (addr(r), ports(r), addr(r), ports(r));
        if r.next() & 1 == 0 {
            format!("{proto}:{h}:{hp}-{g}:{gp}")
        } else {
            let g4 = r.pick(&["", "10.0.2.100", "10.0.2.2", "10.0.3.1"]);
            let t = r.pick(&[
                "cmd:cat",
                "tcp:127.0.0.1:80",
                "h:1",
                "unix:/s",
                "tcp:[::1]:5",
                "x",
            ]);
            format!("{proto}:{g4}:{gp}-{t}")
        }
    }

    fn one_line(e: &dyn std::fmt::Display) {
        let e = e.to_string();
        assert!(!e.contains('\n'), "multi-line error {e:?}");
    }

    #[test]
    fn parsers_never_panic() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut parsed, mut parsed_g) = (0, 0);
        for _ in 0..20_000 {
            let s = if r.next() & 1 == 0 {
                gen(&mut r)
            } else {
                gen_spec(&mut r)
            };
            match HostFwd::parse(&s) {
                Ok(h) => {
                    parsed += 1;
                    assert_eq!(HostFwd::parse(&h.to_string()), Ok(h.clone()), "{s}");
                    let _ = h.expand();
                    let _ = h.resolve(&netstack::config::Config::default());
                }
                Err(e) => one_line(&e),
            }
            match GuestFwd::parse(&s) {
                Ok(g) => {
                    parsed_g += 1;
                    assert_eq!(GuestFwd::parse(&g.to_string()), Ok(g.clone()), "{s}");
                }
                Err(e) => one_line(&e),
            }
            match SlirpOptions::parse(&s) {
                Ok(o) => {
                    let mut c = netstack::config::Config::default();
                    if let Err(e) = o.apply(&mut c) {
                        one_line(&e);
                    }
                }
                Err(e) => one_line(&e),
            }
            let words: Vec<String> = s.split(' ').map(String::from).collect();
            if let Err(e) = passt::parse(passt::Kind::Passt, &words) {
                one_line(&e);
            }
            if let Err(e) = pasta::parse(&words) {
                one_line(&e);
            }
            if let Err(e) = slirp4netns::parse_args(s.split(' ')) {
                one_line(&e);
            }
            if let Err(e) = ctl::parse_ctl_args(s.split(' ')) {
                one_line(&e);
            }
            if let Err(e) = api::parse_request(s.as_bytes()) {
                one_line(&e);
            }
        }
        assert!(parsed > 100, "too few valid hostfwd specs: {parsed}");
        assert!(parsed_g > 100, "too few valid guestfwd specs: {parsed_g}");
    }
}
