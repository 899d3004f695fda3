//! `POST /runs` starts a run and answers 201 with its view; what it cannot start gets the
//! status that says why: an unknown graph 404, input the graph rejects 422, a body that is
//! not the request 400 (415 if not JSON at all, 413 if too large), a retried idempotency
//! key 200 with the first run (409 if the request differs), a full admission queue 503
//! with `Retry-After`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use actix_web::http::{header, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::App;
use common::{call, get, post, start, started, within, Harness, ALICE};
use graphloop_runtime::{EngineConfig, RunStatus};
use graphloop_web::{routes, RunView};
use serde_json::{json, Value};

fn is_rfc3339_utc(text: &str) -> bool {
    // 2024-05-01T12:34:56.789Z
    let b = text.as_bytes();
    b.len() == 24
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b[19] == b'.'
        && b[23] == b'Z'
        && b.iter().enumerate().all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit())
}

#[actix_web::test]
async fn a_started_run_is_answered_201_with_its_view_and_location_and_runs_to_completion() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let response = test::call_service(&app, start(ALICE, "double", json!({"n": 20})).to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers().get(header::LOCATION).unwrap().to_str().unwrap().to_owned();
    let run: RunView = test::read_body_json(response).await;
    assert_eq!(location, format!("/runs/{}", run.id));
    assert_eq!((run.graph.as_str(), run.graph_version), ("double", 1));
    assert!(!run.status.is_terminal() || run.status == RunStatus::Completed, "{:?}", run.status);
    assert!(is_rfc3339_utc(&run.created_at), "{}", run.created_at);

    h.engine.wait(run.id).await.unwrap();
    let (status, body) = call(&app, get(&location, Some(ALICE)).to_request()).await;
    assert_eq!(status, StatusCode::OK);
    let done: RunView = serde_json::from_value(body.clone()).unwrap();
    assert_eq!((done.status, done.percent, done.step), (RunStatus::Completed, 100.0, 2), "{body}");
    assert_eq!(done.output.as_ref().unwrap()["n"], 41);
    assert_eq!(done.error, None);
    assert!(done.tasks.is_empty());
    for at in [done.started_at.as_deref().unwrap(), done.finished_at.as_deref().unwrap(), &done.updated_at] {
        assert!(is_rfc3339_utc(at), "{at}");
    }
    assert!(done.created_at <= done.finished_at.clone().unwrap(), "RFC 3339 in UTC sorts as time does");
    h.shutdown().await;
}

#[actix_web::test]
async fn an_unknown_graph_is_404_and_input_the_graph_rejects_is_422() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let (status, body) = call(&app, start(ALICE, "triple", json!({"n": 1})).to_request()).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"error": "graph_not_found", "reason": "no graph named `triple`"}))
    );

    for input in [json!({"n": "twenty"}), json!(20), json!(["n"])] {
        let (status, body) = call(&app, start(ALICE, "double", input.clone()).to_request()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input")),
            "{input}"
        );
        assert!(body["reason"].as_str().unwrap().starts_with("input for graph `double` is invalid"), "{body}");
    }
    h.shutdown().await;
}

#[actix_web::test]
async fn a_body_that_is_not_a_start_request_is_400_with_serdes_reason() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let raw = |payload: &'static str| {
        TestRequest::post()
            .uri("/runs")
            .insert_header((header::AUTHORIZATION, ALICE))
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(payload)
    };
    for (payload, needle) in [
        (r#"{"graph": "double", "input": "#, "EOF while parsing"),
        (r#"{"graph": 7, "input": {}}"#, "invalid type: integer `7`, expected a string"),
        (r#"{"input": {}}"#, "missing field `graph`"),
        (r#"{"graph": "double"}"#, "missing field `input`"),
        (r#"{"graph": "double", "input": {}, "idempotencyKey": "k"}"#, "unknown field `idempotencyKey`"),
        ("", "EOF while parsing"),
    ] {
        let (status, body) = call(&app, raw(payload).to_request()).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{payload}");
        let reason = body["reason"].as_str().unwrap();
        assert!(reason.starts_with("the JSON body is invalid: ") && reason.contains(needle), "{payload}: {reason}");
    }

    let not_json =
        TestRequest::post().uri("/runs").insert_header((header::AUTHORIZATION, ALICE)).set_payload("graph=double");
    let (status, body) = call(&app, not_json.to_request()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type")));
    h.shutdown().await;
}

#[actix_web::test]
async fn a_body_over_the_limit_is_413_by_default_at_one_mebibyte_or_as_configured() {
    let h = Harness::start().await;
    let big = |bytes: usize| json!({"graph": "double", "input": {"n": 1, "log": ["x".repeat(bytes)]}});

    let default = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let (status, body) = call(&default, start_with(big(1024 * 1024)).to_request()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body,
        json!({"error": "payload_too_large", "reason": "the request body is larger than the limit of 1048576 bytes"})
    );
    // Just under the limit is fine.
    let run = started(call(&default, start_with(big(1024 * 1024 - 100)).to_request()).await);
    h.engine.wait(run.id).await.unwrap();

    let small = test::init_service(App::new().configure(routes(h.engine.clone(), h.config().body_limit(256)))).await;
    let (status, body) = call(&small, start_with(big(300)).to_request()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
    let (status, _) = call(
        &small,
        post("/runs/00000000-0000-0000-0000-000000000000/resume", Some(ALICE), json!({"answer": "x".repeat(300)}))
            .to_request(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    h.shutdown().await;
}

fn start_with(body: Value) -> TestRequest {
    post("/runs", Some(ALICE), body)
}

#[actix_web::test]
async fn a_retried_start_with_the_same_idempotency_key_returns_the_first_run() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let request = json!({"graph": "double", "input": {"n": 1}, "idempotency_key": "order-17"});
    let first = started(call(&app, start_with(request.clone()).to_request()).await);
    let (status, body) = call(&app, start_with(request.clone()).to_request()).await;
    assert_eq!(status, StatusCode::OK, "a retry is not a new run: {body}");
    assert_eq!(body["id"], json!(first.id));
    // The same key for another request is a conflict, not a silent answer about another run.
    let other = json!({"graph": "double", "input": {"n": 2}, "idempotency_key": "order-17"});
    let (status, body) = call(&app, start_with(other).to_request()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("idempotency_key_reused")));
    // Keys are per user: Bob's order-17 is his own run.
    let (status, body) = call(&app, post("/runs", Some(common::BOB), request).to_request()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(body["id"], json!(first.id));
    let (status, _) =
        call(&app, start_with(json!({"graph": "double", "input": {}, "idempotency_key": ""})).to_request()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(h.engine.stats().await.unwrap().supervisor.started, 2, "one run each for Alice and Bob");
    h.shutdown().await;
}

#[actix_web::test]
async fn a_full_admission_queue_is_503_with_retry_after() {
    let h = Harness::with(EngineConfig::new().max_running(1).queue_capacity(0)).await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let first = started(call(&app, start(ALICE, "gated", json!({})).to_request()).await);
    h.entered().await;

    let response = test::call_service(&app, start(ALICE, "double", json!({"n": 1})).to_request()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap().to_str().unwrap(), "5");
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["error"], "overloaded");
    assert!(body["reason"].as_str().unwrap().contains("queue capacity 0"), "{body}");

    h.release();
    h.engine.wait(first.id).await.unwrap();
    // `wait` returns once the run's end is stored, which may be before the supervisor has
    // freed its slot; its arbiter is reaped only after that.
    within(h.engine.wait_for_arbiters(0)).await.unwrap();
    started(call(&app, start(ALICE, "double", json!({"n": 1})).to_request()).await);
    h.shutdown().await;
}
