use super::*;

#[test]
fn durations_parse_like_go() {
    assert_eq!(
        parse_duration("40s"),
        Some(std::time::Duration::from_secs(40))
    );
    assert_eq!(
        parse_duration("1m30s"),
        Some(std::time::Duration::from_secs(90))
    );
    assert_eq!(
        parse_duration("500ms"),
        Some(std::time::Duration::from_millis(500))
    );
    assert_eq!(parse_duration("40"), None);
    assert_eq!(parse_duration("4x"), None);
}

#[test]
fn cli_flags_short_long_and_lists() {
    let args: Vec<String> = [
        "-c",
        "/nonexistent-explicit",
        "--tls-san",
        "a",
        "--tls-san=b",
        "--debug",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let parsed = parse_cli(Role::Server, &args).expect("parses");
    assert!(parsed.contains(&("tls-san".into(), Val::List(vec!["a".into(), "b".into()]))));
    assert!(parsed.contains(&("debug".into(), Val::Bool(true))));
    let err = parse_cli(Role::Agent, &["--tls-san".to_string(), "x".to_string()])
        .expect_err("agent has no tls-san");
    assert!(
        err.to_string()
            .contains("flag provided but not defined: -tls-san"),
        "{err}"
    );
}

#[test]
fn unknown_config_keys_are_skipped_by_server_and_fatal_for_agent() {
    let mut m = BTreeMap::new();
    merge_file(
        Role::Server,
        Path::new("/x.yaml"),
        "node-nmae: a\ndisable-apiserver-lb: true\nnode-name: b\n",
        &mut m,
    )
    .expect("server skips unknown keys");
    assert_eq!(m.get("node-name"), Some(&Val::Str("b".into())));
    assert!(!m.contains_key("node-nmae"));
    // The agent has no filter: a server-only key is an undefined flag.
    let err = merge_file(
        Role::Agent,
        Path::new("/x.yaml"),
        "tls-san: [a]\ntoken: abc\n",
        &mut BTreeMap::new(),
    )
    .expect_err("agent refuses server keys");
    assert!(
        err.to_string()
            .contains("flag provided but not defined: -tls-san"),
        "{err}"
    );
}
