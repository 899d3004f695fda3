//! `GET /metrics` renders the installed Prometheus recorder: after a run, its counters and
//! its steps' durations are there, open to callers without a token unless the service
//! says otherwise.
//!
//! A global recorder is per process, so this file holds a single test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use actix_web::http::{header, StatusCode};
use actix_web::test;
use actix_web::App;
use common::{call, get, within, Harness, ALICE};
use graphloop_web::routes;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

#[actix_web::test]
async fn metrics_show_a_finished_runs_counters_and_step_durations() {
    let handle = PrometheusBuilder::new().install_recorder().expect("the only recorder of this test process");
    graphloop_runtime::describe_metrics();
    let h = Harness::start().await;
    let app =
        test::init_service(App::new().configure(routes(h.engine.clone(), h.config().metrics(handle.clone())))).await;

    let run = common::started(call(&app, common::start(ALICE, "double", json!({"n": 20})).to_request()).await);
    within(h.engine.wait(run.id)).await.unwrap();
    // The supervisor hears of a run's end just after its final row is written; a
    // shutdown returns once it has heard of every run. `/metrics` reads only the
    // recorder, so it still answers.
    h.engine.shutdown().await.unwrap();

    let response = test::call_service(&app, get("/metrics", None).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get(header::CONTENT_TYPE).unwrap().to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
    for line in [
        r#"graphloop_runs_started_total{graph="double"} 1"#,
        r#"graphloop_runs_ended_total{graph="double",status="completed"} 1"#,
        r#"graphloop_step_duration_seconds_count{graph="double",node="double"} 1"#,
        r#"graphloop_step_duration_seconds_count{graph="double",node="increment"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no line `{line}` in:\n{text}");
    }
    assert!(!text.contains(&run.id.to_string()), "a run id is never a label");

    // Behind the same switch as `/health`.
    let private = test::init_service(
        App::new().configure(routes(h.engine.clone(), h.config().metrics(handle).health_requires_identity(true))),
    )
    .await;
    let (status, body) = call(&private, get("/metrics", None).to_request()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let response = test::call_service(&private, get("/metrics", Some(ALICE)).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);

    // Without a handle: 404, saying why.
    let without = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let (status, body) = call(&without, get("/metrics", None).to_request()).await;
    assert_eq!((status, body["reason"].as_str()), (StatusCode::NOT_FOUND, Some("metrics are not enabled")), "{body}");
}
