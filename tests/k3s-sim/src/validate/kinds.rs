//! What each kind pictl uses must hold beyond its metadata (the kinds'
//! `Validate*` functions in kubernetes/pkg/apis/*/validation).

use super::err;
use crate::api::Invalid;
use crate::store::ResourceType;
use serde_json::{Value, json};

/// The checks of `rt`'s kind, if the simulator knows them.
pub(super) fn kind(rt: &ResourceType, existing: Option<&Value>, obj: &Value, e: &mut Vec<Invalid>) {
    match rt.kind {
        "Deployment" => deployment(existing, obj, e),
        "Service" => service(obj, e),
        "ConfigMap" => config_map(obj, e),
        "Secret" => secret(obj, e),
        "PodDisruptionBudget"
            if obj["spec"].get("minAvailable").is_some()
                && obj["spec"].get("maxUnavailable").is_some() =>
        {
            err(
                e,
                "spec",
                "FieldValueInvalid",
                "Invalid value: minAvailable and maxUnavailable cannot be both set".into(),
            );
        }
        "HorizontalPodAutoscaler" => autoscaler(obj, e),
        _ => {}
    }
}

fn service(obj: &Value, e: &mut Vec<Invalid>) {
    let spec = &obj["spec"];
    let headless = spec["clusterIP"] == json!("None");
    let external = spec["type"] == json!("ExternalName");
    let ports = spec["ports"].as_array().map(Vec::len).unwrap_or(0);
    if ports == 0 && !headless && !external {
        err(
            e,
            "spec.ports",
            "FieldValueRequired",
            "Required value".into(),
        );
    }
    for (i, p) in spec["ports"].as_array().into_iter().flatten().enumerate() {
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            err(
                e,
                &format!("spec.ports[{i}].port"),
                "FieldValueInvalid",
                format!(
                    "Invalid value: {}: must be between 1 and 65535, inclusive",
                    p["port"]
                ),
            );
        }
    }
}

fn config_map(obj: &Value, e: &mut Vec<Invalid>) {
    if let Some(d) = obj["data"].as_object() {
        for (k, v) in d {
            if !v.is_string() {
                err(
                    e,
                    &format!("data[{k}]"),
                    "FieldValueTypeInvalid",
                    "Invalid value: configmap data values must be strings".into(),
                );
            }
        }
    }
}

fn secret(obj: &Value, e: &mut Vec<Invalid>) {
    use base64::Engine;
    crate::tokens::validate_secret(obj, e);
    if let Some(d) = obj["data"].as_object() {
        for (k, v) in d {
            let ok = v
                .as_str()
                .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                err(
                    e,
                    &format!("data[{k}]"),
                    "FieldValueInvalid",
                    "Invalid value: secret data must be base64-encoded".into(),
                );
            }
        }
    }
}

fn autoscaler(obj: &Value, e: &mut Vec<Invalid>) {
    let spec = &obj["spec"];
    if spec["scaleTargetRef"]["name"]
        .as_str()
        .unwrap_or("")
        .is_empty()
    {
        err(
            e,
            "spec.scaleTargetRef.name",
            "FieldValueRequired",
            "Required value".into(),
        );
    }
    let max = spec["maxReplicas"].as_i64().unwrap_or(0);
    if max < 1 {
        err(
            e,
            "spec.maxReplicas",
            "FieldValueInvalid",
            format!("Invalid value: {max}: must be greater than or equal to 1"),
        );
    }
    if let Some(min) = spec["minReplicas"].as_i64()
        && min > max
    {
        err(
            e,
            "spec.maxReplicas",
            "FieldValueInvalid",
            format!("Invalid value: {max}: must be greater than or equal to `minReplicas`"),
        );
    }
}

fn deployment(existing: Option<&Value>, obj: &Value, e: &mut Vec<Invalid>) {
    let spec = &obj["spec"];
    let sel = &spec["selector"];
    if !sel.is_object() || sel.as_object().is_some_and(|m| m.is_empty()) {
        err(
            e,
            "spec.selector",
            "FieldValueRequired",
            "Required value".into(),
        );
    } else {
        let tl = &spec["template"]["metadata"]["labels"];
        let matches = sel["matchLabels"]
            .as_object()
            .is_none_or(|m| m.iter().all(|(k, v)| tl.get(k) == Some(v)));
        if !matches {
            err(
                e,
                "spec.template.metadata.labels",
                "FieldValueInvalid",
                format!("Invalid value: {tl}: `selector` does not match template `labels`"),
            );
        }
        if let Some(old) = existing
            && old["spec"]["selector"] != *sel
        {
            err(
                e,
                "spec.selector",
                "FieldValueInvalid",
                format!("Invalid value: {sel}: field is immutable"),
            );
        }
    }
    if spec["replicas"].as_i64().is_some_and(|r| r < 0) {
        err(
            e,
            "spec.replicas",
            "FieldValueInvalid",
            format!(
                "Invalid value: {}: must be greater than or equal to 0",
                spec["replicas"]
            ),
        );
    }
    containers(&spec["template"]["spec"]["containers"], e);
}

/// A pod template's containers: at least one, each named and with an image.
fn containers(list: &Value, e: &mut Vec<Invalid>) {
    let containers = list.as_array();
    match containers {
        None => err(
            e,
            "spec.template.spec.containers",
            "FieldValueRequired",
            "Required value".into(),
        ),
        Some(cs) if cs.is_empty() => err(
            e,
            "spec.template.spec.containers",
            "FieldValueRequired",
            "Required value".into(),
        ),
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                if c["name"].as_str().unwrap_or("").is_empty() {
                    err(
                        e,
                        &format!("spec.template.spec.containers[{i}].name"),
                        "FieldValueRequired",
                        "Required value".into(),
                    );
                }
                if c["image"].as_str().unwrap_or("").is_empty() {
                    err(
                        e,
                        &format!("spec.template.spec.containers[{i}].image"),
                        "FieldValueRequired",
                        "Required value".into(),
                    );
                }
            }
        }
    }
}
