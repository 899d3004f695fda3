//! Contract analysis as a graphloop workflow: one run per contract, over real contract text.
//!
//! The graph ([`contract_graph`]) ingests a contract (normalises the text, finds its
//! title, kind, parties and numbered sections), classifies its clauses in a dynamic
//! fan-out over the sections, extracts key terms (dates, term and renewal, notice
//! periods, amounts, liability cap, governing law) in parallel, scores risks, sends
//! high risks through a deeper review, and writes a [`Report`] with a summary.
//!
//! Classification and the summary go through a [`Model`]: the default [`RuleModel`] is a
//! deterministic analyser driven by a table of patterns per clause type (the `rules`
//! module); an application can plug in a hosted language model instead, and
//! [`LatencyModel`] emulates one's latency.
//!
//! The analyser's CPU-bound work (every pattern search) runs on a small, fixed pool of
//! threads of this crate's own (as many as the machine has cores), never on a run's
//! loop: it keeps those loops responsive, and the regex engine's per-thread search caches
//! bounded by the pool's size rather than by the number of runs (issue 11).
//!
//! This crate does no I/O: it reads no files and opens no connections. It depends on
//! `graphloop-core` only; the CLI and the example service run its graph on the engine.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use graphloop_contracts::{contract_graph, ClauseType, ContractState, RiskKind, RuleModel};
//! use graphloop_core::Executor;
//!
//! let graph = contract_graph(Arc::new(RuleModel))?;
//! let text = "CONSULTING AGREEMENT\n\n1. Fees. Client shall pay USD 150 per hour, net 30.\n\
//!             2. Termination. Client may terminate this Agreement at any time without cause.";
//! let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
//! let done = rt.block_on(Executor::new(&graph).run(ContractState::new("consulting.txt", text)))?;
//! let report = done.report.expect("a completed run has a report");
//! assert!(report.has(ClauseType::PaymentTerms) && report.has(ClauseType::TerminationForConvenience));
//! assert!(report.risks.iter().any(|r| r.kind == RiskKind::MissingGoverningLaw));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cpu;
pub mod cuad;
mod extract;
mod graph;
mod model;
mod report;
mod risk;
mod rules;
mod text;
mod types;

pub use graph::{check_text, contract_graph, GRAPH_NAME, MAX_CLASSIFY_TASKS, MAX_CONTRACT_BYTES};
pub use model::{LatencyModel, Model, ModelError, RuleModel};
pub use report::{to_markdown, MIN_CONFIDENCE};
pub use risk::{severity, HIGH_RISK};
pub use types::{
    ClauseSummary, ClauseType, ContractKind, ContractState, Document, Facts, Finding, Money, Report, Risk, RiskKind,
    Section, Severity,
};

/// Ingests `text` into a [`Document`] (normalised text, title, kind, parties, sections),
/// as the graph's `ingest` node does.
pub fn ingest(text: &str) -> Document {
    text::ingest(text)
}
