//! Test support for pictl's end-to-end tests: bringing the lab (tests/lab/lab,
//! systemd-nspawn nodes with real systemd and OpenSSH) up and down, reaching its
//! nodes, injecting faults, and a small runner for `harness = false` test
//! binaries that guarantees the lab is torn down on every exit path.
//!
//! The lab tool itself is a bash script; this crate only drives it through
//! `std::process::Command`, so what tests exercise is exactly what a developer
//! gets from `tests/lab/lab` by hand.

pub mod harness;
pub mod k3s;
pub mod lab;
pub mod pictl;
pub mod registry;
pub mod sim;

pub use harness::{Case, LabSpec};
pub use lab::{Lab, Node, lab_or_skip, lab_unavailable_reason, leaks};
