//! Issue 4, point 6: checkpoints of finished runs are pruned as the retention says, and
//! each run's storage is reported.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{log, Doc, TestDb};
use graphloop::{
    Engine, EngineConfig, GraphBuilder, NodeError, PersisterConfig, Reducer, Retention, UserContext, END, START,
};
use tokio::sync::Semaphore;

fn chain() -> graphloop::Graph<Doc> {
    GraphBuilder::<Doc>::new("four")
        .node("a", |_s, _ctx| async move { Ok(log("a")) })
        .node("b", |_s, _ctx| async move { Ok(log("b")) })
        .node("c", |_s, _ctx| async move { Ok(log("c")) })
        .node("d", |_s, _ctx| async move { Ok(log("d")) })
        .edge(START, "a")
        .edge("a", "b")
        .edge("b", "c")
        .edge("c", "d")
        .edge("d", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap()
}

/// `a`, then a node that says it has started and waits for a permit of `gate`.
fn gated(gate: Arc<Semaphore>, entered: Arc<Semaphore>) -> graphloop::Graph<Doc> {
    GraphBuilder::<Doc>::new("gated")
        .node("a", |_s, _ctx| async move { Ok(log("a")) })
        .node("wait", move |_s, _ctx| {
            let (gate, entered) = (Arc::clone(&gate), Arc::clone(&entered));
            async move {
                entered.add_permits(1);
                gate.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                Ok(log("wait"))
            }
        })
        .edge(START, "a")
        .edge("a", "wait")
        .edge("wait", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap()
}

async fn run_three(db: &TestDb, retention: Retention) -> (Engine, Vec<uuid::Uuid>) {
    let config = EngineConfig::new().store(db.store()).persister(PersisterConfig::default().retention(retention));
    let engine = Engine::start(config).await.unwrap();
    engine.register(chain()).unwrap();
    let mut runs = Vec::new();
    for i in 0..3 {
        let run = engine.start_run("four", &Doc::default(), UserContext::new(format!("u{i}"))).await.unwrap();
        engine.wait(run).await.unwrap();
        runs.push(run);
    }
    (engine, runs)
}

async fn checkpoint_steps(db: &TestDb, run: uuid::Uuid) -> Vec<i64> {
    db.client
        .query("SELECT step FROM checkpoints WHERE run_id = $1 ORDER BY step", &[&run])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_finished_run_keeps_only_its_last_checkpoint() {
    let db = TestDb::new().await;
    let (engine, runs) = run_three(&db, Retention::default()).await;
    for run in &runs {
        assert_eq!(checkpoint_steps(&db, *run).await, [4]);
        let storage = engine.storage(*run).await.unwrap();
        assert_eq!(storage.checkpoints, 1);
        assert!(storage.checkpoint_bytes > 0);
        assert_eq!(storage.events as i64, db.count("SELECT count(*) FROM events WHERE run_id = $1", &[run]).await);
        assert!(storage.event_bytes > 0);
    }
    assert_eq!(engine.prune().await.unwrap(), 0, "no TTL: nothing more to prune");
    engine.shutdown().await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_all_keeps_every_step() {
    let db = TestDb::new().await;
    let (engine, runs) = run_three(&db, Retention::KeepAll).await;
    for run in &runs {
        assert_eq!(checkpoint_steps(&db, *run).await, [1, 2, 3, 4]);
        assert_eq!(engine.storage(*run).await.unwrap().checkpoints, 4);
    }
    engine.shutdown().await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_their_ttl_finished_runs_lose_their_checkpoints_and_running_ones_keep_them() {
    let db = TestDb::new().await;
    let (engine, finished) = run_three(&db, Retention::DeleteAfter(Duration::ZERO)).await;
    let (gate, entered) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    engine.register(gated(gate, Arc::clone(&entered))).unwrap();
    let running = engine.start_run("gated", &Doc::default(), UserContext::new("r")).await.unwrap();
    // Its second step has started, so its first is committed (Sync).
    entered.acquire().await.unwrap().forget();
    assert_eq!(checkpoint_steps(&db, running).await, [1]);

    let deleted = engine.prune().await.unwrap();
    assert_eq!(deleted, 3 * 4, "all checkpoints of the three finished runs");
    for run in &finished {
        assert!(checkpoint_steps(&db, *run).await.is_empty());
    }
    assert_eq!(checkpoint_steps(&db, running).await, [1], "a running run keeps its checkpoints");
    engine.cancel(running).await.unwrap();
    engine.shutdown().await.unwrap();
    db.drop().await;
}
