//! pictl-agent: the per-node health agent.
//!
//! The [`report`] module is serde types only, so that the controller can read
//! reports without pulling in the agent's collectors or HTTP server.

pub mod report;
