//! The facts script reads K3s's leaf certificates under the data dir: the
//! first PEM block of each, never a key.

use super::tests::Scratch;

const NOW: i64 = 1_800_000_000;

/// A leaf ending `days` after [`NOW`], then its CA, as K3s's files hold them.
fn chain(days: i64) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::new(vec!["k3s".to_string()]).expect("params");
    leaf.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + days * 86_400).expect("t");
    let ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca");
    let ca = ca.self_signed(&key).expect("ca");
    format!(
        "{}{}",
        leaf.self_signed(&key).expect("leaf").pem(),
        ca.pem()
    )
}

#[test]
fn the_leaf_certificates_under_the_data_dir_are_read_and_no_key_leaves_the_node() {
    let mut node = Scratch::new();
    let (etc, data) = (node.path("etc-k3s"), node.path("data"));
    std::fs::create_dir_all(&etc).expect("mkdir");
    std::fs::write(format!("{etc}/config.yaml"), format!("data-dir: {data}\n")).expect("write");
    for (rel, text) in [
        ("server/tls/client-admin.crt", chain(200)),
        (
            "server/tls/client-admin.key",
            "-----BEGIN EC PRIVATE KEY-----\nSECRETKEY\n-----END EC PRIVATE KEY-----\n".to_string(),
        ),
        ("server/tls/server-ca.crt", chain(3000)),
        ("agent/client-kubelet.crt", chain(40)),
        (
            "agent/serving-kubelet.crt",
            "not a certificate\n".to_string(),
        ),
    ] {
        let p = format!("{data}/{rel}");
        std::fs::create_dir_all(std::path::Path::new(&p).parent().expect("dir")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    node.script = node.script.replace("/etc/rancher/k3s/", &format!("{etc}/"));
    let out = crate::test_sh::run(&node.script, ["no-secrets", "no-record"], &node.path("bin"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("SECRETKEY") && !text.contains("PRIVATE"),
        "{text}"
    );
    let f = super::Facts::parse(&text, NOW).expect("facts");
    let ends: Vec<(String, i64)> = f
        .certificates
        .iter()
        .map(|c| (c.file.trim_start_matches(&data).to_string(), c.not_after))
        .collect();
    assert_eq!(
        ends,
        [
            (
                "/server/tls/client-admin.crt".to_string(),
                NOW + 200 * 86_400
            ),
            ("/agent/client-kubelet.crt".to_string(), NOW + 40 * 86_400),
        ]
    );
    let first = f.first_certificate_end().expect("first");
    assert!(first.file.ends_with("/agent/client-kubelet.crt"));
}
