//! Writes as kubectl makes them: server-side apply's semantics, other
//! kinds applied and listed, client-side apply and patch.

use super::*;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
";

pub fn server_side_apply_semantics() {
    let sim = Sim::start("", &[]);
    let out = sim.apply(DEPLOYMENT, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web serverside-applied")
    );
    let y = sim.k(&["get", "deployment", "web", "-o", "yaml"]);
    assert!(
        y.contains("image: nginx:1.27") && y.contains("replicas: 2"),
        "{y}"
    );
    let d = json(&sim.k(&[
        "get",
        "deployment",
        "web",
        "-o",
        "json",
        "--show-managed-fields",
    ]));
    assert_eq!(d["metadata"]["generation"], 1);
    let mf = d["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    assert!(
        mf.iter()
            .any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply"),
        "{mf:?}"
    );

    // Wait for the status controller, then an identical apply changes nothing.
    sim.k(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=20s",
    ]);
    let rv1 = sim.k(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let again = sim.apply(DEPLOYMENT, &[]);
    assert!(again.status.success());
    std::thread::sleep(Duration::from_millis(1200));
    let rv2 = sim.k(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    assert_eq!(rv1, rv2, "an identical apply must not bump resourceVersion");

    // A real change bumps resourceVersion and generation.
    let changed = DEPLOYMENT.replace("nginx:1.27", "nginx:1.28");
    assert!(sim.apply(&changed, &[]).status.success());
    let d = json(&sim.k(&["get", "deployment", "web", "-o", "json"]));
    assert_eq!(d["metadata"]["generation"], 2);
    assert_ne!(
        d["metadata"]["resourceVersion"].as_str(),
        Some(rv2.as_str())
    );

    // Another manager setting the same field differently is a conflict...
    let three = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec: {replicas: 3}\n";
    let conflict = sim.apply(three, &["--field-manager=other"]);
    assert!(!conflict.status.success());
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        err.contains("conflict") && err.contains(".spec.replicas") && err.contains("\"kubectl\""),
        "{err}"
    );
    // ...unless forced, which moves ownership.
    let forced = sim.apply(three, &["--field-manager=other", "--force-conflicts"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let d = json(&sim.k(&[
        "get",
        "deployment",
        "web",
        "-o",
        "json",
        "--show-managed-fields",
    ]));
    assert_eq!(d["spec"]["replicas"], 3);
    let owners: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .expect("mf")
        .iter()
        .filter(|m| m["fieldsV1"]["f:spec"].get("f:replicas").is_some())
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(owners, vec!["other"]);

    // A label the manager stops applying is removed.
    let unlabelled = changed
        .replace("  labels: {app: web}\nspec:", "spec:")
        .replace("  replicas: 2\n", "");
    let out = sim.apply(&unlabelled, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = json(&sim.k(&["get", "deployment", "web", "-o", "json"]));
    assert!(d["metadata"].get("labels").is_none(), "{}", d["metadata"]);
    assert_eq!(
        d["spec"]["replicas"], 3,
        "fields owned by another manager stay"
    );

    // Label selectors, strict errors.
    assert!(
        sim.k(&["get", "deployments", "-l", "app=web", "-o", "name"])
            .trim()
            .is_empty()
    );
    let bad = sim.apply(
        &DEPLOYMENT.replace("namespace: default", "namespace: nope"),
        &[],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("namespaces \"nope\" not found"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let invalid = sim.apply(
        &DEPLOYMENT
            .replace(
                "labels: {app: web}\n    spec:",
                "labels: {app: other}\n    spec:",
            )
            .replace("name: web\n  namespace", "name: web2\n  namespace"),
        &[],
    );
    assert!(!invalid.status.success());
    assert!(
        String::from_utf8_lossy(&invalid.stderr)
            .contains("`selector` does not match template `labels`"),
        "{}",
        String::from_utf8_lossy(&invalid.stderr)
    );
    let unknown = sim.apply(&DEPLOYMENT.replace("  replicas: 2", "  replicaz: 2"), &[]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains(".spec.replicaz: field not declared in schema"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // Delete, then it is gone.
    let del = sim.k(&["delete", "deployment", "web"]);
    assert!(del.contains("deployment.apps \"web\" deleted"), "{del}");
    let gone = sim.kubectl(&["get", "deployment", "web"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("deployments.apps \"web\" not found"));
}

pub fn other_kinds_apply_and_list() {
    let sim = Sim::start("", &[]);
    let manifest = "apiVersion: v1
kind: Namespace
metadata: {name: playson, labels: {pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: playson}
spec:
  selector: {app: httpbin}
  ports: [{port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: playson, labels: {tier: a}}
data: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: sec, namespace: playson}
stringData: {password: hunter2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: playson}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: httpbin, namespace: playson}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: httpbin}
  minReplicas: 3
  maxReplicas: 6
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: httpbin, namespace: playson}
spec: {minAvailable: 2, selector: {matchLabels: {app: httpbin}}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: playson}
spec: {limits: [{type: Container, default: {cpu: 200m}}]}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota, namespace: playson}
spec: {hard: {pods: \"10\"}}
";
    let out = sim.apply(manifest, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = sim.k(&[
        "get",
        "-n",
        "playson",
        "svc,cm,secret,netpol,hpa,pdb,limits,quota,sa",
        "-o",
        "name",
    ]);
    for want in [
        "service/httpbin",
        "configmap/cfg",
        "secret/sec",
        "networkpolicy.networking.k8s.io/default-deny",
        "horizontalpodautoscaler.autoscaling/httpbin",
        "poddisruptionbudget.policy/httpbin",
        "limitrange/limits",
        "resourcequota/quota",
        "serviceaccount/default",
    ] {
        assert!(all.contains(want), "missing {want} in {all}");
    }
    let svc = json(&sim.k(&["get", "svc", "httpbin", "-n", "playson", "-o", "json"]));
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.43.")),
        "{svc}"
    );
    let sec = json(&sim.k(&["get", "secret", "sec", "-n", "playson", "-o", "json"]));
    assert_eq!(sec["data"]["password"], "aHVudGVyMg==");
    assert_eq!(
        sim.k(&["get", "cm", "-n", "playson", "-l", "tier=a", "-o", "name"])
            .trim(),
        "configmap/cfg"
    );
    assert_eq!(
        sim.k(&["get", "cm", "-n", "playson", "-l", "tier!=a", "-o", "name"])
            .trim(),
        ""
    );
    let ns = json(&sim.k(&["get", "ns", "playson", "-o", "json"]));
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    // Deleting the namespace takes its objects with it.
    sim.k(&["delete", "ns", "playson"]);
    let out = sim.kubectl(&["get", "cm", "cfg", "-n", "playson"]);
    assert!(!out.status.success());
}

pub fn client_side_apply_and_patch() {
    let sim = Sim::start("", &[]);
    let f = sim.path("csa.yaml");
    std::fs::write(&f, DEPLOYMENT).expect("manifest");
    let path = f.to_str().expect("utf8");
    assert!(
        sim.k(&["apply", "-f", path])
            .contains("deployment.apps/web created")
    );
    assert!(
        sim.k(&["apply", "-f", path])
            .contains("deployment.apps/web unchanged")
    );
    // A changed image goes as a strategic merge patch: containers merge by name,
    // so the ports kubectl did not resend survive.
    std::fs::write(&f, DEPLOYMENT.replace("nginx:1.27", "nginx:1.28")).expect("manifest");
    assert!(
        sim.k(&["apply", "-f", path])
            .contains("deployment.apps/web configured")
    );
    let d = json(&sim.k(&["get", "deployment", "web", "-o", "json"]));
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.28");
    assert_eq!(c["ports"][0]["containerPort"], 80, "{c}");
    assert!(!d.to_string().contains("$setElementOrder"), "{d}");
    // Merge patch and label, as `kubectl patch` / `kubectl label` send them.
    sim.k(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        "{\"spec\":{\"replicas\":4}}",
    ]);
    sim.k(&["label", "deployment", "web", "team=edge"]);
    let d = json(&sim.k(&["get", "deployment", "web", "-o", "json"]));
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["labels"]["team"], "edge");
    // A merge patch naming a resourceVersion is a precondition (pictl's Node
    // writes send the one they read): a stale one is a 409 Conflict and
    // nothing changes; the current one is applied. (A ConfigMap: no
    // controller writes it meanwhile.)
    sim.k(&["create", "configmap", "pre", "--from-literal=k=v1"]);
    let cm = json(&sim.k(&["get", "configmap", "pre", "-o", "json"]));
    let current = cm["metadata"]["resourceVersion"].as_str().expect("rv");
    let stale = (current.parse::<u64>().expect("numeric rv") - 1).to_string();
    let patch = |rv: &str, v: &str| {
        format!("{{\"metadata\":{{\"resourceVersion\":\"{rv}\"}},\"data\":{{\"k\":\"{v}\"}}}}")
    };
    let out = sim.kubectl(&[
        "patch",
        "configmap",
        "pre",
        "--type=merge",
        "-p",
        &patch(&stale, "v2"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a stale resourceVersion was accepted"
    );
    assert!(
        err.contains("Error from server (Conflict)")
            && err.contains("the object has been modified"),
        "{err}"
    );
    let cm = json(&sim.k(&["get", "configmap", "pre", "-o", "json"]));
    assert_eq!(cm["data"]["k"], "v1", "a refused patch changed the object");
    assert_eq!(cm["metadata"]["resourceVersion"], current);
    sim.k(&[
        "patch",
        "configmap",
        "pre",
        "--type=merge",
        "-p",
        &patch(current, "v2"),
    ]);
    let cm = json(&sim.k(&["get", "configmap", "pre", "-o", "json"]));
    assert_eq!(cm["data"]["k"], "v2");
}
