//! A server's upgrade that can be undone: its guard taken once it is
//! drained (see [`super::upgrade_guard`]), and the rollback when the new
//! release does not come up Ready within `--wait`.

use super::upgrade::{Cx, fail, report, wait_ready};
use super::upgrade_guard::{self, GuardPlan};
use crate::cluster::{drain, nodes};
use crate::error_chain;
use crate::inventory::Role;
use crate::report::Status;
use crate::runner::error::NodeFailure;
use crate::runner::node::NodeRun;
use crate::step::{Change, StepId};
use crate::write::Writer;

/// A server's guard (its datastore snapshot and the previous release
/// kept), when it runs K3s on a datastore pictl can snapshot.
pub(super) fn guard_plan(n: &NodeRun<'_>, to: &str) -> Option<GuardPlan> {
    let f = n.facts.as_ref()?;
    if n.node.role != Role::Server || f.k3s_version.is_none() {
        return None;
    }
    Some(GuardPlan::new(
        to,
        f.datastore?,
        crate::data_dir::on_node(f),
    ))
}

/// What a guard took: where the snapshot is, and the release it kept.
pub(super) struct Taken {
    snapshot: String,
    from: String,
}

/// Takes the guard on a drained server; `None` when it failed (the node
/// is then uncordoned if pictl cordoned it, and not upgraded).
pub(super) async fn guarded(
    n: &mut NodeRun<'_>,
    cx: &Cx<'_>,
    plan: &GuardPlan,
    ours: bool,
    w: &Writer,
) -> Option<Taken> {
    let from = n.facts.as_ref().and_then(|f| f.k3s_version.clone());
    let (Some(t), Some(from)) = (n.transport.clone(), from) else {
        fail(
            n,
            cx,
            "no connection or no K3s version for the pre-upgrade snapshot".into(),
        );
        return None;
    };
    match upgrade_guard::take(t.as_ref(), n.node.ssh.sudo, plan, cx.opts.wait, w).await {
        Ok(snapshot) => {
            let change = Change::new("snapshot", "none", format!("{snapshot} on {}", n.node.name));
            report(
                n,
                cx.opts,
                StepId::Snapshot,
                Status::Changed,
                Some(change),
                None,
            );
            Some(Taken { snapshot, from })
        }
        Err(e) => {
            let mut msg = format!("no upgrade without a snapshot: {}", error_chain(&e));
            msg.push_str(&uncordon_again(cx, &n.node.name, ours, w).await);
            report(
                n,
                cx.opts,
                StepId::Snapshot,
                Status::Failed,
                None,
                Some(msg.clone()),
            );
            fail(n, cx, msg);
            None
        }
    }
}

/// Uncordons a node pictl cordoned after its upgrade did not happen; the
/// words that say so.
async fn uncordon_again(cx: &Cx<'_>, name: &str, ours: bool, w: &Writer) -> String {
    if !ours {
        return "; node left cordoned (cordoned by someone else)".into();
    }
    let live = match nodes::get(cx.client, name).await {
        Ok(Some(live)) => live,
        Ok(None) => return "; no Node object to uncordon".into(),
        Err(e) => return format!("; uncordoning it failed: {}", error_chain(&e)),
    };
    match drain::uncordon(cx.client, &live, w).await {
        Ok(_) => "; node uncordoned".into(),
        Err(e) => format!("; uncordoning it failed: {}", error_chain(&e)),
    }
}

/// The new release did not come up: the kept one is put back, K3s
/// restarted with it and waited for, and the node fails naming both
/// releases and the snapshot (the rollout stops at it).
pub(super) async fn roll_back(
    n: &mut NodeRun<'_>,
    cx: &Cx<'_>,
    t: &dyn crate::transport::Transport,
    taken: &Taken,
    why: &str,
    ours: bool,
    w: &Writer,
) {
    let name = n.node.name.clone();
    let back = match upgrade_guard::roll_back(t, n.node.ssh.sudo, cx.opts.wait, w).await {
        Ok(()) => wait_ready(cx, &name, &taken.from)
            .await
            .map_err(|e| error_chain(&e)),
        Err(e) => Err(error_chain(&e)),
    };
    let head = format!("K3s {} did not come up on {name} ({why})", cx.version);
    let msg = match back {
        Ok(_) => {
            let change = Change::new(
                "k3s version",
                cx.version,
                format!("{} (rolled back)", taken.from),
            );
            report(
                n,
                cx.opts,
                StepId::Rollback,
                Status::Changed,
                Some(change),
                None,
            );
            let after = uncordon_again(cx, &name, ours, w).await;
            format!(
                "{head}; rolled back to {}, Ready again{after}; the rollout stopped. The snapshot taken before: {} on {name}",
                taken.from, taken.snapshot
            )
        }
        Err(e) => {
            report(
                n,
                cx.opts,
                StepId::Rollback,
                Status::Failed,
                None,
                Some(e.clone()),
            );
            format!(
                "{head}; the rollback to {} failed too ({e}): the node is left cordoned, its previous release kept in {} and the snapshot taken before at {} on {name}",
                taken.from,
                upgrade_guard::PREVIOUS,
                taken.snapshot
            )
        }
    };
    n.report.failed = Some(msg.clone());
    n.fail(cx.opts.progress.as_ref(), NodeFailure::Failed(msg));
}
