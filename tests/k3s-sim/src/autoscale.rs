//! The part of the horizontal pod autoscaler controller the simulator has:
//! `status.currentReplicas` is the scale target's replica count, as
//! kubernetes pkg/controller/podautoscaler/horizontal.go
//! (`reconcileAutoscaler`, `setCurrentReplicasAndMetricsInStatus`) records it
//! when it cannot get metrics. The simulator has no metrics API, so it never
//! reports current metrics (TARGETS stays `<unknown>`) and never scales.

use crate::store::State;
use serde_json::{Value, json};

/// Sets each HPA's `status.currentReplicas` from its target (the controller's pass).
pub fn update_autoscalers(st: &mut State) {
    let hpa_rt = crate::pods::rt("HorizontalPodAutoscaler");
    let hpas: Vec<Value> = st.list(hpa_rt, None).into_iter().cloned().collect();
    for hpa in hpas {
        let ns = hpa["metadata"]["namespace"].as_str().unwrap_or("");
        let target = &hpa["spec"]["scaleTargetRef"];
        let kind = target["kind"].as_str().unwrap_or("");
        if !matches!(kind, "Deployment" | "ReplicaSet") {
            continue;
        }
        let name = target["name"].as_str().unwrap_or("");
        let Some(current) = st
            .get(crate::pods::rt(kind), ns, name)
            .map(|t| t["spec"]["replicas"].as_i64().unwrap_or(1))
        else {
            continue;
        };
        if hpa["status"]["currentReplicas"] != json!(current) {
            let mut h = hpa.clone();
            h["status"]["currentReplicas"] = json!(current);
            // desiredReplicas has no omitempty; without metrics it is not computed.
            if h["status"]["desiredReplicas"].is_null() {
                h["status"]["desiredReplicas"] = json!(0);
            }
            if let Err(e) = st.put(hpa_rt, h) {
                crate::error!("updating HorizontalPodAutoscaler status: {e}");
            }
        }
    }
}
