//! What pictl takes from where it runs when not told: the inventory a bare
//! `pictl apply` reads, and whether log lines get colour.

use std::ffi::OsStr;
use std::path::PathBuf;

/// `pictl.toml` in the working directory (what `pictl init` writes) when
/// it exists, else the example inventory.
pub fn inventory() -> PathBuf {
    let init = PathBuf::from("pictl.toml");
    if init.exists() {
        init
    } else {
        PathBuf::from("inventory/playson.toml")
    }
}

/// Whether log lines on stderr get colour: only on a terminal, and never
/// with `NO_COLOR` set to anything (no-color.org).
pub fn colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour(true, None));
        assert!(
            colour(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
