//! Shared setup of the CLI's tests: the binary, scratch directories, the samples, and a
//! PostgreSQL schema of its own per test.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // each test uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The samples shipped with the repository.
pub const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples");

/// `graphloop` with the given arguments, in an environment that names no database or
/// user of its own (whatever the shell running the tests has set).
pub fn graphloop<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_graphloop"));
    command.args(args).env_remove("DATABASE_URL").env_remove("GRAPHLOOP_SCHEMA").env_remove("GRAPHLOOP_USER");
    command
}

/// Runs a command to its end.
pub fn run(command: &mut Command) -> Output {
    command.output().expect("graphloop runs")
}

/// The exit status, stdout and stderr of a finished command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Stdout parsed as JSON.
pub fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", describe(output)))
}

/// A scratch directory of its own under Cargo's target tmpdir, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gl-cli-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sample contracts (.md and .txt), sorted by file name.
pub fn samples() -> Vec<PathBuf> {
    let mut samples: Vec<PathBuf> = std::fs::read_dir(SAMPLES)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "md" || e == "txt"))
        .collect();
    samples.sort();
    assert!(samples.len() >= 3, "expected sample contracts in {SAMPLES}");
    samples
}

/// Copies the samples into `dir`; returns their file names.
pub fn copy_samples(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    samples()
        .iter()
        .map(|sample| {
            let name = sample.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::copy(sample, dir.join(&name)).unwrap();
            name
        })
        .collect()
}

/// The entry of `contract` in `analyze --json` output.
pub fn entry<'a>(summary: &'a Value, contract: &str) -> &'a Value {
    summary["contracts"]
        .as_array()
        .expect("a contracts array")
        .iter()
        .find(|c| c["contract"] == contract)
        .unwrap_or_else(|| panic!("no entry for {contract} in {summary:#}"))
}

/// Where the tests' PostgreSQL is: `GRAPHLOOP_TEST_DATABASE_URL`, else the local server.
pub fn database_url() -> String {
    std::env::var("GRAPHLOOP_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own in the test database (dropped when this is dropped), with a
/// client for direct queries.
pub struct TestDb {
    pub url: String,
    pub schema: String,
    pub client: tokio_postgres::Client,
    runtime: tokio::runtime::Runtime,
}

impl TestDb {
    /// Creates a fresh schema. Fails with a message saying how to get a server when
    /// PostgreSQL cannot be reached: these tests never pass silently without one.
    pub fn new() -> Self {
        let url = database_url();
        let schema = format!("gl_cli_{}", uuid::Uuid::now_v7().simple());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (client, connection) =
            runtime.block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls)).unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL at {url}: {e}. Start it with `just db-up` (or point \
                     GRAPHLOOP_TEST_DATABASE_URL at a server)"
                )
            });
        runtime.spawn(connection);
        runtime.block_on(client.batch_execute(&format!("CREATE SCHEMA {schema}"))).unwrap();
        Self { url, schema, client, runtime }
    }

    /// Rows of a query.
    pub fn query(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Vec<tokio_postgres::Row> {
        self.runtime.block_on(self.client.query(sql, params)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        if let Err(e) = self.runtime.block_on(self.client.batch_execute(&drop)) {
            eprintln!("could not drop schema {}: {e}", self.schema);
        }
    }
}
