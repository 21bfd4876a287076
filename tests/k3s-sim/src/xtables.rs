//! K3s's bundled iptables: K3s unpacks its own `iptables-save`,
//! `iptables-restore` and the ip6tables pair into `<data-dir>/data/<hash>/bin/aux`
//! (the k3s-root userspace; install.sh's `create_killall` puts `$bin` and
//! `$bin/aux` of every `${K3S_DATA_DIR}/data/*/bin/` on PATH for exactly
//! these, k3s-io/k3s#2927), and kube-proxy, flannel and the CNI portmap
//! plugin fill the tables with `KUBE-`, `FLANNEL-` and `CNI-` chains that
//! outlive K3s until its killall removes them.
//!
//! The lab's nodes have no iptables and the simulator no netfilter, so the
//! node's tables are a file, `/run/k3s-sim/xtables/<tool>` (under
//! `K3S_SIM_NODE_ROOT`; `/run` is cleared by a reboot, as the kernel's
//! tables are). The simulator, run through a link named `iptables-save`
//! (or `ip6tables-save`), prints it; as `iptables-restore`, replaces it
//! with its input. A server or agent start adds K3s's chains.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The names K3s's aux directory answers to.
const TOOLS: [&str; 4] = [
    "iptables-save",
    "iptables-restore",
    "ip6tables-save",
    "ip6tables-restore",
];

/// The node's tables before K3s: the built-in chains and one rule of the
/// node's own, which a killall must keep.
const BASE: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n";

/// What kube-proxy, flannel and the portmap plugin add (chain names as
/// K3s's components create them).
const K3S: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:FLANNEL-FWD - [0:0]\n:KUBE-FIREWALL - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-SERVICES - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:CNI-HOSTPORT-DNAT - [0:0]\n:FLANNEL-POSTRTG - [0:0]\n:KUBE-POSTROUTING - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\nCOMMIT\n";

/// The tool named by argv[0], if this binary was run through such a link.
pub fn by_argv0(argv0: &str) -> Option<&'static str> {
    let name = Path::new(argv0).file_name()?.to_str()?;
    TOOLS.into_iter().find(|t| *t == name)
}

fn table_file(tool: &str) -> PathBuf {
    let family = tool.split('-').next().unwrap_or("iptables");
    crate::host::path("/run/k3s-sim/xtables").join(family)
}

/// Runs `iptables-save` or `iptables-restore` (or ip6tables'); the exit code.
pub fn run(tool: &str) -> i32 {
    let file = table_file(tool);
    let res = if tool.ends_with("-save") {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|_| BASE.to_string());
        std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing")
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the rules")
            .and_then(|_| write(&file, &text))
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{tool}: {e:#}");
            1
        }
    }
}

fn write(file: &Path, text: &str) -> Result<()> {
    let dir = file.parent().context("no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("replacing {}", file.display()))
}

/// The aux directory of a freshly unpacked `bin`: links to this binary.
pub fn lay_out(bin: &Path) -> Result<()> {
    let aux = bin.join("aux");
    std::fs::create_dir_all(&aux).with_context(|| format!("creating {}", aux.display()))?;
    let me = std::env::current_exe().context("finding the k3s binary")?;
    for tool in TOOLS {
        std::os::unix::fs::symlink(&me, aux.join(tool))
            .with_context(|| format!("linking {tool}"))?;
    }
    Ok(())
}

/// K3s's chains in the node's tables, as its components add them at
/// start (nothing is added twice).
pub fn add_k3s_chains() -> Result<()> {
    let file = table_file("iptables");
    let now = std::fs::read_to_string(&file).unwrap_or_default();
    if now.contains(":KUBE-SERVICES ") {
        return Ok(());
    }
    write(&file, K3S)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_to_the_aux_names_only() {
        assert_eq!(
            by_argv0("/srv/k3s/data/ab/bin/aux/iptables-save"),
            Some("iptables-save")
        );
        assert_eq!(by_argv0("ip6tables-restore"), Some("ip6tables-restore"));
        assert_eq!(by_argv0("/usr/local/bin/k3s"), None);
        assert_eq!(
            table_file("ip6tables-save").file_name().unwrap(),
            "ip6tables"
        );
    }

    #[test]
    fn k3s_chains_are_what_a_killall_filter_removes_and_the_rest_is_the_base() {
        let kept: String = K3S
            .lines()
            .filter(|l| !l.contains("KUBE-") && !l.contains("CNI-"))
            .filter(|l| !l.to_ascii_lowercase().contains("flannel"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(kept.starts_with(BASE), "{kept}");
    }
}
