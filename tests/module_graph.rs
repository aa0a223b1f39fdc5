//! The crate's imports run one way: this test reads every `src/**/*.rs`, collects the module each
//! file names through `crate::…` or `super::…` paths, and fails on any import cycle between files.
//!
//! Granularity is the file (module): `sources/ga4.rs` naming `crate::sources::google_ads::X` is an
//! edge `sources::ga4 -> sources::google_ads`. A parent's `mod child;` declaration is not an edge;
//! a parent naming a child's item (`ga4::Ga4Config` in `sources/mod.rs`) is. Paths inside
//! `#[cfg(test)]` modules are left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts.join("::")
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source without `#[cfg(test)] mod … { … }` blocks, line comments and doc comments.
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            // skip the following item: count braces until they balance
            let mut depth = 0i32;
            let mut opened = false;
            for l in lines.by_ref() {
                for ch in l.chars() {
                    match ch {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if (opened && depth <= 0) || (!opened && l.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Expands `use crate::a::{b, c::d}` groups into full paths, and collects bare `crate::a::b` paths.
fn referenced_paths(code: &str, self_module: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let re = regex::Regex::new(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)(::\{)?").unwrap();
    for m in re.captures_iter(code) {
        let root = &m[1];
        let mut base: Vec<String> = m[2]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if root == "super" {
            let mut parent: Vec<String> = if self_module.is_empty() {
                vec![]
            } else {
                self_module.split("::").map(str::to_string).collect()
            };
            parent.pop();
            parent.extend(base);
            base = parent;
        }
        if m.get(3).is_some() {
            // a brace group: take each top-level member's first segment
            let start = m.get(0).unwrap().end();
            let mut depth = 1;
            let mut member = String::new();
            for ch in code[start..].chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        member.push(ch)
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                        member.push(ch)
                    }
                    ',' if depth == 1 => {
                        push_member(&mut paths, &base, &member);
                        member.clear();
                    }
                    _ => member.push(ch),
                }
            }
            push_member(&mut paths, &base, &member);
        } else {
            paths.push(base);
        }
    }
    paths
}

fn push_member(paths: &mut Vec<Vec<String>>, base: &[String], member: &str) {
    let first: Vec<String> = member
        .trim()
        .split("::")
        .map(|s| s.trim().trim_start_matches('{').to_string())
        .take_while(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .collect();
    let mut p = base.to_vec();
    p.extend(first);
    paths.push(p);
}

fn tarjan(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct S<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut S<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        let g = s.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = S {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Builds the file-level import graph of `src/`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let me = module_of(src, f);
        let code = non_test_code(&std::fs::read_to_string(f).unwrap());
        let edges = g.entry(me.clone()).or_default();
        for path in referenced_paths(&code, &me) {
            // the longest prefix of the path that is a module file
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(t) = target
                && t != me
                && !t.is_empty()
            {
                edges.insert(t);
            }
        }
    }
    g
}

#[test]
fn detects_a_planted_cycle() {
    // The checker itself must be able to fail: two files naming each other form a cycle.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "use crate::b::{Thing, other::X};\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub fn f() -> crate::a::Y { todo!() }\n").unwrap();
    let cycles = tarjan(&graph(src));
    assert_eq!(cycles, vec![vec!["a".to_string(), "b".to_string()]]);
}

#[test]
fn crate_imports_have_no_cycle() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    let cycles = tarjan(&g);
    let explain: Vec<String> = cycles
        .iter()
        .map(|c| {
            let members: BTreeSet<&String> = c.iter().collect();
            let edges: Vec<String> = c
                .iter()
                .flat_map(|m| {
                    g[m].iter()
                        .filter(|t| members.contains(t))
                        .map(move |t| format!("{m} -> {t}"))
                })
                .collect();
            format!("cycle of {} modules: {}", c.len(), edges.join(", "))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", explain.join("\n"));
}
