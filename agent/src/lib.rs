//! pictl-agent: the per-node health agent.
//!
//! The [`report`] module is serde types only, so that the controller can read
//! reports without pulling in the agent's collectors or HTTP server.
//! [`collect`] reads the node (files under a configurable root, a few
//! `systemctl`-style commands, the kubelet's healthz), [`health`] judges the
//! result purely, [`metrics`] renders it for Prometheus, and [`http`] serves it.

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod cidr;
pub mod cli;
pub mod collect;
pub mod health;
pub mod http;
pub mod metrics;
pub mod pod_metrics;
pub mod publish;
pub mod report;
pub mod share;

/// The hardened systemd unit that runs the agent on a node (the controller
/// installs it as `/etc/systemd/system/pictl-agent.service`).
pub const SYSTEMD_UNIT: &str = include_str!("../pictl-agent.service");

/// This agent's version (the crate's), as the controller that carries it
/// reports in `pictl --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the agent could not do. Collection errors end up as lines in the
/// report's `collection_errors`; only failing to bind the listener or to
/// start its threads stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    ReadFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {what} in {path}")]
    ParseFailed { path: PathBuf, what: &'static str },
    #[error("listing mounted filesystems")]
    ListDisksFailed(#[source] sysinfo::Error),
    #[error("no mounted filesystem holds {path}")]
    RootFsNotFound { path: PathBuf },
    #[error("listening on {addr}")]
    BindFailed {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the HTTP connection threads")]
    StartWorkersFailed(#[source] std::io::Error),
    #[error("the publishing configuration {path} is not valid")]
    PublishConfigInvalid {
        path: PathBuf,
        #[source]
        source: publish::config::ConfigError,
    },
    #[error("writing the report")]
    WriteReportFailed(#[source] std::io::Error),
    #[error("writing {path}")]
    WriteFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line (`err: cause: cause`), each cause
/// once: what every message to the operator is made of. The one copy of the
/// workspace: the controller, which depends on this crate for the report
/// types, re-exports it as `pictl::error_chain`.
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
