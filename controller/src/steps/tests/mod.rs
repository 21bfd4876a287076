//! The steps' `check`s on hand-made facts: a converged node yields no
//! change (the pure half of "a second run is changed=0"), and each kind
//! of drift yields exactly the change that repairs it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::Path;

use super::k3s_tools as k3s_tools_text;
use super::*;
use crate::arch::Arch;
use crate::artifacts::sha256_hex;
use crate::facts::{Facts, FileMeta, UnitFact, paths};
use crate::inventory::Inventory;
use crate::render;
use crate::secret::Secret;
use crate::step::{Change, Check, Desired, DesiredConfig, NodeCx, Plan, Step, StepId};
use crate::transport::Transport;

const BIN_SHA: &str = "b1b1b1b1b1b1b1b1";

pub(super) fn inventory() -> Inventory {
    inventory_with("")
}

/// The one-server inventory with `cluster` added under `[cluster]`.
fn inventory_with(cluster: &str) -> Inventory {
    let text = format!(
        r#"
[cluster]
name = "t"
k3s_version = "v1.32.5+k3s1"
{cluster}
[ssh]
agent = true
[[nodes]]
name = "s1"
address = "10.0.0.1"
role = "server"
"#
    );
    Inventory::parse(&text, "t.toml", Path::new("/")).expect("valid")
}

pub(super) fn desired(inv: &Inventory) -> Desired {
    let node = &inv.nodes[0];
    Desired {
        version: "v1.32.5+k3s1".into(),
        binary_sha256: BIN_SHA.into(),
        config: DesiredConfig::Known(Secret::new(render::server_config(
            inv,
            node,
            &Secret::new("sec"),
            None,
        ))),
        registries: render::registries(inv).map(Secret::new),
        unit_name: "k3s.service",
        unit_path: paths::SERVER_UNIT,
        unit: render::unit_file(node.role),
        agent: None,
        agent_dropin: dropin(&["10.0.0.1".into()], &[]),
        k3s_from: Default::default(),
        agent_from: Default::default(),
        airgap: None,
        images_from: Default::default(),
        agent_access: None,
        k3s_settings: render::node_settings(inv, node),
    }
}

/// A node on which `desired` is fully converged.
pub(super) fn converged(d: &Desired) -> Facts {
    let files: BTreeMap<String, String> = [
        (paths::K3S_BIN.to_string(), BIN_SHA.to_string()),
        (
            paths::CONFIG.to_string(),
            sha256_hex(match &d.config {
                DesiredConfig::Known(c) => c.expose().as_bytes(),
                DesiredConfig::Pending(_) => b"",
            }),
        ),
        (
            paths::SERVER_UNIT.to_string(),
            sha256_hex(d.unit.as_bytes()),
        ),
        (
            paths::KILLALL.to_string(),
            sha256_hex(k3s_tools_text::KILLALL.as_bytes()),
        ),
        (
            paths::SERVER_UNINSTALL.to_string(),
            sha256_hex(k3s_tools_text::UNINSTALL.as_bytes()),
        ),
    ]
    .into_iter()
    .collect();
    let unit = UnitFact {
        active: true,
        active_state: "active".into(),
        enabled: true,
        need_daemon_reload: false,
        loaded: true,
    };
    let file_meta = [
        (paths::K3S_BIN, 0o755),
        (paths::CONFIG, 0o600),
        (paths::SERVER_UNIT, 0o644),
    ]
    .into_iter()
    .map(|(p, mode)| (p.to_string(), FileMeta::root(mode)))
    .collect();
    Facts {
        uname_m: "aarch64".into(),
        arch: Ok(Arch::Arm64),
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        pi_model: None,
        machine_id: "m".into(),
        hostname: "s1".into(),
        boot_id: "b".into(),
        clock_skew: 0,
        cgroup_controllers: ["cpuset", "cpu", "io", "memory", "pids"]
            .map(String::from)
            .to_vec(),
        kernel: "6.12.25+rpt-rpi-v8".into(),
        vxlan: Some(true),
        boot_cmdline: None,
        k3s_version: Some("v1.32.5+k3s1".into()),
        started_with: files.clone(),
        files,
        file_meta,
        units: [("k3s.service".to_string(), unit)].into_iter().collect(),
        server_token: None,
        agent_token: None,
        admin_kubeconfig: None,
        foreign: None,
        addresses: vec!["10.0.0.1".into()],
        config_dropins: Vec::new(),
        datastore: None,
        agent_ids: None,
        serving_pin: None,
        joined: None,
        storage: None,
        tools_missing: Vec::new(),
        tools_taken: Vec::new(),
        data_dir_config: None,
        certificates: Vec::new(),
        node_now: 0,
    }
}

/// Every step's changes, in order, feeding `pending` like the runner does.
struct Planner<'a> {
    cx: NodeCx<'a>,
    pending: BTreeSet<StepId>,
    out: Vec<(StepId, Vec<Change>)>,
}

impl crate::steps::StepVisitor for Planner<'_> {
    async fn visit<S: Step>(&mut self, step: &S) -> ControlFlow<()> {
        let cx = NodeCx {
            pending: &self.pending,
            ..self.cx
        };
        if let Check::Change(p) = step.check(&cx) {
            if p.rewrites() {
                self.pending.insert(S::ID);
            }
            self.out.push((S::ID, p.changes()));
        }
        ControlFlow::Continue(())
    }
}

fn plan(inv: &Inventory, d: &Desired, facts: &Facts) -> Vec<(StepId, Vec<Change>)> {
    let none = BTreeSet::new();
    let adoption = assess_adoption(&inv.nodes[0], facts, d);
    let mut p = Planner {
        cx: NodeCx {
            node: &inv.nodes[0],
            facts,
            desired: d,
            pending: &none,
            adoption: adoption.as_ref(),
        },
        pending: BTreeSet::new(),
        out: Vec::new(),
    };
    let _ = futures::executor::block_on(visit(&mut p));
    p.out
}

/// One step's check on the inventory's only node, nothing pending.
pub(super) fn check_one<S: Step>(
    step: &S,
    inv: &Inventory,
    d: &Desired,
    f: &Facts,
) -> Check<S::Plan> {
    step.check(&NodeCx {
        node: &inv.nodes[0],
        facts: f,
        desired: d,
        pending: &BTreeSet::new(),
        adoption: assess_adoption(&inv.nodes[0], f, d).as_ref(),
    })
}

fn names(p: &[(StepId, Vec<Change>)]) -> Vec<&'static str> {
    p.iter().map(|(n, _)| n.as_str()).collect()
}

mod adoption;
mod agent;
mod agent_access_step;
mod converge;
mod modes;
mod plan_diff;
mod tools;
