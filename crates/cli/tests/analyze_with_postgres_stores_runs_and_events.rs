//! With `--database-url`, `analyze` keeps every run and event in PostgreSQL, and the
//! `runs` commands show them to their user only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{describe, graphloop, json_of, run, samples, Scratch, TestDb};

/// `graphloop <args> --database-url .. --schema .. --user <user>`.
fn on_db(db: &TestDb, user: &str, args: &[&str]) -> Command {
    let mut command = graphloop(args);
    command.args(["--database-url", &db.url, "--schema", &db.schema, "--user", user]);
    command
}

#[test]
fn analyze_stores_runs_and_events_that_runs_shows_to_their_user_only() {
    let db = TestDb::new();
    let scratch = Scratch::new();
    let user = format!("user-{}", uuid::Uuid::now_v7().simple());
    let contracts: Vec<String> = samples().iter().take(3).map(|p| p.display().to_string()).collect();
    let out = scratch.path("reports");

    let mut analyze: Vec<&str> = vec!["analyze"];
    analyze.extend(contracts.iter().map(String::as_str));
    analyze.extend(["--out", out.to_str().unwrap(), "--json"]);
    let output = run(&mut on_db(&db, &user, &analyze));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let summary = json_of(&output);
    assert_eq!(summary["completed"], 3, "{summary:#}");
    let analysed: BTreeSet<String> =
        summary["contracts"].as_array().unwrap().iter().map(|c| c["run_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(analysed.len(), 3);

    // `runs list`: exactly those three runs, completed, for that user; none for another.
    let output = run(&mut on_db(&db, &user, &["runs", "list", "--json"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let listed = json_of(&output);
    let runs = listed["runs"].as_array().unwrap();
    assert!(runs.iter().all(|r| r["status"] == "completed" && r["graph"] == "contract-analysis"), "{listed:#}");
    let ids: BTreeSet<String> = runs.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, analysed);
    let output = run(&mut on_db(&db, "someone-else", &["runs", "list", "--json"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(json_of(&output)["runs"].as_array().unwrap().len(), 0);

    // `runs events`: the run's events in order, ending with its completion at 100 %.
    let id = analysed.iter().next().unwrap().as_str();
    let output = run(&mut on_db(&db, &user, &["runs", "events", id, "--json"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let events = json_of(&output);
    let events = events["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let last = events.last().unwrap();
    assert_eq!((last["kind"].as_str(), last["percent"].as_f64()), (Some("run_completed"), Some(100.0)), "{last:#}");

    // `runs show`: the report's summary for its user; not found for anyone else.
    let output = run(&mut on_db(&db, &user, &["runs", "show", id]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(shown.contains("completed") && shown.contains("score") && shown.contains("summary"), "{shown}");
    let output = run(&mut on_db(&db, "someone-else", &["runs", "show", id]));
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not found"), "{}", describe(&output));

    // The rows themselves, in the schema's tables.
    let rows = db.query(
        &format!("SELECT id::text, status, graph, percent FROM {}.runs WHERE user_id = $1", db.schema),
        &[&user],
    );
    let stored: BTreeSet<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    assert_eq!(stored, analysed);
    assert!(rows.iter().all(|r| r.get::<_, String>(1) == "completed" && r.get::<_, f64>(3) == 100.0));
    let per_run = db.query(
        &format!(
            "SELECT run_id::text, count(*), max(seq), bool_or(kind = 'run_completed') FROM {}.events \
             WHERE user_id = $1 GROUP BY run_id",
            db.schema
        ),
        &[&user],
    );
    assert_eq!(per_run.len(), 3);
    for row in &per_run {
        let (count, max_seq, completed): (i64, i64, bool) = (row.get(1), row.get(2), row.get(3));
        assert!(
            count > 3 && count == max_seq && completed,
            "run {}: {count} events, max seq {max_seq}",
            row.get::<_, String>(0)
        );
    }
}
