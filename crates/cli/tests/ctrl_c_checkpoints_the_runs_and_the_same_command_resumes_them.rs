//! Ctrl-C during `analyze --database-url` stops the runs at their last checkpoint and
//! exits 130 with every contract reported interrupted; the same command run again
//! resumes those runs (no new ones) and writes their reports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{describe, entry, graphloop, json_of, run, samples, Scratch, TestDb};
use graphloop_contracts::Report;

/// How long the first analysis may take to start its runs: a deadline for a hung
/// process, not a measure of anything.
const STARTED_WITHIN: Duration = Duration::from_secs(120);

#[test]
fn ctrl_c_checkpoints_the_runs_and_the_same_command_resumes_them() {
    let db = TestDb::new();
    let scratch = Scratch::new();
    let user = format!("user-{}", uuid::Uuid::now_v7().simple());
    let contracts: Vec<String> = samples().iter().take(3).map(|p| p.display().to_string()).collect();
    let names: Vec<String> =
        samples().iter().take(3).map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let out = scratch.path("reports");
    let analyze = |extra: &[&str]| {
        let mut command = graphloop(["analyze"]);
        command.args(&contracts).arg("--out").arg(&out).arg("--json");
        command.args(["--database-url", &db.url, "--schema", &db.schema, "--user", &user]).args(extra);
        command
    };

    // Every model call takes an hour: no run can end before the Ctrl-C.
    let mut child = analyze(&["--model-latency", "1h", "--shutdown-timeout", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphloop starts");
    let (lines_tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut stderr = BufReader::new(stderr);
        let mut line = String::new();
        while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
            let _ = lines_tx.send(std::mem::take(&mut line));
        }
    });
    let mut before = String::new();
    loop {
        match lines.recv_timeout(STARTED_WITHIN) {
            Ok(line) => {
                before.push_str(&line);
                if line.starts_with("analysing ") {
                    break;
                }
            }
            Err(error) => {
                let _ = child.kill();
                panic!("no `analysing` line on stderr ({error}); stderr so far:\n{before}");
            }
        }
    }
    assert!(before.contains("analysing 3 contract(s) (0 resumed)"), "{before}");
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
    assert!(killed.success(), "kill -INT {pid} failed");
    let mut stdout = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let after: String = lines.try_iter().collect();
    let output = std::process::Output { status, stdout, stderr: format!("{before}{after}").into_bytes() };

    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let summary = json_of(&output);
    assert_eq!(summary["interrupted"], 3, "{summary:#}");
    let mut run_ids = Vec::new();
    for name in &names {
        let contract = entry(&summary, name);
        assert_eq!(contract["status"], "interrupted", "{contract:#}");
        assert!(contract["report"].is_null(), "{contract:#}");
        run_ids.push(contract["run_id"].as_str().expect("its run was started").to_owned());
    }
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("3 unfinished contract(s) are checkpointed in the database"),
        "{}",
        describe(&output)
    );
    if out.exists() {
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
    let runs_of_user = || {
        db.query(&format!("SELECT id::text, status FROM {}.runs WHERE user_id = $1 ORDER BY id", db.schema), &[&user])
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
    };
    let stored = runs_of_user();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(stored.iter().all(|(id, status)| status == "interrupted" && run_ids.contains(id)), "{stored:?}");

    // The same command, at full speed: the three runs resume and complete.
    let output = run(&mut analyze(&[]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let summary = json_of(&output);
    assert_eq!(summary["completed"], 3, "{summary:#}");
    for (name, run_id) in names.iter().zip(&run_ids) {
        let contract = entry(&summary, name);
        assert_eq!((contract["status"].as_str(), contract["resumed"].as_bool()), (Some("completed"), Some(true)));
        assert_eq!(contract["run_id"].as_str(), Some(run_id.as_str()), "{contract:#}");
        let report_path = contract["report"].as_str().expect("a report path");
        let report: Report = serde_json::from_str(&std::fs::read_to_string(report_path).unwrap())
            .unwrap_or_else(|e| panic!("{report_path} is not a Report: {e}"));
        assert_eq!(report.contract, *name);
        assert!(std::path::Path::new(contract["markdown"].as_str().unwrap()).is_file(), "{contract:#}");
    }
    assert!(String::from_utf8_lossy(&output.stderr).contains("analysing 3 contract(s) (3 resumed)"));
    let stored = runs_of_user();
    assert_eq!(stored.len(), 3, "resumed, not started again: {stored:?}");
    assert!(stored.iter().all(|(_, status)| status == "completed"), "{stored:?}");
}
