//! Prints what the analyser makes of one contract: sections, findings, facts, risks.
//!
//! `cargo run -p graphloop-contracts --example inspect -- <file>`

use std::sync::Arc;

use graphloop_contracts::{contract_graph, ContractState, RuleModel};
use graphloop_core::Executor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: inspect <contract file>")?;
    let text = std::fs::read_to_string(&path)?;
    let graph = contract_graph(Arc::new(RuleModel))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    let done = rt.block_on(Executor::new(&graph).run(ContractState::new(path, text)))?;
    if let Some(doc) = &done.document {
        println!("title: {:?}\nkind: {:?}\nparties: {:?}", doc.title, doc.kind, doc.parties);
        for section in &doc.sections {
            println!("  section {:?}", section.label());
        }
    }
    for f in &done.findings {
        println!("{:<28} {:.2} [{}] {}", f.clause.id(), f.confidence, f.section, f.evidence.replace('\n', " "));
    }
    println!("{:#?}", done.facts);
    for r in &done.risks {
        println!("risk {} {} {}: {}", r.score, r.kind, r.title, r.evidence.replace('\n', " "));
    }
    Ok(())
}
