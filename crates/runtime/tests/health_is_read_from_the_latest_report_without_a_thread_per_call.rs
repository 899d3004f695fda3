//! Issue 11: `/health` is open, and each `Engine::health` call started an OS thread that
//! slept the whole probe limit; enough calls ran the process out of threads, and then
//! `Arbiter::new()` panicked inside the Supervisor, so every later start failed. Health is
//! now the monitor's latest report: asking starts no thread and no probe.
//!
//! The test counts the process's threads (`/proc/self/status`), so it is the only test in
//! this binary (tests run in parallel, on threads of the harness), and it runs on a
//! current-thread runtime, which adds no worker threads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use graphloop_core::{GraphBuilder, Update, UserContext, END, START};
use graphloop_runtime::{Engine, EngineConfig, HealthConfig, HealthStatus, RunStatus};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Count {
    n: u64,
}

/// The process's OS threads now.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("linux has /proc/self/status");
    let line = status.lines().find(|line| line.starts_with("Threads:")).expect("a Threads: line");
    line["Threads:".len()..].trim().parse().expect("a thread count")
}

#[tokio::test]
async fn two_thousand_concurrent_health_calls_start_no_thread_and_runs_still_start() {
    // A probe limit of an hour: a thread per call that sleeps the limit would still be
    // alive when the threads are counted, however slow the machine.
    let health = HealthConfig::new().blocked_after(Duration::from_secs(3_600));
    let engine = Engine::start(EngineConfig::new().health(health)).await.unwrap();
    engine
        .register(
            GraphBuilder::<Count>::new("add")
                .node("add", |s: Arc<Count>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
                .edge(START, "add")
                .edge("add", END)
                .compile()
                .unwrap(),
        )
        .unwrap();

    let before = threads();
    let reports = join_all((0..2_000).map(|_| engine.health())).await;
    let after = threads();
    for report in reports {
        let report = report.unwrap();
        assert_eq!(report.status, HealthStatus::Healthy, "{:?}", report.reasons);
    }
    // Nothing of the engine starts threads while idle; two spare for the unforeseen.
    assert!(after <= before + 2, "{} threads before 2,000 health calls, {after} after", before);

    // Admission is unharmed: a run still gets its arbiter and completes.
    let run = engine.start_run("add", &Count { n: 41 }, UserContext::new("u")).await.unwrap();
    let done = engine.wait(run).await.unwrap();
    assert_eq!((done.status, done.output.unwrap()["n"].as_u64()), (RunStatus::Completed, Some(42)));
    engine.shutdown().await.unwrap();
}
