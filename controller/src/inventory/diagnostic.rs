//! Problems found in an inventory file, located as data (`file:line:col`,
//! key path) so that every one of them can be reported at once, in the
//! `FILE:LINE:COL: key.path: message (hint)` form editors understand.
//!
//! The edge: this module knows positions and how to print; which problems
//! exist is the loader's business. Printing escapes control characters, so
//! no value from the file can forge a line of output; locating a problem
//! costs a binary search, so reporting N problems takes time linear in N.

use std::fmt;

use crate::Escaped;
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
        write!(f, "{}:{}:{}: ", Escaped(&self.file), self.line, self.col)?;
        if !self.key_path.is_empty() {
            write!(f, "{}: ", Escaped(&self.key_path))?;
        }
        write!(f, "{}", Escaped(&self.message))?;
        if let Some(hint) = &self.hint {
            write!(f, " ({})", Escaped(hint))?;
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

/// Byte offsets → 1-based line and character column, in O(log n) each.
#[derive(Debug)]
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// Characters in `text[..i * CHUNK]`, for every chunk boundary.
    chars_before_chunk: Vec<usize>,
}

const CHUNK: usize = 64;

/// Counts the characters that start in `bytes` (UTF-8 continuation bytes
/// do not start one), which is exact for a slice between char boundaries.
fn char_starts(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count()
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut chars_before_chunk = vec![0];
        let mut total = 0;
        for chunk in text.as_bytes().chunks(CHUNK) {
            total += char_starts(chunk);
            chars_before_chunk.push(total);
        }
        Self {
            text,
            line_starts,
            chars_before_chunk,
        }
    }

    /// Characters before `offset` (a char boundary).
    fn chars_before(&self, offset: usize) -> usize {
        let chunk = offset / CHUNK;
        self.chars_before_chunk[chunk] + char_starts(&self.text.as_bytes()[chunk * CHUNK..offset])
    }

    /// 1-based line and character column of a byte offset (clamped to the text).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let line_start = self.line_starts[line - 1];
        let col = self.chars_before(offset) - self.chars_before(line_start) + 1;
        (line, col)
    }
}

/// Collects diagnostics for one source text, turning byte spans into
/// line and column once, at the point the problem is found.
#[derive(Debug)]
pub struct Sink<'a> {
    file: &'a str,
    lines: LineIndex<'a>,
    found: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            file,
            lines: LineIndex::new(text),
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
        let (line, col) = self.lines.line_col(span.start);
        self.found.push(Diagnostic {
            file: self.file.to_string(),
            line,
            col,
            key_path: key_path.to_string(),
            message: message.into(),
            hint,
        });
    }

    /// Where a byte offset of the text is.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        self.lines.line_col(offset)
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

/// 1-based line and character column of a byte offset (clamped to the
/// text); for one lookup; a [`Sink`] indexes its text once for many.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_col(offset)
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
    fn line_col_is_exact_across_chunk_boundaries() {
        let text: String = (0..300)
            .map(|i| if i % 7 == 0 { "é\n" } else { "ab€" })
            .collect();
        let naive = |offset: usize| {
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            (line, before[start..].chars().count() + 1)
        };
        let index = LineIndex::new(&text);
        for offset in (0..=text.len()).filter(|&o| text.is_char_boundary(o)) {
            assert_eq!(index.line_col(offset), naive(offset), "offset {offset}");
        }
    }

    #[test]
    fn display_escapes_what_could_forge_an_output_line() {
        let d = Diagnostic {
            file: "inv\n.toml".into(),
            line: 1,
            col: 1,
            key_path: "nodes[0].name".into(),
            message: "\"a\nfake.toml:1:1: ok\r\u{1b}[2K\u{202e}\" is bad".into(),
            hint: Some("tab\there".into()),
        };
        let shown = d.to_string();
        assert_eq!(
            shown,
            "inv\\n.toml:1:1: nodes[0].name: \"a\\nfake.toml:1:1: ok\\r\\u{1b}[2K\\u{202e}\" is bad (tab\\there)"
        );
        assert!(!shown.chars().any(char::is_control));
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
