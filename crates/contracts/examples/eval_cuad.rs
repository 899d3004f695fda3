//! A fast development loop for the CUAD evaluation (the reference executor, no engine):
//! `cargo run --release -p graphloop-contracts --example eval_cuad -- <dir with labels.json>`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use graphloop_contracts::cuad::{self, AnswerScores, Counts};

#[derive(serde::Deserialize)]
struct Answers {
    answers: BTreeMap<String, String>,
}
use graphloop_contracts::{contract_graph, ContractState, RuleModel};
use graphloop_core::Executor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: eval_cuad <dir with labels.json>")?);
    let verbose = std::env::args().any(|a| a == "-v");
    let labels: BTreeMap<String, BTreeMap<String, Vec<String>>> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("labels.json"))?)?;
    let answers: BTreeMap<String, Answers> = serde_json::from_str(&std::fs::read_to_string(dir.join("answers.json"))?)?;
    let graph = contract_graph(Arc::new(RuleModel))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    let mut counts: BTreeMap<&'static str, Counts> = BTreeMap::new();
    let mut extraction = AnswerScores::default();
    let started = Instant::now();
    for (file, labelled) in &labels {
        let text = std::fs::read_to_string(dir.join(file))?;
        let done = rt.block_on(Executor::new(&graph).run(ContractState::new(file.clone(), text)))?;
        let predicted = cuad::predictions(&done);
        if verbose {
            for (name, _) in cuad::CATEGORIES {
                let want = labelled.get(*name).is_some_and(|s| !s.is_empty());
                let got = predicted.get(name);
                if want != got.is_some() {
                    println!(
                        "{file:.30} {name}: want {want}, got {:?}",
                        got.map(|e| e.first().map(|s| s.chars().take(160).collect::<String>()))
                    );
                }
            }
        }
        cuad::score(&predicted, labelled, &mut counts);
        if let Some(answers) = answers.get(file) {
            cuad::score_answers(&done, &answers.answers, &mut extraction);
            if verbose {
                let want = answers.answers.get("Governing Law").cloned().unwrap_or_default();
                let got = done.facts.as_ref().and_then(|f| f.governing_law.clone()).unwrap_or_default();
                println!("{file:.30} law {want:?}/{got:?} parties {:?}", done.document.as_ref().map(|d| &d.parties));
            }
        }
    }
    let elapsed = started.elapsed();
    println!("| category | TP | FP | FN | precision | recall | F1 | evidence overlap |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    for (name, c) in &counts {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {:.2} | {} |",
            c.true_positives,
            c.false_positives,
            c.false_negatives,
            fmt(c.precision()),
            fmt(c.recall()),
            c.f1(),
            fmt(c.overlap_rate())
        );
    }
    println!(
        "\nmacro-F1 {:.3}; {:.0} ms per contract",
        cuad::macro_f1(&counts),
        elapsed.as_secs_f64() * 1e3 / labels.len() as f64
    );
    let rate = |h: cuad::Hits| format!("{}/{}", h.hits, h.total);
    println!(
        "governing law {}, agreement date {}, effective date {}, expiration date {}, parties found {} expected {}",
        rate(extraction.governing_law),
        rate(extraction.agreement_date),
        rate(extraction.effective_date),
        rate(extraction.expiration_date),
        rate(extraction.parties_found),
        rate(extraction.parties_expected)
    );
    Ok(())
}
