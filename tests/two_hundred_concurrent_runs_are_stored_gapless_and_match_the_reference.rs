//! Issue 3, point 2: 200 concurrent runs of an 8-node graph (one conditional edge, one
//! fan-out) through the engine on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{eight_nodes, stored_events, Doc, TestDb};
use graphloop::{Engine, EngineConfig, Executor, RunStatus, UserContext};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_runs_are_stored_gapless_and_match_the_reference() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store()).max_running(200)).await.unwrap();
    let graph = eight_nodes();
    engine.register(graph.clone()).unwrap();

    let mut runs = Vec::new();
    for n in 0..200u64 {
        let input = Doc { n, ..Doc::default() };
        let run = engine.start_run("eight", &input, UserContext::new(format!("user-{}", n % 7))).await.unwrap();
        runs.push((run, input));
    }
    for (run, _) in &runs {
        engine.wait(*run).await.unwrap();
    }
    engine.shutdown().await.unwrap();

    for (run, input) in runs {
        let row = db.client.query_one("SELECT status, output FROM runs WHERE id = $1", &[&run]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), RunStatus::Completed.as_str());
        let output: Doc = serde_json::from_value(row.get(1)).unwrap();
        assert_eq!(output, Executor::new(&graph).run(input).await.unwrap(), "run {run}");

        let events = stored_events(&db, run).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "run {run}: seq without gaps");
        assert!(events.windows(2).all(|w| w[0].2 <= w[1].2), "run {run}: percent never decreases");
        let last = events.last().unwrap();
        assert_eq!((last.1.as_str(), last.2), ("run_completed", 100.0));
        assert!(events[..events.len() - 1].iter().all(|e| e.2 < 100.0));
    }
    db.drop().await;
}
