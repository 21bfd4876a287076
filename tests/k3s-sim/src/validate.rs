//! What the apiserver does to an object between decoding and storage: system
//! metadata (uid, creationTimestamp, generation), the defaults pictl's objects
//! meet (Deployment, Service, Secret, Namespace), validation with 422-style
//! causes, and schema checks for unknown fields (SSA rejects them like the real
//! apiserver's "field not declared in schema").

use crate::api::Invalid;
use crate::store::{ResourceType, State, meta_str};
use serde_json::{Value, json};

pub fn uuid() -> String {
    let h = crate::certs::random_hex(16);
    let mut b: Vec<char> = h.chars().collect();
    b[12] = '4';
    format!(
        "{}-{}-{}-{}-{}",
        b[0..8].iter().collect::<String>(),
        b[8..12].iter().collect::<String>(),
        b[12..16].iter().collect::<String>(),
        b[16..20].iter().collect::<String>(),
        b[20..32].iter().collect::<String>()
    )
}

fn spec_part(o: &Value) -> Value {
    let mut c = o.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    c
}

pub fn finish_metadata(rt: &ResourceType, existing: Option<&Value>, obj: &mut Value) {
    let meta = &mut obj["metadata"];
    if let Some(m) = meta.as_object_mut() {
        for k in [
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generateName",
        ] {
            m.remove(k);
        }
    }
    match existing {
        Some(old) => {
            for k in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
                if let Some(v) = old["metadata"].get(k) {
                    obj["metadata"][k] = v.clone();
                } else if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
            if rt.has_generation && spec_part(old) != spec_part(obj) {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                obj["metadata"]["generation"] = json!(g + 1);
            }
            // The main resource ignores status; only the status subresource sets it.
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        None => {
            obj["metadata"]["uid"] = json!(uuid());
            obj["metadata"]["creationTimestamp"] = json!(crate::log::k8s_now());
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
                m.remove("generation");
            }
            if rt.has_generation {
                obj["metadata"]["generation"] = json!(1);
            }
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
    }
}

pub fn defaults(rt: &ResourceType, st: &State, existing: Option<&Value>, obj: &mut Value) {
    let name = meta_str(obj, "name").to_string();
    match rt.kind {
        "Namespace" => {
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
            obj["status"] = json!({"phase": "Active"});
        }
        "Deployment" => {
            let spec = &mut obj["spec"];
            if spec.get("replicas").is_none_or(Value::is_null) {
                spec["replicas"] = json!(1);
            }
            if spec.get("revisionHistoryLimit").is_none() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if spec.get("progressDeadlineSeconds").is_none() {
                spec["progressDeadlineSeconds"] = json!(600);
            }
            if spec.get("strategy").is_none() {
                spec["strategy"] = json!({"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}});
            }
        }
        "Service" => {
            let spec = &mut obj["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec["clusterIP"].as_str().unwrap_or("").is_empty() {
                let ip = existing
                    .and_then(|e| e["spec"]["clusterIP"].as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| allocate_cluster_ip(st));
                spec["clusterIP"] = json!(ip);
            }
            spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
            if spec.get("sessionAffinity").is_none() {
                spec["sessionAffinity"] = json!("None");
            }
            if spec.get("ipFamilies").is_none() {
                spec["ipFamilies"] = json!(["IPv4"]);
                spec["ipFamilyPolicy"] = json!("SingleStack");
            }
            if spec.get("internalTrafficPolicy").is_none() {
                spec["internalTrafficPolicy"] = json!("Cluster");
            }
            if let Some(ports) = spec["ports"].as_array_mut() {
                for p in ports {
                    if p.get("protocol").is_none() {
                        p["protocol"] = json!("TCP");
                    }
                    if p.get("targetPort").is_none() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
            if obj.get("status").is_none() {
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
        "Secret" => {
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
            if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
                && let Some(sd) = sd.as_object()
            {
                use base64::Engine;
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or("");
                    obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                }
            }
        }
        _ => {}
    }
}

fn allocate_cluster_ip(st: &State) -> String {
    let used: Vec<String> = st
        .list(&crate::store::RESOURCES[2], None)
        .iter()
        .filter_map(|s| s["spec"]["clusterIP"].as_str().map(str::to_string))
        .collect();
    for n in 10u32..65000 {
        let ip = format!("10.43.{}.{}", n / 256, n % 256);
        if n % 256 != 0 && n % 256 != 255 && !used.contains(&ip) {
            return ip;
        }
    }
    "10.43.255.254".into()
}

/// Things controllers create for a new namespace.
pub fn namespace_created(st: &mut State, ns: &str) {
    let rt = &crate::store::RESOURCES[5];
    if st.get(rt, ns, "default").is_none() {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
            "name": "default", "namespace": ns, "uid": uuid(), "creationTimestamp": crate::log::k8s_now()}});
        if let Err(e) = st.put(rt, sa) {
            crate::error!("creating default service account in {ns}: {e}");
        }
    }
}

fn is_dns_label(s: &str) -> bool {
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

pub fn err(v: &mut Vec<Invalid>, field: &str, reason: &'static str, message: String) {
    v.push(Invalid {
        field: field.into(),
        reason,
        message,
    });
}

pub fn validate(rt: &ResourceType, existing: Option<&Value>, obj: &Value) -> Vec<Invalid> {
    let mut e = Vec::new();
    let name = meta_str(obj, "name");
    let label_names = matches!(rt.kind, "Namespace" | "Service");
    if rt.group == "rbac.authorization.k8s.io" {
        // RBAC names are path segments (pkg/apis/rbac/validation: ValidateRBACName), so
        // `system:node-proxier` and `pictl-agent:node1` are valid.
        crate::rbac::validate_name(name, &mut e);
        crate::rbac::validate_object(rt, existing, obj, &mut e);
    } else if (label_names && !is_dns_label(name)) || (!label_names && !is_dns_subdomain(name)) {
        let what = if label_names {
            "RFC 1123 label"
        } else {
            "RFC 1123 subdomain"
        };
        err(
            &mut e,
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
                    &mut e,
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
                    &mut e,
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
                    &mut e,
                    &format!("metadata.annotations.{k}"),
                    "FieldValueTypeInvalid",
                    "Invalid value: annotation values must be strings".into(),
                );
            }
        }
    }
    match rt.kind {
        "Deployment" => validate_deployment(existing, obj, &mut e),
        "Service" => {
            let spec = &obj["spec"];
            let headless = spec["clusterIP"] == json!("None");
            let external = spec["type"] == json!("ExternalName");
            let ports = spec["ports"].as_array().map(Vec::len).unwrap_or(0);
            if ports == 0 && !headless && !external {
                err(
                    &mut e,
                    "spec.ports",
                    "FieldValueRequired",
                    "Required value".into(),
                );
            }
            for (i, p) in spec["ports"].as_array().into_iter().flatten().enumerate() {
                let port = p["port"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    err(
                        &mut e,
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
        "ConfigMap" => {
            if let Some(d) = obj["data"].as_object() {
                for (k, v) in d {
                    if !v.is_string() {
                        err(
                            &mut e,
                            &format!("data[{k}]"),
                            "FieldValueTypeInvalid",
                            "Invalid value: configmap data values must be strings".into(),
                        );
                    }
                }
            }
        }
        "Secret" => {
            use base64::Engine;
            crate::tokens::validate_secret(obj, &mut e);
            if let Some(d) = obj["data"].as_object() {
                for (k, v) in d {
                    let ok = v.as_str().is_some_and(|s| {
                        base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                    });
                    if !ok {
                        err(
                            &mut e,
                            &format!("data[{k}]"),
                            "FieldValueInvalid",
                            "Invalid value: secret data must be base64-encoded".into(),
                        );
                    }
                }
            }
        }
        "PodDisruptionBudget"
            if obj["spec"].get("minAvailable").is_some()
                && obj["spec"].get("maxUnavailable").is_some() =>
        {
            err(
                &mut e,
                "spec",
                "FieldValueInvalid",
                "Invalid value: minAvailable and maxUnavailable cannot be both set".into(),
            );
        }
        "HorizontalPodAutoscaler" => {
            let spec = &obj["spec"];
            if spec["scaleTargetRef"]["name"]
                .as_str()
                .unwrap_or("")
                .is_empty()
            {
                err(
                    &mut e,
                    "spec.scaleTargetRef.name",
                    "FieldValueRequired",
                    "Required value".into(),
                );
            }
            let max = spec["maxReplicas"].as_i64().unwrap_or(0);
            if max < 1 {
                err(
                    &mut e,
                    "spec.maxReplicas",
                    "FieldValueInvalid",
                    format!("Invalid value: {max}: must be greater than or equal to 1"),
                );
            }
            if let Some(min) = spec["minReplicas"].as_i64()
                && min > max
            {
                err(
                    &mut e,
                    "spec.maxReplicas",
                    "FieldValueInvalid",
                    format!("Invalid value: {max}: must be greater than or equal to `minReplicas`"),
                );
            }
        }
        _ => {}
    }
    e
}

fn validate_deployment(existing: Option<&Value>, obj: &Value, e: &mut Vec<Invalid>) {
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
    let containers = spec["template"]["spec"]["containers"].as_array();
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

const META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];
const DEPLOYMENT_SPEC: &[&str] = &[
    "replicas",
    "selector",
    "template",
    "strategy",
    "minReadySeconds",
    "revisionHistoryLimit",
    "paused",
    "progressDeadlineSeconds",
];
const SERVICE_SPEC: &[&str] = &[
    "ports",
    "selector",
    "clusterIP",
    "clusterIPs",
    "type",
    "externalIPs",
    "sessionAffinity",
    "loadBalancerIP",
    "loadBalancerSourceRanges",
    "externalName",
    "externalTrafficPolicy",
    "healthCheckNodePort",
    "publishNotReadyAddresses",
    "sessionAffinityConfig",
    "ipFamilies",
    "ipFamilyPolicy",
    "allocateLoadBalancerNodePorts",
    "loadBalancerClass",
    "internalTrafficPolicy",
    "trafficDistribution",
];
const POD_SPEC: &[&str] = &[
    "volumes",
    "initContainers",
    "containers",
    "ephemeralContainers",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "dnsPolicy",
    "nodeSelector",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "nodeName",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "securityContext",
    "imagePullSecrets",
    "hostname",
    "subdomain",
    "affinity",
    "schedulerName",
    "tolerations",
    "hostAliases",
    "priorityClassName",
    "priority",
    "dnsConfig",
    "readinessGates",
    "runtimeClassName",
    "enableServiceLinks",
    "preemptionPolicy",
    "overhead",
    "topologySpreadConstraints",
    "setHostnameAsFQDN",
    "os",
    "hostUsers",
    "schedulingGates",
    "resourceClaims",
    "resources",
];
const CONTAINER: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "volumeMounts",
    "volumeDevices",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
];

fn check_keys(v: &Value, allowed: &[&str], at: &str) -> Result<(), String> {
    if let Some(m) = v.as_object() {
        for k in m.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(format!("{at}.{k}: field not declared in schema"));
            }
        }
    }
    Ok(())
}

/// Schema checks for the parts of objects whose shape the simulator knows.
pub fn unknown_fields(rt: &ResourceType, obj: &Value) -> Result<(), String> {
    let top: &[&str] = match rt.kind {
        "ConfigMap" => &[
            "apiVersion",
            "kind",
            "metadata",
            "data",
            "binaryData",
            "immutable",
        ],
        "Secret" => &[
            "apiVersion",
            "kind",
            "metadata",
            "data",
            "stringData",
            "type",
            "immutable",
        ],
        "ServiceAccount" => &[
            "apiVersion",
            "kind",
            "metadata",
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        "LimitRange" | "NetworkPolicy" | "Lease" => &["apiVersion", "kind", "metadata", "spec"],
        "ClusterRole" | "Role" => &["apiVersion", "kind", "metadata", "rules", "aggregationRule"],
        "ClusterRoleBinding" | "RoleBinding" => {
            &["apiVersion", "kind", "metadata", "subjects", "roleRef"]
        }
        _ => &["apiVersion", "kind", "metadata", "spec", "status"],
    };
    check_keys(obj, top, "")?;
    check_keys(&obj["metadata"], META, ".metadata")?;
    match rt.kind {
        "Deployment" => {
            check_keys(&obj["spec"], DEPLOYMENT_SPEC, ".spec")?;
            check_keys(
                &obj["spec"]["template"],
                &["metadata", "spec"],
                ".spec.template",
            )?;
            check_keys(
                &obj["spec"]["template"]["metadata"],
                META,
                ".spec.template.metadata",
            )?;
            let ps = &obj["spec"]["template"]["spec"];
            check_keys(ps, POD_SPEC, ".spec.template.spec")?;
            for list in ["containers", "initContainers"] {
                for c in ps[list].as_array().into_iter().flatten() {
                    let name = c["name"].as_str().unwrap_or("");
                    check_keys(
                        c,
                        CONTAINER,
                        &format!(".spec.template.spec.{list}[name=\"{name}\"]"),
                    )?;
                }
            }
        }
        "Service" => check_keys(&obj["spec"], SERVICE_SPEC, ".spec")?,
        _ => {}
    }
    Ok(())
}
