//! rbac.authorization.k8s.io/v1 kinds (`kubectl create role|clusterrole|
//! rolebinding|clusterrolebinding`); layouts in kubernetes
//! staging/src/k8s.io/api/rbac/v1/generated.proto.

use super::meta::{Obj, label_selector, list, object_meta, strings, sub, text};
use super::{Conv, rest};
use k8s_pb::api::rbac::v1 as rbac;
use serde_json::Value;

fn rule(mut r: rbac::PolicyRule) -> Conv {
    let mut m = Obj::new();
    strings(&mut m, "verbs", std::mem::take(&mut r.verbs));
    strings(&mut m, "apiGroups", std::mem::take(&mut r.api_groups));
    strings(&mut m, "resources", std::mem::take(&mut r.resources));
    strings(
        &mut m,
        "resourceNames",
        std::mem::take(&mut r.resource_names),
    );
    strings(
        &mut m,
        "nonResourceURLs",
        std::mem::take(&mut r.non_resource_ur_ls),
    );
    rest(&r, "PolicyRule")?;
    Ok(Value::Object(m))
}

fn subject(mut s: rbac::Subject) -> Conv {
    let mut m = Obj::new();
    text(&mut m, "kind", s.kind.take());
    text(&mut m, "apiGroup", s.api_group.take());
    text(&mut m, "name", s.name.take());
    text(&mut m, "namespace", s.namespace.take());
    rest(&s, "Subject")?;
    Ok(Value::Object(m))
}

fn role_ref(mut r: rbac::RoleRef) -> Conv {
    let mut m = Obj::new();
    text(&mut m, "apiGroup", r.api_group.take());
    text(&mut m, "kind", r.kind.take());
    text(&mut m, "name", r.name.take());
    rest(&r, "RoleRef")?;
    Ok(Value::Object(m))
}

pub(super) fn role(mut o: rbac::Role) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    list(&mut m, "rules", std::mem::take(&mut o.rules), rule)?;
    rest(&o, "Role")?;
    Ok(Value::Object(m))
}

pub(super) fn cluster_role(mut o: rbac::ClusterRole) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    list(&mut m, "rules", std::mem::take(&mut o.rules), rule)?;
    sub(
        &mut m,
        "aggregationRule",
        o.aggregation_rule.take(),
        |mut a| {
            let mut x = Obj::new();
            let sels = std::mem::take(&mut a.cluster_role_selectors);
            list(&mut x, "clusterRoleSelectors", sels, label_selector)?;
            rest(&a, "AggregationRule")?;
            Ok(Value::Object(x))
        },
    )?;
    rest(&o, "ClusterRole")?;
    Ok(Value::Object(m))
}

pub(super) fn role_binding(mut o: rbac::RoleBinding) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    list(&mut m, "subjects", std::mem::take(&mut o.subjects), subject)?;
    sub(&mut m, "roleRef", o.role_ref.take(), role_ref)?;
    rest(&o, "RoleBinding")?;
    Ok(Value::Object(m))
}

pub(super) fn cluster_role_binding(mut o: rbac::ClusterRoleBinding) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    list(&mut m, "subjects", std::mem::take(&mut o.subjects), subject)?;
    sub(&mut m, "roleRef", o.role_ref.take(), role_ref)?;
    rest(&o, "ClusterRoleBinding")?;
    Ok(Value::Object(m))
}
