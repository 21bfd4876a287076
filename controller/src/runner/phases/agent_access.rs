//! `agent-access`: once the API answers, each health agent gets its own
//! least-privilege ServiceAccount and RBAC (`agent-rbac`, through the kube
//! client in [`crate::runner::agent_access`]), then its token, the cluster CA
//! and its publishing configuration on the node (the `agent-access` step,
//! run with [`converge::single`]). A plan shows both without writing; a
//! converged cluster reports nothing changed.

use std::collections::BTreeMap;

use super::{Selected, Symmetric};
use crate::inventory::AgentMetrics;
use crate::runner::agent_access;
use crate::runner::agent_metrics::{self, NodeNet};
use crate::runner::converge::{self, Env};
use crate::runner::error::RunError;
use crate::runner::report::{Status, StepReport};
use crate::runner::run::Run;
use crate::step::{Desired, StepId};
use crate::steps::{AccessFiles, AgentAccess, PodMetrics, dropin, publish_conf};
use crate::write::Writer;

/// How long the token controller may take to fill a new token Secret.
const TOKEN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct AgentAccessPhase;

/// The API server URL agents use (the one the run's kubeconfig is rewritten
/// to: the inventory's API address) and the addresses the agent's firewall
/// must allow (that address if it is an IP, and the first server's own).
fn api_endpoint(run: &Run<'_>) -> (String, Vec<String>) {
    let server = crate::render::api_url(run.inv);
    let mut addresses = vec![run.inv.api_address().to_string()];
    if let Some(facts) = run.first_server().and_then(|s| s.facts.as_ref()) {
        addresses.extend(facts.addresses.iter().cloned());
    }
    addresses.retain(|a| a.parse::<std::net::IpAddr>().is_ok());
    let mut seen = std::collections::BTreeSet::new();
    addresses.retain(|a| seen.insert(a.clone()));
    (server, addresses)
}

/// The agent unit's firewall drop-in for this run: the API server's
/// addresses, and with `[agent] metrics = "pod-network"` the cluster's pod
/// CIDRs (known from the inventory, so it is installed with the agent).
pub(super) fn agent_dropin(run: &Run<'_>) -> String {
    let (_, addresses) = api_endpoint(run);
    let peers = match run.inv.agent.metrics {
        AgentMetrics::Loopback => vec![],
        AgentMetrics::PodNetwork => run.inv.cluster.pod_cidrs_v4().unwrap_or_default(),
    };
    dropin(&addresses, &peers)
}

impl AgentAccessPhase {
    /// The API side for one node: its report, and its token once there.
    async fn rbac(
        client: &kube::Client,
        existing: &agent_access::Existing,
        node: &str,
        w: Option<&Writer>,
    ) -> (StepReport, Option<agent_access::Token>) {
        let report =
            |status, changes, why| StepReport::new(StepId::AgentRbac, status, changes, why);
        let (changes, token) = match agent_access::plan(client, existing, node).await {
            Ok(c) => c,
            Err(why) => return (report(Status::Failed, vec![], Some(why)), None),
        };
        if changes.is_empty() {
            return (report(Status::Ok, vec![], None), token);
        }
        let Some(_) = w else {
            return (report(Status::Changed, changes, None), None);
        };
        let applied = match agent_access::apply(client, node).await {
            Ok(()) => agent_access::wait_token(client, node, TOKEN_WAIT).await,
            Err(e) => Err(e),
        };
        match applied {
            Ok(token) => (report(Status::Changed, changes, None), Some(token)),
            Err(why) => (report(Status::Failed, changes, Some(why)), None),
        }
    }

    /// Every node at once (at most `--concurrency`): the RBAC and token
    /// through the API, then the files on the node, then the annotation.
    async fn run(run: &mut Run<'_>, nodes: &[usize], w: Option<&Writer>) {
        let Ok(client) = run.api().cloned() else {
            return;
        };
        let progress = run.opts.progress.clone();
        let pod = PodNetwork::read(run, &client).await;
        let names: Vec<(usize, String)> = nodes
            .iter()
            .map(|&i| (i, run.nodes[i].node.name.clone()))
            .collect();
        // A failed LIST only costs speed: each node's objects are then read by name.
        let existing = agent_access::Existing::read(&client)
            .await
            .unwrap_or_else(|why| {
                tracing::debug!(%why, "reading each node's agent objects by name");
                agent_access::Existing::default()
            });
        let sem = run.sem.clone();
        let tokens = futures::future::join_all(names.iter().map(|(_, name)| {
            let (client, sem, existing) = (&client, &sem, &existing);
            async move {
                let _permit = sem.acquire().await;
                Self::rbac(client, existing, name, w).await
            }
        }))
        .await;
        let (server, _) = api_endpoint(run);
        let mut wanted = BTreeMap::new();
        for ((i, name), (report, token)) in names.iter().zip(tokens) {
            run.nodes[*i].push(progress.as_ref(), report);
            let Some(token) = token else { continue };
            match Self::desired(run, &pod, &server, name, token) {
                Ok(Some(d)) => {
                    wanted.insert(*i, d);
                }
                Ok(None) => {}
                Err(failed) => run.nodes[*i].push(progress.as_ref(), failed),
            }
        }
        Self::converge(run, &wanted, w).await;
        Self::annotate(run, &client, &pod, &wanted, w).await;
    }

    /// What `name`'s files should be, with its listener (if any).
    fn desired(
        run: &Run<'_>,
        pod: &PodNetwork,
        server: &str,
        name: &str,
        (token, ca_pem): agent_access::Token,
    ) -> Result<Option<(Desired, Option<PodMetrics>)>, StepReport> {
        let Some(mut desired) = run.desired.get(name).cloned() else {
            return Ok(None);
        };
        let metrics = pod.for_node(name).map_err(|why| {
            StepReport::new(StepId::AgentMetrics, Status::Failed, vec![], Some(why))
        })?;
        desired.agent_access = Some(AccessFiles {
            token,
            ca_pem,
            publish_conf: publish_conf(server, name, metrics.as_ref()),
        });
        Ok(Some((desired, metrics)))
    }

    /// Converges the files of every node in `wanted`, in parallel.
    async fn converge(
        run: &mut Run<'_>,
        wanted: &BTreeMap<usize, (Desired, Option<PodMetrics>)>,
        w: Option<&Writer>,
    ) {
        let selected: Vec<usize> = wanted.keys().copied().collect();
        let (store, opts) = (&run.store, run.opts);
        let by_name: BTreeMap<String, &Desired> = wanted
            .iter()
            .map(|(i, (d, _))| (run.nodes[*i].node.name.clone(), d))
            .collect();
        super::in_parallel(&mut run.nodes, &selected, &run.sem, |node| {
            let desired = by_name[&node.node.name];
            async move {
                let env = Env {
                    desired,
                    store,
                    opts,
                };
                converge::single(node, env, &AgentAccess, w).await;
            }
        })
        .await;
    }

    /// Sets each node's annotation, once its files are in place.
    async fn annotate(
        run: &mut Run<'_>,
        client: &kube::Client,
        pod: &PodNetwork,
        wanted: &BTreeMap<usize, (Desired, Option<PodMetrics>)>,
        w: Option<&Writer>,
    ) {
        let sem = run.sem.clone();
        let work = wanted.iter().map(|(i, (_, metrics))| {
            let node = &run.nodes[*i];
            let name = node.node.name.clone();
            let last = node.report.steps.last();
            let converged =
                last.is_some_and(|r| r.step == StepId::AgentAccess && r.status != Status::Failed);
            let want = metrics.as_ref().map(|m| m.listen.to_string());
            let sem = &sem;
            async move {
                if w.is_some() && !converged {
                    let why = "the agent's files are not in place".to_string();
                    let r =
                        StepReport::new(StepId::AgentMetrics, Status::Skipped, vec![], Some(why));
                    return (*i, r);
                }
                let _permit = sem.acquire().await;
                (*i, pod.annotate(client, &name, want.as_deref(), w).await)
            }
        });
        let reports = futures::future::join_all(work).await;
        let progress = run.opts.progress.clone();
        for (i, report) in reports {
            run.nodes[i].push(progress.as_ref(), report);
        }
    }
}

/// The Nodes' pod networks as `[agent] metrics` needs them (one LIST).
struct PodNetwork {
    metrics: AgentMetrics,
    peers: Vec<ipnet::Ipv4Net>,
    nodes: Result<BTreeMap<String, NodeNet>, String>,
}

impl PodNetwork {
    async fn read(run: &Run<'_>, client: &kube::Client) -> PodNetwork {
        // The inventory's loader refused pod-network metrics without an IPv4
        // cluster-cidr; the LIST also finds annotations a loopback run removes.
        PodNetwork {
            metrics: run.inv.agent.metrics,
            peers: run.inv.cluster.pod_cidrs_v4().unwrap_or_default(),
            nodes: agent_metrics::list(client).await,
        }
    }

    /// The node's pod listener (`None`: loopback only, or no podCIDR yet:
    /// the next run adds it once K3s assigned one).
    fn for_node(&self, node: &str) -> Result<Option<PodMetrics>, String> {
        if self.metrics == AgentMetrics::Loopback {
            return Ok(None);
        }
        let nodes = self.nodes.as_ref().map_err(Clone::clone)?;
        let cidr = nodes.get(node).and_then(|n| n.pod_cidr);
        Ok(cidr
            .and_then(agent_metrics::listen_address)
            .map(|listen| PodMetrics {
                listen,
                peers: self.peers.clone(),
            }))
    }

    /// Sets the Node's annotation to `want` (written only with `w`).
    async fn annotate(
        &self,
        client: &kube::Client,
        node: &str,
        want: Option<&str>,
        w: Option<&Writer>,
    ) -> StepReport {
        let report =
            |status, changes, why| StepReport::new(StepId::AgentMetrics, status, changes, why);
        let now = match &self.nodes {
            Ok(nodes) => nodes.get(node).and_then(|n| n.annotation.as_deref()),
            Err(why) => return report(Status::Failed, vec![], Some(why.clone())),
        };
        let Some(change) = agent_metrics::plan(now, want) else {
            return report(Status::Ok, vec![], None);
        };
        let failed = match w {
            Some(_) => agent_metrics::write(client, node, want).await.err(),
            None => None,
        };
        let status = if failed.is_some() {
            Status::Failed
        } else {
            Status::Changed
        };
        report(status, vec![change], failed)
    }
}

impl Symmetric for AgentAccessPhase {
    const NAME: &'static str = "agent-access";

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::with_api(run, |i| {
            let d = run.desired.get(&run.nodes[i].node.name);
            d.is_some_and(|d| matches!(d.agent, Some(Ok(_))))
        })
    }

    async fn work(
        &self,
        run: &mut Run<'_>,
        nodes: &[usize],
        w: Option<&Writer>,
    ) -> Result<(), RunError> {
        Self::run(run, nodes, w).await;
        Ok(())
    }
}
