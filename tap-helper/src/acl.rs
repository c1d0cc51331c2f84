//! ACL files: QEMU's `bridge.conf` grammar and semantics, failing closed.
//!
//! Grammar (one directive per line; leading/trailing whitespace ignored):
//!
//! ```text
//! line      = blank | comment | directive
//! comment   = "#" anything            (only as the first non-blank character)
//! directive = "allow" WS target
//!           | "deny" WS target
//!           | "include" WS absolute-path
//!           | "max-taps" WS decimal   (warren extension)
//! target    = "all" | interface-name  (1..=15 bytes, kernel rules, compared exactly)
//! ```
//!
//! Semantics (as QEMU): everything is denied by default; a request is allowed when at least
//! one `allow` matches and no `deny` matches (deny wins, wherever it appears).  Files are read
//! with the real user's permissions, so an `include` the user may not read (EACCES) adds
//! nothing: that is how per-group files work.
//!
//! Stricter than QEMU: any syntax error in any file that is read (main file or include) makes
//! the whole ACL fail (deny, with `file:line`); an include that is missing or otherwise fails
//! to open for a reason other than EACCES is an error too; include paths must be absolute and
//! a single word; include loops, depth (> [`MAX_INCLUDE_DEPTH`]) and file count (>
//! [`MAX_FILES`]) are errors; trailing words after an argument are errors; words are
//! separated by space or tab only (as QEMU), other whitespace inside a word is an error;
//! lines longer than [`MAX_LINE`] bytes are errors (QEMU would split them).

use crate::ifname::{is_c_space, IfName, IfNameError};
use std::fmt;

/// Deepest include nesting accepted (the main file is depth 0).
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// Most files (main + includes, counting repeats) read for one decision.
pub const MAX_FILES: usize = 64;
/// Longest line accepted (QEMU reads lines with `fgets(line, 4096)` and silently splits
/// longer ones; refusing them keeps us from ever reading a line differently).
pub const MAX_LINE: usize = 4094;
/// Largest ACL file accepted, in bytes.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    Name(IfName),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => write!(f, "all"),
            Target::Name(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    Allow(Target),
    Deny(Target),
    Include(Vec<u8>),
    MaxTaps(u32),
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Directive::Allow(t) => write!(f, "allow {t}"),
            Directive::Deny(t) => write!(f, "deny {t}"),
            Directive::Include(p) => write!(f, "include {}", p.escape_ascii()),
            Directive::MaxTaps(n) => write!(f, "max-taps {n}"),
        }
    }
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxError {
    UnknownCommand(Vec<u8>),
    MissingArgument(&'static str),
    ExtraWords(&'static str),
    BadName(IfNameError),
    RelativeInclude,
    BadNumber(Vec<u8>),
    LineTooLong(usize),
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxError::UnknownCommand(c) => write!(
                f,
                "unknown command `{}` (expected allow, deny, include or max-taps)",
                c.escape_ascii()
            ),
            SyntaxError::MissingArgument(c) => write!(f, "`{c}` needs an argument"),
            SyntaxError::ExtraWords(c) => write!(
                f,
                "`{c}` takes exactly one argument (comments must be on their own line)"
            ),
            SyntaxError::BadName(e) => write!(f, "{e}"),
            SyntaxError::RelativeInclude => write!(f, "include path must be absolute"),
            SyntaxError::LineTooLong(n) => {
                write!(f, "line is {n} bytes long, at most {MAX_LINE} are allowed")
            }
            SyntaxError::BadNumber(n) => write!(
                f,
                "max-taps needs a decimal number 0..=4294967295, not `{}`",
                n.escape_ascii()
            ),
        }
    }
}

/// Parse one file's text.  Returns `(line number, directive)` pairs, or the first error with
/// its 1-based line number.
pub fn parse(text: &[u8]) -> Result<Vec<(usize, Directive)>, (usize, SyntaxError)> {
    let mut out = Vec::new();
    for (idx, raw) in text.split(|&b| b == b'\n').enumerate() {
        let lineno = idx + 1;
        match parse_line(raw) {
            Ok(Some(d)) => out.push((lineno, d)),
            Ok(None) => {}
            Err(e) => return Err((lineno, e)),
        }
    }
    Ok(out)
}

/// Parse one line (without its `\n`).  `Ok(None)` for blank lines and comments.
pub fn parse_line(raw: &[u8]) -> Result<Option<Directive>, SyntaxError> {
    if raw.len() > MAX_LINE {
        return Err(SyntaxError::LineTooLong(raw.len()));
    }
    // Like QEMU: trim C whitespace at both ends, but separate words only by space and tab;
    // any other whitespace inside a word makes that word invalid.
    let start = raw
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|&b| !is_c_space(b))
        .map_or(start, |i| i + 1);
    let trimmed = raw.get(start..end).unwrap_or(&[]);
    let mut words = trimmed
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let Some(cmd) = words.next() else {
        return Ok(None);
    };
    if cmd.first() == Some(&b'#') {
        return Ok(None);
    }
    let (name, arg): (&'static str, Option<&[u8]>) = match cmd {
        b"allow" => ("allow", words.next()),
        b"deny" => ("deny", words.next()),
        b"include" => ("include", words.next()),
        b"max-taps" => ("max-taps", words.next()),
        other => return Err(SyntaxError::UnknownCommand(other.to_vec())),
    };
    let arg = arg.ok_or(SyntaxError::MissingArgument(name))?;
    if words.next().is_some() {
        return Err(SyntaxError::ExtraWords(name));
    }
    let target = |a: &[u8]| -> Result<Target, SyntaxError> {
        if a == b"all" {
            Ok(Target::All)
        } else {
            IfName::new(a)
                .map(Target::Name)
                .map_err(SyntaxError::BadName)
        }
    };
    Ok(Some(match name {
        "allow" => Directive::Allow(target(arg)?),
        "deny" => Directive::Deny(target(arg)?),
        "include" => {
            if arg.first() != Some(&b'/') {
                return Err(SyntaxError::RelativeInclude);
            }
            Directive::Include(arg.to_vec())
        }
        _ => {
            Directive::MaxTaps(parse_u32(arg).ok_or_else(|| SyntaxError::BadNumber(arg.to_vec()))?)
        }
    }))
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = s.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    u32::try_from(v).ok()
}

/// Result of opening one ACL file through a [`Source`].
pub enum Opened {
    /// The file's contents and an identity (device, inode) used to detect loops.
    Text { data: Vec<u8>, id: (u64, u64) },
    /// The real user may not read it (EACCES).
    NotReadable,
}

/// Where ACL files come from (the real file system, or a map in tests).
pub trait Source {
    /// Open and read `path`.  `Err` says why not (missing, unsafe permissions, not a regular
    /// file, too large, I/O error); its `Display` is one line.
    fn open(&mut self, path: &[u8]) -> Result<Opened, OpenError>;
}

/// Why an ACL file could not be opened and read (shown after `ACL file PATH: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The system call failed with this errno (shown as its text, e.g. "No such file or
    /// directory", without " (os error N)").
    Os(i32),
    /// An I/O error that carries no errno (its text).
    Io(String),
    /// Not a regular file (a directory, a FIFO, a device...).
    NotRegular,
    /// Longer than this many bytes.
    TooLarge(u64),
    /// The file itself may be changed by someone other than root.
    UnsafeFile(Unsafe),
    /// A directory above the file may be changed by someone other than root.
    UnsafeDir {
        dir: std::path::PathBuf,
        why: Unsafe,
    },
    /// `/proc/self/fd/N` could not be read to find the file's real path.
    RealPath(Box<OpenError>),
    /// A directory above the file could not be examined.
    Stat {
        dir: std::path::PathBuf,
        why: Box<OpenError>,
    },
}

/// What makes a file or directory unsafe to trust for a setuid helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsafe {
    /// Owned by this uid, not root.
    NotRootOwned(u32),
    /// Writable by group or others (the permission bits).
    Writable(u32),
}

impl OpenError {
    /// The errno of `e`, or its text if it has none.
    pub fn from_io(e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(n) => OpenError::Os(n),
            None => OpenError::Io(e.to_string()),
        }
    }
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsafe::NotRootOwned(uid) => write!(f, "is owned by uid {uid}, not root"),
            Unsafe::Writable(mode) => {
                write!(f, "is writable by group or others (mode {mode:o})")
            }
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Os(n) => {
                let s = std::io::Error::from_raw_os_error(*n).to_string();
                f.write_str(s.find(" (os error").map_or(&s[..], |i| &s[..i]))
            }
            OpenError::Io(s) => f.write_str(s),
            OpenError::NotRegular => f.write_str("not a regular file"),
            OpenError::TooLarge(n) => write!(f, "larger than {n} bytes"),
            OpenError::UnsafeFile(why) => write!(f, "refused: file {why}"),
            OpenError::UnsafeDir { dir, why } => {
                write!(f, "refused: directory {} {why}", dir.display())
            }
            OpenError::RealPath(why) => {
                write!(f, "cannot resolve its real path via /proc: {why}")
            }
            OpenError::Stat { dir, why } => write!(f, "cannot stat {}: {why}", dir.display()),
        }
    }
}

impl std::error::Error for OpenError {}

/// Where a rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Vec<u8>,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.escape_ascii(), self.line)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub target: Target,
    pub origin: Origin,
}

/// All rules that apply to the real user, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub rules: Vec<Rule>,
    /// The smallest `max-taps` seen, with where it came from.
    pub max_taps: Option<(u32, Origin)>,
    /// Included files skipped because the user may not read them.
    pub unreadable: Vec<Vec<u8>>,
    /// Files read.
    pub files_read: usize,
}

/// Why the ACL could not be loaded.  Every variant means "deny".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclError {
    MainNotReadable {
        file: Vec<u8>,
    },
    Open {
        file: Vec<u8>,
        reason: OpenError,
        from: Option<Origin>,
    },
    Syntax {
        at: Origin,
        error: SyntaxError,
    },
    IncludeLoop {
        at: Origin,
        target: Vec<u8>,
    },
    TooDeep {
        at: Origin,
    },
    TooManyFiles {
        at: Origin,
    },
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclError::MainNotReadable { file } => write!(
                f,
                "ACL file {} is not readable by the calling user",
                file.escape_ascii()
            ),
            AclError::Open {
                file,
                reason,
                from: None,
            } => {
                write!(f, "ACL file {}: {reason}", file.escape_ascii())
            }
            AclError::Open {
                file,
                reason,
                from: Some(at),
            } => {
                write!(
                    f,
                    "{at}: included ACL file {}: {reason}",
                    file.escape_ascii()
                )
            }
            AclError::Syntax { at, error } => write!(f, "{at}: {error}"),
            AclError::IncludeLoop { at, target } => {
                write!(f, "{at}: include loop through {}", target.escape_ascii())
            }
            AclError::TooDeep { at } => write!(
                f,
                "{at}: includes nested deeper than {MAX_INCLUDE_DEPTH} levels"
            ),
            AclError::TooManyFiles { at } => {
                write!(f, "{at}: more than {MAX_FILES} ACL files read")
            }
        }
    }
}

/// Load `main` and everything it includes.
pub fn load(source: &mut dyn Source, main: &[u8]) -> Result<Acl, AclError> {
    let mut acl = Acl::default();
    let mut chain = Vec::new();
    load_file(source, main, None, &mut chain, &mut acl)?;
    Ok(acl)
}

fn load_file(
    source: &mut dyn Source,
    path: &[u8],
    from: Option<&Origin>,
    chain: &mut Vec<(u64, u64)>,
    acl: &mut Acl,
) -> Result<(), AclError> {
    if let Some(at) = from {
        if chain.len() > MAX_INCLUDE_DEPTH {
            return Err(AclError::TooDeep { at: at.clone() });
        }
        if acl.files_read >= MAX_FILES {
            return Err(AclError::TooManyFiles { at: at.clone() });
        }
    }
    let opened = source.open(path).map_err(|reason| AclError::Open {
        file: path.to_vec(),
        reason,
        from: from.cloned(),
    })?;
    let (data, id) = match opened {
        Opened::Text { data, id } => (data, id),
        Opened::NotReadable => {
            return match from {
                None => Err(AclError::MainNotReadable {
                    file: path.to_vec(),
                }),
                Some(_) => {
                    acl.unreadable.push(path.to_vec());
                    Ok(())
                }
            };
        }
    };
    if chain.contains(&id) {
        // `from` is always Some here: the chain is empty for the main file.
        let at = from.cloned().unwrap_or(Origin {
            file: path.to_vec(),
            line: 0,
        });
        return Err(AclError::IncludeLoop {
            at,
            target: path.to_vec(),
        });
    }
    acl.files_read += 1;
    let directives = parse(&data).map_err(|(line, error)| AclError::Syntax {
        at: Origin {
            file: path.to_vec(),
            line,
        },
        error,
    })?;
    chain.push(id);
    for (line, d) in directives {
        let origin = Origin {
            file: path.to_vec(),
            line,
        };
        match d {
            Directive::Allow(target) => acl.rules.push(Rule {
                allow: true,
                target,
                origin,
            }),
            Directive::Deny(target) => acl.rules.push(Rule {
                allow: false,
                target,
                origin,
            }),
            Directive::MaxTaps(n) => {
                let smaller = match &acl.max_taps {
                    Some((m, _)) => n < *m,
                    None => true,
                };
                if smaller {
                    acl.max_taps = Some((n, origin));
                }
            }
            Directive::Include(p) => load_file(source, &p, Some(&origin), chain, acl)?,
        }
    }
    chain.pop();
    Ok(())
}

/// The outcome for one bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the first matching allow rule.
    Allowed(Origin),
    /// No allow rule matched (default deny).
    NoAllowRule,
    /// Denied by the first matching deny rule.
    DeniedBy(Rule),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allowed(at) => write!(f, "allowed by {at}"),
            Decision::NoAllowRule => write!(f, "denied: no allow rule matches"),
            Decision::DeniedBy(r) => write!(f, "denied by `deny {}` at {}", r.target, r.origin),
        }
    }
}

impl Acl {
    /// QEMU's rule: allowed iff some allow matches and no deny matches.
    pub fn decide(&self, bridge: &IfName) -> Decision {
        let matches = |t: &Target| match t {
            Target::All => true,
            Target::Name(n) => n == bridge,
        };
        if let Some(r) = self.rules.iter().find(|r| !r.allow && matches(&r.target)) {
            return Decision::DeniedBy(r.clone());
        }
        match self.rules.iter().find(|r| r.allow && matches(&r.target)) {
            Some(r) => Decision::Allowed(r.origin.clone()),
            None => Decision::NoAllowRule,
        }
    }
}

/// An in-memory [`Source`] for tests and fuzzing.  Paths not present are "missing";
/// paths listed in `unreadable` give EACCES.
#[derive(Default)]
pub struct MapSource {
    pub files: Vec<(Vec<u8>, Vec<u8>)>,
    pub unreadable: Vec<Vec<u8>>,
}

impl Source for MapSource {
    fn open(&mut self, path: &[u8]) -> Result<Opened, OpenError> {
        if self.unreadable.iter().any(|p| p == path) {
            return Ok(Opened::NotReadable);
        }
        match self.files.iter().position(|(p, _)| p == path) {
            Some(i) => Ok(Opened::Text {
                data: self.files[i].1.clone(),
                id: (0, i as u64),
            }),
            None => Err(OpenError::Os(libc::ENOENT)),
        }
    }
}

/// The fuzz target's body (also run by the unit tests): parse `data` as one file, and as a
/// small tree of files split at `\0` bytes (`/0` is the main file, `/N` the N-th part), and
/// evaluate every name that appears.  Must never panic or loop.
pub fn fuzz_one(data: &[u8]) {
    let _ = parse(data);
    let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let mut source = MapSource {
        files: parts
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("/{i}").into_bytes(), p.to_vec()))
            .collect(),
        unreadable: vec![b"/3".to_vec()],
    };
    if let Ok(acl) = load(&mut source, b"/0") {
        for r in &acl.rules {
            if let Target::Name(n) = &r.target {
                let _ = acl.decide(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> IfName {
        IfName::new(s.as_bytes()).expect("valid test name")
    }

    fn src(files: &[(&str, &str)], unreadable: &[&str]) -> MapSource {
        MapSource {
            files: files
                .iter()
                .map(|(p, t)| (p.as_bytes().to_vec(), t.as_bytes().to_vec()))
                .collect(),
            unreadable: unreadable.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn parses_qemu_syntax() {
        let text = b"# comment\n\n  allow br0\nallow\tall\n deny  br1 \ninclude /etc/qemu/a.conf\r\nmax-taps 4\n   # indented comment\n";
        let got = parse(text).expect("valid");
        assert_eq!(
            got,
            vec![
                (3, Directive::Allow(Target::Name(name("br0")))),
                (4, Directive::Allow(Target::All)),
                (5, Directive::Deny(Target::Name(name("br1")))),
                (6, Directive::Include(b"/etc/qemu/a.conf".to_vec())),
                (7, Directive::MaxTaps(4)),
            ]
        );
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let cases: &[(&[u8], usize, SyntaxError)] = &[
            (
                b"allow br0\nallowbr0\n",
                2,
                SyntaxError::UnknownCommand(b"allowbr0".to_vec()),
            ),
            (b"allow\n", 1, SyntaxError::MissingArgument("allow")),
            (b"allow br0 # c\n", 1, SyntaxError::ExtraWords("allow")),
            (
                b"deny 1234567890123456\n",
                1,
                SyntaxError::BadName(IfNameError::TooLong(16)),
            ),
            (
                b"allow a/b\n",
                1,
                SyntaxError::BadName(IfNameError::BadByte(b'/')),
            ),
            (b"include rel.conf\n", 1, SyntaxError::RelativeInclude),
            (b"max-taps -1\n", 1, SyntaxError::BadNumber(b"-1".to_vec())),
            (
                b"max-taps 4294967296\n",
                1,
                SyntaxError::BadNumber(b"4294967296".to_vec()),
            ),
            (
                b"Allow br0\n",
                1,
                SyntaxError::UnknownCommand(b"Allow".to_vec()),
            ),
        ];
        for (text, line, err) in cases {
            assert_eq!(
                parse(text),
                Err((*line, err.clone())),
                "{}",
                text.escape_ascii()
            );
        }
        assert_eq!(
            parse(b"max-taps 4294967295"),
            Ok(vec![(1, Directive::MaxTaps(u32::MAX))])
        );
    }

    #[test]
    fn default_deny_and_deny_wins() {
        let acl = load(&mut src(&[("/m", "")], &[]), b"/m").expect("loads");
        assert_eq!(acl.decide(&name("br0")), Decision::NoAllowRule);

        let mut s = src(&[("/m", "deny br0\nallow all\nallow br0\n")], &[]);
        let acl = load(&mut s, b"/m").expect("loads");
        assert!(!acl.decide(&name("br0")).is_allowed());
        assert!(acl.decide(&name("br1")).is_allowed());

        let mut s = src(&[("/m", "allow br0\ndeny all\n")], &[]);
        let acl = load(&mut s, b"/m").expect("loads");
        assert!(matches!(acl.decide(&name("br0")), Decision::DeniedBy(_)));
    }

    #[test]
    fn exact_comparison_no_prefix_match() {
        let mut s = src(&[("/m", "allow br0\n")], &[]);
        let acl = load(&mut s, b"/m").expect("loads");
        assert!(acl.decide(&name("br0")).is_allowed());
        assert!(!acl.decide(&name("br00")).is_allowed());
        assert!(!acl.decide(&name("br")).is_allowed());
        assert!(!acl.decide(&name("BR0")).is_allowed());
    }

    #[test]
    fn seed_scenario_per_group_includes() {
        let files = [
            (
                "/etc/qemu/bridge.conf",
                "allow br0\ninclude /etc/qemu/alice.conf\ninclude /etc/qemu/bob.conf\ninclude /etc/qemu/charlie.conf\n",
            ),
            ("/etc/qemu/alice.conf", "allow br1\n"),
            ("/etc/qemu/bob.conf", "allow all\ndeny br1\n"),
            ("/etc/qemu/charlie.conf", "deny all\n"),
        ];
        let all = [
            "/etc/qemu/alice.conf",
            "/etc/qemu/bob.conf",
            "/etc/qemu/charlie.conf",
        ];
        let user = |readable: &[&str]| {
            let unreadable: Vec<&str> = all
                .iter()
                .copied()
                .filter(|p| !readable.contains(p))
                .collect();
            load(&mut src(&files, &unreadable), b"/etc/qemu/bridge.conf").expect("loads")
        };
        let verdicts = |acl: &Acl| -> Vec<bool> {
            ["br0", "br1", "br2"]
                .iter()
                .map(|b| acl.decide(&name(b)).is_allowed())
                .collect()
        };
        assert_eq!(
            verdicts(&user(&["/etc/qemu/alice.conf"])),
            [true, true, false]
        );
        assert_eq!(
            verdicts(&user(&["/etc/qemu/bob.conf"])),
            [true, false, true]
        );
        assert_eq!(
            verdicts(&user(&["/etc/qemu/charlie.conf"])),
            [false, false, false]
        );
        assert_eq!(verdicts(&user(&[])), [true, false, false]);
        let eve = user(&["/etc/qemu/alice.conf", "/etc/qemu/charlie.conf"]);
        assert_eq!(verdicts(&eve), [false, false, false]);
        assert_eq!(user(&[]).unreadable.len(), 3);
    }

    #[test]
    fn main_file_unreadable_is_an_error() {
        let r = load(&mut src(&[], &["/m"]), b"/m");
        assert_eq!(
            r,
            Err(AclError::MainNotReadable {
                file: b"/m".to_vec()
            })
        );
        let r = load(&mut src(&[], &[]), b"/m");
        assert!(matches!(r, Err(AclError::Open { from: None, .. })));
        assert_eq!(
            r.map(|_| ()).unwrap_err().to_string(),
            "ACL file /m: No such file or directory"
        );
    }

    #[test]
    fn missing_include_and_include_syntax_errors_fail_closed() {
        let r = load(&mut src(&[("/m", "allow all\ninclude /x\n")], &[]), b"/m");
        assert!(
            matches!(r, Err(AclError::Open { from: Some(_), .. })),
            "{r:?}"
        );
        let r = load(
            &mut src(
                &[("/m", "allow all\ninclude /x\n"), ("/x", "\n\nbogus\n")],
                &[],
            ),
            b"/m",
        );
        match r {
            Err(e @ AclError::Syntax { .. }) => assert!(e.to_string().starts_with("/x:3: ")),
            other => panic!("expected syntax error, got {other:?}"),
        }
    }

    #[test]
    fn include_loops_and_depth_are_bounded() {
        let r = load(&mut src(&[("/m", "allow all\ninclude /m\n")], &[]), b"/m");
        assert!(matches!(r, Err(AclError::IncludeLoop { .. })), "{r:?}");
        let r = load(
            &mut src(
                &[
                    ("/m", "include /a\n"),
                    ("/a", "include /b\n"),
                    ("/b", "include /a\n"),
                ],
                &[],
            ),
            b"/m",
        );
        assert!(matches!(r, Err(AclError::IncludeLoop { .. })), "{r:?}");

        // A chain of MAX_INCLUDE_DEPTH includes is fine, one more is not.
        let chain = |n: usize| {
            let mut files = Vec::new();
            for i in 0..n {
                files.push((format!("/f{i}"), format!("include /f{}\n", i + 1)));
            }
            files.push((format!("/f{n}"), "allow br0\n".to_string()));
            MapSource {
                files: files
                    .into_iter()
                    .map(|(p, t)| (p.into_bytes(), t.into_bytes()))
                    .collect(),
                unreadable: vec![],
            }
        };
        assert!(load(&mut chain(MAX_INCLUDE_DEPTH), b"/f0").is_ok());
        let r = load(&mut chain(MAX_INCLUDE_DEPTH + 1), b"/f0");
        assert!(matches!(r, Err(AclError::TooDeep { .. })), "{r:?}");

        // Diamonds are not loops, but the total number of files is bounded.
        let mut s = src(
            &[("/m", "include /a\ninclude /a\n"), ("/a", "allow br0\n")],
            &[],
        );
        assert!(load(&mut s, b"/m").is_ok());
        let fan: String = "include /a\n".repeat(MAX_FILES);
        let mut s = src(&[("/m", &fan), ("/a", "allow br0\n")], &[]);
        assert!(matches!(
            load(&mut s, b"/m"),
            Err(AclError::TooManyFiles { .. })
        ));
    }

    #[test]
    fn fuzz_body_survives_samples() {
        fuzz_one(b"");
        fuzz_one(b"allow br0\ninclude /1\0include /0\0deny all\0allow x\ninclude /2");
        fuzz_one(b"include /1\0include /2\0include /1\n");
        fuzz_one(&[0xff; 64]);
    }

    #[test]
    fn max_taps_smallest_wins() {
        let mut s = src(
            &[
                ("/m", "max-taps 5\ninclude /a\n"),
                ("/a", "max-taps 2\nmax-taps 3\n"),
            ],
            &[],
        );
        let acl = load(&mut s, b"/m").expect("loads");
        assert_eq!(acl.max_taps.map(|(n, o)| (n, o.line)), Some((2, 1)));
    }

    #[test]
    fn open_errors_read_as_one_line_reasons() {
        use std::path::PathBuf;
        let cases = [
            (OpenError::Os(libc::EACCES), "Permission denied"),
            (OpenError::NotRegular, "not a regular file"),
            (OpenError::TooLarge(65536), "larger than 65536 bytes"),
            (
                OpenError::UnsafeFile(Unsafe::NotRootOwned(1000)),
                "refused: file is owned by uid 1000, not root",
            ),
            (
                OpenError::UnsafeDir {
                    dir: PathBuf::from("/etc/qemu"),
                    why: Unsafe::Writable(0o777),
                },
                "refused: directory /etc/qemu is writable by group or others (mode 777)",
            ),
            (
                OpenError::RealPath(Box::new(OpenError::Os(libc::ENOENT))),
                "cannot resolve its real path via /proc: No such file or directory",
            ),
            (
                OpenError::Stat {
                    dir: PathBuf::from("/etc"),
                    why: Box::new(OpenError::Os(libc::EACCES)),
                },
                "cannot stat /etc: Permission denied",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
        let io = std::io::Error::other("odd");
        assert_eq!(OpenError::from_io(&io), OpenError::Io("odd".into()));
    }
}
