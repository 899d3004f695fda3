//! Issue 4, point 4: a node asks a question; the run checkpoints and goes `waiting`; the
//! process stops; the next one answers with `Engine::resume`, and the run completes with
//! the answer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{log, stored_events, Doc, TestDb};
use graphloop::{
    Engine, EngineConfig, EngineError, GraphBuilder, NodeContext, NodeError, Reducer, RunStatus, UserContext, END,
    START,
};

fn approval(drafts: Arc<AtomicUsize>) -> graphloop::Graph<Doc> {
    GraphBuilder::<Doc>::new("approval")
        .node("draft", move |_s, _ctx| {
            drafts.fetch_add(1, Ordering::SeqCst);
            async move { Ok(log("draft")) }
        })
        .node("review", |_s, ctx: NodeContext| async move {
            match ctx.answer::<String>()? {
                Some(answer) => Ok(log(&format!("review: {answer}"))),
                None => Err(NodeError::interrupt(serde_json::json!({"question": "approve the draft?"}))),
            }
        })
        .node("publish", |_s, _ctx| async move { Ok(log("publish")) })
        .edge(START, "draft")
        .edge("draft", "review")
        .edge("review", "publish")
        .edge("publish", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_resumes_with_its_answer_after_a_restart() {
    let db = TestDb::new().await;
    let drafts = Arc::new(AtomicUsize::new(0));

    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(approval(Arc::clone(&drafts))).unwrap();
    let run = engine.start_run("approval", &Doc::default(), UserContext::new("editor")).await.unwrap();
    let waiting = engine.wait(run).await.unwrap();
    assert_eq!(waiting.status, RunStatus::Waiting);
    assert_eq!(waiting.finished_at, None);
    let events = engine.events(run, 1, 100).await.unwrap();
    match &events.last().unwrap().event.kind {
        graphloop::EventKind::RunWaiting { task, payload } => {
            assert_eq!(task, "review");
            assert_eq!(payload["question"], "approve the draft?");
        }
        other => panic!("expected the run to wait, got {other:?}"),
    }
    engine.shutdown().await.unwrap();

    // Another process: it does not resume waiting runs on its own, but answers them.
    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(approval(Arc::clone(&drafts))).unwrap();
    assert_eq!(engine.recover().await.unwrap(), Vec::<uuid::Uuid>::new());
    engine.resume(run, &"yes, ship it").await.unwrap();
    let done = engine.wait(run).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    let output: Doc = serde_json::from_value(done.output.unwrap()).unwrap();
    assert_eq!(output.log, ["draft", "review: yes, ship it", "publish"]);
    assert_eq!(drafts.load(Ordering::SeqCst), 1, "the committed step did not run again");

    let again = engine.resume(run, &"twice").await.unwrap_err();
    assert_eq!(again, EngineError::NotWaiting { run_id: run, status: RunStatus::Completed });
    engine.shutdown().await.unwrap();

    let events = stored_events(&db, run).await;
    assert_eq!(events.iter().map(|e| e.0).collect::<Vec<_>>(), (1..=events.len() as i64).collect::<Vec<_>>());
    assert!(events.windows(2).all(|w| w[0].2 <= w[1].2), "percent monotone across the wait");
    assert!(events.iter().any(|e| e.1 == "run_waiting"));
    assert_eq!(events.last().unwrap().1, "run_completed");
    db.drop().await;
}
