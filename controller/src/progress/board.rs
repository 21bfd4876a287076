//! What the live view says: per phase, its nodes, how long it has run and
//! the steps' outcomes counted; pure (times are passed in), so every line
//! it renders is unit-tested.

use std::fmt::Write as _;
use std::time::Duration;

use crate::runner::Status;
use crate::runner::{Event, Stage, Topic};

/// One phase's line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PhaseLine {
    name: &'static str,
    /// Nodes the phase selected; 0 for a cluster-wide phase.
    nodes: usize,
    started: Duration,
    ended: Option<Duration>,
    ok: usize,
    changed: usize,
    skipped: usize,
    failed: usize,
    unreachable: usize,
    warnings: usize,
    objects: usize,
}

impl PhaseLine {
    fn new(name: &'static str, nodes: usize, started: Duration) -> Self {
        Self {
            name,
            nodes,
            started,
            ended: None,
            ok: 0,
            changed: 0,
            skipped: 0,
            failed: 0,
            unreachable: 0,
            warnings: 0,
            objects: 0,
        }
    }

    fn counts(&self) -> String {
        let mut s = String::new();
        for (n, word) in [
            (self.ok, "ok"),
            (self.changed, "changed"),
            (self.skipped, "skipped"),
            (self.failed, "failed"),
            (self.unreachable, "unreachable"),
            (self.warnings, "warnings"),
            (self.objects, "objects"),
        ] {
            if n > 0 {
                let sep = if s.is_empty() { "" } else { ", " };
                let _ = write!(s, "{sep}{word} {n}");
            }
        }
        s
    }

    fn render(&self, now: Duration) -> String {
        let who = match self.nodes {
            0 => "cluster".to_string(),
            1 => "1 node".to_string(),
            n => format!("{n} nodes"),
        };
        let when = match self.ended {
            Some(end) => format!("done {}", secs(end.saturating_sub(self.started))),
            None => format!("{} ...", secs(now.saturating_sub(self.started))),
        };
        let counts = self.counts();
        let line = format!("{:<15} {who:<9} {when:<12} {counts}", self.name);
        line.trim_end().to_string()
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The run as the live view sees it.
#[derive(Debug, Default, Clone)]
pub struct Board {
    phases: Vec<PhaseLine>,
}

impl Board {
    /// A phase starts (and the one before it, if any, has ended).
    pub fn phase(&mut self, name: &'static str, nodes: usize, now: Duration) {
        self.end(now);
        self.phases.push(PhaseLine::new(name, nodes, now));
    }

    /// Whether a phase is running.
    pub fn running(&self) -> bool {
        self.phases.last().is_some_and(|p| p.ended.is_none())
    }

    /// The running phase, if any, has ended.
    pub fn end(&mut self, now: Duration) {
        if let Some(p) = self.phases.last_mut().filter(|p| p.ended.is_none()) {
            p.ended = Some(now);
        }
    }

    /// Counts an event in the running phase. Returns the line to list for
    /// good (failures, unreachable nodes, warnings), if it is one.
    pub fn event(&mut self, e: &Event<'_>) -> Option<String> {
        let running = self.phases.last_mut().filter(|p| p.ended.is_none());
        let mut scratch = None;
        let p = match running {
            Some(p) => p,
            None => scratch.insert(PhaseLine::new("", 0, Duration::ZERO)),
        };
        let listed = match (e.topic, e.stage) {
            (_, Stage::Finished(Status::Failed)) => {
                p.failed += 1;
                true
            }
            (_, Stage::Unreachable) => {
                p.unreachable += 1;
                true
            }
            (_, Stage::Warning) => {
                p.warnings += 1;
                true
            }
            (Topic::Step(_), Stage::Finished(Status::Ok)) => bump(&mut p.ok),
            (Topic::Step(_), Stage::Finished(Status::Changed)) => bump(&mut p.changed),
            (Topic::Step(_), Stage::Finished(Status::Skipped)) => bump(&mut p.skipped),
            (_, Stage::Object(_)) => bump(&mut p.objects),
            _ => false,
        };
        listed.then(|| crate::escape_controls(&e.line()).into_owned())
    }

    /// The live block: one line per phase so far.
    pub fn lines(&self, now: Duration) -> Vec<String> {
        self.phases.iter().map(|p| p.render(now)).collect()
    }

    /// The last phase's line (for plain output, when it ends).
    pub fn last_line(&self, now: Duration) -> Option<String> {
        self.phases.last().map(|p| p.render(now))
    }
}

/// Counts without listing.
fn bump(n: &mut usize) -> bool {
    *n += 1;
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::StepId;

    fn ev<'a>(subject: &'a str, topic: Topic, stage: Stage<'a>, detail: &'a str) -> Event<'a> {
        Event {
            subject,
            topic,
            stage,
            detail,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fifty_nodes_are_one_line_per_phase_with_counts() {
        let mut b = Board::default();
        b.phase("connect", 50, ms(0));
        b.phase("agents", 50, ms(1900));
        let names: Vec<String> = (1..=50).map(|i| format!("node{i}")).collect();
        for n in &names {
            for s in [StepId::K3sBinary, StepId::K3sConfig] {
                let applying = ev(n, Topic::Step(s), Stage::Applying, "");
                assert_eq!(b.event(&applying), None);
                assert_eq!(
                    b.event(&ev(n, Topic::Step(s), Stage::Finished(Status::Changed), "")),
                    None
                );
            }
            b.event(&ev(
                n,
                Topic::Step(StepId::PiCgroups),
                Stage::Finished(Status::Skipped),
                "",
            ));
        }
        assert_eq!(
            b.lines(ms(5000)),
            [
                "connect         50 nodes  done 1.9 s",
                "agents          50 nodes  3.1 s ...    changed 100, skipped 50",
            ]
        );
        b.end(ms(6000));
        assert_eq!(
            b.lines(ms(9000))[1],
            "agents          50 nodes  done 4.1 s   changed 100, skipped 50"
        );
    }

    #[test]
    fn failures_unreachable_nodes_and_warnings_are_listed_as_they_happen() {
        let mut b = Board::default();
        b.phase("connect", 3, ms(0));
        let down = ev(
            "node2",
            Topic::Node,
            Stage::Unreachable,
            "connect: no route to host",
        );
        assert_eq!(
            b.event(&down).as_deref(),
            Some("[node2] node: UNREACHABLE connect: no route to host")
        );
        b.phase("agents", 2, ms(500));
        let failed = ev(
            "node3",
            Topic::Step(StepId::K3sBinary),
            Stage::Finished(Status::Failed),
            "sha256 mismatch",
        );
        assert_eq!(
            b.event(&failed).as_deref(),
            Some("[node3] k3s-binary: FAILED sha256 mismatch")
        );
        let warned = ev("node1", Topic::Facts, Stage::Warning, "clock\x1b[2J skew");
        // What a node says cannot forge a line or move the cursor.
        assert_eq!(
            b.event(&warned).as_deref(),
            Some("[node1] facts: warning clock\\u{1b}[2J skew")
        );
        assert_eq!(
            b.lines(ms(1000)),
            [
                "connect         3 nodes   done 0.5 s   unreachable 1",
                "agents          2 nodes   0.5 s ...    failed 1, warnings 1",
            ]
        );
    }

    #[test]
    fn cluster_phases_count_objects_and_events_outside_a_phase_still_list() {
        let mut b = Board::default();
        let early = ev("cluster", Topic::Channel, Stage::Warning, "channel slow");
        assert_eq!(
            b.event(&early).as_deref(),
            Some("[cluster] channel: warning channel slow")
        );
        assert!(b.lines(ms(0)).is_empty());
        b.phase("workload", 0, ms(0));
        for _ in 0..7 {
            b.event(&ev(
                "playbook playson",
                Topic::Workload,
                Stage::Object("created"),
                "x",
            ));
        }
        b.phase("node", 1, ms(200));
        assert_eq!(
            b.lines(ms(200))[0],
            "workload        cluster   done 0.2 s   objects 7"
        );
        assert_eq!(
            b.last_line(ms(200)).as_deref(),
            Some("node            1 node    0.0 s ...")
        );
    }
}
