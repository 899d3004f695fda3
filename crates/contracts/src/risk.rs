//! Risk assessment: scoring findings and absences, and the deeper review of high risks.

use std::sync::LazyLock;

use regex::Regex;

use crate::extract::periods;
use crate::rules::{compile, expects_liability_cap, recommendation, rule, standard_clauses};
use crate::text::regex_or_never;
use crate::text::sentences;
use crate::types::{ClauseType, Document, Facts, Finding, Risk, RiskKind, Section, Severity};

/// Scores at or above this are high and go through the deeper review.
pub const HIGH_RISK: u32 = 70;

/// The severity of a score.
pub fn severity(score: u32) -> Severity {
    match score {
        s if s >= HIGH_RISK => Severity::High,
        s if s >= 40 => Severity::Medium,
        _ => Severity::Low,
    }
}

fn pattern(p: &str) -> Regex {
    compile(p).unwrap_or_else(|_| regex_or_never(r"[^\s\S]"))
}

static UNLIMITED: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r"liabilit\w*[^.]{0,100}\b(?:unlimited|shall\s+not\s+be\s+limited|without\s+limit)|unlimited\s+liabilit")
});
static MUTUAL: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"\b(?:either\s+party|each\s+party|both\s+parties|any\s+party|the\s+parties|mutual)"));
static BROAD: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"any\s+and\s+all|howsoever|however\s+(?:arising|caused)|regardless\s+of|of\s+any\s+kind|whatsoever|arising\s+out\s+of\s+or\s+in\s+connection",
    )
});
static LATE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r"(\d+(?:\.\d+)?)\s*%\)?\s*(?:per\s+month|a\s+month|monthly|per\s+annum|a\s+year|per\s+year|annually)?")
});

fn risk(kind: RiskKind, score: u32, title: String, evidence: Option<&Finding>) -> Risk {
    Risk {
        kind,
        score,
        severity: severity(score),
        title,
        evidence: evidence.map(|f| f.evidence.clone()).unwrap_or_default(),
        section: evidence.map(|f| f.section.clone()).unwrap_or_default(),
        recommendation: recommendation(kind).to_owned(),
        reviewed: false,
    }
}

/// Scores the risks of a contract, highest first.
pub(crate) fn assess(doc: &Document, findings: &[Finding], facts: &Facts) -> Vec<Risk> {
    let of = |clause: ClauseType| findings.iter().filter(move |f| f.clause == clause);
    let has = |clause: ClauseType| of(clause).next().is_some();
    let mut risks = Vec::new();

    let capped = has(ClauseType::LimitationOfLiability);
    let everything = every_sentence(doc);
    let unlimited =
        everything.iter().find(|f| UNLIMITED.is_match(&f.evidence) && !(capped && CARVE_OUT.is_match(&f.evidence)));
    if let Some(f) = unlimited {
        risks.push(risk(RiskKind::UncappedLiability, 90, "Liability is expressly unlimited".into(), Some(f)));
    } else if !capped && expects_liability_cap(doc.kind) {
        risks.push(risk(RiskKind::UncappedLiability, 85, "Nothing limits either party's liability".into(), None));
    }

    let convenience: Vec<&Finding> = of(ClauseType::TerminationForConvenience).collect();
    if !convenience.is_empty() && convenience.iter().all(|f| !MUTUAL.is_match(&f.evidence)) {
        let notice = facts.termination_notice_days.map_or(String::new(), |d| format!(" on {d} days' notice"));
        let title = format!("Only one party may terminate without cause{notice}");
        risks.push(risk(RiskKind::UnilateralTermination, 75, title, convenience.first().copied()));
    }

    if facts.auto_renewal || has(ClauseType::AutoRenewal) {
        let evidence = of(ClauseType::AutoRenewal).next();
        match facts.renewal_notice_days {
            Some(days) if days <= 30 => risks.push(risk(
                RiskKind::AutoRenewalShortNotice,
                75,
                format!("Renews automatically unless notice is given {days} days ahead"),
                evidence,
            )),
            Some(days) => risks.push(risk(
                RiskKind::AutoRenewal,
                45,
                format!("Renews automatically unless notice is given {days} days ahead"),
                evidence,
            )),
            None => risks.push(risk(RiskKind::AutoRenewal, 50, "Renews automatically".into(), evidence)),
        }
    }

    if !has(ClauseType::GoverningLaw) {
        risks.push(risk(RiskKind::MissingGoverningLaw, 72, "No governing law is chosen".into(), None));
    }

    let indemnities = sentences_of(doc, findings, ClauseType::Indemnification);
    if let Some(f) = indemnities.iter().find(|f| BROAD.is_match(&f.evidence)) {
        risks.push(risk(RiskKind::BroadIndemnity, 65, "Indemnity covers any and all losses".into(), Some(f)));
    }

    let restraints = sentences_of(doc, findings, ClauseType::NonCompete);
    let longest = restraints
        .iter()
        .filter(|f| rule(ClauseType::NonCompete).is_some_and(|r| r.matches(&f.evidence)))
        .filter_map(|f| periods(&f.evidence).into_iter().map(|p| p.months()).max().map(|m| (m, f)))
        .max_by_key(|(months, _)| *months);
    if let Some((months, f)) = longest.filter(|(months, _)| *months > 12) {
        let score = if months >= 24 { 80 } else { 70 };
        risks.push(risk(RiskKind::LongNonCompete, score, format!("Non-compete lasts {months} months"), Some(f)));
    }

    if let Some(f) = of(ClauseType::Exclusivity).next() {
        risks.push(risk(RiskKind::Exclusivity, 55, "Exclusive dealing binds one party to the other".into(), Some(f)));
    }

    let payments = sentences_of(doc, findings, ClauseType::PaymentTerms);
    if let Some((f, rate)) = payments.iter().find_map(|f| late_rate(&f.evidence).map(|r| (f, r))) {
        if rate >= 12.0 {
            risks.push(risk(
                RiskKind::LatePaymentPenalty,
                35,
                format!("Late payment costs about {rate:.0}% a year"),
                Some(f),
            ));
        }
    }

    for clause in standard_clauses(doc.kind).iter().filter(|c| !has(**c)) {
        let title = format!("No {} clause", clause.id().replace('_', " "));
        let mut missing = risk(RiskKind::MissingClause, 30, title, None);
        missing.recommendation = format!("Consider adding a {} clause.", clause.id().replace('_', " "));
        risks.push(missing);
    }

    rank(&mut risks);
    risks
}

/// Every sentence of the sections in which `clause` was found, as findings of it: the
/// model points at the sections, the checks read all of each.
fn sentences_of(doc: &Document, findings: &[Finding], clause: ClauseType) -> Vec<Finding> {
    doc.sections
        .iter()
        .filter(|section| {
            let label = section.label();
            findings.iter().any(|f| f.clause == clause && f.section == label)
        })
        .flat_map(|section| section_sentences(doc, section, clause))
        .collect()
}

/// Every sentence of the document, as findings of nothing in particular.
fn every_sentence(doc: &Document) -> Vec<Finding> {
    doc.sections.iter().flat_map(|section| section_sentences(doc, section, ClauseType::LimitationOfLiability)).collect()
}

fn section_sentences(doc: &Document, section: &Section, clause: ClauseType) -> Vec<Finding> {
    let body = doc.section_text(section);
    sentences(body)
        .into_iter()
        .map(|(start, end)| Finding {
            clause,
            section: section.label(),
            evidence: body[start..end].to_owned(),
            start: section.start + start,
            end: section.start + end,
            confidence: 1.0,
        })
        .collect()
}

/// The yearly rate of a late-payment sentence ("1.5% per month" is 18).
fn late_rate(sentence: &str) -> Option<f64> {
    let lower = sentence.to_lowercase();
    if !(lower.contains("late")
        || lower.contains("overdue")
        || lower.contains("past due")
        || lower.contains("interest"))
    {
        return None;
    }
    let caps = LATE.captures(sentence)?;
    let rate: f64 = caps.get(1)?.as_str().parse().ok()?;
    let unit = caps.get(0)?.as_str().to_lowercase();
    Some(if unit.contains("month") { rate * 12.0 } else { rate })
}

/// Highest score first; ties by kind, so the order is stable.
fn rank(risks: &mut [Risk]) {
    risks.sort_by(|a, b| b.score.cmp(&a.score).then(a.kind.cmp(&b.kind)).then(a.title.cmp(&b.title)));
}

/// Whether any risk needs the deeper review.
pub(crate) fn needs_review(risks: &[Risk]) -> bool {
    risks.iter().any(|r| r.severity == Severity::High)
}

static CARVE_OUT: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"gross\s+negligence|wil(?:l)?ful\s+misconduct|fraud|breach\s+of\s+confidentiality"));

/// The deeper review of high risks: looks for what mitigates or aggravates each one in
/// the rest of the contract, adjusts the score and says what to do.
pub(crate) fn review(doc: &Document, findings: &[Finding], facts: &Facts, mut risks: Vec<Risk>) -> Vec<Risk> {
    let has = |clause: ClauseType| findings.iter().any(|f| f.clause == clause);
    for risk in risks.iter_mut().filter(|r| r.severity == Severity::High) {
        let mut notes: Vec<String> = Vec::new();
        match risk.kind {
            RiskKind::UncappedLiability => {
                if has(ClauseType::Insurance) {
                    risk.score = risk.score.saturating_sub(5);
                    notes.push("Insurance obligations soften the exposure, up to the insured amounts.".into());
                }
                if has(ClauseType::Indemnification) {
                    risk.score = (risk.score + 5).min(100);
                    notes.push("Indemnities are not capped either.".into());
                }
            }
            RiskKind::UnilateralTermination => match facts.termination_notice_days {
                Some(days) if days < 30 => {
                    risk.score = (risk.score + 5).min(100);
                    notes.push(format!("The notice period is only {days} days."));
                }
                Some(_) => notes.push("The notice period leaves some time to wind down.".into()),
                None => {}
            },
            RiskKind::AutoRenewalShortNotice => {
                if let Some(months) = facts.term_months {
                    notes.push(format!("Missing the window commits to another period after the {months}-month term."));
                }
            }
            RiskKind::MissingGoverningLaw if !has(ClauseType::DisputeResolution) => {
                risk.score = (risk.score + 5).min(100);
                notes.push("No forum for disputes is chosen either.".into());
            }
            RiskKind::LongNonCompete if doc.kind == crate::types::ContractKind::Employment => {
                notes.push("Courts in many places refuse to enforce long post-employment restraints.".into());
            }
            _ => {}
        }
        if findings.iter().any(|f| f.clause == ClauseType::LimitationOfLiability && CARVE_OUT.is_match(&f.evidence)) {
            notes.push("The liability clause carves out misconduct; check the carve-outs' reach.".into());
        }
        risk.severity = severity(risk.score);
        risk.reviewed = true;
        let mut advice = recommendation(risk.kind).to_owned();
        for note in notes {
            advice.push(' ');
            advice.push_str(&note);
        }
        risk.recommendation = advice;
    }
    rank(&mut risks);
    risks
}

/// The overall score: 100 less each risk's weighted score.
pub(crate) fn overall_score(risks: &[Risk]) -> u32 {
    let penalty: f64 = risks
        .iter()
        .map(|r| {
            let weight = match r.severity {
                Severity::High => 0.35,
                Severity::Medium => 0.2,
                Severity::Low => 0.1,
            };
            f64::from(r.score) * weight
        })
        .sum();
    (100.0 - penalty).clamp(0.0, 100.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_rates_are_yearly() {
        assert_eq!(late_rate("Late payments bear interest at 1.5% per month."), Some(18.0));
        assert_eq!(late_rate("Overdue sums bear interest at 8% per annum."), Some(8.0));
        assert_eq!(late_rate("The price includes 20% VAT."), None);
    }

    #[test]
    fn the_score_falls_with_each_risk() {
        let high = risk(RiskKind::UncappedLiability, 90, String::new(), None);
        let low = risk(RiskKind::MissingClause, 30, String::new(), None);
        assert_eq!(overall_score(&[]), 100);
        assert!(overall_score(std::slice::from_ref(&high)) < overall_score(std::slice::from_ref(&low)));
        assert!(overall_score(&[high, low.clone()]) < overall_score(&[low]));
    }
}
