//! Integration tests of the agent, one binary, a file per concern.

mod binary;
mod collect;
mod http;
mod pod_metrics;
mod promtool;
mod support;
mod tls;
mod unit;
