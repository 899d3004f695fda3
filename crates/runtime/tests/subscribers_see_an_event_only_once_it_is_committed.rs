//! Issue 11, item 3: durable before visible. While the store holds its writes, a
//! subscriber receives none of the run's events (they could still be lost, and their seq
//! numbers issued again after a crash); once written, it receives every one, in order,
//! each once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;

use futures_util::FutureExt;
use graphloop_core::{GraphBuilder, Update, UserContext, END, START};
use graphloop_runtime::{Engine, EngineConfig, MemoryStoreFactory, RunStatus, Streamed};
use graphloop_test_support::{Faults, FaultyStoreFactory};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Count {
    n: u64,
}

#[tokio::test]
async fn events_reach_a_subscriber_only_once_they_are_committed() {
    let (faults, hold, gate) = (Faults::new(), Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let config = EngineConfig::new().store(FaultyStoreFactory::new(MemoryStoreFactory, Arc::clone(&faults)));
    let engine = Engine::start(config).await.unwrap();
    let h = Arc::clone(&hold);
    let graph = GraphBuilder::<Count>::new("two")
        .node("first", move |s: Arc<Count>, _ctx| {
            let hold = Arc::clone(&h);
            async move {
                hold.acquire().await.unwrap().forget();
                Ok(Update::new().set("n", s.n + 1))
            }
        })
        .node("second", |s: Arc<Count>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
        .edge(START, "first")
        .edge("first", "second")
        .edge("second", END)
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    let run = engine.start_run("two", &Count::default(), UserContext::new("u")).await.unwrap();
    let mut events = engine.subscribe(run, 1).await.unwrap();

    // The store holds every write from now on; the run finishes its first step and waits
    // at its commit, with its events accepted but not written.
    faults.gate(Some(Arc::clone(&gate)));
    hold.add_permits(1);
    loop {
        let stats = engine.stats().await.unwrap().persister;
        if stats.writing_since.is_some() && stats.events_accepted > stats.events_written {
            break;
        }
        tokio::task::yield_now().await;
    }
    // The stream has events only through a commit, and none has happened since the start.
    while let Some(Some(item)) = events.next().now_or_never() {
        assert!(
            !matches!(item, Streamed::Event(ref e) if e.seq > 0),
            "an event reached the subscriber before it was committed: {item:?}"
        );
    }

    gate.add_permits(1_000);
    let mut seqs = Vec::new();
    while let Some(item) = events.next().await {
        if let Streamed::Event(record) = item {
            seqs.push(record.seq);
        }
    }
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "every event once, in order");
    assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    let stored = engine.events(run, 1, 1_000).await.unwrap();
    assert_eq!(stored.len(), seqs.len(), "the subscriber saw exactly what is stored");
    engine.shutdown().await.unwrap();
}
