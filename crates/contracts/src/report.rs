//! The report: the structured result of a run, and its renderings for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::risk::overall_score;
use crate::rules::standard_clauses;
use crate::types::{ClauseSummary, ClauseType, Document, Facts, Finding, Report, Risk, Severity};

/// Findings below this confidence are not reported as clauses.
pub const MIN_CONFIDENCE: f64 = 0.5;

/// Assembles the report (without its summary) from what the graph found.
pub(crate) fn build(name: &str, doc: &Document, findings: &[Finding], facts: &Facts, risks: &[Risk]) -> Report {
    let mut by_clause: BTreeMap<ClauseType, Vec<&Finding>> = BTreeMap::new();
    for finding in findings.iter().filter(|f| f.confidence >= MIN_CONFIDENCE) {
        by_clause.entry(finding.clause).or_default().push(finding);
    }
    let clauses: Vec<ClauseSummary> = ClauseType::ALL
        .iter()
        .filter_map(|clause| {
            let found = by_clause.get(clause)?;
            let best = found.iter().max_by(|a, b| a.confidence.total_cmp(&b.confidence))?;
            let mut sections: Vec<String> = Vec::new();
            for f in found {
                if !sections.contains(&f.section) {
                    sections.push(f.section.clone());
                }
            }
            Some(ClauseSummary { clause: *clause, sections, evidence: best.evidence.clone() })
        })
        .collect();
    let missing =
        standard_clauses(doc.kind).iter().copied().filter(|c| !clauses.iter().any(|s| s.clause == *c)).collect();
    Report {
        contract: name.to_owned(),
        title: doc.title.clone(),
        kind: doc.kind,
        parties: doc.parties.clone(),
        sections: doc.sections.len(),
        clauses,
        missing,
        facts: facts.clone(),
        risks: risks.to_vec(),
        score: overall_score(risks),
        summary: String::new(),
    }
}

fn verdict(score: u32) -> &'static str {
    match score {
        80.. => "low risk",
        55..=79 => "moderate risk: negotiate the points below",
        _ => "high risk: have counsel review before signing",
    }
}

/// The few sentences the rule model writes as a summary.
pub(crate) fn summary(report: &Report) -> String {
    let mut out = String::new();
    let parties = match report.parties.as_slice() {
        [] => String::new(),
        [one] => format!(" with {one}"),
        [first, rest @ ..] => format!(" between {first} and {}", rest.join(", ")),
    };
    let _ = write!(out, "{}{parties}: {} clause types found", report.title, report.clauses.len());
    if !report.missing.is_empty() {
        let missing: Vec<String> = report.missing.iter().map(|c| c.id().replace('_', " ")).collect();
        let _ = write!(out, ", missing {}", missing.join(", "));
    }
    out.push('.');
    let high: Vec<&Risk> = report.risks.iter().filter(|r| r.severity == Severity::High).collect();
    match high.as_slice() {
        [] => out.push_str(" No high risks."),
        risks => {
            let titles: Vec<String> = risks.iter().map(|r| r.title.to_lowercase()).collect();
            let _ = write!(out, " High risks: {}.", titles.join("; "));
        }
    }
    let _ = write!(out, " Overall score {}/100 ({}).", report.score, verdict(report.score));
    out
}

/// The report as Markdown, for a person.
pub fn to_markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", if report.title.is_empty() { &report.contract } else { &report.title });
    let _ = writeln!(out, "- **Contract:** {}", report.contract);
    let _ = writeln!(out, "- **Kind:** {}", report.kind);
    if !report.parties.is_empty() {
        let _ = writeln!(out, "- **Parties:** {}", report.parties.join("; "));
    }
    let _ = writeln!(out, "- **Score:** {}/100 ({})\n", report.score, verdict(report.score));
    let _ = writeln!(out, "{}\n", report.summary);

    let _ = writeln!(out, "## Risks\n");
    if report.risks.is_empty() {
        let _ = writeln!(out, "None found.\n");
    }
    for (i, risk) in report.risks.iter().enumerate() {
        let _ =
            writeln!(out, "{}. **{}** ({}, {}): {}", i + 1, risk.title, risk.severity, risk.score, risk.recommendation);
        if !risk.evidence.is_empty() {
            let _ = writeln!(out, "   > {} ({})", one_line(&risk.evidence), risk.section);
        }
    }

    let facts = &report.facts;
    let _ = writeln!(out, "\n## Key terms\n");
    let none = || "-".to_owned();
    let _ = writeln!(out, "| term | value |\n|---|---|");
    let _ = writeln!(out, "| effective date | {} |", facts.effective_date.clone().unwrap_or_else(none));
    let _ = writeln!(out, "| initial term | {} |", facts.term_months.map_or_else(none, |m| format!("{m} months")));
    let _ = writeln!(out, "| expires | {} |", facts.expiration_date.clone().unwrap_or_else(none));
    let renewal = match (facts.auto_renewal, facts.renewal_notice_days) {
        (false, _) => "no".to_owned(),
        (true, Some(days)) => format!("automatic, {days} days' notice to stop"),
        (true, None) => "automatic".to_owned(),
    };
    let _ = writeln!(out, "| renewal | {renewal} |");
    let _ = writeln!(
        out,
        "| termination for convenience | {} |",
        facts.termination_notice_days.map_or_else(none, |d| format!("{d} days' notice"))
    );
    let _ = writeln!(out, "| governing law | {} |", facts.governing_law.clone().unwrap_or_else(none));
    let _ = writeln!(out, "| liability cap | {} |", facts.liability_cap.as_ref().map_or_else(none, |m| m.to_string()));
    let amounts: Vec<String> = facts.amounts.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "| amounts | {} |", if amounts.is_empty() { none() } else { amounts.join(", ") });

    let _ = writeln!(out, "\n## Clauses found\n");
    for clause in &report.clauses {
        let _ = writeln!(
            out,
            "- **{}** ({}): {}",
            clause.clause.id().replace('_', " "),
            clause.sections.join(", "),
            one_line(&clause.evidence)
        );
    }
    if !report.missing.is_empty() {
        let missing: Vec<String> = report.missing.iter().map(|c| c.id().replace('_', " ")).collect();
        let _ = writeln!(out, "\n**Missing standard clauses:** {}", missing.join(", "));
    }
    out
}

fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        format!("{}...", flat.chars().take(300).collect::<String>())
    } else {
        flat
    }
}
