//! The directory's layout: a kustomization listing every manifest (the
//! namespace first) and changing nothing, every object in and labelled
//! part of playson, every file saying why it exists, and a Deployment
//! selecting its own template.

use super::*;

#[test]
fn kustomization_lists_every_manifest_namespace_first() {
    let k = kustomization();
    assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1");
    assert_eq!(k["kind"], "Kustomization");
    let listed: Vec<&str> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("resource is a path"))
        .collect();
    for r in &listed {
        assert!(dir().join(r).is_file(), "kustomization lists missing {r}");
    }
    let listed_set: BTreeSet<&str> = listed.iter().copied().collect();
    assert_eq!(listed_set.len(), listed.len(), "a resource listed twice");
    let on_disk: BTreeSet<String> = yaml_files()
        .into_iter()
        .filter(|f| f != "kustomization.yaml")
        .collect();
    let on_disk: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
    assert_eq!(
        listed_set, on_disk,
        "kustomization resources vs YAML files on disk"
    );

    let first = documents(listed[0]);
    assert!(
        first.iter().all(|d| d["kind"] == "Namespace"),
        "{} should hold the Namespace and be applied first",
        listed[0]
    );
}

#[test]
fn kustomize_changes_nothing_it_renders() {
    let k = kustomization();
    for key in [
        "namePrefix",
        "nameSuffix",
        "configMapGenerator",
        "secretGenerator",
        "patches",
        "patchesStrategicMerge",
        "patchesJson6902",
        "images",
        "replicas",
        "commonLabels",
        "labels",
        "commonAnnotations",
        "components",
        "generators",
        "transformers",
    ] {
        assert!(
            k[key].is_null(),
            "kustomization sets {key}: apply -k would differ"
        );
    }
    assert!(k["namespace"].is_null() || k["namespace"] == NAMESPACE);
}

#[test]
fn every_namespaced_object_is_in_playson() {
    let objs = objects();
    let namespaces = all_of(&objs, "Namespace");
    assert_eq!(namespaces.len(), 1, "one Namespace");
    assert_eq!(namespaces[0]["metadata"]["name"], NAMESPACE);
    for o in objs.iter().filter(|o| o.kind() != "Namespace") {
        assert_eq!(o.v["metadata"]["namespace"], NAMESPACE, "{}", o.id());
    }
}

#[test]
fn every_object_is_labelled_part_of_playson() {
    for o in objects() {
        assert_eq!(
            o.v["metadata"]["labels"]["app.kubernetes.io/part-of"],
            NAMESPACE,
            "{}",
            o.id()
        );
        assert!(!o.name().is_empty(), "{} has no name", o.id());
    }
}

#[test]
fn every_file_starts_by_saying_why_it_exists() {
    for f in yaml_files() {
        assert!(
            read(&f).starts_with('#'),
            "{f} should open with a # comment"
        );
    }
}

#[test]
fn deployment_selector_matches_its_template() {
    let objs = objects();
    let d = deployment(&objs);
    assert_eq!(d["metadata"]["labels"]["app"], "httpbin");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "httpbin");
    assert!(selects(
        &d["spec"]["selector"],
        &d["spec"]["template"]["metadata"]["labels"]
    ));
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(
        ru["maxUnavailable"], 0,
        "rollouts never drop below the replica count"
    );
}
