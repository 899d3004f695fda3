//! Shared setup of the end-to-end tests: a PostgreSQL schema of its own per test, and
//! the graphs the tests run.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // each test uses a part

use std::sync::Arc;

use graphloop::{GraphBuilder, NodeContext, PgStoreConfig, Reducer, Update, END, START};
use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, NoTls};

/// Where the tests' PostgreSQL is: `GRAPHLOOP_TEST_DATABASE_URL`, else the local server.
pub fn database_url() -> String {
    std::env::var("GRAPHLOOP_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own in the test database, so tests run in parallel, with a client of
/// the test's own for assertions.
pub struct TestDb {
    pub schema: String,
    pub client: Client,
}

impl TestDb {
    /// Creates a fresh, empty schema. Fails with a clear message when PostgreSQL is not
    /// reachable: these tests never pass silently without a database.
    pub async fn new() -> Self {
        let url = database_url();
        let schema = format!("gltest_{}", uuid::Uuid::now_v7().simple());
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {url}: {e}. Start it with `just db-up` (or set GRAPHLOOP_TEST_DATABASE_URL)")
        });
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        client.batch_execute(&format!("SET search_path TO {schema}")).await.unwrap();
        Self { schema, client }
    }

    /// The store configuration for an engine on this schema.
    pub fn store(&self) -> PgStoreConfig {
        PgStoreConfig::new(database_url()).schema(&self.schema).pool_size(4)
    }

    /// A single number from a query.
    pub async fn count(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> i64 {
        self.client.query_one(sql, params).await.unwrap().get(0)
    }

    /// Drops the schema and everything in it.
    pub async fn drop(self) {
        self.client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema)).await.unwrap();
    }
}

/// The state of the eight-node test graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    pub n: u64,
    pub log: Vec<String>,
    pub parts: Vec<u64>,
}

pub fn log(entry: &str) -> Update {
    Update::new().set("log", [entry])
}

/// An 8-node graph with a conditional edge and a dynamic fan-out.
pub fn eight_nodes() -> graphloop::Graph<Doc> {
    GraphBuilder::<Doc>::new("eight")
        .node("ingest", |_s, _ctx| async move { Ok(log("ingest")) })
        .node("split", |s: Arc<Doc>, _ctx| async move { Ok(log("split").set("n", s.n % 5 + 2)) })
        .node("part", |_s, ctx: NodeContext| async move { Ok(Update::new().set("parts", [ctx.input::<u64>()? * 10])) })
        .node("sum", |s: Arc<Doc>, _ctx| async move { Ok(log("sum").set("n", s.parts.iter().sum::<u64>())) })
        .node("check", |_s, _ctx| async move { Ok(log("check")) })
        .node("deep", |_s, _ctx| async move { Ok(log("deep")) })
        .node("light", |_s, _ctx| async move { Ok(log("light")) })
        .node("report", |_s, _ctx| async move { Ok(log("report")) })
        .edge(START, "ingest")
        .edge("ingest", "split")
        .fan_out("split", "part", |s: &Doc| (0..s.n).collect::<Vec<_>>())
        .edge("part", "sum")
        .edge("sum", "check")
        .conditional_edge("check", ["deep", "light"], |s: &Doc| if s.n > 30 { "deep" } else { "light" })
        .edge("deep", "report")
        .edge("light", "report")
        .edge("report", END)
        .reducer("log", Reducer::append())
        .reducer("parts", Reducer::append())
        .compile()
        .expect("the eight-node graph is valid")
}

/// A run's stored events: (seq, kind, percent), in seq order.
pub async fn stored_events(db: &TestDb, run: uuid::Uuid) -> Vec<(i64, String, f64)> {
    db.client
        .query("SELECT seq, kind, percent FROM events WHERE run_id = $1 ORDER BY seq", &[&run])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}
