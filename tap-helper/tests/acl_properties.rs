//! Randomized (property) tests for the ACL parser and evaluator.  No root needed, no extra
//! crates: a fixed-seed xorshift generator makes every run reproducible; set a different
//! seed by editing SEEDS when hunting for bugs.

use tap_helper::acl::{self, Acl, Directive, MapSource, Target};
use tap_helper::ifname::IfName;

const SEEDS: std::ops::Range<u64> = 1..2001;

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const NAMES: &[&str] = &[
    "br0",
    "br1",
    "br2",
    "virbr0",
    "x",
    "123456789012345",
    "br;0",
    "all0",
];

/// Separators between words: space and tab only.
fn ws(r: &mut Rng) -> String {
    (0..=r.below(3))
        .map(|_| *r.pick(&[" ", "\t", "  "]))
        .collect()
}

/// Leading/trailing padding: any C whitespace.
fn opt_ws(r: &mut Rng) -> String {
    if r.chance(50) {
        (0..=r.below(3))
            .map(|_| *r.pick(&[" ", "\t", "\x0b", "\x0c", "\r"]))
            .collect()
    } else {
        String::new()
    }
}

fn random_target(r: &mut Rng) -> Target {
    if r.chance(20) {
        Target::All
    } else {
        Target::Name(IfName::new(r.pick(NAMES).as_bytes()).expect("valid"))
    }
}

fn random_directive(r: &mut Rng) -> Directive {
    match r.below(4) {
        0 | 1 => Directive::Allow(random_target(r)),
        2 => Directive::Deny(random_target(r)),
        _ => Directive::MaxTaps(r.next() as u32 % 100),
    }
}

/// Render directives with random blank lines, comments, indentation and CRLF, returning the
/// text and the line each directive lands on.
fn render(r: &mut Rng, ds: &[Directive]) -> (String, Vec<usize>) {
    let mut text = String::new();
    let mut lines = Vec::new();
    let mut line = 1;
    for d in ds {
        while r.chance(30) {
            match r.below(3) {
                0 => text.push_str(&format!("{}\n", opt_ws(r))),
                1 => text.push_str(&format!("{}# allow all {}\n", opt_ws(r), r.next())),
                _ => text.push_str(&format!("{}#deny br0\r\n", opt_ws(r))),
            }
            line += 1;
        }
        let (cmd, arg) = match d {
            Directive::Allow(t) => ("allow", t.to_string()),
            Directive::Deny(t) => ("deny", t.to_string()),
            Directive::MaxTaps(n) => ("max-taps", n.to_string()),
            Directive::Include(p) => ("include", String::from_utf8_lossy(p).into_owned()),
        };
        let eol = if r.chance(20) { "\r\n" } else { "\n" };
        text.push_str(&format!(
            "{}{cmd}{}{arg}{}{eol}",
            opt_ws(r),
            ws(r),
            opt_ws(r)
        ));
        lines.push(line);
        line += 1;
    }
    (text, lines)
}

#[test]
fn render_then_parse_round_trips() {
    for seed in SEEDS {
        let mut r = Rng::new(seed);
        let ds: Vec<Directive> = (0..r.below(12)).map(|_| random_directive(&mut r)).collect();
        let (text, lines) = render(&mut r, &ds);
        let parsed =
            acl::parse(text.as_bytes()).unwrap_or_else(|e| panic!("seed {seed}: {e:?}\n{text}"));
        let want: Vec<(usize, Directive)> = lines.into_iter().zip(ds).collect();
        assert_eq!(parsed, want, "seed {seed}\n{text}");
    }
}

#[test]
fn parser_never_panics_on_garbage() {
    let alphabet: &[u8] = b"alowdenyinclude max-taps/#:\t\n\r \0\xff0123456789.";
    for seed in SEEDS {
        let mut r = Rng::new(seed);
        let len = r.below(200);
        let text: Vec<u8> = (0..len)
            .map(|_| {
                if r.chance(90) {
                    *r.pick(alphabet)
                } else {
                    r.next() as u8
                }
            })
            .collect();
        if let Err((line, _)) = acl::parse(&text) {
            let n = text.split(|&b| b == b'\n').count();
            assert!(
                line >= 1 && line <= n,
                "seed {seed}: error line {line} of {n}"
            );
        }
    }
}

#[test]
fn every_accepted_name_is_a_valid_kernel_name() {
    for seed in SEEDS {
        let mut r = Rng::new(seed);
        let name: Vec<u8> = (0..r.below(20)).map(|_| r.next() as u8).collect();
        let line = [b"allow ".as_slice(), &name].concat();
        if let Ok(Some(Directive::Allow(Target::Name(n)))) = acl::parse_line(&line) {
            let b = n.as_bytes();
            assert!(!b.is_empty() && b.len() <= 15, "seed {seed}");
            assert!(!b.iter().any(|c| matches!(
                c,
                b'/' | b':' | 0 | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c
            )));
            assert_ne!(b, b".");
            assert_ne!(b, b"..");
        }
    }
}

fn load_one(text: &str) -> Acl {
    let mut s = MapSource {
        files: vec![(b"/m".to_vec(), text.as_bytes().to_vec())],
        unreadable: vec![],
    };
    acl::load(&mut s, b"/m").expect("loads")
}

/// The reference model: allowed iff some allow matches and no deny matches.
fn model(ds: &[Directive], bridge: &str) -> bool {
    let m = |t: &Target| match t {
        Target::All => true,
        Target::Name(n) => n.as_bytes() == bridge.as_bytes(),
    };
    let allow = ds.iter().any(|d| matches!(d, Directive::Allow(t) if m(t)));
    let deny = ds.iter().any(|d| matches!(d, Directive::Deny(t) if m(t)));
    allow && !deny
}

#[test]
fn decisions_match_the_model_and_ignore_order() {
    for seed in SEEDS {
        let mut r = Rng::new(seed);
        let mut ds: Vec<Directive> = (0..r.below(10)).map(|_| random_directive(&mut r)).collect();
        let (text, _) = render(&mut r, &ds);
        let acl = load_one(&text);
        for b in NAMES {
            let n = IfName::new(b.as_bytes()).expect("valid");
            assert_eq!(
                acl.decide(&n).is_allowed(),
                model(&ds, b),
                "seed {seed} bridge {b}\n{text}"
            );
        }
        // Shuffle: same answers.
        for i in (1..ds.len()).rev() {
            let j = r.below(i + 1);
            ds.swap(i, j);
        }
        let (text2, _) = render(&mut r, &ds);
        let acl2 = load_one(&text2);
        for b in NAMES {
            let n = IfName::new(b.as_bytes()).expect("valid");
            assert_eq!(
                acl.decide(&n).is_allowed(),
                acl2.decide(&n).is_allowed(),
                "seed {seed}"
            );
        }
        // Deny wins: appending a matching deny always denies.
        let b = *r.pick(NAMES);
        let n = IfName::new(b.as_bytes()).expect("valid");
        let denied = load_one(&format!("{text}deny {b}\n"));
        assert!(!denied.decide(&n).is_allowed(), "seed {seed}");
        let denied = load_one(&format!("deny all\n{text}allow all\n"));
        assert!(!denied.decide(&n).is_allowed(), "seed {seed}");
    }
}

#[test]
fn random_include_graphs_terminate_and_never_panic() {
    for seed in SEEDS {
        let mut r = Rng::new(seed);
        let nfiles = 1 + r.below(6);
        let mut files = Vec::new();
        for i in 0..nfiles {
            let mut text = String::new();
            for _ in 0..r.below(5) {
                if r.chance(40) {
                    text.push_str(&format!("include /f{}\n", r.below(nfiles + 1)));
                } else {
                    text.push_str(&format!("{}\n", random_directive(&mut r)));
                }
            }
            files.push((format!("/f{i}").into_bytes(), text.into_bytes()));
        }
        let unreadable = if r.chance(30) {
            vec![format!("/f{}", r.below(nfiles)).into_bytes()]
        } else {
            vec![]
        };
        let mut s = MapSource { files, unreadable };
        match acl::load(&mut s, b"/f0") {
            Ok(a) => assert!(a.files_read <= acl::MAX_FILES),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn unreadable_includes_only_remove_their_own_rules() {
    // Hiding a file that holds only allows can never grant access; hiding one that holds
    // only denies can never take access away.
    for seed in SEEDS {
        let mut r = Rng::new(seed);
        let main: Vec<Directive> = (0..r.below(6)).map(|_| random_directive(&mut r)).collect();
        let allows: Vec<Directive> = (0..r.below(4))
            .map(|_| Directive::Allow(random_target(&mut r)))
            .collect();
        let denies: Vec<Directive> = (0..r.below(4))
            .map(|_| Directive::Deny(random_target(&mut r)))
            .collect();
        let join = |ds: &[Directive]| ds.iter().map(|d| format!("{d}\n")).collect::<String>();
        let m = format!("{}include /a\ninclude /d\n", join(&main));
        let mk = |hide: &[&str]| MapSource {
            files: vec![
                (b"/m".to_vec(), m.clone().into_bytes()),
                (b"/a".to_vec(), join(&allows).into_bytes()),
                (b"/d".to_vec(), join(&denies).into_bytes()),
            ],
            unreadable: hide.iter().map(|h| h.as_bytes().to_vec()).collect(),
        };
        let all = acl::load(&mut mk(&[]), b"/m").expect("loads");
        let no_a = acl::load(&mut mk(&["/a"]), b"/m").expect("loads");
        let no_d = acl::load(&mut mk(&["/d"]), b"/m").expect("loads");
        for b in NAMES {
            let n = IfName::new(b.as_bytes()).expect("valid");
            let (x, a, d) = (
                all.decide(&n).is_allowed(),
                no_a.decide(&n).is_allowed(),
                no_d.decide(&n).is_allowed(),
            );
            assert!(!a || x, "seed {seed}: hiding allows granted access to {b}");
            assert!(!x || d, "seed {seed}: hiding denies removed access to {b}");
        }
    }
}
