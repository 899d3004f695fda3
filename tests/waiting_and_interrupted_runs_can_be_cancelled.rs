//! Issue 11, item 9: a run parked `waiting` for an answer, or `interrupted` by a shutdown,
//! has no actor; cancelling it ends it `cancelled` at once, with a final event after its
//! last one, in this process or a later one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{log, stored_events, Doc, TestDb};
use graphloop::{
    Engine, EngineConfig, EngineError, EventKind, GraphBuilder, NodeContext, NodeError, Reducer, RunStatus, Streamed,
    UserContext, END, START,
};
use tokio::sync::Semaphore;

fn approval() -> graphloop::Graph<Doc> {
    GraphBuilder::<Doc>::new("approval")
        .node("draft", |_s, _ctx| async move { Ok(log("draft")) })
        .node("review", |_s, ctx: NodeContext| async move {
            match ctx.answer::<String>()? {
                Some(answer) => Ok(log(&format!("review: {answer}"))),
                None => Err(NodeError::interrupt(serde_json::json!({"question": "approve?"}))),
            }
        })
        .edge(START, "draft")
        .edge("draft", "review")
        .edge("review", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap()
}

async fn assert_cancelled(engine: &Engine, db: &TestDb, run: uuid::Uuid) {
    // A cancel is acknowledged, then recorded: the stream ends with the final event.
    let mut events = engine.subscribe(run, 1).await.unwrap();
    let mut last = None;
    while let Some(item) = events.next().await {
        if let Streamed::Event(record) = item {
            last = Some(record.event.kind);
        }
    }
    assert!(matches!(last, Some(EventKind::RunCancelled)), "{last:?}");
    assert_eq!(engine.status(run).await.unwrap().run.status, RunStatus::Cancelled);
    let events = stored_events(db, run).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "gapless");
    assert_eq!(events.last().unwrap().1, "run_cancelled");
    match engine.cancel(run).await {
        Err(EngineError::RunFinished { status: RunStatus::Cancelled, .. }) => {}
        other => panic!("a second cancel must say the run is cancelled already, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_is_cancelled_and_cannot_be_resumed_after() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(approval()).unwrap();
    let run = engine.start_run("approval", &Doc::default(), UserContext::new("editor")).await.unwrap();
    assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Waiting);

    engine.cancel(run).await.unwrap();
    assert_cancelled(&engine, &db, run).await;
    match engine.resume(run, &"yes").await {
        Err(EngineError::NotWaiting { status: RunStatus::Cancelled, .. }) => {}
        other => panic!("a cancelled run cannot be resumed, got {other:?}"),
    }
    engine.shutdown().await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_is_cancelled_by_the_next_process_and_not_recovered() {
    let db = TestDb::new().await;
    let config = || EngineConfig::new().store(db.store()).shutdown_timeout(Duration::from_millis(20));
    let (entered, hold) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let (e, h) = (Arc::clone(&entered), Arc::clone(&hold));
    let graph = GraphBuilder::<Doc>::new("slow")
        .node("first", |_s, _ctx| async move { Ok(log("first")) })
        .node("wait", move |_s, _ctx| {
            let (entered, hold) = (Arc::clone(&e), Arc::clone(&h));
            async move {
                entered.add_permits(1);
                hold.acquire().await.unwrap().forget();
                Ok(log("wait"))
            }
        })
        .edge(START, "first")
        .edge("first", "wait")
        .edge("wait", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap();
    let engine = Engine::start(config()).await.unwrap();
    engine.register(graph.clone()).unwrap();
    let run = engine.start_run("slow", &Doc::default(), UserContext::new("u")).await.unwrap();
    entered.acquire().await.unwrap().forget();
    engine.shutdown().await.unwrap();

    let engine = Engine::start(config()).await.unwrap();
    engine.register(graph).unwrap();
    assert_eq!(engine.status(run).await.unwrap().run.status, RunStatus::Interrupted);
    engine.cancel(run).await.unwrap();
    assert_cancelled(&engine, &db, run).await;
    assert_eq!(engine.recover().await.unwrap(), Vec::<uuid::Uuid>::new(), "a cancelled run is not resumed");
    engine.shutdown().await.unwrap();
    db.drop().await;
}
