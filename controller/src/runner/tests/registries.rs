//! `[registries]` becomes K3s's registries.yaml, its password read from
//! the inventory's source, and K3s restarts only when the file changed.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::report::StepId;

/// `s` with a `[registries]` whose password is in the 0600 file `reg.pw`.
fn with_registries(mut s: Setup, password: &str) -> Setup {
    let file = s.dir.path().join("reg.pw");
    std::fs::write(&file, format!("{password}\n")).expect("password file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = format!(
        "{}\n[registries.mirrors.\"docker.io\"]\nendpoint = [\"https://registry.lan:5000\"]\n\
         [registries.configs.\"registry.lan:5000\"]\nauth = {{ username = \"pi\", password = {{ file = \"reg.pw\" }} }}\n",
        s.text
    );
    s.inv = Inventory::parse(&text, "t.toml", s.dir.path()).expect("valid inventory");
    s
}

fn registries_file(s: &Setup, node: &str) -> Option<String> {
    let state = s.fleet.node(node);
    let st = state.lock().expect("node");
    let bytes = st.files.get(paths::REGISTRIES)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

fn restarted(report: &RunReport, name: &str) -> bool {
    node(report, name)
        .steps
        .iter()
        .any(|r| r.step == StepId::K3sService && r.status == Status::Changed)
}

#[tokio::test(flavor = "multi_thread")]
async fn registries_reach_every_node_with_the_password_and_restart_k3s_only_when_changed() {
    let s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    let s = with_registries(s, "hunter2");
    let before = s.fleet.calls().len();
    let plan = s.plan().await;
    let text = step_text(&plan, "a1", StepId::K3sRegistries);
    assert!(
        text.contains(paths::REGISTRIES) && text.contains("absent"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2"),
        "a plan never shows the password: {text}"
    );
    assert!(
        restarted(&plan, "s1") && restarted(&plan, "a1"),
        "{plan:#?}"
    );
    assert!(
        s.writes_since(before).is_empty(),
        "{:?}",
        s.writes_since(before)
    );

    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    for n in ["s1", "a1"] {
        assert!(restarted(&report, n), "{n}: {report:#?}");
        let file = registries_file(&s, n).expect("written");
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&file).expect("yaml");
        assert_eq!(
            yaml["mirrors"]["docker.io"]["endpoint"][0],
            "https://registry.lan:5000"
        );
        assert_eq!(
            yaml["configs"]["registry.lan:5000"]["auth"]["password"],
            "hunter2"
        );
        assert_eq!(
            yaml["configs"]["registry.lan:5000"]["auth"]["username"],
            "pi"
        );
    }
    let again = s.apply().await;
    assert!(!again.changed(), "{again:#?}");

    // A new password is a new file: one restart each, and then nothing.
    let s = with_registries(s, "correct-horse");
    let report = s.apply().await;
    assert!(
        restarted(&report, "s1") && restarted(&report, "a1"),
        "{report:#?}"
    );
    assert!(
        registries_file(&s, "a1")
            .expect("file")
            .contains("correct-horse")
    );
    assert!(!s.apply().await.changed());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unset_secret_stops_the_run_naming_the_setting_before_any_node_is_touched() {
    let mut s = setup(1, 0).await;
    let text = format!(
        "{}\n[registries.configs.\"registry.lan\"]\nauth = {{ username = \"pi\", password = {{ env = \"PICTL_TEST_UNSET_REGISTRY_PW\" }} }}\n",
        s.text.replace(
            "[ssh]",
            "server_config = { \"etcd-s3-secret-key\" = { env = \"PICTL_TEST_UNSET_S3\" } }\n[ssh]"
        )
    );
    s.inv = Inventory::parse(&text, "t.toml", s.dir.path()).expect("valid inventory");
    let err = plan(&s.inv, &s.options()).await.expect_err("refused");
    let msg = crate::error_chain(&err);
    assert!(
        msg.contains("[cluster] server_config etcd-s3-secret-key")
            && msg.contains("PICTL_TEST_UNSET_S3 is not set"),
        "{msg}"
    );
    assert!(s.fleet.calls().is_empty(), "{:?}", s.fleet.calls());
    // With the S3 secret set, the registry's password is named by its host.
    let text = text
        .replace("{ env = \"PICTL_TEST_UNSET_S3\" }", "\"x\"")
        .replace("server_config = { \"etcd-s3-secret-key\" = \"x\" }\n", "");
    s.inv = Inventory::parse(&text, "t.toml", s.dir.path()).expect("valid inventory");
    let err = plan(&s.inv, &s.options()).await.expect_err("refused");
    let msg = crate::error_chain(&err);
    assert!(
        msg.contains("[registries.configs] \"registry.lan\" password"),
        "{msg}"
    );
}
