//! Review findings, as regression tests: a NUL character in a run's data must not block
//! the store (PostgreSQL refuses NUL in text and jsonb), and a run recovered without its
//! graph fails with a final event numbered after its stored ones.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eight_nodes, log, stored_events, Doc, TestDb};
use graphloop::{Engine, EngineConfig, EngineError, GraphBuilder, NodeError, RunStatus, UserContext, END, START};
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_a_run_does_not_block_the_store() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(eight_nodes()).unwrap();
    // Input PostgreSQL cannot hold as given is refused before it is acknowledged, naming
    // the field: what is accepted always reads back.
    let awkward = Doc { log: vec!["text from a PDF\u{0}with a NUL".into()], ..Doc::default() };
    let refused = engine.start_run("eight", &awkward, UserContext::new("u")).await.unwrap_err();
    assert!(matches!(refused, EngineError::InvalidInput { .. }), "{refused:?}");
    assert!(refused.to_string().contains("input.log[0]"), "{refused}");
    let refused = engine.start_run("eight", &Doc::default(), UserContext::new("pdf\u{0}user")).await.unwrap_err();
    assert!(refused.to_string().contains("user"), "{refused}");
    assert_eq!(db.count("SELECT count(*) FROM runs", &[]).await, 0, "nothing refused is stored");

    // A NUL a node produces (text extracted from a PDF) is stored as U+FFFD: it never
    // blocks the store for this run or any other.
    let pdf = GraphBuilder::<Doc>::new("pdf")
        .node("extract", |_s, _ctx| async move { Ok(log("text from a PDF\u{0}with a NUL")) })
        .edge(START, "extract")
        .edge("extract", END)
        .compile()
        .unwrap();
    engine.register(pdf).unwrap();
    let nul_run = engine.start_run("pdf", &Doc::default(), UserContext::new("u")).await.unwrap();
    let other = engine.start_run("eight", &Doc::default(), UserContext::new("other")).await.unwrap();
    for run in [nul_run, other] {
        assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    }
    let report = engine.shutdown().await.unwrap().persister.unwrap();
    assert_eq!(report.write_failures, 0);
    let output: serde_json::Value =
        db.client.query_one("SELECT output FROM runs WHERE id = $1", &[&nul_run]).await.unwrap().get(0);
    assert_eq!(output["log"][0], "text from a PDF\u{FFFD}with a NUL");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_recovered_without_its_graph_fails_after_its_last_event() {
    let db = TestDb::new().await;
    let config = || EngineConfig::new().store(db.store()).shutdown_timeout(Duration::from_millis(20));
    let entered = Arc::new(Semaphore::new(0));
    let e = Arc::clone(&entered);
    let graph = GraphBuilder::<Doc>::new("stuck")
        .node("first", |_s, _ctx| async move { Ok(log("first")) })
        .node("hang", move |_s, _ctx| {
            let entered = Arc::clone(&e);
            async move {
                entered.add_permits(1);
                std::future::pending::<()>().await;
                Err::<graphloop::Update, _>(NodeError::fatal("never"))
            }
        })
        .edge(START, "first")
        .edge("first", "hang")
        .edge("hang", END)
        .compile()
        .unwrap();
    let engine = Engine::start(config()).await.unwrap();
    engine.register(graph).unwrap();
    let run = engine.start_run("stuck", &Doc::default(), UserContext::new("u")).await.unwrap();
    entered.acquire().await.unwrap().forget();
    engine.shutdown().await.unwrap();
    let before = stored_events(&db, run).await.len();
    assert!(before > 0);

    // The next process does not know the graph.
    let engine = Engine::start(config()).await.unwrap();
    assert_eq!(engine.recover().await.unwrap(), Vec::<uuid::Uuid>::new());
    let done = engine.wait(run).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    assert!(done.error.unwrap().to_string().contains("stuck"));
    engine.shutdown().await.unwrap();
    let events = stored_events(&db, run).await;
    assert_eq!(events.len(), before + 1);
    assert_eq!(events.iter().map(|e| e.0).collect::<Vec<_>>(), (1..=events.len() as i64).collect::<Vec<_>>());
    assert_eq!(events.last().unwrap().1, "run_failed");
    db.drop().await;
}
