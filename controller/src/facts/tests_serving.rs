//! The API server's key pin from a server's facts: K3s's
//! `dynamic-cert.json` (a Secret as Go's JSON) is read on the node, only
//! its certificate leaves it, and the pin is the sha256 of its public key
//! as openssl computes it.

use super::Facts;
use super::tests::Scratch;
use std::process::Command;

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

#[test]
fn a_servers_facts_pin_the_key_its_api_port_serves_and_never_carry_the_private_key() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let node = Scratch::new();
    let (key, crt) = (node.path("k.pem"), node.path("c.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=k3s",
        "-days",
        "1",
        "-keyout",
        &key,
        "-out",
        &crt,
    ]);
    let spki = openssl(&["pkey", "-in", &key, "-pubout", "-outform", "DER"]);
    let want = crate::artifacts::sha256_hex(&spki);
    let (key_pem, crt_pem) = (
        std::fs::read(&key).expect("key"),
        std::fs::read(&crt).expect("crt"),
    );
    let data_dir = node.path("ssd/k3s");
    std::fs::create_dir_all(format!("{data_dir}/server/tls")).expect("mkdir");
    let secret = format!(
        r#"{{"metadata":{{"name":"k3s-serving","annotations":{{"listener.cattle.io/cn-10.0.0.1":"10.0.0.1"}}}},"data":{{"tls.crt":"{}","tls.key":"{}"}},"type":"kubernetes.io/tls"}}"#,
        b64(&crt_pem),
        b64(&key_pem)
    );
    std::fs::write(
        format!("{data_dir}/server/tls/dynamic-cert.json"),
        secret + "\n",
    )
    .expect("write");
    std::fs::write(node.path("config.yaml"), format!("data-dir: {data_dir}\n")).expect("config");
    let run = |mode: &str| {
        let script = node
            .script
            .replace("/etc/rancher/k3s/config.yaml", &node.path("config.yaml"));
        let out = Command::new("/bin/sh")
            .args(["-c", &script, "pictl", mode, "no-record"])
            .output()
            .expect("sh");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts"),
        )
    };
    let (text, facts) = run("secrets");
    assert_eq!(facts.serving_pin.as_deref(), Some(want.as_str()));
    assert!(
        !text.contains(&b64(&key_pem)),
        "the private key left the node"
    );
    assert!(!text.contains("PRIVATE KEY"));
    // Agents' facts never read it.
    assert_eq!(run("no-secrets").1.serving_pin, None);
    // A file without a certificate pins nothing.
    std::fs::write(format!("{data_dir}/server/tls/dynamic-cert.json"), "{}\n").expect("write");
    assert_eq!(run("secrets").1.serving_pin, None);
}
