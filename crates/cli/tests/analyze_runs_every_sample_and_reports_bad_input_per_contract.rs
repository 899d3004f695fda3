//! `graphloop analyze` runs every contract it is given and rejects bad input one contract
//! at a time: the others still run, and each rejection says what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::File;
use std::path::Path;

use common::{copy_samples, describe, entry, graphloop, json_of, run, Scratch};
use graphloop_contracts::{Report, MAX_CONTRACT_BYTES};

/// Asserts that `name` completed with a JSON report (a `Report` about `name`) and a
/// Markdown report in `out`.
fn assert_reported(summary: &serde_json::Value, name: &str, out: &Path) {
    let contract = entry(summary, name);
    assert_eq!(contract["status"], "completed", "{contract:#}");
    assert!(contract["score"].is_u64() && contract["run_id"].is_string(), "{contract:#}");
    let json_path = contract["report"].as_str().expect("a report path");
    assert_eq!(Path::new(json_path).parent(), Some(out), "{json_path}");
    let report: Report = serde_json::from_str(&std::fs::read_to_string(json_path).unwrap())
        .unwrap_or_else(|e| panic!("{json_path} is not a Report: {e}"));
    assert_eq!(report.contract, name);
    assert_eq!(contract["score"], report.score);
    let markdown = std::fs::read_to_string(Path::new(json_path).with_extension("md")).unwrap();
    assert!(markdown.starts_with("# ") && markdown.contains(name), "{markdown}");
}

#[test]
fn every_sample_completes_and_each_bad_input_is_rejected_with_its_reason() {
    let scratch = Scratch::new();
    let input = scratch.path("contracts");
    let samples = copy_samples(&input);
    std::fs::write(input.join("empty.txt"), "").unwrap();
    std::fs::write(input.join("binary.md"), b"PK\x03\x04\0\0\0\x08\0\0binary\0\0payload").unwrap();
    // Sparse: rejected from its size, never read.
    File::create(input.join("enormous.txt")).unwrap().set_len(MAX_CONTRACT_BYTES as u64 + 1).unwrap();
    std::fs::write(input.join("notes.pdf"), "not a contract extension: skipped").unwrap();
    let missing = scratch.path("missing.txt");
    let out = scratch.path("reports");

    let output = run(graphloop(["analyze".as_ref(), input.as_os_str(), missing.as_os_str(), "--out".as_ref()])
        .arg(&out)
        .arg("--json"));

    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let summary = json_of(&output);
    assert_eq!(summary["total"], samples.len() + 4, "{summary:#}");
    assert_eq!(summary["completed"], samples.len());
    assert_eq!((summary["failed"].as_u64(), summary["rejected"].as_u64()), (Some(0), Some(4)));
    for name in &samples {
        assert_reported(&summary, name, &out);
    }
    for (name, reason) in
        [("empty.txt", "empty"), ("binary.md", "binary"), ("enormous.txt", "limit"), ("missing.txt", "no such file")]
    {
        let contract = entry(&summary, name);
        assert_eq!(contract["status"], "rejected", "{contract:#}");
        let error = contract["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{name}: expected a reason naming `{reason}`, got {contract:#}");
        assert!(contract["run_id"].is_null() && contract["report"].is_null(), "{contract:#}");
    }
    assert!(!out.join("empty.json").exists() && !out.join("enormous.json").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn only_good_contracts_exit_zero_with_a_table_and_totals() {
    let scratch = Scratch::new();
    let input = scratch.path("contracts");
    let samples = copy_samples(&input);
    let out = scratch.path("reports");

    let output = run(&mut graphloop(["analyze".as_ref(), input.as_os_str(), "--out".as_ref(), out.as_os_str()]));

    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let header = stdout.lines().next().unwrap();
    for column in ["contract", "status", "score", "top risk", "duration"] {
        assert!(header.contains(column), "{header}");
    }
    for name in &samples {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name}:\n{stdout}"));
        assert!(line.contains("completed"), "{line}");
        let stem = Path::new(name).file_stem().unwrap().to_string_lossy().into_owned();
        assert!(out.join(format!("{stem}.json")).is_file() && out.join(format!("{stem}.md")).is_file(), "{stem}");
    }
    let n = samples.len();
    let totals = stdout.lines().last().unwrap();
    assert!(totals.starts_with(&format!("{n} contracts in ")), "{totals}");
    assert!(totals.contains(&format!("{n} completed, 0 failed, 0 rejected; reports in {}", out.display())), "{totals}");
}

#[test]
fn contracts_with_the_same_name_get_reports_of_their_own() {
    let scratch = Scratch::new();
    let sample = &common::samples()[0];
    let name = sample.file_name().unwrap().to_string_lossy().into_owned();
    for dir in ["a", "b"] {
        std::fs::create_dir_all(scratch.path(dir)).unwrap();
        std::fs::copy(sample, scratch.path(dir).join(&name)).unwrap();
    }
    let out = scratch.path("reports");

    let output = run(graphloop(["analyze".as_ref(), scratch.path("a").as_os_str(), scratch.path("b").as_os_str()])
        .arg("--out")
        .arg(&out)
        .arg("--json"));

    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let summary = json_of(&output);
    let reports: Vec<&str> =
        summary["contracts"].as_array().unwrap().iter().map(|c| c["report"].as_str().unwrap()).collect();
    let stem = Path::new(&name).file_stem().unwrap().to_string_lossy().into_owned();
    let expected = [out.join(format!("{stem}.json")), out.join(format!("{stem}-2.json"))];
    assert_eq!(reports, expected.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>());
    assert!(expected.iter().all(|p| p.is_file() && p.with_extension("md").is_file()));
}

#[test]
fn reports_written_inside_the_input_directory_are_not_analysed_as_contracts() {
    let scratch = Scratch::new();
    let input = scratch.path("contracts");
    let samples = copy_samples(&input);
    // Given as a path of its own, not as the searched one: only a comparison of
    // canonical paths tells them apart.
    let out = input.join("reports");
    let out_alias = input.join(".").join("reports");

    for (round, out) in [&out, &out_alias].into_iter().enumerate() {
        let output =
            run(graphloop(["analyze".as_ref(), input.as_os_str(), "--out".as_ref(), out.as_os_str()]).arg("--json"));
        assert_eq!(output.status.code(), Some(0), "round {round}: {}", describe(&output));
        let summary = json_of(&output);
        assert_eq!(summary["total"], samples.len(), "round {round}: {summary:#}");
        assert_eq!(summary["completed"], samples.len(), "round {round}: {summary:#}");
    }
    // The reports of the first round were there to be found in the second.
    let reports = std::fs::read_dir(&out).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count();
    assert_eq!(reports, 2 * samples.len());
}

#[test]
fn a_report_that_cannot_be_written_fails_its_contract_and_leaves_no_json_without_its_markdown() {
    let scratch = Scratch::new();
    let input = scratch.path("contracts");
    let samples = copy_samples(&input);
    let out = scratch.path("reports");
    let blocked = &samples[0];
    let stem = Path::new(blocked).file_stem().unwrap().to_string_lossy().into_owned();
    // The temporary file of its JSON report cannot be created: a directory has its name.
    let in_the_way = out.join(format!("{stem}.json.tmp"));
    std::fs::create_dir_all(&in_the_way).unwrap();

    let output =
        run(graphloop(["analyze".as_ref(), input.as_os_str(), "--out".as_ref(), out.as_os_str()]).arg("--json"));

    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let summary = json_of(&output);
    let failed = entry(&summary, blocked);
    assert_eq!(failed["status"], "failed", "{failed:#}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("{stem}.json.tmp")), "the reason should name the file: {failed:#}");
    assert!(failed["report"].is_null(), "{failed:#}");
    assert_eq!((summary["completed"].as_u64(), summary["failed"].as_u64()), (Some(samples.len() as u64 - 1), Some(1)));
    for name in &samples[1..] {
        assert_reported(&summary, name, &out);
    }
    assert!(!out.join(format!("{stem}.json")).exists() && !out.join(format!("{stem}.md")).exists());
    for file in std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if file == in_the_way {
            continue;
        }
        assert!(!name.ends_with(".tmp"), "temporary file left: {name}");
        if name.ends_with(".json") {
            assert!(file.with_extension("md").is_file(), "{name} without its Markdown");
        }
    }
}
