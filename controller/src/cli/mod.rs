//! Command-line interface: flags as clap parses them, and the dispatch to
//! each command. `main.rs` only sets up logging and calls [`run`].

mod commands;
pub mod defaults;
mod init;
mod out;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use std::sync::Arc;
use std::time::Duration;

use crate::inventory::Inventory;
use crate::runner::{self, Mode};
use commands::{backup, reset, restore, write_kubeconfig};
pub use out::{EXIT_CHANGES, EXIT_FAILURE, EXIT_UNREACHABLE};
use out::{fail, note, print_out};

const AFTER_HELP: &str = "\
Examples:
  pictl validate -i inventory/playson.toml     check an inventory, report every problem
  pictl plan -i inventory/playson.toml         show what apply would change (exit 2 if anything)
  pictl plan --diff                            … with redacted diffs of drifted config and units
  pictl apply -i inventory/playson.toml        converge every node; re-runs report changed=0

Exit codes: 0 success (plan: nothing to change), 1 invalid input or failure, 2 plan has changes,
4 only unreachable nodes (nothing else failed).
Logging: -v (info), -vv (debug), -vvv (trace); RUST_LOG overrides, e.g. RUST_LOG=pictl=debug.";

/// `pictl -V`: the version and the commit it was built from.
const SHORT_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PICTL_GIT_COMMIT"),
    ")"
);

/// `pictl --version`: also the health agent it installs on the nodes.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{SHORT_VERSION}\nagent: pictl-agent {} (report schema v{})",
        pictl_agent::VERSION,
        pictl_agent::report::REPORT_VERSION
    )
});

#[derive(Debug, Parser)]
#[command(
    name = "pictl",
    version = SHORT_VERSION,
    long_version = LONG_VERSION.as_str(),
    about = "Declarative K3s provisioner for small fleets (Raspberry Pis first)",
    long_about = "pictl reads a TOML inventory of nodes, connects over SSH (host keys verified), \
detects each node's CPU architecture, installs and joins K3s from checksum-verified artifacts, \
and keeps the cluster converged: a re-run that finds nothing drifted reports changed=0.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Inventory file (TOML) describing the cluster and its nodes. Default:
    /// `pictl.toml` (what `pictl init` writes) when it exists here, else
    /// `inventory/playson.toml`.
    #[arg(
        short,
        long,
        global = true,
        env = "PICTL_INVENTORY",
        default_value_os_t = defaults::inventory()
    )]
    pub inventory: PathBuf,

    /// How many nodes to work on at once.
    #[arg(long, global = true, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// Output for people (default) or machines.
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// Seconds to wait for a rebooting node to come back, for K3s to start
    /// (a Pi's first start unpacks onto its SD card), and for nodes to turn Ready.
    #[arg(long, global = true, default_value_t = 300, value_name = "SECONDS")]
    pub wait: u64,

    /// More logging (repeat for more); RUST_LOG takes precedence.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines on stderr as text, or as one JSON object per line (for CI
    /// and log collectors: timestamp, level, target, message and fields).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How a K3s version change rolls through the nodes (`plan` shows it).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct UpgradeArgs {
    /// Agents upgraded at once (servers always go one at a time).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_unavailable: u16,

    /// Upgrade without evicting pods first (nodes are still cordoned and
    /// uncordoned when the API answers).
    #[arg(long)]
    pub no_drain: bool,

    /// Seconds a drain may wait for PodDisruptionBudgets before the upgrade
    /// of that node fails (naming the budget) and the rollout stops.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub drain_timeout: u64,

    /// Also evict Pods that no controller recreates (bare Pods) and Pods
    /// with emptyDir data: kubectl drain's --force --delete-emptydir-data.
    /// A bare Pod is then gone for good and emptyDir data is deleted.
    /// Without it such Pods stop their node's drain before anything is
    /// evicted, naming them; the node is uncordoned and not upgraded.
    #[arg(long)]
    pub drain_force: bool,

    /// Remove from the cluster the nodes the inventory no longer names (a
    /// board taken out): one at a time, each cordoned and drained, an etcd
    /// server taken out of etcd first (refused when that would break the
    /// quorum), then its Node and node-password Secret deleted. Without it
    /// they are warned about and left. K3s still running on such a machine
    /// registers it again: stop it (or `pictl reset` it first).
    #[arg(long)]
    pub prune_nodes: bool,
}

/// `--nodes` of plan and apply.
#[derive(Debug, Clone, clap::Args)]
pub struct NodesArg {
    /// Only these nodes (comma-separated names), as Ansible's --limit.
    /// Servers a selected agent needs are still checked, never changed
    /// unless named; other agents are not contacted; the workload and
    /// --prune-nodes are left to a run of the whole cluster.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub nodes: Vec<String>,
}

impl UpgradeArgs {
    fn resolve(&self) -> runner::Upgrade {
        runner::Upgrade {
            max_unavailable: usize::from(self.max_unavailable),
            drain: !self.no_drain,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            drain_force: self.drain_force,
            prune_nodes: self.prune_nodes,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an inventory offline and report every problem at once.
    ///
    /// Each problem is printed as FILE:LINE:COL: key.path: message (hint).
    /// Nothing is contacted. Exit 0 when valid, 1 otherwise.
    ///
    /// Example: pictl validate -i inventory/playson.toml
    Validate,
    /// Show, per node and step, what `apply` would change (before → after).
    ///
    /// Read-only: connects to every node and gathers facts, changes nothing.
    /// Exit 0 when converged, 2 when anything would change, 1 on failure.
    ///
    /// Example: pictl plan -i inventory/playson.toml && echo converged
    Plan {
        /// Also show a diff of each managed text file (config.yaml, units)
        /// that would be rewritten, with tokens and passwords redacted.
        /// Reads those files from the nodes (one more round trip each).
        #[arg(long)]
        diff: bool,
        #[command(flatten)]
        upgrade: UpgradeArgs,
        #[command(flatten)]
        limit: NodesArg,
    },
    /// Converge every node: install or upgrade K3s, join agents, fetch kubeconfig.
    ///
    /// Servers go before agents; unreachable nodes are reported and the rest
    /// still converge. Ends with a recap (ok / changed / skipped / failed /
    /// unreachable per node); a re-run with nothing drifted shows changed=0.
    ///
    /// A K3s version change on nodes already in the cluster is an upgrade:
    /// servers one at a time, then agents --max-unavailable at a time; each
    /// node is cordoned, drained through the Eviction API (PodDisruptionBudgets
    /// honoured, up to --drain-timeout), upgraded, waited for until Ready and
    /// uncordoned. A drain that times out names the budget that blocks and
    /// leaves its node uncordoned and not upgraded. As kubectl drain, a Pod
    /// no controller recreates or with emptyDir data stops its node's drain
    /// before anything is evicted (--drain-force evicts them); a Pod left
    /// terminating on a NotReady node counts as gone after its grace period. A node pictl left cordoned
    /// (an interrupted run) is uncordoned by the next run; one you cordoned
    /// stays cordoned.
    ///
    /// K3s and the health agent cross the controller's link once per arch:
    /// one node of each arch (the seed) gets them from the controller and
    /// serves them to the others over the LAN for the run; each node installs
    /// a copy only when its sha256 matches the release's checksum file, and
    /// falls back to an upload from the controller otherwise.
    ///
    /// Example: pictl apply -i inventory/playson.toml --concurrency 3
    ///
    /// Example: pictl apply --max-unavailable 2 --drain-timeout 600
    Apply {
        #[command(flatten)]
        upgrade: UpgradeArgs,
        /// Upload every node's copy of K3s and the agent from the controller
        /// (no node-to-node copies).
        #[arg(long)]
        no_relay: bool,
        #[command(flatten)]
        limit: NodesArg,
    },
    /// Show every node's state in one table (read-only).
    ///
    /// Per node: reachability, arch, K3s version, service state, Ready in the
    /// API, memory cgroup, clock skew, Pi model or OS. Exit 0 when every node
    /// is reachable, active and Ready; 1 otherwise.
    ///
    /// With --watch the table is redrawn in place every SECONDS (default
    /// 5) until Ctrl-C, as `watch` would (works in tmux and over SSH); with
    /// --output json each refresh is one JSON line.
    ///
    /// Example: pictl status -i inventory/playson.toml --watch 10
    Status {
        /// Refresh every SECONDS (default 5) until interrupted.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "5",
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch: Option<u64>,
    },
    /// Write the cluster's admin kubeconfig (0600), merged under a named context.
    ///
    /// Example: pictl kubeconfig -i inventory/playson.toml --out ~/.kube/config
    Kubeconfig {
        /// Kubeconfig file to write or merge into.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Back up the cluster's datastore to the state directory.
    ///
    /// Embedded etcd: K3s's own `k3s etcd-snapshot save` on the first
    /// server, fetched. SQLite: the server/db files, copied while K3s is
    /// briefly stopped (containers keep running). With it goes the server
    /// token a restore needs (the file is 0600). Prints the file's path;
    /// `<file>.sha256` lands beside it.
    ///
    /// Example: pictl backup -i inventory/playson.toml
    Backup,
    /// Restore a backup onto the running cluster, then wait for every node Ready.
    ///
    /// Refused, before any node is touched, when the file's sha256 does not
    /// match its .sha256, it is truncated or damaged, or it belongs to another
    /// cluster (another name, CA or token). Without --yes: what it would do,
    /// exit 2. SQLite: K3s stopped, server/db moved aside, the files written,
    /// K3s started. Embedded etcd: K3s stopped on every server, `k3s server
    /// --cluster-reset --cluster-reset-restore-path` on the first, then the
    /// others rejoin one at a time. Run again, an interrupted restore is done
    /// again from the top.
    ///
    /// Example: pictl restore ~/.local/state/pictl/lab/lab-20261207T190000Z.snapshot --yes
    Restore {
        /// The backup file `pictl backup` wrote.
        file: PathBuf,
        /// Restore for real: the datastore is replaced.
        #[arg(long)]
        yes: bool,
    },
    /// Remove K3s, the health agent and pictl's records from the nodes.
    ///
    /// Agents first, then servers one at a time; K3s is stopped and removed
    /// as K3s's own killall and uninstall scripts do (units, binary, links,
    /// /etc/rancher/k3s, /var/lib/rancher, /var/lib/kubelet, mounts, CNI
    /// interfaces and iptables rules). Nothing the user owns is reverted (a
    /// Pi's cmdline.txt stays). Without --yes it only shows what it would
    /// remove (exit 2 when anything). Resetting some nodes also deletes
    /// their Node objects; resetting all forgets the cluster's kubeconfig.
    ///
    /// Example: pictl reset -i inventory/playson.toml --nodes pi3 --yes
    Reset {
        /// Remove for real: the cluster's data is destroyed.
        #[arg(long)]
        yes: bool,
        /// Only these nodes (comma-separated names). With `ha = true`, a set
        /// of servers whose reset would leave etcd fewer than a majority of
        /// its members is refused before anything is touched (3 servers: at
        /// most 1 at a time); each server leaves etcd before K3s is removed.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        /// Also remove the cluster's context from this kubeconfig (one
        /// `pictl kubeconfig --out` merged it into).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Write a first inventory from the nodes themselves.
    ///
    /// Connects to each address over SSH, detects its arch, Pi model, OS and
    /// hostname, and writes a commented inventory: the first node the
    /// server, the rest agents, each arch pinned. A host key known_hosts
    /// lacks is shown with its fingerprint and recorded only once you
    /// confirm it (or with --accept-new; without a terminal, init refuses).
    /// An existing file is never overwritten.
    ///
    /// Example: pictl init --nodes 192.168.0.196,192.168.0.197 --user pi --out inventory/home.toml
    Init(InitArgs),
    /// Print a shell completion script for pictl.
    ///
    /// Example (bash): source <(pictl completions bash)
    /// Example (zsh): pictl completions zsh > "${fpath[1]}/_pictl"
    /// Example (fish): pictl completions fish > ~/.config/fish/completions/pictl.fish
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the inventory's JSON Schema (draft 2020-12), for editors.
    ///
    /// The repository ships it as inventory/pictl.schema.json; an inventory
    /// whose first line is `#:schema ./pictl.schema.json` gets completion,
    /// docs and checks in taplo / Even Better TOML.
    ///
    /// Example: pictl schema > inventory/pictl.schema.json
    Schema,
    /// Print pictl's man page (roff) to stdout, or write every page to a directory.
    ///
    /// Example: pictl man > ~/.local/share/man/man1/pictl.1 && man pictl
    /// Example: pictl man --dir ~/.local/share/man/man1   (pictl.1, pictl-apply.1, …)
    Man {
        /// Write pictl.1 and a page per subcommand (pictl-SUBCOMMAND.1) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `pictl init`'s flags.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Node addresses, comma-separated; the first becomes the server.
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "ADDR[,ADDR…]"
    )]
    pub nodes: Vec<String>,
    /// SSH user on the nodes (default: your user name); non-root users need passwordless sudo.
    #[arg(long)]
    pub user: Option<String>,
    /// The inventory file to write (must not exist).
    #[arg(long, default_value = "pictl.toml")]
    pub out: PathBuf,
    /// Trust and record host keys known_hosts lacks without asking.
    #[arg(long)]
    pub accept_new: bool,
    /// Private key file (default: the ssh-agent's keys).
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file to check and record host keys in.
    #[arg(long, value_name = "FILE", default_value = "~/.ssh/known_hosts")]
    pub known_hosts: String,
    /// SSH port of the nodes.
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// Cluster name (kubeconfig context, state directory).
    #[arg(long, default_value = "pictl")]
    pub name: String,
    /// Pin this K3s release (e.g. v1.33.1+k3s1) instead of following the stable channel.
    #[arg(long, value_name = "VERSION", conflicts_with = "channel")]
    pub k3s_version: Option<String>,
    /// Follow this K3s channel (stable, latest, v1.33…); default: stable.
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// Download K3s releases from this mirror (GitHub's release layout) instead of GitHub.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Environment variable holding the --identity-file's passphrase (else asked on the terminal).
    #[arg(long, value_name = "VAR", requires = "identity_file")]
    pub passphrase_env: Option<String>,
}

/// Runs one command; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    if !matches!(cli.command, Command::Status { watch: Some(_) }) {
        crate::interrupt::exit_on_signal();
    }
    match &cli.command {
        Command::Validate => validate(&cli),
        Command::Plan {
            diff,
            upgrade,
            limit,
        } => converge(&cli, Mode::Plan, *diff, upgrade.resolve(), (true, limit)).await,
        Command::Apply {
            upgrade,
            no_relay,
            limit,
        } => {
            converge(
                &cli,
                Mode::Apply,
                false,
                upgrade.resolve(),
                (!*no_relay, limit),
            )
            .await
        }
        Command::Kubeconfig { out } => write_kubeconfig(&cli, out.as_deref()),
        Command::Backup => backup(&cli).await,
        Command::Restore { file, yes } => restore(&cli, file, *yes).await,
        Command::Status { watch } => status::status(&cli, *watch).await,
        Command::Reset {
            yes,
            nodes,
            kubeconfig,
        } => reset(&cli, *yes, nodes, kubeconfig.as_deref()).await,
        Command::Init(args) => init::init(args).await,
        Command::Completions { shell } => print_out(
            &crate::manual::completions(Cli::command(), *shell),
            ExitCode::SUCCESS,
        ),
        Command::Schema => print_out(
            &crate::inventory::schema::json_schema_text(),
            ExitCode::SUCCESS,
        ),
        Command::Man { dir: None } => match crate::manual::man_page(Cli::command()) {
            Ok(roff) => print_out(&roff, ExitCode::SUCCESS),
            Err(e) => fail(format_args!("pictl man: {e}")),
        },
        Command::Man { dir: Some(dir) } => {
            match crate::manual::write_man_pages(Cli::command(), dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format_args!("pictl man: writing to {}: {e}", dir.display())),
            }
        }
    }
}

/// Loads the inventory, printing every diagnostic on failure.
pub fn load(cli: &Cli) -> Result<Inventory, ExitCode> {
    Inventory::load(&cli.inventory).map_err(|diags| print_problems(cli, &diags))
}

/// Every problem of the inventory on stderr, then their count.
fn print_problems(cli: &Cli, diags: &crate::inventory::Diagnostics) -> ExitCode {
    for d in diags.iter() {
        note(d);
    }
    fail(format_args!(
        "{} problem(s) in {}",
        diags.len(),
        cli.inventory.display()
    ))
}

fn validate(cli: &Cli) -> ExitCode {
    match Inventory::load(&cli.inventory) {
        Ok(inv) => {
            let text = match cli.output {
                OutputFormat::Human => format!(
                    "{}: valid: cluster {} ({} server(s), {} agent(s))\n",
                    cli.inventory.display(),
                    inv.cluster.name,
                    inv.servers().count(),
                    inv.agents().count()
                ),
                OutputFormat::Json => format!(
                    "{}\n",
                    serde_json::json!({
                        "file": cli.inventory.display().to_string(),
                        "valid": true,
                        "cluster": inv.cluster.name,
                        "nodes": inv.nodes.iter().map(|n| serde_json::json!({
                            "name": n.name, "address": n.address, "role": n.role.as_str(),
                        })).collect::<Vec<_>>(),
                    })
                ),
            };
            print_out(&text, ExitCode::SUCCESS)
        }
        Err(diags) => match cli.output {
            OutputFormat::Human => print_problems(cli, &diags),
            OutputFormat::Json => {
                let json = serde_json::json!({
                    "file": cli.inventory.display().to_string(),
                    "valid": false,
                    "problems": diags.iter().map(|d| serde_json::json!({
                        "file": d.file, "line": d.line, "col": d.col,
                        "key": d.key_path, "message": d.message, "hint": d.hint,
                    })).collect::<Vec<_>>(),
                });
                print_out(&format!("{json}\n"), ExitCode::from(EXIT_FAILURE))
            }
        },
    }
}

pub(super) fn options(
    cli: &Cli,
    mode: Mode,
    diff: bool,
    upgrade: runner::Upgrade,
) -> runner::Options {
    runner::Options {
        concurrency: usize::from(cli.concurrency),
        connector: Arc::new(match mode {
            Mode::Plan => runner::SshConnector::interactive().read_only(),
            Mode::Apply => runner::SshConnector::interactive(),
        }),
        api: Arc::new(runner::KubeconfigApi),
        progress: match mode {
            Mode::Plan => Arc::new(runner::WarningsOnly),
            Mode::Apply if cli.verbose > 0 => Arc::new(runner::StderrProgress),
            Mode::Apply => Arc::new(crate::progress::LiveProgress::stderr()),
        },
        cache_dir: crate::artifacts::default_cache_dir(),
        wait: Duration::from_secs(cli.wait),
        diff,
        upgrade,
        relay: true,
        only: Vec::new(),
    }
}

async fn converge(
    cli: &Cli,
    mode: Mode,
    diff: bool,
    upgrade: runner::Upgrade,
    (relay, limit): (bool, &NodesArg),
) -> ExitCode {
    let inv = match load(cli) {
        Ok(inv) => inv,
        Err(code) => return code,
    };
    let opts = runner::Options {
        relay,
        only: limit.nodes.clone(),
        ..options(cli, mode, diff, upgrade)
    };
    let result = match mode {
        Mode::Plan => runner::plan(&inv, &opts).await,
        Mode::Apply => runner::apply(&inv, &opts).await,
    };
    opts.progress.finish();
    finish(cli, mode, result)
}

/// Prints the report (or the error) and picks the exit code: 1 on any
/// failure, 4 when the only trouble was unreachable nodes, 2 when a plan
/// would change something, else 0.
pub(super) fn finish(
    cli: &Cli,
    mode: Mode,
    result: Result<runner::RunReport, runner::RunError>,
) -> ExitCode {
    let report = match result {
        Ok(r) => r,
        Err(e) => return fail(format_args!("pictl: {}", crate::error_chain(&e))),
    };
    let code = if report.failed() && report.only_unreachable() {
        ExitCode::from(EXIT_UNREACHABLE)
    } else if report.failed() {
        ExitCode::from(EXIT_FAILURE)
    } else if mode == Mode::Plan && report.changed() {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    };
    match cli.output {
        OutputFormat::Human => print_out(&crate::recap::human(&report), code),
        OutputFormat::Json => print_out(&format!("{}\n", crate::recap::json(&report)), code),
    }
}
