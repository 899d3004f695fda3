//! The child process of the crash-injection suite
//! (`tests/a_crash_right_after_any_commit_never_reruns_a_completed_step.rs`, issue 11).
//!
//! - `crash_worker start <schema> <crash_after>` starts one run of a 5-step chain on
//!   PostgreSQL with `Sync` durability, prints `started <run>` once the start is
//!   acknowledged (then `commits_at_start <n>`: the persister's commits so far), waits for
//!   the run, shuts down and prints `commits <n>` (every commit of the process). With
//!   `crash_after` > 0 the persister's failpoint aborts the process right after its
//!   `crash_after`-th commit (0: no failpoint).
//! - `crash_worker recover <schema>` resumes what an earlier worker left unfinished, prints
//!   `recovered <n>`, waits for those runs and shuts down cleanly.
//! - `crash_worker reference` runs the same graph, from the same input, on the reference
//!   executor (`graphloop::Executor`, no engine, no store) and prints `reference <json>`,
//!   the final state.
//!
//! The persister flushes only when someone waits (a flush interval of an hour), so the
//! commits of a run are the same in every process: its start's row, then each step's unit.
//! Each node records its execution (run, step, node) in the test's own `executions` table
//! with a connection of its own, made and dropped on the node's loop, before it returns.

use std::sync::Arc;
use std::time::Duration;

use graphloop::prelude::*;
use graphloop::{Durability, Engine, EngineConfig, PersisterConfig, PgStoreConfig};
use serde::{Deserialize, Serialize};

const GRAPH: &str = "crash";
const STEPS: u64 = 5;

/// The state: an order-sensitive fold and the path taken, so the final state tells a
/// step applied twice, skipped or applied out of order from the right one.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Work {
    seed: u64,
    total: u64,
    path: Vec<String>,
}

fn input() -> Work {
    Work { seed: 7, total: 1, path: Vec::new() }
}

fn database_url() -> String {
    std::env::var("GRAPHLOOP_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

async fn record_execution(schema: &str, ctx: &NodeContext) -> Result<(), NodeError> {
    let mut config: tokio_postgres::Config = database_url().parse().map_err(|e| NodeError::fatal(format!("{e}")))?;
    config.options(format!("-c search_path={schema}"));
    let (client, connection) =
        config.connect(tokio_postgres::NoTls).await.map_err(|e| NodeError::retryable(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let step = i64::try_from(ctx.step()).unwrap_or(i64::MAX);
    client
        .execute(
            "INSERT INTO executions (run_id, step, node) VALUES ($1, $2, $3)",
            &[&ctx.run_id(), &step, &ctx.node()],
        )
        .await
        .map_err(|e| NodeError::retryable(e.to_string()))?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// A chain `n0 → n1 → … → n4`; with `schema`, each node records its execution there.
fn graph(schema: Option<&str>) -> Result<graphloop::Graph<Work>, graphloop::GraphError> {
    let mut builder = GraphBuilder::<Work>::new(GRAPH).reducer("path", Reducer::append());
    for i in 0..STEPS {
        let schema = schema.map(str::to_owned);
        builder = builder.node(format!("n{i}"), move |s: Arc<Work>, ctx: NodeContext| {
            let schema = schema.clone();
            async move {
                if let Some(schema) = &schema {
                    record_execution(schema, &ctx).await?;
                }
                let total = (s.total * 31 + s.seed * (i + 1) + ctx.step()) % 1_000_003;
                Ok(Update::new().set("total", total).set("path", [format!("{}@{}", ctx.node(), ctx.step())]))
            }
        });
    }
    builder = builder.edge(START, "n0").edge(format!("n{}", STEPS - 1), END);
    for i in 1..STEPS {
        builder = builder.edge(format!("n{}", i - 1), format!("n{i}"));
    }
    builder.compile()
}

async fn engine(schema: &str, crash_after: u64) -> Result<Engine, Box<dyn std::error::Error>> {
    // Batches are written only when someone waits for them (every step's commit, under
    // `Sync`; a start, for its row): never on a timer, so the commits are deterministic.
    let mut persister = PersisterConfig::default().flush_interval(Duration::from_secs(3600));
    if crash_after > 0 {
        persister = persister.crash_after_commits(crash_after);
    }
    let store = PgStoreConfig::new(database_url()).schema(schema).pool_size(2);
    let config = EngineConfig::new().store(store).durability(Durability::Sync).persister(persister).max_running(4);
    let engine = Engine::start(config).await?;
    engine.register(graph(Some(schema))?)?;
    Ok(engine)
}

async fn shutdown(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let report = engine.shutdown().await?;
    if !report.complete {
        return Err(format!("shutdown was not complete: {report:?}").into());
    }
    let commits = report.persister.ok_or("no persister stats after shutdown")?.batches_written;
    println!("commits {commits}");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        (Some("start"), Some(schema), Some(crash_after)) => {
            let engine = engine(schema, crash_after.parse()?).await?;
            let id = engine.start_run(GRAPH, &input(), UserContext::new("crash-user")).await?;
            println!("started {id}");
            println!("commits_at_start {}", engine.stats().await?.persister.batches_written);
            let run = engine.wait(id).await?;
            println!("finished {}", run.status.as_str());
            shutdown(&engine).await
        }
        (Some("recover"), Some(schema), None) => {
            let engine = engine(schema, 0).await?;
            let ids = engine.recover().await?;
            println!("recovered {}", ids.len());
            for id in ids {
                let run = engine.wait(id).await?;
                println!("finished {}", run.status.as_str());
            }
            shutdown(&engine).await
        }
        (Some("reference"), None, None) => {
            let done = Executor::new(&graph(None)?).run(input()).await?;
            println!("reference {}", Update::from_serialize(&done).to_json());
            Ok(())
        }
        _ => Err("usage: crash_worker start <schema> <crash_after> | recover <schema> | reference".into()),
    }
}
