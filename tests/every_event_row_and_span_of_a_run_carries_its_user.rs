//! Identity (invariant 4): runs of three users, on PostgreSQL, carry their user from the
//! start message to every stored event row and every tracing span: each `run` span names
//! its run's user, and each `node` span names the run and user it works for, under the
//! `run` span of that same run.
//!
//! Only one test in this file: it installs the process-wide tracing subscriber.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use common::{eight_nodes, Doc, TestDb};
use graphloop::{Engine, EngineConfig, RunStatus, UserContext};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use uuid::Uuid;

const USERS: [&str; 3] = ["ada", "grace", "barbara"];
const RUNS_PER_USER: u64 = 4;

/// The identity fields of a span, as recorded when it was created.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fields {
    run_id: Option<String>,
    user_id: Option<String>,
    node: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        // `%value` fields arrive here; their Debug is the value's Display.
        self.set(field, format!("{value:?}"));
    }
}

impl Fields {
    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "run_id" => self.run_id = Some(value),
            "user_id" => self.user_id = Some(value),
            "node" => self.node = Some(value),
            _ => {}
        }
    }
}

/// One span, as seen when it was created, with its parent as it was at that moment
/// (span ids are reused once a span closes, so the parent is resolved right away).
#[derive(Debug, Clone)]
struct SeenSpan {
    name: &'static str,
    fields: Fields,
    parent_id: Option<u64>,
    parent: Option<(&'static str, Fields)>,
}

/// Records every new span.
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<SeenSpan>>>,
}

impl<S> Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let span = ctx.span(id).expect("a new span is in the registry");
        let parent = span.parent();
        let seen = SeenSpan {
            name: attrs.metadata().name(),
            fields: fields.clone(),
            parent_id: parent.as_ref().map(|p| p.id().into_u64()),
            parent: parent.as_ref().map(|p| (p.name(), p.extensions().get::<Fields>().cloned().unwrap_or_default())),
        };
        span.extensions_mut().insert(fields);
        self.spans.lock().unwrap().push(seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_row_and_span_of_a_run_carries_its_user() {
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(recorder.clone())).unwrap();

    let db = TestDb::new().await;
    let engine = Engine::start(EngineConfig::new().store(db.store())).await.unwrap();
    engine.register(eight_nodes()).unwrap();
    let mut started: HashMap<Uuid, &str> = HashMap::new();
    for n in 0..RUNS_PER_USER {
        for user in USERS {
            let run = engine.start_run("eight", &Doc { n, ..Doc::default() }, UserContext::new(user)).await.unwrap();
            started.insert(run, user);
        }
    }
    for run in started.keys() {
        assert_eq!(engine.wait(*run).await.unwrap().status, RunStatus::Completed, "run {run}");
    }
    engine.shutdown().await.unwrap();

    // Rows: each event row carries its run's user.
    let events = db.count("SELECT count(*) FROM events", &[]).await;
    let mismatched = db
        .count("SELECT count(*) FROM events e JOIN runs r ON r.id = e.run_id WHERE e.user_id <> r.user_id", &[])
        .await;
    let orphans = db
        .count("SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = e.run_id)", &[])
        .await;
    assert!(events > 0, "the runs stored events");
    assert_eq!((mismatched, orphans), (0, 0), "of {events} events");
    let mut stored_users: HashMap<Uuid, String> = HashMap::new();
    for row in db.client.query("SELECT id, user_id FROM runs", &[]).await.unwrap() {
        stored_users.insert(row.get(0), row.get(1));
    }
    assert_eq!(stored_users.len(), started.len());
    for (run, user) in &started {
        assert_eq!(stored_users.get(run).map(String::as_str), Some(*user), "run {run}");
        let own = db.count("SELECT count(*) FROM events WHERE run_id = $1 AND user_id = $2", &[run, user]).await;
        assert!(own > 0, "run {run} has events of its own user");
    }
    // What each run's nodes did, from the stored events: node labels, sorted.
    let mut completed_nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in db.client.query("SELECT run_id, node FROM events WHERE kind = 'node_completed'", &[]).await.unwrap() {
        let (run, node): (Uuid, String) = (row.get(0), row.get(1));
        completed_nodes.entry(run.to_string()).or_default().push(node);
    }

    // Spans.
    let spans = recorder.spans.lock().unwrap().clone();
    let user_of = |run_id: &Option<String>| -> Option<&str> {
        let run: Uuid = run_id.as_deref()?.parse().ok()?;
        stored_users.get(&run).map(String::as_str)
    };
    let run_spans: Vec<&SeenSpan> = spans.iter().filter(|s| s.name == "run").collect();
    assert_eq!(run_spans.len(), started.len(), "one run span per run");
    for span in &run_spans {
        let user = user_of(&span.fields.run_id);
        assert!(user.is_some(), "a run span of a run of this test: {span:?}");
        assert_eq!(span.fields.user_id.as_deref(), user, "{span:?}");
    }
    let mut spanned_runs: Vec<&str> = run_spans.iter().filter_map(|s| s.fields.run_id.as_deref()).collect();
    spanned_runs.sort_unstable();
    let mut runs: Vec<String> = started.keys().map(Uuid::to_string).collect();
    runs.sort_unstable();
    assert_eq!(spanned_runs, runs, "every run has its run span");

    let node_spans: Vec<&SeenSpan> = spans.iter().filter(|s| s.name == "node").collect();
    assert!(!node_spans.is_empty());
    let mut spanned_nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for span in &node_spans {
        let user = user_of(&span.fields.run_id);
        assert!(user.is_some(), "a node span of a run of this test: {span:?}");
        assert_eq!(span.fields.user_id.as_deref(), user, "{span:?}");
        assert!(span.parent_id.is_some(), "a node span has a parent: {span:?}");
        let (parent_name, parent) = span.parent.clone().unwrap();
        assert_eq!(parent_name, "run", "{span:?}");
        assert_eq!((&parent.run_id, &parent.user_id), (&span.fields.run_id, &span.fields.user_id), "{span:?}");
        let (run, node) = (span.fields.run_id.clone().unwrap(), span.fields.node.clone().unwrap());
        spanned_nodes.entry(run).or_default().push(node);
    }
    // No retries here: one node span per completed node, with the same labels.
    for nodes in completed_nodes.values_mut().chain(spanned_nodes.values_mut()) {
        nodes.sort_unstable();
    }
    assert_eq!(spanned_nodes, completed_nodes);
    assert_eq!(spanned_nodes.len(), started.len());
    db.drop().await;
}
