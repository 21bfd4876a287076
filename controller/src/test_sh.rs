//! Tests' way to run one of pictl's node scripts locally: the same
//! `/bin/sh` and coreutils as a Debian node, with `PATH` chosen by the test
//! (shims that log or fake what the script starts).

use std::ffi::OsStr;
use std::process::{Command, Output};

/// Runs `script` as pictl runs it on a node (`sh -c SCRIPT pictl ARGS…`)
/// with `PATH` set to `path`; demands that it succeeds.
pub fn run<A: AsRef<OsStr>>(script: &str, args: impl IntoIterator<Item = A>, path: &str) -> Output {
    let out = Command::new("/bin/sh")
        .args(["-c", script, "pictl"])
        .args(args)
        .env("PATH", path)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
