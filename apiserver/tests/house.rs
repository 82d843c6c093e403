//! The house stays acyclic: no file of `apiserver/src` imports, directly or around a circle, a
//! file that imports it back, and neither does a top-level module (a folder such as `alerting/`
//! or a file such as `config.rs`). A cycle is where a change stops being local; this test names
//! the files and the names that tie them.
//!
//! It reads the code as text: every `crate::…`, `super::…` and `self::…` path outside comments
//! and outside the `#[cfg(test)]` part at the end of a file (tests may look anywhere), resolved
//! to the longest module path that is a file. Run alone: `cargo test -p microdash --test house`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src/a/b.rs` → `["a", "b"]`; `src/a/mod.rs` → `["a"]`; `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "tests" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// The code of a file that counts: before its `#[cfg(test)]` part, without comments.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let line = match line.find("//") {
            // Not inside a string such as "http://…": good enough for this code base, whose
            // strings with `//` hold no `crate::` path.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    code
}

fn ident_at(text: &str, from: usize) -> Option<(String, usize)> {
    let len = text[from..].find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len() - from);
    (len > 0).then(|| (text[from..from + len].to_string(), from + len))
}

/// Every path after `crate::`, `super::` or `self::`, as module path segments (absolute), with
/// groups (`crate::a::{b, c::D}`) expanded to their first segment.
fn paths_in(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for anchor in ["crate::", "super::", "self::"] {
        let mut at = 0;
        while let Some(pos) = code[at..].find(anchor) {
            let start = at + pos;
            at = start + anchor.len();
            let before = code[..start].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            // Where the path starts: the crate root, the parent module, or this one. A file's
            // module is its own for `self::`; `super::` of `a/b.rs` is `a`, of `a/mod.rs` the root.
            let mut base: Vec<String> = match anchor {
                "crate::" => Vec::new(),
                "self::" => module.to_vec(),
                _ => {
                    let mut m = module.to_vec();
                    m.pop();
                    m
                }
            };
            let mut cursor = at;
            // `super::super::…`
            while anchor == "super::" && code[cursor..].starts_with("super::") {
                base.pop();
                cursor += "super::".len();
            }
            if code[cursor..].starts_with('{') {
                found.extend(group(code, cursor, &base));
                continue;
            }
            let mut path = base;
            while let Some((ident, next)) = ident_at(code, cursor) {
                path.push(ident);
                if code[next..].starts_with("::{") {
                    found.extend(group(code, next + 2, &path));
                    break;
                }
                if code[next..].starts_with("::") {
                    cursor = next + 2;
                } else {
                    break;
                }
            }
            found.push(path);
        }
    }
    found
}

/// The paths of a group `{a, b::C}` opening at `open`: `prefix` with each item's first segment.
fn group(code: &str, open: usize, prefix: &[String]) -> Vec<Vec<String>> {
    let end = code[open..].find('}').map(|e| open + e).unwrap_or(code.len());
    code[open + 1..end]
        .split(',')
        .filter_map(|item| ident_at(item.trim(), 0))
        .map(|(ident, _)| prefix.iter().cloned().chain([ident]).collect())
        .collect()
}

/// The file of the longest prefix of `path` that is a module of `modules`.
fn resolve<'a>(modules: &'a BTreeMap<Vec<String>, String>, path: &[String]) -> Option<&'a String> {
    (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

/// The strongly connected components of more than one node (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(next) = s.edges.get(v) {
            for w in next {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

struct Graph {
    /// file → files it imports
    files: BTreeMap<String, BTreeSet<String>>,
    /// top-level module → top-level modules it imports
    rooms: BTreeMap<String, BTreeSet<String>>,
    /// (importer, imported) → the paths that tie them, for the failure message
    why: BTreeMap<(String, String), BTreeSet<String>>,
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| (module_of(src, f), f.strip_prefix(src).unwrap().to_string_lossy().into_owned()))
        .collect();
    let room = |file: &str| file.split('/').next().unwrap().to_string();
    let mut g = Graph { files: BTreeMap::new(), rooms: BTreeMap::new(), why: BTreeMap::new() };
    for file in &files {
        let name = file.strip_prefix(src).unwrap().to_string_lossy().into_owned();
        let module = module_of(src, file);
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        g.files.entry(name.clone()).or_default();
        for path in paths_in(&code, &module) {
            let Some(target) = resolve(&modules, &path) else { continue };
            // The crate root (`lib.rs`) declares modules; it is no room of its own.
            if target == &name || target == "lib.rs" || target == "main.rs" {
                continue;
            }
            g.files.get_mut(&name).unwrap().insert(target.clone());
            g.why.entry((name.clone(), target.clone())).or_default().insert(path.join("::"));
            let (from, to) = (room(&name), room(target));
            if from != to {
                g.rooms.entry(from).or_default().insert(to);
            }
        }
    }
    g
}

fn describe(g: &Graph, circle: &[String], edges: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut lines = vec![format!("circle: {}", circle.join(", "))];
    for a in circle {
        for b in edges.get(a).into_iter().flatten().filter(|b| circle.contains(b)) {
            let names: BTreeSet<&String> = g
                .why
                .iter()
                .filter(|((f, t), _)| {
                    (f == a || f.starts_with(&format!("{a}/"))) && (t == b || t.starts_with(&format!("{b}/")))
                })
                .flat_map(|(_, w)| w)
                .collect();
            lines.push(format!("  {a} -> {b}: {}", names.into_iter().cloned().collect::<Vec<_>>().join(", ")));
        }
    }
    lines.join("\n")
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_file_of_apiserver_src_is_in_an_import_circle() {
    let g = graph(&src());
    assert!(g.files.len() > 40, "the walk found too few files: {:?}", g.files.keys());
    let found = circles(&g.files);
    let text: Vec<String> = found.iter().map(|c| describe(&g, c, &g.files)).collect();
    assert!(found.is_empty(), "import circles between files:\n{}", text.join("\n"));
}

#[test]
fn no_top_level_module_of_apiserver_src_is_in_an_import_circle() {
    let g = graph(&src());
    assert!(g.rooms.contains_key("http") && g.rooms["http"].contains("storage"), "{:?}", g.rooms);
    let found = circles(&g.rooms);
    let text: Vec<String> = found.iter().map(|c| describe(&g, c, &g.rooms)).collect();
    assert!(found.is_empty(), "import circles between folders or top-level files:\n{}", text.join("\n"));
}

/// The check itself finds a circle where there is one (two files importing each other, and
/// two folders through different files), so a pass above means something.
#[test]
fn the_check_finds_a_planted_circle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "pub mod x;\npub mod y;\n").unwrap();
    std::fs::write(src.join("a/x.rs"), "use super::y::Y;\n// use crate::b::z::Z;\n").unwrap();
    std::fs::write(src.join("a/y.rs"), "pub struct Y;\nfn f() { crate::a::x::g(); }\n").unwrap();
    std::fs::write(src.join("b/mod.rs"), "pub mod z;\nuse crate::a::{x, y};\n").unwrap();
    std::fs::write(src.join("b/z.rs"), "pub struct Z;\n#[cfg(test)]\nmod tests { use crate::a::x; }\n").unwrap();
    let g = graph(src);
    assert_eq!(circles(&g.files), vec![vec!["a/x.rs".to_string(), "a/y.rs".to_string()]]);
    assert!(circles(&g.rooms).is_empty(), "b imports a, a does not import b (comments and tests do not count)");
    std::fs::write(src.join("a/y.rs"), "pub struct Y;\nfn f() { crate::b::z::Z; }\n").unwrap();
    let g = graph(src);
    assert_eq!(circles(&g.rooms), vec![vec!["a".to_string(), "b".to_string()]]);
}
