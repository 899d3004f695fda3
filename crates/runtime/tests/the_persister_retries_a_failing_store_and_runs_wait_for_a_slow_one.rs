//! The ProgressPersister against a store that fails or stalls: failed writes are retried
//! with backoff and nothing is lost; while the store stalls, runs wait at their next
//! commit point (sync durability) instead of running ahead of what is stored.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use graphloop_core::{GraphBuilder, Update, UserContext, END, START};
use graphloop_runtime::{Durability, Engine, EngineConfig, MemoryStoreFactory, PersisterConfig, RunStatus};
use graphloop_test_support::{Faults, FaultyStoreFactory};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Count {
    n: u64,
}

fn chain(len: usize) -> graphloop_core::Graph<Count> {
    held_chain(len, Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)))
}

/// A chain whose first node waits for a permit of `hold`: runs are started (their rows
/// committed) before the test stalls the store under them.
fn held_chain(len: usize, hold: Arc<Semaphore>) -> graphloop_core::Graph<Count> {
    let mut builder = GraphBuilder::<Count>::new("chain").step_limit(len as u64);
    builder = builder.node("n0", move |s: Arc<Count>, _ctx| {
        let hold = Arc::clone(&hold);
        async move {
            hold.acquire().await.expect("the hold is never closed").forget();
            Ok(Update::new().set("n", s.n + 1))
        }
    });
    for i in 1..len {
        builder =
            builder.node(format!("n{i}"), |s: Arc<Count>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) });
    }
    builder = builder.edge(START, "n0").edge(format!("n{}", len - 1), END);
    for i in 1..len {
        builder = builder.edge(format!("n{}", i - 1), format!("n{i}"));
    }
    builder.compile().unwrap()
}

#[tokio::test]
async fn failed_writes_are_retried_with_backoff_and_nothing_is_lost() {
    let persister = PersisterConfig::default().retry(Duration::from_millis(1), Duration::from_millis(8));
    let faults = Faults::new();
    faults.fail_writes(6);
    let config = EngineConfig::new().store(FaultyStoreFactory::new(MemoryStoreFactory, faults)).persister(persister);
    let engine = Engine::start(config).await.unwrap();
    engine.register(chain(4)).unwrap();
    let mut runs = Vec::new();
    for i in 0..10 {
        runs.push(engine.start_run("chain", &Count::default(), UserContext::new(format!("u{i}"))).await.unwrap());
    }
    for run in &runs {
        assert_eq!(engine.wait(*run).await.unwrap().status, RunStatus::Completed);
    }
    let stats = engine.stats().await.unwrap().persister;
    assert_eq!(stats.write_failures, 6);
    assert_eq!(stats.consecutive_failures, 0);
    assert_eq!(stats.last_error, None);
    let report = engine.shutdown().await.unwrap().persister.unwrap();
    assert_eq!(report.events_written, report.events_accepted);
    assert_eq!(report.buffered, 0);
}

#[tokio::test]
async fn while_the_store_stalls_runs_wait_at_their_next_commit() {
    let (faults, hold, gate) = (Faults::new(), Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let config = EngineConfig::new().store(FaultyStoreFactory::new(MemoryStoreFactory, Arc::clone(&faults)));
    let engine = Engine::start(config).await.unwrap();
    engine.register(held_chain(6, Arc::clone(&hold))).unwrap();
    let mut runs = Vec::new();
    for i in 0..5 {
        runs.push(engine.start_run("chain", &Count::default(), UserContext::new(format!("u{i}"))).await.unwrap());
    }
    // The runs are stored and held in their first node; now the store stalls under them.
    faults.gate(Some(Arc::clone(&gate)));
    let before = engine.stats().await.unwrap().persister.batches_written;
    hold.add_permits(runs.len());
    // Let exactly one write through. A run whose first commit was in it went on to its
    // second step and waits on the next (stalled) write; the others still wait on their
    // first. No run can be past step 2.
    gate.add_permits(1);
    loop {
        let stats = engine.stats().await.unwrap().persister;
        if stats.batches_written == before + 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    for run in &runs {
        let status = engine.status(*run).await.unwrap().run;
        assert_eq!(status.status, RunStatus::Running);
        assert!(status.step <= 2, "run {} is at step {} with one write done", run, status.step);
    }
    assert_eq!(
        engine.stats().await.unwrap().persister.batches_written,
        before + 1,
        "nothing more was written meanwhile"
    );
    gate.add_permits(1_000);
    for run in &runs {
        let done = engine.wait(*run).await.unwrap();
        assert_eq!((done.status, done.step), (RunStatus::Completed, 6));
    }
    let report = engine.shutdown().await.unwrap().persister.unwrap();
    assert_eq!(report.events_written, report.events_accepted);
}

#[tokio::test]
async fn in_async_mode_runs_go_ahead_of_a_stalled_store_until_its_buffer_is_full() {
    let (faults, hold, gate) = (Faults::new(), Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let capacity = 40;
    let config = EngineConfig::new()
        .store(FaultyStoreFactory::new(MemoryStoreFactory, Arc::clone(&faults)))
        .durability(Durability::Async)
        .persister(PersisterConfig::default().buffer_capacity(capacity));
    let engine = Engine::start(config).await.unwrap();
    engine.register(held_chain(50, Arc::clone(&hold))).unwrap();
    let mut runs = Vec::new();
    for i in 0..4 {
        runs.push(engine.start_run("chain", &Count::default(), UserContext::new(format!("u{i}"))).await.unwrap());
    }
    faults.gate(Some(Arc::clone(&gate)));
    hold.add_permits(runs.len());
    // Nothing can be written, so runs end up held at commit points, waiting for room:
    // backpressure, not an ever-growing buffer. (A commit waits for room only once the
    // buffer is full, and the buffer never shrinks while the store stalls.)
    let stats = loop {
        let stats = engine.stats().await.unwrap().persister;
        if stats.waiting_for_room >= runs.len() {
            break stats;
        }
        tokio::task::yield_now().await;
    };
    assert!(stats.buffered >= capacity, "{stats:?}");
    // Each run overshoots by at most a few steps' rows (its 2 unanswered commits and the
    // step that filled the buffer; events, row change and checkpoint: 5 rows a step).
    assert!(stats.buffered <= capacity + runs.len() * 15, "{stats:?}");
    for run in &runs {
        assert!(engine.status(*run).await.unwrap().run.step < 50);
    }
    gate.add_permits(100_000);
    for run in &runs {
        let done = engine.wait(*run).await.unwrap();
        assert_eq!((done.status, done.step), (RunStatus::Completed, 50));
    }
    let report = engine.shutdown().await.unwrap().persister.unwrap();
    assert_eq!(report.events_written, report.events_accepted);
}
