//! `agent-access`: once the API answers, the admission policy confining
//! every agent's token to its Node's conditions (`agent-policy`, reported on
//! the first server: [`agent_policy`]), each health agent's own
//! least-privilege ServiceAccount and RBAC (`agent-rbac`, through the kube
//! client in [`crate::runner::agent_access`]), then its token, the cluster CA
//! and its publishing configuration on the node (the `agent-access` step,
//! run with [`converge::single`]). A plan shows both without writing; a
//! converged cluster reports nothing changed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node as KNode;

use super::{Checking, Converging, Phase, Selected, Walk};
use crate::cluster::{ClusterError, NodeList, agent_access, agent_policy};
use crate::error_chain;
use crate::inventory::{AgentMetrics, Role};
use crate::report::{Status, StepReport};
use crate::runner::agent_metrics::{self, NodeNet};
use crate::runner::converge::Env;
use crate::runner::error::RunError;
use crate::runner::run::Run;
use crate::step::{Change, Desired, StepId};
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

/// What one node's API side needs: its ServiceAccount, token and roles.
type Rbac = Result<(Vec<Change>, Option<agent_access::Token>), ClusterError>;

/// What the phase found: the pod networks, each node's RBAC, and the agent
/// objects of nodes that no longer have an agent (dropped from the
/// inventory, or `[agent] enabled = false`), to remove.
pub struct AccessPlan {
    /// The policy's changes: what it lacks while agents are enabled, what
    /// is left of it once they are disabled.
    policy: Option<Result<Vec<Change>, ClusterError>>,
    pod: PodNetwork,
    rbac: Vec<(usize, String, Rbac)>,
    retired: Vec<(String, Vec<Change>)>,
}

/// The nodes whose agent objects stay: every inventory node while agents
/// are enabled (an unreachable one keeps its token), none otherwise.
fn keep(run: &Run<'_>) -> std::collections::BTreeSet<String> {
    if !run.inv.agent.enabled {
        return Default::default();
    }
    run.inv.nodes.iter().map(|n| n.name.clone()).collect()
}

/// The agent objects of nodes that are not kept, each node's as found.
fn retired(run: &Run<'_>, existing: &agent_access::Existing) -> Vec<(String, Vec<Change>)> {
    let keep = keep(run);
    (existing.nodes().into_iter())
        .filter(|n| !keep.contains(n))
        .map(|n| {
            let found = existing.leftovers(&n);
            (n, found)
        })
        .filter(|(_, found)| !found.is_empty())
        .collect()
}

/// Where a retired node's report goes: its own report while it is in the
/// inventory, else a report of its own beside them.
fn report_retired(run: &mut Run<'_>, name: &str, report: StepReport) {
    let progress = run.opts.progress.clone();
    if let Some(node) = run.nodes.iter_mut().find(|n| n.node.name == name) {
        node.push(progress.as_ref(), report);
        return;
    }
    run.report_dropped(name, report);
}

fn rbac_report(status: Status, changes: Vec<Change>, why: Option<String>) -> StepReport {
    StepReport::new(StepId::AgentRbac, status, changes, why)
}

fn failed_rbac(why: &ClusterError) -> StepReport {
    rbac_report(Status::Failed, vec![], Some(error_chain(why)))
}

/// The policy's report, on the first server (a cluster-wide object).
fn report_policy(run: &mut Run<'_>, found: Result<Vec<Change>, ClusterError>) {
    let report = match found {
        Ok(c) if c.is_empty() => StepReport::new(StepId::AgentPolicy, Status::Ok, c, None),
        Ok(c) => StepReport::new(StepId::AgentPolicy, Status::Changed, c, None),
        Err(why) => {
            let why = Some(error_chain(&why));
            StepReport::new(StepId::AgentPolicy, Status::Failed, vec![], why)
        }
    };
    let progress = run.opts.progress.clone();
    let first = run.nodes.iter_mut().find(|r| r.node.role == Role::Server);
    if let Some(node) = first {
        node.push(progress.as_ref(), report);
    }
}

impl AgentAccessPhase {
    /// Creates one node's objects and waits for its token.
    async fn create(
        client: &kube::Client,
        node: &str,
        changes: Vec<Change>,
        w: &Writer,
    ) -> (StepReport, Option<agent_access::Token>) {
        let applied = match agent_access::apply(client, node, w).await {
            Ok(()) => agent_access::wait_token(client, node, TOKEN_WAIT).await,
            Err(e) => Err(e),
        };
        match applied {
            Ok(token) => (rbac_report(Status::Changed, changes, None), Some(token)),
            Err(why) => (
                rbac_report(Status::Failed, changes, Some(error_chain(&why))),
                None,
            ),
        }
    }

    /// Each node's files on the node, through `how`, once its token is known.
    async fn files(
        run: &mut Run<'_>,
        pod: &PodNetwork,
        tokens: Vec<(usize, String, StepReport, Option<agent_access::Token>)>,
        how: &impl Walk,
    ) -> BTreeMap<usize, (Desired, Option<PodMetrics>)> {
        let progress = run.opts.progress.clone();
        let (server, _) = api_endpoint(run);
        let mut wanted = BTreeMap::new();
        for (i, name, report, token) in tokens {
            run.nodes[i].push(progress.as_ref(), report);
            let Some(token) = token else { continue };
            match Self::desired(run, pod, &server, &name, token) {
                Ok(Some(d)) => {
                    wanted.insert(i, d);
                }
                Ok(None) => {}
                Err(failed) => run.nodes[i].push(progress.as_ref(), failed),
            }
        }
        Self::converge(run, &wanted, how).await;
        wanted
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
            StepReport::new(
                StepId::AgentMetrics,
                Status::Failed,
                vec![],
                Some(error_chain(&why)),
            )
        })?;
        desired.agent_access = Some(AccessFiles {
            token,
            ca_pem,
            publish_conf: publish_conf(server, name, metrics.as_ref(), &serving_pins(run)),
        });
        Ok(Some((desired, metrics)))
    }

    /// Converges the files of every node in `wanted`, in parallel.
    async fn converge(
        run: &mut Run<'_>,
        wanted: &BTreeMap<usize, (Desired, Option<PodMetrics>)>,
        how: &impl Walk,
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
                how.single(node, env, &AgentAccess).await;
            }
        })
        .await;
    }

    /// Each node's annotation change (`pictl plan`).
    fn show_annotations(
        run: &mut Run<'_>,
        pod: &PodNetwork,
        wanted: &BTreeMap<usize, (Desired, Option<PodMetrics>)>,
    ) {
        let progress = run.opts.progress.clone();
        for (i, (_, metrics)) in wanted {
            let want = metrics.as_ref().map(|m| m.listen.to_string());
            let name = run.nodes[*i].node.name.clone();
            let report = match pod.annotation(&name, want.as_deref()) {
                Ok(None) => annotation_report(Status::Ok, vec![], None),
                Ok(Some(change)) => annotation_report(Status::Changed, vec![change], None),
                Err(why) => annotation_report(Status::Failed, vec![], Some(error_chain(&why))),
            };
            run.nodes[*i].push(progress.as_ref(), report);
        }
    }

    /// Sets each node's annotation, once its files are in place.
    async fn annotate(
        run: &mut Run<'_>,
        client: &kube::Client,
        pod: &PodNetwork,
        wanted: &BTreeMap<usize, (Desired, Option<PodMetrics>)>,
        w: &Writer,
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
                if !converged {
                    let why = "the agent's files are not in place".to_string();
                    return (
                        *i,
                        annotation_report(Status::Skipped, vec![], Some(why)),
                        None,
                    );
                }
                let _permit = sem.acquire().await;
                let (r, written) = pod.annotate(client, &name, want.as_deref(), w).await;
                (*i, r, written)
            }
        });
        let reports = futures::future::join_all(work).await;
        let progress = run.opts.progress.clone();
        for (i, report, written) in reports {
            run.nodes[i].push(progress.as_ref(), report);
            if let Some(n) = written {
                run.saw(n);
            }
        }
    }
}

fn annotation_report(status: Status, changes: Vec<Change>, why: Option<String>) -> StepReport {
    StepReport::new(StepId::AgentMetrics, status, changes, why)
}

/// The Nodes' pod networks as `[agent] metrics` needs them (the run's LIST).
struct PodNetwork {
    metrics: AgentMetrics,
    peers: Vec<ipnet::Ipv4Net>,
    nodes: Result<NodeList, ClusterError>,
    nets: BTreeMap<String, NodeNet>,
}

impl PodNetwork {
    async fn read(run: &Run<'_>) -> PodNetwork {
        // The inventory's loader refused pod-network metrics without an IPv4
        // cluster-cidr; the list also finds annotations a loopback run removes.
        let nodes = run.node_list().await.map(std::borrow::Cow::into_owned);
        PodNetwork {
            metrics: run.inv.agent.metrics,
            peers: run.inv.cluster.pod_cidrs_v4().unwrap_or_default(),
            nets: nodes.as_ref().map(agent_metrics::nets).unwrap_or_default(),
            nodes,
        }
    }

    /// The listed Nodes, or why there are none.
    fn nets(&self) -> Result<&BTreeMap<String, NodeNet>, ClusterError> {
        match &self.nodes {
            Ok(_) => Ok(&self.nets),
            Err(e) => Err(e.clone()),
        }
    }

    /// The node's pod listener (`None`: loopback only, or no podCIDR yet:
    /// the next run adds it once K3s assigned one).
    fn for_node(&self, node: &str) -> Result<Option<PodMetrics>, ClusterError> {
        if self.metrics == AgentMetrics::Loopback {
            return Ok(None);
        }
        let cidr = self.nets()?.get(node).and_then(|n| n.pod_cidr);
        Ok(cidr
            .and_then(agent_metrics::listen_address)
            .map(|listen| PodMetrics {
                listen,
                peers: self.peers.clone(),
            }))
    }

    /// What the Node's annotation needs to become `want`.
    fn annotation(&self, node: &str, want: Option<&str>) -> Result<Option<Change>, ClusterError> {
        let now = self.nets()?.get(node).and_then(|n| n.annotation.as_deref());
        Ok(agent_metrics::plan(now, want))
    }

    /// Sets the Node's annotation to `want`; the Node as written, if it was.
    async fn annotate(
        &self,
        client: &kube::Client,
        node: &str,
        want: Option<&str>,
        w: &Writer,
    ) -> (StepReport, Option<KNode>) {
        let change = match self.annotation(node, want) {
            Ok(Some(c)) => c,
            Ok(None) => return (annotation_report(Status::Ok, vec![], None), None),
            Err(why) => {
                let why = Some(error_chain(&why));
                return (annotation_report(Status::Failed, vec![], why), None);
            }
        };
        let live = self.nodes.as_ref().ok().and_then(|l| l.get(node));
        let Some(live) = live else {
            let why = format!("Node {node} is not registered");
            return (
                annotation_report(Status::Failed, vec![change], Some(why)),
                None,
            );
        };
        match agent_metrics::write(client, live, want, w).await {
            Ok(n) => (
                annotation_report(Status::Changed, vec![change], None),
                Some(n),
            ),
            Err(why) => {
                let why = Some(error_chain(&why));
                (annotation_report(Status::Failed, vec![change], why), None)
            }
        }
    }
}

impl Phase for AgentAccessPhase {
    const NAME: &'static str = "agent-access";
    /// `None`: the API went away.
    type Plan = Option<AccessPlan>;

    fn select(&self, run: &Run<'_>) -> Selected {
        let agents = Selected::with_api(run, |i| {
            let d = run.desired.get(&run.nodes[i].node.name);
            d.is_some_and(|d| matches!(d.agent, Some(Ok(_))))
        });
        match agents {
            // Still run: agents that left may have left objects behind.
            Selected::Nodes(n) if n.is_empty() => Selected::Cluster,
            other => other,
        }
    }

    async fn plan(&self, run: &Run<'_>, nodes: &[usize]) -> Result<Self::Plan, RunError> {
        let Ok(client) = run.api() else {
            return Ok(None);
        };
        let pod = PodNetwork::read(run).await;
        // A failed LIST only costs speed: each node's objects are then read by name.
        let existing = agent_access::Existing::read(client)
            .await
            .unwrap_or_else(|why| {
                tracing::debug!(%why, "reading each node's agent objects by name");
                agent_access::Existing::default()
            });
        let sem = run.sem.clone();
        let rbac = futures::future::join_all(nodes.iter().map(|&i| {
            let (sem, existing) = (&sem, &existing);
            let name = run.nodes[i].node.name.clone();
            async move {
                let _permit = sem.acquire().await;
                let found = agent_access::plan(client, existing, &name).await;
                (i, name, found)
            }
        }))
        .await;
        let retired = retired(run, &existing);
        let policy = match run.inv.agent.enabled {
            true => Some(agent_policy::plan(client).await),
            false => Some(agent_policy::leftovers(client).await),
        };
        Ok(Some(AccessPlan {
            policy,
            pod,
            rbac,
            retired,
        }))
    }

    async fn show(&self, run: &mut Run<'_>, plan: Self::Plan) -> Result<(), RunError> {
        let Some(plan) = plan else { return Ok(()) };
        if let Some(policy) = plan.policy {
            report_policy(run, policy);
        }
        let tokens = plan
            .rbac
            .into_iter()
            .map(|(i, name, rbac)| match rbac {
                Err(why) => (i, name, failed_rbac(&why), None),
                Ok((c, token)) if c.is_empty() => {
                    (i, name, rbac_report(Status::Ok, c, None), token)
                }
                Ok((c, _)) => (i, name, rbac_report(Status::Changed, c, None), None),
            })
            .collect();
        let wanted = Self::files(run, &plan.pod, tokens, &Checking).await;
        Self::show_annotations(run, &plan.pod, &wanted);
        for (name, found) in plan.retired {
            report_retired(run, &name, rbac_report(Status::Changed, found, None));
        }
        Ok(())
    }

    async fn apply(&self, run: &mut Run<'_>, plan: Self::Plan, w: &Writer) -> Result<(), RunError> {
        let (Some(plan), Ok(client)) = (plan, run.api().cloned()) else {
            return Ok(());
        };
        match plan.policy {
            Some(Ok(c)) if !c.is_empty() => {
                let done = match run.inv.agent.enabled {
                    true => agent_policy::apply(&client, w).await,
                    false => agent_policy::remove(&client, w).await,
                };
                report_policy(run, done.map(|()| c));
            }
            Some(found) => report_policy(run, found),
            None => {}
        }
        let sem = run.sem.clone();
        let tokens = futures::future::join_all(plan.rbac.into_iter().map(|(i, name, rbac)| {
            let (client, sem) = (&client, &sem);
            async move {
                let (report, token) = match rbac {
                    Err(why) => (failed_rbac(&why), None),
                    Ok((c, token)) if c.is_empty() => (rbac_report(Status::Ok, c, None), token),
                    Ok((c, _)) => {
                        let _permit = sem.acquire().await;
                        Self::create(client, &name, c, w).await
                    }
                };
                (i, name, report, token)
            }
        }))
        .await;
        let wanted = Self::files(run, &plan.pod, tokens, &Converging(w)).await;
        Self::annotate(run, &client, &plan.pod, &wanted, w).await;
        for (name, _) in plan.retired {
            let report = match agent_access::remove(&client, &name, w).await {
                Ok(gone) if gone.is_empty() => rbac_report(Status::Ok, gone, None),
                Ok(gone) => rbac_report(Status::Changed, gone, None),
                Err(why) => failed_rbac(&why),
            };
            report_retired(run, &name, report);
        }
        Ok(())
    }
}

/// The API server's key pins: every server's, as its facts read them (HA
/// servers share one key through K3s's `k3s-serving` Secret), sorted.
fn serving_pins(run: &Run<'_>) -> Vec<String> {
    let pins: std::collections::BTreeSet<String> = run
        .nodes
        .iter()
        .filter_map(|n| n.facts.as_ref()?.serving_pin.clone())
        .collect();
    pins.into_iter().collect()
}
