//! The systemd units the facts script asks about.

/// A systemd unit as found on the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitFact {
    pub active: bool,
    pub active_state: String,
    pub enabled: bool,
    pub need_daemon_reload: bool,
    /// systemd holds a definition of the unit (`LoadState` is anything but
    /// `not-found`): a changed unit file needs a reload. A unit it never
    /// loaded is read from disk when it is started.
    pub loaded: bool,
}

/// `systemctl show` properties of one unit.
pub(super) fn parse_unit(props: &str) -> UnitFact {
    let mut u = UnitFact::default();
    for kv in props.split_whitespace() {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        match k {
            "ActiveState" => {
                u.active = v == "active";
                u.active_state = v.to_string();
            }
            "UnitFileState" => u.enabled = v == "enabled",
            "NeedDaemonReload" => u.need_daemon_reload = v == "yes",
            "LoadState" => u.loaded = v != "not-found",
            _ => {}
        }
    }
    u
}
