//! `graphloop runs list|show|events`: the runs kept in PostgreSQL, as one user sees them.
//! A run of another user is "not found", exactly like a missing one.

use std::fmt::Write as _;

use anyhow::Context as _;
use graphloop_contracts::{ContractState, Report, GRAPH_NAME};
use graphloop_postgres::PgStoreConfig;
use graphloop_runtime::StoreFactory as _;
use graphloop_runtime::{Engine, EngineConfig, EngineError, RunQuery, RunRecord, RunSnapshot, RunStatus};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::analyze::run_error;
use crate::render::{self, Table};

/// Events read from the store per page.
const PAGE: usize = 1_000;

/// Top risks shown by `runs show`.
const TOP_RISKS: usize = 3;

/// Starts an engine on the store (without resuming anything: these commands only read),
/// runs `command` on it, and shuts it down whatever happened.
async fn on_engine<T>(
    store: PgStoreConfig,
    command: impl AsyncFnOnce(&Engine) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let name = store.describe();
    let engine = Engine::start(EngineConfig::new().store(store))
        .await
        .with_context(|| format!("cannot open the store {name}"))?;
    let result = command(&engine).await;
    engine.shutdown().await.context("the engine did not shut down cleanly")?;
    result
}

/// `runs list`.
pub(crate) async fn list(
    store: PgStoreConfig,
    user: &str,
    status: Option<RunStatus>,
    graph: Option<String>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let query = RunQuery { user_id: user.to_owned(), status, graph, before: None, limit };
    let runs = on_engine(store, async |engine: &Engine| Ok(engine.list_runs(query).await?)).await?;
    if json {
        return render::out_json(&json!({ "runs": runs.iter().map(run_json).collect::<Vec<_>>() }));
    }
    if runs.is_empty() {
        return render::out(&format!("no runs for user {user}"));
    }
    let mut table = Table::new(&["id", "graph", "status", "progress", "created", "duration", "contract"]);
    for run in &runs {
        table.row(vec![
            run.id.to_string(),
            run.graph.clone(),
            run.status.to_string(),
            format!("{:.0}%", run.percent),
            render::timestamp(run.created_at),
            render::between(run.started_at, run.finished_at).map_or_else(|| "-".to_owned(), render::duration),
            contract_name(run).unwrap_or_default(),
        ]);
    }
    render::out(&table.render())
}

/// `runs show`.
pub(crate) async fn show(store: PgStoreConfig, user: &str, id: Uuid, json: bool) -> anyhow::Result<()> {
    let snapshot = on_engine(store, async |engine: &Engine| owned(engine, user, id).await).await?;
    let run = &snapshot.run;
    let report = report_of(run);
    if json {
        let mut value = run_json(run);
        value["tasks"] = json!(snapshot.tasks);
        value["report"] = json!(report);
        return render::out_json(&value);
    }
    let mut text = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(text, "{name:<10} {value}");
    };
    field("run", &run.id.to_string());
    field("graph", &format!("{} (version {})", run.graph, run.graph_version));
    field("user", &run.user.user_id);
    if let Some(contract) = contract_name(run) {
        field("contract", &contract);
    }
    field("status", run.status.as_str());
    field("progress", &format!("{:.0}% (step {})", run.percent, run.step));
    field("created", &render::timestamp(run.created_at));
    field("started", &run.started_at.map_or_else(|| "-".to_owned(), render::timestamp));
    field("finished", &run.finished_at.map_or_else(|| "-".to_owned(), render::timestamp));
    if let Some(took) = render::between(run.started_at, run.finished_at) {
        field("duration", &render::duration(took));
    }
    if !snapshot.tasks.is_empty() {
        field("running", &snapshot.tasks.join(", "));
    }
    if run.status == RunStatus::Failed {
        field("error", &run_error(run.error.as_ref()));
    }
    if let Some(report) = &report {
        field("title", &report.title);
        field("score", &format!("{}/100", report.score));
        field("summary", &report.summary);
        if report.risks.is_empty() {
            field("risks", "none found");
        } else {
            field("top risks", "");
            for (i, risk) in report.risks.iter().take(TOP_RISKS).enumerate() {
                let _ =
                    writeln!(text, "  {}. {} ({}, {}): {}", i + 1, risk.kind, risk.severity, risk.score, risk.title);
            }
        }
    }
    render::out(&text)
}

/// `runs events`.
pub(crate) async fn events(
    store: PgStoreConfig,
    user: &str,
    id: Uuid,
    from_seq: u64,
    json: bool,
) -> anyhow::Result<()> {
    let events = on_engine(store, async |engine: &Engine| {
        owned(engine, user, id).await?;
        let mut events = Vec::new();
        let mut from = from_seq;
        loop {
            let page = engine.events(id, from, PAGE).await?;
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                from = last.seq + 1;
            }
            events.extend(page);
            if !full {
                return Ok(events);
            }
        }
    })
    .await?;
    if json {
        let events: Vec<Value> = events
            .iter()
            .map(|record| {
                let mut value = serde_json::to_value(&record.event).unwrap_or_else(|_| json!({}));
                value["seq"] = json!(record.seq);
                value["at"] = json!(render::timestamp(record.at));
                value
            })
            .collect();
        return render::out_json(&json!({ "run_id": id, "events": events }));
    }
    let mut text = String::new();
    for record in &events {
        let event = &record.event;
        let _ = writeln!(
            text,
            "{:>5}  {}  step {:<3} {:>5.1}%  {}",
            record.seq,
            render::timestamp(record.at),
            event.step,
            event.percent,
            render::describe(event)
        );
    }
    if events.is_empty() {
        text = format!("no events from seq {from_seq}");
    }
    render::out(&text)
}

/// The run, if it exists and is `user`'s; another user's run is not found, like a
/// missing one, so that run ids reveal nothing.
async fn owned(engine: &Engine, user: &str, id: Uuid) -> anyhow::Result<RunSnapshot> {
    match engine.status(id).await {
        Ok(snapshot) if snapshot.run.user.user_id == user => Ok(snapshot),
        Ok(_) | Err(EngineError::UnknownRun(_)) => anyhow::bail!("run {id} not found (for user {user})"),
        Err(error) => Err(error).with_context(|| format!("cannot read run {id}")),
    }
}

/// The contract a contract-analysis run analyses (its input's name).
fn contract_name(run: &RunRecord) -> Option<String> {
    (run.graph == GRAPH_NAME).then(|| run.input.get("name").and_then(Value::as_str).map(str::to_owned)).flatten()
}

/// The report of a completed contract-analysis run.
fn report_of(run: &RunRecord) -> Option<Report> {
    if run.graph != GRAPH_NAME || run.status != RunStatus::Completed {
        return None;
    }
    let state: ContractState = serde_json::from_value(run.output.clone()?).ok()?;
    state.report
}

/// A run for JSON output: its row without the input and output, times as RFC 3339.
fn run_json(run: &RunRecord) -> Value {
    json!({
        "id": run.id,
        "graph": run.graph,
        "graph_version": run.graph_version,
        "user": run.user.user_id,
        "contract": contract_name(run),
        "status": run.status,
        "step": run.step,
        "percent": run.percent,
        "created_at": render::timestamp(run.created_at),
        "started_at": run.started_at.map(render::timestamp),
        "finished_at": run.finished_at.map(render::timestamp),
        "duration_ms": render::between(run.started_at, run.finished_at)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "error": run.error.as_ref().map(|e| run_error(Some(e))),
    })
}
