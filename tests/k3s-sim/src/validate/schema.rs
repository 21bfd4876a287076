//! Unknown-field checks for the objects whose shape the simulator knows:
//! server-side apply rejects them like the real apiserver's "field not
//! declared in schema".

use crate::store::ResourceType;
use serde_json::Value;

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
