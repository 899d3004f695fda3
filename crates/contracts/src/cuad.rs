//! Scoring the analyser against CUAD's expert labels (the Contract Understanding Atticus
//! Dataset, CC BY 4.0): the mapping from graphloop's clause types to CUAD categories, the
//! predictions a finished run makes for each category, and the scores.
//!
//! Pure functions over parsed labels: reading `labels.json` and `answers.json` is the
//! caller's business (the CLI's `graphloop eval`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use std::sync::LazyLock;

use regex::Regex;

use crate::extract::dates;
use crate::rules::{compile, IP_TRANSFER};
use crate::text::regex_or_never;

static IP_TRANSFER_RE: LazyLock<Regex> =
    LazyLock::new(|| compile(IP_TRANSFER).unwrap_or_else(|_| regex_or_never(r"[^\s\S]")));
use crate::types::{ClauseType, ContractState};

/// How a CUAD category is read off a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    /// A clause type was found.
    Clause(ClauseType),
    /// A non-solicit finding about employees, personnel or staff.
    SolicitEmployees,
    /// A non-solicit finding about customers or clients.
    SolicitCustomers,
    /// An automatic renewal with a notice period to stop it.
    RenewalNotice,
    /// A renewal or extension provision, automatic or not.
    Renewal,
    /// An IP-ownership finding that moves rights to the other party (assigns, vests,
    /// work made for hire), not one where a party keeps its own.
    IpAssignment,
}

/// CUAD's categories that graphloop covers, and how each is detected.
pub const CATEGORIES: &[(&str, Detect)] = &[
    ("Governing Law", Detect::Clause(ClauseType::GoverningLaw)),
    ("Anti-Assignment", Detect::Clause(ClauseType::Assignment)),
    ("Change Of Control", Detect::Clause(ClauseType::ChangeOfControl)),
    ("Cap On Liability", Detect::Clause(ClauseType::LimitationOfLiability)),
    ("Audit Rights", Detect::Clause(ClauseType::AuditRights)),
    ("Insurance", Detect::Clause(ClauseType::Insurance)),
    ("Exclusivity", Detect::Clause(ClauseType::Exclusivity)),
    ("Non-Compete", Detect::Clause(ClauseType::NonCompete)),
    ("No-Solicit Of Employees", Detect::SolicitEmployees),
    ("No-Solicit Of Customers", Detect::SolicitCustomers),
    ("Termination For Convenience", Detect::Clause(ClauseType::TerminationForConvenience)),
    ("Renewal Term", Detect::Renewal),
    ("Notice Period To Terminate Renewal", Detect::RenewalNotice),
    ("Ip Ownership Assignment", Detect::IpAssignment),
    ("License Grant", Detect::Clause(ClauseType::LicenseGrant)),
    ("Uncapped Liability", Detect::Clause(ClauseType::UncappedLiability)),
    ("Minimum Commitment", Detect::Clause(ClauseType::MinimumCommitment)),
    ("Post-Termination Services", Detect::Clause(ClauseType::PostTerminationServices)),
    ("Revenue/Profit Sharing", Detect::Clause(ClauseType::RevenueSharing)),
    ("Warranty Duration", Detect::Clause(ClauseType::WarrantyDuration)),
];

/// The evidence a finished run gives for each covered category it predicts present.
pub fn predictions(state: &ContractState) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    let of = |clause: ClauseType| -> Vec<String> {
        state.findings.iter().filter(|f| f.clause == clause).map(|f| f.evidence.clone()).collect()
    };
    let mentions = |words: &[&str]| -> Vec<String> {
        of(ClauseType::NonSolicit)
            .into_iter()
            .filter(|e| {
                let lower = e.to_lowercase();
                words.iter().any(|w| lower.contains(w))
            })
            .collect()
    };
    for (name, detect) in CATEGORIES {
        let evidence = match detect {
            Detect::Clause(clause) => of(*clause),
            Detect::Renewal => [of(ClauseType::Renewal), of(ClauseType::AutoRenewal)].concat(),
            Detect::SolicitEmployees => mentions(&["employee", "personnel", "staff", "hire"]),
            Detect::SolicitCustomers => mentions(&["customer", "clients", "users", "subscribers"]),
            Detect::IpAssignment => {
                of(ClauseType::IpOwnership).into_iter().filter(|e| IP_TRANSFER_RE.is_match(e)).collect()
            }
            Detect::RenewalNotice => {
                let renews = state.facts.as_ref().is_some_and(|f| f.auto_renewal && f.renewal_notice_days.is_some());
                if renews {
                    of(ClauseType::AutoRenewal)
                } else {
                    Vec::new()
                }
            }
        };
        if !evidence.is_empty() {
            out.insert(*name, evidence);
        }
    }
    out
}

/// Collapses whitespace and lowercases, for comparing spans of differently spaced text.
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Whether a finding's evidence overlaps a labelled span: one contains the other, or
/// they share a run of at least 40 characters (after [`squash`]). A span may join
/// non-adjacent pieces with `<omitted>`; each piece counts on its own.
pub fn overlaps(evidence: &str, span: &str) -> bool {
    let evidence = squash(evidence);
    span.split("<omitted>")
        .map(squash)
        .filter(|piece| !piece.is_empty())
        .any(|piece| evidence.contains(&piece) || piece.contains(&evidence) || common_run(&evidence, &piece) >= 40)
}

/// The length (in bytes) of the longest common substring of two strings.
fn common_run(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous = vec![0usize; b.len() + 1];
    let mut best = 0;
    for &x in a {
        let mut current = vec![0usize; b.len() + 1];
        for (j, &y) in b.iter().enumerate() {
            if x == y {
                current[j + 1] = previous[j] + 1;
                best = best.max(current[j + 1]);
            }
        }
        previous = current;
    }
    best
}

/// Counts for one category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Labelled and predicted.
    pub true_positives: u32,
    /// Predicted, not labelled.
    pub false_positives: u32,
    /// Labelled, not predicted.
    pub false_negatives: u32,
    /// True positives whose evidence overlaps a labelled span.
    pub evidence_overlaps: u32,
}

impl Counts {
    /// TP / (TP + FP), or `None` when nothing was predicted.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.true_positives, self.true_positives + self.false_positives)
    }

    /// TP / (TP + FN), or `None` when nothing is labelled.
    pub fn recall(&self) -> Option<f64> {
        ratio(self.true_positives, self.true_positives + self.false_negatives)
    }

    /// The harmonic mean of precision and recall; 1 when there was nothing to find and
    /// nothing was found, 0 when one side is empty and the other is not.
    pub fn f1(&self) -> f64 {
        let (tp, fp, fn_) = (self.true_positives, self.false_positives, self.false_negatives);
        if tp + fp + fn_ == 0 {
            return 1.0;
        }
        f64::from(2 * tp) / f64::from(2 * tp + fp + fn_)
    }

    /// Of the true positives, the share whose evidence overlaps a label.
    pub fn overlap_rate(&self) -> Option<f64> {
        ratio(self.evidence_overlaps, self.true_positives)
    }
}

fn ratio(n: u32, d: u32) -> Option<f64> {
    (d > 0).then(|| f64::from(n) / f64::from(d))
}

/// Adds one contract's predictions against its labels (`category → spans`; an empty or
/// missing list means absent) to `counts`.
pub fn score(
    predicted: &BTreeMap<&'static str, Vec<String>>,
    labels: &BTreeMap<String, Vec<String>>,
    counts: &mut BTreeMap<&'static str, Counts>,
) {
    for (name, _) in CATEGORIES {
        let spans = labels.get(*name).map(Vec::as_slice).unwrap_or_default();
        let evidence = predicted.get(name);
        let c = counts.entry(name).or_default();
        match (evidence, spans.is_empty()) {
            (Some(evidence), false) => {
                c.true_positives += 1;
                if evidence.iter().any(|e| spans.iter().any(|s| overlaps(e, s))) {
                    c.evidence_overlaps += 1;
                }
            }
            (Some(_), true) => c.false_positives += 1,
            (None, false) => c.false_negatives += 1,
            (None, true) => {}
        }
    }
}

/// The mean F1 over the covered categories.
pub fn macro_f1(counts: &BTreeMap<&'static str, Counts>) -> f64 {
    if counts.is_empty() {
        return 0.0;
    }
    counts.values().map(Counts::f1).sum::<f64>() / counts.len() as f64
}

/// A jurisdiction normalised for comparison: lowercase, no "the state of", first part of
/// "Ontario, Canada".
pub fn normalise_jurisdiction(text: &str) -> String {
    let lower = squash(text);
    let lower = lower.split(',').next().unwrap_or_default().trim();
    let lower = [
        "the state of ",
        "state of ",
        "the commonwealth of ",
        "commonwealth of ",
        "the province of ",
        "province of ",
        "the ",
    ]
    .iter()
    .fold(lower.to_owned(), |acc, prefix| acc.strip_prefix(prefix).map(str::to_owned).unwrap_or(acc));
    lower.trim_end_matches('.').to_owned()
}

/// A date as CUAD's answers write it ("9/23/16", "5/29/2018") or as the analyser does
/// ("2016-09-23"), as ISO 8601; `None` when it is not a full date (redacted, "Perpetual").
pub fn normalise_date(text: &str) -> Option<String> {
    let text = text.trim();
    if let Some(iso) = dates(text).into_iter().next() {
        return Some(iso);
    }
    let parts: Vec<&str> = text.split('/').collect();
    let [month, day, year] = parts.as_slice() else { return None };
    let (month, day): (u32, u32) = (month.parse().ok()?, day.parse().ok()?);
    let year: u32 = year.parse().ok()?;
    let year = match year {
        0..=49 => 2000 + year,
        50..=99 => 1900 + year,
        y => y,
    };
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then(|| format!("{year:04}-{month:02}-{day:02}"))
}

/// Hits against CUAD's answers (`answers.json`) for the extracted facts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerScores {
    /// Governing-law jurisdiction: exact after [`normalise_jurisdiction`].
    pub governing_law: Hits,
    /// Agreement date against the analyser's effective date.
    pub agreement_date: Hits,
    /// Effective date.
    pub effective_date: Hits,
    /// Expiration date.
    pub expiration_date: Hits,
    /// Parties found that are among the answer's (precision).
    pub parties_found: Hits,
    /// Answer parties that were found (recall).
    pub parties_expected: Hits,
}

/// Matches out of the answers that have a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hits {
    /// Exact matches.
    pub hits: u32,
    /// Answers with a usable value.
    pub total: u32,
}

impl Hits {
    fn add(&mut self, hit: bool) {
        self.total += 1;
        self.hits += u32::from(hit);
    }

    /// hits / total, or `None` when there was nothing to score.
    pub fn rate(&self) -> Option<f64> {
        ratio(self.hits, self.total)
    }
}

/// A party's name normalised for comparison: its defined nickname dropped, lowercase,
/// punctuation and corporate suffixes' dots removed.
pub fn normalise_party(name: &str) -> String {
    let name = name.split(['(', '"', '\u{201c}']).next().unwrap_or_default();
    let kept: String =
        name.chars().map(|c| if c.is_alphanumeric() || c == '&' { c.to_ascii_lowercase() } else { ' ' }).collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The parties of a CUAD answer ("A Inc. ("A"); B LLC ("B"); individually as "Party" ..."),
/// normalised; entries that only define collective terms are dropped.
pub fn answer_parties(answer: &str) -> Vec<String> {
    answer
        .split(';')
        .filter(|entry| {
            let lower = entry.to_lowercase();
            !(lower.contains("collectively") || lower.contains("individually") || lower.contains("referred to"))
        })
        .map(normalise_party)
        .filter(|name| name.chars().any(char::is_alphabetic))
        .collect()
}

/// Adds one contract's extracted facts, scored against its CUAD answers, to `scores`.
pub fn score_answers(state: &ContractState, answers: &BTreeMap<String, String>, scores: &mut AnswerScores) {
    let facts = state.facts.clone().unwrap_or_default();
    let answer = |name: &str| answers.get(name).map(String::as_str).unwrap_or_default().trim();
    if !answer("Governing Law").is_empty() {
        let got = facts.governing_law.as_deref().map(normalise_jurisdiction);
        scores.governing_law.add(got == Some(normalise_jurisdiction(answer("Governing Law"))));
    }
    for (name, hits, got) in [
        ("Agreement Date", &mut scores.agreement_date, &facts.effective_date),
        ("Effective Date", &mut scores.effective_date, &facts.effective_date),
        ("Expiration Date", &mut scores.expiration_date, &facts.expiration_date),
    ] {
        if let Some(want) = normalise_date(answer(name)) {
            hits.add(got.as_deref() == Some(want.as_str()));
        }
    }
    let want = answer_parties(answer("Parties"));
    if !want.is_empty() {
        let found: Vec<String> =
            state.document.as_ref().map(|d| d.parties.iter().map(|p| normalise_party(p)).collect()).unwrap_or_default();
        for party in &found {
            scores.parties_found.add(want.contains(party));
        }
        for party in &want {
            scores.parties_expected.add(found.contains(party));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_ignores_spacing_and_case_and_splits_omitted_pieces() {
        let span =
            "The  Supplier shall not assign\nthis Agreement <omitted> without consent of the Buyer, which consent";
        assert!(overlaps("the supplier shall not assign this agreement", span));
        assert!(overlaps("Any assignment without consent of the Buyer, which consent shall not be withheld", span));
        assert!(!overlaps("This Agreement is governed by the laws of Texas.", span));
    }

    #[test]
    fn scores_count_each_case() {
        let mut counts = BTreeMap::new();
        let predicted: BTreeMap<&'static str, Vec<String>> =
            [("Governing Law", vec!["governed by the laws of Texas".to_owned()]), ("Insurance", vec!["x".to_owned()])]
                .into_iter()
                .collect();
        let labels: BTreeMap<String, Vec<String>> = [
            ("Governing Law".to_owned(), vec!["This Agreement shall be governed by the laws of Texas.".to_owned()]),
            ("Audit Rights".to_owned(), vec!["may audit".to_owned()]),
        ]
        .into_iter()
        .collect();
        score(&predicted, &labels, &mut counts);
        assert_eq!(counts["Governing Law"], Counts { true_positives: 1, evidence_overlaps: 1, ..Counts::default() });
        assert_eq!(counts["Insurance"].false_positives, 1);
        assert_eq!(counts["Audit Rights"].false_negatives, 1);
        assert_eq!(counts["Exclusivity"].f1(), 1.0);
        assert_eq!(counts["Insurance"].f1(), 0.0);
    }

    #[test]
    fn parties_normalise() {
        let answer =
            "Antares Pharma, Inc. (\"Antares\"); AMAG Pharmaceuticals, Inc. (\"AMAG\"); individually as \"Party\"";
        assert_eq!(answer_parties(answer), ["antares pharma inc", "amag pharmaceuticals inc"]);
        assert_eq!(normalise_party("Antares Pharma, Inc."), "antares pharma inc");
    }

    #[test]
    fn answers_normalise() {
        assert_eq!(normalise_jurisdiction("Ontario, Canada"), "ontario");
        assert_eq!(normalise_jurisdiction("the State of New York"), "new york");
        assert_eq!(normalise_date("9/23/16").as_deref(), Some("2016-09-23"));
        assert_eq!(normalise_date("5/14/2014").as_deref(), Some("2014-05-14"));
        assert_eq!(normalise_date("[]/[]/2015"), None);
        assert_eq!(normalise_date("Perpetual"), None);
    }
}
