//! The play recap: the interface of a run, for people and for machines.

use std::fmt::Write;

use crate::escape_controls as esc;
use crate::runner::{Mode, RunReport, Status};

/// Ansible-style recap lines, plus the changes when planning. Text from
/// nodes and playbooks is printed with control characters escaped, so
/// it can never forge a line.
pub fn human(report: &RunReport) -> String {
    let mut s = String::new();
    if report.mode == Mode::Plan {
        s.push_str(&planned(report));
    }
    s.push_str(&recap(report));
    s.push_str(&problems(report));
    let _ = writeln!(s, "{:.1} s", report.seconds);
    s
}

/// What a plan would change; never "converged" when a node did not answer.
fn planned(report: &RunReport) -> String {
    let mut s = String::new();
    for n in &report.nodes {
        for step in n.steps.iter().filter(|r| r.status == Status::Changed) {
            for c in &step.changes {
                let _ = writeln!(s, "  {} {}: {}", n.name, step.step, esc(&c.to_string()));
                for line in c.diff.iter().flat_map(|d| d.lines()) {
                    let _ = writeln!(s, "      {}", esc(line));
                }
            }
        }
    }
    for p in &report.workload {
        for c in &p.changes {
            let _ = writeln!(
                s,
                "  playbook {} workload: {}",
                p.playbook,
                esc(&c.to_string())
            );
        }
    }
    if !s.is_empty() {
        s.insert_str(0, "Would change:\n");
    } else if report.failed() {
        s.push_str("Nothing to change where pictl could look, but not every node or playbook could be checked (see below).\n");
    } else {
        s.push_str("Nothing to change: every node and playbook is converged.\n");
    }
    s
}

/// The per-node and per-playbook counts.
fn recap(report: &RunReport) -> String {
    let verb = if report.mode == Mode::Plan {
        "PLAN"
    } else {
        "PLAY"
    };
    let mut s = format!(
        "\n{verb} RECAP (cluster {}, K3s {}) {}\n",
        report.cluster,
        report.k3s_version,
        "*".repeat(30)
    );
    let names = report.nodes.iter().map(|n| n.name.len());
    let books = report
        .workload
        .iter()
        .map(|p| p.playbook.len() + "playbook ".len());
    let width = names.chain(books).max().unwrap_or(0);
    for n in &report.nodes {
        let changed = n.count(Status::Changed);
        let ok = n.count(Status::Ok) + changed;
        let _ = writeln!(
            s,
            "{:<width$} : ok={ok:<3} changed={changed:<3} skipped={:<3} failed={:<3} unreachable={}",
            n.name,
            n.count(Status::Skipped),
            usize::from(n.failed.is_some() || n.count(Status::Failed) > 0),
            usize::from(n.unreachable.is_some()),
        );
    }
    for p in &report.workload {
        let changed = p.changes.len();
        let _ = writeln!(
            s,
            "{:<width$} : ok={:<3} changed={changed:<3} failed={}",
            format!("playbook {}", p.playbook),
            p.unchanged + changed,
            usize::from(p.status == Status::Failed),
        );
    }
    s
}

/// Why each failed playbook and node failed.
fn problems(report: &RunReport) -> String {
    let mut s = String::new();
    for p in report
        .workload
        .iter()
        .filter(|p| p.status == Status::Failed)
    {
        let why = p.message.as_deref().unwrap_or_default();
        let _ = writeln!(s, "playbook {}: FAILED: {}", p.playbook, esc(why));
    }
    for n in &report.nodes {
        if let Some(u) = &n.unreachable {
            let _ = writeln!(s, "{}: UNREACHABLE: {}", n.name, esc(u));
        } else if let Some(f) = &n.failed {
            let _ = writeln!(s, "{}: FAILED: {}", n.name, esc(f));
        }
    }
    s
}

pub fn json(report: &RunReport) -> String {
    serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{NodeReport, StepReport};
    use crate::step::{Change, StepId};

    #[test]
    fn a_plan_prints_each_diff_under_its_change_with_controls_escaped() {
        let mut change = Change::new("/etc/rancher/k3s/config.yaml", "modified", "pictl's config");
        change.diff = Some("--- a\n+++ b\n-debug: true\x1b[2K\n token: <redacted>\n".into());
        let report = RunReport {
            cluster: "c".into(),
            mode: Mode::Plan,
            k3s_version: "v1.32.5+k3s1".into(),
            nodes: vec![NodeReport {
                name: "node2".into(),
                role: "agent",
                address: "10.0.0.2".into(),
                arch: None,
                unreachable: None,
                failed: None,
                steps: vec![StepReport::new(
                    StepId::K3sConfig,
                    Status::Changed,
                    vec![change],
                    None,
                )],
                ssh_round_trips: 2,
                seconds: 0.1,
            }],
            workload: vec![],
            seconds: 0.1,
        };
        let text = human(&report);
        assert!(
            text.contains(
                "  node2 k3s-config: /etc/rancher/k3s/config.yaml: modified → pictl's config\n      --- a\n      +++ b\n      -debug: true\\u{1b}[2K\n       token: <redacted>\n"
            ),
            "{text}"
        );
        assert!(json(&report).contains("\"diff\""));
    }
}
