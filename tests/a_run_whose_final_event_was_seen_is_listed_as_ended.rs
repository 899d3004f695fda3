//! Listing reads your writes: a run whose final event a subscriber (an SSE client) has
//! seen is listed as ended, although events reach subscribers once accepted, before the
//! persister has written them (found by the example service's end-to-end test: `GET
//! /runs` showed finished runs as `running`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{eight_nodes, Doc, TestDb};
use graphloop::{Engine, EngineConfig, EventKind, RunQuery, RunStatus, Streamed, UserContext};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_final_event_was_seen_is_listed_as_ended() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(eight_nodes()).unwrap();
    for _ in 0..10 {
        let run = engine.start_run("eight", &Doc::default(), UserContext::new("lister")).await.unwrap();
        let mut events = engine.subscribe(run, 1).await.unwrap();
        let mut last = None;
        while let Some(item) = events.next().await {
            if let Streamed::Event(record) = item {
                last = Some(record.event.kind);
            }
        }
        assert!(matches!(last, Some(EventKind::RunCompleted)));
        let listed = engine.list_runs(RunQuery::for_user("lister")).await.unwrap();
        let row = listed.iter().find(|r| r.id == run).expect("the run is listed");
        assert_eq!((row.status, row.percent), (RunStatus::Completed, 100.0));
    }
    engine.shutdown().await.unwrap();
    db.drop().await;
}
