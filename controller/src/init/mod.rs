//! `pictl init`: a first inventory from the nodes themselves. Connects to
//! each address (host keys confirmed by the user or `--accept-new`),
//! gathers facts, and writes the inventory [`render`] makes of them.

pub mod render;
