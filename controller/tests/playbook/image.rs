//! The image (multi-arch go-httpbin pinned by digest) and port 8080 in the
//! container, both probes and the Service.

use super::*;

#[test]
fn image_is_multi_arch_go_httpbin_pinned_by_digest() {
    let objs = objects();
    for c in all_containers(&objs) {
        let image = c["image"].as_str().expect("image is a string");
        assert!(
            !image.contains("kennethreitz"),
            "kennethreitz/httpbin is amd64-only and crash-loops on the Pis: {image}"
        );
        let (name, digest) = image
            .split_once('@')
            .unwrap_or_else(|| panic!("image not pinned by digest: {image}"));
        let repo = name.split_once(':').map_or(name, |(r, _)| r);
        let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
        assert_eq!(repo, IMAGE_REPO, "image {image}");
        assert_eq!(digest, IMAGE_DIGEST, "image {image}");
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        assert!(
            hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "digest {digest}"
        );
    }
}

/// A probe or Service port that names a port resolves through the container.
fn resolve_port(c: &Value, port: &Value) -> i64 {
    match port {
        Value::Number(_) => int(port, "port"),
        Value::String(name) => c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name.as_str())
            .map(|p| int(&p["containerPort"], "containerPort"))
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("port {other}"),
    }
}

#[test]
fn container_port_and_both_probes_use_8080() {
    let objs = objects();
    let c = container(&objs);
    let ports = c["ports"].as_array().expect("container ports");
    assert_eq!(ports.len(), 1, "one container port");
    assert_eq!(int(&ports[0]["containerPort"], "containerPort"), PORT);
    assert_eq!(ports[0]["name"], "http");

    for (probe, delay, period) in [("livenessProbe", 10, 10), ("readinessProbe", 5, 10)] {
        let p = &c[probe];
        assert_eq!(p["httpGet"]["path"], "/status/200", "{probe} path");
        assert_eq!(resolve_port(c, &p["httpGet"]["port"]), PORT, "{probe} port");
        assert_eq!(
            int(&p["initialDelaySeconds"], probe),
            delay,
            "{probe} delay"
        );
        assert_eq!(int(&p["periodSeconds"], probe), period, "{probe} period");
    }
}

#[test]
fn service_sends_8080_to_the_httpbin_pods() {
    let objs = objects();
    let svc = the(&objs, "Service", "httpbin");
    let spec = &svc["spec"];
    assert!(
        spec["type"].is_null() || spec["type"] == "ClusterIP",
        "httpbin stays cluster-internal: {}",
        spec["type"]
    );
    let template_labels = &deployment(&objs)["spec"]["template"]["metadata"]["labels"];
    let sel = spec["selector"].as_object().expect("service selector");
    assert!(!sel.is_empty());
    for (k, v) in sel {
        assert_eq!(template_labels.get(k), Some(v), "service selector {k}");
    }
    let ports = spec["ports"].as_array().expect("service ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(int(&ports[0]["port"], "port"), PORT);
    let target = &ports[0]["targetPort"];
    let target = if target.is_null() {
        &ports[0]["port"]
    } else {
        target
    };
    assert_eq!(resolve_port(container(&objs), target), PORT);
}
