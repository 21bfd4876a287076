//! Node convergence end to end: `pictl plan` and `pictl apply` against the
//! lab (real sshd, real systemd, the K3s simulator from the lab's mirror),
//! judged by `kubectl` and by what is on the nodes. Cases run in order and
//! build on each other, like an operator's day: bootstrap, re-run, drift,
//! lock, faults, upgrade, a corrupted release.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use pictl_e2e::pictl::{self, boot_id, node, steps, text};
use pictl_e2e::{Case, Lab, LabSpec, harness};
use serde_json::Value;

const OLD: &str = "v1.32.5+k3s1";
const NEW: &str = "v1.33.1+k3s1";

mod bootstrap;
use bootstrap::{
    a_node_another_controller_holds_stops_apply_before_any_change,
    a_second_concurrent_apply_is_refused_by_the_lock,
    config_drift_is_planned_and_repaired_on_that_node_only,
    config_mode_drift_is_chmodded_back_without_a_restart, first_apply_bootstraps_three_ready_nodes,
    label_and_taint_changes_reach_the_node_without_a_restart,
    plan_diff_shows_config_drift_with_the_token_redacted,
    plan_on_a_fresh_lab_lists_every_change_and_exits_2,
    second_apply_changes_nothing_and_restarts_nothing, stopped_service_is_planned_and_repaired,
};
mod faults;
use faults::{
    corrupted_artifact_is_refused_and_nothing_is_replaced,
    lost_controller_state_adopts_the_running_cluster_token,
    sudo_password_goes_through_stdin_and_repairs_drift,
    unreachable_node_is_reported_and_the_rest_converge,
    upgrade_goes_server_first_and_survives_a_node_killed_mid_run,
};
mod workload;
use workload::{
    image_preflight_refuses_a_playbook_whose_image_lacks_the_nodes_arch,
    workload_drift_is_repaired_and_objects_that_left_are_pruned,
    workload_is_server_side_applied_and_a_rerun_changes_nothing,
};
mod adoption;
use adoption::{
    a_setting_the_inventory_does_not_carry_is_refused_by_name_until_it_is_carried,
    an_install_sh_cluster_matching_the_inventory_is_taken_over_without_a_restart,
    an_install_sh_server_with_extra_names_labels_and_mode_loses_nothing,
    the_uninstall_script_removes_k3s_and_apply_puts_the_node_back,
};
mod registries;
use registries::{
    a_registry_endpoint_k3s_would_skip_is_refused_by_validate_with_its_line,
    registries_reach_k3s_with_a_restart_only_when_changed,
};
mod reset;
use reset::{
    a_dangling_kubectl_link_is_replaced_and_a_file_not_k3s_is_left,
    a_kernel_without_vxlan_is_refused_naming_the_package, a_reflashed_node_is_named_with_the_fix,
    a_reset_finds_k3s_bundled_iptables_on_a_node_without_any,
    a_reset_with_the_data_dir_elsewhere_leaves_nothing_there,
    a_slow_first_start_succeeds_within_wait_and_fails_beyond_it_with_the_journal,
    a_wrong_token_on_an_agent_fails_with_the_agents_own_journal_lines,
    reset_removes_k3s_everywhere_and_apply_bootstraps_again,
};

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![
        plan_on_a_fresh_lab_lists_every_change_and_exits_2,
        first_apply_bootstraps_three_ready_nodes,
        second_apply_changes_nothing_and_restarts_nothing,
        config_drift_is_planned_and_repaired_on_that_node_only,
        config_mode_drift_is_chmodded_back_without_a_restart,
        plan_diff_shows_config_drift_with_the_token_redacted,
        stopped_service_is_planned_and_repaired,
        label_and_taint_changes_reach_the_node_without_a_restart,
        registries_reach_k3s_with_a_restart_only_when_changed,
        a_registry_endpoint_k3s_would_skip_is_refused_by_validate_with_its_line,
        a_second_concurrent_apply_is_refused_by_the_lock,
        a_node_another_controller_holds_stops_apply_before_any_change,
        sudo_password_goes_through_stdin_and_repairs_drift,
        lost_controller_state_adopts_the_running_cluster_token,
        workload_is_server_side_applied_and_a_rerun_changes_nothing,
        workload_drift_is_repaired_and_objects_that_left_are_pruned,
        image_preflight_refuses_a_playbook_whose_image_lacks_the_nodes_arch,
        unreachable_node_is_reported_and_the_rest_converge,
        upgrade_goes_server_first_and_survives_a_node_killed_mid_run,
        corrupted_artifact_is_refused_and_nothing_is_replaced,
        the_uninstall_script_removes_k3s_and_apply_puts_the_node_back,
        reset_removes_k3s_everywhere_and_apply_bootstraps_again,
        a_wrong_token_on_an_agent_fails_with_the_agents_own_journal_lines,
        a_slow_first_start_succeeds_within_wait_and_fails_beyond_it_with_the_journal,
        a_reflashed_node_is_named_with_the_fix,
        an_install_sh_cluster_matching_the_inventory_is_taken_over_without_a_restart,
        a_setting_the_inventory_does_not_carry_is_refused_by_name_until_it_is_carried,
        an_install_sh_server_with_extra_names_labels_and_mode_loses_nothing,
        a_kernel_without_vxlan_is_refused_naming_the_package,
        a_reset_with_the_data_dir_elsewhere_leaves_nothing_there,
        a_dangling_kubectl_link_is_replaced_and_a_file_not_k3s_is_left,
        a_reset_finds_k3s_bundled_iptables_on_a_node_without_any,
    ];
    harness::run(
        cases,
        LabSpec {
            nodes: 3,
            pi: &["node3"],
        },
    )
}

fn pictl_cmd(lab: &Lab, inventory: &Path, args: &[&str]) -> Command {
    pictl::lab_command(lab, inventory, args)
}

fn pictl(lab: &Lab, inventory: &Path, args: &[&str]) -> Output {
    pictl_cmd(lab, inventory, args).output().expect("run pictl")
}

/// `pictl apply --output json`, with its exit code.
fn apply_json(lab: &Lab, inventory: &Path) -> (i32, Value, Output) {
    pictl::apply_json(pictl_cmd(lab, inventory, &[]))
}

fn kubectl(lab: &Lab, args: &[&str]) -> String {
    pictl::lab_kubectl(lab, args)
}

/// NAME STATUS ROLES VERSION per node, from real kubectl.
fn node_table(lab: &Lab) -> Vec<(String, String, String, String)> {
    kubectl(lab, &["get", "nodes", "--no-headers"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].into(),
                f[1].into(),
                f[2].into(),
                f.last().copied().unwrap_or_default().into(),
            )
        })
        .collect()
}

fn wait_all_ready(lab: &Lab, version: &str) -> Vec<(String, String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = node_table(lab);
        if t.len() == 3 && t.iter().all(|(_, s, _, v)| s == "Ready" && v == version)
            || Instant::now() > deadline
        {
            return t;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn unit_started(lab: &Lab, node: &str, unit: &str) -> String {
    lab.ssh_ok(
        node,
        "root",
        &format!("systemctl show -p ActiveEnterTimestampMonotonic,InvocationID {unit}"),
    )
    .expect("systemctl show")
}

fn unit_of(node: &str) -> &'static str {
    if node == "node1" {
        "k3s.service"
    } else {
        "k3s-agent.service"
    }
}

fn ensure_converged(lab: &Lab) {
    let (code, v, out) = apply_json(lab, &lab.inventory());
    assert_eq!(code, 0, "apply failed: {v:#}\n{}", text(&out));
}

fn playson() -> PathBuf {
    pictl_e2e::lab::repo_root()
        .join("playbooks")
        .join("playson")
}

/// The lab's inventory with `extra` added under `[cluster]`.
fn inventory_with(lab: &Lab, extra: &str, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let path = lab.dir().join(name);
    let text = text.replacen("[cluster]\n", &format!("[cluster]\n{extra}\n"), 1);
    std::fs::write(&path, text).expect("write inventory");
    path
}
