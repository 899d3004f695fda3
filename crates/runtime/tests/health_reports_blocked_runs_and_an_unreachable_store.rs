//! The health monitor names what is wrong: a run whose node blocks its thread (while
//! other runs go on), a run that emitted nothing for too long, a store that fails every
//! write; and the engine is healthy again once the trouble is over.
//!
//! Thresholds are chosen so the outcome never depends on the machine's speed: a run
//! blocked until the test releases it is blocked by any `blocked_after`; a run that
//! awaits forever is stalled by a `stalled_after` of zero; a store that fails every write
//! fails the one write `store_failures(1)` needs. Healthy is checked only once no run is
//! live (`wait`, then `wait_for_arbiters(0)`), so no probe can be slow by chance.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use graphloop_core::{GraphBuilder, Update, UserContext, END, START};
use graphloop_runtime::{
    Batch, CheckpointRecord, Engine, EngineConfig, EventRecord, HealthConfig, HealthStatus, MemoryStore,
    PersisterConfig, RunQuery, RunRecord, RunStatus, RunStorage, Store, StoreError, StoreFactory,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc as async_mpsc, Notify};
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Count {
    n: u64,
}

/// Probe thresholds that cannot make a test's outcome depend on timing: nothing here is
/// slow or stalled unless the test holds it so.
fn patient() -> HealthConfig {
    HealthConfig::new()
        .blocked_after(Duration::from_millis(100))
        .slow_lag(Duration::from_secs(3_600))
        .stalled_after(Duration::from_secs(3_600))
        .store_stalled_after(Duration::from_secs(3_600))
}

fn one_step(name: &str) -> graphloop_core::Graph<Count> {
    GraphBuilder::<Count>::new(name)
        .node("add", |s: Arc<Count>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
        .edge(START, "add")
        .edge("add", END)
        .compile()
        .unwrap()
}

/// Waits until every run has ended and its arbiter is gone: then the supervisor holds no
/// live run, and health probes none.
async fn no_live_runs(engine: &Engine, runs: &[Uuid]) {
    for run in runs {
        assert_eq!(engine.wait(*run).await.unwrap().status, RunStatus::Completed);
    }
    engine.wait_for_arbiters(0).await.unwrap();
}

#[tokio::test]
async fn a_fresh_engine_is_healthy_with_nothing_to_report() {
    let engine = Engine::start(EngineConfig::new().health(patient())).await.unwrap();
    let health = engine.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{:?}", health.reasons);
    assert!(health.reasons.is_empty() && health.recommendations.is_empty());
    assert_eq!((health.running, health.queued, health.blocked_runs), (0, 0, 0));
    assert!(health.store.answered);
    assert_eq!((health.store.store.as_str(), health.store.buffered), ("memory", 0));
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["status"], "healthy");
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_run_blocking_its_thread_is_named_while_other_runs_complete() {
    let engine = Engine::start(EngineConfig::new().health(patient())).await.unwrap();
    let (entered_tx, mut entered_rx) = async_mpsc::unbounded_channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let blocker = GraphBuilder::<Count>::new("blocker")
        .node("block", move |_s: Arc<Count>, _ctx| {
            let entered = entered_tx.clone();
            let release = Arc::clone(&release_rx);
            async move {
                let _ = entered.send(());
                // A thread block, not an await: the run's whole arbiter stops here.
                let _ = release.lock().unwrap().recv();
                Ok(Update::new().set("n", 1))
            }
        })
        .edge(START, "block")
        .edge("block", END)
        .compile()
        .unwrap();
    engine.register(blocker).unwrap();
    engine.register(one_step("quick")).unwrap();

    let blocked = engine.start_run("blocker", &Count::default(), UserContext::new("u1")).await.unwrap();
    entered_rx.recv().await.unwrap();

    // Isolation: another run, on its own arbiter, completes meanwhile.
    let quick = engine.start_run("quick", &Count::default(), UserContext::new("u2")).await.unwrap();
    assert_eq!(engine.wait(quick).await.unwrap().status, RunStatus::Completed);
    // Its arbiter is gone too: the blocked run is the only live one.
    engine.wait_for_arbiters(1).await.unwrap();

    let health = engine.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Degraded, "{:?}", health.reasons);
    assert_eq!(health.blocked_runs, 1);
    let named: Vec<&String> = health.reasons.iter().filter(|r| r.contains(&blocked.to_string())).collect();
    assert_eq!(named.len(), 1, "{:?}", health.reasons);
    assert!(named[0].contains("blocking its thread") && named[0].contains("spawn_blocking"), "{named:?}");
    assert!(health.recommendations.iter().any(|r| r.contains("spawn_blocking")));
    assert_eq!((health.runs[0].run_id, health.runs[0].blocked, health.runs[0].lag), (blocked, true, None));

    release_tx.send(()).unwrap();
    no_live_runs(&engine, &[blocked]).await;
    let health = engine.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{:?}", health.reasons);
    assert!(health.reasons.is_empty());
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_run_that_emits_nothing_is_reported_stalled() {
    // Any silence is a stall; no probe of a run that answers counts as blocked.
    let health = patient().stalled_after(Duration::ZERO).blocked_after(Duration::from_secs(3_600));
    let engine = Engine::start(EngineConfig::new().health(health)).await.unwrap();
    let (entered_tx, mut entered_rx) = async_mpsc::unbounded_channel::<()>();
    let go_on = Arc::new(Notify::new());
    let waits = {
        let go_on = Arc::clone(&go_on);
        GraphBuilder::<Count>::new("waits")
            .node("wait", move |_s: Arc<Count>, _ctx| {
                let entered = entered_tx.clone();
                let go_on = Arc::clone(&go_on);
                async move {
                    let _ = entered.send(());
                    // An await that does not answer: the thread is free, the run silent.
                    go_on.notified().await;
                    Ok(Update::new().set("n", 1))
                }
            })
            .edge(START, "wait")
            .edge("wait", END)
            .compile()
            .unwrap()
    };
    engine.register(waits).unwrap();
    let run = engine.start_run("waits", &Count::default(), UserContext::new("u")).await.unwrap();
    entered_rx.recv().await.unwrap();

    let health = engine.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Degraded, "{:?}", health.reasons);
    assert_eq!(health.stalled_runs, 1);
    assert!(
        health.reasons.iter().any(|r| r.contains(&format!("run {run} has emitted nothing"))),
        "{:?}",
        health.reasons
    );

    go_on.notify_one();
    no_live_runs(&engine, &[run]).await;
    let health = engine.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{:?}", health.reasons);
    engine.shutdown().await.unwrap();
}

/// A memory store whose writes fail while its switch is on.
struct SwitchedStore {
    inner: MemoryStore,
    failing: Arc<AtomicBool>,
}

struct SwitchedFactory {
    failing: Arc<AtomicBool>,
}

impl StoreFactory for SwitchedFactory {
    fn describe(&self) -> String {
        "switched memory".into()
    }

    fn open(self: Box<Self>) -> LocalBoxFuture<'static, Result<Rc<dyn Store>, StoreError>> {
        let store = SwitchedStore { inner: MemoryStore::default(), failing: self.failing };
        Box::pin(async move { Ok(Rc::new(store) as Rc<dyn Store>) })
    }
}

impl Store for SwitchedStore {
    fn write<'a>(&'a self, batch: &'a Batch) -> LocalBoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if self.failing.load(Ordering::SeqCst) {
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

    fn storage(&self, run_id: Uuid) -> LocalBoxFuture<'_, Result<RunStorage, StoreError>> {
        self.inner.storage(run_id)
    }
}

#[tokio::test]
async fn a_store_failing_every_write_makes_the_engine_unhealthy_until_it_is_back() {
    let failing = Arc::new(AtomicBool::new(true));
    let config = EngineConfig::new()
        .store(SwitchedFactory { failing: Arc::clone(&failing) })
        .persister(PersisterConfig::default().retry(Duration::from_millis(1), Duration::from_millis(20)))
        .health(patient().store_failures(1));
    let engine = Engine::start(config).await.unwrap();
    engine.register(one_step("quick")).unwrap();
    let run = engine.start_run("quick", &Count::default(), UserContext::new("u")).await.unwrap();

    // Wait for the event the report is about: a write has failed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while engine.stats().await.unwrap().persister.consecutive_failures == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no write failed within the deadline");
        tokio::task::yield_now().await;
    }

    let health = engine.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Unhealthy, "{:?}", health.reasons);
    let store_reason = health.reasons.iter().find(|r| r.contains("store") && r.contains("database"));
    let store_reason = store_reason.unwrap_or_else(|| panic!("no reason names the store: {:?}", health.reasons));
    assert!(store_reason.contains("connection refused"), "{store_reason}");
    assert!(health.recommendations.iter().any(|r| r.contains("database")), "{:?}", health.recommendations);
    assert!(health.store.consecutive_failures >= 1 && health.store.buffered > 0, "{:?}", health.store);
    assert!(health.store.unwritten_for.is_some() && health.store.last_error.is_some());

    failing.store(false, Ordering::SeqCst);
    no_live_runs(&engine, &[run]).await;
    let health = engine.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{:?}", health.reasons);
    assert_eq!((health.store.consecutive_failures, health.store.buffered), (0, 0));
    assert!(health.store.last_write_at.is_some() && health.store.unwritten_for.is_none());
    engine.shutdown().await.unwrap();
}
