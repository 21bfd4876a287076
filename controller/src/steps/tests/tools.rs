//! The killall and uninstall scripts and the tools' links K3s's own
//! installer would leave.

use super::*;

#[test]
fn killall_and_uninstall_scripts_and_missing_links_are_installed() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.files.remove(paths::KILLALL);
    f.tools_missing = vec!["kubectl".into(), "ctr".into()];
    let Check::Change(p) = check_one(&K3sTools, &inv, &d, &f) else {
        panic!("expected changes")
    };
    assert_eq!(p.scripts, [(paths::KILLALL, false)]);
    assert_eq!(p.links, ["kubectl", "ctr"]);
    // A server's uninstall script has the server's name, an agent's its own.
    assert_eq!(
        uninstall_path(crate::inventory::Role::Agent),
        paths::AGENT_UNINSTALL
    );
}

#[test]
fn the_node_scripts_are_valid_sh_and_keep_the_node_password() {
    for (name, text) in [
        ("killall", k3s_tools_text::KILLALL),
        ("uninstall", k3s_tools_text::UNINSTALL),
    ] {
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", text])
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with("#!/bin/sh\n# Managed by pictl"), "{name}");
    }
    let removes_password = k3s_tools_text::UNINSTALL
        .lines()
        .any(|l| l.trim_start().starts_with("rm") && l.contains("/etc/rancher/node"));
    assert!(
        !removes_password,
        "the node password must survive an uninstall"
    );
}
