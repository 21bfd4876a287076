//! The inventory's JSON Schema (issue 14): the shipped file is what
//! `pictl schema` prints, every example inventory names it and validates
//! against it, and the schema and `validate` agree on good and bad input.

use std::path::{Path, PathBuf};

use pictl::inventory::Inventory;

use super::{NODES, cluster_ssh};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("inventory/pictl.schema.json"))
        .expect("read inventory/pictl.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "draft 2020-12"
    );
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

/// TOML → JSON as taplo sees it: `None` when it is not even TOML.
fn as_json(text: &str) -> Option<serde_json::Value> {
    let value: toml::Table = toml::from_str(text).ok()?;
    Some(serde_json::to_value(value).expect("TOML converts to JSON"))
}

/// The schema's complaints about `text` (empty when it is valid).
fn schema_errors(v: &jsonschema::Validator, text: &str) -> Vec<String> {
    let Some(json) = as_json(text) else {
        return vec!["not TOML".into()];
    };
    v.iter_errors(&json)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn validate_errors(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    match Inventory::parse(text, "inv.toml", dir.path()) {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn shipped_schema_is_what_pictl_schema_prints() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pictl"))
        .arg("schema")
        .output()
        .expect("run pictl schema");
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let shipped =
        std::fs::read_to_string(repo().join("inventory/pictl.schema.json")).unwrap_or_default();
    assert!(
        printed == shipped,
        "inventory/pictl.schema.json differs from what `pictl schema` prints; regenerate it with\n  \
         cargo run -p pictl -- schema > inventory/pictl.schema.json"
    );
}

#[test]
fn every_example_inventory_names_the_schema_and_validates_against_it() {
    let v = validator();
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("inventory")).expect("read inventory/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text.lines().next(),
            Some("#:schema ./pictl.schema.json"),
            "{}: the first line tells taplo / Even Better TOML the schema",
            path.display()
        );
        let errors = schema_errors(&v, &text);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    }
    assert!(seen >= 2, "playson.toml and lab.toml at least");
}

fn base() -> String {
    format!("{}{NODES}", cluster_ssh())
}

#[test]
fn schema_and_validate_accept_the_same_good_inventories() {
    let v = validator();
    let cases = [
        base(),
        base().replace("k3s_version = \"v1.32.5+k3s1\"", "channel = \"stable\""),
        base().replace("[ssh]", "[cluster.server_config]\n\"secrets-encryption\" = true\ndisable = [\"traefik\"]\n\"flannel-backend\" = \"wireguard-native\"\n\n[ssh]"),
        base().replace("[ssh]\n", "token = \"generate\"\nha = false\ntls_san = [\"pi.example\"]\n\n[ssh]\nport = 2222\nhost_key_policy = \"accept-new\"\nconnect_timeout = 30\nsudo_password = { env = \"PICTL_SUDO\" }\n"),
        format!("{}\narch = \"arm64\"\nlabels = {{ \"example.com/zone\" = \"shelf-1\" }}\ntaints = [\"dedicated=edge:NoSchedule\"]\n[nodes.ssh]\nuser = \"pi\"\n", base()),
        format!("{}\n[agent]\nenabled = false\n[workload]\nimage_arch_check = \"off\"\n", base()),
    ];
    for text in cases {
        let by_validate = validate_errors(&text);
        assert!(by_validate.is_empty(), "validate: {by_validate:#?}\n{text}");
        let by_schema = schema_errors(&v, &text);
        assert!(by_schema.is_empty(), "schema: {by_schema:#?}\n{text}");
    }
}

#[test]
fn schema_and_validate_both_refuse_bad_inventories() {
    let v = validator();
    let b = base();
    let with_node = |extra: &str| format!("{b}{extra}\n");
    let cases: Vec<(&str, String)> = vec![
        // unknown keys, at every level
        (
            "unknown root key",
            format!("{b}\n[clusterr]\nname = \"x\"\n"),
        ),
        (
            "unknown cluster key",
            b.replace("[ssh]", "k3s_versoin = \"v1\"\n[ssh]"),
        ),
        (
            "unknown ssh key",
            b.replace("[ssh]\n", "[ssh]\nidentityfile = \"k\"\n"),
        ),
        ("unknown node key", with_node("hostname = \"a1\"")),
        ("unknown node ssh key", with_node("[nodes.ssh]\nprot = 22")),
        (
            "unknown secret key",
            b.replace("[ssh]", "token = { environment = \"T\" }\n[ssh]"),
        ),
        (
            "unknown workload key",
            format!("{b}\n[workload]\nplaybook = []\n"),
        ),
        (
            "unknown agent binary",
            format!("{b}\n[agent.binaries]\nriscv64 = \"x\"\n"),
        ),
        // wrong types
        (
            "port as a string",
            b.replace("[ssh]\n", "[ssh]\nport = \"22\"\n"),
        ),
        (
            "port out of range",
            b.replace("[ssh]\n", "[ssh]\nport = 70000\n"),
        ),
        ("ha as a string", b.replace("[ssh]", "ha = \"yes\"\n[ssh]")),
        (
            "tls_san as a string",
            b.replace("[ssh]", "tls_san = \"pi.example\"\n[ssh]"),
        ),
        (
            "a clear-text token",
            b.replace("[ssh]", "token = \"K10abc\"\n[ssh]"),
        ),
        (
            "two secret sources",
            b.replace("[ssh]", "token = { env = \"T\", file = \"t\" }\n[ssh]"),
        ),
        (
            "role not a role",
            b.replace("role = \"agent\"", "role = \"worker\""),
        ),
        ("arch not an arch", with_node("arch = \"x86_64\"")),
        (
            "label value not a string",
            with_node("labels = { zone = 1 }"),
        ),
        (
            "taints not a list",
            with_node("taints = \"a=b:NoSchedule\""),
        ),
        (
            "host_key_policy off",
            b.replace("[ssh]\n", "[ssh]\nhost_key_policy = \"off\"\n"),
        ),
        (
            "nodes as one table",
            cluster_ssh() + "[nodes]\nname = \"s1\"\n",
        ),
        (
            "k3s setting as a table",
            b.replace("[ssh]", "server_config = { disable = { x = 1 } }\n[ssh]"),
        ),
        (
            "image_arch_check unknown",
            format!("{b}\n[workload]\nimage_arch_check = \"never\"\n"),
        ),
        // missing required keys
        ("no [cluster]", format!("[ssh]\nagent = true\n{NODES}")),
        ("no nodes", cluster_ssh()),
        ("no cluster name", b.replace("name = \"demo\"\n", "")),
        (
            "no release",
            b.replace("k3s_version = \"v1.32.5+k3s1\"\n", ""),
        ),
        (
            "both version and channel",
            b.replace("[ssh]", "channel = \"stable\"\n[ssh]"),
        ),
        (
            "node without address",
            b.replace("address = \"10.0.0.2\"\n", ""),
        ),
        ("node without role", b.replace("role = \"agent\"\n", "")),
        ("node without name", b.replace("name = \"a1\"\n", "")),
    ];
    for (what, text) in &cases {
        assert!(
            !validate_errors(text).is_empty(),
            "{what}: validate accepted it\n{text}"
        );
        assert!(
            !schema_errors(&v, text).is_empty(),
            "{what}: the schema accepted it\n{text}"
        );
    }
}
