//! Node-to-node artifact copies: each artifact crosses the controller's link
//! once per arch.
//!
//! When several nodes of one arch need the K3s binary, the controller
//! uploads it (and the health agent) once, to one of them (the seed), which
//! serves the staged copies with `pictl-agent share`: bound to the address
//! the controller reached it on, an ephemeral port, a random path per run,
//! for a bounded time, as an unprivileged transient unit. The other nodes
//! fetch with curl and install only when the sha256 matches what the
//! controller read from the release's checksum file: integrity comes from
//! the hash, so the LAN and the seed need not be trusted, and nothing
//! served is secret. Any failure (no seed, no curl, a mismatch) falls back
//! to a direct upload.
//!
//! The edge: [`choose`] is pure (who is the seed, who fetches from it); the
//! scripts and commands here are data; running them is the relay phase's
//! (`runner/phases/relay.rs`) and the steps', through `Transport`.

use std::time::Duration;

use serde::Serialize;

use crate::arch::Arch;
use crate::transport::{Output, RemoteCommand, Transport, TransportError};

/// Where the seed keeps its staged copies (world-readable: the share
/// server runs as a dynamic user; the files are public releases).
pub const STAGE_ROOT: &str = "/var/lib/pictl-relay";
/// How long a share server may live, whatever happens to the controller.
pub const SHARE_LIFETIME: Duration = Duration::from_secs(1800);
/// The most a fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a node's copy of an artifact comes from, in a step's typed plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub enum Source {
    /// Uploaded by the controller: the default, and every fallback.
    #[default]
    Controller,
    /// This node is its arch's seed: uploaded once into its staging
    /// directory, installed from there. `path` is known once staged.
    Staged {
        #[serde(skip)]
        path: Option<String>,
    },
    /// Fetched over the LAN from `seed`; `url` is known once it serves.
    Seed {
        seed: String,
        #[serde(skip)]
        url: Option<String>,
    },
}

impl Source {
    /// Where to install from on the node (a file or a URL), if not the
    /// controller.
    pub fn location(&self) -> Option<&str> {
        match self {
            Source::Controller => None,
            Source::Staged { path } => path.as_deref(),
            Source::Seed { url, .. } => url.as_deref(),
        }
    }

    /// What a planned change says after the new value ("" for an upload).
    pub fn suffix(&self) -> String {
        match self {
            Source::Controller => String::new(),
            Source::Staged { .. } => " (seed: the one upload from the controller)".into(),
            Source::Seed { seed, .. } => format!(" (fetched from {seed})"),
        }
    }

    /// For messages: "the seed node1", "this node's staged copy".
    pub fn describe(&self) -> String {
        match self {
            Source::Controller => "the controller".into(),
            Source::Staged { .. } => "this node's staged copy".into(),
            Source::Seed { seed, .. } => format!("the seed {seed}"),
        }
    }
}

/// An artifact pictl installs on nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Artifact {
    K3s,
    Agent,
    /// K3s's image archive for the arch (`[cluster] airgap_images`).
    AirgapImages,
}

impl Artifact {
    pub fn file_name(self) -> &'static str {
        match self {
            Artifact::K3s => "k3s",
            Artifact::Agent => "pictl-agent",
            Artifact::AirgapImages => "k3s-airgap-images.tar.zst",
        }
    }
}

/// What one node of an arch needs, as [`choose`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub node: String,
    pub arch: Arch,
    pub k3s: bool,
    pub agent: bool,
    /// Whether it needs K3s's image archive.
    pub images: bool,
    /// Whether the arch has a health agent binary (it runs the server).
    pub agent_available: bool,
}

/// One arch's relay: the seed, what it stages, and who fetches what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchRelay {
    pub arch: Arch,
    pub seed: String,
    /// What the seed stages: the one upload of each from the controller.
    pub staged: Vec<Artifact>,
    /// Nodes that fetch K3s from the seed.
    pub k3s: Vec<String>,
    /// Nodes that fetch the agent from the seed.
    pub agent: Vec<String>,
    /// Nodes that fetch K3s's image archive from the seed.
    pub images: Vec<String>,
}

/// Seeds per arch: an arch is relayed when at least two of its nodes need
/// the K3s binary or the image archive, and it has an agent binary to
/// serve with. The seed is the first node in inventory order that needs
/// either (servers converge first, so in a usual inventory it is a
/// server); it stages what any of its arch's nodes needs (and the agent,
/// which serves), and the others fetch from it. Everything else is
/// uploaded directly.
pub fn choose(needs: &[Need]) -> Vec<ArchRelay> {
    let mut arches: Vec<Arch> = needs.iter().map(|n| n.arch).collect();
    arches.sort();
    arches.dedup();
    let mut out = Vec::new();
    for arch in arches {
        let mine: Vec<&Need> = needs.iter().filter(|n| n.arch == arch).collect();
        let count = |f: fn(&Need) -> bool| mine.iter().filter(|n| f(n)).count();
        let (k3s, images) = (count(|n| n.k3s), count(|n| n.images));
        if (k3s < 2 && images < 2) || !mine.iter().all(|n| n.agent_available) {
            continue;
        }
        let Some(first) = mine.iter().find(|n| n.k3s || n.images) else {
            continue;
        };
        let seed = first.node.clone();
        let others = |f: fn(&Need) -> bool| -> Vec<String> {
            mine.iter()
                .filter(|n| f(n) && n.node != seed)
                .map(|n| n.node.clone())
                .collect()
        };
        let mut staged = Vec::new();
        if k3s > 0 {
            staged.push(Artifact::K3s);
        }
        staged.push(Artifact::Agent);
        if images > 0 {
            staged.push(Artifact::AirgapImages);
        }
        out.push(ArchRelay {
            arch,
            staged,
            k3s: others(|n| n.k3s),
            agent: others(|n| n.agent),
            images: others(|n| n.images),
            seed,
        });
    }
    out
}

/// `$1` target, `$2` octal mode, `$3` expected sha256, `$4` source (an
/// absolute path on this node, or an `http://` URL), `$5` the most bytes a
/// download may have, `$6` its time limit in seconds, `$7` `yes` to record
/// the hash in the node's facts cache (a release binary is always large). The target is replaced atomically, and only by bytes
/// whose sha256 matched; curl's own exit statuses stay apart from ours.
pub const INSTALL_SCRIPT: &str = concat!(
    r#"set -eu
target=$1 mode=$2 want=$3 from=$4 max=$5 keep_hash=${7:-no}
dir=${target%/*}
base=${target##*/}
mkdir -p -- "$dir"
tmp=$(mktemp "$dir/.$base.pictl-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 1' HUP INT TERM PIPE
case $from in
  http://*)
    command -v curl >/dev/null 2>&1 || { echo "curl is not installed" >&2; exit 87; }
    # The cap bounds the write itself: curl before 8.4 (Debian 12 has 7.88)
    # ignores --max-filesize for a body sent without a length. head stops
    # one byte past the cap; curl's own status comes back on fd 3.
    rc=$( { { curl --fail --silent --show-error --noproxy '*' --proto =http --connect-timeout 5 \
      --max-time "$6" --max-filesize "$max" --url "$from" && r=0 || r=$?; echo "$r" >&3; } \
      | head -c "$((max + 1))" > "$tmp"; } 3>&1 )
    if [ "$(wc -c < "$tmp")" -gt "$max" ]; then echo "larger than $max bytes" >&2; exit 89; fi
    [ "$rc" = 0 ] || exit 88 ;;
  /*) cat -- "$from" > "$tmp" ;;
  *) echo "not a file or an http URL" >&2; exit 2 ;;
esac
"#,
    crate::transport::upload::verify_and_install!()
);

/// Why a copy from the seed was not installed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("curl is not installed on the node")]
    NoCurl,
    #[error("the copy is larger than the size cap: cut off and refused, nothing installed")]
    TooLarge,
    #[error(
        "the copy's sha256 is {actual}, not the release's {expected}: refused, nothing installed"
    )]
    Mismatch { expected: String, actual: String },
    #[error("fetching failed (exit {status}): {stderr}")]
    Failed { status: i32, stderr: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Installs `path` from `from` (see [`INSTALL_SCRIPT`]) on the node.
pub async fn install(
    t: &dyn Transport,
    from: &str,
    path: &str,
    mode: u32,
    sha256: &str,
    max_bytes: u64,
    sudo: bool,
) -> Result<(), FetchError> {
    let cmd = RemoteCommand::script(INSTALL_SCRIPT)
        .args([path, &format!("{:04o}", mode & 0o7777), sha256, from])
        .arg(max_bytes.to_string())
        .arg(FETCH_TIMEOUT.as_secs().to_string())
        .arg("yes")
        .sudo(sudo)
        .timeout(FETCH_TIMEOUT + Duration::from_secs(30));
    fetch_result(sha256, &t.exec(&cmd).await?)
}

fn fetch_result(expected: &str, out: &Output) -> Result<(), FetchError> {
    if out.success() {
        return Ok(());
    }
    let stderr = out.stderr_text();
    if out.status == 86
        && let Some(actual) = stderr
            .lines()
            .find_map(|l| l.strip_prefix("pictl-sha256-mismatch "))
    {
        return Err(FetchError::Mismatch {
            expected: expected.to_owned(),
            actual: actual.trim().to_owned(),
        });
    }
    if out.status == 87 {
        return Err(FetchError::NoCurl);
    }
    if out.status == 89 {
        return Err(FetchError::TooLarge);
    }
    let stderr = stderr.lines().last().unwrap_or_default().to_owned();
    Err(FetchError::Failed {
        status: out.status,
        stderr: crate::escape_controls(&stderr).into_owned(),
    })
}

/// One run's names on a seed: its staging directory, transient unit and
/// URL prefix, all from one random id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub id: String,
}

impl Share {
    pub fn new() -> Self {
        let bytes: [u8; 16] = rand::random();
        Self {
            id: hex::encode(bytes),
        }
    }

    pub fn dir(&self) -> String {
        format!("{STAGE_ROOT}/{}", &self.id[..12])
    }

    pub fn staged(&self, a: Artifact) -> String {
        format!("{}/{}", self.dir(), a.file_name())
    }

    pub fn unit(&self) -> String {
        format!("pictl-share-{}", &self.id[..12])
    }

    pub fn url_path(&self, a: Artifact) -> String {
        format!("/{}/{}", self.id, a.file_name())
    }

    /// The URL another node fetches `a` from.
    pub fn url(&self, ip: std::net::IpAddr, port: u16, a: Artifact) -> String {
        let host = match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        };
        format!("http://{host}:{port}{}", self.url_path(a))
    }
}

impl Default for Share {
    fn default() -> Self {
        Self::new()
    }
}

/// The address the controller's SSH connection arrived on (the node's own
/// address on the controller's network): read without sudo, which would
/// clear the environment.
pub fn address_command() -> RemoteCommand {
    RemoteCommand::script("printf '%s\\n' \"${SSH_CONNECTION:-}\"").timeout(Duration::from_secs(10))
}

/// The node's address from `SSH_CONNECTION` ("client port server port").
pub fn parse_address(out: &Output) -> Option<std::net::IpAddr> {
    let text = out.stdout_text();
    let server = text.split_whitespace().nth(2)?;
    server.parse().ok()
}

/// `$1` staging dir, `$2` unit, `$3` listen address, `$4` lifetime in
/// seconds, `$5` the addresses it answers (space-separated), then
/// `--file URLPATH=FILE` words for the server. Starts
/// `pictl-agent share` from the staging dir as a transient, sandboxed unit
/// under a dynamic user, and prints the port it bound.
pub const START_SCRIPT: &str = r#"set -eu
dir=$1 unit=$2 listen=$3 secs=$4 allow=$5; shift 5
chmod 0755 -- "${dir%/*}" "$dir"
systemd-run --quiet --collect --unit="$unit" \
  --property="IPAddressAllow=$allow" --property=IPAddressDeny=any \
  --property=RuntimeMaxSec="$secs" --property=DynamicUser=yes \
  --property=RuntimeDirectory="$unit" --property=NoNewPrivileges=yes \
  --property=CapabilityBoundingSet= --property=PrivateDevices=yes \
  --property=ProtectHome=yes --property=ProtectSystem=strict \
  --property="RestrictAddressFamilies=AF_INET AF_INET6" \
  --property=MemoryMax=64M --property=TasksMax=48 \
  -- "$dir/pictl-agent" share --listen "$listen" --for "$secs" --port-file "/run/$unit/port" "$@"
i=0
until [ -s "/run/$unit/port" ]; do
  i=$((i+1))
  if [ $i -gt 100 ] || ! systemctl is-active --quiet "$unit"; then
    systemctl status --no-pager --lines=5 "$unit" >&2 || true
    systemctl stop "$unit" 2>/dev/null || true
    exit 1
  fi
  sleep 0.05
done
cat "/run/$unit/port"
"#;

/// The command that starts the seed's server for `artifacts`, answering
/// only `peers` (the fetching nodes' own addresses: systemd's IP filter on
/// the transient unit drops everyone else's packets).
pub fn start_command(
    share: &Share,
    listen: std::net::IpAddr,
    artifacts: &[Artifact],
    peers: &[std::net::IpAddr],
    sudo: bool,
) -> RemoteCommand {
    let listen = std::net::SocketAddr::new(listen, 0).to_string();
    let allow: Vec<String> = peers.iter().map(ToString::to_string).collect();
    let mut cmd = RemoteCommand::script(START_SCRIPT)
        .args([share.dir(), share.unit(), listen])
        .arg(SHARE_LIFETIME.as_secs().to_string())
        .arg(allow.join(" "));
    for &a in artifacts {
        cmd = cmd
            .arg("--file")
            .arg(format!("{}={}", share.url_path(a), share.staged(a)));
    }
    cmd.sudo(sudo).timeout(Duration::from_secs(30))
}

/// The port the start script printed.
pub fn parse_port(out: &Output) -> Option<u16> {
    out.stdout_text().trim().parse().ok().filter(|&p| p != 0)
}

/// `$1` unit, `$2` this run's staging dir: stops the server and removes
/// this run's copies only (another controller's run on the same seed, which
/// the cluster lock on this controller does not see, keeps its own); the
/// staging root goes once it is empty.
pub const STOP_SCRIPT: &str = r#"set -u
systemctl stop "$1" 2>/dev/null || true
rm -rf -- "$2"
rmdir -- "${2%/*}" 2>/dev/null || true
"#;

pub fn stop_command(share: &Share, sudo: bool) -> RemoteCommand {
    RemoteCommand::script(STOP_SCRIPT)
        .args([share.unit(), share.dir()])
        .sudo(sudo)
        .timeout(Duration::from_secs(30))
}

#[cfg(test)]
mod tests;
