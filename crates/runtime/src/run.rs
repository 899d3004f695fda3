//! The AnalysisActor: one run, on its own arbiter.
//!
//! Each graph step is a message to itself. The step's node futures are spawned on this
//! actor's context (`ctx.spawn`, keeping their handles), so they run on this arbiter and
//! nowhere else, while the actor keeps answering `Status` and `Cancel`. Nodes run through
//! [`Graph::invoke`] (panic guard, timeout, retries) and their updates merge through
//! [`Graph::apply`]: the reference executor's semantics, by construction.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use graphloop_core::{
    CancelToken, Checkpoint, EventKind, Graph, Interrupt, Invocation, NodeContext, NodeError, NodeErrorKind, Observer,
    RunError, RunEvent, State, StepProgress, Task, Update, UserContext,
};
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::Durability;
use crate::error::EngineError;
use crate::persister::{Commit, ProgressPersister, Record, Tick, TickSlot};
use crate::store::{CheckpointRecord, EventRecord, RunRecord, RunStatus};
use crate::supervisor::{RunEnded, Supervisor};

/// A live view of a run: its row as it stands, and the tasks running right now.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    /// The run's row (status, step, percent...), up to the moment.
    pub run: RunRecord,
    /// Labels of the tasks in flight (empty between steps and once finished).
    pub tasks: Vec<String>,
    /// Whether the run is held at a commit point, waiting for the persister (a slow or
    /// unreachable database, or a full buffer).
    pub waiting_for_commit: bool,
}

/// Asks a run for its snapshot. Answered even while a node is awaiting.
#[derive(Message)]
#[rtype(result = "RunSnapshot")]
pub(crate) struct GetSnapshot;

/// Cancels a run: drops its node futures at once.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CancelRun;

/// Asks a run to stop at its next step boundary, resumable (graceful shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain;

/// Makes the actor itself panic, outside any node: the fault the supervisor must notice.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct InjectPanic;

/// A health probe: answered at once, so the time to the answer is the run's loop lag
/// (how long a message waits before the run's thread gets to it).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Probe;

/// Starts the next step.
#[derive(Message)]
#[rtype(result = "()")]
struct Advance;

/// Sends what the last turn queued for the persister.
#[derive(Message)]
#[rtype(result = "()")]
struct SendOutbox;

/// A node attempt failed and will be retried (sent by the observer).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Retrying(RunEvent);

/// The handles the supervisor keeps to one run's actor, whatever its state type.
pub(crate) struct RunControl {
    pub(crate) snapshot: Recipient<GetSnapshot>,
    pub(crate) cancel: Recipient<CancelRun>,
    pub(crate) drain: Recipient<Drain>,
    pub(crate) inject_panic: Recipient<InjectPanic>,
    pub(crate) probe: Recipient<Probe>,
}

/// Everything a run's actor starts from.
pub(crate) struct RunSpec {
    pub(crate) record: RunRecord,
    pub(crate) supervisor: Addr<Supervisor>,
    pub(crate) persister: Addr<ProgressPersister>,
    /// Where to go on from, when the run is restarted.
    pub(crate) resume: Option<Resume>,
    /// Which of the run's actors this is (0, 1, 2... with each restart).
    pub(crate) incarnation: u64,
    /// When the actor last did something, in ms since `clock`'s start: the watchdog's view.
    pub(crate) activity: Arc<Activity>,
}

/// When a run's actor last showed a sign of life (an event or a progress tick).
#[derive(Debug)]
pub(crate) struct Activity {
    since: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    /// Held at a commit point: waiting for the store is not a stall.
    waiting: std::sync::atomic::AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            since: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            waiting: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn touch(&self) {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn set_waiting(&self, waiting: bool) {
        self.waiting.store(waiting, std::sync::atomic::Ordering::Relaxed);
        self.touch();
    }

    /// Whether the actor has shown no sign of life for longer than `limit`, and is not
    /// merely waiting for the store.
    pub(crate) fn stalled(&self, limit: Duration) -> bool {
        !self.waiting.load(std::sync::atomic::Ordering::Relaxed) && self.idle() > limit
    }

    /// Whether the actor is held at a commit point, waiting for the store.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long since the last sign of life.
    pub(crate) fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// Where a restarted run goes on from.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    /// The last committed checkpoint (`None`: start again from the input).
    pub(crate) checkpoint: Option<Checkpoint>,
    /// The run's last stored event: numbering goes on after it, progress never below it.
    pub(crate) last_seq: u64,
    pub(crate) last_percent: f64,
    /// Why the run had stopped.
    pub(crate) reason: String,
    /// The answer to the question the checkpoint's interrupted task asked.
    pub(crate) answer: Option<Value>,
}

/// In `Async` durability, how many step commits a run may have unanswered before it
/// waits: the persister answers a commit once its buffer has room, so this bounds what
/// one run can queue ahead of the buffer, while the answer's round trip overlaps the
/// next step.
const MAX_UNANSWERED_COMMITS: usize = 2;

/// A registered graph with its state type erased, so the supervisor can hold graphs
/// of any state type.
pub(crate) trait ErasedGraph: Send + Sync {
    fn name(&self) -> &str;
    fn version(&self) -> u32;
    /// Whether `input` is a valid state for the graph.
    fn check_input(&self, input: &Value) -> Result<(), String>;
    /// Starts a run's actor on `arbiter`.
    fn spawn(&self, arbiter: &ArbiterHandle, spec: RunSpec) -> RunControl;
}

impl<S: State> ErasedGraph for Graph<S> {
    fn name(&self) -> &str {
        Graph::name(self)
    }

    fn version(&self) -> u32 {
        Graph::version(self)
    }

    fn check_input(&self, input: &Value) -> Result<(), String> {
        S::deserialize(input).map(drop).map_err(|err| err.to_string())?;
        if input.is_object() {
            Ok(())
        } else {
            Err("the input must be a JSON object".into())
        }
    }

    fn spawn(&self, arbiter: &ArbiterHandle, spec: RunSpec) -> RunControl {
        let graph = self.clone();
        let addr = AnalysisActor::start_in_arbiter(arbiter, move |_| AnalysisActor::new(graph, spec));
        RunControl {
            snapshot: addr.clone().recipient(),
            cancel: addr.clone().recipient(),
            drain: addr.clone().recipient(),
            inject_panic: addr.clone().recipient(),
            probe: addr.recipient(),
        }
    }
}

/// Tells the supervisor how the actor ended, from `Drop`: it runs whether the actor
/// stopped normally, panicked outside a node, or lost its arbiter. (actix never catches
/// panics: tokio's `spawn_local` swallows them and drops the actor, so `stopped()` is no
/// reliable witness, but `Drop` is.)
struct EndNotice {
    run_id: Uuid,
    incarnation: u64,
    supervisor: Addr<Supervisor>,
    outcome: Option<RunStatus>,
    step: u64,
    percent: f64,
}

impl Drop for EndNotice {
    fn drop(&mut self) {
        let died = self.outcome.is_none().then(|| {
            if std::thread::panicking() {
                "the run's actor panicked outside a node".to_owned()
            } else {
                "the run's actor stopped unexpectedly (its arbiter stopped)".to_owned()
            }
        });
        self.supervisor.do_send(RunEnded {
            run_id: self.run_id,
            incarnation: self.incarnation,
            status: self.outcome,
            died,
            step: self.step,
            percent: self.percent,
        });
    }
}

struct StepInFlight {
    handles: Vec<SpawnHandle>,
    tasks: Vec<Task>,
    results: Vec<(Task, Update)>,
    progress: Arc<StepProgress>,
}

/// One run of one graph. See the module docs.
pub(crate) struct AnalysisActor<S: State> {
    graph: Graph<S>,
    record: RunRecord,
    user: Arc<UserContext>,
    checkpoint: Option<Checkpoint>,
    state: Option<Arc<S>>,
    step: Option<StepInFlight>,
    seq: u64,
    persister: Addr<ProgressPersister>,
    cancel: CancelToken,
    /// `Async` commits not yet answered by the persister.
    unanswered: usize,
    /// The next step waits for a commit's answer.
    waiting_for_commit: bool,
    draining: bool,
    /// Set once the run is ending: no further step starts.
    ending: bool,
    ticks: Arc<TickSlot>,
    resume: Option<Resume>,
    /// The answer for the task that asked a question, until its step completes.
    answer: Option<(Task, Value)>,
    incarnation: u64,
    activity: Arc<Activity>,
    /// Events and the row change queued for the persister (see `emit`).
    outbox: Vec<EventRecord>,
    row_update: Option<crate::store::RunUpdate>,
    send_scheduled: bool,
    span: tracing::Span,
    notice: EndNotice,
}

impl<S: State> AnalysisActor<S> {
    fn new(graph: Graph<S>, spec: RunSpec) -> Self {
        let record = spec.record;
        let span = tracing::info_span!(
            "run",
            run_id = %record.id,
            user_id = %record.user.user_id,
            graph = %record.graph,
        );
        Self {
            graph,
            user: Arc::new(record.user.clone()),
            notice: EndNotice {
                run_id: record.id,
                incarnation: spec.incarnation,
                supervisor: spec.supervisor,
                outcome: None,
                step: 0,
                percent: 0.0,
            },
            record,
            checkpoint: None,
            state: None,
            step: None,
            seq: 0,
            persister: spec.persister,
            cancel: CancelToken::new(),
            unanswered: 0,
            waiting_for_commit: false,
            draining: false,
            ending: false,
            ticks: Arc::new(TickSlot::default()),
            resume: spec.resume,
            answer: None,
            incarnation: spec.incarnation,
            activity: spec.activity,
            outbox: Vec::new(),
            row_update: None,
            send_scheduled: false,
            span,
        }
    }

    fn percent(&self) -> f64 {
        let in_step = self.step.as_ref().map_or(0.0, |s| s.progress.percent());
        self.checkpoint.as_ref().map_or(0.0, |c| c.percent).max(in_step)
    }

    fn step_number(&self) -> u64 {
        self.checkpoint.as_ref().map_or(0, |c| c.step)
    }

    /// Numbers one event and queues it for the persister. Events and row changes queued
    /// in one turn of the actor go out as one message, after the turn (or with the
    /// turn's commit): fewer cross-thread wake-ups per step, same order.
    fn emit(&mut self, step: u64, percent: f64, kind: EventKind, ctx: &mut Context<Self>) {
        self.seq += 1;
        // Progress never goes backwards on any path a client sees: no event is published
        // below a percent published before it, live ticks included.
        let percent = self.ticks.publish(percent);
        self.ticks.emitted(self.seq);
        let event = RunEvent { step, percent, kind };
        let record = EventRecord {
            run_id: self.record.id,
            seq: self.seq,
            user_id: self.user.user_id.clone(),
            at: crate::store::stored_now(),
            event,
        };
        self.outbox.push(record);
        self.activity.touch();
        self.schedule_send(ctx);
    }

    /// Queues the run row's current state for the persister.
    fn update(&mut self, ctx: &mut Context<Self>) {
        self.record.updated_at = crate::store::stored_now();
        self.notice.step = self.record.step;
        self.notice.percent = self.record.percent;
        self.row_update = Some(self.record.update());
        self.schedule_send(ctx);
    }

    fn schedule_send(&mut self, ctx: &mut Context<Self>) {
        if !self.send_scheduled {
            self.send_scheduled = true;
            ctx.notify(SendOutbox);
        }
    }

    fn take_outbox(&mut self) -> Record {
        Record {
            run_id: self.record.id,
            incarnation: self.incarnation,
            events: std::mem::take(&mut self.outbox),
            update: self.row_update.take(),
        }
    }

    /// Waits (without blocking the actor) for the persister to accept the commit, then
    /// continues with `then`.
    fn commit(
        &mut self,
        checkpoint: Option<Checkpoint>,
        durable: bool,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        let checkpoint = checkpoint.map(|checkpoint| CheckpointRecord {
            run_id: self.record.id,
            checkpoint,
            at: crate::store::stored_now(),
        });
        let record = self.take_outbox();
        let commit = self.persister.send(Commit { record, checkpoint, durable });
        ctx.spawn(commit.into_actor(self).map(move |result, act, ctx| match result {
            Ok(Ok(())) => then(act, ctx),
            Ok(Err(error)) => act.lost_persister(&error, ctx),
            Err(error) => act.lost_persister(&EngineError::from(error), ctx),
        }));
    }

    fn lost_persister(&mut self, error: &EngineError, ctx: &mut Context<Self>) {
        if let EngineError::Store(refused) = error {
            if !refused.is_transient() {
                // The store refused this run's data for good: the persister has recorded
                // the run as failed, with the store's reason.
                tracing::warn!(parent: &self.span, %refused, "the store refused the run's data; the run failed");
                self.notice.outcome = Some(RunStatus::Failed);
                return ctx.stop();
            }
        }
        // Otherwise only when the engine is going down: stop where we are; the last
        // checkpoint that made it is where the run resumes.
        tracing::warn!(parent: &self.span, %error, "the persister refused or is gone; stopping this actor");
        self.notice.outcome = Some(RunStatus::Interrupted);
        ctx.stop();
    }

    fn advance(&mut self, ctx: &mut Context<Self>) {
        if self.ending {
            return;
        }
        let (Some(checkpoint), Some(state)) = (&self.checkpoint, &self.state) else {
            return;
        };
        if checkpoint.is_complete() {
            return self.complete(ctx);
        }
        if self.draining {
            return self.interrupt(ctx);
        }
        let progress = Arc::new(StepProgress::new(&self.graph, checkpoint));
        let step = progress.step();
        let tasks = checkpoint.next.clone();
        let state = Arc::clone(state);
        let observer: Arc<dyn Observer> = Arc::new(RunObserver {
            run_id: self.record.id,
            activity: Arc::clone(&self.activity),
            progress: Arc::clone(&progress),
            ticks: Arc::clone(&self.ticks),
            persister: self.persister.clone(),
            retries: ctx.address().recipient(),
        });
        self.emit(
            step,
            progress.percent(),
            EventKind::StepStarted { tasks: tasks.iter().map(Task::label).collect() },
            ctx,
        );
        let mut handles = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let mut node_ctx = NodeContext::new(
                self.record.id,
                Arc::clone(&self.user),
                step,
                task.clone(),
                self.cancel.clone(),
                Arc::clone(&observer),
            );
            if let Some((asked, answer)) = &self.answer {
                if asked == task {
                    node_ctx = node_ctx.with_answer(answer.clone());
                }
            }
            let invocation = self.graph.invoke(Arc::clone(&state), node_ctx).instrument(self.span.clone());
            let task = task.clone();
            let started = std::time::Instant::now();
            handles.push(
                ctx.spawn(
                    invocation
                        .into_actor(self)
                        .map(move |done, act, ctx| act.task_done(task, started.elapsed(), done, ctx)),
                ),
            );
        }
        self.step = Some(StepInFlight { handles, results: Vec::with_capacity(tasks.len()), tasks, progress });
    }

    fn task_done(&mut self, task: Task, took: Duration, invocation: Invocation, ctx: &mut Context<Self>) {
        let Some(step) = self.step.as_mut() else {
            return;
        };
        crate::telemetry::task_finished(&self.record.graph, &task.node, took);
        let number = step.progress.step();
        match invocation.result {
            Ok(update) => {
                let percent = step.progress.complete(&task);
                step.results.push((task.clone(), update));
                let all_done = step.results.len() == step.tasks.len();
                self.emit(
                    number,
                    percent,
                    EventKind::NodeCompleted { task: task.label(), attempts: invocation.attempts },
                    ctx,
                );
                if all_done {
                    self.finish_step(ctx);
                }
            }
            Err(NodeError { kind: NodeErrorKind::Interrupt, payload, .. }) => {
                // A question for a person: checkpoint where we are and wait for the answer.
                let payload = payload.unwrap_or_default();
                self.drop_step(ctx);
                if let Some(checkpoint) = self.checkpoint.as_mut() {
                    checkpoint.interrupt = Some(Interrupt { task: task.clone(), payload: payload.clone() });
                }
                self.end(RunStatus::Waiting, Some(EventKind::RunWaiting { task: task.label(), payload }), ctx);
            }
            Err(error) => {
                let percent = step.progress.percent();
                let attempts = invocation.attempts;
                self.emit(
                    number,
                    percent,
                    EventKind::NodeFailed { task: task.label(), attempts, error: error.clone() },
                    ctx,
                );
                // Fail fast, as the reference executor does: the step's other tasks go.
                self.drop_step(ctx);
                self.fail(RunError::NodeFailed { node: task.node, step: number, attempts, error }, ctx);
            }
        }
    }

    fn drop_step(&mut self, ctx: &mut Context<Self>) {
        if let Some(step) = self.step.take() {
            for handle in step.handles {
                ctx.cancel_future(handle);
            }
        }
    }

    fn finish_step(&mut self, ctx: &mut Context<Self>) {
        let (Some(step), Some(checkpoint)) = (self.step.take(), self.checkpoint.as_mut()) else {
            return;
        };
        let number = step.progress.step();
        self.answer = None;
        checkpoint.percent = checkpoint.percent.max(step.progress.percent());
        let mut next = checkpoint.clone();
        match self.graph.apply(&mut next, step.results) {
            Ok(state) => {
                self.state = Some(Arc::new(state));
                *checkpoint = next;
            }
            Err(error) => return self.fail(error, ctx),
        }
        let percent = checkpoint.percent;
        let labels = checkpoint.next.iter().map(Task::label).collect();
        let complete = checkpoint.is_complete();
        let saved = checkpoint.clone();
        self.emit(number, percent, EventKind::StepCompleted { next: labels }, ctx);
        self.record.step = number;
        self.record.percent = percent.max(self.ticks.high_water());
        self.update(ctx);
        if complete {
            return self.complete(ctx);
        }
        match self.record.durability {
            Durability::Sync => {
                self.waiting_for_commit = true;
                self.activity.set_waiting(true);
                self.commit(Some(saved), true, ctx, |act, ctx| {
                    act.waiting_for_commit = false;
                    act.activity.set_waiting(false);
                    ctx.notify(Advance);
                });
            }
            // `Exit` keeps no checkpoint but the final one.
            durability @ (Durability::Async | Durability::Exit) => {
                let checkpoint = (durability == Durability::Async).then_some(saved);
                self.unanswered += 1;
                let go_on_now = self.unanswered < MAX_UNANSWERED_COMMITS;
                self.waiting_for_commit = !go_on_now;
                self.activity.set_waiting(!go_on_now);
                self.commit(checkpoint, false, ctx, move |act, ctx| {
                    act.unanswered -= 1;
                    if !go_on_now {
                        act.waiting_for_commit = false;
                        act.activity.set_waiting(false);
                        ctx.notify(Advance);
                    }
                });
                if go_on_now {
                    ctx.notify(Advance);
                }
            }
        }
    }

    /// Ends the run with `status`: emits `kind`, writes the final row and checkpoint,
    /// and stops once the persister has them.
    fn end(&mut self, status: RunStatus, kind: Option<EventKind>, ctx: &mut Context<Self>) {
        if self.ending {
            return;
        }
        self.ending = true;
        self.drop_step(ctx);
        let step = self.step_number();
        let percent = if status == RunStatus::Completed { 100.0 } else { self.percent() };
        if let Some(kind) = kind {
            self.emit(step, percent, kind, ctx);
        }
        self.record.status = status;
        self.record.percent = percent.max(self.ticks.high_water());
        if status.is_terminal() {
            self.record.finished_at = Some(crate::store::stored_now());
        }
        self.update(ctx);
        let checkpoint = self.checkpoint.clone();
        self.commit(checkpoint, true, ctx, move |act, ctx| {
            act.notice.outcome = Some(status);
            ctx.stop();
        });
    }

    fn complete(&mut self, ctx: &mut Context<Self>) {
        self.record.output = self.checkpoint.as_ref().map(|c| Value::Object(c.state.clone()));
        self.end(RunStatus::Completed, Some(EventKind::RunCompleted), ctx);
    }

    fn fail(&mut self, error: RunError, ctx: &mut Context<Self>) {
        tracing::info!(parent: &self.span, %error, "run failed");
        self.record.error = serde_json::to_value(&error).ok();
        self.end(RunStatus::Failed, Some(EventKind::RunFailed { error }), ctx);
    }

    fn interrupt(&mut self, ctx: &mut Context<Self>) {
        self.end(RunStatus::Interrupted, None, ctx);
    }
}

impl<S: State> Actor for AnalysisActor<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        let now = crate::store::stored_now();
        self.record.status = RunStatus::Running;
        self.record.started_at.get_or_insert(now);
        self.update(ctx);
        let resume = self.resume.take();
        let from_checkpoint = resume.as_ref().and_then(|r| r.checkpoint.clone());
        if let (Some(interrupt), Some(answer)) = (
            from_checkpoint.as_ref().and_then(|c| c.interrupt.as_ref()),
            resume.as_ref().and_then(|r| r.answer.as_ref()),
        ) {
            self.answer = Some((interrupt.task.clone(), answer.clone()));
        }
        match &resume {
            Some(resume) => {
                self.seq = resume.last_seq;
                let from_step = from_checkpoint.as_ref().map_or(0, |c| c.step);
                let kind = EventKind::RunResumed { reason: resume.reason.clone(), from_step };
                self.emit(from_step, resume.last_percent, kind, ctx);
            }
            None => self.emit(0, 0.0, EventKind::RunStarted, ctx),
        }
        let started = match from_checkpoint {
            Some(checkpoint) => self.graph.state(&checkpoint).map(|state| (checkpoint, state)),
            None => S::deserialize(&self.record.input)
                .map_err(|err| RunError::State { reason: format!("input: {err}") })
                .and_then(|input| Ok((self.graph.start(&input)?, input))),
        };
        match started {
            Ok((mut checkpoint, input)) => {
                if let Some(resume) = &resume {
                    // Progress never goes back, across restarts included.
                    checkpoint.percent = checkpoint.percent.max(resume.last_percent.min(99.0));
                }
                self.record.step = checkpoint.step;
                self.record.percent = self.record.percent.max(checkpoint.percent);
                self.checkpoint = Some(checkpoint);
                self.state = Some(Arc::new(input));
                ctx.notify(Advance);
            }
            Err(error) => self.fail(error, ctx),
        }
    }
}

impl<S: State> Handler<Advance> for AnalysisActor<S> {
    type Result = ();

    fn handle(&mut self, _: Advance, ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        self.advance(ctx);
    }
}

impl<S: State> Handler<SendOutbox> for AnalysisActor<S> {
    type Result = ();

    fn handle(&mut self, _: SendOutbox, _ctx: &mut Context<Self>) {
        self.send_scheduled = false;
        let record = self.take_outbox();
        if !record.events.is_empty() || record.update.is_some() {
            self.persister.do_send(record);
        }
    }
}

impl<S: State> Handler<GetSnapshot> for AnalysisActor<S> {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        let mut run = self.record.clone();
        run.percent = run.percent.max(self.percent()).max(self.ticks.high_water());
        let tasks = self.step.as_ref().map(|s| s.tasks.iter().map(Task::label).collect()).unwrap_or_default();
        MessageResult(RunSnapshot { run, tasks, waiting_for_commit: self.waiting_for_commit })
    }
}

impl<S: State> Handler<CancelRun> for AnalysisActor<S> {
    type Result = ();

    fn handle(&mut self, _: CancelRun, ctx: &mut Context<Self>) {
        let _entered = self.span.clone().entered();
        self.cancel.cancel();
        self.end(RunStatus::Cancelled, Some(EventKind::RunCancelled), ctx);
    }
}

impl<S: State> Handler<Drain> for AnalysisActor<S> {
    type Result = ();

    fn handle(&mut self, _: Drain, _ctx: &mut Context<Self>) {
        // The step in flight finishes and commits; `advance` then interrupts the run.
        self.draining = true;
    }
}

impl<S: State> Handler<Probe> for AnalysisActor<S> {
    type Result = ();

    fn handle(&mut self, _: Probe, _ctx: &mut Context<Self>) {}
}

impl<S: State> Handler<InjectPanic> for AnalysisActor<S> {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in the analysis actor of run {}", self.record.id);
    }
}

impl<S: State> Handler<Retrying> for AnalysisActor<S> {
    type Result = ();

    fn handle(&mut self, Retrying(event): Retrying, ctx: &mut Context<Self>) {
        if !self.ending {
            self.emit(event.step, event.percent, event.kind, ctx);
        }
    }
}

/// What nodes report while they run, turned into messages.
struct RunObserver {
    run_id: Uuid,
    activity: Arc<Activity>,
    progress: Arc<StepProgress>,
    ticks: Arc<TickSlot>,
    persister: Addr<ProgressPersister>,
    retries: Recipient<Retrying>,
}

impl Observer for RunObserver {
    fn node_progress(&self, task: &Task, fraction: f64, message: &str) {
        self.activity.touch();
        let percent = self.progress.update(task, fraction);
        let kind = EventKind::NodeProgress { task: task.label(), fraction, message: message.to_owned() };
        let event = RunEvent { step: self.progress.step(), percent, kind };
        // Coalesced: at most one tick per run waits in the persister's mailbox. The slot
        // raises the percent to what was published before and notes the last event
        // emitted, which the tick must not overtake.
        if self.ticks.put(event) {
            self.persister.do_send(Tick { run_id: self.run_id, slot: Arc::clone(&self.ticks) });
        }
    }

    fn node_retrying(&self, task: &Task, attempt: u32, error: &NodeError, delay: Duration) {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let kind = EventKind::NodeRetrying { task: task.label(), attempt, error: error.clone(), delay_ms };
        let event = RunEvent { step: self.progress.step(), percent: self.progress.percent(), kind };
        self.retries.do_send(Retrying(event));
    }
}
