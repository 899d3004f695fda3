//! An idempotency key is stored with its run: a retried start in a later process (after a
//! restart, or on another worker sharing the database) returns the run the first start
//! made instead of starting another, and the key belongs to its user.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{eight_nodes, Doc, TestDb};
use graphloop::{Engine, EngineConfig, RunOptions, RunStatus, UserContext};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_run_across_processes() {
    let db = TestDb::new().await;
    let key = || RunOptions::new().idempotency_key("invoice-2026-0042");

    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(eight_nodes()).unwrap();
    let first = engine.submit("eight", &Doc::default(), UserContext::new("alice"), key()).await.unwrap();
    assert!(first.created);
    assert_eq!(engine.wait(first.id).await.unwrap().status, RunStatus::Completed);
    engine.shutdown().await.unwrap();

    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(eight_nodes()).unwrap();
    let retried = engine.submit("eight", &Doc::default(), UserContext::new("alice"), key()).await.unwrap();
    assert_eq!((retried.id, retried.created), (first.id, false));
    let bobs = engine.submit("eight", &Doc::default(), UserContext::new("bob"), key()).await.unwrap();
    assert!(bobs.created && bobs.id != first.id);
    engine.wait(bobs.id).await.unwrap();
    engine.shutdown().await.unwrap();

    assert_eq!(db.count("SELECT count(*) FROM runs WHERE idempotency_key = 'invoice-2026-0042'", &[]).await, 2);
    db.drop().await;
}
