//! The example web service (`examples/contract-service`) as a client sees it, on
//! PostgreSQL: twenty contracts started over HTTP all complete; a client that follows a
//! run's events from the start, and one that drops its connection after three stored
//! events (mid-run, unless the run outpaces it) and comes back with `Last-Event-ID`, each
//! see every stored event exactly once and in order, progress ticks aside; the listing
//! shows a user their twenty runs and another user none of them.
//!
//! The listing is checked after a graceful stop and a restart on the same schema, not
//! in the first process: `GET /runs` reads only what the store has written, and the last
//! writes of a run can follow its `run_completed` frame.
//!
//! The service runs as a child process (built by the test, see `example_service`) on a
//! schema of the test's own, passed as `GRAPHLOOP_SCHEMA`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;
mod example_service;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::{database_url, stored_events, TestDb};
use example_service::{workspace, Frame, Service};
use serde_json::{json, Value};

const RUNS: usize = 20;
const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";
/// The stored events the reconnecting client reads before it drops its connection.
const BEFORE_RECONNECT: usize = 3;

/// The sample contracts (`samples/*.md` and `*.txt`), by name.
fn samples() -> Vec<(String, String)> {
    let dir = workspace().join("samples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "md" || ext == "txt"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no sample contracts in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// `POST /runs` for one contract as alice; the new run's id.
fn start(service: &Service, (name, text): &(String, String)) -> String {
    let response = service.post_json(
        "/runs",
        Some(ALICE),
        &json!({"graph": "contract-analysis", "input": {"name": name, "text": text}}),
    );
    assert_eq!(response.status, 201, "POST /runs for {name}: {}", String::from_utf8_lossy(&response.body));
    let run = response.json();
    let id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(run["graph"], "contract-analysis");
    assert_eq!(response.header("Location"), Some(format!("/runs/{id}").as_str()));
    id
}

/// A run's event stream from the start, to its end.
fn follow(service: &Service, run: &str) -> Vec<Frame> {
    service.events(run, ALICE, None).collect()
}

/// A run's event stream, dropped after `BEFORE_RECONNECT` stored events and taken up
/// again with `Last-Event-ID` set to the last one seen, as a browser's `EventSource` does.
fn follow_with_reconnect(service: &Service, run: &str) -> Vec<Frame> {
    let mut first = service.events(run, ALICE, None);
    let mut frames = Vec::new();
    while frames.iter().filter(|frame: &&Frame| frame.id.is_some()).count() < BEFORE_RECONNECT {
        let frame = first.next().unwrap_or_else(|| {
            panic!("run {run} ended after {frames:?}, before {BEFORE_RECONNECT} stored events: nothing to reconnect to")
        });
        frames.push(frame);
    }
    drop(first); // closes the connection, mid-run or at least mid-stream
    let last = frames.iter().rev().find_map(|frame| frame.id).unwrap();
    frames.extend(service.events(run, ALICE, Some(last)));
    frames
}

/// Checks what a client saw of a run against what the store holds: every stored event
/// exactly once, in seq order (ids 1..=N), each frame's data the event's record, progress
/// never going back, and the last one `run_completed` at 100 %. Progress ticks carry no
/// id and are not counted.
fn check_stream(run: &str, frames: &[Frame], stored: &[(i64, String, f64)]) {
    let mut seen = Vec::new();
    for frame in frames {
        let data = frame.json();
        assert_eq!(data["run_id"], run, "{frame:?}");
        let Some(id) = frame.id else {
            assert_eq!(frame.event, "progress", "a frame without an id that is not a progress tick: {frame:?}");
            continue;
        };
        assert_ne!(frame.event, "progress", "a progress tick with an id: {frame:?}");
        assert_eq!(data["seq"], id, "{frame:?}");
        assert_eq!(data["user_id"], "alice", "{frame:?}");
        assert!(data["at"].is_string() || data["at"].is_object(), "no `at` in {frame:?}");
        assert_eq!(data["event"]["kind"], frame.event.as_str(), "{frame:?}");
        let percent = data["event"]["percent"].as_f64().unwrap_or_else(|| panic!("no percent in {frame:?}"));
        seen.push((id, frame.event.clone(), percent));
    }
    let ids: Vec<u64> = seen.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "run {run}: not every event exactly once in order");
    assert!(
        seen.windows(2).all(|pair| pair[0].2 <= pair[1].2),
        "run {run}: progress went back: {:?}",
        seen.iter().map(|(id, _, percent)| (id, percent)).collect::<Vec<_>>()
    );
    let (_, kind, percent) = seen.last().unwrap_or_else(|| panic!("run {run}: no stored event at all"));
    assert_eq!((kind.as_str(), *percent), ("run_completed", 100.0), "run {run} did not end completed at 100 %");
    let stored: Vec<(u64, String, f64)> =
        stored.iter().map(|(seq, kind, percent)| (u64::try_from(*seq).unwrap(), kind.clone(), *percent)).collect();
    assert_eq!(seen, stored, "run {run}: the stream is not what the store holds");
}

#[test]
fn the_example_service_runs_twenty_contracts_and_streams_every_event_once() {
    // Only for the test's own database client; the service is a process of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let db = runtime.block_on(TestDb::new());
    let url = database_url();
    let service = Service::start(&[
        ("GRAPHLOOP_TOKENS", &format!("alice={ALICE},bob={BOB}")),
        ("DATABASE_URL", &url),
        ("GRAPHLOOP_SCHEMA", &db.schema),
    ]);
    let samples = samples();

    // Two runs are followed from the moment they start, while the others are admitted.
    let (runs, followed, reconnected) = std::thread::scope(|scope| {
        let service = &service;
        let first = start(service, &samples[0]);
        let follower = scope.spawn({
            let run = first.clone();
            move || follow(service, &run)
        });
        let second = start(service, &samples[1 % samples.len()]);
        let reconnecter = scope.spawn({
            let run = second.clone();
            move || follow_with_reconnect(service, &run)
        });
        let mut runs = vec![first, second];
        runs.extend((2..RUNS).map(|i| start(service, &samples[i % samples.len()])));
        (runs, follower.join().unwrap(), reconnecter.join().unwrap())
    });
    // Every other run's stream, read to its end, is also how the test waits for all to finish.
    let mut streams = vec![followed, reconnected];
    streams.extend(runs[2..].iter().map(|run| follow(&service, run)));

    // Each run is completed as soon as its stream says so (`GET /runs/{id}` reads the
    // engine's own writes), and no business of bob's, exactly as if it did not exist.
    for run in &runs {
        let mine = service.get(&format!("/runs/{run}"), Some(ALICE));
        assert_eq!((mine.status, mine.json()["status"].clone()), (200, json!("completed")), "alice's GET /runs/{run}");
        for path in [format!("/runs/{run}"), format!("/runs/{run}/events")] {
            let theirs = service.get(&path, Some(BOB));
            assert_eq!(
                (theirs.status, theirs.json()["error"].clone()),
                (404, json!("run_not_found")),
                "bob's GET {path}"
            );
        }
    }

    // Subscribers see events once accepted, before they are written, and `GET /runs`
    // reads only what is written (it can list a run `running` after its stream ended with
    // `run_completed`): compare with the store, and list, once a graceful stop has
    // written everything.
    let (status, log) = service.stop();
    assert!(status.success(), "the service exited with {status}:\n{log}");
    assert!(!log.contains("shutdown was not complete"), "{log}");
    for (run, frames) in runs.iter().zip(&streams) {
        let stored = runtime.block_on(stored_events(&db, run.parse().unwrap()));
        check_stream(run, frames, &stored);
    }

    // The service again, on the same schema: nothing to resume; alice's listing is her
    // twenty runs, all completed, each with its contract's report; bob's is empty.
    let service = Service::start(&[
        ("GRAPHLOOP_TOKENS", &format!("alice={ALICE},bob={BOB}")),
        ("DATABASE_URL", &url),
        ("GRAPHLOOP_SCHEMA", &db.schema),
    ]);
    assert!(!service.log().contains("resumed"), "finished runs were resumed:\n{}", service.log());
    let page = service.get("/runs?limit=50", Some(ALICE));
    assert_eq!(page.status, 200);
    let page = page.json();
    let listed: Vec<&Value> = page["runs"].as_array().unwrap().iter().collect();
    assert_eq!(
        listed.iter().map(|run| run["id"].as_str().unwrap()).collect::<BTreeSet<_>>(),
        runs.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "GET /runs does not list exactly alice's runs"
    );
    assert_eq!(listed.len(), RUNS, "a run listed twice");
    assert_eq!(page["next"], Value::Null, "twenty runs fit one page");
    for run in &listed {
        let i = runs.iter().position(|id| run["id"] == id.as_str()).unwrap();
        assert_eq!((&run["status"], &run["percent"]), (&json!("completed"), &json!(100.0)), "{run}");
        assert_eq!(run["output"]["name"], samples[i % samples.len()].0.as_str(), "{run}");
        assert!(run["output"]["report"].is_object(), "no report in {run}");
    }
    let page = service.get("/runs", Some(BOB));
    assert_eq!((page.status, page.json()["runs"].clone()), (200, json!([])), "bob sees alice's runs");
    let theirs = service.get(&format!("/runs/{}", runs[0]), Some(BOB));
    assert_eq!(theirs.status, 404, "bob's GET of one of alice's runs");
    let (status, log) = service.stop();
    assert!(status.success(), "the restarted service exited with {status}:\n{log}");
    runtime.block_on(db.drop());
}
