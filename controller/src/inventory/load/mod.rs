//! The loader: inventory bytes → toml's spanned tree → validated
//! [`Inventory`], reporting every problem at once.
//!
//! The edge: [`super::reader`] turns TOML into typed, located values,
//! [`super::rules`] says whether a value is right; this module decides which
//! rule applies to which key and reports through one helper,
//! [`Loader::check`]. It reads the inventory itself (bounded, regular files
//! only) and, to refuse what could never work, the metadata and first bytes
//! of the files the inventory names; nothing else.

mod cluster;
mod jump;
mod k3s;
mod nodes;
mod registries;
mod secret;
mod ssh;
mod workload;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::diagnostic::{self, Diagnostic, Diagnostics, Sink};
use super::model::{AgentSettings, Inventory, MAX_INVENTORY_BYTES, Workload};
use super::reader::{self, Located, TableReader};
use super::rules::Violation;

const ROOT_KEYS: &[&str] = &["cluster", "ssh", "nodes", "workload", "agent", "registries"];

/// The keys each table may hold, by the table's key path (`nodes[]` for
/// every node): what the JSON Schema ([`super::schema`]) must agree with.
#[cfg(test)]
pub(super) fn key_lists() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("", ROOT_KEYS.to_vec()),
        ("cluster", cluster::CLUSTER_KEYS.to_vec()),
        ("ssh", ssh::SSH_KEYS.to_vec()),
        ("nodes[]", nodes::NODE_KEYS.to_vec()),
        ("workload", workload::WORKLOAD_KEYS.to_vec()),
        ("agent", workload::AGENT_KEYS.to_vec()),
        ("agent.binaries", workload::agent_binary_keys()),
        ("registries", registries::REGISTRIES_KEYS.to_vec()),
        ("registries.mirrors.*", registries::MIRROR_KEYS.to_vec()),
        ("registries.configs.*", registries::CONFIG_KEYS.to_vec()),
        ("registries.configs.*.auth", registries::AUTH_KEYS.to_vec()),
        ("registries.configs.*.tls", registries::TLS_KEYS.to_vec()),
    ]
}

impl Inventory {
    /// Reads and validates an inventory file.
    pub fn load(path: &Path) -> Result<Inventory, Diagnostics> {
        let display = path.display().to_string();
        let bytes = read_bounded(path)
            .map_err(|why| whole_file(&display, why.message, why.hint.as_deref(), (1, 1)))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut inv = Self::parse_bytes(&bytes, &display, &base)?;
        inv.source = path.to_path_buf();
        Ok(inv)
    }

    /// Validates inventory bytes; relative paths are resolved against `base_dir`.
    pub fn parse_bytes(
        bytes: &[u8],
        file: &str,
        base_dir: &Path,
    ) -> Result<Inventory, Diagnostics> {
        if bytes.len() > MAX_INVENTORY_BYTES {
            let why = too_big(bytes.len() as u64);
            return Err(whole_file(file, why.message, why.hint.as_deref(), (1, 1)));
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
                return Err(whole_file(
                    file,
                    format!("byte {} is not valid UTF-8", e.valid_up_to()),
                    Some("an inventory is a UTF-8 TOML text file"),
                    diagnostic::line_col(valid, valid.len()),
                ));
            }
        };
        Self::parse(text, file, base_dir)
    }

    /// Validates inventory text; relative paths are resolved against `base_dir`.
    pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Inventory, Diagnostics> {
        let mut sink = Sink::new(file, text);
        let (doc, syntax_errors) = DeTable::parse_recoverable(text);
        if !syntax_errors.is_empty() {
            for e in syntax_errors {
                let span = e.span().unwrap_or(0..0);
                let message = syntax_message(e.message(), text, &span);
                sink.report(span, "", message, None);
            }
            return Err(Diagnostics(sink.finish()));
        }
        let root = TableReader::new(String::new(), doc.span(), doc.get_ref());
        let inv = Loader {
            sink: &mut sink,
            base_dir,
            ssh_configs: BTreeMap::new(),
        }
        .load(&root);
        if sink.is_empty() {
            // `load` returns Some whenever it reported nothing.
            if let Some(mut inv) = inv {
                inv.source = PathBuf::from(file);
                return Ok(inv);
            }
        }
        let found = sink.finish();
        if found.is_empty() {
            // Unreachable by construction; never turn it into a panic.
            return Err(whole_file(
                file,
                "the inventory is invalid".into(),
                None,
                (1, 1),
            ));
        }
        Err(Diagnostics(found))
    }
}

/// toml's message for a syntax error; a duplicate key is named, since toml
/// says only "duplicate key" and the key is what the reader looks for.
fn syntax_message(message: &str, text: &str, span: &std::ops::Range<usize>) -> String {
    let message = message.trim();
    let key = text.get(span.clone()).map(str::trim).unwrap_or_default();
    if message == "duplicate key" && !key.is_empty() {
        return format!("TOML syntax: duplicate key `{key}`");
    }
    format!("TOML syntax: {message}")
}

/// A problem of the whole file, as the only diagnostic.
fn whole_file(
    file: &str,
    message: String,
    hint: Option<&str>,
    (line, col): (usize, usize),
) -> Diagnostics {
    Diagnostics(vec![Diagnostic {
        file: file.to_string(),
        line,
        col,
        key_path: String::new(),
        message,
        hint: hint.map(str::to_string),
    }])
}

fn too_big(size: u64) -> Violation {
    Violation {
        message: format!("the file is {size} bytes, more than the 1 MiB an inventory may be"),
        hint: Some("is this the right file?".into()),
    }
}

/// Reads a regular file of at most [`MAX_INVENTORY_BYTES`], whatever `stat`
/// says: a directory, FIFO, device or socket is refused before it is opened
/// (a FIFO would block the open, a device could be endless), and at most
/// one byte more than the limit is ever read.
fn read_bounded(path: &Path) -> Result<Vec<u8>, Violation> {
    let cannot = |e: std::io::Error| Violation {
        message: format!("cannot read the inventory: {e}"),
        hint: Some("pass the file with -i/--inventory".into()),
    };
    let before = std::fs::metadata(path).map_err(cannot)?;
    refuse_non_file(path, &before)?;
    let file = File::open(path).map_err(cannot)?;
    let opened = file.metadata().map_err(cannot)?;
    // Swapped between the stat and the open: judge what was opened.
    refuse_non_file(path, &opened)?;
    let mut bytes = Vec::new();
    file.take(MAX_INVENTORY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > MAX_INVENTORY_BYTES {
        return Err(too_big(opened.len().max(bytes.len() as u64)));
    }
    Ok(bytes)
}

fn refuse_non_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), Violation> {
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(Violation {
        message: format!(
            "cannot read the inventory: {} is {kind}, not a file",
            path.display()
        ),
        hint: Some("pass the file with -i/--inventory".into()),
    })
}

/// Walks the document once, reporting into `sink`.
struct Loader<'s, 'a> {
    sink: &'s mut Sink<'a>,
    base_dir: &'s Path,
    /// Each ssh_config file parsed once (`None`: unusable, already reported).
    ssh_configs: BTreeMap<PathBuf, Option<std::rc::Rc<ssh2_config::SshConfig>>>,
}

impl Loader<'_, '_> {
    /// Reports a problem with the value at `at`.
    fn report<T>(&mut self, at: &Located<T>, message: impl Into<String>, hint: Option<&str>) {
        self.sink
            .report(at.span.clone(), &at.path, message, hint.map(str::to_string));
    }

    /// Applies one rule to the value at `at`: when it fails, reports why at
    /// `at`, with the rule's own hint, else `hint`. Every rule goes through
    /// here, so every problem is located and hinted the same way.
    fn check<T, U, E: Into<Violation>>(
        &mut self,
        at: &Located<T>,
        rule: Result<U, E>,
        hint: Option<&str>,
    ) -> Option<U> {
        match rule {
            Ok(value) => Some(value),
            Err(why) => {
                let why = why.into();
                let hint = why.hint.or_else(|| hint.map(str::to_string));
                self.sink
                    .report(at.span.clone(), &at.path, why.message, hint);
                None
            }
        }
    }

    /// Remembers where `key` was first used; reports a second use there,
    /// pointing back to the first.
    fn first_use(
        &mut self,
        seen: &mut BTreeMap<String, Located<String>>,
        key: String,
        at: &Located<String>,
        what: &str,
    ) {
        if let Some(first) = seen.get(&key) {
            let (l, c) = self.sink.line_col(first.span.start);
            let hint = format!("first used at line {l}, column {c} ({})", first.path);
            self.report(
                at,
                format!("duplicate {what} \"{}\"", at.value),
                Some(&hint),
            );
        } else {
            seen.insert(key, at.clone());
        }
    }

    fn required_str(
        &mut self,
        t: &TableReader<'_, '_>,
        key: &str,
        hint: &str,
    ) -> Option<Located<String>> {
        if t.get(key).is_none() {
            self.sink.report(
                t.span.clone(),
                &reader::join(&t.path, key),
                format!("missing required key \"{key}\""),
                Some(hint.to_string()),
            );
            return None;
        }
        t.str(self.sink, key)
    }

    fn load(&mut self, root: &TableReader<'_, '_>) -> Option<Inventory> {
        root.deny_unknown(self.sink, ROOT_KEYS);
        let cluster = match root.table(self.sink, "cluster") {
            Some(t) => self.cluster(&t),
            None => {
                if root.get("cluster").is_none() {
                    self.sink.report(
                        0..0,
                        "cluster",
                        "missing table [cluster]",
                        Some("add [cluster] with at least name and k3s_version".into()),
                    );
                }
                None
            }
        };
        let ssh_defaults = root
            .table(self.sink, "ssh")
            .map(|t| self.ssh(&t))
            .unwrap_or_default();
        let nodes = self.nodes(root, &ssh_defaults, cluster.as_ref());
        let workload = root
            .table(self.sink, "workload")
            .map_or_else(Workload::default, |t| self.workload(&t));
        let agent = root
            .table(self.sink, "agent")
            .map_or_else(AgentSettings::default, |t| self.agent(&t, cluster.as_ref()));
        let registries = root
            .table(self.sink, "registries")
            .map(|t| self.registries(&t));
        Some(Inventory {
            source: PathBuf::new(),
            cluster: cluster?,
            nodes,
            workload,
            agent,
            registries,
        })
    }
}
