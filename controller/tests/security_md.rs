//! SECURITY.md's promises each name the test that shows them: this keeps
//! every name true. A test renamed, removed or moved to another file fails
//! here, naming the row, until SECURITY.md follows it.
//!
//! In a table row's last cell, each `name` (a test function or a case of a
//! table-driven test) belongs to the path in parentheses after it
//! (`(controller/tests/transport.rs)`, or a path under `controller/src/`);
//! a path `x.rs` that became a module directory `x/` is searched whole.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// One cited test: its name, the path SECURITY.md gives (if any) and the row.
#[derive(Debug)]
struct Cited {
    name: String,
    path: Option<String>,
    row: usize,
}

/// The names of a row's last cell, each with the path that follows it: a
/// `.rs` word inside parentheses, which may hold names too
/// (`(cases `a_b`, `c_d`, controller/tests/inventory.rs)`).
fn cited_in(cell: &str, row: usize) -> Vec<Cited> {
    let (mut out, mut pending) = (Vec::new(), Vec::new());
    for (inside, part) in groups(cell) {
        pending.extend(ticked(part).filter(|n| is_test_name(n)).map(String::from));
        let path = part
            .split([' ', ',', ':', '`'])
            .find(|w| w.ends_with(".rs"))
            .filter(|_| inside);
        if let Some(path) = path {
            out.extend(pending.drain(..).map(|name| Cited {
                name,
                path: Some(path.to_string()),
                row,
            }));
        }
    }
    out.extend(pending.into_iter().map(|name| Cited {
        name,
        path: None,
        row,
    }));
    out
}

/// The cell cut at its parentheses: (inside a group?, text).
fn groups(cell: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = cell;
    while let Some(open) = rest.find('(') {
        let Some(len) = rest[open..].find(')') else {
            break;
        };
        out.push((false, &rest[..open]));
        out.push((true, &rest[open + 1..open + len]));
        rest = &rest[open + len + 1..];
    }
    out.push((false, rest));
    out
}

/// The words between backticks.
fn ticked(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

/// `snake_case` with at least one `_`: a test or a case, not a word.
fn is_test_name(s: &str) -> bool {
    s.contains('_')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Every name cited in SECURITY.md's tables.
fn cited(doc: &str) -> Vec<Cited> {
    doc.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with('|') && !l.starts_with("|---"))
        .filter_map(|(i, l)| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split('|').collect();
            (cells.len() >= 2).then(|| cited_in(cells[cells.len() - 1], i + 1))
        })
        .flatten()
        .collect()
}

/// The `.rs` files a cited path stands for: the file, or the module
/// directory it became; relative to the workspace or to `controller/src/`.
fn files_of(root: &Path, path: &str) -> Vec<PathBuf> {
    for base in [root.to_path_buf(), root.join("controller/src")] {
        let file = base.join(path);
        if file.is_file() {
            return vec![file];
        }
        let dir = file.with_extension("");
        if dir.is_dir() {
            return rust_files(&dir);
        }
    }
    Vec::new()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let skip = p.file_name().is_some_and(|n| n == "target" || n == ".git");
        if p.is_dir() && !skip {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// `fn name` (a test), `"name"` (a case of a table-driven test) or
/// `mod name` (a module of tests).
fn defines(source: &str, name: &str) -> bool {
    let quoted = format!("\"{name}\"");
    source.contains(&quoted)
        || source.contains(&format!("mod {name};"))
        || source.contains(&format!("mod {name} {{"))
        || source.match_indices(&format!("fn {name}")).any(|(at, m)| {
            let after = source[at + m.len()..].chars().next();
            !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
}

fn problem(root: &Path, c: &Cited) -> Option<String> {
    let files = match &c.path {
        Some(p) => files_of(root, p),
        None => ["controller", "agent", "tests"]
            .iter()
            .flat_map(|d| rust_files(&root.join(d)))
            .collect(),
    };
    let where_ = c.path.as_deref().unwrap_or("the workspace");
    if files.is_empty() {
        return Some(format!("SECURITY.md:{}: {where_} does not exist", c.row));
    }
    let found = files.iter().any(|f| {
        f.file_stem().is_some_and(|s| *s == *c.name)
            || defines(&std::fs::read_to_string(f).unwrap_or_default(), &c.name)
    });
    (!found).then(|| format!("SECURITY.md:{}: no test `{}` in {where_}", c.row, c.name))
}

#[test]
fn every_test_security_md_names_exists_where_it_says() {
    let root = workspace();
    let doc = std::fs::read_to_string(root.join("SECURITY.md")).expect("SECURITY.md");
    let cited = cited(&doc);
    assert!(cited.len() > 40, "SECURITY.md cites {} tests", cited.len());
    let problems: Vec<String> = cited.iter().filter_map(|c| problem(&root, c)).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_name_belongs_to_the_path_after_it() {
    let cell = " `a_one`, `b_two` (x/y.rs), `c_three` (z.rs: why), (cases `e_five`, w.rs) `plain` `d_four` ";
    let got: Vec<(String, Option<String>)> = cited_in(cell, 1)
        .into_iter()
        .map(|c| (c.name, c.path))
        .collect();
    let want = [
        ("a_one", Some("x/y.rs")),
        ("b_two", Some("x/y.rs")),
        ("c_three", Some("z.rs")),
        ("e_five", Some("w.rs")),
        ("d_four", None),
    ];
    let want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(n, p)| (n.to_string(), p.map(String::from)))
        .collect();
    assert_eq!(got, want);
    assert!(defines("fn a_one() {}", "a_one"));
    assert!(!defines("fn a_one_more() {}", "a_one"));
    assert!(defines("(\"a_one\", x)", "a_one"));
}
