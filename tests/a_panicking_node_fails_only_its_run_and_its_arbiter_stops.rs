//! A node that panics in one run out of fifty, on PostgreSQL: that run fails with the
//! panic recorded (node, attempts, message), the forty-nine others complete, and every
//! run arbiter's thread is gone afterwards (the process is back to its thread count
//! from before the first run).
//!
//! Only one test in this file: thread counts are process-wide, so another test of the
//! same binary running in parallel would disturb them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{stored_events, Doc, TestDb};
use graphloop::{
    Engine, EngineConfig, GraphBuilder, NodeContext, NodeError, RetryPolicy, RunStatus, Update, UserContext, END, START,
};
use tokio::sync::Semaphore;

const RUNS: u64 = 50;
/// The input (`n`) of the one run whose node panics.
const PANICKING: u64 = 17;
const PANIC_MESSAGE: &str = "clause table index 17 out of range";
const ATTEMPTS: u32 = 2;

/// Threads of this process right now: one entry per thread in `/proc/self/task`.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").expect("/proc/self/task is readable (Linux)").count()
}

/// Waits until the process has `expected` threads, failing after a generous deadline.
///
/// `JoinHandle::join` returns as soon as the kernel clears the thread's tid, a moment
/// before the exiting thread is reaped and leaves `/proc/self/task`, so the count may
/// lag the reaper's join by that moment (and a tokio blocking-pool thread, if the
/// persister's loop made one for a DNS lookup, leaves after its 10 s keep-alive). There
/// is no event to wait on for either; a leaked thread never leaves, so the deadline
/// turns a leak into a failure. On the local server the count is right at once.
async fn wait_for_threads(expected: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = threads();
        if now == expected || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_node_fails_only_its_run_and_its_arbiter_stops() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store()).max_running(RUNS as usize)).await.unwrap();
    // Every node announces itself on `entered`, then waits for a permit of `gate`: all
    // fifty runs (and their arbiters) are alive at once before any of them ends.
    let (gate, entered) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let (g, e) = (Arc::clone(&gate), Arc::clone(&entered));
    let graph = GraphBuilder::<Doc>::new("maybe-panic")
        .node("work", move |s: Arc<Doc>, ctx: NodeContext| {
            let (gate, entered) = (Arc::clone(&g), Arc::clone(&e));
            async move {
                if ctx.attempt() == 1 {
                    entered.add_permits(1);
                }
                gate.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                if s.n == PANICKING {
                    panic!("{PANIC_MESSAGE}");
                }
                Ok(Update::new().set("log", ["ok"]))
            }
        })
        .edge(START, "work")
        .edge("work", END)
        .retry("work", RetryPolicy::new().max_attempts(ATTEMPTS).initial_interval(Duration::from_millis(1)))
        .compile()
        .unwrap();
    engine.register(graph).unwrap();

    let baseline = threads();
    let mut runs = Vec::new();
    for n in 0..RUNS {
        let run =
            engine.start_run("maybe-panic", &Doc { n, ..Doc::default() }, UserContext::new("analyst")).await.unwrap();
        runs.push((n, run));
    }
    entered.acquire_many(RUNS as u32).await.unwrap().forget();
    let stats = engine.stats().await.unwrap();
    assert_eq!((stats.supervisor.running, stats.arbiters), (RUNS as usize, RUNS as usize));
    let busy = threads();
    // At least: the persister may add a short-lived blocking thread (a DNS lookup when
    // the database URL names a host); 57 = 7 + 50 on the local server.
    assert!(
        busy >= baseline + RUNS as usize,
        "one thread per run arbiter while all {RUNS} runs are in a node: {busy} threads, baseline {baseline}"
    );

    // Enough permits for every attempt, the panicking run's retry included.
    gate.add_permits(2 * RUNS as usize);
    for &(n, run) in &runs {
        let done = engine.wait(run).await.unwrap();
        let expected = if n == PANICKING { RunStatus::Failed } else { RunStatus::Completed };
        assert_eq!(done.status, expected, "run {n} ({run})");
    }
    engine.wait_for_arbiters(0).await.unwrap();
    let stats = engine.stats().await.unwrap();
    assert_eq!((stats.arbiters, stats.supervisor.running, stats.supervisor.died), (0, 0, 0));
    let after = wait_for_threads(baseline).await;
    assert_eq!(after, baseline, "every run arbiter's thread has ended (baseline {baseline}, peak {busy})");
    engine.shutdown().await.unwrap();

    // The rows, as stored.
    let completed = db.count("SELECT count(*) FROM runs WHERE status = 'completed'", &[]).await;
    let failed = db.count("SELECT count(*) FROM runs WHERE status = 'failed'", &[]).await;
    assert_eq!((completed, failed), (RUNS as i64 - 1, 1));
    let panicked = runs.iter().find(|(n, _)| *n == PANICKING).unwrap().1;
    let row = db.client.query_one("SELECT status, error, output FROM runs WHERE id = $1", &[&panicked]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(row.get::<_, Option<serde_json::Value>>(2), None, "a failed run has no output");
    let error: serde_json::Value = row.get(1);
    let failure = &error;
    assert_eq!(failure["kind"], "node_failed", "{error}");
    assert_eq!(failure["node"], "work", "{error}");
    assert_eq!(failure["attempts"], ATTEMPTS, "{error}");
    assert_eq!(failure["error"]["kind"], "panic", "{error}");
    let message = failure["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(PANIC_MESSAGE), "the panic message is recorded: {error}");
    for &(n, run) in runs.iter().filter(|(n, _)| *n != PANICKING) {
        let row = db.client.query_one("SELECT status, error FROM runs WHERE id = $1", &[&run]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "completed", "run {n}");
        assert_eq!(row.get::<_, Option<serde_json::Value>>(1), None, "run {n}");
    }

    // The panicking run's events: gapless, one retry, the failure last.
    let events = stored_events(&db, panicked).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "seq without gaps");
    let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_failed"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "node_retrying").count(), ATTEMPTS as usize - 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "node_failed").count(), 1, "{kinds:?}");
    assert!(!kinds.contains(&"run_completed"), "{kinds:?}");
    let node_failed = db
        .client
        .query_one("SELECT node, data FROM events WHERE run_id = $1 AND kind = 'node_failed'", &[&panicked])
        .await
        .unwrap();
    assert_eq!(node_failed.get::<_, Option<String>>(0).as_deref(), Some("work"));
    let data: serde_json::Value = node_failed.get(1);
    assert!(data.to_string().contains(PANIC_MESSAGE), "{data}");
    db.drop().await;
}
