//! The core's files form no import cycle, and only `lib.rs` names the gateway: the protocol modules
//! see a `Ctx`, never the `Gateway` that dispatches to them.
//!
//! Edges are the `crate::X` paths each file of `src/` uses (test modules excluded); `wire/*.rs` is
//! one node, `wire`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name → the modules it refers to through `crate::`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for dir in [src.clone(), src.join("wire")] {
        for e in std::fs::read_dir(&dir).expect("src readable") {
            let p = e.expect("dir entry").path();
            if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in files {
        let stem = p.file_stem().and_then(|s| s.to_str()).expect("utf-8 name");
        let node = if p.parent().is_some_and(|d| d.ends_with("wire")) {
            "wire".to_string()
        } else {
            stem.to_string()
        };
        let text = std::fs::read_to_string(&p).expect("source readable");
        // Unit tests may use anything; the graph is about the shipped code.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let deps = g.entry(node.clone()).or_default();
        for line in code.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // Lower-case names are modules; `crate::Instant` and `crate::Mac` are lib.rs items.
                let target = if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                    name
                } else {
                    "lib".to_string()
                };
                if target != node {
                    deps.insert(target);
                }
            }
        }
    }
    g
}

/// A cycle in `g`, if there is one, as the list of modules along it.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut c = path[start..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn core_modules_have_no_import_cycle() {
    let mut g = graph();
    // lib.rs declares every module (edges down); items it defines (`Instant`, `Mac`) are leaves.
    g.remove("lib");
    for deps in g.values_mut() {
        deps.remove("lib");
    }
    assert!(
        g.contains_key("tcp") && g.contains_key("ctx"),
        "graph: {g:?}"
    );
    assert_eq!(find_cycle(&g), None, "import cycle in netstack/src");
}

#[test]
fn only_lib_names_the_gateway() {
    let g = graph();
    let users: Vec<&String> = g
        .iter()
        .filter(|(n, deps)| n.as_str() != "lib" && deps.contains("gateway"))
        .map(|(n, _)| n)
        .collect();
    assert!(users.is_empty(), "files importing gateway: {users:?}");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default();
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    let c = find_cycle(&g).expect("a cycle");
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
}
