//! Agents: joining, heartbeats and NotReady, retrying on a wrong token, CA
//! hash or no server, the token forms K3s accepts, the node password, and
//! labels and taints at registration.

use super::*;

pub fn agents_join_heartbeat_and_go_not_ready() {
    let sim = Sim::start(
        "kube-controller-manager-arg:\n  - node-monitor-grace-period=4s\nnode-name: srv\n",
        &[],
    );
    let token = sim.token();
    let mut a1 = sim.agent("worker1", &token, &["--node-label", "pictl.io/pool=a"]);
    a1.wait_log("k3s agent is up and running", Duration::from_secs(20));
    // The bare secret works too.
    let secret = token.rsplit(':').next().expect("secret").to_string();
    let mut a2 = sim.agent("worker2", &secret, &[]);
    a2.wait_log("k3s agent is up and running", Duration::from_secs(20));
    let nodes = sim.k(&["get", "nodes"]);
    for (n, role) in [
        ("srv", "control-plane,master"),
        ("worker1", "<none>"),
        ("worker2", "<none>"),
    ] {
        let line = nodes
            .lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("{nodes}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((cols[1], cols[2]), ("Ready", role), "{nodes}");
    }
    assert_eq!(
        sim.k(&["get", "nodes", "-l", "pictl.io/pool=a", "-o", "name"])
            .trim(),
        "node/worker1"
    );
    // Heartbeats renew the node Lease, like the kubelet's.
    let lease = json(&sim.k(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        "worker1",
        "-o",
        "json",
    ]));
    assert_eq!(lease["spec"]["holderIdentity"], "worker1");

    // One replica per node: with three Ready nodes three replicas are available.
    let spread = "apiVersion: apps/v1
kind: Deployment
metadata: {name: spread, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: spread}}, topologyKey: kubernetes.io/hostname}
      containers: [{name: c, image: busybox}]
";
    assert!(sim.apply(spread, &[]).status.success());
    sim.k(&[
        "wait",
        "--for=condition=Available",
        "deployment/spread",
        "--timeout=20s",
    ]);
    sim.k(&["rollout", "status", "deployment/spread", "--timeout=20s"]);

    // The agent stops: after the grace period its node is NotReady and the
    // Deployment loses availability.
    a2.stop();
    let started = Instant::now();
    sim.k(&[
        "wait",
        "--for=condition=Available=false",
        "deployment/spread",
        "--timeout=30s",
    ]);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "NotReady came before the grace period: {waited:?}"
    );
    let nodes = sim.k(&["get", "nodes"]);
    let w2 = nodes
        .lines()
        .find(|l| l.starts_with("worker2 "))
        .unwrap_or_default();
    assert!(w2.contains("NotReady"), "{nodes}");
    let w1 = nodes
        .lines()
        .find(|l| l.starts_with("worker1 "))
        .unwrap_or_default();
    assert!(w1.split_whitespace().nth(1) == Some("Ready"), "{nodes}");
    let d = json(&sim.k(&["get", "deployment", "spread", "-o", "json"]));
    assert_eq!(d["status"]["availableReplicas"], 2, "{}", d["status"]);

    // It comes back: Ready again, availability restored.
    let mut a2b = sim.agent("worker2", &secret, &[]);
    a2b.wait_log("k3s agent is up and running", Duration::from_secs(20));
    sim.k(&[
        "wait",
        "--for=condition=Ready",
        "node/worker2",
        "--timeout=20s",
    ]);
    sim.k(&[
        "wait",
        "--for=condition=Available",
        "deployment/spread",
        "--timeout=20s",
    ]);
    drop(a1);
}

/// Waits until `needle` appears `times` times in the process's log.
fn wait_count(p: &mut Proc, needle: &str, times: usize, within: Duration) {
    let start = Instant::now();
    while p.log().matches(needle).count() < times {
        if let Ok(Some(st)) = p.child.try_wait() {
            panic!(
                "k3s exited ({st}) while waiting for {times}x {needle:?}:\n{}",
                p.log()
            );
        }
        assert!(
            start.elapsed() < within,
            "{needle:?} not logged {times} times within {within:?}:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn agents_retry_forever_on_wrong_token_ca_hash_or_no_server() {
    let sim = Sim::start("", &[]);
    let token = sim.token();
    let secret = token.rsplit(':').next().expect("secret").to_string();
    let failed = format!(
        "level=error msg=\"Failed to validate connection to cluster at {}",
        sim.url()
    );
    // pkg/agent/run.go: token validation is retried every 2 s, never fatal.
    let mut bad = sim.agent("intruder", "not-the-secret", &[]);
    wait_count(&mut bad, &failed, 2, Duration::from_secs(20));
    assert!(bad.log().contains("token is not valid"), "{}", bad.log());
    assert!(
        !bad.log().contains("not-the-secret"),
        "the token must not be logged: {}",
        bad.log()
    );
    // A K10 token whose CA hash is not this cluster's: CA pinning refuses it, again and again.
    let forged = format!("K10{}::server:{secret}", "0".repeat(64));
    let mut pinned = sim.agent("intruder2", &forged, &[]);
    wait_count(
        &mut pinned,
        "token CA hash does not match the Cluster CA certificate hash",
        2,
        Duration::from_secs(20),
    );
    // A server that is not there.
    let nowhere = format!("https://127.0.0.1:{}", free_port());
    let mut lost = sim.agent("lost", &token, &["--server", &nowhere]);
    wait_count(
        &mut lost,
        "failed to get CA certs",
        2,
        Duration::from_secs(20),
    );
    for p in [&mut bad, &mut pinned, &mut lost] {
        assert!(
            matches!(p.child.try_wait(), Ok(None)),
            "the agent must keep retrying: {}",
            p.log()
        );
        assert!(!p.log().contains("level=fatal"), "{}", p.log());
    }
    let nodes = sim.k(&["get", "nodes", "-o", "name"]);
    assert!(!nodes.contains("intruder"), "{nodes}");
}

pub fn token_forms_k3s_accepts_join() {
    let sim = Sim::start("", &[]);
    let token = sim.token();
    let secret = token.rsplit(':').next().expect("secret").to_string();
    let hash = token
        .strip_prefix("K10")
        .and_then(|t| t.split("::").next())
        .expect("hash")
        .to_string();
    let forms = [
        ("full", token.clone()),
        ("nohash", format!("K10::server:{secret}")),
        ("nodeuser", format!("K10{hash}::node:{secret}")),
        ("bare", secret.clone()),
    ];
    let mut agents = Vec::new();
    for (name, t) in &forms {
        let mut a = sim.agent(name, t, &[]);
        a.wait_log("k3s agent is up and running", Duration::from_secs(20));
        agents.push(a);
    }
    // Without a CA hash K3s warns that the CA is not pinned.
    assert!(
        agents[1]
            .log()
            .contains("the token does not include a CA hash")
    );
    // A malformed K10 token is retried like any other validation failure.
    let mut bad = sim.agent("badform", "K10abc::server:x", &[]);
    wait_count(
        &mut bad,
        "invalid token CA hash length",
        2,
        Duration::from_secs(20),
    );
}

pub fn node_password_rejected_loops_until_node_deleted() {
    let sim = Sim::start("", &[]);
    let token = sim.token();
    let mut first = sim.agent_on("dup", "root-a", &token, &[]);
    first.wait_log("k3s agent is up and running", Duration::from_secs(20));
    let pw = sim.path("root-a/etc/rancher/node/password");
    let meta = std::fs::metadata(&pw).expect("node password file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let secret = json(&sim.k(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        "dup.node-password.k3s",
        "-o",
        "json",
    ]));
    assert_eq!(secret["type"], "k3s.cattle.io/node-password");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["kind"], "Node");
    // The same name from another node (a re-flashed Pi: new password) loops.
    first.stop();
    let mut reflashed = sim.agent_on("dup", "root-b", &token, &[]);
    wait_count(
        &mut reflashed,
        "Node password rejected",
        2,
        Duration::from_secs(20),
    );
    assert!(
        reflashed.log().contains(
            "level=info msg=\"Waiting to retrieve agent configuration; server is not ready:"
        ),
        "{}",
        reflashed.log()
    );
    assert!(matches!(reflashed.child.try_wait(), Ok(None)));
    // Deleting the Node garbage-collects its secret; the agent then joins.
    sim.k(&["delete", "node", "dup"]);
    reflashed.wait_log("k3s agent is up and running", Duration::from_secs(20));
    let secret2 = json(&sim.k(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        "dup.node-password.k3s",
        "-o",
        "json",
    ]));
    assert_ne!(secret2["metadata"]["uid"], secret["metadata"]["uid"]);
}

pub fn labels_merge_on_each_start_and_taints_only_at_registration() {
    let sim = Sim::start("", &[]);
    let token = sim.token();
    let mut a = sim.agent(
        "w",
        &token,
        &["--node-label", "pool=a", "--node-taint", "t=x:NoSchedule"],
    );
    a.wait_log("k3s agent is up and running", Duration::from_secs(20));
    a.stop();
    let mut b = sim.agent(
        "w",
        &token,
        &["--node-label", "zone=z", "--node-taint", "u=y:NoExecute"],
    );
    b.wait_log("k3s agent is up and running", Duration::from_secs(20));
    let n = json(&sim.k(&["get", "node", "w", "-o", "json"]));
    assert_eq!(
        n["metadata"]["labels"]["pool"], "a",
        "labels are never removed"
    );
    assert_eq!(n["metadata"]["labels"]["zone"], "z", "labels are merged");
    let taints = n["spec"]["taints"].to_string();
    assert!(
        taints.contains("\"t\"") && !taints.contains("\"u\""),
        "{taints}"
    );
}

pub fn reserved_kubelet_labels_are_fatal() {
    let sim = Sim::start("", &[]);
    let token = sim.token();
    let mut a = sim.agent(
        "r",
        &token,
        &["--node-label", "node-role.kubernetes.io/worker=true"],
    );
    assert_eq!(a.wait_exit(Duration::from_secs(20)), 1, "{}", a.log());
    assert!(
        a.log().contains("level=fatal msg=\"kubelet exited: failed to validate kubelet flags: unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [node-role.kubernetes.io/worker]"),
        "{}",
        a.log()
    );
    // Allowed namespaces pass.
    let mut ok = sim.agent(
        "ok",
        &token,
        &[
            "--node-label",
            "node.kubernetes.io/pool=a",
            "--node-label",
            "topology.kubernetes.io/zone=z",
        ],
    );
    ok.wait_log("k3s agent is up and running", Duration::from_secs(20));
}
