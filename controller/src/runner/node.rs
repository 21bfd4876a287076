//! One node's run: its connection, facts and report, and check → apply →
//! re-check over the node steps. Failures are recorded here, classified as
//! `unreachable` (the network) or `failed` (everything else).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::connect::{self, GatherError};
use super::progress::Progress;
use super::report::{NodeReport, Status, StepReport};
use super::{Mode, Options};
use crate::artifacts::ArtifactStore;
use crate::error_chain;
use crate::facts::Facts;
use crate::inventory::{Inventory, Node};
use crate::step::{Applied, Change, Check, Desired, NodeCx, Step, StepError};
use crate::steps;
use crate::transport::{Transport, TransportError};

pub struct NodeRun<'i> {
    pub node: &'i Node,
    pub transport: Option<Arc<dyn Transport>>,
    pub facts: Option<Facts>,
    pub report: NodeReport,
    started: Instant,
    /// Round trips of connections already closed (before a reboot).
    round_trips_before: u64,
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
        }
    }

    /// Connects and gathers facts.
    pub async fn start(&mut self, opts: &Options) {
        let progress = opts.progress.as_ref();
        match connect::connect_with_retry(opts.connector.as_ref(), self.node).await {
            Ok(t) => {
                match connect::gather(t.as_ref(), self.node, opts.mode == Mode::Apply).await {
                    Ok(f) => self.facts = Some(f),
                    Err(e) => self.gather_error(progress, &e),
                }
                self.transport = Some(t);
            }
            Err(e) => self.transport_error(progress, "connect", &e),
        }
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

    pub fn fail(&mut self, progress: &dyn Progress, msg: String) {
        progress.event(&self.node.name, "node", "FAILED", &msg);
        self.report.failed = Some(msg);
    }

    fn unreachable(&mut self, progress: &dyn Progress, msg: String) {
        progress.event(&self.node.name, "node", "UNREACHABLE", &msg);
        self.report.unreachable = Some(msg);
    }

    fn transport_error(&mut self, progress: &dyn Progress, what: &str, e: &TransportError) {
        let msg = format!("{what}: {}", error_chain(e));
        if e.is_unreachable() {
            self.unreachable(progress, msg)
        } else {
            self.fail(progress, msg)
        }
    }

    fn gather_error(&mut self, progress: &dyn Progress, e: &GatherError) {
        let msg = error_chain(e);
        if e.is_unreachable() {
            self.unreachable(progress, msg)
        } else {
            self.fail(progress, msg)
        }
    }

    /// Records a step that failed; the node stops converging. `lost` means
    /// the connection went away (reported as unreachable, not failed).
    fn step_failed(
        &mut self,
        progress: &dyn Progress,
        step: &'static str,
        changes: Vec<Change>,
        msg: String,
        lost: bool,
    ) {
        let r = StepReport::new(step, Status::Failed, changes, Some(msg.clone()));
        progress.event(
            &self.node.name,
            step,
            if lost { "UNREACHABLE" } else { "FAILED" },
            &r.describe(),
        );
        self.report.steps.push(r);
        if lost {
            self.report.unreachable = Some(format!("{step}: {msg}"));
        } else if self.report.unreachable.is_none() {
            self.report.failed = Some(format!("{step}: {msg}"));
        }
    }

    pub fn push(&mut self, progress: &dyn Progress, report: StepReport) {
        progress.event(
            &self.node.name,
            report.step,
            report.status.word(),
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

    /// check → apply → re-check over every node step.
    pub async fn converge(
        &mut self,
        inv: &Inventory,
        desired: &Desired,
        store: &ArtifactStore,
        opts: &Options,
    ) {
        let progress = opts.progress.as_ref();
        let all = steps::node_steps();
        let mut pending: Vec<&'static str> = Vec::new();
        for step in &all {
            let (Some(facts), Some(t)) = (self.facts.clone(), self.transport.clone()) else {
                return;
            };
            let cx = NodeCx {
                inv,
                node: self.node,
                facts: &facts,
                desired,
                pending: &pending,
            };
            let report = match step.check(&cx) {
                Check::Skip(why) => {
                    StepReport::new(step.name(), Status::Skipped, vec![], Some(why))
                }
                Check::Blocked(why) => {
                    return self.step_failed(progress, step.name(), vec![], why, false);
                }
                Check::Changes(c) if c.is_empty() => {
                    StepReport::new(step.name(), Status::Ok, c, None)
                }
                Check::Changes(changes) => {
                    pending.push(step.name());
                    if opts.mode == Mode::Apply {
                        progress.event(&self.node.name, step.name(), "applying", "");
                        let cx = NodeCx {
                            inv,
                            node: self.node,
                            facts: &facts,
                            desired,
                            pending: &pending,
                        };
                        match step.apply(&cx, t.as_ref(), store, &changes).await {
                            Ok(Applied::Done) => {}
                            Ok(Applied::Rebooting) => {
                                if let Err((msg, lost)) =
                                    self.wait_for_reboot(&facts.boot_id, opts).await
                                {
                                    return self.step_failed(
                                        progress,
                                        step.name(),
                                        changes,
                                        msg,
                                        lost,
                                    );
                                }
                                // The reboot was the point: the step must now hold.
                                if let Some(left) = self.left_to_do(inv, desired, step.as_ref()) {
                                    return self.step_failed(
                                        progress,
                                        step.name(),
                                        changes,
                                        left,
                                        false,
                                    );
                                }
                            }
                            Err(e) => {
                                let lost =
                                    matches!(&e, StepError::Transport(te) if te.is_unreachable());
                                return self.step_failed(
                                    progress,
                                    step.name(),
                                    changes,
                                    error_chain(&e),
                                    lost,
                                );
                            }
                        }
                    }
                    StepReport::new(step.name(), Status::Changed, changes, None)
                }
            };
            self.push(progress, report);
        }
        if opts.mode == Mode::Apply && !pending.is_empty() {
            self.recheck(inv, desired, &all, opts).await;
        }
    }

    /// What `step` still finds to do on the current facts, as a message.
    fn left_to_do(&self, inv: &Inventory, desired: &Desired, step: &dyn Step) -> Option<String> {
        let facts = self.facts.as_ref()?;
        let cx = NodeCx {
            inv,
            node: self.node,
            facts,
            desired,
            pending: &[],
        };
        match step.check(&cx) {
            Check::Blocked(why) => Some(why),
            Check::Changes(left) if !left.is_empty() => {
                let what: Vec<String> = left
                    .iter()
                    .map(|c| format!("{}: {} → {}", c.what, c.before, c.after))
                    .collect();
                Some(format!("did not converge: {}", what.join("; ")))
            }
            _ => None,
        }
    }

    /// Gathers facts once more and demands that no step has anything left.
    async fn recheck(
        &mut self,
        inv: &Inventory,
        desired: &Desired,
        all: &[Box<dyn Step>],
        opts: &Options,
    ) {
        let progress = opts.progress.as_ref();
        let Some(t) = self.transport.clone() else {
            return;
        };
        match connect::gather(t.as_ref(), self.node, opts.mode == Mode::Apply).await {
            Ok(f) => self.facts = Some(f),
            Err(e) => return self.gather_error(progress, &e),
        }
        for step in all {
            let Some(msg) = self.left_to_do(inv, desired, step.as_ref()) else {
                continue;
            };
            progress.event(&self.node.name, step.name(), "FAILED", &msg);
            if let Some(r) = self.report.steps.iter_mut().find(|r| r.step == step.name()) {
                r.status = Status::Failed;
                r.message = Some(msg.clone());
            }
            if self.report.failed.is_none() {
                self.report.failed = Some(format!("{}: {msg}", step.name()));
            }
        }
    }

    /// Reconnects after a reboot and gathers facts from the new boot.
    /// On failure: the message, and whether the node is unreachable.
    async fn wait_for_reboot(
        &mut self,
        old_boot: &str,
        opts: &Options,
    ) -> Result<(), (String, bool)> {
        if let Some(t) = self.transport.take() {
            self.round_trips_before += t.round_trips();
        }
        opts.progress.event(
            &self.node.name,
            "reboot",
            "waiting",
            "for the node to come back",
        );
        let deadline = Instant::now() + opts.wait;
        let mut last = String::from("no answer yet");
        let mut reachable = false;
        while Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let t = match opts.connector.connect(self.node).await {
                Ok(t) => t,
                Err(e) if e.is_unreachable() => {
                    last = error_chain(&e);
                    continue;
                }
                Err(e) => return Err((format!("after the reboot: {}", error_chain(&e)), false)),
            };
            reachable = true;
            match connect::gather(t.as_ref(), self.node, opts.mode == Mode::Apply).await {
                Ok(f) if f.boot_id != old_boot => {
                    self.facts = Some(f);
                    self.transport = Some(t);
                    return Ok(());
                }
                Ok(_) => last = "still the old boot".into(),
                Err(e) => last = error_chain(&e),
            }
            self.round_trips_before += t.round_trips();
        }
        let msg = format!(
            "the node did not come back within {} s after the reboot ({last})",
            opts.wait.as_secs()
        );
        Err((msg, !reachable))
    }
}

/// Arch expectations, unsupported arches and cloned machine-ids.
pub fn cross_node_checks(runs: &mut [NodeRun<'_>], progress: &dyn Progress) {
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.alive()) {
        if let Some(f) = &r.facts {
            ids.entry(f.machine_id.clone())
                .or_default()
                .push(r.node.name.clone());
        }
    }
    for r in runs.iter_mut().filter(|r| r.alive()) {
        let Some(f) = r.facts.clone() else { continue };
        let problem = match (&f.arch, r.node.arch) {
            (Err(why), _) => Some(format!("node {} reports {why}", r.node.name)),
            (Ok(actual), Some(expected)) if *actual != expected => Some(format!(
                "node {} is {actual} ({}), but the inventory expects arch = \"{expected}\"",
                r.node.name, f.uname_m
            )),
            _ if f.machine_id.is_empty() => {
                Some("the node has an empty /etc/machine-id; run systemd-machine-id-setup".to_string())
            }
            _ => ids.get(&f.machine_id).filter(|n| n.len() > 1).map(|names| {
                let others: Vec<&str> = names.iter().map(String::as_str).filter(|n| *n != r.node.name).collect();
                format!(
                    "machine-id {} is also the machine-id of {} (a cloned SD card?); give each node its own: \
                     rm /etc/machine-id && systemd-machine-id-setup, then reboot",
                    f.machine_id,
                    others.join(", ")
                )
            }),
        };
        if let Some(msg) = problem {
            r.fail(progress, msg);
            continue;
        }
        if f.clock_skew.abs() > 30 {
            progress.event(
                &r.node.name,
                "facts",
                "warning",
                &format!(
                    "clock is {} s off the controller's; TLS certificates may be refused",
                    f.clock_skew
                ),
            );
        }
    }
}
