//! The Table columns kubectl shows for the kinds behind API access and node
//! health: ServiceAccounts (NAME SECRETS AGE), RoleBindings and
//! ClusterRoleBindings (NAME ROLE AGE, wide: USERS GROUPS SERVICEACCOUNTS) and
//! Leases (NAME HOLDER AGE), as the apiserver's printers make them (kubernetes
//! pkg/printers/internalversion/printers.go, `printServiceAccount`,
//! `printRoleBinding`, `printClusterRoleBinding`, `printLease`; the subjects as
//! pkg/apis/rbac/helpers.go `SubjectsStrings` lists them).

use crate::tables::{Columns, age, col, name};
use serde_json::{Value, json};

pub fn service_accounts(items: &[&Value]) -> Columns {
    let cols = vec![
        col("Name", "string", 0),
        col("Secrets", "string", 0),
        col("Age", "string", 0),
    ];
    let row = |o: &&Value| {
        let n = o["secrets"].as_array().map_or(0, Vec::len);
        vec![name(o), json!(n), json!(age(o))]
    };
    (cols, items.iter().map(row).collect())
}

pub fn role_bindings(items: &[&Value]) -> Columns {
    let cols = vec![
        col("Name", "string", 0),
        col("Role", "string", 0),
        col("Age", "string", 0),
        col("Users", "string", 1),
        col("Groups", "string", 1),
        col("ServiceAccounts", "string", 1),
    ];
    let row = |o: &&Value| {
        let r = &o["roleRef"];
        let role = format!(
            "{}/{}",
            r["kind"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or("")
        );
        let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
        for s in o["subjects"].as_array().into_iter().flatten() {
            let n = s["name"].as_str().unwrap_or("").to_string();
            match s["kind"].as_str() {
                Some("User") => users.push(n),
                Some("Group") => groups.push(n),
                Some("ServiceAccount") => {
                    sas.push(format!("{}/{n}", s["namespace"].as_str().unwrap_or("")));
                }
                _ => {}
            }
        }
        vec![
            name(o),
            json!(role),
            json!(age(o)),
            json!(users.join(", ")),
            json!(groups.join(", ")),
            json!(sas.join(", ")),
        ]
    };
    (cols, items.iter().map(row).collect())
}

pub fn leases(items: &[&Value]) -> Columns {
    let cols = vec![
        col("Name", "string", 0),
        col("Holder", "string", 0),
        col("Age", "string", 0),
    ];
    let row = |o: &&Value| {
        let holder = o["spec"]["holderIdentity"].as_str().unwrap_or("");
        vec![name(o), json!(holder), json!(age(o))]
    };
    (cols, items.iter().map(row).collect())
}
