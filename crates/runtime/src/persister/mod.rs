//! The ProgressPersister: the only owner of the store (and so of the database pool).
//!
//! It lives on its own long-lived arbiter and opens the store there, in `started()`, so
//! every connection is created and driven by that one loop. Runs send it *commit units*
//! (a new run's row; a step's events, row change and checkpoint) as messages; it gathers
//! units from all runs into one transaction (group commit: a batch is written as soon as
//! someone waits for it or it is full, and the next batch gathers while one is being
//! written), never splitting a unit, retries an outage with backoff without losing or
//! reordering anything, writes a batch the store refuses for good in halves until the
//! refused unit is found (that run fails, every other unit commits), bounds its buffer
//! with backpressure, and fans events out to live subscribers once they are committed.
//!
//! The bookkeeping lives in [`buffer`] (units, batches, waiters, the overlay of what is
//! not yet written) and [`subscribers`] (who gets which event and tick), both free of
//! actix; this module is the actor around them.

mod buffer;
mod subscribers;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use graphloop_core::{EventKind, RunEvent};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use self::buffer::{Buffer, Refusal, Refused, Track};
use self::subscribers::Subscribers;
use crate::config::PersisterConfig;
use crate::error::EngineError;
use crate::store::{
    Batch, CheckpointRecord, CommitUnit, EventRecord, Retention, RunQuery, RunRecord, RunStorage, RunUpdate, Store,
    StoreError, StoreFactory, Written,
};
use crate::telemetry;

/// What a live subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Streamed {
    /// A stored event, in `seq` order, each exactly once, once it is committed.
    Event(EventRecord),
    /// The latest fine-grained progress of a node: not stored, may be coalesced; never
    /// ahead of the events emitted before it, never below the percent already seen.
    Progress {
        /// The run.
        run_id: Uuid,
        /// The progress event (`EventKind::NodeProgress`).
        event: RunEvent,
    },
}

/// Counters of the persister's work, for health and benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersisterStats {
    /// What the store is (`memory`, a database address).
    pub store: String,
    /// Events accepted from runs (all of them are written, eventually, unless their run's
    /// data is refused for good).
    pub events_accepted: u64,
    /// Events written.
    pub events_written: u64,
    /// Rows of any kind written.
    pub rows_written: u64,
    /// Transactions committed.
    pub batches_written: u64,
    /// Rows in the last batch.
    pub last_batch_rows: usize,
    /// How long the last commit took.
    pub last_commit_latency: Duration,
    /// How long all commits took, together (divide by `batches_written` for the mean).
    pub total_commit_latency: Duration,
    /// Write attempts that failed (and were retried, or split).
    pub write_failures: u64,
    /// Failures since the last successful write (0: healthy).
    pub consecutive_failures: u32,
    /// The last write error, if the last write failed.
    pub last_error: Option<String>,
    /// Runs whose data the store refused for good (each failed with the store's reason).
    pub refused_runs: usize,
    /// Entries the persister keeps per run (unwritten changes and checkpoints, live runs'
    /// last events, fences, refused runs, starts waiting for their row): back to
    /// `refused_runs` once every run has ended or parked.
    pub per_run_entries: usize,
    /// Rows accepted but not yet written.
    pub buffered: usize,
    /// Rows the buffer may hold before runs wait for room (`PersisterConfig::buffer_capacity`).
    pub buffer_capacity: usize,
    /// When the last write committed (`None`: nothing written yet).
    pub last_write_at: Option<SystemTime>,
    /// When the write now in flight was first attempted (`None`: no write in flight).
    /// With the store down, it stays the same across retries: the time rows have been
    /// waiting for the store.
    pub writing_since: Option<SystemTime>,
    /// Live subscribers.
    pub subscribers: usize,
    /// Runs waiting for room in a full buffer (backpressure at work).
    pub waiting_for_room: usize,
    /// The store's connection pool, if it has one.
    pub pool: Option<crate::store::PoolStatus>,
}

/// The latest progress tick of one run, coalesced: nodes overwrite it, the persister
/// takes it. At most one `Tick` message per run is in the mailbox at a time.
///
/// It also holds what the run has published, so that ticks (computed on the node's side)
/// and events (numbered by the actor) agree: the seq of the last event emitted, and the
/// highest percent published, which no later event or tick goes below.
#[derive(Debug, Default)]
pub(crate) struct TickSlot {
    latest: Mutex<Option<(u64, RunEvent)>>,
    emitted_seq: AtomicU64,
    /// `f64::to_bits` of the highest percent published: for non-negative floats the bits
    /// order as the values do, so `fetch_max` on them is a max on the percents.
    high_water: AtomicU64,
}

impl TickSlot {
    /// Stores a tick emitted now; returns whether the persister must be told (the slot
    /// was empty).
    pub(crate) fn put(&self, mut event: RunEvent) -> bool {
        event.percent = self.publish(event.percent);
        let after = self.emitted_seq.load(Ordering::Acquire);
        self.latest.lock().unwrap_or_else(PoisonError::into_inner).replace((after, event)).is_none()
    }

    fn take(&self) -> Option<(u64, RunEvent)> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Records that event `seq` was emitted.
    pub(crate) fn emitted(&self, seq: u64) {
        self.emitted_seq.store(seq, Ordering::Release);
    }

    /// Raises the high-water mark to `percent`; returns the percent to publish: never
    /// below what was published before.
    pub(crate) fn publish(&self, percent: f64) -> f64 {
        let percent = if percent.is_finite() { percent.max(0.0) } else { 0.0 };
        let before = f64::from_bits(self.high_water.fetch_max(percent.to_bits(), Ordering::AcqRel));
        before.max(percent)
    }

    /// The highest percent published.
    pub(crate) fn high_water(&self) -> f64 {
        f64::from_bits(self.high_water.load(Ordering::Acquire))
    }
}

/// A run's events (in seq order) and the latest change to its row, to store and fan
/// out: one commit unit.
#[derive(Message, Default)]
#[rtype(result = "()")]
pub(crate) struct Record {
    pub(crate) run_id: Uuid,
    /// Which of the run's actors sent it (see [`Fence`]).
    pub(crate) incarnation: u64,
    pub(crate) events: Vec<EventRecord>,
    pub(crate) update: Option<RunUpdate>,
}

impl Record {
    fn into_unit(self) -> CommitUnit {
        CommitUnit { events: self.events, update: self.update, ..CommitUnit::new(self.run_id) }
    }
}

/// From now on, only the run's actor `incarnation` (or a later one) may write for it:
/// an actor the watchdog gave up on, should it wake, is refused (epoch fencing).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Fence {
    pub(crate) run_id: Uuid,
    pub(crate) incarnation: u64,
}

/// A new run's row: answered once it is committed, with the run (the one stored
/// earlier, if the user's idempotency key was taken).
#[derive(Message)]
#[rtype(result = "Result<Inserted, EngineError>")]
pub(crate) struct InsertRun(pub(crate) RunRecord);

/// A committed run row.
#[derive(Debug, Clone)]
pub(crate) struct Inserted {
    /// The run stored: this one, or the one started earlier with the same key.
    pub(crate) run: RunRecord,
    /// Whether this insert stored it.
    pub(crate) created: bool,
}

/// A change to a run's row.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct UpdateRun(pub(crate) RunUpdate);

/// A coalesced progress tick is waiting in the slot.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Tick {
    pub(crate) run_id: Uuid,
    pub(crate) slot: Arc<TickSlot>,
}

/// A commit point of a run: stores the checkpoint with the record, as one unit, and
/// answers once everything accepted before it is durable (`durable: true`) or has room
/// in the buffer (`durable: false`). Fails with the store's reason if the run's data was
/// refused for good (the run has failed), or `Superseded`.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub(crate) struct Commit {
    pub(crate) record: Record,
    pub(crate) checkpoint: Option<CheckpointRecord>,
    pub(crate) durable: bool,
}

/// Ends a run that has no actor to do it (it died, was cancelled while waiting for a
/// restart, or is parked): records `kind` as its final event, after its last one, and
/// its row, as one unit.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RecordEnd {
    pub(crate) run: RunRecord,
    pub(crate) kind: EventKind,
}

/// Where a run whose actor stopped can go on from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResumePoint {
    /// The latest checkpoint (`None`: the run never committed a step).
    pub(crate) checkpoint: Option<graphloop_core::Checkpoint>,
    /// The run's last event: its seq and percent.
    pub(crate) last_seq: u64,
    pub(crate) last_percent: f64,
}

/// Reads a run's resume point (including what is accepted but not yet written).
#[derive(Message)]
#[rtype(result = "Result<ResumePoint, EngineError>")]
pub(crate) struct ReadResumePoint(pub(crate) Uuid);

/// Answers once everything accepted so far is durable.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Flush;

/// Subscribes to a run's events from `from_seq` (stored ones first, then live).
#[derive(Message)]
#[rtype(result = "mpsc::Receiver<Streamed>")]
pub(crate) struct Subscribe {
    pub(crate) run_id: Uuid,
    pub(crate) from_seq: u64,
}

/// Reads one run (with its change not yet written, if any).
#[derive(Message)]
#[rtype(result = "Result<Option<RunRecord>, EngineError>")]
pub(crate) struct ReadRun(pub(crate) Uuid);

/// Reads a run's stored events from `from_seq`.
#[derive(Message)]
#[rtype(result = "Result<Vec<EventRecord>, EngineError>")]
pub(crate) struct ReadEvents {
    pub(crate) run_id: Uuid,
    pub(crate) from_seq: u64,
    pub(crate) limit: usize,
}

/// Lists the runs that have not ended.
#[derive(Message)]
#[rtype(result = "Result<Vec<RunRecord>, EngineError>")]
pub(crate) struct ListUnfinished;

/// Lists runs.
#[derive(Message)]
#[rtype(result = "Result<Vec<RunRecord>, EngineError>")]
pub(crate) struct ListRuns(pub(crate) RunQuery);

/// The persister's counters.
#[derive(Message)]
#[rtype(result = "PersisterStats")]
pub(crate) struct GetStats;

/// Stored events a replaying subscriber reads at a time.
const REPLAY_PAGE: usize = 256;

/// The shortest wait between retries of a failed write, whatever the configuration: a
/// store that fails at once must not make the persister spin.
const RETRY_FLOOR: Duration = Duration::from_millis(5);

type InsertWaiter = oneshot::Sender<Result<Inserted, EngineError>>;

/// The only owner of the store. See the module docs.
pub struct ProgressPersister {
    config: PersisterConfig,
    factory: Option<Box<dyn StoreFactory>>,
    ready: Option<oneshot::Sender<Result<(), StoreError>>>,
    store: Option<Rc<dyn Store>>,
    buffer: Buffer,
    /// Starts waiting for their run row: the first is the one that inserts it, the
    /// others reused its idempotency key meanwhile.
    inserts: HashMap<Uuid, Vec<InsertWaiter>>,
    /// (user, key) of runs whose row is not written yet.
    keys: HashMap<(String, String), Uuid>,
    subscribers: Subscribers,
    stats: PersisterStats,
    retry_delay: Duration,
}

impl ProgressPersister {
    /// A persister that will open `factory`'s store when it starts, and report the
    /// outcome on `ready`.
    pub(crate) fn new(
        config: PersisterConfig,
        factory: Box<dyn StoreFactory>,
        ready: oneshot::Sender<Result<(), StoreError>>,
    ) -> Self {
        let stats = PersisterStats {
            store: factory.describe(),
            buffer_capacity: config.buffer_capacity,
            ..PersisterStats::default()
        };
        let retry_delay = config.retry_initial.max(RETRY_FLOOR);
        let buffer = Buffer::new(config.batch_size, config.buffer_capacity, config.retention == Retention::KeepLast);
        let subscribers = Subscribers::new(config.subscriber_capacity);
        Self {
            config,
            factory: Some(factory),
            ready: Some(ready),
            store: None,
            buffer,
            inserts: HashMap::new(),
            keys: HashMap::new(),
            subscribers,
            stats,
            retry_delay,
        }
    }

    fn store(&self) -> Result<Rc<dyn Store>, EngineError> {
        self.store.clone().ok_or_else(|| EngineError::Store(StoreError::unavailable("store not open")))
    }

    /// Accepts a unit into the buffer.
    fn accept(&mut self, unit: CommitUnit) {
        self.stats.events_accepted += unit.events.len() as u64;
        self.buffer.accept(unit);
        telemetry::buffered_rows(self.buffer.buffered());
    }

    /// Writes a batch now if enough rows or a waiter call for it.
    fn flush_if_due(&mut self, ctx: &mut Context<Self>) {
        if self.buffer.should_flush() || !self.inserts.is_empty() {
            self.flush(ctx);
        }
    }

    /// Starts writing the pending units, unless a write is in flight (then they gather
    /// into the next batch, written when this one commits).
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if let Some(chunk) = self.buffer.start_flight() {
            self.stats.writing_since = Some(SystemTime::now());
            self.write(chunk, ctx);
        }
    }

    fn write(&mut self, chunk: Rc<Batch>, ctx: &mut Context<Self>) {
        let Ok(store) = self.store() else {
            return;
        };
        let started = Instant::now();
        let attempt = async move { store.write(&chunk).await };
        ctx.spawn(attempt.into_actor(self).map(move |result, act, ctx| match result {
            Ok(written) => act.written(written, started.elapsed(), ctx),
            Err(error) => act.failed(error, ctx),
        }));
    }

    fn write_current(&mut self, ctx: &mut Context<Self>) {
        match self.buffer.current_chunk() {
            Some(chunk) => self.write(chunk, ctx),
            None => self.flush_if_due(ctx),
        }
    }

    fn failed(&mut self, error: StoreError, ctx: &mut Context<Self>) {
        telemetry::write_failed();
        self.stats.write_failures += 1;
        self.stats.consecutive_failures = self.stats.consecutive_failures.saturating_add(1);
        self.stats.last_error = Some(error.to_string());
        if error.is_transient() {
            let delay = self.retry_delay;
            self.retry_delay = delay.saturating_mul(2).min(self.config.retry_max).max(RETRY_FLOOR);
            tracing::warn!(%error, retry_in = ?delay, "persister write failed; retrying");
            ctx.run_later(delay, |act, ctx| act.write_current(ctx));
            return;
        }
        match self.buffer.chunk_refused(&error) {
            Some(Refused::Split) => {
                tracing::debug!(%error, "the store refused a batch; writing it in halves to find the unit");
            }
            Some(Refused::Insert(unit)) => {
                tracing::warn!(%error, run_id = %unit.run_id, "the store refused a new run's row");
                self.forget_key(&unit);
                for waiter in self.inserts.remove(&unit.run_id).unwrap_or_default() {
                    let _ = waiter.send(Err(EngineError::Store(error.clone())));
                }
            }
            Some(Refused::Run { unit, dropped }) => {
                tracing::error!(%error, run_id = %unit.run_id, dropped = dropped.len(),
                    "the store refused a run's data for good; the run fails");
            }
            Some(Refused::GaveUp(unit)) => {
                tracing::error!(%error, run_id = %unit.run_id, "the store refused even the record of a run's failure");
            }
            None => {}
        }
        self.stats.refused_runs = self.buffer.refused_runs();
        if self.buffer.flight_done() {
            self.flight_over();
        }
        self.write_current(ctx);
    }

    fn forget_key(&mut self, unit: &CommitUnit) {
        if let Some(key) =
            unit.run.as_ref().and_then(|r| r.idempotency_key.clone().map(|k| (r.user.user_id.clone(), k)))
        {
            if self.keys.get(&key) == Some(&unit.run_id) {
                self.keys.remove(&key);
            }
        }
    }

    fn written(&mut self, written: Written, latency: Duration, ctx: &mut Context<Self>) {
        if self.config.crash_after_commits.is_some_and(|n| self.stats.batches_written + 1 >= n) {
            // The failpoint of crash tests: committed, and nobody has heard of it yet.
            tracing::error!(commits = self.stats.batches_written + 1, "failpoint: aborting after this commit");
            std::process::abort();
        }
        let Some((chunk, done)) = self.buffer.chunk_written() else {
            return;
        };
        self.retry_delay = self.config.retry_initial.max(RETRY_FLOOR);
        let events = chunk.events().count();
        telemetry::batch_written(events, chunk.len(), latency);
        telemetry::buffered_rows(self.buffer.buffered());
        self.stats.events_written += events as u64;
        self.stats.rows_written += chunk.len() as u64;
        self.stats.batches_written += 1;
        self.stats.last_batch_rows = chunk.len();
        self.stats.last_commit_latency = latency;
        self.stats.total_commit_latency += latency;
        self.stats.consecutive_failures = 0;
        self.stats.last_error = None;
        self.stats.last_write_at = Some(SystemTime::now());
        let existing: HashMap<Uuid, RunRecord> = written.existing.into_iter().collect();
        for unit in &chunk.units {
            if let Some(run) = &unit.run {
                self.forget_key(unit);
                let (stored, created) = match existing.get(&run.id) {
                    Some(earlier) if earlier.id != run.id => (earlier.clone(), false),
                    _ => (run.clone(), true),
                };
                for (i, waiter) in self.inserts.remove(&run.id).unwrap_or_default().into_iter().enumerate() {
                    let _ = waiter.send(Ok(Inserted { run: stored.clone(), created: created && i == 0 }));
                }
            }
            // Durable before visible: subscribers see an event once it is committed.
            for event in &unit.events {
                self.subscribers.committed(event);
            }
        }
        if done {
            self.flight_over();
        }
        self.write_current(ctx);
    }

    fn flight_over(&mut self) {
        self.stats.writing_since = None;
    }

    fn wait_durable(
        &mut self,
        run_id: Option<Uuid>,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.buffer.wait_durable(run_id, tx);
        self.flush_if_due(ctx);
        rx
    }

    fn record_end(&mut self, RecordEnd { run, kind }: RecordEnd, ctx: &mut Context<Self>) {
        let (last, percent) = self.buffer.track(run.id).map_or((0, run.percent), |t| (t.last_seq, t.last_percent));
        let event = RunEvent { step: run.step, percent: percent.max(run.percent), kind };
        let record = EventRecord {
            run_id: run.id,
            seq: last + 1,
            user_id: run.user.user_id.clone(),
            at: crate::store::stored_now(),
            event,
        };
        self.accept(CommitUnit { events: vec![record], update: Some(run.update()), ..CommitUnit::new(run.id) });
        self.flush_if_due(ctx);
    }
}

/// `future`, or a transient error if the store takes longer than `limit`: a read never
/// waits on an outage for longer than that.
async fn bounded<T>(
    limit: Duration,
    future: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::unavailable(format!("the store did not answer a read within {limit:?}"))),
    }
}

/// Reads the last stored event of a run: (seq, percent, user).
async fn last_stored(store: &dyn Store, run_id: Uuid) -> Result<Track, StoreError> {
    let seq = store.last_seq(run_id).await?;
    let last = store.events(run_id, seq, 1).await?;
    let last = last.first();
    Ok(Track {
        last_seq: seq,
        last_percent: last.map_or(0.0, |e| e.event.percent),
        user_id: last.map(|e| e.user_id.clone()).unwrap_or_default(),
    })
}

impl Actor for ProgressPersister {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Memory is bounded by the buffer's room waiters and the runs' unanswered commits,
        // not by the mailbox: with a small capacity, actix holds back `send`s (commits)
        // but not `do_send`s, which could reorder a run's messages.
        ctx.set_mailbox_capacity(1 << 20);
        let Some(factory) = self.factory.take() else {
            return;
        };
        // The store (and its pool) is created here, on this arbiter, and used only here.
        // `wait` holds every other message until it is open.
        ctx.wait(factory.open().into_actor(self).map(|opened, act, ctx| {
            let result = opened.map(|store| {
                act.store = Some(store);
            });
            let failed = result.is_err();
            if let Some(ready) = act.ready.take() {
                let _ = ready.send(result);
            }
            if failed {
                ctx.stop();
            }
        }));
        ctx.run_interval(self.config.flush_interval, |act, ctx| {
            act.flush(ctx);
            act.subscribers.prune_closed();
        });
        if let Retention::DeleteAfter(ttl) = self.config.retention {
            let every = (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(300));
            ctx.run_interval(every, |act, ctx| {
                let prune = act.prune_expired();
                ctx.spawn(prune.into_actor(act).map(|pruned, _act, _ctx| {
                    if let Err(error) = pruned {
                        tracing::warn!(%error, "pruning expired checkpoints failed; will retry");
                    }
                }));
            });
        }
    }
}

impl ProgressPersister {
    /// Deletes the checkpoints of runs finished longer ago than the retention's TTL.
    fn prune_expired(&self) -> LocalBoxFuture<'static, Result<u64, EngineError>> {
        let store = self.store();
        let ttl = match self.config.retention {
            Retention::DeleteAfter(ttl) => Some(ttl),
            _ => None,
        };
        Box::pin(async move {
            let Some(ttl) = ttl else {
                return Ok(0);
            };
            let before = SystemTime::now().checked_sub(ttl).unwrap_or(SystemTime::UNIX_EPOCH);
            Ok(store?.prune_checkpoints(before).await?)
        })
    }
}

/// Applies the retention's TTL now; answers how many checkpoints were deleted.
#[derive(Message)]
#[rtype(result = "Result<u64, EngineError>")]
pub(crate) struct PruneNow;

impl Handler<PruneNow> for ProgressPersister {
    type Result = ResponseFuture<Result<u64, EngineError>>;

    fn handle(&mut self, _: PruneNow, _ctx: &mut Context<Self>) -> Self::Result {
        self.prune_expired()
    }
}

/// How much a run occupies in the store.
#[derive(Message)]
#[rtype(result = "Result<RunStorage, EngineError>")]
pub(crate) struct ReadStorage(pub(crate) Uuid);

impl Handler<ReadStorage> for ProgressPersister {
    type Result = ResponseFuture<Result<RunStorage, EngineError>>;

    fn handle(&mut self, ReadStorage(run_id): ReadStorage, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store();
        Box::pin(async move { Ok(store?.storage(run_id).await?) })
    }
}

impl Handler<Record> for ProgressPersister {
    type Result = ();

    fn handle(&mut self, record: Record, ctx: &mut Context<Self>) {
        if let Err(refusal) = self.buffer.admits(record.run_id, record.incarnation) {
            tracing::warn!(run_id = %record.run_id, incarnation = record.incarnation, ?refusal,
                "dropped writes of a superseded actor or a refused run");
            return;
        }
        self.accept(record.into_unit());
        self.flush_if_due(ctx);
    }
}

impl Handler<InsertRun> for ProgressPersister {
    type Result = ResponseFuture<Result<Inserted, EngineError>>;

    fn handle(&mut self, InsertRun(run): InsertRun, ctx: &mut Context<Self>) -> Self::Result {
        let admitted = self.store().and_then(|store| store.admit(&run).map_err(EngineError::Store));
        if let Err(error) = admitted {
            return Box::pin(async move { Err(error) });
        }
        let (tx, rx) = oneshot::channel();
        let key = run.idempotency_key.clone().map(|key| (run.user.user_id.clone(), key));
        // The same key while the first row is not written yet: answered with that run.
        if let Some(first) = key.as_ref().and_then(|key| self.keys.get(key)) {
            if let Some(waiters) = self.inserts.get_mut(first) {
                waiters.push(tx);
                return Box::pin(async move { rx.await.map_err(|_| EngineError::ShuttingDown)? });
            }
        }
        if let Some(key) = key {
            self.keys.insert(key, run.id);
        }
        self.inserts.insert(run.id, vec![tx]);
        self.accept(CommitUnit { run: Some(run.clone()), ..CommitUnit::new(run.id) });
        self.flush(ctx);
        Box::pin(async move { rx.await.map_err(|_| EngineError::ShuttingDown)? })
    }
}

impl Handler<UpdateRun> for ProgressPersister {
    type Result = ();

    fn handle(&mut self, UpdateRun(update): UpdateRun, ctx: &mut Context<Self>) {
        self.accept(CommitUnit { update: Some(update.clone()), ..CommitUnit::new(update.id) });
        self.flush_if_due(ctx);
    }
}

impl Handler<Tick> for ProgressPersister {
    type Result = ();

    fn handle(&mut self, Tick { run_id, slot }: Tick, _ctx: &mut Context<Self>) {
        if let Some((after_seq, event)) = slot.take() {
            self.subscribers.tick(run_id, after_seq, &event);
        }
    }
}

impl Handler<Commit> for ProgressPersister {
    type Result = ResponseFuture<Result<(), EngineError>>;

    fn handle(&mut self, Commit { record, checkpoint, durable }: Commit, ctx: &mut Context<Self>) -> Self::Result {
        let run_id = record.run_id;
        if let Err(refusal) = self.buffer.admits(run_id, record.incarnation) {
            let error = match refusal {
                Refusal::Superseded => EngineError::Superseded,
                Refusal::Refused(error) => EngineError::Store(error),
            };
            return Box::pin(async move { Err(error) });
        }
        let mut unit = record.into_unit();
        unit.checkpoint = checkpoint;
        self.accept(unit);
        if durable {
            let wait = self.wait_durable(Some(run_id), ctx);
            return Box::pin(
                async move { wait.await.map_err(|_| EngineError::ShuttingDown)?.map_err(EngineError::Store) },
            );
        }
        let room = self.buffer.full().then(|| {
            let (tx, rx) = oneshot::channel();
            self.buffer.wait_room(tx);
            rx
        });
        if room.is_some() {
            self.flush(ctx);
        } else {
            self.flush_if_due(ctx);
        }
        Box::pin(async move {
            if let Some(room) = room {
                room.await.map_err(|_| EngineError::ShuttingDown)?;
            }
            Ok(())
        })
    }
}

impl Handler<RecordEnd> for ProgressPersister {
    /// Answered once the end is accepted (a `Flush` after it waits for it).
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, end: RecordEnd, ctx: &mut Context<Self>) -> Self::Result {
        if self.buffer.track(end.run.id).is_some() {
            self.record_end(end, ctx);
            return Box::pin(fut::ready(()));
        }
        // A run this process tracks no event of (parked, recovered, or never started):
        // number the final event after what the store has.
        let run_id = end.run.id;
        let store = self.store();
        let read = async move { Ok::<_, EngineError>(last_stored(&*store?, run_id).await?) };
        Box::pin(read.into_actor(self).map(move |last, act, ctx| {
            match last {
                Ok(track) => act.buffer.track_from_store(run_id, track),
                Err(error) => tracing::warn!(%error, %run_id, "cannot read the run's last event; numbering from 1"),
            }
            act.record_end(end, ctx);
        }))
    }
}

impl Handler<ReadResumePoint> for ProgressPersister {
    type Result = ResponseActFuture<Self, Result<ResumePoint, EngineError>>;

    fn handle(&mut self, ReadResumePoint(run_id): ReadResumePoint, _ctx: &mut Context<Self>) -> Self::Result {
        let unwritten = self.buffer.unwritten_checkpoint(run_id).map(|c| c.checkpoint.clone());
        let tracked = self.buffer.track(run_id).cloned();
        let store = self.store();
        Box::pin(
            async move {
                let store = store?;
                let checkpoint = match unwritten {
                    Some(checkpoint) => Some(checkpoint),
                    None => store.latest_checkpoint(run_id).await?.map(|c| c.checkpoint),
                };
                let track = match tracked {
                    Some(track) => track,
                    None => last_stored(&*store, run_id).await?,
                };
                Ok((checkpoint, track))
            }
            .into_actor(self)
            .map(move |read: Result<_, EngineError>, act, _ctx| {
                let (checkpoint, track) = read?;
                let point = ResumePoint { checkpoint, last_seq: track.last_seq, last_percent: track.last_percent };
                // The resumed actor numbers on from here; so does anything ending the run.
                act.buffer.track_from_store(run_id, track);
                Ok(point)
            }),
        )
    }
}

impl Handler<Fence> for ProgressPersister {
    type Result = ();

    fn handle(&mut self, Fence { run_id, incarnation }: Fence, _ctx: &mut Context<Self>) {
        self.buffer.fence(run_id, incarnation);
    }
}

impl Handler<Flush> for ProgressPersister {
    type Result = ResponseFuture<Result<(), EngineError>>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        let wait = self.wait_durable(None, ctx);
        Box::pin(async move { wait.await.map_err(|_| EngineError::ShuttingDown)?.map_err(EngineError::Store) })
    }
}

/// How a subscriber's replay of stored events ended.
enum Replayed {
    /// Every stored event from its start was sent: live ones follow from `next_seq`.
    CaughtUp { next_seq: u64, percent: f64, ended: bool },
    /// The run's final event was sent, or the subscriber is gone: the stream is over.
    Over,
}

impl Handler<Subscribe> for ProgressPersister {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, Subscribe { run_id, from_seq }: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        let subscription = self.subscribers.add(run_id, from_seq);
        let (id, tx) = (subscription.id, subscription.replay_tx);
        let Ok(store) = self.store() else {
            self.subscribers.remove(run_id, id);
            return MessageResult(subscription.rx);
        };
        let limit = self.config.read_timeout;
        // Stored events go out a page at a time, as the subscriber takes them; committed
        // ones arriving meanwhile are held back and follow.
        let replay = async move {
            let ended = bounded(limit, store.run(run_id)).await?.is_some_and(|run| run.status.is_terminal());
            let (mut next_seq, mut percent) = (from_seq, 0.0_f64);
            loop {
                let page = bounded(limit, store.events(run_id, next_seq, REPLAY_PAGE)).await?;
                let full = page.len() == REPLAY_PAGE;
                for event in page {
                    next_seq = event.seq + 1;
                    percent = percent.max(event.event.percent);
                    let terminal = event.event.kind.is_terminal();
                    if tx.send(Streamed::Event(event)).await.is_err() || terminal {
                        return Ok::<_, StoreError>(Replayed::Over);
                    }
                }
                if !full {
                    return Ok(Replayed::CaughtUp { next_seq, percent, ended });
                }
            }
        };
        ctx.spawn(replay.into_actor(self).map(move |replayed, act, _ctx| match replayed {
            Ok(Replayed::CaughtUp { next_seq, percent, ended }) => {
                act.subscribers.replayed(run_id, id, next_seq, percent, ended);
            }
            Ok(Replayed::Over) => act.subscribers.remove(run_id, id),
            Err(error) => {
                // The subscriber's stream ends; it may subscribe again.
                tracing::warn!(%error, %run_id, "could not replay stored events for a subscriber");
                act.subscribers.remove(run_id, id);
            }
        }));
        MessageResult(subscription.rx)
    }
}

impl Handler<ReadRun> for ProgressPersister {
    type Result = ResponseFuture<Result<Option<RunRecord>, EngineError>>;

    fn handle(&mut self, ReadRun(id): ReadRun, _ctx: &mut Context<Self>) -> Self::Result {
        // The change accepted but not yet written is applied (read your own writes).
        let update = self.buffer.unwritten_update(id).cloned();
        let store = self.store();
        let limit = self.config.read_timeout;
        Box::pin(async move {
            let mut run = bounded(limit, store?.run(id)).await?;
            if let (Some(run), Some(update)) = (run.as_mut(), update) {
                update.apply(run);
            }
            Ok(run)
        })
    }
}

impl Handler<ReadEvents> for ProgressPersister {
    type Result = ResponseFuture<Result<Vec<EventRecord>, EngineError>>;

    fn handle(&mut self, read: ReadEvents, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store();
        let limit = self.config.read_timeout;
        // Committed events only: what a reader sees is what a subscriber sees.
        Box::pin(async move { Ok(bounded(limit, store?.events(read.run_id, read.from_seq, read.limit)).await?) })
    }
}

impl Handler<ListRuns> for ProgressPersister {
    type Result = ResponseActFuture<Self, Result<Vec<RunRecord>, EngineError>>;

    fn handle(&mut self, ListRuns(query): ListRuns, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store();
        let limit = self.config.read_timeout;
        Box::pin(async move { Ok(bounded(limit, store?.runs(&query)).await?) }.into_actor(self).map(
            |listed: Result<Vec<RunRecord>, EngineError>, act, _ctx| {
                // Committed rows, with the changes accepted since (never waiting on them).
                let mut runs = listed?;
                for run in &mut runs {
                    if let Some(update) = act.buffer.unwritten_update(run.id) {
                        update.apply(run);
                    }
                }
                Ok(runs)
            },
        ))
    }
}

impl Handler<ListUnfinished> for ProgressPersister {
    type Result = ResponseFuture<Result<Vec<RunRecord>, EngineError>>;

    fn handle(&mut self, _: ListUnfinished, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store();
        Box::pin(async move { Ok(store?.unfinished_runs().await?) })
    }
}

impl Handler<GetStats> for ProgressPersister {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _ctx: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.buffered = self.buffer.buffered();
        // Counted as they are: a subscriber whose receiver is gone is not one.
        self.subscribers.prune_closed();
        stats.subscribers = self.subscribers.count();
        stats.waiting_for_room = self.buffer.waiting_for_room();
        stats.refused_runs = self.buffer.refused_runs();
        stats.per_run_entries = self.buffer.per_run_entries() + self.inserts.len() + self.keys.len();
        stats.pool = self.store.as_ref().and_then(|store| store.pool());
        MessageResult(stats)
    }
}
