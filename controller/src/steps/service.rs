//! What a service step plans for its systemd unit, shared by the K3s and
//! health-agent services: reload, enable, and start or restart, as types.

use serde::Serialize;

use crate::facts::UnitFact;
use crate::step::{Change, StepId};

/// Why a running service must restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartReason {
    /// Earlier steps of this run changed its inputs.
    ChangedByRun(Vec<StepId>),
    /// It runs with older inputs than installed (an interrupted run).
    StartedWithOlder(Vec<&'static str>),
    /// Its binary or unit is replaced in this run.
    Replaced,
}

/// What to do with the service process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceAction {
    Keep,
    /// Not running; `from` is its state (`inactive`, `failed`, …).
    Start {
        from: String,
    },
    Restart(RestartReason),
    /// Set up outside pictl and already running as pictl configures it:
    /// kept running, and recorded as started with pictl's files.
    Adopt,
}

impl ServiceAction {
    /// The `systemctl` verb (`none` when kept).
    pub fn verb(&self) -> &'static str {
        match self {
            ServiceAction::Keep | ServiceAction::Adopt => "none",
            // A unit stuck starting (K3s retrying forever with a token it
            // read at start) or failed needs a new process: `start` would
            // leave the old one waiting.
            ServiceAction::Start { from } if matches!(from.as_str(), "activating" | "failed") => {
                "restart"
            }
            ServiceAction::Start { .. } => "start",
            ServiceAction::Restart(_) => "restart",
        }
    }

    /// `Start` when the unit is not active, else `otherwise`.
    pub fn start_or(unit: &UnitFact, otherwise: ServiceAction) -> ServiceAction {
        if unit.active {
            return otherwise;
        }
        let from = if unit.active_state.is_empty() {
            "not installed".to_string()
        } else {
            unit.active_state.clone()
        };
        ServiceAction::Start { from }
    }
}

/// Shell for the service scripts: `start_unit ARGS…` runs `systemctl
/// ARGS…` (a start or restart). A unit systemd never loaded is read from
/// disk when it is started, so pictl does not reload for it (see
/// [`needs_reload`]); a systemd that keeps a stale "not found" for it
/// (older than 246) refuses, and gets one reload and the start again.
macro_rules! start_unit {
    () => {
        r#"start_unit() {
  systemctl "$@" 2>/dev/null || { systemctl daemon-reload; systemctl "$@"; }
}
"#
    };
}
pub(super) use start_unit;

/// Whether systemd must reload before `unit` is (re)started: its files
/// changed or it is to be enabled (`files_or_enable`), and systemd holds a
/// definition of it, which only a reload replaces (and its cached
/// enablement with it); or systemd says it needs one. A unit systemd never
/// loaded is read from disk, enablement included, when it is started.
pub fn needs_reload(unit: &crate::facts::UnitFact, files_or_enable: bool) -> bool {
    (files_or_enable && unit.loaded) || unit.need_daemon_reload
}

/// A unit's plan: reload, enable, start or restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePlan {
    pub unit: &'static str,
    pub daemon_reload: bool,
    pub enable: bool,
    pub action: ServiceAction,
}

impl ServicePlan {
    /// The scripts' `enable` and `reload` arguments (`yes`/`no`). `systemctl
    /// enable` reloads systemd by itself, even for a unit already enabled,
    /// and a reload costs PID 1 about 95 ms of CPU on the lab's nodes (more
    /// on a Pi): the scripts enable only a disabled unit, with
    /// `--no-reload`, and reload only when [`Self::daemon_reload`] says so
    /// (see [`needs_reload`]).
    pub fn systemd_args(&self) -> [&'static str; 2] {
        let yes = |b: bool| if b { "yes" } else { "no" };
        [yes(self.enable), yes(self.daemon_reload)]
    }

    pub fn is_empty(&self) -> bool {
        !self.daemon_reload && !self.enable && self.action == ServiceAction::Keep
    }

    /// The plan as people read it.
    pub fn changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        if self.daemon_reload {
            out.push(Change::new(
                "systemd",
                "unit files changed",
                "daemon-reload",
            ));
        }
        if self.enable {
            out.push(Change::new(self.unit, "disabled", "enabled"));
        }
        match &self.action {
            ServiceAction::Keep => {}
            ServiceAction::Adopt => out.push(Change::new(
                self.unit,
                "running (set up outside pictl)",
                "kept running: it already runs as pictl configures it",
            )),
            ServiceAction::Start { from } => {
                out.push(Change::new(self.unit, from.clone(), "active"))
            }
            ServiceAction::Restart(RestartReason::ChangedByRun(steps)) => {
                let names: Vec<&str> = steps.iter().map(|s| s.as_str()).collect();
                out.push(Change::new(
                    self.unit,
                    "running",
                    format!("restarted ({} changed)", names.join(", ")),
                ))
            }
            ServiceAction::Restart(RestartReason::StartedWithOlder(files)) => {
                out.push(Change::new(
                    self.unit,
                    format!("running with an older {}", files.join(", ")),
                    "restarted",
                ))
            }
            ServiceAction::Restart(RestartReason::Replaced) => {
                out.push(Change::new(self.unit, "running", "restarted"))
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{ServiceAction, ServicePlan};

    /// Runs a service script with `systemctl` (and `id`) replaced by a shim
    /// logging its arguments; returns the systemctl calls.
    fn systemctl_calls(script: &str, args: &[&str]) -> Vec<String> {
        systemd_calls(script, args, false)
    }

    /// As [`systemctl_calls`]; with `stale`, systemd refuses the first start
    /// as a unit it does not know (a stale "not found", systemd < 246).
    fn systemd_calls(script: &str, args: &[&str], stale: bool) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().to_string_lossy().into_owned();
        let refuse = if stale {
            format!(
                "case \"$*\" in *start*) [ -e {root}/refused ] || \
                 {{ touch {root}/refused; echo 'Unit not found.' >&2; exit 5; }} ;; esac\n"
            )
        } else {
            String::new()
        };
        let shim = format!(
            "#!/bin/sh\necho \"$*\" >>{root}/calls\n{refuse}case \"$*\" in *InvocationID*)\n\
             n=$(cat {root}/n 2>/dev/null || echo 0); echo $((n+1)) >{root}/n; echo inv$n ;; esac\n"
        );
        for (name, body) in [("systemctl", shim.as_str()), ("id", "#!/bin/sh\n")] {
            let path = dir.path().join(name);
            std::fs::write(&path, body).expect("shim");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let script = script.replace("/var/lib/pictl", &format!("{root}/lib"));
        crate::test_sh::run(&script, args, &format!("{root}:/usr/bin:/bin"));
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
        calls.lines().map(String::from).collect()
    }

    /// The record of what K3s started with takes a hash from the facts
    /// cache when the cache holds one for the file as it is now, and hashes
    /// the file otherwise (a changed file has a new ctime).
    #[test]
    fn the_started_with_record_reuses_the_facts_cache() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().to_string_lossy().into_owned();
        let (bin, conf) = (format!("{root}/k3s"), format!("{root}/config.yaml"));
        std::fs::write(&bin, b"binary").expect("write");
        std::fs::write(&conf, b"a: 1\n").expect("write");
        std::fs::create_dir(dir.path().join("lib")).expect("lib");
        let id = |f: &str| {
            let out = std::process::Command::new("stat")
                .args(["-c", "%i %s %.9Z", f])
                .output()
                .expect("stat");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        // "feed" is not the binary's hash: only the cache can say it.
        let cache = format!("{bin} {} feed\n", id(&bin));
        std::fs::write(dir.path().join("lib/hashes"), cache).expect("cache");
        let script =
            crate::steps::k3s_service::SCRIPT.replace("/var/lib/pictl", &format!("{root}/lib"));
        let run = || {
            let args = [
                "k3s-agent.service",
                "none",
                "no",
                "no",
                "no",
                "5",
                "/var/lib/rancher/k3s",
                &bin,
                &conf,
            ];
            systemctl_calls(&script, &args);
            std::fs::read_to_string(dir.path().join("lib/k3s-started-with")).expect("record")
        };
        let sha = |b: &[u8]| crate::artifacts::sha256_hex(b);
        assert_eq!(run(), format!("feed  {bin}\n{}  {conf}\n", sha(b"a: 1\n")));
        std::fs::write(&bin, b"binary, changed").expect("write");
        let again = run();
        let want = format!(
            "{}  {bin}\n{}  {conf}\n",
            sha(b"binary, changed"),
            sha(b"a: 1\n")
        );
        assert_eq!(again, want);
    }

    /// `systemctl enable` reloads systemd by itself: a unit enabled and
    /// started after a new unit file costs one reload, not two, and a
    /// restart of an enabled unit none.
    #[test]
    fn the_service_scripts_reload_systemd_once_at_most() {
        for calls in both_scripts(&plan(true, true), false) {
            assert_eq!(reloads(&calls), 1, "{calls:?}");
            let enable = calls
                .iter()
                .position(|c| c.starts_with("enable --quiet --no-reload "));
            let reload = calls.iter().position(|c| c == "daemon-reload");
            assert!(enable.is_some() && enable < reload, "{calls:?}");
        }
        // Enabling alone (a unit systemd never loaded) reloads nothing.
        for calls in both_scripts(&plan(false, true), false) {
            assert_eq!(reloads(&calls), 0, "{calls:?}");
            let enabled = calls
                .iter()
                .any(|c| c.starts_with("enable --quiet --no-reload "));
            assert!(enabled, "{calls:?}");
        }
        for calls in both_scripts(&plan(true, false), false) {
            assert_eq!(reloads(&calls), 1, "{calls:?}");
            assert!(!calls.iter().any(|c| c.starts_with("enable")), "{calls:?}");
        }
        for calls in both_scripts(&plan(false, false), false) {
            assert_eq!(reloads(&calls), 0, "{calls:?}");
            assert!(!calls.iter().any(|c| c.starts_with("enable")), "{calls:?}");
            assert_eq!(starts(&calls), 1, "{calls:?}");
        }
    }

    /// A systemd that does not find the new unit (a stale "not found",
    /// systemd < 246) gets one reload, and the start again.
    #[test]
    fn a_start_refused_as_not_found_reloads_once_and_starts_again() {
        for calls in both_scripts(&plan(false, false), true) {
            assert_eq!(reloads(&calls), 1, "{calls:?}");
            assert_eq!(starts(&calls), 2, "{calls:?}");
        }
    }

    /// A start of a unit not yet installed, with the given reload and enable.
    fn plan(daemon_reload: bool, enable: bool) -> ServicePlan {
        ServicePlan {
            unit: "k3s-agent.service",
            daemon_reload,
            enable,
            action: ServiceAction::Start {
                from: "not installed".into(),
            },
        }
    }

    /// The systemctl calls of the K3s and the health-agent scripts for `p`.
    fn both_scripts(p: &ServicePlan, stale: bool) -> [Vec<String>; 2] {
        let [enable, reload] = p.systemd_args();
        let k3s = [
            p.unit,
            "start",
            enable,
            reload,
            "no",
            "5",
            "/var/lib/rancher/k3s",
            "/dev/null",
        ];
        [
            systemd_calls(crate::steps::k3s_service::SCRIPT, &k3s, stale),
            systemd_calls(
                crate::steps::health_agent::SCRIPT,
                &[enable, reload, "start"],
                stale,
            ),
        ]
    }

    fn reloads(calls: &[String]) -> usize {
        calls.iter().filter(|c| *c == "daemon-reload").count()
    }

    fn starts(calls: &[String]) -> usize {
        let start = |c: &&String| {
            c.ends_with("start k3s-agent.service") || *c == "start pictl-agent.service"
        };
        calls.iter().filter(start).count()
    }

    #[test]
    fn a_unit_stuck_starting_or_failed_is_restarted_a_stopped_one_started() {
        let start = |from: &str| ServiceAction::Start { from: from.into() }.verb();
        assert_eq!(start("inactive"), "start");
        assert_eq!(start("not installed"), "start");
        assert_eq!(start("activating"), "restart");
        assert_eq!(start("failed"), "restart");
    }
}
