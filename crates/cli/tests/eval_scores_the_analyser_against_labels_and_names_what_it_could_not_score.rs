//! `graphloop eval` scores the analyser against labels in CUAD's format: counts per
//! category, evidence overlap and extraction hits on a labelled set built from the
//! samples, whose expectation files (samples/expected) say what the analyser finds; a
//! missing contract is named and scored as finding nothing; bad JSON is one line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{describe, graphloop, json_of, run, Scratch, SAMPLES};
use serde_json::{json, Value};

/// nda-mutual.md's governing-law sentence, verbatim.
const NDA_GOVERNING_LAW: &str = "This Agreement shall be governed by and construed in accordance with the laws of \
                                 the State of Delaware, without regard to its conflict of laws principles.";

/// A labelled span that no evidence overlaps.
const UNSHARED: &str = "[a span that shares nothing with the contracts]";

/// Copies samples into `dir`.
fn copy(dir: &Path, samples: &[&str]) {
    for sample in samples {
        std::fs::copy(Path::new(SAMPLES).join(sample), dir.join(sample)).unwrap();
    }
}

fn write(dir: &Path, name: &str, value: &Value) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// The counts of `category` in `eval --json` output: TP, FP, FN, evidence overlaps.
fn counts(summary: &Value, category: &str) -> (u64, u64, u64, u64) {
    let c = summary["categories"]
        .as_array()
        .expect("a categories array")
        .iter()
        .find(|c| c["category"] == category)
        .unwrap_or_else(|| panic!("no {category} in {summary:#}"));
    let n = |key: &str| c[key].as_u64().unwrap_or_else(|| panic!("{key} of {category} in {c}"));
    (n("true_positives"), n("false_positives"), n("false_negatives"), n("evidence_overlaps"))
}

fn hits(summary: &Value, fact: &str) -> (u64, u64) {
    let h = &summary["extraction"][fact];
    (h["hits"].as_u64().unwrap(), h["total"].as_u64().unwrap())
}

#[test]
fn labelled_samples_are_scored_per_category_with_evidence_overlap_and_extraction_hits() {
    let scratch = Scratch::new();
    let dir = &scratch.0;
    copy(dir, &["nda-mutual.md", "supply-agreement.txt", "consulting-agreement.md"]);
    let nda = std::fs::read_to_string(dir.join("nda-mutual.md")).unwrap();
    assert!(nda.contains(NDA_GOVERNING_LAW), "nda-mutual.md no longer has its governing-law sentence");

    // What the analyser finds (samples/expected): nda-mutual has governing law and
    // assignment, no insurance, exclusivity or audit rights; supply-agreement has
    // governing law, assignment, exclusivity and audit rights, no insurance;
    // consulting-agreement has assignment, no governing law, insurance or exclusivity.
    write(
        dir,
        "labels.json",
        &json!({
            "nda-mutual.md": {
                "Governing Law": [NDA_GOVERNING_LAW],                   // TP, overlapping
                "Insurance": ["Each Party shall maintain insurance."],  // FN
                "Anti-Assignment": [],                                  // FP
                "Exclusivity": [],                                      // nothing either way
            },
            "supply-agreement.txt": {
                "Governing Law": [UNSHARED],                            // TP, no overlap
                "Exclusivity": [UNSHARED],                              // TP, no overlap
                "Audit Rights": [],                                     // FP
                // Anti-Assignment not listed: absent, so FP
            },
            "consulting-agreement.md": {
                "Governing Law": ["governed by the laws of Oregon"],    // FN
                "Anti-Assignment": [UNSHARED],                          // TP, no overlap
                "Insurance": ["shall carry insurance"],                 // FN
            },
        }),
    );
    write(
        dir,
        "answers.json",
        &json!({
            "nda-mutual.md": {
                "contract_type": "Non-Disclosure Agreement",
                "answers": {
                    "Governing Law": "Delaware", // right
                    "Effective Date": "3/3/25",  // right
                    "Parties": "Halvorsen Maritime Systems, Inc. (\"Halvorsen\"); Quillfeather Data Labs LLC; \
                                individually as \"Party\"",
                    "Insurance": "No",
                },
            },
            "supply-agreement.txt": {"answers": {"Governing Law": "Texas"}}, // wrong
            "consulting-agreement.md": {"answers": {"Governing Law": ""}},   // no answer
        }),
    );

    let output = run(&mut graphloop(["eval".as_ref(), dir.as_os_str(), "--json".as_ref()]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let summary = json_of(&output);

    assert_eq!(counts(&summary, "Governing Law"), (2, 0, 1, 1), "{summary:#}");
    assert_eq!(counts(&summary, "Anti-Assignment"), (1, 2, 0, 0), "{summary:#}");
    assert_eq!(counts(&summary, "Insurance"), (0, 0, 2, 0), "{summary:#}");
    assert_eq!(counts(&summary, "Exclusivity"), (1, 0, 0, 0), "{summary:#}");
    assert_eq!(counts(&summary, "Audit Rights"), (0, 1, 0, 0), "{summary:#}");
    let law = summary["categories"][0].clone();
    assert_eq!((law["category"].as_str(), law["overlap_rate"].as_f64()), (Some("Governing Law"), Some(0.5)));
    assert_eq!(summary["categories"].as_array().unwrap().len(), 20, "one entry per covered category");
    assert_eq!(summary["categories_scored"], 20);
    assert!(summary["macro_f1"].as_f64().is_some_and(|f1| (0.0..=1.0).contains(&f1)), "{summary:#}");

    assert_eq!(hits(&summary, "governing_law"), (1, 2), "{summary:#}");
    assert_eq!(hits(&summary, "effective_date"), (1, 1), "{summary:#}");
    assert_eq!(hits(&summary, "agreement_date"), (0, 0), "{summary:#}");
    assert_eq!(hits(&summary, "parties_found"), (2, 2), "{summary:#}");
    assert_eq!(hits(&summary, "parties_expected"), (2, 2), "{summary:#}");

    assert_eq!(summary["timing"]["contracts"], 3, "{summary:#}");
    assert_eq!(summary["failed"], json!([]));

    // The same evaluation as a table: a row per category, then the totals.
    let output = run(&mut graphloop(["eval".as_ref(), dir.as_os_str()]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let table = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("category") && rows[1].starts_with("Governing Law"), "{table}");
    let law: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!(law[2..], ["2", "0", "1", "1.00", "0.67", "0.80", "0.50"], "{table}");
    assert!(table.contains("over 20 categories"), "{table}");
    assert!(table.contains("extraction: governing law 1/2, agreement date 0/0, effective date 1/1"), "{table}");
    assert!(table.contains("parties precision 2/2 recall 2/2"), "{table}");
    assert!(table.contains("timing: 3 contracts in"), "{table}");
}

#[test]
fn a_missing_contract_is_named_and_scored_as_finding_nothing_while_the_others_are_scored() {
    let scratch = Scratch::new();
    let dir = &scratch.0;
    copy(dir, &["nda-mutual.md"]);
    write(
        dir,
        "labels.json",
        &json!({
            "nda-mutual.md": {"Governing Law": [NDA_GOVERNING_LAW]},
            "lost-contract.txt": {"Governing Law": ["governed by the laws of Texas"], "Insurance": ["insured"]},
        }),
    );

    let output = run(&mut graphloop(["eval".as_ref(), dir.as_os_str(), "--json".as_ref()]));
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", describe(&output));
    assert!(lines[0].starts_with("error: lost-contract.txt: no such file"), "{}", describe(&output));

    let summary = json_of(&output);
    assert_eq!(counts(&summary, "Governing Law"), (1, 0, 1, 1), "{summary:#}");
    assert_eq!(counts(&summary, "Insurance"), (0, 0, 1, 0), "{summary:#}");
    assert_eq!(summary["timing"]["contracts"], 1, "{summary:#}");
    assert_eq!(summary["failed"][0]["file"], "lost-contract.txt", "{summary:#}");
    assert_eq!(summary["extraction"], Value::Null, "no answers.json, no extraction scores");
}

#[test]
fn malformed_labels_or_answers_are_a_one_line_error_naming_the_file() {
    let scratch = Scratch::new();
    let dir = &scratch.0;
    copy(dir, &["nda-mutual.md"]);
    std::fs::write(dir.join("labels.json"), "{\"nda-mutual.md\": {\"Governing Law\": \"Delaware\"}}").unwrap();

    let output = run(&mut graphloop(["eval".as_ref(), dir.as_os_str()]));
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(output.stdout.is_empty(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{}", describe(&output));
    let labels = dir.join("labels.json").display().to_string();
    assert!(stderr.starts_with(&format!("error: {labels} is not valid JSON")), "{}", describe(&output));
    assert!(stderr.contains("expected a sequence at line 1"), "{}", describe(&output));

    write(dir, "labels.json", &json!({"nda-mutual.md": {"Governing Law": [NDA_GOVERNING_LAW]}}));
    std::fs::write(dir.join("answers.json"), "{\"nda-mutual.md\": ").unwrap();
    let output = run(&mut graphloop(["eval".as_ref(), dir.as_os_str()]));
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{}", describe(&output));
    let answers = dir.join("answers.json").display().to_string();
    assert!(stderr.starts_with(&format!("error: {answers} is not valid JSON")), "{}", describe(&output));
    assert!(stderr.contains("EOF while parsing"), "{}", describe(&output));
}
