use std::path::Path;

use crate::inventory::{Inventory, K3sValue, SecretSetting, SecretSource};

const HEAD: &str = "[cluster]\nname = \"t\"\nk3s_version = \"v1.32.5+k3s1\"\n";
const NODES: &str =
    "[ssh]\nagent = true\n[[nodes]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n";

fn parse(cluster: &str, rest: &str) -> Result<Inventory, String> {
    let text = format!("{HEAD}{cluster}\n{NODES}{rest}\n");
    Inventory::parse(&text, "t.toml", Path::new("/")).map_err(|d| d.to_string())
}

#[test]
fn registries_carry_mirrors_rewrites_auth_from_env_and_tls() {
    let inv = parse(
        "",
        r#"[registries.mirrors."docker.io"]
endpoint = ["https://registry.lan:5000", "http://10.0.0.9:5000/v2"]
rewrite = { "^rancher/(.*)" = "mirror/rancher/$1" }
[registries.configs."registry.lan:5000"]
auth = { username = "pi", password = { env = "REG_PASSWORD" } }
tls = { ca_file = "/etc/ssl/lan-ca.pem" }
"#,
    )
    .expect("valid");
    let r = inv.registries.expect("managed");
    let m = &r.mirrors["docker.io"];
    assert_eq!(m.endpoint.len(), 2);
    assert_eq!(m.rewrite["^rancher/(.*)"], "mirror/rancher/$1");
    let auth = r.configs["registry.lan:5000"].auth.as_ref().expect("auth");
    assert_eq!(auth.username.as_deref(), Some("pi"));
    assert_eq!(
        auth.password,
        Some(SecretSetting::From(SecretSource::Env(
            "REG_PASSWORD".into()
        )))
    );
    let tls = r.configs["registry.lan:5000"].tls.as_ref().expect("tls");
    assert_eq!(tls.ca_file.as_deref(), Some("/etc/ssl/lan-ca.pem"));
}

#[test]
fn without_a_registries_table_the_file_is_not_pictls() {
    assert_eq!(parse("", "").expect("valid").registries, None);
}

#[test]
fn a_bad_endpoint_is_named_with_its_line() {
    let err = parse(
        "",
        "[registries.mirrors.\"docker.io\"]\nendpoint = [\"https://ok.lan\", \"ftp://registry.lan\"]\n",
    )
    .expect_err("refused");
    assert!(
        err.contains("endpoint \"ftp://registry.lan\" must be http or https"),
        "{err}"
    );
    // The line of the endpoint (line 12 of the file), not just the table.
    assert!(err.contains("t.toml:12:"), "{err}");
    let err = parse(
        "",
        "[registries.mirrors.\"docker.io\"]\nendpoint = [\"https://reg lan:5000\"]\n",
    )
    .expect_err("refused");
    assert!(err.contains("is not a URL"), "{err}");
}

#[test]
fn credentials_are_never_clear_text_in_the_inventory() {
    let in_url = parse(
        "",
        "[registries.mirrors.\"docker.io\"]\nendpoint = [\"https://pi:hunter2@registry.lan\"]\n",
    )
    .expect_err("refused");
    assert!(in_url.contains("holds credentials"), "{in_url}");
    assert!(!in_url.contains("hunter2"), "{in_url}");
    let plain = parse(
        "",
        "[registries.configs.\"registry.lan\"]\nauth = { username = \"pi\", password = \"hunter2\" }\n",
    )
    .expect_err("refused");
    assert!(
        plain.contains("password is written in clear text"),
        "{plain}"
    );
    assert!(!plain.contains("hunter2"), "{plain}");
}

#[test]
fn hosts_rewrites_tls_pairs_and_keys_are_checked() {
    for (rest, why) in [
        (
            "[registries.mirrors.\"not a host\"]\nendpoint = []\n",
            "not a host",
        ),
        (
            "[registries.mirrors.\"reg.lan:99999\"]\n",
            "is not a port number",
        ),
        (
            "[registries.mirrors.\"docker.io\"]\nrewrite = { \"^(rancher\" = \"x\" }\n",
            "is not a regular expression",
        ),
        (
            "[registries.configs.\"reg.lan\"]\ntls = { cert_file = \"/etc/c.pem\" }\n",
            "cert_file without key_file",
        ),
        (
            "[registries.configs.\"reg.lan\"]\ntls = { ca_file = \"ca.pem\" }\n",
            "is not an absolute path",
        ),
        (
            "[registries.mirrors.\"docker.io\"]\nendpoints = [\"https://x\"]\n",
            "endpoints",
        ),
    ] {
        let err = parse("", rest).expect_err(rest);
        assert!(err.contains(why), "{rest}: {err}");
    }
    let star = parse(
        "",
        "[registries.mirrors.\"*\"]\nendpoint = [\"registry.lan:5000\"]\n",
    );
    assert!(star.is_ok(), "{star:?}");
}

#[test]
fn secret_k3s_settings_take_env_or_file_and_refuse_clear_text() {
    let inv = parse(
        "server_config = { \"etcd-s3-secret-key\" = { env = \"S3_SECRET\" }, \"datastore-endpoint\" = \"https://etcd.lan:2379\" }",
        "",
    )
    .expect("valid");
    assert_eq!(
        inv.cluster.server_config["etcd-s3-secret-key"],
        K3sValue::Secret(SecretSetting::From(SecretSource::Env("S3_SECRET".into())))
    );
    // An endpoint without a password is not a secret.
    assert_eq!(
        inv.cluster.server_config["datastore-endpoint"],
        K3sValue::One("https://etcd.lan:2379".into())
    );
    for (setting, secret) in [
        ("\"etcd-s3-secret-key\" = \"s3cr3t\"", "s3cr3t"),
        ("\"etcd-s3-access-key\" = \"AKIA123\"", "AKIA123"),
        (
            "\"datastore-endpoint\" = \"postgres://k3s:pw123@db:5432/k3s\"",
            "pw123",
        ),
    ] {
        let err = parse(&format!("server_config = {{ {setting} }}"), "").expect_err(setting);
        assert!(err.contains("is written in clear text"), "{setting}: {err}");
        assert!(!err.contains(secret), "{setting}: {err}");
    }
}
