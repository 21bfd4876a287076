//! K3s's data dir on a node: where its CA keys, token, datastore and
//! unpacked userspace (`data/<hash>/bin`) live. A Pi that boots from SD
//! often keeps it on an SSD (`data-dir: /mnt/ssd/k3s`), so the scripts
//! that stop and remove K3s must be told where it is, as K3s's own are
//! through `K3S_DATA_DIR` (install.sh `create_killall`/`create_uninstall`).
//! Pure: facts bring the node's files, the inventory pictl's settings; the
//! `k3s-tools` and `k3s-reset` steps pass the answer to the scripts.

use std::collections::BTreeMap;

use crate::adopt::{self, Value};
use crate::facts::Facts;
use crate::inventory::K3sSettings;

/// K3s's default (`pkg/cli/cmds` `DataDirFlag`, as root).
pub const DEFAULT: &str = "/var/lib/rancher/k3s";

/// The data dir K3s on this node runs with, as K3s decides it: the
/// unit's `--data-dir`/`-d` flag, else the last `data-dir:` of config.yaml
/// and its drop-ins, else `K3S_DATA_DIR` from the unit's `.service.env`,
/// else the default. (pkg/configfilearg puts the files' settings before the
/// command line's, so a flag wins; urfave/cli reads a flag's environment
/// variable only when no argument set it.)
pub fn on_node(facts: &Facts) -> String {
    let foreign = facts.foreign.as_ref().map(|(_, f)| f);
    let flag = foreign.and_then(|f| {
        let exec = adopt::exec::exec_start(f.unit.expose())?;
        let imported = adopt::import::import(&exec, &BTreeMap::new(), None);
        one(imported.keys.get("data-dir")?)
    });
    let config = facts.data_dir_config.clone();
    let env = foreign
        .and_then(|f| f.env.as_ref())
        .and_then(|e| adopt::env::parse(e.expose()).remove("K3S_DATA_DIR"));
    flag.or(config)
        .or(env)
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| DEFAULT.to_string())
}

/// The data dir pictl's config.yaml sets for a node (the inventory's
/// `data-dir` for its role, or its own), else the default.
pub fn desired(settings: &K3sSettings) -> String {
    settings
        .get("data-dir")
        .and_then(one)
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| DEFAULT.to_string())
}

fn one(v: &Value) -> Option<String> {
    match v {
        Value::One(s) => Some(s.clone()),
        _ => None,
    }
}

/// Directories that are never K3s's alone: removing one as a data dir
/// would take the system with it.
const SYSTEM: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/usr/local",
    "/usr/local/bin",
    "/var/lib",
    "/var/lib/rancher",
    "/etc/rancher",
];

/// Whether `dir` may be removed as K3s's data dir: an absolute path
/// without `.`/`..` steps or control characters, and not a system
/// directory. The scripts refuse an empty or `/` one themselves too.
pub fn removable(dir: &str) -> Result<(), String> {
    let trimmed = match dir.trim_end_matches('/') {
        "" => "/",
        t => t,
    };
    let why = if !dir.starts_with('/') {
        Some("it is not an absolute path")
    } else if trimmed.split('/').any(|s| s == "." || s == "..") {
        Some("it has `.` or `..` in it")
    } else if dir.chars().any(char::is_control) {
        Some("it has control characters in it")
    } else if SYSTEM.contains(&trimmed) {
        Some("it is a system directory, not K3s's alone")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(format!(
            "K3s's data-dir {dir:?} is not removed: {why}; \
             set data-dir to a directory of K3s's own (or remove it by hand)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn facts_with(unit: Option<&str>, env: Option<&str>, line: Option<&str>) -> Facts {
        let minimal = "uname=x86_64\0machine_id=m\0hostname=h\0now=0\0";
        let mut f = Facts::parse(minimal, 0).expect("facts");
        f.foreign = unit.map(|u| {
            (
                "k3s.service".to_string(),
                adopt::Foreign {
                    unit: Secret::new(u),
                    env: env.map(Secret::new),
                    config: None,
                },
            )
        });
        f.data_dir_config = line.map(String::from);
        f
    }

    const UNIT: &str = "[Service]\nExecStart=/usr/local/bin/k3s \\\n    server \\\n\t'--data-dir' \\\n\t'/mnt/ssd/k3s' \\\n";

    #[test]
    fn the_flag_wins_over_config_and_environment() {
        let f = facts_with(Some(UNIT), Some("K3S_DATA_DIR=/env\n"), Some("/cfg"));
        assert_eq!(on_node(&f), "/mnt/ssd/k3s");
        let short = "[Service]\nExecStart=/usr/local/bin/k3s agent -d /short\n";
        assert_eq!(on_node(&facts_with(Some(short), None, None)), "/short");
    }

    #[test]
    fn config_wins_over_environment_and_the_default_is_last() {
        let plain = "[Service]\nExecStart=/usr/local/bin/k3s server\n";
        let env = Some("K3S_DATA_DIR='/env dir'\n");
        let f = facts_with(Some(plain), env, Some("/cfg"));
        assert_eq!(on_node(&f), "/cfg");
        assert_eq!(on_node(&facts_with(Some(plain), env, None)), "/env dir");
        assert_eq!(on_node(&facts_with(None, None, None)), DEFAULT);
        // pictl's own config.yaml (no foreign unit).
        let f = facts_with(None, None, Some("/srv/k3s"));
        assert_eq!(on_node(&f), "/srv/k3s");
    }

    #[test]
    fn the_inventory_sets_the_desired_data_dir() {
        let mut s = K3sSettings::new();
        assert_eq!(desired(&s), DEFAULT);
        s.insert("data-dir".into(), Value::One("/srv/k3s".into()));
        assert_eq!(desired(&s), "/srv/k3s");
    }

    #[test]
    fn only_a_directory_of_k3s_own_is_removable() {
        for ok in [DEFAULT, "/srv/k3s", "/mnt/ssd/k3s/", "/k3s", "/srv/my k3s"] {
            assert_eq!(removable(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/",
            "//",
            "relative/k3s",
            "/srv/../etc",
            "/etc",
            "/var/lib/",
            "/usr",
            "/srv/k3s\n",
        ] {
            let why = removable(bad).expect_err(bad);
            assert!(why.contains("data-dir"), "{why}");
        }
    }
}
