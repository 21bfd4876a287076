//! The `status` subresource's PATCH (what node-problem-detector, the kubelet
//! and pictl's agent send to `nodes/NAME/status`): the patch applies to the
//! whole object, then the status strategy keeps the old spec
//! (pkg/registry/core/node/strategy.go `nodeStatusStrategy.PrepareForUpdate`:
//! `newNode.Spec = oldNode.Spec`; metadata changes are kept, as there). A
//! strategic merge patch merges `status.conditions` by `type`
//! (`patchMergeKey:"type"` on NodeStatus.Conditions in staging/src/k8s.io/api/
//! core/v1/types.go). An empty patch changes nothing, so stores nothing.

use crate::api::{Api, Resp, not_found, status_err};
use crate::store::ResourceType;
use serde_json::{Value, json};
use std::collections::HashMap;

impl Api {
    pub(crate) fn patch_status(
        &self,
        rt: &'static ResourceType,
        name: &str,
        ct: &str,
        body: &[u8],
        q: &HashMap<String, String>,
    ) -> Resp {
        let strategic = match ct {
            "application/strategic-merge-patch+json" => true,
            "application/merge-patch+json" => false,
            other => {
                return status_err(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?}; only strategic and merge patches of status are supported by k3s-sim)"
                    ),
                    Value::Null,
                );
            }
        };
        let patch = match self.parse_obj(body) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let mut st = self.store.lock();
        let Some(existing) = st.get(rt, "", name).cloned() else {
            return not_found(rt, name);
        };
        let mut obj = existing.clone();
        if strategic {
            crate::apply::strategic_merge(&mut obj, &patch);
        } else {
            crate::apply::merge_patch(&mut obj, &patch);
        }
        obj["spec"] = existing["spec"].clone();
        let status = obj.get("status").cloned().unwrap_or_else(|| json!({}));
        let manager = q
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| "kubectl-patch".into());
        crate::apply::record_update(
            Some(&existing),
            &mut obj,
            &manager,
            &rt.api_version(),
            &crate::log::k8s_now(),
        );
        let dry = q.get("dryRun").is_some_and(|d| d == "All");
        // commit() restores the old status (the main resource's rule); the
        // status subresource puts the patched one back first.
        self.commit_with_status(&mut st, rt, existing, obj, status, dry)
    }
}
