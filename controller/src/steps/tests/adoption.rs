//! Taking over a server K3s's install.sh set up: adopted without a restart
//! when it matches the inventory, with one when a setting changes, refused
//! naming what the inventory does not carry.

use super::*;

/// A server K3s's install.sh set up: its unit (flags in ExecStart) and its
/// `.service.env`; no config.yaml and no record of pictl's.
fn install_sh(d: &Desired, flags: &str) -> Facts {
    let mut f = converged(d);
    f.files.remove(paths::CONFIG);
    f.files
        .insert(paths::SERVER_UNIT.into(), "install.sh's unit".into());
    f.started_with.clear();
    f.hostname = "s1".into();
    let unit = format!(
        "[Service]\nType=notify\nEnvironmentFile=-/etc/systemd/system/k3s.service.env\nExecStart=/usr/local/bin/k3s \\\n    server \\\n{flags}\n"
    );
    f.foreign = Some((
        "k3s.service".into(),
        crate::adopt::Foreign {
            unit: Secret::new(unit),
            env: Some(Secret::new(
                "K3S_TOKEN='K10abc::server:sec'\nHTTP_PROXY='http://proxy:3128'\n",
            )),
            config: None,
        },
    ));
    f
}

#[test]
fn an_install_sh_server_that_matches_the_inventory_is_adopted_without_a_restart() {
    let inv = inventory();
    let d = desired(&inv);
    let p = plan(&inv, &d, &install_sh(&d, ""));
    assert_eq!(
        names(&p),
        ["k3s-adopt", "k3s-config", "k3s-unit", "k3s-service"]
    );
    let service: Vec<String> = p[3].1.iter().map(|c| c.after.clone()).collect();
    assert_eq!(
        service,
        [
            "daemon-reload",
            "kept running: it already runs as pictl configures it"
        ]
    );
}

#[test]
fn a_flag_the_inventory_does_not_carry_blocks_the_takeover_naming_it() {
    let inv = inventory();
    let d = desired(&inv);
    let f = install_sh(&d, "\t'--flannel-backend' \\\n\t'wireguard-native' \\\n");
    let Check::Blocked(why) = check_one(&K3sAdopt, &inv, &d, &f) else {
        panic!("expected the takeover to be refused")
    };
    assert!(why.contains("flannel-backend = wireguard-native"), "{why}");
    assert!(why.contains("adopt_drop"), "{why}");
}

#[test]
fn a_setting_the_inventory_changes_is_adopted_with_a_restart() {
    let inv = inventory();
    let d = desired(&inv);
    let f = install_sh(&d, "\t'--node-ip' \\\n\t'10.0.0.99' \\\n");
    let Check::Change(adopt) = check_one(&K3sAdopt, &inv, &d, &f) else {
        panic!("expected a takeover")
    };
    assert_eq!(
        adopt.changed,
        [(
            "node-ip".to_string(),
            "[10.0.0.99]".to_string(),
            "[10.0.0.1]".to_string()
        )]
    );
    let p = plan(&inv, &d, &f);
    let restart = &p.last().expect("service").1;
    assert!(
        restart.iter().any(|c| c.after.starts_with("restarted")),
        "{restart:?}"
    );
}

#[test]
fn extra_names_labels_and_a_kubeconfig_mode_block_the_takeover_saying_where_they_go() {
    let inv = inventory();
    let d = desired(&inv);
    let flags = "\t'--tls-san' \\\n\t'k3s.example' \\\n\t'--node-label' \\\n\t'zone=shelf' \\\n\
                 \t'--write-kubeconfig-mode' \\\n\t'644' \\\n";
    let Check::Blocked(why) = check_one(&K3sAdopt, &inv, &d, &install_sh(&d, flags)) else {
        panic!("expected the takeover to be refused")
    };
    for want in [
        "tls-san = k3s.example (add to [cluster] tls_san)",
        "node-label = zone=shelf (add to the node's labels)",
        "write-kubeconfig-mode = 644 (add to [cluster] server_config or the node's k3s_config)",
    ] {
        assert!(why.contains(want), "{want} not in {why}");
    }
}

#[test]
fn a_carried_kubeconfig_mode_is_adopted_with_a_chmod_not_a_restart() {
    let inv = inventory_with(r#"server_config = { "write-kubeconfig-mode" = "0640" }"#);
    let d = desired(&inv);
    let f = install_sh(&d, "\t'--write-kubeconfig-mode' \\\n\t'644' \\\n");
    let Check::Change(adopt) = check_one(&K3sAdopt, &inv, &d, &f) else {
        panic!("expected a takeover")
    };
    assert!(adopt.changed.is_empty(), "{adopt:?}");
    assert_eq!(
        adopt.live,
        [(
            "write-kubeconfig-mode".to_string(),
            "644".to_string(),
            "0640".to_string()
        )]
    );
    let p = plan(&inv, &d, &f);
    let shown: Vec<String> = p[0].1.iter().map(|c| c.after.clone()).collect();
    assert!(
        shown.contains(&"0640 (/etc/rancher/k3s/k3s.yaml chmodded, no restart)".to_string()),
        "{shown:?}"
    );
    let service: Vec<String> = p
        .last()
        .expect("service")
        .1
        .iter()
        .map(|c| c.after.clone())
        .collect();
    assert!(
        service.contains(&"kept running: it already runs as pictl configures it".to_string()),
        "{service:?}"
    );
}

#[test]
fn the_takeover_moves_k3s_variables_out_of_the_env_file_and_keeps_the_rest() {
    let inv = inventory();
    let d = desired(&inv);
    let Check::Change(adopt) = check_one(&K3sAdopt, &inv, &d, &install_sh(&d, "")) else {
        panic!("expected a takeover")
    };
    let rest = adopt.env_rest.expect("env file");
    assert_eq!(rest.expose(), "HTTP_PROXY='http://proxy:3128'\n");
    assert_eq!(adopt.imported, ["token"]);
}
