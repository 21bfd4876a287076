//! Bodies encoded as client-go encodes them (every non-pointer field written,
//! zero or not) come out as the JSON the simulator stores; fields it cannot
//! convert get the body refused.

use super::*;
use k8s_pb::api::core::v1::{ConfigMap, Container, PodSpec, PodTemplateSpec, Volume};
use k8s_pb::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let u = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(u.encode_to_vec());
    out
}

/// ObjectMeta as Go writes it: empty strings and a zero time included.
fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(Time {
            seconds: Some(0),
            nanos: Some(0),
        }),
        ..Default::default()
    }
}

#[test]
fn a_configmap_comes_out_as_its_json_without_the_zero_fields() {
    let cm = ConfigMap {
        metadata: Some(meta("x")),
        data: [("a".to_string(), "1".to_string())].into(),
        ..Default::default()
    };
    let body = to_json(&envelope("v1", "ConfigMap", cm.encode_to_vec())).expect("converts");
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}})
    );
}

#[test]
fn a_deployment_with_a_field_the_simulator_cannot_convert_is_refused() {
    let spec = PodSpec {
        containers: vec![Container {
            name: Some("c".into()),
            image: Some("nginx".into()),
            tty: Some(false),
            ..Default::default()
        }],
        volumes: vec![Volume {
            name: Some("v".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let d = k8s_pb::api::apps::v1::Deployment {
        metadata: Some(meta("web")),
        spec: Some(k8s_pb::api::apps::v1::DeploymentSpec {
            template: Some(PodTemplateSpec {
                metadata: Some(meta("")),
                spec: Some(spec),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = to_json(&envelope("apps/v1", "Deployment", d.encode_to_vec())).expect_err("volumes");
    assert!(err.contains("PodSpec"), "{err}");
}

#[test]
fn unknown_kinds_and_bodies_without_the_magic_are_refused() {
    assert!(to_json(&envelope("batch/v1", "Job", Vec::new())).is_err());
    assert!(to_json(b"{}").is_err());
    assert!(all_zero(&[0x08, 0x00, 0x12, 0x00]));
    assert!(!all_zero(&[0x08, 0x01]));
}
