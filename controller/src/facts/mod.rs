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

pub mod certs;
pub mod paths;
mod server;
pub mod storage;
mod unit;

pub use certs::CertEnd;
pub use server::Datastore;
use server::serving_pin;
pub use storage::{DiskKind, FsyncProbe, Storage, on_sd_card};
pub use unit::UnitFact;
use unit::parse_unit;

/// One record as the script prints it: `key=value` and a NUL (a shell
/// value cannot hold one, so no escaping is needed).
pub fn record(key: &str, value: &str) -> String {
    format!("{key}={value}\0")
}

/// The lookup in pictl's hash cache on a node (`/var/lib/pictl/hashes`:
/// lines `path inode size ctime sha256`, and `k3s-version inode size ctime
/// VERSION`), for every script that reads it: the facts [`SCRIPT`] and the
/// record of what K3s started with (`steps::k3s_service`). It defines
/// `hit KEY`, which sets `$h` to the value for KEY (`path inode size
/// ctime`); it needs `$nl` (a newline), `$x` (the cache with a newline
/// before and after) and `$rest` (the cache with a newline after).
///
/// The cache lists its entries in the order they are looked up (stat's,
/// then K3s's version): while nothing changed, each one is the next line
/// (`rest`), a short prefix match. Finding one anywhere in the cache
/// (`${x#*...}`) costs dash time that grows with the square of the cache's
/// size, 9 ms a run on a fast CPU for 12 files: only when the order broke.
macro_rules! hash_cache_hit {
    () => {
        r#"hit() {
  _l=${rest%%"$nl"*}
  case $_l in "$1 "*) h=${_l#"$1 "}; rest=${rest#*"$nl"}; return 0 ;; esac
  case $x in *"$nl$1 "*) h=${x#*"$nl$1 "}; h=${h%%"$nl"*}; return 0 ;; esac
  return 1
}
"#
    };
}
pub(crate) use hash_cache_hit;

/// The script. `$1` is `secrets` on servers (read the join token and admin
/// kubeconfig) or `no-secrets`; `$2` is `record` when the hash cache may be
/// written (apply) or `no-record` (read-only commands); the managed file
/// paths follow. For each managed file it reports the sha256 (`file`) and
/// the mode and owner (`meta`, `stat -c '%a %u %g'`): both are its state.
///
/// pictl's records under /var/lib/pictl name the files K3s runs with and
/// their hashes: `umask 077` and a 0700 directory keep them root's.
pub const SCRIPT: &str = concat!(
    r#"set -u
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
rd kr /proc/sys/kernel/osrelease; e kernel "$kr"
rd t /sys/fs/cgroup/cgroup.controllers; e cgroup2 "$t"
# cgroup v1: the controllers the kernel has on (a Pi's memory is 0 when off).
t=
if [ -r /proc/cgroups ]; then
  while read -r n _ _ en; do [ "$en" != 1 ] || t="$t $n"; done </proc/cgroups
fi
e cgroup1 "$t"
# flannel's vxlan backend (K3s's default) needs the kernel's vxlan module:
# loaded or built in (/sys/module/vxlan), else listed in the kernel's module
# files; unknown ("") when the node has none to read.
t=
if [ -d /sys/module/vxlan ]; then t=yes
elif [ -r "/lib/modules/$kr/modules.dep" ]; then
  t=no
  grep -qs '/vxlan\.ko' "/lib/modules/$kr/modules.dep" "/lib/modules/$kr/modules.builtin" && t=yes
fi
e vxlan "$t"
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
rest=$old$nl
"#,
    hash_cache_hit!(),
    r#"seen=""; kid=""; dmode=""; smode=""
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
etcd=""
if [ -f "$c" ]; then
  rd t "$c"
  case $t in '# Managed by pictl'*) ;; *) e foreign_config "$t" ;; esac
  # pictl set K3s up for embedded etcd (started or joining).
  case $t in '# Managed by pictl'*"${nl}cluster-init: true"*|'# Managed by pictl'*"${nl}server: "*) etcd=1 ;; esac
  # The server an HA server joined (K3s reads it only without etcd data).
  case $t in '# Managed by pictl'*"${nl}server: "*) v=${t#*"${nl}server: "}; v=${v%%"$nl"*}; e joined "$v" ;; esac
fi
# The value of the last `data-dir:` line of config.yaml and its drop-ins,
# in the order K3s reads them (pkg/configfilearg: the file, then
# config.yaml.d/*.yaml and *.yml by name, later ones winning): plain (up to
# a ` #` comment) or quoted. The token and datastore are read under it when
# it is absolute, else under K3s's default.
t=""
for f in "$c" "$c.d"/*.yaml "$c.d"/*.yml; do
  [ -f "$f" ] || continue
  while IFS= read -r _l || [ -n "$_l" ]; do
    case $_l in data-dir:*|\"data-dir\":*|\'data-dir\':*) t=$_l ;; esac
  done <"$f"
done
v=${t#*:}
while :; do case $v in ' '*|'	'*) v=${v#?} ;; *) break ;; esac; done
case $v in
  \"*) v=${v#\"}; v=${v%%\"*} ;;
  \'*) v=${v#\'}; v=${v%%\'*} ;;
  *) v=${v%%[ 	]#*}; while :; do case $v in *' '|*'	') v=${v%?} ;; *) break ;; esac; done ;;
esac
e data_dir "$v"
dd=/var/lib/rancher/k3s
case $v in /?*) dd=${v%/} ;; esac
db=$dd/server/db
# The device under the data dir: the longest mount point above it (the
# last of equals: the one on top), and on etcd servers its fsync probe.
"#,
    storage::storage_records!(),
    certs::cert_records!(),
    r#"e addresses "$(hostname -I 2>/dev/null)"
# kubectl, crictl and ctr: missing (install.sh would link it: nothing at
# /usr/local/bin/NAME, or a dangling link) or taken (no such command, but
# something that is not one is at /usr/local/bin/NAME; install.sh leaves it).
t=""; u=""
for c in kubectl crictl ctr; do
  command -v "$c" >/dev/null 2>&1 && continue
  if [ -e "/usr/local/bin/$c" ]; then u="$u$c "; else t="$t$c "; fi
done
e tools_missing "$t"
e tools_taken "$u"
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
if [ -d $db/etcd/member/wal ]; then e datastore etcd; elif [ -f $db/state.db ]; then e datastore sqlite; fi
if [ "$secrets" = secrets ]; then
  if [ -f "$dd/server/token" ]; then rd t "$dd/server/token"; e token "$t"; fi
  # Without a configured agent token K3s leaves agent-token as a symlink to
  # the server token (printTokens): that means "none", not the server's.
  a=$dd/server/agent-token
  if [ -f "$a" ] && [ ! -L "$a" ]; then rd t "$a"; e agent_token "$t"; fi
  if [ -f /etc/rancher/k3s/k3s.yaml ]; then rd t /etc/rancher/k3s/k3s.yaml; e kubeconfig "$t"; fi
  # The API port's certificate (dynamiclistener's Secret as JSON, Go's
  # encoding): only tls.crt leaves the node, never tls.key.
  f=$dd/server/tls/dynamic-cert.json
  if [ -f "$f" ]; then
    rd t "$f"
    case $t in *'"tls.crt":"'*) t=${t#*'"tls.crt":"'}; e serving_cert "${t%%'"'*}" ;; esac
  fi
fi
"#
);

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
    /// The cgroup controllers the kernel has on: the cgroup v2 root's,
    /// else cgroup v1's enabled ones (`/proc/cgroups`).
    pub cgroup_controllers: Vec<String>,
    /// `uname -r` (`/proc/sys/kernel/osrelease`, read without a process).
    pub kernel: String,
    /// Whether the kernel has the vxlan module (`None`: it cannot tell).
    pub vxlan: Option<bool>,
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
    /// Of kubectl, crictl and ctr, those no command exists for, and that
    /// install.sh would link (nothing at `/usr/local/bin/NAME`, or a
    /// dangling link).
    pub tools_missing: Vec<String>,
    /// Of kubectl, crictl and ctr, those no command exists for but whose
    /// `/usr/local/bin/NAME` holds something else (left alone, as
    /// install.sh leaves it).
    pub tools_taken: Vec<String>,
    /// The `data-dir` that config.yaml and its drop-ins set, when they do
    /// (see [`crate::data_dir::on_node`]).
    pub data_dir_config: Option<String>,
    /// Files in /etc/rancher/k3s/config.yaml.d (K3s merges them over config.yaml).
    pub config_dropins: Vec<String>,
    /// The datastore a server has on disk, if any.
    pub datastore: Option<Datastore>,
    /// uid and gid of the health agent's user, when it exists.
    pub agent_ids: Option<(u32, u32)>,
    /// A server's API key pin: the sha256 of the public key its API port
    /// serves (K3s's `dynamic-cert.json`), 64 hex digits.
    pub serving_pin: Option<String>,
    /// The device the K3s data dir lives on (`/dev/mmcblk0p2`: an SD
    /// card) and, on etcd servers, how fast it syncs.
    pub storage: Option<Storage>,
    /// The `server:` pictl's config.yaml names (an HA server that joined).
    pub joined: Option<String>,
    /// The ends of K3s's leaf certificates on the node (see [`certs`]).
    pub certificates: Vec<CertEnd>,
    /// The node's clock when it answered (K3s renews by it), unix seconds.
    pub node_now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not read facts: {0}")]
pub struct FactsError(pub String);

impl Facts {
    /// Whether the kernel has the memory cgroup controller on.
    pub fn memory_cgroup(&self) -> bool {
        self.cgroup_controllers.iter().any(|c| c == "memory")
    }

    /// Parses the script's output; `controller_now` is the controller's
    /// clock (seconds since the epoch) when the answer arrived.
    pub fn parse(output: &str, controller_now: i64) -> Result<Facts, FactsError> {
        let Scanned {
            one,
            files,
            file_meta,
            units,
            certs,
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
        let v2 = get("cgroup2");
        let cgroup_controllers: Vec<String> = if v2.is_empty() { get("cgroup1") } else { v2 }
            .split_whitespace()
            .map(String::from)
            .collect();
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
            cgroup_controllers,
            kernel: get("kernel"),
            vxlan: match get("vxlan").as_str() {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            },
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
            tools_taken: words(&get("tools_taken")),
            data_dir_config: non_empty("data_dir"),
            config_dropins: words(&get("dropins")),
            datastore: Datastore::parse(&get("datastore")),
            agent_ids: ids(&get("agent_ids")),
            serving_pin: serving_pin(&get("serving_cert")),
            storage: Storage::parse(&get("data_dev"), &get("data_disk"), &get("fsync")),
            joined: non_empty("joined"),
            certificates: certs,
            node_now,
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

    /// The K3s leaf certificate that ends first, if any.
    pub fn first_certificate_end(&self) -> Option<&CertEnd> {
        certs::first_end(&self.certificates)
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
    certs: Vec<CertEnd>,
}

fn scan(output: &str) -> Result<Scanned<'_>, FactsError> {
    let mut s = Scanned {
        one: BTreeMap::new(),
        files: BTreeMap::new(),
        file_meta: BTreeMap::new(),
        units: BTreeMap::new(),
        certs: Vec::new(),
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
            "cert" => s.certs.extend(CertEnd::parse(&value)),
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

/// `k3s version v1.32.5+k3s1 (abcdef12)` → `v1.32.5+k3s1`.
pub fn k3s_version_of(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with('v') && w.contains("+k3s"))
        .unwrap_or(line)
        .to_string()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_certs;
#[cfg(test)]
mod tests_serving;
