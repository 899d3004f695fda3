//! Issue 11, point 2: the crash-injection conformance suite.
//!
//! A child process (`tests/support/crash_worker.rs`) runs one run of a 5-step chain with
//! `Sync` durability on PostgreSQL. The suite first runs it uncrashed and counts its
//! commits, N. Then, for every i in 1..=N, on a fresh schema, the persister's failpoint
//! aborts the worker right after its i-th commit (committed, nobody answered: what a
//! `kill -9` at the worst moment leaves), a second worker recovers, and the suite checks
//! that the run completed with the reference executor's final state, that no step
//! committed before the crash ran again, and that the run's events are gapless and
//! monotone across the crash. Finally a worker whose failpoint lies past its last commit
//! exits normally with the same N commits, so no commit of the process went untested.
//!
//! Each node records its execution in the test's own `executions` table before it
//! returns, so an execution is recorded even if its step's commit is then lost.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Output;

use common::{database_url, stored_events, TestDb};
use tokio::process::Command;
use uuid::Uuid;

/// SIGABRT: what `std::process::abort()`, the failpoint, dies of.
const SIGABRT: i32 = 6;

fn worker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_crash_worker"))
}

async fn run_worker(args: &[&str]) -> Output {
    Command::new(worker())
        .args(args)
        .env("GRAPHLOOP_TEST_DATABASE_URL", database_url())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// The value after `key ` on the first stdout line that has it.
fn field<'a>(output: &'a Output, key: &str) -> Option<&'a str> {
    let stdout = std::str::from_utf8(&output.stdout).unwrap();
    stdout.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
}

fn describe(output: &Output) -> String {
    format!(
        "{:?}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn fresh_db() -> TestDb {
    let db = TestDb::new().await;
    db.client
        .batch_execute("CREATE TABLE executions (run_id uuid NOT NULL, step bigint NOT NULL, node text NOT NULL)")
        .await
        .unwrap();
    db
}

/// What the store holds of the run right after a crash.
struct AtCrash {
    /// The run's row, if it was committed: (id, status).
    run: Option<(Uuid, String)>,
    /// The last step whose checkpoint is committed (0: none).
    committed_step: i64,
    /// Node executions that happened before the crash: (step, node).
    executed: Vec<(i64, String)>,
}

async fn at_crash(db: &TestDb) -> AtCrash {
    let runs = db.client.query("SELECT id, status FROM runs", &[]).await.unwrap();
    assert!(runs.len() <= 1, "one start, at most one run row: {runs:?}");
    let committed_step = db.count("SELECT coalesce(max(step), 0) FROM checkpoints", &[]).await;
    let executed = db
        .client
        .query("SELECT step, node FROM executions ORDER BY step", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    AtCrash { run: runs.first().map(|row| (row.get(0), row.get(1))), committed_step, executed }
}

/// The checks on the finished run, shared by the uncrashed run and every crash point.
/// Returns how many steps ran twice (in flight at the crash: allowed).
async fn check_finished(
    db: &TestDb,
    run: Uuid,
    committed_step: i64,
    steps: i64,
    reference: &serde_json::Value,
    at: &str,
) -> usize {
    // Catches a resumed run that ends failed or never ends (a lost or unreadable
    // checkpoint, a run row recovery does not find).
    let row = db.client.query_one("SELECT status, output FROM runs WHERE id = $1", &[&run]).await.unwrap();
    let (status, output): (String, Option<serde_json::Value>) = (row.get(0), row.get(1));
    assert_eq!(status, "completed", "{at}: the run completed");
    // Catches a step applied twice or skipped, or a resume from a checkpoint that does not
    // match the steps committed with it (the fold `total` is order-sensitive and `path`
    // lists every step's node with its step number).
    assert_eq!(output.as_ref(), Some(reference), "{at}: the final state is the reference executor's");

    // Catches lost or duplicated events (seq issued again after the crash), events of a
    // step committed apart from its checkpoint (its `step_completed` stored twice), and
    // progress going back across the restart.
    let events = stored_events(db, run).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "{at}: seq is 1..n, no gap, no repeat: {events:?}");
    assert!(events.windows(2).all(|w| w[0].2 <= w[1].2), "{at}: percent never decreases: {events:?}");
    assert_eq!(events.first().map(|e| e.1.as_str()), Some("run_started"), "{at}: {events:?}");
    assert_eq!(events.last().map(|e| (e.1.as_str(), e.2)), Some(("run_completed", 100.0)), "{at}: {events:?}");
    let completed_steps: Vec<i64> = db
        .client
        .query("SELECT step FROM events WHERE run_id = $1 AND kind = 'step_completed' ORDER BY seq", &[&run])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(completed_steps, (1..=steps).collect::<Vec<_>>(), "{at}: each step completed once, in order");

    // The heart of it. A step whose checkpoint was committed before the crash ran exactly
    // once: catches a resume from an older checkpoint than the last committed one, and a
    // unit split so that a step's checkpoint landed in a later transaction than its events
    // and run update. A later step ran at most twice (in flight at the crash, then again).
    let executions = db
        .client
        .query(
            "SELECT step, node, count(*) FROM executions WHERE run_id = $1 GROUP BY step, node ORDER BY step",
            &[&run],
        )
        .await
        .unwrap();
    let executions: Vec<(i64, String, i64)> =
        executions.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect();
    let expected_nodes: Vec<(i64, String)> = (1..=steps).map(|s| (s, format!("n{}", s - 1))).collect();
    assert_eq!(
        executions.iter().map(|(s, n, _)| (*s, n.clone())).collect::<Vec<_>>(),
        expected_nodes,
        "{at}: every step executed, each by its node"
    );
    let mut twice = 0;
    for (step, node, count) in &executions {
        if *step <= committed_step {
            assert_eq!(*count, 1, "{at}: step {step} ({node}) was committed before the crash and ran again");
        } else {
            assert!(*count <= 2, "{at}: step {step} ({node}) ran {count} times");
            twice += usize::from(*count == 2);
        }
    }
    twice
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_any_commit_never_reruns_a_completed_step() {
    let reference = run_worker(&["reference"]).await;
    assert!(reference.status.success(), "the reference executor failed: {}", describe(&reference));
    let reference: serde_json::Value = serde_json::from_str(field(&reference, "reference").unwrap()).unwrap();
    let steps = reference["path"].as_array().unwrap().len() as i64;

    // The uncrashed run: how many commits a run makes (N), and which of them is the start's.
    let db = fresh_db().await;
    let clean = run_worker(&["start", &db.schema, "0"]).await;
    assert!(clean.status.success(), "the uncrashed worker failed: {}", describe(&clean));
    let run: Uuid = field(&clean, "started").unwrap().parse().unwrap();
    let start_commit: u64 = field(&clean, "commits_at_start").unwrap().parse().unwrap();
    let commits: u64 = field(&clean, "commits").unwrap().parse().unwrap();
    assert!(start_commit >= 1, "a start is answered only once its row is committed");
    assert!(commits >= start_commit + steps as u64, "each step commits: {}", describe(&clean));
    let twice = check_finished(&db, run, steps, steps, &reference, "uncrashed").await;
    assert_eq!(twice, 0);
    db.drop().await;
    eprintln!("{steps} steps, {commits} commits per run, the start's row in commit {start_commit}");

    let mut last_committed_step = 0;
    for i in 1..=commits {
        let at = format!("crash after commit {i} of {commits}");
        let db = fresh_db().await;
        let crashed = run_worker(&["start", &db.schema, &i.to_string()]).await;
        // Catches a failpoint that never fired (fewer commits than measured: the count is
        // not deterministic, or a commit was skipped) or a worker failing some other way.
        assert_eq!(crashed.status.signal(), Some(SIGABRT), "{at}: the worker aborts: {}", describe(&crashed));

        let crash = at_crash(&db).await;
        // Acknowledged means stored, and stored exactly when its commit was among the
        // first i: catches a row written later than measured, or an answer sent before
        // the commit (the failpoint aborts before anyone hears of commit i).
        assert_eq!(crash.run.is_some(), i >= start_commit, "{at}: the run row exists iff its commit was done");
        let acknowledged = field(&crashed, "started").map(|id| id.parse::<Uuid>().unwrap());
        if let Some(id) = acknowledged {
            assert!(i > start_commit, "{at}: the start was answered before its commit returned");
            assert_eq!(crash.run.as_ref().map(|r| r.0), Some(id), "{at}: the acknowledged run is stored");
        }
        if i == start_commit {
            assert_eq!(acknowledged, None, "{at}: committed but never answered");
        }
        // Sync durability: a run never gets ahead of what is stored, so before the crash
        // no step past the one after the last committed checkpoint executed, and none twice.
        assert!(
            crash.executed.iter().all(|(step, _)| *step <= crash.committed_step + 1),
            "{at}: a step ran before its predecessor's commit (checkpoint {}): {:?}",
            crash.committed_step,
            crash.executed
        );
        assert!(crash.executed.windows(2).all(|w| w[0].0 < w[1].0), "{at}: {:?}", crash.executed);
        // Commits only move the checkpoint forward, and the run's last commit completes it.
        assert!(crash.committed_step >= last_committed_step, "{at}: the committed checkpoint went back");
        last_committed_step = crash.committed_step;
        if i == commits {
            assert_eq!(crash.committed_step, steps, "{at}: the last commit holds the last step");
            assert_eq!(crash.run.as_ref().map(|r| r.1.as_str()), Some("completed"), "{at}: and the completion");
        }

        let recovering = run_worker(&["recover", &db.schema]).await;
        assert!(recovering.status.success(), "{at}: the recovering worker failed: {}", describe(&recovering));
        let unfinished = crash.run.as_ref().is_some_and(|(_, status)| status != "completed");
        assert_eq!(
            field(&recovering, "recovered"),
            Some(if unfinished { "1" } else { "0" }),
            "{at}: recovery resumes the run iff it was stored unfinished: {}",
            describe(&recovering)
        );
        let Some((run, _)) = crash.run else {
            // Nothing committed, nothing acknowledged: nothing to resume (not reached
            // while the start's row is the first commit).
            db.drop().await;
            continue;
        };
        let twice = check_finished(&db, run, crash.committed_step, steps, &reference, &at).await;
        eprintln!(
            "{at}: checkpoint at step {} before the crash, {} step(s) executed before it, {twice} ran twice",
            crash.committed_step,
            crash.executed.len()
        );
        db.drop().await;
    }

    // The failpoint past the last commit: the worker finishes normally, with the same
    // number of commits, so every commit of the process was a crash point above.
    let db = fresh_db().await;
    let beyond = run_worker(&["start", &db.schema, &(commits + 1).to_string()]).await;
    assert!(beyond.status.success(), "no crash past the last commit: {}", describe(&beyond));
    assert_eq!(field(&beyond, "commits"), Some(commits.to_string().as_str()), "the commit count is deterministic");
    db.drop().await;
}
