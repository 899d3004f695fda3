//! Precision and recall of the clause classifier over the labelled samples: every
//! `samples/*.md|txt` against `samples/expected/<stem>.json`.
//!
//! `cargo run --release -p graphloop-contracts --example score_samples [-- <samples dir>]`

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use graphloop_contracts::{contract_graph, ClauseType, ContractState, RuleModel};
use graphloop_core::Executor;

#[derive(Default)]
struct Counts {
    true_pos: u32,
    false_pos: u32,
    false_neg: u32,
}

fn ratio(n: u32, d: u32) -> String {
    if d == 0 {
        "-".to_owned()
    } else {
        format!("{:.2}", f64::from(n) / f64::from(d))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "samples".to_owned()));
    let graph = contract_graph(Arc::new(RuleModel))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md" || e == "txt"))
        .collect();
    paths.sort();
    let mut counts: BTreeMap<ClauseType, Counts> = BTreeMap::new();
    // Warm up: the first run compiles the pattern tables.
    if let Some(first) = paths.first() {
        let warm = ContractState::new("warm-up", std::fs::read_to_string(first)?);
        rt.block_on(Executor::new(&graph).run(warm))?;
    }
    let started = Instant::now();
    for path in &paths {
        let stem = path.file_stem().ok_or("no file stem")?.to_string_lossy();
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected").join(format!("{stem}.json")))?)?;
        let want: BTreeSet<ClauseType> = serde_json::from_value(expected["clauses"].clone())?;
        let name = path.file_name().ok_or("no file name")?.to_string_lossy().into_owned();
        let done = rt.block_on(Executor::new(&graph).run(ContractState::new(name, std::fs::read_to_string(path)?)))?;
        let report = done.report.ok_or("a completed run has a report")?;
        let got: BTreeSet<ClauseType> = report.clauses.iter().map(|c| c.clause).collect();
        for clause in ClauseType::ALL {
            let c = counts.entry(clause).or_default();
            match (got.contains(&clause), want.contains(&clause)) {
                (true, true) => c.true_pos += 1,
                (true, false) => c.false_pos += 1,
                (false, true) => c.false_neg += 1,
                (false, false) => {}
            }
        }
    }
    let elapsed = started.elapsed();
    println!("| clause type | labelled | found | precision | recall |");
    println!("|---|---:|---:|---:|---:|");
    let mut total = Counts::default();
    for (clause, c) in &counts {
        println!(
            "| {} | {} | {} | {} | {} |",
            clause.id(),
            c.true_pos + c.false_neg,
            c.true_pos + c.false_pos,
            ratio(c.true_pos, c.true_pos + c.false_pos),
            ratio(c.true_pos, c.true_pos + c.false_neg)
        );
        total.true_pos += c.true_pos;
        total.false_pos += c.false_pos;
        total.false_neg += c.false_neg;
    }
    println!(
        "| **all (micro)** | {} | {} | {} | {} |",
        total.true_pos + total.false_neg,
        total.true_pos + total.false_pos,
        ratio(total.true_pos, total.true_pos + total.false_pos),
        ratio(total.true_pos, total.true_pos + total.false_neg)
    );
    println!(
        "\n{} contracts in {:.1} ms ({:.2} ms each)",
        paths.len(),
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e3 / paths.len().max(1) as f64
    );
    Ok(())
}
