//! pictl: a declarative K3s provisioner for small fleets, Raspberry Pis first.
//!
//! The binary (`main.rs`) only wires things; everything it runs lives here.
//! Pure parts: [`inventory`], [`facts`] parsing, [`render`], [`kubeconfig`],
//! each step's `check`. Side effects: the SSH [`transport`], [`artifacts`]
//! downloads, the [`state`] directory, and the [`runner`] that drives steps.

pub mod adopt;
pub mod agent_binary;
pub mod arch;
pub mod artifacts;
pub mod backup_file;
pub mod channel;
pub mod cli;
pub mod cluster;
pub mod data_dir;
pub mod download;
pub mod facts;
pub mod init;
pub mod interrupt;
pub mod inventory;
pub mod k3s_flags;
pub mod kubeconfig;
pub mod manual;
pub mod progress;
pub mod recap;
pub mod relay;
pub mod render;
pub mod report;
pub mod runner;
pub mod secret;
pub mod state;
pub mod status;
pub mod step;
pub mod steps;
#[cfg(test)]
mod test_sh;
pub mod transport;
pub mod workload;
pub mod write;

/// An error and its causes on one line, each cause once (the agent's, so
/// the workspace has one).
pub use pictl_agent::error_chain;

/// `text` with control characters (newlines, escapes, carriage returns)
/// and the characters that reorder or break lines (U+2028/2029, bidi
/// controls) shown as `\n`, `\u{1b}`, …: what nodes, registries and
/// inventories say is printed on one line and can never forge another.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(needs_escape) {
        std::borrow::Cow::Owned(Escaped(text).to_string())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Text with every character that could end, rewrite or reorder a terminal
/// line written as an escape (`\n`, `\r`, `\t`, else `\u{..}`).
pub(crate) struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if needs_escape(c) => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

/// Controls, line and paragraph separators, and bidi overrides.
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_cannot_forge_a_line() {
        let forged = "ok\n[node2] k3s-service: changed\r\u{1b}[2K";
        assert_eq!(
            super::escape_controls(forged),
            "ok\\n[node2] k3s-service: changed\\r\\u{1b}[2K"
        );
        assert!(matches!(
            super::escape_controls("plain → text"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
