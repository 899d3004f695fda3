//! `GET /openapi.json` serves the OpenAPI document, and the document cannot drift from the
//! routes: every operation it lists is called here and answers with a status the
//! document lists for it (a route missing from the router would answer the router's bare
//! 404, which no operation documents without a JSON error body), and every route the
//! crate mounts is in it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use common::{call, Harness, ALICE};
use graphloop_web::{openapi, routes};
use serde_json::{json, Value};

#[actix_web::test]
async fn every_documented_operation_answers_as_documented() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;

    let (status, _) = call(&app, TestRequest::get().uri("/openapi.json").to_request()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the document is for identified callers");
    let request = TestRequest::get().uri("/openapi.json").insert_header(("Authorization", ALICE));
    let (status, served) = call(&app, request.to_request()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, openapi());
    assert_eq!(served["openapi"], "3.1.0");

    // A finished run of Alice's, so that every path with an id has something to find.
    let (_, run) = call(&app, common::start(ALICE, "double", json!({"n": 1})).to_request()).await;
    let id = run["id"].as_str().unwrap().to_owned();
    h.engine.wait(id.parse().unwrap()).await.unwrap();

    let paths = served["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let uri = path.replace("{id}", &id);
            let req = match method.as_str() {
                "get" => TestRequest::get(),
                "post" => TestRequest::post(),
                other => panic!("undocumented method {other}"),
            };
            let mut req = req.uri(&uri).insert_header(("Authorization", ALICE));
            if let Some(body) = operation.get("requestBody") {
                let schema = body["content"]["application/json"]["schema"]["$ref"].as_str().unwrap();
                let body: Value = match schema {
                    "#/components/schemas/StartRun" => json!({"graph": "double", "input": {}}),
                    "#/components/schemas/Resume" => json!({"answer": "yes"}),
                    other => panic!("no example body for {other}"),
                };
                req = req.set_json(body);
            }
            let response = test::call_service(&app, req.to_request()).await;
            let status = response.status().as_u16().to_string();
            let documented = operation["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&status),
                "{method} {path} answered {status}, which the document does not list ({:?})",
                documented.keys().collect::<Vec<_>>()
            );
            let body = test::read_body(response).await;
            if status.starts_with('4') || status.starts_with('5') {
                let error: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                    panic!("{method} {path}: a {status} without a JSON error body ({e}): the route is not mounted?")
                });
                assert!(error["reason"].is_string(), "{method} {path}: {error}");
            }
            operations += 1;
        }
    }
    // Every route the crate mounts: POST/GET /runs, GET /runs/{id}, its events, cancel,
    // resume, /health, /metrics (404 here: this setup gives no Prometheus handle),
    // /openapi.json.
    assert_eq!(operations, 9, "the document lists {operations} operations");
    h.shutdown().await;
}
