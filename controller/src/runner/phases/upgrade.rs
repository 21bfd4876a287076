//! Upgrades with cordon and drain. A node already in the cluster whose K3s
//! is not the run's release is cordoned, drained through the Eviction API
//! (PodDisruptionBudgets honoured, `--drain-timeout`), taken through its
//! node steps (the new binary, a restart), waited for until Ready on the
//! new version, and uncordoned; servers one at a time before the servers
//! phase, agents `--max-unavailable` at a time before the agents phase.
//! The rollout stops at the first node that fails. Nodes upgraded here are
//! left out of the servers and agents phases; nodes the API does not know
//! (not joined yet) are left to them.

use std::future::Future;
use std::time::{Duration, Instant};

use super::upgrade_rollback::{guard_plan, guarded, roll_back};
use super::{Checking, Converging, Phase, Selected, Walk};
use crate::cluster::{ClusterError, NodeState, cordons, drain, nodes};
use crate::error_chain;
use crate::inventory::Role;
use crate::kubeconfig;
use crate::render;
use crate::report::{Status, StepReport};
use crate::runner::converge::Env;
use crate::runner::error::{NodeFailure, RunError};
use crate::runner::node::NodeRun;
use crate::runner::options::Options;
use crate::runner::run::Run;
use crate::secret::Secret;
use crate::step::{Change, StepId};
use crate::write::Writer;
use k8s_openapi::api::core::v1::Node as KNode;

pub struct UpgradeServers;

/// Alive nodes of `role` whose installed K3s is not the run's release.
pub(super) fn candidates(run: &Run<'_>, role: Role) -> Vec<usize> {
    run.alive(Some(role))
        .into_iter()
        .filter(|&i| run.selected(i))
        .filter(|&i| {
            run.nodes[i]
                .facts
                .as_ref()
                .and_then(|f| f.k3s_version.as_deref())
                .is_some_and(|v| v != run.version)
        })
        .collect()
}

/// The API client: the run's, or (servers are upgraded before the
/// kubeconfig phase) one made from the first server's admin kubeconfig.
async fn client(run: &Run<'_>) -> Result<kube::Client, ClusterError> {
    if let Some(api) = &run.api {
        return api.clone();
    }
    let admin = run
        .first_server()
        .and_then(|r| r.facts.as_ref())
        .and_then(|f| f.admin_kubeconfig.clone())
        .ok_or_else(|| {
            ClusterError::NoApi(format!(
                "no API: {} without an admin kubeconfig",
                run.first_server_state()
            ))
        })?;
    let k = kubeconfig::rewrite(
        admin.expose(),
        &run.inv.cluster.name,
        &render::api_url(run.inv),
    )
    .map_err(|e| ClusterError::NoApi(format!("server's k3s.yaml: {}", error_chain(&e))))?;
    run.opts
        .api
        .client(&Secret::new(k))
        .await
        .map_err(|e| ClusterError::NoApi(format!("cannot reach the API: {}", error_chain(&e))))
}

/// What one node's upgrade needs besides the node.
pub(super) struct Cx<'a> {
    pub client: &'a kube::Client,
    pub opts: &'a Options,
    /// The release the node must be Ready on afterwards.
    pub version: &'a str,
    /// What the node is drained for (the words of its messages).
    pub work: Work,
}

/// Why a node is cordoned and drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Work {
    Upgrade,
    /// A restart that renews K3s's certificates.
    Renewal,
}

impl Work {
    fn name(self) -> &'static str {
        match self {
            Work::Upgrade => "upgrade",
            Work::Renewal => "certificate renewal",
        }
    }

    fn not_done(self) -> &'static str {
        match self {
            Work::Upgrade => "not upgraded",
            Work::Renewal => "not restarted",
        }
    }
}

pub(super) fn report(
    n: &mut NodeRun<'_>,
    opts: &Options,
    step: StepId,
    status: Status,
    change: Option<Change>,
    msg: Option<String>,
) {
    n.push(
        opts.progress.as_ref(),
        StepReport::new(step, status, change.into_iter().collect(), msg),
    );
}

/// What `plan` shows for one node: its place in the order and its drain.
async fn plan_one(n: &mut NodeRun<'_>, env: Env<'_>, cx: &Cx<'_>, order: &str) -> bool {
    let name = n.node.name.clone();
    let from = n
        .facts
        .as_ref()
        .and_then(|f| f.k3s_version.clone())
        .unwrap_or_default();
    let state = match nodes::get(cx.client, &name).await {
        Ok(Some(live)) => cordons::state(cx.client, &live).await,
        Ok(None) => return false,
        Err(e) => Err(e),
    };
    let state = match state {
        Ok(s) => s,
        Err(e) => {
            let why = error_chain(&e);
            report(n, cx.opts, StepId::Drain, Status::Failed, None, Some(why));
            return true;
        }
    };
    let before = if state.unschedulable {
        "cordoned"
    } else {
        "schedulable"
    };
    let drain = if !cx.opts.upgrade.drain {
        "not drained (--no-drain)".to_string()
    } else {
        match drain::pods_to_evict(cx.client, &name).await {
            Ok(p) => drain::preview(&p, cx.opts.upgrade.drain_force),
            Err(e) => format!("drained (pods unknown: {})", error_chain(&e)),
        }
    };
    let after = if state.unschedulable && !state.cordoned_by_pictl {
        format!("{drain}, upgraded, left cordoned (cordoned by someone else)")
    } else {
        format!("cordoned, {drain}, upgraded, uncordoned")
    };
    let mut changes = vec![
        Change::new("k3s version", from, format!("{} ({order})", cx.version)),
        Change::new(format!("node {name}"), before, after),
    ];
    if let Some(guard) = guard_plan(n, cx.version) {
        changes.extend(guard.changes());
    }
    n.push(
        cx.opts.progress.as_ref(),
        StepReport::new(StepId::Drain, Status::Changed, changes, None),
    );
    Checking.steps(n, env).await;
    true
}

/// Polls the Node until it is Ready on `cx.version` (API errors while
/// the server restarts are waited out); the Node as it then is.
pub(super) async fn wait_ready(
    cx: &Cx<'_>,
    name: &str,
    version: &str,
) -> Result<KNode, ClusterError> {
    let deadline = Instant::now() + cx.opts.wait;
    loop {
        let last = match nodes::get(cx.client, name).await {
            Ok(Some(live)) => {
                let s = NodeState::of(&live);
                if s.ready && s.kubelet_version == version {
                    return Ok(live);
                }
                format!("Ready={} on {}", s.ready, s.kubelet_version)
            }
            Ok(None) => "no Node object".into(),
            Err(e) => error_chain(&e),
        };
        if Instant::now() > deadline {
            return Err(ClusterError::Timeout(format!(
                "node {name} not Ready on {version} after {} s ({last})",
                cx.opts.wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Cordon, drain, upgrade, wait Ready, uncordon. False when the API does
/// not know the node (it is left to the servers and agents phases).
async fn upgrade_one(n: &mut NodeRun<'_>, env: Env<'_>, cx: &Cx<'_>, w: &Writer) -> bool {
    let name = n.node.name.clone();
    let live = match nodes::get(cx.client, &name).await {
        Ok(Some(live)) => live,
        Ok(None) => return false,
        Err(e) => {
            fail(n, cx, format!("upgrade: {}", error_chain(&e)));
            return true;
        }
    };
    let state = match cordons::state(cx.client, &live).await {
        Ok(s) => s,
        Err(e) => {
            fail(n, cx, format!("upgrade: {}", error_chain(&e)));
            return true;
        }
    };
    if !release_verified(n, env, cx).await {
        return true;
    }
    // A node someone else cordoned stays cordoned.
    let ours = state.cordoned_by_pictl || !state.unschedulable;
    let Some(drained) = cordon_and_drain(n, cx, &live, ours, w).await else {
        return true;
    };
    let before = if state.unschedulable {
        "cordoned"
    } else {
        "schedulable"
    };
    let change = Change::new(
        format!("node {name}"),
        before,
        format!("cordoned, {drained}"),
    );
    report(
        n,
        cx.opts,
        StepId::Drain,
        Status::Changed,
        Some(change),
        None,
    );
    let guard = match guard_plan(n, cx.version) {
        Some(plan) => match guarded(n, cx, &plan, ours, w).await {
            Some(taken) => Some(taken),
            None => return true,
        },
        None => None,
    };
    let t = n.transport.clone();
    Converging(w).steps(n, env).await;
    let outcome = if n.alive() {
        wait_ready(cx, &name, cx.version)
            .await
            .map_err(|e| error_chain(&e))
    } else {
        Err(n.report.failed.clone().unwrap_or_default())
    };
    match (outcome, guard, t) {
        (Ok(upgraded), _, _) if ours => uncordon_after(n, cx, &upgraded, w).await,
        (Ok(_), _, _) => {}
        (Err(why), Some(taken), Some(t)) => {
            roll_back(n, cx, t.as_ref(), &taken, &why, ours, w).await
        }
        (Err(why), _, _) => fail(
            n,
            cx,
            format!("{why}; left cordoned, the next run finishes it"),
        ),
    }
    true
}

pub(super) fn fail(n: &mut NodeRun<'_>, cx: &Cx<'_>, msg: String) {
    n.fail(cx.opts.progress.as_ref(), NodeFailure::Failed(msg));
}

/// The release is fetched and verified before the node is disturbed: a
/// bad mirror must not leave nodes drained for nothing. False: the node failed.
async fn release_verified(n: &mut NodeRun<'_>, env: Env<'_>, cx: &Cx<'_>) -> bool {
    let Some(arch) = n.facts.as_ref().and_then(|f| f.arch.clone().ok()) else {
        return true;
    };
    let Err(e) = env.store.binary(arch).await else {
        return true;
    };
    let msg = format!("{}; node not cordoned", error_chain(&e));
    report(
        n,
        cx.opts,
        StepId::K3sBinary,
        Status::Failed,
        None,
        Some(msg.clone()),
    );
    fail(n, cx, msg);
    false
}

/// Cordons (unless already cordoned) and drains (unless `--no-drain`); what
/// was done, or `None` when the node failed (uncordoned again if it was
/// pictl's to cordon).
pub(super) async fn cordon_and_drain(
    n: &mut NodeRun<'_>,
    cx: &Cx<'_>,
    live: &KNode,
    ours: bool,
    w: &Writer,
) -> Option<String> {
    let name = n.node.name.clone();
    let mut live = live.clone();
    if !NodeState::of(&live).unschedulable {
        match drain::cordon(cx.client, &live, w).await {
            Ok(cordoned) => live = cordoned,
            Err(e) => {
                fail(n, cx, format!("{}: {}", cx.work.name(), error_chain(&e)));
                return None;
            }
        }
    }
    if !cx.opts.upgrade.drain {
        return Some("not drained (--no-drain)".to_string());
    }
    let (timeout, force) = (cx.opts.upgrade.drain_timeout, cx.opts.upgrade.drain_force);
    let e = match drain::drain(cx.client, &name, timeout, force, w).await {
        Ok(p) => return Some(format!("drained ({} pods evicted)", p.len())),
        Err(e) => e,
    };
    let mut msg = error_chain(&e);
    match ours.then_some(drain::uncordon(cx.client, &live, w).await) {
        Some(Err(u)) => msg.push_str(&format!("; uncordoning it failed: {}", error_chain(&u))),
        Some(Ok(_)) => msg.push_str(&format!("; node uncordoned and {}", cx.work.not_done())),
        None => msg.push_str(&format!("; node {}", cx.work.not_done())),
    }
    report(
        n,
        cx.opts,
        StepId::Drain,
        Status::Failed,
        None,
        Some(msg.clone()),
    );
    fail(n, cx, msg);
    None
}

/// Uncordons an upgraded node pictl cordoned, as a change of its own.
pub(super) async fn uncordon_after(n: &mut NodeRun<'_>, cx: &Cx<'_>, live: &KNode, w: &Writer) {
    let name = n.node.name.clone();
    match drain::uncordon(cx.client, live, w).await {
        Ok(_) => {
            let change = Change::new(format!("node {name}"), "cordoned", "schedulable");
            report(
                n,
                cx.opts,
                StepId::Uncordon,
                Status::Changed,
                Some(change),
                None,
            );
        }
        Err(e) => fail(n, cx, error_chain(&e)),
    }
}

/// Fails `nodes` because the rollout stopped at `first`.
pub(super) fn stop_after(run: &mut Run<'_>, nodes: &[usize], first: &str) {
    let progress = run.opts.progress.clone();
    for &i in nodes {
        let msg = format!("not upgraded: the upgrade of {first} failed before it");
        run.nodes[i].fail(progress.as_ref(), NodeFailure::Failed(msg));
    }
}

/// What an upgrade phase found: its candidates and the API to drain with.
pub struct UpgradePlan {
    nodes: Vec<usize>,
    client: Result<kube::Client, ClusterError>,
}

pub(super) async fn plan(run: &Run<'_>, nodes: &[usize]) -> UpgradePlan {
    UpgradePlan {
        nodes: nodes.to_vec(),
        client: client(run).await,
    }
}

/// The API, or the candidates failed with why; `None` also when
/// `--no-drain` lets the servers and agents phases upgrade without it.
pub(super) fn client_or_fail(
    run: &mut Run<'_>,
    plan: UpgradePlan,
) -> Option<(kube::Client, Vec<usize>)> {
    match plan.client {
        Ok(c) => Some((keep(run, c), plan.nodes)),
        Err(why) if !run.opts.upgrade.drain => {
            tracing::warn!("upgrade without cordon and drain: {}", error_chain(&why));
            None
        }
        Err(why) => {
            let why = error_chain(&why);
            let progress = run.opts.progress.clone();
            for &i in &plan.nodes {
                let msg = format!(
                    "cannot drain before upgrading ({why}); --no-drain upgrades without the API"
                );
                run.nodes[i].fail(progress.as_ref(), NodeFailure::Failed(msg));
            }
            None
        }
    }
}

/// The run's API client from now on (the kubeconfig phase keeps it): the
/// client is built once a run.
fn keep(run: &mut Run<'_>, client: kube::Client) -> kube::Client {
    run.api.get_or_insert_with(|| Ok(client.clone()));
    client
}

/// `pictl plan` without an API: the upgrade is left to the node phases.
pub(super) fn client_or_warn(
    run: &mut Run<'_>,
    plan: UpgradePlan,
) -> Option<(kube::Client, Vec<usize>)> {
    match plan.client {
        Ok(c) => Some((keep(run, c), plan.nodes)),
        Err(why) => {
            tracing::warn!("upgrade without cordon and drain: {}", error_chain(&why));
            None
        }
    }
}

/// How one node goes through its upgrade: shown, or carried out.
pub(super) trait Upgrade: Walk {
    /// False when the API does not know the node.
    fn one(
        &self,
        n: &mut NodeRun<'_>,
        env: Env<'_>,
        cx: &Cx<'_>,
        order: &str,
    ) -> impl Future<Output = bool>;
}

impl Upgrade for Checking {
    async fn one(&self, n: &mut NodeRun<'_>, env: Env<'_>, cx: &Cx<'_>, order: &str) -> bool {
        plan_one(n, env, cx, order).await
    }
}

impl Upgrade for Converging<'_> {
    async fn one(&self, n: &mut NodeRun<'_>, env: Env<'_>, cx: &Cx<'_>, _order: &str) -> bool {
        upgrade_one(n, env, cx, self.0).await
    }
}

impl UpgradeServers {
    async fn walk(run: &mut Run<'_>, client: &kube::Client, nodes: &[usize], how: &impl Upgrade) {
        let cx = Cx {
            client,
            opts: run.opts,
            version: &run.version,
            work: Work::Upgrade,
        };
        for (k, &i) in nodes.iter().enumerate() {
            let Some(desired) = run.desired.get(&run.nodes[i].node.name) else {
                continue;
            };
            let env = Env {
                desired,
                store: &run.store,
                opts: run.opts,
            };
            let order = format!("server {} of {}, one at a time", k + 1, nodes.len());
            if how.one(&mut run.nodes[i], env, &cx, &order).await {
                run.upgraded.insert(i);
            }
            if !run.nodes[i].alive() {
                let first = run.nodes[i].node.name.clone();
                stop_after(run, &nodes[k + 1..], &first);
                return;
            }
        }
    }
}

impl Phase for UpgradeServers {
    const NAME: &'static str = "upgrade-servers";
    type Plan = UpgradePlan;

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::Nodes(candidates(run, Role::Server))
    }

    async fn plan(&self, run: &Run<'_>, nodes: &[usize]) -> Result<UpgradePlan, RunError> {
        Ok(plan(run, nodes).await)
    }

    async fn show(&self, run: &mut Run<'_>, plan: UpgradePlan) -> Result<(), RunError> {
        if let Some((client, nodes)) = client_or_warn(run, plan) {
            Self::walk(run, &client, &nodes, &Checking).await;
        }
        Ok(())
    }

    async fn apply(
        &self,
        run: &mut Run<'_>,
        plan: UpgradePlan,
        w: &Writer,
    ) -> Result<(), RunError> {
        if let Some((client, nodes)) = client_or_fail(run, plan) {
            Self::walk(run, &client, &nodes, &Converging(w)).await;
        }
        Ok(())
    }
}
