//! The engine's metrics, recorded through the [`metrics`] facade.
//!
//! This crate only records: it never installs a recorder (an application does, for
//! example `metrics-exporter-prometheus`; without one every call here is a no-op).
//! Every name is a constant here so that the docs (`docs/operations.md`), the tests and
//! the code agree. Labels are bounded: graph and node names and run statuses only, never
//! a run id or a user.

use std::time::Duration;

use crate::store::RunStatus;

/// Runs admitted (`graph`).
pub(crate) const RUNS_STARTED: &str = "graphloop_runs_started_total";
/// Runs taken up again: resumed after a restart of the process or with an answer (`graph`).
pub(crate) const RUNS_RESUMED: &str = "graphloop_runs_resumed_total";
/// Runs that left the supervisor (`graph`, `status`).
pub(crate) const RUNS_ENDED: &str = "graphloop_runs_ended_total";
/// Run actors restarted after they died or stalled (`graph`).
pub(crate) const RUNS_RESTARTED: &str = "graphloop_runs_restarted_total";
/// Runs running now (gauge).
pub(crate) const RUNS_RUNNING: &str = "graphloop_runs_running";
/// Runs waiting for a slot now (gauge).
pub(crate) const RUNS_QUEUED: &str = "graphloop_runs_queued";
/// A task's execution time, retries included (histogram, `graph`, `node`).
pub(crate) const STEP_DURATION: &str = "graphloop_step_duration_seconds";
/// Events committed to the store.
pub(crate) const EVENTS_WRITTEN: &str = "graphloop_events_written_total";
/// Rows per committed store write (histogram).
pub(crate) const WRITE_BATCH_ROWS: &str = "graphloop_write_batch_rows";
/// How long a successful store write took (histogram).
pub(crate) const COMMIT_SECONDS: &str = "graphloop_commit_seconds";
/// Store writes that failed (and are retried).
pub(crate) const WRITE_FAILURES: &str = "graphloop_write_failures_total";
/// Rows accepted by the persister and not yet written (gauge).
pub(crate) const PERSISTER_BUFFERED_ROWS: &str = "graphloop_persister_buffered_rows";
/// A run's loop lag, one sample per answered health probe (histogram).
pub(crate) const LOOP_LAG: &str = "graphloop_loop_lag_seconds";
/// The worst loop lag of the last health check (gauge).
pub(crate) const LOOP_LAG_MAX: &str = "graphloop_loop_lag_max_seconds";
/// Health probes a run did not answer in time: a node blocks its thread.
pub(crate) const LOOP_BLOCKED: &str = "graphloop_loop_blocked_total";

/// The store's pool: connections open, idle, and callers waiting for one.
pub(crate) const POOL_SIZE: &str = "graphloop_pool_connections";
/// Idle connections of the store's pool.
pub(crate) const POOL_AVAILABLE: &str = "graphloop_pool_available";
/// Callers waiting for a connection of the store's pool.
pub(crate) const POOL_WAITING: &str = "graphloop_pool_waiting";

/// Describes every metric to the installed recorder (units and help text). Optional:
/// call it once after installing a recorder to get `# HELP` lines in Prometheus text.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(RUNS_STARTED, "Runs admitted, by graph.");
    describe_counter!(RUNS_RESUMED, "Runs resumed (after a process restart or with an answer), by graph.");
    describe_counter!(RUNS_ENDED, "Runs that left the supervisor, by graph and status.");
    describe_counter!(RUNS_RESTARTED, "Run actors restarted after they died or stalled, by graph.");
    describe_gauge!(RUNS_RUNNING, "Runs running now.");
    describe_gauge!(RUNS_QUEUED, "Runs waiting for a slot now.");
    describe_histogram!(STEP_DURATION, Unit::Seconds, "A task's execution time (retries included), by graph and node.");
    describe_counter!(EVENTS_WRITTEN, "Events committed to the store.");
    describe_histogram!(WRITE_BATCH_ROWS, Unit::Count, "Rows per committed store write.");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Duration of a successful store write.");
    describe_counter!(WRITE_FAILURES, "Store writes that failed (and are retried).");
    describe_gauge!(PERSISTER_BUFFERED_ROWS, "Rows accepted by the persister and not yet written.");
    describe_histogram!(LOOP_LAG, Unit::Seconds, "A run's loop lag, one sample per answered health probe.");
    describe_gauge!(LOOP_LAG_MAX, Unit::Seconds, "The worst loop lag of the last health check.");
    describe_counter!(LOOP_BLOCKED, "Health probes a run did not answer in time.");
    describe_gauge!(POOL_SIZE, "Connections the store's pool has open (at the last health check).");
    describe_gauge!(POOL_AVAILABLE, "Idle connections of the store's pool (at the last health check).");
    describe_gauge!(POOL_WAITING, "Callers waiting for a pool connection (at the last health check).");
}

pub(crate) fn run_started(graph: &str) {
    metrics::counter!(RUNS_STARTED, "graph" => graph.to_owned()).increment(1);
}

pub(crate) fn run_resumed(graph: &str) {
    metrics::counter!(RUNS_RESUMED, "graph" => graph.to_owned()).increment(1);
}

pub(crate) fn run_ended(graph: &str, status: RunStatus) {
    metrics::counter!(RUNS_ENDED, "graph" => graph.to_owned(), "status" => status.as_str()).increment(1);
}

pub(crate) fn run_restarted(graph: &str) {
    metrics::counter!(RUNS_RESTARTED, "graph" => graph.to_owned()).increment(1);
}

pub(crate) fn runs_load(running: usize, queued: usize) {
    metrics::gauge!(RUNS_RUNNING).set(running as f64);
    metrics::gauge!(RUNS_QUEUED).set(queued as f64);
}

pub(crate) fn task_finished(graph: &str, node: &str, took: Duration) {
    metrics::histogram!(STEP_DURATION, "graph" => graph.to_owned(), "node" => node.to_owned())
        .record(took.as_secs_f64());
}

pub(crate) fn batch_written(events: usize, rows: usize, took: Duration) {
    metrics::counter!(EVENTS_WRITTEN).increment(events as u64);
    metrics::histogram!(WRITE_BATCH_ROWS).record(rows as f64);
    metrics::histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn write_failed() {
    metrics::counter!(WRITE_FAILURES).increment(1);
}

pub(crate) fn buffered_rows(rows: usize) {
    metrics::gauge!(PERSISTER_BUFFERED_ROWS).set(rows as f64);
}

pub(crate) fn probed(lag: Option<Duration>) {
    match lag {
        Some(lag) => metrics::histogram!(LOOP_LAG).record(lag.as_secs_f64()),
        None => metrics::counter!(LOOP_BLOCKED).increment(1),
    }
}

pub(crate) fn pool(pool: crate::store::PoolStatus) {
    metrics::gauge!(POOL_SIZE).set(pool.size as f64);
    metrics::gauge!(POOL_AVAILABLE).set(pool.available as f64);
    metrics::gauge!(POOL_WAITING).set(pool.waiting as f64);
}

pub(crate) fn worst_lag(lag: Option<Duration>) {
    metrics::gauge!(LOOP_LAG_MAX).set(lag.map_or(0.0, |lag| lag.as_secs_f64()));
}
