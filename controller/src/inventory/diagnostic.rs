//! Problems found in an inventory file, located as data (`file:line:col`,
//! key path) so that every one of them can be reported at once, in the
//! `FILE:LINE:COL: key.path: message (hint)` form editors understand.

use std::fmt;
use std::ops::Range;

/// One problem in an inventory, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    /// Dotted key path (`nodes[1].address`); empty for problems of the whole file.
    pub key_path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Every problem found in one inventory, sorted by position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one source text, turning byte spans into
/// line and column once, at the point the problem is found.
#[derive(Debug)]
pub struct Sink<'a> {
    file: &'a str,
    text: &'a str,
    found: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            file,
            text,
            found: Vec::new(),
        }
    }

    pub fn report(
        &mut self,
        span: Range<usize>,
        key_path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let (line, col) = line_col(self.text, span.start);
        self.found.push(Diagnostic {
            file: self.file.to_string(),
            line,
            col,
            key_path: key_path.to_string(),
            message: message.into(),
            hint,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// All diagnostics, ordered by where they are in the file.
    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.found.sort_by_key(|a| (a.line, a.col));
        self.found.dedup();
        self.found
    }
}

/// 1-based line and character column of a byte offset (clamped to the text).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, 9), (2, 3));
        assert_eq!(line_col(text, 10_000), (3, 1));
    }

    #[test]
    fn display_has_location_path_message_and_hint() {
        let d = Diagnostic {
            file: "inv.toml".into(),
            line: 3,
            col: 7,
            key_path: "nodes[0].role".into(),
            message: "invalid role \"master\"".into(),
            hint: Some("expected \"server\" or \"agent\"".into()),
        };
        assert_eq!(
            d.to_string(),
            "inv.toml:3:7: nodes[0].role: invalid role \"master\" (expected \"server\" or \"agent\")"
        );
    }
}
