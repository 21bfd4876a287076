//! The relay phases around the node rollout (see [`crate::relay`]).
//! `relay` chooses one seed per arch whose nodes need K3s; in apply it
//! stages K3s and the agent on the seed (the only upload of them) and
//! starts the seed's transient server; then each node's steps know where
//! their copies come from. `relay-end` stops the servers and removes the
//! staged copies, whatever the rollout did. A seed that cannot serve is
//! reported, and its arch's nodes get their copies from the controller.

use super::{Phase, Selected};
use crate::artifacts::{ArtifactError, Kind};
use crate::error_chain;
use crate::facts::paths;
use crate::relay::{self, ArchRelay, Artifact, Need, Share, Source};
use crate::report::{Event, Stage, Topic};
use crate::runner::error::RunError;
use crate::runner::run::Run;
use crate::transport::TransportError;
use crate::write::Writer;

pub struct Relay;

/// What every alive node needs, in inventory order.
fn needs(run: &Run<'_>) -> Vec<Need> {
    let mut out = Vec::new();
    for i in run.alive(None) {
        let r = &run.nodes[i];
        let (Some(facts), Some(d)) = (&r.facts, run.desired.get(&r.node.name)) else {
            continue;
        };
        let Ok(arch) = facts.arch.clone() else {
            continue;
        };
        let agent = match &d.agent {
            Some(Ok(b)) => Some(facts.file_sha(paths::HEALTH_AGENT_BIN) != Some(&b.sha256)),
            _ => None,
        };
        out.push(Need {
            node: r.node.name.clone(),
            arch,
            k3s: facts.file_sha(paths::K3S_BIN) != Some(d.binary_sha256.as_str()),
            agent: agent.unwrap_or(false),
            images: (d.airgap.as_ref()).is_some_and(|a| facts.file_sha(&a.path) != Some(&a.sha256)),
            agent_available: agent.is_some(),
        });
    }
    out
}

/// Where the seed serves from once it does (`None` in a plan).
struct Served<'a> {
    share: &'a Share,
    ip: std::net::IpAddr,
    port: u16,
}

/// Sets each node's sources for one arch's relay.
fn mark(run: &mut Run<'_>, plan: &ArchRelay, served: Option<&Served<'_>>) {
    let staged = |a: Artifact| Source::Staged {
        path: served.map(|s| s.share.staged(a)),
    };
    let fetched = |a: Artifact| Source::Seed {
        seed: plan.seed.clone(),
        url: served.map(|s| s.share.url(s.ip, s.port, a)),
    };
    fn from(d: &mut crate::step::Desired, a: Artifact) -> &mut Source {
        match a {
            Artifact::K3s => &mut d.k3s_from,
            Artifact::Agent => &mut d.agent_from,
            Artifact::AirgapImages => &mut d.images_from,
        }
    }
    if let Some(d) = run.desired.get_mut(&plan.seed) {
        for &a in &plan.staged {
            *from(d, a) = staged(a);
        }
    }
    let fetching = [
        (&plan.k3s, Artifact::K3s),
        (&plan.agent, Artifact::Agent),
        (&plan.images, Artifact::AirgapImages),
    ];
    for (names, a) in fetching {
        for name in names {
            if let Some(d) = run.desired.get_mut(name) {
                *from(d, a) = fetched(a);
            }
        }
    }
}

fn event(run: &Run<'_>, subject: &str, stage: Stage<'_>, detail: &str) {
    run.opts.progress.event(&Event {
        subject,
        topic: Topic::Relay,
        stage,
        detail,
    });
}

/// "node2, node3 fetch K3s from it (…)", for the run's output.
fn describe(plan: &ArchRelay) -> String {
    let parts: Vec<String> = [
        (&plan.k3s, "K3s"),
        (&plan.agent, "the agent"),
        (&plan.images, "K3s's images"),
    ]
    .into_iter()
    .filter(|(names, _)| !names.is_empty())
    .enumerate()
    .map(|(i, (names, what))| match i {
        0 => format!("{} fetch {what} from it", names.join(", ")),
        _ => format!("{} {what}", names.join(", ")),
    })
    .collect();
    format!("seed for {}: {}", plan.arch, parts.join(", "))
}

/// Why a seed cannot serve its arch's artifacts.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("no connection")]
    NoConnection,
    #[error("no desired state")]
    NoDesired,
    #[error("no agent binary to serve with")]
    NoAgent,
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("SSH_CONNECTION names no address")]
    NoAddress,
    #[error("the share server did not start (exit {status}): {stderr}")]
    NotStarted { status: i32, stderr: String },
}

/// Stages the artifacts on the seed and starts its server: `(ip, port)`.
/// The addresses of the nodes that fetch from `plan`'s seed (their facts'
/// own addresses): the only peers its server answers.
fn fetchers(run: &Run<'_>, plan: &ArchRelay) -> Vec<std::net::IpAddr> {
    let names: std::collections::BTreeSet<&String> = plan
        .k3s
        .iter()
        .chain(&plan.agent)
        .chain(&plan.images)
        .collect();
    let mut out: Vec<std::net::IpAddr> = (run.nodes.iter())
        .filter(|r| names.contains(&r.node.name))
        .filter_map(|r| r.facts.as_ref())
        .flat_map(|f| f.addresses.iter().filter_map(|a| a.parse().ok()))
        .collect();
    out.sort();
    out.dedup();
    out
}

async fn serve(
    run: &Run<'_>,
    seed: usize,
    plan: &ArchRelay,
    share: &Share,
    _w: &Writer,
) -> Result<(std::net::IpAddr, u16), ServeError> {
    let arch = plan.arch;
    let node = &run.nodes[seed];
    let t = node.transport.clone().ok_or(ServeError::NoConnection)?;
    let sudo = node.node.ssh.sudo;
    let desired = run
        .desired
        .get(&node.node.name)
        .ok_or(ServeError::NoDesired)?;
    let Some(Ok(agent)) = &desired.agent else {
        return Err(ServeError::NoAgent);
    };
    for &a in &plan.staged {
        let (bytes, mode) = match a {
            Artifact::K3s => (run.store.binary(arch).await?, 0o644),
            Artifact::AirgapImages => (run.store.asset(arch, Kind::AirgapImages).await?, 0o644),
            Artifact::Agent => {
                t.put_file(&agent.bytes, &share.staged(a), 0o755, sudo)
                    .await?;
                continue;
            }
        };
        t.put_file(&bytes.bytes, &share.staged(a), mode, sudo)
            .await?;
    }
    let out = t.exec(&relay::address_command()).await?;
    let ip = relay::parse_address(&out).ok_or(ServeError::NoAddress)?;
    let cmd = relay::start_command(share, ip, &plan.staged, &fetchers(run, plan), sudo);
    let out = t.exec(&cmd).await?;
    relay::parse_port(&out)
        .map(|port| (ip, port))
        .ok_or_else(|| ServeError::NotStarted {
            status: out.status,
            stderr: crate::escape_controls(out.stderr_text().trim()).into_owned(),
        })
}

impl Relay {
    /// Stages one arch's artifacts on its seed and marks where every node's
    /// copies come from (from the controller when the seed cannot serve).
    async fn start(run: &mut Run<'_>, seed: usize, plan: &ArchRelay, w: &Writer) {
        let share = Share::new();
        match serve(run, seed, plan, &share, w).await {
            Ok((ip, port)) => {
                let served = Served {
                    share: &share,
                    ip,
                    port,
                };
                mark(run, plan, Some(&served));
                let detail = format!("{} (serving on {ip}:{port})", describe(plan));
                event(run, &plan.seed, Stage::Resolved, &detail);
            }
            Err(why) => {
                let detail = format!(
                    "cannot serve {}'s artifacts ({}): every {} node gets its copy from the controller",
                    plan.arch,
                    error_chain(&why),
                    plan.arch
                );
                event(run, &plan.seed, Stage::Warning, &detail);
            }
        }
        // Whatever was staged is removed at the end.
        run.shares.push((seed, share));
    }
}

impl Phase for Relay {
    const NAME: &'static str = "relay";
    /// Each arch's seed (its node index) and who fetches what from it.
    type Plan = Vec<(usize, ArchRelay)>;

    fn select(&self, run: &Run<'_>) -> Selected {
        if run.opts.relay {
            Selected::Cluster
        } else {
            Selected::Nothing("--no-relay")
        }
    }

    async fn plan(&self, run: &Run<'_>, _nodes: &[usize]) -> Result<Self::Plan, RunError> {
        let alive = run.alive(None);
        let seed = |name: &str| {
            alive
                .iter()
                .copied()
                .find(|&i| run.nodes[i].node.name == name)
        };
        Ok(relay::choose(&needs(run))
            .into_iter()
            .filter_map(|plan| Some((seed(&plan.seed)?, plan)))
            .collect())
    }

    async fn show(&self, run: &mut Run<'_>, plan: Self::Plan) -> Result<(), RunError> {
        for (_, plan) in plan {
            mark(run, &plan, None);
            event(run, &plan.seed, Stage::Resolved, &describe(&plan));
        }
        Ok(())
    }

    async fn apply(&self, run: &mut Run<'_>, plan: Self::Plan, w: &Writer) -> Result<(), RunError> {
        for (seed, plan) in plan {
            Self::start(run, seed, &plan, w).await;
        }
        Ok(())
    }
}

pub struct RelayEnd;

/// Stops one seed's share server and removes what it staged.
async fn stop(run: &Run<'_>, seed: usize, share: &Share, _w: &Writer) {
    let node = &run.nodes[seed];
    let Some(t) = node.transport.clone() else {
        return;
    };
    let cmd = relay::stop_command(share, node.node.ssh.sudo);
    let failed = match t.exec(&cmd).await {
        Ok(out) if out.success() => return,
        Ok(out) => format!("exit {}", out.status),
        Err(e) => error_chain(&e),
    };
    tracing::warn!(node = %node.node.name, error = %failed, "stopping the share server failed; it stops by itself");
}

impl Phase for RelayEnd {
    const NAME: &'static str = "relay-end";
    /// Nothing to decide: every seed that served stops.
    type Plan = ();

    fn select(&self, run: &Run<'_>) -> Selected {
        if run.shares.is_empty() {
            Selected::Nothing("no seed served")
        } else {
            Selected::Cluster
        }
    }

    async fn plan(&self, _run: &Run<'_>, _nodes: &[usize]) -> Result<(), RunError> {
        Ok(())
    }

    async fn show(&self, _run: &mut Run<'_>, _plan: ()) -> Result<(), RunError> {
        Ok(())
    }

    async fn apply(&self, run: &mut Run<'_>, _plan: (), w: &Writer) -> Result<(), RunError> {
        for (seed, share) in std::mem::take(&mut run.shares) {
            stop(run, seed, &share, w).await;
        }
        Ok(())
    }
}
