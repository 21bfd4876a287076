//! The steps' `check`s on hand-made facts: a converged node yields no
//! change (the pure half of "a second run is changed=0"), and each kind
//! of drift yields exactly the change that repairs it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::Path;

use super::*;
use crate::arch::Arch;
use crate::artifacts::sha256_hex;
use crate::facts::{Facts, UnitFact, paths};
use crate::inventory::Inventory;
use crate::render;
use crate::secret::Secret;
use crate::step::{Change, Check, Desired, DesiredConfig, NodeCx, Plan, Step, StepId};

const BIN_SHA: &str = "b1b1b1b1b1b1b1b1";

fn inventory() -> Inventory {
    let text = r#"
[cluster]
name = "t"
k3s_version = "v1.32.5+k3s1"
[ssh]
agent = true
[[nodes]]
name = "s1"
address = "10.0.0.1"
role = "server"
"#;
    Inventory::parse(text, "t.toml", Path::new("/")).expect("valid")
}

fn desired(inv: &Inventory) -> Desired {
    let node = &inv.nodes[0];
    Desired {
        version: "v1.32.5+k3s1".into(),
        binary_sha256: BIN_SHA.into(),
        config: DesiredConfig::Known(Secret::new(render::server_config(
            inv,
            node,
            &Secret::new("sec"),
        ))),
        unit_name: "k3s.service",
        unit_path: paths::SERVER_UNIT,
        unit: render::unit_file(node.role),
        agent: None,
    }
}

/// A node on which `desired` is fully converged.
fn converged(d: &Desired) -> Facts {
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
    ]
    .into_iter()
    .collect();
    let unit = UnitFact {
        active: true,
        active_state: "active".into(),
        enabled: true,
        need_daemon_reload: false,
    };
    Facts {
        uname_m: "aarch64".into(),
        arch: Ok(Arch::Arm64),
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        pi_model: None,
        machine_id: "m".into(),
        hostname: "s1".into(),
        boot_id: "b".into(),
        clock_skew: 0,
        memory_cgroup: true,
        boot_cmdline: None,
        k3s_version: Some("v1.32.5+k3s1".into()),
        started_with: files.clone(),
        files,
        units: [("k3s.service".to_string(), unit)].into_iter().collect(),
        server_token: None,
        admin_kubeconfig: None,
        foreign: None,
        addresses: vec!["10.0.0.1".into()],
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
            self.pending.insert(S::ID);
            self.out.push((S::ID, p.changes()));
        }
        ControlFlow::Continue(())
    }
}

fn plan(inv: &Inventory, d: &Desired, facts: &Facts) -> Vec<(StepId, Vec<Change>)> {
    let none = BTreeSet::new();
    let mut p = Planner {
        cx: NodeCx {
            node: &inv.nodes[0],
            facts,
            desired: d,
            pending: &none,
        },
        pending: BTreeSet::new(),
        out: Vec::new(),
    };
    let _ = futures::executor::block_on(visit(&mut p));
    p.out
}

/// One step's check on the inventory's only node, nothing pending.
fn check_one<S: Step>(step: &S, inv: &Inventory, d: &Desired, f: &Facts) -> Check<S::Plan> {
    step.check(&NodeCx {
        node: &inv.nodes[0],
        facts: f,
        desired: d,
        pending: &BTreeSet::new(),
    })
}

fn names(p: &[(StepId, Vec<Change>)]) -> Vec<&'static str> {
    p.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn a_converged_node_has_nothing_to_do() {
    let inv = inventory();
    let d = desired(&inv);
    assert!(plan(&inv, &d, &converged(&d)).is_empty());
}

#[test]
fn a_fresh_node_gets_everything_and_a_start() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.files.clear();
    f.started_with.clear();
    f.units.clear();
    f.k3s_version = None;
    let p = plan(&inv, &d, &f);
    assert_eq!(
        names(&p),
        ["k3s-binary", "k3s-config", "k3s-unit", "k3s-service"]
    );
    assert_eq!(
        p[0].1[0],
        Change::new(paths::K3S_BIN, "absent", "v1.32.5+k3s1")
    );
    let service: Vec<&str> = p[3].1.iter().map(|c| c.after.as_str()).collect();
    assert_eq!(service, ["daemon-reload", "enabled", "active"]);
}

#[test]
fn config_drift_rewrites_the_config_and_restarts_only_the_service() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.files.insert(paths::CONFIG.into(), "edited".into());
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-config", "k3s-service"]);
    assert_eq!(p[1].1[0].after, "restarted (k3s-config changed)");
}

#[test]
fn an_interrupted_run_is_finished_by_restarting() {
    // Files already new, but K3s still runs with the old binary.
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.started_with.insert(paths::K3S_BIN.into(), "old".into());
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-service"]);
    assert_eq!(
        p[0].1[0].before,
        format!("running with an older {}", paths::K3S_BIN)
    );
}

#[test]
fn a_stopped_service_is_started_not_reinstalled() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    if let Some(u) = f.units.get_mut("k3s.service") {
        u.active = false;
        u.active_state = "inactive".into();
    }
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-service"]);
    assert_eq!(p[0].1, [Change::new("k3s.service", "inactive", "active")]);
}

#[test]
fn an_upgrade_replaces_the_binary_and_restarts() {
    let inv = inventory();
    let mut d = desired(&inv);
    d.version = "v1.33.1+k3s1".into();
    d.binary_sha256 = "newer".into();
    let p = plan(&inv, &d, &converged(&desired(&inv)));
    assert_eq!(names(&p), ["k3s-binary", "k3s-service"]);
    assert_eq!(
        p[0].1[0],
        Change::new(paths::K3S_BIN, "v1.32.5+k3s1", "v1.33.1+k3s1")
    );
}

#[test]
fn a_pi_without_cgroup_flags_is_fixed_and_rebooted_and_blocked_if_that_did_not_help() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.boot_cmdline = Some((
        "/boot/firmware/cmdline.txt".into(),
        "console=tty1 rootwait".into(),
    ));
    f.memory_cgroup = false;
    let Check::Change(p) = check_one(&PiCgroups, &inv, &d, &f) else {
        panic!("expected changes")
    };
    assert_eq!(p.changes()[1].what, "reboot");
    // After the reboot the flags are there but the controller is still off.
    f.boot_cmdline = Some((
        "/boot/firmware/cmdline.txt".into(),
        with_cgroup_flags("console=tty1 rootwait"),
    ));
    assert!(
        matches!(check_one(&PiCgroups, &inv, &d, &f), Check::Blocked(why) if why.contains("memory cgroup"))
    );
    f.memory_cgroup = true;
    assert_eq!(check_one(&PiCgroups, &inv, &d, &f), Check::Converged);
}

fn with_agent(inv: &Inventory) -> (Desired, Facts) {
    let bin = crate::agent_binary::AgentBinary {
        sha256: "a9e7a9e7a9e7a9e7a9e7".into(),
        bytes: std::sync::Arc::new(b"agent".to_vec()),
    };
    let mut d = desired(inv);
    d.agent = Some(Ok(bin));
    let mut f = converged(&d);
    f.files.insert(
        paths::HEALTH_AGENT_BIN.into(),
        "a9e7a9e7a9e7a9e7a9e7".into(),
    );
    f.files.insert(
        paths::HEALTH_AGENT_UNIT.into(),
        sha256_hex(pictl_agent::SYSTEMD_UNIT.as_bytes()),
    );
    let running = f.unit("k3s.service");
    f.units.insert("pictl-agent.service".into(), running);
    (d, f)
}

#[test]
fn the_health_agent_is_left_alone_when_installed_and_running() {
    let inv = inventory();
    let (d, f) = with_agent(&inv);
    assert_eq!(check_one(&HealthAgent, &inv, &d, &f), Check::Converged);
}

#[test]
fn a_new_agent_build_is_installed_and_restarts_the_agent() {
    let inv = inventory();
    let (d, mut f) = with_agent(&inv);
    f.files
        .insert(paths::HEALTH_AGENT_BIN.into(), "older".into());
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert_eq!(p.binary, Some("other build"));
    assert_eq!(
        p.service.action,
        ServiceAction::Restart(RestartReason::Replaced)
    );
    assert!(!p.service.daemon_reload, "only the binary changed");
}

#[test]
fn a_stopped_agent_is_started_and_a_missing_unit_reloads_systemd() {
    let inv = inventory();
    let (d, mut f) = with_agent(&inv);
    f.files.remove(paths::HEALTH_AGENT_UNIT);
    f.units.remove("pictl-agent.service");
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert_eq!(p.unit, Some("absent"));
    assert!(p.service.daemon_reload && p.service.enable);
    assert!(matches!(p.service.action, ServiceAction::Start { .. }));
}

#[test]
fn the_health_agent_is_skipped_with_the_reason_when_there_is_no_binary() {
    let inv = inventory();
    let (mut d, f) = with_agent(&inv);
    d.agent = Some(Err("no pictl-agent for arm64".into()));
    assert_eq!(
        check_one(&HealthAgent, &inv, &d, &f),
        Check::Skip("no pictl-agent for arm64".into())
    );
}

/// A server K3s's install.sh set up: its unit (flags in ExecStart) and its
/// `.service.env`; no config.yaml and no record of pictl's.
fn install_sh(d: &Desired, flags: &str) -> Facts {
    let mut f = converged(d);
    f.files.remove(paths::CONFIG);
    f.files
        .insert(paths::SERVER_UNIT.into(), "install.sh's unit".into());
    f.started_with.clear();
    f.hostname = "s1".into();
    let unit = format!(
        "[Service]\nType=notify\nEnvironmentFile=-/etc/systemd/system/k3s.service.env\nExecStart=/usr/local/bin/k3s \\\n    server \\\n{flags}\n"
    );
    f.foreign = Some((
        "k3s.service".into(),
        crate::adopt::Foreign {
            unit: Secret::new(unit),
            env: Some(Secret::new(
                "K3S_TOKEN='K10abc::server:sec'\nHTTP_PROXY='http://proxy:3128'\n",
            )),
            config: None,
        },
    ));
    f
}

#[test]
fn an_install_sh_server_that_matches_the_inventory_is_adopted_without_a_restart() {
    let inv = inventory();
    let d = desired(&inv);
    let p = plan(&inv, &d, &install_sh(&d, ""));
    assert_eq!(
        names(&p),
        ["k3s-adopt", "k3s-config", "k3s-unit", "k3s-service"]
    );
    let service: Vec<String> = p[3].1.iter().map(|c| c.after.clone()).collect();
    assert_eq!(
        service,
        [
            "daemon-reload",
            "kept running: it already runs as pictl configures it"
        ]
    );
}

#[test]
fn a_flag_the_inventory_does_not_carry_blocks_the_takeover_naming_it() {
    let inv = inventory();
    let d = desired(&inv);
    let f = install_sh(&d, "\t'--flannel-backend' \\\n\t'wireguard-native' \\\n");
    let Check::Blocked(why) = check_one(&K3sAdopt, &inv, &d, &f) else {
        panic!("expected the takeover to be refused")
    };
    assert!(why.contains("flannel-backend = wireguard-native"), "{why}");
    assert!(why.contains("adopt_drop"), "{why}");
}

#[test]
fn a_setting_the_inventory_changes_is_adopted_with_a_restart() {
    let inv = inventory();
    let d = desired(&inv);
    let f = install_sh(&d, "\t'--write-kubeconfig-mode' \\\n\t'644' \\\n");
    let Check::Change(adopt) = check_one(&K3sAdopt, &inv, &d, &f) else {
        panic!("expected a takeover")
    };
    assert_eq!(
        adopt.changed,
        [(
            "write-kubeconfig-mode".to_string(),
            "644".to_string(),
            "0600".to_string()
        )]
    );
    let p = plan(&inv, &d, &f);
    let restart = &p.last().expect("service").1;
    assert!(
        restart.iter().any(|c| c.after.starts_with("restarted")),
        "{restart:?}"
    );
}

#[test]
fn the_takeover_moves_k3s_variables_out_of_the_env_file_and_keeps_the_rest() {
    let inv = inventory();
    let d = desired(&inv);
    let Check::Change(adopt) = check_one(&K3sAdopt, &inv, &d, &install_sh(&d, "")) else {
        panic!("expected a takeover")
    };
    let rest = adopt.env_rest.expect("env file");
    assert_eq!(rest.expose(), "HTTP_PROXY='http://proxy:3128'\n");
    assert_eq!(adopt.imported, ["token"]);
}
