//! Certificate renewal: K3s renews a leaf certificate only when it starts
//! within its renewal window (see [`crate::facts::certs`]), so a node whose
//! certificates are inside the window, and that nothing else restarted in
//! this run, is restarted: one node at a time, servers first, each
//! cordoned, drained and uncordoned as in an upgrade, and its certificates
//! read again after the restart (a K3s that did not renew fails the node
//! by name). The rollout stops at the first node that fails. It runs
//! before the kubeconfig phase: a server's renewal renews its admin
//! kubeconfig, which the same run then writes to the controller.

use super::upgrade::{
    Cx, UpgradePlan, Work, client_or_fail, client_or_warn, cordon_and_drain, fail, report,
    uncordon_after, wait_ready,
};
use super::{Phase, Selected};
use crate::cluster::{cordons, drain, nodes};
use crate::error_chain;
use crate::facts::certs::{self, CertEnd};
use crate::inventory::Role;
use crate::report::{Status, StepReport};
use crate::runner::error::{NodeFailure, RunError};
use crate::runner::node::NodeRun;
use crate::runner::run::Run;
use crate::secret::Secret;
use crate::step::StepError;
use crate::step::{Change, StepId};
use crate::transport::{RemoteCommand, Transport};
use crate::write::Writer;

pub struct RenewCertificates;

/// The restart that renews, then the certificates as K3s left them.
/// `$1` the unit, `$2` the data dir. The unit is Type=notify: the restart
/// returns once K3s is up (it renews before it notifies), or fails.
pub(crate) const RENEW: &str = concat!(
    r#"set -eu
dd=$2
e() { printf '%s=%s\000' "$1" "$2"; }
systemctl restart "$1"
if [ "$1" = k3s ] && [ -f /etc/rancher/k3s/k3s.yaml ]; then e kubeconfig "$(cat /etc/rancher/k3s/k3s.yaml)"; fi
"#,
    certs::cert_records!()
);

/// A node's certificate inside K3s's window, when nothing in this run
/// restarted its K3s (a start renews them) and its K3s runs.
fn due(run: &Run<'_>, i: usize) -> Option<CertEnd> {
    let n = &run.nodes[i];
    let f = n.facts.as_ref()?;
    let unit = unit_of(n.node.role);
    let restarted = n
        .report
        .steps
        .iter()
        .any(|s| s.step == StepId::K3sService && s.status == Status::Changed);
    if run.upgraded.contains(&i) || restarted || !f.unit(&format!("{unit}.service")).active {
        return None;
    }
    f.first_certificate_end()
        .filter(|c| c.in_window(f.node_now))
        .cloned()
}

fn unit_of(role: Role) -> &'static str {
    match role {
        Role::Server => "k3s",
        Role::Agent => "k3s-agent",
    }
}

/// The nodes to renew, servers first, each with its first certificate,
/// and the API to drain them with.
pub struct RenewPlan {
    nodes: Vec<(usize, CertEnd)>,
    api: UpgradePlan,
}

impl Phase for RenewCertificates {
    const NAME: &'static str = "renew-certificates";
    type Plan = RenewPlan;

    fn select(&self, run: &Run<'_>) -> Selected {
        let due = run
            .alive(None)
            .into_iter()
            .filter(|&i| run.selected(i) && due(run, i).is_some());
        Selected::Nodes(due.collect())
    }

    async fn plan(&self, run: &Run<'_>, nodes: &[usize]) -> Result<RenewPlan, RunError> {
        let mut due: Vec<(usize, CertEnd)> = nodes
            .iter()
            .filter_map(|&i| Some((i, due(run, i)?)))
            .collect();
        due.sort_by_key(|(i, _)| (run.nodes[*i].node.role != Role::Server, *i));
        let api = super::upgrade::plan(run, nodes).await;
        Ok(RenewPlan { nodes: due, api })
    }

    async fn show(&self, run: &mut Run<'_>, plan: RenewPlan) -> Result<(), RunError> {
        let Some((client, _)) = client_or_warn(run, plan.api) else {
            return Ok(());
        };
        let total = plan.nodes.len();
        for (k, (i, cert)) in plan.nodes.into_iter().enumerate() {
            let order = format!("node {} of {total}, servers first, one at a time", k + 1);
            let progress = run.opts.progress.clone();
            let force = run.opts.upgrade.drain_force;
            let n = &mut run.nodes[i];
            let now = n.facts.as_ref().map_or(0, |f| f.node_now);
            let drained = match drain::pods_to_evict(&client, &n.node.name).await {
                Ok(p) => drain::preview(&p, force),
                Err(e) => format!("drained (pods unknown: {})", error_chain(&e)),
            };
            let changes = vec![
                Change::new(
                    "certificates",
                    cert.describe(now),
                    format!("renewed by a restart of K3s ({order})"),
                ),
                Change::new(
                    format!("node {}", n.node.name),
                    "schedulable",
                    format!("cordoned, {drained}, restarted, uncordoned"),
                ),
            ];
            let step = StepReport::new(StepId::Certificates, Status::Changed, changes, None);
            n.push(progress.as_ref(), step);
        }
        Ok(())
    }

    async fn apply(&self, run: &mut Run<'_>, plan: RenewPlan, w: &Writer) -> Result<(), RunError> {
        let Some((client, _)) = client_or_fail(run, plan.api) else {
            return Ok(());
        };
        for (k, (i, cert)) in plan.nodes.iter().enumerate() {
            // Ready again on the release it runs.
            let version = (run.nodes[*i].facts.as_ref())
                .and_then(|f| f.k3s_version.clone())
                .unwrap_or_default();
            let cx = Cx {
                client: &client,
                opts: run.opts,
                version: &version,
                work: Work::Renewal,
            };
            renew_one(&mut run.nodes[*i], &cx, cert, w).await;
            if !run.nodes[*i].alive() {
                let first = run.nodes[*i].node.name.clone();
                stop_after(run, &plan.nodes[k + 1..], &first);
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Fails the nodes left: the renewal of `first` failed before them.
fn stop_after(run: &mut Run<'_>, left: &[(usize, CertEnd)], first: &str) {
    let progress = run.opts.progress.clone();
    for (i, _) in left {
        let msg = format!("certificates not renewed: the renewal of {first} failed before it");
        run.nodes[*i].fail(progress.as_ref(), NodeFailure::Failed(msg));
    }
}

/// Cordon, drain, restart, wait Ready, check the certificates, uncordon.
async fn renew_one(n: &mut NodeRun<'_>, cx: &Cx<'_>, before: &CertEnd, w: &Writer) {
    let name = n.node.name.clone();
    let live = match nodes::get(cx.client, &name).await {
        Ok(Some(live)) => live,
        Ok(None) => return fail(n, cx, format!("no Node {name} in the API to drain")),
        Err(e) => return fail(n, cx, format!("certificates: {}", error_chain(&e))),
    };
    let state = match cordons::state(cx.client, &live).await {
        Ok(s) => s,
        Err(e) => return fail(n, cx, format!("certificates: {}", error_chain(&e))),
    };
    // A node someone else cordoned stays cordoned.
    let ours = state.cordoned_by_pictl || !state.unschedulable;
    let Some(drained) = cordon_and_drain(n, cx, &live, ours, w).await else {
        return;
    };
    let change = Change::new(
        format!("node {name}"),
        "schedulable",
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
    let Some(after) = restarted(n, cx, w).await else {
        return;
    };
    let now = n.facts.as_ref().map_or(0, |f| f.node_now);
    let ready = wait_ready(cx, &name, cx.version).await;
    let upgraded = match ready {
        Ok(live) => live,
        Err(e) => return fail(n, cx, format!("{}; left cordoned", error_chain(&e))),
    };
    let renewed = certs::first_end(&after).filter(|c| !c.in_window(now));
    let Some(renewed) = renewed else {
        let still = certs::first_end(&after).map_or("none read".into(), |c| c.describe(now));
        let msg = format!(
            "K3s restarted but did not renew its certificates ({still}; it renews within {} days)",
            certs::RENEW_DAYS
        );
        if ours {
            uncordon_after(n, cx, &upgraded, w).await;
        }
        return fail(n, cx, msg);
    };
    let change = Change::new("certificates", before.describe(now), renewed.describe(now));
    report(
        n,
        cx.opts,
        StepId::Certificates,
        Status::Changed,
        Some(change),
        None,
    );
    if ours {
        uncordon_after(n, cx, &upgraded, w).await;
    }
}

/// Restarts K3s on the node; the certificates it then has, or `None` when
/// the node failed (left cordoned).
async fn restarted(n: &mut NodeRun<'_>, cx: &Cx<'_>, w: &Writer) -> Option<Vec<CertEnd>> {
    let (Some(t), Some(f)) = (n.transport.clone(), n.facts.as_ref()) else {
        fail(n, cx, "no connection to restart K3s on".into());
        return None;
    };
    let dir = crate::data_dir::on_node(f);
    let unit = unit_of(n.node.role);
    match restart(t.as_ref(), n.node.ssh.sudo, unit, &dir, cx.opts.wait, w).await {
        Ok(Restarted { certs, kubeconfig }) => {
            if let Some(f) = n.facts.as_mut() {
                f.certificates = certs.clone();
                // The admin kubeconfig a server's start renewed, for the kubeconfig phase.
                f.admin_kubeconfig = kubeconfig.or(f.admin_kubeconfig.take());
            }
            Some(certs)
        }
        Err(e) => {
            fail(n, cx, format!("{}; left cordoned", error_chain(&e)));
            None
        }
    }
}

/// What a node has after its restart.
pub struct Restarted {
    pub certs: Vec<CertEnd>,
    /// A server's admin kubeconfig (its client certificate renewed too).
    pub kubeconfig: Option<Secret>,
}

/// Restarts `unit` and reads the certificates under `data_dir` again.
pub async fn restart(
    t: &dyn Transport,
    sudo: bool,
    unit: &str,
    data_dir: &str,
    wait: std::time::Duration,
    _w: &Writer,
) -> Result<Restarted, StepError> {
    let cmd = RemoteCommand::script(RENEW)
        .arg(unit)
        .arg(data_dir)
        .sudo(sudo)
        .timeout(wait.max(std::time::Duration::from_secs(120)));
    let out = StepError::check_output("the restart that renews certificates", t.exec(&cmd).await?)?;
    let text = Secret::new(out.stdout_text());
    let kubeconfig = text
        .expose()
        .split('\0')
        .find_map(|r| r.trim_start_matches('\n').strip_prefix("kubeconfig="))
        .map(Secret::new);
    Ok(Restarted {
        certs: certs::parse_records(text.expose()),
        kubeconfig,
    })
}
