//! Default-deny networking: only HTTP in and DNS out are opened.

use super::*;

fn policies(objs: &[Object]) -> Vec<&Value> {
    all_of(objs, "NetworkPolicy")
}

#[test]
fn default_deny_policy_covers_ingress_and_egress() {
    let objs = objects();
    let deny = policies(&objs).into_iter().find(|p| {
        let spec = &p["spec"];
        let everything = spec["podSelector"]
            .as_object()
            .is_some_and(|m| m.is_empty());
        let types: BTreeSet<&str> = spec["policyTypes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let no_rules = spec["ingress"].as_array().is_none_or(|r| r.is_empty())
            && spec["egress"].as_array().is_none_or(|r| r.is_empty());
        everything && types == BTreeSet::from(["Egress", "Ingress"]) && no_rules
    });
    assert!(
        deny.is_some(),
        "no NetworkPolicy selects every pod and denies both Ingress and Egress"
    );
}

#[test]
fn only_http_in_and_dns_out_are_opened() {
    let objs = objects();
    let labels = &deployment(&objs)["spec"]["template"]["metadata"]["labels"];
    let mut http_in = false;
    let mut dns_out = false;
    for p in policies(&objs) {
        let spec = &p["spec"];
        for rule in spec["ingress"].as_array().into_iter().flatten() {
            assert!(
                selects(&spec["podSelector"], labels),
                "ingress opened to pods other than httpbin: {}",
                p["metadata"]["name"]
            );
            let ports = rule["ports"]
                .as_array()
                .expect("ingress rule names its ports");
            for port in ports {
                assert_eq!(int(&port["port"], "ingress port"), PORT);
                assert!(port["protocol"].is_null() || port["protocol"] == "TCP");
            }
            http_in = true;
        }
        for rule in spec["egress"].as_array().into_iter().flatten() {
            let ports = rule["ports"]
                .as_array()
                .expect("egress rule names its ports");
            let protos: BTreeSet<&str> = ports
                .iter()
                .map(|port| {
                    assert_eq!(int(&port["port"], "egress port"), 53, "egress beyond DNS");
                    port["protocol"].as_str().unwrap_or("TCP")
                })
                .collect();
            assert_eq!(
                protos,
                BTreeSet::from(["TCP", "UDP"]),
                "DNS over UDP and TCP"
            );
            let to = rule["to"].as_array().expect("egress rule names its peers");
            assert!(!to.is_empty());
            for peer in to {
                assert_eq!(
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                    "kube-system"
                );
                assert_eq!(peer["podSelector"]["matchLabels"]["k8s-app"], "kube-dns");
            }
            dns_out = true;
        }
    }
    assert!(http_in, "no policy lets traffic into httpbin on {PORT}");
    assert!(dns_out, "no policy lets pods resolve names");
}
