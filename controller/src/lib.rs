//! pictl: a declarative K3s provisioner for small fleets, Raspberry Pis first.
//!
//! The binary (`main.rs`) only wires things; everything it runs lives here:
//! the [`inventory`] model, the SSH [`transport`], and the [`cli`] commands.

pub mod arch;
pub mod cli;
pub mod inventory;
pub mod secret;
pub mod transport;
