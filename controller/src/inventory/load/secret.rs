//! Secret sources (`{ env = "VAR" }`, `{ file = "path" }`) and the private
//! files they and `identity_file` name: these must exist, be private, and
//! hold what they claim (a private key, a non-empty secret).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use toml::de::DeValue;

use super::Loader;
use crate::inventory::model::SecretSource;
use crate::inventory::paths::resolve_path;
use crate::inventory::reader::{self, Located, TableReader};
use crate::inventory::rules;

/// What a private file is meant to hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Holds {
    PrivateKey,
    Secret,
}

impl Loader<'_, '_> {
    /// A secret source: `{ env = "VAR" }` or `{ file = "path" }`; a plain
    /// string is refused because it would be the secret in clear text.
    pub(super) fn secret(
        &mut self,
        t: &TableReader<'_, '_>,
        key: &str,
        may_generate: bool,
    ) -> Option<SecretSource> {
        let (path, item) = t.get(key)?;
        let generate_hint = if may_generate {
            ", or leave it out to let pictl generate one"
        } else {
            ""
        };
        let here = Located::new((), item.span(), path.clone());
        match item.value.get_ref() {
            DeValue::String(s) if may_generate && s.as_ref() == "generate" => {
                Some(SecretSource::Generated)
            }
            DeValue::String(_) => {
                let hint = format!(
                    "use {key} = {{ env = \"VAR\" }} or {key} = {{ file = \"path\" }} (mode 0600){generate_hint}"
                );
                let message = format!("{key} is written in clear text in the inventory");
                self.report(&here, message, Some(&hint));
                None
            }
            DeValue::Table(inner) => {
                let r = TableReader::new(path, item.span(), inner);
                self.secret_table(&r, &here, key)
            }
            _ => {
                let expected = "a table { env = \"VAR\" } or { file = \"path\" }";
                reader::type_error(self.sink, &path, &item, expected);
                None
            }
        }
    }

    pub(super) fn secret_table(
        &mut self,
        r: &TableReader<'_, '_>,
        here: &Located<()>,
        key: &str,
    ) -> Option<SecretSource> {
        r.deny_unknown(self.sink, &["env", "file"]);
        match (r.str(self.sink, "env"), r.str(self.sink, "file")) {
            (Some(e), None) => {
                let hint = Some("letters, digits and '_', not starting with a digit");
                self.check(&e, rules::env_name(&e.value), hint);
                Some(SecretSource::Env(e.value))
            }
            (None, Some(f)) => {
                let p = resolve_path(self.base_dir, &f.value);
                self.check_private_file(&p, &f, Holds::Secret);
                Some(SecretSource::File(p))
            }
            _ => {
                let hint = format!("{key} = {{ env = \"VAR\" }} or {key} = {{ file = \"path\" }}");
                let message = "a secret source needs exactly one of env or file";
                self.report(here, message, Some(&hint));
                None
            }
        }
    }

    /// A file holding a secret or a private key must exist, not be readable
    /// by group or others, and hold what it is named for.
    pub(super) fn check_private_file(&mut self, p: &Path, at: &Located<String>, holds: Holds) {
        let rule = match std::fs::metadata(p) {
            Err(e) => Err(rules::Violation {
                message: format!("{} does not exist or cannot be read: {e}", p.display()),
                hint: Some(match holds {
                    Holds::PrivateKey => {
                        "create a key with ssh-keygen -t ed25519, or set agent = true".into()
                    }
                    Holds::Secret => "create it with mode 0600".into(),
                }),
            }),
            Ok(m) if !m.is_file() => Err(format!("{} is not a regular file", p.display()).into()),
            Ok(m) => content_rule(p, holds, m.len()).and_then(|()| private_mode(p, &m)),
        };
        self.check(at, rule, None);
    }
}

fn private_mode(p: &Path, m: &std::fs::Metadata) -> Result<(), rules::Violation> {
    let mode = m.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    Err(rules::Violation {
        message: format!(
            "{} is readable by other users (mode {:04o})",
            p.display(),
            mode & 0o7777
        ),
        hint: Some(format!("chmod 600 {}", p.display())),
    })
}

/// A public key named as `identity_file`, or an empty secret file, can
/// never work; say so before any node is contacted. Reads a few bytes.
fn content_rule(p: &Path, holds: Holds, len: u64) -> Result<(), rules::Violation> {
    match holds {
        Holds::Secret if len == 0 => Err(rules::Violation {
            message: format!("{} is empty", p.display()),
            hint: Some("write the secret into it".into()),
        }),
        Holds::Secret => Ok(()),
        Holds::PrivateKey => {
            let mut head = Vec::new();
            let read = std::fs::File::open(p).and_then(|f| f.take(64).read_to_end(&mut head));
            let public = p.extension().is_some_and(|e| e == "pub")
                || (read.is_ok() && rules::is_public_key(&head));
            if public {
                Err(rules::Violation {
                    message: format!("{} is a public key", p.display()),
                    hint: Some("name the private key (the same path without .pub)".into()),
                })
            } else {
                Ok(())
            }
        }
    }
}
