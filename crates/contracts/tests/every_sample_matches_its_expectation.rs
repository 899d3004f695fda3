//! Each shipped sample contract is analysed by the graph and checked against its labelled
//! expectation file (`samples/expected/<stem>.json`): title, kind, parties, exactly the
//! clause types present, key facts, and the risks expected among the top three.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use graphloop_contracts::{contract_graph, ClauseType, ContractKind, ContractState, Facts, Report, RuleModel};
use graphloop_core::Executor;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Expected {
    title: String,
    kind: ContractKind,
    parties: Vec<String>,
    clauses: BTreeSet<ClauseType>,
    facts: Facts,
    top_risks: Vec<String>,
}

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md" || e == "txt"))
        .collect();
    files.sort();
    files
}

fn analyse(path: &Path) -> Report {
    let graph = contract_graph(Arc::new(RuleModel)).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let done = rt.block_on(Executor::new(&graph).run(ContractState::new(name, text))).unwrap();
    done.report.expect("a completed run has a report")
}

fn differences(report: &Report, want: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    let check = |out: &mut Vec<String>, what: &str, got: String, want: String| {
        if got != want {
            out.push(format!("{what}: got {got}, want {want}"));
        }
    };
    check(&mut out, "title", report.title.clone(), want.title.clone());
    check(&mut out, "kind", format!("{:?}", report.kind), format!("{:?}", want.kind));
    check(&mut out, "parties", format!("{:?}", report.parties), format!("{:?}", want.parties));
    let found: BTreeSet<ClauseType> = report.clauses.iter().map(|c| c.clause).collect();
    let extra: Vec<_> = found.difference(&want.clauses).collect();
    let missed: Vec<_> = want.clauses.difference(&found).collect();
    if !extra.is_empty() || !missed.is_empty() {
        let evidence: Vec<String> = report
            .clauses
            .iter()
            .filter(|c| extra.contains(&&c.clause))
            .map(|c| format!("{} <- {:?}", c.clause, c.evidence))
            .collect();
        out.push(format!("clauses: false positives {extra:?} {evidence:#?}, missed {missed:?}"));
    }
    let (got, want_facts) = (&report.facts, &want.facts);
    check(&mut out, "effective_date", format!("{:?}", got.effective_date), format!("{:?}", want_facts.effective_date));
    check(&mut out, "term_months", format!("{:?}", got.term_months), format!("{:?}", want_facts.term_months));
    check(&mut out, "auto_renewal", got.auto_renewal.to_string(), want_facts.auto_renewal.to_string());
    check(
        &mut out,
        "renewal_notice_days",
        format!("{:?}", got.renewal_notice_days),
        format!("{:?}", want_facts.renewal_notice_days),
    );
    check(
        &mut out,
        "termination_notice_days",
        format!("{:?}", got.termination_notice_days),
        format!("{:?}", want_facts.termination_notice_days),
    );
    check(&mut out, "governing_law", format!("{:?}", got.governing_law), format!("{:?}", want_facts.governing_law));
    check(&mut out, "liability_cap", format!("{:?}", got.liability_cap), format!("{:?}", want_facts.liability_cap));
    check(&mut out, "amounts", format!("{:?}", got.amounts), format!("{:?}", want_facts.amounts));
    let top: Vec<&str> = report.risks.iter().take(3).map(|r| r.kind.id()).collect();
    for risk in &want.top_risks {
        if !top.contains(&risk.as_str()) {
            out.push(format!("top risks: {risk} not in {top:?}"));
        }
    }
    out
}

#[test]
fn every_sample_matches_its_expectation() {
    let samples = samples();
    assert!(samples.len() >= 8, "expected at least 8 samples, found {}", samples.len());
    let mut failures = Vec::new();
    for path in &samples {
        let stem = path.file_stem().unwrap().to_string_lossy();
        let expected = path.parent().unwrap().join("expected").join(format!("{stem}.json"));
        let want: Expected = serde_json::from_str(&std::fs::read_to_string(&expected).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", expected.display()));
        let report = analyse(path);
        for difference in differences(&report, &want) {
            failures.push(format!("{stem}: {difference}"));
        }
    }
    assert!(failures.is_empty(), "{} difference(s):\n{}", failures.len(), failures.join("\n"));
}
