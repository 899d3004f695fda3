//! Issue 11, item 6: reads never wait on writes. With the store holding every write
//! (a run waits at its commit), listing and inspecting still answer at once, from what is
//! committed plus the changes accepted since; with the store unreachable for reads, they
//! fail as unavailable instead of hanging.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use graphloop_core::{GraphBuilder, Update, UserContext, END, START};
use graphloop_runtime::{Engine, EngineConfig, EngineError, MemoryStoreFactory, RunQuery, RunStatus, StoreError};
use graphloop_test_support::{Faults, FaultyStoreFactory};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Count {
    n: u64,
}

/// Far above what any read here needs: it only turns a hang into a failure.
const HANG_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn listing_and_inspecting_answer_while_writes_are_held() {
    let (faults, gate) = (Faults::new(), Arc::new(Semaphore::new(0)));
    let config = EngineConfig::new().store(FaultyStoreFactory::new(MemoryStoreFactory, Arc::clone(&faults)));
    let engine = Engine::start(config).await.unwrap();
    let graph = GraphBuilder::<Count>::new("one")
        .node("add", |s: Arc<Count>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
        .edge(START, "add")
        .edge("add", END)
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    let run = engine.start_run("one", &Count::default(), UserContext::new("u")).await.unwrap();
    faults.gate(Some(Arc::clone(&gate)));
    // The run's final commit is held by the store.
    loop {
        let stats = engine.stats().await.unwrap().persister;
        if stats.writing_since.is_some() && stats.buffered > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let listed = tokio::time::timeout(HANG_LIMIT, engine.list_runs(RunQuery::for_user("u")))
        .await
        .expect("listing waited on a held write")
        .unwrap();
    assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), vec![run]);
    let status = tokio::time::timeout(HANG_LIMIT, engine.status(run)).await.expect("status waited").unwrap();
    assert_eq!(status.run.id, run);
    tokio::time::timeout(HANG_LIMIT, engine.events(run, 1, 100)).await.expect("events waited").unwrap();

    // The store stops answering reads too: a read fails as unavailable, it does not hang.
    faults.outage(true);
    let failed = tokio::time::timeout(HANG_LIMIT, engine.list_runs(RunQuery::for_user("u")))
        .await
        .expect("listing hung on an outage");
    match failed {
        Err(EngineError::Store(error @ StoreError::Unavailable { .. })) => assert!(error.is_transient()),
        other => panic!("expected the store to be unavailable, got {other:?}"),
    }
    faults.outage(false);
    gate.add_permits(1_000);
    assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    engine.shutdown().await.unwrap();
}
