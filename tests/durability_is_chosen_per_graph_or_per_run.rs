//! Issue 4: durability is chosen per run, else per graph, else for the engine; `exit`
//! keeps only the final checkpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{log, Doc, TestDb};
use graphloop::{
    Durability, Engine, EngineConfig, GraphBuilder, PersisterConfig, Reducer, Retention, RunOptions, RunStatus,
    UserContext, END, START,
};

fn chain(name: &str) -> graphloop::Graph<Doc> {
    GraphBuilder::<Doc>::new(name)
        .node("a", |_s, _ctx| async move { Ok(log("a")) })
        .node("b", |_s, _ctx| async move { Ok(log("b")) })
        .node("c", |_s, _ctx| async move { Ok(log("c")) })
        .edge(START, "a")
        .edge("a", "b")
        .edge("b", "c")
        .edge("c", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_is_chosen_per_run_then_per_graph_then_for_the_engine() {
    let db = TestDb::new().await;
    let persister = PersisterConfig::default().retention(Retention::KeepAll);
    let engine = Engine::start(EngineConfig::new().store(db.store()).persister(persister)).await.unwrap();
    engine.register(chain("plain")).unwrap();
    engine.register_with(chain("quick"), Durability::Exit).unwrap();
    let user = || UserContext::new("u");
    let sync = engine.start_run("plain", &Doc::default(), user()).await.unwrap();
    let asynchronous = engine
        .start_run_with("plain", &Doc::default(), user(), RunOptions::new().durability(Durability::Async))
        .await
        .unwrap();
    let exit = engine.start_run("quick", &Doc::default(), user()).await.unwrap();
    let sync_over_graph = engine
        .start_run_with("quick", &Doc::default(), user(), RunOptions::new().durability(Durability::Sync))
        .await
        .unwrap();
    let cases = [(sync, "sync", 3), (asynchronous, "async", 3), (exit, "exit", 1), (sync_over_graph, "sync", 3)];
    for (run, _, _) in cases {
        let done = engine.wait(run).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed);
        let output: Doc = serde_json::from_value(done.output.unwrap()).unwrap();
        assert_eq!(output.log, ["a", "b", "c"]);
    }
    engine.shutdown().await.unwrap();
    for (run, durability, checkpoints) in cases {
        let row = db.client.query_one("SELECT durability FROM runs WHERE id = $1", &[&run]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), durability);
        let stored = db.count("SELECT count(*) FROM checkpoints WHERE run_id = $1", &[&run]).await;
        assert_eq!(stored, checkpoints, "{durability} run {run}");
    }
    db.drop().await;
}
