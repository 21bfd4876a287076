//! Server-side apply, simplified but with the semantics pictl relies on: each field
//! manager owns the leaf fields it applied (lists are atomic leaves, which is what
//! the real apiserver does for lists without merge keys), a manager setting a field
//! another manager owns with a different value is a conflict unless forced (force
//! moves ownership), fields a manager stops applying are removed when nobody else
//! owns them, and ownership is reported as `managedFields` in fieldsV1 form.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

pub type Path = Vec<String>;

#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: BTreeSet<Path>,
}

#[derive(Debug)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub field: String,
}

pub fn display(path: &Path) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// Top-level fields the apiserver manages itself and appliers cannot own.
fn skip_top(k: &str) -> bool {
    matches!(k, "apiVersion" | "kind" | "status")
}

fn managed_metadata(k: &str) -> bool {
    matches!(
        k,
        "labels" | "annotations" | "finalizers" | "ownerReferences"
    )
}

/// Leaf paths and values of an applied object, in the part appliers own.
pub fn leaves(obj: &Value) -> Vec<(Path, Value)> {
    let mut out = Vec::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if skip_top(k) {
                continue;
            }
            if k == "metadata" {
                if let Some(m) = v.as_object() {
                    for (mk, mv) in m {
                        if managed_metadata(mk) {
                            walk(vec!["metadata".into(), mk.clone()], mv, &mut out);
                        }
                    }
                }
                continue;
            }
            walk(vec![k.clone()], v, &mut out);
        }
    }
    out
}

fn walk(path: Path, v: &Value, out: &mut Vec<(Path, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(k.clone());
                walk(p, child, out);
            }
        }
        // Explicit nulls in an apply mean "not set"; the real apiserver drops them too.
        Value::Null => {}
        _ => out.push((path, v.clone())),
    }
}

pub fn get_path<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

pub fn set_path(obj: &mut Value, path: &[String], v: Value) {
    let mut cur = obj;
    for p in &path[..path.len().saturating_sub(1)] {
        if !cur.get(p).is_some_and(Value::is_object)
            && let Some(m) = cur.as_object_mut()
        {
            m.insert(p.clone(), Value::Object(Map::new()));
        }
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let (Some(last), Some(m)) = (path.last(), cur.as_object_mut()) {
        m.insert(last.clone(), v);
    }
}

/// Removes a field and any parent maps the removal left empty (below top level).
pub fn remove_path(obj: &mut Value, path: &[String]) {
    if path.is_empty() {
        return;
    }
    fn rec(cur: &mut Value, path: &[String]) -> bool {
        let Some(m) = cur.as_object_mut() else {
            return false;
        };
        if path.len() == 1 {
            m.remove(&path[0]);
        } else if let Some(child) = m.get_mut(&path[0])
            && rec(child, &path[1..])
        {
            m.remove(&path[0]);
        }
        m.is_empty()
    }
    if let Some(m) = obj.as_object_mut()
        && let Some(child) = m.get_mut(&path[0])
    {
        if path.len() == 1 {
            m.remove(&path[0]);
        } else {
            rec(child, &path[1..]);
        }
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

pub fn to_fields_v1(fields: &BTreeSet<Path>) -> Value {
    let mut root = Value::Object(Map::new());
    for path in fields {
        let keyed: Vec<String> = path.iter().map(|p| format!("f:{p}")).collect();
        let mut cur = &mut root;
        for k in &keyed {
            let m = match cur.as_object_mut() {
                Some(m) => m,
                None => break,
            };
            cur = m
                .entry(k.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

pub fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    fn rec(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let Some(m) = v.as_object() else { return };
        let children: Vec<(&String, &Value)> =
            m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, child) in children {
            path.push(k[2..].to_string());
            rec(child, path, out);
            path.pop();
        }
    }
    rec(v, &mut Vec::new(), &mut out);
    out
}

pub fn read_entries(obj: Option<&Value>) -> Vec<Entry> {
    let Some(list) = obj.and_then(|o| o["metadata"]["managedFields"].as_array()) else {
        return Vec::new();
    };
    list.iter()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or("").to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
            time: e["time"].as_str().unwrap_or("").to_string(),
            subresource: e["subresource"].as_str().map(str::to_string),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

/// Checks `manager`'s applied leaves against every other manager's fields:
/// a leaf another manager owns with a different live value is a conflict,
/// or, when forced, is taken from that manager.
fn claim(
    entries: &mut [Entry],
    new_leaves: &[(Path, Value)],
    base: &Value,
    manager: &str,
    force: bool,
) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    for (p, v) in new_leaves {
        let live = get_path(base, p);
        for e in entries.iter_mut() {
            if e.manager == manager && e.operation == "Apply" {
                continue;
            }
            let owned: Vec<Path> = e
                .fields
                .iter()
                .filter(|q| overlaps(p, q))
                .cloned()
                .collect();
            if owned.is_empty() || live == Some(v) {
                continue;
            }
            if force {
                for q in owned {
                    e.fields.remove(&q);
                }
            } else {
                for q in owned {
                    conflicts.push(Conflict {
                        manager: e.manager.clone(),
                        api_version: e.api_version.clone(),
                        field: display(&q),
                    });
                }
            }
        }
    }
    conflicts
}

/// Applies `applied` as `manager` onto `existing` (None: creation). Returns the new
/// object (system metadata copied from `existing` is the caller's business).
pub fn apply(
    existing: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let api_version = applied["apiVersion"].as_str().unwrap_or("").to_string();
    let mut entries = read_entries(existing);
    let new_leaves = leaves(applied);
    let new_set: BTreeSet<Path> = new_leaves.iter().map(|(p, _)| p.clone()).collect();
    let base = existing.cloned().unwrap_or_else(|| json!({}));

    let conflicts = claim(&mut entries, &new_leaves, &base, manager, force);
    if !conflicts.is_empty() {
        return Err(conflicts);
    }

    let old_set: BTreeSet<Path> = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut obj = base.clone();
    for gone in old_set.difference(&new_set) {
        let still_owned = entries
            .iter()
            .filter(|e| !(e.manager == manager && e.operation == "Apply"))
            .any(|e| e.fields.iter().any(|q| overlaps(gone, q)))
            || new_set.iter().any(|q| overlaps(gone, q));
        if !still_owned {
            remove_path(&mut obj, gone);
        }
    }
    for (p, v) in &new_leaves {
        set_path(&mut obj, p, v.clone());
    }
    let values_changed = obj != base;
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Apply")
    {
        Some(e) => {
            if e.fields != new_set || values_changed || e.api_version != api_version {
                e.fields = new_set;
                e.time = now.to_string();
                e.api_version = api_version;
            }
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version,
            time: now.to_string(),
            subresource: None,
            fields: new_set,
        }),
    }
    write_entries(&mut obj, &entries);
    Ok(obj)
}

/// Records an imperative change (create, update, merge patch) by `manager`: it
/// takes ownership of every leaf whose value it changed, without conflicts.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    let mut entries = read_entries(old);
    let before = old.cloned().unwrap_or_else(|| json!({}));
    let changed: BTreeSet<Path> = leaves(new)
        .into_iter()
        .filter(|(p, v)| get_path(&before, p) != Some(v))
        .map(|(p, _)| p)
        .collect();
    if changed.is_empty() {
        write_entries(new, &entries);
        return;
    }
    for e in entries.iter_mut() {
        e.fields.retain(|q| !changed.iter().any(|p| overlaps(p, q)));
    }
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update")
    {
        Some(e) => {
            e.fields.extend(changed);
            e.time = now.to_string();
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource: None,
            fields: changed,
        }),
    }
    // Leaves that no longer exist are owned by nobody.
    let present: BTreeSet<Path> = leaves(new).into_iter().map(|(p, _)| p).collect();
    for e in entries.iter_mut() {
        e.fields.retain(|q| present.iter().any(|p| overlaps(p, q)));
    }
    write_entries(new, &entries);
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(pm) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Some(tm) = target.as_object_mut() {
                for (k, v) in pm {
                    if v.is_null() {
                        tm.remove(k);
                    } else {
                        merge_patch(tm.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(replicas: i64, label: Option<&str>) -> Value {
        let mut d = json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"x","namespace":"default"},
            "spec":{"replicas":replicas,"template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}});
        if let Some(l) = label {
            d["metadata"]["labels"] = json!({"team": l});
        }
        d
    }

    #[test]
    fn identical_apply_is_a_no_op() {
        let a = apply(None, &dep(1, None), "m", false, "t1").expect("create");
        let b = apply(Some(&a), &dep(1, None), "m", false, "t2").expect("re-apply");
        assert_eq!(a, b);
    }

    #[test]
    fn other_manager_conflicts_unless_forced_and_same_value_is_shared() {
        let a = apply(None, &dep(1, None), "m1", false, "t").expect("create");
        let err = apply(Some(&a), &dep(2, None), "m2", false, "t").expect_err("conflict");
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].field, ".spec.replicas");
        assert_eq!(err[0].manager, "m1");
        // Same value: shared ownership, no conflict.
        let shared = apply(Some(&a), &dep(1, None), "m2", false, "t").expect("shared");
        assert_eq!(read_entries(Some(&shared)).len(), 2);
        let forced = apply(Some(&a), &dep(2, None), "m2", true, "t").expect("forced");
        assert_eq!(forced["spec"]["replicas"], json!(2));
        let m1 = read_entries(Some(&forced))
            .into_iter()
            .find(|e| e.manager == "m1")
            .expect("m1");
        assert!(
            !m1.fields
                .contains(&vec!["spec".to_string(), "replicas".to_string()])
        );
    }

    #[test]
    fn dropped_fields_are_removed_unless_owned_elsewhere() {
        let a = apply(None, &dep(1, Some("a")), "m1", false, "t").expect("create");
        let b = apply(Some(&a), &dep(1, None), "m1", false, "t").expect("drop label");
        assert!(b["metadata"].get("labels").is_none(), "{b}");
        let c = apply(
            Some(&a),
            &json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"x","labels":{"team":"a"}}}),
            "m2",
            false,
            "t",
        )
        .expect("m2 co-owns");
        let d = apply(Some(&c), &dep(1, None), "m1", false, "t").expect("m1 drops");
        assert_eq!(d["metadata"]["labels"]["team"], json!("a"));
    }

    #[test]
    fn fields_v1_round_trips() {
        let set: BTreeSet<Path> = [
            vec!["spec".into(), "replicas".into()],
            vec!["metadata".into(), "labels".into(), "a".into()],
        ]
        .into_iter()
        .collect();
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }
}

/// Merge keys of the lists kubectl's strategic merge patches address in the kinds
/// served here (from the Kubernetes API types' `patchMergeKey` tags).
fn merge_key(field: &str, sample: &Value) -> Option<&'static str> {
    let has = |k: &str| sample.get(k).is_some();
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some("name"),
        "ports" if has("containerPort") => Some("containerPort"),
        "ports" if has("port") => Some("port"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "conditions" => Some("type"),
        _ => None,
    }
}

/// A strategic merge patch as kubectl's client-side apply, edit and patch send it:
/// maps merge, lists with a merge key merge element-wise (`$patch: delete`
/// removes an element), other lists replace, `$setElementOrder` and
/// `$retainKeys` directives are honoured only as far as ignoring them, and
/// `$deleteFromPrimitiveList` removes values.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pm) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = patch.clone();
        if let Some(m) = p.as_object_mut() {
            m.remove("$patch");
        }
        *target = p;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(tm) = target.as_object_mut() else {
        return;
    };
    for (k, v) in pm {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(del)) = (
                tm.get_mut(field).and_then(Value::as_array_mut),
                v.as_array(),
            ) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            tm.remove(k);
            continue;
        }
        match (tm.get_mut(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) => {
                let key = items.first().or(cur.first()).and_then(|s| merge_key(k, s));
                match key {
                    Some(key) => {
                        for item in items {
                            let id = &item[key];
                            let pos = cur.iter().position(|c| &c[key] == id);
                            let delete =
                                item.get("$patch").and_then(Value::as_str) == Some("delete");
                            match (pos, delete) {
                                (Some(i), true) => {
                                    cur.remove(i);
                                }
                                (None, true) => {}
                                (Some(i), false) => strategic_merge(&mut cur[i], item),
                                (None, false) => {
                                    let mut fresh = Value::Object(Map::new());
                                    strategic_merge(&mut fresh, item);
                                    cur.push(fresh);
                                }
                            }
                        }
                    }
                    None => *cur = items.clone(),
                }
            }
            (Some(cur @ Value::Object(_)), Value::Object(_)) => strategic_merge(cur, v),
            _ => {
                let mut fresh = Value::Null;
                strategic_merge(&mut fresh, v);
                tm.insert(k.clone(), fresh);
            }
        }
    }
}

#[cfg(test)]
mod smp_tests {
    use super::*;

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut d = json!({"spec": {"containers": [
            {"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "y:1"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "x:2"}, {"name": "b", "$patch": "delete"}]}});
        strategic_merge(&mut d, &patch);
        assert_eq!(
            d,
            json!({"spec": {"containers": [
            {"name": "a", "image": "x:2", "ports": [{"containerPort": 80}]}]}})
        );
    }
}
