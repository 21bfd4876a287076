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
pub mod channel;
pub mod cli;
pub mod download;
pub mod facts;
pub mod init;
pub mod inventory;
pub mod k3s_flags;
pub mod kubeconfig;
pub mod manual;
pub mod recap;
pub mod render;
pub mod runner;
pub mod secret;
pub mod state;
pub mod status;
pub mod step;
pub mod steps;
pub mod transport;
pub mod workload;
pub mod write;

/// An error and its causes on one line (`err: cause: cause`), each cause
/// once: what every message to the operator is made of.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// `text` with control characters (newlines, escapes, carriage returns)
/// shown as `\n`, `\u{1b}`, …: what nodes, registries and inventories say
/// is printed on one line and can never forge another line of output.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
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
