//! Graph-aware progress within a step, shared by every executor.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::graph::{Checkpoint, Graph};
use crate::node::Task;
use crate::state::State;

/// One step's progress: each task's reported fraction, and the percent derived from
/// them, never lower than before. Thread-safe: nodes may report from any thread.
#[derive(Debug)]
pub struct StepProgress {
    step: u64,
    from: f64,
    to: f64,
    inner: Mutex<Fractions>,
}

#[derive(Debug)]
struct Fractions {
    by_task: HashMap<(String, u32, bool), f64>,
    percent: f64,
}

impl StepProgress {
    /// The progress of the step that starts at `checkpoint` (see [`Graph::percent`]).
    pub fn new<S: State>(graph: &Graph<S>, checkpoint: &Checkpoint) -> Self {
        let from = graph.percent(checkpoint, 0.0);
        let to = graph.percent(checkpoint, 1.0);
        let by_task = checkpoint.next.iter().map(|t| (key(t), 0.0)).collect();
        Self { step: checkpoint.step + 1, from, to, inner: Mutex::new(Fractions { by_task, percent: from }) }
    }

    /// The step's number.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The percent so far.
    pub fn percent(&self) -> f64 {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).percent
    }

    /// Records that `task` is `fraction` (0..=1) done and returns the step's percent.
    /// A task's fraction never goes down; unknown tasks change nothing.
    pub fn update(&self, task: &Task, fraction: f64) -> f64 {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = inner.by_task.get_mut(&key(task)) {
            *slot = slot.max(fraction.clamp(0.0, 1.0));
        }
        let n = inner.by_task.len().max(1) as f64;
        let average = inner.by_task.values().sum::<f64>() / n;
        inner.percent = inner.percent.max(self.from + (self.to - self.from) * average);
        inner.percent
    }

    /// Records that `task` finished and returns the step's percent.
    pub fn complete(&self, task: &Task) -> f64 {
        self.update(task, 1.0)
    }
}

fn key(task: &Task) -> (String, u32, bool) {
    (task.node.clone(), task.invocation, task.input.is_some())
}
