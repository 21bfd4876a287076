//! Test support for pictl's end-to-end tests (the lab); filled in by the lab work.
