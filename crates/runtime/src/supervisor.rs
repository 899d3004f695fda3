//! The Supervisor: admission, one arbiter per run, and what happens when a run ends.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::config::{AdmissionConfig, RestartPolicy};
use crate::error::EngineError;
use crate::persister::{
    Fence, InsertRun, Inserted, ProgressPersister, ReadResumePoint, RecordEnd, ResumePoint, UpdateRun,
};
use crate::run::{
    Activity, CancelRun, Drain, ErasedGraph, GetSnapshot, InjectPanic, Probe, Resume, RunControl, RunSnapshot, RunSpec,
};
use crate::store::{RunRecord, RunStatus};
use crate::telemetry;

/// Counters of the supervisor, for health, tests and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupervisorStats {
    /// Runs running now.
    pub running: usize,
    /// Runs waiting for a slot.
    pub queued: usize,
    /// The most runs that ever ran at once.
    pub peak_running: usize,
    /// Runs started (actors spawned) since the engine started.
    pub started: u64,
    /// Times a run's actor died outside a node.
    pub died: u64,
    /// Runs restarted from their checkpoint after their actor died or stalled.
    pub restarted: u64,
    /// Times the watchdog found a run stalled.
    pub stalled: u64,
    /// The admission limits in force.
    pub max_running: usize,
    /// Runs that may wait for a slot before new ones are rejected.
    pub queue_capacity: usize,
}

/// Admits a run (runs it, queues it, or rejects it), once its row is committed.
#[derive(Message)]
#[rtype(result = "Result<Started, EngineError>")]
pub(crate) struct StartRun {
    pub(crate) record: RunRecord,
    pub(crate) graph: Arc<dyn ErasedGraph>,
}

/// A started run, as stored.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// The run stored: the new one, or the one the user's idempotency key found.
    pub(crate) run: RunRecord,
    /// Whether this start stored it.
    pub(crate) created: bool,
}

/// A run's actor ended (sent from its `Drop`). `status` is how it ended on purpose;
/// `None` means it died, for the reason in `died`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RunEnded {
    pub(crate) run_id: Uuid,
    /// Which of the run's actors ended.
    pub(crate) incarnation: u64,
    pub(crate) status: Option<RunStatus>,
    pub(crate) died: Option<String>,
    pub(crate) step: u64,
    pub(crate) percent: f64,
}

/// A live or queued run's snapshot (`None`: neither; ask the store).
#[derive(Message)]
#[rtype(result = "Result<Option<RunSnapshot>, EngineError>")]
pub(crate) struct Snapshot(pub(crate) Uuid);

/// Cancels a live or queued run; `false` if the supervisor does not hold it.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Cancel(pub(crate) Uuid);

/// Stops admitting, drains the running runs (each stops at its next step boundary,
/// resumable), and answers when none is left; after `timeout`, stops the rest where they
/// are.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown {
    pub(crate) timeout: Duration,
}

/// Makes a run's actor panic (for tests of supervision).
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct PanicRun(pub(crate) Uuid);

/// The supervisor's counters.
#[derive(Message)]
#[rtype(result = "SupervisorStats")]
pub(crate) struct GetSupervisorStats;

/// The live runs, for the health monitor to probe, with the supervisor's counters.
#[derive(Message)]
#[rtype(result = "(SupervisorStats, Vec<LiveRun>)")]
pub(crate) struct ListLive;

/// One live run, as the health monitor sees it.
pub(crate) struct LiveRun {
    pub(crate) run_id: Uuid,
    /// The run's actor, to probe (`None` while a restart is pending).
    pub(crate) probe: Option<Recipient<Probe>>,
    /// How long since the actor's last event or progress tick.
    pub(crate) idle: Duration,
    /// Held at a commit point, waiting for the store.
    pub(crate) waiting_for_store: bool,
    /// How many times the run was restarted from its checkpoint.
    pub(crate) restarts: u64,
}

struct Queued {
    record: RunRecord,
    graph: Arc<dyn ErasedGraph>,
    /// For a run recovered from the store: why it is resumed.
    resume: Option<String>,
    /// For a run that was waiting: the answer it resumes with.
    answer: Option<serde_json::Value>,
}

/// Admits a run recovered from the store (its row exists): it resumes from its last
/// checkpoint when a slot is free.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub(crate) struct Recover {
    pub(crate) record: RunRecord,
    pub(crate) graph: Arc<dyn ErasedGraph>,
    /// The answer for a run waiting on a question.
    pub(crate) answer: Option<serde_json::Value>,
}

/// An admitted run holding a slot: running, or waiting to be restarted.
struct Live {
    /// The run's arbiter (kept to stop it when the run ends: a dropped `Arbiter` keeps
    /// running) and its actor; `None` while a restart is pending.
    actor: Option<(Arbiter, RunControl)>,
    record: RunRecord,
    graph: Arc<dyn ErasedGraph>,
    /// When the run's actor died recently (the restart budget's window).
    deaths: VecDeque<Instant>,
    /// A cancel was sent to the actor: if the actor dies before acting on it, the run
    /// ends cancelled instead of being restarted.
    cancel_requested: bool,
    /// The current actor's number; notices of earlier ones are ignored.
    incarnation: u64,
    /// The current actor's last sign of life, for the watchdog.
    activity: Arc<Activity>,
    /// The answer the run was resumed with (kept for restarts until it ends).
    answer: Option<serde_json::Value>,
    /// Restarts after its actor died or stalled (not counting a resume at start-up).
    restarts: u64,
}

/// Joins the threads of stopped arbiters, off the supervisor's loop (joining blocks),
/// and publishes how many run arbiters are still alive.
pub(crate) struct Reaper {
    sender: std::sync::mpsc::Sender<Arbiter>,
    alive: watch::Sender<usize>,
}

impl Reaper {
    /// Starts the reaper thread. Returns the reaper, a receiver of the live-arbiter
    /// count, and the thread's handle (it ends when the reaper is dropped).
    pub(crate) fn start() -> std::io::Result<(Self, watch::Receiver<usize>, std::thread::JoinHandle<()>)> {
        let (sender, receiver) = std::sync::mpsc::channel::<Arbiter>();
        let (alive, alive_rx) = watch::channel(0usize);
        let counter = alive.clone();
        let thread = std::thread::Builder::new().name("graphloop-reaper".into()).spawn(move || {
            for arbiter in receiver {
                arbiter.stop();
                if arbiter.join().is_err() {
                    tracing::warn!("a run arbiter's thread panicked");
                }
                counter.send_modify(|n| *n = n.saturating_sub(1));
            }
        })?;
        Ok((Self { sender, alive }, alive_rx, thread))
    }

    fn spawned(&self) {
        self.alive.send_modify(|n| *n += 1);
    }

    /// Stops an arbiter whose thread may never end (a node blocking it) and joins it on
    /// a thread of its own.
    fn detach(&self, arbiter: Arbiter) {
        arbiter.stop();
        let alive = self.alive.clone();
        let joiner = std::thread::Builder::new().name("graphloop-detached".into()).spawn(move || {
            let _ = arbiter.join();
            alive.send_modify(|n| *n = n.saturating_sub(1));
        });
        if joiner.is_err() {
            tracing::warn!("cannot start a thread to join a stalled run's arbiter; it is left running");
        }
    }

    fn reap(&self, arbiter: Arbiter) {
        arbiter.stop();
        if let Err(returned) = self.sender.send(arbiter) {
            // The reaper thread is gone (engine shutting down): stopping is enough.
            drop(returned);
            self.alive.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
}

/// Admits runs and supervises their actors. See the crate docs.
pub struct Supervisor {
    admission: AdmissionConfig,
    restarts: RestartPolicy,
    persister: Addr<ProgressPersister>,
    running: HashMap<Uuid, Live>,
    per_user: HashMap<String, usize>,
    queue: VecDeque<Queued>,
    /// Starts whose row is being written.
    admitting: usize,
    reaper: Reaper,
    /// Makes each run's arbiter (`Arbiter::try_new`; replaced in tests).
    arbiters: ArbiterFactory,
    accepting: bool,
    drained: Vec<oneshot::Sender<()>>,
    stats: SupervisorStats,
}

/// Makes a run's arbiter: a thread and a runtime, which the process may be out of.
type ArbiterFactory = Box<dyn Fn() -> std::io::Result<Arbiter>>;

impl Supervisor {
    pub(crate) fn new(
        admission: AdmissionConfig,
        persister: Addr<ProgressPersister>,
        reaper: Reaper,
        restarts: RestartPolicy,
    ) -> Self {
        let stats = SupervisorStats {
            max_running: admission.max_running,
            queue_capacity: admission.queue_capacity,
            ..SupervisorStats::default()
        };
        Self {
            admission,
            restarts,
            persister,
            running: HashMap::new(),
            per_user: HashMap::new(),
            queue: VecDeque::new(),
            admitting: 0,
            reaper,
            arbiters: Box::new(Arbiter::try_new),
            accepting: true,
            drained: Vec::new(),
            stats,
        }
    }

    /// Makes run arbiters with `factory` instead of `Arbiter::try_new`.
    #[cfg(test)]
    fn arbiters(mut self, factory: impl Fn() -> std::io::Result<Arbiter> + 'static) -> Self {
        self.arbiters = Box::new(factory);
        self
    }

    fn has_slot_for(&self, user_id: &str) -> bool {
        self.running.len() < self.admission.max_running
            && self
                .admission
                .max_running_per_user
                .is_none_or(|limit| self.per_user.get(user_id).copied().unwrap_or(0) < limit)
    }

    fn launch(&mut self, queued: Queued, ctx: &mut Context<Self>) {
        let Queued { record, graph, resume, answer } = queued;
        let run_id = record.id;
        let activity = Arc::new(Activity::new());
        let actor = match resume {
            // Resumed runs first read where they stand; the slot is theirs meanwhile.
            Some(_) => None,
            None => match self.spawn_actor(&record, &graph, None, 0, &activity, ctx) {
                Ok(actor) => Some(actor),
                Err(reason) => return self.unlaunchable(record, reason),
            },
        };
        *self.per_user.entry(record.user.user_id.clone()).or_default() += 1;
        let live = Live {
            actor,
            record,
            graph,
            deaths: VecDeque::new(),
            cancel_requested: false,
            incarnation: 0,
            activity,
            answer,
            restarts: 0,
        };
        self.running.insert(run_id, live);
        if let Some(reason) = resume {
            self.restart(run_id, reason, ctx);
        }
        self.stats.started += 1;
        self.stats.peak_running = self.stats.peak_running.max(self.running.len());
    }

    fn spawn_actor(
        &self,
        record: &RunRecord,
        graph: &Arc<dyn ErasedGraph>,
        resume: Option<Resume>,
        incarnation: u64,
        activity: &Arc<Activity>,
        ctx: &mut Context<Self>,
    ) -> Result<(Arbiter, RunControl), String> {
        // `Arbiter::new` panics when the process is out of threads (or memory for a
        // runtime), and a panic here would end this actor, and admission with it.
        let arbiter = (self.arbiters)().map_err(|e| format!("cannot start a thread for the run's arbiter: {e}"))?;
        self.reaper.spawned();
        activity.set_waiting(false);
        let spec = RunSpec {
            record: record.clone(),
            supervisor: ctx.address(),
            persister: self.persister.clone(),
            resume,
            incarnation,
            activity: Arc::clone(activity),
        };
        let control = graph.spawn(&arbiter.handle(), spec);
        Ok((arbiter, control))
    }

    /// A new run that cannot get an arbiter ends failed, with the reason; the supervisor
    /// and every other run go on.
    fn unlaunchable(&mut self, run: RunRecord, reason: String) {
        tracing::error!(run_id = %run.id, %reason, "cannot start a run");
        self.fail(run, reason);
    }

    /// Ends a run that holds no actor `failed`, with `reason`, durably.
    fn fail(&mut self, mut run: RunRecord, reason: String) {
        let error = graphloop_core::RunError::Aborted { reason };
        telemetry::run_ended(&run.graph, RunStatus::Failed);
        run.status = RunStatus::Failed;
        run.updated_at = crate::store::stored_now();
        run.finished_at = Some(run.updated_at);
        run.error = serde_json::to_value(&error).ok();
        self.persister.do_send(RecordEnd { run, kind: graphloop_core::EventKind::RunFailed { error } });
    }

    /// Removes a run that ended from the running set and frees its slot.
    fn release(&mut self, run_id: Uuid) -> Option<Live> {
        let live = self.running.remove(&run_id)?;
        if let Some(count) = self.per_user.get_mut(&live.record.user.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_user.remove(&live.record.user.user_id);
            }
        }
        Some(live)
    }

    /// Restarts a run whose actor died, from its last checkpoint, on a fresh arbiter.
    fn restart(&mut self, run_id: Uuid, cause: String, ctx: &mut Context<Self>) {
        if !self.accepting || self.running.get(&run_id).is_none_or(|live| live.actor.is_some()) {
            return;
        }
        let read = self.persister.send(ReadResumePoint(run_id));
        ctx.spawn(read.into_actor(self).map(move |point, act, ctx| match point {
            Ok(Ok(point)) => act.relaunch(run_id, point, cause, ctx),
            Ok(Err(EngineError::Store(unreadable))) if !unreadable.is_transient() => {
                // What the run stored cannot be read back (never will be): it fails, with
                // the reason, instead of holding its slot and retrying for ever.
                tracing::error!(%run_id, %unreadable, "cannot resume the run: its checkpoint or events are unreadable");
                if let Some(Live { record, .. }) = act.release(run_id) {
                    act.fail(record, format!("cannot resume: {unreadable}"));
                }
                act.admit_queued(ctx);
                act.check_drained();
            }
            failed => {
                // The store cannot say where the run stands yet: try again shortly.
                tracing::warn!(%run_id, ?failed, "cannot read the resume point; retrying");
                let delay = act.restarts.backoff_max;
                ctx.run_later(delay, move |act, ctx| act.restart(run_id, cause, ctx));
            }
        }));
    }

    fn relaunch(&mut self, run_id: Uuid, point: ResumePoint, cause: String, ctx: &mut Context<Self>) {
        let Some(live) = self.running.get(&run_id) else {
            return;
        };
        if !self.accepting || live.actor.is_some() {
            return;
        }
        // A run with no event yet never started: it simply starts.
        let resume = (point.last_seq > 0 || point.checkpoint.is_some()).then_some(Resume {
            checkpoint: point.checkpoint,
            last_seq: point.last_seq,
            last_percent: point.last_percent,
            reason: cause,
            answer: live.answer.clone(),
        });
        // Only the new actor may write for the run from now on.
        let incarnation = live.incarnation + 1;
        self.persister.do_send(Fence { run_id, incarnation });
        let (step, percent) = (live.record.step, live.record.percent);
        match self.spawn_actor(&live.record, &live.graph, resume, incarnation, &live.activity, ctx) {
            Ok(actor) => {
                if let Some(live) = self.running.get_mut(&run_id) {
                    live.actor = Some(actor);
                    live.incarnation = incarnation;
                }
                self.stats.restarted += 1;
            }
            // Like a death: tried again within the restart budget, failed past it.
            Err(reason) => self.died(run_id, reason, step, percent, ctx),
        }
    }

    /// Launches queued runs, first come first served among those whose user has a slot.
    fn admit_queued(&mut self, ctx: &mut Context<Self>) {
        while self.accepting && self.running.len() < self.admission.max_running {
            let Some(position) = self.queue.iter().position(|q| self.has_slot_for(&q.record.user.user_id)) else {
                break;
            };
            if let Some(queued) = self.queue.remove(position) {
                self.launch(queued, ctx);
            }
        }
        // Every change of the running set or the queue ends here (or in `Shutdown`).
        telemetry::runs_load(self.running.len(), self.queue.len());
    }

    fn check_drained(&mut self) {
        if self.running.is_empty() {
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16_384);
        if let Some(limit) = self.restarts.stall_timeout {
            let every = (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
            ctx.run_interval(every, move |act, ctx| act.watch(limit, ctx));
        }
    }
}

impl Handler<StartRun> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Started, EngineError>>;

    fn handle(&mut self, StartRun { record, graph }: StartRun, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.accepting {
            return Box::pin(fut::ready(Err(EngineError::ShuttingDown)));
        }
        // Starts whose row is being written hold a place in the queue meanwhile.
        let waiting = self.queue.len() + self.admitting;
        let runs_now = self.has_slot_for(&record.user.user_id) && waiting == 0;
        if !runs_now && waiting >= self.admission.queue_capacity {
            return Box::pin(fut::ready(Err(EngineError::Rejected {
                running: self.running.len(),
                queued: waiting,
                capacity: self.admission.queue_capacity,
            })));
        }
        self.admitting += 1;
        // Acknowledged means durable: the run is admitted once its row is committed.
        let insert = self.persister.send(InsertRun(record.clone()));
        Box::pin(insert.into_actor(self).map(move |inserted, act, ctx| {
            act.admitting -= 1;
            let Inserted { run, created } = inserted??;
            if created {
                telemetry::run_started(&record.graph);
                if act.accepting {
                    act.queue.push_back(Queued { record, graph, resume: None, answer: None });
                    act.admit_queued(ctx);
                }
                // Stopped admitting meanwhile: the run is stored `queued` and resumes
                // with the next process's recovery.
            }
            Ok(Started { run, created })
        }))
    }
}

impl Handler<Recover> for Supervisor {
    type Result = Result<(), EngineError>;

    fn handle(&mut self, Recover { record, graph, answer }: Recover, ctx: &mut Context<Self>) -> Self::Result {
        if !self.accepting {
            return Err(EngineError::ShuttingDown);
        }
        if self.running.contains_key(&record.id) || self.queue.iter().any(|q| q.record.id == record.id) {
            return Ok(());
        }
        let reason = match answer {
            Some(_) => "resumed with the answer to its question".to_owned(),
            None => format!("resumed after the process that ran it stopped (it was {})", record.status),
        };
        telemetry::run_resumed(&record.graph);
        self.queue.push_back(Queued { record, graph, resume: Some(reason), answer });
        self.admit_queued(ctx);
        Ok(())
    }
}

impl Handler<RunEnded> for Supervisor {
    type Result = ();

    fn handle(&mut self, ended: RunEnded, ctx: &mut Context<Self>) {
        let Some(live) = self.running.get_mut(&ended.run_id) else {
            return;
        };
        if live.incarnation != ended.incarnation {
            // An actor the watchdog gave up on: its run has moved on without it.
            return;
        }
        let Some((arbiter, _control)) = live.actor.take() else {
            return;
        };
        match ended.status {
            // Parked (waiting, interrupted) before it could act on a cancel sent to it:
            // the run ends as its user asked.
            Some(status) if !status.is_terminal() && live.cancel_requested => {
                if let Some(Live { record: mut run, .. }) = self.release(ended.run_id) {
                    telemetry::run_ended(&run.graph, RunStatus::Cancelled);
                    run.status = RunStatus::Cancelled;
                    (run.step, run.percent) = (ended.step, ended.percent);
                    run.updated_at = crate::store::stored_now();
                    run.finished_at = Some(run.updated_at);
                    self.persister.do_send(RecordEnd { run, kind: graphloop_core::EventKind::RunCancelled });
                }
            }
            Some(status) => {
                if let Some(live) = self.release(ended.run_id) {
                    telemetry::run_ended(&live.record.graph, status);
                }
            }
            None => {
                let cause = ended.died.unwrap_or_else(|| "the run's actor died".into());
                self.died(ended.run_id, cause, ended.step, ended.percent, ctx);
            }
        }
        // Reaped only once the run's end is handed to the persister: whoever waits for
        // the arbiters (a shutdown about to flush) then finds its rows in the buffer.
        self.reaper.reap(arbiter);
        self.admit_queued(ctx);
        self.check_drained();
    }
}

impl Supervisor {
    /// A run lost its actor (`live.actor` already taken): end it as asked (cancel),
    /// leave it resumable (shutdown), restart it within its budget, or fail it.
    fn died(&mut self, run_id: Uuid, cause: String, step: u64, percent: f64, ctx: &mut Context<Self>) {
        let Some(live) = self.running.get_mut(&run_id) else {
            return;
        };
        let end = |mut run: RunRecord, status: RunStatus| {
            run.step = step;
            run.percent = percent;
            run.status = status;
            run.updated_at = crate::store::stored_now();
            if status.is_terminal() {
                run.finished_at = Some(run.updated_at);
            }
            run
        };
        if live.cancel_requested {
            // Died before acting on a cancel: the run ends as its user asked.
            if let Some(Live { record, .. }) = self.release(run_id) {
                telemetry::run_ended(&record.graph, RunStatus::Cancelled);
                let run = end(record, RunStatus::Cancelled);
                self.persister.do_send(RecordEnd { run, kind: graphloop_core::EventKind::RunCancelled });
            }
            return;
        }
        if !self.accepting {
            // Stopped by shutdown: resumable from its last checkpoint.
            if let Some(Live { record, .. }) = self.release(run_id) {
                telemetry::run_ended(&record.graph, RunStatus::Interrupted);
                self.persister.do_send(UpdateRun(end(record, RunStatus::Interrupted).update()));
            }
            return;
        }
        tracing::error!(%run_id, %cause, "run actor died");
        self.stats.died += 1;
        let now = Instant::now();
        let window = self.restarts.within;
        live.deaths.retain(|&died| now.duration_since(died) < window);
        let deaths = u32::try_from(live.deaths.len()).unwrap_or(u32::MAX);
        if deaths < self.restarts.max_restarts {
            // Erlang-style intensity/period: restart, after a backoff that doubles with
            // each recent death.
            live.deaths.push_back(now);
            live.restarts += 1;
            telemetry::run_restarted(&live.record.graph);
            let delay = self.restarts.backoff(deaths);
            ctx.run_later(delay, move |act, ctx| act.restart(run_id, cause, ctx));
            return;
        }
        if let Some(Live { record, .. }) = self.release(run_id) {
            let reason = format!(
                "the run's actor died {} times within {:?}, past the restart budget; last cause: {cause}",
                deaths + 1,
                window
            );
            let error = graphloop_core::RunError::Aborted { reason };
            telemetry::run_ended(&record.graph, RunStatus::Failed);
            let mut run = end(record, RunStatus::Failed);
            run.error = serde_json::to_value(&error).ok();
            self.persister.do_send(RecordEnd { run, kind: graphloop_core::EventKind::RunFailed { error } });
        }
    }

    /// The watchdog: restarts runs whose actor shows no sign of life for too long.
    fn watch(&mut self, limit: Duration, ctx: &mut Context<Self>) {
        let stalled: Vec<(Uuid, Duration)> = self
            .running
            .iter()
            .filter(|(_, live)| live.actor.is_some() && live.activity.stalled(limit))
            .map(|(id, live)| (*id, live.activity.idle()))
            .collect();
        for (run_id, idle) in stalled {
            let Some(live) = self.running.get_mut(&run_id) else {
                continue;
            };
            let Some((arbiter, _control)) = live.actor.take() else {
                continue;
            };
            self.stats.stalled += 1;
            // Fence the stalled actor off at once: should it wake, its writes are refused.
            live.incarnation += 1;
            self.persister.do_send(Fence { run_id, incarnation: live.incarnation });
            let (step, percent) = (live.record.step, live.record.percent);
            // Its thread may be blocked for good: joined apart, so the reaper never waits.
            self.reaper.detach(arbiter);
            let cause = format!("stalled: no event or progress for {idle:?} (stall timeout {limit:?})");
            self.died(run_id, cause, step, percent, ctx);
        }
        self.admit_queued(ctx);
    }
}

impl Handler<Snapshot> for Supervisor {
    type Result = ResponseFuture<Result<Option<RunSnapshot>, EngineError>>;

    fn handle(&mut self, Snapshot(run_id): Snapshot, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(live) = self.running.get(&run_id) {
            let Some((_, control)) = &live.actor else {
                // Waiting to be restarted: it holds its slot and is running, as far as
                // its user can tell.
                let mut run = live.record.clone();
                run.status = RunStatus::Running;
                return Box::pin(
                    async move { Ok(Some(RunSnapshot { run, tasks: Vec::new(), waiting_for_commit: false })) },
                );
            };
            let ask = control.snapshot.send(GetSnapshot);
            // An actor that stopped between the lookup and the answer has committed its
            // final row: the caller reads it from the persister.
            return Box::pin(async move { Ok(ask.await.ok()) });
        }
        let queued = self.queue.iter().find(|q| q.record.id == run_id).map(|q| q.record.clone());
        Box::pin(async move { Ok(queued.map(|run| RunSnapshot { run, tasks: Vec::new(), waiting_for_commit: false })) })
    }
}

impl Handler<Cancel> for Supervisor {
    type Result = bool;

    fn handle(&mut self, Cancel(run_id): Cancel, ctx: &mut Context<Self>) -> bool {
        if let Some(live) = self.running.get_mut(&run_id) {
            if let Some((_, control)) = &live.actor {
                live.cancel_requested = true;
                control.cancel.do_send(CancelRun);
                return true;
            }
            // Waiting to be restarted: end it here.
            if let Some(Live { record: mut run, .. }) = self.release(run_id) {
                telemetry::run_ended(&run.graph, RunStatus::Cancelled);
                run.status = RunStatus::Cancelled;
                run.updated_at = crate::store::stored_now();
                run.finished_at = Some(run.updated_at);
                self.persister.do_send(RecordEnd { run, kind: graphloop_core::EventKind::RunCancelled });
            }
            self.admit_queued(ctx);
            self.check_drained();
            return true;
        }
        if let Some(position) = self.queue.iter().position(|q| q.record.id == run_id) {
            if let Some(Queued { mut record, .. }) = self.queue.remove(position) {
                telemetry::run_ended(&record.graph, RunStatus::Cancelled);
                record.status = RunStatus::Cancelled;
                record.updated_at = crate::store::stored_now();
                record.finished_at = Some(record.updated_at);
                self.persister.do_send(RecordEnd { run: record, kind: graphloop_core::EventKind::RunCancelled });
            }
            self.admit_queued(ctx);
            return true;
        }
        false
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, Shutdown { timeout }: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        self.accepting = false;
        // Queued runs stay `queued` in the store: nothing of theirs has run.
        self.queue.clear();
        let waiting: Vec<Uuid> = self.running.iter().filter(|(_, l)| l.actor.is_none()).map(|(id, _)| *id).collect();
        for run_id in waiting {
            // Waiting to be restarted: it stays resumable from its last checkpoint.
            if let Some(Live { record: mut run, .. }) = self.release(run_id) {
                telemetry::run_ended(&run.graph, RunStatus::Interrupted);
                run.status = RunStatus::Interrupted;
                run.updated_at = crate::store::stored_now();
                self.persister.do_send(UpdateRun(run.update()));
            }
        }
        telemetry::runs_load(self.running.len(), self.queue.len());
        for (_, control) in self.running.values().filter_map(|l| l.actor.as_ref()) {
            control.drain.do_send(Drain);
        }
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        self.check_drained();
        Box::pin(async move { tokio::time::timeout(timeout, rx).await.is_ok() }.into_actor(self).map(
            |drained, act, _ctx| {
                if !drained {
                    // Runs still mid-step: stop them where they are. Their actors report
                    // in from `Drop` and are recorded as interrupted.
                    tracing::warn!(runs = act.running.len(), "shutdown timeout: stopping runs mid-step");
                    for (arbiter, _) in act.running.values().filter_map(|l| l.actor.as_ref()) {
                        arbiter.stop();
                    }
                }
            },
        ))
    }
}

impl Handler<PanicRun> for Supervisor {
    type Result = bool;

    fn handle(&mut self, PanicRun(run_id): PanicRun, _ctx: &mut Context<Self>) -> bool {
        match self.running.get(&run_id).and_then(|live| live.actor.as_ref()) {
            Some((_, control)) => {
                control.inject_panic.do_send(InjectPanic);
                true
            }
            None => false,
        }
    }
}

impl Handler<GetSupervisorStats> for Supervisor {
    type Result = MessageResult<GetSupervisorStats>;

    fn handle(&mut self, _: GetSupervisorStats, _ctx: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.running = self.running.len();
        stats.queued = self.queue.len();
        MessageResult(stats)
    }
}

impl Handler<ListLive> for Supervisor {
    type Result = MessageResult<ListLive>;

    fn handle(&mut self, _: ListLive, ctx: &mut Context<Self>) -> Self::Result {
        let stats = self.handle(GetSupervisorStats, ctx).0;
        let live = self
            .running
            .iter()
            .map(|(run_id, live)| LiveRun {
                run_id: *run_id,
                probe: live.actor.as_ref().map(|(_, control)| control.probe.clone()),
                idle: live.activity.idle(),
                waiting_for_store: live.activity.waiting(),
                restarts: live.restarts,
            })
            .collect();
        MessageResult((stats, live))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

    use std::sync::atomic::{AtomicUsize, Ordering};

    use graphloop_core::{EventKind, GraphBuilder, Update, UserContext, END, START};
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::config::PersisterConfig;
    use crate::memory::MemoryStoreFactory;
    use crate::persister::{ReadRun, Streamed, Subscribe};

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    struct Count {
        n: u64,
    }

    fn queued(graph: &str, user: &str) -> RunRecord {
        RunRecord::queued(graph, 1, UserContext::new(user), serde_json::json!({"n": 1}))
    }

    /// The run's final event, followed from the persister (stored events, then live ones).
    async fn final_event(persister: &Addr<ProgressPersister>, run_id: Uuid) -> EventKind {
        let mut events = persister.send(Subscribe { run_id, from_seq: 1 }).await.unwrap();
        let deadline = Duration::from_secs(60);
        tokio::time::timeout(deadline, async {
            while let Some(item) = events.recv().await {
                if let Streamed::Event(record) = item {
                    if record.event.kind.is_terminal() {
                        return record.event.kind;
                    }
                }
            }
            panic!("the event stream of run {run_id} ended without a final event");
        })
        .await
        .expect("the run did not end within the deadline")
    }

    /// Issue 11: `Arbiter::new()` panicked inside the StartRun handler once the process was
    /// out of threads, and every later start answered "shutting down".
    #[test]
    fn a_run_that_cannot_get_an_arbiter_fails_with_the_reason_and_the_next_run_starts() {
        let system = System::new();
        let reaper_thread = system.block_on(async {
            let (ready_tx, ready_rx) = oneshot::channel();
            let persister =
                ProgressPersister::new(PersisterConfig::default(), Box::new(MemoryStoreFactory), ready_tx).start();
            ready_rx.await.unwrap().unwrap();
            let (reaper, mut alive, reaper_thread) = Reaper::start().unwrap();
            // The first arbiter cannot be made, as when the process is out of threads.
            let refusals = Arc::new(AtomicUsize::new(1));
            let factory = {
                let refusals = Arc::clone(&refusals);
                move || match refusals.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
                    Ok(_) => Err(std::io::Error::other("simulated: Resource temporarily unavailable")),
                    Err(_) => Arbiter::try_new(),
                }
            };
            let supervisor =
                Supervisor::new(AdmissionConfig::default(), persister.clone(), reaper, RestartPolicy::default())
                    .arbiters(factory)
                    .start();
            let graph: Arc<dyn ErasedGraph> = Arc::new(
                GraphBuilder::<Count>::new("add")
                    .node("add", |s: Arc<Count>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
                    .edge(START, "add")
                    .edge("add", END)
                    .compile()
                    .unwrap(),
            );

            let refused = queued("add", "u1");
            supervisor.send(StartRun { record: refused.clone(), graph: Arc::clone(&graph) }).await.unwrap().unwrap();
            let EventKind::RunFailed { error } = final_event(&persister, refused.id).await else {
                panic!("the run without an arbiter did not fail");
            };
            assert!(error.to_string().contains("cannot start a thread for the run's arbiter"), "{error}");
            assert!(error.to_string().contains("simulated: Resource temporarily unavailable"), "{error}");
            let stored = persister.send(ReadRun(refused.id)).await.unwrap().unwrap().unwrap();
            assert_eq!(stored.status, RunStatus::Failed);
            assert!(stored.error.unwrap().to_string().contains("simulated"));

            // The supervisor lives on: the next run gets its arbiter and completes.
            let next = queued("add", "u2");
            supervisor.send(StartRun { record: next.clone(), graph }).await.unwrap().unwrap();
            assert_eq!(final_event(&persister, next.id).await, EventKind::RunCompleted);
            assert_eq!(refusals.load(Ordering::SeqCst), 0);
            let stats = supervisor.send(GetSupervisorStats).await.unwrap();
            assert_eq!(stats.started, 1, "{stats:?}");
            alive.wait_for(|&n| n == 0).await.unwrap();
            reaper_thread
        });
        // Dropping the System drops the supervisor and its reaper, which ends the thread.
        drop(system);
        reaper_thread.join().unwrap();
    }
}
