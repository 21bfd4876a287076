//! One node's steps: check each, and in `apply` (only with a [`Writer`])
//! apply its typed plan; then gather facts again and demand that nothing is
//! left (a step that still has changes is "did not converge"). Reboots
//! asked for by a step are waited for here.

use std::collections::BTreeSet;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connect;
use super::error::NodeFailure;
use super::node::NodeRun;
use super::options::Options;
use crate::adopt::Assessment;
use crate::artifacts::ArtifactStore;
use crate::error_chain;
use crate::report::{Stage, Topic};
use crate::report::{Status, StepReport};
use crate::step::{Applied, Change, Check, Desired, NodeCx, Plan, Step, StepId, StepIo};
use crate::steps::{self, StepVisitor};
use crate::write::Writer;
use tracing::Instrument;

/// What converging needs besides the node.
#[derive(Clone, Copy)]
pub struct Env<'r> {
    pub desired: &'r Desired,
    pub store: &'r ArtifactStore,
    pub opts: &'r Options,
}

/// How a phase walks a node's steps: [`Checking`] them (`pictl plan`) or
/// [`Converging`] them (`pictl apply`, holding the run's Writer). Node
/// phases take either and run one body; only `Converging` can reach code
/// that writes.
pub trait Walk: Sync {
    /// Every node step, in order.
    fn steps(&self, run: &mut NodeRun<'_>, env: Env<'_>) -> impl Future<Output = ()>;

    /// One step outside the converging list (reset, agent-access).
    fn single<S: Step>(
        &self,
        run: &mut NodeRun<'_>,
        env: Env<'_>,
        step: &S,
    ) -> impl Future<Output = ()>;
}

/// Checks every step: reports what would change, writes nothing.
pub struct Checking;

/// Checks and applies every step with the run's Writer.
pub struct Converging<'w>(pub &'w Writer);

/// A server outside `--nodes`: its steps are checked (a selected agent
/// needs it running) and what would change is reported as skipped, never
/// applied, in `plan` as in `apply`.
pub struct Holding;

/// Why a held node's change was not made.
pub const HELD: &str = "not in --nodes: checked, left as it is";

impl Walk for Holding {
    async fn steps(&self, run: &mut NodeRun<'_>, env: Env<'_>) {
        let mut v = Converger::new(run, env);
        v.held = true;
        let _ = steps::visit(&mut v).await;
    }

    async fn single<S: Step>(&self, run: &mut NodeRun<'_>, env: Env<'_>, step: &S) {
        let mut v = Converger::new(run, env);
        v.held = true;
        let _ = v.visit(step).await;
    }
}

impl Walk for Checking {
    async fn steps(&self, run: &mut NodeRun<'_>, env: Env<'_>) {
        let mut v = Converger::new(run, env);
        let _ = steps::visit(&mut v).await;
        if env.opts.diff {
            let adoption = v.adoption.clone();
            attach_diffs(run, env, adoption.as_deref()).await;
        }
    }

    async fn single<S: Step>(&self, run: &mut NodeRun<'_>, env: Env<'_>, step: &S) {
        let _ = Converger::new(run, env).visit(step).await;
    }
}

impl Walk for Converging<'_> {
    /// check → apply → re-check over every step.
    async fn steps(&self, run: &mut NodeRun<'_>, env: Env<'_>) {
        let mut v = Converger::new(run, env).writing(self.0);
        if steps::visit(&mut v).await.is_continue() && v.changed {
            recheck(v.run, env, self.0).await;
        }
    }

    /// Check and apply one step, then gather facts again and demand it holds.
    async fn single<S: Step>(&self, run: &mut NodeRun<'_>, env: Env<'_>, step: &S) {
        let mut v = Converger::new(run, env).writing(self.0);
        if v.visit(step).await.is_break() || !v.changed {
            return;
        }
        let Some(t) = v.run.transport.clone() else {
            return;
        };
        let progress = env.opts.progress.as_ref();
        // Read without recording: the reset step removes pictl's records.
        match connect::gather(t.as_ref(), v.run.node).await {
            Ok(f) => v.run.facts = Some(f),
            Err(e) => return v.run.gather_error(progress, &e),
        }
        let _ = Rechecker::new(v.run, env).visit(step).await;
    }
}

/// `plan --diff`: each text file rewrite's redacted diff, in its change.
/// The node's adoption assessment is the one its steps were checked with.
async fn attach_diffs(run: &mut NodeRun<'_>, env: Env<'_>, adoption: Option<&Assessment>) {
    let (Some(t), Some(facts)) = (run.transport.clone(), run.facts.clone()) else {
        return;
    };
    let none = BTreeSet::new();
    let cx = NodeCx {
        node: run.node,
        facts: &facts,
        desired: env.desired,
        pending: &none,
        adoption,
    };
    for d in steps::diff::diffs(t.as_ref(), &cx).await {
        // A step rewrites at most one text file: its first change is it.
        let changes = run.report.steps.iter_mut().filter(|r| r.step == d.step);
        if let Some(c) = changes.flat_map(|r| r.changes.iter_mut()).next() {
            c.diff = Some(d.text);
        }
    }
}

struct Converger<'r, 'i> {
    run: &'r mut NodeRun<'i>,
    env: Env<'r>,
    writer: Option<&'r Writer>,
    /// Earlier steps whose plan rewrites what a service reads.
    pending: BTreeSet<StepId>,
    /// Whether any step had something to do.
    changed: bool,
    /// Outside `--nodes`: changes are reported as skipped ([`Holding`]).
    held: bool,
    /// The node's adoption assessment on its current facts, made once.
    adoption: Option<Arc<Assessment>>,
}

/// [`steps::assess_adoption`] on the node's current facts (shared, not redone,
/// by every step's context).
fn assess(run: &NodeRun<'_>, desired: &Desired) -> Option<Arc<Assessment>> {
    let facts = run.facts.as_ref()?;
    steps::assess_adoption(run.node, facts, desired).map(Arc::new)
}

impl<'r, 'i> Converger<'r, 'i> {
    /// Checks only.
    fn new(run: &'r mut NodeRun<'i>, env: Env<'r>) -> Self {
        let adoption = assess(run, env.desired);
        Converger {
            run,
            env,
            writer: None,
            pending: BTreeSet::new(),
            changed: false,
            held: false,
            adoption,
        }
    }
}

impl<'r> Converger<'r, '_> {
    /// Checks and applies, with the run's Writer.
    fn writing(mut self, w: &'r Writer) -> Self {
        self.writer = Some(w);
        self
    }

    fn step_failed(&mut self, step: StepId, changes: Vec<Change>, failure: NodeFailure) {
        let progress = self.env.opts.progress.as_ref();
        let msg = failure.message().to_string();
        self.run.push(
            progress,
            StepReport::new(step, Status::Failed, changes, Some(msg.clone())),
        );
        let failure = match failure {
            NodeFailure::Unreachable(_) => NodeFailure::Unreachable(format!("{step}: {msg}")),
            NodeFailure::Failed(_) => NodeFailure::Failed(format!("{step}: {msg}")),
        };
        self.run.fail(progress, failure);
    }

    /// Applies `plan`; on a reboot, waits for the node and re-checks the step.
    async fn apply_one<S: Step>(
        &mut self,
        step: &S,
        cx: &NodeCx<'_>,
        plan: &S::Plan,
        w: &Writer,
    ) -> Result<(), NodeFailure> {
        let Some(t) = self.run.transport.clone() else {
            return Err(NodeFailure::Unreachable("no connection".into()));
        };
        // Nothing is written to a node another run holds.
        self.run.lock(t.as_ref(), w).await?;
        let progress = self.env.opts.progress.as_ref();
        self.run
            .event(progress, Topic::Step(S::ID), Stage::Applying, "");
        let io = StepIo {
            transport: t.as_ref(),
            store: self.env.store,
            writer: w,
            wait: self.env.opts.wait,
            progress,
        };
        match step.apply(cx, io, plan).await {
            Ok(Applied::Done) => Ok(()),
            Ok(Applied::Rebooting) => {
                wait_for_reboot(self.run, &cx.facts.boot_id, self.env.opts, w).await?;
                // New facts: what follows is checked against them.
                self.adoption = assess(self.run, self.env.desired);
                // The reboot was the point: the step must now hold.
                match left_to_do(self.run, self.env.desired, self.adoption.as_deref(), step) {
                    Some(left) => Err(NodeFailure::Failed(left)),
                    None => Ok(()),
                }
            }
            Err(e) => Err(NodeFailure::new(e.is_unreachable(), error_chain(&e))),
        }
    }
}

impl StepVisitor for Converger<'_, '_> {
    async fn visit<S: Step>(&mut self, step: &S) -> ControlFlow<()> {
        let span = tracing::info_span!("step", id = %S::ID);
        self.visit_step(step).instrument(span).await
    }
}

impl Converger<'_, '_> {
    async fn visit_step<S: Step>(&mut self, step: &S) -> ControlFlow<()> {
        let Some(facts) = self.run.facts.clone() else {
            return ControlFlow::Break(());
        };
        let (desired, pending) = (self.env.desired, self.pending.clone());
        let adoption = self.adoption.clone();
        let cx = NodeCx {
            node: self.run.node,
            facts: &facts,
            desired,
            pending: &pending,
            adoption: adoption.as_deref(),
        };
        let progress = self.env.opts.progress.as_ref();
        let plan = match step.check(&cx) {
            Check::Skip(why) => {
                let r = StepReport::new(S::ID, Status::Skipped, vec![], Some(why));
                self.run.push(progress, r);
                return ControlFlow::Continue(());
            }
            Check::Converged => {
                self.run
                    .push(progress, StepReport::new(S::ID, Status::Ok, vec![], None));
                return ControlFlow::Continue(());
            }
            Check::Blocked(why) => {
                self.step_failed(S::ID, vec![], NodeFailure::Failed(why));
                return ControlFlow::Break(());
            }
            Check::Change(plan) => plan,
        };
        let changes = plan.changes();
        if self.held {
            let r = StepReport::new(S::ID, Status::Skipped, changes, Some(HELD.into()));
            self.run.push(progress, r);
            return ControlFlow::Continue(());
        }
        if let Some(w) = self.writer
            && let Err(failure) = self.apply_one(step, &cx, &plan, w).await
        {
            self.step_failed(S::ID, changes, failure);
            return ControlFlow::Break(());
        }
        self.changed = true;
        if plan.rewrites() {
            self.pending.insert(S::ID);
        }
        let r = StepReport::new(S::ID, Status::Changed, changes, None);
        self.run.push(progress, r);
        ControlFlow::Continue(())
    }
}

/// What `step` still finds to do on the node's current facts, as a message.
fn left_to_do<S: Step>(
    run: &NodeRun<'_>,
    desired: &Desired,
    adoption: Option<&Assessment>,
    step: &S,
) -> Option<String> {
    let facts = run.facts.as_ref()?;
    let cx = NodeCx {
        node: run.node,
        facts,
        desired,
        pending: &BTreeSet::new(),
        adoption,
    };
    match step.check(&cx) {
        Check::Blocked(why) => Some(why),
        Check::Change(left) => {
            let what: Vec<String> = left.changes().iter().map(Change::to_string).collect();
            Some(format!("did not converge: {}", what.join("; ")))
        }
        Check::Skip(_) | Check::Converged => None,
    }
}

/// Marks every step that still has something to do as failed.
struct Rechecker<'r, 'i> {
    run: &'r mut NodeRun<'i>,
    env: Env<'r>,
    /// The adoption assessment on the facts gathered for the re-check.
    adoption: Option<Arc<Assessment>>,
}

impl<'r, 'i> Rechecker<'r, 'i> {
    fn new(run: &'r mut NodeRun<'i>, env: Env<'r>) -> Self {
        let adoption = assess(run, env.desired);
        Rechecker { run, env, adoption }
    }
}

impl StepVisitor for Rechecker<'_, '_> {
    async fn visit<S: Step>(&mut self, step: &S) -> ControlFlow<()> {
        let Some(msg) = left_to_do(self.run, self.env.desired, self.adoption.as_deref(), step)
        else {
            return ControlFlow::Continue(());
        };
        let progress = self.env.opts.progress.as_ref();
        let stage = Stage::Finished(Status::Failed);
        self.run.event(progress, Topic::Step(S::ID), stage, &msg);
        if let Some(r) = self.run.report.steps.iter_mut().find(|r| r.step == S::ID) {
            r.status = Status::Failed;
            r.message = Some(msg.clone());
        }
        if self.run.report.failed.is_none() {
            self.run.report.failed = Some(format!("{}: {msg}", S::ID));
        }
        ControlFlow::Continue(())
    }
}

/// Gathers facts once more and demands that no step has anything left.
async fn recheck(run: &mut NodeRun<'_>, env: Env<'_>, w: &Writer) {
    let progress = env.opts.progress.as_ref();
    let Some(t) = run.transport.clone() else {
        return;
    };
    match connect::gather_recording(t.as_ref(), run.node, w).await {
        Ok(f) => run.facts = Some(f),
        Err(e) => return run.gather_error(progress, &e),
    }
    let _ = steps::visit(&mut Rechecker::new(run, env)).await;
}

/// Reconnects after a reboot and gathers facts from the new boot.
async fn wait_for_reboot(
    run: &mut NodeRun<'_>,
    old_boot: &str,
    opts: &Options,
    w: &Writer,
) -> Result<(), NodeFailure> {
    if let Some(t) = run.transport.take() {
        run.round_trips_before += t.round_trips();
    }
    run.locked = false;
    let progress = opts.progress.as_ref();
    run.event(
        progress,
        Topic::Reboot,
        Stage::Waiting,
        "for the node to come back",
    );
    let deadline = Instant::now() + opts.wait;
    let mut last = String::from("no answer yet");
    let mut reachable = false;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = match opts.connector.connect(run.node).await {
            Ok(t) => t,
            Err(e) if e.is_unreachable() => {
                last = error_chain(&e);
                continue;
            }
            Err(e) => {
                let msg = format!("after the reboot: {}", error_chain(&e));
                return Err(NodeFailure::Failed(msg));
            }
        };
        reachable = true;
        // The reboot emptied /run, and the lock with it: taken again.
        match connect::gather_locked(t.as_ref(), run.node, w).await {
            Ok(f) if f.boot_id != old_boot => {
                run.locked = true;
                run.facts = Some(f);
                run.transport = Some(t);
                return Ok(());
            }
            Ok(_) => last = "still the old boot".into(),
            Err(e) => last = error_chain(&e),
        }
        run.round_trips_before += t.round_trips();
    }
    let msg = format!(
        "the node did not come back within {} s after the reboot ({last})",
        opts.wait.as_secs()
    );
    Err(NodeFailure::new(!reachable, msg))
}
