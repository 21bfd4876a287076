//! The image-architecture preflight: before a playbook is applied, every
//! container image is looked up in its registry and must offer a
//! `linux/<arch>` variant for every node that could run it. This is the
//! playson incident (an amd64-only image crash-looping on arm64 Pis) caught
//! before anything is deployed.
//!
//! [`super::reference`] parses image references, [`super::registry`] asks
//! registries; this file decides what their answers mean for the nodes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::manifests::Manifest;
pub use super::reference::ImageRef;
pub use super::registry::{Registry, RegistryError};
use crate::arch::Arch;

/// `os/architecture[/variant]` as registries describe images.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    pub(crate) fn of(v: &Value) -> Option<Platform> {
        Some(Platform {
            os: v["os"].as_str()?.to_string(),
            architecture: v["architecture"].as_str()?.to_string(),
            variant: v["variant"].as_str().map(String::from),
        })
    }

    /// Whether a node of `arch` runs this platform (armhf nodes run v5–v7).
    pub fn runs_on(&self, arch: Arch) -> bool {
        if self.os != "linux" {
            return false;
        }
        match arch {
            Arch::Amd64 => self.architecture == "amd64",
            Arch::Arm64 => self.architecture == "arm64",
            Arch::Armhf => {
                self.architecture == "arm"
                    && matches!(self.variant.as_deref(), None | Some("v5" | "v6" | "v7"))
            }
        }
    }
}

/// Where an image is used, and on which arches its pods may land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    pub image: String,
    pub used_by: String,
    /// `kubernetes.io/arch` from the pod's nodeSelector, if pinned.
    pub arch_selector: Option<String>,
}

/// Every container image of the workload objects in a playbook.
pub fn images_of(manifests: &[Manifest]) -> Vec<ImageUse> {
    let mut out = Vec::new();
    for m in manifests {
        let spec = match m.kind() {
            "Pod" => &m.object["spec"],
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                &m.object["spec"]["template"]["spec"]
            }
            "CronJob" => &m.object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        let selector = spec["nodeSelector"]["kubernetes.io/arch"]
            .as_str()
            .map(String::from);
        for list in ["initContainers", "containers"] {
            for c in spec[list].as_array().into_iter().flatten() {
                if let Some(image) = c["image"].as_str() {
                    out.push(ImageUse {
                        image: image.to_string(),
                        used_by: m.describe(),
                        arch_selector: selector.clone(),
                    });
                }
            }
        }
    }
    out
}

/// What the preflight found for one playbook.
#[derive(Debug, Default)]
pub struct Findings {
    /// Images that cannot run on some nodes: the playbook must not be applied.
    pub incompatible: Vec<String>,
    /// Images whose platforms could not be read.
    pub unknown: Vec<String>,
}

/// Checks every image against the nodes' arches (`arch → node names`).
pub async fn check(
    registry: &Registry,
    manifests: &[Manifest],
    nodes: &BTreeMap<Arch, Vec<String>>,
) -> Findings {
    let mut findings = Findings::default();
    let mut seen: BTreeMap<String, Result<BTreeSet<Platform>, String>> = BTreeMap::new();
    for u in images_of(manifests) {
        if !seen.contains_key(&u.image) {
            let result = match ImageRef::parse(&u.image) {
                Ok(r) => registry
                    .platforms(&r)
                    .await
                    .map_err(|e| crate::error_chain(&e)),
                Err(e) => Err(e),
            };
            seen.insert(u.image.clone(), result);
        }
        let Some(result) = seen.get(&u.image) else {
            continue;
        };
        let platforms = match result {
            Ok(p) => p,
            Err(e) => {
                findings
                    .unknown
                    .push(format!("{} ({}): {e}", u.image, u.used_by));
                continue;
            }
        };
        let mut lacking: Vec<String> = Vec::new();
        for (arch, names) in nodes {
            let pinned_elsewhere = u
                .arch_selector
                .as_deref()
                .is_some_and(|s| s != arch.name() && !(s == "arm" && *arch == Arch::Armhf));
            if pinned_elsewhere || platforms.iter().any(|p| p.runs_on(*arch)) {
                continue;
            }
            lacking.push(format!("{} ({arch})", names.join(", ")));
        }
        if !lacking.is_empty() {
            let offered: Vec<String> = platforms.iter().map(ToString::to_string).collect();
            findings.incompatible.push(format!(
                "{} in {} offers only {}, so it cannot run on {}; use a multi-arch image or pin \
                 nodeSelector kubernetes.io/arch",
                u.image,
                u.used_by,
                offered.join(", "),
                lacking.join("; ")
            ));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armhf_nodes_run_arm_v7_and_older_only() {
        let p = |a: &str, v: Option<&str>| Platform {
            os: "linux".into(),
            architecture: a.into(),
            variant: v.map(String::from),
        };
        assert!(p("arm", Some("v7")).runs_on(Arch::Armhf));
        assert!(p("arm", Some("v6")).runs_on(Arch::Armhf));
        assert!(!p("arm64", Some("v8")).runs_on(Arch::Armhf));
        assert!(p("arm64", Some("v8")).runs_on(Arch::Arm64));
        assert!(!p("amd64", None).runs_on(Arch::Arm64));
    }
}
