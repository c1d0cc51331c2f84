//! The shape of `vde-switch/src`: no import cycles between its files, and `unsafe` only in the `sys`
//! modules.
//!
//! An edge A -> B is any path in A's code (tests excluded) that names B's module: `crate::…`, `super::…`
//! or `self::…` (resolved to the longest prefix that is a file), including `use crate::{b, c::D}`
//! groups, and `child::…` for a module A declares (a parent file using its child). Declaring a child
//! (`mod x;`) is not an edge: a child may use its parent, as long as the parent does not use it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// File path (relative, `/`-separated) -> source.
type Tree = BTreeMap<String, String>;

fn read_tree(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p.strip_prefix(root).expect("under root");
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&p).expect("read source"));
            }
        }
    }
    let mut t = Tree::new();
    walk(root, root, &mut t);
    t
}

/// The module path of a file: `a/b.rs` and `a/b/mod.rs` are `[a, b]`; `lib.rs`/`main.rs` are `[]`.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut parts: Vec<String> = stem.split('/').map(String::from).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments, without the contents of string and character literals, and
/// without its `#[cfg(test)]` modules (which come last in a file here).
fn code_of(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("#[cfg(test)]") {
            break;
        }
        let prev_ident = i > 0 && is_ident(b[i - 1] as char);
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |n| n + 2);
        } else if !prev_ident && (rest.starts_with("r\"") || rest.starts_with("r#")) {
            // A raw string: r"…", r#"…"#, …
            let hashes = rest[1..].bytes().take_while(|&c| c == b'#').count();
            if rest.as_bytes().get(1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let end = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += body
                + rest[body..]
                    .find(&end)
                    .map_or(rest.len() - body, |n| n + end.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime.
            if rest[1..].starts_with('\\') {
                i += 2 + rest[2..].find('\'').map_or(rest.len() - 2, |n| n + 1);
                out.push_str("' '");
            } else if rest[1..].chars().nth(1) == Some('\'') {
                i += 1 + rest[1..].chars().next().map_or(0, char::len_utf8) + 1;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifiers of a path starting at `s` (`a::b::{…}` gives `[a, b]`; a group is returned too).
fn path_at(s: &str) -> (Vec<String>, Option<String>) {
    let mut segs = Vec::new();
    let mut rest = s;
    loop {
        let n = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if n == 0 {
            break;
        }
        segs.push(rest[..n].to_string());
        rest = &rest[n..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => return (segs, None),
        }
        if let Some(r) = rest.strip_prefix('{') {
            // The group, up to its matching brace.
            let mut depth = 1;
            for (i, c) in r.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            return (segs, Some(r[..i].to_string()));
                        }
                    }
                    _ => {}
                }
            }
            return (segs, None);
        }
    }
    (segs, None)
}

/// Splits a `use` group at its top-level commas.
fn group_items(g: &str) -> Vec<String> {
    let (mut items, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for c in g.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The file edges of `tree` (files that name no other file have none).
fn edges(tree: &Tree) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<Vec<String>, String> = tree
        .keys()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| (module_of(f), f.clone()))
        .collect();
    // The file of the longest module prefix of `path`.
    let resolve = |path: &[String]| -> Option<String> {
        (0..=path.len())
            .rev()
            .find_map(|n| modules.get(&path[..n]).cloned())
    };
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, src) in tree {
        let me = module_of(file);
        let code = code_of(src);
        let children: BTreeSet<String> = code
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let l = l.strip_prefix("pub ").unwrap_or(l);
                let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
                let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
                Some(name.trim().to_string())
            })
            .collect();
        let mut targets = BTreeSet::new();
        let chars: Vec<(usize, char)> = code.char_indices().collect();
        for (k, &(i, _)) in chars.iter().enumerate() {
            // Only at the start of a path: not after an identifier character or `::`.
            if k > 0 {
                let prev = chars[k - 1].1;
                if is_ident(prev) || (prev == ':' && code[..i].ends_with("::")) {
                    continue;
                }
            }
            let (segs, group) = path_at(&code[i..]);
            if segs.len() < 2 && group.is_none() {
                continue;
            }
            let Some(head) = segs.first() else { continue };
            let base: Vec<String> = match head.as_str() {
                "crate" => segs[1..].to_vec(),
                "self" => me.iter().chain(&segs[1..]).cloned().collect(),
                "super" => {
                    let mut b = me.clone();
                    let mut rest = &segs[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        b.pop();
                        rest = &rest[1..];
                    }
                    b.extend(rest.iter().cloned());
                    b
                }
                h if children.contains(h) => me.iter().chain(&segs).cloned().collect(),
                _ => continue,
            };
            let mut paths = vec![base.clone()];
            if let Some(g) = group {
                for item in group_items(&g) {
                    let (s, _) = path_at(&item);
                    let s: Vec<String> = s.into_iter().filter(|x| x != "self").collect();
                    paths.push(base.iter().chain(&s).cloned().collect());
                }
            }
            for p in paths {
                if let Some(t) = resolve(&p) {
                    if &t != file {
                        targets.insert(t);
                    }
                }
            }
        }
        out.insert(file.clone(), targets);
    }
    out
}

/// One import cycle, if there is any (as a list of files, the first repeated at the end).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        mark: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        mark.insert(n.to_string(), Mark::Open);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match mark.get(m.as_str()).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut c = stack[from..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                Mark::New => {
                    if let Some(c) = visit(m, g, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n.to_string(), Mark::Done);
        None
    }
    let mut mark = BTreeMap::new();
    for n in g.keys() {
        if mark.get(n.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(n, g, &mut mark, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn src_tree() -> Tree {
    read_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn no_import_cycles_between_files() {
    let tree = src_tree();
    let g = edges(&tree);
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle in vde-switch/src: {}", c.join(" -> "));
    }
    // The layering the README describes, spot-checked: the switch and the reactor know no front end,
    // the front ends do not know the event loop.
    let uses = |a: &str, b: &str| g.get(a).is_some_and(|t| t.contains(b));
    assert!(uses("frontend/stream.rs", "frontend/mod.rs"), "{g:#?}");
    assert!(uses("switch/mod.rs", "switch/mac.rs"), "{g:#?}");
    assert!(uses("server.rs", "frontend/stream.rs"), "{g:#?}");
    for (file, targets) in &g {
        if file.starts_with("switch/") || file == "reactor.rs" {
            assert!(
                !targets
                    .iter()
                    .any(|t| t.starts_with("frontend/") || t == "server.rs"),
                "{file} depends on {targets:?}"
            );
        }
        if file.starts_with("frontend/") {
            assert!(
                !targets.contains("server.rs"),
                "{file} depends on server.rs"
            );
        }
    }
}

#[test]
fn the_checker_finds_planted_cycles() {
    let tree = |files: &[(&str, &str)]| -> Tree {
        files
            .iter()
            .map(|(f, s)| (f.to_string(), s.to_string()))
            .collect()
    };
    // Two siblings through `crate::`, one of them in a `use` group.
    let t = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use crate::{b::Thing, x};\n"),
        ("b.rs", "fn f() { crate::a::g() }\n"),
    ]);
    assert!(find_cycle(&edges(&t)).is_some());
    // A parent using its child, which uses the parent through `super::`.
    let t = tree(&[
        ("lib.rs", "pub mod p;\n"),
        ("p/mod.rs", "pub mod c;\nfn f() { c::run() }\n"),
        ("p/c.rs", "use super::Context;\n"),
    ]);
    assert_eq!(
        find_cycle(&edges(&t)),
        Some(vec![
            "p/c.rs".to_string(),
            "p/mod.rs".to_string(),
            "p/c.rs".to_string()
        ])
    );
    // No cycle: the child uses its parent, the parent only declares it; a comment, a string and a
    // test module that name the child do not count.
    let t = tree(&[
        ("lib.rs", "pub mod p;\n"),
        (
            "p/mod.rs",
            "pub mod c;\n// c::run()\nconst S: &str = \"c::run\";\n#[cfg(test)]\nmod tests { use super::c::run; }\n",
        ),
        ("p/c.rs", "use super::Context;\n"),
    ]);
    let g = edges(&t);
    assert_eq!(find_cycle(&g), None, "{g:#?}");
    assert!(g["p/c.rs"].contains("p/mod.rs"));
}

#[test]
fn unsafe_lives_in_sys_modules_only() {
    let tree = src_tree();
    let mut found = Vec::new();
    for (file, src) in &tree {
        if file == "sys.rs" || file == "sandbox/sys.rs" {
            continue;
        }
        let code = code_of(src);
        for (n, line) in code.lines().enumerate() {
            let words: Vec<&str> = line
                .split(|c: char| !is_ident(c))
                .filter(|w| !w.is_empty())
                .collect();
            if words.contains(&"unsafe") && !line.contains("unsafe_code") {
                found.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "unsafe outside the sys modules:\n{}",
        found.join("\n")
    );
    // And the sys modules do hold what they are for (the test would not notice a renamed file).
    assert!(tree["sys.rs"].contains("unsafe {"));
    assert!(tree["sandbox/sys.rs"].contains("unsafe"));
}
