//! Issue 4, points 2 and 3, on PostgreSQL: a run whose actor panics outside a node, or
//! stalls in a node that never yields, goes on from its last checkpoint and completes; a
//! run that keeps dying fails past its restart budget with every cause recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{log, stored_events, Doc, TestDb};
use graphloop::{
    Engine, EngineConfig, GraphBuilder, NodeError, Reducer, RestartPolicy, RunStatus, UserContext, END, START,
};
use tokio::sync::Semaphore;

fn policy(max_restarts: u32, stall_timeout: Option<Duration>) -> RestartPolicy {
    RestartPolicy {
        max_restarts,
        within: Duration::from_secs(3600),
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        stall_timeout,
    }
}

/// `first` (counted), then `wait`, which says it started and waits for a permit.
fn first_then_wait(firsts: Arc<AtomicUsize>, entered: Arc<Semaphore>, gate: Arc<Semaphore>) -> graphloop::Graph<Doc> {
    GraphBuilder::<Doc>::new("first-then-wait")
        .node("first", move |_s, _ctx| {
            firsts.fetch_add(1, Ordering::SeqCst);
            async move { Ok(log("first")) }
        })
        .node("wait", move |_s, _ctx| {
            let (entered, gate) = (Arc::clone(&entered), Arc::clone(&gate));
            async move {
                entered.add_permits(1);
                gate.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                Ok(log("wait"))
            }
        })
        .edge(START, "first")
        .edge("first", "wait")
        .edge("wait", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap()
}

async fn assert_gapless_and_monotone(db: &TestDb, run: uuid::Uuid) -> Vec<(i64, String, f64)> {
    let events = stored_events(db, run).await;
    assert_eq!(events.iter().map(|e| e.0).collect::<Vec<_>>(), (1..=events.len() as i64).collect::<Vec<_>>());
    assert!(events.windows(2).all(|w| w[0].2 <= w[1].2));
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_actor_panics_is_restarted_from_its_checkpoint_and_completes() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store()).restarts(policy(3, None))).await.unwrap();
    let (firsts, entered, gate) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    engine.register(first_then_wait(Arc::clone(&firsts), Arc::clone(&entered), Arc::clone(&gate))).unwrap();
    let run = engine.start_run("first-then-wait", &Doc::default(), UserContext::new("u")).await.unwrap();
    entered.acquire().await.unwrap().forget();
    assert!(engine.inject_actor_panic(run).await.unwrap());
    entered.acquire().await.unwrap().forget();
    gate.add_permits(1);
    assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    assert_eq!(firsts.load(Ordering::SeqCst), 1, "the committed step did not run again");
    engine.shutdown().await.unwrap();
    let events = assert_gapless_and_monotone(&db, run).await;
    assert_eq!(events.iter().filter(|e| e.1 == "run_resumed").count(), 1);
    assert_eq!(events.last().unwrap().1, "run_completed");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_keeps_dying_fails_past_its_budget_with_every_cause_recorded() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store()).restarts(policy(2, None))).await.unwrap();
    let (firsts, entered, gate) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    engine.register(first_then_wait(firsts, Arc::clone(&entered), gate)).unwrap();
    let run = engine.start_run("first-then-wait", &Doc::default(), UserContext::new("u")).await.unwrap();
    for _ in 0..3 {
        entered.acquire().await.unwrap().forget();
        assert!(engine.inject_actor_panic(run).await.unwrap());
    }
    assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Failed);
    engine.shutdown().await.unwrap();
    let events = assert_gapless_and_monotone(&db, run).await;
    assert_eq!(events.iter().filter(|e| e.1 == "run_resumed").count(), 2);
    assert_eq!(events.last().unwrap().1, "run_failed");
    let reasons = db
        .count(
            "SELECT count(*) FROM events WHERE run_id = $1 AND data->>'reason' LIKE '%panicked outside a node%'",
            &[&run],
        )
        .await;
    assert_eq!(reasons, 2, "each restart's cause is recorded");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stalled_by_a_node_that_never_yields_is_caught_by_the_watchdog_and_resumed() {
    let db = TestDb::new().await;
    let config = EngineConfig::new().store(db.store()).restarts(policy(3, Some(Duration::from_millis(200))));
    let engine = Engine::start(config).await.unwrap();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let executions = Arc::new(AtomicUsize::new(0));
    let x = Arc::clone(&executions);
    let graph = GraphBuilder::<Doc>::new("stalls")
        .node("first", |_s, _ctx| async move { Ok(log("first")) })
        .node("block", move |_s, _ctx| {
            let (executions, release) = (Arc::clone(&x), Arc::clone(&release_rx));
            async move {
                if executions.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Blocks its run's thread: no timeout, no progress, no yield.
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
    let run = engine.start_run("stalls", &Doc::default(), UserContext::new("u")).await.unwrap();
    assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    release_tx.send(()).unwrap();
    engine.wait_for_arbiters(0).await.unwrap();
    assert!(engine.shutdown().await.unwrap().complete);
    let events = assert_gapless_and_monotone(&db, run).await;
    let stalls = db
        .count("SELECT count(*) FROM events WHERE run_id = $1 AND kind = 'run_resumed' AND data->>'reason' LIKE 'stalled%'", &[&run])
        .await;
    assert_eq!(stalls, 1, "the stall is recorded");
    assert_eq!(events.last().unwrap().1, "run_completed");
    assert_eq!(executions.load(Ordering::SeqCst), 2);
    db.drop().await;
}
