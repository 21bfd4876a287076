//! The runner: fan-out over nodes, ordering (servers one at a time, then
//! agents in parallel), facts, check → apply → re-check, and the report.
//!
//! Steps never decide ordering, retries or what "unreachable" means; the
//! runner does, so every step stays a small pure `check` plus an `apply`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::artifacts::ArtifactStore;
use crate::facts::{self, Facts};
use crate::inventory::{Inventory, K3sRelease, Node, Role};
use crate::kubeconfig;
use crate::render;
use crate::secret::Secret;
use crate::state;
use crate::step::{Applied, Change, Check, Desired, NodeCx, StepError};
use crate::steps;
use crate::transport::{
    self, BoxFuture, RemoteCommand, SshTarget, SshTransport, SudoMode, Transport, TransportError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Plan,
    Apply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Changed,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: &'static str,
    pub status: Status,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub role: &'static str,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    pub steps: Vec<StepReport>,
    pub ssh_round_trips: u64,
    pub seconds: f64,
}

impl NodeReport {
    pub fn count(&self, s: Status) -> usize {
        self.steps.iter().filter(|r| r.status == s).count()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub cluster: String,
    pub mode: Mode,
    pub k3s_version: String,
    pub nodes: Vec<NodeReport>,
    pub seconds: f64,
}

impl RunReport {
    pub fn changed(&self) -> bool {
        self.nodes.iter().any(|n| n.count(Status::Changed) > 0)
    }

    pub fn failed(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.failed.is_some() || n.unreachable.is_some() || n.count(Status::Failed) > 0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Channel(#[from] crate::channel::ChannelError),
    #[error("node {node}: the sudo password is not available: {source_desc}")]
    SudoPasswordMissing { node: String, source_desc: String },
}

/// Opens a transport to a node (SSH in real life; tests may count or fault).
pub trait Connector: Send + Sync {
    fn connect<'a>(
        &'a self,
        node: &'a Node,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, TransportError>>;
}

/// The real connector: SSH with the node's merged settings.
#[derive(Default)]
pub struct SshConnector {
    /// Asks for an encrypted key's passphrase when its variable is unset.
    prompt: Option<transport::PassphrasePrompt>,
}

impl SshConnector {
    /// A connector that prompts on the terminal for key passphrases (once
    /// per key file), when stdin is a terminal; otherwise never prompts.
    pub fn interactive() -> Self {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return Self::default();
        }
        let asked: std::sync::Mutex<BTreeMap<std::path::PathBuf, Secret>> = Default::default();
        let prompt: transport::PassphrasePrompt = Arc::new(move |path: &std::path::Path| {
            let mut asked = asked.lock().ok()?;
            if let Some(s) = asked.get(path) {
                return Some(s.clone());
            }
            let answer =
                rpassword::prompt_password(format!("Passphrase for {}: ", path.display())).ok()?;
            let secret = Secret::new(answer);
            asked.insert(path.to_path_buf(), secret.clone());
            Some(secret)
        });
        Self {
            prompt: Some(prompt),
        }
    }
}

impl Connector for SshConnector {
    fn connect<'a>(
        &'a self,
        node: &'a Node,
    ) -> BoxFuture<'a, Result<Arc<dyn Transport>, TransportError>> {
        Box::pin(async move {
            let s = &node.ssh;
            let mut target = SshTarget::new(
                &node.name,
                &node.address,
                &s.user,
                s.auth.clone(),
                &s.known_hosts,
            );
            target.port = s.port;
            target.passphrase_prompt = self.prompt.clone();
            target.connect_timeout = s.connect_timeout;
            target.policy = s.host_key_policy;
            target.sudo = match (&s.sudo_password, s.sudo) {
                (_, false) => SudoMode::None,
                (None, true) => SudoMode::Passwordless,
                // `run` has checked that every configured password resolves.
                (Some(src), true) => {
                    sudo_password(src).map_or(SudoMode::Passwordless, SudoMode::Password)
                }
            };
            let t = SshTransport::connect(target).await?;
            Ok(Arc::new(t) as Arc<dyn Transport>)
        })
    }
}

fn sudo_password(src: &crate::inventory::SecretSource) -> Option<Secret> {
    match src {
        crate::inventory::SecretSource::Env(v) => std::env::var(v).ok().map(Secret::new),
        crate::inventory::SecretSource::File(p) => state::read_secret_file(p).ok(),
        crate::inventory::SecretSource::Generated => None,
    }
}

/// How a run reports progress while it works.
pub trait Progress: Send + Sync {
    fn event(&self, node: &str, step: &str, status: &str, detail: &str);
}

/// Progress lines on stderr, one per node and step.
#[derive(Debug)]
pub struct StderrProgress;

impl Progress for StderrProgress {
    fn event(&self, node: &str, step: &str, status: &str, detail: &str) {
        if detail.is_empty() {
            eprintln!("[{node}] {step}: {status}");
        } else {
            eprintln!("[{node}] {step}: {status} {detail}");
        }
    }
}

/// No progress output (`plan` prints its findings once, at the end).
#[derive(Debug)]
pub struct QuietProgress;

impl Progress for QuietProgress {
    fn event(&self, _node: &str, _step: &str, _status: &str, _detail: &str) {}
}

pub struct Options {
    pub mode: Mode,
    pub concurrency: usize,
    pub connector: Arc<dyn Connector>,
    pub progress: Arc<dyn Progress>,
    pub cache_dir: std::path::PathBuf,
    /// How long to wait for a rebooting node and for nodes to turn Ready.
    pub wait: Duration,
}

struct NodeRun<'i> {
    node: &'i Node,
    transport: Option<Arc<dyn Transport>>,
    facts: Option<Facts>,
    report: NodeReport,
    started: Instant,
    round_trips_before: u64,
}

impl NodeRun<'_> {
    fn alive(&self) -> bool {
        self.report.unreachable.is_none() && self.report.failed.is_none() && self.facts.is_some()
    }

    fn fail(&mut self, progress: &dyn Progress, msg: String) {
        progress.event(&self.node.name, "node", "FAILED", &msg);
        self.report.failed = Some(msg);
    }

    fn transport_error(&mut self, progress: &dyn Progress, what: &str, e: &TransportError) {
        let msg = format!("{what}: {}", error_chain(e));
        if e.is_unreachable() {
            progress.event(&self.node.name, "node", "UNREACHABLE", &msg);
            self.report.unreachable = Some(msg);
        } else {
            self.fail(progress, msg);
        }
    }

    fn round_trips(&self) -> u64 {
        self.round_trips_before + self.transport.as_ref().map_or(0, |t| t.round_trips())
    }
}

/// `err: cause: cause` on one line.
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

fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Gathers a node's facts in one round trip.
pub async fn gather(t: &dyn Transport, sudo: bool) -> Result<Facts, String> {
    let cmd = RemoteCommand::script(facts::SCRIPT)
        .args(facts::paths::MANAGED)
        .sudo(sudo)
        .timeout(Duration::from_secs(60));
    let out = t.exec(&cmd).await.map_err(|e| error_chain(&e))?;
    if !out.success() {
        return Err(format!(
            "the facts script failed (exit {}): {}",
            out.status,
            out.stderr_text().trim()
        ));
    }
    Facts::parse(&out.stdout_text(), now_epoch()).map_err(|e| e.to_string())
}

/// Runs plan or apply over the whole inventory.
pub async fn run(inv: &Inventory, opts: &Options) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let version = match &inv.cluster.k3s {
        K3sRelease::Version(v) => v.clone(),
        K3sRelease::Channel(c) => {
            let v = crate::channel::resolve(&inv.cluster.channel_url, c).await?;
            opts.progress.event(
                &inv.cluster.name,
                "channel",
                "resolved",
                &format!("({c} → {v})"),
            );
            v
        }
    };
    for node in &inv.nodes {
        if let (true, Some(src)) = (node.ssh.sudo, &node.ssh.sudo_password)
            && sudo_password(src).is_none()
        {
            let source_desc = match src {
                crate::inventory::SecretSource::Env(v) => {
                    format!("environment variable {v} is not set")
                }
                crate::inventory::SecretSource::File(p) => {
                    format!("{} is missing, empty or not 0600", p.display())
                }
                crate::inventory::SecretSource::Generated => "it cannot be generated".into(),
            };
            return Err(RunError::SudoPasswordMissing {
                node: node.name.clone(),
                source_desc,
            });
        }
    }
    let _lock = match opts.mode {
        Mode::Apply => Some(state::lock_cluster(inv)?),
        Mode::Plan => None,
    };
    // Plan must not create state: with no secret yet, server configs are "to be written".
    let secret = match (opts.mode, &inv.cluster.token) {
        (Mode::Plan, crate::inventory::SecretSource::Generated)
            if !inv.cluster.state_dir.join("token").exists() =>
        {
            None
        }
        _ => Some(state::cluster_secret(inv)?),
    };
    let store = ArtifactStore::new(&inv.cluster.mirror, &version, &opts.cache_dir);
    let progress = opts.progress.as_ref();
    let sem = Arc::new(Semaphore::new(opts.concurrency.max(1)));

    // Connect and gather facts everywhere, in parallel.
    let mut runs: Vec<NodeRun<'_>> = futures_join(inv.nodes.iter().map(|node| {
        let sem = sem.clone();
        async move {
            let _permit = sem.acquire().await;
            let mut run = NodeRun {
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
            };
            match opts.connector.connect(node).await {
                Ok(t) => {
                    match gather(t.as_ref(), node.ssh.sudo).await {
                        Ok(f) => run.facts = Some(f),
                        Err(e) => run.fail(progress, format!("gathering facts: {e}")),
                    }
                    run.transport = Some(t);
                }
                Err(e) => run.transport_error(progress, "connect", &e),
            }
            run
        }
    }))
    .await;

    cross_node_checks(inv, &mut runs, progress);

    // The desired binary per arch (the checksum file is small and cached).
    let mut desired: BTreeMap<String, Desired> = BTreeMap::new();
    for run in runs.iter_mut().filter(|r| r.alive()) {
        let Some(Ok(arch)) = run.facts.as_ref().map(|f| f.arch.clone()) else {
            continue;
        };
        match store.expected_sha256(arch).await {
            Ok(sha) => {
                let role = run.node.role;
                desired.insert(
                    run.node.name.clone(),
                    Desired {
                        version: version.clone(),
                        binary_sha256: sha,
                        config: None,
                        unit_name: render::unit_name(role),
                        unit_path: match role {
                            Role::Server => facts::paths::SERVER_UNIT,
                            Role::Agent => facts::paths::AGENT_UNIT,
                        },
                        unit: render::unit_file(role),
                    },
                );
            }
            Err(e) => run.fail(
                progress,
                format!("K3s {version} for {arch}: {}", error_chain(&e)),
            ),
        }
    }

    // Servers, one at a time (upgrades never take two control planes down).
    for run in runs
        .iter_mut()
        .filter(|r| r.node.role == Role::Server && r.alive())
    {
        if let (Some(d), Some(s)) = (desired.get_mut(&run.node.name), &secret) {
            d.config = Some(render::server_config(inv, run.node, s));
        }
        let d = desired.get(&run.node.name).cloned();
        if let Some(d) = d {
            converge(inv, run, &d, &store, opts).await;
        }
    }

    // The join token and the kubeconfig come from the first server.
    let first_server = runs.iter().find(|r| r.node.role == Role::Server);
    let join_token = first_server
        .and_then(|r| r.facts.as_ref())
        .and_then(|f| f.server_token.clone());
    let admin = first_server
        .and_then(|r| r.facts.as_ref())
        .and_then(|f| f.admin_kubeconfig.clone());
    if let Some(idx) = runs
        .iter()
        .position(|r| r.node.role == Role::Server && r.alive())
    {
        let report = kubeconfig_step(inv, admin.as_ref(), opts.mode);
        progress.event(
            &runs[idx].node.name,
            report.step,
            status_word(report.status),
            &describe(&report),
        );
        runs[idx].report.steps.push(report);
    }

    // Agents, in parallel.
    for run in runs.iter_mut().filter(|r| r.node.role == Role::Agent) {
        if let (Some(d), Some(tok)) = (desired.get_mut(&run.node.name), &join_token) {
            d.config = Some(render::agent_config(inv, run.node, tok));
        }
    }
    let agent_runs: Vec<&mut NodeRun<'_>> = runs
        .iter_mut()
        .filter(|r| r.node.role == Role::Agent && r.alive())
        .collect();
    futures_join(agent_runs.into_iter().map(|run| {
        let sem = sem.clone();
        let d = desired.get(&run.node.name).cloned();
        let store = &store;
        async move {
            let _permit = sem.acquire().await;
            if let Some(d) = d {
                converge(inv, run, &d, store, opts).await;
            }
        }
    }))
    .await;

    if opts.mode == Mode::Apply && admin.is_some() {
        readiness(inv, &mut runs, opts).await;
    }

    let nodes = runs
        .into_iter()
        .map(|mut r| {
            r.report.ssh_round_trips = r.round_trips();
            r.report.seconds = r.started.elapsed().as_secs_f64();
            r.report.arch = r
                .facts
                .as_ref()
                .and_then(|f| f.arch.clone().ok())
                .map(|a| a.to_string());
            r.report
        })
        .collect();
    Ok(RunReport {
        cluster: inv.cluster.name.clone(),
        mode: opts.mode,
        k3s_version: version,
        nodes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Polls futures concurrently and returns their outputs in order.
pub async fn futures_join<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut set: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<T>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_some() {
                continue;
            }
            match f.as_mut().poll(cx) {
                std::task::Poll::Ready(v) => out[i] = Some(v),
                std::task::Poll::Pending => pending = true,
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Arch expectations, unsupported arches and cloned machine-ids.
fn cross_node_checks(_inv: &Inventory, runs: &mut [NodeRun<'_>], progress: &dyn Progress) {
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
        match (&f.arch, r.node.arch) {
            (Err(why), _) => {
                let msg = format!("node {} reports {why}", r.node.name);
                r.fail(progress, msg);
                continue;
            }
            (Ok(actual), Some(expected)) if *actual != expected => {
                let msg = format!(
                    "node {} is {actual} ({}), but the inventory expects arch = \"{expected}\"",
                    r.node.name, f.uname_m
                );
                r.fail(progress, msg);
                continue;
            }
            _ => {}
        }
        if f.machine_id.is_empty() {
            r.fail(
                progress,
                "the node has an empty /etc/machine-id; run systemd-machine-id-setup".into(),
            );
            continue;
        }
        if let Some(names) = ids.get(&f.machine_id).filter(|n| n.len() > 1) {
            let others: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| *n != r.node.name)
                .collect();
            let msg = format!(
                "machine-id {} is also the machine-id of {} (a cloned SD card?); give each node its own: \
                 rm /etc/machine-id && systemd-machine-id-setup, then reboot",
                f.machine_id,
                others.join(", ")
            );
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

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Changed => "changed",
        Status::Skipped => "skipped",
        Status::Failed => "FAILED",
    }
}

fn describe(r: &StepReport) -> String {
    let mut parts: Vec<String> = r
        .changes
        .iter()
        .map(|c| format!("{}: {} → {}", c.what, c.before, c.after))
        .collect();
    if let Some(m) = &r.message {
        parts.push(m.clone());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("({})", parts.join("; "))
    }
}

impl StepReport {
    fn new(
        step: &'static str,
        status: Status,
        changes: Vec<Change>,
        message: Option<String>,
    ) -> Self {
        Self {
            step,
            status,
            changes,
            message,
        }
    }
}

impl NodeRun<'_> {
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
            &describe(&r),
        );
        self.report.steps.push(r);
        if lost {
            self.report.unreachable = Some(format!("{step}: {msg}"));
        } else if self.report.unreachable.is_none() {
            self.report.failed = Some(format!("{step}: {msg}"));
        }
    }
}

/// check → apply → re-check for one node.
async fn converge(
    inv: &Inventory,
    run: &mut NodeRun<'_>,
    desired: &Desired,
    store: &ArtifactStore,
    opts: &Options,
) {
    let progress = opts.progress.as_ref();
    let all = steps::node_steps();
    let mut pending: Vec<&'static str> = Vec::new();
    for step in &all {
        let (Some(facts), Some(t)) = (run.facts.clone(), run.transport.clone()) else {
            return;
        };
        let cx = NodeCx {
            inv,
            node: run.node,
            facts: &facts,
            desired,
            pending: &pending,
        };
        let report = match step.check(&cx) {
            Check::Skip(why) => StepReport::new(step.name(), Status::Skipped, vec![], Some(why)),
            Check::Blocked(why) => {
                return run.step_failed(progress, step.name(), vec![], why, false);
            }
            Check::Changes(c) if c.is_empty() => StepReport::new(step.name(), Status::Ok, c, None),
            Check::Changes(changes) => {
                pending.push(step.name());
                if opts.mode == Mode::Apply {
                    progress.event(&run.node.name, step.name(), "applying", "");
                    let cx = NodeCx {
                        inv,
                        node: run.node,
                        facts: &facts,
                        desired,
                        pending: &pending,
                    };
                    match step.apply(&cx, t.as_ref(), store, &changes).await {
                        Ok(Applied::Done) => {}
                        Ok(Applied::Rebooting) => {
                            if let Err(msg) = wait_for_reboot(run, &facts.boot_id, opts).await {
                                return run.step_failed(progress, step.name(), changes, msg, false);
                            }
                        }
                        Err(e) => {
                            let lost =
                                matches!(&e, StepError::Transport(te) if te.is_unreachable());
                            return run.step_failed(
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
        progress.event(
            &run.node.name,
            report.step,
            status_word(report.status),
            &describe(&report),
        );
        run.report.steps.push(report);
    }

    // Re-check: gather facts once more and demand that nothing is left to do.
    if opts.mode != Mode::Apply || pending.is_empty() {
        return;
    }
    let Some(t) = run.transport.clone() else {
        return;
    };
    let f = match gather(t.as_ref(), run.node.ssh.sudo).await {
        Ok(f) => f,
        Err(e) => return run.fail(progress, format!("re-checking after apply: {e}")),
    };
    for step in &all {
        let cx = NodeCx {
            inv,
            node: run.node,
            facts: &f,
            desired,
            pending: &[],
        };
        let Check::Changes(left) = step.check(&cx) else {
            continue;
        };
        if left.is_empty() {
            continue;
        }
        let what: Vec<String> = left
            .iter()
            .map(|c| format!("{}: {} → {}", c.what, c.before, c.after))
            .collect();
        let msg = format!("did not converge: {}", what.join("; "));
        progress.event(&run.node.name, step.name(), "FAILED", &msg);
        if let Some(r) = run.report.steps.iter_mut().find(|r| r.step == step.name()) {
            r.status = Status::Failed;
            r.message = Some(msg.clone());
        }
        run.report.failed = Some(format!("{}: {msg}", step.name()));
    }
    run.facts = Some(f);
}

/// Reconnects after a reboot and gathers facts from the new boot.
async fn wait_for_reboot(
    run: &mut NodeRun<'_>,
    old_boot: &str,
    opts: &Options,
) -> Result<(), String> {
    if let Some(t) = run.transport.take() {
        run.round_trips_before += t.round_trips();
    }
    opts.progress.event(
        &run.node.name,
        "reboot",
        "waiting",
        "for the node to come back",
    );
    let deadline = Instant::now() + opts.wait;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = match opts.connector.connect(run.node).await {
            Ok(t) => t,
            Err(e) => {
                last = error_chain(&e);
                continue;
            }
        };
        match gather(t.as_ref(), run.node.ssh.sudo).await {
            Ok(f) if f.boot_id != old_boot => {
                run.facts = Some(f);
                run.transport = Some(t);
                return Ok(());
            }
            Ok(_) => last = "still the old boot".into(),
            Err(e) => last = e,
        }
        run.round_trips_before += t.round_trips();
    }
    Err(format!(
        "the node did not come back within {} s after the reboot ({last})",
        opts.wait.as_secs()
    ))
}

/// Writes the rewritten admin kubeconfig into the state directory.
fn kubeconfig_step(inv: &Inventory, admin: Option<&Secret>, mode: Mode) -> StepReport {
    let mut report = StepReport {
        step: "kubeconfig",
        status: Status::Ok,
        changes: vec![],
        message: None,
    };
    let path = state::kubeconfig_path(inv);
    let Some(admin) = admin else {
        report.status = Status::Changed;
        report.changes.push(Change::new(
            path.display().to_string(),
            "absent",
            "fetched from the first server",
        ));
        if mode == Mode::Apply {
            report.status = Status::Failed;
            report.message = Some("the server has not written /etc/rancher/k3s/k3s.yaml".into());
        }
        return report;
    };
    let wanted = match kubeconfig::rewrite(admin.expose(), &inv.cluster.name, &render::api_url(inv))
    {
        Ok(k) => k,
        Err(e) => {
            report.status = Status::Failed;
            report.message = Some(format!("server's k3s.yaml: {}", error_chain(&e)));
            return report;
        }
    };
    let current = std::fs::read_to_string(&path).ok();
    if current.as_deref() == Some(wanted.as_str()) {
        return report;
    }
    report.status = Status::Changed;
    report.changes.push(Change::new(
        path.display().to_string(),
        if current.is_some() {
            "outdated"
        } else {
            "absent"
        },
        format!("context {} → {}", inv.cluster.name, render::api_url(inv)),
    ));
    if mode == Mode::Apply
        && let Err(e) = state::write_private(&path, wanted.as_bytes())
    {
        report.status = Status::Failed;
        report.message = Some(error_chain(&e));
    }
    report
}

/// Waits for every converged node to be Ready in the API.
async fn readiness(inv: &Inventory, runs: &mut [NodeRun<'_>], opts: &Options) {
    use k8s_openapi::api::core::v1::Node as KNode;
    let path = state::kubeconfig_path(inv);
    let client = match kube_client(&path).await {
        Ok(c) => c,
        Err(e) => {
            for r in runs.iter_mut().filter(|r| r.alive()) {
                r.report.steps.push(StepReport {
                    step: "node-ready",
                    status: Status::Failed,
                    changes: vec![],
                    message: Some(format!("cannot reach the API: {e}")),
                });
            }
            return;
        }
    };
    let api: kube::Api<KNode> = kube::Api::all(client);
    let deadline = Instant::now() + opts.wait;
    let mut ready: BTreeMap<String, bool> = BTreeMap::new();
    let mut last_err = String::new();
    loop {
        match api.list(&Default::default()).await {
            Ok(list) => {
                ready = list
                    .items
                    .iter()
                    .map(|n| {
                        let ok = n
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            });
                        (n.metadata.name.clone().unwrap_or_default(), ok)
                    })
                    .collect();
            }
            Err(e) => last_err = error_chain(&e),
        }
        let waiting = runs
            .iter()
            .filter(|r| r.alive())
            .any(|r| !ready.get(&r.node.name).copied().unwrap_or(false));
        if !waiting || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for r in runs.iter_mut().filter(|r| r.alive()) {
        let ok = ready.get(&r.node.name).copied().unwrap_or(false);
        let report = StepReport {
            step: "node-ready",
            status: if ok { Status::Ok } else { Status::Failed },
            changes: vec![],
            message: (!ok).then(|| {
                if last_err.is_empty() {
                    format!(
                        "node {} not Ready in the API after {} s",
                        r.node.name,
                        opts.wait.as_secs()
                    )
                } else {
                    format!("node {} not Ready ({last_err})", r.node.name)
                }
            }),
        };
        opts.progress.event(
            &r.node.name,
            report.step,
            status_word(report.status),
            &describe(&report),
        );
        r.report.steps.push(report);
    }
}

pub async fn kube_client(path: &std::path::Path) -> Result<kube::Client, String> {
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| error_chain(&e))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| error_chain(&e))?;
    kube::Client::try_from(cfg).map_err(|e| error_chain(&e))
}
