//! pictl: a declarative K3s provisioner for small fleets, Raspberry Pis first.
//!
//! The binary (`main.rs`) only wires things; everything it runs lives here.
//! Pure parts: [`inventory`], [`facts`] parsing, [`render`], [`kubeconfig`],
//! each step's `check`. Side effects: the SSH [`transport`], [`artifacts`]
//! downloads, the [`state`] directory, and the [`runner`] that drives steps.

pub mod agent_binary;
pub mod arch;
pub mod artifacts;
pub mod channel;
pub mod cli;
pub mod download;
pub mod facts;
pub mod inventory;
pub mod kubeconfig;
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
