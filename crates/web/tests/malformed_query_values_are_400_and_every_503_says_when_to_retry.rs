//! Issue 11: `GET /runs?graph=%00` answered 503 "store unavailable": PostgreSQL refuses a
//! NUL character in text, and that refusal was reported as an outage, inviting retries.
//! A value the store cannot take is the caller's mistake: 400 in the documented error
//! shape, naming the parameter. And a 503 (the engine stopping, its store down, admission
//! full) always says when to try again, with `Retry-After`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use actix_web::http::{header, StatusCode};
use actix_web::test;
use actix_web::App;
use common::{call, database_url, drop_schema, get, post, start, started, Harness, ALICE};
use graphloop_postgres::PgStoreConfig;
use graphloop_runtime::EngineConfig;
use graphloop_web::{routes, RunPage};
use serde_json::json;

#[actix_web::test]
async fn query_values_postgresql_cannot_take_are_400_naming_the_parameter() {
    // A schema of its own (the store creates it), so tests run in parallel.
    let schema = format!("glweb_{}", uuid::Uuid::now_v7().simple());
    let store = PgStoreConfig::new(database_url()).schema(&schema).pool_size(2);
    let h = Harness::with(EngineConfig::new().store(store)).await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let run = started(call(&app, start(ALICE, "double", json!({"n": 1})).to_request()).await);
    h.engine.wait(run.id).await.unwrap();

    let long = "g".repeat(256);
    for (uri, needle) in [
        ("/runs?graph=%00".to_owned(), "`graph` must not contain a NUL character"),
        ("/runs?graph=double%00".to_owned(), "`graph` must not contain a NUL character"),
        (format!("/runs?graph={long}"), "`graph` must be at most 255 bytes, not 256"),
        ("/runs?status=%00".to_owned(), "`status` must be one of"),
        ("/runs?before=%00".to_owned(), "`before` must be a run id"),
        ("/runs?limit=%00".to_owned(), "`limit` must be a whole number"),
    ] {
        let (status, body) = call(&app, get(&uri, Some(ALICE)).to_request()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"], "bad_request", "{uri}: {body}");
        assert!(body["reason"].as_str().unwrap().contains(needle), "{uri}: {body}");
    }

    // An idempotency key is looked up in the store too.
    let keyed = json!({"graph": "double", "input": {"n": 2}, "idempotency_key": "k\u{0}1"});
    let (status, body) = call(&app, post("/runs", Some(ALICE), keyed).to_request()).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("bad_request")), "{body}");
    assert!(body["reason"].as_str().unwrap().contains("`idempotency_key` must not contain a NUL"), "{body}");

    // A filter the store can take still reaches it and finds the run.
    let (status, body) = call(&app, get("/runs?graph=double", Some(ALICE)).to_request()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page: RunPage = serde_json::from_value(body).unwrap();
    assert_eq!(page.runs.iter().map(|r| r.id).collect::<Vec<_>>(), [run.id]);

    h.shutdown().await;
    drop_schema(&schema).await;
}

#[actix_web::test]
async fn a_stopped_engine_answers_503_with_retry_after() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let run = started(call(&app, start(ALICE, "double", json!({"n": 1})).to_request()).await);
    h.engine.wait(run.id).await.unwrap();
    h.engine.shutdown().await.unwrap();

    for uri in ["/runs".to_owned(), format!("/runs/{}", run.id)] {
        let response = test::call_service(&app, get(&uri, Some(ALICE)).to_request()).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(retry_after.as_deref(), Some("5"), "{uri}");
        let body: serde_json::Value = serde_json::from_slice(&test::read_body(response).await).unwrap();
        assert_eq!(body["error"], "unavailable", "{uri}: {body}");
        assert!(body["reason"].is_string(), "{uri}: {body}");
    }
    let (status, body) = call(&app, start(ALICE, "double", json!({"n": 2})).to_request()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
