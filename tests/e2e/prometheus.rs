//! The agents' metrics for an in-cluster Prometheus, end to end in the lab:
//! `[agent] metrics = "pod-network"` makes each agent listen on its Node's
//! pod-network address and annotates the Node; once the node has a pod
//! network (`lab podnet`, what K3s's flannel and bridge CNI set up; the
//! simulator runs no Pods) a "Pod" (a network namespace on node1's cni0)
//! scrapes every agent, a real scraper (VictoriaMetrics: Debian's Prometheus
//! lacks Kubernetes discovery) running the `playbooks/prometheus`
//! configuration with its ServiceAccount's token discovers the Nodes from
//! the API and scrapes them all, and a host on the
//! LAN gets nothing: not through the node's LAN address, not by routing to
//! the pod-network address, not with a pod-CIDR source address.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use pictl_e2e::pictl::{self, text};
use pictl_e2e::{Case, Lab, LabSpec, harness};
use serde_json::Value;

const ANNOTATION: &str = "pictl.dev/agent-metrics";
const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![
        apply_configures_the_pod_listener_and_annotates_each_node,
        the_agent_answers_pods_on_the_pod_network_and_never_the_lan,
        an_in_cluster_prometheus_scrapes_every_agent_with_the_playbook,
    ];
    harness::run(cases, LabSpec { nodes: 3, pi: &[] })
}

/// The lab's inventory with pod-network metrics and the Prometheus playbook.
fn inventory(lab: &Lab) -> PathBuf {
    let base = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let playbook = pictl_e2e::lab::repo_root().join("playbooks/prometheus");
    let path = lab.dir().join("inventory-prometheus.toml");
    // The lab cannot reach a registry: no image lookups.
    let text = format!(
        "{base}\n[agent]\nmetrics = \"pod-network\"\n[workload]\nplaybooks = [\"{}\"]\nimage_arch_check = \"off\"\n",
        playbook.display()
    );
    std::fs::write(&path, text).expect("write inventory");
    path
}

/// `pictl apply --output json` (the lab's mirror filled first); exit 0.
fn apply(lab: &Lab, inventory: &Path) -> Value {
    let out = pictl::run(lab, inventory, &["apply", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}\n{}", text(&out)))
}

fn kubectl(lab: &Lab, args: &[&str]) -> String {
    pictl::lab_kubectl(lab, args)
}

/// Each Node's podCIDR and annotation, from real kubectl.
fn nodes(lab: &Lab) -> BTreeMap<String, (String, Option<String>)> {
    let list: Value =
        serde_json::from_str(&kubectl(lab, &["get", "nodes", "-o", "json"])).expect("json");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|n| {
            let name = n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let cidr = n["spec"]["podCIDR"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let note = n["metadata"]["annotations"][ANNOTATION]
                .as_str()
                .map(String::from);
            (name, (cidr, note))
        })
        .collect()
}

/// `10.42.1.0/24` → `10.42.1` (the lab's pod networks are /24s, as K3s's).
fn prefix(cidr: &str) -> String {
    let net = cidr
        .strip_suffix(".0/24")
        .unwrap_or_else(|| panic!("podCIDR {cidr}"));
    net.to_string()
}

fn agent_report(lab: &Lab, node: &str) -> Value {
    let r = lab
        .ssh_ok(node, "lab", "curl -s http://127.0.0.1:9750/v1/report")
        .expect("report");
    serde_json::from_str(&r).expect("report json")
}

fn listener_state(lab: &Lab, node: &str) -> String {
    let r = agent_report(lab, node);
    r["metrics_listener"]["state"]
        .as_str()
        .unwrap_or("absent")
        .to_string()
}

/// Runs `args` in the lab's extra network namespace `name`.
fn netns(lab: &Lab, name: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &format!("pictl{}-x-{name}", lab.id())])
        .args(args)
        .output()
        .expect("ip netns exec")
}

/// `curl` from namespace `name`: (exit code, HTTP status, body).
fn curl(lab: &Lab, name: &str, extra: &[&str], url: &str) -> (i32, String, String) {
    let mut args = vec!["curl", "-s", "-m", "4", "-w", "\n%{http_code}"];
    args.extend(extra);
    args.push(url);
    let out = netns(lab, name, &args);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = body.rsplit_once('\n').unwrap_or(("", &body));
    (
        out.status.code().unwrap_or(-1),
        code.to_string(),
        body.to_string(),
    )
}

fn lab_tool(lab: &Lab, args: &[&str]) -> String {
    lab.tool(args)
        .unwrap_or_else(|e| panic!("lab {args:?}: {e}"))
}

/// `lab podnet` for every Node (idempotent), and the pod prefix of each.
fn pod_network(lab: &Lab) -> BTreeMap<String, String> {
    let nets: BTreeMap<String, String> = nodes(lab)
        .into_iter()
        .map(|(n, (cidr, _))| (n, cidr))
        .collect();
    let mut args = vec!["podnet".to_string()];
    args.extend(nets.iter().map(|(n, c)| format!("{n}={c}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab_tool(lab, &args);
    nets.into_iter().map(|(n, c)| (n, prefix(&c))).collect()
}

/// A network namespace `name` at `addr`, made once per lab.
fn extra_host(lab: &Lab, name: &str, addr: &str, place: &[&str]) {
    let ns = format!("/run/netns/pictl{}-x-{name}", lab.id());
    if !Path::new(&ns).exists() {
        let mut args = vec!["host", name, addr];
        args.extend(place);
        lab_tool(lab, &args);
    }
}

fn wait_listening(lab: &Lab, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = listener_state(lab, node);
        if state == "listening" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node}: the pod listener is {state:?} 30 s after cni0 appeared: {:#}",
            agent_report(lab, node)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn apply_configures_the_pod_listener_and_annotates_each_node(lab: &Lab) {
    let inv = inventory(lab);
    let first = apply(lab, &inv);
    for node in NODES {
        assert!(
            pictl::steps(&first, node, "changed").contains(&"agent-metrics".to_string()),
            "{first:#}"
        );
    }
    for (node, (cidr, note)) in nodes(lab) {
        let want = format!("{}.1:9750", prefix(&cidr));
        assert_eq!(note.as_deref(), Some(want.as_str()), "{node}");
        let conf = lab
            .ssh_ok(&node, "root", "cat /etc/pictl-agent/publish.conf")
            .expect("publish.conf");
        let line = format!("metrics_listen = {want}");
        assert!(conf.lines().any(|l| l == line), "{conf}");
        assert!(
            conf.lines().any(|l| l == "metrics_peers = 10.42.0.0/16"),
            "{conf}"
        );
        // No pod network yet (no Pod has landed): the agent waits for it.
        assert_eq!(listener_state(lab, &node), "waiting", "{node}");
    }
    let objects = kubectl(
        lab,
        &[
            "get",
            "sa,cm,svc,deploy,netpol",
            "-n",
            "pictl-monitoring",
            "-o",
            "name",
        ],
    );
    for want in [
        "serviceaccount/prometheus",
        "configmap/prometheus",
        "deployment.apps/prometheus",
    ] {
        assert!(objects.lines().any(|l| l == want), "{objects}");
    }
    let again = apply(lab, &inv);
    for node in NODES {
        let changed = pictl::steps(&again, node, "changed");
        assert!(changed.is_empty(), "{node} changed on a re-run: {again:#}");
    }
}

fn the_agent_answers_pods_on_the_pod_network_and_never_the_lan(lab: &Lab) {
    let nets = pod_network(lab);
    for node in NODES {
        wait_listening(lab, node);
    }
    let pod = format!("{}.10/24", nets["node1"]);
    extra_host(lab, "prom", &pod, &["--on", "node1"]);
    // A Pod on node1 reaches every agent, its own node's and the others'.
    for node in NODES {
        let url = format!("http://{}.1:9750", nets[node]);
        let (rc, code, body) = curl(lab, "prom", &[], &format!("{url}/metrics"));
        assert_eq!((rc, code.as_str()), (0, "200"), "{node}: {body}");
        assert!(body.contains("pictl_node_condition{"), "{node}: {body}");
        let (_, code, _) = curl(lab, "prom", &[], &format!("{url}/v1/report"));
        assert_eq!(
            code, "404",
            "{node}: the report is for the node itself only"
        );
    }
    // A host on the LAN: the node's own address has no such port …
    let lan = format!(
        "{}.250/24",
        lab.host_address().rsplit_once('.').expect("ip").0
    );
    extra_host(lab, "lan", &lan, &["--lan"]);
    let node2 = lab.address("node2").expect("node2");
    let (rc, _, _) = curl(lab, "lan", &[], &format!("http://{node2}:9750/metrics"));
    assert_eq!(rc, 7, "node2's LAN address must refuse 9750");
    // … routing to the pod-network address gets no answer from a LAN source …
    let target = format!("http://{}.1:9750/metrics", nets["node2"]);
    let routed = netns(
        lab,
        "lan",
        &["ip", "route", "replace", "10.42.0.0/16", "via", node2],
    );
    assert!(routed.status.success(), "{}", text(&routed));
    let (rc, code, body) = curl(lab, "lan", &[], &target);
    assert!(
        rc != 0 && code == "000",
        "LAN got an answer: rc {rc}, {code}: {body}"
    );
    // … and a pod-CIDR source address cannot complete the handshake.
    let spoof = format!("{}.99", nets["node1"]);
    let added = netns(
        lab,
        "lan",
        &["ip", "addr", "add", &format!("{spoof}/32"), "dev", "eth0"],
    );
    assert!(added.status.success(), "{}", text(&added));
    let (rc, code, body) = curl(lab, "lan", &["--interface", &spoof], &target);
    assert!(
        rc != 0 && code == "000",
        "spoofed source got an answer: rc {rc}, {code}: {body}"
    );
}

/// The scraper in the "Pod" netns with in-cluster credentials: the
/// ServiceAccount's token, CA and namespace where in-cluster clients look for
/// them (a private mount namespace) and the API server's address in the env.
/// Debian's Prometheus is built without Kubernetes discovery (its
/// NEWS.Debian: "Kubernetes support has been completely removed"), so the
/// playbook's scrape configuration runs in VictoriaMetrics, whose scraper
/// reads Prometheus's configuration format strictly (unknown fields are
/// errors) and discovers Nodes itself with the same `__meta_kubernetes_*`
/// labels; it answers Prometheus's HTTP API.
fn start_prometheus(lab: &Lab, dir: &Path) -> Child {
    let script = r#"set -e
mount -t tmpfs -o mode=0755 tmpfs /run
sa=/run/secrets/kubernetes.io/serviceaccount
mkdir -p $sa
cp "$1/token" "$1/ca.crt" "$1/namespace" $sa/
exec victoria-metrics -promscrape.config="$1/prometheus.yml" -storageDataPath="$1/data" \
    -httpListenAddr=127.0.0.1:9090 -search.latencyOffset=0s -search.disableCache"#;
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    Command::new("ip")
        .args(["netns", "exec", &format!("pictl{}-x-prom", lab.id())])
        .args([
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(dir)
        .env(
            "KUBERNETES_SERVICE_HOST",
            lab.address("node1").expect("node1"),
        )
        .env("KUBERNETES_SERVICE_PORT", "6443")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start prometheus")
}

/// The playbook's Prometheus configuration and its ServiceAccount's token.
fn prometheus_files(lab: &Lab, dir: &Path) {
    std::fs::create_dir_all(dir.join("data")).expect("mkdir");
    let config = kubectl(
        lab,
        &[
            "get",
            "cm",
            "prometheus",
            "-n",
            "pictl-monitoring",
            "-o",
            "jsonpath={.data.prometheus\\.yml}",
        ],
    );
    std::fs::write(dir.join("prometheus.yml"), &config).expect("config");
    let check = Command::new("vmagent")
        .arg(format!(
            "-promscrape.config={}",
            dir.join("prometheus.yml").display()
        ))
        .arg("-dryRun")
        .output()
        .expect("vmagent (tests/lab/install-deps.sh installs victoria-metrics)");
    assert!(check.status.success(), "{}", text(&check));
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: prometheus-token\n  namespace: pictl-monitoring\n  annotations:\n    kubernetes.io/service-account.name: prometheus\ntype: kubernetes.io/service-account-token\n";
    std::fs::write(dir.join("secret.yaml"), secret).expect("secret");
    let path = dir.join("secret.yaml");
    kubectl(lab, &["apply", "-f", path.to_str().expect("utf-8")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        let t = kubectl(
            lab,
            &[
                "get",
                "secret",
                "prometheus-token",
                "-n",
                "pictl-monitoring",
                "-o",
                "jsonpath={.data.token}",
            ],
        );
        if !t.is_empty() {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the token controller never filled the Secret"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD
        .decode(token)
        .expect("base64");
    std::fs::write(dir.join("token"), token).expect("token");
    let ca = kubectl(
        lab,
        &[
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ],
    );
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .expect("base64");
    std::fs::write(dir.join("ca.crt"), ca).expect("ca");
    std::fs::write(dir.join("namespace"), "pictl-monitoring").expect("namespace");
}

/// Prometheus's API answer at `path` (from inside the "Pod").
fn prom_api(lab: &Lab, path: &str) -> Value {
    let (rc, code, body) = curl(lab, "prom", &[], &format!("http://127.0.0.1:9090{path}"));
    if rc != 0 || code != "200" {
        return Value::Null;
    }
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Instances of the `pictl-agent` job Prometheus scraped successfully.
fn up_instances(lab: &Lab) -> Vec<String> {
    let targets = prom_api(lab, "/api/v1/targets?state=active");
    let active = targets["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut up: Vec<String> = active
        .iter()
        .filter(|t| t["labels"]["job"] == "pictl-agent" && t["health"] == "up")
        .filter_map(|t| t["labels"]["instance"].as_str().map(String::from))
        .collect();
    up.sort();
    up
}

/// Instances with `pictl_node_condition` series in the scraper's storage.
fn series_instances(lab: &Lab) -> Vec<String> {
    let query = "/api/v1/query?query=count%20by%20(instance)%20(pictl_node_condition)";
    let series = prom_api(lab, query);
    let result = series["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut found: Vec<String> = result
        .iter()
        .filter_map(|s| s["metric"]["instance"].as_str().map(String::from))
        .collect();
    found.sort();
    found
}

fn an_in_cluster_prometheus_scrapes_every_agent_with_the_playbook(lab: &Lab) {
    let nets = pod_network(lab);
    extra_host(
        lab,
        "prom",
        &format!("{}.10/24", nets["node1"]),
        &["--on", "node1"],
    );
    let dir = lab.dir().join("prometheus");
    prometheus_files(lab, &dir);
    let mut prom = start_prometheus(lab, &dir);
    // The playbook scrapes every 30 s; allow three rounds. A scraped sample
    // becomes visible to queries shortly after the target turns up.
    let deadline = Instant::now() + Duration::from_secs(100);
    let (mut up, mut scraped) = (up_instances(lab), series_instances(lab));
    while (up != NODES || scraped != NODES) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        (up, scraped) = (up_instances(lab), series_instances(lab));
    }
    let targets = prom_api(lab, "/api/v1/targets");
    let _ = prom.kill();
    let _ = prom.wait();
    let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    assert_eq!(up, NODES, "targets: {targets:#}\nlog:\n{log}");
    assert_eq!(
        scraped, NODES,
        "pictl_node_condition by instance\nlog:\n{log}"
    );
    let addresses: Vec<String> = targets["data"]["activeTargets"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["scrapeUrl"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for node in NODES {
        let url = format!("http://{}.1:9750/metrics", nets[node]);
        assert!(addresses.contains(&url), "{node}: {addresses:?}");
    }
}
