//! Prune candidates: the ApplySet's live members, of every kind and in
//! every namespace the set ever held, that the playbook no longer lists.
//! Found by the `part-of` label, never guessed; listing only (the plan
//! decides, [`super::apply`] deletes).

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::Scope;

use super::applyset::{LABEL_PART_OF, PARENT_NAMESPACE, ParentState};
use super::error::ApplyError;
use super::target::ObjectRef;

/// `(group-kind, namespace, name)` of a member.
pub(crate) type Member = (String, Option<String>, String);

/// Members of set `id` (recording `set`) that are not in `keep`.
/// Namespaces in `missing` do not exist yet, so hold nothing.
pub(crate) async fn candidates(
    client: &kube::Client,
    id: &str,
    set: &ParentState,
    missing: &BTreeSet<String>,
    keep: &BTreeSet<Member>,
) -> Result<Vec<ObjectRef>, ApplyError> {
    let mut out = Vec::new();
    for gk in &set.group_kinds {
        let (kind, group) = gk.split_once('.').unwrap_or((gk.as_str(), ""));
        let g = match kube::discovery::group(client, group).await {
            Ok(g) => g,
            // The API group is gone, and with it every object of its kinds.
            Err(kube::Error::Discovery(_)) => continue,
            Err(source) => {
                return Err(ApplyError::Api {
                    what: format!("discovering {gk} to prune"),
                    source,
                });
            }
        };
        let Some((ar, caps)) = g.recommended_kind(kind) else {
            continue;
        };
        let apis: Vec<Api<DynamicObject>> = match caps.scope {
            Scope::Cluster => vec![Api::all_with(client.clone(), &ar)],
            Scope::Namespaced => (set.namespaces.iter().map(String::as_str))
                .chain([PARENT_NAMESPACE])
                .filter(|ns| !missing.contains(*ns))
                .map(|ns| Api::namespaced_with(client.clone(), ns, &ar))
                .collect(),
        };
        for api in apis {
            for o in members(&api, id, gk).await? {
                let name = o.metadata.name.clone().unwrap_or_default();
                let ns = o.metadata.namespace.clone();
                if !keep.contains(&(gk.clone(), ns.clone(), name.clone())) {
                    out.push(ObjectRef::new(&ar, ns, name));
                }
            }
        }
    }
    Ok(out)
}

/// The set's live members in one API (kind and namespace), except those
/// already going away.
async fn members(
    api: &Api<DynamicObject>,
    id: &str,
    gk: &str,
) -> Result<Vec<DynamicObject>, ApplyError> {
    let lp = ListParams::default().labels(&format!("{LABEL_PART_OF}={id}"));
    match api.list(&lp).await {
        // A namespace finalizing: its objects need nothing from us.
        Ok(list) => Ok(list
            .items
            .into_iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
            .collect()),
        // A namespace that is gone took its objects with it.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(vec![]),
        Err(source) => Err(ApplyError::Api {
            what: format!("listing {gk} to prune"),
            source,
        }),
    }
}
