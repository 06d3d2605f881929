//! The kernel's modules form layers (ARCHITECTURE.md): each imports only from modules listed
//! before it here. A `crate::x` path in a module's source counts as an import of `x`.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom first. A module may use only the modules before it.
const LAYERS: &[&str] = &[
    "value", "printer", "error", "reader", "html", "expander", "datalog", "builtins", "flow",
    "bytecode", "compiler", "engine", "sxbc", "prelude", "call", "interp", "vm", "run", "testing",
];

fn imports(source: &str) -> BTreeSet<String> {
    let ident = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        let after = &source[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a::X, b}`: the first name of each item at the group's top level.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        found.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(after));
        }
    }
    found.remove("");
    found
}

/// The source of a module: `x.rs`, or every file of `x/`.
fn module_source(src: &Path, module: &str) -> String {
    let file = src.join(format!("{module}.rs"));
    if file.exists() {
        return std::fs::read_to_string(file).unwrap();
    }
    let mut text = String::new();
    for entry in std::fs::read_dir(src.join(module)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            text.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    text
}

#[test]
fn modules_import_only_from_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or(l.trim().strip_prefix("mod "))
        })
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let listed: BTreeSet<&str> = LAYERS.iter().copied().collect();
    assert_eq!(declared, listed, "lib.rs's modules and LAYERS differ");
    let mut problems = Vec::new();
    for (i, module) in LAYERS.iter().enumerate() {
        for used in imports(&module_source(&src, module)) {
            if used == *module {
                continue;
            }
            match LAYERS.iter().position(|m| *m == used) {
                Some(j) if j < i => {}
                Some(_) => problems.push(format!("{module} imports {used}, a layer above it")),
                None => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
