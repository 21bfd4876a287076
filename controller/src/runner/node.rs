//! One node's run: its connection, facts and report, and how a failure is
//! recorded (`unreachable` for the network, `failed` for everything else).
//! What the node's steps do lives in [`super::converge`].

use std::sync::Arc;
use std::time::Instant;

use super::connect::{self, GatherError};
use super::error::NodeFailure;
use super::node_lock;
use super::options::Options;
use crate::error_chain;
use crate::facts::Facts;
use crate::inventory::Node;
use crate::report::{Event, Progress, Stage, Topic};
use crate::report::{NodeReport, StepReport};
use crate::transport::{Transport, TransportError};
use crate::write::Writer;

pub struct NodeRun<'i> {
    pub node: &'i Node,
    pub transport: Option<Arc<dyn Transport>>,
    pub facts: Option<Facts>,
    pub report: NodeReport,
    started: Instant,
    /// Round trips of connections already closed (before a reboot).
    pub(super) round_trips_before: u64,
    /// Another run holds this node's lock: its words.
    pub locked_by: Option<String>,
    /// This run holds the node's lock (on its current connection).
    pub locked: bool,
}

impl<'i> NodeRun<'i> {
    pub fn new(node: &'i Node) -> Self {
        Self {
            node,
            transport: None,
            facts: None,
            report: NodeReport {
                name: node.name.clone(),
                role: node.role.as_str(),
                address: node.address.clone(),
                arch: None,
                unreachable: None,
                failed: None,
                steps: Vec::new(),
                ssh_round_trips: 0,
                seconds: 0.0,
            },
            started: Instant::now(),
            round_trips_before: 0,
            locked_by: None,
            locked: false,
        }
    }

    /// Connects and gathers facts, reading only.
    pub async fn start(&mut self, opts: &Options) {
        if let Some(t) = self.connect(opts).await {
            let facts = connect::gather(t.as_ref(), self.node).await;
            self.started_with(opts, t, facts);
        }
    }

    /// [`Self::start`] for a run that writes: the node is locked first
    /// (nothing else is done on a node another run holds), and it brings
    /// its hash cache up to date.
    pub async fn start_recording(&mut self, opts: &Options, w: &Writer) {
        if let Some(t) = self.connect(opts).await {
            let facts = connect::gather_locked(t.as_ref(), self.node, w).await;
            self.locked = facts.is_ok();
            self.started_with(opts, t, facts);
        }
    }

    /// Takes the node lock on `t`'s connection unless this run holds it
    /// already (a run whose facts were read without it, as `reset`'s).
    pub async fn lock(&mut self, t: &dyn Transport, w: &Writer) -> Result<(), NodeFailure> {
        if self.locked {
            return Ok(());
        }
        match node_lock::take(t, self.node.ssh.sudo, w).await {
            Ok(()) => {
                self.locked = true;
                Ok(())
            }
            Err(e) => {
                let e = GatherError::Lock(e);
                if let GatherError::Lock(node_lock::LockError::Held { holder }) = &e {
                    self.locked_by = Some(holder.clone());
                }
                Err(NodeFailure::new(e.is_unreachable(), error_chain(&e)))
            }
        }
    }

    async fn connect(&mut self, opts: &Options) -> Option<Arc<dyn Transport>> {
        match connect::connect_with_retry(opts.connector.as_ref(), self.node).await {
            Ok(t) => Some(t),
            Err(e) => {
                self.transport_error(opts.progress.as_ref(), "connect", &e);
                None
            }
        }
    }

    fn started_with(
        &mut self,
        opts: &Options,
        t: Arc<dyn Transport>,
        facts: Result<Facts, GatherError>,
    ) {
        match facts {
            Ok(f) => self.facts = Some(f),
            Err(e) => self.gather_error(opts.progress.as_ref(), &e),
        }
        self.transport = Some(t);
    }

    pub fn alive(&self) -> bool {
        self.report.unreachable.is_none() && self.report.failed.is_none() && self.facts.is_some()
    }

    /// Why this node cannot be relied on, for messages about other nodes.
    pub fn state_word(&self) -> &'static str {
        if self.report.unreachable.is_some() {
            "unreachable"
        } else if self.report.failed.is_some() {
            "failed"
        } else {
            "not converged"
        }
    }

    pub fn event(&self, progress: &dyn Progress, topic: Topic, stage: Stage<'_>, detail: &str) {
        progress.event(&Event {
            subject: &self.node.name,
            topic,
            stage,
            detail,
        });
    }

    /// Records why the node stopped converging (the first reason wins,
    /// and unreachable wins over failed).
    pub fn fail(&mut self, progress: &dyn Progress, failure: NodeFailure) {
        let stage = match &failure {
            NodeFailure::Unreachable(_) => Stage::Unreachable,
            NodeFailure::Failed(_) => Stage::Finished(super::Status::Failed),
        };
        self.event(progress, Topic::Node, stage, failure.message());
        match failure {
            NodeFailure::Unreachable(m) => {
                self.report.failed = None;
                self.report.unreachable.get_or_insert(m);
            }
            NodeFailure::Failed(m) if self.report.unreachable.is_none() => {
                self.report.failed.get_or_insert(m);
            }
            NodeFailure::Failed(_) => {}
        }
    }

    pub fn transport_error(&mut self, progress: &dyn Progress, what: &str, e: &TransportError) {
        let msg = format!("{what}: {}", error_chain(e));
        self.fail(progress, NodeFailure::new(e.is_unreachable(), msg));
    }

    pub fn gather_error(&mut self, progress: &dyn Progress, e: &GatherError) {
        if let GatherError::Lock(node_lock::LockError::Held { holder }) = e {
            self.locked_by = Some(holder.clone());
        }
        self.fail(
            progress,
            NodeFailure::new(e.is_unreachable(), error_chain(e)),
        );
    }

    pub fn push(&mut self, progress: &dyn Progress, report: StepReport) {
        let stage = Stage::Finished(report.status);
        self.event(
            progress,
            Topic::Step(report.step),
            stage,
            &report.describe(),
        );
        self.report.steps.push(report);
    }

    pub fn finish(mut self) -> NodeReport {
        self.report.ssh_round_trips =
            self.round_trips_before + self.transport.as_ref().map_or(0, |t| t.round_trips());
        self.report.seconds = self.started.elapsed().as_secs_f64();
        self.report.arch = self
            .facts
            .as_ref()
            .and_then(|f| f.arch.clone().ok())
            .map(|a| a.to_string());
        self.report
    }
}
