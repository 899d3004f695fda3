//! Shared setup of the store's tests: a PostgreSQL schema of its own per test.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // each test uses a part

use graphloop_postgres::PgStoreConfig;
use tokio_postgres::{Client, NoTls};

/// Where the tests' PostgreSQL is: `GRAPHLOOP_TEST_DATABASE_URL`, else the local server.
pub fn database_url() -> String {
    std::env::var("GRAPHLOOP_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own in the test database, so tests run in parallel, with a client
/// whose search path is that schema.
pub struct TestDb {
    pub schema: String,
    pub client: Client,
}

impl TestDb {
    /// Creates a fresh, empty schema. Fails with a clear message when PostgreSQL is not
    /// reachable: these tests never pass silently without a database.
    pub async fn new() -> Self {
        let url = database_url();
        let schema = format!("glpgtest_{}", uuid::Uuid::now_v7().simple());
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {url}: {e}. Start it with `just db-up` (or set GRAPHLOOP_TEST_DATABASE_URL)")
        });
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {schema}; SET search_path TO {schema}")).await.unwrap();
        Self { schema, client }
    }

    /// The store configuration on this schema.
    pub fn store(&self) -> PgStoreConfig {
        PgStoreConfig::new(database_url()).schema(&self.schema).pool_size(2)
    }

    /// Drops the schema and everything in it.
    pub async fn drop(self) {
        self.client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema)).await.unwrap();
    }
}
