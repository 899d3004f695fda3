//! Every run route answers 401, with `WWW-Authenticate: Bearer` and a JSON reason, to a
//! caller without credentials or with a token nobody issued, before looking at the rest of
//! the request. `/health` answers anyone, unless the configuration says otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use actix_web::http::{header, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::App;
use common::{call, get, post, Harness};
use graphloop_web::routes;
use serde_json::json;

#[actix_web::test]
async fn every_run_route_refuses_a_caller_without_a_token_or_with_a_wrong_one() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let id = uuid::Uuid::now_v7();
    let routes = |authorization: Option<&'static str>| {
        let body = json!({"graph": "double", "input": {"n": 1}});
        vec![
            post("/runs", authorization, body),
            get("/runs", authorization),
            get(&format!("/runs/{id}"), authorization),
            get(&format!("/runs/{id}/events"), authorization),
            post(&format!("/runs/{id}/cancel"), authorization, json!({})),
            post(&format!("/runs/{id}/resume"), authorization, json!({"answer": "yes"})),
        ]
    };

    for (authorization, challenge) in [
        (None, "Bearer"),
        (Some("Bearer not-a-token"), r#"Bearer error="invalid_token""#),
        (Some("Basic YWxpY2U6YWxpY2U="), r#"Bearer error="invalid_token""#),
    ] {
        for req in routes(authorization) {
            let response = test::call_service(&app, req.to_request()).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{authorization:?}");
            let www = response.headers().get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap().to_owned();
            assert_eq!(www, challenge);
            let body: serde_json::Value = test::read_body_json(response).await;
            assert_eq!(body["error"], "unauthorized");
            assert!(!body["reason"].as_str().unwrap().is_empty(), "{body}");
        }
    }
    // No run was started by any of them.
    let stats = h.engine.stats().await.unwrap().supervisor;
    assert_eq!((stats.started, stats.running, stats.queued), (0, 0, 0));
    h.shutdown().await;
}

#[actix_web::test]
async fn identity_is_checked_before_the_body_is_read() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let malformed = TestRequest::post()
        .uri("/runs")
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload("{\"graph\":");
    let (status, body) = call(&app, malformed.to_request()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    h.shutdown().await;
}

#[actix_web::test]
async fn health_answers_anyone_by_default_and_only_identified_callers_when_configured() {
    let h = Harness::start().await;
    let open = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let (status, body) = call(&open, get("/health", None).to_request()).await;
    assert_eq!((status, &body["status"], &body["reasons"]), (StatusCode::OK, &json!("healthy"), &json!([])));

    let config = h.config().health_requires_identity(true);
    let private = test::init_service(App::new().configure(routes(h.engine.clone(), config))).await;
    let (status, body) = call(&private, get("/health", None).to_request()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (status, _) = call(&private, get("/health", Some("Bearer wrong")).to_request()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&private, get("/health", Some(common::ALICE)).to_request()).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("healthy")));
    h.shutdown().await;
}
