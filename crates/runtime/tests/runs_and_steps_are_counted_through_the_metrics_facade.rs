//! The runtime records its metrics through the `metrics` facade: runs started and ended
//! by status, and one step-duration sample per executed task, labelled by graph and node.
//!
//! A global recorder is per process, so this file holds a single test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::Arc;

use graphloop_core::{GraphBuilder, NodeError, Update, UserContext, END, START};
use graphloop_runtime::{describe_metrics, Engine, EngineConfig, RunStatus};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Job {
    /// `second` fails.
    fail: bool,
    /// `first` waits for a permit that never comes (the run is cancelled meanwhile).
    hold: bool,
}

/// `first` then `second`; `entered` gets a permit when a held `first` begins.
fn metered(entered: Arc<Semaphore>) -> graphloop_core::Graph<Job> {
    let never = Arc::new(Semaphore::new(0));
    GraphBuilder::<Job>::new("metered")
        .node("first", move |s: Arc<Job>, _ctx| {
            let (entered, never) = (Arc::clone(&entered), Arc::clone(&never));
            async move {
                if s.hold {
                    entered.add_permits(1);
                    never.acquire().await.map_err(|e| NodeError::fatal(e.to_string()))?.forget();
                }
                Ok(Update::new())
            }
        })
        .node("second", |s: Arc<Job>, _ctx| async move {
            if s.fail {
                return Err(NodeError::fatal("asked to fail"));
            }
            Ok(Update::new())
        })
        .edge(START, "first")
        .edge("first", "second")
        .edge("second", END)
        .compile()
        .unwrap()
}

/// Labels of a key as a sorted `name=value` list, for comparisons.
fn labels(key: &metrics::Key) -> Vec<String> {
    let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    labels.sort();
    labels
}

#[tokio::test]
async fn runs_and_steps_are_counted_by_graph_status_and_node() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test process");
    describe_metrics();

    let engine = Engine::start(EngineConfig::new()).await.unwrap();
    let entered = Arc::new(Semaphore::new(0));
    engine.register(metered(Arc::clone(&entered))).unwrap();
    let user = || UserContext::new("u");

    let completed = engine.start_run("metered", &Job::default(), user()).await.unwrap();
    assert_eq!(engine.wait(completed).await.unwrap().status, RunStatus::Completed);

    let failed = engine.start_run("metered", &Job { fail: true, hold: false }, user()).await.unwrap();
    assert_eq!(engine.wait(failed).await.unwrap().status, RunStatus::Failed);

    let cancelled = engine.start_run("metered", &Job { fail: false, hold: true }, user()).await.unwrap();
    entered.acquire().await.unwrap().forget();
    engine.cancel(cancelled).await.unwrap();
    assert_eq!(engine.wait(cancelled).await.unwrap().status, RunStatus::Cancelled);

    // The supervisor learns of a run's end just after its final row is written: a
    // shutdown returns once it has heard of every run, so the counters are complete.
    engine.shutdown().await.unwrap();

    let mut counters: HashMap<(String, Vec<String>), u64> = HashMap::new();
    let mut steps: HashMap<Vec<String>, usize> = HashMap::new();
    let mut events_written = 0;
    let mut commits = 0;
    for (key, _unit, _description, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let name = key.name().to_owned();
        match (kind, value) {
            (MetricKind::Counter, DebugValue::Counter(count)) => {
                if name == "graphloop_events_written_total" {
                    events_written = count;
                }
                counters.insert((name, labels(&key)), count);
            }
            (MetricKind::Histogram, DebugValue::Histogram(samples)) => {
                if name == "graphloop_step_duration_seconds" {
                    *steps.entry(labels(&key)).or_default() += samples.len();
                } else if name == "graphloop_commit_seconds" {
                    commits += samples.len();
                }
            }
            _ => {}
        }
    }

    let counter = |name: &str, labels: &[&str]| {
        counters.get(&(name.to_owned(), labels.iter().map(|l| (*l).to_owned()).collect())).copied()
    };
    assert_eq!(counter("graphloop_runs_started_total", &["graph=metered"]), Some(3), "{counters:?}");
    for status in ["completed", "failed", "cancelled"] {
        let status_label = format!("status={status}");
        assert_eq!(
            counter("graphloop_runs_ended_total", &["graph=metered", &status_label]),
            Some(1),
            "{status}: {counters:?}"
        );
    }
    assert_eq!(counter("graphloop_runs_ended_total", &["graph=metered", "status=interrupted"]), None);

    // Executed tasks: `first` and `second` of the completed and the failed run; the
    // cancelled run's `first` never finished.
    let expected: HashMap<Vec<String>, usize> = HashMap::from([
        (vec!["graph=metered".to_owned(), "node=first".to_owned()], 2),
        (vec!["graph=metered".to_owned(), "node=second".to_owned()], 2),
    ]);
    assert_eq!(steps, expected);

    assert!(events_written > 0, "events are counted as they are written");
    assert!(commits > 0, "store writes are timed");
}
