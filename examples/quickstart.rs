//! A small review workflow run by the reference executor, printing its events as they
//! happen: a parallel fan-out with a join, a dynamic fan-out over sections, a conditional
//! edge, retries and graph-aware progress.
//!
//! Run with `cargo run --example quickstart`.

use std::sync::Arc;
use std::time::Duration;

use graphloop::prelude::*;
use graphloop::{EventKind, RunEvent};
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

fn print_event(event: RunEvent) {
    let what = match &event.kind {
        EventKind::StepStarted { tasks } => format!("step {} started: {}", event.step, tasks.join(", ")),
        EventKind::NodeProgress { task, message, .. } => format!("  {task}: {message}"),
        EventKind::NodeCompleted { task, attempts } => format!("  {task} done ({attempts} attempt(s))"),
        EventKind::RunCompleted => "run completed".to_owned(),
        EventKind::RunFailed { error } => format!("run failed: {error}"),
        _ => return,
    };
    println!("[{:5.1}%] {what}", event.percent);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let graph = graph()?;
    println!("{}", graph.to_mermaid());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    let input = Review { text: CONTRACT.to_owned(), ..Review::default() };
    let user = UserContext::new("demo");
    let review = runtime.block_on(Executor::new(&graph).user(user).events(print_event).run(input))?;
    println!("\nwords: {}, score: {}, findings: {:?}", review.words, review.score, review.findings);
    Ok(())
}
