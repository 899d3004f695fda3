//! Issue 11, item 4: what the API accepts reads back. Random inputs (awkward floats,
//! huge and negative integers, Unicode, NUL characters, nesting) go through `POST /runs`
//! into PostgreSQL and back: each is either refused with 422 naming the field, or
//! accepted, run to completion, and found again by a retry with the same idempotency key
//! (200, same run: the handler compares the stored input with the request's, so an input
//! the store changed would answer 409). Never a 500.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use actix_web::http::StatusCode;
use actix_web::test;
use actix_web::App;
use common::{call, database_url, drop_schema, post, within, Harness, ALICE};
use graphloop_postgres::PgStoreConfig;
use graphloop_runtime::{EngineConfig, RunStatus};
use graphloop_web::routes;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        prop_oneof![Just(f64::MAX), Just(f64::MIN_POSITIVE), Just(5e-324), Just(-0.0), Just(1e300)]
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        "[a-z\u{0}é😀]{0,6}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z\u{0}]{0,4}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

#[actix_web::test]
async fn every_input_is_refused_naming_its_field_or_read_back_unchanged() {
    let schema = format!("glweb_{}", uuid::Uuid::now_v7().simple());
    let store = PgStoreConfig::new(database_url()).schema(&schema).pool_size(2);
    let h = Harness::with(EngineConfig::new().store(store)).await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;

    let (db, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut runner = TestRunner::deterministic();
    let strategy = value();
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..120 {
        let x = strategy.new_tree(&mut runner).unwrap().current();
        let body = json!({"graph": "double", "input": {"n": 1, "x": x}, "idempotency_key": format!("fuzz-{case}")});
        let (status, answer) = call(&app, post("/runs", Some(ALICE), body.clone()).to_request()).await;
        match status {
            StatusCode::CREATED => {
                accepted += 1;
                let id: uuid::Uuid = serde_json::from_value(answer["id"].clone()).unwrap();
                let done = within(h.engine.wait(id)).await.unwrap();
                assert_eq!(done.status, RunStatus::Completed, "case {case}: {x}");
                // Read back from the store: the run's row, compared with the request.
                let (status, again) = call(&app, post("/runs", Some(ALICE), body).to_request()).await;
                assert_eq!(status, StatusCode::OK, "case {case}: a retry of an accepted input {x}: {again}");
                assert_eq!(again["id"], answer["id"], "case {case}");
                assert_eq!(done.input["x"], x, "case {case}: the run's input differs from the one accepted");
                // And the row itself, read back as the store reads it.
                let row =
                    db.query_one(&format!("SELECT input FROM {schema}.runs WHERE id = $1"), &[&id]).await.unwrap();
                let stored: Value = row.get(0);
                assert_eq!(stored["x"], x, "case {case}: the stored input differs from the one accepted");
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                refused += 1;
                let reason = answer["reason"].as_str().unwrap_or_default();
                assert!(reason.contains("input.x"), "case {case}: the refusal must name the field: {answer}");
            }
            other => panic!("case {case}: {other} for input {x}: {answer}"),
        }
    }
    assert!(accepted > 0 && refused > 0, "the inputs covered both outcomes: {accepted} accepted, {refused} refused");
    h.shutdown().await;
    drop(db);
    let _ = connection.await;
    drop_schema(&schema).await;
}
