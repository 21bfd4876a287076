//! Upgrades with cordon and drain, end to end: the playson workload (3
//! replicas spread over the lab's nodes, its PodDisruptionBudget) keeps
//! running while `pictl apply` takes the cluster from v1.32.5 to v1.33.1
//! one node at a time. What the budget promises is watched from here, by
//! polling the API with kubectl during the run, not taken from the
//! simulator's own refusals. Then a budget that can never be met makes a
//! drain time out, naming it, with the node left uncordoned and on its
//! version; and a bare Pod (no controller) stops its node's drain by name
//! and survives, until `--drain-force`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::{Duration, Instant};

use pictl_e2e::pictl::{self, text};
use pictl_e2e::{Case, Lab, LabSpec, harness};
use serde_json::Value;

const OLD: &str = "v1.32.5+k3s1";
const NEW: &str = "v1.33.1+k3s1";
const NODES: [&str; 3] = ["node1", "node2", "node3"];

#[path = "upgrade_safety.rs"]
mod safety;
use safety::{
    a_pinned_downgrade_is_refused_with_nothing_restarted,
    a_server_that_never_comes_up_on_the_new_release_is_rolled_back,
};

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![
        a_server_that_never_comes_up_on_the_new_release_is_rolled_back,
        an_upgrade_drains_one_node_at_a_time_and_never_breaks_the_budget,
        a_pinned_downgrade_is_refused_with_nothing_restarted,
        a_budget_that_can_never_be_met_times_out_the_drain_and_names_it,
        a_bare_pod_stops_its_nodes_drain_by_name_and_survives,
    ];
    harness::run(cases, LabSpec { nodes: 3, pi: &[] })
}

fn pictl(lab: &Lab, inventory: &Path, args: &[&str]) -> Output {
    pictl::run(lab, inventory, args)
}

fn report(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("json: {e}\n{}", text(o)))
}

fn kubectl_out(lab: &Lab, args: &[&str]) -> Output {
    pictl::kubectl_output(&pictl::lab_kubeconfig(lab), args)
}

fn kubectl(lab: &Lab, args: &[&str]) -> String {
    pictl::kubectl(&pictl::lab_kubeconfig(lab), args)
}

fn json(lab: &Lab, args: &[&str]) -> Value {
    serde_json::from_str(&kubectl(lab, args)).expect("kubectl json")
}

/// The lab's inventory at `version`, with the playson playbook.
fn inventory(lab: &Lab, version: &str) -> PathBuf {
    inventory_with(lab, version, "")
}

/// The lab's inventory at `version` with `extra` in its `[cluster]`.
fn inventory_with(lab: &Lab, version: &str, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let pinned = format!("k3s_version = \"{OLD}\"");
    assert!(text.contains(&pinned), "{text}");
    let text = text.replace(&pinned, &format!("{pinned}\n{extra}"));
    let playson = pictl_e2e::lab::repo_root()
        .join("playbooks")
        .join("playson");
    // The lab cannot reach Docker Hub: no image lookups here.
    let text = format!(
        "{}\n[workload]\nplaybooks = [\"{}\"]\nimage_arch_check = \"off\"\n",
        text.replace(OLD, version),
        playson.display()
    );
    let tag = if extra.is_empty() { "" } else { "-extra" };
    let path = lab
        .dir()
        .join(format!("inventory-upgrade-{version}{tag}.toml"));
    std::fs::write(&path, text).expect("write inventory");
    path
}

fn ready(o: &Value) -> bool {
    o["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// `kubectl` arguments listing the httpbin Pods as JSON.
const HTTPBIN_PODS: [&str; 8] = [
    "get",
    "pods",
    "-n",
    "playson",
    "-l",
    "app=httpbin",
    "-o",
    "json",
];

/// (ready httpbin pods, cordoned nodes), as seen now through the API.
fn observe(lab: &Lab) -> Option<(usize, Vec<String>)> {
    let pods = kubectl_out(lab, &HTTPBIN_PODS);
    let nodes = kubectl_out(lab, &["get", "nodes", "-o", "json"]);
    // The API is briefly away while the server restarts.
    if !pods.status.success() || !nodes.status.success() {
        return None;
    }
    let pods: Value = serde_json::from_slice(&pods.stdout).ok()?;
    let nodes: Value = serde_json::from_slice(&nodes.stdout).ok()?;
    let ready_pods = pods["items"]
        .as_array()?
        .iter()
        .filter(|p| ready(p))
        .count();
    let cordoned = nodes["items"]
        .as_array()?
        .iter()
        .filter(|n| n["spec"]["unschedulable"] == true)
        .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
        .collect();
    Some((ready_pods, cordoned))
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Node name → (kubelet version, unschedulable).
fn nodes(lab: &Lab) -> Vec<(String, String, bool)> {
    json(lab, &["get", "nodes", "-o", "json"])["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                n["spec"]["unschedulable"] == true,
            )
        })
        .collect()
}

fn httpbin_pods(lab: &Lab) -> Vec<(String, String)> {
    json(lab, &HTTPBIN_PODS)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| {
            (
                p["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn an_upgrade_drains_one_node_at_a_time_and_never_breaks_the_budget(lab: &Lab) {
    let _ = std::fs::remove_dir_all(lab.dir().join("state"));
    let old = inventory(lab, OLD);
    let out = pictl(lab, &old, &["apply", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    kubectl(
        lab,
        &[
            "-n",
            "playson",
            "wait",
            "--for=condition=Available",
            "deploy/httpbin",
            "--timeout=60s",
        ],
    );
    wait_for("3 ready httpbin pods", Duration::from_secs(60), || {
        observe(lab).is_some_and(|(r, _)| r == 3)
    });
    let before = httpbin_pods(lab);
    let mut spread: Vec<&str> = before.iter().map(|p| p.1.as_str()).collect();
    spread.sort();
    assert_eq!(spread, NODES, "3 replicas spread over the nodes");
    let pdb = json(
        lab,
        &["get", "pdb", "-n", "playson", "httpbin", "-o", "json"],
    );
    assert_eq!(pdb["status"]["desiredHealthy"], 2, "{}", pdb["status"]);

    // The upgrade, watched from here.
    let new = inventory(lab, NEW);
    let cmd = pictl_cmd_for_thread(lab, &new);
    let run = std::thread::spawn(move || run_to_end(cmd));
    let (mut fewest_ready, mut most_cordoned, mut seen_cordoned) = (usize::MAX, 0, Vec::new());
    while !run.is_finished() {
        if let Some((ready_pods, cordoned)) = observe(lab) {
            fewest_ready = fewest_ready.min(ready_pods);
            most_cordoned = most_cordoned.max(cordoned.len());
            for c in cordoned {
                if !seen_cordoned.contains(&c) {
                    seen_cordoned.push(c);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run.join().expect("pictl thread");
    let v = report(&out);
    assert_eq!(out.status.code(), Some(0), "{v:#}\n{}", text(&out));
    // The budget (maxUnavailable 1 of 3) held throughout: never fewer than 2 ready.
    assert!(
        fewest_ready >= 2 && fewest_ready != usize::MAX,
        "{fewest_ready} ready at one point"
    );
    assert_eq!(most_cordoned, 1, "more than one node cordoned at once");
    assert!(!seen_cordoned.is_empty(), "never saw a node cordoned");
    // Every node was drained and uncordoned by pictl, servers first.
    let order: Vec<&str> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    for n in NODES {
        let steps = v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|x| x["name"] == n)
            .expect("node")["steps"]
            .to_string();
        assert!(steps.contains("cordoned, drained ("), "{n}: {steps}");
        assert!(steps.contains("\"uncordon\""), "{n}: {steps}");
    }
    assert_eq!(order, NODES);
    let after = httpbin_pods(lab);
    assert!(
        before.iter().all(|b| !after.contains(b)),
        "every original pod was evicted: {before:?} {after:?}"
    );
    for (name, version, cordoned) in nodes(lab) {
        assert_eq!(version, NEW, "{name}");
        assert!(!cordoned, "{name} left cordoned");
        let v = lab
            .ssh_ok(&name, "root", "/usr/local/bin/k3s --version")
            .expect("version");
        assert!(v.contains(NEW), "{name}: {v}");
    }
    kubectl(
        lab,
        &[
            "-n",
            "playson",
            "wait",
            "--for=condition=Available",
            "deploy/httpbin",
            "--timeout=60s",
        ],
    );
    let plan = pictl(lab, &new, &["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

fn pictl_cmd_for_thread(lab: &Lab, inventory: &Path) -> Command {
    // The mirror is populated by the first `pictl` of the binary.
    pictl::command(
        pictl::build(),
        lab,
        inventory,
        &["apply", "--output", "json", "--drain-timeout", "120"],
    )
}

fn run_to_end(mut cmd: Command) -> Output {
    cmd.output().expect("run pictl")
}

const FROZEN: &str = "apiVersion: v1
kind: Namespace
metadata: {name: frozen}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: keep, namespace: frozen}
spec:
  replicas: 1
  selector: {matchLabels: {app: keep}}
  template:
    metadata: {labels: {app: keep}}
    spec:
      nodeSelector: {kubernetes.io/hostname: node1}
      containers: [{name: c, image: busybox}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: keep, namespace: frozen}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: keep}}
";

fn a_budget_that_can_never_be_met_times_out_the_drain_and_names_it(lab: &Lab) {
    let new = inventory(lab, NEW);
    let out = pictl(lab, &new, &["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let f = lab.dir().join("frozen.yaml");
    std::fs::write(&f, FROZEN).expect("manifest");
    kubectl(
        lab,
        &["apply", "--server-side", "-f", f.to_str().expect("utf8")],
    );
    kubectl(
        lab,
        &[
            "-n",
            "frozen",
            "wait",
            "--for=condition=Available",
            "deploy/keep",
            "--timeout=60s",
        ],
    );
    wait_for(
        "the budget to count its pod",
        Duration::from_secs(20),
        || {
            json(lab, &["get", "pdb", "-n", "frozen", "keep", "-o", "json"])["status"]["currentHealthy"]
                == 1
        },
    );

    // Back to v1.32.5 (forced: K3s does not support downgrades, pictl
    // refuses them unless told): node1 goes first and its drain can never finish.
    let old = inventory_with(lab, OLD, "allow_downgrade = true");
    let started = Instant::now();
    let out = pictl(
        lab,
        &old,
        &["apply", "--output", "json", "--drain-timeout", "5"],
    );
    let took = started.elapsed();
    let v = report(&out);
    assert_eq!(out.status.code(), Some(1), "{v:#}\n{}", text(&out));
    let node1 = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == "node1")
        .expect("node1");
    let why = node1["failed"].as_str().unwrap_or_default();
    for part in [
        "drain of node1 timed out after 5 s",
        "PodDisruptionBudget frozen/keep (needs 1 healthy pods, has 1)",
        "node uncordoned and not upgraded",
    ] {
        assert!(why.contains(part), "{part:?} not in {why}");
    }
    assert!(
        took < Duration::from_secs(120),
        "the drain timeout was not honoured: {took:?}\n{}",
        text(&out)
    );
    // Left as it was: uncordoned, on its version, its frozen pod still there.
    let (_, version, cordoned) = nodes(lab)
        .into_iter()
        .find(|n| n.0 == "node1")
        .expect("node1");
    assert_eq!(version, NEW);
    assert!(!cordoned, "node1 left cordoned");
    let n1 = json(lab, &["get", "node", "node1", "-o", "json"]);
    assert!(
        n1["metadata"]["annotations"]
            .get("pictl.dev/cordoned")
            .is_none(),
        "{}",
        n1["metadata"]
    );
    let v1 = lab
        .ssh_ok("node1", "root", "/usr/local/bin/k3s --version")
        .expect("version");
    assert!(v1.contains(NEW), "{v1}");
    let keep = kubectl(
        lab,
        &["get", "pods", "-n", "frozen", "-o", "wide", "--no-headers"],
    );
    assert!(keep.contains("node1"), "{keep}");
    // The rest were not touched: the rollout stopped at node1.
    for n in ["node2", "node3"] {
        let v = lab
            .ssh_ok(n, "root", "/usr/local/bin/k3s --version")
            .expect("version");
        assert!(v.contains(NEW), "{n}: {v}");
    }
    kubectl(lab, &["delete", "namespace", "frozen"]);
}

const BARE: &str = "apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: default}
spec:
  nodeName: node2
  terminationGracePeriodSeconds: 5
  containers: [{name: c, image: busybox}]
";

/// (kubelet version, unschedulable) of one node.
fn node_state(lab: &Lab, name: &str) -> (String, bool) {
    let (_, version, cordoned) = nodes(lab)
        .into_iter()
        .find(|n| n.0 == name)
        .unwrap_or_else(|| panic!("{name} not in the API"));
    (version, cordoned)
}

fn a_bare_pod_stops_its_nodes_drain_by_name_and_survives(lab: &Lab) {
    // Every node runs v1.33.1 (the budget case stopped before changing any).
    let f = lab.dir().join("bare.yaml");
    std::fs::write(&f, BARE).expect("manifest");
    kubectl(
        lab,
        &["apply", "--server-side", "-f", f.to_str().expect("utf8")],
    );
    // Back to v1.32.5, forced (pictl refuses downgrades unless told).
    let old = inventory_with(lab, OLD, "allow_downgrade = true");
    let plan = pictl(lab, &old, &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        text(&plan).contains("drain refused: default/bare (no controller) would be lost"),
        "{}",
        text(&plan)
    );

    // node1 (the server) has nothing to lose and goes; node2's drain stops.
    let out = pictl(lab, &old, &["apply", "--output", "json"]);
    let v = report(&out);
    assert_eq!(out.status.code(), Some(1), "{v:#}\n{}", text(&out));
    let failed = |name: &str| -> String {
        v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["name"] == name)
            .and_then(|n| n["failed"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let why = failed("node2");
    for part in [
        "drain of node2 refused before evicting anything",
        "default/bare (no controller)",
        "--drain-force",
        "node uncordoned and not upgraded",
    ] {
        assert!(why.contains(part), "{part:?} not in {why}");
    }
    assert!(
        failed("node3").contains("the upgrade of node2 failed before it"),
        "{}",
        failed("node3")
    );
    let pod = json(lab, &["get", "pod", "bare", "-o", "json"]);
    assert!(
        pod["metadata"]["deletionTimestamp"].is_null(),
        "the bare pod was evicted: {}",
        pod["metadata"]
    );
    assert_eq!(node_state(lab, "node2"), (NEW.to_string(), false));
    assert_eq!(node_state(lab, "node1").0, OLD);

    // --drain-force: kubectl drain's --force; the bare pod is gone for good.
    let out = pictl(lab, &old, &["apply", "--drain-force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for n in NODES {
        assert_eq!(node_state(lab, n), (OLD.to_string(), false), "{n}");
    }
    let gone = kubectl_out(lab, &["get", "pod", "bare"]);
    assert!(!gone.status.success(), "{}", text(&gone));
}
