//! `plan --diff`: drifted text files read once, nothing read on a
//! converged node, and never a token shown.

use super::*;

/// A node that only answers `plan --diff`'s read, and counts every call.
#[derive(Default)]
struct ReadOnlyNode {
    files: BTreeMap<String, String>,
    execs: std::sync::Mutex<Vec<Vec<String>>>,
}

impl crate::transport::Transport for ReadOnlyNode {
    fn exec<'a>(
        &'a self,
        cmd: &'a crate::transport::RemoteCommand,
    ) -> crate::transport::BoxFuture<
        'a,
        Result<crate::transport::Output, crate::transport::TransportError>,
    > {
        use base64::Engine;
        let args = cmd.arguments().to_vec();
        self.execs.lock().expect("log").push(args.clone());
        let b64 = base64::engine::general_purpose::STANDARD;
        let stdout: String = args
            .iter()
            .skip(3)
            .map(|p| {
                format!(
                    "{p} {}\n",
                    b64.encode(self.files.get(p).cloned().unwrap_or_default())
                )
            })
            .collect();
        Box::pin(async move {
            Ok(crate::transport::Output {
                stdout: stdout.into_bytes(),
                ..Default::default()
            })
        })
    }

    fn put_file<'a>(
        &'a self,
        _: &'a [u8],
        path: &'a str,
        _: u32,
        _: bool,
    ) -> crate::transport::BoxFuture<'a, Result<(), crate::transport::TransportError>> {
        panic!("plan --diff wrote {path}")
    }

    fn hold<'a>(
        &'a self,
        cmd: &'a crate::transport::RemoteCommand,
        _: &'a str,
        _: std::time::Duration,
    ) -> crate::transport::BoxFuture<
        'a,
        Result<crate::transport::Holding, crate::transport::TransportError>,
    > {
        panic!("plan --diff held {:?}", cmd.program())
    }

    fn round_trips(&self) -> u64 {
        self.execs.lock().expect("log").len() as u64
    }
}

const NODE_TOKEN: &str = "K1019f0c3a8e2d4b6a7c9e1f3a5b7d9c2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a1b3c5d7::server:3f9e2c7a1b8d4e6f";

fn diffs_of(inv: &Inventory, d: &Desired, f: &Facts, node: &ReadOnlyNode) -> Vec<diff::FileDiff> {
    let none = BTreeSet::new();
    let adoption = assess_adoption(&inv.nodes[0], f, d);
    let cx = NodeCx {
        node: &inv.nodes[0],
        facts: f,
        desired: d,
        pending: &none,
        adoption: adoption.as_ref(),
    };
    futures::executor::block_on(diff::diffs(node, &cx))
}

#[test]
fn plan_diff_reads_drifted_text_files_once_and_never_shows_a_token() {
    let inv = inventory();
    let mut d = desired(&inv);
    // pictl would write a real-looking token too.
    d.config = DesiredConfig::Known(Secret::new(render::server_config(
        &inv,
        &inv.nodes[0],
        &Secret::new(NODE_TOKEN.replace("3f9e", "0000")),
        None,
    )));
    let mut f = converged(&d);
    let on_node = format!("node-name: s1\ntoken: {NODE_TOKEN}\ndebug: true\n");
    let unit_on_node = d.unit.replace("Restart=always", "Restart=no");
    f.files
        .insert(paths::CONFIG.into(), sha256_hex(on_node.as_bytes()));
    f.files.insert(
        paths::SERVER_UNIT.into(),
        sha256_hex(unit_on_node.as_bytes()),
    );
    let node = ReadOnlyNode {
        files: [
            (paths::CONFIG.to_string(), on_node),
            (paths::SERVER_UNIT.to_string(), unit_on_node),
        ]
        .into_iter()
        .collect(),
        ..ReadOnlyNode::default()
    };
    let diffs = diffs_of(&inv, &d, &f, &node);
    let execs = node.execs.lock().expect("log").clone();
    assert_eq!(execs.len(), 1, "one round trip: {execs:?}");
    assert_eq!(
        &execs[0][3..],
        [paths::CONFIG, paths::SERVER_UNIT],
        "never the binary"
    );
    let paths_shown: Vec<&str> = diffs.iter().map(|d| d.path).collect();
    assert_eq!(paths_shown, [paths::CONFIG, paths::SERVER_UNIT]);
    let all: String = diffs.iter().map(|d| d.text.as_str()).collect();
    for secret in [
        NODE_TOKEN,
        &NODE_TOKEN.replace("3f9e", "0000"),
        "K10",
        "::server:",
    ] {
        assert!(!all.contains(secret), "{secret} in\n{all}");
    }
    assert!(all.contains("-debug: true\n"), "{all}");
    assert!(all.contains("-Restart=no\n+Restart=always\n"), "{all}");
}

#[test]
fn plan_diff_reads_nothing_on_a_converged_node_or_for_a_mode_fix() {
    let inv = inventory();
    let d = desired(&inv);
    let mut f = converged(&d);
    f.file_meta
        .insert(paths::CONFIG.into(), FileMeta::root(0o644));
    let node = ReadOnlyNode::default();
    assert!(diffs_of(&inv, &d, &f, &node).is_empty());
    assert_eq!(node.round_trips(), 0);
}
