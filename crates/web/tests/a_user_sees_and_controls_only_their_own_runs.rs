//! Another user's run is answered 404, word for word like a run that does not exist, by
//! every route that names a run (inspect, events, cancel, resume), and it never shows in
//! their listing; their attempts change nothing about the run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use actix_web::http::StatusCode;
use actix_web::test;
use actix_web::App;
use common::{call, get, post, start, started, Harness, ALICE, BOB};
use graphloop_runtime::RunStatus;
use graphloop_web::{routes, RunPage, RunView};
use serde_json::{json, Value};
use uuid::Uuid;

/// The requests that name run `id`, for `authorization`.
fn naming(id: Uuid, authorization: &'static str) -> Vec<test::TestRequest> {
    vec![
        get(&format!("/runs/{id}"), Some(authorization)),
        get(&format!("/runs/{id}/events"), Some(authorization)),
        post(&format!("/runs/{id}/cancel"), Some(authorization), json!({})),
        post(&format!("/runs/{id}/resume"), Some(authorization), json!({"answer": "yes"})),
    ]
}

fn not_found(id: Uuid) -> (StatusCode, Value) {
    (StatusCode::NOT_FOUND, json!({"error": "run_not_found", "reason": format!("no run {id}")}))
}

#[actix_web::test]
async fn another_users_run_is_404_like_a_missing_one_and_stays_untouched() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let alices = started(call(&app, start(ALICE, "gated", json!({})).to_request()).await);
    h.entered().await;
    let waiting = started(call(&app, start(ALICE, "approval", json!({})).to_request()).await);
    assert_eq!(h.engine.wait(waiting.id).await.unwrap().status, RunStatus::Waiting);

    for id in [alices.id, waiting.id] {
        for req in naming(id, BOB) {
            assert_eq!(call(&app, req.to_request()).await, not_found(id));
        }
    }
    let missing = Uuid::now_v7();
    for req in naming(missing, ALICE) {
        assert_eq!(call(&app, req.to_request()).await, not_found(missing));
    }

    // Bob's cancel and resume did nothing: Alice's runs are as they were.
    let (status, body) = call(&app, get(&format!("/runs/{}", alices.id), Some(ALICE)).to_request()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_value::<RunView>(body).unwrap().status, RunStatus::Running);
    let (_, body) = call(&app, get(&format!("/runs/{}", waiting.id), Some(ALICE)).to_request()).await;
    assert_eq!(serde_json::from_value::<RunView>(body).unwrap().status, RunStatus::Waiting);

    // Bob's listing holds his run only.
    let bobs = started(call(&app, start(BOB, "double", json!({"n": 1})).to_request()).await);
    h.engine.wait(bobs.id).await.unwrap();
    let (status, body) = call(&app, get("/runs", Some(BOB)).to_request()).await;
    assert_eq!(status, StatusCode::OK);
    let page: RunPage = serde_json::from_value(body).unwrap();
    assert_eq!(page.runs.iter().map(|r| r.id).collect::<Vec<_>>(), [bobs.id]);

    h.release();
    assert_eq!(h.engine.wait(alices.id).await.unwrap().status, RunStatus::Completed);
    h.shutdown().await;
}
