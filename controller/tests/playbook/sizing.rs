//! Requests and limits, the LimitRange, a quota that fits the HPA's maximum
//! plus a surge, the HPA and the disruption budget.

use super::*;

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
