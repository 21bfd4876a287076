//! The play recap: the interface of a run, for people and for machines.

use std::fmt::Write;

use crate::runner::{Mode, RunReport, Status};

/// Ansible-style recap lines, plus the changes when planning.
pub fn human(report: &RunReport) -> String {
    let mut s = String::new();
    if report.mode == Mode::Plan {
        for n in &report.nodes {
            for step in n.steps.iter().filter(|r| r.status == Status::Changed) {
                for c in &step.changes {
                    let _ = writeln!(
                        s,
                        "  {} {}: {}: {} → {}",
                        n.name, step.step, c.what, c.before, c.after
                    );
                }
            }
        }
        for p in &report.workload {
            for c in &p.changes {
                let _ = writeln!(
                    s,
                    "  playbook {} workload: {}: {} → {}",
                    p.playbook, c.what, c.before, c.after
                );
            }
        }
        if s.is_empty() {
            s.push_str("Nothing to change: every node and playbook is converged.\n");
        } else {
            s.insert_str(0, "Would change:\n");
        }
    }
    let verb = if report.mode == Mode::Plan {
        "PLAN"
    } else {
        "PLAY"
    };
    let _ = writeln!(
        s,
        "\n{verb} RECAP (cluster {}, K3s {}) {}",
        report.cluster,
        report.k3s_version,
        "*".repeat(30)
    );
    let width = report
        .nodes
        .iter()
        .map(|n| n.name.len())
        .chain(
            report
                .workload
                .iter()
                .map(|p| p.playbook.len() + "playbook ".len()),
        )
        .max()
        .unwrap_or(0);
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
    for p in report
        .workload
        .iter()
        .filter(|p| p.status == Status::Failed)
    {
        let _ = writeln!(
            s,
            "playbook {}: FAILED: {}",
            p.playbook,
            p.message.as_deref().unwrap_or_default()
        );
    }
    for n in &report.nodes {
        if let Some(u) = &n.unreachable {
            let _ = writeln!(s, "{}: UNREACHABLE: {u}", n.name);
        } else if let Some(f) = &n.failed {
            let _ = writeln!(s, "{}: FAILED: {f}", n.name);
        }
    }
    let _ = writeln!(s, "{:.1} s", report.seconds);
    s
}

pub fn json(report: &RunReport) -> String {
    serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}
