//! The contract-analysis graph.
//!
//! ```text
//! START → ingest ─┬─ classify × N (fan-out over sections) ─┬─ assess ─┬─ review ─ report → END
//!                 └─ extract ──────────────────────────────┘          └────────── report
//! ```
//!
//! Every node that searches the pattern tables (ingest, extract, assess, review, and the
//! [`RuleModel`](crate::RuleModel)'s classify) does so on the analyser's pool (`cpu`), and
//! only awaits the answer on the run's loop.

use std::sync::Arc;
use std::time::Duration;

use graphloop_core::{Graph, GraphBuilder, GraphError, NodeContext, NodeError, RetryPolicy, Update, END, START};

use crate::cpu;
use crate::model::{Model, ModelError};
use crate::types::{ContractState, Document, Section};
use crate::{extract, report, risk, text};

/// The name the graph is registered under.
pub const GRAPH_NAME: &str = "contract-analysis";

/// At most this many classify tasks per contract: sections are batched beyond it.
pub const MAX_CLASSIFY_TASKS: usize = 8;

/// Contracts larger than this (bytes) are refused by `ingest`.
pub const MAX_CONTRACT_BYTES: usize = 2 * 1024 * 1024;

impl From<ModelError> for NodeError {
    fn from(err: ModelError) -> Self {
        match err {
            ModelError::Unavailable(_) => NodeError::retryable(err.to_string()),
            ModelError::Refused(_) => NodeError::fatal(err.to_string()),
            ModelError::Panicked(message) => NodeError::panic(message),
        }
    }
}

/// A panic on the analyser's pool is the node's panic: its retry policy applies.
impl From<cpu::Panicked> for NodeError {
    fn from(err: cpu::Panicked) -> Self {
        NodeError::panic(err.0)
    }
}

fn document(state: &ContractState) -> Result<&Document, NodeError> {
    state.document.as_ref().ok_or_else(|| NodeError::fatal("the contract has not been ingested"))
}

/// Why a text cannot be analysed, if it cannot: empty, too large, or binary.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the contract is empty".into());
    }
    if text.len() > MAX_CONTRACT_BYTES {
        return Err(format!("the contract is {} bytes, more than the limit of {MAX_CONTRACT_BYTES}", text.len()));
    }
    let control = text.chars().filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{0c}')).count();
    if text.contains('\0') || control * 100 > text.chars().count() {
        return Err("the contract looks like binary data, not text".into());
    }
    Ok(())
}

/// Contiguous batches of section indices, at most [`MAX_CLASSIFY_TASKS`] of them.
fn batches(sections: &[Section]) -> Vec<Vec<usize>> {
    if sections.is_empty() {
        return Vec::new();
    }
    let size = sections.len().div_ceil(MAX_CLASSIFY_TASKS);
    (0..sections.len()).collect::<Vec<_>>().chunks(size).map(<[usize]>::to_vec).collect()
}

/// The contract-analysis graph, classifying and summarising with `model`.
pub fn contract_graph(model: Arc<dyn Model>) -> Result<Graph<ContractState>, GraphError> {
    let classifier = model.clone();
    let summarizer = model;
    GraphBuilder::<ContractState>::new(GRAPH_NAME)
        .node("ingest", |s: Arc<ContractState>, ctx: NodeContext| async move {
            check_text(&s.text).map_err(NodeError::fatal)?;
            ctx.progress(0.2, "normalising text");
            let mut doc = cpu::run(move || text::ingest(&s.text)).await?;
            if doc.sections.is_empty() {
                doc.sections.push(Section {
                    index: 0,
                    number: String::new(),
                    heading: String::new(),
                    start: 0,
                    end: doc.text.len(),
                });
            }
            Ok(Update::new().set("document", doc).set("text", ""))
        })
        .node("classify", move |s: Arc<ContractState>, ctx: NodeContext| {
            let model = classifier.clone();
            async move {
                let indices: Vec<usize> = ctx.input()?;
                let doc = document(&s)?;
                let sections: Vec<Section> = indices.iter().filter_map(|i| doc.sections.get(*i).cloned()).collect();
                ctx.progress(0.1, &format!("classifying {} section(s)", sections.len()));
                let findings = model.classify(doc, &sections).await?;
                Ok(Update::new().set("findings", findings))
            }
        })
        .node("extract", |s: Arc<ContractState>, _ctx| async move {
            let facts = cpu::run(move || document(&s).map(extract::facts)).await??;
            Ok(Update::new().set("facts", facts))
        })
        .node("assess", |s: Arc<ContractState>, _ctx| async move {
            let risks = cpu::run(move || {
                let facts = s.facts.clone().unwrap_or_default();
                document(&s).map(|doc| risk::assess(doc, &s.findings, &facts))
            })
            .await??;
            Ok(Update::new().set("risks", risks))
        })
        .node("review", |s: Arc<ContractState>, _ctx| async move {
            let risks = cpu::run(move || {
                let facts = s.facts.clone().unwrap_or_default();
                document(&s).map(|doc| risk::review(doc, &s.findings, &facts, s.risks.clone()))
            })
            .await??;
            Ok(Update::new().set("risks", risks))
        })
        .node("report", move |s: Arc<ContractState>, ctx: NodeContext| {
            let model = summarizer.clone();
            async move {
                let facts = s.facts.clone().unwrap_or_default();
                let mut report = report::build(&s.name, document(&s)?, &s.findings, &facts, &s.risks);
                ctx.progress(0.5, "writing the summary");
                report.summary = model.summarize(&report).await?;
                Ok(Update::new().set("report", report))
            }
        })
        .edge(START, "ingest")
        .fan_out("ingest", "classify", |s: &ContractState| {
            s.document.as_ref().map(|d| batches(&d.sections)).unwrap_or_default()
        })
        .edge("ingest", "extract")
        .join(["classify", "extract"], "assess")
        .conditional_edge("assess", ["review", "report"], |s: &ContractState| {
            if risk::needs_review(&s.risks) {
                "review"
            } else {
                "report"
            }
        })
        .edge("review", "report")
        .edge("report", END)
        .reducer("findings", graphloop_core::Reducer::append())
        .retry("classify", RetryPolicy::new().max_attempts(4))
        .retry("report", RetryPolicy::new().max_attempts(4))
        .default_timeout(Duration::from_secs(120))
        .compile()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(n: usize) -> Vec<Section> {
        (0..n).map(|index| Section { index, number: String::new(), heading: String::new(), start: 0, end: 0 }).collect()
    }

    #[test]
    fn batches_cover_every_section_once_in_at_most_the_limit() {
        for n in [0, 1, 7, 8, 9, 64, 201] {
            let got = batches(&sections(n));
            assert!(got.len() <= MAX_CLASSIFY_TASKS, "{n}: {} batches", got.len());
            assert_eq!(got.concat(), (0..n).collect::<Vec<_>>(), "{n}");
        }
    }

    #[test]
    fn bad_text_is_refused_with_a_reason() {
        assert_eq!(check_text(" \n\t").unwrap_err(), "the contract is empty");
        assert!(check_text("PK\u{3}\u{4}\0\0binary").unwrap_err().contains("binary"));
        assert!(check_text(&"a".repeat(MAX_CONTRACT_BYTES + 1)).unwrap_err().contains("limit"));
        assert!(check_text("1. Term. One year.").is_ok());
    }
}
