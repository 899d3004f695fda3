//! The ProgressPersister against a store that fails or stalls: failed writes are retried
//! with backoff and nothing is lost; while the store stalls, runs wait at their next
//! commit point (sync durability) instead of running ahead of what is stored.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use graphloop_core::{GraphBuilder, Update, UserContext, END, START};
use graphloop_runtime::{
    Batch, CheckpointRecord, Durability, Engine, EngineConfig, EventRecord, MemoryStore, PersisterConfig, RunQuery,
    RunRecord, RunStatus, Store, StoreError, StoreFactory,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Count {
    n: u64,
}

fn chain(len: usize) -> graphloop_core::Graph<Count> {
    let mut builder = GraphBuilder::<Count>::new("chain").step_limit(len as u64);
    for i in 0..len {
        builder =
            builder.node(format!("n{i}"), |s: Arc<Count>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) });
    }
    builder = builder.edge(START, "n0").edge(format!("n{}", len - 1), END);
    for i in 1..len {
        builder = builder.edge(format!("n{}", i - 1), format!("n{i}"));
    }
    builder.compile().unwrap()
}

/// A memory store whose writes first fail `failures` times, and each wait for a permit
/// of `gate` (when given).
struct TroubledStore {
    inner: MemoryStore,
    failures: Cell<usize>,
    gate: Option<Arc<Semaphore>>,
}

struct TroubledFactory {
    failures: usize,
    gate: Option<Arc<Semaphore>>,
}

impl StoreFactory for TroubledFactory {
    fn describe(&self) -> String {
        "troubled memory".into()
    }

    fn open(self: Box<Self>) -> LocalBoxFuture<'static, Result<Rc<dyn Store>, StoreError>> {
        let store =
            TroubledStore { inner: MemoryStore::default(), failures: Cell::new(self.failures), gate: self.gate };
        Box::pin(async move { Ok(Rc::new(store) as Rc<dyn Store>) })
    }
}

impl Store for TroubledStore {
    fn write<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(gate) = &self.gate {
                gate.acquire().await.map_err(|e| StoreError::Unavailable(e.to_string()))?.forget();
            }
            if self.failures.get() > 0 {
                self.failures.set(self.failures.get() - 1);
                return Err(StoreError::Unavailable("connection refused (simulated outage)".into()));
            }
            self.inner.write(batch).await
        })
    }

    fn run(&self, id: Uuid) -> LocalBoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        self.inner.run(id)
    }

    fn events(
        &self,
        run_id: Uuid,
        from_seq: u64,
        limit: usize,
    ) -> LocalBoxFuture<'_, Result<Vec<EventRecord>, StoreError>> {
        self.inner.events(run_id, from_seq, limit)
    }

    fn runs<'a>(&'a self, query: &'a RunQuery) -> LocalBoxFuture<'a, Result<Vec<RunRecord>, StoreError>> {
        self.inner.runs(query)
    }

    fn latest_checkpoint(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<Option<CheckpointRecord>, StoreError>> {
        self.inner.latest_checkpoint(run_id)
    }

    fn last_seq(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<u64, StoreError>> {
        self.inner.last_seq(run_id)
    }

    fn unfinished_runs(&self) -> LocalBoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        self.inner.unfinished_runs()
    }

    fn run_by_key<'a>(
        &'a self,
        user_id: &'a str,
        key: &'a str,
    ) -> LocalBoxFuture<'a, Result<Option<RunRecord>, StoreError>> {
        self.inner.run_by_key(user_id, key)
    }

    fn prune_checkpoints(&self, finished_before: std::time::SystemTime) -> LocalBoxFuture<'_, Result<u64, StoreError>> {
        self.inner.prune_checkpoints(finished_before)
    }

    fn storage(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<graphloop_runtime::RunStorage, StoreError>> {
        self.inner.storage(run_id)
    }
}

#[tokio::test]
async fn failed_writes_are_retried_with_backoff_and_nothing_is_lost() {
    let persister = PersisterConfig::default().retry(Duration::from_millis(1), Duration::from_millis(8));
    let config = EngineConfig::new().store(TroubledFactory { failures: 6, gate: None }).persister(persister);
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
    let gate = Arc::new(Semaphore::new(0));
    let config = EngineConfig::new().store(TroubledFactory { failures: 0, gate: Some(Arc::clone(&gate)) });
    let engine = Engine::start(config).await.unwrap();
    engine.register(chain(6)).unwrap();
    let mut runs = Vec::new();
    for i in 0..5 {
        runs.push(engine.start_run("chain", &Count::default(), UserContext::new(format!("u{i}"))).await.unwrap());
    }
    // Let exactly one write through. A run whose first commit was in it went on to its
    // second step and waits on the next (stalled) write; the others still wait on their
    // first. No run can be past step 2.
    gate.add_permits(1);
    loop {
        let stats = engine.stats().await.unwrap().persister;
        if stats.batches_written == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    for run in &runs {
        let status = engine.status(*run).await.unwrap().run;
        assert_eq!(status.status, RunStatus::Running);
        assert!(status.step <= 2, "run {} is at step {} with one write done", run, status.step);
    }
    assert_eq!(engine.stats().await.unwrap().persister.batches_written, 1, "nothing more was written meanwhile");
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
    let gate = Arc::new(Semaphore::new(0));
    let capacity = 40;
    let config = EngineConfig::new()
        .store(TroubledFactory { failures: 0, gate: Some(Arc::clone(&gate)) })
        .durability(Durability::Async)
        .persister(PersisterConfig::default().buffer_capacity(capacity));
    let engine = Engine::start(config).await.unwrap();
    engine.register(chain(50)).unwrap();
    let mut runs = Vec::new();
    for i in 0..4 {
        runs.push(engine.start_run("chain", &Count::default(), UserContext::new(format!("u{i}"))).await.unwrap());
    }
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
