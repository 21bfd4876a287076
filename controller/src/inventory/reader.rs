//! Typed, located reads from toml's spanned document tree.
//!
//! serde's derive stops at the first error; we walk the spanned tree by hand
//! instead so that every wrong key, type and value is reported in one run,
//! each at its own position.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::Sink;

/// A TOML value with its span and its dotted key path.
#[derive(Clone)]
pub struct Item<'t, 'i> {
    pub value: &'t Spanned<DeValue<'i>>,
}

impl<'t, 'i> Item<'t, 'i> {
    pub fn span(&self) -> Range<usize> {
        self.value.span()
    }

    pub fn kind(&self) -> &'static str {
        kind_name(self.value.get_ref())
    }
}

pub fn kind_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Joins a parent key path and a key.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A table being read: reports unknown keys, typed getters report wrong types.
pub struct TableReader<'t, 'i> {
    pub path: String,
    pub span: Range<usize>,
    pub table: &'t DeTable<'i>,
}

impl<'t, 'i> TableReader<'t, 'i> {
    pub fn new(path: String, span: Range<usize>, table: &'t DeTable<'i>) -> Self {
        Self { path, span, table }
    }

    /// Reports every key not in `known`, suggesting the closest known key.
    pub fn deny_unknown(&self, sink: &mut Sink<'_>, known: &[&str]) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref();
            if known.contains(&name) {
                continue;
            }
            let hint = did_you_mean(name, known)
                .map(|s| format!("did you mean \"{s}\"?"))
                .or_else(|| Some(format!("known keys: {}", known.join(", "))));
            sink.report(k.span(), &join(&self.path, name), "unknown key", hint);
        }
    }

    pub fn get(&self, key: &str) -> Option<(String, Item<'t, 'i>)> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| (join(&self.path, key), Item { value: v }))
    }

    pub fn str(&self, sink: &mut Sink<'_>, key: &str) -> Option<Located<String>> {
        let (path, item) = self.get(key)?;
        match item.value.get_ref() {
            DeValue::String(s) => Some(Located::new(s.to_string(), item.span(), path)),
            _ => {
                type_error(sink, &path, &item, "a string");
                None
            }
        }
    }

    pub fn bool(&self, sink: &mut Sink<'_>, key: &str) -> Option<Located<bool>> {
        let (path, item) = self.get(key)?;
        match item.value.get_ref() {
            DeValue::Boolean(b) => Some(Located::new(*b, item.span(), path)),
            _ => {
                type_error(sink, &path, &item, "a boolean (true or false)");
                None
            }
        }
    }

    /// An integer within `min..=max`; out-of-range values are reported here.
    pub fn int(&self, sink: &mut Sink<'_>, key: &str, min: i64, max: i64) -> Option<Located<i64>> {
        let (path, item) = self.get(key)?;
        let DeValue::Integer(i) = item.value.get_ref() else {
            type_error(sink, &path, &item, "an integer");
            return None;
        };
        let digits = i.as_str().replace('_', "");
        match i64::from_str_radix(digits.trim_start_matches(['0', 'x', 'o', 'b']), i.radix())
            .or_else(|_| digits.parse::<i64>())
        {
            Ok(n) if (min..=max).contains(&n) => Some(Located::new(n, item.span(), path)),
            _ => {
                sink.report(
                    item.span(),
                    &path,
                    format!("{} is out of range", i.as_str()),
                    Some(format!("expected an integer from {min} to {max}")),
                );
                None
            }
        }
    }

    pub fn table(&self, sink: &mut Sink<'_>, key: &str) -> Option<TableReader<'t, 'i>> {
        let (path, item) = self.get(key)?;
        match item.value.get_ref() {
            DeValue::Table(t) => Some(TableReader::new(path, item.span(), t)),
            _ => {
                type_error(sink, &path, &item, "a table");
                None
            }
        }
    }

    /// An array of strings; wrong elements are reported one by one and left out.
    pub fn str_list(&self, sink: &mut Sink<'_>, key: &str) -> Option<Vec<Located<String>>> {
        let (path, item) = self.get(key)?;
        let DeValue::Array(arr) = item.value.get_ref() else {
            type_error(sink, &path, &item, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for (i, v) in arr.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match v.get_ref() {
                DeValue::String(s) => out.push(Located::new(s.to_string(), v.span(), p)),
                other => sink.report(
                    v.span(),
                    &p,
                    format!("expected a string, found {}", kind_name(other)),
                    None,
                ),
            }
        }
        Some(out)
    }
}

pub fn type_error(sink: &mut Sink<'_>, path: &str, item: &Item<'_, '_>, expected: &str) {
    sink.report(
        item.span(),
        path,
        format!("expected {expected}, found {}", item.kind()),
        None,
    );
}

/// A value read from the file, with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub span: Range<usize>,
    pub path: String,
}

impl<T> Located<T> {
    pub fn new(value: T, span: Range<usize>, path: String) -> Self {
        Self { value, span, path }
    }
}

/// The closest known key, when it is close enough to be a typo.
pub fn did_you_mean<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_typos_and_not_strangers() {
        let known = ["address", "role", "name", "labels"];
        assert_eq!(did_you_mean("adress", &known), Some("address"));
        assert_eq!(did_you_mean("rol", &known), Some("role"));
        assert_eq!(did_you_mean("completely_else", &known), None);
    }
}
