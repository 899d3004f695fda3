//! Issue 11, "What it must show": kill -9 of the example service with 200 keyed starts in
//! flight over HTTP. Every start answered 201 before the kill is there after the restart,
//! completes, and its key finds it; every start left unanswered can be retried and gives
//! exactly one run per key; every run's events are gapless, without duplicates, with
//! progress never going back, and no committed step completes twice. Item 3: a client
//! that was following a run's events when the service died reconnects with its
//! `Last-Event-ID` and sees no skipped sequence number and no changed event.
//!
//! 32 client threads send the 200 `POST /runs` (distinct idempotency keys, the sample
//! contracts as input); a few more follow runs' event streams as soon as they are
//! answered and record every frame. Once 60 starts have been answered (counted, not
//! timed) the test SIGKILLs the service while the rest are in flight, lets every client
//! finish (cut connections and refused ones are recorded, not retried), and starts the
//! service again on the same schema: it recovers the unfinished runs before it listens.
//!
//! What "0 completed steps re-run" can be seen of through HTTP is the stored event log: a
//! step whose `step_completed` was stored (committed with its checkpoint, as one unit)
//! and ran again would show a second `step_completed` for the same step, or a
//! `run_resumed` from an earlier step. That is checked here. Whether a node's *work* ran
//! again (a side effect outside the store) is invisible through the contract workflow's
//! API; that claim belongs to the crash-injection suite
//! (`a_crash_right_after_any_commit_never_reruns_a_completed_step.rs`), whose nodes record
//! every execution in a table of the test's own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;
mod example_service;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use common::{database_url, TestDb};
use example_service::{workspace, Frame, Service, HANG_LIMIT};
use serde_json::{json, Value};

/// Keyed starts sent in all.
const STARTS: usize = 200;
/// Client threads sending them.
const CLIENTS: usize = 32;
/// Starts answered before the kill.
const KILL_AFTER: usize = 60;
/// Client threads following runs' event streams before the kill.
const FOLLOWERS: usize = 4;
const ALICE: &str = "alice-token";

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

fn key(i: usize) -> String {
    format!("kill9-start-{i:03}")
}

/// The body of start `i`, the same every time it is sent.
fn body(i: usize, samples: &[(String, String)]) -> Value {
    let (name, text) = &samples[i % samples.len()];
    json!({"graph": "contract-analysis", "input": {"name": name, "text": text}, "idempotency_key": key(i)})
}

/// What a client got for its first `POST /runs` of a key.
#[derive(Debug)]
enum Outcome {
    /// An answer: its status, its body, and the run's id when it names one.
    Answered { status: u16, body: String, id: Option<String> },
    /// The connection was refused: the service was dead, the request never reached it.
    Refused(String),
    /// The request was (maybe partly) sent and no whole answer came.
    NoAnswer(String),
}

/// A run's event stream as a client followed it before the kill.
struct Followed {
    run: String,
    frames: Vec<Frame>,
    /// Why the stream stopped before the run's final event, if it did (the kill).
    cut: Option<String>,
}

/// A stored event as a client sees it: (seq, event name, data).
type Seen = (u64, String, String);

/// Checks a run's whole stream (read from the start after the restart, so every event in
/// it is stored) and returns its stored events, or what is wrong with it.
fn check_stream(run: &str, frames: &[Frame]) -> Result<Vec<Seen>, String> {
    let mut stored = Vec::new();
    let mut percent = 0.0_f64;
    let mut completed_steps = Vec::new();
    for frame in frames {
        let data = frame.json();
        if data["run_id"] != run {
            return Err(format!("a frame of another run: {frame:?}"));
        }
        let Some(id) = frame.id else {
            if frame.event != "progress" {
                return Err(format!("a frame without an id that is not a progress tick: {frame:?}"));
            }
            continue;
        };
        let expected = stored.len() as u64 + 1;
        if id != expected {
            return Err(format!("event ids skip or repeat: {id} where {expected} was due (frame {frame:?})"));
        }
        if data["seq"] != id || data["event"]["kind"] != frame.event.as_str() {
            return Err(format!("a frame whose data is not its id and event: {frame:?}"));
        }
        let now = data["event"]["percent"].as_f64().ok_or_else(|| format!("no percent in {frame:?}"))?;
        if now < percent {
            return Err(format!("progress went back from {percent} to {now} at event {id}"));
        }
        percent = now;
        let step = data["event"]["step"].as_u64().ok_or_else(|| format!("no step in {frame:?}"))?;
        match frame.event.as_str() {
            // A step whose completion is stored never completes again.
            "step_completed" => {
                if completed_steps.last().is_some_and(|last| step <= *last) {
                    return Err(format!("step {step} completed again after steps {completed_steps:?} (event {id})"));
                }
                completed_steps.push(step);
            }
            // A run goes on from the last step whose completion is stored, not before it.
            "run_resumed" => {
                let from = data["event"]["from_step"].as_u64().ok_or_else(|| format!("no from_step in {frame:?}"))?;
                let last = completed_steps.last().copied().unwrap_or(0);
                if from != last {
                    return Err(format!(
                        "resumed from step {from}, but the last step whose completion is stored is {last} (event {id})"
                    ));
                }
            }
            _ => {}
        }
        stored.push((id, frame.event.clone(), frame.data.clone()));
    }
    match stored.last() {
        Some((_, kind, _)) if kind == "run_completed" && percent == 100.0 => Ok(stored),
        last => Err(format!("the stream did not end with run_completed at 100 %: last event {last:?}")),
    }
}

/// The stored (id'd) frames of a stream, as (seq, event, data).
fn seen(frames: &[Frame]) -> Vec<Seen> {
    frames.iter().filter_map(|frame| Some((frame.id?, frame.event.clone(), frame.data.clone()))).collect()
}

/// How an event a client saw differs from the stored one, if it does.
fn difference(seen: &Seen, stored: Option<&Seen>) -> Option<String> {
    let Some(stored) = stored else { return Some(format!("event {} is not stored", seen.0)) };
    if seen == stored {
        return None;
    }
    let (mut one, mut other): (Value, Value) =
        (serde_json::from_str(&seen.2).unwrap(), serde_json::from_str(&stored.2).unwrap());
    let (seen_at, stored_at) = (one["at"].take(), other["at"].take());
    if (seen.0, &seen.1, &one) == (stored.0, &stored.1, &other) {
        Some(format!("event {} ({}) differs in `at` only: {seen_at} seen, {stored_at} stored", seen.0, seen.1))
    } else {
        Some(format!("event {} changed: {seen:?} seen, {stored:?} stored", seen.0))
    }
}

/// Percent never goes back on what a client was sent live, progress ticks included.
fn check_live_progress(run: &str, frames: &[Frame]) -> Result<(), String> {
    let mut percent = 0.0_f64;
    for frame in frames {
        let data = frame.json();
        // A stored event's record holds the event; a progress tick is the event itself.
        let event = if frame.id.is_some() { &data["event"] } else { &data };
        let now = event["percent"].as_f64().ok_or_else(|| format!("no percent in {frame:?}"))?;
        if now < percent {
            return Err(format!("run {run}: live progress went back from {percent} to {now} at {frame:?}"));
        }
        percent = now;
    }
    Ok(())
}

#[test]
fn a_killed_service_keeps_every_acknowledged_start() {
    // Only for the test's own database client; the service is a process of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let db = runtime.block_on(TestDb::new());
    let url = database_url();
    let tokens = format!("alice={ALICE}");
    let env = [("GRAPHLOOP_TOKENS", tokens.as_str()), ("DATABASE_URL", &url), ("GRAPHLOOP_SCHEMA", &db.schema)];
    let samples = samples();
    let service = Service::start(&env);

    // --- 200 keyed starts from 32 clients; kill -9 once 60 are answered. ---
    let next = AtomicUsize::new(0);
    let in_flight = AtomicUsize::new(0);
    let (outcomes_tx, outcomes) = mpsc::channel::<(usize, Outcome)>();
    let (answered_tx, answered_runs) = mpsc::channel::<String>();
    let answered_runs = Mutex::new(answered_runs);
    let followed = Mutex::new(Vec::<Followed>::new());
    let mut results: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut in_flight_at_kill = 0;
    let mut answered_at_kill = 0;
    let killed_log = std::thread::scope(|scope| {
        let (service, samples, next, in_flight) = (&service, &samples, &next, &in_flight);
        for _ in 0..CLIENTS {
            let (outcomes_tx, answered_tx) = (outcomes_tx.clone(), answered_tx.clone());
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= STARTS {
                    break;
                }
                in_flight.fetch_add(1, Ordering::SeqCst);
                let sent = service.try_post_json("/runs", Some(ALICE), &body(i, samples));
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let outcome = match sent {
                    Ok(response) => {
                        let id = matches!(response.status, 200 | 201)
                            .then(|| response.json()["id"].as_str().map(str::to_owned))
                            .flatten();
                        if let Some(id) = &id {
                            let _ = answered_tx.send(id.clone()); // the followers may have stopped
                        }
                        let body = String::from_utf8_lossy(&response.body).into_owned();
                        Outcome::Answered { status: response.status, body, id }
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Outcome::Refused(e.to_string()),
                    Err(e) => Outcome::NoAnswer(e.to_string()),
                };
                outcomes_tx.send((i, outcome)).unwrap();
            });
        }
        drop((outcomes_tx, answered_tx));
        for _ in 0..FOLLOWERS {
            let (answered_runs, followed) = (&answered_runs, &followed);
            scope.spawn(move || loop {
                // Ends once every client is done and every answered run was taken.
                let Ok(run) = answered_runs.lock().unwrap().recv() else { break };
                let mut frames = Vec::new();
                let cut = match service.try_events(&run, ALICE, None) {
                    Err(e) => Some(e.to_string()),
                    Ok(mut events) => loop {
                        match events.try_next() {
                            Ok(Some(frame)) => frames.push(frame),
                            Ok(None) => break None,
                            Err(e) => break Some(e.to_string()),
                        }
                    },
                };
                let over = cut.is_some();
                followed.lock().unwrap().push(Followed { run, frames, cut });
                if over {
                    break; // the service is dead: nothing more to follow
                }
            });
        }
        let mut answered = 0;
        let mut log = None;
        while results.len() < STARTS {
            let (i, outcome) = outcomes
                .recv_timeout(HANG_LIMIT)
                .unwrap_or_else(|e| panic!("no client outcome within {HANG_LIMIT:?} ({e}); {} so far", results.len()));
            if matches!(outcome, Outcome::Answered { .. }) {
                answered += 1;
            }
            results.insert(i, outcome);
            if answered >= KILL_AFTER && log.is_none() {
                in_flight_at_kill = in_flight.load(Ordering::SeqCst);
                answered_at_kill = answered;
                log = Some(service.kill());
            }
        }
        log.expect("the service was killed")
    });
    let followed = followed.into_inner().unwrap();

    let mut acknowledged = BTreeMap::new(); // key index -> run id, answered before the kill
    let mut unanswered = BTreeSet::new();
    let (mut refused, mut cut_off) = (0, 0);
    let mut errors = BTreeSet::new(); // what the clients without an answer were told
    for (i, outcome) in &results {
        match outcome {
            Outcome::Answered { status: 201, id: Some(id), .. } => {
                acknowledged.insert(*i, id.clone());
            }
            Outcome::Answered { status, body, .. } => {
                panic!("the first POST /runs of key {} answered {status}: {body}\n{killed_log}", key(*i))
            }
            Outcome::Refused(error) => {
                refused += 1;
                errors.insert(error.clone());
                unanswered.insert(*i);
            }
            Outcome::NoAnswer(error) => {
                cut_off += 1;
                errors.insert(error.clone());
                unanswered.insert(*i);
            }
        }
    }
    let cut_streams = followed.iter().filter(|f| f.cut.is_some()).count();
    eprintln!(
        "kill -9 after {answered_at_kill} answers ({in_flight_at_kill} requests in flight at that moment); \
         in all {} answered 201, {cut_off} sent and cut off unanswered, {refused} refused; \
         {} streams followed before the kill, {cut_streams} of them cut by it; the clients were told {errors:?}",
        acknowledged.len(),
        followed.len()
    );
    assert!(acknowledged.len() >= KILL_AFTER, "fewer answers than the kill waited for");
    assert!(acknowledged.len() < STARTS, "every start was answered before the kill: nothing was in flight");

    // --- The service again, on the same schema: it recovers before it listens. ---
    let service = Service::start(&env);
    eprintln!("restarted: {}", service.log().lines().filter(|l| l.contains("resumed")).collect::<Vec<_>>().join("; "));

    // Every acknowledged start is there and its key finds it; every unanswered one can be
    // retried. Failures are collected, so that one run shows every lost start.
    let mut problems = Vec::new();
    let mut runs: BTreeMap<usize, String> = BTreeMap::new();
    for (i, id) in &acknowledged {
        let got = service.get(&format!("/runs/{id}"), Some(ALICE));
        if got.status != 200 {
            problems.push(format!(
                "key {} answered 201 with run {id} before the kill; now GET /runs/{id} answers {}: {}",
                key(*i),
                got.status,
                String::from_utf8_lossy(&got.body)
            ));
        }
        let retry = service.post_json("/runs", Some(ALICE), &body(*i, &samples));
        let retried = (retry.status == 200 || retry.status == 201).then(|| retry.json()["id"].clone());
        if (retry.status, retried.as_ref()) != (200, Some(&json!(id))) {
            problems.push(format!(
                "key {} answered 201 with run {id} before the kill; its retry answers {}: {}",
                key(*i),
                retry.status,
                String::from_utf8_lossy(&retry.body)
            ));
        }
        runs.insert(*i, id.clone());
    }
    let mut recreated = 0;
    for i in &unanswered {
        let retry = service.post_json("/runs", Some(ALICE), &body(*i, &samples));
        match retry.status {
            200 | 201 => {
                recreated += usize::from(retry.status == 201);
                runs.insert(*i, retry.json()["id"].as_str().unwrap().to_owned());
            }
            status => problems.push(format!(
                "key {} (unanswered before the kill): its retry answers {status}: {}",
                key(*i),
                String::from_utf8_lossy(&retry.body)
            )),
        }
    }
    eprintln!(
        "of {} unanswered keys, {} had a run already (200), {recreated} were started by the retry (201)",
        unanswered.len(),
        unanswered.len() - recreated
    );
    assert!(problems.is_empty(), "{} problem(s) with acknowledged starts:\n{}", problems.len(), problems.join("\n"));
    let ids: BTreeSet<&String> = runs.values().collect();
    assert_eq!(ids.len(), STARTS, "two keys share a run");

    // Every run, read from its first event to its last (this also waits for each to
    // finish: a read waits at most HANG_LIMIT), is gapless, without duplicates, monotone,
    // without a committed step completing twice, and ends completed.
    let mut stored: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    let mut resumed = 0;
    for (i, id) in &runs {
        let frames: Vec<Frame> = service.events(id, ALICE, None).collect();
        match check_stream(id, &frames) {
            Ok(events) => {
                resumed += usize::from(events.iter().any(|(_, kind, _)| kind == "run_resumed"));
                stored.insert(id.clone(), events);
            }
            Err(problem) => problems.push(format!("run {id} (key {}): {problem}", key(*i))),
        }
        let got = service.get(&format!("/runs/{id}"), Some(ALICE));
        let view = got.json();
        if (got.status, &view["status"], &view["percent"]) != (200, &json!("completed"), &json!(100.0)) {
            problems.push(format!("run {id} (key {}) after its stream ended: {} {view}", key(*i), got.status));
        }
    }
    eprintln!("{resumed} runs went on after the restart (a run_resumed event)");
    assert!(problems.is_empty(), "{} problem(s) with the runs' events:\n{}", problems.len(), problems.join("\n"));

    // Exactly one run per key: the listing holds the 200 runs and nothing else, and the
    // store one row per key.
    let page = service.get("/runs?limit=500", Some(ALICE));
    assert_eq!(page.status, 200, "GET /runs: {}", String::from_utf8_lossy(&page.body));
    let page = page.json();
    let listed: Vec<&str> = page["runs"].as_array().unwrap().iter().map(|run| run["id"].as_str().unwrap()).collect();
    assert_eq!(page["next"], Value::Null, "{STARTS} runs fit one page of 500");
    assert_eq!(listed.len(), STARTS, "GET /runs lists {} runs for {STARTS} keys", listed.len());
    assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), ids.iter().map(|id| id.as_str()).collect());
    let keyed = runtime.block_on(
        db.client
            .query("SELECT idempotency_key, count(*) FROM runs GROUP BY idempotency_key ORDER BY idempotency_key", &[]),
    );
    let keyed: Vec<(Option<String>, i64)> = keyed.unwrap().iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(keyed, (0..STARTS).map(|i| (Some(key(i)), 1)).collect::<Vec<_>>(), "not one stored run per key");

    // What clients saw before the kill is what is stored, and a client cut off by the kill
    // goes on with its Last-Event-ID from the next event, skipping none, changing none.
    // Every difference is collected, so that one run shows them all.
    let mut compared = 0;
    for Followed { run, frames, cut } in &followed {
        // The run has ended: its stream now replays only what is stored. (The stream read
        // above may have followed its last events live.)
        let events = &seen(&service.events(run, ALICE, None).collect::<Vec<_>>());
        let ids = |events: &[Seen]| events.iter().map(|event| (event.0, event.1.clone())).collect::<Vec<_>>();
        assert_eq!(ids(events), ids(&stored[run]), "run {run}: a second replay is not the first one");
        let before = seen(frames);
        if let Err(problem) = check_live_progress(run, frames) {
            problems.push(problem);
        }
        for event in &before {
            compared += 1;
            if let Some(problem) = difference(event, events.get(event.0 as usize - 1)) {
                problems.push(format!("run {run}, seen before the kill: {problem}"));
            }
        }
        if cut.is_none() {
            if before.len() != events.len() {
                problems.push(format!(
                    "run {run}: its stream ended before the kill after {} of its {} events",
                    before.len(),
                    events.len()
                ));
            }
            continue;
        }
        let last = before.last().map(|event| event.0);
        let after = seen(&service.events(run, ALICE, last).collect::<Vec<_>>());
        let resumed_at = last.unwrap_or(0) as usize;
        if after.first().map(|event| event.0) != events.get(resumed_at).map(|event| event.0) {
            problems.push(format!(
                "run {run}: the reconnect with Last-Event-ID {last:?} goes on with event {:?}, not {:?}",
                after.first().map(|event| event.0),
                events.get(resumed_at).map(|event| event.0)
            ));
        }
        if after.len() != events.len() - resumed_at {
            problems.push(format!(
                "run {run}: the reconnect with Last-Event-ID {last:?} sent {} events, {} are stored after it",
                after.len(),
                events.len() - resumed_at
            ));
        }
        for (event, stored) in after.iter().zip(&events[resumed_at..]) {
            if let Some(problem) = difference(event, Some(stored)) {
                problems.push(format!("run {run}, after the reconnect: {problem}"));
            }
        }
    }
    eprintln!("{compared} events seen before the kill compared with the stored ones");
    assert!(
        problems.is_empty(),
        "{} problem(s) with what clients saw before the kill:\n{}",
        problems.len(),
        problems.join("\n")
    );

    let (status, log) = service.stop();
    assert!(status.success(), "the restarted service exited with {status}:\n{log}");
    runtime.block_on(db.drop());
}
