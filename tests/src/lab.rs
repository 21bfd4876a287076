//! The lab seen from Rust: one instance of `tests/lab/lab` (id from
//! `PICTL_LAB_ID`), its nodes, key, known_hosts, inventory and mirror, SSH to
//! its nodes with host key checking on, and the fault verbs.
//!
//! Everything goes through the lab tool so there is one implementation of the
//! lab; the only thing done here directly is SSH (with the same options as
//! `lab ssh`) and the leak check, which must not trust the tool it checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

mod available;
mod leaks;

pub use available::{arm64_or_skip, arm64_unavailable_reason, lab_or_skip, lab_unavailable_reason};
pub use leaks::leaks;

/// A lab node as pictl sees it: a name and an address reachable from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub address: String,
}

/// A running lab instance. Dropping it tears it down (unless `down` already did).
#[derive(Debug)]
pub struct Lab {
    id: u32,
    dir: PathBuf,
    nodes: Vec<Node>,
    pi: Vec<String>,
    /// Each node's architecture (`amd64`, `arm64`), as `lab env` reports it.
    arches: Vec<(String, String)>,
    mirror_url: String,
    up_seconds: Option<f64>,
    up_wall: Duration,
    torn_down: bool,
}

/// The repository root (the lab's state dirs live there).
pub fn repo_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

/// Path of the lab tool.
pub fn tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("lab")
        .join("lab")
}

/// The lab instance the test suite uses unless `PICTL_LAB_ID` says
/// otherwise: not 0, which `tests/lab/demo.sh` leaves up for the user.
pub const TEST_INSTANCE: u32 = 10;

/// The instance id tests use: `PICTL_LAB_ID`, default [`TEST_INSTANCE`].
pub fn instance_id() -> Result<u32> {
    match std::env::var("PICTL_LAB_ID") {
        Ok(v) if !v.is_empty() => {
            let id: u32 = v
                .trim()
                .parse()
                .with_context(|| format!("PICTL_LAB_ID={v:?} is not a number"))?;
            if id > 254 {
                bail!("PICTL_LAB_ID={id} is out of range 0..254");
            }
            Ok(id)
        }
        _ => Ok(TEST_INSTANCE),
    }
}

/// The state dir of instance `id`, as the lab tool names it.
pub fn state_dir(id: u32) -> PathBuf {
    if id == 0 {
        repo_root().join(".lab")
    } else {
        repo_root().join(format!(".lab-{id}"))
    }
}

/// Run the lab tool for instance `id`; stderr (progress) goes to ours.
fn run_tool(id: u32, args: &[&str]) -> Result<Output> {
    Command::new(tool())
        .arg("--id")
        .arg(id.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {}", tool().display(), args.join(" ")))
}

fn tool_ok(id: u32, args: &[&str]) -> Result<String> {
    let out = run_tool(id, args)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "lab {} failed ({}): {}",
            args.join(" "),
            out.status,
            stdout.trim()
        );
    }
    Ok(stdout)
}

/// Undo bash's `printf %q` for the simple values the lab prints.
fn unquote(v: &str) -> String {
    let v = v.trim();
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return inner.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), unquote(v)))
        .collect()
}

/// The "ssh-ready in X s" figure the tool prints after `up`.
fn parse_ready_seconds(stdout: &str) -> Option<f64> {
    let rest = stdout.split("ssh-ready in ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Lab {
    /// Bring up a fresh lab of `n_nodes` (instance from `PICTL_LAB_ID`), with
    /// the given nodes emulating a Raspberry Pi. Whatever that instance had
    /// before (a previous run, a crashed one) is torn down first, so every
    /// test binary starts from a clean, known lab.
    pub fn start(n_nodes: usize, pi_nodes: &[&str]) -> Result<Lab> {
        Lab::start_arch(n_nodes, pi_nodes, &[])
    }

    /// Like [`Lab::start`], with some nodes of another architecture
    /// (`("node3", "arm64")`: real aarch64 userland under qemu-user).
    pub fn start_arch(n_nodes: usize, pi_nodes: &[&str], arch: &[(&str, &str)]) -> Result<Lab> {
        if let Some(reason) = lab_unavailable_reason() {
            bail!("the lab cannot be created: {reason}");
        }
        if arch.iter().any(|(_, a)| *a == "arm64")
            && let Some(reason) = arm64_unavailable_reason()
        {
            bail!("arm64 lab nodes cannot be created: {reason}");
        }
        let id = instance_id()?;
        tool_ok(id, &["down"])?;
        let n = n_nodes.to_string();
        let mut args = vec!["up".to_string(), n];
        for p in pi_nodes {
            args.push("--pi".into());
            args.push(p.to_string());
        }
        for (node, a) in arch {
            args.push("--arch".into());
            args.push(format!("{node}={a}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let stdout = tool_ok(id, &args)?;
        let up_wall = started.elapsed();
        let mut lab = Lab::attach_id(id)?;
        lab.up_seconds = parse_ready_seconds(&stdout);
        lab.up_wall = up_wall;
        lab.pi = pi_nodes.iter().map(|s| s.to_string()).collect();
        if lab.nodes.len() != n_nodes {
            bail!("lab reports {} nodes after `up {n_nodes}`", lab.nodes.len());
        }
        Ok(lab)
    }

    /// Attach to an instance that is already up (without owning its teardown
    /// any less: dropping the result still takes it down).
    pub fn attach() -> Result<Lab> {
        Lab::attach_id(instance_id()?)
    }

    fn attach_id(id: u32) -> Result<Lab> {
        let env = parse_env(&tool_ok(id, &["env"])?);
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| anyhow!("`lab env` did not print {k}"))
        };
        let arches = get("LAB_ARCHES")?
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect();
        let nodes = get("LAB_NODES")?
            .split_whitespace()
            .map(|pair| {
                let (name, address) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow!("bad LAB_NODES entry {pair:?}"))?;
                Ok(Node {
                    name: name.to_string(),
                    address: address.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if nodes.is_empty() {
            bail!("lab {id} is not up");
        }
        Ok(Lab {
            id,
            dir: PathBuf::from(get("LAB_DIR")?),
            nodes,
            pi: Vec::new(),
            arches,
            mirror_url: get("LAB_MIRROR_URL")?,
            up_seconds: None,
            up_wall: Duration::ZERO,
            torn_down: false,
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The state dir (key, known_hosts, inventory, mirror, per-node files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| anyhow!("lab has no node {name:?}"))
    }

    /// The node's architecture in the lab (`amd64` unless `up --arch` said).
    pub fn arch(&self, name: &str) -> Result<&str> {
        self.node(name)?;
        Ok(self
            .arches
            .iter()
            .find(|(n, _)| n == name)
            .map_or("amd64", |(_, a)| a.as_str()))
    }

    pub fn address(&self, name: &str) -> Result<&str> {
        Ok(self.node(name)?.address.as_str())
    }

    /// The private key authorized for root and `lab` on every node (0600).
    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// known_hosts with each node's real ed25519 host key, by address and name.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The generated pictl inventory for this lab (paths relative to itself).
    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.toml")
    }

    /// Directory served to the nodes at `mirror_url()`.
    pub fn mirror_dir(&self) -> PathBuf {
        self.dir.join("mirror")
    }

    pub fn mirror_url(&self) -> &str {
        &self.mirror_url
    }

    /// Fill `mirror_dir()` with the K3s release layout by running
    /// `tests/k3s-sim/mirror.sh` (owned by the simulator), for tests that
    /// install K3s from the lab's mirror.
    pub fn populate_mirror(&self) -> Result<()> {
        let script = repo_root().join("tests").join("k3s-sim").join("mirror.sh");
        if !script.is_file() {
            bail!("{} does not exist", script.display());
        }
        let status = Command::new(&script)
            .arg(self.mirror_dir())
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", script.display());
        }
        Ok(())
    }

    /// The host's address on the lab bridge.
    pub fn host_address(&self) -> String {
        format!("10.77.{}.1", self.id)
    }

    /// Seconds from a cached base image to all nodes ssh-ready, as measured by
    /// the tool during `start` (None for an attached lab).
    pub fn up_seconds(&self) -> Option<f64> {
        self.up_seconds
    }

    /// Wall time of the whole `lab up` during `start` (includes building the
    /// base image when it was not cached yet).
    pub fn up_wall(&self) -> Duration {
        self.up_wall
    }

    /// An `ssh` command to `user@node` with the lab key and known_hosts and
    /// strict host key checking; append the remote command (and set stdin).
    pub fn ssh_command(&self, node: &str, user: &str) -> Result<Command> {
        self.ssh_command_with_known_hosts(node, user, &self.known_hosts())
    }

    /// Like `ssh_command` but checking the host key against another
    /// known_hosts file (ssh takes the first value of an option, so this
    /// cannot be overridden by appending `-o` to `ssh_command`).
    pub fn ssh_command_with_known_hosts(
        &self,
        node: &str,
        user: &str,
        known_hosts: &Path,
    ) -> Result<Command> {
        let address = self.address(node)?;
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg("/dev/null")
            .arg("-i")
            .arg(self.key())
            .args(["-o", "IdentitiesOnly=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "ConnectTimeout=5"])
            .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"])
            .args(["-o", "LogLevel=ERROR"])
            .arg(format!("{user}@{address}"));
        Ok(cmd)
    }

    /// Run `cmd` (a shell command line) on `node` as `user`.
    pub fn ssh(&self, node: &str, user: &str, cmd: &str) -> Result<Output> {
        self.ssh_command(node, user)?
            .arg("--")
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running ssh to {node}"))
    }

    /// Run `cmd` on `node` as `user`; its trimmed stdout, or an error with
    /// the exit status and stderr when it fails.
    pub fn ssh_ok(&self, node: &str, user: &str, cmd: &str) -> Result<String> {
        let out = self.ssh(node, user, cmd)?;
        if !out.status.success() {
            bail!(
                "`{cmd}` on {node} as {user} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Run any lab verb on this instance; the tool's stdout.
    pub fn tool(&self, args: &[&str]) -> Result<String> {
        tool_ok(self.id, args)
    }

    /// Clean poweroff of `node`.
    pub fn stop(&self, node: &str) -> Result<String> {
        self.node(node)?;
        tool_ok(self.id, &["stop", node])
    }

    /// Boot `node` again; returns once it is ssh-ready (unless it is cut).
    pub fn start_node(&self, node: &str) -> Result<String> {
        self.node(node)?;
        tool_ok(self.id, &["start", node])
    }

    /// SIGKILL the node's PID 1, like pulling its power.
    pub fn kill(&self, node: &str) -> Result<String> {
        self.node(node)?;
        tool_ok(self.id, &["kill", node])
    }

    /// Reboot `node` from inside; returns once it is ssh-ready again.
    pub fn reboot(&self, node: &str) -> Result<String> {
        self.node(node)?;
        tool_ok(self.id, &["reboot", node])
    }

    /// Install another Pi kernel on `node` (`memory-off`: Raspberry Pi OS's,
    /// memory cgroup on only with `cgroup_enable=memory`; `memory-on`); it
    /// runs from the node's next boot (`lab pi-kernel`).
    pub fn pi_kernel(&self, node: &str, kernel: &str) -> Result<String> {
        self.node(node)?;
        tool_ok(self.id, &["pi-kernel", node, kernel])
    }

    /// Take `node` off the network.
    pub fn cut(&self, node: &str) -> Result<String> {
        self.node(node)?;
        tool_ok(self.id, &["cut", node])
    }

    /// Put `node` back on the network.
    pub fn uncut(&self, node: &str) -> Result<String> {
        self.node(node)?;
        tool_ok(self.id, &["uncut", node])
    }

    /// The tool's status table.
    pub fn status(&self) -> Result<String> {
        tool_ok(self.id, &["status"])
    }

    /// Each node's state as the tool reports it: running, stopped or cut.
    pub fn node_states(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .status()?
            .lines()
            .filter(|l| l.starts_with("node"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.first()?.to_string(), f.get(2)?.to_string()))
            })
            .collect())
    }

    /// Bring every node back to running and connected (after a failed test
    /// left one stopped or cut).
    pub fn heal(&self) -> Result<()> {
        for (node, state) in self.node_states()? {
            match state.as_str() {
                "cut" => {
                    self.uncut(&node)?;
                }
                "stopped" => {
                    self.start_node(&node)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Run `up` again with the same shape (a healthy lab is kept as it is).
    pub fn up_again(&self) -> Result<String> {
        let mut args = vec!["up".to_string(), self.nodes.len().to_string()];
        for p in &self.pi {
            args.push("--pi".into());
            args.push(p.clone());
        }
        for (node, a) in self.arches.iter().filter(|(_, a)| a != "amd64") {
            args.push("--arch".into());
            args.push(format!("{node}={a}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tool_ok(self.id, &args)
    }

    /// Tear the lab down; how long it took.
    pub fn down(&mut self) -> Result<Duration> {
        let started = Instant::now();
        tool_ok(self.id, &["down"])?;
        self.torn_down = true;
        Ok(started.elapsed())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.torn_down
            && let Err(e) = tool_ok(self.id, &["down"])
        {
            eprintln!("lab: teardown of instance {} failed: {e:#}", self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquote_undoes_bash_printf_q() {
        assert_eq!(
            unquote(r"node1=10.77.1.11\ node2=10.77.1.12"),
            "node1=10.77.1.11 node2=10.77.1.12"
        );
        assert_eq!(unquote("''"), "");
        assert_eq!(unquote("/work/main/.lab-1"), "/work/main/.lab-1");
    }

    #[test]
    fn ready_seconds_are_read_from_up_output() {
        assert_eq!(
            parse_ready_seconds("lab[1]: 3 nodes ssh-ready in 2.4 s (from cached base)\n"),
            Some(2.4)
        );
        assert_eq!(
            parse_ready_seconds("lab[1]: 3 nodes ssh-ready (already up)\n"),
            None
        );
    }

    #[test]
    fn state_dir_follows_the_instance_id() {
        assert!(state_dir(0).ends_with(".lab"));
        assert!(state_dir(7).ends_with(".lab-7"));
    }
}
