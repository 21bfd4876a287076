//! The simulator's Pods, ReplicaSets, cordon, Eviction API and
//! PodDisruptionBudget status, judged by real `kubectl` (`get pods`, `get
//! rs`, `cordon`, `drain`, `uncordon`) on loopback processes.

use super::*;
use serde_json::json;

const WORKLOAD: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway,
         labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: c
        image: busybox
        readinessProbe: {httpGet: {path: /, port: 8080}, initialDelaySeconds: 2}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: web}}
";

/// (name, ready, status, node) of each `kubectl get pods -o wide` row.
fn pods(sim: &Sim) -> Vec<(String, String, String, String)> {
    sim.k(&["get", "pods", "-o", "wide", "--no-headers"])
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c[0].into(), c[1].into(), c[2].into(), c[6].into())
        })
        .collect()
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn pods_cordon_drain_and_disruption_budgets() {
    let sim = Sim::start(
        "kube-controller-manager-arg:\n  - node-monitor-grace-period=4s\nnode-name: srv\n",
        &[],
    );
    let token = sim.token();
    let mut a1 = sim.agent("worker1", &token, &[]);
    a1.wait_log("k3s agent is up and running", Duration::from_secs(20));
    let mut a2 = sim.agent("worker2", &token, &[]);
    a2.wait_log("k3s agent is up and running", Duration::from_secs(20));
    assert!(sim.apply(WORKLOAD, &[]).status.success());
    // Running at once, Ready only after the readiness probe's delay.
    wait_for("3 running pods", Duration::from_secs(10), || {
        pods(&sim).iter().filter(|p| p.2 == "Running").count() == 3
    });
    sim.k(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=20s",
    ]);
    let spread: Vec<String> = pods(&sim).into_iter().map(|p| p.3).collect();
    let mut sorted = spread.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["srv", "worker1", "worker2"],
        "one per node: {spread:?}"
    );
    assert!(pods(&sim).iter().all(|p| p.1 == "1/1"), "{:?}", pods(&sim));
    let rs = sim.k(&["get", "rs", "--no-headers"]);
    let cols: Vec<&str> = rs.split_whitespace().collect();
    assert!(cols[0].starts_with("web-"), "{rs}");
    assert_eq!(&cols[1..4], ["3", "3", "3"], "DESIRED CURRENT READY: {rs}");
    let pdb = json(&sim.k(&["get", "pdb", "web", "-o", "json"]));
    let st = &pdb["status"];
    assert_eq!(
        (
            &st["currentHealthy"],
            &st["desiredHealthy"],
            &st["disruptionsAllowed"],
            &st["expectedPods"]
        ),
        (&json!(3), &json!(2), &json!(1), &json!(3)),
        "{st}"
    );

    // Cordon: SchedulingDisabled and the lifecycle controller's taint.
    sim.k(&["cordon", "worker1"]);
    wait_for("the unschedulable taint", Duration::from_secs(5), || {
        sim.k(&[
            "get",
            "node",
            "worker1",
            "-o",
            "jsonpath={.spec.taints[*].key}",
        ])
        .contains("node.kubernetes.io/unschedulable")
    });
    assert!(
        sim.k(&["get", "node", "worker1"])
            .contains("Ready,SchedulingDisabled")
    );

    // Drain evicts through the Eviction API; the replacement lands elsewhere.
    let out = sim.k(&["drain", "worker1", "--ignore-daemonsets", "--timeout=60s"]);
    assert!(out.contains("evicted"), "{out}");
    wait_for("3 ready pods off worker1", Duration::from_secs(15), || {
        let p = pods(&sim);
        p.len() == 3 && p.iter().all(|p| p.1 == "1/1" && p.3 != "worker1")
    });

    // Two evictions back to back: the second would leave 1 of 2 needed healthy.
    let victims: Vec<String> = pods(&sim).into_iter().map(|p| p.0).collect();
    let evict = |name: &str| {
        let f = sim.path(&format!("eviction-{name}.json"));
        let body = format!(
            "{{\"apiVersion\":\"policy/v1\",\"kind\":\"Eviction\",\"metadata\":{{\"name\":\"{name}\",\"namespace\":\"default\"}}}}"
        );
        std::fs::write(&f, body).expect("eviction body");
        let path = format!("/api/v1/namespaces/default/pods/{name}/eviction");
        sim.kubectl(&["create", "--raw", &path, "-f", f.to_str().expect("utf8")])
    };
    assert!(evict(&victims[0]).status.success());
    let refused = evict(&victims[1]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{err}"
    );

    // A budget that can never be met: drain retries until its timeout.
    sim.k(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=20s",
    ]);
    wait_for("3 ready pods", Duration::from_secs(15), || {
        pods(&sim).iter().filter(|p| p.1 == "1/1").count() == 3
    });
    sim.k(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        "{\"spec\":{\"maxUnavailable\":0}}",
    ]);
    let out = sim.kubectl(&["drain", "worker2", "--ignore-daemonsets", "--timeout=7s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{err}"
    );
    assert!(err.contains("global timeout reached: 7s"), "{err}");
    assert!(
        pods(&sim).iter().any(|p| p.3 == "worker2"),
        "nothing was evicted"
    );

    sim.k(&["uncordon", "worker1"]);
    sim.k(&["uncordon", "worker2"]);
    wait_for("the taint lifted", Duration::from_secs(5), || {
        !sim.k(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].spec.taints[*].key}",
        ])
        .contains("unschedulable")
    });
    drop((a1, a2));
}

const BARE: &str = "apiVersion: v1
kind: Pod
metadata: {name: NAME, namespace: default}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 5
  containers: [{name: c, image: busybox}]
";

/// Graceful deletion as K3s's apiserver and kubelet do it: a deleted Pod
/// on a Ready node is gone once its kubelet confirms (promptly: its
/// container honours SIGTERM); on a NotReady node it stays Terminating
/// with its deletionTimestamp, and only a forced delete removes it.
pub fn deleted_pods_terminate_and_stay_terminating_on_a_not_ready_node() {
    let sim = Sim::start(
        "kube-controller-manager-arg:\n  - node-monitor-grace-period=3s\nnode-name: srv\n",
        &[],
    );
    let token = sim.token();
    let mut a1 = sim.agent("worker1", &token, &[]);
    a1.wait_log("k3s agent is up and running", Duration::from_secs(20));
    for (name, node) in [("up", "srv"), ("down", "worker1")] {
        let pod = BARE.replace("NAME", name).replace("NODE", node);
        assert!(sim.apply(&pod, &[]).status.success());
    }
    wait_for("2 running pods", Duration::from_secs(10), || {
        pods(&sim).iter().filter(|p| p.2 == "Running").count() == 2
    });
    // A Ready node: kubectl delete waits until the kubelet confirms.
    sim.k(&["delete", "pod", "up", "--timeout=20s"]);
    assert!(pods(&sim).iter().all(|p| p.0 != "up"), "{:?}", pods(&sim));

    a1.stop();
    wait_for("worker1 NotReady", Duration::from_secs(20), || {
        sim.k(&["get", "node", "worker1", "--no-headers"])
            .contains("NotReady")
    });
    sim.k(&["delete", "pod", "down", "--wait=false"]);
    let pod = json(&sim.k(&["get", "pod", "down", "-o", "json"]));
    let meta = &pod["metadata"];
    assert_eq!(meta["deletionGracePeriodSeconds"], json!(5), "{meta}");
    let at = meta["deletionTimestamp"].as_str().unwrap_or_default();
    assert!(at.ends_with('Z'), "deletionTimestamp: {meta}");
    // No kubelet, no removal: still Terminating after a controller pass or more.
    let out = sim.kubectl(&["wait", "--for=delete", "pod/down", "--timeout=3s"]);
    assert!(!out.status.success(), "a NotReady node's pod went away");
    let row = pods(&sim);
    assert!(
        row.iter().any(|p| p.0 == "down" && p.2 == "Terminating"),
        "{row:?}"
    );
    // A forced delete (grace 0) removes it without the kubelet.
    sim.k(&["delete", "pod", "down", "--grace-period=0", "--force"]);
    assert!(pods(&sim).iter().all(|p| p.0 != "down"), "{:?}", pods(&sim));
}
