//! k3s simulator: one binary that behaves like `k3s` on the surface pictl uses
//! (`--version`, `server`, `agent`, config.yaml, token, kubeconfig with real TLS,
//! node registration, a Kubernetes API subset). It exists because real K3s cannot
//! be downloaded in the lab; see tests/k3s-sim/README.md for what it does and
//! does not do.

mod access_tables;
mod admission;
mod agent;
mod api;
mod apply;
mod auth;
mod autoscale;
mod certs;
mod cgroups;
mod cluster_reset;
mod config;
mod counter;
mod critical;
mod datadir;
mod eviction;
mod ha;
mod ha_api;
mod healthz;
mod host;
mod http;
mod images;
mod leaf;
mod log;
mod members;
mod multicall;
mod node_conditions;
mod node_password;
mod nodes;
mod notify;
mod openapi;
mod peer_tls;
mod pod_tables;
mod pods;
mod policy_tables;
mod proto;
mod quota;
mod rbac;
mod registries;
mod replicate;
mod routes;
mod schedule;
mod select;
mod server;
mod snapshot;
mod status;
mod store;
mod supervisor;
mod tables;
mod terminate;
mod tokens;
mod validate;
mod version;
mod watch;
mod xtables;

use config::Role;

pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn fatal(e: &anyhow::Error) -> ! {
    log::emit("fatal", &format!("Error: {e:#}"));
    std::process::exit(1);
}

/// pkg/daemons/executor/embed.go: the embedded kubelet's error ends the process.
pub fn kubelet_exited(e: &str) -> ! {
    log::emit("fatal", &format!("kubelet exited: {e}"));
    std::process::exit(1);
}

fn main() {
    if let Err(e) = version::check_arch() {
        eprintln!("k3s: {e}");
        std::process::exit(126);
    }
    let argv0 = std::env::args().next().unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(tool) = xtables::by_argv0(&argv0) {
        std::process::exit(xtables::run(tool));
    }
    if let Some(tool) = multicall::by_argv0(&argv0) {
        std::process::exit(multicall::run(tool, &args));
    }
    let Some(cmd) = args.first() else {
        eprintln!("usage: k3s [--version] <server|agent> [OPTIONS]");
        std::process::exit(1);
    };
    let role = match cmd.as_str() {
        "--version" | "-v" | "version" => {
            version::print_version();
            return;
        }
        "--help" | "-h" | "help" => {
            println!(
                "NAME:\n   k3s - Kubernetes, but small and simple (k3s-sim)\n\nCOMMANDS:\n   server        Run management server\n   agent         Run node agent\n   kubectl       Run kubectl\n   crictl        Run crictl\n   ctr           Run ctr\n   check-config  Run config check"
            );
            return;
        }
        "server" => Role::Server,
        "agent" => Role::Agent,
        "kubectl" | "crictl" | "ctr" | "check-config" => {
            std::process::exit(multicall::run(cmd, &args[1..]));
        }
        "etcd-snapshot" => {
            if let Err(e) = snapshot::run(&args[1..]) {
                fatal(&e);
            }
            return;
        }
        "token" | "secrets-encrypt" | "certificate" | "completion" => {
            eprintln!("k3s-sim: the '{cmd}' subcommand is not simulated");
            std::process::exit(1);
        }
        other => {
            eprintln!("No help topic for '{other}'");
            std::process::exit(3);
        }
    };
    let settings = match config::load(role, &args[1..]) {
        Ok(s) => s,
        Err(e) => fatal(&e),
    };
    log::set_debug(settings.bool("debug"));
    if let Some(why) = snapshot::broken_here() {
        fatal(&anyhow::anyhow!(why));
    }
    // cmd/k3s/main.go unpacks the bundled userspace before running the command.
    if let Err(e) = datadir::prepare(&settings.data_dir()) {
        fatal(&e);
    }
    // kube-proxy, flannel and the CNI plugins fill the node's tables.
    if let Err(e) = xtables::add_k3s_chains() {
        fatal(&e);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fatal(&e.into()),
    };
    let res = rt.block_on(async move {
        match role {
            Role::Server => server::run(settings).await,
            Role::Agent => agent::run(settings).await,
        }
    });
    if let Err(e) = res {
        fatal(&e);
    }
    // Watch streams and listeners may still hold tasks; do not wait for them.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
}
