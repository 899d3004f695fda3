//! The health monitor names what is wrong: a run whose node blocks its thread (while
//! other runs go on), a run that emitted nothing for too long, a store that fails every
//! write; and the engine is healthy again once the trouble is over.
//!
//! Thresholds are chosen so the outcome never depends on the machine's speed: a run
//! blocked until the test releases it is blocked by any `blocked_after`; a run that
//! awaits forever is stalled by a `stalled_after` of zero; a store that fails every write
//! fails the one write `store_failures(1)` needs. Healthy is checked only once no run is
//! live (`wait`, then `wait_for_arbiters(0)`), so no probe can be slow by chance.
//!
//! `Engine::health` answers the monitor's latest report, so after a change a test waits
//! for the first report that shows it (the monitor probes every 20 ms here), with a
//! deadline that turns "never" into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use graphloop_core::{GraphBuilder, Update, UserContext, END, START};
use graphloop_runtime::{
    Engine, EngineConfig, Health, HealthConfig, HealthStatus, MemoryStoreFactory, PersisterConfig, RunStatus,
};
use graphloop_test_support::{Faults, FaultyStoreFactory};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc as async_mpsc, Notify};
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Count {
    n: u64,
}

/// How often the monitor probes in these tests.
const INTERVAL: Duration = Duration::from_millis(20);

/// The first report that `shows` what the test waits for; the deadline only turns "never"
/// into a failure.
async fn report_showing(engine: &Engine, shows: impl Fn(&Health) -> bool) -> Health {
    tokio::time::timeout(Duration::from_secs(60), engine.health_when(shows))
        .await
        .expect("no report showed it within the deadline")
        .unwrap()
}

/// Probe thresholds that cannot make a test's outcome depend on timing: nothing here is
/// slow or stalled unless the test holds it so.
fn patient() -> HealthConfig {
    HealthConfig::new()
        .interval(INTERVAL)
        .blocked_after(Duration::from_millis(100))
        .slow_lag(Duration::from_secs(3_600))
        .stalled_after(Duration::from_secs(3_600))
        .store_stalled_after(Duration::from_secs(3_600))
}

fn one_step(name: &str) -> graphloop_core::Graph<Count> {
    GraphBuilder::<Count>::new(name)
        .node("add", |s: Arc<Count>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
        .edge(START, "add")
        .edge("add", END)
        .compile()
        .unwrap()
}

/// Waits until every run has ended and its arbiter is gone: then the supervisor holds no
/// live run, and health probes none.
async fn no_live_runs(engine: &Engine, runs: &[Uuid]) {
    for run in runs {
        assert_eq!(engine.wait(*run).await.unwrap().status, RunStatus::Completed);
    }
    engine.wait_for_arbiters(0).await.unwrap();
}

#[tokio::test]
async fn a_fresh_engine_is_healthy_with_nothing_to_report() {
    let engine = Engine::start(EngineConfig::new().health(patient())).await.unwrap();
    let health = engine.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{:?}", health.reasons);
    assert!(health.reasons.is_empty() && health.recommendations.is_empty());
    assert_eq!((health.running, health.queued, health.blocked_runs), (0, 0, 0));
    assert!(health.store.answered);
    assert_eq!((health.store.store.as_str(), health.store.buffered), ("memory", 0));
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["status"], "healthy");
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_run_blocking_its_thread_is_named_while_other_runs_complete() {
    let engine = Engine::start(EngineConfig::new().health(patient())).await.unwrap();
    let (entered_tx, mut entered_rx) = async_mpsc::unbounded_channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let blocker = GraphBuilder::<Count>::new("blocker")
        .node("block", move |_s: Arc<Count>, _ctx| {
            let entered = entered_tx.clone();
            let release = Arc::clone(&release_rx);
            async move {
                let _ = entered.send(());
                // A thread block, not an await: the run's whole arbiter stops here.
                let _ = release.lock().unwrap().recv();
                Ok(Update::new().set("n", 1))
            }
        })
        .edge(START, "block")
        .edge("block", END)
        .compile()
        .unwrap();
    engine.register(blocker).unwrap();
    engine.register(one_step("quick")).unwrap();

    let blocked = engine.start_run("blocker", &Count::default(), UserContext::new("u1")).await.unwrap();
    entered_rx.recv().await.unwrap();

    // Isolation: another run, on its own arbiter, completes meanwhile.
    let quick = engine.start_run("quick", &Count::default(), UserContext::new("u2")).await.unwrap();
    assert_eq!(engine.wait(quick).await.unwrap().status, RunStatus::Completed);
    // Its arbiter is gone too: the blocked run is the only live one.
    engine.wait_for_arbiters(1).await.unwrap();

    let health = report_showing(&engine, |h| h.blocked_runs > 0 && h.running == 1).await;
    assert_eq!(health.status, HealthStatus::Degraded, "{:?}", health.reasons);
    assert_eq!(health.blocked_runs, 1);
    let named: Vec<&String> = health.reasons.iter().filter(|r| r.contains(&blocked.to_string())).collect();
    assert_eq!(named.len(), 1, "{:?}", health.reasons);
    assert!(named[0].contains("blocking its thread") && named[0].contains("spawn_blocking"), "{named:?}");
    assert!(health.recommendations.iter().any(|r| r.contains("spawn_blocking")));
    assert_eq!((health.runs[0].run_id, health.runs[0].blocked, health.runs[0].lag), (blocked, true, None));

    release_tx.send(()).unwrap();
    no_live_runs(&engine, &[blocked]).await;
    let health = report_showing(&engine, |h| h.running == 0).await;
    assert_eq!(health.status, HealthStatus::Healthy, "{:?}", health.reasons);
    assert!(health.reasons.is_empty());
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_run_that_emits_nothing_is_reported_stalled() {
    // Any silence is a stall; no probe of a run that answers counts as blocked.
    let health = patient().stalled_after(Duration::ZERO).blocked_after(Duration::from_secs(3_600));
    let engine = Engine::start(EngineConfig::new().health(health)).await.unwrap();
    let (entered_tx, mut entered_rx) = async_mpsc::unbounded_channel::<()>();
    let go_on = Arc::new(Notify::new());
    let waits = {
        let go_on = Arc::clone(&go_on);
        GraphBuilder::<Count>::new("waits")
            .node("wait", move |_s: Arc<Count>, _ctx| {
                let entered = entered_tx.clone();
                let go_on = Arc::clone(&go_on);
                async move {
                    let _ = entered.send(());
                    // An await that does not answer: the thread is free, the run silent.
                    go_on.notified().await;
                    Ok(Update::new().set("n", 1))
                }
            })
            .edge(START, "wait")
            .edge("wait", END)
            .compile()
            .unwrap()
    };
    engine.register(waits).unwrap();
    let run = engine.start_run("waits", &Count::default(), UserContext::new("u")).await.unwrap();
    entered_rx.recv().await.unwrap();

    let health = report_showing(&engine, |h| h.stalled_runs > 0).await;
    assert_eq!(health.status, HealthStatus::Degraded, "{:?}", health.reasons);
    assert_eq!(health.stalled_runs, 1);
    assert!(
        health.reasons.iter().any(|r| r.contains(&format!("run {run} has emitted nothing"))),
        "{:?}",
        health.reasons
    );

    go_on.notify_one();
    no_live_runs(&engine, &[run]).await;
    let health = report_showing(&engine, |h| h.running == 0).await;
    assert_eq!(health.status, HealthStatus::Healthy, "{:?}", health.reasons);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_store_failing_every_write_makes_the_engine_unhealthy_until_it_is_back() {
    let faults = Faults::new();
    let config = EngineConfig::new()
        .store(FaultyStoreFactory::new(MemoryStoreFactory, Arc::clone(&faults)))
        .persister(PersisterConfig::default().retry(Duration::from_millis(1), Duration::from_millis(20)))
        .health(patient().store_failures(1));
    let engine = Engine::start(config).await.unwrap();
    engine.register(one_step("quick")).unwrap();
    faults.fail_writes(usize::MAX);
    // A start is answered once its row is stored: with every write failing, it waits.
    let starting = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.start_run("quick", &Count::default(), UserContext::new("u")).await })
    };

    // Wait for the event the report is about: a write has failed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while engine.stats().await.unwrap().persister.consecutive_failures == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no write failed within the deadline");
        tokio::task::yield_now().await;
    }

    let health = report_showing(&engine, |h| h.store.consecutive_failures > 0).await;
    assert_eq!(health.status, HealthStatus::Unhealthy, "{:?}", health.reasons);
    let store_reason = health.reasons.iter().find(|r| r.contains("store") && r.contains("database"));
    let store_reason = store_reason.unwrap_or_else(|| panic!("no reason names the store: {:?}", health.reasons));
    assert!(store_reason.contains("connection refused"), "{store_reason}");
    assert!(health.recommendations.iter().any(|r| r.contains("database")), "{:?}", health.recommendations);
    assert!(health.store.consecutive_failures >= 1 && health.store.buffered > 0, "{:?}", health.store);
    assert!(health.store.unwritten_for.is_some() && health.store.last_error.is_some());

    assert!(!starting.is_finished(), "a start was answered before its row was stored");
    faults.fail_writes(0);
    let run = starting.await.unwrap().unwrap();
    no_live_runs(&engine, &[run]).await;
    let health = report_showing(&engine, |h| h.running == 0 && h.store.consecutive_failures == 0).await;
    assert_eq!(health.status, HealthStatus::Healthy, "{:?}", health.reasons);
    assert_eq!((health.store.consecutive_failures, health.store.buffered), (0, 0));
    assert!(health.store.last_write_at.is_some() && health.store.unwritten_for.is_none());
    engine.shutdown().await.unwrap();
}
