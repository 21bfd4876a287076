//! The fake node's answers to the relay's commands (see `crate::relay`).

use super::{FakeTransport, NodeState, ok};
use crate::artifacts::sha256_hex;
use crate::transport::{Output, RemoteCommand};

impl FakeTransport {
    /// The relay's commands (see `crate::relay`): the address query, the
    /// share server, installs from a staged file or a seed's URL, the stop.
    pub(super) fn relay(
        &self,
        cmd: &RemoteCommand,
        script: &str,
        s: &mut NodeState,
    ) -> Option<Output> {
        let args = cmd.arguments();
        let fail = |status: i32, why: &str| Output {
            status,
            stderr: why.as_bytes().to_vec(),
            ..Output::default()
        };
        if script.contains("SSH_CONNECTION") {
            return Some(ok(format!("10.0.0.254 50000 {} 22\n", self.address)));
        }
        if script == crate::relay::START_SCRIPT {
            if s.share_fails {
                return Some(fail(1, "Failed to start transient service unit"));
            }
            s.share_peers = args[7].split_whitespace().map(String::from).collect();
            for pair in args[8..].chunks(2) {
                let (path, file) = pair[1].split_once('=')?;
                s.shares.insert(path.to_string(), file.to_string());
            }
            return Some(ok("4242\n".into()));
        }
        if script == crate::relay::STOP_SCRIPT {
            s.shares.clear();
            let dir = format!("{}/", args[4]);
            s.files.retain(|p, _| !p.starts_with(&dir));
            return Some(ok(String::new()));
        }
        if script != crate::relay::INSTALL_SCRIPT {
            return None;
        }
        let (target, want, from) = (&args[3], &args[5], &args[6]);
        let bytes = match from.strip_prefix("http://") {
            Some(_) if s.no_curl => return Some(fail(87, "curl is not installed")),
            Some(rest) => self.fetch(rest),
            None => s.files.get(from).cloned(),
        };
        let Some(bytes) = bytes else {
            return Some(fail(88, "curl: (22) The requested URL returned error: 404"));
        };
        if sha256_hex(&bytes) != *want {
            return Some(fail(
                86,
                &format!("pictl-sha256-mismatch {}\n", sha256_hex(&bytes)),
            ));
        }
        s.files.insert(target.clone(), bytes);
        Some(ok(String::new()))
    }

    /// What the node at `addr:port/path` serves (never this node: a seed
    /// does not fetch from itself).
    fn fetch(&self, rest: &str) -> Option<Vec<u8>> {
        let (host, path) = rest.split_once('/')?;
        let addr = host.rsplit_once(':')?.0;
        let nodes = self.fleet.nodes.lock().expect("fleet").clone();
        let seed = self
            .fleet
            .addresses
            .lock()
            .expect("addresses")
            .get(addr)?
            .clone();
        let state = nodes.get(&seed)?.lock().expect("seed");
        // systemd's IP filter: a peer not allowed gets no answer.
        if !state.share_peers.contains(&self.address) {
            return None;
        }
        let file = state.shares.get(&format!("/{path}"))?;
        state.files.get(file).cloned()
    }
}
