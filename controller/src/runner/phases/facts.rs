//! What the facts say across nodes (expected and supported arches, cloned
//! machine-ids, clock skew), the cluster secret, and each node's desired
//! state: everything the node phases compare against.

use std::collections::BTreeMap;

use super::{Phase, Selected};
use crate::error_chain;
use crate::facts::Datastore;
use crate::inventory::{Inventory, K3sRelease, K3sValue, Role};
use crate::render::Start;
use crate::report::{Progress, Stage, Topic};
use crate::runner::desired::{self, Inputs};
use crate::runner::error::{NodeFailure, RunError};
use crate::runner::holder;
use crate::runner::node::NodeRun;
use crate::runner::run::Run;
use crate::runner::secret::{self, SecretPlan};
use crate::write::Writer;

pub struct Facts;

/// What the facts say about one node.
#[derive(Debug, Default)]
pub struct Finding {
    /// Why the node cannot be converged.
    fails: Option<String>,
    warns: Vec<String>,
}

/// What the facts phase decided.
pub struct FactsPlan {
    findings: BTreeMap<usize, Finding>,
    secret: SecretPlan,
    agent_secret: SecretPlan,
}

/// Every alive node's findings: the cross-node checks, then (for the nodes
/// those leave) the api_address and kernel checks.
fn findings(run: &Run<'_>) -> BTreeMap<usize, Finding> {
    let mut out = cross_node_checks(&run.nodes);
    let backend = flannel_backend(run.inv);
    let api = run.inv.cluster.api_address.as_deref();
    let first_server = run.nodes.iter().position(|r| r.node.role == Role::Server);
    for i in run.alive(None) {
        let f = out.entry(i).or_default();
        if f.fails.is_some() {
            continue;
        }
        // Every node joins at api_address: said once, on the first server.
        let api_warning = api.filter(|_| first_server == Some(i));
        f.warns
            .extend(api_warning.and_then(|a| mdns_warning("api_address", a)));
        let facts = run.nodes[i].facts.as_ref();
        f.fails = facts.and_then(|x| vxlan_problem(backend, &x.kernel, x.vxlan));
        let etcd = run.inv.cluster.ha && run.nodes[i].node.role == Role::Server;
        let storage = facts.and_then(|x| x.storage.as_ref()).filter(|_| etcd);
        f.warns
            .extend(storage.and_then(super::storage::etcd_storage_warning));
    }
    out
}

impl Phase for Facts {
    const NAME: &'static str = "facts";
    type Plan = FactsPlan;

    fn select(&self, run: &Run<'_>) -> Selected {
        Selected::Nodes(run.alive(None))
    }

    async fn plan(&self, run: &Run<'_>, _nodes: &[usize]) -> Result<FactsPlan, RunError> {
        let findings = findings(run);
        let ok: Vec<usize> = run
            .alive(None)
            .into_iter()
            .filter(|i| findings.get(i).is_none_or(|f| f.fails.is_none()))
            .collect();
        no_downgrade(run, &ok)?;
        no_servers_added_to_sqlite(run, &ok)?;
        // The server that holds the cluster gives its secrets: a first
        // server re-flashed has none, and must not make new ones.
        let holder = holder::holder(
            ok.iter()
                .map(|&i| (run.nodes[i].node, run.nodes[i].facts.as_ref())),
        );
        let first = run
            .nodes
            .iter()
            .position(|r| holder.map_or(r.node.role == Role::Server, |h| h.name == r.node.name))
            .filter(|i| ok.contains(i))
            .map(|i| &run.nodes[i]);
        let running = first.and_then(|r| Some((r.node.name.as_str(), r.facts.as_ref()?)));
        let server_facts = first.and_then(|r| r.facts.as_ref());
        let agent_secret = secret::agent_secret(run.inv, server_facts)?;
        let mut findings = findings;
        let has_agents = run.inv.nodes.iter().any(|n| n.role == Role::Agent);
        if matches!(agent_secret, secret::SecretPlan::Without) && has_agents {
            let first = run.nodes.iter().position(|r| r.node.role == Role::Server);
            if let Some(i) = first {
                findings
                    .entry(i)
                    .or_default()
                    .warns
                    .push(NO_AGENT_TOKEN.into());
            }
        }
        Ok(FactsPlan {
            agent_secret,
            secret: secret::cluster_secret(run.inv, running)?,
            findings,
        })
    }

    async fn show(&self, run: &mut Run<'_>, plan: FactsPlan) -> Result<(), RunError> {
        record(run, plan.findings);
        run.secret = plan.secret.planned();
        run.agent_secret = plan.agent_secret.planned();
        settle(run).await;
        Ok(())
    }

    async fn apply(&self, run: &mut Run<'_>, plan: FactsPlan, w: &Writer) -> Result<(), RunError> {
        record(run, plan.findings);
        run.agent_secret = plan.agent_secret.settle(run.inv, w)?;
        run.secret = plan.secret.settle(run.inv, w)?;
        settle(run).await;
        Ok(())
    }
}

/// Why a cluster without an agent token is worth a warning on every run.
const NO_AGENT_TOKEN: &str = "this cluster's servers run without an agent token (install.sh's \
default): every agent joins with the server token, so root on any agent holds the cluster's \
server credentials; pictl keeps it so (adding one restarts each server once): set \
add_agent_token = true in [cluster] to add one";

/// Fails and warns about nodes as the findings say.
fn record(run: &mut Run<'_>, findings: BTreeMap<usize, Finding>) {
    let progress = run.opts.progress.clone();
    for (i, f) in findings {
        let r = &mut run.nodes[i];
        if let Some(msg) = f.fails {
            r.fail(progress.as_ref(), NodeFailure::Failed(msg));
            continue;
        }
        for msg in f.warns {
            r.event(progress.as_ref(), Topic::Facts, Stage::Warning, &msg);
        }
    }
}

/// The arches and every alive node's desired state, once the secrets are known.
async fn settle(run: &mut Run<'_>) {
    run.arches = BTreeMap::new();
    for r in run.nodes.iter().filter(|r| r.alive()) {
        if let Some(Ok(a)) = r.facts.as_ref().map(|f| f.arch.clone()) {
            run.arches.entry(a).or_default().push(r.node.name.clone());
        }
    }
    let progress = run.opts.progress.clone();
    desire(run, progress.as_ref()).await;
}

/// A channel that answers with a release older than a node runs (a channel
/// moved back, or a wrong channel server) stops the run before anything is
/// written, unless the inventory allows downgrades. A pinned `k3s_version`
/// is the user's own choice and is not checked.
fn no_downgrade(run: &Run<'_>, alive: &[usize]) -> Result<(), RunError> {
    if run.inv.cluster.allow_downgrade {
        return Ok(());
    }
    let running: Vec<(String, String)> = alive
        .iter()
        .map(|&i| &run.nodes[i])
        .filter_map(|r| {
            let v = r.facts.as_ref()?.k3s_version.as_ref()?;
            crate::channel::is_downgrade(v, &run.version).then(|| (r.node.name.clone(), v.clone()))
        })
        .collect();
    if running.is_empty() {
        return Ok(());
    }
    Err(match &run.inv.cluster.k3s {
        K3sRelease::Channel(channel) => RunError::ChannelDowngrade {
            channel: channel.clone(),
            resolved: run.version.clone(),
            running,
        },
        K3sRelease::Version(pinned) => RunError::PinnedDowngrade {
            pinned: pinned.clone(),
            running,
        },
    })
}

/// Servers cannot join a server that runs SQLite (K3s's join asks it for its
/// etcd members and waits forever), so `ha = true` with more than one server
/// stops the run before anything is written while a server reports SQLite.
/// With one server, `ha = true` is the way out: its restart with
/// cluster-init makes K3s migrate SQLite into etcd.
fn no_servers_added_to_sqlite(run: &Run<'_>, alive: &[usize]) -> Result<(), RunError> {
    if !run.inv.cluster.ha || run.inv.servers().count() < 2 {
        return Ok(());
    }
    let sqlite = alive.iter().map(|&i| &run.nodes[i]).find(|r| {
        r.node.role == Role::Server
            && r.facts.as_ref().and_then(|f| f.datastore) == Some(Datastore::Sqlite)
    });
    match sqlite {
        Some(r) => Err(RunError::SqliteToHa {
            server: r.node.name.clone(),
        }),
        None => Ok(()),
    }
}

/// The running cluster's full server token: the first server's, else any
/// server's (in an HA cluster every server holds the same one).
pub(super) fn server_token(run: &Run<'_>) -> Option<crate::secret::Secret> {
    run.nodes
        .iter()
        .filter(|r| r.alive() && r.node.role == Role::Server)
        .find_map(|r| r.facts.as_ref()?.server_token.clone())
}

/// Each alive node's desired state (the checksum file is fetched once per arch).
async fn desire(run: &mut Run<'_>, progress: &dyn Progress) {
    let agent_bins = if run.inv.agent.enabled {
        crate::agent_binary::load(&run.inv.agent, run.arches.keys().copied())
    } else {
        BTreeMap::new()
    };
    let server_token = server_token(run);
    let agent_dropin = super::agent_access::agent_dropin(run);
    let alive = run.alive(None);
    let holder = holder::holder(
        alive
            .iter()
            .map(|&i| (run.nodes[i].node, run.nodes[i].facts.as_ref())),
    );
    run.starts = alive
        .iter()
        .map(|&i| {
            let (node, facts) = (run.nodes[i].node, run.nodes[i].facts.as_ref());
            (
                node.name.clone(),
                holder::start(run.inv, node, facts, holder),
            )
        })
        .collect();
    for i in run.alive(None) {
        let Some(Ok(arch)) = run.nodes[i].facts.as_ref().map(|f| f.arch.clone()) else {
            continue;
        };
        let sha = match run.store.expected_sha256(arch).await {
            Ok(sha) => sha,
            Err(e) => {
                let msg = format!("K3s {} for {arch}: {}", run.version, error_chain(&e));
                run.nodes[i].fail(progress, NodeFailure::Failed(msg));
                continue;
            }
        };
        let node = run.nodes[i].node;
        let agent = run.inv.agent.enabled.then(|| {
            agent_bins
                .get(&arch)
                .cloned()
                .unwrap_or(Err(crate::agent_binary::AgentBinaryError::NotLoaded(arch)))
        });
        let inputs = Inputs {
            version: &run.version,
            binary_sha256: sha,
            secret: run.secret.as_ref().filter(|_| node.role == Role::Server),
            agent_secret: run.agent_secret.as_ref(),
            server_token: server_token.as_ref(),
            agent,
            agent_dropin: agent_dropin.clone(),
            start: run.starts.get(&node.name).cloned().unwrap_or(Start::Alone),
        };
        let mut d = desired::desired(run.inv, node, inputs);
        match airgap(run, node, arch).await {
            Ok(a) => d.airgap = a,
            Err(msg) => {
                run.nodes[i].fail(progress, NodeFailure::Failed(msg));
                continue;
            }
        }
        run.desired.insert(node.name.clone(), d);
    }
}

/// The image archive `node` should hold, when the inventory asks for one:
/// its place under the node's data dir and the release's sha256 for it.
async fn airgap(
    run: &Run<'_>,
    node: &crate::inventory::Node,
    arch: crate::arch::Arch,
) -> Result<Option<crate::step::AirgapImages>, String> {
    let Some(dir) = &node.airgap_images else {
        return Ok(None);
    };
    let kind = crate::artifacts::Kind::AirgapImages;
    match run.store.expected(arch, kind).await {
        Ok(sha256) => Ok(Some(crate::step::AirgapImages {
            path: format!("{dir}/{}", arch.airgap_asset()),
            sha256,
        })),
        Err(e) => Err(format!(
            "K3s {} images for {arch}: {}",
            run.version,
            error_chain(&e)
        )),
    }
}

/// Arch expectations, unsupported arches, cloned machine-ids, and the
/// warnings each node's own facts call for.
fn cross_node_checks(runs: &[NodeRun<'_>]) -> BTreeMap<usize, Finding> {
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.alive()) {
        if let Some(f) = &r.facts {
            ids.entry(f.machine_id.clone())
                .or_default()
                .push(r.node.name.clone());
        }
    }
    let mut out = BTreeMap::new();
    for (i, r) in runs.iter().enumerate().filter(|(_, r)| r.alive()) {
        let Some(f) = &r.facts else { continue };
        let finding = match node_problem(r, f, &ids) {
            Some(msg) => Finding {
                fails: Some(msg),
                warns: vec![],
            },
            None => Finding {
                fails: None,
                warns: skew_warning(f.clock_skew)
                    .into_iter()
                    .chain(mdns_warning("address", &r.node.address))
                    .chain(dropins_warning(&f.config_dropins))
                    .chain(tools_taken_warning(&f.tools_taken))
                    .collect(),
            },
        };
        out.insert(i, finding);
    }
    out
}

/// Why one node cannot be converged: its arch, or its machine-id.
fn node_problem(
    r: &NodeRun<'_>,
    f: &crate::facts::Facts,
    ids: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    match (&f.arch, r.node.arch) {
        (Err(why), _) => Some(format!("node {} reports {why}", r.node.name)),
        (Ok(actual), Some(expected)) if *actual != expected => Some(format!(
            "node {} is {actual} ({}), but the inventory expects arch = \"{expected}\"",
            r.node.name, f.uname_m
        )),
        _ if f.machine_id.is_empty() => {
            Some("the node has an empty /etc/machine-id; run systemd-machine-id-setup".to_string())
        }
        _ => ids.get(&f.machine_id).filter(|n| n.len() > 1).map(|names| {
            let others: Vec<&str> = names.iter().map(String::as_str).filter(|n| *n != r.node.name).collect();
            format!(
                "machine-id {} is also the machine-id of {} (a cloned SD card?); give each node its own: \
                 rm /etc/machine-id && systemd-machine-id-setup, then reboot",
                f.machine_id,
                others.join(", ")
            )
        }),
    }
}

/// The cluster's flannel backend: K3s's default is vxlan.
fn flannel_backend(inv: &Inventory) -> &str {
    match inv.cluster.server_config.get("flannel-backend") {
        Some(K3sValue::One(b)) => b,
        _ => "vxlan",
    }
}

/// flannel's vxlan backend on a kernel without the vxlan module: K3s
/// starts, but Pods on different nodes cannot reach each other
/// (flannel-io/flannel#1502, k3s-io/k3s#7155; Ubuntu's Raspberry Pi
/// kernels ship it in a separate package).
fn vxlan_problem(backend: &str, kernel: &str, vxlan: Option<bool>) -> Option<String> {
    (backend == "vxlan" && vxlan == Some(false)).then(|| {
        format!(
            "kernel {kernel} has no vxlan module, which flannel's vxlan backend (K3s's default) needs for Pods on \
             different nodes to reach each other: install it (Ubuntu for Raspberry Pi: \
             apt install linux-modules-extra-raspi, then reboot), or choose another backend, e.g. \
             [cluster] server_config = {{ \"flannel-backend\" = \"host-gw\" }} when all nodes share one network"
        )
    })
}

/// K3s (Go's resolver) does not resolve mDNS names: agents could not reach
/// a server at `pi.local`, and the certificate would name it in vain.
fn mdns_warning(key: &str, address: &str) -> Option<String> {
    let name = address.trim_end_matches('.').to_ascii_lowercase();
    name.ends_with(".local").then(|| {
        format!("{key} {address} is an mDNS (.local) name, which K3s does not resolve: use an IP address or a DNS name")
    })
}

/// Files in config.yaml.d are merged by K3s over pictl's config.yaml.
fn dropins_warning(files: &[String]) -> Option<String> {
    (!files.is_empty()).then(|| {
        format!(
            "/etc/rancher/k3s/config.yaml.d has {} that pictl does not manage: K3s merges them over pictl's config.yaml",
            files.join(", ")
        )
    })
}

/// kubectl, crictl or ctr that is no command but whose /usr/local/bin
/// name holds something else: left alone, as install.sh leaves it.
fn tools_taken_warning(tools: &[String]) -> Option<String> {
    (!tools.is_empty()).then(|| {
        let paths: Vec<String> = tools.iter().map(|t| format!("/usr/local/bin/{t}")).collect();
        format!(
            "{} is not a command nor a link to k3s; left as it is (remove it to have pictl link k3s there)",
            paths.join(", ")
        )
    })
}

/// A warning when the node's clock is more than 30 s off (`unsigned_abs`:
/// a node may report any clock, `i64::MIN` included).
fn skew_warning(skew: i64) -> Option<String> {
    (skew.unsigned_abs() > 30)
        .then(|| format!("clock is {skew} s off the controller's; TLS certificates may be refused"))
}

#[cfg(test)]
mod tests {
    use super::{dropins_warning, mdns_warning, skew_warning, tools_taken_warning, vxlan_problem};

    #[test]
    fn a_kernel_without_vxlan_is_refused_only_for_flannels_vxlan_backend() {
        let kernel = "6.8.0-1004-raspi";
        let why = vxlan_problem("vxlan", kernel, Some(false)).expect("refused");
        assert!(
            why.contains("kernel 6.8.0-1004-raspi has no vxlan module")
                && why.contains("linux-modules-extra-raspi"),
            "{why}"
        );
        assert_eq!(vxlan_problem("host-gw", kernel, Some(false)), None);
        assert_eq!(
            vxlan_problem("vxlan", kernel, None),
            None,
            "unknown is not missing"
        );
        assert_eq!(vxlan_problem("vxlan", kernel, Some(true)), None);
    }

    #[test]
    fn a_tool_name_taken_by_something_else_is_warned_about() {
        let w = tools_taken_warning(&["kubectl".into()]).expect("warning");
        assert!(
            w.contains("/usr/local/bin/kubectl") && w.contains("left as it is"),
            "{w}"
        );
        assert_eq!(tools_taken_warning(&[]), None);
    }

    #[test]
    fn mdns_names_and_foreign_drop_ins_are_warned_about() {
        assert!(
            mdns_warning("address", "pi1.local").is_some_and(|w| w.contains("does not resolve"))
        );
        assert!(mdns_warning("address", "PI1.LOCAL.").is_some());
        assert!(
            mdns_warning("api_address", "k3s.local")
                .is_some_and(|w| w.starts_with("api_address k3s.local is an mDNS"))
        );
        assert_eq!(mdns_warning("address", "192.168.0.196"), None);
        assert_eq!(mdns_warning("address", "pi1.example.com"), None);
        let w = dropins_warning(&["10-extra.yaml".into()]).expect("warning");
        assert!(w.contains("10-extra.yaml"), "{w}");
        assert_eq!(dropins_warning(&[]), None);
    }

    #[test]
    fn any_clock_skew_is_judged_without_overflow() {
        for (skew, warned) in [
            (0, false),
            (30, false),
            (-30, false),
            (31, true),
            (-31, true),
            (i64::MAX, true),
            (i64::MIN, true),
        ] {
            let w = skew_warning(skew);
            assert_eq!(w.is_some(), warned, "{skew}");
            assert!(w.is_none_or(|m| m.contains(&skew.to_string())), "{skew}");
        }
    }
}
