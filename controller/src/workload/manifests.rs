//! Reading a playbook directory: the objects to apply, in order.
//!
//! A directory with a `kustomization.yaml` is read in the order of its
//! `resources` (local files only: what `kubectl apply -k` would apply for
//! such a plain kustomization; like kustomize, a resource outside the
//! directory, through `..`, an absolute path or a symlink, is refused);
//! otherwise every `*.yaml`/`*.yml` in name
//! order. Multi-document files are split. Pure file reading: no cluster.

use std::path::{Path, PathBuf};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: document {doc} is not valid YAML")]
    Yaml {
        path: PathBuf,
        doc: usize,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: document {doc}: {why}")]
    Invalid {
        path: PathBuf,
        doc: usize,
        why: String,
    },
    #[error("{path}: {why} (pictl applies kustomizations that list local resource files)")]
    Unsupported { path: PathBuf, why: String },
    #[error(
        "{path}: resource `{resource}` is outside the playbook directory \
         (kustomize refuses it too; copy the file into {dir})"
    )]
    OutsideDirectory {
        path: PathBuf,
        resource: String,
        dir: PathBuf,
    },
    #[error("{path} holds no objects; an empty playbook would prune everything it applied before")]
    Empty { path: PathBuf },
}

/// One object from a playbook, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub source: PathBuf,
    pub object: Value,
}

impl Manifest {
    fn field<'a>(&'a self, path: &[&str]) -> &'a str {
        let mut v = &self.object;
        for p in path {
            v = &v[*p];
        }
        v.as_str().unwrap_or_default()
    }

    pub fn api_version(&self) -> &str {
        self.field(&["apiVersion"])
    }

    pub fn kind(&self) -> &str {
        self.field(&["kind"])
    }

    pub fn name(&self) -> &str {
        self.field(&["metadata", "name"])
    }

    pub fn namespace(&self) -> Option<&str> {
        Some(self.field(&["metadata", "namespace"])).filter(|n| !n.is_empty())
    }

    /// `(group, version)` of `apiVersion`.
    pub fn group_version(&self) -> (&str, &str) {
        match self.api_version().split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version()),
        }
    }

    /// `Kind.group` (or `Kind` for the core group), as ApplySets name kinds.
    pub fn group_kind(&self) -> String {
        match self.group_version().0 {
            "" => self.kind().to_string(),
            g => format!("{}.{g}", self.kind()),
        }
    }

    /// `Kind namespace/name`, for messages.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }
}

/// The objects of a playbook directory, in apply order (Namespaces first).
pub fn load(dir: &Path) -> Result<Vec<Manifest>, ManifestError> {
    let files = files_of(dir)?;
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| ManifestError::Read {
            path: file.clone(),
            source,
        })?;
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value =
                serde::Deserialize::deserialize(doc).map_err(|source| ManifestError::Yaml {
                    path: file.clone(),
                    doc: i + 1,
                    source,
                })?;
            let value: Value = match value {
                Value::Null => continue,
                v => v,
            };
            let m = Manifest {
                source: file.clone(),
                object: value,
            };
            let invalid = |why: &str| ManifestError::Invalid {
                path: file.clone(),
                doc: i + 1,
                why: why.to_string(),
            };
            if !m.object.is_object() {
                return Err(invalid("not a Kubernetes object (a mapping)"));
            }
            if m.api_version().is_empty() || m.kind().is_empty() {
                return Err(invalid("apiVersion and kind are required"));
            }
            if m.name().is_empty() {
                return Err(invalid("metadata.name is required"));
            }
            if !m.object["metadata"].is_object()
                || !is_mapping_or_absent(&m.object["metadata"]["labels"])
            {
                return Err(invalid("metadata and metadata.labels must be mappings"));
            }
            if !is_mapping_or_absent(&m.object["spec"]) {
                return Err(invalid("spec must be a mapping"));
            }
            if m.kind() == "HorizontalPodAutoscaler" {
                let spec = &m.object["spec"];
                if spec["minReplicas"].as_i64().unwrap_or(1)
                    > spec["maxReplicas"].as_i64().unwrap_or(i64::MAX)
                {
                    return Err(invalid("minReplicas is larger than maxReplicas"));
                }
            }
            out.push(m);
        }
    }
    if out.is_empty() {
        // Applying nothing would prune everything the playbook ever applied.
        return Err(ManifestError::Empty {
            path: dir.to_path_buf(),
        });
    }
    // Stable: Namespaces first, otherwise the playbook's own order.
    out.sort_by_key(|m| m.kind() != "Namespace");
    Ok(out)
}

fn is_mapping_or_absent(v: &Value) -> bool {
    v.is_null() || v.is_object()
}

fn files_of(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let kustomization = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file());
    if let Some(k) = kustomization {
        let text = std::fs::read_to_string(&k).map_err(|source| ManifestError::Read {
            path: k.clone(),
            source,
        })?;
        let v: Value = serde_yaml_ng::from_str(&text).map_err(|source| ManifestError::Yaml {
            path: k.clone(),
            doc: 1,
            source,
        })?;
        // An allow-list: any other kustomize feature would make `kubectl
        // apply -k` and pictl apply different objects.
        for key in v.as_object().into_iter().flat_map(|o| o.keys()) {
            if !matches!(
                key.as_str(),
                "apiVersion" | "kind" | "metadata" | "resources"
            ) {
                return Err(ManifestError::Unsupported {
                    path: k,
                    why: format!("`{key}` is not supported"),
                });
            }
        }
        // Symlinks are resolved before comparing, as kustomize's default
        // load restrictor does, so a link cannot lead outside either.
        let root = dir.canonicalize().map_err(read_err)?;
        let mut files = Vec::new();
        for r in v["resources"].as_array().into_iter().flatten() {
            let Some(r) = r.as_str() else { continue };
            let p = dir.join(r);
            if r.contains("://") || !p.is_file() {
                return Err(ManifestError::Unsupported {
                    path: k,
                    why: format!("resource `{r}` is not a local file"),
                });
            }
            let inside = Path::new(r).is_relative()
                && p.canonicalize().is_ok_and(|real| real.starts_with(&root));
            if !inside {
                return Err(ManifestError::OutsideDirectory {
                    path: k,
                    resource: r.to_string(),
                    dir: dir.to_path_buf(),
                });
            }
            files.push(p);
        }
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kustomization_order_is_kept_and_namespaces_go_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- b.yaml\n- a.yaml\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("b.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n---\n\
             apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: demo\n---\n",
        )
        .expect("write");
        let m = load(dir.path()).expect("load");
        let names: Vec<String> = m.iter().map(Manifest::describe).collect();
        assert_eq!(
            names,
            ["Namespace demo", "Deployment demo/web", "Service demo/web"]
        );
        assert_eq!(m[1].group_kind(), "Deployment.apps");
        assert_eq!(m[2].group_kind(), "Service");
    }

    #[test]
    fn kustomization_resources_outside_the_directory_are_refused() {
        let top = tempfile::tempdir().expect("tempdir");
        let dir = top.path().join("web");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        let object = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n";
        let outside = top.path().join("other.yaml");
        std::fs::write(&outside, object).expect("write");
        std::fs::write(dir.join("sub/inside.yaml"), object).expect("write");
        std::os::unix::fs::symlink(&outside, dir.join("link.yaml")).expect("symlink");
        std::os::unix::fs::symlink(top.path(), dir.join("up")).expect("symlink");
        let kustomize = |resource: &str| {
            std::fs::write(
                dir.join("kustomization.yaml"),
                format!("resources:\n- {resource}\n"),
            )
            .expect("write");
            load(&dir)
        };
        for resource in [
            "../other.yaml".to_string(),
            "sub/../../other.yaml".to_string(),
            outside.display().to_string(),
            "link.yaml".to_string(),
            "up/other.yaml".to_string(),
        ] {
            let err = kustomize(&resource).expect_err(&resource);
            assert!(
                matches!(&err, ManifestError::OutsideDirectory { resource: r, .. } if *r == resource),
                "{resource}: {err}"
            );
            assert!(
                err.to_string().contains("outside the playbook directory"),
                "{err}"
            );
        }
        for inside in ["sub/inside.yaml", "./sub/../sub/inside.yaml"] {
            let m = kustomize(inside).expect(inside);
            assert_eq!(m.len(), 1, "{inside}");
        }
    }

    #[test]
    fn unsupported_kustomize_features_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "resources: []\nnamePrefix: x-\n",
        )
        .expect("write");
        let err = load(dir.path()).expect_err("unsupported");
        assert!(
            err.to_string().contains("`namePrefix` is not supported"),
            "{err}"
        );
    }

    #[test]
    fn objects_without_a_name_are_refused_with_their_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("x.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
        )
        .expect("write");
        let err = load(dir.path()).expect_err("no name");
        assert!(
            err.to_string()
                .contains("x.yaml: document 1: metadata.name is required"),
            "{err}"
        );
    }
}
