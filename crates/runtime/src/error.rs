//! Errors of the engine.

use uuid::Uuid;

use crate::store::StoreError;

/// Why an engine operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No graph of that name (and version) is registered.
    #[error("no graph named `{name}`{}", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    UnknownGraph {
        /// The name asked for.
        name: String,
        /// The version asked for, if any.
        version: Option<u32>,
    },
    /// A graph of that name and version is registered already.
    #[error("graph `{name}` version {version} is registered already")]
    DuplicateGraph {
        /// The graph's name.
        name: String,
        /// Its version.
        version: u32,
    },
    /// The input does not fit the graph's state type.
    #[error("input for graph `{graph}` is invalid: {reason}")]
    InvalidInput {
        /// The graph.
        graph: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Admission refused the run: the queue is full.
    #[error("run rejected: {running} runs running and {queued} queued (queue capacity {capacity}); try again later")]
    Rejected {
        /// Runs running.
        running: usize,
        /// Runs queued.
        queued: usize,
        /// The queue's capacity.
        capacity: usize,
    },
    /// No run with that id (or not one of the caller's).
    #[error("no run {0}")]
    UnknownRun(Uuid),
    /// The run is over; it cannot be cancelled.
    #[error("run {run_id} is {status} already")]
    RunFinished {
        /// The run.
        run_id: Uuid,
        /// Its final status.
        status: crate::RunStatus,
    },
    /// A run's actor was replaced (the watchdog restarted its run); its writes are refused.
    #[error("this actor was superseded by a newer one for its run")]
    Superseded,
    /// The run is not waiting for an answer; it cannot be resumed.
    #[error("run {run_id} is {status}, not waiting for an answer")]
    NotWaiting {
        /// The run.
        run_id: Uuid,
        /// Its status.
        status: crate::RunStatus,
    },
    /// The engine is shutting down or has shut down.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine's actors could not be reached (the engine thread died).
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

impl From<actix::MailboxError> for EngineError {
    fn from(err: actix::MailboxError) -> Self {
        match err {
            actix::MailboxError::Closed => Self::ShuttingDown,
            actix::MailboxError::Timeout => Self::Unavailable("an engine actor did not answer in time".into()),
        }
    }
}
