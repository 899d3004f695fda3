//! Issue 11, item 5: a unit the database refuses for good (here a CHECK constraint that
//! one run's checkpoint violates) fails that run with the database's reason; the batch it
//! was written in is split until the unit is found, every other row commits, and nothing
//! is retried in a loop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{eight_nodes, stored_events, Doc, TestDb};
use graphloop::{Engine, EngineConfig, RunStatus, UserContext};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_unit_among_a_hundred_runs_fails_its_run_and_the_rest_commit() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store()).max_running(100)).await.unwrap();
    engine.register(eight_nodes()).unwrap();
    // The tables exist once the engine has started (it migrates them): the database now
    // refuses any checkpoint whose state has n = 999, for good (SQLSTATE 23514).
    db.client
        .batch_execute(
            "ALTER TABLE checkpoints ADD CONSTRAINT refuses_999 CHECK ((data->'state'->>'n') IS DISTINCT FROM '999')",
        )
        .await
        .unwrap();

    let starts = (0..100u64).map(|i| {
        let engine = engine.clone();
        let n = if i == 37 { 999 } else { i };
        async move {
            let input = Doc { n, ..Doc::default() };
            (n, engine.start_run("eight", &input, UserContext::new(format!("u{}", i % 7))).await.unwrap())
        }
    });
    let runs = futures_util::future::join_all(starts).await;
    let mut failed = Vec::new();
    for (n, run) in &runs {
        let done = engine.wait(*run).await.unwrap();
        match done.status {
            RunStatus::Completed => assert_ne!(*n, 999),
            RunStatus::Failed => failed.push((*n, done)),
            other => panic!("run {run} ended {other}"),
        }
    }
    assert_eq!(failed.len(), 1, "exactly the refused run fails");
    let (n, refused) = &failed[0];
    assert_eq!(*n, 999);
    let reason = refused.error.as_ref().unwrap().to_string();
    assert!(reason.contains("refuses_999"), "the database's reason is recorded: {reason}");

    let stats = engine.stats().await.unwrap().persister;
    assert_eq!(stats.refused_runs, 1);
    // Splitting a batch in halves takes a few writes, not a retry loop.
    assert!(stats.write_failures <= 20, "{} failed writes", stats.write_failures);
    let report = engine.shutdown().await.unwrap();
    assert!(report.complete);

    // Every run's events are stored gapless; each ends with its final event; the 99 kept
    // their final checkpoint.
    for (n, run) in &runs {
        let events = stored_events(&db, *run).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "run {run}: gapless");
        let last = &events.last().unwrap().1;
        let expected = if *n == 999 { "run_failed" } else { "run_completed" };
        assert_eq!(last, expected, "run {run}");
    }
    let checkpoints = db.count("SELECT count(DISTINCT run_id) FROM checkpoints", &[]).await;
    assert_eq!(checkpoints, 99, "the 99 completed runs keep their final checkpoint, the refused one has none");
    db.drop().await;
}
