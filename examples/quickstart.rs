//! A small review workflow run by the engine: two contracts, each its own supervised run
//! on its own arbiter, followed live. Shows a parallel fan-out with a join, a dynamic
//! fan-out over sections, a conditional edge, retries and graph-aware progress.
//!
//! Run with `cargo run --example quickstart` (in-memory store), or with `DATABASE_URL`
//! set to store the runs in PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use graphloop::prelude::*;
use graphloop::{Engine, EngineConfig, EventKind, PgStoreConfig, RunEvent, Streamed};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Review {
    text: String,
    sections: Vec<String>,
    words: usize,
    findings: Vec<String>,
    score: u32,
}

const CONTRACT: &str = "1. Term. This agreement renews automatically each year.\n\
2. Liability. Liability of the supplier is unlimited.\n\
3. Law. This agreement is governed by the laws of Sweden.";

fn graph() -> Result<graphloop::Graph<Review>, graphloop::GraphError> {
    GraphBuilder::<Review>::new("quick-review")
        .node("split", |s: Arc<Review>, _ctx| async move {
            let sections: Vec<String> = s.text.lines().map(str::to_owned).collect();
            Ok(Update::new().set("sections", sections))
        })
        .node("count", |s: Arc<Review>, _ctx| async move {
            Ok(Update::new().set("words", s.text.split_whitespace().count()))
        })
        .node("classify", |_s, ctx: NodeContext| async move {
            let section: String = ctx.input()?;
            ctx.progress(0.5, "matching clause patterns");
            tokio::time::sleep(Duration::from_millis(20)).await;
            let lower = section.to_lowercase();
            let found: Vec<String> = [("renews automatically", "auto-renewal"), ("unlimited", "uncapped liability")]
                .iter()
                .filter(|(pattern, _)| lower.contains(pattern))
                .map(|(_, finding)| (*finding).to_owned())
                .collect();
            Ok(Update::new().set("findings", found))
        })
        .node("score", |s: Arc<Review>, _ctx| async move {
            Ok(Update::new().set("score", 100 - 30 * s.findings.len() as u32))
        })
        .node("escalate", |_s, _ctx| async move { Ok(Update::new().set("findings", ["escalated to counsel"])) })
        .edge(START, "split")
        .edge(START, "count")
        .fan_out("split", "classify", |s: &Review| s.sections.clone())
        .join(["classify", "count"], "score")
        .conditional_edge("score", ["escalate", END], |s: &Review| if s.score < 50 { "escalate" } else { END })
        .edge("escalate", END)
        .reducer("findings", Reducer::append())
        .retry("classify", RetryPolicy::new().max_attempts(3))
        .compile()
}

fn describe(event: &RunEvent) -> Option<String> {
    Some(match &event.kind {
        EventKind::StepStarted { tasks } => format!("step {} started: {}", event.step, tasks.join(", ")),
        EventKind::NodeProgress { task, message, .. } => format!("  {task}: {message}"),
        EventKind::NodeCompleted { task, attempts } => format!("  {task} done ({attempts} attempt(s))"),
        EventKind::RunCompleted => "run completed".to_owned(),
        EventKind::RunFailed { error } => format!("run failed: {error}"),
        _ => return None,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let graph = graph()?;
    println!("{}", graph.to_mermaid());

    // With DATABASE_URL, runs are stored in PostgreSQL; without, in memory.
    let mut config = EngineConfig::new();
    if let Ok(url) = std::env::var("DATABASE_URL") {
        config = config.store(PgStoreConfig::new(url));
    }
    let engine = Engine::start(config).await?;
    engine.register(graph)?;

    let contracts = [CONTRACT, "1. Fees. Payment is due within 30 days.\n2. Law. Governed by the laws of Ontario."];
    let mut runs = Vec::new();
    for (i, text) in contracts.iter().enumerate() {
        let input = Review { text: (*text).to_owned(), ..Review::default() };
        runs.push((i + 1, engine.start_run("quick-review", &input, UserContext::new("demo")).await?));
    }
    // Follow each run live, as a web page would over SSE.
    let mut followers = Vec::new();
    for (n, run) in &runs {
        let (n, mut events) = (*n, engine.subscribe(*run, 1).await?);
        followers.push(tokio::spawn(async move {
            while let Some(item) = events.next().await {
                let event = match &item {
                    Streamed::Event(record) => &record.event,
                    Streamed::Progress { event, .. } => event,
                };
                if let Some(line) = describe(event) {
                    println!("contract {n} [{:5.1}%] {line}", event.percent);
                }
            }
        }));
    }
    for follower in followers {
        follower.await?;
    }
    println!();
    for (n, run) in runs {
        let done = engine.wait(run).await?;
        let review: Review = serde_json::from_value(done.output.unwrap_or_default())?;
        println!(
            "contract {n}: {} — words {}, score {}, findings {:?}",
            done.status, review.words, review.score, review.findings
        );
    }
    engine.shutdown().await?;
    Ok(())
}
