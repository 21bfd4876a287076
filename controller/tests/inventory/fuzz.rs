//! The loader fuzzed for a bounded time (issue 23 item 10): arbitrary
//! bytes, one insert into a small inventory, and several edits anywhere in
//! one with every section never make it panic or hang (each case has a
//! deadline), and a refusal always names a place in the file.

use std::path::Path;

use pictl::inventory::Inventory;
use proptest::prelude::*;

use super::{NODES, cluster_ssh};

/// An inventory with every section and most keys, for the fuzzers to cut.
const RICH: &str = r#"[cluster]
name = "demo"
channel = "stable"
channel_url = "https://update.k3s.io/v1-release/channels"
mirror = "https://github.com/k3s-io/k3s/releases/download"
tls_san = ["k3s.lan", "10.0.0.100"]
api_address = "10.0.0.100"
ha = true
token = { env = "K3S_TOKEN" }
server_config = { "cluster-cidr" = "10.42.0.0/16", "disable" = ["traefik"], "write-kubeconfig-mode" = "0600" }
agent_config = { "node-label" = ["zone=a"] }
[ssh]
user = "pi"
agent = true
host_key_policy = "accept-new"
sudo_password = { file = "pw" }
[agent]
enabled = true
metrics = "pod-network"
[workload]
playbooks = ["web"]
[[nodes]]
name = "s1"
address = "10.0.0.1"
role = "server"
arch = "arm64"
labels = { zone = "shelf" }
taints = ["dedicated=db:NoSchedule"]
k3s_config = { "node-ip" = "10.0.0.1" }
[[nodes]]
name = "a1"
address = "fe80::1"
role = "agent"
port = 2222
"#;

proptest! {
    // Bounded in CI: a fixed number of cases, each with a deadline (a hang
    // in the loader fails the case instead of stalling the suite).
    #![proptest_config(ProptestConfig { cases: 512, timeout: 5_000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Inventory::parse_bytes(&bytes, "fuzz.toml", Path::new("/nonexistent"));
    }

    #[test]
    fn mutated_valid_inventories_never_panic(cut in 0usize..400, insert in "[\\[\\]{}=\"., a-z0-9\n#]{0,12}") {
        let mut text = format!("{}{NODES}", cluster_ssh());
        let at = cut.min(text.len());
        if text.is_char_boundary(at) {
            text.insert_str(at, &insert);
        }
        let _ = Inventory::parse(&text, "fuzz.toml", Path::new("/nonexistent"));
    }

    /// Several edits (a cut, an insert, a deletion) anywhere in an
    /// inventory with every section: no panic, and a refusal always names
    /// a place in the file.
    #[test]
    fn every_section_cut_anywhere_is_loaded_or_refused_with_a_location(
        edits in proptest::collection::vec((0usize..1200, 0usize..8, "[\\[\\]{}=\"., a-z0-9\n#:-]{0,10}"), 1..5),
    ) {
        let mut text = RICH.to_string();
        for (at, delete, insert) in edits {
            let at = at.min(text.len());
            let end = (at + delete).min(text.len());
            if text.is_char_boundary(at) && text.is_char_boundary(end) {
                text.replace_range(at..end, &insert);
            }
        }
        if let Err(d) = Inventory::parse(&text, "fuzz.toml", Path::new("/nonexistent")) {
            for p in d.iter() {
                let shown = p.to_string();
                prop_assert!(shown.starts_with("fuzz.toml:"), "{shown}");
            }
        }
    }
}
