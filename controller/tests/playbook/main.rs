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

mod image;
mod layout;
mod network;
mod security;
mod sizing;
