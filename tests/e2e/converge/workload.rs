//! The workload: the playson playbook server-side applied, its drift
//! repaired and objects that left pruned, and the image preflight.

use super::*;

/// The lab's inventory plus a `[workload]` with the given playbook directory.
fn inventory_with_playbook(lab: &Lab, playbook: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let path = lab.dir().join(name);
    // The lab cannot reach Docker Hub: image lookups are tested against a
    // registry of the test's own (see `image_preflight_*`).
    let text = format!(
        "{text}\n[workload]\nplaybooks = [\"{}\"]\nimage_arch_check = \"off\"\n",
        playbook.display()
    );
    std::fs::write(&path, text).expect("write inventory");
    path
}

/// One field of the playson Deployment, by JSONPath, from kubectl.
fn httpbin_field(lab: &Lab, path: &str) -> String {
    kubectl(
        lab,
        &[
            "get",
            "deploy",
            "httpbin",
            "-n",
            "playson",
            "-o",
            &format!("jsonpath={path}"),
        ],
    )
}

fn workload_changes(v: &Value) -> Vec<String> {
    v["workload"][0]["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}: {} → {}",
                c["what"].as_str().unwrap_or_default(),
                c["before"].as_str().unwrap_or_default(),
                c["after"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn resource_versions(lab: &Lab) -> String {
    kubectl(
        lab,
        &[
            "get",
            "deploy,svc,netpol,hpa,pdb,limitrange,resourcequota",
            "-n",
            "playson",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion} {end}",
        ],
    )
}

pub fn workload_is_server_side_applied_and_a_rerun_changes_nothing(lab: &Lab) {
    ensure_converged(lab);
    let inv = inventory_with_playbook(lab, &playson(), "inventory-workload.toml");
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    let changes = workload_changes(&v);
    assert!(
        changes.contains(&"Namespace playson: absent → created".to_string()),
        "{changes:#?}"
    );
    assert!(
        changes.contains(&"Deployment playson/httpbin: absent → created".to_string()),
        "{changes:#?}"
    );
    assert!(
        changes[0].starts_with("Namespace "),
        "the namespace goes first: {changes:#?}"
    );

    // kubectl is the judge: Available, pinned multi-arch image, applied by pictl.
    kubectl(
        lab,
        &[
            "wait",
            "-n",
            "playson",
            "--for=condition=Available",
            "deploy/httpbin",
            "--timeout=60s",
        ],
    );
    let image = httpbin_field(lab, "{.spec.template.spec.containers[0].image}");
    assert!(
        image.starts_with("mccutchen/go-httpbin:v2.8.0@sha256:9380c104"),
        "{image}"
    );
    let managers = kubectl(
        lab,
        &[
            "get",
            "deploy",
            "httpbin",
            "-n",
            "playson",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}",
        ],
    );
    assert_eq!(managers, "pictl/Apply");
    let psa = kubectl(
        lab,
        &[
            "get",
            "ns",
            "playson",
            "-o",
            "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}",
        ],
    );
    assert_eq!(psa, "restricted");

    let before = resource_versions(lab);
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{}", text(&out));
    assert!(workload_changes(&v).is_empty(), "{v:#}");
    assert_eq!(v["workload"][0]["status"], "ok");
    assert_eq!(before, resource_versions(lab), "a re-run changed an object");
    let plan = pictl(lab, &inv, &["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

pub fn workload_drift_is_repaired_and_objects_that_left_are_pruned(lab: &Lab) {
    ensure_converged(lab);
    let inv = inventory_with_playbook(lab, &playson(), "inventory-workload.toml");
    let (code, _, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{}", text(&out));

    let set_replicas = |n: u32| {
        let patch = format!(r#"{{"spec":{{"replicas":{n}}}}}"#);
        kubectl(
            lab,
            &[
                "patch",
                "deploy/httpbin",
                "-n",
                "playson",
                "--type=merge",
                "-p",
                &patch,
            ],
        )
    };
    // The HPA scaled up (within 3..6): that is the autoscaler's business, not drift.
    set_replicas(5);
    let plan = pictl(lab, &inv, &["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    // Someone scaled below the HPA's minimum: plan names it, apply takes the field back.
    set_replicas(1);
    let plan = pictl(lab, &inv, &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(
        stdout.contains("playbook playson workload: Deployment playson/httpbin: differs → applied"),
        "{stdout}"
    );
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(
        workload_changes(&v),
        ["Deployment playson/httpbin: differs → applied"]
    );
    let replicas = httpbin_field(lab, "{.spec.replicas}");
    assert_eq!(replicas, "3");
    // A hand-edited image is drift, whatever the HPA does.
    let bad_image = r#"{"spec":{"template":{"spec":{"containers":[{"name":"httpbin","image":"kennethreitz/httpbin:latest"}]}}}}"#;
    kubectl(
        lab,
        &[
            "patch",
            "deploy/httpbin",
            "-n",
            "playson",
            "--type=strategic",
            "-p",
            bad_image,
        ],
    );
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(
        workload_changes(&v),
        ["Deployment playson/httpbin: differs → applied"]
    );
    let image = httpbin_field(lab, "{.spec.template.spec.containers[0].image}");
    assert!(image.contains("go-httpbin"), "{image}");

    // An object pictl never applied is left alone; one that left the playbook is pruned.
    let cm = lab.dir().join("hand-made.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hand-made\n  namespace: playson\ndata:\n  a: b\n")
        .expect("write");
    kubectl(lab, &["apply", "-f", &cm.display().to_string()]);
    // The same directory name: the same playbook, hence the same ApplySet.
    let dir = lab.dir().join("without-pdb").join("playson");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in std::fs::read_dir(playson()).expect("playbook") {
        let f = f.expect("entry").path();
        if f.file_name().is_some_and(|n| n != "pdb.yaml") {
            std::fs::copy(&f, dir.join(f.file_name().expect("name"))).expect("copy");
        }
    }
    let k = dir.join("kustomization.yaml");
    let kust = std::fs::read_to_string(&k).expect("kustomization");
    std::fs::write(
        &k,
        kust.lines()
            .filter(|l| !l.contains("pdb.yaml"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("write");
    let inv2 = inventory_with_playbook(lab, &dir, "inventory-workload-2.toml");
    let plan = pictl(lab, &inv2, &["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout)
            .contains("PodDisruptionBudget playson/httpbin: left the playbook → pruned"),
        "{}",
        text(&plan)
    );
    let (code, v, out) = apply_json(lab, &inv2);
    assert_eq!(code, 0, "{}", text(&out));
    assert_eq!(
        workload_changes(&v),
        ["PodDisruptionBudget playson/httpbin: left the playbook → pruned"]
    );
    let pdbs = kubectl(lab, &["get", "pdb", "-n", "playson", "-o", "name"]);
    assert!(pdbs.trim().is_empty(), "{pdbs}");
    let cm = kubectl(
        lab,
        &[
            "get",
            "configmap",
            "hand-made",
            "-n",
            "playson",
            "-o",
            "name",
        ],
    );
    assert_eq!(
        cm.trim(),
        "configmap/hand-made",
        "an object outside the ApplySet was pruned"
    );
    // Back to the full playbook: the PDB is created again.
    let (code, v, _) = apply_json(lab, &inv);
    assert_eq!(code, 0);
    assert_eq!(
        workload_changes(&v),
        ["PodDisruptionBudget playson/httpbin: absent → created"]
    );
}

pub fn image_preflight_refuses_a_playbook_whose_image_lacks_the_nodes_arch(lab: &Lab) {
    ensure_converged(lab);
    // The playson incident, mirrored for the lab's amd64 nodes: an arm64-only image.
    let reg = pictl_e2e::registry::Registry::start().expect("registry");
    let image = reg.push_single("vendor/arm64-only", "1.0", "linux", "arm64");
    let inv = pictl::one_image_inventory(lab, "arm-only", &image);

    let plan = pictl(lab, &inv, &["plan"]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    let (code, v, out) = apply_json(lab, &inv);
    assert_eq!(code, 1, "{}", text(&out));
    let msg = v["workload"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("offers only linux/arm64"), "{msg}");
    assert!(
        msg.contains("cannot run on node1, node2, node3 (amd64)"),
        "{msg}"
    );
    assert!(reg.token_requests() >= 1);
    // Nothing of the playbook was applied.
    let ns = Command::new(pictl::KUBECTL)
        .arg("--kubeconfig")
        .arg(pictl::lab_kubeconfig(lab))
        .args(["get", "namespace", "arm-only"])
        .output()
        .expect("kubectl");
    assert!(
        !ns.status.success(),
        "the namespace was created despite the preflight"
    );
}
