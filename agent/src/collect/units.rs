//! State of the K3s systemd units. One `systemctl show` answers for both units
//! (`ActiveState` is what `systemctl is-active` prints; `LoadState=not-found`
//! tells an absent unit from an inactive one). Read-only D-Bus queries need no
//! privileges, so this works from the sandboxed service.

use std::collections::BTreeMap;

use super::Exec;
use crate::report::{K3S_UNITS, UnitState};

pub fn collect(exec: &dyn Exec) -> BTreeMap<String, UnitState> {
    let mut args = vec!["show", "--property=Id,LoadState,ActiveState"];
    args.extend(K3S_UNITS);
    let out = exec.stdout("systemctl", &args).unwrap_or_default();
    parse(&out, &K3S_UNITS)
}

/// Parses `systemctl show` output: one `Key=value` block per unit, blocks
/// separated by blank lines, in the order the units were asked for.
pub fn parse(out: &str, units: &[&str]) -> BTreeMap<String, UnitState> {
    let mut states: BTreeMap<String, UnitState> = units
        .iter()
        .map(|u| ((*u).to_owned(), UnitState::Unknown))
        .collect();
    let blocks = out.split("\n\n").map(str::trim).filter(|b| !b.is_empty());
    for (i, block) in blocks.enumerate() {
        let (mut id, mut load, mut active) = (None, None, None);
        for line in block.lines() {
            match line.split_once('=') {
                Some(("Id", v)) => id = Some(v),
                Some(("LoadState", v)) => load = Some(v),
                Some(("ActiveState", v)) => active = Some(v),
                _ => {}
            }
        }
        let Some(name) = id.or_else(|| units.get(i).copied()) else {
            continue;
        };
        if let Some(slot) = states.get_mut(name) {
            *slot = state(load, active);
        }
    }
    states
}

fn state(load: Option<&str>, active: Option<&str>) -> UnitState {
    match load {
        // A masked unit is deliberately out of service: for "which K3s unit does
        // this node run" it counts as not installed.
        Some("not-found" | "masked") => return UnitState::Absent,
        None => return UnitState::Unknown,
        Some(_) => {}
    }
    match active {
        Some("active") => UnitState::Active,
        Some("activating") => UnitState::Activating,
        Some("deactivating") => UnitState::Deactivating,
        Some("reloading" | "refreshing") => UnitState::Reloading,
        Some("inactive") => UnitState::Inactive,
        Some("failed") => UnitState::Failed,
        _ => UnitState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::exec::fake::FakeExec;

    #[test]
    fn server_active_and_agent_not_found() {
        let out = "Id=k3s.service\nLoadState=loaded\nActiveState=active\n\n\
                   Id=k3s-agent.service\nLoadState=not-found\nActiveState=inactive\n";
        let s = parse(out, &K3S_UNITS);
        assert_eq!(s["k3s.service"], UnitState::Active);
        assert_eq!(s["k3s-agent.service"], UnitState::Absent);
    }

    #[test]
    fn states_are_read_whatever_the_property_order() {
        let out = "ActiveState=failed\nLoadState=loaded\nId=k3s-agent.service\n\n\
                   LoadState=loaded\nActiveState=activating\nId=k3s.service\n";
        let s = parse(out, &K3S_UNITS);
        assert_eq!(s["k3s.service"], UnitState::Activating);
        assert_eq!(s["k3s-agent.service"], UnitState::Failed);
    }

    #[test]
    fn masked_is_absent_and_missing_answer_is_unknown() {
        let s = parse(
            "Id=k3s.service\nLoadState=masked\nActiveState=inactive\n",
            &K3S_UNITS,
        );
        assert_eq!(s["k3s.service"], UnitState::Absent);
        assert_eq!(s["k3s-agent.service"], UnitState::Unknown);
    }

    #[test]
    fn systemctl_missing_leaves_every_unit_unknown() {
        let s = collect(&FakeExec::default());
        assert_eq!(s.len(), 2);
        assert!(s.values().all(|v| *v == UnitState::Unknown));
    }
}
