//! Leaf certificate lifetimes like K3s's: signed for 365 days, or for
//! `CATTLE_NEW_SIGNED_CERT_EXPIRATION_DAYS` days (dynamiclistener
//! cert/cert.go `NewSignedCert`); a server renews at its start the leaves
//! within `CertificateRenewDays` (120) of their end (deps.go
//! `createClientCertKey`, `expired`) and keeps the others; the kubelet
//! certificates are signed afresh at every start (handlers.go
//! `ServingKubeletCert`, `ClientKubeletCert`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pictl_e2e::sim::{Scratch, free_port};

use super::Sim;
use super::server::serving_cert;

const DAY: u64 = 86_400;

/// The certificate's serial, as openssl prints it.
fn serial(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}: {out:?}", cert.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether the certificate is still valid `secs` from now (openssl -checkend).
fn valid_in(cert: &Path, secs: u64) -> bool {
    Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &secs.to_string(), "-in"])
        .arg(cert)
        .output()
        .expect("openssl")
        .status
        .success()
}

/// Ends between `days - 1` and `days` days from now.
fn ends_in_days(cert: &Path, days: u64) {
    assert!(
        valid_in(cert, (days - 1) * DAY) && !valid_in(cert, days * DAY + 60),
        "{} does not end in {days} days",
        cert.display()
    );
}

pub fn leaf_certificates_inside_k3s_renewal_window_are_renewed_at_start() {
    let config = "token: s3cret-token\nnode-name: simserver\n";
    let short = [("CATTLE_NEW_SIGNED_CERT_EXPIRATION_DAYS", "100")];
    // Issued with the variable: every leaf for 100 days.
    let sim = Sim::start_in_env(Scratch::new("server"), free_port(), config, &[], &short);
    let leaves = [
        "data/server/tls/client-admin.crt",
        "data/agent/client-kubelet.crt",
        "data/agent/serving-kubelet.crt",
    ];
    for l in leaves {
        ends_in_days(&sim.path(l), 100);
    }
    ends_in_days(&serving_cert(&sim), 100);
    // Still set: inside the window, every start renews them, for 100 days again.
    let first = serial(&sim.path(leaves[0]));
    let sim = sim.restart_env(config, &short);
    assert_ne!(
        serial(&sim.path(leaves[0])),
        first,
        "not renewed in the window"
    );
    ends_in_days(&sim.path(leaves[0]), 100);
    let mut agent = sim.agent("simagent", &sim.token(), &[]);
    agent.wait_log("k3s agent is up and running", Duration::from_secs(20));
    ends_in_days(&sim.path("agent-simagent/agent/client-kubelet.crt"), 100);
    ends_in_days(&sim.path("agent-simagent/agent/serving-kubelet.crt"), 100);
    agent.stop();

    // Without the variable, a start renews what is inside the window for 365 days.
    let before: Vec<String> = leaves.iter().map(|l| serial(&sim.path(l))).collect();
    let serving_before = serial(&serving_cert(&sim));
    let sim = sim.restart(config, &[]);
    for (l, old) in leaves.iter().zip(&before) {
        ends_in_days(&sim.path(l), 365);
        assert_ne!(&serial(&sim.path(l)), old, "{l} was not renewed");
    }
    let serving = serving_cert(&sim);
    assert_ne!(
        serial(&serving),
        serving_before,
        "the serving cert was not renewed"
    );
    ends_in_days(&serving, 365);
    assert!(
        sim.server.log().contains("will expire in"),
        "K3s's renewal line is missing:\n{}",
        sim.server.log()
    );

    // Outside the window: the server's leaves are kept (same serial); the
    // kubelet's are signed at every start whatever their age.
    let kept = serial(&sim.path(leaves[0]));
    let serving_kept = serial(&serving_cert(&sim));
    let kubelet = serial(&sim.path(leaves[1]));
    let sim = sim.restart(config, &[]);
    assert_eq!(
        serial(&sim.path(leaves[0])),
        kept,
        "client-admin renewed outside the window"
    );
    assert_eq!(
        serial(&serving_cert(&sim)),
        serving_kept,
        "serving cert renewed outside the window"
    );
    assert_ne!(
        serial(&sim.path(leaves[1])),
        kubelet,
        "the kubelet's were not signed again"
    );
}
