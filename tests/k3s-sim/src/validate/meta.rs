//! The rules every object's metadata meets: names (RFC 1123 labels or
//! subdomains, RBAC's path segments), label keys and values, and string
//! annotations (k8s.io/apimachinery's validation of ObjectMeta).

use super::err;
use crate::api::Invalid;
use crate::store::{ResourceType, meta_str};
use serde_json::Value;

pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Name, labels and annotations: what ObjectMeta validation checks.
pub(super) fn metadata(
    rt: &ResourceType,
    existing: Option<&Value>,
    obj: &Value,
    e: &mut Vec<Invalid>,
) {
    let name = meta_str(obj, "name");
    let label_names = matches!(rt.kind, "Namespace" | "Service");
    if rt.group == "rbac.authorization.k8s.io" {
        // RBAC names are path segments (pkg/apis/rbac/validation: ValidateRBACName), so
        // `system:node-proxier` and `pictl-agent:node1` are valid.
        crate::rbac::validate_name(name, e);
        crate::rbac::validate_object(rt, existing, obj, e);
    } else if (label_names && !is_dns_label(name)) || (!label_names && !is_dns_subdomain(name)) {
        let what = if label_names {
            "RFC 1123 label"
        } else {
            "RFC 1123 subdomain"
        };
        err(
            e,
            "metadata.name",
            "FieldValueInvalid",
            format!(
                "Invalid value: \"{name}\": a lowercase {what} must consist of lower case alphanumeric characters, '-'{}, and must start and end with an alphanumeric character",
                if label_names { "" } else { " or '.'" }
            ),
        );
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if !is_label_key(k) {
                err(
                    e,
                    "metadata.labels",
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.'"
                    ),
                );
            }
            match v.as_str() {
                Some(s) if is_label_value(s) => {}
                _ => err(
                    e,
                    "metadata.labels",
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                    ),
                ),
            }
        }
    }
    if let Some(ann) = obj["metadata"]["annotations"].as_object() {
        for (k, v) in ann {
            if !v.is_string() {
                err(
                    e,
                    &format!("metadata.annotations.{k}"),
                    "FieldValueTypeInvalid",
                    "Invalid value: annotation values must be strings".into(),
                );
            }
        }
    }
}
