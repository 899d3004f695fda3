//! Several engines on one schema: two starting at the same moment both apply (or wait
//! for) the migrations without error, a third one starting later finds them applied, and
//! each migration is recorded exactly once. Every engine then runs on the shared tables.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{eight_nodes, Doc, TestDb};
use graphloop::{Engine, EngineConfig, RunStatus, UserContext};

/// The migration files of the PostgreSQL store, counted now (not a number kept in sync
/// by hand).
fn migration_files() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/postgres/migrations");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_twice_and_concurrently_without_error() {
    let db = TestDb::new().await;
    let files = migration_files();
    assert!(!files.is_empty(), "the store has migrations");
    let tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1";
    assert_eq!(db.count(tables, &[&db.schema]).await, 0, "the schema starts empty");

    let (first, second) = tokio::join!(
        Engine::start(EngineConfig::new().store(db.store())),
        Engine::start(EngineConfig::new().store(db.store())),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    let history = "SELECT count(*) FROM refinery_schema_history";
    assert_eq!(db.count(history, &[]).await, files.len() as i64, "each migration applied once");
    let third = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    assert_eq!(db.count(history, &[]).await, files.len() as i64, "a later start applies nothing");

    // Each recorded version is one file's `V<version>__` prefix, and no version twice.
    let versions: Vec<i32> = db
        .client
        .query("SELECT version FROM refinery_schema_history ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut file_versions: Vec<i32> =
        files.iter().map(|name| name.trim_start_matches('V').split("__").next().unwrap().parse().unwrap()).collect();
    file_versions.sort_unstable();
    assert_eq!(versions, file_versions);
    for table in ["runs", "events", "checkpoints"] {
        let exists = "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2";
        assert_eq!(db.count(exists, &[&db.schema, &table]).await, 1, "table {table}");
    }

    let engines = [first, second, third];
    let mut runs = Vec::new();
    for (i, engine) in engines.iter().enumerate() {
        engine.register(eight_nodes()).unwrap();
        let n = i as u64 + 3;
        let run = engine.start_run("eight", &Doc { n, ..Doc::default() }, UserContext::new(format!("user-{i}"))).await;
        runs.push(run.unwrap());
    }
    for (engine, run) in engines.iter().zip(&runs) {
        assert_eq!(engine.wait(*run).await.unwrap().status, RunStatus::Completed, "run {run}");
    }
    for engine in &engines {
        engine.shutdown().await.unwrap();
    }
    for (i, run) in runs.iter().enumerate() {
        let row = db.client.query_one("SELECT status, user_id FROM runs WHERE id = $1", &[run]).await.unwrap();
        assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("completed".to_owned(), format!("user-{i}")));
        let last = db.count("SELECT max(seq) FROM events WHERE run_id = $1", &[run]).await;
        let count = db.count("SELECT count(*) FROM events WHERE run_id = $1", &[run]).await;
        assert!(count > 0 && last == count, "run {run}: {count} events, last seq {last}");
    }
    assert_eq!(db.count("SELECT count(*) FROM runs", &[]).await, engines.len() as i64);
    assert_eq!(db.count(history, &[]).await, files.len() as i64, "running applied nothing");
    db.drop().await;
}
