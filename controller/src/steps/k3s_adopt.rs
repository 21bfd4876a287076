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
use crate::facts::Facts;
use crate::step::{
    Applied, Change, Check, Desired, DesiredConfig, NodeCx, Plan, Step, StepError, StepId, StepIo,
};

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
        out
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
pub fn assess(facts: &Facts, desired: &Desired) -> Option<Assessment> {
    let (_, found) = facts.foreign.as_ref()?;
    let DesiredConfig::Known(config) = &desired.config else {
        return None;
    };
    let view = NodeView {
        hostname: &facts.hostname,
        addresses: &facts.addresses,
        running_token: facts.server_token.as_ref().map(|t| t.expose()),
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
        let refused: Vec<String> = a
            .verdict
            .dropped
            .iter()
            .filter(|(k, _)| !allowed(k))
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        if !refused.is_empty() {
            return Check::Blocked(format!(
                "{unit} was set up with settings the inventory does not carry: {}; pictl never drops them silently: \
                 add them to [cluster] {}_config (or the node's k3s_config), or list them in the node's adopt_drop",
                refused.join("; "),
                cx.node.role.as_str(),
            ));
        }
        Check::Change(AdoptPlan {
            unit: unit.clone(),
            imported: a.imported.keys.keys().cloned().collect(),
            changed: a.verdict.changed.clone(),
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
        Ok(Applied::Done)
    }
}
