//! Issue 3, point 1: the failure graphloop exists to prevent, and its absence.
//!
//! A deadpool-postgres connection is driven by a task on the loop that created it. Share
//! the pool with other arbiters, stop the creating one, and every query in flight on
//! those connections fails with `connection closed` (LangGraph + Celery's "Future
//! attached to a different loop", Rust edition). Through the engine, where only the
//! ProgressPersister's arbiter ever touches the pool, stopping run arbiters mid-flight
//! costs no database error and no event.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::Arbiter;
use common::{database_url, log, stored_events, Doc, TestDb};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use graphloop::{Engine, EngineConfig, GraphBuilder, NodeError, RestartPolicy, RunStatus, UserContext, END, START};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_postgres::NoTls;

const SHARED_CONNECTIONS: usize = 3;

#[test]
fn the_problem_a_pool_shared_across_arbiters_breaks_when_its_creator_stops() {
    let system = actix_rt::System::new();
    let outcomes: Vec<Result<(), String>> = system.block_on(async {
        // The pool and its connections are created on `creator`: their driver tasks run
        // on its loop.
        let creator = Arbiter::new();
        let (pool_tx, pool_rx) = oneshot::channel();
        creator.spawn(async move {
            let config: tokio_postgres::Config = database_url().parse().unwrap();
            let manager =
                Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
            let pool = Pool::builder(manager).max_size(SHARED_CONNECTIONS).runtime(Runtime::Tokio1).build().unwrap();
            let mut warm = Vec::new();
            for _ in 0..SHARED_CONNECTIONS {
                warm.push(pool.get().await.expect("PostgreSQL must be reachable: `just db-up`"));
            }
            drop(warm);
            let _ = pool_tx.send(pool);
        });
        let pool: Pool = pool_rx.await.unwrap();

        // Other arbiters borrow those connections for long queries.
        let (started_tx, mut started_rx) = mpsc::unbounded_channel::<()>();
        let (result_tx, mut result_rx) = mpsc::unbounded_channel::<Result<(), String>>();
        let workers: Vec<Arbiter> = (0..SHARED_CONNECTIONS).map(|_| Arbiter::new()).collect();
        for worker in &workers {
            let (pool, started, results) = (pool.clone(), started_tx.clone(), result_tx.clone());
            worker.spawn(async move {
                let client = pool.get().await.unwrap();
                let query = client.simple_query("SELECT pg_sleep(30)");
                let _ = started.send(());
                let _ = results.send(query.await.map(drop).map_err(|e| e.to_string()));
            });
        }
        for _ in 0..SHARED_CONNECTIONS {
            started_rx.recv().await.unwrap();
        }
        // Stop the loop that created the connections, mid-query.
        creator.stop();
        let mut outcomes = Vec::new();
        for _ in 0..SHARED_CONNECTIONS {
            outcomes.push(result_rx.recv().await.unwrap());
        }
        for worker in workers {
            worker.stop();
        }
        outcomes
    });
    assert_eq!(outcomes.len(), SHARED_CONNECTIONS);
    for outcome in outcomes {
        let error = outcome.expect_err("a query on a connection whose loop stopped cannot succeed");
        assert!(error.contains("closed"), "expected `connection closed`, got: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fix_stopping_run_arbiters_mid_flight_costs_no_database_error_and_no_event() {
    let db = TestDb::new().await;
    // Actors that die are not restarted here: this test is about the pool, not restarts.
    let no_restarts = RestartPolicy { max_restarts: 0, ..RestartPolicy::default() };
    let engine = Engine::start(EngineConfig::new().store(db.store()).restarts(no_restarts)).await.unwrap();
    let (gate, entered) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let (g, e) = (Arc::clone(&gate), Arc::clone(&entered));
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&attempts);
    let graph = GraphBuilder::<Doc>::new("gated")
        .node("prepare", |_s, _ctx| async move { Ok(log("prepare")) })
        .node("wait", move |_s, _ctx| {
            let (gate, entered, attempts) = (Arc::clone(&g), Arc::clone(&e), Arc::clone(&a));
            async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                entered.add_permits(1);
                gate.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                Ok(log("wait"))
            }
        })
        .node("finish", |_s, _ctx| async move { Ok(log("finish")) })
        .edge(START, "prepare")
        .edge("prepare", "wait")
        .edge("wait", "finish")
        .edge("finish", END)
        .reducer("log", graphloop::Reducer::append())
        .compile()
        .unwrap();
    engine.register(graph).unwrap();

    let mut runs = Vec::new();
    for i in 0..30 {
        runs.push(engine.start_run("gated", &Doc::default(), UserContext::new(format!("u{}", i % 3))).await.unwrap());
    }
    entered.acquire_many(30).await.unwrap().forget();
    // Every run is mid-node. Stop a third of the arbiters by cancelling, kill a third of
    // the actors outright, and let the rest finish, all while the persister writes.
    for run in &runs[..10] {
        engine.cancel(*run).await.unwrap();
    }
    for run in &runs[10..20] {
        assert!(engine.inject_actor_panic(*run).await.unwrap());
    }
    // Cancel and panic are messages: let those 20 runs end before the gate opens, so that
    // none of their nodes takes a permit meant for the others.
    for run in &runs[..20] {
        engine.wait(*run).await.unwrap();
    }
    gate.add_permits(10);
    let mut statuses = Vec::new();
    for run in &runs {
        statuses.push(engine.wait(*run).await.unwrap().status);
    }
    assert_eq!(&statuses[..10], &[RunStatus::Cancelled; 10]);
    assert_eq!(&statuses[10..20], &[RunStatus::Failed; 10]);
    assert_eq!(&statuses[20..], &[RunStatus::Completed; 10]);

    engine.wait_for_arbiters(0).await.unwrap();
    let report = engine.shutdown().await.unwrap();
    let persister = report.persister.unwrap();
    assert_eq!(persister.write_failures, 0, "no database error: {:?}", persister.last_error);
    assert_eq!(persister.events_written, persister.events_accepted);
    let stored = db.count("SELECT count(*) FROM events", &[]).await;
    assert_eq!(stored as u64, persister.events_accepted, "every accepted event is in PostgreSQL");
    for run in &runs {
        let events = stored_events(&db, *run).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
        let last = events.last().unwrap().1.as_str();
        assert!(["run_cancelled", "run_failed", "run_completed"].contains(&last), "{last}");
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 30);
    db.drop().await;
}
