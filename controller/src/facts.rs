//! Facts: what a node is and what it runs, gathered in ONE round trip.
//!
//! A single `sh` script prints `key=value` records, each ended by a NUL
//! (see [`record`]); [`Facts::parse`] turns them into plain data that every
//! step's `check` reads. Parsing is pure and unit-tested; the script only
//! uses the shell's builtins, coreutils, systemctl and hostname, which every
//! Raspberry Pi OS and Debian image has, and starts as few processes as it
//! can: on a Pi, each one costs more than the script's own logic.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::arch::Arch;
use crate::secret::Secret;

/// Paths pictl manages on a node (hashed by the facts script).
pub mod paths {
    pub const K3S_BIN: &str = "/usr/local/bin/k3s";
    pub const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
    pub const SERVER_UNIT: &str = "/etc/systemd/system/k3s.service";
    pub const AGENT_UNIT: &str = "/etc/systemd/system/k3s-agent.service";
    /// `sha256sum` of the binary, config and unit the running K3s was
    /// (re)started with, written by pictl after each successful start.
    pub const STARTED_WITH: &str = "/var/lib/pictl/k3s-started-with";
    pub const HEALTH_AGENT_BIN: &str = "/usr/local/bin/pictl-agent";
    pub const HEALTH_AGENT_UNIT: &str = "/etc/systemd/system/pictl-agent.service";
    pub const KILLALL: &str = "/usr/local/bin/k3s-killall.sh";
    /// The health agent's API access (see `steps::agent_access`).
    pub const AGENT_TOKEN: &str = "/etc/pictl-agent/token";
    pub const AGENT_CA: &str = "/etc/pictl-agent/ca.crt";
    pub const AGENT_PUBLISH: &str = "/etc/pictl-agent/publish.conf";
    pub const AGENT_DROPIN: &str = "/etc/systemd/system/pictl-agent.service.d/api.conf";
    pub const SERVER_UNINSTALL: &str = "/usr/local/bin/k3s-uninstall.sh";
    pub const AGENT_UNINSTALL: &str = "/usr/local/bin/k3s-agent-uninstall.sh";
    pub const MANAGED: [&str; 13] = [
        K3S_BIN,
        CONFIG,
        SERVER_UNIT,
        AGENT_UNIT,
        HEALTH_AGENT_BIN,
        HEALTH_AGENT_UNIT,
        KILLALL,
        SERVER_UNINSTALL,
        AGENT_UNINSTALL,
        AGENT_TOKEN,
        AGENT_CA,
        AGENT_PUBLISH,
        AGENT_DROPIN,
    ];
}

/// One record as the script prints it: `key=value` and a NUL (a shell
/// value cannot hold one, so no escaping is needed).
pub fn record(key: &str, value: &str) -> String {
    format!("{key}={value}\0")
}

/// The script. `$1` is `secrets` on servers (read the join token and admin
/// kubeconfig) or `no-secrets`; `$2` is `record` when the hash cache may be
/// written (apply) or `no-record` (read-only commands); the managed file
/// paths follow. For each managed file it reports the sha256 (`file`) and
/// the mode and owner (`meta`, `stat -c '%a %u %g'`): both are its state.
///
/// pictl's records under /var/lib/pictl name the files K3s runs with and
/// their hashes: `umask 077` and a 0700 directory keep them root's.
pub const SCRIPT: &str = r#"set -u
umask 077
secrets=$1; record=$2; shift 2
nl='
'
# One record: key=value, NUL-terminated (a shell value cannot hold a NUL).
# Everything below runs in this shell: a process costs a Pi more than the
# script's whole logic, so only uname, date, stat, systemctl and hostname
# (and sha256sum and `k3s --version` when their cache misses) are started.
e() { printf '%s=%s\000' "$1" "$2"; }
# rd VAR FILE: FILE's text as $(cat FILE) gives it (trailing newlines cut).
rd() {
  _t=
  if [ -r "$2" ]; then
    while IFS= read -r _l || [ -n "$_l" ]; do _t=$_t$_l$nl; done <"$2"
  fi
  while :; do case $_t in *"$nl") _t=${_t%"$nl"} ;; *) break ;; esac; done
  eval "$1=\$_t"
}
e uname "$(uname -m)"
os=unknown
if [ -r /etc/os-release ]; then
  while IFS= read -r _l; do case $_l in PRETTY_NAME=*) os=${_l#PRETTY_NAME=} ;; esac; done </etc/os-release
fi
case $os in \"*\") os=${os#\"}; os=${os%\"} ;; \'*\') os=${os#\'}; os=${os%\'} ;; esac
e os "$os"
if [ -r /proc/device-tree/model ]; then rd t /proc/device-tree/model; e model "$t"; fi
rd t /etc/machine-id; e machine_id "$t"
rd t /proc/sys/kernel/hostname; e hostname "$t"
rd t /proc/sys/kernel/random/boot_id; e boot_id "$t"
e now "$(date +%s)"
rd t /sys/fs/cgroup/cgroup.controllers; e cgroup2 "$t"
t=
if [ -r /proc/cgroups ]; then
  while read -r n _ _ en; do [ "$n" = memory ] && t=$en; done </proc/cgroups
fi
e cgroup1 "$t"
for f in /boot/firmware/cmdline.txt /boot/cmdline.txt; do
  [ -f "$f" ] || continue
  rd t "$f"
  case $t in *'DO NOT EDIT'*) continue ;; esac
  e cmdline_path "$f"; e cmdline "$t"; break
done
# Hashing a 70 MB k3s on a Pi 4 (no ARMv8 crypto) takes most of a second,
# and `k3s --version` starts a 70 MB Go program: reuse a hash (and K3s's
# version) while the file's inode, size and ctime are unchanged (ctime
# cannot be set back by touch). Only `apply` records the cache.
cache=/var/lib/pictl/hashes
rd old "$cache"
x=$nl$old$nl
# The cache lists its entries in the order they are looked up (stat's,
# then K3s's version): while nothing changed, each one is the next line
# (`rest`), a short prefix match. Finding one anywhere in the cache
# (${x#*...}) costs dash time that grows with the square of the cache's
# size, 9 ms a run on a fast CPU for 12 files: only when the order broke.
rest=$old$nl
# hit KEY: the cache's value for KEY ("path inode size ctime") in $h.
hit() {
  _l=${rest%%"$nl"*}
  case $_l in "$1 "*) h=${_l#"$1 "}; rest=${rest#*"$nl"}; return 0 ;; esac
  case $x in *"$nl$1 "*) h=${x#*"$nl$1 "}; h=${h%%"$nl"*}; return 0 ;; esac
  return 1
}
seen=""; kid=""; dmode=""; smode=""
ids=$(stat -c '%i %s %.9Z %a %u %g %n' -- "$@" /var/lib/pictl /var/lib/pictl/k3s-started-with 2>/dev/null)
while read -r i s c m u g f; do
  case $f in
  /var/lib/pictl) dmode=$m; continue ;;
  /var/lib/pictl/k3s-started-with) smode=$m; continue ;;
  esac
  [ -f "$f" ] || continue
  id="$i $s $c"
  if hit "$f $id"; then sha=$h; else sha=$(sha256sum "$f"); sha=${sha%% *}; fi
  e file "$f $sha"
  e meta "$f $m $u $g"
  seen="$seen$f $id $sha$nl"
  [ "$f" != /usr/local/bin/k3s ] || kid=$id
done <<END
$ids
END
if [ -x /usr/local/bin/k3s ]; then
  v=""
  if [ -n "$kid" ] && hit "k3s-version $kid"; then v=$h; fi
  if [ -z "$v" ]; then v=$(/usr/local/bin/k3s --version 2>/dev/null); v=${v%%"$nl"*}; fi
  e k3s_version "$v"
  [ -z "$kid" ] || [ -z "$v" ] || seen="${seen}k3s-version $kid $v$nl"
fi
if [ "$record" = record ]; then
  [ "$dmode" = 700 ] || { mkdir -p /var/lib/pictl && chmod 700 /var/lib/pictl; }
  # A record written by an older pictl (without umask) is made private too.
  [ -z "$smode" ] || [ "$smode" = 600 ] || chmod 600 /var/lib/pictl/k3s-started-with
  [ "$seen" = "${old:+$old$nl}" ] || { printf '%s' "$seen" > "$cache.tmp" && mv "$cache.tmp" "$cache"; }
fi
rd t /var/lib/pictl/k3s-started-with; e started_with "$t"
# The three units in one systemctl call; each block ends with an empty line.
us=$(systemctl show -p Id,LoadState,ActiveState,UnitFileState,NeedDaemonReload k3s.service k3s-agent.service pictl-agent.service 2>/dev/null)
id=""; p=""
while IFS= read -r l || [ -n "$id" ]; do
  case $l in
  Id=*) id=${l#Id=} ;;
  ?*) p="$p$l " ;;
  *) [ -z "$id" ] || e unit "$id $p"; id=""; p="" ;;
  esac
done <<END
$us
END
# A K3s install pictl did not write (install.sh's, or by hand), to adopt:
# its unit, the unit's .service.env, and config.yaml.
# Each file is read once; the first foreign unit is the one reported, with
# its own .service.env.
for u in k3s.service k3s-agent.service; do
  f=/etc/systemd/system/$u
  [ -f "$f" ] || continue
  rd t "$f"
  case $t in '# Managed by pictl'*) continue ;; esac
  e foreign_unit "$u $t"
  if [ -f "$f.env" ]; then rd t "$f.env"; e foreign_env "$t"; fi
  break
done
c=/etc/rancher/k3s/config.yaml
if [ -f "$c" ]; then
  rd t "$c"
  case $t in '# Managed by pictl'*) ;; *) e foreign_config "$t" ;; esac
fi
e addresses "$(hostname -I 2>/dev/null)"
t=""
for c in kubectl crictl ctr; do command -v "$c" >/dev/null 2>&1 || t="$t$c "; done
e tools_missing "$t"
t=""; d=/etc/rancher/k3s/config.yaml.d
if [ -d "$d" ]; then
  for f in "$d"/* "$d"/.[!.]* "$d"/..?*; do
    if [ -e "$f" ] || [ -L "$f" ]; then t="$t${f##*/} "; fi
  done
fi
e dropins "$t"
t=""
while IFS=: read -r n _ u g _; do
  if [ "$n" = pictl-agent ]; then t="$u $g"; fi
done </etc/passwd
e agent_ids "$t"
# K3s's datastore: embedded etcd once db/etcd/member/wal exists, else SQLite.
db=/var/lib/rancher/k3s/server/db
if [ -d $db/etcd/member/wal ]; then e datastore etcd; elif [ -f $db/state.db ]; then e datastore sqlite; fi
if [ "$secrets" = secrets ]; then
  if [ -f /var/lib/rancher/k3s/server/token ]; then rd t /var/lib/rancher/k3s/server/token; e token "$t"; fi
  if [ -f /var/lib/rancher/k3s/server/agent-token ]; then rd t /var/lib/rancher/k3s/server/agent-token; e agent_token "$t"; fi
  if [ -f /etc/rancher/k3s/k3s.yaml ]; then rd t /etc/rancher/k3s/k3s.yaml; e kubeconfig "$t"; fi
fi
"#;

/// A file's permission bits and owner, as `stat -c '%a %u %g'` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FileMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl FileMeta {
    /// Owned by root:root with `mode`.
    pub const fn root(mode: u32) -> Self {
        Self {
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// `600 0 0` → mode 0o600, uid 0, gid 0.
    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let mode = u32::from_str_radix(words.next()?, 8).ok()?;
        let uid = words.next()?.parse().ok()?;
        let gid = words.next()?.parse().ok()?;
        Some(Self { mode, uid, gid })
    }
}

/// A systemd unit as found on the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitFact {
    pub active: bool,
    pub active_state: String,
    pub enabled: bool,
    pub need_daemon_reload: bool,
    /// systemd holds a definition of the unit (`LoadState` is anything but
    /// `not-found`): a changed unit file needs a reload. A unit it never
    /// loaded is read from disk when it is started.
    pub loaded: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub uname_m: String,
    pub arch: Result<Arch, String>,
    pub os: String,
    pub pi_model: Option<String>,
    pub machine_id: String,
    pub hostname: String,
    pub boot_id: String,
    /// Node clock minus controller clock, seconds (± the round trip);
    /// saturated, since a node may report any number.
    pub clock_skew: i64,
    pub memory_cgroup: bool,
    /// Raspberry Pi boot command line: (path, contents).
    pub boot_cmdline: Option<(String, String)>,
    /// First line of `k3s --version`, when installed.
    pub k3s_version: Option<String>,
    /// sha256 of each managed file that exists.
    pub files: BTreeMap<String, String>,
    /// Mode and owner of each managed file that exists.
    pub file_meta: BTreeMap<String, FileMeta>,
    /// sha256 per file the running K3s was started with (see [`paths::STARTED_WITH`]).
    pub started_with: BTreeMap<String, String>,
    pub units: BTreeMap<String, UnitFact>,
    pub server_token: Option<Secret>,
    /// A server's agent token (`K10<ca-hash>::node:<secret>`), when it has one.
    pub agent_token: Option<Secret>,
    pub admin_kubeconfig: Option<Secret>,
    /// A K3s install pictl did not write: (unit name, its files).
    pub foreign: Option<(String, crate::adopt::Foreign)>,
    /// The node's addresses (`hostname -I`), the default-route one first.
    pub addresses: Vec<String>,
    /// Of kubectl, crictl and ctr, those no command exists for.
    pub tools_missing: Vec<String>,
    /// Files in /etc/rancher/k3s/config.yaml.d (K3s merges them over config.yaml).
    pub config_dropins: Vec<String>,
    /// The datastore a server has on disk, if any.
    pub datastore: Option<Datastore>,
    /// uid and gid of the health agent's user, when it exists.
    pub agent_ids: Option<(u32, u32)>,
}

/// K3s's datastore on a server (pkg/cluster/managed.go `assignManagedDriver`:
/// an initialized etcd, `db/etcd/member/wal`, wins over `db/state.db`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datastore {
    /// kine over SQLite: a single server; K3s cannot add servers to it.
    Sqlite,
    /// Embedded etcd (`cluster-init`, or joined with `server:`).
    Etcd,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not read facts: {0}")]
pub struct FactsError(pub String);

impl Facts {
    /// Parses the script's output; `controller_now` is the controller's
    /// clock (seconds since the epoch) when the answer arrived.
    pub fn parse(output: &str, controller_now: i64) -> Result<Facts, FactsError> {
        let Scanned {
            one,
            files,
            file_meta,
            units,
        } = scan(output)?;
        for k in ["uname", "machine_id", "hostname", "now"] {
            if !one.contains_key(k) {
                return Err(FactsError(format!("the node did not report {k}")));
            }
        }
        let get = |k: &str| one.get(k).map(|s| s.trim().to_string()).unwrap_or_default();
        let uname_m = get("uname");
        let node_now = get("now").parse::<i64>().unwrap_or(controller_now);
        let started_with = one
            .get("started_with")
            .map(|text| {
                text.lines()
                    .filter_map(|l| {
                        l.split_once("  ")
                            .map(|(sha, path)| (path.to_string(), sha.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let memory_cgroup =
            get("cgroup2").split_whitespace().any(|c| c == "memory") || get("cgroup1") == "1";
        let boot_cmdline = match (one.get("cmdline_path"), one.get("cmdline")) {
            (Some(p), Some(c)) => Some((p.clone(), c.clone())),
            _ => None,
        };
        let non_empty = |k: &str| Some(get(k)).filter(|s| !s.is_empty());
        Ok(Facts {
            arch: Arch::from_uname(&uname_m),
            uname_m,
            os: get("os"),
            pi_model: non_empty("model"),
            machine_id: get("machine_id"),
            hostname: get("hostname"),
            boot_id: get("boot_id"),
            clock_skew: node_now.saturating_sub(controller_now),
            memory_cgroup,
            boot_cmdline,
            k3s_version: non_empty("k3s_version").map(|v| k3s_version_of(&v)),
            files,
            file_meta,
            started_with,
            units,
            server_token: non_empty("token").map(Secret::new),
            agent_token: non_empty("agent_token").map(Secret::new),
            admin_kubeconfig: one
                .get("kubeconfig")
                .filter(|s| !s.is_empty())
                .map(|s| Secret::new(s.clone())),
            foreign: foreign(&one),
            addresses: words(&get("addresses")),
            tools_missing: words(&get("tools_missing")),
            config_dropins: words(&get("dropins")),
            datastore: match get("datastore").as_str() {
                "etcd" => Some(Datastore::Etcd),
                "sqlite" => Some(Datastore::Sqlite),
                _ => None,
            },
            agent_ids: ids(&get("agent_ids")),
        })
    }

    /// sha256 of a managed file, if it exists.
    pub fn file_sha(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// Mode and owner of a managed file, if it exists and they were reported.
    pub fn file_meta(&self, path: &str) -> Option<FileMeta> {
        self.file_meta.get(path).copied()
    }

    pub fn unit(&self, name: &str) -> UnitFact {
        self.units.get(name).cloned().unwrap_or_default()
    }
}

/// `uid gid` as `id` prints them, or `None`.
fn ids(s: &str) -> Option<(u32, u32)> {
    let (u, g) = s.split_once(' ')?;
    Some((u.trim().parse().ok()?, g.trim().parse().ok()?))
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The script's lines, decoded: single values by key, and the repeated
/// `file`, `meta` and `unit` lines gathered.
struct Scanned<'a> {
    one: BTreeMap<&'a str, String>,
    files: BTreeMap<String, String>,
    file_meta: BTreeMap<String, FileMeta>,
    units: BTreeMap<String, UnitFact>,
}

fn scan(output: &str) -> Result<Scanned<'_>, FactsError> {
    let mut s = Scanned {
        one: BTreeMap::new(),
        files: BTreeMap::new(),
        file_meta: BTreeMap::new(),
        units: BTreeMap::new(),
    };
    for record in output.split('\0') {
        let record = record.trim_start_matches('\n');
        if record.is_empty() {
            continue;
        }
        let Some((key, value)) = record.split_once('=') else {
            return Err(FactsError(format!(
                "unreadable record {:?}",
                crate::escape_controls(record)
            )));
        };
        let value = value.to_string();
        match key {
            "file" => {
                if let Some((path, sha)) = value.split_once(' ') {
                    s.files.insert(path.to_string(), sha.trim().to_string());
                }
            }
            "meta" => {
                let parsed = value
                    .split_once(' ')
                    .and_then(|(path, m)| Some((path, FileMeta::parse(m)?)));
                let Some((path, meta)) = parsed else {
                    return Err(FactsError(format!("unreadable mode and owner: {value:?}")));
                };
                s.file_meta.insert(path.to_string(), meta);
            }
            "unit" => {
                if let Some((name, props)) = value.split_once(' ') {
                    s.units.insert(name.to_string(), parse_unit(props));
                }
            }
            _ => {
                s.one.insert(key, value);
            }
        }
    }
    Ok(s)
}

/// The foreign K3s install the script reported, if any.
fn foreign(one: &BTreeMap<&str, String>) -> Option<(String, crate::adopt::Foreign)> {
    let (unit, text) = one.get("foreign_unit")?.split_once(' ')?;
    let found = crate::adopt::Foreign {
        unit: Secret::new(text),
        env: one.get("foreign_env").cloned().map(Secret::new),
        config: one.get("foreign_config").cloned().map(Secret::new),
    };
    Some((unit.to_string(), found))
}

/// `systemctl show` properties of one unit.
fn parse_unit(props: &str) -> UnitFact {
    let mut u = UnitFact::default();
    for kv in props.split_whitespace() {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        match k {
            "ActiveState" => {
                u.active = v == "active";
                u.active_state = v.to_string();
            }
            "UnitFileState" => u.enabled = v == "enabled",
            "NeedDaemonReload" => u.need_daemon_reload = v == "yes",
            "LoadState" => u.loaded = v != "not-found",
            _ => {}
        }
    }
    u
}

/// `k3s version v1.32.5+k3s1 (abcdef12)` → `v1.32.5+k3s1`.
pub fn k3s_version_of(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with('v') && w.contains("+k3s"))
        .unwrap_or(line)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(k: &str, v: &str) -> String {
        record(k, v)
    }

    fn sample() -> String {
        [
            enc("uname", "aarch64"),
            enc("os", "Debian GNU/Linux 12 (bookworm)"),
            enc("model", "Raspberry Pi 4 Model B Rev 1.4"),
            enc("machine_id", "0123456789abcdef0123456789abcdef"),
            enc("hostname", "boolayan"),
            enc("boot_id", "b1"),
            enc("now", "1000"),
            enc("cgroup2", "cpuset cpu io pids"),
            enc("cgroup1", "0"),
            enc("cmdline_path", "/boot/firmware/cmdline.txt"),
            enc("cmdline", "console=tty1 root=PARTUUID=1 rootwait"),
            enc("k3s_version", "k3s version v1.32.5+k3s1 (8e8f2a47)"),
            enc("file", "/usr/local/bin/k3s abc123"),
            enc("meta", "/usr/local/bin/k3s 755 0 0"),
            enc("file", "/etc/rancher/k3s/config.yaml fff"),
            enc("meta", "/etc/rancher/k3s/config.yaml 644 1000 4"),
            enc("started_with", "abc123  /usr/local/bin/k3s\nfff  /etc/rancher/k3s/config.yaml\n"),
            enc(
                "unit",
                "k3s.service LoadState=loaded ActiveState=active UnitFileState=enabled NeedDaemonReload=no ",
            ),
            enc("token", "K10aa::server:s3cret"),
        ]
        .concat()
    }

    #[test]
    fn parses_a_pi_without_memory_cgroup() {
        let f = Facts::parse(&sample(), 998).expect("facts");
        assert_eq!(f.arch, Ok(Arch::Arm64));
        assert_eq!(
            f.pi_model.as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert!(!f.memory_cgroup);
        assert_eq!(f.clock_skew, 2);
        assert_eq!(f.k3s_version.as_deref(), Some("v1.32.5+k3s1"));
        assert_eq!(f.file_sha(paths::K3S_BIN), Some("abc123"));
        assert_eq!(
            f.started_with.get(paths::CONFIG).map(String::as_str),
            Some("fff")
        );
        let unit = f.unit("k3s.service");
        assert!(unit.active && unit.enabled && !unit.need_daemon_reload && unit.loaded);
        assert!(!f.unit("k3s-agent.service").active);
        assert_eq!(
            f.server_token.as_ref().map(Secret::expose),
            Some("K10aa::server:s3cret")
        );
    }

    #[test]
    fn clocks_at_the_edges_of_i64_saturate_instead_of_overflowing() {
        let (min, max) = (i64::MIN, i64::MAX);
        for (node_now, controller_now, skew) in [
            (max.to_string(), min, max),
            (min.to_string(), max, min),
            (min.to_string(), 1, min),
            (max.to_string(), -1, max),
            (max.to_string(), max, 0),
            (min.to_string(), min, 0),
            ("0".to_string(), min, max),
            ("-1".to_string(), max, min),
            // Not an i64: the node's clock is unknown, so no skew is claimed.
            ("99999999999999999999999".to_string(), max, 0),
            ("-99999999999999999999999".to_string(), min, 0),
            ("1e18".to_string(), 5, 0),
        ] {
            let out = sample().replace(&enc("now", "1000"), &enc("now", &node_now));
            let f = Facts::parse(&out, controller_now).expect("facts");
            assert_eq!(
                f.clock_skew, skew,
                "node {node_now}, controller {controller_now}"
            );
        }
    }

    #[test]
    fn the_datastore_is_etcd_sqlite_or_none() {
        let f = Facts::parse(&sample(), 1000).expect("facts");
        assert_eq!(f.datastore, None);
        for (word, want) in [("etcd", Datastore::Etcd), ("sqlite", Datastore::Sqlite)] {
            let out = format!("{}\n{}", sample(), enc("datastore", word));
            let f = Facts::parse(&out, 1000).expect("facts");
            assert_eq!(f.datastore, Some(want));
        }
        // The script asks in K3s's order: an initialized etcd wins over state.db.
        let etcd = SCRIPT.find("e datastore etcd").expect("etcd line");
        let sqlite = SCRIPT.find("e datastore sqlite").expect("sqlite line");
        assert!(etcd < sqlite && SCRIPT.contains("db/etcd/member/wal"));
    }

    #[test]
    fn parses_each_files_mode_and_owner() {
        let f = Facts::parse(&sample(), 1000).expect("facts");
        assert_eq!(f.file_meta(paths::K3S_BIN), Some(FileMeta::root(0o755)));
        assert_eq!(
            f.file_meta(paths::CONFIG),
            Some(FileMeta {
                mode: 0o644,
                uid: 1000,
                gid: 4
            })
        );
        assert_eq!(f.file_meta(paths::SERVER_UNIT), None);
        // setuid and sticky bits are kept, not cut to three digits.
        assert_eq!(FileMeta::parse("4755 0 0"), Some(FileMeta::root(0o4755)));
    }

    /// The script itself, run locally read-only (the same sh, coreutils
    /// and stat as a Debian node): what it reports for a file parses.
    #[test]
    fn the_scripts_modes_parse() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "token: x\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", SCRIPT, "pictl", "no-secrets", "no-record"])
            .arg(&file)
            .output()
            .expect("sh");
        let f = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
        let path = file.to_string_lossy();
        let meta = f.file_meta(&path).expect("reported");
        assert_eq!(meta.mode, 0o640);
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&file).expect("stat");
        assert_eq!((meta.uid, meta.gid), (md.uid(), md.gid()));
        assert_eq!(
            f.file_sha(&path),
            Some(crate::artifacts::sha256_hex(b"token: x\n").as_str())
        );
    }

    /// A scratch node for running the script locally: pictl's record
    /// directory and the K3s binary moved under a temp dir, and every
    /// program the script starts logged by a shim on `PATH`.
    struct Scratch {
        dir: tempfile::TempDir,
        script: String,
    }

    impl Scratch {
        fn new() -> Self {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().expect("tmp");
            let root = dir.path().to_string_lossy().into_owned();
            let bin = dir.path().join("bin");
            std::fs::create_dir(&bin).expect("bin");
            let shims = [
                "uname",
                "date",
                "stat",
                "sha256sum",
                "systemctl",
                "hostname",
                "mkdir",
                "chmod",
                "mv",
            ];
            for p in shims {
                let real = ["/usr/bin", "/bin"]
                    .iter()
                    .map(|d| format!("{d}/{p}"))
                    .find(|f| std::path::Path::new(f).exists())
                    .unwrap_or_else(|| format!("/bin/{p}"));
                let shim = format!("#!/bin/sh\necho {p} >>{root}/programs\nexec {real} \"$@\"\n");
                std::fs::write(bin.join(p), shim).expect("shim");
                std::fs::set_permissions(bin.join(p), std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
            let k3s = format!(
                "#!/bin/sh\necho k3s >>{root}/programs\necho 'k3s version v1.32.5+k3s1 (8e8f2a47)'\necho 'go version go1.23'\n"
            );
            std::fs::write(dir.path().join("k3s"), k3s).expect("k3s");
            std::fs::set_permissions(
                dir.path().join("k3s"),
                std::fs::Permissions::from_mode(0o755),
            )
            .expect("chmod");
            let script = SCRIPT
                .replace("/var/lib/pictl", &format!("{root}/lib"))
                .replace(paths::K3S_BIN, &format!("{root}/k3s"));
            Self { dir, script }
        }

        fn path(&self, p: &str) -> String {
            self.dir.path().join(p).to_string_lossy().into_owned()
        }

        /// Runs the script; returns the facts and the programs it started.
        fn run(&self, record: &str, files: &[String]) -> (Facts, Vec<String>) {
            let _ = std::fs::remove_file(self.path("programs"));
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &self.script, "pictl", "no-secrets", record])
                .args(files)
                .env("PATH", self.path("bin"))
                .output()
                .expect("sh");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let facts = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
            let programs = std::fs::read_to_string(self.path("programs")).unwrap_or_default();
            (facts, programs.lines().map(String::from).collect())
        }
    }

    #[test]
    fn hashes_and_the_k3s_version_are_served_from_the_cache() {
        let node = Scratch::new();
        let (k3s, conf) = (node.path("k3s"), node.path("config.yaml"));
        std::fs::write(&conf, "a: 1\n").expect("write");
        let files = [k3s.clone(), conf.clone()];
        let (f, first) = node.run("record", &files);
        assert_eq!(f.k3s_version.as_deref(), Some("v1.32.5+k3s1"));
        let real = crate::artifacts::sha256_hex(b"a: 1\n");
        assert_eq!(f.file_sha(&conf), Some(real.as_str()));
        assert_eq!(
            first.iter().filter(|p| *p == "sha256sum").count(),
            2,
            "{first:?}"
        );
        assert!(first.contains(&"k3s".to_string()), "{first:?}");
        // A hit: neither K3s nor sha256sum runs, and nothing is rewritten.
        let (f, again) = node.run("record", &files);
        assert_eq!(f.k3s_version.as_deref(), Some("v1.32.5+k3s1"));
        assert_eq!(f.file_sha(&conf), Some(real.as_str()));
        assert_eq!(again, ["uname", "date", "stat", "systemctl", "hostname"]);
        // What is reported on a hit is the cache's word (proof it was used) ...
        let cache = std::fs::read_to_string(node.path("lib/hashes")).expect("cache");
        std::fs::write(node.path("lib/hashes"), cache.replace(&real, "feed")).expect("poison");
        let (f, _) = node.run("no-record", &files);
        assert_eq!(f.file_sha(&conf), Some("feed"));
        // ... and a changed file (new ctime) is hashed again.
        std::fs::write(&conf, "a: 2\n").expect("write");
        let (f, changed) = node.run("no-record", &files);
        let now = crate::artifacts::sha256_hex(b"a: 2\n");
        assert_eq!(f.file_sha(&conf), Some(now.as_str()));
        assert_eq!(
            changed.iter().filter(|p| *p == "sha256sum").count(),
            1,
            "{changed:?}"
        );
    }

    /// The cache is read in order (each entry the next line), but an entry
    /// out of that order is still found: a new file between two cached ones,
    /// and a cache whose lines were shuffled, hash only the new file.
    #[test]
    fn cached_hashes_are_found_out_of_order_too() {
        let node = Scratch::new();
        let (k3s, a, b) = (node.path("k3s"), node.path("a.yaml"), node.path("b.yaml"));
        std::fs::write(&a, "a: 1\n").expect("write");
        std::fs::write(&b, "b: 1\n").expect("write");
        node.run("record", &[k3s.clone(), a.clone()]);
        let cache = std::fs::read_to_string(node.path("lib/hashes")).expect("cache");
        let mut lines: Vec<&str> = cache.lines().collect();
        lines.reverse();
        std::fs::write(node.path("lib/hashes"), lines.join("\n") + "\n").expect("shuffle");
        let (f, programs) = node.run("record", &[k3s.clone(), b.clone(), a.clone()]);
        let hashed = programs.iter().filter(|p| *p == "sha256sum").count();
        assert_eq!(hashed, 1, "{programs:?}");
        assert!(!programs.contains(&"k3s".to_string()), "{programs:?}");
        assert_eq!(f.k3s_version.as_deref(), Some("v1.32.5+k3s1"));
        for (path, body) in [(&a, "a: 1\n"), (&b, "b: 1\n")] {
            let want = crate::artifacts::sha256_hex(body.as_bytes());
            assert_eq!(f.file_sha(path), Some(want.as_str()), "{path}");
        }
        // The rewritten cache is in lookup order again: a re-run hashes nothing.
        let (_, again) = node.run("no-record", &[k3s, b, a]);
        assert!(!again.contains(&"sha256sum".to_string()), "{again:?}");
    }

    /// A large upload records the hash it verified in the facts cache: the
    /// re-check after the run reads it instead of hashing the file again. A
    /// small one does not (hashing it costs less), nor one without the flag.
    #[test]
    fn a_large_upload_is_not_hashed_again_by_the_next_facts_run() {
        use std::io::Write;
        let node = Scratch::new();
        node.run("record", &[]); // the first gather makes pictl's record dir
        let put = crate::transport::upload::PUT_SCRIPT.replace("/var/lib/pictl", &node.path("lib"));
        let upload = |name: &str, data: &[u8], keep: &str| {
            let target = node.path(name);
            let want = crate::artifacts::sha256_hex(data);
            let mut child = std::process::Command::new("/bin/sh")
                .args(["-c", &put, "pictl", &target, "0755", &want, keep])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("sh");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(data)
                .expect("write");
            assert!(child.wait().expect("wait").success());
            (target, want)
        };
        let (big, big_sha) = upload("k3s-new", &[7u8; 4096], "yes");
        let (small, small_sha) = upload("small.conf", b"a: 1\n", "no");
        let (f, programs) = node.run("no-record", &[big.clone(), small.clone()]);
        assert_eq!(f.file_sha(&big), Some(big_sha.as_str()));
        assert_eq!(f.file_sha(&small), Some(small_sha.as_str()));
        let hashed = programs.iter().filter(|p| *p == "sha256sum").count();
        assert_eq!(hashed, 1, "only the unrecorded file: {programs:?}");
        // The record is root's: the cache stays private.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node.path("lib/hashes"))
            .expect("cache")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[test]
    fn the_script_reads_files_with_builtins_exactly_as_cat_would() {
        let node = Scratch::new();
        // Backslashes, leading spaces, no final newline, several trailing ones.
        let text = "  a\\b\n\tc=d\n\n\nlast";
        for (body, want) in [(text.to_string(), text), (format!("{text}\n\n\n"), text)] {
            std::fs::write(node.path("k3s.yaml"), &body).expect("write");
            let script = node
                .script
                .replace("/etc/rancher/k3s/k3s.yaml", &node.path("k3s.yaml"));
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &script, "pictl", "secrets", "no-record"])
                .output()
                .expect("sh");
            let f = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
            assert_eq!(f.admin_kubeconfig.as_ref().map(Secret::expose), Some(want));
        }
    }

    #[test]
    fn a_pi_model_ending_in_nul_is_read_by_the_shell_without_it() {
        let node = Scratch::new();
        // /proc/device-tree/model on a Pi: no newline, a NUL at the end.
        std::fs::write(node.path("model"), b"Raspberry Pi 4 Model B Rev 1.4\0").expect("write");
        let script = node
            .script
            .replace("/proc/device-tree/model", &node.path("model"));
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "pictl", "no-secrets", "no-record"])
            .output()
            .expect("sh");
        let f = Facts::parse(&String::from_utf8_lossy(&out.stdout), 0).expect("facts");
        assert_eq!(
            f.pi_model.as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
    }

    #[test]
    fn an_unreadable_mode_is_an_error_not_a_default() {
        let out = sample() + &enc("meta", "/usr/local/bin/k3s rwx 0 0");
        let err = Facts::parse(&out, 1000).expect_err("bad mode");
        assert!(err.to_string().contains("mode and owner"), "{err}");
    }

    #[test]
    fn the_script_keeps_pictls_records_private() {
        assert!(SCRIPT.starts_with("set -u\numask 077\n"));
        assert!(SCRIPT.contains("chmod 700 /var/lib/pictl"));
        assert!(SCRIPT.contains("stat -c '%i %s %.9Z %a %u %g %n'"));
    }

    #[test]
    fn missing_essentials_are_an_error_not_a_guess() {
        let err = Facts::parse(&enc("uname", "x86_64"), 0).expect_err("incomplete");
        assert!(err.to_string().contains("did not report"), "{err}");
        assert!(Facts::parse("uname\0", 0).is_err());
    }

    #[test]
    fn unknown_arch_is_kept_as_an_error_naming_it() {
        let out = sample().replace(&enc("uname", "aarch64"), &enc("uname", "armv6l"));
        let f = Facts::parse(&out, 1000).expect("facts");
        assert!(f.arch.as_ref().is_err_and(|e| e.contains("armv6l")));
    }
}
