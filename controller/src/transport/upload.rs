//! Whole-file transfers as single shell round trips.
//!
//! An upload is one `sh -c` script whose stdin is the file: it writes a temp
//! file next to the target, fsyncs it, checks its sha256 against the hash
//! computed here, sets the mode and renames it over the target. The target is
//! therefore either the old file or the complete, verified new one, never a
//! half-written mix. Contents never appear in argv. The edge: these are the
//! scripts and the reading of their results; running them is the transport's.

use sha2::{Digest, Sha256};

use super::Output;
use super::command::RemoteCommand;
use super::error::{TransportError, excerpt};

/// Exit status of [`PUT_SCRIPT`] when the written bytes hash differently.
pub const HASH_MISMATCH_STATUS: i32 = 86;
const HASH_MISMATCH_TAG: &str = "pictl-sha256-mismatch ";

/// The end of every whole-file install (here and the relay's
/// [`crate::relay::INSTALL_SCRIPT`]): with `$tmp` filled next to `$target`
/// in `$dir`, fsync it, check its sha256 against `$want` (exit
/// [`HASH_MISMATCH_STATUS`] with the hash found), set `$mode` and rename it
/// over the target.
macro_rules! verify_and_install {
    () => {
        r#"sync -- "$tmp" 2>/dev/null || sync
got=$(sha256sum < "$tmp")
got=${got%% *}
if [ "$got" != "$want" ]; then
  echo "pictl-sha256-mismatch $got" >&2
  exit 86
fi
chmod -- "$mode" "$tmp"
mv -f -T -- "$tmp" "$target"
trap - EXIT
sync -- "$dir" 2>/dev/null || true
# A large file just hashed goes into the facts script's hash cache (its
# format: path inode size ctime sha256; see facts.rs), so the re-check
# after this run need not hash it again: 70 MB of K3s take a Pi 4 most of
# a second. Only where a facts run made pictl's record directory.
if [ "$keep_hash" = yes ] && [ -d /var/lib/pictl ]; then
  id=$(stat -c '%i %s %.9Z' -- "$target") &&
    (umask 077; printf '%s %s %s\n' "$target" "$id" "$got" >>/var/lib/pictl/hashes) || true
fi
"#
    };
}
pub(crate) use verify_and_install;

/// `$1` target (absolute), `$2` octal mode, `$3` expected sha256 (hex),
/// `$4` `yes` to record the hash in the facts cache (default no: see
/// [`KEEP_HASH_MIN_BYTES`]); stdin is the content. `mv -T` so a directory at the target is an error,
/// not a place to move into; `sync DIR` persists the rename itself.
pub const PUT_SCRIPT: &str = concat!(
    r#"set -eu
target=$1 mode=$2 want=$3 keep_hash=${4:-no}
case $target in
  /*) ;;
  *) echo "pictl: upload target must be an absolute path" >&2; exit 2 ;;
esac
dir=${target%/*}
[ -n "$dir" ] || dir=/
base=${target##*/}
[ -n "$base" ] || { echo "pictl: upload target has no file name" >&2; exit 2; }
mkdir -p -- "$dir"
tmp=$(mktemp "$dir/.$base.pictl-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 1' HUP INT TERM PIPE
cat > "$tmp"
"#,
    verify_and_install!()
);

/// Lower-case hex sha256, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// From this size on, an upload records its hash in the node's facts
/// cache: below it, hashing the file again costs less than recording it.
pub const KEEP_HASH_MIN_BYTES: usize = 1 << 20;

/// The upload command for `len` bytes, without its stdin (the caller
/// streams the contents).
pub fn put_command(
    path: &str,
    mode: u32,
    expected_sha256: &str,
    len: usize,
    sudo: bool,
) -> RemoteCommand {
    let keep = if len >= KEEP_HASH_MIN_BYTES {
        "yes"
    } else {
        "no"
    };
    RemoteCommand::script(PUT_SCRIPT)
        .arg(path)
        .arg(format!("{:04o}", mode & 0o7777))
        .arg(expected_sha256)
        .arg(keep)
        .sudo(sudo)
}

/// Turn the upload script's result into success or a precise error.
pub fn check_put(
    host: &str,
    path: &str,
    expected: &str,
    out: &Output,
) -> Result<(), TransportError> {
    if out.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status == HASH_MISMATCH_STATUS
        && let Some(actual) = stderr
            .lines()
            .find_map(|l| l.strip_prefix(HASH_MISMATCH_TAG))
    {
        return Err(TransportError::UploadVerify {
            host: host.to_owned(),
            path: path.to_owned(),
            expected: expected.to_owned(),
            actual: actual.trim().to_owned(),
        });
    }
    Err(TransportError::Upload {
        host: host.to_owned(),
        path: path.to_owned(),
        status: out.status,
        stderr: excerpt(&out.stderr),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(status: i32, stderr: &str) -> Output {
        Output {
            status,
            signal: None,
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn put_command_never_carries_contents_and_formats_mode_octal() {
        let cmd = put_command("/etc/x y", 0o100600, "abc", 10, true);
        let line = cmd.to_shell();
        assert!(line.ends_with(" pictl '/etc/x y' 0600 abc no"), "{line}");
        let big = put_command("/k3s", 0o755, "abc", KEEP_HASH_MIN_BYTES, true).to_shell();
        assert!(big.ends_with(" pictl /k3s 0755 abc yes"), "{big}");
        assert!(cmd.needs_sudo());
        assert!(cmd.stdin_bytes().is_none());
    }

    #[test]
    fn hash_mismatch_becomes_upload_verify_with_both_hashes() {
        let err = check_put(
            "node1",
            "/p",
            "aaaa",
            &output(86, "pictl-sha256-mismatch bbbb\n"),
        )
        .unwrap_err();
        match err {
            TransportError::UploadVerify {
                expected, actual, ..
            } => {
                assert_eq!((expected.as_str(), actual.as_str()), ("aaaa", "bbbb"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_upload_failures_keep_stderr() {
        let err = check_put("n", "/p", "a", &output(1, "mkdir: Permission denied\n")).unwrap_err();
        assert!(err.to_string().contains("Permission denied"), "{err}");
    }

    #[test]
    fn sha256_hex_matches_sha256sum_format() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Run the upload script locally: the same /bin/sh and coreutils as a
    /// Debian node, without SSH.
    fn run_put(target: &std::path::Path, want: &str, data: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", PUT_SCRIPT, "pictl"])
            .arg(target)
            .args(["0640", want])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The script may exit before reading (bad target): a broken pipe
        // here is part of what is being tested.
        let _ = child.stdin.take().unwrap().write_all(data);
        child.wait_with_output().unwrap()
    }

    #[test]
    fn put_script_replaces_target_atomically_with_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("new dir/it's $(x).conf");
        let data = b"hello\nworld\0binary";
        let out = run_put(&target, &sha256_hex(data), data);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read(&target).unwrap(), data);
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        let leftovers: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn put_script_leaves_target_untouched_on_hash_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("k3s");
        std::fs::write(&target, b"old").unwrap();
        let out = run_put(&target, &sha256_hex(b"something else"), b"new");
        let result = Output {
            status: out.status.code().unwrap(),
            signal: None,
            stdout: out.stdout,
            stderr: out.stderr,
        };
        let err = check_put("local", "/k3s", &sha256_hex(b"something else"), &result).unwrap_err();
        assert!(
            matches!(err, TransportError::UploadVerify { ref actual, .. } if *actual == sha256_hex(b"new")),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp removed"
        );
    }

    #[test]
    fn put_script_refuses_relative_targets_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_put(std::path::Path::new("relative"), &sha256_hex(b"x"), b"x");
        assert_eq!(out.status.code(), Some(2));
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let out = run_put(&sub, &sha256_hex(b"x"), b"x");
        assert!(!out.status.success());
        assert!(sub.is_dir());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp removed"
        );
    }
}
