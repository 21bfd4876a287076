//! Host-side simulator case for node health: ServiceAccount tokens, RBAC,
//! status patches of Nodes and Events, judged by kubectl and curl (kubectl
//! has no raw PATCH). See the "Node health" table in tests/k3s-sim/README.md.

use super::*;

pub(super) const AGENT_RBAC: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: pictl-agent-node1, namespace: kube-system}
---
apiVersion: v1
kind: Secret
metadata:
  name: pictl-agent-node1-token
  namespace: kube-system
  annotations: {kubernetes.io/service-account.name: pictl-agent-node1}
type: kubernetes.io/service-account-token
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "pictl-agent:node1"}
rules:
- {apiGroups: [""], resources: [nodes/status], verbs: [patch], resourceNames: [node1]}
- {apiGroups: [""], resources: [events], verbs: [create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "pictl-agent:node1"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "pictl-agent:node1"}
subjects:
- {kind: ServiceAccount, name: pictl-agent-node1, namespace: kube-system}
"#;

const SA_USER: &str = "system:serviceaccount:kube-system:pictl-agent-node1";

/// curl with the token in a header file (never argv); status code and body.
pub(super) fn curl(
    sim: &Sim,
    token: &str,
    method: &str,
    path: &str,
    ctype: &str,
    body: &str,
) -> (u16, String) {
    let headers = sim.path(&format!("h-{}", seq()));
    std::fs::write(
        &headers,
        format!("Authorization: Bearer {token}\nContent-Type: {ctype}\n"),
    )
    .expect("header file");
    let out = Command::new("curl")
        .args(["-sS", "-X", method, "-H"])
        .arg(format!("@{}", headers.display()))
        .arg("--cacert")
        .arg(sim.path("data/server/tls/server-ca.crt"))
        .args(["--data-binary", body, "-w", "\n%{http_code}"])
        .arg(format!("{}{path}", sim.url()))
        .output()
        .expect("curl (apt-get install curl)");
    let _ = std::fs::remove_file(&headers);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("code"), body.to_string())
}

pub(super) fn token_of(sim: &Sim) -> String {
    let start = Instant::now();
    loop {
        let out = sim.k(&[
            "-n",
            "kube-system",
            "get",
            "secret",
            "pictl-agent-node1-token",
            "-o",
            "json",
        ]);
        if let Some(t) = json(&out)["data"]["token"].as_str() {
            use std::io::Write;
            let mut dec = Command::new("base64")
                .arg("-d")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("base64");
            dec.stdin
                .take()
                .expect("stdin")
                .write_all(t.as_bytes())
                .expect("write");
            let out = dec.wait_with_output().expect("base64 -d");
            return String::from_utf8(out.stdout).expect("token text");
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the token controller never filled the secret"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn counts(sim: &Sim) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(sim.path("data/server/tls/server-ca.crt"))
        .arg(format!("{}/v1-k3s/sim/requests", sim.url()))
        .output()
        .expect("curl");
    json(&String::from_utf8_lossy(&out.stdout))
}

pub(super) const CONDITION: &str = r#"{"status":{"conditions":[{"type":"RootDiskPressure","status":"True",
 "reason":"RootFilesystemFull","message":"root filesystem / is 96.0% used",
 "lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;

pub(super) const SMP: &str = "application/strategic-merge-patch+json";

pub fn service_account_tokens_rbac_and_node_conditions_like_the_apiserver() {
    let sim = Sim::start("", &["--node-name", "node1"]);
    let out = sim.apply(AGENT_RBAC, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = token_of(&sim);
    assert!(
        token.starts_with("eyJ") && token.split('.').count() == 3,
        "a JWT"
    );
    let secret = json(&sim.k(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        "pictl-agent-node1-token",
        "-o",
        "json",
    ]));
    let sa = json(&sim.k(&[
        "-n",
        "kube-system",
        "get",
        "sa",
        "pictl-agent-node1",
        "-o",
        "json",
    ]));
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        sa["metadata"]["uid"]
    );
    assert!(secret["data"]["ca.crt"].is_string() && secret["data"]["namespace"].is_string());
    token_secrets_need_their_account(&sim);
    own_status_merges_by_type_and_an_empty_patch_stores_nothing(&sim, &token);
    events_show_in_describe_and_get_events(&sim, &token);
    everything_else_is_forbidden(&sim, &token);

    // Unknown tokens and tokens of a deleted ServiceAccount are 401.
    let (code, _) = curl(
        &sim,
        "not-a-token",
        "PATCH",
        "/api/v1/nodes/node1/status",
        SMP,
        "{}",
    );
    assert_eq!(code, 401);

    // A binding's roleRef cannot change.
    let moved = AGENT_RBAC.split("---").nth(3).expect("binding").replace(
        "name: \"pictl-agent:node1\"}\nsubjects",
        "name: \"other\"}\nsubjects",
    );
    let out = sim.apply(&moved, &["--force-conflicts"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot change roleRef"), "{err}");

    let c = counts(&sim);
    assert_eq!(c["patch nodes/status 200"], 2, "{c}");
    assert_eq!(c["patch nodes/status 403"], 1, "{c}");
    assert_eq!(c["create events 201"], 1, "{c}");

    sim.k(&["-n", "kube-system", "delete", "sa", "pictl-agent-node1"]);
    let (code, _) = curl(
        &sim,
        &token,
        "PATCH",
        "/api/v1/nodes/node1/status",
        SMP,
        "{}",
    );
    assert_eq!(code, 401, "the token died with its ServiceAccount");
}

fn token_secrets_need_their_account(sim: &Sim) {
    // A token Secret must name its ServiceAccount.
    let bad = sim.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: t2, namespace: kube-system}\ntype: kubernetes.io/service-account-token\n",
        &[],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("metadata.annotations[kubernetes.io/service-account.name]: Required value"),
        "{err}"
    );
}

fn own_status_merges_by_type_and_an_empty_patch_stores_nothing(sim: &Sim, token: &str) {
    // Its own Node's status: 200, conditions merged by type, Ready kept.
    let (code, body) = curl(
        sim,
        token,
        "PATCH",
        "/api/v1/nodes/node1/status",
        SMP,
        CONDITION,
    );
    assert_eq!(code, 200, "{body}");
    let types: Vec<String> = json(&body)["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| c["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        types.contains(&"Ready".into()) && types.contains(&"RootDiskPressure".into()),
        "{types:?}"
    );
    let rv = |s: &Sim| {
        json(&s.k(&["get", "node", "node1", "-o", "json"]))["metadata"]["resourceVersion"].clone()
    };
    let before = rv(sim);
    let (code, _) = curl(sim, token, "PATCH", "/api/v1/nodes/node1/status", SMP, "{}");
    assert_eq!(
        (code, rv(sim)),
        (200, before),
        "an empty patch stores nothing"
    );
}

fn events_show_in_describe_and_get_events(sim: &Sim, token: &str) {
    // An Event on the Node, and kubectl describe shows both.
    let event = r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"node1.17a","namespace":"default"},
      "involvedObject":{"apiVersion":"v1","kind":"Node","name":"node1","uid":"node1"},
      "reason":"RootFilesystemFull","message":"RootDiskPressure: root filesystem / is 96.0% used",
      "type":"Warning","source":{"component":"pictl-agent","host":"node1"},"count":1}"#;
    let (code, body) = curl(
        sim,
        token,
        "POST",
        "/api/v1/namespaces/default/events",
        "application/json",
        event,
    );
    assert_eq!(code, 201, "{body}");
    let describe = sim.k(&["describe", "node", "node1"]);
    let cond_line = describe
        .lines()
        .find(|l| l.trim_start().starts_with("RootDiskPressure"))
        .unwrap_or_else(|| panic!("no condition in:\n{describe}"));
    assert!(
        cond_line.contains("True") && cond_line.contains("RootFilesystemFull"),
        "{cond_line}"
    );
    assert!(
        describe.lines().any(|l| l.contains("Warning")
            && l.contains("RootFilesystemFull")
            && l.contains("pictl-agent")),
        "no event in:\n{describe}"
    );

    let events = sim.k(&["get", "events", "-A"]);
    let header: Vec<&str> = events
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "LAST",
            "SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "MESSAGE"
        ],
        "{events}"
    );
    assert!(
        events.lines().any(|l| l.contains("Warning")
            && l.contains("RootFilesystemFull")
            && l.contains("node/node1")),
        "{events}"
    );
}

fn everything_else_is_forbidden(sim: &Sim, token: &str) {
    // Anything else is 403 with the apiserver's message.
    let forbidden = [
        (
            "PATCH",
            "/api/v1/nodes/node2/status",
            r#"nodes "node2" is forbidden: User "SA" cannot patch resource "nodes/status" in API group "" at the cluster scope"#,
        ),
        (
            "PATCH",
            "/api/v1/nodes/node1",
            r#"nodes "node1" is forbidden: User "SA" cannot patch resource "nodes" in API group "" at the cluster scope"#,
        ),
        (
            "GET",
            "/api/v1/namespaces/kube-system/secrets",
            r#"secrets is forbidden: User "SA" cannot list resource "secrets" in API group "" in the namespace "kube-system""#,
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/events/node1.17a",
            r#"events "node1.17a" is forbidden: User "SA" cannot delete resource "events" in API group "" in the namespace "default""#,
        ),
    ];
    for (method, path, want) in forbidden {
        let (code, body) = curl(sim, token, method, path, SMP, "{}");
        assert_eq!(code, 403, "{method} {path}: {body}");
        let status = json(&body);
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(
            status["message"],
            want.replace("SA", SA_USER),
            "{method} {path}"
        );
    }
    let kc = sim.path("sa.kubeconfig");
    std::fs::write(&kc, format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: '{}', certificate-authority: '{}'}}}}]\nusers: [{{name: u, user: {{token: '{token}'}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n",
        sim.url(), sim.path("data/server/tls/server-ca.crt").display())).expect("kubeconfig");
    let out = kubectl_with(&kc, &sim.path("kcache-sa"), &["get", "nodes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(r#"nodes is forbidden: User "{SA_USER}" cannot list resource "nodes" in API group "" at the cluster scope"#)),
        "{err}"
    );
}
