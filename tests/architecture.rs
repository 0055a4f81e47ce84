//! The shape ARCHITECTURE.md promises, checked on the sources themselves: no module
//! imports from a module that imports from it (directly or round a circle), no source file
//! grows past what one person can hold in their head, `main.rs` stays a thin shell, the
//! pure core touches no device crate, and the repository stands alone (its documents cite
//! only files it contains).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a file under `src/` may be.
const MAX_LINES: usize = 900;
/// `main.rs` parses the command line and calls the library; nothing more.
const MAX_MAIN_LINES: usize = 70;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `a::b`, `src/a/mod.rs` → `a`; `lib.rs` and `main.rs` are the root, "".
fn module_name(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

/// The code of a file as the compiler sees it for the library: comments and the inline
/// `#[cfg(test)] mod tests { ... }` (which sits at the end of a file) left out.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|n| n.trim_start() == "mod tests {")
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path the code names: `use` trees expanded, and paths written inline.
fn paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    // `use` declarations, braces expanded.
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        let after = &rest[at..];
        let end = after.find(';').unwrap_or(after.len());
        let tree: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        expand("", &tree, &mut found);
        rest = &after[end..];
    }
    // Inline paths: an identifier chain with `::`, starting at a word boundary.
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            let start = i;
            while i < bytes.len() && (ident(bytes[i]) || bytes[i] == b':') {
                i += 1;
            }
            let word = code[start..i].trim_end_matches(':');
            if word.contains("::") {
                found.push(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    found
}

/// The byte offset just past the next `use ` keyword that starts a declaration.
fn find_use(code: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = code[from..].find("use ") {
        let abs = from + at;
        let before = code[..abs].chars().next_back();
        if before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ';' || c == ')') {
            return Some(abs + 4);
        }
        from = abs + 4;
    }
    None
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    match tree.find('{') {
        None => out.push(format!("{prefix}{tree}")),
        Some(open) => {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&format!("{prefix}{head}"), &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand(&format!("{prefix}{head}"), &inner[start..], out);
            }
        }
    }
}

/// The module a path leads into, if it leads into one of the crate's modules.
fn target(path: &str, from: &str, modules: &BTreeSet<String>) -> Option<String> {
    let path = path.split(" as ").next().unwrap_or(path);
    let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let (mut base, rest): (Vec<&str>, &[&str]) = match segments.first().copied() {
        Some("crate") => (Vec::new(), &segments[1..]),
        Some("super") => {
            let mut base: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
            base.pop();
            (base, &segments[1..])
        }
        Some("self") => (
            from.split("::").filter(|s| !s.is_empty()).collect(),
            &segments[1..],
        ),
        // A child module named without `self::`.
        Some(first) => {
            let base: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
            let child = if base.is_empty() {
                first.to_owned()
            } else {
                format!("{}::{first}", base.join("::"))
            };
            if !modules.contains(&child) {
                return None;
            }
            (base, &segments[..])
        }
        None => return None,
    };
    let mut best = (!base.is_empty()).then(|| base.join("::"));
    for seg in rest {
        base.push(seg);
        let name = base.join("::");
        if modules.contains(&name) {
            best = Some(name);
        } else {
            break;
        }
    }
    best.filter(|m| m != from && !m.is_empty())
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let sources: Vec<(String, String)> = files
        .iter()
        .filter(|f| !f.ends_with("main.rs") && !f.ends_with("lib.rs"))
        .map(|f| {
            (
                module_name(&src, f),
                fs::read_to_string(f).expect("readable"),
            )
        })
        .collect();
    let modules: BTreeSet<String> = sources.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, text) in &sources {
        let edges: BTreeSet<String> = paths(&code(text))
            .iter()
            .filter_map(|p| target(p, module, &modules))
            .collect();
        graph.insert(module.clone(), edges);
    }
    graph
}

/// Tarjan's strongly connected components with more than one module: the cycles.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn no_module_imports_from_a_module_that_imports_from_it() {
    let graph = import_graph();
    assert!(graph.len() > 10, "found too few modules: {graph:?}");
    let found = cycles(&graph);
    let described: Vec<String> = found
        .iter()
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|m| {
                    graph[m]
                        .iter()
                        .filter(|t| c.contains(t))
                        .map(move |t| format!("{m} -> {t}"))
                })
                .collect();
            edges.join(", ")
        })
        .collect();
    assert!(found.is_empty(), "import cycles: {described:#?}");
}

#[test]
fn the_cycle_finder_sees_a_cycle_through_use_trees_super_and_inline_paths() {
    let modules: BTreeSet<String> = ["a", "a::b", "c", "d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut graph = BTreeMap::new();
    let a = "use crate::{c::X, a::b::{Y, Z}};\n";
    let b = "fn f() { super::g(); }\n";
    let c = "// crate::a::b in a comment is no import\nfn h() -> crate::d::Q { todo!() }\n";
    for (m, text) in [("a", a), ("a::b", b), ("c", c), ("d", "")] {
        let edges: BTreeSet<String> = paths(&code(text))
            .iter()
            .filter_map(|p| target(p, m, &modules))
            .collect();
        graph.insert(m.to_owned(), edges);
    }
    assert_eq!(
        graph["a"],
        ["a::b", "c"].iter().map(|s| s.to_string()).collect()
    );
    assert_eq!(graph["a::b"], ["a".to_owned()].into_iter().collect());
    assert_eq!(graph["c"], ["d".to_owned()].into_iter().collect());
    assert_eq!(
        cycles(&graph),
        vec![vec!["a".to_owned(), "a::b".to_owned()]]
    );
}

#[test]
fn no_source_file_is_over_the_limit_and_main_is_thin() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long = Vec::new();
    for file in &files {
        let lines = fs::read_to_string(file).expect("readable").lines().count();
        if lines > MAX_LINES {
            long.push(format!("{} has {lines} lines", file.display()));
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
    let main = fs::read_to_string(src.join("main.rs")).expect("main.rs");
    assert!(
        main.lines().count() <= MAX_MAIN_LINES,
        "src/main.rs has {} lines; it should parse the command line and call the library",
        main.lines().count()
    );
}

#[test]
fn the_pure_core_names_no_device_runtime_or_network_crate() {
    let src = root().join("src");
    let pure = [
        "protocol.rs",
        "safety.rs",
        "session.rs",
        "ratelimit.rs",
        "media/convert.rs",
        "media/h264.rs",
        "media/keyframe.rs",
    ];
    let banned = [
        "tokio::",
        "hyper::",
        "webrtc::",
        "nokhwa::",
        "cpal::",
        "rppal::",
        "v4l::",
        "Instant::now",
        "SystemTime::now",
        "std::fs",
        "std::net::TcpStream",
        "std::thread",
    ];
    let mut found = Vec::new();
    for file in pure {
        let path = src.join(file);
        let Ok(text) = fs::read_to_string(&path) else {
            found.push(format!("{file} is missing"));
            continue;
        };
        for word in banned {
            if code(&text).contains(word) {
                found.push(format!("{file} uses {word}"));
            }
        }
    }
    assert!(found.is_empty(), "the pure core reached out: {found:#?}");
}

#[test]
fn the_repository_cites_only_what_it_contains() {
    // Spelled in pieces so that this file does not cite them itself.
    let outside = [
        format!("../{}/", "shared"),
        format!("{}.md", "DESIGN"),
        format!("{}.md", "NOTES"),
        format!("{}.md", "STYLE"),
    ];
    let mut found = Vec::new();
    let mut stack = vec![root()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "node_modules" | ".git") {
                    stack.push(path);
                }
                continue;
            }
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            for (n, line) in text.lines().enumerate() {
                let cites_issue = ["issue ", "Issue "].iter().any(|w| {
                    line.match_indices(w).any(|(at, _)| {
                        line[at + w.len()..].starts_with(|c: char| c.is_ascii_digit())
                    })
                });
                if cites_issue || outside.iter().any(|o| line.contains(o.as_str())) {
                    found.push(format!("{}:{}: {line}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "citations of files or issues outside the repository: {found:#?}"
    );
}
