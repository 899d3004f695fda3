//! Issue 11, item 4: a stored row that does not decode (a number serde_json cannot read,
//! a wrong type, a bad column) never fails a listing or start-up. Its unreadable values
//! come back as a string saying so, its run resumed fails with that reason; a row that
//! cannot make a run at all is left out of listings and recovery, with a warning.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::TestDb;
use graphloop_core::{GraphBuilder, Reducer, Update, END, START};
use graphloop_runtime::{Engine, EngineConfig, RunQuery, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Doc {
    x: f64,
    log: Vec<String>,
}

fn graph() -> graphloop_core::Graph<Doc> {
    GraphBuilder::<Doc>::new("g")
        .node("one", |_s, _ctx| async move { Ok(Update::new().set("log", ["one"])) })
        .edge(START, "one")
        .edge("one", END)
        .reducer("log", Reducer::append())
        .compile()
        .unwrap()
}

/// Inserts a run row of user `u` directly, as an older process (or another writer) left it.
async fn insert(db: &TestDb, status: &str, version: i32, roles: &str, input: &str, output: Option<&str>) -> Uuid {
    let id = Uuid::now_v7();
    let finished = matches!(status, "completed" | "failed" | "cancelled");
    db.client
        .execute(
            "INSERT INTO runs (id, graph, graph_version, user_id, roles, status, input, output, created_at, updated_at,
                               finished_at)
             VALUES ($1, 'g', $2, 'u', $3::text::jsonb, $4, $5::text::jsonb, $6::text::jsonb, now(), now(),
                     CASE WHEN $7 THEN now() END)",
            &[&id, &version, &roles, &status, &input, &output, &finished],
        )
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_and_recovery_survive_rows_that_do_not_decode() {
    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(graph()).unwrap();
    let fine = engine.start_run("g", &Doc::default(), graphloop_core::UserContext::new("u")).await.unwrap();
    assert_eq!(engine.wait(fine).await.unwrap().status, RunStatus::Completed);
    engine.shutdown().await.unwrap();

    // Out of f64's range: no reader can make it a float.
    let unreadable_input = insert(&db, "queued", 1, "[]", r#"{"x": 1e400}"#, None).await;
    // The number of issue 11 (PostgreSQL keeps it as a 309-digit decimal), and an
    // output that cannot be read.
    let big_number = r#"{"x": 1.7976931348623157e308}"#;
    let unreadable_output = insert(&db, "completed", 1, "[]", big_number, Some(r#"{"x": -1e400}"#)).await;
    let resumable = insert(&db, "interrupted", 1, "[]", big_number, None).await;
    let bad_roles = insert(&db, "completed", 1, "[1, 2]", "{}", Some("{}")).await;
    // Cannot make a run at all (a negative graph version).
    let no_run = insert(&db, "queued", -1, "[]", "{}", None).await;

    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(graph()).unwrap();
    let mut resumed = engine.recover().await.expect("recovery does not fail for a bad row");
    resumed.sort();
    assert_eq!(resumed, vec![unreadable_input, resumable], "the row that makes no run is left out");

    let failed = engine.wait(unreadable_input).await.unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    let reason = failed.error.unwrap().to_string();
    assert!(reason.contains("cannot read back the stored input") && reason.contains("out of range"), "{reason}");
    let completed = engine.wait(resumable).await.unwrap();
    assert_eq!(completed.status, RunStatus::Completed);
    assert_eq!(completed.output.unwrap()["x"], f64::MAX);

    let listed = engine.list_runs(RunQuery::for_user("u")).await.expect("the listing does not fail for a bad row");
    let ids: Vec<Uuid> = listed.iter().map(|run| run.id).collect();
    assert_eq!(ids, vec![bad_roles, resumable, unreadable_output, unreadable_input, fine]);
    let run = |id: Uuid| listed.iter().find(|run| run.id == id).unwrap();
    assert_eq!(run(unreadable_output).input["x"], f64::MAX);
    let Some(Value::String(output)) = &run(unreadable_output).output else {
        panic!("an unreadable output comes back as a string saying so: {:?}", run(unreadable_output).output)
    };
    assert!(output.contains("cannot read back the stored output") && output.contains(r#"{"x": -1000000"#), "{output}");
    assert!(run(bad_roles).user.roles.is_empty(), "roles that cannot be read grant nothing");

    // Reading the one run that makes no record fails that read only.
    assert!(engine.status(no_run).await.is_err());
    assert_eq!(engine.status(fine).await.unwrap().run.status, RunStatus::Completed);

    engine.shutdown().await.unwrap();
    db.drop().await;
}
