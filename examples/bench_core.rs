//! Benchmarks of the workflow core, printed as figures for docs/benchmarks.md.
//!
//! Run with `just bench` (`cargo run --release --example bench_core`).
//!
//! - C1: reference-executor overhead: 1,000 sequential runs of an 8-node chain of trivial
//!   nodes; µs per run and per step.
//! - C2: 1,000 sequential runs of a fan-out of 50 invocations: µs per invocation.
//! - C3: how a node gets the state: one shared `Arc` per step (what graphloop does) against
//!   a clone per task, for a 150 KB contract fanned out over 50 sections.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use graphloop::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Chain {
    n: u64,
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct Doc {
    text: String,
    sections: Vec<String>,
    hits: Vec<u64>,
}

fn chain(len: usize) -> Result<graphloop::Graph<Chain>, graphloop::GraphError> {
    let mut builder = GraphBuilder::<Chain>::new("chain");
    for i in 0..len {
        builder =
            builder.node(format!("n{i}"), |s: Arc<Chain>, _ctx| async move { Ok(Update::new().set("n", s.n + 1)) });
    }
    builder = builder.edge(START, "n0");
    for i in 1..len {
        builder = builder.edge(format!("n{}", i - 1), format!("n{i}"));
    }
    builder.edge(format!("n{}", len - 1), END).compile()
}

fn fan_out(width: u64) -> Result<graphloop::Graph<Doc>, graphloop::GraphError> {
    GraphBuilder::<Doc>::new("fan")
        .node("plan", |_s, _ctx| async move { Ok(Update::new()) })
        .node("work", |s: Arc<Doc>, ctx: NodeContext| async move {
            let i: u64 = ctx.input()?;
            Ok(Update::new().set("hits", [i + s.sections.len() as u64]))
        })
        .edge(START, "plan")
        .fan_out("plan", "work", move |_s: &Doc| (0..width).collect::<Vec<_>>())
        .edge("work", END)
        .reducer("hits", Reducer::append())
        .compile()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    let runs = 1_000u32;

    let graph = chain(8)?;
    rt.block_on(Executor::new(&graph).run(Chain::default()))?; // warm-up
    let started = Instant::now();
    for _ in 0..runs {
        let done = rt.block_on(Executor::new(&graph).run(Chain::default()))?;
        assert_eq!(done.n, 8);
    }
    let per_run = started.elapsed().as_secs_f64() * 1e6 / f64::from(runs);
    println!("C1 8-node chain, {runs} sequential runs: {per_run:.1} µs/run, {:.2} µs/step", per_run / 8.0);

    let width = 50;
    let graph = fan_out(width)?;
    let started = Instant::now();
    for _ in 0..runs {
        let done = rt.block_on(Executor::new(&graph).run(Doc::default()))?;
        assert_eq!(done.hits.len(), width as usize);
    }
    let per_run = started.elapsed().as_secs_f64() * 1e6 / f64::from(runs);
    println!(
        "C2 fan-out of {width}, {runs} sequential runs: {per_run:.1} µs/run, {:.2} µs/invocation",
        per_run / width as f64
    );

    let text = "The Supplier shall indemnify the Customer against all claims. ".repeat(2_400); // ~150 KB
    let sections: Vec<String> =
        text.as_bytes().chunks(3_000).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    let doc = Doc { text, sections, hits: Vec::new() };
    let rounds = 200u32;
    let started = Instant::now();
    for _ in 0..rounds {
        let shared = Arc::new(doc.clone());
        for _ in 0..width {
            black_box(Arc::clone(&shared));
        }
    }
    let arc_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    let started = Instant::now();
    for _ in 0..rounds {
        for _ in 0..width {
            black_box(doc.clone());
        }
    }
    let clone_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    println!(
        "C3 150 KB state to {width} tasks: shared Arc {arc_us:.1} µs/step, clone per task {clone_us:.1} µs/step ({:.0}x)",
        clone_us / arc_us
    );
    Ok(())
}
