//! `Engine::recover_where` resumes only the unfinished runs it selects and leaves the
//! others as they are: a tool sharing a database (the CLI) resumes its own graph's runs
//! for its own user, and never fails another application's runs of a graph it does not
//! know.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{log, Doc, TestDb};
use graphloop::{Engine, EngineConfig, GraphBuilder, RunStatus, UserContext, END, START};
use tokio::sync::Semaphore;

/// `first`, then `gate`, which (when `hang` is given) signals it has started and never ends.
fn gated(name: &str, hang: Option<Arc<Semaphore>>) -> graphloop::Graph<Doc> {
    GraphBuilder::<Doc>::new(name)
        .node("first", |_s, _ctx| async move { Ok(log("first")) })
        .node("gate", move |_s, _ctx| {
            let hang = hang.clone();
            async move {
                if let Some(entered) = hang {
                    entered.add_permits(1);
                    std::future::pending::<()>().await;
                }
                Ok(log("gate"))
            }
        })
        .edge(START, "first")
        .edge("first", "gate")
        .edge("gate", END)
        .compile()
        .unwrap()
}

async fn status(db: &TestDb, run: uuid::Uuid) -> String {
    db.client.query_one("SELECT status FROM runs WHERE id = $1", &[&run]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_can_be_limited_to_one_graph_and_user() {
    let db = TestDb::new().await;

    // Three runs left interrupted by a shutdown: (contracts, alice), (contracts, bob), (other, alice).
    let entered = Arc::new(Semaphore::new(0));
    let config = EngineConfig::new().store(db.store()).shutdown_timeout(Duration::from_millis(50));
    let engine = Engine::start(config).await.unwrap();
    engine.register(gated("contracts", Some(Arc::clone(&entered)))).unwrap();
    engine.register(gated("other", Some(Arc::clone(&entered)))).unwrap();
    let mine = engine.start_run("contracts", &Doc::default(), UserContext::new("alice")).await.unwrap();
    let bobs = engine.start_run("contracts", &Doc::default(), UserContext::new("bob")).await.unwrap();
    let other = engine.start_run("other", &Doc::default(), UserContext::new("alice")).await.unwrap();
    entered.acquire_many(3).await.unwrap().forget();
    engine.shutdown().await.unwrap();
    for run in [mine, bobs, other] {
        assert_eq!(status(&db, run).await, "interrupted");
    }

    // The next process knows only `contracts` and resumes alice's run of it alone.
    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(gated("contracts", None)).unwrap();
    let resumed = engine.recover_where(|run| run.graph == "contracts" && run.user.user_id == "alice").await.unwrap();
    assert_eq!(resumed, vec![mine]);
    assert_eq!(engine.wait(mine).await.unwrap().status, RunStatus::Completed);
    assert_eq!(status(&db, bobs).await, "interrupted", "another user's run is left alone");
    assert_eq!(status(&db, other).await, "interrupted", "a run of an unknown graph is left alone, not failed");

    // Plain `recover` takes the rest: bob's run resumes, the unknown graph's run fails.
    let mut resumed = engine.recover().await.unwrap();
    resumed.sort();
    assert_eq!(resumed, vec![bobs]);
    assert_eq!(engine.wait(bobs).await.unwrap().status, RunStatus::Completed);
    assert_eq!(engine.wait(other).await.unwrap().status, RunStatus::Failed);
    engine.shutdown().await.unwrap();
    db.drop().await;
}
