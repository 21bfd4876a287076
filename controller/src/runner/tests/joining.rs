//! Joining the cluster: a reflashed agent refused by its node password is
//! named with the fix, and agents get an agent token, not the server's.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_reflashed_agent_refused_by_its_node_password_is_named_with_the_fix() {
    let s = setup(1, 1).await;
    s.fleet.node("a1").lock().expect("node").refuse =
        Some("level=error msg=\"Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry\"".into());
    let report = s.apply().await;
    let why = node(&report, "a1").failed.clone().unwrap_or_default();
    assert!(why.contains("Node password rejected"), "{why}");
    assert!(why.contains("kubectl delete node a1"), "{why}");
    assert!(node(&report, "s1").failed.is_none(), "{report:#?}");
}

/// s1 runs with the agent token generated into the state directory, and
/// a1 joins with it (`::node:`), never with the server token.
fn agents_hold_the_generated_agent_token(s: &Setup) {
    let agent_secret =
        std::fs::read_to_string(s.dir.path().join("state").join("agent-token")).expect("generated");
    let server = s.config("s1");
    assert!(
        server.contains(&format!("agent-token: {}", agent_secret.trim())),
        "{server}"
    );
    let agent = s.config("a1");
    assert!(
        agent.contains("::node:") && !agent.contains("::server:"),
        "{agent}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_cluster_gives_agents_an_agent_token_not_the_server_token() {
    let s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    agents_hold_the_generated_agent_token(&s);
    assert!(!s.apply().await.changed());
}

/// One server and one agent, the server started by someone else without
/// an agent token (install.sh's default), and a state directory.
async fn without_an_agent_token() -> Setup {
    started_without_an_agent_token(setup(1, 1).await)
}

fn started_without_an_agent_token(s: Setup) -> Setup {
    {
        let st = s.fleet.node("s1");
        let mut st = st.lock().expect("node");
        st.server_token = Some("K10abc::server:theirs".into());
        st.active.insert("k3s.service".into());
    }
    std::fs::create_dir_all(s.dir.path().join("state")).expect("state");
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_running_without_an_agent_token_keeps_running_without_one() {
    let s = without_an_agent_token().await;
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    let st = s.fleet.node("s1");
    let config = String::from_utf8_lossy(
        st.lock()
            .expect("node")
            .files
            .get(paths::CONFIG)
            .expect("config"),
    )
    .into_owned();
    assert!(!config.contains("agent-token"), "{config}");
    assert!(!s.dir.path().join("state").join("agent-token").exists());
}

/// Every warning a run shows, as `[node] topic: warning detail` lines.
#[derive(Default)]
pub(super) struct Warnings(pub(super) std::sync::Mutex<Vec<String>>);

impl crate::report::Progress for Warnings {
    fn event(&self, e: &crate::report::Event<'_>) {
        if e.stage == crate::report::Stage::Warning {
            self.0.lock().expect("warnings").push(e.line());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_holding_the_server_token_are_warned_about_in_plan_and_apply() {
    let s = without_an_agent_token().await;
    let s = &s;
    let warned = |plan: bool| async move {
        let recorder = Arc::new(Warnings::default());
        let mut opts = s.options();
        opts.progress = recorder.clone();
        let report = if plan {
            super::plan(&s.inv, &opts).await
        } else {
            super::apply(&s.inv, &opts).await
        };
        assert!(report.is_ok(), "{report:?}");
        let lines = recorder.0.lock().expect("warnings").clone();
        lines
            .into_iter()
            .filter(|l| l.starts_with("[s1]") && l.contains("without an agent token"))
            .count()
    };
    assert_eq!(warned(true).await, 1, "plan");
    assert_eq!(warned(false).await, 1, "apply");
    // A new cluster gets an agent token: nothing to warn about.
    let fresh = setup(1, 1).await;
    let recorder = Arc::new(Warnings::default());
    let mut opts = fresh.options();
    opts.progress = recorder.clone();
    assert!(
        !super::apply(&fresh.inv, &opts)
            .await
            .expect("apply")
            .failed()
    );
    let lines = recorder.0.lock().expect("warnings").clone();
    assert!(
        !lines.iter().any(|l| l.contains("agent token")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn add_agent_token_gives_such_a_server_one_and_moves_the_agents_off_the_server_token() {
    let release = "k3s_version = \"v1.32.5+k3s1\"\nadd_agent_token = true";
    let s = started_without_an_agent_token(setup_with(1, 1, release).await);
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    agents_hold_the_generated_agent_token(&s);
    let restarted = node(&report, "s1")
        .steps
        .iter()
        .any(|r| r.step == crate::report::StepId::K3sService && r.status == super::Status::Changed);
    assert!(restarted, "the server must restart to take it: {report:#?}");
    assert!(!s.apply().await.changed());
}

/// `s` with `agent_token = { file = "agent.token" }` holding `secret`.
fn with_agent_token_file(mut s: Setup, secret: &str) -> Setup {
    use std::os::unix::fs::PermissionsExt;
    let file = s.dir.path().join("agent.token");
    std::fs::write(&file, format!("{secret}\n")).expect("token file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = s.text.replacen(
        "[cluster]\n",
        "[cluster]\nagent_token = { file = \"agent.token\" }\n",
        1,
    );
    s.inv = Inventory::parse(&text, "t.toml", s.dir.path()).expect("valid inventory");
    s.text = text;
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_agent_token_is_the_one_servers_and_agents_use_and_is_never_recorded() {
    let s = with_agent_token_file(setup(1, 1).await, "agents-own-secret");
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    assert!(s.config("s1").contains("agent-token: agents-own-secret"));
    let agent = s.config("a1");
    assert!(agent.contains("::node:agents-own-secret"), "{agent}");
    assert!(!s.dir.path().join("state").join("agent-token").exists());
    assert!(!s.apply().await.changed());

    // A server started without one takes the configured one (a restart).
    let s = with_agent_token_file(without_an_agent_token().await, "agents-own-secret");
    assert!(!s.apply().await.failed());
    assert!(s.config("s1").contains("agent-token: agents-own-secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_agent_token_unlike_the_running_one_is_refused_before_any_write() {
    let s = without_an_agent_token().await;
    s.fleet.node("s1").lock().expect("node").agent_token = Some("K10abc::node:theirs".into());
    let s = with_agent_token_file(s, "mine");
    let err = super::apply(&s.inv, &s.options())
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("agent.token") && text.contains("not the one the first server runs with"),
        "{text}"
    );
    assert!(
        !text.contains("mine") && !text.contains("theirs"),
        "a secret in the error: {text}"
    );
    let writes: Vec<_> = s
        .fleet
        .calls()
        .into_iter()
        .filter(|(_, c)| is_write(c))
        .collect();
    assert!(
        writes
            .iter()
            .all(|(_, c)| matches!(c, Call::Facts { record: true })),
        "{writes:?}"
    );
}
