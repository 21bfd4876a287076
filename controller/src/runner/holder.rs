//! Which server holds an HA cluster, and how each server starts K3s's
//! datastore. The first server of the inventory starts etcd
//! (`cluster-init`) only for a brand-new cluster: once another server holds
//! the cluster, a first server without etcd data (re-flashed, or its disk
//! replaced) joins it, so one cluster never becomes two (a second CA, and
//! agents handed its token). Pure: facts in, a [`Start`] out.

use crate::facts::{Datastore, Facts};
use crate::inventory::{Inventory, Node, Role};
use crate::render::{Start, server_url};

/// Whether a server's facts say it holds the cluster: K3s installed and an
/// initialized etcd on its data dir (pkg/etcd/etcd.go `IsInitialized`: the
/// `member/wal` directory, which the facts read).
pub fn holds(f: &Facts) -> bool {
    f.k3s_version.is_some() && f.datastore == Some(Datastore::Etcd)
}

/// The server that holds the cluster: the first in inventory order whose
/// facts say it holds it (`None`: a brand-new cluster, or none reachable).
pub fn holder<'a>(
    nodes: impl IntoIterator<Item = (&'a Node, Option<&'a Facts>)>,
) -> Option<&'a Node> {
    nodes
        .into_iter()
        .find(|(n, f)| n.role == Role::Server && f.is_some_and(holds))
        .map(|(n, _)| n)
}

/// How `node` starts. Only the inventory's first HA server differs from
/// [`Start::by_inventory`]: it joins the server that holds the cluster when
/// it has no etcd data of its own, and, once it holds etcd data, it keeps
/// the server it joined (K3s ignores both then, and a change of either
/// would restart it for nothing).
pub fn start(inv: &Inventory, node: &Node, facts: Option<&Facts>, holder: Option<&Node>) -> Start {
    let by_inventory = Start::by_inventory(inv, node);
    if by_inventory != Start::Init {
        return by_inventory;
    }
    match (facts, holder) {
        (Some(f), _) if holds(f) => f.joined.clone().map_or(Start::Init, Start::Join),
        (_, Some(h)) if h.name != node.name => Start::Join(server_url(&h.address)),
        _ => Start::Init,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn inv() -> Inventory {
        let text = "[cluster]\nname = \"t\"\nk3s_version = \"v1.32.5+k3s1\"\nha = true\n\
             [[nodes]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n\
             [[nodes]]\nname = \"s2\"\naddress = \"10.0.0.2\"\nrole = \"server\"\n\
             [[nodes]]\nname = \"s3\"\naddress = \"10.0.0.3\"\nrole = \"server\"\n";
        Inventory::parse(text, "t.toml", Path::new("/")).expect("valid")
    }

    fn facts(etcd: bool, joined: Option<&str>) -> Facts {
        use crate::facts::record;
        let out = ["uname=x86_64", "machine_id=m", "hostname=h", "now=0"]
            .map(|kv| format!("{kv}\0"))
            .concat()
            + &record("k3s_version", "k3s version v1.32.5+k3s1 (8e8f2a47)")
            + &record("datastore", if etcd { "etcd" } else { "" })
            + &record("joined", joined.unwrap_or_default());
        Facts::parse(&out, 0).expect("facts")
    }

    #[test]
    fn a_first_server_without_etcd_joins_the_first_server_holding_the_cluster() {
        let inv = inv();
        let (s1, s2, s3) = (&inv.nodes[0], &inv.nodes[1], &inv.nodes[2]);
        let wiped = Facts {
            k3s_version: None,
            ..facts(false, None)
        };
        let member = facts(true, None);
        let found = [(s1, Some(&wiped)), (s2, None), (s3, Some(&member))];
        let h = holder(found).expect("s3 holds it");
        assert_eq!(h.name, "s3");
        let url = "https://10.0.0.3:6443".to_string();
        assert_eq!(start(&inv, s1, Some(&wiped), Some(h)), Start::Join(url));
        // The others join the API address as ever.
        let api = Start::Join("https://10.0.0.1:6443".into());
        assert_eq!(start(&inv, s2, None, Some(h)), api);
        // A brand-new cluster: the first server starts it.
        assert_eq!(holder([(s1, Some(&wiped)), (s2, None)]), None);
        assert_eq!(start(&inv, s1, Some(&wiped), None), Start::Init);
    }

    #[test]
    fn a_member_keeps_how_it_started_and_without_ha_nothing_joins() {
        let inv = inv();
        let s1 = &inv.nodes[0];
        let founder = facts(true, None);
        assert_eq!(start(&inv, s1, Some(&founder), Some(s1)), Start::Init);
        let url = "https://10.0.0.2:6443";
        let rejoined = facts(true, Some(url));
        assert_eq!(
            start(&inv, s1, Some(&rejoined), Some(s1)),
            Start::Join(url.into())
        );
        // Without ha nothing starts etcd, whoever holds data.
        let text = "[cluster]\nname = \"t\"\nk3s_version = \"v1.32.5+k3s1\"\n\
                    [[nodes]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n";
        let single = Inventory::parse(text, "t.toml", Path::new("/")).expect("valid");
        let s1 = &single.nodes[0];
        assert_eq!(start(&single, s1, Some(&founder), Some(s1)), Start::Alone);
    }
}
