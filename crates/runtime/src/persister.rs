//! The ProgressPersister: the only owner of the store (and so of the database pool).
//!
//! It lives on its own long-lived arbiter and opens the store there, in `started()`, so
//! every connection is created and driven by that one loop. Runs send it their events,
//! run rows and checkpoints as messages; it batches rows from all runs into one
//! transaction (group commit: a batch is written as soon as someone waits for it or it is
//! full, and the next batch gathers while one is being written), retries failed writes
//! with backoff without losing or reordering anything, bounds its buffer with
//! backpressure, and fans events out to live subscribers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use graphloop_core::{EventKind, RunEvent};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::PersisterConfig;
use crate::error::EngineError;
use crate::store::{
    Batch, CheckpointRecord, EventRecord, Retention, RunQuery, RunRecord, RunStorage, RunUpdate, Store, StoreError,
    StoreFactory,
};
use crate::telemetry;

/// What a live subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Streamed {
    /// A stored event, in `seq` order, each exactly once.
    Event(EventRecord),
    /// The latest fine-grained progress of a node: not stored, may be coalesced.
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
    /// Events accepted from runs (all of them are written, eventually).
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
    /// Write attempts that failed (and were retried).
    pub write_failures: u64,
    /// Failures since the last successful write (0: healthy).
    pub consecutive_failures: u32,
    /// The last write error, if the last write failed.
    pub last_error: Option<String>,
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
#[derive(Debug, Default)]
pub(crate) struct TickSlot {
    latest: Mutex<Option<RunEvent>>,
}

impl TickSlot {
    /// Stores `event`; returns whether the persister must be told (the slot was empty).
    pub(crate) fn put(&self, event: RunEvent) -> bool {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner).replace(event).is_none()
    }

    fn take(&self) -> Option<RunEvent> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// A run's events (in seq order) and the latest change to its row, to store and fan
/// out.
#[derive(Message, Default)]
#[rtype(result = "()")]
pub(crate) struct Record {
    pub(crate) run_id: Uuid,
    /// Which of the run's actors sent it (see [`Fence`]).
    pub(crate) incarnation: u64,
    pub(crate) events: Vec<EventRecord>,
    pub(crate) update: Option<RunUpdate>,
}

/// From now on, only the run's actor `incarnation` (or a later one) may write for it:
/// an actor the watchdog gave up on, should it wake, is refused (epoch fencing).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Fence {
    pub(crate) run_id: Uuid,
    pub(crate) incarnation: u64,
}

/// A new run's row, to insert.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct InsertRun(pub(crate) RunRecord);

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

/// A commit point of a run: stores the checkpoint, and answers once everything accepted
/// before it is durable (`durable: true`) or has room in the buffer (`durable: false`).
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub(crate) struct Commit {
    pub(crate) record: Record,
    pub(crate) checkpoint: Option<CheckpointRecord>,
    pub(crate) durable: bool,
}

/// Ends a run that has no actor to do it (it died, or was cancelled while waiting for
/// a restart): records `kind` as its final event, after its last one, and its row.
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

/// Reads one run (including changes not yet written).
#[derive(Message)]
#[rtype(result = "Result<Option<RunRecord>, EngineError>")]
pub(crate) struct ReadRun(pub(crate) Uuid);

/// Reads the run a user started with an idempotency key, written or not.
#[derive(Message)]
#[rtype(result = "Result<Option<RunRecord>, EngineError>")]
pub(crate) struct ReadRunByKey {
    pub(crate) user_id: String,
    pub(crate) key: String,
}

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

struct Subscriber {
    tx: mpsc::Sender<Streamed>,
    next_seq: u64,
    /// Live events that arrived while stored ones were being read.
    replay: Option<Vec<EventRecord>>,
    id: u64,
}

/// The only owner of the store. See the module docs.
pub struct ProgressPersister {
    config: PersisterConfig,
    factory: Option<Box<dyn StoreFactory>>,
    ready: Option<oneshot::Sender<Result<(), StoreError>>>,
    store: Option<Rc<dyn Store>>,
    pending: Pending,
    /// Rows in the batch being written (for the buffer bound).
    in_flight: Option<usize>,
    /// Every accepted row gets a ticket; `durable` is the highest written.
    accepted: u64,
    durable: u64,
    durable_waiters: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
    room_waiters: VecDeque<oneshot::Sender<()>>,
    /// Events not yet durable, per run, for subscribers who replay.
    recent: HashMap<Uuid, BTreeMap<u64, EventRecord>>,
    /// Run rows and changes not yet durable, for reads.
    unwritten_runs: HashMap<Uuid, RunRecord>,
    unwritten_updates: HashMap<Uuid, RunUpdate>,
    /// Each unfinished run's last event: (seq, percent).
    last_seq: HashMap<Uuid, (u64, f64)>,
    /// Each run's latest checkpoint not yet written.
    unwritten_checkpoints: HashMap<Uuid, CheckpointRecord>,
    /// The lowest actor incarnation allowed to write, per fenced run.
    fences: HashMap<Uuid, u64>,
    subscribers: HashMap<Uuid, Vec<Subscriber>>,
    next_subscriber: u64,
    stats: PersisterStats,
    retry_delay: Duration,
}

#[derive(Default)]
struct Pending {
    prune_to_last: Vec<Uuid>,
    runs: Vec<RunRecord>,
    run_updates: HashMap<Uuid, RunUpdate>,
    events: Vec<EventRecord>,
    checkpoints: Vec<CheckpointRecord>,
}

impl Pending {
    fn len(&self) -> usize {
        self.runs.len() + self.run_updates.len() + self.events.len() + self.checkpoints.len()
    }

    fn take(&mut self) -> Batch {
        let taken = std::mem::take(self);
        Batch {
            runs: taken.runs,
            run_updates: taken.run_updates.into_values().collect(),
            events: taken.events,
            checkpoints: taken.checkpoints,
            prune_to_last: taken.prune_to_last,
        }
    }
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
        let retry_delay = config.retry_initial;
        Self {
            config,
            factory: Some(factory),
            ready: Some(ready),
            store: None,
            pending: Pending::default(),
            in_flight: None,
            accepted: 0,
            durable: 0,
            durable_waiters: BTreeMap::new(),
            room_waiters: VecDeque::new(),
            recent: HashMap::new(),
            unwritten_runs: HashMap::new(),
            unwritten_updates: HashMap::new(),
            last_seq: HashMap::new(),
            unwritten_checkpoints: HashMap::new(),
            fences: HashMap::new(),
            subscribers: HashMap::new(),
            next_subscriber: 0,
            stats,
            retry_delay,
        }
    }

    fn buffered(&self) -> usize {
        self.pending.len() + self.in_flight.unwrap_or(0)
    }

    fn store(&self) -> Result<Rc<dyn Store>, EngineError> {
        self.store.clone().ok_or_else(|| EngineError::Store(StoreError::Unavailable("store not open".into())))
    }

    /// Counts one accepted row and writes a batch if enough are waiting.
    fn accepted_row(&mut self, ctx: &mut Context<Self>) {
        self.accepted += 1;
        telemetry::buffered_rows(self.buffered());
        if self.pending.len() >= self.config.batch_size {
            self.flush(ctx);
        }
    }

    /// Starts writing the pending rows, unless a write is in flight (then the rows
    /// gather into the next batch, written when this one commits).
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight.is_some() || self.pending.len() == 0 {
            return;
        }
        let batch = Rc::new(self.pending.take());
        self.in_flight = Some(batch.len());
        self.stats.writing_since = Some(SystemTime::now());
        let upto = self.accepted;
        self.write(batch, upto, ctx);
    }

    fn write(&mut self, batch: Rc<Batch>, upto: u64, ctx: &mut Context<Self>) {
        let store = match self.store() {
            Ok(store) => store,
            Err(_) => return,
        };
        let started = Instant::now();
        let attempt = {
            let batch = Rc::clone(&batch);
            async move { store.write(&batch).await }
        };
        ctx.spawn(attempt.into_actor(self).map(move |result, act, ctx| match result {
            Ok(()) => act.written(&batch, upto, started.elapsed(), ctx),
            Err(error) => {
                telemetry::write_failed();
                act.stats.write_failures += 1;
                act.stats.consecutive_failures += 1;
                act.stats.last_error = Some(error.to_string());
                let delay = act.retry_delay;
                act.retry_delay = (act.retry_delay * 2).min(act.config.retry_max);
                tracing::warn!(%error, rows = batch.len(), retry_in = ?delay, "persister write failed; retrying");
                ctx.run_later(delay, move |act, ctx| act.write(batch, upto, ctx));
            }
        }));
    }

    fn written(&mut self, batch: &Batch, upto: u64, latency: Duration, ctx: &mut Context<Self>) {
        self.in_flight = None;
        self.stats.writing_since = None;
        self.stats.last_write_at = Some(SystemTime::now());
        self.durable = upto;
        self.retry_delay = self.config.retry_initial;
        telemetry::batch_written(batch.events.len(), batch.len(), latency);
        telemetry::buffered_rows(self.buffered());
        self.stats.events_written += batch.events.len() as u64;
        self.stats.rows_written += batch.len() as u64;
        self.stats.batches_written += 1;
        self.stats.last_batch_rows = batch.len();
        self.stats.last_commit_latency = latency;
        self.stats.total_commit_latency += latency;
        self.stats.consecutive_failures = 0;
        self.stats.last_error = None;
        for event in &batch.events {
            if let Some(recent) = self.recent.get_mut(&event.run_id) {
                recent.remove(&event.seq);
                if recent.is_empty() {
                    self.recent.remove(&event.run_id);
                }
            }
            if event.event.kind.is_terminal() {
                self.last_seq.remove(&event.run_id);
            }
        }
        for run in &batch.runs {
            self.unwritten_runs.remove(&run.id);
        }
        for checkpoint in &batch.checkpoints {
            if self.unwritten_checkpoints.get(&checkpoint.run_id) == Some(checkpoint) {
                self.unwritten_checkpoints.remove(&checkpoint.run_id);
            }
        }
        for update in &batch.run_updates {
            if self.unwritten_updates.get(&update.id) == Some(update) {
                self.unwritten_updates.remove(&update.id);
            }
        }
        let still_waiting = self.durable_waiters.split_off(&(upto + 1));
        for waiter in std::mem::replace(&mut self.durable_waiters, still_waiting).into_values().flatten() {
            let _ = waiter.send(());
        }
        self.wake_room();
        if !self.durable_waiters.is_empty() || self.pending.len() >= self.config.batch_size {
            self.flush(ctx);
        }
    }

    fn wake_room(&mut self) {
        while self.buffered() < self.config.buffer_capacity {
            match self.room_waiters.pop_front() {
                Some(waiter) => {
                    let _ = waiter.send(());
                }
                None => break,
            }
        }
    }

    /// Waits until everything accepted so far is durable.
    fn wait_durable(&mut self, ctx: &mut Context<Self>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.durable >= self.accepted {
            let _ = tx.send(());
        } else {
            self.durable_waiters.entry(self.accepted).or_default().push(tx);
            self.flush(ctx);
        }
        rx
    }

    fn append(&mut self, record: EventRecord, ctx: &mut Context<Self>) {
        let run_id = record.run_id;
        self.stats.events_accepted += 1;
        let last = self.last_seq.entry(run_id).or_insert((0, 0.0));
        if record.seq > last.0 {
            *last = (record.seq, record.event.percent);
        }
        self.fan_out(&record);
        self.recent.entry(run_id).or_default().insert(record.seq, record.clone());
        self.pending.events.push(record);
        self.accepted_row(ctx);
    }

    fn fenced(&self, run_id: Uuid, incarnation: u64) -> bool {
        self.fences.get(&run_id).is_some_and(|&allowed| incarnation < allowed)
    }

    fn record(&mut self, Record { run_id, incarnation, events, update }: Record, ctx: &mut Context<Self>) {
        if self.fenced(run_id, incarnation) {
            tracing::warn!(%run_id, incarnation, "dropped writes of a superseded actor");
            return;
        }
        for event in events {
            self.append(event, ctx);
        }
        if let Some(update) = update {
            self.update_run(update, ctx);
        }
    }

    fn update_run(&mut self, update: RunUpdate, ctx: &mut Context<Self>) {
        if update.status.is_terminal() && self.config.retention == Retention::KeepLast {
            self.pending.prune_to_last.push(update.id);
        }
        // A run's final status always wins over a later non-final one (a shutdown's
        // `interrupted` arriving after the run's own `cancelled`, say).
        let keeps_final = |pending: Option<&RunUpdate>| {
            pending.is_some_and(|p| p.status.is_terminal() && !update.status.is_terminal())
        };
        if !keeps_final(self.unwritten_updates.get(&update.id)) {
            self.unwritten_updates.insert(update.id, update.clone());
        }
        if !keeps_final(self.pending.run_updates.get(&update.id)) {
            self.pending.run_updates.insert(update.id, update);
        }
        self.accepted_row(ctx);
    }

    fn fan_out(&mut self, record: &EventRecord) {
        let Some(subscribers) = self.subscribers.get_mut(&record.run_id) else {
            return;
        };
        let terminal = record.event.kind.is_terminal();
        subscribers.retain_mut(|sub| {
            if let Some(replay) = &mut sub.replay {
                replay.push(record.clone());
                return true;
            }
            if record.seq < sub.next_seq {
                return true;
            }
            sub.next_seq = record.seq + 1;
            // A subscriber that cannot keep up is dropped; it resumes from its last seq.
            sub.tx.try_send(Streamed::Event(record.clone())).is_ok() && !terminal
        });
        if subscribers.is_empty() {
            self.subscribers.remove(&record.run_id);
        }
    }

    /// Delivers the stored events a new subscriber missed, then switches it to live; if
    /// the run has ended (`ended`), the stream ends here, whatever `from_seq` was.
    fn finish_replay(&mut self, run_id: Uuid, id: u64, stored: Vec<EventRecord>, ended: bool) {
        let Some(subscribers) = self.subscribers.get_mut(&run_id) else {
            return;
        };
        let Some(position) = subscribers.iter().position(|s| s.id == id) else {
            return;
        };
        let sub = &mut subscribers[position];
        let mut events: BTreeMap<u64, EventRecord> = stored.into_iter().map(|e| (e.seq, e)).collect();
        events.extend(sub.replay.take().unwrap_or_default().into_iter().map(|e| (e.seq, e)));
        let mut keep = !ended;
        for (seq, event) in events.range(sub.next_seq..) {
            let terminal = event.event.kind.is_terminal();
            if sub.tx.try_send(Streamed::Event(event.clone())).is_err() {
                keep = false;
                break;
            }
            sub.next_seq = seq + 1;
            if terminal {
                keep = false;
                break;
            }
        }
        if !keep {
            subscribers.remove(position);
            if subscribers.is_empty() {
                self.subscribers.remove(&run_id);
            }
        }
    }
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
        ctx.run_interval(self.config.flush_interval, |act, ctx| act.flush(ctx));
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
        self.record(record, ctx);
    }
}

impl Handler<InsertRun> for ProgressPersister {
    type Result = ();

    fn handle(&mut self, InsertRun(run): InsertRun, ctx: &mut Context<Self>) {
        self.unwritten_runs.insert(run.id, run.clone());
        self.pending.runs.push(run);
        self.accepted_row(ctx);
    }
}

impl Handler<UpdateRun> for ProgressPersister {
    type Result = ();

    fn handle(&mut self, UpdateRun(update): UpdateRun, ctx: &mut Context<Self>) {
        self.update_run(update, ctx);
    }
}

impl Handler<Tick> for ProgressPersister {
    type Result = ();

    fn handle(&mut self, Tick { run_id, slot }: Tick, _ctx: &mut Context<Self>) {
        let (Some(event), Some(subscribers)) = (slot.take(), self.subscribers.get_mut(&run_id)) else {
            return;
        };
        subscribers.retain(|sub| {
            sub.replay.is_some() || sub.tx.try_send(Streamed::Progress { run_id, event: event.clone() }).is_ok()
        });
    }
}

impl Handler<Commit> for ProgressPersister {
    type Result = ResponseFuture<Result<(), EngineError>>;

    fn handle(&mut self, commit: Commit, ctx: &mut Context<Self>) -> Self::Result {
        if self.fenced(commit.record.run_id, commit.record.incarnation) {
            return Box::pin(async { Err(EngineError::Superseded) });
        }
        self.record(commit.record, ctx);
        if let Some(checkpoint) = commit.checkpoint {
            self.unwritten_checkpoints.insert(checkpoint.run_id, checkpoint.clone());
            self.pending.checkpoints.push(checkpoint);
            self.accepted_row(ctx);
        }
        let wait = if commit.durable {
            Some(self.wait_durable(ctx))
        } else if self.buffered() >= self.config.buffer_capacity {
            let (tx, rx) = oneshot::channel();
            self.room_waiters.push_back(tx);
            self.flush(ctx);
            Some(rx)
        } else {
            None
        };
        Box::pin(async move {
            if let Some(wait) = wait {
                wait.await.map_err(|_| EngineError::ShuttingDown)?;
            }
            Ok(())
        })
    }
}

impl Handler<RecordEnd> for ProgressPersister {
    type Result = ();

    fn handle(&mut self, end: RecordEnd, ctx: &mut Context<Self>) {
        if self.last_seq.contains_key(&end.run.id) {
            return self.record_end(end, ctx);
        }
        // A run this process has not seen an event of (recovered, or never started):
        // number the final event after what the store has.
        let run_id = end.run.id;
        let store = self.store();
        let read = async move {
            let store = store?;
            let seq = store.last_seq(run_id).await?;
            let percent = store.events(run_id, seq, 1).await?.first().map_or(0.0, |e| e.event.percent);
            Ok::<_, EngineError>((seq, percent))
        };
        ctx.spawn(read.into_actor(self).map(move |last, act, ctx| {
            match last {
                Ok(last) => {
                    act.last_seq.entry(run_id).or_insert(last);
                }
                Err(error) => tracing::warn!(%error, %run_id, "cannot read the run's last event; numbering from 1"),
            }
            act.record_end(end, ctx);
        }));
    }
}

impl ProgressPersister {
    fn record_end(&mut self, RecordEnd { run, kind }: RecordEnd, ctx: &mut Context<Self>) {
        let (last, percent) = self.last_seq.get(&run.id).copied().unwrap_or((0, run.percent));
        let event = RunEvent { step: run.step, percent: percent.max(run.percent), kind };
        let record = EventRecord {
            run_id: run.id,
            seq: last + 1,
            user_id: run.user.user_id.clone(),
            at: SystemTime::now(),
            event,
        };
        self.append(record, ctx);
        self.update_run(run.update(), ctx);
    }
}

impl Handler<ReadResumePoint> for ProgressPersister {
    type Result = ResponseActFuture<Self, Result<ResumePoint, EngineError>>;

    fn handle(&mut self, ReadResumePoint(run_id): ReadResumePoint, _ctx: &mut Context<Self>) -> Self::Result {
        let unwritten = self.unwritten_checkpoints.get(&run_id).map(|c| c.checkpoint.clone());
        let last = self.last_seq.get(&run_id).copied();
        let store = self.store();
        Box::pin(
            async move {
                let store = store?;
                let checkpoint = match unwritten {
                    Some(checkpoint) => Some(checkpoint),
                    None => store.latest_checkpoint(run_id).await?.map(|c| c.checkpoint),
                };
                let (last_seq, last_percent) = match last {
                    Some(last) => last,
                    None => {
                        let seq = store.last_seq(run_id).await?;
                        let percent = store.events(run_id, seq, 1).await?.first().map_or(0.0, |e| e.event.percent);
                        (seq, percent)
                    }
                };
                Ok(ResumePoint { checkpoint, last_seq, last_percent })
            }
            .into_actor(self)
            .map(move |point, act, _ctx| {
                // The resumed actor numbers on from here; so does anything ending the run.
                if let Ok(point) = &point {
                    act.last_seq.entry(run_id).or_insert((point.last_seq, point.last_percent));
                }
                point
            }),
        )
    }
}

impl Handler<Fence> for ProgressPersister {
    type Result = ();

    fn handle(&mut self, Fence { run_id, incarnation }: Fence, _ctx: &mut Context<Self>) {
        let allowed = self.fences.entry(run_id).or_insert(0);
        *allowed = (*allowed).max(incarnation);
    }
}

impl Handler<Flush> for ProgressPersister {
    type Result = ResponseFuture<Result<(), EngineError>>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        let wait = self.wait_durable(ctx);
        Box::pin(async move { wait.await.map_err(|_| EngineError::ShuttingDown) })
    }
}

impl Handler<Subscribe> for ProgressPersister {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, Subscribe { run_id, from_seq }: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = mpsc::channel(self.config.subscriber_capacity.max(1));
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        let unwritten: Vec<EventRecord> = self
            .recent
            .get(&run_id)
            .map(|recent| recent.range(from_seq..).map(|(_, e)| e.clone()).collect())
            .unwrap_or_default();
        self.subscribers.entry(run_id).or_default().push(Subscriber {
            tx,
            next_seq: from_seq,
            replay: Some(unwritten),
            id,
        });
        let Ok(store) = self.store() else {
            return MessageResult(rx);
        };
        let ended_unwritten = self.unwritten_updates.get(&run_id).is_some_and(|u| u.status.is_terminal());
        let read = async move {
            let ended = ended_unwritten || store.run(run_id).await?.is_some_and(|run| run.status.is_terminal());
            let mut stored = Vec::new();
            let mut from = from_seq;
            loop {
                let page = store.events(run_id, from, 1_000).await?;
                let full = page.len() == 1_000;
                if let Some(last) = page.last() {
                    from = last.seq + 1;
                }
                stored.extend(page);
                if !full {
                    return Ok::<_, StoreError>((stored, ended));
                }
            }
        };
        ctx.spawn(read.into_actor(self).map(move |stored, act, _ctx| match stored {
            Ok((stored, ended)) => act.finish_replay(run_id, id, stored, ended),
            Err(error) => {
                // The subscriber's stream ends; it may subscribe again.
                tracing::warn!(%error, %run_id, "could not replay stored events for a subscriber");
                if let Some(subs) = act.subscribers.get_mut(&run_id) {
                    subs.retain(|s| s.id != id);
                }
            }
        }));
        MessageResult(rx)
    }
}

impl Handler<ReadRunByKey> for ProgressPersister {
    type Result = ResponseFuture<Result<Option<RunRecord>, EngineError>>;

    fn handle(&mut self, ReadRunByKey { user_id, key }: ReadRunByKey, _ctx: &mut Context<Self>) -> Self::Result {
        // A run accepted a moment ago may not be written yet: look among those first.
        let unwritten = self
            .unwritten_runs
            .values()
            .find(|r| r.user.user_id == user_id && r.idempotency_key.as_deref() == Some(key.as_str()))
            .cloned();
        let store = self.store();
        Box::pin(async move {
            match unwritten {
                Some(run) => Ok(Some(run)),
                None => Ok(store?.run_by_key(&user_id, &key).await?),
            }
        })
    }
}

impl Handler<ReadRun> for ProgressPersister {
    type Result = ResponseFuture<Result<Option<RunRecord>, EngineError>>;

    fn handle(&mut self, ReadRun(id): ReadRun, _ctx: &mut Context<Self>) -> Self::Result {
        // What is accepted but not yet written is read too (read your own writes).
        let unwritten = self.unwritten_runs.get(&id).cloned();
        let update = self.unwritten_updates.get(&id).cloned();
        let store = self.store();
        Box::pin(async move {
            let mut run = match unwritten {
                Some(run) => Some(run),
                None => store?.run(id).await?,
            };
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
        // Events accepted but not yet written are read too: a reader sees what a
        // subscriber sees.
        let unwritten: Vec<EventRecord> = self
            .recent
            .get(&read.run_id)
            .map(|recent| recent.range(read.from_seq..).map(|(_, e)| e.clone()).collect())
            .unwrap_or_default();
        Box::pin(async move {
            let stored = store?.events(read.run_id, read.from_seq, read.limit).await?;
            let mut events: BTreeMap<u64, EventRecord> = stored.into_iter().map(|e| (e.seq, e)).collect();
            events.extend(unwritten.into_iter().map(|e| (e.seq, e)));
            Ok(events.into_values().take(read.limit).collect())
        })
    }
}

impl Handler<ListRuns> for ProgressPersister {
    type Result = ResponseFuture<Result<Vec<RunRecord>, EngineError>>;

    fn handle(&mut self, ListRuns(query): ListRuns, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store();
        Box::pin(async move { Ok(store?.runs(&query).await?) })
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
        stats.buffered = self.buffered();
        stats.subscribers = self.subscribers.values().map(Vec::len).sum();
        stats.waiting_for_room = self.room_waiters.iter().filter(|w| !w.is_closed()).count();
        stats.pool = self.store.as_ref().and_then(|store| store.pool());
        MessageResult(stats)
    }
}
