//! The Engine: the handle an application holds.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::prelude::*;
use graphloop_core::{Graph, State, UserContext};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::config::{Durability, EngineConfig};
use crate::error::EngineError;
use crate::health::{Health, HealthMonitor, ProbeNow, Reports};
use crate::persister::{
    Flush, GetStats, ListRuns, ListUnfinished, PersisterStats, ProgressPersister, PruneNow, ReadEvents, ReadRun,
    ReadStorage, RecordEnd, Streamed, Subscribe,
};
use crate::run::{ErasedGraph, RunSnapshot};
use crate::store::{EventRecord, RunQuery, RunRecord, RunStatus, RunStorage};
use crate::supervisor::{
    Cancel, GetSupervisorStats, PanicRun, Reaper, Recover, Shutdown, Snapshot, StartRun, Started, Supervisor,
    SupervisorStats,
};

/// The handle to a running engine: cheap to clone, usable from any thread and any
/// async runtime (actix-web handlers included).
///
/// The engine runs on threads of its own: an actix `System` thread hosting the
/// Supervisor, a long-lived arbiter for the ProgressPersister (the only owner of the
/// store), and one arbiter per running run. Every method talks to them by message; none
/// of the engine's futures, pools or connections ever runs on the caller's loop.
///
/// ```
/// # use graphloop_core::{GraphBuilder, Update, UserContext, START, END};
/// # use graphloop_runtime::{Engine, EngineConfig, RunStatus};
/// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct S { n: u32 }
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let engine = Engine::start(EngineConfig::new()).await?;
/// let graph = GraphBuilder::<S>::new("double")
///     .node("double", |s, _ctx| async move { Ok(Update::new().set("n", s.n * 2)) })
///     .edge(START, "double")
///     .edge("double", END)
///     .compile()?;
/// engine.register(graph)?;
/// let run = engine.start_run("double", &S { n: 21 }, UserContext::new("alice")).await?;
/// let done = engine.wait(run).await?;
/// assert_eq!((done.status, done.output.unwrap()["n"].as_u64()), (RunStatus::Completed, Some(42)));
/// engine.shutdown().await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

type Registry = HashMap<String, BTreeMap<u32, Registered>>;

/// A registered graph, with the durability its runs get unless they ask otherwise.
#[derive(Clone)]
struct Registered {
    graph: Arc<dyn ErasedGraph>,
    durability: Option<Durability>,
}

/// Options of one run (see [`Engine::start_run_with`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    version: Option<u32>,
    durability: Option<Durability>,
    idempotency_key: Option<String>,
}

impl RunOptions {
    /// The defaults: the latest version, the graph's (or the engine's) durability.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs this version of the graph.
    #[must_use]
    pub fn version(mut self, version: u32) -> Self {
        self.version = Some(version);
        self
    }

    /// The run's durability, whatever the graph's or the engine's.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// An idempotency key: starting a run with a key this user has already used returns
    /// that run instead of starting another, in this process or a later one (the key is
    /// stored with the run). See [`Engine::submit`].
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// What [`Engine::submit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// The run: the new one, or the one started earlier with the same idempotency key.
    pub id: Uuid,
    /// Whether this call started it (`false`: the key had been used).
    pub created: bool,
}

struct Inner {
    supervisor: Addr<Supervisor>,
    persister: Addr<ProgressPersister>,
    /// The health monitor's latest report.
    health: Reports,
    /// How old the latest report may be before the monitor counts as unanswering.
    health_stale_after: Duration,
    graphs: RwLock<Registry>,
    durability: Durability,
    system: System,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    arbiters: watch::Receiver<usize>,
    shutdown_timeout: Duration,
    finish_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropped without `shutdown()`: stop the engine's threads (not gracefully).
        self.system.stop();
    }
}

/// Counters of the whole engine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineStats {
    /// The supervisor's counters.
    pub supervisor: SupervisorStats,
    /// The persister's counters.
    pub persister: PersisterStats,
    /// Run arbiters whose threads are still alive (stopped ones are joined promptly).
    pub arbiters: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the engine's threads and actors and opens the store (on the persister's
    /// arbiter). Fails if the store cannot be opened (database unreachable, migration
    /// failed).
    pub async fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        let EngineConfig {
            store,
            durability,
            admission,
            restarts,
            persister,
            health,
            shutdown_timeout,
            finish_timeout,
        } = config;
        // The monitor bounds each of its two rounds (actors' figures, then run probes) by
        // `blocked_after`, and starts one every interval: with no report for two intervals
        // past twice that and a margin, its own thread is blocked.
        let health_stale_after = health
            .interval
            .saturating_mul(2)
            .saturating_add(health.blocked_after.saturating_mul(2))
            .saturating_add(Duration::from_secs(1));
        let (reports_tx, reports) = watch::channel(None);

        let (reaper, arbiters, reaper_thread) =
            Reaper::start().map_err(|e| EngineError::Unavailable(format!("cannot start the reaper thread: {e}")))?;
        let (started_tx, started_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let engine_thread = std::thread::Builder::new()
            .name("graphloop-engine".into())
            .spawn(move || {
                let system = System::new();
                let persister_arbiter = system.block_on(async move {
                    // The persister gets its own long-lived arbiter: its loop drives every
                    // database connection, and nothing else runs there.
                    let persister_arbiter = Arbiter::new();
                    let persister = ProgressPersister::start_in_arbiter(&persister_arbiter.handle(), move |_| {
                        ProgressPersister::new(persister, store, ready_tx)
                    });
                    let supervisor = Supervisor::new(admission, persister.clone(), reaper, restarts).start();
                    // On the System's own arbiter, never on a run's: a blocked run cannot
                    // block its own diagnosis.
                    let monitor = HealthMonitor::new(health, supervisor.clone(), persister.clone(), reports_tx).start();
                    let _ = started_tx.send((System::current(), supervisor, persister, monitor));
                    persister_arbiter
                });
                if let Err(error) = system.run() {
                    tracing::error!(%error, "the engine's system stopped with an error");
                }
                persister_arbiter.stop();
                let _ = persister_arbiter.join();
            })
            .map_err(|e| EngineError::Unavailable(format!("cannot start the engine thread: {e}")))?;
        let (system, supervisor, persister, monitor) =
            started_rx.await.map_err(|_| EngineError::Unavailable("the engine thread exited while starting".into()))?;
        let engine = Engine {
            inner: Arc::new(Inner {
                supervisor,
                persister,
                health: reports,
                health_stale_after,
                graphs: RwLock::new(HashMap::new()),
                durability,
                system,
                threads: Mutex::new(vec![engine_thread, reaper_thread]),
                arbiters,
                shutdown_timeout,
                finish_timeout,
            }),
        };
        match ready_rx.await {
            Ok(Ok(())) => {
                // The first report, probed now that the store is open: `health` answers
                // from the start.
                let asked = std::time::Instant::now();
                monitor.do_send(ProbeNow);
                let mut reports = engine.inner.health.clone();
                let _ = reports.wait_for(|report| report.as_ref().is_some_and(|r| r.started >= asked)).await;
                Ok(engine)
            }
            Ok(Err(error)) => {
                engine.stop_threads(finish_timeout).await;
                Err(EngineError::Store(error))
            }
            Err(_) => {
                engine.stop_threads(finish_timeout).await;
                Err(EngineError::Unavailable("the persister stopped while opening the store".into()))
            }
        }
    }

    /// Registers a compiled graph under its name and version. Runs start from the
    /// highest version registered under a name.
    pub fn register<S: State>(&self, graph: Graph<S>) -> Result<(), EngineError> {
        self.add(Registered { graph: Arc::new(graph), durability: None })
    }

    /// Registers a graph whose runs get `durability` unless a run asks otherwise.
    pub fn register_with<S: State>(&self, graph: Graph<S>, durability: Durability) -> Result<(), EngineError> {
        self.add(Registered { graph: Arc::new(graph), durability: Some(durability) })
    }

    fn add(&self, registered: Registered) -> Result<(), EngineError> {
        let (name, version) = (registered.graph.name().to_owned(), registered.graph.version());
        let mut graphs = self.inner.graphs.write().unwrap_or_else(PoisonError::into_inner);
        let versions = graphs.entry(name.clone()).or_default();
        if versions.contains_key(&version) {
            return Err(EngineError::DuplicateGraph { name, version });
        }
        versions.insert(version, registered);
        Ok(())
    }

    /// The registered graphs: (name, versions).
    pub fn graphs(&self) -> Vec<(String, Vec<u32>)> {
        let graphs = self.inner.graphs.read().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<_> = graphs.iter().map(|(name, v)| (name.clone(), v.keys().copied().collect())).collect();
        list.sort();
        list
    }

    fn graph(&self, name: &str, version: Option<u32>) -> Result<Registered, EngineError> {
        let graphs = self.inner.graphs.read().unwrap_or_else(PoisonError::into_inner);
        let versions = graphs.get(name);
        let graph = match version {
            Some(v) => versions.and_then(|versions| versions.get(&v)),
            None => versions.and_then(|versions| versions.values().next_back()),
        };
        graph.cloned().ok_or_else(|| EngineError::UnknownGraph { name: name.to_owned(), version })
    }

    /// Starts a run of the latest version of graph `graph` from `input` (any value that
    /// serializes to the graph's state), for `user`. Returns the run's id (UUIDv7) once
    /// it is admitted: running, or queued behind the concurrency limits.
    pub async fn start_run(&self, graph: &str, input: &impl Serialize, user: UserContext) -> Result<Uuid, EngineError> {
        self.start_run_with(graph, input, user, RunOptions::new()).await
    }

    /// Like [`Engine::start_run`], for a given graph version (`None`: the latest).
    pub async fn start_run_version(
        &self,
        graph: &str,
        version: Option<u32>,
        input: &impl Serialize,
        user: UserContext,
    ) -> Result<Uuid, EngineError> {
        let options = RunOptions { version, ..RunOptions::default() };
        self.start_run_with(graph, input, user, options).await
    }

    /// Like [`Engine::start_run`], with options: the graph's version, the run's
    /// durability (else the graph's, else the engine's), an idempotency key.
    pub async fn start_run_with(
        &self,
        graph: &str,
        input: &impl Serialize,
        user: UserContext,
        options: RunOptions,
    ) -> Result<Uuid, EngineError> {
        Ok(self.submit(graph, input, user, options).await?.id)
    }

    /// [`start_run_with`](Self::start_run_with), saying whether the run was started by
    /// this call: with an idempotency key the user has used before (a retried request),
    /// it returns that run, `created: false`, and starts nothing. Keys are per user and
    /// stored with the run, so they hold across processes.
    ///
    /// Answers only once the run's row (with its key) is committed: a run this returns is
    /// never lost, whatever happens to the process next. Input the store cannot hold
    /// faithfully is refused here ([`EngineError::InvalidInput`], naming the field).
    pub async fn submit(
        &self,
        graph: &str,
        input: &impl Serialize,
        user: UserContext,
        options: RunOptions,
    ) -> Result<Submitted, EngineError> {
        let Registered { graph, durability } = self.graph(graph, options.version)?;
        let input = serde_json::to_value(input)
            .map_err(|e| EngineError::InvalidInput { graph: graph.name().to_owned(), reason: e.to_string() })?;
        graph
            .check_input(&input)
            .map_err(|reason| EngineError::InvalidInput { graph: graph.name().to_owned(), reason })?;
        let record = RunRecord {
            durability: options.durability.or(durability).unwrap_or(self.inner.durability),
            idempotency_key: options.idempotency_key,
            ..RunRecord::queued(graph.name(), graph.version(), user, input)
        };
        let graph_name = record.graph.clone();
        // A keyed start is one insert-or-return on the store's unique (user, key) index,
        // written with the other rows of its group commit: no lock serialises keyed starts.
        match self.inner.supervisor.send(StartRun { record, graph }).await? {
            Ok(Started { run, created }) => Ok(Submitted { id: run.id, created }),
            Err(EngineError::Store(refused)) if !refused.is_transient() => {
                Err(EngineError::InvalidInput { graph: graph_name, reason: refused.to_string() })
            }
            Err(error) => Err(error),
        }
    }

    /// Resumes the runs an earlier process left unfinished (`queued`, `running` or
    /// `interrupted` in the store), each from its last checkpoint, through admission like
    /// any run. Call it once after registering the graphs. A run whose graph (name and
    /// version) is not registered fails, saying so. Returns the resumed runs' ids.
    pub async fn recover(&self) -> Result<Vec<Uuid>, EngineError> {
        self.recover_where(|_| true).await
    }

    /// [`recover`](Self::recover), limited to the unfinished runs `select` accepts; the
    /// others are left as they are, for the process they belong to. A tool sharing a
    /// database with other applications resumes only its own graph's runs, or only its
    /// user's, this way.
    pub async fn recover_where(&self, select: impl Fn(&RunRecord) -> bool) -> Result<Vec<Uuid>, EngineError> {
        let unfinished = self.inner.persister.send(ListUnfinished).await??;
        let mut resumed = Vec::with_capacity(unfinished.len());
        for mut run in unfinished.into_iter().filter(|run| select(run)) {
            match self.graph(&run.graph, Some(run.graph_version)) {
                Ok(Registered { graph, .. }) => {
                    let id = run.id;
                    self.inner.supervisor.send(Recover { record: run, graph, answer: None }).await??;
                    resumed.push(id);
                }
                Err(missing) => {
                    let error = graphloop_core::RunError::Aborted { reason: format!("cannot resume: {missing}") };
                    run.status = RunStatus::Failed;
                    run.updated_at = crate::store::stored_now();
                    run.finished_at = Some(run.updated_at);
                    run.error = serde_json::to_value(&error).ok();
                    self.inner
                        .persister
                        .do_send(RecordEnd { run, kind: graphloop_core::EventKind::RunFailed { error } });
                }
            }
        }
        Ok(resumed)
    }

    /// Answers the question a waiting run asked (a node returned
    /// [`NodeError::interrupt`](graphloop_core::NodeError::interrupt)): the run goes on
    /// from its checkpoint, running the asking node again with `answer` in its context.
    /// Works in another process than the one that asked. Resuming a run that is not
    /// waiting is an error saying what it is.
    pub async fn resume(&self, run_id: Uuid, answer: &impl Serialize) -> Result<(), EngineError> {
        let run = self.inner.persister.send(ReadRun(run_id)).await??.ok_or(EngineError::UnknownRun(run_id))?;
        if run.status != RunStatus::Waiting {
            return Err(EngineError::NotWaiting { run_id, status: run.status });
        }
        let Registered { graph, .. } = self.graph(&run.graph, Some(run.graph_version))?;
        let answer = serde_json::to_value(answer)
            .map_err(|e| EngineError::InvalidInput { graph: run.graph.clone(), reason: format!("answer: {e}") })?;
        self.inner.supervisor.send(Recover { record: run, graph, answer: Some(answer) }).await?
    }

    /// A run's status: live from its actor while it runs (answered even while a node
    /// is awaiting), from the store once it has ended.
    pub async fn status(&self, run_id: Uuid) -> Result<RunSnapshot, EngineError> {
        if let Some(snapshot) = self.inner.supervisor.send(Snapshot(run_id)).await?? {
            return Ok(snapshot);
        }
        match self.inner.persister.send(ReadRun(run_id)).await?? {
            Some(run) => Ok(RunSnapshot { run, tasks: Vec::new(), waiting_for_commit: false }),
            None => Err(EngineError::UnknownRun(run_id)),
        }
    }

    /// Cancels a run: its running node futures are dropped at once, and it ends
    /// `cancelled`. A run parked `waiting` for an answer or `interrupted` by a shutdown
    /// ends `cancelled` at once. Cancelling an ended run is an error saying how it ended.
    pub async fn cancel(&self, run_id: Uuid) -> Result<(), EngineError> {
        if self.inner.supervisor.send(Cancel(run_id)).await? {
            // The supervisor still counts a run whose actor has just ended (until it hears
            // of the end): if its end is already recorded, the cancel came too late.
            return match self.inner.persister.send(ReadRun(run_id)).await?? {
                Some(run) if run.status.is_terminal() && run.status != RunStatus::Cancelled => {
                    Err(EngineError::RunFinished { run_id, status: run.status })
                }
                _ => Ok(()),
            };
        }
        match self.inner.persister.send(ReadRun(run_id)).await?? {
            // Parked: no actor holds it, so the run ends here, durably.
            Some(mut run) if matches!(run.status, RunStatus::Waiting | RunStatus::Interrupted) => {
                run.status = RunStatus::Cancelled;
                run.updated_at = crate::store::stored_now();
                run.finished_at = Some(run.updated_at);
                self.inner.persister.send(RecordEnd { run, kind: graphloop_core::EventKind::RunCancelled }).await?;
                self.inner.persister.send(Flush).await??;
                Ok(())
            }
            Some(run) if run.status.is_terminal() => Err(EngineError::RunFinished { run_id, status: run.status }),
            // Between its actor's end and the supervisor's bookkeeping: nothing to cancel.
            Some(run) => Err(EngineError::RunFinished { run_id, status: run.status }),
            None => Err(EngineError::UnknownRun(run_id)),
        }
    }

    /// A run's events with `seq >= from_seq`: stored ones first, then live ones as they
    /// happen, each exactly once and in order; the stream ends after the run's final
    /// event. Node progress ticks come in between, coalesced.
    pub async fn subscribe(&self, run_id: Uuid, from_seq: u64) -> Result<EventStream, EngineError> {
        // Unknown runs are an error, not an endless empty stream.
        self.status(run_id).await?;
        let receiver = self.inner.persister.send(Subscribe { run_id, from_seq }).await?;
        Ok(EventStream { receiver })
    }

    /// Waits until the run has ended, waits for an answer, or was interrupted by a
    /// shutdown, and returns its row, once what the run did is stored (with the store
    /// down, it waits for the store).
    pub async fn wait(&self, run_id: Uuid) -> Result<RunRecord, EngineError> {
        self.wait_from(run_id, 1).await
    }

    /// [`wait`](Self::wait) for a caller that has already seen the run's events before
    /// `next_seq` (it followed them with [`subscribe`](Self::subscribe)): they are not
    /// read again.
    pub async fn wait_from(&self, run_id: Uuid, next_seq: u64) -> Result<RunRecord, EngineError> {
        let mut next_seq = next_seq.max(1);
        loop {
            let mut events = self.subscribe(run_id, next_seq).await?;
            while let Some(item) = events.next().await {
                if let Streamed::Event(record) = item {
                    next_seq = record.seq + 1;
                    // Subscribers see an event once it is committed, and the run's row
                    // commits with it: the row read now is the final one.
                    if record.event.kind.is_terminal() {
                        return Ok(self.status(run_id).await?.run);
                    }
                    if matches!(record.event.kind, graphloop_core::EventKind::RunWaiting { .. }) {
                        // Waiting for an answer (unless it was answered since).
                        let run = self.status(run_id).await?.run;
                        if run.status == RunStatus::Waiting {
                            return Ok(run);
                        }
                    }
                }
            }
            // The stream ended without the final event: the subscriber fell behind (go on
            // from where it stopped), or the run will not go on in this process.
            let run = self.status(run_id).await?.run;
            if run.status.is_terminal() || run.status == RunStatus::Interrupted {
                return Ok(run);
            }
        }
    }

    /// A run's stored events with `seq >= from_seq`, at most `limit`.
    pub async fn events(&self, run_id: Uuid, from_seq: u64, limit: usize) -> Result<Vec<EventRecord>, EngineError> {
        self.inner.persister.send(ReadEvents { run_id, from_seq, limit }).await?
    }

    /// How much a run occupies in the store (events and checkpoints, with bytes).
    pub async fn storage(&self, run_id: Uuid) -> Result<RunStorage, EngineError> {
        self.inner.persister.send(ReadStorage(run_id)).await?
    }

    /// Applies a `Retention::DeleteAfter` TTL now (it also runs periodically); returns how
    /// many checkpoints were deleted (0 under the other retentions).
    pub async fn prune(&self) -> Result<u64, EngineError> {
        self.inner.persister.send(PruneNow).await?
    }

    /// One user's runs, newest first: the committed rows, with the changes the persister
    /// has accepted since applied. A run that has ended (its final event seen by a
    /// subscriber) is listed as ended. Never waits on writes; with the store down, fails
    /// as unavailable after `PersisterConfig::read_timeout`.
    pub async fn list_runs(&self, query: RunQuery) -> Result<Vec<RunRecord>, EngineError> {
        self.inner.persister.send(ListRuns(query)).await?
    }

    /// The engine's counters.
    pub async fn stats(&self) -> Result<EngineStats, EngineError> {
        let supervisor = self.inner.supervisor.send(GetSupervisorStats).await?;
        let persister = self.inner.persister.send(GetStats).await?;
        Ok(EngineStats { supervisor, persister, arbiters: *self.inner.arbiters.borrow() })
    }

    /// The engine's health: every live run's loop lag (a run whose node blocks its
    /// thread is named), runs that emitted nothing for long, the queue against its
    /// capacity, and the persister's backlog and store failures, with reasons and
    /// recommendations (see [`HealthConfig`](crate::HealthConfig)).
    ///
    /// The report is the health monitor's latest: it probes every
    /// `HealthConfig::interval`, one probe at a time, so the report is at most about an
    /// interval old. Asking starts no probe and waits for none, so any number of callers
    /// cost the engine nothing. Should the monitor publish nothing for two intervals
    /// (past its probe's bound), the engine's own thread is blocked, and the report says
    /// so (`Unhealthy`). Fails only once the engine has shut down.
    pub async fn health(&self) -> Result<Health, EngineError> {
        let reports = &self.inner.health;
        // The monitor (the sender) is gone once the engine's System has stopped.
        if reports.has_changed().is_err() {
            return Err(EngineError::ShuttingDown);
        }
        let latest = reports.borrow();
        Ok(match latest.as_ref() {
            Some(report) if report.published.elapsed() <= self.inner.health_stale_after => report.health.clone(),
            Some(report) => Health::unanswered(report.published.elapsed()),
            // Not reachable once `start` has returned (it waits for the first report).
            None => Health::unanswered(Duration::ZERO),
        })
    }

    /// Waits for the first health report, from now on or the latest, that `shows` what
    /// the caller waits for (reports come every `HealthConfig::interval`): a readiness
    /// check, or a test waiting for a fault to show, without polling.
    pub async fn health_when(&self, shows: impl Fn(&Health) -> bool) -> Result<Health, EngineError> {
        let mut reports = self.inner.health.clone();
        let report = reports
            .wait_for(|report| report.as_ref().is_some_and(|report| shows(&report.health)))
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        report.as_ref().map(|report| report.health.clone()).ok_or(EngineError::ShuttingDown)
    }

    /// Waits until at most `count` run arbiters are alive (their threads joined).
    pub async fn wait_for_arbiters(&self, count: usize) -> Result<(), EngineError> {
        let mut arbiters = self.inner.arbiters.clone();
        arbiters.wait_for(|&alive| alive <= count).await.map(drop).map_err(|_| EngineError::ShuttingDown)
    }

    /// Makes a running run's actor panic outside any node. For tests of supervision.
    #[doc(hidden)]
    pub async fn inject_actor_panic(&self, run_id: Uuid) -> Result<bool, EngineError> {
        Ok(self.inner.supervisor.send(PanicRun(run_id)).await?)
    }

    /// Shuts down gracefully and loses nothing: stops admitting runs, lets every running
    /// run finish its current step and commit it (they stay `interrupted`, resumable;
    /// past the shutdown timeout they are stopped mid-step, at their last checkpoint),
    /// waits until the persister has written everything it accepted, then stops the
    /// engine's system and joins every thread it started.
    pub async fn shutdown(&self) -> Result<ShutdownReport, EngineError> {
        let Drained { arbiters_stopped, arbiters_left, flushed } = self.drain_runs().await?;
        let finish = self.inner.finish_timeout;
        let persister = match within(finish, self.inner.persister.send(GetStats)).await {
            Some(Ok(stats)) => Some(stats),
            _ => None,
        };
        let joined = self.stop_threads(finish).await;
        if !arbiters_stopped || !flushed || !joined {
            tracing::warn!(arbiters_left, flushed, joined, "shutdown was not complete within its timeout");
        }
        Ok(ShutdownReport { persister, arbiters_left, complete: arbiters_stopped && flushed && joined })
    }

    /// The first half of [`shutdown`](Self::shutdown): stops admitting runs, lets every
    /// running run finish its current step and commit it (past the shutdown timeout,
    /// stops it mid-step), and waits until everything accepted is written. The engine
    /// still answers [`status`](Self::status), [`events`](Self::events) and
    /// [`wait`](Self::wait) afterwards, so a caller can collect the results of the runs
    /// that finished meanwhile before it calls `shutdown`. Returns `false` if a run's
    /// thread or the store did not finish within the finish timeout.
    pub async fn drain(&self) -> Result<bool, EngineError> {
        let Drained { arbiters_stopped, flushed, .. } = self.drain_runs().await?;
        Ok(arbiters_stopped && flushed)
    }

    async fn drain_runs(&self) -> Result<Drained, EngineError> {
        let timeout = self.inner.shutdown_timeout;
        match self.inner.supervisor.send(Shutdown { timeout }).await {
            Ok(()) | Err(MailboxError::Closed) => {}
            Err(error) => return Err(error.into()),
        }
        // Runs stopped at the timeout report in from their actors' `Drop`; wait for
        // their arbiters before the final flush, so their last rows are in it. A thread
        // blocked by a node never stops: past the timeout, shutdown goes on without it.
        let finish = self.inner.finish_timeout;
        let arbiters_stopped = within(finish, self.wait_for_arbiters(0)).await.is_some();
        let arbiters_left = *self.inner.arbiters.borrow();
        // Nothing accepted is dropped on purpose; but with the store down for longer than
        // the timeout, shutdown reports what is left unwritten instead of waiting forever.
        let flushed = match within(finish, self.inner.persister.send(Flush)).await {
            Some(Ok(result)) => {
                result?;
                true
            }
            Some(Err(MailboxError::Closed)) | None => false,
            Some(Err(error)) => return Err(error.into()),
        };
        Ok(Drained { arbiters_stopped, arbiters_left, flushed })
    }

    /// Stops the engine's System and joins its threads; `false` if they did not end
    /// within `timeout` (a run's thread blocked by a node holds the reaper).
    async fn stop_threads(&self, timeout: Duration) -> bool {
        self.inner.system.stop();
        let threads: Vec<_> = self.inner.threads.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
        if threads.is_empty() {
            return true;
        }
        // Joining blocks: do it on a thread of its own and await the outcome, so this
        // works from any async runtime.
        let (done_tx, done_rx) = oneshot::channel();
        let joiner = std::thread::Builder::new().name("graphloop-join".into()).spawn(move || {
            for thread in threads {
                let _ = thread.join();
            }
            let _ = done_tx.send(());
        });
        joiner.is_ok() && within(timeout, done_rx).await.is_some()
    }
}

/// Runs `future` for at most `limit`; `None` if it did not finish. The timer is a thread
/// of its own, so this works whatever async runtime the caller uses.
async fn within<F: std::future::Future>(limit: Duration, future: F) -> Option<F::Output> {
    let (expired_tx, expired_rx) = oneshot::channel::<()>();
    let timer = std::thread::Builder::new().name("graphloop-timer".into()).spawn(move || {
        std::thread::sleep(limit);
        let _ = expired_tx.send(());
    });
    if timer.is_err() {
        return Some(future.await);
    }
    let future = std::pin::pin!(future);
    match futures_util::future::select(future, expired_rx).await {
        futures_util::future::Either::Left((output, _)) => Some(output),
        futures_util::future::Either::Right(_) => None,
    }
}

/// What [`Engine::drain_runs`] found.
struct Drained {
    arbiters_stopped: bool,
    arbiters_left: usize,
    flushed: bool,
}

/// What a graceful shutdown left behind.
#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownReport {
    /// The persister's counters after its final flush (`None` if the engine was shut
    /// down already): `events_written == events_accepted` means nothing was lost.
    pub persister: Option<PersisterStats>,
    /// Run arbiters whose threads did not stop (a node blocking its thread); their runs
    /// stay resumable from their last checkpoint.
    pub arbiters_left: usize,
    /// Whether every step finished within the shutdown timeout: runs stopped, everything
    /// accepted written, every thread joined.
    pub complete: bool,
}

/// A run's events: see [`Engine::subscribe`].
#[derive(Debug)]
pub struct EventStream {
    receiver: mpsc::Receiver<Streamed>,
}

impl EventStream {
    /// The next item, or `None` once the run has ended (or the subscriber fell too far
    /// behind and was dropped: subscribe again from the last seq seen).
    pub async fn next(&mut self) -> Option<Streamed> {
        self.receiver.recv().await
    }
}

impl futures_util::Stream for EventStream {
    type Item = Streamed;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Streamed>> {
        self.receiver.poll_recv(cx)
    }
}
