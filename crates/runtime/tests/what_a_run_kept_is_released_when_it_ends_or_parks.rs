//! Issue 11, item 7: memory stays flat. Everything the engine keeps for a run (the
//! persister's overlay, tracks, fences and subscribers; the supervisor's entries) is
//! released when the run ends or parks, whatever the number of runs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;

use graphloop_core::{GraphBuilder, NodeContext, NodeError, Update, UserContext, END, START};
use graphloop_runtime::{Engine, EngineConfig, RunStatus};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Job {
    n: u64,
    ask: bool,
}

#[tokio::test]
async fn nothing_is_kept_per_run_once_runs_end_or_park() {
    let engine = Engine::start(EngineConfig::new()).await.unwrap();
    let graph = GraphBuilder::<Job>::new("job")
        .node("work", |s: Arc<Job>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) })
        .node("ask", |s: Arc<Job>, ctx: NodeContext| async move {
            match (s.ask, ctx.answer::<String>()?) {
                (true, None) => Err(NodeError::interrupt("go on?")),
                _ => Ok(Update::new().set("n", s.n + 1)),
            }
        })
        .edge(START, "work")
        .edge("work", "ask")
        .edge("ask", END)
        .compile()
        .unwrap();
    engine.register(graph).unwrap();
    let mut runs = Vec::new();
    for i in 0..60u64 {
        let job = Job { n: i, ask: i % 10 == 0 };
        runs.push((job.ask, engine.start_run("job", &job, UserContext::new(format!("u{}", i % 4))).await.unwrap()));
    }
    for (ask, run) in &runs {
        // Followed to the end, as a client would: subscribers come and go too.
        let done = engine.wait(*run).await.unwrap();
        let expected = if *ask { RunStatus::Waiting } else { RunStatus::Completed };
        assert_eq!(done.status, expected);
    }
    engine.wait_for_arbiters(0).await.unwrap();
    let stats = engine.stats().await.unwrap();
    assert_eq!(stats.persister.per_run_entries, 0, "{:?}", stats.persister);
    assert_eq!(stats.persister.subscribers, 0);
    assert_eq!(stats.persister.buffered, 0);
    assert_eq!((stats.supervisor.running, stats.supervisor.queued), (0, 0));
    engine.shutdown().await.unwrap();
}
