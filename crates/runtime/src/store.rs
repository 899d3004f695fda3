//! What the [`ProgressPersister`](crate::ProgressPersister) writes, and the storage trait
//! it writes through.
//!
//! A store is opened *on the persister's arbiter* (by a [`StoreFactory`]) and used only
//! there: its pool, connections and futures never meet another event loop. That is why
//! its futures need not be `Send`.

use std::fmt;
use std::rc::Rc;
use std::str::FromStr;
use std::time::SystemTime;

use futures_util::future::LocalBoxFuture;
use graphloop_core::{Checkpoint, RunEvent, UserContext};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// Admitted, waiting for a free slot.
    Queued,
    /// Its actor is running it.
    Running,
    /// Stopped by a graceful shutdown at a step boundary; resumable from its checkpoint.
    Interrupted,
    /// A node asked a question; the run waits for `Engine::resume` with the answer.
    Waiting,
    /// Reached END.
    Completed,
    /// Failed for good (see its error).
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 7] =
        [Self::Queued, Self::Running, Self::Interrupted, Self::Waiting, Self::Completed, Self::Failed, Self::Cancelled];

    /// Whether the run has not ended and should be resumed by the next process.
    pub fn is_unfinished(self) -> bool {
        matches!(self, Self::Queued | Self::Running | Self::Interrupted)
    }

    /// Whether the run is over for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown run status `{s}`")))
    }
}

/// One run, as stored (the `runs` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id (UUIDv7: ordered by creation).
    pub id: Uuid,
    /// The graph's name.
    pub graph: String,
    /// The graph's version.
    pub graph_version: u32,
    /// Who the run belongs to.
    pub user: UserContext,
    /// When its steps' commits are durable.
    pub durability: crate::Durability,
    /// Where it is.
    pub status: RunStatus,
    /// The input it started from.
    pub input: Value,
    /// The final state, once completed.
    pub output: Option<Value>,
    /// Why it failed, once failed.
    pub error: Option<Value>,
    /// Supersteps completed.
    pub step: u64,
    /// Graph-aware progress.
    pub percent: f64,
    /// When it was admitted.
    pub created_at: SystemTime,
    /// When this record last changed.
    pub updated_at: SystemTime,
    /// When its actor first started it.
    pub started_at: Option<SystemTime>,
    /// When it ended.
    pub finished_at: Option<SystemTime>,
    /// The key its caller started it with: a second start with the same key by the same
    /// user returns this run instead of starting another ([`crate::Engine::submit`]).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl RunRecord {
    /// The part of this row that changes while the run runs.
    pub fn update(&self) -> RunUpdate {
        RunUpdate {
            id: self.id,
            status: self.status,
            output: self.output.clone(),
            error: self.error.clone(),
            step: self.step,
            percent: self.percent,
            updated_at: self.updated_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

/// A change to a stored run row: everything but what is fixed at admission (graph,
/// user, input, creation time), so that a step's commit never rewrites the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunUpdate {
    /// The run.
    pub id: Uuid,
    /// Its new status.
    pub status: RunStatus,
    /// The final state, once completed.
    pub output: Option<Value>,
    /// Why it failed, once failed.
    pub error: Option<Value>,
    /// Supersteps completed.
    pub step: u64,
    /// Graph-aware progress (a store never lowers it).
    pub percent: f64,
    /// When the change was made.
    pub updated_at: SystemTime,
    /// When its actor first started it.
    pub started_at: Option<SystemTime>,
    /// When it ended.
    pub finished_at: Option<SystemTime>,
}

impl RunUpdate {
    /// Applies the change to a row, as a store does: never out of a terminal status,
    /// never lowering progress.
    pub fn apply(&self, run: &mut RunRecord) {
        if run.status.is_terminal() {
            return;
        }
        run.status = self.status;
        run.output.clone_from(&self.output);
        run.error.clone_from(&self.error);
        run.step = self.step;
        run.percent = run.percent.max(self.percent);
        run.updated_at = self.updated_at;
        run.started_at = run.started_at.or(self.started_at);
        run.finished_at = self.finished_at;
    }
}

/// One event of a run, as stored (the `events` table). `seq` numbers a run's events
/// 1, 2, 3... without gaps; the pair (run id, seq) is unique, so writing an event twice
/// is harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The run.
    pub run_id: Uuid,
    /// The event's position in its run.
    pub seq: u64,
    /// The run's user.
    pub user_id: String,
    /// When it happened.
    pub at: SystemTime,
    /// What happened.
    pub event: RunEvent,
}

/// A run's position after a step (the `checkpoints` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The run.
    pub run_id: Uuid,
    /// Where the run stands.
    pub checkpoint: Checkpoint,
    /// When it was taken.
    pub at: SystemTime,
}

/// Everything one group commit writes, in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// New run rows, to insert (idempotently).
    pub runs: Vec<RunRecord>,
    /// Changes to run rows (at most one per run: the latest), applied after the inserts.
    pub run_updates: Vec<RunUpdate>,
    /// Events to insert (idempotently).
    pub events: Vec<EventRecord>,
    /// Checkpoints to insert (idempotently).
    pub checkpoints: Vec<CheckpointRecord>,
    /// Runs that ended in this batch whose checkpoints are pruned to the latest, in the
    /// same transaction ([`Retention::KeepLast`]).
    pub prune_to_last: Vec<Uuid>,
}

/// What is kept of a finished run's checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retention {
    /// Every checkpoint.
    KeepAll,
    /// The last one only (the default): enough to inspect the final position.
    #[default]
    KeepLast,
    /// All of them, until the run has been finished this long; then none.
    DeleteAfter(std::time::Duration),
}

/// How much a run occupies in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStorage {
    /// Stored events.
    pub events: u64,
    /// Their size in bytes (as the store counts it).
    pub event_bytes: u64,
    /// Stored checkpoints.
    pub checkpoints: u64,
    /// Their size in bytes.
    pub checkpoint_bytes: u64,
}

impl Batch {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.runs.len() + self.run_updates.len() + self.events.len() + self.checkpoints.len() + self.prune_to_last.len()
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which runs to list: one user's, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunQuery {
    /// The user whose runs to list.
    pub user_id: String,
    /// Only runs of this status.
    pub status: Option<RunStatus>,
    /// Only runs of this graph.
    pub graph: Option<String>,
    /// Only runs created before this one (keyset pagination: pass the last id seen).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: usize,
}

impl RunQuery {
    /// The newest 50 runs of `user_id`.
    pub fn for_user(user_id: impl Into<String>) -> Self {
        Self { user_id: user_id.into(), status: None, graph: None, before: None, limit: 50 }
    }
}

/// How a store's connection pool stands, for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// The most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections idle now.
    pub available: usize,
    /// Callers waiting for a connection now.
    pub waiting: usize,
}

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or refused the operation; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store could not be opened (bad configuration, failed migration).
    #[error("store could not be opened: {0}")]
    Open(String),
    /// Stored data could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Where runs, events and checkpoints are kept. Used only on the persister's arbiter.
pub trait Store {
    /// Writes a batch in one transaction: all of it or none of it, new runs first, then
    /// run updates, events and checkpoints. Writing the same batch twice must be
    /// harmless; a run row never leaves a terminal status (see [`RunUpdate::apply`]).
    fn write<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<(), StoreError>>;

    /// One run.
    fn run(&self, id: Uuid) -> LocalBoxFuture<'_, Result<Option<RunRecord>, StoreError>>;

    /// A run's events with `seq >= from_seq`, in order, at most `limit`.
    fn events(
        &self,
        run_id: Uuid,
        from_seq: u64,
        limit: usize,
    ) -> LocalBoxFuture<'_, Result<Vec<EventRecord>, StoreError>>;

    /// Runs matching the query, newest first.
    fn runs<'a>(&'a self, query: &'a RunQuery) -> LocalBoxFuture<'a, Result<Vec<RunRecord>, StoreError>>;

    /// A run's latest checkpoint.
    fn latest_checkpoint(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<Option<CheckpointRecord>, StoreError>>;

    /// Runs that have not ended (`queued`, `running`, `interrupted`), oldest first: the
    /// runs to resume when a process starts.
    fn unfinished_runs(&self) -> LocalBoxFuture<'_, Result<Vec<RunRecord>, StoreError>>;

    /// The store's connection pool, if it has one (the memory store has none).
    fn pool(&self) -> Option<PoolStatus> {
        None
    }

    /// The run `user_id` started with idempotency key `key`, if any.
    fn run_by_key<'a>(
        &'a self,
        user_id: &'a str,
        key: &'a str,
    ) -> LocalBoxFuture<'a, Result<Option<RunRecord>, StoreError>>;

    /// Deletes every checkpoint of the runs that finished before `finished_before`;
    /// returns how many were deleted.
    fn prune_checkpoints(&self, finished_before: SystemTime) -> LocalBoxFuture<'_, Result<u64, StoreError>>;

    /// How much a run occupies.
    fn storage(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<RunStorage, StoreError>>;

    /// The highest `seq` of a run's stored events (0 if none).
    fn last_seq(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<u64, StoreError>>;
}

/// Opens a [`Store`] on the persister's own arbiter, when the persister starts.
///
/// The factory crosses threads (it is built by the application and handed to the
/// engine); the store it opens never does.
pub trait StoreFactory: Send + 'static {
    /// A short description for logs and health (`memory`, `postgres://host/db`).
    fn describe(&self) -> String;

    /// Opens the store (creating pools, applying migrations).
    fn open(self: Box<Self>) -> LocalBoxFuture<'static, Result<Rc<dyn Store>, StoreError>>;
}
