//! The arrow rule of docs/ARCHITECTURE.md, checked against the code: every `crate::<module>`
//! path in a top-level module's files must name a module the rule lets it use. The rule is
//! read from the document itself (the block after `<!-- arrows -->`), so the two cannot
//! drift apart. Comments are skipped: a doc link is not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MARKER: &str = "<!-- arrows -->";

#[derive(Debug)]
/// One line of the rule: a module and the modules it may use (`*`: any on an earlier line).
struct Rule {
    order: Vec<String>,
    allowed: BTreeMap<String, BTreeSet<String>>,
}

/// Parses the fenced block after [`MARKER`]: `module: dep dep …`, lowest layer first.
fn parse_rule(doc: &str) -> Result<Rule, String> {
    let after = doc.split_once(MARKER).ok_or("no arrows marker in docs/ARCHITECTURE.md")?.1;
    let mut lines = after.lines().skip_while(|l| !l.starts_with("```")).skip(1);
    let mut rule = Rule { order: Vec::new(), allowed: BTreeMap::new() };
    for line in lines.by_ref().take_while(|l| !l.starts_with("```")) {
        let (module, deps) = line.split_once(':').ok_or_else(|| format!("rule line without ':': {line}"))?;
        let module = module.trim().to_string();
        let mut allowed = BTreeSet::new();
        for dep in deps.split_whitespace() {
            if dep == "*" {
                allowed.extend(rule.order.iter().cloned());
            } else if rule.order.iter().any(|m| m == dep) {
                allowed.insert(dep.to_string());
            } else {
                return Err(format!("{module} may use {dep}, which is not on an earlier line (arrows one way)"));
            }
        }
        if rule.allowed.insert(module.clone(), allowed).is_some() {
            return Err(format!("{module} is listed twice"));
        }
        rule.order.push(module);
    }
    Ok(rule)
}

/// The crate's top-level modules (`src/<m>.rs`, `src/<m>/mod.rs`), the crate root and the
/// binary aside, each with its files.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("read src") {
        let path = entry.expect("dir entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("utf-8 name").to_string();
        if path.is_dir() {
            let mut files = Vec::new();
            rust_files(&path, &mut files);
            out.insert(name, files);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            out.insert(name, vec![path]);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every top-level module a `crate::` path in `text` names, with its line (1-based). Handles
/// groups (`crate::{a::b, c}`) across lines; skips `$crate::` and comments.
fn crate_paths(text: &str) -> Vec<(String, usize)> {
    let code: Vec<&str> = text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect();
    let joined = code.join("\n");
    let line_of = |at: usize| joined[..at].matches('\n').count() + 1;
    let bytes = joined.as_bytes();
    let ident = |at: usize| {
        let end = joined[at..].find(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(joined.len(), |n| at + n);
        &joined[at..end]
    };
    let mut out = Vec::new();
    for (at, _) in joined.match_indices("crate::") {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || matches!(bytes[at - 1], b'_' | b'$')) {
            continue;
        }
        let start = at + "crate::".len();
        if bytes.get(start) != Some(&b'{') {
            out.push((ident(start).to_string(), line_of(start)));
            continue;
        }
        // A group: the first identifier of each item at depth 1.
        let (mut depth, mut item_start) = (0usize, true);
        for (i, &b) in bytes.iter().enumerate().skip(start) {
            match b {
                b'{' => {
                    depth += 1;
                    item_start = depth == 1;
                }
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                b',' if depth == 1 => item_start = true,
                b if item_start && (b.is_ascii_alphabetic() || b == b'_') => {
                    out.push((ident(i).to_string(), line_of(i)));
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    out
}

/// Every arrow the rule forbids, as `file:line: a -> b`, or the rule's own problems.
fn violations(root: &Path) -> Vec<String> {
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("read docs/ARCHITECTURE.md");
    let rule = match parse_rule(&doc) {
        Ok(rule) => rule,
        Err(e) => return vec![e],
    };
    let src = root.join("gateway/src");
    let modules = modules(&src);
    let mut out = Vec::new();
    // The check's own test strings are not arrows.
    for (module, files) in modules.iter().filter(|(m, _)| *m != "arrows") {
        let Some(allowed) = rule.allowed.get(module) else {
            out.push(format!("{module}: not in the arrow rule of docs/ARCHITECTURE.md"));
            continue;
        };
        for file in files {
            let text = std::fs::read_to_string(file).expect("read source");
            for (target, line) in crate_paths(&text) {
                if &target != module && modules.contains_key(&target) && !allowed.contains(&target) {
                    let shown = file.strip_prefix(root).unwrap_or(file).display();
                    out.push(format!("{shown}:{line}: {module} -> {target}"));
                }
            }
        }
    }
    out
}

#[test]
fn every_arrow_between_top_level_modules_is_one_the_architecture_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let found = violations(root);
    assert!(found.is_empty(), "arrows against docs/ARCHITECTURE.md:\n{}", found.join("\n"));
}

#[test]
fn paths_are_found_in_groups_across_lines_but_not_in_comments_or_macros() {
    let text = "use crate::store::{db, Keys};\nuse crate::{\n    config::Cloud,\n    ops::{admin, logging},\n};\n\
                // crate::daemon in a comment\nlet t = crate::clock::now_ms(); // crate::cli\n$crate::hl7::x";
    let found = crate_paths(text);
    let expected = [("store", 1), ("config", 3), ("ops", 4), ("clock", 7)].map(|(m, l)| (m.to_string(), l));
    assert_eq!(found, expected);
}

#[test]
fn a_rule_naming_a_later_or_unknown_module_is_refused() {
    let rule = |lines: &str| parse_rule(&format!("{MARKER}\n```text\n{lines}\n```\n"));
    let ok = rule("clock:\nmetrics: clock\nops: *").expect("valid rule");
    assert_eq!(ok.allowed["ops"], BTreeSet::from(["clock".to_string(), "metrics".to_string()]));
    assert!(rule("metrics: clock\nclock:").unwrap_err().contains("not on an earlier line"));
    assert!(rule("clock:\nclock:").unwrap_err().contains("listed twice"));
}
