//! Progress while a run works: one line per node and step on stderr, so an
//! operator watching a slow Pi sees where it is. Events are typed values;
//! only [`StderrProgress`] turns them into words. Also mirrored to tracing.

use super::{Status, StepId};

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Step(StepId),
    Node,
    Facts,
    Reboot,
    Channel,
    Workload,
    ImageArch,
    Relay,
}

/// Where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage<'a> {
    Applying,
    Finished(Status),
    Unreachable,
    Waiting,
    Warning,
    Retrying,
    Resolved,
    /// One object of a playbook and what happens to it (`created`, …).
    Object(&'a str),
}

/// One progress event; `subject` is a node name or `playbook NAME`.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub subject: &'a str,
    pub topic: Topic,
    pub stage: Stage<'a>,
    pub detail: &'a str,
}

impl Event<'_> {
    /// `[node] step: status (detail)`, not yet escaped.
    pub fn line(&self) -> String {
        let (topic, stage) = (self.topic_word(), self.stage_word());
        if self.detail.is_empty() {
            format!("[{}] {topic}: {stage}", self.subject)
        } else {
            format!("[{}] {topic}: {stage} {}", self.subject, self.detail)
        }
    }

    pub fn topic_word(&self) -> &'static str {
        match self.topic {
            Topic::Step(s) => s.as_str(),
            Topic::Node => "node",
            Topic::Facts => "facts",
            Topic::Reboot => "reboot",
            Topic::Channel => "channel",
            Topic::Workload => "workload",
            Topic::ImageArch => "image-arch",
            Topic::Relay => "relay",
        }
    }

    pub fn stage_word(&self) -> &str {
        match self.stage {
            Stage::Applying => "applying",
            Stage::Finished(s) => s.word(),
            Stage::Unreachable => "UNREACHABLE",
            Stage::Waiting => "waiting",
            Stage::Warning => "warning",
            Stage::Retrying => "retrying",
            Stage::Resolved => "resolved",
            Stage::Object(what) => what,
        }
    }
}

/// How a run reports progress while it works.
pub trait Progress: Send + Sync {
    fn event(&self, e: &Event<'_>);

    /// A phase starts on `nodes` nodes (0: the cluster as a whole).
    fn phase(&self, _name: &'static str, _nodes: usize) {}

    /// The run is over (called by the CLI before it prints the recap).
    fn finish(&self) {}
}

/// `[node] step: status (detail)` lines on stderr.
#[derive(Debug)]
pub struct StderrProgress;

impl Progress for StderrProgress {
    fn event(&self, e: &Event<'_>) {
        let (topic, stage) = (e.topic_word(), e.stage_word());
        tracing::debug!(
            node = e.subject,
            step = topic,
            status = stage,
            detail = e.detail,
            "progress"
        );
        eprintln!("{}", crate::escape_controls(&e.line()));
    }
}

/// Only warnings (`plan` prints its findings once, at the end).
#[derive(Debug)]
pub struct WarningsOnly;

impl Progress for WarningsOnly {
    fn event(&self, e: &Event<'_>) {
        if e.stage == Stage::Warning {
            StderrProgress.event(e);
        }
    }
}
