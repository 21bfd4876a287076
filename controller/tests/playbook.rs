//! The playson workload (playbooks/playson) read from disk and checked for the
//! properties the assignment and DESIGN.md care about: the right multi-arch image
//! pinned by digest, port 8080 everywhere, the exact requests and limits, a pod
//! that satisfies Pod Security "restricted", default-deny networking, a quota that
//! fits the HPA's maximum plus a rolling-update surge, and a kustomization that
//! lists exactly the files in the directory.
//!
//! Totals are computed from the manifests, so changing one number (replicas,
//! limits, quota) without the others makes a test fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

const NAMESPACE: &str = "playson";
const IMAGE_REPO: &str = "mccutchen/go-httpbin";
/// The multi-arch index digest the Pis resolved for `mccutchen/go-httpbin:v2.8.0`.
const IMAGE_DIGEST: &str =
    "sha256:9380c104186fb3bcdcc0b158c26d231fef73ead15905f4f99031beefb09b3d28";
const PORT: i64 = 8080;

// ---------------------------------------------------------------- loading

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/playson")
}

/// Every `*.yaml` / `*.yml` file name in the directory, sorted.
fn yaml_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("read playbooks/playson")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    names.sort();
    names
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// All documents of one file (multi-document safe; empty documents skipped).
fn documents(name: &str) -> Vec<Value> {
    let text = read(name);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|de| Value::deserialize(de).unwrap_or_else(|e| panic!("{name}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

struct Object {
    file: String,
    v: Value,
}

impl Object {
    fn kind(&self) -> &str {
        self.v["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.v["metadata"]["name"].as_str().unwrap_or("")
    }
    fn id(&self) -> String {
        format!("{} {}/{}", self.file, self.kind(), self.name())
    }
}

/// Every Kubernetes object in the directory (everything but the kustomization).
fn objects() -> Vec<Object> {
    let mut out = Vec::new();
    for file in yaml_files() {
        for v in documents(&file) {
            if v["kind"] == "Kustomization" {
                continue;
            }
            out.push(Object {
                file: file.clone(),
                v,
            });
        }
    }
    assert!(!out.is_empty(), "no objects in {}", dir().display());
    out
}

fn the<'a>(objs: &'a [Object], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Object> = objs
        .iter()
        .filter(|o| o.kind() == kind && o.name() == name)
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind}/{name}");
    &found[0].v
}

fn all_of<'a>(objs: &'a [Object], kind: &str) -> Vec<&'a Value> {
    objs.iter()
        .filter(|o| o.kind() == kind)
        .map(|o| &o.v)
        .collect()
}

fn kustomization() -> Value {
    let docs = documents("kustomization.yaml");
    assert_eq!(docs.len(), 1, "kustomization.yaml holds one document");
    docs.into_iter().next().expect("one document")
}

fn deployment(objs: &[Object]) -> &Value {
    the(objs, "Deployment", "httpbin")
}

fn hpa(objs: &[Object]) -> &Value {
    the(objs, "HorizontalPodAutoscaler", "httpbin")
}

fn pod_spec(objs: &[Object]) -> &Value {
    &deployment(objs)["spec"]["template"]["spec"]
}

fn container(objs: &[Object]) -> &Value {
    let cs = pod_spec(objs)["containers"]
        .as_array()
        .expect("containers is a list");
    assert_eq!(cs.len(), 1, "httpbin runs one container");
    &cs[0]
}

fn all_containers(objs: &[Object]) -> Vec<&Value> {
    let ps = pod_spec(objs);
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| ps[*k].as_array().into_iter().flatten())
        .collect()
}

fn int(v: &Value, what: &str) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("{what} should be an integer, got {v}"))
}

/// `matchLabels` is a subset of `labels` (and there are no matchExpressions).
fn selects(selector: &Value, labels: &Value) -> bool {
    if selector.get("matchExpressions").is_some() {
        return false;
    }
    let Some(want) = selector["matchLabels"].as_object() else {
        return false;
    };
    !want.is_empty() && want.iter().all(|(k, v)| labels.get(k) == Some(v))
}

// ---------------------------------------------------------------- quantities

/// A Kubernetes quantity in thousandths of its unit ("100m" CPU = 100,
/// "128Mi" = 128 * 2^20 * 1000), so CPU and memory compare exactly.
fn milli(q: &Value) -> u128 {
    let s = match q {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a quantity: {other}"),
    };
    let suffixes: [(&str, u128); 11] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("m", 0), // marker: milli
        ("E", 1_000_000_000_000_000_000),
        ("P", 1_000_000_000_000_000),
    ];
    let (num, scale_milli) = suffixes
        .iter()
        .find_map(|(suf, mult)| {
            s.strip_suffix(suf)
                .map(|n| (n, if *mult == 0 { 1 } else { mult * 1000 }))
        })
        .unwrap_or((s.as_str(), 1000));
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    let whole: u128 = whole
        .parse()
        .unwrap_or_else(|_| panic!("bad quantity {s:?}"));
    let frac_digits = frac.len() as u32;
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse()
            .unwrap_or_else(|_| panic!("bad quantity {s:?}"))
    };
    let pow = 10u128.pow(frac_digits);
    let total = (whole * pow + frac) * scale_milli;
    assert_eq!(total % pow, 0, "quantity {s:?} finer than a milli-unit");
    total / pow
}

#[test]
fn quantities_parse_like_kubernetes() {
    let q = |s: &str| milli(&Value::String(s.into()));
    assert_eq!(q("100m"), 100);
    assert_eq!(q("1"), 1000);
    assert_eq!(q("0.5"), 500);
    assert_eq!(q("1.5"), 1500);
    assert_eq!(q("128Mi"), 128 * (1 << 20) * 1000);
    assert_eq!(q("1Gi"), q("1024Mi"));
    assert_eq!(q("1G"), 1_000_000_000 * 1000);
    assert_eq!(milli(&serde_json::json!(2)), 2000);
}

/// Requests and limits of one pod: the sum over its containers, with the
/// LimitRange defaults filling in what a container leaves out.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct PodSize {
    req_cpu: u128,
    req_mem: u128,
    lim_cpu: u128,
    lim_mem: u128,
}

fn limitrange_container(objs: &[Object]) -> Value {
    let lrs = all_of(objs, "LimitRange");
    assert_eq!(lrs.len(), 1, "one LimitRange");
    lrs[0]["spec"]["limits"]
        .as_array()
        .expect("LimitRange spec.limits")
        .iter()
        .find(|l| l["type"] == "Container")
        .cloned()
        .expect("a LimitRange entry of type Container")
}

fn pod_size(objs: &[Object]) -> PodSize {
    let lr = limitrange_container(objs);
    let mut size = PodSize::default();
    for c in pod_spec(objs)["containers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let r = &c["resources"];
        let pick = |field: &str, res: &str, default: &str| {
            let v = &r[field][res];
            if v.is_null() { &lr[default][res] } else { v }
        };
        size.req_cpu += milli(pick("requests", "cpu", "defaultRequest"));
        size.req_mem += milli(pick("requests", "memory", "defaultRequest"));
        size.lim_cpu += milli(pick("limits", "cpu", "default"));
        size.lim_mem += milli(pick("limits", "memory", "default"));
    }
    size
}

/// Extra pods a rolling update may create at `replicas`: maxSurge as an
/// integer, or a percentage rounded up (25% when unset, as the apiserver
/// defaults it).
fn surge(objs: &[Object], replicas: i64) -> i64 {
    let strategy = &deployment(objs)["spec"]["strategy"];
    if strategy["type"] == "Recreate" {
        return 0;
    }
    match &strategy["rollingUpdate"]["maxSurge"] {
        Value::Null => (replicas * 25 + 99) / 100,
        Value::Number(n) => n.as_i64().expect("maxSurge integer"),
        Value::String(p) => {
            let pct: i64 = p
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("maxSurge {p:?}"));
            (replicas * pct + 99) / 100
        }
        other => panic!("maxSurge {other}"),
    }
}

// ---------------------------------------------------------------- image and ports

#[test]
fn image_is_multi_arch_go_httpbin_pinned_by_digest() {
    let objs = objects();
    for c in all_containers(&objs) {
        let image = c["image"].as_str().expect("image is a string");
        assert!(
            !image.contains("kennethreitz"),
            "kennethreitz/httpbin is amd64-only and crash-loops on the Pis: {image}"
        );
        let (name, digest) = image
            .split_once('@')
            .unwrap_or_else(|| panic!("image not pinned by digest: {image}"));
        let repo = name.split_once(':').map_or(name, |(r, _)| r);
        let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
        assert_eq!(repo, IMAGE_REPO, "image {image}");
        assert_eq!(digest, IMAGE_DIGEST, "image {image}");
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        assert!(
            hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "digest {digest}"
        );
    }
}

/// A probe or Service port that names a port resolves through the container.
fn resolve_port(c: &Value, port: &Value) -> i64 {
    match port {
        Value::Number(_) => int(port, "port"),
        Value::String(name) => c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name.as_str())
            .map(|p| int(&p["containerPort"], "containerPort"))
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("port {other}"),
    }
}

#[test]
fn container_port_and_both_probes_use_8080() {
    let objs = objects();
    let c = container(&objs);
    let ports = c["ports"].as_array().expect("container ports");
    assert_eq!(ports.len(), 1, "one container port");
    assert_eq!(int(&ports[0]["containerPort"], "containerPort"), PORT);
    assert_eq!(ports[0]["name"], "http");

    for (probe, delay, period) in [("livenessProbe", 10, 10), ("readinessProbe", 5, 10)] {
        let p = &c[probe];
        assert_eq!(p["httpGet"]["path"], "/status/200", "{probe} path");
        assert_eq!(resolve_port(c, &p["httpGet"]["port"]), PORT, "{probe} port");
        assert_eq!(
            int(&p["initialDelaySeconds"], probe),
            delay,
            "{probe} delay"
        );
        assert_eq!(int(&p["periodSeconds"], probe), period, "{probe} period");
    }
}

#[test]
fn service_sends_8080_to_the_httpbin_pods() {
    let objs = objects();
    let svc = the(&objs, "Service", "httpbin");
    let spec = &svc["spec"];
    assert!(
        spec["type"].is_null() || spec["type"] == "ClusterIP",
        "httpbin stays cluster-internal: {}",
        spec["type"]
    );
    let template_labels = &deployment(&objs)["spec"]["template"]["metadata"]["labels"];
    let sel = spec["selector"].as_object().expect("service selector");
    assert!(!sel.is_empty());
    for (k, v) in sel {
        assert_eq!(template_labels.get(k), Some(v), "service selector {k}");
    }
    let ports = spec["ports"].as_array().expect("service ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(int(&ports[0]["port"], "port"), PORT);
    let target = &ports[0]["targetPort"];
    let target = if target.is_null() {
        &ports[0]["port"]
    } else {
        target
    };
    assert_eq!(resolve_port(container(&objs), target), PORT);
}

// ---------------------------------------------------------------- sizing

#[test]
fn requests_and_limits_are_exactly_the_assignment() {
    let objs = objects();
    let r = &container(&objs)["resources"];
    let q = |s: &str| milli(&Value::String(s.into()));
    assert_eq!(milli(&r["requests"]["cpu"]), q("100m"));
    assert_eq!(milli(&r["requests"]["memory"]), q("128Mi"));
    assert_eq!(milli(&r["limits"]["cpu"]), q("200m"));
    assert_eq!(milli(&r["limits"]["memory"]), q("256Mi"));
}

#[test]
fn limitrange_defaults_every_container_and_admits_httpbin() {
    let objs = objects();
    let lr = limitrange_container(&objs);
    for res in ["cpu", "memory"] {
        for field in ["default", "defaultRequest", "max"] {
            assert!(
                !lr[field][res].is_null(),
                "LimitRange {field}.{res} missing"
            );
        }
        assert!(
            milli(&lr["defaultRequest"][res]) <= milli(&lr["default"][res]),
            "defaultRequest.{res} above default.{res}"
        );
        assert!(milli(&lr["default"][res]) <= milli(&lr["max"][res]));
        // max applies to limits: a container above it is refused at admission.
        let lim = &container(&objs)["resources"]["limits"][res];
        assert!(
            milli(lim) <= milli(&lr["max"][res]),
            "httpbin's {res} limit exceeds the LimitRange max"
        );
    }
}

#[test]
fn quota_admits_hpa_max_replicas_plus_a_rolling_update_surge() {
    let objs = objects();
    let quotas = all_of(&objs, "ResourceQuota");
    assert_eq!(quotas.len(), 1, "one ResourceQuota");
    let hard = &quotas[0]["spec"]["hard"];

    let max = int(&hpa(&objs)["spec"]["maxReplicas"], "maxReplicas");
    let pods = max + surge(&objs, max);
    let size = pod_size(&objs);
    let n = u128::try_from(pods).expect("positive pod count");

    let check = |key: &str, per_pod: u128| {
        let v = &hard[key];
        assert!(!v.is_null(), "quota should cap {key}");
        assert!(
            n * per_pod <= milli(v),
            "{pods} pods need {key} {} (milli), quota allows {v}",
            n * per_pod
        );
    };
    check("requests.cpu", size.req_cpu);
    check("requests.memory", size.req_mem);
    check("limits.cpu", size.lim_cpu);
    check("limits.memory", size.lim_mem);
    assert!(
        milli(&hard["pods"]) >= n * 1000,
        "quota pods {} below {pods}",
        hard["pods"]
    );

    // The quota also has to admit the Deployment's own first rollout.
    let replicas = int(&deployment(&objs)["spec"]["replicas"], "replicas");
    assert!(replicas <= max);
}

#[test]
fn hpa_scales_the_deployment_on_cpu_from_its_replica_count() {
    let objs = objects();
    let h = hpa(&objs);
    assert_eq!(h["apiVersion"], "autoscaling/v2");
    let target = &h["spec"]["scaleTargetRef"];
    assert_eq!(target["kind"], "Deployment");
    assert_eq!(target["apiVersion"], "apps/v1");
    assert_eq!(target["name"], "httpbin");

    let min = int(&h["spec"]["minReplicas"], "minReplicas");
    let max = int(&h["spec"]["maxReplicas"], "maxReplicas");
    assert!(
        min >= 3,
        "the assignment asks for 3 replicas; HPA min {min}"
    );
    assert!(max > min, "HPA cannot scale: min {min} max {max}");
    // The Deployment starts at the size the HPA would hold it at.
    let replicas = int(&deployment(&objs)["spec"]["replicas"], "replicas");
    assert_eq!(replicas, min, "Deployment replicas vs HPA minReplicas");

    let metrics = h["spec"]["metrics"].as_array().expect("HPA metrics");
    let cpu = metrics
        .iter()
        .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
        .expect("a CPU resource metric");
    assert_eq!(cpu["resource"]["target"]["type"], "Utilization");
    let pct = int(
        &cpu["resource"]["target"]["averageUtilization"],
        "utilization",
    );
    assert!((1..=100).contains(&pct), "CPU target {pct}%");
}

#[test]
fn disruption_budget_lets_drains_proceed_one_pod_at_a_time() {
    let objs = objects();
    let pdbs = all_of(&objs, "PodDisruptionBudget");
    assert_eq!(pdbs.len(), 1);
    let pdb = pdbs[0];
    assert_eq!(pdb["apiVersion"], "policy/v1");
    let labels = &deployment(&objs)["spec"]["template"]["metadata"]["labels"];
    assert!(
        selects(&pdb["spec"]["selector"], labels),
        "PDB selects httpbin"
    );

    let replicas = int(&deployment(&objs)["spec"]["replicas"], "replicas");
    let spec = &pdb["spec"];
    // Exactly one of the two, as integers, that both protects and allows a drain.
    let allowed = match (&spec["minAvailable"], &spec["maxUnavailable"]) {
        (Value::Null, u) if !u.is_null() => int(u, "maxUnavailable"),
        (m, Value::Null) if !m.is_null() => replicas - int(m, "minAvailable"),
        _ => panic!("PDB needs exactly one of minAvailable / maxUnavailable"),
    };
    assert!(
        allowed >= 1 && allowed < replicas,
        "PDB allows {allowed} of {replicas} pods down at once"
    );
}

// ---------------------------------------------------------------- security

#[test]
fn pod_runs_non_root_read_only_without_privileges_or_token() {
    let objs = objects();
    let ps = pod_spec(&objs);
    let psc = &ps["securityContext"];
    assert_eq!(ps["automountServiceAccountToken"], false);
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(ps[host].is_null() || ps[host] == false, "{host}");
    }
    assert!(
        ps["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|v| v["hostPath"].is_null())
    );

    for c in all_containers(&objs) {
        let sc = &c["securityContext"];
        let name = c["name"].as_str().unwrap_or("?");
        // Container settings override the pod's; either level counts.
        let eff = |k: &str| if sc[k].is_null() { &psc[k] } else { &sc[k] };
        assert_eq!(
            eff("runAsNonRoot"),
            &Value::Bool(true),
            "{name} runAsNonRoot"
        );
        let uid = eff("runAsUser");
        assert!(
            uid.is_null() || int(uid, "runAsUser") != 0,
            "{name} runs as root"
        );
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{name} readOnlyRootFilesystem"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{name} allowPrivilegeEscalation"
        );
        assert!(
            sc["privileged"].is_null() || sc["privileged"] == false,
            "{name} privileged"
        );
        let drop: Vec<&str> = sc["capabilities"]["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(drop, ["ALL"], "{name} drops all capabilities");
        assert!(
            sc["capabilities"]["add"].is_null(),
            "{name} adds capabilities"
        );
        assert_eq!(
            eff("seccompProfile")["type"],
            "RuntimeDefault",
            "{name} seccomp"
        );
    }
}

#[test]
fn namespace_enforces_restricted_pod_security() {
    let objs = objects();
    let ns = the(&objs, "Namespace", NAMESPACE);
    let labels = &ns["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    for mode in ["audit", "warn"] {
        let v = &labels[format!("pod-security.kubernetes.io/{mode}").as_str()];
        assert!(
            v.is_null() || v == "restricted",
            "{mode} mode weaker than enforce: {v}"
        );
    }
}

#[test]
fn pods_spread_across_nodes() {
    let objs = objects();
    let ps = pod_spec(&objs);
    let labels = &deployment(&objs)["spec"]["template"]["metadata"]["labels"];
    let spread = ps["topologySpreadConstraints"]
        .as_array()
        .expect("topologySpreadConstraints");
    assert!(
        spread
            .iter()
            .any(|t| t["topologyKey"] == "kubernetes.io/hostname"
                && int(&t["maxSkew"], "maxSkew") == 1
                && selects(&t["labelSelector"], labels)),
        "no maxSkew 1 spread of httpbin over kubernetes.io/hostname"
    );
}

// ---------------------------------------------------------------- network policy

fn policies(objs: &[Object]) -> Vec<&Value> {
    all_of(objs, "NetworkPolicy")
}

#[test]
fn default_deny_policy_covers_ingress_and_egress() {
    let objs = objects();
    let deny = policies(&objs).into_iter().find(|p| {
        let spec = &p["spec"];
        let everything = spec["podSelector"]
            .as_object()
            .is_some_and(|m| m.is_empty());
        let types: BTreeSet<&str> = spec["policyTypes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let no_rules = spec["ingress"].as_array().is_none_or(|r| r.is_empty())
            && spec["egress"].as_array().is_none_or(|r| r.is_empty());
        everything && types == BTreeSet::from(["Egress", "Ingress"]) && no_rules
    });
    assert!(
        deny.is_some(),
        "no NetworkPolicy selects every pod and denies both Ingress and Egress"
    );
}

#[test]
fn only_http_in_and_dns_out_are_opened() {
    let objs = objects();
    let labels = &deployment(&objs)["spec"]["template"]["metadata"]["labels"];
    let mut http_in = false;
    let mut dns_out = false;
    for p in policies(&objs) {
        let spec = &p["spec"];
        for rule in spec["ingress"].as_array().into_iter().flatten() {
            assert!(
                selects(&spec["podSelector"], labels),
                "ingress opened to pods other than httpbin: {}",
                p["metadata"]["name"]
            );
            let ports = rule["ports"]
                .as_array()
                .expect("ingress rule names its ports");
            for port in ports {
                assert_eq!(int(&port["port"], "ingress port"), PORT);
                assert!(port["protocol"].is_null() || port["protocol"] == "TCP");
            }
            http_in = true;
        }
        for rule in spec["egress"].as_array().into_iter().flatten() {
            let ports = rule["ports"]
                .as_array()
                .expect("egress rule names its ports");
            let protos: BTreeSet<&str> = ports
                .iter()
                .map(|port| {
                    assert_eq!(int(&port["port"], "egress port"), 53, "egress beyond DNS");
                    port["protocol"].as_str().unwrap_or("TCP")
                })
                .collect();
            assert_eq!(
                protos,
                BTreeSet::from(["TCP", "UDP"]),
                "DNS over UDP and TCP"
            );
            let to = rule["to"].as_array().expect("egress rule names its peers");
            assert!(!to.is_empty());
            for peer in to {
                assert_eq!(
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                    "kube-system"
                );
                assert_eq!(peer["podSelector"]["matchLabels"]["k8s-app"], "kube-dns");
            }
            dns_out = true;
        }
    }
    assert!(http_in, "no policy lets traffic into httpbin on {PORT}");
    assert!(dns_out, "no policy lets pods resolve names");
}

// ---------------------------------------------------------------- layout

#[test]
fn kustomization_lists_every_manifest_namespace_first() {
    let k = kustomization();
    assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1");
    assert_eq!(k["kind"], "Kustomization");
    let listed: Vec<&str> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("resource is a path"))
        .collect();
    for r in &listed {
        assert!(dir().join(r).is_file(), "kustomization lists missing {r}");
    }
    let listed_set: BTreeSet<&str> = listed.iter().copied().collect();
    assert_eq!(listed_set.len(), listed.len(), "a resource listed twice");
    let on_disk: BTreeSet<String> = yaml_files()
        .into_iter()
        .filter(|f| f != "kustomization.yaml")
        .collect();
    let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
    assert_eq!(
        listed_set, on_disk,
        "kustomization resources vs YAML files on disk"
    );

    let first = documents(listed[0]);
    assert!(
        first.iter().all(|d| d["kind"] == "Namespace"),
        "{} should hold the Namespace and be applied first",
        listed[0]
    );
}

#[test]
fn kustomize_changes_nothing_it_renders() {
    let k = kustomization();
    for key in [
        "namePrefix",
        "nameSuffix",
        "configMapGenerator",
        "secretGenerator",
        "patches",
        "patchesStrategicMerge",
        "patchesJson6902",
        "images",
        "replicas",
        "commonLabels",
        "labels",
        "commonAnnotations",
        "components",
        "generators",
        "transformers",
    ] {
        assert!(
            k[key].is_null(),
            "kustomization sets {key}: apply -k would differ"
        );
    }
    assert!(k["namespace"].is_null() || k["namespace"] == NAMESPACE);
}

#[test]
fn every_namespaced_object_is_in_playson() {
    let objs = objects();
    let namespaces = all_of(&objs, "Namespace");
    assert_eq!(namespaces.len(), 1, "one Namespace");
    assert_eq!(namespaces[0]["metadata"]["name"], NAMESPACE);
    for o in objs.iter().filter(|o| o.kind() != "Namespace") {
        assert_eq!(o.v["metadata"]["namespace"], NAMESPACE, "{}", o.id());
    }
}

#[test]
fn every_object_is_labelled_part_of_playson() {
    for o in objects() {
        assert_eq!(
            o.v["metadata"]["labels"]["app.kubernetes.io/part-of"],
            NAMESPACE,
            "{}",
            o.id()
        );
        assert!(!o.name().is_empty(), "{} has no name", o.id());
    }
}

#[test]
fn every_file_starts_by_saying_why_it_exists() {
    for f in yaml_files() {
        assert!(
            read(&f).starts_with('#'),
            "{f} should open with a # comment"
        );
    }
}

#[test]
fn deployment_selector_matches_its_template() {
    let objs = objects();
    let d = deployment(&objs);
    assert_eq!(d["metadata"]["labels"]["app"], "httpbin");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "httpbin");
    assert!(selects(
        &d["spec"]["selector"],
        &d["spec"]["template"]["metadata"]["labels"]
    ));
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(
        ru["maxUnavailable"], 0,
        "rollouts never drop below the replica count"
    );
}
