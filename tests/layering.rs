//! The library's layers, checked from its source: each top-level module
//! of `src/` imports only modules below it in `ORDER` (so no import runs up
//! and no two modules import each other), only the front ends touch wire
//! types (tonic, axum, http, hyper), and only the store touches the
//! database driver. What still breaks a rule is listed in `DEBTS` with the
//! reason, and the list is exact: a new break fails, and so does a debt
//! that is paid but still listed (issue 32, item 3).
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The library's top-level modules, bottom first.
const ORDER: &[&str] = &[
    "domain",
    "reload",
    "files",
    "listen",
    "config",
    "auth",
    "telemetry",
    "store",
    "proto",
    "hooks",
    "service",
    "admission",
    "health",
    "status_table",
    "grpc",
    "gateway",
    "server",
];

/// Modules that may name wire types: the front ends, the wiring, the
/// generated contract, the listeners, and the hooks' gRPC plugin client.
const WIRE: &[&str] = &["grpc", "gateway", "server", "proto", "listen", "hooks"];

/// Crates of the wire.
const WIRE_CRATES: &[&str] = &["tonic", "axum", "http", "hyper", "tower_http"];

/// Modules that may name the database driver.
const DRIVER: &[&str] = &["store"];

/// Known breaks, each (module, what it names, why it is still there).
const DEBTS: &[(&str, &str, &str)] = &[];

/// Every Rust file under `src/`: its path from `src/` and its text.
fn rust_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&root).unwrap().to_string_lossy();
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((relative.into_owned(), text));
            }
        }
    }
    files.sort();
    files
}

/// Every Rust file of a top-level module of the library, with its text.
fn sources() -> BTreeMap<String, Vec<(String, String)>> {
    let mut modules: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (relative, text) in rust_files() {
        let top = relative
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        // The binary (the CLI) stands above the library.
        if matches!(top.as_str(), "main" | "transfer" | "lib") {
            continue;
        }
        modules
            .entry(top)
            .or_default()
            .push((format!("src/{relative}"), text));
    }
    modules
}

/// The first segment of every path that starts with `prefix` (`crate::`
/// and `a::b` or `{a::b, c}`), comments left out.
fn named_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices(prefix) {
        // Only a path's start: not `x_crate::` or `foo::crate::`.
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Each path of the group at its top level.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        start = false;
                        let name = ident(&group[i..]);
                        if !name.is_empty() {
                            names.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn imports_run_down_and_wire_types_stay_at_the_edges() {
    let modules = sources();
    let known: BTreeSet<&str> = ORDER.iter().copied().collect();
    let unplaced: Vec<&String> = modules
        .keys()
        .filter(|m| !known.contains(m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from ORDER (place each in its layer): {unplaced:?}"
    );
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut breaks: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (module, files) in &modules {
        for (path, text) in files {
            for named in named_after(text, "crate::") {
                let (Some(to), Some(from)) = (rank(&named), rank(module)) else {
                    continue;
                };
                if to > from {
                    breaks
                        .entry((module.clone(), named))
                        .or_default()
                        .push(path.clone());
                }
            }
            let mut check_crates = |crates: &[&str], allowed: &[&str]| {
                if allowed.contains(&module.as_str()) {
                    return;
                }
                for name in crates {
                    if named_after(text, &format!("{name}::")).is_empty()
                        && !text.contains(&format!("use {name}::"))
                    {
                        continue;
                    }
                    breaks
                        .entry((module.clone(), name.to_string()))
                        .or_default()
                        .push(path.clone());
                }
            };
            check_crates(WIRE_CRATES, WIRE);
            check_crates(&["sqlx", "rusqlite"], DRIVER);
        }
    }
    let debts: BTreeSet<(String, String)> = DEBTS
        .iter()
        .map(|(from, to, _)| (from.to_string(), to.to_string()))
        .collect();
    let new: Vec<String> = breaks
        .iter()
        .filter(|(edge, _)| !debts.contains(*edge))
        .map(|((from, to), files)| format!("{from} names {to} (in {})", files.join(", ")))
        .collect();
    assert!(
        new.is_empty(),
        "imports that run up the layers or wire or driver types below their place \
         (ORDER, WIRE and DRIVER in tests/layering.rs):\n{}",
        new.join("\n")
    );
    let paid: Vec<String> = debts
        .iter()
        .filter(|edge| !breaks.contains_key(*edge))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    assert!(
        paid.is_empty(),
        "debts paid but still listed: remove them from DEBTS: {paid:?}"
    );
}

/// The reader of paths finds what it must: grouped, nested and plain paths,
/// not paths inside comments or other crates' `crate`.
#[test]
fn paths_are_read_as_rust_names_them() {
    let text = "use crate::{domain::X, store::{A, B}, service};\n\
                // crate::gateway is mentioned in a comment\n\
                let x = crate::hooks::run();\n\
                let y = other_crate::telemetry::x();";
    let names: Vec<String> = named_after(text, "crate::").into_iter().collect();
    assert_eq!(names, ["domain", "hooks", "service", "store"]);
}

/// Small rooms: no source file is over 600 lines unless its module comment
/// says why ("… 600 lines because …"), as a table of data or one impl block
/// may need (issue 32, item 4).
#[test]
fn no_source_file_is_over_600_lines_without_a_reason() {
    let mut long = Vec::new();
    for (relative, text) in rust_files() {
        let lines = text.lines().count();
        let reason = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .any(|l| l.contains("600 lines because"));
        if lines > 600 && !reason {
            long.push(format!("src/{relative} ({lines} lines)"));
        }
    }
    long.sort();
    assert!(
        long.is_empty(),
        "split these at their seams, or say at the top why not: {long:?}"
    );
}

/// The longest a function may be, in lines from `fn` to its closing brace.
const FUNCTION_MOST: usize = 80;

/// Functions (free, in impls and trait defaults, nested ones too) as
/// (name, first line, lines), read by `syn`.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    use syn::visit::Visit;
    struct Collect(Vec<(String, usize, usize)>);
    impl Collect {
        fn add(&mut self, sig: &syn::Signature, block: &syn::Block) {
            let first = sig.fn_token.span.start().line;
            let last = block.brace_token.span.close().end().line;
            self.0
                .push((sig.ident.to_string(), first, last + 1 - first));
        }
    }
    impl<'a> Visit<'a> for Collect {
        fn visit_item_fn(&mut self, f: &'a syn::ItemFn) {
            self.add(&f.sig, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
        fn visit_impl_item_fn(&mut self, f: &'a syn::ImplItemFn) {
            self.add(&f.sig, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
        fn visit_trait_item_fn(&mut self, f: &'a syn::TraitItemFn) {
            if let Some(block) = &f.default {
                self.add(&f.sig, block);
            }
            syn::visit::visit_trait_item_fn(self, f);
        }
    }
    let file = syn::parse_file(text).expect("the library's source parses");
    let mut collect = Collect(Vec::new());
    collect.visit_file(&file);
    collect.0
}

/// Issue 32, item 4: a function over `FUNCTION_MOST` lines says why in the
/// comments just above it ("over 80 lines because …").
#[test]
fn no_function_is_over_80_lines_without_a_reason() {
    let mut long = Vec::new();
    for (relative, text) in rust_files() {
        let lines: Vec<&str> = text.lines().collect();
        for (name, first, count) in functions(&text) {
            if count <= FUNCTION_MOST {
                continue;
            }
            // The comments and attributes right above the `fn` line.
            let reason = lines[..first - 1]
                .iter()
                .rev()
                .take_while(|l| {
                    let l = l.trim_start();
                    l.starts_with("//") || l.starts_with("#[")
                })
                .any(|l| l.to_ascii_lowercase().contains("over 80 lines because"));
            if !reason {
                long.push(format!("src/{relative}:{first} {name} ({count} lines)"));
            }
        }
    }
    long.sort();
    assert!(
        long.is_empty(),
        "split these, or say just above each why not (\"over 80 lines because …\"): {long:#?}"
    );
}

/// The measure itself: a function's lines run from `fn` to its brace, and
/// methods, trait defaults and nested functions count.
#[test]
fn functions_are_measured_from_fn_to_brace() {
    let text = "struct S;\n\
                impl S {\n    fn a(&self) {\n        fn inner() {}\n    }\n}\n\
                trait T {\n    fn b() -> u8 {\n        1\n    }\n    fn c();\n}\n\
                pub async fn d(\n    x: u8,\n) {\n}\n";
    let found = functions(text);
    assert_eq!(
        found,
        [
            ("a".to_string(), 3, 3),
            ("inner".to_string(), 4, 1),
            ("b".to_string(), 8, 3),
            ("d".to_string(), 13, 4),
        ]
    );
}
