//! `GET /runs` lists the caller's runs newest first, a page at a time: following `next`
//! shows every run exactly once. Filters narrow the list; a bad parameter is 400 with a
//! reason naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use actix_web::http::StatusCode;
use actix_web::test;
use actix_web::App;
use common::{call, get, start, started, Harness, ALICE, BOB};
use graphloop_runtime::RunStatus;
use graphloop_web::{routes, RunPage};
use serde_json::json;

#[actix_web::test]
async fn five_runs_in_pages_of_two_come_newest_first_each_exactly_once() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let mut created = Vec::new();
    for n in 0..5 {
        let run = started(call(&app, start(ALICE, "double", json!({"n": n})).to_request()).await);
        h.engine.wait(run.id).await.unwrap();
        created.push(run.id);
    }
    let bobs = started(call(&app, start(BOB, "double", json!({"n": 9})).to_request()).await);
    h.engine.wait(bobs.id).await.unwrap();

    let (mut seen, mut pages, mut uri) = (Vec::new(), Vec::new(), "/runs?limit=2".to_owned());
    loop {
        let (status, body) = call(&app, get(&uri, Some(ALICE)).to_request()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page: RunPage = serde_json::from_value(body).unwrap();
        pages.push(page.runs.len());
        seen.extend(page.runs.iter().map(|run| run.id));
        assert!(page.runs.iter().all(|run| run.status == RunStatus::Completed && run.percent == 100.0));
        match page.next {
            Some(next) => {
                assert_eq!(Some(next), page.runs.last().map(|run| run.id), "the cursor is the last id of the page");
                uri = format!("/runs?limit=2&before={next}");
            }
            None => break,
        }
    }
    assert_eq!(pages, [2, 2, 1]);
    created.reverse();
    assert_eq!(seen, created, "newest first, each once, Bob's run nowhere");

    // Default page size holds them all, with no next page.
    let (_, body) = call(&app, get("/runs", Some(ALICE)).to_request()).await;
    let page: RunPage = serde_json::from_value(body).unwrap();
    assert_eq!((page.runs.len(), page.next), (5, None));
    // A page exactly as large as what is left has no next page either.
    let (_, body) = call(&app, get("/runs?limit=5", Some(ALICE)).to_request()).await;
    let page: RunPage = serde_json::from_value(body).unwrap();
    assert_eq!((page.runs.len(), page.next), (5, None));
    h.shutdown().await;
}

#[actix_web::test]
async fn status_and_graph_filters_narrow_the_list() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    let done = started(call(&app, start(ALICE, "double", json!({"n": 1})).to_request()).await);
    h.engine.wait(done.id).await.unwrap();
    let asking = started(call(&app, start(ALICE, "approval", json!({})).to_request()).await);
    h.engine.wait(asking.id).await.unwrap();

    for (query, expected) in [
        ("status=completed", vec![done.id]),
        ("status=waiting", vec![asking.id]),
        ("status=failed", vec![]),
        ("graph=approval", vec![asking.id]),
        ("graph=double&status=completed", vec![done.id]),
        ("graph=nothing", vec![]),
    ] {
        let (status, body) = call(&app, get(&format!("/runs?{query}"), Some(ALICE)).to_request()).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        let page: RunPage = serde_json::from_value(body).unwrap();
        assert_eq!(page.runs.iter().map(|run| run.id).collect::<Vec<_>>(), expected, "{query}");
    }
    h.shutdown().await;
}

#[actix_web::test]
async fn a_bad_status_cursor_or_limit_is_400_naming_the_parameter() {
    let h = Harness::start().await;
    let app = test::init_service(App::new().configure(routes(h.engine.clone(), h.config()))).await;
    for (query, needle) in [
        (
            "status=done",
            "`status` must be one of queued, running, interrupted, waiting, completed, failed, cancelled, not `done`",
        ),
        ("status=", "`status` must be one of"),
        ("before=42", "`before` must be a run id (a UUID), not `42`"),
        ("limit=0", "`limit` must be a whole number from 1 to 500, not `0`"),
        ("limit=501", "not `501`"),
        ("limit=ten", "not `ten`"),
        ("limit=2&limit=3", "the query string is invalid"),
    ] {
        let (status, body) = call(&app, get(&format!("/runs?{query}"), Some(ALICE)).to_request()).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{query}: {body}");
        assert!(body["reason"].as_str().unwrap().contains(needle), "{query}: {body}");
    }
    let (status, _) = call(&app, get("/runs?limit=500", Some(ALICE)).to_request()).await;
    assert_eq!(status, StatusCode::OK);
    h.shutdown().await;
}
