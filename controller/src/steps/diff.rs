//! `pictl plan --diff`: what a plan would rewrite in the managed text files
//! (config.yaml and the units), line by line, with every secret redacted.
//!
//! Plans themselves never carry file contents or hashes of them. Only with
//! `--diff`, and only for a node whose text files drifted, the node's
//! current text is read in ONE extra round trip (a `cat` per file, with
//! sudo: config.yaml is root's). Reading is all it does: it takes no
//! `Writer`. Token values are replaced by `<redacted>` on both sides before
//! the lines are compared, so no token (old or new) reaches the output.

use std::collections::BTreeMap;

use base64::Engine;

use super::{
    HealthAgent, K3sConfig, K3sConfigPlan, K3sRegistries, K3sUnit, K3sUnitPlan, RegistriesPlan,
};
use crate::error_chain;
use crate::facts::paths;
use crate::step::{Check, DesiredConfig, NodeCx, Step, StepError, StepId};
use crate::transport::{RemoteCommand, Transport};

pub use crate::secret::{REDACTED, redact_word, secret_key};

/// Lines of context around each change, as `diff -u`.
const CONTEXT: usize = 3;

/// A managed text file a plan would rewrite.
struct Rewrite {
    step: StepId,
    path: &'static str,
    /// What pictl would write (it may hold the token: redacted before use).
    want: String,
    /// Whether the node has the file (else there is nothing to read).
    present: bool,
}

/// The managed text files the node's plan rewrites, from the steps' own
/// pure checks. Never the binaries.
fn rewrites(cx: &NodeCx<'_>) -> Vec<Rewrite> {
    let mut out = Vec::new();
    let present = |p: &str| cx.facts.file_sha(p).is_some();
    if let (Check::Change(K3sConfigPlan::Write { pending: None, .. }), DesiredConfig::Known(c)) =
        (K3sConfig.check(cx), &cx.desired.config)
    {
        out.push(Rewrite {
            step: StepId::K3sConfig,
            path: paths::CONFIG,
            want: c.expose().to_string(),
            present: present(paths::CONFIG),
        });
    }
    if let (Check::Change(RegistriesPlan::Write { .. }), Some(r)) =
        (K3sRegistries.check(cx), &cx.desired.registries)
    {
        out.push(Rewrite {
            step: StepId::K3sRegistries,
            path: paths::REGISTRIES,
            want: r.expose().to_string(),
            present: present(paths::REGISTRIES),
        });
    }
    if let Check::Change(K3sUnitPlan::Write { path, was_present }) = K3sUnit.check(cx) {
        out.push(Rewrite {
            step: StepId::K3sUnit,
            path,
            want: cx.desired.unit.clone(),
            present: was_present,
        });
    }
    if let Check::Change(p) = HealthAgent.check(cx)
        && p.unit.is_some()
    {
        out.push(Rewrite {
            step: StepId::HealthAgent,
            path: paths::HEALTH_AGENT_UNIT,
            want: pictl_agent::SYSTEMD_UNIT.to_string(),
            present: present(paths::HEALTH_AGENT_UNIT),
        });
    }
    out
}

/// `$@` paths; prints `path base64(content)` per line. Read-only.
const READ_SCRIPT: &str = r#"set -u
for f in "$@"; do
  printf '%s ' "$f"; cat -- "$f" | base64 -w0; printf '\n'
done
"#;

/// The current text of `paths` on the node, in one round trip.
async fn read(
    t: &dyn Transport,
    sudo: bool,
    paths: &[&'static str],
) -> Result<BTreeMap<String, String>, StepError> {
    let cmd = RemoteCommand::script(READ_SCRIPT)
        .args(paths.iter().copied())
        .sudo(sudo);
    let out = StepError::check_output("reading the managed files", t.exec(&cmd).await?)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(out
        .stdout_text()
        .lines()
        .filter_map(|l| {
            let (path, data) = l.split_once(' ')?;
            let bytes = b64.decode(data.trim()).ok()?;
            Some((
                path.to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ))
        })
        .collect())
}

/// One planned rewrite of a managed text file, as a redacted diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    pub step: StepId,
    pub path: &'static str,
    pub text: String,
}

/// The diff of each text file the node's plan rewrites. A read that fails
/// says so in place of the diff; the plan stands either way.
pub async fn diffs(t: &dyn Transport, cx: &NodeCx<'_>) -> Vec<FileDiff> {
    let rewrites = rewrites(cx);
    let to_read: Vec<&'static str> = rewrites
        .iter()
        .filter(|r| r.present)
        .map(|r| r.path)
        .collect();
    let current = if to_read.is_empty() {
        Ok(BTreeMap::new())
    } else {
        read(t, cx.node.ssh.sudo, &to_read).await
    };
    rewrites
        .iter()
        .map(|r| {
            let text = match &current {
                Ok(files) => {
                    let before = files.get(r.path).filter(|_| r.present);
                    unified(r.path, before.map_or("", String::as_str), &r.want)
                }
                Err(e) => format!("(could not read the node's file: {})\n", error_chain(e)),
            };
            FileDiff {
                step: r.step,
                path: r.path,
                text,
            }
        })
        .collect()
}

/// `--token X`, `--token=X`, `--agent-token=X`, … in a command line.
fn redact_flags(line: &str) -> String {
    let mut out = Vec::new();
    let mut hide_next = false;
    for word in line.split(' ') {
        if hide_next && !word.is_empty() {
            out.push(REDACTED.to_string());
            hide_next = false;
            continue;
        }
        let flag = word.trim_start_matches('-');
        if word.starts_with("--") {
            match flag.split_once('=') {
                Some((k, _)) if secret_key(k) => {
                    out.push(format!("--{k}={REDACTED}"));
                    continue;
                }
                None if secret_key(flag) => hide_next = true,
                _ => {}
            }
        }
        out.push(redact_word(word).unwrap_or_else(|| word.to_string()));
    }
    out.join(" ")
}

/// `text` with every secret value replaced by [`REDACTED`]: values of
/// secret-looking YAML keys (with their block scalars), secret flags, and
/// anything that looks like a token or a URL password.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Indentation of a secret key whose block scalar (`|`, `>`) is being hidden.
    let mut block: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(at) = block {
            if line.trim().is_empty() || indent > at {
                out.push_str(&" ".repeat(indent));
                out.push_str(REDACTED);
                out.push('\n');
                continue;
            }
            block = None;
        }
        let body = line.trim_start().trim_start_matches("- ");
        let key_value = body.split_once(':').filter(|(k, _)| {
            let k = k.trim().trim_matches(['"', '\'']);
            !k.is_empty() && !k.contains(char::is_whitespace) && secret_key(k)
        });
        match key_value {
            Some((key, value)) if !value.trim().is_empty() => {
                let prefix = &line[..line.len() - body.len()];
                let v = value.trim();
                if v.starts_with('|') || v.starts_with('>') {
                    block = Some(indent);
                }
                out.push_str(&format!("{prefix}{key}: {REDACTED}\n"));
            }
            _ => {
                out.push_str(&redact_flags(line));
                out.push('\n');
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Add,
}

/// The edit script from `a` to `b` by longest common subsequence (managed
/// files are small; a pathological size falls back to replace-all).
fn edits<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(Op, &'a str)> {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > 4_000_000 {
        let del = a.iter().map(|l| (Op::Del, *l));
        return del.chain(b.iter().map(|l| (Op::Add, *l))).collect();
    }
    // lcs[i][j]: LCS length of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(n + m));
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push((Op::Same, a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions first, as `diff -u` shows them.
            out.push((Op::Del, a[i]));
            i += 1;
        } else {
            out.push((Op::Add, b[j]));
            j += 1;
        }
    }
    out
}

/// A unified diff (`diff -u` style, 3 lines of context) of the node's
/// `before` and pictl's `after`, both redacted first.
pub fn unified(path: &str, before: &str, after: &str) -> String {
    let (before, after) = (redact(before), redact(after));
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let ops = edits(&a, &b);
    let mut out = format!("--- {path} (node)\n+++ {path} (pictl)\n");
    if ops.iter().all(|(op, _)| *op == Op::Same) {
        out.push_str(
            "(the shown lines are the same: only redacted values or line endings differ)\n",
        );
        return out;
    }
    // Line numbers (0-based) in a and b at each op.
    let mut pos = Vec::with_capacity(ops.len());
    let (mut ia, mut ib) = (0usize, 0usize);
    for (op, _) in &ops {
        pos.push((ia, ib));
        match op {
            Op::Same => (ia, ib) = (ia + 1, ib + 1),
            Op::Del => ia += 1,
            Op::Add => ib += 1,
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != Op::Same).collect();
    let mut k = 0;
    while k < changed.len() {
        // A hunk: changes closer than 2 × CONTEXT apart, plus context.
        let first = changed[k];
        let mut last = first;
        while k + 1 < changed.len() && changed[k + 1] - last <= 2 * CONTEXT {
            k += 1;
            last = changed[k];
        }
        k += 1;
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT + 1).min(ops.len());
        let lines_but = |op: Op| ops[start..end].iter().filter(|(o, _)| *o != op).count();
        let (a0, b0) = pos[start];
        let (a_len, b_len) = (lines_but(Op::Add), lines_but(Op::Del));
        let line_no = |at: usize, len: usize| if len == 0 { at } else { at + 1 };
        out.push_str(&format!(
            "@@ -{},{a_len} +{},{b_len} @@\n",
            line_no(a0, a_len),
            line_no(b0, b_len)
        ));
        for (op, line) in &ops[start..end] {
            let sign = match op {
                Op::Same => ' ',
                Op::Del => '-',
                Op::Add => '+',
            };
            out.push(sign);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "K10f3a9c2d1e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0::server:9b8e7f6a5d4c3b2a1f0e9d8c7b6a5f4e";
    const NEW_TOKEN: &str = "K10aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa::node:0123456789abcdef0123456789abcdef";

    fn config(token: &str, extra: &str) -> String {
        format!(
            "# Managed by pictl\nnode-name: node2\nserver: https://10.0.0.1:6443\ntoken: {token}\n{extra}node-label:\n- zone=a\n"
        )
    }

    #[test]
    fn a_diff_never_shows_a_token_from_either_side() {
        let before = config(TOKEN, "debug: true\n");
        let after = config(NEW_TOKEN, "");
        let d = unified(paths::CONFIG, &before, &after);
        for secret in [
            TOKEN,
            NEW_TOKEN,
            "9b8e7f6a5d4c3b2a",
            "0123456789abcdef",
            "K10",
        ] {
            assert!(!d.contains(secret), "{secret} in\n{d}");
        }
        assert!(d.contains("-debug: true\n"), "{d}");
        assert!(d.contains(" token: <redacted>\n"), "{d}");
        assert!(
            d.starts_with("--- /etc/rancher/k3s/config.yaml (node)\n+++ "),
            "{d}"
        );
    }

    #[test]
    fn secret_keys_flags_and_url_passwords_are_redacted_and_the_rest_kept() {
        let text = format!(
            "agent-token: hunter2\n\"datastore-password\": x\nsecrets-encryption: true\n\
             datastore-endpoint: postgres://k3s:pa55@db:5432/k3s\n\
             ExecStart=/usr/local/bin/k3s agent --token {TOKEN} --agent-token=s3 --node-name n\n\
             kube-apiserver-arg:\n  - \"{TOKEN}\"\ntoken: |\n  multi\n  line\nnode-name: n\n"
        );
        let r = redact(&text);
        for secret in ["hunter2", "pa55", TOKEN, "=s3 ", "multi", "line\n", ": x"] {
            assert!(!r.contains(secret), "{secret} in\n{r}");
        }
        assert!(r.contains("secrets-encryption: true"), "{r}");
        assert!(r.contains("postgres://k3s:<redacted>@db:5432/k3s"), "{r}");
        assert!(
            r.contains("--token <redacted> --agent-token=<redacted> --node-name n"),
            "{r}"
        );
        assert!(r.ends_with("node-name: n\n"), "{r}");
    }

    #[test]
    fn only_a_token_change_says_so_without_showing_it() {
        let d = unified(paths::CONFIG, &config(TOKEN, ""), &config(NEW_TOKEN, ""));
        assert!(d.contains("only redacted values"), "{d}");
        assert!(!d.contains(TOKEN) && !d.contains(NEW_TOKEN));
    }

    #[test]
    fn hunks_have_context_and_line_numbers_like_diff_u() {
        let a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
        let b = "1\n2\nthree\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n";
        let d = unified("/f", a, b);
        let hunks: Vec<&str> = d.lines().filter(|l| l.starts_with("@@")).collect();
        assert_eq!(hunks, ["@@ -1,6 +1,6 @@", "@@ -10,3 +10,4 @@"], "{d}");
        assert!(d.contains("-3\n+three\n"), "{d}");
        assert!(d.ends_with(" 12\n+13\n"), "{d}");
        // A new file: everything added.
        let d = unified("/f", "", "a\nb\n");
        assert!(d.ends_with("@@ -0,0 +1,2 @@\n+a\n+b\n"), "{d}");
    }
}
