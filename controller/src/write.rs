//! The capability to change things. Every function that writes (to a node,
//! to the cluster, to the controller's state) takes a `&Writer`, and only
//! the runner's `apply` entry point makes one: `pictl plan` holds none, so
//! it cannot reach code that writes, whatever a step or phase forgets.

/// Proof that this run is an `apply`. Not `Clone`: pass it by reference.
#[derive(Debug)]
pub struct Writer {
    _private: (),
}

impl Writer {
    /// Made once per `apply`, by the runner (and by tests of writers).
    pub(crate) fn for_apply() -> Self {
        Self { _private: () }
    }
}
