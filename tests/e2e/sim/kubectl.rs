//! What kubectl shows of the playson workload and of Nodes, and the
//! protobuf bodies of kubectl's imperative commands, as on K3s (issue 21,
//! item 6): `get all` lists the Service and the HPA (discovery's `all`
//! category), `get hpa|pdb|netpol|quota|limits|sa|svc` print the apiserver
//! printers' columns, Nodes carry the kubelet's pressure conditions beside
//! pictl's own, and `kubectl create configmap|secret|deployment|...` (sent as
//! protobuf) store what they say. Judged by real kubectl on a loopback server.

use super::*;

/// `playbooks/playson`, the workload pictl applies.
fn playson_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../playbooks/playson")
        .display()
        .to_string()
}

/// A kubectl table's header, one word per column name.
fn header(table: &str) -> String {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The row of `table` whose first column is `name`, split on whitespace.
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|c| c.first().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
}

/// `get()`'s answer once `done` holds of it, or the last one after 10 s.
fn eventually(get: impl Fn() -> String, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let got = get();
        if done(&got) || start.elapsed() > Duration::from_secs(10) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A server with the playson workload applied as pictl applies it.
fn with_playson() -> Sim {
    let sim = Sim::start("node-name: srv\n", &[]);
    sim.k(&["apply", "--server-side", "-k", &playson_dir()]);
    let start = Instant::now();
    while sim
        .k(&["-n", "playson", "get", "pods", "-o", "name"])
        .lines()
        .count()
        < 3
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "httpbin's 3 Pods never came"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sim
}

pub fn get_all_lists_the_service_and_the_hpa() {
    let sim = &with_playson();
    let all = sim.k(&["-n", "playson", "get", "all"]);
    for want in [
        "pod/httpbin-",
        "service/httpbin",
        "deployment.apps/httpbin",
        "replicaset.apps/httpbin-",
        "horizontalpodautoscaler.autoscaling/httpbin",
    ] {
        assert!(all.contains(want), "no {want} in get all:\n{all}");
    }
    // Discovery lists resources sorted by name, so Pods come before Services.
    let (pod, svc) = (all.find("pod/httpbin-"), all.find("service/httpbin"));
    assert!(pod < svc, "{all}");
    let other = sim.k(&["-n", "playson", "get", "all", "-o", "name"]);
    assert!(
        !other.contains("networkpolicy") && !other.contains("poddisruptionbudget"),
        "{other}"
    );
}

pub fn tables_have_the_apiserver_printers_columns() {
    let sim = &with_playson();
    let get = |args: &[&str]| {
        let mut a = vec!["-n", "playson", "get"];
        a.extend(args);
        sim.k(&a)
    };
    playson_policies_print_like_the_apiserver(sim);
    let limits = get(&["limitrange"]);
    assert_eq!(header(&limits), "NAME CREATED AT", "{limits}");
    assert!(
        row(&limits, "container-limits")[1].ends_with('Z'),
        "{limits}"
    );
    let svc = get(&["service", "-o", "wide"]);
    assert_eq!(
        header(&svc),
        "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR",
        "{svc}"
    );
    let r = row(&svc, "httpbin");
    assert_eq!(
        (r[1].as_str(), r[3].as_str(), r[4].as_str()),
        ("ClusterIP", "<none>", "8080/TCP")
    );
    assert_eq!(r[6], "app=httpbin", "{svc}");
    let sa = get(&["serviceaccount"]);
    assert_eq!(header(&sa), "NAME SECRETS AGE", "{sa}");
    let ns = sim.k(&["get", "namespace"]);
    assert_eq!(header(&ns), "NAME STATUS AGE", "{ns}");
    assert_eq!(row(&ns, "playson")[1], "Active");
    events_have_the_wide_columns(sim);
    let nodes = sim.k(&["get", "nodes", "-o", "wide"]);
    assert_eq!(
        header(&nodes),
        "NAME STATUS ROLES AGE VERSION INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME",
        "{nodes}"
    );
}

/// HPA, PDB, NetworkPolicy and ResourceQuota rows of the playson namespace.
fn playson_policies_print_like_the_apiserver(sim: &Sim) {
    let get = |what: &str| sim.k(&["-n", "playson", "get", what]);
    let hpa = get("hpa");
    assert_eq!(
        header(&hpa),
        "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE",
        "{hpa}"
    );
    assert_eq!(
        row(&hpa, "httpbin")[1..6],
        ["Deployment/httpbin", "cpu:", "<unknown>/70%", "3", "6"]
    );
    // REPLICAS is the controller's currentReplicas: the Deployment's 3.
    let hpa = eventually(|| get("hpa"), |t| row(t, "httpbin")[6] == "3");
    assert_eq!(row(&hpa, "httpbin")[6], "3", "{hpa}");
    let pdb = get("pdb");
    assert_eq!(
        header(&pdb),
        "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE",
        "{pdb}"
    );
    assert_eq!(row(&pdb, "httpbin")[1..3], ["N/A", "1"]);
    let netpol = get("networkpolicy");
    assert_eq!(header(&netpol), "NAME POD-SELECTOR AGE", "{netpol}");
    assert_eq!(row(&netpol, "default-deny")[1], "<none>");
    assert_eq!(row(&netpol, "allow-httpbin-ingress")[1], "app=httpbin");
    // The quota controller's used/hard for httpbin's 3 Pods (100m/128Mi
    // requests, 200m/256Mi limits each), keys sorted, limits.* under LIMIT.
    let want = "playson-quota pods: 3/10, requests.cpu: 300m/1, requests.memory: 384Mi/1Gi \
                limits.cpu: 600m/2, limits.memory: 768Mi/2Gi";
    let words = |t: &str| {
        t.lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let quota = eventually(|| get("resourcequota"), |t| words(t).starts_with(want));
    assert_eq!(header(&quota), "NAME REQUEST LIMIT AGE", "{quota}");
    assert!(words(&quota).starts_with(want), "{quota}");
}

fn events_have_the_wide_columns(sim: &Sim) {
    let event = r#"{"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "httpbin.1", "namespace": "playson"},
        "involvedObject": {"kind": "Deployment", "name": "httpbin", "namespace": "playson"},
        "reason": "ScalingReplicaSet", "message": "Scaled up", "type": "Normal",
        "source": {"component": "deployment-controller"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z", "count": 2}"#;
    let f = sim.path("event.json");
    std::fs::write(&f, event).expect("event");
    sim.k(&["create", "-f", f.to_str().expect("utf8")]);
    let wide = sim.k(&["-n", "playson", "get", "events", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        "LAST SEEN TYPE REASON OBJECT SUBOBJECT SOURCE MESSAGE FIRST SEEN COUNT NAME",
        "{wide}"
    );
    let line = wide.lines().nth(1).unwrap_or("");
    assert!(
        line.contains("deployment/httpbin")
            && line.contains("deployment-controller")
            && line.contains("httpbin.1"),
        "{wide}"
    );
}

fn condition_lines(sim: &Sim) -> String {
    let path = "{range .status.conditions[*]}{.type}={.status} {.reason} {.message};{end}";
    sim.k(&["get", "node", "srv", "-o", &format!("jsonpath={path}")])
}

pub fn nodes_carry_the_kubelet_conditions_beside_others() {
    let sim = &Sim::start("node-name: srv\n", &[]);
    let conds = condition_lines(sim);
    for want in [
        "MemoryPressure=False KubeletHasSufficientMemory kubelet has sufficient memory available;",
        "DiskPressure=False KubeletHasNoDiskPressure kubelet has no disk pressure;",
        "PIDPressure=False KubeletHasSufficientPID kubelet has sufficient PID available;",
        "Ready=True KubeletReady kubelet is posting ready status;",
    ] {
        assert!(conds.contains(want), "no {want:?} in {conds}");
    }
    let described = sim.k(&["describe", "node", "srv"]);
    assert!(described.contains("KubeletHasSufficientPID"), "{described}");
    // pictl's agent patches its own condition types; the kubelet's stay.
    let own = r#"{"status":{"conditions":[{"type":"RootDiskPressure","status":"False","reason":"RootDiskOk","message":"ok"}]}}"#;
    sim.k(&[
        "patch",
        "node",
        "srv",
        "--subresource=status",
        "--type=strategic",
        "-p",
        own,
    ]);
    let conds = condition_lines(sim);
    for t in [
        "MemoryPressure=False",
        "DiskPressure=False",
        "PIDPressure=False",
        "Ready=True",
        "RootDiskPressure=False",
    ] {
        assert!(conds.contains(t), "no {t} in {conds}");
    }
    let nodes = sim.k(&["get", "nodes", "--no-headers"]);
    assert_eq!(nodes.split_whitespace().nth(1), Some("Ready"), "{nodes}");
}

pub fn imperative_creates_sent_as_protobuf_are_stored() {
    let sim = &Sim::start("node-name: srv\n", &[]);
    sim.k(&["create", "configmap", "x", "--from-literal=a=1"]);
    let cm = json(&sim.k(&["get", "configmap", "x", "-o", "json"]));
    assert_eq!(cm["data"], serde_json::json!({"a": "1"}), "{cm}");
    sim.k(&["create", "secret", "generic", "s", "--from-literal=k=v"]);
    let s = json(&sim.k(&["get", "secret", "s", "-o", "json"]));
    assert_eq!(
        (s["data"]["k"].as_str(), s["type"].as_str()),
        (Some("dg=="), Some("Opaque")),
        "{s}"
    );
    sim.k(&["create", "namespace", "extra"]);
    let ns = sim.k(&["get", "namespace", "extra", "--no-headers"]);
    assert!(ns.contains("Active"), "{ns}");
    sim.k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
        "--port=80",
    ]);
    let d = json(&sim.k(&["get", "deployment", "web", "-o", "json"]));
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (d["spec"]["replicas"].as_i64(), c["image"].as_str()),
        (Some(2), Some("nginx:1.27")),
        "{d}"
    );
    assert_eq!(c["ports"][0]["containerPort"], 80, "{d}");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web", "{d}");
    sim.k(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let svc = json(&sim.k(&["get", "service", "web", "-o", "json"]));
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080, "{svc}");
    sim.k(&["create", "serviceaccount", "bot"]);
    sim.k(&["create", "role", "reader", "--verb=get", "--resource=pods"]);
    sim.k(&[
        "create",
        "rolebinding",
        "bot-reads",
        "--role=reader",
        "--serviceaccount=default:bot",
    ]);
    let rb = json(&sim.k(&["get", "rolebinding", "bot-reads", "-o", "json"]));
    assert_eq!(rb["subjects"][0]["name"], "bot", "{rb}");
    sim.k(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=1",
    ]);
    let pdb = json(&sim.k(&["get", "pdb", "web", "-o", "json"]));
    assert_eq!(pdb["spec"]["minAvailable"], 1, "{pdb}");
}

/// runtime.Unknown for `apiVersion`/`kind` with an empty object, in the
/// protobuf envelope (`k8s\0` + the message), encoded by hand.
fn envelope(api_version: &str, kind: &str) -> Vec<u8> {
    let field = |tag: u8, bytes: &[u8]| {
        let mut f = vec![tag, u8::try_from(bytes.len()).expect("short")];
        f.extend(bytes);
        f
    };
    let mut type_meta = field(0x0a, api_version.as_bytes());
    type_meta.extend(field(0x12, kind.as_bytes()));
    let mut out = b"k8s\0".to_vec();
    out.extend(field(0x0a, &type_meta));
    out.extend(field(0x12, &[]));
    out
}

pub fn protobuf_the_simulator_cannot_convert_is_refused_with_415() {
    let sim = &Sim::start("node-name: srv\n", &[]);
    let before = sim.k(&["get", "configmaps", "-o", "name"]);
    let body = sim.path("job.pb");
    std::fs::write(&body, envelope("batch/v1", "Job")).expect("body");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/vnd.kubernetes.protobuf",
        ])
        .arg("--cacert")
        .arg(sim.path("data/server/tls/server-ca.crt"))
        .arg("--cert")
        .arg(sim.path("data/server/tls/client-admin.crt"))
        .arg("--key")
        .arg(sim.path("data/server/tls/client-admin.key"))
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .args(["-w", "\n%{http_code}"])
        .arg(format!(
            "{}/api/v1/namespaces/default/configmaps",
            sim.url()
        ))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (answer, code) = text.rsplit_once('\n').expect("status line");
    assert_eq!(code.trim(), "415", "{text}");
    let status = json(answer);
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("UnsupportedMediaType")),
        "{status}"
    );
    assert_eq!(
        sim.k(&["get", "configmaps", "-o", "name"]),
        before,
        "nothing stored"
    );
}
