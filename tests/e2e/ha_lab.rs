//! `pictl apply` with `ha = true` on the lab: five nodes, node1–node3
//! servers (embedded etcd), node4–node5 agents, judged by real kubectl
//! through each server's own address and by what is on the nodes. Cases run
//! in order: the SQLite refusal on a fresh lab, then an HA bootstrap (after a
//! reset), then a server killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pictl_e2e::Lab;
use pictl_e2e::pictl::{self, node, steps, text};
use serde_json::Value;

pub(crate) const SERVERS: [&str; 3] = ["node1", "node2", "node3"];
pub(crate) const ALL: [&str; 5] = ["node1", "node2", "node3", "node4", "node5"];
/// A name the user's DNS (or VIP) would carry: only in the certificates here.
const SAN: &str = "k3s-ha.lab.test";

pub(crate) fn pictl(lab: &Lab, inventory: &Path, args: &[&str]) -> Output {
    pictl::run(lab, inventory, args)
}

fn apply_json(lab: &Lab, inventory: &Path) -> (i32, Value, Output) {
    let out = pictl(lab, inventory, &["apply", "--output", "json"]);
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}\n{}", text(&out)));
    (out.status.code().unwrap_or(-1), v, out)
}

/// The lab's inventory with `servers` as servers (the rest agents), and
/// `ha = true` plus a `tls_san` when `ha`.
pub(crate) fn inventory(lab: &Lab, file: &str, servers: &[&str], ha: bool) -> PathBuf {
    let base = std::fs::read_to_string(lab.inventory()).expect("inventory");
    let mut out = String::new();
    let mut current = String::new();
    for line in base.lines() {
        if let Some(n) = line
            .strip_prefix("name = \"")
            .and_then(|l| l.strip_suffix('"'))
        {
            current = n.to_string();
        }
        if line.starts_with("role = ") {
            let role = if servers.contains(&current.as_str()) {
                "server"
            } else {
                "agent"
            };
            out.push_str(&format!("role = \"{role}\"\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line == "state_dir = \"state\"" && ha {
            out.push_str(&format!("ha = true\ntls_san = [\"{SAN}\"]\n"));
        }
    }
    let path = lab.dir().join(file);
    std::fs::write(&path, out).expect("write inventory");
    path
}

/// kubectl with the controller's kubeconfig, sent to `node`'s own address
/// and checking its certificate for the user's name (`tls_san`).
pub(crate) fn kubectl_via(lab: &Lab, node: &str, args: &[&str]) -> Output {
    let addr = lab.address(node).expect("address");
    Command::new(pictl::KUBECTL)
        .arg("--kubeconfig")
        .arg(pictl::lab_kubeconfig(lab))
        .args([
            "--server",
            &format!("https://{addr}:6443"),
            "--tls-server-name",
            SAN,
        ])
        .args(["--request-timeout", "30s"])
        .args(args)
        .output()
        .expect("kubectl")
}

pub(crate) fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn on(lab: &Lab, node: &str, cmd: &str) -> String {
    lab.ssh_ok(node, "root", cmd).expect("ssh")
}

/// Ready nodes seen through `node`, NAME and ROLES, sorted.
pub(crate) fn ready_nodes(lab: &Lab, via: &str) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = kubectl_via(lab, via, &["get", "nodes", "--no-headers"]);
        let rows: Vec<(String, String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_string(), f[1].to_string(), f[2].to_string())
            })
            .collect();
        if rows.len() == ALL.len() && rows.iter().all(|r| r.1 == "Ready")
            || Instant::now() > deadline
        {
            let mut v: Vec<(String, String)> = rows.into_iter().map(|r| (r.0, r.2)).collect();
            v.sort();
            return v;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn a_single_sqlite_server_is_refused_before_any_write(lab: &Lab) {
    let _ = std::fs::remove_dir_all(lab.dir().join("state"));
    let single = inventory(lab, "ha-single.toml", &["node1"], false);
    let (code, v, out) = apply_json(lab, &single);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    on(
        lab,
        "node1",
        "test -f /var/lib/rancher/k3s/server/db/state.db",
    );
    let before: Vec<String> = ALL
        .iter()
        .map(|n| {
            on(
                lab,
                n,
                "cat /etc/rancher/k3s/config.yaml; systemctl show -p InvocationID k3s k3s-agent",
            )
        })
        .collect();
    let three = inventory(lab, "ha-three.toml", &SERVERS, true);
    for verb in ["plan", "apply"] {
        let out = pictl(lab, &three, &[verb]);
        assert_eq!(out.status.code(), Some(1), "{verb}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        for part in [
            "server node1 runs K3s on SQLite",
            "nothing was changed",
            "Migrating content from sqlite to etcd",
            "ha = true and node1 as the only server",
        ] {
            assert!(
                err.contains(part),
                "{part:?} not in {verb}'s message:\n{}",
                text(&out)
            );
        }
    }
    let after: Vec<String> = ALL
        .iter()
        .map(|n| {
            on(
                lab,
                n,
                "cat /etc/rancher/k3s/config.yaml; systemctl show -p InvocationID k3s k3s-agent",
            )
        })
        .collect();
    assert_eq!(before, after, "a node was changed by a refused run");
    on(
        lab,
        "node1",
        "test -f /var/lib/rancher/k3s/server/db/state.db && ! test -e /var/lib/rancher/k3s/server/db/etcd",
    );
}

pub fn ha_bootstrap_serves_the_same_nodes_through_every_server(lab: &Lab) {
    // From scratch: the previous case left a SQLite cluster.
    let plain = inventory(lab, "ha-single.toml", &["node1"], false);
    let reset = pictl(lab, &plain, &["reset", "--yes"]);
    assert_eq!(reset.status.code(), Some(0), "{}", text(&reset));
    let three = inventory(lab, "ha-three.toml", &SERVERS, true);
    let (code, v, out) = apply_json(lab, &three);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    let first = lab.address("node1").expect("address");
    let c1 = on(lab, "node1", "cat /etc/rancher/k3s/config.yaml");
    assert!(c1.contains("cluster-init: true"), "{c1}");
    for n in ["node2", "node3"] {
        let c = on(lab, n, "cat /etc/rancher/k3s/config.yaml");
        assert!(c.contains(&format!("server: https://{first}:6443")), "{c}");
        assert!(
            c.contains("token: K10"),
            "joins with the full token (CA pinned): {n}"
        );
    }
    for n in SERVERS {
        on(
            lab,
            n,
            "test -d /var/lib/rancher/k3s/server/db/etcd/member/wal && ! test -e /var/lib/rancher/k3s/server/db/state.db",
        );
    }
    // Through every server: the same five nodes, servers as etcd members, and
    // each certificate names the user's address.
    let seen = ready_nodes(lab, "node1");
    assert_eq!(seen.len(), 5, "{seen:?}");
    for (name, roles) in &seen {
        let want = if SERVERS.contains(&name.as_str()) {
            "control-plane,etcd,master"
        } else {
            "<none>"
        };
        assert_eq!(roles, want, "{seen:?}");
    }
    for n in ["node2", "node3"] {
        assert_eq!(ready_nodes(lab, n), seen, "through {n}");
    }
    let (code, again, out) = apply_json(lab, &three);
    assert_eq!(code, 0, "{}", text(&out));
    for n in ALL {
        assert!(
            steps(&again, n, "changed").is_empty(),
            "{n} changed on a re-run: {again:#}"
        );
    }
    let recap = String::from_utf8_lossy(&pictl(lab, &three, &["apply"]).stdout).into_owned();
    assert_eq!(recap.matches("changed=0 ").count(), 5, "{recap}");
}

pub fn a_killed_server_is_reported_and_the_api_answers_through_the_others(lab: &Lab) {
    let three = inventory(lab, "ha-three.toml", &SERVERS, true);
    let (code, v, out) = apply_json(lab, &three);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    lab.kill("node1").expect("kill");
    // node1: the first server (the one that started etcd, and the API address
    // here). The other two are a majority: reads and writes go on through both.
    let cm = lab.dir().join("ha-cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-kill, namespace: default}\ndata: {a: b}\n")
        .expect("manifest");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = kubectl_via(
            lab,
            "node2",
            &["apply", "--server-side", "-f", &cm.to_string_lossy()],
        );
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write with two of three servers: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let uid = |n| {
        ok(kubectl_via(
            lab,
            n,
            &["get", "cm", "after-kill", "-o", "jsonpath={.metadata.uid}"],
        ))
    };
    assert_eq!(uid("node3"), uid("node2"));
    let names = ok(kubectl_via(lab, "node3", &["get", "nodes", "-o", "name"]));
    assert_eq!(names.lines().count(), 5, "{names}");
    // apply names the dead server and converges the rest (through node2's
    // API; the agents, joined through node1, went on with the others).
    let (code, v, out) = apply_json(lab, &three);
    assert_eq!(code, 4, "{}", text(&out));
    let n1 = node(&v, "node1");
    assert!(
        n1["unreachable"]
            .as_str()
            .is_some_and(|m| m.contains("connect")),
        "{n1:#}"
    );
    for n in ["node2", "node3", "node4", "node5"] {
        let r = node(&v, n);
        assert!(
            r["failed"].is_null() && r["unreachable"].is_null(),
            "{n}: {r:#}"
        );
    }
    let human = pictl(lab, &three, &["apply"]);
    assert_ne!(human.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&human.stdout)
            .lines()
            .any(|l| l.contains("node1") && l.contains("UNREACHABLE")),
        "{}",
        text(&human)
    );
    // Back up, it catches up and the cluster converges again.
    lab.start_node("node1").expect("start");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (code, _, out) = apply_json(lab, &three);
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out));
        std::thread::sleep(Duration::from_secs(3));
    }
    assert_eq!(uid("node1"), uid("node2"));
}

/// The etcd members `via` lists at `/db/info` (server token only), by name.
pub(crate) fn etcd_members(lab: &Lab, via: &str) -> String {
    let addr = lab.address(via).expect("address");
    on(
        lab,
        via,
        &format!(
            "t=$(cat /var/lib/rancher/k3s/server/token); curl -sfk -u \"server:${{t##*:}}\" https://{addr}:6443/db/info"
        ),
    )
}

pub fn a_reset_of_ha_servers_keeps_etcd_quorum(lab: &Lab) {
    let three = inventory(lab, "ha-three.toml", &SERVERS, true);
    let (code, v, out) = apply_json(lab, &three);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    let unit = |n| on(lab, n, "systemctl show -p InvocationID,ActiveState k3s");
    let before = [unit("node2"), unit("node3")];
    // Two of three would leave etcd one member of three: refused, untouched.
    let out = pictl(lab, &three, &["reset", "--nodes", "node2,node3", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for part in [
        "resetting servers node2, node3",
        "3 servers hold the cluster, resetting 2 leaves 1",
        "etcd needs 2 of 3",
        "nothing was changed",
    ] {
        assert!(err.contains(part), "{part:?} not in:\n{}", text(&out));
    }
    assert_eq!([unit("node2"), unit("node3")], before);
    assert!(before[0].contains("ActiveState=active"), "{}", before[0]);
    // One of three: it leaves etcd first, and the two left serve.
    let out = pictl(lab, &three, &["reset", "--nodes", "node3", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    on(lab, "node3", "! test -e /usr/local/bin/k3s");
    let members = etcd_members(lab, "node1");
    assert!(
        members.contains("node1-") && members.contains("node2-") && !members.contains("node3-"),
        "{members}"
    );
    let cm = lab.dir().join("ha-after-reset.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-reset, namespace: default}\ndata: {a: b}\n")
        .expect("manifest");
    ok(kubectl_via(
        lab,
        "node2",
        &["apply", "--server-side", "-f", &cm.to_string_lossy()],
    ));
    let names = ok(kubectl_via(lab, "node1", &["get", "nodes", "-o", "name"]));
    assert!(
        !names.contains("node3") && names.lines().count() == 4,
        "{names}"
    );
}

/// The cluster CA a server holds (K3s's `server/tls/server-ca.crt`).
fn server_ca(lab: &Lab, n: &str) -> String {
    on(lab, n, "cat /var/lib/rancher/k3s/server/tls/server-ca.crt")
}

pub fn a_reflashed_first_server_rejoins_its_cluster(lab: &Lab) {
    let three = inventory(lab, "ha-three.toml", &SERVERS, true);
    let (code, v, out) = apply_json(lab, &three);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    let ca = server_ca(lab, "node2");
    let agent_config = on(lab, "node4", "cat /etc/rancher/k3s/config.yaml");
    // etcd settles on its three members before node1 leaves: a write through node1.
    let cm = lab.dir().join("ha-before-reflash.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: before-reflash, namespace: default}\ndata: {a: b}\n")
        .expect("manifest");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = kubectl_via(
            lab,
            "node1",
            &["apply", "--server-side", "-f", &cm.to_string_lossy()],
        );
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write through node1: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // node1 leaves etcd and the API the K3s way, through node2 (`pictl reset
    // --nodes node1` reads back through node1's own API once its member is
    // gone, and times out: see the branch's report), then is re-flashed:
    // nothing of K3s or pictl is left on it.
    ok(kubectl_via(
        lab,
        "node2",
        &[
            "annotate",
            "node",
            "node1",
            "etcd.k3s.cattle.io/remove=true",
        ],
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !etcd_members(lab, "node2").contains("node2-")
        || etcd_members(lab, "node2").contains("node1-")
    {
        assert!(
            Instant::now() < deadline,
            "node1 still a member: {}",
            etcd_members(lab, "node2")
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    ok(kubectl_via(lab, "node2", &["delete", "node", "node1"]));
    on(
        lab,
        "node1",
        "systemctl stop k3s 2>/dev/null; rm -rf /var/lib/rancher/k3s /etc/rancher /usr/local/bin/k3s /var/lib/pictl",
    );
    // node1 joins the cluster node2 holds instead of starting a second one.
    let (code, v, out) = apply_json(lab, &three);
    assert_eq!(code, 0, "{v:#}\n{}", text(&out));
    let node2 = lab.address("node2").expect("address");
    let c1 = on(lab, "node1", "cat /etc/rancher/k3s/config.yaml");
    assert!(
        c1.contains(&format!("server: https://{node2}:6443")) && !c1.contains("cluster-init"),
        "{c1}"
    );
    for n in SERVERS {
        assert_eq!(server_ca(lab, n), ca, "{n} holds another CA");
    }
    let members = etcd_members(lab, "node2");
    for n in SERVERS {
        assert!(members.contains(&format!("{n}-")), "{n} not in {members}");
    }
    assert_eq!(
        on(lab, "node4", "cat /etc/rancher/k3s/config.yaml"),
        agent_config,
        "the agents keep the cluster's token"
    );
    let seen = ready_nodes(lab, "node1");
    assert_eq!(seen.len(), ALL.len(), "{seen:?}");
    assert_eq!(ready_nodes(lab, "node3"), seen);
    let (code, again, out) = apply_json(lab, &three);
    assert_eq!(code, 0, "{}", text(&out));
    for n in ALL {
        assert!(
            steps(&again, n, "changed").is_empty(),
            "{n} changed on a re-run: {again:#}"
        );
    }
}
