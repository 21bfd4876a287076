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
        unit_name: "k3s.service",
        unit_path: paths::SERVER_UNIT,
        unit: render::unit_file(node.role),
        agent: None,
        agent_dropin: dropin(&["10.0.0.1".into()], &[]),
        k3s_from: Default::default(),
        agent_from: Default::default(),
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
        tools_missing: Vec::new(),
        tools_taken: Vec::new(),
        data_dir_config: None,
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
        [
            "k3s-binary",
            "k3s-tools",
            "k3s-config",
            "k3s-unit",
            "k3s-service"
        ]
    );
    assert_eq!(
        p[0].1[0],
        Change::new(paths::K3S_BIN, "absent", "v1.32.5+k3s1")
    );
    let service: Vec<&str> = p[4].1.iter().map(|c| c.after.as_str()).collect();
    // A unit systemd never loaded needs no reload: starting it reads it.
    assert_eq!(service, ["enabled", "active"]);
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
fn config_drift_is_shown_without_a_hash_of_the_secret_file() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    let edited = sha256_hex(b"edited");
    f.files.insert(paths::CONFIG.into(), edited.clone());
    let p = plan(&inv, &d, &f);
    assert_eq!(
        p[0].1,
        [Change::new(paths::CONFIG, "modified", "pictl's config")]
    );
    let DesiredConfig::Known(cfg) = &d.config else {
        panic!("known config")
    };
    let want = sha256_hex(cfg.expose().as_bytes());
    let shown = format!("{p:?}");
    for hash in [&edited, &want] {
        assert!(!shown.contains(&hash[..8]), "{shown}");
    }
    assert!(!shown.contains("sha256"), "{shown}");
}

/// (path, mode, uid) a converged node has wrong.
fn wrong_meta(d: &Desired, path: &str, mode: u32, uid: u32) -> Facts {
    let mut f = converged(d);
    f.file_meta.insert(
        path.into(),
        FileMeta {
            mode,
            uid,
            gid: uid,
        },
    );
    f
}

#[test]
fn a_config_chmodded_644_is_chmodded_back_without_a_restart() {
    let inv = inventory();
    let d = desired(&inv);
    let f = wrong_meta(&d, paths::CONFIG, 0o644, 0);
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-config"], "no restart, no reload: {p:?}");
    assert_eq!(
        p[0].1.iter().map(Change::to_string).collect::<Vec<_>>(),
        ["/etc/rancher/k3s/config.yaml: mode 0644 → 0600"]
    );
    let Check::Change(K3sConfigPlan::Fix(fix)) = check_one(&K3sConfig, &inv, &d, &f) else {
        panic!("expected a metadata fix")
    };
    assert_eq!(fix.want, FileMeta::root(0o600));
}

#[test]
fn a_chowned_binary_is_chowned_back_not_reinstalled_nor_restarted() {
    let inv = inventory();
    let d = desired(&inv);
    let f = wrong_meta(&d, paths::K3S_BIN, 0o755, 1000);
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-binary"], "{p:?}");
    assert_eq!(
        p[0].1,
        [Change::new(paths::K3S_BIN, "owner 1000:1000", "0:0")]
    );
    assert!(matches!(
        check_one(&K3sBinary, &inv, &d, &f),
        Check::Change(K3sBinaryPlan::Fix(_))
    ));
}

#[test]
fn a_unit_with_the_wrong_mode_is_fixed_without_reload_or_restart() {
    let inv = inventory();
    let d = desired(&inv);
    let f = wrong_meta(&d, paths::SERVER_UNIT, 0o666, 0);
    let p = plan(&inv, &d, &f);
    assert_eq!(names(&p), ["k3s-unit"], "{p:?}");
    assert_eq!(
        p[0].1[0].to_string(),
        format!("{}: mode 0666 → 0644", paths::SERVER_UNIT)
    );
}

#[test]
fn a_rewritten_file_gets_its_mode_from_the_upload_not_a_separate_fix() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = wrong_meta(&d, paths::CONFIG, 0o644, 1000);
    f.files.insert(paths::CONFIG.into(), "edited".into());
    let Check::Change(p) = check_one(&K3sConfig, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert!(p.rewrites());
    assert_eq!(p.changes().len(), 1, "{p:?}");
    // Content and mode both wrong: this one restarts.
    assert_eq!(names(&plan(&inv, &d, &f)), ["k3s-config", "k3s-service"]);
}

#[test]
fn the_agents_files_with_wrong_modes_are_fixed_without_a_restart() {
    let inv = inventory();
    let (d, mut f) = with_agent(&inv);
    f.file_meta
        .insert(paths::HEALTH_AGENT_BIN.into(), FileMeta::root(0o777));
    f.file_meta.insert(
        paths::HEALTH_AGENT_UNIT.into(),
        FileMeta {
            mode: 0o644,
            uid: 1000,
            gid: 0,
        },
    );
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert_eq!(p.binary, None);
    assert_eq!(p.unit, None);
    assert_eq!(p.fixes.len(), 2, "{p:?}");
    assert!(p.service.is_empty(), "{p:?}");
    let shown: Vec<String> = p.changes().iter().map(Change::to_string).collect();
    assert_eq!(
        shown,
        [
            format!("{}: mode 0777 → 0755", paths::HEALTH_AGENT_BIN),
            format!("{}: owner 1000:0 → 0:0", paths::HEALTH_AGENT_UNIT),
        ]
    );
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
fn a_pi_is_judged_by_its_controllers_not_its_cmdline_flags() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    // Memory on and no flags: converged, nothing to edit or reboot.
    f.boot_cmdline = Some((
        "/boot/firmware/cmdline.txt".into(),
        "console=tty1 rootwait".into(),
    ));
    assert_eq!(check_one(&PiCgroups, &inv, &d, &f), Check::Converged);
    assert!(
        plan(&inv, &d, &f).is_empty(),
        "a converged Pi plans nothing"
    );
    // Memory off on 6.12: cgroup_enable=memory only, and a reboot.
    f.cgroup_controllers.retain(|c| c != "memory");
    let Check::Change(p) = check_one(&PiCgroups, &inv, &d, &f) else {
        panic!("expected changes")
    };
    assert_eq!(p.add, ["cgroup_enable=memory"]);
    assert_eq!(p.changes()[1].what, "reboot");
    // After the reboot the flag is there but the controller is still off.
    f.boot_cmdline = Some((
        "/boot/firmware/cmdline.txt".into(),
        with_flags("console=tty1 rootwait", &p.add),
    ));
    assert!(
        matches!(check_one(&PiCgroups, &inv, &d, &f), Check::Blocked(why) if why.contains("memory cgroup") && why.contains("6.12.25"))
    );
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
    f.file_meta
        .insert(paths::HEALTH_AGENT_BIN.into(), FileMeta::root(0o755));
    f.file_meta
        .insert(paths::HEALTH_AGENT_UNIT.into(), FileMeta::root(0o644));
    f.files.insert(
        paths::AGENT_DROPIN.into(),
        sha256_hex(d.agent_dropin.as_bytes()),
    );
    f.file_meta
        .insert(paths::AGENT_DROPIN.into(), FileMeta::root(0o644));
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

/// A unit systemd never loaded is read from disk when started: writing it
/// needs no reload. One systemd still holds (its file deleted under it) does.
#[test]
fn a_missing_unit_is_written_and_started_reloading_only_a_unit_systemd_holds() {
    let inv = inventory();
    let (d, mut f) = with_agent(&inv);
    f.files.remove(paths::HEALTH_AGENT_UNIT);
    let held = f.units.remove("pictl-agent.service").expect("running");
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert_eq!(p.unit, Some("absent"));
    assert!(!p.service.daemon_reload && p.service.enable, "{p:?}");
    assert!(matches!(p.service.action, ServiceAction::Start { .. }));
    f.units.insert("pictl-agent.service".into(), held);
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert!(p.service.daemon_reload, "{p:?}");
}

#[test]
fn a_changed_firewall_drop_in_is_rewritten_and_reloads_and_restarts_the_agent() {
    let inv = inventory();
    let (mut d, f) = with_agent(&inv);
    d.agent_dropin = dropin(
        &["10.0.0.1".into()],
        &["10.42.0.0/16".parse().expect("cidr")],
    );
    let Check::Change(p) = check_one(&HealthAgent, &inv, &d, &f) else {
        panic!("expected a change")
    };
    assert_eq!(p.dropin, Some("other content"));
    assert_eq!((p.binary, p.unit), (None, None));
    assert!(p.service.daemon_reload, "{p:?}");
    assert_eq!(
        p.service.action,
        ServiceAction::Restart(RestartReason::Replaced)
    );
    let shown: Vec<String> = p.changes().iter().map(Change::to_string).collect();
    assert_eq!(
        shown[0],
        format!(
            "{}: other content → pictl's firewall drop-in",
            paths::AGENT_DROPIN
        )
    );
    assert!(
        d.agent_dropin
            .contains("IPAddressAllow=10.0.0.1 10.42.0.0/16\n")
    );
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
    let f = install_sh(&d, "\t'--node-ip' \\\n\t'10.0.0.99' \\\n");
    let Check::Change(adopt) = check_one(&K3sAdopt, &inv, &d, &f) else {
        panic!("expected a takeover")
    };
    assert_eq!(
        adopt.changed,
        [(
            "node-ip".to_string(),
            "[10.0.0.99]".to_string(),
            "[10.0.0.1]".to_string()
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
fn extra_names_labels_and_a_kubeconfig_mode_block_the_takeover_saying_where_they_go() {
    let inv = inventory();
    let d = desired(&inv);
    let flags = "\t'--tls-san' \\\n\t'k3s.example' \\\n\t'--node-label' \\\n\t'zone=shelf' \\\n\
                 \t'--write-kubeconfig-mode' \\\n\t'644' \\\n";
    let Check::Blocked(why) = check_one(&K3sAdopt, &inv, &d, &install_sh(&d, flags)) else {
        panic!("expected the takeover to be refused")
    };
    for want in [
        "tls-san = k3s.example (add to [cluster] tls_san)",
        "node-label = zone=shelf (add to the node's labels)",
        "write-kubeconfig-mode = 644 (add to [cluster] server_config or the node's k3s_config)",
    ] {
        assert!(why.contains(want), "{want} not in {why}");
    }
}

#[test]
fn a_carried_kubeconfig_mode_is_adopted_with_a_chmod_not_a_restart() {
    let inv = inventory_with(r#"server_config = { "write-kubeconfig-mode" = "0640" }"#);
    let d = desired(&inv);
    let f = install_sh(&d, "\t'--write-kubeconfig-mode' \\\n\t'644' \\\n");
    let Check::Change(adopt) = check_one(&K3sAdopt, &inv, &d, &f) else {
        panic!("expected a takeover")
    };
    assert!(adopt.changed.is_empty(), "{adopt:?}");
    assert_eq!(
        adopt.live,
        [(
            "write-kubeconfig-mode".to_string(),
            "644".to_string(),
            "0640".to_string()
        )]
    );
    let p = plan(&inv, &d, &f);
    let shown: Vec<String> = p[0].1.iter().map(|c| c.after.clone()).collect();
    assert!(
        shown.contains(&"0640 (/etc/rancher/k3s/k3s.yaml chmodded, no restart)".to_string()),
        "{shown:?}"
    );
    let service: Vec<String> = p
        .last()
        .expect("service")
        .1
        .iter()
        .map(|c| c.after.clone())
        .collect();
    assert!(
        service.contains(&"kept running: it already runs as pictl configures it".to_string()),
        "{service:?}"
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

/// A node that only answers `plan --diff`'s read, and counts every call.
#[derive(Default)]
struct ReadOnlyNode {
    files: BTreeMap<String, String>,
    execs: std::sync::Mutex<Vec<Vec<String>>>,
}

impl crate::transport::Transport for ReadOnlyNode {
    fn exec<'a>(
        &'a self,
        cmd: &'a crate::transport::RemoteCommand,
    ) -> crate::transport::BoxFuture<
        'a,
        Result<crate::transport::Output, crate::transport::TransportError>,
    > {
        use base64::Engine;
        let args = cmd.arguments().to_vec();
        self.execs.lock().expect("log").push(args.clone());
        let b64 = base64::engine::general_purpose::STANDARD;
        let stdout: String = args
            .iter()
            .skip(3)
            .map(|p| {
                format!(
                    "{p} {}\n",
                    b64.encode(self.files.get(p).cloned().unwrap_or_default())
                )
            })
            .collect();
        Box::pin(async move {
            Ok(crate::transport::Output {
                stdout: stdout.into_bytes(),
                ..Default::default()
            })
        })
    }

    fn put_file<'a>(
        &'a self,
        _: &'a [u8],
        path: &'a str,
        _: u32,
        _: bool,
    ) -> crate::transport::BoxFuture<'a, Result<(), crate::transport::TransportError>> {
        panic!("plan --diff wrote {path}")
    }

    fn round_trips(&self) -> u64 {
        self.execs.lock().expect("log").len() as u64
    }
}

const NODE_TOKEN: &str = "K1019f0c3a8e2d4b6a7c9e1f3a5b7d9c2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a1b3c5d7::server:3f9e2c7a1b8d4e6f";

fn diffs_of(inv: &Inventory, d: &Desired, f: &Facts, node: &ReadOnlyNode) -> Vec<diff::FileDiff> {
    let none = BTreeSet::new();
    let adoption = assess_adoption(&inv.nodes[0], f, d);
    let cx = NodeCx {
        node: &inv.nodes[0],
        facts: f,
        desired: d,
        pending: &none,
        adoption: adoption.as_ref(),
    };
    futures::executor::block_on(diff::diffs(node, &cx))
}

#[test]
fn plan_diff_reads_drifted_text_files_once_and_never_shows_a_token() {
    let inv = inventory();
    let mut d = desired(&inv);
    // pictl would write a real-looking token too.
    d.config = DesiredConfig::Known(Secret::new(render::server_config(
        &inv,
        &inv.nodes[0],
        &Secret::new(NODE_TOKEN.replace("3f9e", "0000")),
        None,
    )));
    let mut f = converged(&d);
    let on_node = format!("node-name: s1\ntoken: {NODE_TOKEN}\ndebug: true\n");
    let unit_on_node = d.unit.replace("Restart=always", "Restart=no");
    f.files
        .insert(paths::CONFIG.into(), sha256_hex(on_node.as_bytes()));
    f.files.insert(
        paths::SERVER_UNIT.into(),
        sha256_hex(unit_on_node.as_bytes()),
    );
    let node = ReadOnlyNode {
        files: [
            (paths::CONFIG.to_string(), on_node),
            (paths::SERVER_UNIT.to_string(), unit_on_node),
        ]
        .into_iter()
        .collect(),
        ..ReadOnlyNode::default()
    };
    let diffs = diffs_of(&inv, &d, &f, &node);
    let execs = node.execs.lock().expect("log").clone();
    assert_eq!(execs.len(), 1, "one round trip: {execs:?}");
    assert_eq!(
        &execs[0][3..],
        [paths::CONFIG, paths::SERVER_UNIT],
        "never the binary"
    );
    let paths_shown: Vec<&str> = diffs.iter().map(|d| d.path).collect();
    assert_eq!(paths_shown, [paths::CONFIG, paths::SERVER_UNIT]);
    let all: String = diffs.iter().map(|d| d.text.as_str()).collect();
    for secret in [
        NODE_TOKEN,
        &NODE_TOKEN.replace("3f9e", "0000"),
        "K10",
        "::server:",
    ] {
        assert!(!all.contains(secret), "{secret} in\n{all}");
    }
    assert!(all.contains("-debug: true\n"), "{all}");
    assert!(all.contains("-Restart=no\n+Restart=always\n"), "{all}");
}

#[test]
fn plan_diff_reads_nothing_on_a_converged_node_or_for_a_mode_fix() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.file_meta
        .insert(paths::CONFIG.into(), FileMeta::root(0o644));
    let node = ReadOnlyNode::default();
    assert!(diffs_of(&inv, &d, &f, &node).is_empty());
    assert_eq!(node.round_trips(), 0);
}

#[test]
fn an_upgrade_that_skips_a_minor_release_is_refused_with_the_path() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.k3s_version = Some("v1.30.4+k3s1".into());
    f.files.insert(paths::K3S_BIN.into(), "older".into());
    let Check::Blocked(why) = check_one(&K3sBinary, &inv, &d, &f) else {
        panic!("expected a refusal")
    };
    assert!(why.contains("would skip v1.31"), "{why}");
    assert!(why.contains("channel = \"v1.31\""), "{why}");
}

#[test]
fn killall_and_uninstall_scripts_and_missing_links_are_installed() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.files.remove(paths::KILLALL);
    f.tools_missing = vec!["kubectl".into(), "ctr".into()];
    let Check::Change(p) = check_one(&K3sTools, &inv, &d, &f) else {
        panic!("expected changes")
    };
    assert_eq!(p.scripts, [(paths::KILLALL, false)]);
    assert_eq!(p.links, ["kubectl", "ctr"]);
    // A server's uninstall script has the server's name, an agent's its own.
    assert_eq!(
        uninstall_path(crate::inventory::Role::Agent),
        paths::AGENT_UNINSTALL
    );
}

#[test]
fn the_node_scripts_are_valid_sh_and_keep_the_node_password() {
    for (name, text) in [
        ("killall", k3s_tools_text::KILLALL),
        ("uninstall", k3s_tools_text::UNINSTALL),
    ] {
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", text])
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with("#!/bin/sh\n# Managed by pictl"), "{name}");
    }
    let removes_password = k3s_tools_text::UNINSTALL
        .lines()
        .any(|l| l.trim_start().starts_with("rm") && l.contains("/etc/rancher/node"));
    assert!(
        !removes_password,
        "the node password must survive an uninstall"
    );
}

mod agent_access_step {
    use super::*;

    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.do-not-print-me";

    fn with_access(inv: &Inventory) -> Desired {
        let mut d = desired(inv);
        d.agent = Some(Ok(crate::agent_binary::AgentBinary {
            sha256: "a".repeat(64),
            bytes: std::sync::Arc::new(vec![1, 2, 3]),
        }));
        d.agent_access = Some(AccessFiles {
            token: Secret::new(TOKEN),
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            publish_conf: publish_conf("https://10.0.0.1:6443", "s1", None),
        });
        d
    }

    /// A node holding every access file with the right content and metadata.
    fn holding(d: &Desired) -> Facts {
        let mut f = converged(d);
        f.agent_ids = Some((999, 998));
        let a = d.agent_access.as_ref().expect("access");
        let agent = FileMeta {
            mode: 0o600,
            uid: 999,
            gid: 998,
        };
        for (path, body, meta) in [
            (paths::AGENT_TOKEN, a.token.expose(), agent),
            (paths::AGENT_CA, a.ca_pem.as_str(), agent),
            (
                paths::AGENT_PUBLISH,
                a.publish_conf.as_str(),
                FileMeta::root(0o644),
            ),
        ] {
            f.files.insert(path.into(), sha256_hex(body.as_bytes()));
            f.file_meta.insert(path.into(), meta);
        }
        f
    }

    #[test]
    fn agent_access_skips_until_the_api_is_up_and_blocks_without_the_agents_user() {
        let inv = inventory();
        let mut d = with_access(&inv);
        let mut f = holding(&d);
        f.agent_ids = None;
        assert!(matches!(
            check_one(&AgentAccess, &inv, &d, &f),
            Check::Blocked(_)
        ));
        d.agent_access = None;
        assert!(matches!(
            check_one(&AgentAccess, &inv, &d, &f),
            Check::Skip(_)
        ));
    }

    #[test]
    fn a_node_holding_its_access_is_converged() {
        let inv = inventory();
        let d = with_access(&inv);
        assert_eq!(
            check_one(&AgentAccess, &inv, &d, &holding(&d)),
            Check::Converged
        );
    }

    #[test]
    fn a_fresh_node_gets_three_files_and_one_restart_and_the_token_is_never_shown() {
        let inv = inventory();
        let d = with_access(&inv);
        let mut f = converged(&d);
        f.agent_ids = Some((999, 998));
        let Check::Change(p) = check_one(&AgentAccess, &inv, &d, &f) else {
            panic!("expected changes")
        };
        assert_eq!(
            p.changes()
                .iter()
                .map(Change::to_string)
                .collect::<Vec<_>>(),
            [
                "/etc/pictl-agent/token: absent → pictl's",
                "/etc/pictl-agent/ca.crt: absent → pictl's",
                "/etc/pictl-agent/publish.conf: absent → pictl's",
                "pictl-agent.service: running → restarted",
            ]
        );
        assert!(p.restart);
        let shown = format!(
            "{p:?} {:?} {}",
            d.agent_access,
            serde_json::to_string(&p).expect("json")
        );
        assert!(!shown.contains("do-not-print-me"), "{shown}");
    }

    #[test]
    fn a_rotated_token_is_rewritten_and_restarts() {
        let inv = inventory();
        let mut d = with_access(&inv);
        let f = holding(&d);
        if let Some(a) = d.agent_access.as_mut() {
            a.token = Secret::new("another");
        }
        let Check::Change(p) = check_one(&AgentAccess, &inv, &d, &f) else {
            panic!("expected a rewrite")
        };
        assert_eq!(p.write, [(paths::AGENT_TOKEN, "other content")]);
        assert!(p.restart);
    }

    #[test]
    fn a_token_made_world_readable_is_chmodded_back_without_a_restart() {
        let inv = inventory();
        let d = with_access(&inv);
        let mut f = holding(&d);
        f.file_meta.insert(
            paths::AGENT_TOKEN.into(),
            FileMeta {
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        );
        let Check::Change(p) = check_one(&AgentAccess, &inv, &d, &f) else {
            panic!("expected a fix")
        };
        assert!(p.write.is_empty() && !p.restart);
        assert_eq!(
            p.changes()
                .iter()
                .map(Change::to_string)
                .collect::<Vec<_>>(),
            [
                "/etc/pictl-agent/token: mode 0644 → 0600",
                "/etc/pictl-agent/token: owner 0:0 → 999:998",
            ]
        );
    }
}
