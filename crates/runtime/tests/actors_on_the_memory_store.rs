//! The actor runtime on the embedded in-memory store: fast tests of the Supervisor,
//! AnalysisActor and ProgressPersister. The PostgreSQL path is tested in the workspace's
//! `tests/` against a real server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use graphloop_core::{
    EventKind, Executor, GraphBuilder, NodeContext, NodeError, Reducer, RetryPolicy, Update, UserContext, END, START,
};
use graphloop_runtime::{Engine, EngineConfig, EngineError, RestartPolicy, RunQuery, RunStatus, Streamed};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Doc {
    n: u64,
    log: Vec<String>,
    parts: Vec<u64>,
}

fn log(entry: &str) -> Update {
    Update::new().set("log", [entry])
}

/// An 8-node graph with a conditional edge and a dynamic fan-out.
fn eight_nodes() -> graphloop_core::Graph<Doc> {
    GraphBuilder::<Doc>::new("eight")
        .node("ingest", |_s, _ctx| async move { Ok(log("ingest")) })
        .node("split", |s: Arc<Doc>, _ctx| async move { Ok(log("split").set("n", s.n % 5 + 2)) })
        .node("part", |_s, ctx: NodeContext| async move { Ok(Update::new().set("parts", [ctx.input::<u64>()? * 10])) })
        .node("sum", |s: Arc<Doc>, _ctx| async move { Ok(log("sum").set("n", s.parts.iter().sum::<u64>())) })
        .node("check", |_s, _ctx| async move { Ok(log("check")) })
        .node("deep", |_s, _ctx| async move { Ok(log("deep")) })
        .node("light", |_s, _ctx| async move { Ok(log("light")) })
        .node("report", |_s, _ctx| async move { Ok(log("report")) })
        .edge(START, "ingest")
        .edge("ingest", "split")
        .fan_out("split", "part", |s: &Doc| (0..s.n).collect::<Vec<_>>())
        .edge("part", "sum")
        .edge("sum", "check")
        .conditional_edge("check", ["deep", "light"], |s: &Doc| if s.n > 30 { "deep" } else { "light" })
        .edge("deep", "report")
        .edge("light", "report")
        .edge("report", END)
        .reducer("log", Reducer::append())
        .reducer("parts", Reducer::append())
        .compile()
        .unwrap()
}

async fn engine(config: EngineConfig) -> Engine {
    Engine::start(config).await.unwrap()
}

#[tokio::test]
async fn runs_end_in_the_same_state_as_the_reference_executor_with_gapless_events() {
    let engine = engine(EngineConfig::new()).await;
    let graph = eight_nodes();
    engine.register(graph.clone()).unwrap();
    let mut runs = Vec::new();
    for n in 0..20u64 {
        let input = Doc { n, ..Doc::default() };
        runs.push((engine.start_run("eight", &input, UserContext::new("u")).await.unwrap(), input));
    }
    for (run, input) in runs {
        let done = engine.wait(run).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed);
        let reference = Executor::new(&graph).run(input).await.unwrap();
        let output: Doc = serde_json::from_value(done.output.unwrap()).unwrap();
        assert_eq!(output, reference);

        let events = engine.events(run, 1, 10_000).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>(), "gapless");
        assert!(events.windows(2).all(|w| w[0].event.percent <= w[1].event.percent), "monotone");
        assert_eq!(events.last().map(|e| (&e.event.kind, e.event.percent)), Some((&EventKind::RunCompleted, 100.0)));
        assert!(events.iter().all(|e| e.user_id == "u"));
    }
    engine.shutdown().await.unwrap();
}

/// A graph whose only node adds a permit to `entered`, then waits for a permit of
/// `gate`, counting drops of its future.
fn gated(gate: Arc<Semaphore>, entered: Arc<Semaphore>, drops: Arc<AtomicUsize>) -> graphloop_core::Graph<Doc> {
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    GraphBuilder::<Doc>::new("gated")
        .node("wait", move |_s, _ctx| {
            let (gate, entered, guard) = (Arc::clone(&gate), Arc::clone(&entered), Guard(Arc::clone(&drops)));
            async move {
                let _guard = guard;
                entered.add_permits(1);
                gate.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                Ok(log("released"))
            }
        })
        .edge(START, "wait")
        .edge("wait", END)
        .compile()
        .unwrap()
}

#[tokio::test]
async fn status_is_answered_while_a_node_awaits_and_cancel_drops_it() {
    let engine = engine(EngineConfig::new()).await;
    let (gate, entered, drops) =
        (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    engine.register(gated(Arc::clone(&gate), Arc::clone(&entered), Arc::clone(&drops))).unwrap();
    let run = engine.start_run("gated", &Doc::default(), UserContext::new("u")).await.unwrap();
    entered.acquire().await.unwrap().forget();

    let status = engine.status(run).await.unwrap();
    assert_eq!(status.run.status, RunStatus::Running);
    assert_eq!(status.tasks, ["wait"]);
    assert_eq!(drops.load(Ordering::SeqCst), 0);

    engine.cancel(run).await.unwrap();
    let done = engine.wait(run).await.unwrap();
    assert_eq!(done.status, RunStatus::Cancelled);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the node future was dropped");
    engine.wait_for_arbiters(0).await.unwrap();
    let err = engine.cancel(run).await.unwrap_err();
    assert_eq!(err, EngineError::RunFinished { run_id: run, status: RunStatus::Cancelled });
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panicking_node_fails_only_its_own_run() {
    let engine = engine(EngineConfig::new()).await;
    let graph = GraphBuilder::<Doc>::new("maybe-panic")
        .node("work", |s: Arc<Doc>, _ctx| async move {
            if s.n == 7 {
                panic!("clause table index out of range");
            }
            Ok(log("ok"))
        })
        .edge(START, "work")
        .edge("work", END)
        .retry("work", RetryPolicy::new().max_attempts(2).initial_interval(Duration::from_millis(1)))
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    let mut runs = Vec::new();
    for n in 0..50 {
        runs.push((
            n,
            engine.start_run("maybe-panic", &Doc { n, ..Doc::default() }, UserContext::new("u")).await.unwrap(),
        ));
    }
    for (n, run) in runs {
        let done = engine.wait(run).await.unwrap();
        if n == 7 {
            assert_eq!(done.status, RunStatus::Failed);
            let error = done.error.unwrap().to_string();
            assert!(error.contains("work") && error.contains("clause table index out of range"), "{error}");
            assert!(error.contains("\"attempts\":2"), "{error}");
        } else {
            assert_eq!(done.status, RunStatus::Completed, "run {n}");
        }
    }
    engine.wait_for_arbiters(0).await.unwrap();
    assert_eq!(engine.stats().await.unwrap().arbiters, 0);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn admission_never_runs_more_than_the_limit_and_rejects_beyond_the_queue() {
    let engine = engine(EngineConfig::new().max_running(4).queue_capacity(36)).await;
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (r, p, g) = (Arc::clone(&running), Arc::clone(&peak), Arc::clone(&gate));
    let graph = GraphBuilder::<Doc>::new("counted")
        .node("work", move |_s, _ctx| {
            let (running, peak, gate) = (Arc::clone(&r), Arc::clone(&p), Arc::clone(&g));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                gate.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(log("done"))
            }
        })
        .edge(START, "work")
        .edge("work", END)
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    let mut runs = Vec::new();
    for _ in 0..40 {
        runs.push(engine.start_run("counted", &Doc::default(), UserContext::new("u")).await.unwrap());
    }
    let stats = engine.stats().await.unwrap().supervisor;
    assert_eq!((stats.running, stats.queued), (4, 36));
    let rejected = engine.start_run("counted", &Doc::default(), UserContext::new("u")).await.unwrap_err();
    assert_eq!(rejected, EngineError::Rejected { running: 4, queued: 36, capacity: 36 });

    gate.add_permits(40);
    for run in runs {
        assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    }
    assert!(peak.load(Ordering::SeqCst) <= 4, "peak {}", peak.load(Ordering::SeqCst));
    assert_eq!(engine.stats().await.unwrap().supervisor.peak_running, 4);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_per_user_limit_lets_other_users_pass_the_queue() {
    let engine = engine(EngineConfig::new().max_running(4).max_running_per_user(Some(1))).await;
    let (gate, entered, drops) =
        (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    engine.register(gated(Arc::clone(&gate), Arc::clone(&entered), drops)).unwrap();
    let first = engine.start_run("gated", &Doc::default(), UserContext::new("alice")).await.unwrap();
    let second = engine.start_run("gated", &Doc::default(), UserContext::new("alice")).await.unwrap();
    let bob = engine.start_run("gated", &Doc::default(), UserContext::new("bob")).await.unwrap();
    entered.acquire().await.unwrap().forget();
    entered.acquire().await.unwrap().forget();
    assert_eq!(engine.status(first).await.unwrap().run.status, RunStatus::Running);
    assert_eq!(engine.status(second).await.unwrap().run.status, RunStatus::Queued);
    assert_eq!(engine.status(bob).await.unwrap().run.status, RunStatus::Running);
    gate.add_permits(3);
    for run in [first, second, bob] {
        assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    }
    engine.shutdown().await.unwrap();
}

/// `first`, then a node that waits at `gate`; counts how often `first` ran.
fn first_then_gated(
    gate: Arc<Semaphore>,
    entered: Arc<Semaphore>,
    firsts: Arc<AtomicUsize>,
) -> graphloop_core::Graph<Doc> {
    GraphBuilder::<Doc>::new("first-then-gated")
        .node("first", move |_s, _ctx| {
            firsts.fetch_add(1, Ordering::SeqCst);
            async move { Ok(log("first")) }
        })
        .node("wait", move |_s, _ctx| {
            let (gate, entered) = (Arc::clone(&gate), Arc::clone(&entered));
            async move {
                entered.add_permits(1);
                gate.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                Ok(log("released"))
            }
        })
        .edge(START, "first")
        .edge("first", "wait")
        .edge("wait", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap()
}

fn quick_restarts(max_restarts: u32) -> EngineConfig {
    EngineConfig::new().restarts(RestartPolicy {
        max_restarts,
        within: Duration::from_secs(3600),
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        stall_timeout: None,
    })
}

#[tokio::test]
async fn an_actor_that_panics_outside_a_node_is_restarted_from_its_checkpoint_and_completes() {
    let engine = engine(quick_restarts(3)).await;
    let (gate, entered, firsts) =
        (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    engine.register(first_then_gated(Arc::clone(&gate), Arc::clone(&entered), Arc::clone(&firsts))).unwrap();
    let run = engine.start_run("first-then-gated", &Doc::default(), UserContext::new("u")).await.unwrap();
    entered.acquire().await.unwrap().forget();
    assert!(engine.inject_actor_panic(run).await.unwrap());
    // The restarted actor goes on from the checkpoint after `first`: it enters `wait` again.
    entered.acquire().await.unwrap().forget();
    gate.add_permits(1);
    let done = engine.wait(run).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    let output: Doc = serde_json::from_value(done.output.unwrap()).unwrap();
    assert_eq!(output.log, ["first", "released"]);
    assert_eq!(firsts.load(Ordering::SeqCst), 1, "a committed step never runs again");

    let events = engine.events(run, 1, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=events.len() as u64).collect::<Vec<_>>());
    assert!(events.windows(2).all(|w| w[0].event.percent <= w[1].event.percent), "monotone across the restart");
    let resumed: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event.kind {
            EventKind::RunResumed { reason, from_step } => Some((reason.clone(), *from_step)),
            _ => None,
        })
        .collect();
    assert_eq!(resumed.len(), 1);
    assert!(resumed[0].0.contains("panicked outside a node"), "{resumed:?}");
    assert_eq!(resumed[0].1, 1);
    let stats = engine.stats().await.unwrap().supervisor;
    assert_eq!((stats.died, stats.restarted), (1, 1));
    engine.wait_for_arbiters(0).await.unwrap();
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_run_that_keeps_dying_fails_past_its_restart_budget_with_every_cause_recorded() {
    let engine = engine(quick_restarts(2)).await;
    let (gate, entered, firsts) =
        (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    engine.register(first_then_gated(gate, Arc::clone(&entered), firsts)).unwrap();
    let run = engine.start_run("first-then-gated", &Doc::default(), UserContext::new("u")).await.unwrap();
    for _ in 0..3 {
        entered.acquire().await.unwrap().forget();
        assert!(engine.inject_actor_panic(run).await.unwrap());
    }
    let done = engine.wait(run).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    let error = done.error.unwrap().to_string();
    assert!(error.contains("3 times") && error.contains("restart budget"), "{error}");

    let events = engine.events(run, 1, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=events.len() as u64).collect::<Vec<_>>());
    let resumed = events.iter().filter(|e| matches!(e.event.kind, EventKind::RunResumed { .. })).count();
    assert_eq!(resumed, 2, "each restart is recorded with its cause");
    assert!(matches!(events.last().map(|e| &e.event.kind), Some(EventKind::RunFailed { .. })));
    let stats = engine.stats().await.unwrap().supervisor;
    assert_eq!((stats.died, stats.restarted), (3, 2));
    engine.wait_for_arbiters(0).await.unwrap();
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_subscriber_from_an_offset_sees_every_later_event_once_then_live() {
    let engine = engine(EngineConfig::new()).await;
    let gate = Arc::new(Notify::new());
    let g = Arc::clone(&gate);
    let graph = GraphBuilder::<Doc>::new("two-steps")
        .node("first", |_s, _ctx| async move { Ok(log("first")) })
        .node("second", move |_s, ctx: NodeContext| {
            let gate = Arc::clone(&g);
            async move {
                ctx.progress(0.5, "half");
                gate.notified().await;
                Ok(log("second"))
            }
        })
        .edge(START, "first")
        .edge("first", "second")
        .edge("second", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    let run = engine.start_run("two-steps", &Doc::default(), UserContext::new("u")).await.unwrap();
    let mut from_start = engine.subscribe(run, 1).await.unwrap();
    // Wait until the second step has started, then subscribe mid-run from seq 3.
    loop {
        match from_start.next().await {
            Some(Streamed::Event(e)) if matches!(&e.event.kind, EventKind::StepStarted { tasks } if tasks == &["second"]) => {
                break
            }
            Some(_) => {}
            None => panic!("stream ended early"),
        }
    }
    let mut mid = engine.subscribe(run, 3).await.unwrap();
    gate.notify_one();
    let mut seen = Vec::new();
    while let Some(item) = mid.next().await {
        if let Streamed::Event(e) = item {
            seen.push(e.seq);
        }
    }
    let all = engine.events(run, 1, 100).await.unwrap();
    assert_eq!(seen, all.iter().map(|e| e.seq).filter(|&s| s >= 3).collect::<Vec<_>>());
    assert_eq!(seen.first(), Some(&3));
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let engine = engine(EngineConfig::new()).await;
    engine.register(eight_nodes()).unwrap();
    assert!(matches!(engine.register(eight_nodes()), Err(EngineError::DuplicateGraph { .. })));
    let unknown = engine.start_run("nine", &Doc::default(), UserContext::new("u")).await.unwrap_err();
    assert_eq!(unknown, EngineError::UnknownGraph { name: "nine".into(), version: None });
    let invalid =
        engine.start_run("eight", &serde_json::json!({"n": "many"}), UserContext::new("u")).await.unwrap_err();
    assert!(matches!(&invalid, EngineError::InvalidInput { graph, .. } if graph == "eight"), "{invalid}");
    let nobody = uuid::Uuid::now_v7();
    assert_eq!(engine.status(nobody).await.unwrap_err(), EngineError::UnknownRun(nobody));
    assert_eq!(engine.cancel(nobody).await.unwrap_err(), EngineError::UnknownRun(nobody));
    assert!(engine.subscribe(nobody, 1).await.is_err());
    engine.shutdown().await.unwrap();
    let late = engine.start_run("eight", &Doc::default(), UserContext::new("u")).await.unwrap_err();
    assert_eq!(late, EngineError::ShuttingDown);
}

#[tokio::test]
async fn runs_are_listed_per_user_newest_first() {
    let engine = engine(EngineConfig::new()).await;
    engine.register(eight_nodes()).unwrap();
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(engine.start_run("eight", &Doc::default(), UserContext::new("alice")).await.unwrap());
    }
    let bob = engine.start_run("eight", &Doc::default(), UserContext::new("bob")).await.unwrap();
    for run in alice.iter().chain([&bob]) {
        engine.wait(*run).await.unwrap();
    }
    let listed: Vec<_> =
        engine.list_runs(RunQuery::for_user("alice")).await.unwrap().into_iter().map(|r| r.id).collect();
    alice.reverse();
    assert_eq!(listed, alice);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn retries_are_recorded_as_events() {
    let engine = engine(EngineConfig::new()).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&attempts);
    let graph = GraphBuilder::<Doc>::new("flaky")
        .node("flaky", move |_s, _ctx| {
            let attempts = Arc::clone(&a);
            async move {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(NodeError::retryable("rate limited"))
                } else {
                    Ok(log("ok"))
                }
            }
        })
        .edge(START, "flaky")
        .edge("flaky", END)
        .retry("flaky", RetryPolicy::new().initial_interval(Duration::from_millis(1)).jitter(false))
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    let run = engine.start_run("flaky", &Doc::default(), UserContext::new("u")).await.unwrap();
    assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    let retries = engine
        .events(run, 1, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.event.kind, EventKind::NodeRetrying { .. }))
        .count();
    assert_eq!(retries, 2);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_queued_run_that_is_cancelled_ends_with_a_final_event() {
    let engine = engine(EngineConfig::new().max_running(1)).await;
    let (gate, entered, drops) =
        (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    engine.register(gated(Arc::clone(&gate), Arc::clone(&entered), drops)).unwrap();
    let first = engine.start_run("gated", &Doc::default(), UserContext::new("u")).await.unwrap();
    let queued = engine.start_run("gated", &Doc::default(), UserContext::new("u")).await.unwrap();
    entered.acquire().await.unwrap().forget();
    assert_eq!(engine.status(queued).await.unwrap().run.status, RunStatus::Queued);
    engine.cancel(queued).await.unwrap();
    assert_eq!(engine.wait(queued).await.unwrap().status, RunStatus::Cancelled);
    let events = engine.events(queued, 1, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| (e.seq, e.event.kind.name())).collect::<Vec<_>>(), [(1, "run_cancelled")]);
    gate.add_permits(1);
    assert_eq!(engine.wait(first).await.unwrap().status, RunStatus::Completed);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscribing_past_the_end_of_a_finished_run_ends_at_once() {
    let engine = engine(EngineConfig::new()).await;
    engine.register(eight_nodes()).unwrap();
    let run = engine.start_run("eight", &Doc::default(), UserContext::new("u")).await.unwrap();
    engine.wait(run).await.unwrap();
    let last = engine.events(run, 1, 1_000).await.unwrap().len() as u64;
    // A client reconnecting with the id of the last event it saw.
    let mut stream = engine.subscribe(run, last + 1).await.unwrap();
    assert_eq!(stream.next().await, None);
    assert_eq!(engine.stats().await.unwrap().persister.subscribers, 0);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_does_not_wait_forever_for_a_node_that_blocks_its_thread() {
    let config = EngineConfig::new().shutdown_timeout(Duration::from_millis(50)).finish_timeout(Duration::from_secs(1));
    let engine = engine(config).await;
    let entered = Arc::new(Semaphore::new(0));
    let e = Arc::clone(&entered);
    let graph = GraphBuilder::<Doc>::new("blocking")
        .node("block", move |_s, _ctx| {
            let entered = Arc::clone(&e);
            async move {
                entered.add_permits(1);
                // A node that never yields: its run's thread cannot stop.
                std::thread::sleep(Duration::from_secs(3_600));
                Ok(log("never"))
            }
        })
        .edge(START, "block")
        .edge("block", END)
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    engine.start_run("blocking", &Doc::default(), UserContext::new("u")).await.unwrap();
    entered.acquire().await.unwrap().forget();
    let report = engine.shutdown().await.unwrap();
    assert!(!report.complete);
    assert_eq!(report.arbiters_left, 1);
    let persister = report.persister.unwrap();
    assert_eq!(persister.events_written, persister.events_accepted, "what was accepted is written");
}

#[tokio::test]
async fn the_watchdog_restarts_a_run_stalled_by_a_node_that_never_yields() {
    let policy = RestartPolicy {
        max_restarts: 3,
        within: Duration::from_secs(3600),
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        stall_timeout: Some(Duration::from_millis(200)),
    };
    let engine = engine(EngineConfig::new().restarts(policy)).await;
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let (entered, executions) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let (e, x) = (Arc::clone(&entered), Arc::clone(&executions));
    let graph = GraphBuilder::<Doc>::new("stalls-once")
        .node("first", |_s, _ctx| async move { Ok(log("first")) })
        .node("block", move |_s, _ctx| {
            let (entered, executions, release) = (Arc::clone(&e), Arc::clone(&x), Arc::clone(&release_rx));
            async move {
                entered.add_permits(1);
                if executions.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Never yields: blocks its run's thread until the test lets it go.
                    let _ = release.lock().unwrap().recv();
                }
                Ok(log("block"))
            }
        })
        .edge(START, "first")
        .edge("first", "block")
        .edge("block", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    let run = engine.start_run("stalls-once", &Doc::default(), UserContext::new("u")).await.unwrap();
    let done = engine.wait(run).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    let output: Doc = serde_json::from_value(done.output.unwrap()).unwrap();
    assert_eq!(output.log, ["first", "block"], "the restarted run went on from its checkpoint");
    assert_eq!(executions.load(Ordering::SeqCst), 2);
    let stats = engine.stats().await.unwrap().supervisor;
    assert_eq!((stats.stalled, stats.restarted), (1, 1));

    // Let the abandoned actor wake: its writes are refused, and its thread ends.
    release_tx.send(()).unwrap();
    engine.wait_for_arbiters(0).await.unwrap();
    let events = engine.events(run, 1, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=events.len() as u64).collect::<Vec<_>>());
    let stall = events.iter().find_map(|e| match &e.event.kind {
        EventKind::RunResumed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(stall.is_some_and(|reason| reason.contains("stalled")), "the stall is recorded");
    assert_eq!(events.last().map(|e| &e.event.kind), Some(&EventKind::RunCompleted));
    let report = engine.shutdown().await.unwrap();
    assert!(report.complete);
    let persister = report.persister.unwrap();
    assert_eq!(persister.events_written, persister.events_accepted);
}

#[tokio::test]
async fn after_a_drain_finished_runs_are_still_answered_and_new_ones_refused() {
    let (gate, entered, drops) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)), Arc::default());
    let engine = engine(EngineConfig::new().shutdown_timeout(Duration::from_millis(20))).await;
    engine.register(eight_nodes()).unwrap();
    engine.register(gated(gate, Arc::clone(&entered), drops)).unwrap();
    let done = engine.start_run("eight", &Doc::default(), UserContext::new("u")).await.unwrap();
    let mut events = engine.subscribe(done, 1).await.unwrap();
    let mut next_seq = 1;
    while let Some(item) = events.next().await {
        if let Streamed::Event(record) = item {
            next_seq = record.seq + 1;
        }
    }
    let stuck = engine.start_run("gated", &Doc::default(), UserContext::new("u")).await.unwrap();
    entered.acquire().await.unwrap().forget();

    assert!(engine.drain().await.unwrap(), "the drain completes");
    // The stuck run was stopped at its last checkpoint; the finished one is answered in full,
    // and `wait_from` does not need the events already seen.
    assert_eq!(engine.status(stuck).await.unwrap().run.status, RunStatus::Interrupted);
    let finished = engine.wait_from(done, next_seq).await.unwrap();
    assert_eq!(finished.status, RunStatus::Completed);
    assert!(finished.output.is_some());
    assert!(matches!(
        engine.start_run("eight", &Doc::default(), UserContext::new("u")).await,
        Err(EngineError::ShuttingDown)
    ));
    assert!(engine.shutdown().await.unwrap().complete);
}

#[tokio::test]
async fn an_idempotency_key_starts_one_run_per_user() {
    use graphloop_runtime::RunOptions;
    let engine = engine(EngineConfig::new()).await;
    engine.register(eight_nodes()).unwrap();
    let keyed = || RunOptions::new().idempotency_key("order-17");
    let first = engine.submit("eight", &Doc::default(), UserContext::new("alice"), keyed()).await.unwrap();
    // A retry while the first is still unwritten, and one after it has ended.
    let again = engine.submit("eight", &Doc::default(), UserContext::new("alice"), keyed()).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(again.id, first.id);
    engine.wait(first.id).await.unwrap();
    let later = engine.start_run_with("eight", &Doc::default(), UserContext::new("alice"), keyed()).await.unwrap();
    assert_eq!(later, first.id);
    // The key is Alice's: Bob's same key is another run; no key, another run each time.
    let bobs = engine.submit("eight", &Doc::default(), UserContext::new("bob"), keyed()).await.unwrap();
    assert!(bobs.created && bobs.id != first.id);
    let plain = engine.start_run("eight", &Doc::default(), UserContext::new("alice")).await.unwrap();
    assert_ne!(plain, first.id);
    engine.wait(plain).await.unwrap();
    let alices = engine.list_runs(RunQuery::for_user("alice")).await.unwrap();
    assert_eq!(alices.len(), 2, "one keyed run and one plain run for alice");
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancelling_a_run_that_has_ended_says_how_it_ended_even_right_after_wait() {
    let engine = engine(EngineConfig::new()).await;
    engine.register(eight_nodes()).unwrap();
    for _ in 0..20 {
        let run = engine.start_run("eight", &Doc::default(), UserContext::new("u")).await.unwrap();
        assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
        // The supervisor may not have heard of the end yet: the answer is the same.
        match engine.cancel(run).await {
            Err(EngineError::RunFinished { status, .. }) => assert_eq!(status, RunStatus::Completed),
            other => panic!("cancelling a completed run: {other:?}"),
        }
    }
    engine.shutdown().await.unwrap();
}
