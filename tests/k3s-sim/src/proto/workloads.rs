//! The workload kinds kubectl's typed clients send: Deployments (`kubectl
//! create deployment`) and Pods (`kubectl run`), the pod spec's common fields only;
//! PodDisruptionBudgets (`kubectl create pdb`) and Evictions (a typed
//! client's; `kubectl drain` 1.32 sends them as JSON). Layouts in kubernetes staging/src/k8s.io/api/{apps,core,policy}/v1/
//! generated.proto and apimachinery/pkg/apis/meta/v1/generated.proto.

use super::meta::{
    Obj, int_or_string, label_selector, list, num, object_meta, ptr, quantities, string_map,
    strings, sub, text,
};
use super::{Conv, rest};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use serde_json::Value;

pub(super) fn deployment(mut o: apps::Deployment) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    sub(&mut m, "spec", o.spec.take(), |mut s| {
        let mut x = Obj::new();
        ptr(&mut x, "replicas", s.replicas.take());
        sub(&mut x, "selector", s.selector.take(), label_selector)?;
        sub(&mut x, "template", s.template.take(), pod_template)?;
        sub(&mut x, "strategy", s.strategy.take(), |mut st| {
            let mut y = Obj::new();
            text(&mut y, "type", st.r#type.take());
            sub(
                &mut y,
                "rollingUpdate",
                st.rolling_update.take(),
                |mut r| {
                    let mut z = Obj::new();
                    sub(
                        &mut z,
                        "maxUnavailable",
                        r.max_unavailable.take(),
                        int_or_string,
                    )?;
                    sub(&mut z, "maxSurge", r.max_surge.take(), int_or_string)?;
                    rest(&r, "RollingUpdateDeployment")?;
                    Ok(Value::Object(z))
                },
            )?;
            rest(&st, "DeploymentStrategy")?;
            Ok(Value::Object(y))
        })?;
        num(&mut x, "minReadySeconds", s.min_ready_seconds.take());
        ptr(
            &mut x,
            "revisionHistoryLimit",
            s.revision_history_limit.take(),
        );
        ptr(
            &mut x,
            "progressDeadlineSeconds",
            s.progress_deadline_seconds.take(),
        );
        rest(&s, "DeploymentSpec")?;
        Ok(Value::Object(x))
    })?;
    rest(&o, "Deployment")?;
    Ok(Value::Object(m))
}

fn pod_template(mut t: core::PodTemplateSpec) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", t.metadata.take(), object_meta)?;
    sub(&mut m, "spec", t.spec.take(), pod_spec)?;
    rest(&t, "PodTemplateSpec")?;
    Ok(Value::Object(m))
}

/// A Pod (`kubectl run`).
pub(super) fn pod(mut o: core::Pod) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    sub(&mut m, "spec", o.spec.take(), pod_spec)?;
    rest(&o, "Pod")?;
    Ok(Value::Object(m))
}

fn pod_spec(mut s: core::PodSpec) -> Conv {
    let mut x = Obj::new();
    list(
        &mut x,
        "containers",
        std::mem::take(&mut s.containers),
        container,
    )?;
    text(&mut x, "restartPolicy", s.restart_policy.take());
    ptr(
        &mut x,
        "terminationGracePeriodSeconds",
        s.termination_grace_period_seconds.take(),
    );
    text(&mut x, "dnsPolicy", s.dns_policy.take());
    string_map(&mut x, "nodeSelector", std::mem::take(&mut s.node_selector));
    text(&mut x, "serviceAccountName", s.service_account_name.take());
    text(&mut x, "schedulerName", s.scheduler_name.take());
    rest(&s, "PodSpec")?;
    Ok(Value::Object(x))
}

fn container(mut c: core::Container) -> Conv {
    let mut m = Obj::new();
    text(&mut m, "name", c.name.take());
    text(&mut m, "image", c.image.take());
    strings(&mut m, "command", std::mem::take(&mut c.command));
    strings(&mut m, "args", std::mem::take(&mut c.args));
    text(&mut m, "workingDir", c.working_dir.take());
    list(&mut m, "ports", std::mem::take(&mut c.ports), |mut p| {
        let mut x = Obj::new();
        text(&mut x, "name", p.name.take());
        num(&mut x, "hostPort", p.host_port.take());
        x.insert(
            "containerPort".into(),
            p.container_port.take().unwrap_or(0).into(),
        );
        text(&mut x, "protocol", p.protocol.take());
        text(&mut x, "hostIP", p.host_ip.take());
        rest(&p, "ContainerPort")?;
        Ok(Value::Object(x))
    })?;
    list(&mut m, "env", std::mem::take(&mut c.env), |mut e| {
        let mut x = Obj::new();
        text(&mut x, "name", e.name.take());
        text(&mut x, "value", e.value.take());
        rest(&e, "EnvVar")?;
        Ok(Value::Object(x))
    })?;
    sub(&mut m, "resources", c.resources.take(), |mut r| {
        let mut x = Obj::new();
        quantities(&mut x, "limits", std::mem::take(&mut r.limits));
        quantities(&mut x, "requests", std::mem::take(&mut r.requests));
        rest(&r, "ResourceRequirements")?;
        Ok(Value::Object(x))
    })?;
    text(
        &mut m,
        "terminationMessagePath",
        c.termination_message_path.take(),
    );
    text(
        &mut m,
        "terminationMessagePolicy",
        c.termination_message_policy.take(),
    );
    text(&mut m, "imagePullPolicy", c.image_pull_policy.take());
    rest(&c, "Container")?;
    Ok(Value::Object(m))
}

pub(super) fn pod_disruption_budget(mut o: policy::PodDisruptionBudget) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    sub(&mut m, "spec", o.spec.take(), |mut s| {
        let mut x = Obj::new();
        sub(
            &mut x,
            "minAvailable",
            s.min_available.take(),
            int_or_string,
        )?;
        sub(&mut x, "selector", s.selector.take(), label_selector)?;
        sub(
            &mut x,
            "maxUnavailable",
            s.max_unavailable.take(),
            int_or_string,
        )?;
        ptr(
            &mut x,
            "unhealthyPodEvictionPolicy",
            s.unhealthy_pod_eviction_policy.take(),
        );
        rest(&s, "PodDisruptionBudgetSpec")?;
        Ok(Value::Object(x))
    })?;
    rest(&o, "PodDisruptionBudget")?;
    Ok(Value::Object(m))
}

pub(super) fn eviction(mut o: policy::Eviction) -> Conv {
    let mut m = Obj::new();
    sub(&mut m, "metadata", o.metadata.take(), object_meta)?;
    sub(
        &mut m,
        "deleteOptions",
        o.delete_options.take(),
        delete_options,
    )?;
    rest(&o, "Eviction")?;
    Ok(Value::Object(m))
}

fn delete_options(mut d: DeleteOptions) -> Conv {
    let mut m = Obj::new();
    ptr(&mut m, "gracePeriodSeconds", d.grace_period_seconds.take());
    sub(&mut m, "preconditions", d.preconditions.take(), |mut p| {
        let mut x = Obj::new();
        ptr(&mut x, "uid", p.uid.take());
        ptr(&mut x, "resourceVersion", p.resource_version.take());
        rest(&p, "Preconditions")?;
        Ok(Value::Object(x))
    })?;
    ptr(&mut m, "orphanDependents", d.orphan_dependents.take());
    ptr(&mut m, "propagationPolicy", d.propagation_policy.take());
    strings(&mut m, "dryRun", std::mem::take(&mut d.dry_run));
    rest(&d, "DeleteOptions")?;
    Ok(Value::Object(m))
}
