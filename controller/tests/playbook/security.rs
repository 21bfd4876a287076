//! A pod that satisfies Pod Security "restricted", a namespace enforcing
//! it, and pods spread across nodes.

use super::*;

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
