//! The child process of the kill -9 test (`tests/a_killed_process_resumes_every_run_from_its_last_committed_step.rs`).
//!
//! `kill9_worker start <schema> <runs> [sync|async]` starts that many runs of a 5-node chain on
//! PostgreSQL and waits for them; `kill9_worker recover <schema> <runs>` resumes what an
//! earlier worker left unfinished and waits for it. Each node takes 50–200 ms and records
//! its execution in the test's own `executions` table (with a connection of its own, made
//! and dropped on the node's loop), then prints `executed <run> <step> <node>`.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use graphloop::prelude::*;
use graphloop::{Durability, Engine, EngineConfig, PgStoreConfig};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Work {
    done: Vec<String>,
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
    let attempt = i32::try_from(ctx.attempt()).unwrap_or(i32::MAX);
    client
        .execute(
            "INSERT INTO executions (run_id, step, node, attempt) VALUES ($1, $2, $3, $4)",
            &[&ctx.run_id(), &step, &ctx.node(), &attempt],
        )
        .await
        .map_err(|e| NodeError::retryable(e.to_string()))?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

fn graph(schema: &str) -> Result<graphloop::Graph<Work>, graphloop::GraphError> {
    let mut builder = GraphBuilder::<Work>::new("kill9").reducer("done", Reducer::append());
    for i in 0..5 {
        let schema = schema.to_owned();
        builder = builder.node(format!("n{i}"), move |_s: Arc<Work>, ctx: NodeContext| {
            let schema = schema.clone();
            async move {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                (ctx.run_id(), ctx.node()).hash(&mut hasher);
                tokio::time::sleep(Duration::from_millis(50 + hasher.finish() % 151)).await;
                record_execution(&schema, &ctx).await?;
                println!("executed {} {} {}", ctx.run_id(), ctx.step(), ctx.node());
                let _ = std::io::stdout().flush();
                Ok(Update::new().set("done", [ctx.node()]))
            }
        });
    }
    builder = builder.edge(START, "n0").edge("n4", END);
    for i in 1..5 {
        builder = builder.edge(format!("n{}", i - 1), format!("n{i}"));
    }
    builder.compile()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(schema), Some(runs)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("usage: kill9_worker start|recover <schema> <runs> [sync|async]".into());
    };
    let runs: usize = runs.parse()?;
    let durability = match args.get(4).map(String::as_str) {
        None | Some("sync") => Durability::Sync,
        Some("async") => Durability::Async,
        Some(other) => return Err(format!("unknown durability `{other}`").into()),
    };
    let store = PgStoreConfig::new(database_url()).schema(schema).pool_size(4);
    let engine = Engine::start(EngineConfig::new().store(store).durability(durability).max_running(20)).await?;
    engine.register(graph(schema)?)?;
    let ids = match mode.as_str() {
        "start" => {
            // All at once, as clients would: each answers once its run's row is committed.
            let starts = (0..runs).map(|i| {
                let user = UserContext::new(format!("user-{}", i % 5));
                let engine = engine.clone();
                async move { engine.start_run("kill9", &Work::default(), user).await }
            });
            futures_util::future::try_join_all(starts).await?
        }
        "recover" => engine.recover().await?,
        other => return Err(format!("unknown mode `{other}`").into()),
    };
    println!("admitted {}", ids.len());
    for id in ids {
        engine.wait(id).await?;
    }
    println!("done");
    engine.shutdown().await?;
    Ok(())
}
