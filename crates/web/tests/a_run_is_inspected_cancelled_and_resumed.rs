//! `GET /runs/{id}` shows a running run with the tasks in flight; `cancel` ends a running
//! run (202) and is 409 for one that has ended; `resume` answers a waiting run (202) and
//! is 409 for one that is not waiting; a run id that is not a UUID is 400 everywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use actix_web::http::{header, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::App;
use common::{call, get, post, start, started, Harness, ALICE};
use graphloop_runtime::RunStatus;
use graphloop_web::{routes, RunView};
use serde_json::json;

#[actix_web::test]
async fn a_running_run_shows_its_tasks_and_cancel_ends_it() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let run = started(call(&app, start(ALICE, "gated", json!({})).to_request()).await);
    h.entered().await;

    let (status, body) = call(&app, get(&format!("/runs/{}", run.id), Some(ALICE)).to_request()).await;
    assert_eq!(status, StatusCode::OK);
    let running: RunView = serde_json::from_value(body).unwrap();
    assert_eq!((running.status, running.tasks.as_slice()), (RunStatus::Running, ["wait".to_owned()].as_slice()));
    assert!(running.started_at.is_some() && running.finished_at.is_none() && running.output.is_none());
    assert!(running.percent < 100.0);

    let (status, body) =
        call(&app, post(&format!("/runs/{}/cancel", run.id), Some(ALICE), json!({})).to_request()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(serde_json::from_value::<RunView>(body).unwrap().id, run.id);
    assert_eq!(h.engine.wait(run.id).await.unwrap().status, RunStatus::Cancelled);

    let (status, body) =
        call(&app, post(&format!("/runs/{}/cancel", run.id), Some(ALICE), json!({})).to_request()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({"error": "run_finished", "reason": format!("run {} is cancelled already", run.id), "status": "cancelled"})
    );
    let (_, body) = call(&app, get(&format!("/runs/{}", run.id), Some(ALICE)).to_request()).await;
    let cancelled: RunView = serde_json::from_value(body).unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());
    h.shutdown().await;
}

#[actix_web::test]
async fn cancelling_a_completed_run_is_409_with_its_status() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let run = started(call(&app, start(ALICE, "double", json!({"n": 1})).to_request()).await);
    h.engine.wait(run.id).await.unwrap();
    // A body is not needed.
    let cancel =
        TestRequest::post().uri(&format!("/runs/{}/cancel", run.id)).insert_header((header::AUTHORIZATION, ALICE));
    let (status, body) = call(&app, cancel.to_request()).await;
    assert_eq!(
        (status, &body["error"], &body["status"]),
        (StatusCode::CONFLICT, &json!("run_finished"), &json!("completed"))
    );
    h.shutdown().await;
}

#[actix_web::test]
async fn a_waiting_run_is_resumed_with_its_answer_and_a_run_not_waiting_is_409() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let run = started(call(&app, start(ALICE, "approval", json!({})).to_request()).await);
    assert_eq!(h.engine.wait(run.id).await.unwrap().status, RunStatus::Waiting);
    let (_, body) = call(&app, get(&format!("/runs/{}", run.id), Some(ALICE)).to_request()).await;
    assert_eq!(body["status"], "waiting");

    let resume = |answer| post(&format!("/runs/{}/resume", run.id), Some(ALICE), answer);
    for (payload, needle) in
        [(json!({}), "missing field `answer`"), (json!({"answer": "yes", "extra": 1}), "unknown field `extra`")]
    {
        let (status, body) = call(&app, resume(payload).to_request()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["reason"].as_str().unwrap().contains(needle), "{body}");
    }

    let (status, body) = call(&app, resume(json!({"answer": "ship it"})).to_request()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(serde_json::from_value::<RunView>(body).unwrap().id, run.id);
    let done = h.engine.wait(run.id).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.output.unwrap()["log"], json!(["review: ship it"]));

    let (status, body) = call(&app, resume(json!({"answer": "again"})).to_request()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({
            "error": "not_waiting",
            "reason": format!("run {} is completed, not waiting for an answer", run.id),
            "status": "completed",
        })
    );
    h.shutdown().await;
}

#[actix_web::test]
async fn resuming_a_running_run_is_409() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let run = started(call(&app, start(ALICE, "gated", json!({})).to_request()).await);
    h.entered().await;
    let (status, body) =
        call(&app, post(&format!("/runs/{}/resume", run.id), Some(ALICE), json!({"answer": 1})).to_request()).await;
    assert_eq!(
        (status, &body["error"], &body["status"]),
        (StatusCode::CONFLICT, &json!("not_waiting"), &json!("running"))
    );
    h.release();
    assert_eq!(h.engine.wait(run.id).await.unwrap().status, RunStatus::Completed);
    h.shutdown().await;
}

#[actix_web::test]
async fn a_run_id_that_is_not_a_uuid_is_400() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    for req in [
        get("/runs/not-a-uuid", Some(ALICE)),
        get("/runs/not-a-uuid/events", Some(ALICE)),
        post("/runs/not-a-uuid/cancel", Some(ALICE), json!({})),
        post("/runs/not-a-uuid/resume", Some(ALICE), json!({"answer": 1})),
    ] {
        let (status, body) = call(&app, req.to_request()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"error": "bad_request", "reason": "`id` must be a run id (a UUID), not `not-a-uuid`"}));
    }
    h.shutdown().await;
}
