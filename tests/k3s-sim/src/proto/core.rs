//! core/v1 kinds kubectl's generators create: ConfigMap, Secret, Namespace,
//! ServiceAccount, Service, ResourceQuota (message layouts in kubernetes
//! staging/src/k8s.io/api/core/v1/generated.proto; JSON names and
//! `omitempty` from types.go there).

use super::meta::{
    Obj, int_or_string_value, list, num, object_meta, ptr, quantities, string_map, strings, sub,
    text,
};
use super::{Conv, rest};
use base64::Engine;
use k8s_pb::api::core::v1 as core;
use serde_json::{Value, json};

pub(super) fn config_map(mut o: core::ConfigMap) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    ptr(&mut m, "immutable", o.immutable.take());
    string_map(&mut m, "data", std::mem::take(&mut o.data));
    let binary = std::mem::take(&mut o.binary_data);
    if !binary.is_empty() {
        m.insert("binaryData".into(), base64_map(binary));
    }
    rest(&o, "ConfigMap")?;
    Ok(Value::Object(m))
}

fn base64_map(v: std::collections::BTreeMap<String, Vec<u8>>) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    Value::Object(
        v.into_iter()
            .map(|(k, b)| (k, json!(b64.encode(b))))
            .collect(),
    )
}

pub(super) fn secret(mut o: core::Secret) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    ptr(&mut m, "immutable", o.immutable.take());
    let data = std::mem::take(&mut o.data);
    if !data.is_empty() {
        m.insert("data".into(), base64_map(data));
    }
    string_map(&mut m, "stringData", std::mem::take(&mut o.string_data));
    text(&mut m, "type", o.r#type.take());
    rest(&o, "Secret")?;
    Ok(Value::Object(m))
}

pub(super) fn namespace(mut o: core::Namespace) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    sub(&mut m, "spec", o.spec.take(), |mut s| {
        let mut spec = Obj::new();
        strings(&mut spec, "finalizers", std::mem::take(&mut s.finalizers));
        rest(&s, "NamespaceSpec")?;
        Ok(Value::Object(spec))
    })?;
    rest(&o, "Namespace")?;
    Ok(Value::Object(m))
}

pub(super) fn service_account(mut o: core::ServiceAccount) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    list(
        &mut m,
        "secrets",
        std::mem::take(&mut o.secrets),
        |mut r| {
            let mut x = Obj::new();
            text(&mut x, "kind", r.kind.take());
            text(&mut x, "namespace", r.namespace.take());
            text(&mut x, "name", r.name.take());
            text(&mut x, "uid", r.uid.take());
            text(&mut x, "apiVersion", r.api_version.take());
            rest(&r, "ObjectReference")?;
            Ok(Value::Object(x))
        },
    )?;
    let pulls = std::mem::take(&mut o.image_pull_secrets);
    list(&mut m, "imagePullSecrets", pulls, |mut r| {
        let mut x = Obj::new();
        text(&mut x, "name", r.name.take());
        rest(&r, "LocalObjectReference")?;
        Ok(Value::Object(x))
    })?;
    ptr(
        &mut m,
        "automountServiceAccountToken",
        o.automount_service_account_token.take(),
    );
    rest(&o, "ServiceAccount")?;
    Ok(Value::Object(m))
}

pub(super) fn service(mut o: core::Service) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    sub(&mut m, "spec", o.spec.take(), service_spec)?;
    rest(&o, "Service")?;
    Ok(Value::Object(m))
}

fn service_spec(mut s: core::ServiceSpec) -> Conv {
    let mut m = Obj::new();
    list(&mut m, "ports", std::mem::take(&mut s.ports), |mut p| {
        let mut x = Obj::new();
        text(&mut x, "name", p.name.take());
        text(&mut x, "protocol", p.protocol.take());
        ptr(&mut x, "appProtocol", p.app_protocol.take());
        // `port` has no omitempty: it is always there.
        x.insert("port".into(), json!(p.port.take().unwrap_or(0)));
        int_or_string_value(&mut x, "targetPort", p.target_port.take());
        num(&mut x, "nodePort", p.node_port.take());
        rest(&p, "ServicePort")?;
        Ok(Value::Object(x))
    })?;
    string_map(&mut m, "selector", std::mem::take(&mut s.selector));
    text(&mut m, "clusterIP", s.cluster_ip.take());
    strings(&mut m, "clusterIPs", std::mem::take(&mut s.cluster_ips));
    text(&mut m, "type", s.r#type.take());
    strings(&mut m, "externalIPs", std::mem::take(&mut s.external_ips));
    text(&mut m, "sessionAffinity", s.session_affinity.take());
    text(&mut m, "externalName", s.external_name.take());
    text(
        &mut m,
        "externalTrafficPolicy",
        s.external_traffic_policy.take(),
    );
    strings(&mut m, "ipFamilies", std::mem::take(&mut s.ip_families));
    ptr(&mut m, "ipFamilyPolicy", s.ip_family_policy.take());
    ptr(
        &mut m,
        "internalTrafficPolicy",
        s.internal_traffic_policy.take(),
    );
    rest(&s, "ServiceSpec")?;
    Ok(Value::Object(m))
}

pub(super) fn resource_quota(mut o: core::ResourceQuota) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    sub(&mut m, "spec", o.spec.take(), |mut s| {
        let mut spec = Obj::new();
        quantities(&mut spec, "hard", std::mem::take(&mut s.hard));
        strings(&mut spec, "scopes", std::mem::take(&mut s.scopes));
        rest(&s, "ResourceQuotaSpec")?;
        Ok(Value::Object(spec))
    })?;
    rest(&o, "ResourceQuota")?;
    Ok(Value::Object(m))
}
