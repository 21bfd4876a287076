//! K3s's command-line flags as data, read from K3s's sources (cited below):
//! which flags exist for `server` and `agent`, which take no value (booleans),
//! which may repeat (string slices), and which environment variable sets each
//! (the `EnvVar`/`EnvVars` of the flag). Used to import what K3s's install.sh
//! wrote (ExecStart flags, the unit's .service.env) into config.yaml keys.
//!
//! # Where the table comes from
//!
//! A config.yaml key is a flag's long name (K3s turns the file into
//! command-line flags before urfave/cli parses them), so one table serves
//! the command line, the environment and the file.
//!
//! The table follows the flag lists `ServerFlags` (`pkg/cli/cmds/server.go`)
//! and `NewAgentCommand`'s `Flags` (`pkg/cli/cmds/agent.go`), plus the shared
//! flags those lists use: `ConfigFlag` (`pkg/cli/cmds/config.go`), `DebugFlag`
//! and `PreferBundledBin` (`pkg/cli/cmds/root.go`), and `VLevel`, `VModule`,
//! `LogFile` and `AlsoLogToStderr` (`pkg/cli/cmds/log.go`). `version.ProgramUpper`
//! is `K3S`, so `version.ProgramUpper + "_TOKEN"` is `K3S_TOKEN`.
//!
//! Files read (stored copies; commit as reported by the reader):
//!
//! - Current flag set, urfave/cli v2 (`Name` + `Aliases` + `EnvVars`):
//!   `github.com/k3s-vip/k3s`, a fork that tracks k3s-io/k3s master. It
//!   includes `--write-kubeconfig-name` (k3s-io/k3s PR #14440) and
//!   `--helm-controller-arg` (PR #14185, issue #14300), both from mid-2026:
//!   - `pkg/cli/cmds/server.go` @ `19c09fadc679a5b517103a732f81a250426c75e7`
//!   - `pkg/cli/cmds/agent.go` @ `0385139045835bd1ab69f6871e36262313c4c231`
//!     and @ `94385529360c1eddcddcd976d54376b602372f66` (same flags)
//!   - `pkg/cli/cmds/root.go` @ `56384008180e00464c5c1106aeafd2a8442a7fff`
//! - `github.com/k3s-io/k3s` itself. The store offers no dated listing of
//!   its versions, so these are the copies reachable there:
//!   - `pkg/cli/cmds/server.go` @ `005499a940eafe99977bcabd6991a888a4cb6642`,
//!     @ `4dcfdfb577f94c0f7abd3caeb48da26718437c55` (rancher/k3s era, with
//!     `no-deploy` and `cluster-secret`), @ `e1dc3451bcecac8c67e4342aea44955a82bfa932`
//!     (2020), and a mid-2024 copy (urfave/cli v1 `Name: "token,t"` form,
//!     with `etcd-s3-proxy` and `supervisor-metrics` but before `nonroot-devices`)
//!     whose commit the reader did not show
//!   - `pkg/cli/cmds/agent.go` @ `00cc29ba2779b5a8ac2a76e234080d8ab685a8ad`
//!     (with `disable-selinux`, `no-flannel`, `cluster-secret`),
//!     @ `eaaf1f8471b6dfbaa3a61268a073671611490212`, @ `da7d76be23b2eaf673da2558efc89d87b5469243`,
//!     @ `b9c3715f2270a682216865ead8eb3df70ecbe843`, and a mid-2024 copy (with
//!     `disable-apiserver-lb`, `bind-address`, `node-internal-dns`) whose
//!     commit the reader did not show
//!   - `pkg/cli/cmds/root.go` @ `e7f7db48d80850c206c3dc94c27d9c1612a51d32`
//!   - `pkg/cli/cmds/config.go` @ `00d3f862be211a007dd8f5dc4d275616a562fd50`
//!   - `pkg/cli/cmds/log.go` @ `01661ba552407d1445b64567ff4feea4de5c62a0`
//! - Cross-check only: the `k3s server --help` and `k3s agent --help` output in
//!   `github.com/k3s-io/docs` `docs/cli/server.md` @ `02434960d6d5881e47ae8a1c857c4b51f23deec6`
//!   and `docs/cli/agent.md` @ `1f023c058c5f999a8857644625779e7298d13936`.
//!
//! # Kinds
//!
//! `cli.BoolFlag` (and v1's `cli.BoolTFlag`) is [`Kind::Bool`]: it takes no
//! separate value (`--cluster-init`); urfave/cli also accepts `--flag=false`.
//! `cli.StringSliceFlag` is [`Kind::List`]: it may repeat, and in config.yaml
//! it is a YAML list. `cli.StringFlag`, `cli.IntFlag` and `cli.DurationFlag`
//! are [`Kind::Value`]. No list flag has an environment variable.
//!
//! # Hidden, deprecated and removed flags
//!
//! Hidden and deprecated flags that K3s still accepts are in [`FLAGS`], marked
//! by a comment. Flags that older K3s releases accepted but current ones
//! reject are in [`REMOVED_FLAGS`], not in [`FLAGS`]: an old unit may still
//! carry them, and the importer can name them when it finds one.

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `cli.BoolFlag`: present or absent, no separate value.
    Bool,
    /// `cli.StringFlag`, `cli.IntFlag`, `cli.DurationFlag`: one value; the last one wins.
    Value,
    /// `cli.StringSliceFlag`: may repeat; every value is kept.
    List,
}

/// Which commands accept the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub server: bool,
    pub agent: bool,
}

impl Roles {
    /// Whether `k3s server` (`server` true) or `k3s agent` (false) accepts it.
    pub const fn includes(self, server: bool) -> bool {
        if server { self.server } else { self.agent }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The long name without dashes, which is also the config.yaml key.
    pub name: &'static str,
    /// Short aliases without dashes (e.g. "t" for token), if any.
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub roles: Roles,
    /// The environment variables that set it (e.g. "K3S_TOKEN").
    pub env: &'static [&'static str],
}

const S: Roles = Roles {
    server: true,
    agent: false,
};
const A: Roles = Roles {
    server: false,
    agent: true,
};
const SA: Roles = Roles {
    server: true,
    agent: true,
};

const NONE: &[&str] = &[];

const fn flag(
    name: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    roles: Roles,
    env: &'static [&'static str],
) -> Flag {
    Flag {
        name,
        aliases,
        kind,
        roles,
        env,
    }
}

use Kind::{Bool, List, Value};

/// Every flag of `k3s server` and `k3s agent`, in the server's order, then the
/// agent-only ones.
#[rustfmt::skip]
pub const FLAGS: &[Flag] = &[
    // Shared: config.go, root.go, log.go. Both commands start with these.
    // `config` is read before parsing; it is no config.yaml key.
    flag("config", &["c"], Value, SA, &["K3S_CONFIG_FILE"]),
    flag("debug", NONE, Bool, SA, &["K3S_DEBUG"]),
    flag("v", NONE, Value, SA, NONE),
    flag("vmodule", NONE, Value, SA, NONE),
    flag("log", &["l"], Value, SA, NONE),
    flag("alsologtostderr", NONE, Bool, SA, NONE),
    // Listener. `BindAddressFlag` is defined in agent.go and used by both.
    flag("bind-address", NONE, Value, SA, NONE),
    flag("https-listen-port", NONE, Value, S, NONE),
    flag("supervisor-port", NONE, Value, S, &["K3S_SUPERVISOR_PORT"]), // hidden
    flag("apiserver-port", NONE, Value, S, &["K3S_APISERVER_PORT"]), // hidden
    flag("apiserver-bind-address", NONE, Value, S, &["K3S_APISERVER_BIND_ADDRESS"]), // hidden
    flag("advertise-address", NONE, Value, S, NONE),
    flag("advertise-port", NONE, Value, S, NONE),
    flag("tls-san", NONE, List, S, NONE),
    flag("tls-san-security", NONE, Bool, S, NONE), // defaults to true
    // Data. The server's `DataDirFlag` and the agent's own data-dir flag
    // have the same name, alias and variable.
    flag("data-dir", &["d"], Value, SA, &["K3S_DATA_DIR"]),
    // Networking.
    flag("cluster-cidr", NONE, List, S, NONE),
    flag("service-cidr", NONE, List, S, NONE),
    flag("service-node-port-range", NONE, Value, S, NONE),
    flag("cluster-dns", NONE, List, S, NONE),
    flag("cluster-domain", NONE, Value, S, NONE),
    flag("flannel-backend", NONE, Value, S, NONE),
    flag("flannel-ipv6-masq", NONE, Bool, S, NONE),
    flag("flannel-external-ip", NONE, Bool, S, NONE),
    flag("egress-selector-mode", NONE, Value, S, NONE),
    flag("servicelb-namespace", NONE, Value, S, NONE),
    // Client kubeconfig.
    flag("write-kubeconfig", &["o"], Value, S, &["K3S_KUBECONFIG_OUTPUT"]),
    flag("write-kubeconfig-mode", NONE, Value, S, &["K3S_KUBECONFIG_MODE"]),
    flag("write-kubeconfig-group", NONE, Value, S, &["K3S_KUBECONFIG_GROUP"]),
    flag("write-kubeconfig-name", NONE, Value, S, &["K3S_KUBECONFIG_NAME"]), // new in 2026
    // Helm. Deprecated in favour of `--helm-controller-arg=default-job-image=…`.
    flag("helm-job-image", NONE, Value, S, NONE),
    // Cluster. `ServerToken` (server.go) and `AgentTokenFlag` (agent.go) share
    // name, alias and variable; so do the two `server` flags.
    flag("token", &["t"], Value, SA, &["K3S_TOKEN"]),
    flag("token-file", NONE, Value, SA, &["K3S_TOKEN_FILE"]),
    flag("agent-token", NONE, Value, S, &["K3S_AGENT_TOKEN"]),
    flag("agent-token-file", NONE, Value, S, &["K3S_AGENT_TOKEN_FILE"]),
    flag("server", &["s"], Value, SA, &["K3S_URL"]),
    flag("cluster-init", NONE, Bool, S, &["K3S_CLUSTER_INIT"]),
    flag("cluster-reset", NONE, Bool, S, &["K3S_CLUSTER_RESET"]),
    flag("cluster-reset-restore-path", NONE, Value, S, NONE),
    // Arguments for the embedded components.
    flag("kube-apiserver-arg", NONE, List, S, NONE),
    flag("etcd-arg", NONE, List, S, NONE),
    flag("kube-controller-manager-arg", NONE, List, S, NONE),
    flag("kube-scheduler-arg", NONE, List, S, NONE),
    flag("helm-controller-arg", NONE, List, S, NONE), // new in 2026
    flag("kube-cloud-controller-manager-arg", NONE, List, S, NONE),
    // Datastore.
    flag("kine-tls", NONE, Bool, S, NONE), // hidden
    flag("datastore-endpoint", NONE, Value, S, &["K3S_DATASTORE_ENDPOINT"]),
    flag("datastore-cafile", NONE, Value, S, &["K3S_DATASTORE_CAFILE"]),
    flag("datastore-certfile", NONE, Value, S, &["K3S_DATASTORE_CERTFILE"]),
    flag("datastore-keyfile", NONE, Value, S, &["K3S_DATASTORE_KEYFILE"]),
    // Embedded etcd and its snapshots.
    flag("etcd-expose-metrics", NONE, Bool, S, NONE),
    flag("etcd-disable-snapshots", NONE, Bool, S, NONE),
    flag("etcd-snapshot-name", NONE, Value, S, NONE),
    flag("etcd-snapshot-schedule-cron", NONE, Value, S, NONE),
    flag("etcd-snapshot-reconcile-interval", NONE, Value, S, NONE), // duration
    flag("etcd-snapshot-retention", NONE, Value, S, NONE),
    flag("etcd-snapshot-dir", NONE, Value, S, NONE),
    flag("etcd-snapshot-compress", NONE, Bool, S, NONE),
    flag("etcd-s3", NONE, Bool, S, NONE),
    flag("etcd-s3-endpoint", NONE, Value, S, NONE),
    flag("etcd-s3-endpoint-ca", NONE, Value, S, NONE),
    flag("etcd-s3-skip-ssl-verify", NONE, Bool, S, NONE),
    flag("etcd-s3-access-key", NONE, Value, S, &["AWS_ACCESS_KEY_ID"]),
    flag("etcd-s3-secret-key", NONE, Value, S, &["AWS_SECRET_ACCESS_KEY"]),
    flag("etcd-s3-session-token", NONE, Value, S, &["AWS_SESSION_TOKEN"]),
    flag("etcd-s3-bucket", NONE, Value, S, NONE),
    flag("etcd-s3-bucket-lookup-type", NONE, Value, S, NONE),
    flag("etcd-s3-region", NONE, Value, S, NONE),
    flag("etcd-s3-folder", NONE, Value, S, NONE),
    flag("etcd-s3-retention", NONE, Value, S, NONE),
    flag("etcd-s3-proxy", NONE, Value, S, NONE),
    flag("etcd-s3-config-secret", NONE, Value, S, NONE),
    flag("etcd-s3-insecure", NONE, Bool, S, NONE),
    flag("etcd-s3-timeout", NONE, Value, S, NONE), // duration
    // Storage and packaged components.
    flag("default-local-storage-path", NONE, Value, S, NONE),
    flag("disable", NONE, List, S, NONE),
    flag("disable-scheduler", NONE, Bool, S, NONE),
    flag("disable-cloud-controller", NONE, Bool, S, NONE),
    flag("disable-kube-proxy", NONE, Bool, S, NONE),
    flag("disable-network-policy", NONE, Bool, S, NONE),
    flag("disable-helm-controller", NONE, Bool, S, NONE),
    flag("disable-apiserver", NONE, Bool, S, NONE), // hidden
    flag("disable-controller-manager", NONE, Bool, S, NONE), // hidden
    flag("disable-etcd", NONE, Bool, S, NONE), // hidden
    flag("embedded-registry", NONE, Bool, S, NONE),
    flag("supervisor-metrics", NONE, Bool, S, NONE),
    // Agent flags (agent.go), which `ServerFlags` also lists.
    flag("node-name", NONE, Value, SA, &["K3S_NODE_NAME"]),
    flag("with-node-id", NONE, Bool, SA, NONE),
    flag("node-label", NONE, List, SA, NONE),
    flag("node-taint", NONE, List, SA, NONE),
    flag("image-credential-provider-bin-dir", NONE, Value, SA, NONE),
    flag("image-credential-provider-config", NONE, Value, SA, NONE),
    flag("docker", NONE, Bool, SA, NONE), // experimental; under "Deprecated/hidden" in agent.go
    flag("container-runtime-endpoint", NONE, Value, SA, NONE),
    flag("default-runtime", NONE, Value, SA, NONE),
    flag("image-service-endpoint", NONE, Value, SA, NONE),
    flag("disable-default-registry-endpoint", NONE, Bool, SA, NONE),
    flag("nonroot-devices", NONE, Bool, SA, NONE),
    flag("pause-image", NONE, Value, SA, NONE),
    flag("snapshotter", NONE, Value, SA, NONE),
    flag("private-registry", NONE, Value, SA, NONE),
    // Defined in server.go only: the agent gets it from the server.
    flag("system-default-registry", NONE, Value, S, &["K3S_SYSTEM_DEFAULT_REGISTRY"]),
    flag("airgap-extra-registry", NONE, List, SA, NONE), // hidden
    flag("node-ip", &["i"], List, SA, NONE),
    flag("node-external-ip", NONE, List, SA, NONE),
    flag("node-internal-dns", NONE, List, SA, NONE),
    flag("node-external-dns", NONE, List, SA, NONE),
    flag("resolv-conf", NONE, Value, SA, &["K3S_RESOLV_CONF"]),
    flag("flannel-iface", NONE, Value, SA, NONE),
    flag("flannel-conf", NONE, Value, SA, NONE),
    flag("flannel-cni-conf", NONE, Value, SA, NONE),
    flag("vpn-auth", NONE, Value, SA, &["K3S_VPN_AUTH"]), // experimental
    flag("vpn-auth-file", NONE, Value, SA, &["K3S_VPN_AUTH_FILE"]), // experimental
    flag("kubelet-arg", NONE, List, SA, NONE),
    flag("kube-proxy-arg", NONE, List, SA, NONE),
    flag("protect-kernel-defaults", NONE, Bool, SA, NONE),
    flag("secrets-encryption", NONE, Bool, S, NONE),
    flag("enable-pprof", NONE, Bool, SA, NONE), // experimental
    flag("rootless", NONE, Bool, SA, NONE), // experimental
    flag("secrets-encryption-provider", NONE, Value, S, NONE), // experimental
    flag("prefer-bundled-bin", NONE, Bool, SA, NONE), // experimental
    flag("selinux", NONE, Bool, SA, &["K3S_SELINUX"]),
    flag("lb-server-port", NONE, Value, SA, &["K3S_LB_SERVER_PORT"]),
    // Server: hidden/deprecated, at the end of `ServerFlags`.
    flag("disable-agent", NONE, Bool, S, NONE), // hidden
    flag("kube-controller-arg", NONE, List, S, NONE), // hidden; same as kube-controller-manager-arg
    flag("kube-cloud-controller-arg", NONE, List, S, NONE), // hidden; same as kube-cloud-controller-manager-arg
    // Agent only: experimental, listed under "Deprecated/hidden" in agent.go.
    flag("disable-apiserver-lb", NONE, Bool, A, NONE),
];

/// Flags older K3s releases accepted and current ones reject: in older
/// copies of server.go and agent.go (e.g. agent.go @ 00cc29ba, server.go @
/// 4dcfdfb5), gone from the current ones. Not searched by [`lookup`] or
/// [`by_env`].
#[rustfmt::skip]
pub const REMOVED_FLAGS: &[Flag] = &[
    // Replaced by --disable.
    flag("no-deploy", NONE, List, S, NONE),
    // Replaced by --token.
    flag("cluster-secret", NONE, Value, SA, &["K3S_CLUSTER_SECRET"]),
    // Replaced by --flannel-backend=none.
    flag("no-flannel", NONE, Bool, SA, NONE),
    // Hidden `cli.BoolTFlag`; replaced by --selinux.
    flag("disable-selinux", NONE, Bool, SA, NONE),
];

fn find(table: &'static [Flag], name: &str, server: bool) -> Option<&'static Flag> {
    let name = name.trim_start_matches('-');
    if name.is_empty() {
        return None;
    }
    table
        .iter()
        .find(|f| f.roles.includes(server) && (f.name == name || f.aliases.contains(&name)))
}

/// The flag named `name` (long name or alias) for `server` (true) or agent (false).
/// Leading dashes are ignored: `--token`, `-t` and `token` all find `token`.
pub fn lookup(name: &str, server: bool) -> Option<&'static Flag> {
    find(FLAGS, name, server)
}

/// The flag an environment variable sets, for server or agent.
pub fn by_env(var: &str, server: bool) -> Option<&'static Flag> {
    FLAGS
        .iter()
        .find(|f| f.roles.includes(server) && f.env.contains(&var))
}

/// The removed flag named `name` (see [`REMOVED_FLAGS`]), for server or agent.
pub fn removed(name: &str, server: bool) -> Option<&'static Flag> {
    find(REMOVED_FLAGS, name, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str) -> &'static Flag {
        lookup(name, true).unwrap_or_else(|| panic!("server flag {name}"))
    }

    fn agent(name: &str) -> &'static Flag {
        lookup(name, false).unwrap_or_else(|| panic!("agent flag {name}"))
    }

    #[test]
    fn cluster_init_is_a_server_only_bool_set_by_k3s_cluster_init() {
        let f = server("cluster-init");
        assert_eq!(f.kind, Kind::Bool);
        assert_eq!(f.env, ["K3S_CLUSTER_INIT"]);
        assert_eq!(
            f.roles,
            Roles {
                server: true,
                agent: false
            }
        );
        assert!(lookup("cluster-init", false).is_none());
        assert_eq!(
            by_env("K3S_CLUSTER_INIT", true).map(|f| f.name),
            Some("cluster-init")
        );
        assert!(by_env("K3S_CLUSTER_INIT", false).is_none());
    }

    #[test]
    fn token_has_alias_t_and_env_k3s_token_in_both() {
        for f in [
            server("token"),
            agent("token"),
            server("t"),
            agent("-t"),
            agent("--token"),
        ] {
            assert_eq!(f.name, "token");
            assert_eq!(f.aliases, ["t"]);
            assert_eq!(f.kind, Kind::Value);
            assert_eq!(f.env, ["K3S_TOKEN"]);
        }
        assert_eq!(by_env("K3S_TOKEN", false).map(|f| f.name), Some("token"));
        assert_eq!(
            by_env("K3S_TOKEN_FILE", true).map(|f| f.name),
            Some("token-file")
        );
    }

    #[test]
    fn server_is_a_value_with_alias_s_set_by_k3s_url() {
        let f = agent("s");
        assert_eq!(f.name, "server");
        assert_eq!(f.kind, Kind::Value);
        assert_eq!(by_env("K3S_URL", false).map(|f| f.name), Some("server"));
        assert_eq!(by_env("K3S_URL", true).map(|f| f.name), Some("server"));
    }

    #[test]
    fn list_flags() {
        for name in [
            "node-label",
            "node-taint",
            "node-ip",
            "kubelet-arg",
            "kube-proxy-arg",
        ] {
            assert_eq!(server(name).kind, Kind::List, "{name}");
            assert_eq!(agent(name).kind, Kind::List, "{name}");
        }
        for name in [
            "disable",
            "tls-san",
            "cluster-cidr",
            "kube-apiserver-arg",
            "etcd-arg",
        ] {
            assert_eq!(server(name).kind, Kind::List, "{name}");
            assert!(lookup(name, false).is_none(), "{name} is server-only");
        }
        assert!(
            FLAGS
                .iter()
                .filter(|f| f.kind == Kind::List)
                .all(|f| f.env.is_empty())
        );
    }

    #[test]
    fn shared_agent_flags_are_in_both() {
        for name in [
            "node-name",
            "node-ip",
            "flannel-iface",
            "data-dir",
            "with-node-id",
            "selinux",
            "lb-server-port",
            "bind-address",
            "config",
            "debug",
        ] {
            assert_eq!(
                server(name).roles,
                Roles {
                    server: true,
                    agent: true
                },
                "{name}"
            );
        }
        assert_eq!(agent("d").env, ["K3S_DATA_DIR"]);
        assert_eq!(agent("i").name, "node-ip");
        assert_eq!(
            by_env("K3S_NODE_NAME", false).map(|f| f.name),
            Some("node-name")
        );
        assert_eq!(agent("c").env, ["K3S_CONFIG_FILE"]);
    }

    #[test]
    fn role_specific_flags() {
        assert!(lookup("disable-apiserver-lb", true).is_none());
        assert_eq!(agent("disable-apiserver-lb").kind, Kind::Bool);
        assert!(lookup("o", false).is_none());
        assert_eq!(server("o").name, "write-kubeconfig");
        assert!(by_env("K3S_AGENT_TOKEN", false).is_none());
        assert_eq!(
            by_env("K3S_AGENT_TOKEN", true).map(|f| f.name),
            Some("agent-token")
        );
        assert!(lookup("system-default-registry", false).is_none());
        assert_eq!(
            by_env("AWS_ACCESS_KEY_ID", true).map(|f| f.name),
            Some("etcd-s3-access-key")
        );
        assert!(by_env("AWS_ACCESS_KEY_ID", false).is_none());
    }

    #[test]
    fn unknown_and_removed_names() {
        assert!(lookup("", true).is_none());
        assert!(lookup("--", false).is_none());
        assert!(lookup("no-such-flag", true).is_none());
        assert!(by_env("K3S_KUBECONFIG", true).is_none());
        for r in REMOVED_FLAGS {
            assert!(
                lookup(r.name, true).is_none() && lookup(r.name, false).is_none(),
                "{}",
                r.name
            );
        }
        assert_eq!(removed("no-deploy", true).map(|f| f.kind), Some(Kind::List));
        assert!(removed("no-deploy", false).is_none());
        assert!(by_env("K3S_CLUSTER_SECRET", false).is_none());
    }

    #[test]
    fn names_aliases_and_variables_are_unambiguous_per_role() {
        for server in [true, false] {
            let role: Vec<&Flag> = FLAGS.iter().filter(|f| f.roles.includes(server)).collect();
            let mut names: Vec<&str> = role
                .iter()
                .flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied()))
                .collect();
            let mut vars: Vec<&str> = role.iter().flat_map(|f| f.env.iter().copied()).collect();
            let (n, v) = (names.len(), vars.len());
            names.sort_unstable();
            names.dedup();
            vars.sort_unstable();
            vars.dedup();
            assert_eq!(names.len(), n, "a name or alias repeats (server: {server})");
            assert_eq!(vars.len(), v, "a variable repeats (server: {server})");
        }
    }

    #[test]
    fn well_formed() {
        for f in FLAGS.iter().chain(REMOVED_FLAGS) {
            assert!(f.roles.server || f.roles.agent, "{} has no role", f.name);
            let kebab = |s: &str| {
                !s.is_empty()
                    && !s.starts_with('-')
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            };
            assert!(kebab(f.name), "{}", f.name);
            assert!(
                f.aliases.iter().all(|a| a.len() == 1 && kebab(a)),
                "{}",
                f.name
            );
            let upper = |s: &&str| {
                s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            };
            assert!(f.env.iter().all(upper), "{}", f.name);
        }
    }

    #[test]
    fn counts_match_the_sources() {
        // ServerFlags in server.go, and NewAgentCommand's Flags in agent.go.
        assert_eq!(FLAGS.iter().filter(|f| f.roles.server).count(), 126);
        assert_eq!(FLAGS.iter().filter(|f| f.roles.agent).count(), 46);
    }
}
