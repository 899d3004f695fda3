//! Issue 3, point 6: a graceful shutdown with runs in flight writes every event the
//! persister accepted, and leaves every unfinished run resumable (`interrupted`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{log, stored_events, Doc, TestDb};
use graphloop::{Engine, EngineConfig, EventKind, GraphBuilder, Reducer, Streamed, UserContext, END, START};

fn chain() -> graphloop::Graph<Doc> {
    let mut builder = GraphBuilder::<Doc>::new("chain").reducer("log", Reducer::append());
    for i in 0..6 {
        builder = builder.node(format!("n{i}"), move |_s, _ctx| async move {
            // Simulated work, so that runs are caught mid-flight.
            tokio::time::sleep(Duration::from_millis(3)).await;
            Ok(log(&format!("n{i}")))
        });
    }
    builder = builder.edge(START, "n0").edge("n5", END);
    for i in 1..6 {
        builder = builder.edge(format!("n{}", i - 1), format!("n{i}"));
    }
    builder.compile().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_with_runs_in_flight_stores_every_accepted_event() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(chain()).unwrap();
    let mut runs = Vec::new();
    for i in 0..40 {
        runs.push(engine.start_run("chain", &Doc::default(), UserContext::new(format!("u{i}"))).await.unwrap());
    }
    // Shut down once the last run is under way.
    let mut events = engine.subscribe(runs[39], 1).await.unwrap();
    while let Some(item) = events.next().await {
        if matches!(item, Streamed::Event(ref e) if matches!(e.event.kind, EventKind::StepCompleted { .. })) {
            break;
        }
    }
    let report = engine.shutdown().await.unwrap();

    let persister = report.persister.unwrap();
    assert!(persister.events_accepted > 0);
    assert_eq!(persister.events_written, persister.events_accepted);
    assert_eq!(persister.buffered, 0, "nothing left unwritten");
    assert_eq!(db.count("SELECT count(*) FROM events", &[]).await as u64, persister.events_accepted);
    let unfinished = db.count("SELECT count(*) FROM runs WHERE status NOT IN ('completed', 'interrupted')", &[]).await;
    assert_eq!(unfinished, 0, "every run either completed or stopped resumable");
    let interrupted = db.count("SELECT count(*) FROM runs WHERE status = 'interrupted'", &[]).await;
    assert!(interrupted > 0, "some runs were in flight at shutdown");
    // An interrupted run's last checkpoint is at the step its row reports.
    let mismatched = db
        .count(
            "SELECT count(*) FROM runs r WHERE r.status = 'interrupted'
                AND r.step <> (SELECT coalesce(max(c.step), 0) FROM checkpoints c WHERE c.run_id = r.id)",
            &[],
        )
        .await;
    assert_eq!(mismatched, 0);
    for run in runs {
        let seqs: Vec<i64> = stored_events(&db, run).await.iter().map(|e| e.0).collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    }
    assert_eq!(
        engine.start_run("chain", &Doc::default(), UserContext::new("late")).await.unwrap_err(),
        graphloop::EngineError::ShuttingDown
    );

    // The next start resumes every interrupted run from its checkpoint.
    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(chain()).unwrap();
    let resumed = engine.recover().await.unwrap();
    assert_eq!(resumed.len() as i64, interrupted);
    for run in resumed {
        assert_eq!(engine.wait(run).await.unwrap().status, graphloop::RunStatus::Completed);
    }
    engine.shutdown().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM runs WHERE status <> 'completed'", &[]).await, 0);
    let gaps = db
        .count(
            "SELECT count(*) FROM (SELECT run_id, max(seq) AS m, count(*) AS c FROM events GROUP BY run_id) e WHERE m <> c",
            &[],
        )
        .await;
    assert_eq!(gaps, 0, "gapless across the restart");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stuck_past_the_shutdown_timeout_is_stopped_and_left_interrupted() {
    let db = TestDb::new().await;
    let config = EngineConfig::new().store(db.store()).shutdown_timeout(Duration::from_millis(50));
    let engine = Engine::start(config).await.unwrap();
    let entered = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let e = std::sync::Arc::clone(&entered);
    let graph = GraphBuilder::<Doc>::new("stuck")
        .node("first", |_s, _ctx| async move { Ok(log("first")) })
        .node("hang", move |_s, _ctx| {
            let entered = std::sync::Arc::clone(&e);
            async move {
                entered.add_permits(1);
                std::future::pending::<()>().await;
                Ok(log("never"))
            }
        })
        .edge(START, "first")
        .edge("first", "hang")
        .edge("hang", END)
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    let run = engine.start_run("stuck", &Doc::default(), UserContext::new("u")).await.unwrap();
    entered.acquire().await.unwrap().forget();
    let report = engine.shutdown().await.unwrap();
    let persister = report.persister.unwrap();
    assert_eq!(persister.events_written, persister.events_accepted);
    assert_eq!(persister.buffered, 0, "nothing left unwritten");
    let row = db.client.query_one("SELECT status, step FROM runs WHERE id = $1", &[&run]).await.unwrap();
    if row.get::<_, String>(0) != "interrupted" {
        eprintln!("DEBUG {:?} {:?}", persister, stored_events(&db, run).await);
    }
    assert_eq!((row.get::<_, String>(0).as_str(), row.get::<_, i64>(1)), ("interrupted", 1));
    assert_eq!(db.count("SELECT count(*) FROM checkpoints WHERE run_id = $1 AND step = 1", &[&run]).await, 1);
    db.drop().await;
}
