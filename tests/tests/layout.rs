//! The module graphs of `dbos-runtime` and `dbos-macros` have no cycles: layers point one way
//! (the macro crate parses, then models, then expands; in the runtime, `sysdb` knows nothing
//! of workflows, and each concept uses only the ones below it).
//!
//! A module is a file. It depends on another when it names it in a path (`crate::a::b::Item`,
//! `super::x`, `use crate::{a, b}`), resolved to the longest module path that exists. Not
//! counted: the crate root (`lib.rs` declares and re-exports everything), a module's own test
//! code (`#[cfg(test)]` and below), and a parent re-exporting its children's items (a façade
//! such as `pub use call::WorkflowCall`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`a::b`, `""` for the root) → file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The code of a file before its test module, without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts at `crate::`, `super::` or `self::`, with `{a, b::c}` groups
/// expanded one level, and whether it sits in a `pub use` (a re-export).
fn paths(code: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
            let reexport = code[line_start..at].trim_start().starts_with("pub");
            let head = &start[..start.len() - 2];
            let rest = &code[at + start.len()..];
            let taken: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let after = &rest[taken.len()..];
            let prefix = format!("{head}::{}", taken.trim_end_matches(':'));
            if after.starts_with('{') && (taken.is_empty() || taken.ends_with("::")) {
                let group_end = after.find('}').unwrap_or(after.len());
                for item in after[1..group_end].split(',') {
                    let item = item.trim().split(" as ").next().unwrap_or("").trim();
                    if !item.is_empty() {
                        out.push((
                            format!("{}::{item}", prefix.trim_end_matches(':')),
                            reexport,
                        ));
                    }
                }
            } else {
                out.push((prefix, reexport));
            }
        }
    }
    out
}

/// The module `path` (as written in module `me`) names, if it is one of `known`.
fn resolve(me: &str, path: &str, known: &BTreeMap<String, PathBuf>) -> Option<String> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = if me.is_empty() {
        vec![]
    } else {
        me.split("::").collect()
    };
    match segs.first().copied() {
        Some("crate") => base.clear(),
        Some("self") => {}
        Some("super") => {
            while segs.first() == Some(&"super") {
                base.pop();
                segs.remove(0);
            }
            segs.insert(0, "super");
        }
        _ => return None,
    }
    segs.remove(0);
    let mut full = base;
    full.extend(segs);
    (1..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| known.contains_key(m))
}

fn cycles_in(crate_dir: &str) -> (Vec<String>, usize) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src");
    let known = modules(&src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (me, file) in &known {
        let deps = edges.entry(me.clone()).or_default();
        for (path, reexport) in paths(&code(file)) {
            let Some(target) = resolve(me, &path, &known) else {
                continue;
            };
            let child_of_me = target
                .strip_prefix(me.as_str())
                .is_some_and(|rest| rest.starts_with("::") || me.is_empty());
            if target.is_empty() || target == *me || (reexport && child_of_me) {
                continue;
            }
            deps.insert(target);
        }
    }
    // Depth-first search for a back edge; report each cycle found as a path.
    let mut found = Vec::new();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        found: &mut Vec<String>,
    ) {
        state.insert(m, 1);
        stack.push(m);
        for d in edges.get(m).into_iter().flatten() {
            match state.get(d.as_str()) {
                Some(1) => {
                    let i = stack.iter().position(|s| *s == d).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[i..].to_vec();
                    cycle.push(d);
                    found.push(cycle.join(" -> "));
                }
                Some(_) => {}
                None => visit(d, edges, state, stack, found),
            }
        }
        stack.pop();
        state.insert(m, 2);
    }
    for m in edges.keys() {
        if !state.contains_key(m.as_str()) {
            visit(m, &edges, &mut state, &mut Vec::new(), &mut found);
        }
    }
    let count = edges.values().map(BTreeSet::len).sum();
    (found, count)
}

#[test]
fn the_runtime_module_graph_has_no_cycles() {
    let (cycles, edges) = cycles_in("dbos-runtime");
    assert!(
        edges > 40,
        "the scan found the modules' dependencies ({edges} edges)"
    );
    assert!(
        cycles.is_empty(),
        "module cycles in dbos-runtime:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_macro_module_graph_has_no_cycles() {
    let (cycles, edges) = cycles_in("dbos-macros");
    assert!(
        edges > 5,
        "the scan found the modules' dependencies ({edges} edges)"
    );
    assert!(
        cycles.is_empty(),
        "module cycles in dbos-macros:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_scan_sees_a_cycle_when_there_is_one() {
    let dir = std::env::temp_dir().join(format!("dbos-layout-{}", std::process::id()));
    let src = dir.join("fake").join("src");
    std::fs::create_dir_all(src.join("b")).expect("create a fake crate");
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").expect("write");
    std::fs::write(src.join("a.rs"), "use crate::b::leaf::Thing;\n").expect("write");
    std::fs::write(src.join("b").join("mod.rs"), "pub mod leaf;\n").expect("write");
    std::fs::write(
        src.join("b").join("leaf.rs"),
        "pub struct Thing;\nfn f() { crate::a::g() }\n",
    )
    .expect("write");
    let known = modules(&src);
    assert_eq!(
        resolve("a", "crate::b::leaf::Thing", &known).as_deref(),
        Some("b::leaf")
    );
    assert_eq!(
        resolve("b::leaf", "super::super::a", &known).as_deref(),
        Some("a")
    );
    let rel = dir.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    // The fake crate lives outside the workspace: scan it through a relative path.
    let rel = match rel {
        Ok(r) => r.join("fake"),
        Err(_) => pathdiff(&dir.join("fake")),
    };
    let (cycles, _) = cycles_in(rel.to_str().expect("a UTF-8 path"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(cycles, vec!["a -> b::leaf -> a".to_owned()]);
}

/// `target` relative to the workspace root.
fn pathdiff(target: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace root");
    let mut up = PathBuf::new();
    for _ in root.components() {
        up.push("..");
    }
    up.join(target.strip_prefix("/").unwrap_or(target))
}
