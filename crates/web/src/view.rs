//! What a client sees of a run.

use graphloop_runtime::{RunRecord, RunSnapshot, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::time::rfc3339;

/// A run as the routes show it (`GET /runs/{id}`, and the answers of `POST /runs`,
/// `cancel` and `resume`). Times are RFC 3339 in UTC.
///
/// The run's input and its user are left out: the caller sent the one and is the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunView {
    /// The run's id.
    pub id: Uuid,
    /// The graph it runs.
    pub graph: String,
    /// The graph's version.
    pub graph_version: u32,
    /// Where it is (`queued`, `running`, `waiting`, `completed`...).
    pub status: RunStatus,
    /// Graph-aware progress in percent: never decreases, 100 only once completed.
    pub percent: f64,
    /// Supersteps completed.
    pub step: u64,
    /// Labels of the tasks running right now (`node` or `node[i]`); empty between steps,
    /// once the run has ended, and in listings.
    pub tasks: Vec<String>,
    /// Whether the run is held at a commit point, waiting for its store.
    pub waiting_for_commit: bool,
    /// When it was admitted.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When it first started running.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Why it failed, once failed.
    pub error: Option<Value>,
    /// The final state, once completed.
    pub output: Option<Value>,
}

impl RunView {
    pub(crate) fn of_snapshot(snapshot: RunSnapshot) -> Self {
        let RunSnapshot { run, tasks, waiting_for_commit } = snapshot;
        Self { tasks, waiting_for_commit, ..Self::of_record(run) }
    }

    pub(crate) fn of_record(run: RunRecord) -> Self {
        Self {
            id: run.id,
            graph: run.graph,
            graph_version: run.graph_version,
            status: run.status,
            percent: run.percent,
            step: run.step,
            tasks: Vec::new(),
            waiting_for_commit: false,
            created_at: rfc3339(run.created_at),
            updated_at: rfc3339(run.updated_at),
            started_at: run.started_at.map(rfc3339),
            finished_at: run.finished_at.map(rfc3339),
            error: run.error,
            output: run.output,
        }
    }
}

/// One page of the caller's runs (`GET /runs`), newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunPage {
    /// The runs of this page.
    pub runs: Vec<RunView>,
    /// The cursor of the next page (pass it as `before`); `null` on the last page.
    pub next: Option<Uuid>,
}
