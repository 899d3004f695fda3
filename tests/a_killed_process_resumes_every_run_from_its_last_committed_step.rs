//! Issue 4, point 1: kill -9 in the middle of 50 runs; the next process resumes them.
//!
//! A child process (`tests/support/kill9_worker.rs`) runs 50 runs of a 5-node chain whose nodes
//! take 50–200 ms and record every execution in a table of the test's own. The test
//! SIGKILLs it mid-way, starts a recovering one, and checks that every run completed,
//! that every step committed before the kill ran exactly once, that steps in flight ran at
//! most twice, and that events are gapless with monotone progress across the restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use common::{database_url, stored_events, TestDb};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use uuid::Uuid;

const RUNS: usize = 50;

fn worker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kill9_worker"))
}

fn spawn(mode: &str, schema: &str, durability: &str) -> tokio::process::Child {
    Command::new(worker())
        .args([mode, schema, &RUNS.to_string(), durability])
        .env("GRAPHLOOP_TEST_DATABASE_URL", database_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_resumes_every_run_from_its_last_committed_step() {
    kill_and_recover("sync").await;
}

/// Issue 4, point 5: with `Async` durability a crash costs at most the steps not yet
/// written; a step whose checkpoint was written still never runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_async_mode_a_killed_process_loses_at_most_the_unwritten_steps() {
    kill_and_recover("async").await;
}

async fn kill_and_recover(durability: &str) {
    let db = TestDb::new().await;
    db.client
        .batch_execute("CREATE TABLE executions (run_id uuid NOT NULL, step bigint NOT NULL, node text NOT NULL, attempt int NOT NULL)")
        .await
        .unwrap();

    // Kill the first worker once every start was acknowledged (`admitted`: each run's
    // row is committed) and 40 % of all node executions have happened.
    let mut first = spawn("start", &db.schema, durability);
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let (mut executed, mut admitted) = (0, false);
    while let Some(line) = lines.next_line().await.unwrap() {
        admitted |= line == format!("admitted {RUNS}");
        executed += usize::from(line.starts_with("executed "));
        if admitted && executed >= RUNS * 5 * 2 / 5 {
            break;
        }
    }
    assert!(admitted && executed >= RUNS * 5 * 2 / 5, "the worker ended before it could be killed");
    first.kill().await.unwrap(); // SIGKILL
    drop(lines);

    // What was committed when the process died.
    let committed: HashMap<Uuid, i64> = db
        .client
        .query("SELECT run_id, max(step) FROM checkpoints GROUP BY run_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let percent_at_kill: HashMap<Uuid, f64> = db
        .client
        .query("SELECT run_id, max(percent) FROM events GROUP BY run_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let unfinished = db.count("SELECT count(*) FROM runs WHERE status <> 'completed'", &[]).await;
    assert!(unfinished > 0, "the kill came before every run had finished");

    let second = spawn("recover", &db.schema, durability);
    let output = second.wait_with_output().await.unwrap();
    assert!(output.status.success(), "the recovering worker failed: {output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("admitted {unfinished}")));

    assert_eq!(db.count("SELECT count(*) FROM runs WHERE status = 'completed'", &[]).await, RUNS as i64);
    let executions = db
        .client
        .query("SELECT run_id, step, node, count(*) FROM executions GROUP BY run_id, step, node", &[])
        .await
        .unwrap();
    assert_eq!(executions.len(), RUNS * 5, "every step of every run executed");
    let mut re_executed = 0;
    for row in &executions {
        let (run, step, node, count): (Uuid, i64, String, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
        if step <= committed.get(&run).copied().unwrap_or(0) {
            assert_eq!(count, 1, "run {run} step {step} ({node}) was committed before the kill and ran again");
        } else {
            assert!(count <= 2, "run {run} step {step} ({node}) ran {count} times");
            re_executed += usize::from(count == 2);
        }
    }
    let runs: Vec<Uuid> =
        db.client.query("SELECT id FROM runs", &[]).await.unwrap().iter().map(|row| row.get(0)).collect();
    for run in runs {
        let events = stored_events(&db, run).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "run {run}: gapless across the restart");
        assert!(events.windows(2).all(|w| w[0].2 <= w[1].2), "run {run}: percent monotone across the restart");
        assert!(events.iter().all(|e| e.2 >= 0.0));
        if let Some(before) = percent_at_kill.get(&run) {
            assert!(events.last().unwrap().2 >= *before);
        }
        assert_eq!(events.last().unwrap().1, "run_completed");
    }
    // Steps in flight at the kill ran again (at most once more): the count is reported
    // for the record; whether any was in flight depends on the moment of the kill.
    eprintln!("{durability}: steps executed twice (in flight at the kill): {re_executed}");
    db.drop().await;
}
