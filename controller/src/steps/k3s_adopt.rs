//! Taking over K3s that pictl did not install (K3s's install.sh, most
//! often): what its unit, `.service.env` and config.yaml tell K3s is
//! imported and compared with pictl's config. A setting the inventory does
//! not carry is never dropped silently: the step is blocked, naming it,
//! until the inventory carries it or lists it in `adopt_drop`. Otherwise
//! the step moves the `K3S_*` variables out of `.service.env` (pictl's
//! config.yaml holds them now); the following steps write pictl's files,
//! and the service is restarted only if K3s would run differently.

use serde::Serialize;

use crate::adopt::{self, Assessment, NodeView};
use std::time::Duration;

use crate::facts::Facts;
use crate::inventory::Node;
use crate::step::{
    Applied, Change, Check, Desired, DesiredConfig, NodeCx, Plan, Step, StepError, StepId, StepIo,
};
use crate::transport::RemoteCommand;

pub struct K3sAdopt;

/// Take the node over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdoptPlan {
    pub unit: String,
    /// Settings imported into pictl's config.yaml.
    pub imported: Vec<String>,
    /// Settings pictl's config changes: (key, now, then); non-empty means
    /// K3s must restart to run as the inventory says.
    pub changed: Vec<(String, String, String)>,
    /// Settings pictl changes on the node without a restart: (key, now, then).
    pub live: Vec<(String, String, String)>,
    /// The kubeconfig K3s writes, chmodded when its mode changes live.
    pub kubeconfig: String,
    /// Settings dropped because the inventory's `adopt_drop` says so.
    pub dropped: Vec<String>,
    /// The `.service.env` without what moved into config.yaml.
    #[serde(skip)]
    pub env_rest: Option<crate::secret::Secret>,
}

impl Plan for AdoptPlan {
    fn changes(&self) -> Vec<Change> {
        let mut out = vec![Change::new(
            self.unit.clone(),
            "set up outside pictl (install.sh)",
            format!("managed by pictl, importing {}", list(&self.imported)),
        )];
        for key in &self.dropped {
            out.push(Change::new(key.clone(), "set", "dropped (adopt_drop)"));
        }
        for (key, now, then) in &self.changed {
            out.push(Change::new(key.clone(), now.clone(), then.clone()));
        }
        for (key, now, then) in &self.live {
            out.push(Change::new(
                key.clone(),
                now.clone(),
                format!("{then} ({} chmodded, no restart)", self.kubeconfig),
            ));
        }
        out
    }
}

/// Where the inventory carries a setting of the adopted unit.
fn carry_hint(key: &str, role: &str, a: &Assessment) -> String {
    match key {
        "tls-san" => "add to [cluster] tls_san".into(),
        "node-label" => "add to the node's labels".into(),
        "node-taint" => "add to the node's taints".into(),
        k if a.imported.unknown.iter().any(|u| u == k) => "a flag K3s does not know".into(),
        _ => format!("add to [cluster] {role}_config or the node's k3s_config"),
    }
}

/// The admin kubeconfig K3s writes: `write-kubeconfig` when set.
fn kubeconfig_path(a: &Assessment) -> String {
    match a.imported.keys.get("write-kubeconfig") {
        Some(adopt::Value::One(p)) if !p.is_empty() => p.clone(),
        _ => crate::facts::paths::KUBECONFIG.to_string(),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "no settings".into()
    } else {
        items.join(", ")
    }
}

/// What adopting a node with these facts means, when K3s on it was set up
/// outside pictl and pictl's config for it is known. Computed once per
/// gathering of facts and handed to the steps as [`NodeCx::adoption`].
pub fn assess(node: &Node, facts: &Facts, desired: &Desired) -> Option<Assessment> {
    let (_, found) = facts.foreign.as_ref()?;
    let DesiredConfig::Known(config) = &desired.config else {
        return None;
    };
    let view = NodeView {
        hostname: &facts.hostname,
        addresses: &facts.addresses,
        running_token: facts.server_token.as_ref().map(|t| t.expose()),
        carried: &desired.k3s_settings,
        labels: &node.labels,
        taints: &node.taints,
    };
    Some(adopt::assess(found, config.expose(), view))
}

impl Step for K3sAdopt {
    const ID: StepId = StepId::K3sAdopt;
    type Plan = AdoptPlan;

    fn check(&self, cx: &NodeCx<'_>) -> Check<AdoptPlan> {
        let Some((unit, _)) = &cx.facts.foreign else {
            return Check::Skip("no K3s set up outside pictl".into());
        };
        let want = cx.desired.unit_name;
        if unit != want {
            return Check::Blocked(format!(
                "the node runs {unit}, set up outside pictl, but the inventory makes it a{} {} (which runs {want}); \
                 fix the role, or uninstall K3s on the node first",
                if cx.node.role == crate::inventory::Role::Agent {
                    "n"
                } else {
                    ""
                },
                cx.node.role.as_str(),
            ));
        }
        let Some(a) = cx.adoption else {
            return Check::Skip("compared once the join token is known".into());
        };
        let allowed = |k: &str| cx.node.adopt_drop.iter().any(|d| d == k);
        let role = cx.node.role.as_str();
        let refused: Vec<String> = a
            .verdict
            .dropped
            .iter()
            .filter(|(k, _)| !allowed(k))
            .map(|(k, v)| format!("{k} = {v} ({})", carry_hint(k, role, a)))
            .collect();
        if !refused.is_empty() {
            return Check::Blocked(format!(
                "{unit} was set up with settings the inventory does not carry: {}; pictl never drops them silently: \
                 carry them as named, or list their keys in the node's adopt_drop",
                refused.join("; "),
            ));
        }
        Check::Change(AdoptPlan {
            unit: unit.clone(),
            imported: a.imported.keys.keys().cloned().collect(),
            changed: a.verdict.changed.clone(),
            live: a.verdict.live.clone(),
            kubeconfig: kubeconfig_path(a),
            dropped: a.verdict.dropped.iter().map(|(k, _)| k.clone()).collect(),
            env_rest: a.env_rest.clone(),
        })
    }

    async fn apply(
        &self,
        cx: &NodeCx<'_>,
        io: StepIo<'_>,
        plan: &AdoptPlan,
    ) -> Result<Applied, StepError> {
        if let Some(rest) = &plan.env_rest {
            let path = format!("/etc/systemd/system/{}.env", plan.unit);
            io.transport
                .put_file(rest.expose().as_bytes(), &path, 0o600, cx.node.ssh.sudo)
                .await?;
        }
        for (key, _, then) in &plan.live {
            if key == "write-kubeconfig-mode" {
                chmod(cx, io, then, &plan.kubeconfig).await?;
            }
        }
        Ok(Applied::Done)
    }
}

/// `chmod MODE PATH` on the node: the mode K3s would set when it next
/// writes its kubeconfig, set now so adoption needs no restart.
async fn chmod(cx: &NodeCx<'_>, io: StepIo<'_>, mode: &str, path: &str) -> Result<(), StepError> {
    let cmd = RemoteCommand::new("chmod")
        .args([mode, path])
        .sudo(cx.node.ssh.sudo)
        .timeout(Duration::from_secs(30));
    let out = io.transport.exec(&cmd).await?;
    StepError::check_output(&format!("chmod {mode} {path}"), out)?;
    Ok(())
}
