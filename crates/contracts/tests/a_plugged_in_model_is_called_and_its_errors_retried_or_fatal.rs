//! An application plugs its own `Model` into the contract graph: the graph calls it for
//! every classify batch and for the summary, retries it when it is unavailable, and fails
//! the run (saying why) when it refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use graphloop_contracts::{
    contract_graph, ClauseType, ContractState, Document, Finding, Model, ModelError, Report, RuleModel, Section,
};
use graphloop_core::{Executor, RunError};

const CONTRACT: &str = "SERVICES AGREEMENT\n\n1. Fees. Client shall pay USD 1,000 per month.\n\n\
                        2. Governing Law. This Agreement is governed by the laws of Texas.\n";

/// Answers like the rule model, after failing the first `unavailable` calls; or refuses.
struct Flaky {
    calls: AtomicU32,
    unavailable: u32,
    refuse: bool,
}

impl Flaky {
    fn call(&self) -> Result<(), ModelError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.refuse {
            Err(ModelError::Refused("content policy".into()))
        } else if n < self.unavailable {
            Err(ModelError::Unavailable("rate limited".into()))
        } else {
            Ok(())
        }
    }
}

impl Model for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    fn classify<'a>(
        &'a self,
        document: &'a Document,
        sections: &'a [Section],
    ) -> BoxFuture<'a, Result<Vec<Finding>, ModelError>> {
        Box::pin(async move {
            self.call()?;
            RuleModel.classify(document, sections).await
        })
    }

    fn summarize<'a>(&'a self, _report: &'a Report) -> BoxFuture<'a, Result<String, ModelError>> {
        Box::pin(async move {
            self.call()?;
            Ok("summary by the flaky model".to_owned())
        })
    }
}

fn run(model: Arc<Flaky>) -> Result<ContractState, RunError> {
    let graph = contract_graph(model).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(Executor::new(&graph).run(ContractState::new("services.txt", CONTRACT)))
}

#[test]
fn an_unavailable_model_is_retried_and_its_answers_used() {
    let model = Arc::new(Flaky { calls: AtomicU32::new(0), unavailable: 2, refuse: false });
    let done = run(Arc::clone(&model)).unwrap();
    let report = done.report.unwrap();
    assert_eq!(report.summary, "summary by the flaky model");
    assert!(report.has(ClauseType::PaymentTerms) && report.has(ClauseType::GoverningLaw));
    let sections = done.document.unwrap().sections.len() as u32;
    // One call per section batch, one summary, and the two failed attempts.
    assert_eq!(model.calls.load(Ordering::SeqCst), sections + 1 + 2);
}

#[test]
fn a_refusing_model_fails_the_run_with_its_reason() {
    let model = Arc::new(Flaky { calls: AtomicU32::new(0), unavailable: 0, refuse: true });
    let error = run(model).unwrap_err().to_string();
    assert!(error.contains("model refused: content policy"), "{error}");
}
