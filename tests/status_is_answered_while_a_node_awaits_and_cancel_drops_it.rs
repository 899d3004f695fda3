//! On PostgreSQL: a run whose node waits for a permit that never comes still answers
//! `status` (its actor is not blocked by the awaiting node), and `cancel` ends it: the
//! node's future is dropped, the run is stored `cancelled` with `run_cancelled` as its
//! last event, and its arbiter is stopped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{stored_events, Doc, TestDb};
use graphloop::{
    Engine, EngineConfig, EngineError, GraphBuilder, NodeError, RunStatus, Update, UserContext, END, START,
};
use tokio::sync::Semaphore;

/// Counts the drops of the node's future (it owns one of these).
struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// How long an answer may take before the test calls it "never": a deadline that turns
/// a blocked actor into a failure instead of a hung test, not a timing assertion.
const NEVER: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_answered_while_a_node_awaits_and_cancel_drops_it() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    // `gate` never gets a permit: the node can only end by being dropped.
    let (gate, entered, drops) =
        (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let (g, e, d) = (Arc::clone(&gate), Arc::clone(&entered), Arc::clone(&drops));
    let graph = GraphBuilder::<Doc>::new("never-released")
        .node("wait", move |_s, _ctx| {
            let (gate, entered, guard) = (Arc::clone(&g), Arc::clone(&e), DropGuard(Arc::clone(&d)));
            async move {
                let _guard = guard;
                entered.add_permits(1);
                gate.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                Ok(Update::new().set("log", ["released"]))
            }
        })
        .edge(START, "wait")
        .edge("wait", END)
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    let run = engine.start_run("never-released", &Doc::default(), UserContext::new("dora")).await.unwrap();
    entered.acquire().await.unwrap().forget();

    // The node is awaiting: the actor still answers, several times over.
    for _ in 0..3 {
        let status = tokio::time::timeout(NEVER, engine.status(run))
            .await
            .expect("status is answered while the node awaits")
            .unwrap();
        assert_eq!(status.run.id, run);
        assert_eq!(status.run.status, RunStatus::Running);
        assert_eq!(status.run.user.user_id, "dora");
        assert_eq!(status.tasks, ["wait"]);
        assert!(status.run.percent < 100.0, "{}", status.run.percent);
    }
    assert_eq!(drops.load(Ordering::SeqCst), 0, "the node is still awaiting");
    let stats = engine.stats().await.unwrap();
    assert_eq!((stats.supervisor.running, stats.arbiters), (1, 1));

    engine.cancel(run).await.unwrap();
    let done = tokio::time::timeout(NEVER, engine.wait(run)).await.expect("the cancelled run ends").unwrap();
    assert_eq!(done.status, RunStatus::Cancelled);
    assert!(done.finished_at.is_some());
    assert_eq!(done.output, None);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the node's future was dropped, once");
    assert_eq!(entered.available_permits(), 0, "the node never started again");
    engine.wait_for_arbiters(0).await.unwrap();
    let stats = engine.stats().await.unwrap();
    assert_eq!((stats.arbiters, stats.supervisor.running, stats.supervisor.died), (0, 0, 0));
    let again = engine.cancel(run).await.unwrap_err();
    assert_eq!(again, EngineError::RunFinished { run_id: run, status: RunStatus::Cancelled });
    let after = engine.status(run).await.unwrap();
    assert_eq!((after.run.status, after.tasks.len()), (RunStatus::Cancelled, 0));
    engine.shutdown().await.unwrap();

    let row = db
        .client
        .query_one("SELECT status, finished_at IS NOT NULL, output FROM runs WHERE id = $1", &[&run])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "cancelled");
    assert!(row.get::<_, bool>(1), "finished_at is set");
    assert_eq!(row.get::<_, Option<serde_json::Value>>(2), None);
    let events = stored_events(&db, run).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "seq without gaps");
    let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds, ["run_started", "step_started", "run_cancelled"]);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped exactly once, shutdown included");
    db.drop().await;
}
