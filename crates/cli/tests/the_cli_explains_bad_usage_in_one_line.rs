//! Usage mistakes get one clear line on stderr and exit status 2; `graph show` prints the
//! graphs the CLI knows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{describe, graphloop, run};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn runs_commands_without_a_database_say_how_to_give_one() {
    for args in [&["runs", "list"][..], &["runs", "show", "0190f5c4-8d4e-7d2a-9b1e-3f6a2c1d9e07"]] {
        let output = run(&mut graphloop(args));
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        assert_eq!(
            stderr(&output).trim(),
            "error: runs are kept in PostgreSQL only: pass --database-url or set DATABASE_URL"
        );
    }
}

#[test]
fn a_bad_run_id_or_duration_is_a_usage_error() {
    let output = run(&mut graphloop(["runs", "show", "not-an-id", "--database-url", "postgres://nowhere/db"]));
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(stderr(&output).contains("`not-an-id` is not a run id"), "{}", describe(&output));

    let output = run(&mut graphloop(["analyze", "x.md", "--model-latency", "200"]));
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(stderr(&output).contains("needs a unit"), "{}", describe(&output));
}

#[test]
fn graph_show_prints_mermaid_or_dot_and_names_the_known_graphs() {
    let output = run(&mut graphloop(["graph", "show", "contract-analysis"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let mermaid = String::from_utf8(output.stdout).unwrap();
    assert!(mermaid.starts_with("flowchart") && mermaid.contains("classify"), "{mermaid}");

    let output = run(&mut graphloop(["graph", "show", "contract-analysis", "--format", "dot"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(String::from_utf8(output.stdout).unwrap().starts_with("digraph"));

    let output = run(&mut graphloop(["graph", "show", "payroll"]));
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert_eq!(stderr(&output).trim(), "error: unknown graph `payroll`; known graphs: contract-analysis");
}
