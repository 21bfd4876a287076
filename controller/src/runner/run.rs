//! What the phases of one run share: the nodes and what earlier phases
//! found out (the cluster secret, each node's desired state, the join
//! token, the API client, the playbooks' reports).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::node::NodeRun;
use super::options::Options;
use crate::arch::Arch;
use crate::artifacts::ArtifactStore;
use crate::cluster::{ClusterError, NodeList};
use crate::inventory::{Inventory, Role};
use crate::report::PlaybookReport;
use crate::secret::Secret;
use crate::step::Desired;

pub struct Run<'i> {
    pub inv: &'i Inventory,
    pub opts: &'i Options,
    /// The K3s release every node converges to.
    pub version: String,
    pub store: ArtifactStore,
    pub nodes: Vec<NodeRun<'i>>,
    /// Bounds how many nodes are worked on at once.
    pub sem: Arc<Semaphore>,
    /// The cluster secret servers are configured with (`None` only in a
    /// plan of a cluster that has none yet).
    pub secret: Option<Secret>,
    /// The agents' join secret servers are configured with (`None`: agents
    /// join with the server token; see [`super::secret::agent_secret`]).
    pub agent_secret: Option<Secret>,
    /// Which nodes run which arch: for agent binaries and the image preflight.
    pub arches: BTreeMap<Arch, Vec<String>>,
    /// Each alive node's desired state, by node name.
    pub desired: BTreeMap<String, Desired>,
    /// How each alive server starts its datastore, by node name (the
    /// facts phase decides: [`super::holder::start`]).
    pub starts: BTreeMap<String, crate::render::Start>,
    /// The first server's join token and admin kubeconfig, once converged.
    pub join_token: Option<Secret>,
    pub admin: Option<Secret>,
    /// The API client, or why there is none (`None`: not attempted).
    pub api: Option<Result<kube::Client, ClusterError>>,
    /// The Nodes as last listed in this run (readiness lists them; the
    /// phases after it read this list and keep it current with their writes).
    pub seen: Option<NodeList>,
    pub workload: Vec<PlaybookReport>,
    /// The seeds serving artifacts in this run (node index, its share),
    /// stopped by the relay-end phase.
    pub shares: Vec<(usize, crate::relay::Share)>,
    /// Nodes the upgrade phases took through their node steps: the servers
    /// and agents phases leave them out.
    pub upgraded: std::collections::BTreeSet<usize>,
    /// What was done for nodes no longer in the inventory (their agents'
    /// API objects removed), reported beside the inventory's nodes.
    pub dropped: Vec<crate::report::NodeReport>,
    /// `--nodes`: the nodes converged (`None`: all).
    pub limit: Option<std::collections::BTreeSet<String>>,
}

impl<'i> Run<'i> {
    pub fn new(
        inv: &'i Inventory,
        opts: &'i Options,
        version: String,
        store: ArtifactStore,
    ) -> Self {
        Self {
            inv,
            opts,
            version,
            store,
            nodes: inv.nodes.iter().map(NodeRun::new).collect(),
            sem: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            secret: None,
            agent_secret: None,
            arches: BTreeMap::new(),
            desired: BTreeMap::new(),
            starts: BTreeMap::new(),
            join_token: None,
            admin: None,
            api: None,
            seen: None,
            workload: Vec::new(),
            shares: Vec::new(),
            upgraded: Default::default(),
            dropped: Vec::new(),
            limit: None,
        }
    }

    /// `--nodes` of plan and apply: only the named nodes are converged
    /// (all when `names` is empty). Agents outside it are left out of the
    /// run; servers outside it stay in it, checked and never changed
    /// ([`super::converge::Holding`]): a selected agent needs them.
    pub fn limit(mut self, names: &[String]) -> Self {
        if !names.is_empty() {
            self.nodes
                .retain(|r| r.node.role == Role::Server || names.contains(&r.node.name));
            self.limit = Some(names.iter().cloned().collect());
        }
        self
    }

    /// Whether node `i` is converged (not held by `--nodes`).
    pub fn selected(&self, i: usize) -> bool {
        self.limit
            .as_ref()
            .is_none_or(|l| l.contains(&self.nodes[i].node.name))
    }

    /// Keeps only the nodes named in `only` (all when it is empty).
    pub fn only(mut self, only: &[String]) -> Self {
        if !only.is_empty() {
            self.nodes.retain(|r| only.contains(&r.node.name));
        }
        self
    }

    /// Indices of the nodes still being converged, with `role` if given.
    pub fn alive(&self, role: Option<Role>) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive())
            .filter(|&i| role.is_none_or(|r| self.nodes[i].node.role == r))
            .collect()
    }

    /// The first server of the inventory (alive or not).
    pub fn first_server(&self) -> Option<&NodeRun<'i>> {
        self.nodes.iter().find(|r| r.node.role == Role::Server)
    }

    /// The run's API client, or why there is none.
    pub fn api(&self) -> Result<&kube::Client, ClusterError> {
        match &self.api {
            Some(Ok(c)) => Ok(c),
            Some(Err(why)) => Err(why.clone()),
            None => Err(ClusterError::NoApi(format!(
                "no API: {}",
                self.first_server_state()
            ))),
        }
    }

    /// A report about a node the inventory no longer has, beside the
    /// inventory's nodes (role `dropped`; failed when the step failed).
    pub fn report_dropped(&mut self, name: &str, report: crate::report::StepReport) {
        self.opts.progress.event(&crate::report::Event {
            subject: name,
            topic: crate::report::Topic::Step(report.step),
            stage: crate::report::Stage::Finished(report.status),
            detail: &report.describe(),
        });
        let failed = (report.status == crate::report::Status::Failed)
            .then(|| report.message.clone().unwrap_or_default());
        match self.dropped.iter_mut().find(|d| d.name == name) {
            Some(d) => {
                d.failed = d.failed.take().or(failed);
                d.steps.push(report);
            }
            None => self.dropped.push(crate::report::NodeReport {
                name: name.to_string(),
                role: "dropped",
                address: String::new(),
                arch: None,
                unreachable: None,
                failed,
                steps: vec![report],
                ssh_round_trips: 0,
                seconds: 0.0,
            }),
        }
    }

    /// Keeps the run's list current with a Node a write answered with.
    pub fn saw(&mut self, node: k8s_openapi::api::core::v1::Node) {
        if let Some(list) = self.seen.as_mut() {
            list.update(node);
        }
    }

    /// The Nodes: as readiness listed them, else one LIST now.
    pub async fn node_list(&self) -> Result<std::borrow::Cow<'_, NodeList>, ClusterError> {
        match &self.seen {
            Some(list) => Ok(std::borrow::Cow::Borrowed(list)),
            None => Ok(std::borrow::Cow::Owned(NodeList::read(self.api()?).await?)),
        }
    }

    /// "server X is converged / failed / …", for messages about others.
    pub fn first_server_state(&self) -> String {
        self.first_server().map_or_else(
            || "there is no server".to_string(),
            |r| {
                let word = if r.alive() {
                    "converged"
                } else {
                    r.state_word()
                };
                format!("server {} is {word}", r.node.name)
            },
        )
    }
}
