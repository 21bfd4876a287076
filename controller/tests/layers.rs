//! Guards of ARCHITECTURE.md's rules on where code may reach:
//! - `kube::Api` is built only in `cluster/` and `workload/` (the API's rooms);
//! - the lower floors (`report/`, `step.rs`, `steps/`, `adopt/`, `facts/`,
//!   `data_dir.rs`, `cluster/`, `transport/`, `inventory/`) import nothing
//!   from the floors above them (`runner/`, `cli/`, `init/`, `status`,
//!   `recap`, `progress/`), so the import graph has no circle through them;
//! - a `Writer` is made only by the runner's entry points and the CLI's
//!   explicit writes.
//!
//! Product code only: test files and `#[cfg(test)] mod tests { … }` are cut.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn is_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    rel.contains("/tests/")
        || rel.starts_with("tests/")
        || name == "tests.rs"
        || name.ends_with("_tests.rs")
        || name.starts_with("tests_")
        || name.starts_with("fake")
        || name == "test_sh.rs"
}

/// Every product file under `controller/src`, as (path from src, text
/// without its `#[cfg(test)] mod tests { … }`).
fn product_files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![src()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(src()).expect("under src");
            let rel = rel.to_string_lossy().replace('\\', "/");
            if !rel.ends_with(".rs") || is_test_file(&rel) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let product = match text.find("#[cfg(test)]\nmod tests {") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.push((rel, product));
        }
    }
    out.sort();
    out
}

/// Lines of product code (comments left out) that contain `needle`.
fn hits<'a>(files: &'a [(String, String)], needle: &str) -> Vec<(&'a str, String)> {
    let mut out = Vec::new();
    for (rel, text) in files {
        for line in text.lines() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if code.contains(needle) {
                out.push((rel.as_str(), code.to_string()));
            }
        }
    }
    out
}

#[test]
fn kube_api_is_built_only_in_the_api_rooms() {
    let files = product_files();
    let mut outside = Vec::new();
    for needle in [
        "Api::all(",
        "Api::namespaced(",
        "Api::default_namespaced(",
        "kube::Api<",
    ] {
        for (rel, line) in hits(&files, needle) {
            if !rel.starts_with("cluster/") && !rel.starts_with("workload/") {
                outside.push(format!("{rel}: {line}"));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "kube::Api built outside cluster/ and workload/:\n{}",
        outside.join("\n")
    );
}

#[test]
fn lower_floors_import_nothing_from_above() {
    let lower = [
        "report/",
        "step.rs",
        "steps/",
        "adopt/",
        "facts/",
        "data_dir.rs",
        "cluster/",
        "transport/",
        "inventory/",
        "secret.rs",
        "write.rs",
        "state.rs",
    ];
    let upper = [
        "crate::runner",
        "crate::cli",
        "crate::init",
        "crate::status",
        "crate::recap",
        "crate::progress",
    ];
    let files = product_files();
    let mut up = Vec::new();
    for needle in upper {
        for (rel, line) in hits(&files, needle) {
            if lower.iter().any(|l| rel.starts_with(l)) {
                up.push(format!("{rel}: {line}"));
            }
        }
    }
    // The vocabulary imports nothing of pictl's but the crate root's helpers.
    for (rel, line) in hits(&files, "crate::") {
        let root_helper = [
            "crate::escape_controls",
            "crate::error_chain",
            "crate::report",
        ]
        .iter()
        .any(|h| line.contains(h));
        if rel.starts_with("report/") && !root_helper {
            up.push(format!("{rel}: {line}"));
        }
    }
    assert!(
        up.is_empty(),
        "imports from a higher floor:\n{}",
        up.join("\n")
    );
}

#[test]
fn a_writer_is_made_only_where_a_run_or_command_writes() {
    let files = product_files();
    let makers: Vec<(&str, String)> = hits(&files, "Writer::for_apply()")
        .into_iter()
        .filter(|(rel, _)| !matches!(*rel, "runner/mod.rs" | "cli/mod.rs" | "cli/commands.rs"))
        .collect();
    assert!(
        makers.is_empty(),
        "a Writer made outside runner::apply/reset and the CLI's writes: {makers:?}"
    );
}

/// The guard reads what it should: it finds the rooms' own Api calls.
#[test]
fn the_guard_sees_the_api_rooms() {
    let files = product_files();
    let rooms: Vec<&str> = hits(&files, "Api::all(")
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert!(rooms.iter().any(|r| r.starts_with("cluster/")), "{rooms:?}");
    assert!(files.iter().any(|(r, _)| r == "runner/manager.rs"));
    assert!(!files.iter().any(|(r, _)| r.contains("tests")));
}
