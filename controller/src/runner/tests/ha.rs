//! HA servers: they join the first one at a time with every SAN, servers
//! added to a running cluster join likewise, a SQLite server refuses them
//! (or migrates when alone), and the rest converge with the first one down.

use super::*;

impl Setup {
    /// The inventory with `ha = true` and these servers (name, address) added.
    fn with_servers(&mut self, added: &[(&str, &str)]) {
        self.text = self.text.replace("ha = false", "ha = true");
        for (name, ip) in added {
            self.text.push_str(&format!(
                "[[nodes]]\nname = \"{name}\"\naddress = \"{ip}\"\nrole = \"server\"\n"
            ));
            self.api.nodes.push(name.to_string());
        }
        self.inv =
            Inventory::parse(&self.text, "t.toml", self.dir.path()).expect("valid inventory");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ha_servers_join_the_first_one_at_a_time_with_every_san_and_agents_use_the_api_address() {
    let release = "k3s_version = \"v1.32.5+k3s1\"\napi_address = \"k3s.example.net\"\ntls_san = [\"10.0.0.100\", \"cp.example.net\"]";
    let s = setup_with(3, 2, release).await;
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    let s1 = s.config("s1");
    assert!(
        s1.contains("cluster-init: true") && !s1.contains("\nserver:"),
        "{s1}"
    );
    for joiner in ["s2", "s3"] {
        let c = s.config(joiner);
        assert!(c.contains("server: https://k3s.example.net:6443"), "{c}");
        assert!(!c.contains("cluster-init"), "{c}");
    }
    for server in ["s1", "s2", "s3"] {
        let c = s.config(server);
        for san in ["k3s.example.net", "10.0.0.100", "cp.example.net"] {
            assert!(c.contains(&format!("- {san}")), "{server} lacks {san}: {c}");
        }
    }
    for agent in ["a1", "a2"] {
        let c = s.config(agent);
        assert!(c.contains("server: https://k3s.example.net:6443"), "{c}");
    }
    // One at a time: a server is touched only once the one before it is
    // started (its unit active: K3s's READY=1 comes after its etcd member
    // joined and its apiserver serves), and agents only after all of them.
    let started = |n| s.first(n, |c| matches!(c, Call::Exec(_)));
    let first_put = |n| s.first(n, |c| matches!(c, Call::Put(_)));
    assert!(started("s1") < first_put("s2"));
    assert!(started("s2") < first_put("s3"));
    assert!(started("s3") < first_put("a1").min(first_put("a2")));
    let again = s.apply().await;
    assert!(!again.changed() && !again.failed(), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_added_to_a_running_ha_cluster_join_one_at_a_time_and_nothing_else_changes() {
    let mut s = setup(3, 1).await;
    assert!(!s.apply().await.failed());
    let before = s.fleet.calls().len();
    s.with_servers(&[("s4", "10.0.0.9"), ("s5", "10.0.0.10")]);
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    let token = s
        .fleet
        .node("s1")
        .lock()
        .expect("node")
        .server_token
        .clone();
    let token = token.expect("s1's token");
    for joiner in ["s4", "s5"] {
        let c = s.config(joiner);
        assert!(
            c.contains("server: https://10.0.0.1:6443") && !c.contains("cluster-init"),
            "{c}"
        );
        assert!(c.contains(&format!("token: {token}")), "{c}");
        assert!(
            node(&report, joiner).count(crate::report::Status::Changed) > 0,
            "{report:#?}"
        );
    }
    let started = |n| s.first(n, |c| matches!(c, Call::Exec(_)));
    let first_put = |n| s.first(n, |c| matches!(c, Call::Put(_)));
    assert!(started("s4") < first_put("s5"));
    let others: Vec<_> = s
        .writes_since(before)
        .into_iter()
        .filter(|(n, _)| n != "s4" && n != "s5")
        .collect();
    assert!(others.is_empty(), "{others:?}");
    for n in ["s1", "s2", "s3", "a1"] {
        assert_eq!(
            node(&report, n).count(crate::report::Status::Changed),
            0,
            "{report:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_added_to_a_sqlite_server_are_refused_before_any_write_and_ha_on_it_alone_migrates()
{
    let mut s = setup(1, 1).await;
    assert!(!s.apply().await.failed());
    assert_eq!(
        s.fleet.node("s1").lock().expect("node").datastore,
        Some("sqlite")
    );
    let before = s.fleet.calls().len();
    let mut three = Setup {
        inv: s.inv.clone(),
        text: s.text.clone(),
        fleet: s.fleet.clone(),
        api: s.api.clone(),
        dir: tempfile::tempdir().expect("tmp"),
    };
    three.text = three.text.replace(
        &s.dir.path().display().to_string(),
        &three.dir.path().display().to_string(),
    );
    three.with_servers(&[("s2", "10.0.0.8"), ("s3", "10.0.0.9")]);
    for result in [
        plan(&three.inv, &three.options()).await,
        apply(&three.inv, &three.options()).await,
    ] {
        let err = result.expect_err("SQLite under HA is refused");
        assert!(
            matches!(err, RunError::SqliteToHa { ref server } if server == "s1"),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in [
            "server s1 runs K3s on SQLite",
            "nothing was changed",
            "Migrating content from sqlite to etcd",
            "ha = true and s1 as the only server",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg}");
        }
    }
    assert!(
        s.writes_since(before).is_empty(),
        "{:?}",
        s.writes_since(before)
    );
    // The way out: ha = true with s1 alone restarts it with cluster-init
    // (K3s migrates), after which the servers join.
    s.text = s.text.replace("ha = false", "ha = true");
    s.inv = Inventory::parse(&s.text, "t.toml", s.dir.path()).expect("valid inventory");
    assert!(!s.apply().await.failed());
    assert!(s.config("s1").contains("cluster-init: true"));
    assert_eq!(
        s.fleet.node("s1").lock().expect("node").datastore,
        Some("etcd")
    );
    s.with_servers(&[("s2", "10.0.0.8"), ("s3", "10.0.0.9")]);
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    assert!(s.config("s3").contains("server: https://10.0.0.1:6443"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_first_ha_server_down_the_rest_converge_through_another_server() {
    let s = setup(3, 1).await;
    assert!(!s.apply().await.failed());
    let kubeconfig = std::fs::read_to_string(s.dir.path().join("state/kubeconfig"));
    let kubeconfig = kubeconfig.expect("kubeconfig written");
    s.fleet.node("s1").lock().expect("node").down = true;
    // Drift on the agent, which needs its join token from a server.
    s.fleet
        .node("a1")
        .lock()
        .expect("node")
        .files
        .insert(paths::CONFIG.into(), b"edited".to_vec());
    let report = s.apply().await;
    assert!(node(&report, "s1").unreachable.is_some(), "{report:#?}");
    for n in ["s2", "s3", "a1"] {
        let r = node(&report, n);
        assert!(r.failed.is_none() && r.unreachable.is_none(), "{r:#?}");
    }
    assert!(
        node(&report, "a1").count(crate::report::Status::Changed) > 0,
        "{report:#?}"
    );
    assert!(s.config("a1").contains("server: https://10.0.0.1:6443"));
    // The run's API went through s2; the file still names the API address.
    let servers = s.api.servers.lock().expect("servers").clone();
    assert_eq!(
        servers.last().map(String::as_str),
        Some("https://10.0.0.2:6443"),
        "{servers:?}"
    );
    let after = std::fs::read_to_string(s.dir.path().join("state/kubeconfig")).expect("kubeconfig");
    assert_eq!(after, kubeconfig);
}

/// The token a node's config.yaml carries.
fn config_token(config: &str) -> String {
    config
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .map(|t| t.trim().trim_matches('"').to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn joiners_get_the_first_servers_full_token_even_when_the_users_token_holds_a_colon() {
    let mut s = setup_with(3, 0, "k3s_version = \"v1.32.5+k3s1\"").await;
    let file = s.dir.path().join("tok");
    std::fs::write(&file, "pass:word\n").expect("token file");
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    s.text = s
        .text
        .replace("name = \"t\"", "name = \"t\"\ntoken = { file = \"tok\" }");
    s.inv = Inventory::parse(&s.text, "t.toml", s.dir.path()).expect("valid inventory");
    let report = s.apply().await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(config_token(&s.config("s1")), "pass:word");
    // K3s splits a token once at "::" and once at ":": the password is
    // "pass:word", and the joiners pin the CA with the first server's hash.
    for joiner in ["s2", "s3"] {
        assert_eq!(
            config_token(&s.config(joiner)),
            "K10abc::server:pass:word",
            "{joiner}"
        );
    }
}
