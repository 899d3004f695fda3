//! The reference executor: runs a compiled graph to completion in one task, no actors.
//!
//! It fixes the semantics every other executor must reproduce: supersteps (all tasks of
//! a step run concurrently; the next step starts when all have finished), a
//! deterministic merge order, retries and timeouts per node, the step limit, fail-fast
//! on the first task that fails for good, and monotone graph-aware progress.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use uuid::Uuid;

use crate::error::{NodeError, NodeErrorKind, RunError};
use crate::event::{EventKind, EventSink, RunEvent};
use crate::graph::{Checkpoint, Graph};
use crate::node::{CancelToken, NodeContext, Observer, Task, UserContext};
use crate::progress::StepProgress;
use crate::state::{State, Update};

/// Runs a graph in the current task. Needs a tokio runtime with timers (for retries and
/// timeouts); with a paused clock, retries and timeouts take no real time.
///
/// ```
/// # use graphloop_core::{Executor, GraphBuilder, Update, START, END};
/// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct S { n: u32 }
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// let graph = GraphBuilder::<S>::new("double")
///     .node("double", |s, _ctx| async move { Ok(Update::new().set("n", s.n * 2)) })
///     .edge(START, "double")
///     .edge("double", END)
///     .compile()
///     .unwrap();
/// let done = rt.block_on(Executor::new(&graph).run(S { n: 21 })).unwrap();
/// assert_eq!(done.n, 42);
/// ```
pub struct Executor<S> {
    graph: Graph<S>,
    run_id: Uuid,
    user: Arc<UserContext>,
    cancel: CancelToken,
    sink: Arc<dyn EventSink>,
}

impl<S: State> Executor<S> {
    /// An executor for `graph`, with a fresh UUIDv7 run id, an anonymous user, and no
    /// event sink.
    pub fn new(graph: &Graph<S>) -> Self {
        Self {
            graph: graph.clone(),
            run_id: Uuid::now_v7(),
            user: Arc::new(UserContext::new("anonymous")),
            cancel: CancelToken::new(),
            sink: Arc::new(|_event: RunEvent| {}),
        }
    }

    /// The run's id.
    #[must_use]
    pub fn run_id(mut self, run_id: Uuid) -> Self {
        self.run_id = run_id;
        self
    }

    /// Who the run belongs to.
    #[must_use]
    pub fn user(mut self, user: UserContext) -> Self {
        self.user = Arc::new(user);
        self
    }

    /// The token that cancels the run.
    #[must_use]
    pub fn cancel_token(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Where the run's events go.
    #[must_use]
    pub fn events(mut self, sink: impl EventSink + 'static) -> Self {
        self.sink = Arc::new(sink);
        self
    }

    /// Runs the graph from `input` to END and returns the final state.
    pub async fn run(self, input: S) -> Result<S, RunError> {
        self.emit(0, 0.0, EventKind::RunStarted);
        match self.graph.start(&input) {
            Ok(checkpoint) => self.drive(checkpoint, input).await,
            Err(error) => Err(self.fail(0, 0.0, error)),
        }
    }

    /// Continues a run from a checkpoint (made by [`Graph::start`] or [`Graph::apply`]).
    pub async fn resume(self, checkpoint: Checkpoint) -> Result<S, RunError> {
        match self.graph.state(&checkpoint) {
            Ok(state) => self.drive(checkpoint, state).await,
            Err(error) => Err(self.fail(checkpoint.step, checkpoint.percent, error)),
        }
    }

    async fn drive(self, mut checkpoint: Checkpoint, mut state: S) -> Result<S, RunError> {
        while !checkpoint.is_complete() {
            let step = checkpoint.step + 1;
            let tracker = Arc::new(Tracker::new(&self, &checkpoint));
            self.emit(step, tracker.percent(), EventKind::StepStarted { tasks: labels(&checkpoint.next) });
            let shared = Arc::new(state);
            let outcome = tokio::select! {
                outcome = self.run_step(step, &checkpoint.next, &shared, &tracker) => outcome,
                () = self.cancel.cancelled() => {
                    // Dropping the step future above dropped every running node.
                    self.emit(step, tracker.percent(), EventKind::RunCancelled);
                    return Err(RunError::Cancelled);
                }
            };
            let results = match outcome {
                Ok(results) => results,
                // Waiting for an answer is not a failure: `RunWaiting` was reported.
                Err(error @ RunError::Interrupted { .. }) => return Err(error),
                Err(error) => return Err(self.fail(step, tracker.percent(), error)),
            };
            checkpoint.percent = tracker.percent();
            state = match self.graph.apply(&mut checkpoint, results) {
                Ok(state) => state,
                Err(error) => return Err(self.fail(step, tracker.percent(), error)),
            };
            self.emit(step, checkpoint.percent, EventKind::StepCompleted { next: labels(&checkpoint.next) });
        }
        self.emit(checkpoint.step, 100.0, EventKind::RunCompleted);
        Ok(state)
    }

    async fn run_step(
        &self,
        step: u64,
        tasks: &[Task],
        state: &Arc<S>,
        tracker: &Arc<Tracker>,
    ) -> Result<Vec<(Task, Update)>, RunError> {
        let observer: Arc<dyn Observer> = tracker.clone();
        let mut running: FuturesUnordered<_> = tasks
            .iter()
            .map(|task| {
                let ctx = NodeContext::new(
                    self.run_id,
                    Arc::clone(&self.user),
                    step,
                    task.clone(),
                    self.cancel.clone(),
                    Arc::clone(&observer),
                );
                let invocation = self.graph.invoke(Arc::clone(state), ctx);
                let task = task.clone();
                async move { (task, invocation.await) }
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        while let Some((task, invocation)) = running.next().await {
            match invocation.result {
                Ok(update) => {
                    let percent = tracker.complete(&task);
                    let kind = EventKind::NodeCompleted { task: task.label(), attempts: invocation.attempts };
                    self.emit(step, percent, kind);
                    results.push((task, update));
                }
                Err(NodeError { kind: NodeErrorKind::Interrupt, payload, .. }) => {
                    // The reference executor stops here; runtimes checkpoint and wait.
                    let payload = payload.unwrap_or_default();
                    let kind = EventKind::RunWaiting { task: task.label(), payload: payload.clone() };
                    self.emit(step, tracker.percent(), kind);
                    return Err(RunError::Interrupted { node: task.label(), payload });
                }
                Err(error) => {
                    let kind = EventKind::NodeFailed {
                        task: task.label(),
                        attempts: invocation.attempts,
                        error: error.clone(),
                    };
                    self.emit(step, tracker.percent(), kind);
                    // Fail fast: dropping `running` drops the step's other tasks.
                    return Err(RunError::NodeFailed { node: task.node, step, attempts: invocation.attempts, error });
                }
            }
        }
        Ok(results)
    }

    fn emit(&self, step: u64, percent: f64, kind: EventKind) {
        self.sink.emit(RunEvent { step, percent, kind });
    }

    fn fail(&self, step: u64, percent: f64, error: RunError) -> RunError {
        self.emit(step, percent, EventKind::RunFailed { error: error.clone() });
        error
    }
}

fn labels(tasks: &[Task]) -> Vec<String> {
    tasks.iter().map(Task::label).collect()
}

/// The executor's observer: one step's progress, and where its events go.
struct Tracker {
    sink: Arc<dyn EventSink>,
    progress: StepProgress,
}

impl Tracker {
    fn new<S: State>(executor: &Executor<S>, checkpoint: &Checkpoint) -> Self {
        Self { sink: Arc::clone(&executor.sink), progress: StepProgress::new(&executor.graph, checkpoint) }
    }

    fn percent(&self) -> f64 {
        self.progress.percent()
    }

    fn complete(&self, task: &Task) -> f64 {
        self.progress.complete(task)
    }
}

impl Observer for Tracker {
    fn node_progress(&self, task: &Task, fraction: f64, message: &str) {
        let percent = self.progress.update(task, fraction);
        let kind = EventKind::NodeProgress { task: task.label(), fraction, message: message.to_owned() };
        self.sink.emit(RunEvent { step: self.progress.step(), percent, kind });
    }

    fn node_retrying(&self, task: &Task, attempt: u32, error: &NodeError, delay: Duration) {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let kind = EventKind::NodeRetrying { task: task.label(), attempt, error: error.clone(), delay_ms };
        self.sink.emit(RunEvent { step: self.progress.step(), percent: self.percent(), kind });
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
