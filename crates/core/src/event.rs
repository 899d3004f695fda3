//! What a run reports as it goes: [`RunEvent`]s, and the [`EventSink`]s that receive them.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::{NodeError, RunError};

/// One thing that happened in a run, with the run's progress at that moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    /// The superstep it belongs to (0 before the first step).
    pub step: u64,
    /// Graph-aware progress in percent: never decreases, 100 only on completion.
    pub percent: f64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The run began.
    RunStarted,
    /// The run went on from its last checkpoint, after whatever ran it stopped.
    RunResumed {
        /// Why it had stopped (the previous executor's fate).
        reason: String,
        /// The checkpoint's step.
        from_step: u64,
    },
    /// A step began with these tasks (labels: `node` or `node[i]`).
    StepStarted {
        /// The step's task labels, in merge order.
        tasks: Vec<String>,
    },
    /// A node reported progress from inside an attempt.
    NodeProgress {
        /// The task's label.
        task: String,
        /// How far the node is (0..=1).
        fraction: f64,
        /// What it said.
        message: String,
    },
    /// An attempt failed and will be retried.
    NodeRetrying {
        /// The task's label.
        task: String,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: NodeError,
        /// The wait before the next attempt, in milliseconds.
        delay_ms: u64,
    },
    /// A task finished successfully.
    NodeCompleted {
        /// The task's label.
        task: String,
        /// Attempts it took.
        attempts: u32,
    },
    /// A task failed for good.
    NodeFailed {
        /// The task's label.
        task: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: NodeError,
    },
    /// A step's updates were merged.
    StepCompleted {
        /// The tasks of the next step (empty: the run is about to complete).
        next: Vec<String>,
    },
    /// The run reached END.
    RunCompleted,
    /// The run failed.
    RunFailed {
        /// Why.
        error: RunError,
    },
    /// The run was cancelled.
    RunCancelled,
    /// A task asked a question; the run waits for the answer.
    RunWaiting {
        /// The task that asked.
        task: String,
        /// What it asked.
        payload: serde_json::Value,
    },
}

impl EventKind {
    /// Whether this event ends the run.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::RunCompleted | Self::RunFailed { .. } | Self::RunCancelled)
    }

    /// The event's name, as stored (`run_started`, `node_completed`...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::RunStarted => "run_started",
            Self::RunResumed { .. } => "run_resumed",
            Self::StepStarted { .. } => "step_started",
            Self::NodeProgress { .. } => "node_progress",
            Self::NodeRetrying { .. } => "node_retrying",
            Self::NodeCompleted { .. } => "node_completed",
            Self::NodeFailed { .. } => "node_failed",
            Self::StepCompleted { .. } => "step_completed",
            Self::RunCompleted => "run_completed",
            Self::RunFailed { .. } => "run_failed",
            Self::RunCancelled => "run_cancelled",
            Self::RunWaiting { .. } => "run_waiting",
        }
    }

    /// The task the event is about, if it is about one.
    pub fn task(&self) -> Option<&str> {
        match self {
            Self::NodeProgress { task, .. }
            | Self::NodeRetrying { task, .. }
            | Self::NodeCompleted { task, .. }
            | Self::NodeFailed { task, .. }
            | Self::RunWaiting { task, .. } => Some(task),
            _ => None,
        }
    }

    /// Whether this is a fine-grained in-node progress tick, which may be coalesced
    /// (latest wins); every other event must be kept.
    pub fn is_progress_tick(&self) -> bool {
        matches!(self, Self::NodeProgress { .. })
    }
}

/// Receives a run's events. Called on the run's own loop: must be cheap, never block.
pub trait EventSink: Send + Sync {
    /// Takes one event.
    fn emit(&self, event: RunEvent);
}

impl<F: Fn(RunEvent) + Send + Sync> EventSink for F {
    fn emit(&self, event: RunEvent) {
        self(event)
    }
}

/// An [`EventSink`] that keeps every event in memory, for tests and tools.
#[derive(Debug, Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<RunEvent>>>);

impl EventLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<RunEvent> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl EventSink for EventLog {
    fn emit(&self, event: RunEvent) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(event);
    }
}
