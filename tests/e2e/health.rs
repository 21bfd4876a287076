//! Node health where people look, end to end in the lab: `pictl apply` gives
//! each node's health agent its own least-privilege token, the agents publish
//! Node conditions and Events that real kubectl shows, a full root filesystem
//! turns `RootDiskPressure` True and back, a healthy lab writes nothing, and a
//! token cannot touch another Node or anything else. Writes are counted at
//! the simulator (`/v1-k3s/sim/requests`).

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use pictl_e2e::pictl::{self, text};
use pictl_e2e::{Case, Lab, LabSpec, harness};
use serde_json::Value;

#[path = "health_storage.rs"]
mod storage;
use storage::the_servers_agent_times_synced_writes_on_the_data_dirs_disk_and_an_agents_does_not;

/// The agents' interval in the timed cases (agent config, see `fast_agents`).
const INTERVAL: u64 = 5;

fn main() -> ExitCode {
    let cases: &[Case] = pictl_e2e::cases![
        apply_gives_each_agent_its_own_token_and_the_conditions_appear,
        agents_pin_the_api_servers_key_which_a_new_san_keeps,
        the_agents_token_cannot_patch_another_node_or_anything_else,
        the_agents_token_changes_its_nodes_conditions_and_nothing_else,
        a_healthy_lab_makes_no_status_writes_for_a_minute,
        a_full_root_filesystem_turns_root_disk_pressure_true_with_an_event_and_back,
        the_servers_agent_times_synced_writes_on_the_data_dirs_disk_and_an_agents_does_not,
    ];
    harness::run(cases, LabSpec { nodes: 2, pi: &[] })
}

/// `pictl apply --output json` on the lab's inventory.
fn apply(lab: &Lab) -> Value {
    let out = pictl::run(lab, &lab.inventory(), &["apply", "--output", "json"]);
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}\n{}", text(&out)));
    assert_eq!(out.status.code(), Some(0), "{v:#}\n{}", text(&out));
    v
}

/// Each (step, status) pictl reported for `node`.
fn steps(report: &Value, node: &str) -> Vec<(String, String)> {
    report["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == node))
        .and_then(|n| n["steps"].as_array())
        .map(|s| {
            s.iter()
                .map(|s| {
                    (
                        s["step"].as_str().unwrap_or("").to_string(),
                        s["status"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn status_of(report: &Value, node: &str, step: &str) -> String {
    steps(report, node)
        .into_iter()
        .find(|(s, _)| s == step)
        .map(|(_, st)| st)
        .unwrap_or_else(|| panic!("no {step} for {node} in {report:#}"))
}

fn kubectl(lab: &Lab, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(pictl::lab_kubeconfig(lab))
        .args(args)
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The condition `kind` of `node`, as the API holds it.
fn condition(lab: &Lab, node: &str, kind: &str) -> Option<Value> {
    let n: Value = serde_json::from_str(&kubectl(lab, &["get", "node", node, "-o", "json"]))
        .expect("node json");
    n["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

/// Waits until `node`'s condition `kind` has `status`; returns how long it took.
fn wait_condition(lab: &Lab, node: &str, kind: &str, status: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if condition(lab, node, kind).is_some_and(|c| c["status"] == status) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{node} {kind} is not {status} after {within:?}: {:?}\n{}",
            condition(lab, node, kind),
            lab.ssh_ok(node, "root", "journalctl -u pictl-agent --no-pager -n 20")
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The simulator's request counts (simulator-only endpoint, on the server).
fn counts(lab: &Lab) -> Value {
    let out = lab
        .ssh_ok(
            "node1",
            "root",
            "curl -sf --cacert /var/lib/rancher/k3s/server/tls/server-ca.crt https://127.0.0.1:6443/v1-k3s/sim/requests",
        )
        .expect("request counts");
    serde_json::from_str(&out).expect("counts json")
}

/// Sum of the counts whose key starts with `prefix` (a verb and resource).
fn sum(c: &Value, prefix: &str) -> u64 {
    c.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Agent config for the timed cases: a short interval (and, for `node`, a
/// disk threshold), then a restart. pictl's next apply writes its own back.
fn configure_agent(lab: &Lab, node: &str, extra: &str) {
    let cmd = format!(
        "set -e; f=/etc/pictl-agent/publish.conf; sed -i '/^interval_seconds\\|^disk_pressure_percent/d' $f; \
         printf 'interval_seconds = {INTERVAL}\\n{extra}' >> $f; systemctl restart pictl-agent; \
         for i in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:9750/v1/report && break; sleep 0.2; done"
    );
    lab.ssh_ok(node, "root", &cmd).expect("configure the agent");
}

fn agent_report(lab: &Lab, node: &str) -> Value {
    let r = lab
        .ssh_ok(node, "lab", "curl -s http://127.0.0.1:9750/v1/report")
        .expect("report");
    serde_json::from_str(&r).expect("report json")
}

fn apply_gives_each_agent_its_own_token_and_the_conditions_appear(lab: &Lab) {
    let first = apply(lab);
    for n in ["node1", "node2"] {
        assert_eq!(status_of(&first, n, "agent-rbac"), "changed", "{first:#}");
        assert_eq!(status_of(&first, n, "agent-access"), "changed", "{first:#}");
        // The token is the agent's alone, and in nobody's argv.
        let files = lab
            .ssh_ok(
                n,
                "root",
                "stat -c '%a %U %n' /etc/pictl-agent/token /etc/pictl-agent/ca.crt",
            )
            .expect("stat");
        assert_eq!(
            files.lines().collect::<Vec<_>>(),
            [
                "600 pictl-agent /etc/pictl-agent/token",
                "600 pictl-agent /etc/pictl-agent/ca.crt"
            ]
        );
        let argv = lab
            // The pattern comes from the file (-f), so grep's own argv holds no token.
            .ssh_ok(n, "root", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -cFf /etc/pictl-agent/token || true")
            .expect("argv scan");
        assert_eq!(argv.trim(), "0", "{n}: the token is in a process's argv");
    }
    // The agents publish once they have their token (default interval 30 s).
    for n in ["node1", "node2"] {
        wait_condition(lab, n, "K3sServiceDown", "False", Duration::from_secs(45));
        // The lab's root is the shared host disk: its real use decides this one.
        let disk = condition(lab, n, "RootDiskPressure").expect("RootDiskPressure published");
        let want = if disk["status"] == "True" {
            "RootFilesystemFull"
        } else {
            "RootFilesystemHasSpace"
        };
        assert_eq!(disk["reason"], want, "{disk:#}");
        // Fresh K3s certificates (365 days) are outside the 120-day window.
        let certs = condition(lab, n, "K3sCertificatesExpiring").expect("certificates published");
        assert_eq!(
            (&certs["status"], &certs["reason"]),
            (
                &serde_json::json!("False"),
                &serde_json::json!("CertificatesValid")
            ),
            "{certs:#}"
        );
        let p = &agent_report(lab, n)["publishing"];
        assert_eq!(p["state"], "ok", "{p:#}");
    }
    let describe = kubectl(lab, &["describe", "node", "node2"]);
    for kind in [
        "Ready",
        "RootDiskPressure",
        "ClockUnsynchronized",
        "K3sServiceDown",
        "K3sCertificatesExpiring",
    ] {
        assert!(
            describe.lines().any(|l| l.trim_start().starts_with(kind)),
            "{kind} missing:\n{describe}"
        );
    }
    // A second apply changes nothing.
    let second = apply(lab);
    for n in ["node1", "node2"] {
        for (step, status) in steps(&second, n) {
            assert!(
                status == "ok" || status == "skipped",
                "{n} {step} {status}: {second:#}"
            );
        }
    }
    // One ServiceAccount and one role per node, limited to that node, and
    // events only in `default` (a Role there).
    let role: Value = serde_json::from_str(&kubectl(
        lab,
        &["get", "clusterrole", "pictl-agent:node2", "-o", "json"],
    ))
    .expect("role");
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"], "resourceNames": ["node2"]}
        ])
    );
    let events: Value = serde_json::from_str(&kubectl(
        lab,
        &[
            "-n",
            "default",
            "get",
            "role",
            "pictl-agent:node2",
            "-o",
            "json",
        ],
    ))
    .expect("events role");
    assert_eq!(
        events["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}])
    );
}

fn the_agents_token_cannot_patch_another_node_or_anything_else(lab: &Lab) {
    // On node2, with node2's token (put in a header file by the shell's
    // printf builtin: never in an argv).
    let try_ = |method: &str, path: &str| -> (u16, Value) {
        let cmd = format!(
            "set -e; umask 077; h=$(mktemp); printf 'Authorization: Bearer %s\\nContent-Type: application/strategic-merge-patch+json\\n' \"$(cat /etc/pictl-agent/token)\" > $h; \
             curl -s -X {method} -H @$h --cacert /etc/pictl-agent/ca.crt -d '{{}}' -w '\\n%{{http_code}}' https://node1:6443{path}; rm -f $h"
        );
        let out = lab.ssh_ok("node2", "root", &cmd).expect("curl on node2");
        let (body, code) = out.trim_end().rsplit_once('\n').expect("code line");
        (
            code.parse().expect("code"),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    };
    let user = "system:serviceaccount:kube-system:pictl-agent-node2";
    let (code, _) = try_("PATCH", "/api/v1/nodes/node2/status");
    assert_eq!(code, 200, "its own Node's status");
    for (method, path, want) in [
        (
            "PATCH",
            "/api/v1/nodes/node1/status",
            format!(
                "nodes \"node1\" is forbidden: User \"{user}\" cannot patch resource \"nodes/status\" in API group \"\" at the cluster scope"
            ),
        ),
        (
            "PATCH",
            "/api/v1/nodes/node2",
            format!(
                "nodes \"node2\" is forbidden: User \"{user}\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope"
            ),
        ),
        (
            "GET",
            "/api/v1/nodes",
            format!(
                "nodes is forbidden: User \"{user}\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
            ),
        ),
        (
            "GET",
            "/api/v1/namespaces/kube-system/secrets",
            format!(
                "secrets is forbidden: User \"{user}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
            ),
        ),
        // Events only in `default`, where the agent posts them.
        (
            "POST",
            "/api/v1/namespaces/kube-system/events",
            format!(
                "events is forbidden: User \"{user}\" cannot create resource \"events\" in API group \"\" in the namespace \"kube-system\""
            ),
        ),
    ] {
        let (code, status) = try_(method, path);
        assert_eq!(code, 403, "{method} {path}: {status}");
        assert_eq!(status["message"], want.as_str(), "{method} {path}");
    }
}

/// PATCHes node2's status with node2's agent token (from node2, the token
/// and body in files the shell writes: never in an argv).
fn patch_own_status(lab: &Lab, body: &str) -> (u16, Value) {
    let cmd = format!(
        "set -e; umask 077; h=$(mktemp); b=$(mktemp); printf 'Authorization: Bearer %s\\nContent-Type: application/strategic-merge-patch+json\\n' \"$(cat /etc/pictl-agent/token)\" > $h; printf '%s' '{body}' > $b; \
         curl -s -X PATCH -H @$h --cacert /etc/pictl-agent/ca.crt --data-binary @$b -w '\\n%{{http_code}}' https://node1:6443/api/v1/nodes/node2/status; rm -f $h $b"
    );
    let out = lab.ssh_ok("node2", "root", &cmd).expect("curl on node2");
    let (body, code) = out.trim_end().rsplit_once('\n').expect("code line");
    (
        code.parse().expect("code"),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn the_agents_token_changes_its_nodes_conditions_and_nothing_else(lab: &Lab) {
    // RBAC lets the token patch nodes/status, which on a real API server also
    // changes metadata; the admission policy pictl applies refuses all but
    // the agent's own conditions (issue 23, item 1).
    let node = || -> Value {
        serde_json::from_str(&kubectl(lab, &["get", "node", "node2", "-o", "json"])).expect("node")
    };
    let before = node();
    let refused = [
        r#"{"metadata":{"labels":{"node-restriction.kubernetes.io/x":"y"}}}"#,
        r#"{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":"true"}}}"#,
        r#"{"metadata":{"annotations":{"pictl.dev/cordoned":"true"}}}"#,
        r#"{"metadata":{"annotations":{"pictl.dev/agent-metrics":"10.0.0.1:9100"}}}"#,
        r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Spoofed","message":"x"}]}}"#,
        r#"{"status":{"conditions":[{"type":"Spoofed","status":"True","reason":"Spoofed","message":"x"}]}}"#,
        r#"{"status":{"capacity":{"pods":"1000"}}}"#,
    ];
    for body in refused {
        let (code, status) = patch_own_status(lab, body);
        assert_eq!(code, 422, "{body}: {status}");
        let message = status["message"].as_str().unwrap_or("");
        assert!(
            message.starts_with("nodes \"node2\" is forbidden: ValidatingAdmissionPolicy 'pictl-agent-node-status' with binding 'pictl-agent-node-status' denied request: a health agent may"),
            "{body}: {message}"
        );
    }
    let after = node();
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
    assert_eq!(
        after["metadata"]["annotations"],
        before["metadata"]["annotations"]
    );
    assert_eq!(after["status"]["capacity"], before["status"]["capacity"]);
    let conditions = after["status"]["conditions"].to_string();
    assert!(!conditions.contains("Spoofed"), "{conditions}");
    // Its own condition, as the agent publishes it, still goes through.
    let own = condition(lab, "node2", "ClockUnsynchronized").expect("the agent's condition");
    let body = serde_json::json!({"status": {"conditions": [{
        "type": "ClockUnsynchronized", "status": own["status"], "reason": own["reason"],
        "message": "published by the lab test"}]}});
    let (code, status) = patch_own_status(lab, &body.to_string());
    assert_eq!(code, 200, "{status}");
}

fn a_healthy_lab_makes_no_status_writes_for_a_minute(lab: &Lab) {
    // The host disk the nodes share may sit near the default threshold while
    // other work fills and frees it: keep that out of the question.
    for n in ["node1", "node2"] {
        configure_agent(lab, n, "disk_pressure_percent = 99.9\\n");
    }
    // Each restarted agent reads the Node back (an empty patch) and writes
    // only what differs from it (here, perhaps RootDiskPressure).
    for n in ["node1", "node2"] {
        wait_condition(
            lab,
            n,
            "RootDiskPressure",
            "False",
            Duration::from_secs(3 * INTERVAL),
        );
    }
    std::thread::sleep(Duration::from_secs(INTERVAL));
    for n in ["node1", "node2"] {
        let p = &agent_report(lab, n)["publishing"];
        assert_eq!(p["state"], "ok", "{n}: {p:#}");
    }
    let before = counts(lab);
    std::thread::sleep(Duration::from_secs(60));
    let after = counts(lab);
    eprintln!("request counts over 60 s: before {before}\n after {after}");
    assert_eq!(
        sum(&after, "patch nodes/status"),
        sum(&before, "patch nodes/status"),
        "status writes in a minute"
    );
    assert_eq!(
        sum(&after, "create events"),
        sum(&before, "create events"),
        "events in a minute"
    );
}

fn a_full_root_filesystem_turns_root_disk_pressure_true_with_an_event_and_back(lab: &Lab) {
    // The node's root is an overlay on the host's disk: set the threshold 2 GiB
    // above its current use, then fill 4 GiB.
    let fs = &agent_report(lab, "node2")["root_fs"];
    let (total, avail) = (
        fs["total_bytes"].as_u64().expect("total"),
        fs["available_bytes"].as_u64().expect("avail"),
    );
    let used = (total - avail) as f64 * 100.0 / total as f64;
    let margin = (2u64 << 30) as f64 * 100.0 / total as f64; // 2 GiB, in percent
    configure_agent(
        lab,
        "node2",
        &format!("disk_pressure_percent = {:.3}\\n", used + margin),
    );
    wait_condition(
        lab,
        "node2",
        "RootDiskPressure",
        "False",
        Duration::from_secs(3 * INTERVAL),
    );
    let events_before = sum(&counts(lab), "create events 201");

    lab.ssh_ok("node2", "root", "fallocate -l 4G /var/tmp/pictl-fill")
        .expect("fill the root filesystem");
    let took = wait_condition(
        lab,
        "node2",
        "RootDiskPressure",
        "True",
        Duration::from_secs(3 * INTERVAL),
    );
    eprintln!("RootDiskPressure True after {took:?} (interval {INTERVAL} s)");
    let c = condition(lab, "node2", "RootDiskPressure").expect("condition");
    assert_eq!(c["reason"], "RootFilesystemFull", "{c:#}");
    let describe = kubectl(lab, &["describe", "node", "node2"]);
    assert!(
        describe.lines().any(|l| l.contains("Warning")
            && l.contains("RootFilesystemFull")
            && l.contains("pictl-agent")),
        "no Warning event in:\n{describe}"
    );

    lab.ssh_ok("node2", "root", "rm -f /var/tmp/pictl-fill")
        .expect("free it");
    let took = wait_condition(
        lab,
        "node2",
        "RootDiskPressure",
        "False",
        Duration::from_secs(3 * INTERVAL),
    );
    eprintln!("RootDiskPressure False after {took:?}");
    let describe = kubectl(lab, &["describe", "node", "node2"]);
    assert!(
        describe
            .lines()
            .any(|l| l.contains("Normal") && l.contains("RootFilesystemHasSpace")),
        "no Normal event in:\n{describe}"
    );
    assert_eq!(
        sum(&counts(lab), "create events 201"),
        events_before + 2,
        "one Event per transition"
    );
    // pictl's next apply puts the agent's configuration back.
    let report = apply(lab);
    assert_eq!(
        status_of(&report, "node2", "agent-access"),
        "changed",
        "{report:#}"
    );
}

/// The sha256 of the public key `node`'s API port serves, as openssl on
/// the host sees it (independent of pictl and of the file K3s keeps).
fn served_pin(lab: &Lab, node: &str) -> String {
    let addr = lab.address(node).expect("address");
    let out = Command::new("sh")
        .args([
            "-c",
            "openssl s_client -connect \"$1:6443\" </dev/null 2>/dev/null | openssl x509 -noout -pubkey \
             | openssl pkey -pubin -outform DER | sha256sum",
            "sh",
            addr,
        ])
        .output()
        .expect("openssl");
    let pin = String::from_utf8_lossy(&out.stdout);
    let pin = pin.split_whitespace().next().unwrap_or("").to_owned();
    assert_eq!(pin.len(), 64, "{out:?}");
    pin
}

fn pinned(lab: &Lab, node: &str) -> String {
    let conf = lab
        .ssh_ok(node, "root", "cat /etc/pictl-agent/publish.conf")
        .expect("publish.conf");
    conf.lines()
        .find_map(|l| l.strip_prefix("api_spki_sha256 = "))
        .unwrap_or_else(|| panic!("{node}: no pin in publish.conf:\n{conf}"))
        .to_owned()
}

fn agents_pin_the_api_servers_key_which_a_new_san_keeps(lab: &Lab) {
    let served = served_pin(lab, "node1");
    for n in ["node1", "node2"] {
        assert_eq!(
            pinned(lab, n),
            served,
            "{n} pins another key than the API serves"
        );
    }
    // A new name for the API: K3s re-signs its certificate with the same key
    // (dynamiclistener), so the pin holds and nothing on the agents changes.
    let original = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let inv = lab.dir().join("inventory-san.toml");
    let with_san = original.replacen(
        "[cluster]\n",
        "[cluster]\ntls_san = [\"api.lab.test\"]\n",
        1,
    );
    assert_ne!(with_san, original);
    std::fs::write(&inv, with_san).expect("write");
    let out = pictl::run(lab, &inv, &["apply", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status_of(&v, "node1", "k3s-service"), "changed", "{v:#}");
    assert_eq!(
        served_pin(lab, "node1"),
        served,
        "a new SAN changed the key"
    );
    for n in ["node1", "node2"] {
        assert_eq!(status_of(&v, n, "agent-access"), "ok", "{v:#}");
        assert_eq!(pinned(lab, n), served);
    }
    // The agent, restarted (nothing attempted yet), reaches the API server
    // through the pinned key: its first exchange succeeds.
    lab.ssh_ok(
        "node2",
        "root",
        "systemctl restart pictl-agent; \
         for i in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:9750/v1/report && break; sleep 0.2; done",
    )
    .expect("restart");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let p = agent_report(lab, "node2")["publishing"].clone();
        if p["state"] == "ok" && p["error"].is_null() {
            break;
        }
        assert!(Instant::now() < until, "{p:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Put the cluster's own names back for the cases after this one.
    apply(lab);
}
