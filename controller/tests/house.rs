//! The house rules of ARCHITECTURE.md, checked, so the document and the code
//! cannot drift apart:
//! - no product function over [`MAX_FN_LINES`] lines in `controller/src`
//!   and `agent/src`, and no `.rs` file over [`MAX_FILE_LINES`] lines (the
//!   whole file, tests included) under `controller/`, `agent/` and `tests/`
//!   (`target/` aside), but those its "Size exceptions" table names, each
//!   with its reason; a row that is no longer needed fails too, so the
//!   table only shrinks by being edited;
//! - at most [`MAX_OPTIONAL_WRITERS`] `Option<&Writer>` in `controller/src`.
//!
//! Product code is everything but test files (`tests.rs`, `*_tests.rs`,
//! `tests_*.rs`, `tests/` directories, modules declared `#[cfg(test)] mod
//! name;`) and `#[cfg(test)]` items. The scanner counts braces over the
//! source with comments, strings and char literals blanked out: rough, but
//! it needs no parser, and its own test below shows what it gets right.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest product function, in lines from `fn` to its closing brace.
const MAX_FN_LINES: usize = 80;
/// The longest `.rs` file, in lines, test code included.
const MAX_FILE_LINES: usize = 600;
/// The ceiling of `Option<&Writer>` in controller/src: the manager's two
/// (a run is a plan or an apply there) and the converger's field (checking
/// or converging a node's steps). Every phase has a read-only `plan` and an
/// `apply(plan, &Writer)`; never raise it.
const MAX_OPTIONAL_WRITERS: usize = 3;

/// The heading of the exceptions table in ARCHITECTURE.md.
const EXCEPTIONS_HEADING: &str = "## Size exceptions";

/// Where product functions are measured.
const PRODUCT_DIRS: &[&str] = &["controller/src", "agent/src"];
/// Where every `.rs` file is measured, tests included.
const FILE_DIRS: &[&str] = &["controller", "agent", "tests"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the controller crate sits in the workspace")
        .to_path_buf()
}

fn architecture_exceptions(root: &Path) -> BTreeMap<String, String> {
    exceptions(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md"))
}

/// One thing over a size limit: its key in the exceptions table, and what
/// is wrong with it.
struct TooLong {
    key: String,
    problem: String,
}

/// Every product function over [`MAX_FN_LINES`].
fn long_functions(root: &Path) -> Vec<TooLong> {
    let mut out = Vec::new();
    for file in product_files(root, PRODUCT_DIRS) {
        let rel = relative(root, &file);
        for f in Code::read(&file)
            .functions()
            .into_iter()
            .filter(|f| f.lines > MAX_FN_LINES)
        {
            out.push(TooLong {
                key: format!("{rel} fn {}", f.name),
                problem: format!(
                    "{rel}:{}: fn {} is {} lines (limit {MAX_FN_LINES})",
                    f.line, f.name, f.lines
                ),
            });
        }
    }
    out
}

/// Every `.rs` file over [`MAX_FILE_LINES`], test code included.
fn long_files(root: &Path) -> Vec<TooLong> {
    FILE_DIRS
        .iter()
        .flat_map(|d| rust_files(&root.join(d)))
        .filter_map(|file| {
            let rel = relative(root, &file);
            let lines = std::fs::read_to_string(&file)
                .expect("read source")
                .lines()
                .count();
            (lines > MAX_FILE_LINES).then(|| TooLong {
                problem: format!("{rel}: {lines} lines (limit {MAX_FILE_LINES})"),
                key: rel,
            })
        })
        .collect()
}

/// The problems of `found` that the exceptions table does not name.
fn unexcused(found: Vec<TooLong>, exceptions: &BTreeMap<String, String>) -> Vec<String> {
    found
        .into_iter()
        .filter(|t| !exceptions.contains_key(&t.key))
        .map(|t| t.problem)
        .collect()
}

fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} house rule(s) broken (split the code, or name it with a reason in the \
         \"{EXCEPTIONS_HEADING}\" table of ARCHITECTURE.md):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn product_functions_are_short_or_named_in_architecture_md() {
    let root = workspace();
    let exceptions = architecture_exceptions(&root);
    assert_no_problems(&unexcused(long_functions(&root), &exceptions));
}

#[test]
fn every_file_tests_included_is_short_or_named_in_architecture_md() {
    let root = workspace();
    let exceptions = architecture_exceptions(&root);
    assert_no_problems(&unexcused(long_files(&root), &exceptions));
}

#[test]
fn every_size_exception_is_still_needed() {
    let root = workspace();
    let needed: BTreeSet<String> = long_functions(&root)
        .into_iter()
        .chain(long_files(&root))
        .map(|t| t.key)
        .collect();
    let stale: Vec<String> = architecture_exceptions(&root)
        .into_keys()
        .filter(|k| !needed.contains(k))
        .map(|k| {
            format!(
                "{k}: within the limits now (or gone): remove its row from ARCHITECTURE.md's size exceptions"
            )
        })
        .collect();
    assert_no_problems(&stale);
}

#[test]
fn option_writer_stays_under_its_ceiling_in_the_controller() {
    let root = workspace();
    let mut found = Vec::new();
    for file in rust_files(&root.join("controller/src")) {
        let code = Code::read(&file);
        for line in code.optional_writers() {
            found.push(format!("{}:{line}", relative(&root, &file)));
        }
    }
    assert!(
        found.len() <= MAX_OPTIONAL_WRITERS,
        "{} Option<&Writer> in controller/src, over the ceiling of {MAX_OPTIONAL_WRITERS} \
         (a function that writes takes &Writer; one that plans takes none):\n{}",
        found.len(),
        found.join("\n")
    );
}

/// The rows of ARCHITECTURE.md's exceptions table, `path` or `path fn name`
/// → reason.
fn exceptions(doc: &str) -> BTreeMap<String, String> {
    let section = doc
        .split_once(EXCEPTIONS_HEADING)
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no \"{EXCEPTIONS_HEADING}\" section"))
        .1;
    let mut rows = BTreeMap::new();
    for line in section.lines().skip(1) {
        if line.starts_with("## ") {
            break;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let [item, reason] = cells[..] else { continue };
        let spans: Vec<&str> = item.split('`').skip(1).step_by(2).collect();
        let key = match spans[..] {
            [path] => path.to_string(),
            [path, function] => format!("{path} {function}"),
            _ => continue,
        };
        assert!(!reason.is_empty(), "ARCHITECTURE.md: {key} has no reason");
        rows.insert(key, reason.to_string());
    }
    rows
}

fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The `.rs` files under `dirs` that are product code: not named as tests,
/// not under a `tests/` directory, not a module declared `#[cfg(test)]`.
fn product_files(root: &Path, dirs: &[&str]) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| rust_files(&root.join(d)))
        .collect();
    let test_modules: Vec<PathBuf> = files
        .iter()
        .flat_map(|f| {
            let dir = module_dir(f);
            Code::read(f)
                .test_modules
                .into_iter()
                .map(move |m| dir.join(m))
        })
        .collect();
    files
        .into_iter()
        .filter(|f| {
            let name = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let test_named =
                name == "tests" || name.ends_with("_tests") || name.starts_with("tests_");
            let under_tests = f.components().any(|c| c.as_os_str() == "tests");
            let test_module = test_modules
                .iter()
                .any(|m| f.with_extension("") == *m || f.starts_with(m));
            !(test_named || under_tests || test_module)
        })
        .collect()
}

/// Where the modules a file declares live: beside `mod.rs`, `lib.rs` and
/// `main.rs`, else in the directory named after the file.
fn module_dir(file: &Path) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new(""));
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib" | "main") | None => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
    }
}

/// One source file with comments and literals blanked (newlines kept, so
/// line numbers hold) and its `#[cfg(test)]` items blanked too.
struct Code {
    text: Vec<char>,
    total_lines: usize,
    test_lines: usize,
    /// Modules declared `#[cfg(test)] mod name;`.
    test_modules: Vec<String>,
}

#[derive(Debug, PartialEq)]
struct Function {
    name: String,
    line: usize,
    lines: usize,
}

impl Code {
    fn read(path: &Path) -> Code {
        Code::new(&std::fs::read_to_string(path).expect("read source"))
    }

    fn new(source: &str) -> Code {
        let mut code = Code {
            text: blank_literals(source),
            total_lines: source.lines().count(),
            test_lines: 0,
            test_modules: Vec::new(),
        };
        code.blank_test_items();
        code
    }

    fn product_lines(&self) -> usize {
        self.total_lines - self.test_lines
    }

    fn line_of(&self, at: usize) -> usize {
        1 + self.text[..at].iter().filter(|&&c| c == '\n').count()
    }

    fn is_ident(c: char) -> bool {
        c.is_alphanumeric() || c == '_'
    }

    /// Where each occurrence of the word `word` starts.
    fn words(&self, word: &str) -> Vec<usize> {
        let w: Vec<char> = word.chars().collect();
        (0..self.text.len().saturating_sub(w.len() - 1))
            .filter(|&i| {
                self.text[i..i + w.len()] == w[..]
                    && (i == 0 || !Code::is_ident(self.text[i - 1]))
                    && !self
                        .text
                        .get(i + w.len())
                        .copied()
                        .is_some_and(Code::is_ident)
            })
            .collect()
    }

    /// From `from`, the first `{` or `;` outside parentheses and brackets.
    fn item_body(&self, from: usize) -> Option<(usize, char)> {
        let mut depth = 0i32;
        for (k, &c) in self.text.iter().enumerate().skip(from) {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                '{' | ';' if depth == 0 => return Some((k, c)),
                _ => {}
            }
        }
        None
    }

    /// The `}` that closes the `{` at `open`.
    fn closing(&self, open: usize) -> usize {
        let mut depth = 0i32;
        for (k, &c) in self.text.iter().enumerate().skip(open) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return k;
                    }
                }
                _ => {}
            }
        }
        self.text.len().saturating_sub(1)
    }

    fn ident_at(&self, mut k: usize) -> String {
        while self.text.get(k).is_some_and(|c| c.is_whitespace()) {
            k += 1;
        }
        self.text[k..]
            .iter()
            .take_while(|&&c| Code::is_ident(c))
            .collect()
    }

    /// Blanks every `#[cfg(test)]` item with a body; records `mod name;`.
    fn blank_test_items(&mut self) {
        let attr: Vec<char> = "#[cfg(test)]".chars().collect();
        let mut i = 0;
        while i + attr.len() <= self.text.len() {
            if self.text[i..i + attr.len()] != attr[..] {
                i += 1;
                continue;
            }
            let Some((end, c)) = self.item_body(i + attr.len()) else {
                break;
            };
            if c == ';' {
                let item: String = self.text[i + attr.len()..end].iter().collect();
                if let Some(name) = item.split_whitespace().skip_while(|w| *w != "mod").nth(1) {
                    self.test_modules.push(name.to_string());
                }
                i = end;
                continue;
            }
            let close = self.closing(end);
            self.test_lines += self.line_of(close) - self.line_of(i) + 1;
            for c in &mut self.text[i..=close] {
                if *c != '\n' {
                    *c = ' ';
                }
            }
            i = close;
        }
    }

    /// Every function with a body, with its length in lines.
    fn functions(&self) -> Vec<Function> {
        self.words("fn")
            .into_iter()
            .filter_map(|at| {
                let name = self.ident_at(at + 2);
                if name.is_empty() {
                    return None; // a fn pointer type: `fn(u8) -> u8`
                }
                let (open, c) = self.item_body(at + 2)?;
                (c == '{').then(|| {
                    let line = self.line_of(at);
                    Function {
                        name,
                        line,
                        lines: self.line_of(self.closing(open)) - line + 1,
                    }
                })
            })
            .collect()
    }

    /// The lines of each `Option<&Writer>` (with a lifetime or a path too).
    fn optional_writers(&self) -> Vec<usize> {
        self.words("Option")
            .into_iter()
            .filter(|&at| {
                let rest: String = self.text[at + "Option".len()..]
                    .iter()
                    .take(80)
                    .take_while(|&&c| c != '>')
                    .collect();
                let Some(r) = rest.trim_start().strip_prefix('<') else {
                    return false;
                };
                let Some(r) = r.trim_start().strip_prefix('&') else {
                    return false;
                };
                let r = r.trim_start();
                let r = r
                    .strip_prefix('\'')
                    .map_or(r, |l| l.trim_start_matches(Code::is_ident));
                let ty: String = r.chars().filter(|c| !c.is_whitespace()).collect();
                ty == "Writer" || ty.ends_with("::Writer")
            })
            .map(|at| self.line_of(at))
            .collect()
    }
}

/// `source` with comments, string, byte-string, raw-string and char
/// literals replaced by spaces (newlines kept); lifetimes stay.
fn blank_literals(source: &str) -> Vec<char> {
    let c: Vec<char> = source.chars().collect();
    let mut out = Vec::with_capacity(c.len());
    let mut i = 0;
    while i < c.len() {
        let len = literal_len(&c, i);
        if len == 0 {
            out.push(c[i]);
            i += 1;
            continue;
        }
        let end = (i + len).min(c.len());
        out.extend(
            c[i..end]
                .iter()
                .map(|&x| if x == '\n' { '\n' } else { ' ' }),
        );
        i = end;
    }
    out
}

/// How many chars from `i` are one comment or literal (0: none starts here).
fn literal_len(c: &[char], i: usize) -> usize {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let after_ident = i > 0 && Code::is_ident(c[i - 1]);
    match at(i) {
        '/' if at(i + 1) == '/' => c[i..]
            .iter()
            .position(|&x| x == '\n')
            .unwrap_or(c.len() - i),
        '/' if at(i + 1) == '*' => block_comment_len(c, i),
        '"' => quoted_len(c, i, '"'),
        'b' if !after_ident && at(i + 1) == '"' => 1 + quoted_len(c, i + 1, '"'),
        'b' if !after_ident && at(i + 1) == '\'' => 1 + quoted_len(c, i + 1, '\''),
        'r' | 'b' if !after_ident => raw_string_len(c, i),
        // A char literal ('x', '{', '\n', '\u{1b}'), not a lifetime ('a).
        '\'' if at(i + 1) == '\\' || (at(i + 1) != '\0' && at(i + 2) == '\'') => {
            quoted_len(c, i, '\'')
        }
        _ => 0,
    }
}

fn block_comment_len(c: &[char], i: usize) -> usize {
    let (mut depth, mut k) = (0, i);
    while k + 1 < c.len() {
        if c[k] == '/' && c[k + 1] == '*' {
            depth += 1;
            k += 2;
        } else if c[k] == '*' && c[k + 1] == '/' {
            depth -= 1;
            k += 2;
            if depth == 0 {
                return k - i;
            }
        } else {
            k += 1;
        }
    }
    c.len() - i
}

/// A literal opened by `q` at `i`, through its closing `q`, escapes skipped.
fn quoted_len(c: &[char], i: usize, q: char) -> usize {
    let mut k = i + 1;
    while k < c.len() && c[k] != q {
        k += if c[k] == '\\' { 2 } else { 1 };
    }
    (k + 1).min(c.len()) - i
}

/// A raw string (`r"…"`, `r#"…"#`, `br#"…"#`) at `i`, else 0.
fn raw_string_len(c: &[char], i: usize) -> usize {
    let mut k = i + usize::from(c[i] == 'b');
    if c.get(k) != Some(&'r') {
        return 0;
    }
    k += 1;
    let hashes = c[k..].iter().take_while(|&&x| x == '#').count();
    k += hashes;
    if c.get(k) != Some(&'"') {
        return 0; // `r#ident` or a plain identifier
    }
    k += 1;
    while k < c.len() {
        if c[k] == '"' && (1..=hashes).all(|h| c.get(k + h) == Some(&'#')) {
            return k + 1 + hashes - i;
        }
        k += 1;
    }
    c.len() - i
}

#[test]
fn the_scanner_sees_through_strings_comments_and_test_items() {
    let src = r###"
fn short() {
    let s = "not a brace: {";
    let r = r#"nor "} this"#;
    let c = '{';
    // nor } this
    /* nor { /* nested */ this */
}

fn generic<'a>(x: &'a [u8; 4]) -> Option<&'a Writer> {
    let _ = |y: u8| y;
    if true {
        x.len();
    }
    None
}

trait T {
    fn declared(&self);
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod inline {
    fn hidden() {}
}
"###;
    let code = Code::new(src);
    let found: Vec<(String, usize, usize)> = code
        .functions()
        .into_iter()
        .map(|f| (f.name, f.line, f.lines))
        .collect();
    assert_eq!(
        found,
        [("short".to_string(), 2, 7), ("generic".to_string(), 10, 7)]
    );
    assert_eq!(code.test_modules, ["tests"]);
    assert_eq!(code.product_lines(), src.lines().count() - 4);
    assert_eq!(code.optional_writers(), [10]);
    let exceptions = exceptions(
        "## Size exceptions\n\n| item | reason |\n|---|---|\n\
         | `a/b.rs` | generated |\n| `a/c.rs` `fn run` | one match |\n\n## Next\n| `x` | y |\n",
    );
    assert_eq!(
        exceptions.keys().collect::<Vec<_>>(),
        ["a/b.rs", "a/c.rs fn run"]
    );
}
