//! `GET /runs/{id}/events` is Server-Sent Events: every stored event exactly once, in seq
//! order, each with `id: <seq>` and `event: <kind>`, from the start, from `?from=N` or
//! after `Last-Event-ID`; then the run's live events until it ends, with progress ticks
//! (`event: progress`, no `id`) in between.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use actix_web::http::{header, StatusCode};
use actix_web::test;
use actix_web::App;
use common::{call, frames, get, start, started, FrameReader, Harness, ALICE};
use graphloop_runtime::{EventRecord, RunStatus};
use graphloop_web::routes;
use serde_json::json;

#[actix_web::test]
async fn a_completed_runs_stream_holds_every_stored_event_once_in_order_ending_at_100_percent() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let run = started(call(&app, start(ALICE, "double", json!({"n": 1})).to_request()).await);
    h.engine.wait(run.id).await.unwrap();
    let stored = h.engine.events(run.id, 1, 1_000).await.unwrap();

    let response = test::call_service(&app, get(&format!("/runs/{}/events", run.id), Some(ALICE)).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "text/event-stream");
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-cache");
    let frames = frames(&test::read_body(response).await);

    assert_eq!(
        frames.iter().map(|f| f.id).collect::<Vec<_>>(),
        (1..=stored.len() as u64).map(Some).collect::<Vec<_>>()
    );
    for (frame, stored) in frames.iter().zip(&stored) {
        let record: EventRecord = serde_json::from_value(frame.data.clone()).unwrap();
        assert_eq!(&record, stored, "the data is the stored event");
        assert_eq!(frame.event, record.event.kind.name());
    }
    let last = frames.last().unwrap();
    assert_eq!((last.event.as_str(), last.data["event"]["percent"].as_f64()), ("run_completed", Some(100.0)));
    assert_eq!(frames.first().unwrap().event, "run_started");
    h.shutdown().await;
}

#[actix_web::test]
async fn a_reconnect_goes_on_after_last_event_id_and_from_picks_the_first_seq() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let run = started(call(&app, start(ALICE, "double", json!({"n": 1})).to_request()).await);
    h.engine.wait(run.id).await.unwrap();
    let total = h.engine.events(run.id, 1, 1_000).await.unwrap().len() as u64;
    assert!(total > 4);
    let uri = format!("/runs/{}/events", run.id);

    for (last_event_id, query, first) in [
        (Some("3"), "", 4),
        (None, "?from=2", 2),
        (Some("3"), "?from=2", 4),
        (Some(" 1 "), "", 2),
        (None, "?from=0", 1),
    ] {
        let mut req = get(&format!("{uri}{query}"), Some(ALICE));
        if let Some(last) = last_event_id {
            req = req.insert_header(("Last-Event-ID", last));
        }
        let response = test::call_service(&app, req.to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let ids: Vec<_> = frames(&test::read_body(response).await).iter().map(|f| f.id.unwrap()).collect();
        assert_eq!(ids, (first..=total).collect::<Vec<_>>(), "{last_event_id:?} {query}");
    }

    // After the last event: nothing left, and the stream ends.
    let req = get(&uri, Some(ALICE)).insert_header(("Last-Event-ID", total.to_string()));
    let response = test::call_service(&app, req.to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The run has ended: the engine's replay ends at its final event, which was seen.
    assert!(frames(&test::read_body(response).await).is_empty());
    h.shutdown().await;
}

#[actix_web::test]
async fn a_bad_last_event_id_or_from_is_400() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let run = started(call(&app, start(ALICE, "double", json!({"n": 1})).to_request()).await);
    h.engine.wait(run.id).await.unwrap();
    let uri = format!("/runs/{}/events", run.id);
    for last in ["abc", "-1", "1.5", "", "18446744073709551615"] {
        let req = get(&uri, Some(ALICE)).insert_header(("Last-Event-ID", last));
        let (status, body) = call(&app, req.to_request()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{last:?}");
        assert!(body["reason"].as_str().unwrap().contains("`Last-Event-ID` must be"), "{body}");
    }
    let (status, body) = call(&app, get(&format!("{uri}?from=first"), Some(ALICE)).to_request()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    h.shutdown().await;
}

#[actix_web::test]
async fn a_running_run_is_followed_live_with_progress_ticks_that_carry_no_id() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let run = started(call(&app, start(ALICE, "gated", json!({})).to_request()).await);
    h.entered().await;

    let response = test::call_service(&app, get(&format!("/runs/{}/events", run.id), Some(ALICE)).to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = FrameReader::new(response);
    let mut seen = Vec::new();
    // The node is at its first gate: its step has started.
    loop {
        let frame = reader.next().await.expect("the stream ended before the step started");
        seen.push(frame.clone());
        if frame.event == "step_started" {
            break;
        }
    }
    // One permit: the node reports progress, then waits at its second gate.
    h.gate.add_permits(1);
    let progress = loop {
        let frame = reader.next().await.expect("the stream ended before the progress tick");
        if frame.event == "progress" {
            break frame;
        }
        seen.push(frame);
    };
    assert_eq!(progress.id, None);
    assert_eq!(progress.data["run_id"], json!(run.id));
    assert_eq!((progress.data["kind"].as_str(), progress.data["task"].as_str()), (Some("node_progress"), Some("wait")));
    assert_eq!((progress.data["fraction"].as_f64(), progress.data["message"].as_str()), (Some(0.5), Some("halfway")));

    h.gate.add_permits(1);
    while let Some(frame) = reader.next().await {
        if frame.id.is_some() {
            seen.push(frame);
        }
    }
    assert_eq!(seen.iter().map(|f| f.id.unwrap()).collect::<Vec<_>>(), (1..=seen.len() as u64).collect::<Vec<_>>());
    assert_eq!(seen.last().unwrap().event, "run_completed");
    assert_eq!(h.engine.wait(run.id).await.unwrap().status, RunStatus::Completed);
    assert_eq!(h.engine.events(run.id, 1, 1_000).await.unwrap().len(), seen.len(), "every stored event, once");
    h.shutdown().await;
}
