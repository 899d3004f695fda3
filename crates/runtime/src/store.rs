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

/// Now, to the microsecond: the precision PostgreSQL keeps. Every time stored with a
/// run or an event is taken with this, so that what a subscriber or a reader is given
/// live equals what it reads back later.
pub fn stored_now() -> SystemTime {
    let now = SystemTime::now();
    match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => {
            SystemTime::UNIX_EPOCH
                + std::time::Duration::from_micros(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
        }
        Err(_) => now,
    }
}

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
    /// A new run of `graph` (version `graph_version`) from `input`, `queued`, with a fresh
    /// id (UUIDv7) and no idempotency key.
    pub fn queued(graph: impl Into<String>, graph_version: u32, user: UserContext, input: Value) -> Self {
        let now = stored_now();
        Self {
            id: Uuid::now_v7(),
            graph: graph.into(),
            graph_version,
            user,
            durability: crate::Durability::default(),
            status: RunStatus::Queued,
            input,
            output: None,
            error: None,
            step: 0,
            percent: 0.0,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            idempotency_key: None,
        }
    }

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

/// What one run hands the store as a whole: a new run's row, or a step's events, the
/// run row's change and the checkpoint. A unit commits entirely or not at all; the
/// persister never splits one across transactions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitUnit {
    /// The run.
    pub run_id: Uuid,
    /// A new run's row, to insert (idempotently; a reused idempotency key inserts
    /// nothing, see [`Written::existing`]).
    pub run: Option<RunRecord>,
    /// Events, in `seq` order, to insert (idempotently).
    pub events: Vec<EventRecord>,
    /// The change to the run's row.
    pub update: Option<RunUpdate>,
    /// The checkpoint, to insert (a second one for the same step replaces it).
    pub checkpoint: Option<CheckpointRecord>,
    /// The run ended: prune its checkpoints to the latest, after this unit's
    /// ([`Retention::KeepLast`]).
    pub prune_to_last: bool,
}

impl CommitUnit {
    /// An empty unit of `run_id`.
    pub fn new(run_id: Uuid) -> Self {
        Self { run_id, ..Self::default() }
    }

    /// Rows in the unit.
    pub fn len(&self) -> usize {
        usize::from(self.run.is_some())
            + self.events.len()
            + usize::from(self.update.is_some())
            + usize::from(self.checkpoint.is_some())
            + usize::from(self.prune_to_last)
    }

    /// Whether the unit holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything one group commit writes, in one transaction: whole units, in the order
/// they were accepted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// The units, oldest first.
    pub units: Vec<CommitUnit>,
}

/// What a write found besides writing: new runs whose idempotency key was taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Written {
    /// (the id of a run not inserted, the run stored earlier with its user and key).
    pub existing: Vec<(Uuid, RunRecord)>,
}

impl Batch {
    /// A batch of these units.
    pub fn of(units: Vec<CommitUnit>) -> Self {
        Self { units }
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.units.iter().map(CommitUnit::len).sum()
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.units.iter().all(CommitUnit::is_empty)
    }

    /// New run rows.
    pub fn runs(&self) -> impl Iterator<Item = &RunRecord> {
        self.units.iter().filter_map(|u| u.run.as_ref())
    }

    /// Events, in order.
    pub fn events(&self) -> impl Iterator<Item = &EventRecord> {
        self.units.iter().flat_map(|u| &u.events)
    }

    /// Changes to run rows, one per run: the latest, except that a final status is
    /// never replaced by a later non-final one (a shutdown's `interrupted` arriving after
    /// the run's own `cancelled`, say). A store applies them after the inserts.
    pub fn run_updates(&self) -> Vec<&RunUpdate> {
        let mut latest: Vec<&RunUpdate> = Vec::new();
        let mut index: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
        for update in self.units.iter().filter_map(|u| u.update.as_ref()) {
            match index.get(&update.id) {
                Some(&i) => {
                    if !latest[i].status.is_terminal() || update.status.is_terminal() {
                        latest[i] = update;
                    }
                }
                None => {
                    index.insert(update.id, latest.len());
                    latest.push(update);
                }
            }
        }
        latest
    }

    /// Checkpoints, one per (run, step): the latest.
    pub fn checkpoints(&self) -> Vec<&CheckpointRecord> {
        let mut latest: Vec<&CheckpointRecord> = Vec::new();
        let mut index: std::collections::HashMap<(Uuid, u64), usize> = std::collections::HashMap::new();
        for checkpoint in self.units.iter().filter_map(|u| u.checkpoint.as_ref()) {
            match index.get(&(checkpoint.run_id, checkpoint.checkpoint.step)) {
                Some(&i) => latest[i] = checkpoint,
                None => {
                    index.insert((checkpoint.run_id, checkpoint.checkpoint.step), latest.len());
                    latest.push(checkpoint);
                }
            }
        }
        latest
    }

    /// Runs whose checkpoints are pruned to the latest after this batch's are written.
    pub fn prune_to_last(&self) -> Vec<Uuid> {
        let mut runs: Vec<Uuid> = self.units.iter().filter(|u| u.prune_to_last).map(|u| u.run_id).collect();
        runs.dedup();
        runs
    }
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

/// The underlying error of a [`StoreError`] (a database driver's error, say).
pub type ErrorSource = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// A storage failure. [`StoreError::is_transient`] tells an outage (retrying can help)
/// from data the store refuses for good (retrying cannot).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or could not do it now (connection lost, timeout,
    /// too many connections, a serialization failure): retrying can help.
    #[error("store unavailable: {message}{}", sqlstate(code.as_deref()))]
    Unavailable {
        /// What went wrong.
        message: String,
        /// The database's error code (SQLSTATE), if the database answered.
        code: Option<String>,
        /// The driver's error.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The store refused the data for good (a value it cannot hold, a violated
    /// constraint): the same write fails every time.
    #[error("the store refused the data: {message}{}", sqlstate(code.as_deref()))]
    Refused {
        /// The store's reason.
        message: String,
        /// The database's error code (SQLSTATE), if the database answered.
        code: Option<String>,
        /// The driver's error.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The store could not be opened (bad configuration, failed migration).
    #[error("store could not be opened: {0}")]
    Open(String),
    /// Stored data could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

fn sqlstate(code: Option<&str>) -> String {
    code.map(|code| format!(" (SQLSTATE {code})")).unwrap_or_default()
}

impl StoreError {
    /// A transient failure with no database code.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable { message: message.into(), code: None, source: None }
    }

    /// A refusal for good with no database code.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::Refused { message: message.into(), code: None, source: None }
    }

    /// Whether retrying the same operation can succeed (an outage, not bad data).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The database's error code (SQLSTATE), if the database answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Unavailable { code, .. } | Self::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// Equal when kind, message and code are (the source is not compared).
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Unavailable { message: a, code: ca, .. }, Self::Unavailable { message: b, code: cb, .. })
            | (Self::Refused { message: a, code: ca, .. }, Self::Refused { message: b, code: cb, .. }) => {
                a == b && ca == cb
            }
            (Self::Open(a), Self::Open(b)) | (Self::Corrupt(a), Self::Corrupt(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for StoreError {}

/// Where runs, events and checkpoints are kept. Used only on the persister's arbiter.
pub trait Store {
    /// Writes a batch in one transaction: all of it or none of it, new runs first, then
    /// run updates, events and checkpoints. Writing the same batch twice must be
    /// harmless; a run row never leaves a terminal status (see [`RunUpdate::apply`]). A
    /// new run whose user already has a run with its idempotency key is not inserted:
    /// the earlier run is returned in [`Written::existing`].
    ///
    /// Fails with a transient [`StoreError`] when retrying may help, and with
    /// [`StoreError::Refused`] when the data itself is refused: the persister then writes
    /// the batch's units apart to find the one refused.
    fn write<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<Written, StoreError>>;

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

    /// Whether the store holds this new run's row faithfully: what is accepted must read
    /// back as it was given. `Err` (a [`StoreError::Refused`] naming the field, as a JSON
    /// path, and why) refuses the run before it is acknowledged. The default accepts
    /// everything.
    fn admit(&self, run: &RunRecord) -> Result<(), StoreError> {
        let _ = run;
        Ok(())
    }

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
