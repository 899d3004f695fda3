//! Benchmarks of the actor runtime, printed as figures for docs/benchmarks.md.
//!
//! Run with `just bench` (`cargo run --release --example bench_engine`). W3 and P1 need
//! PostgreSQL: `DATABASE_URL` (default `postgres://root@127.0.0.1:5432/test`); each run
//! uses a fresh schema and drops it afterwards.
//!
//! - W1: 1,000 sequential runs of an 8-node chain of trivial nodes, in-memory store.
//! - W2: 1,000 concurrent runs of the same graph, in-memory store.
//! - W3: 200 concurrent runs on PostgreSQL, each step committed before the next starts.
//! - P1: the persister's write path alone: 20,000 events to PostgreSQL in group-commit
//!   batches, against one transaction per event.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use graphloop::{
    Batch, CommitUnit, Durability, Engine, EngineConfig, EventKind, EventRecord, GraphBuilder, PgStoreConfig, RunEvent,
    RunRecord, RunStatus, StoreFactory, Update, UserContext, END, START,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Chain {
    n: u64,
}

fn chain() -> Result<graphloop::Graph<Chain>, graphloop::GraphError> {
    chain_of("chain", 8)
}

fn chain_of(name: &str, len: usize) -> Result<graphloop::Graph<Chain>, graphloop::GraphError> {
    // Every node is a step: the step limit must let the whole chain run (the default of
    // 25 would fail a 33-node chain at step 25, and time a failure).
    let mut builder = GraphBuilder::<Chain>::new(name).step_limit(len as u64);
    for i in 0..len {
        builder =
            builder.node(format!("n{i}"), |s: Arc<Chain>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) });
    }
    builder = builder.edge(START, "n0").edge(format!("n{}", len - 1), END);
    for i in 1..len {
        builder = builder.edge(format!("n{}", i - 1), format!("n{i}"));
    }
    builder.compile()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Starts `runs` runs at once (as that many clients would) and waits for them; fails
/// unless every one completed.
async fn concurrent(engine: &Engine, runs: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let input = Chain::default();
    let starts = (0..runs).map(|i| engine.start_run("chain", &input, UserContext::new(format!("u{}", i % 10))));
    let ids = futures_util::future::try_join_all(starts).await?;
    for id in ids {
        completed(engine, id).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Waits for a run and fails unless it completed: a benchmark of failing runs measures
/// nothing.
async fn completed(engine: &Engine, id: uuid::Uuid) -> Result<(), Box<dyn std::error::Error>> {
    let done = engine.wait(id).await?;
    if done.status != RunStatus::Completed {
        return Err(format!("run {id} of {} ended {} ({:?})", done.graph, done.status, done.error).into());
    }
    Ok(())
}

/// Start latency on PostgreSQL: `count` starts one after another (each answered once its
/// row is committed), with or without idempotency keys; returns (mean, p50, p99) in µs.
async fn start_latency(
    engine: &Engine,
    count: usize,
    keyed: bool,
) -> Result<(f64, f64, f64), Box<dyn std::error::Error>> {
    let mut took = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let options = if keyed {
            graphloop::RunOptions::new().idempotency_key(format!("bench-{}", uuid::Uuid::now_v7()))
        } else {
            graphloop::RunOptions::new()
        };
        let started = Instant::now();
        let id = engine
            .start_run_with("short", &Chain::default(), UserContext::new(format!("u{}", i % 10)), options)
            .await?;
        took.push(started.elapsed().as_secs_f64() * 1e6);
        ids.push(id);
    }
    for id in ids {
        completed(engine, id).await?;
    }
    took.sort_by(f64::total_cmp);
    let mean = took.iter().sum::<f64>() / count as f64;
    Ok((mean, took[count / 2], took[(count * 99 / 100).min(count - 1)]))
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

async fn admin() -> Option<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(connection);
    Some(client)
}

/// P1: events/s through the store's write path, in batches of `batch` events.
fn store_throughput(
    schema: &str,
    events: usize,
    batch: usize,
) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    let store = PgStoreConfig::new(database_url()).schema(schema).pool_size(2);
    let system = actix_rt::System::new();
    system.block_on(async move {
        let store = Box::new(store).open().await?;
        let run = RunRecord {
            id: uuid::Uuid::now_v7(),
            graph: "bench".into(),
            graph_version: 1,
            user: UserContext::new("bench"),
            durability: Durability::Sync,
            status: RunStatus::Running,
            input: serde_json::json!({}),
            output: None,
            error: None,
            step: 0,
            percent: 0.0,
            created_at: SystemTime::now(),
            updated_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
            idempotency_key: None,
        };
        store.write(&Batch::of(vec![CommitUnit { run: Some(run.clone()), ..CommitUnit::new(run.id) }])).await?;
        let event = |seq: usize| EventRecord {
            run_id: run.id,
            seq: seq as u64,
            user_id: "bench".into(),
            at: SystemTime::now(),
            event: RunEvent {
                step: 1,
                percent: 50.0,
                kind: EventKind::NodeCompleted { task: "n".into(), attempts: 1 },
            },
        };
        let store: Rc<dyn graphloop::Store> = store;
        let started = Instant::now();
        let mut seq = 1;
        while seq <= events {
            let upto = (seq + batch).min(events + 1);
            let batch =
                Batch::of(vec![CommitUnit { events: (seq..upto).map(event).collect(), ..CommitUnit::new(run.id) }]);
            store.write(&batch).await?;
            seq = upto;
        }
        Ok(events as f64 / started.elapsed().as_secs_f64())
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async {
        let graph = chain()?;

        for durability in [Durability::Sync, Durability::Async] {
            let engine = Engine::start(EngineConfig::new().durability(durability)).await?;
            engine.register(graph.clone())?;
            engine.register(chain_of("short", 1)?)?;
            engine.register(chain_of("long", 33)?)?;
            concurrent(&engine, 50).await?; // warm-up
            let runs = 1_000;
            let mut per_run = Vec::new();
            for name in ["short", "chain", "long"] {
                let started = Instant::now();
                for _ in 0..runs {
                    let id = engine.start_run(name, &Chain::default(), UserContext::new("u")).await?;
                    completed(&engine, id).await?;
                }
                per_run.push(started.elapsed().as_secs_f64() * 1e6 / runs as f64);
            }
            println!(
                "W1 {durability:?}: {runs} sequential runs, memory store: 8-node chain {:.0} µs/run; 1-node {:.0} µs/run, 33-node {:.0} µs/run: {:.1} µs per added step",
                per_run[1],
                per_run[0],
                per_run[2],
                (per_run[2] - per_run[0]) / 32.0
            );
            engine.shutdown().await?;

            let engine = Engine::start(EngineConfig::new().durability(durability).max_running(1_000)).await?;
            engine.register(graph.clone())?;
            let secs = concurrent(&engine, 1_000).await?;
            println!(
                "W2 {durability:?}: 1,000 concurrent runs, memory store: {:.0} runs/s, {:.0} steps/s, peak RSS {:.0} MiB",
                1_000.0 / secs,
                8_000.0 / secs,
                peak_rss_mib()
            );
            engine.shutdown().await?;
        }

        let Some(admin) = admin().await else {
            println!("W3, P1: skipped, PostgreSQL not reachable at {} (`just db-up`)", database_url());
            return Ok::<(), Box<dyn std::error::Error>>(());
        };
        let schema = format!("glbench_{}", uuid::Uuid::now_v7().simple());
        let store = PgStoreConfig::new(database_url()).schema(&schema);
        let engine = Engine::start(EngineConfig::new().store(store).max_running(200)).await?;
        engine.register(graph)?;
        concurrent(&engine, 50).await?; // warm-up
        let secs = concurrent(&engine, 200).await?;
        let stats = engine.shutdown().await?.persister.unwrap_or_default();
        println!(
            "W3 200 concurrent runs, PostgreSQL, sync commit per step: {:.0} runs/s, {:.0} steps/s, {:.0} rows/s ({} transactions for 250 runs, {:.0} rows and {:.1} ms each)",
            200.0 / secs,
            1_600.0 / secs,
            stats.rows_written as f64 * 0.8 / secs,
            stats.batches_written,
            stats.rows_written as f64 / stats.batches_written.max(1) as f64,
            stats.total_commit_latency.as_secs_f64() * 1e3 / stats.batches_written.max(1) as f64,
        );

        let store = PgStoreConfig::new(database_url()).schema(format!("{schema}_starts"));
        let engine = Engine::start(EngineConfig::new().store(store).max_running(200)).await?;
        engine.register(chain_of("short", 1)?)?;
        start_latency(&engine, 50, false).await?; // warm-up
        for keyed in [false, true] {
            let (mean, p50, p99) = start_latency(&engine, 500, keyed).await?;
            println!(
                "S1 start latency, PostgreSQL, {} starts one after another (answered once the run row is committed): mean {mean:.0} µs, p50 {p50:.0} µs, p99 {p99:.0} µs",
                if keyed { "500 keyed" } else { "500 unkeyed" }
            );
        }
        engine.shutdown().await?;

        let p1_schema = format!("{schema}_p1");
        let (grouped, single) = tokio::task::spawn_blocking(move || {
            let grouped = store_throughput(&p1_schema, 20_000, 2_000);
            let single_schema = format!("{p1_schema}_single");
            let single = store_throughput(&single_schema, 2_000, 1);
            (grouped.map_err(|e| e.to_string()), single.map_err(|e| e.to_string()))
        })
        .await?;
        println!(
            "P1 store write path, PostgreSQL: group commit (2,000 events/transaction) {:.0} events/s; one transaction per event {:.0} events/s",
            grouped?, single?
        );
        for s in [schema.clone(), format!("{schema}_starts"), format!("{schema}_p1"), format!("{schema}_p1_single")] {
            admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE")).await?;
        }
        Ok(())
    })?;
    Ok(())
}
