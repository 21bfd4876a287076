//! The apimachinery messages every object carries (ObjectMeta, LabelSelector,
//! IntOrString, Quantity, Time) and the small moves the converters share:
//! a field goes into the JSON object under its JSON name when it is set,
//! strings and numbers only when not zero (the JSON tags' `omitempty`),
//! pointers (`*bool`, `*int32`) whenever they are set.

use super::{Conv, rest};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub(crate) type Obj = Map<String, Value>;

/// A string field, left out when empty.
pub(crate) fn text(m: &mut Obj, key: &str, v: Option<String>) {
    if let Some(s) = v.filter(|s| !s.is_empty()) {
        m.insert(key.into(), json!(s));
    }
}

/// A number field, left out when zero.
pub(crate) fn num<N: Into<i64>>(m: &mut Obj, key: &str, v: Option<N>) {
    if let Some(n) = v.map(Into::into).filter(|n| *n != 0) {
        m.insert(key.into(), json!(n));
    }
}

/// A pointer field (`*bool`, `*int32`, `*string`): kept whenever set.
pub(crate) fn ptr<T: Into<Value>>(m: &mut Obj, key: &str, v: Option<T>) {
    if let Some(x) = v {
        m.insert(key.into(), x.into());
    }
}

/// A list of strings, left out when empty.
pub(crate) fn strings(m: &mut Obj, key: &str, v: Vec<String>) {
    if !v.is_empty() {
        m.insert(key.into(), json!(v));
    }
}

/// A string map, left out when empty.
pub(crate) fn string_map(m: &mut Obj, key: &str, v: BTreeMap<String, String>) {
    if !v.is_empty() {
        m.insert(key.into(), json!(v));
    }
}

/// A list of messages, each converted, left out when empty.
pub(crate) fn list<T>(
    m: &mut Obj,
    key: &str,
    v: Vec<T>,
    f: impl Fn(T) -> Conv,
) -> Result<(), String> {
    if !v.is_empty() {
        let items = v.into_iter().map(f).collect::<Result<Vec<_>, _>>()?;
        m.insert(key.into(), Value::Array(items));
    }
    Ok(())
}

/// A sub-message, converted when present.
pub(crate) fn sub<T>(
    m: &mut Obj,
    key: &str,
    v: Option<T>,
    f: impl Fn(T) -> Conv,
) -> Result<(), String> {
    if let Some(x) = v {
        m.insert(key.into(), f(x)?);
    }
    Ok(())
}

pub(crate) fn quantities(m: &mut Obj, key: &str, v: BTreeMap<String, Quantity>) {
    let q: BTreeMap<String, String> = v
        .into_iter()
        .map(|(k, q)| (k, q.string.unwrap_or_default()))
        .collect();
    string_map(m, key, q);
}

/// An IntOrString as JSON has it: a number or a string.
pub(crate) fn int_or_string(v: IntOrString) -> Conv {
    Ok(match v.r#type.unwrap_or(0) {
        0 => json!(v.int_val.unwrap_or(0)),
        _ => json!(v.str_val.unwrap_or_default()),
    })
}

/// An IntOrString field that is not a pointer: left out when zero.
pub(crate) fn int_or_string_value(m: &mut Obj, key: &str, v: Option<IntOrString>) {
    if let Some(v) = v.filter(|v| !is_zero_intstr(v))
        && let Ok(j) = int_or_string(v)
    {
        m.insert(key.into(), j);
    }
}

fn is_zero_intstr(v: &IntOrString) -> bool {
    v.r#type.unwrap_or(0) == 0
        && v.int_val.unwrap_or(0) == 0
        && v.str_val.as_deref().unwrap_or("").is_empty()
}

fn time(m: &mut Obj, key: &str, v: Option<Time>) {
    let Some(secs) = v.and_then(|t| t.seconds).filter(|s| *s != 0) else {
        return;
    };
    if let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs)
        && let Ok(s) = t.format(&time::format_description::well_known::Rfc3339)
    {
        m.insert(key.into(), json!(s));
    }
}

pub(crate) fn object_meta(mut o: ObjectMeta) -> Conv {
    let mut m = Obj::new();
    text(&mut m, "name", o.name.take());
    text(&mut m, "generateName", o.generate_name.take());
    text(&mut m, "namespace", o.namespace.take());
    o.self_link.take();
    text(&mut m, "uid", o.uid.take());
    text(&mut m, "resourceVersion", o.resource_version.take());
    num(&mut m, "generation", o.generation.take());
    time(&mut m, "creationTimestamp", o.creation_timestamp.take());
    string_map(&mut m, "labels", std::mem::take(&mut o.labels));
    string_map(&mut m, "annotations", std::mem::take(&mut o.annotations));
    list(
        &mut m,
        "ownerReferences",
        std::mem::take(&mut o.owner_references),
        owner_reference,
    )?;
    strings(&mut m, "finalizers", std::mem::take(&mut o.finalizers));
    rest(&o, "ObjectMeta")?;
    Ok(Value::Object(m))
}

fn owner_reference(mut o: OwnerReference) -> Conv {
    let mut m = Obj::new();
    text(&mut m, "apiVersion", o.api_version.take());
    text(&mut m, "kind", o.kind.take());
    text(&mut m, "name", o.name.take());
    text(&mut m, "uid", o.uid.take());
    ptr(&mut m, "controller", o.controller.take());
    ptr(&mut m, "blockOwnerDeletion", o.block_owner_deletion.take());
    rest(&o, "OwnerReference")?;
    Ok(Value::Object(m))
}

pub(crate) fn label_selector(mut s: LabelSelector) -> Conv {
    let mut m = Obj::new();
    string_map(&mut m, "matchLabels", std::mem::take(&mut s.match_labels));
    let exprs = std::mem::take(&mut s.match_expressions);
    list(&mut m, "matchExpressions", exprs, |mut e| {
        let mut r = Obj::new();
        text(&mut r, "key", e.key.take());
        text(&mut r, "operator", e.operator.take());
        strings(&mut r, "values", std::mem::take(&mut e.values));
        rest(&e, "LabelSelectorRequirement")?;
        Ok(Value::Object(r))
    })?;
    rest(&s, "LabelSelector")?;
    Ok(Value::Object(m))
}
