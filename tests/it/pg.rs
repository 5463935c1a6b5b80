//! Reaching PostgreSQL (`DATABASE_URL`, else `postgres@127.0.0.1:5432` as .ci/run starts it)
//! and giving each test a database of its own, `it_<random>`. Under CI an unreachable server
//! fails the test; elsewhere the test says why it did nothing.

use std::time::Duration;

use relay_postgres::PostgresDeliveryLog;
use sqlx::{Connection, PgConnection, PgPool};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test. Call [`TestDatabase::drop`] at the end; a failed test
/// leaves its database behind to look at.
pub struct TestDatabase {
    admin: PgConnection,
    name: String,
    url: String,
}

/// A fresh, empty database, or `None` (outside CI) when PostgreSQL cannot be reached.
pub async fn database() -> Option<TestDatabase> {
    let admin_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let mut admin = match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await {
        Ok(Ok(admin)) => admin,
        Ok(Err(err)) => return unreachable(&err),
        Err(_) => return unreachable(&"no answer within 5 s"),
    };
    let name = format!("it_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create the test database");
    let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL is a URL");
    url.set_path(&name);
    Some(TestDatabase { admin, name, url: url.into() })
}

fn unreachable(err: &dyn std::fmt::Display) -> Option<TestDatabase> {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "cannot connect to PostgreSQL ({err}): CI must run the PostgreSQL tests (.ci/run starts it; set DATABASE_URL)"
    );
    eprintln!("SKIPPED: cannot connect to PostgreSQL ({err}); start it or set DATABASE_URL");
    None
}

impl TestDatabase {
    /// The delivery log on this database, connected as the relay connects and migrated.
    /// The database's URL, for `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn log(&self, max_connections: u32) -> PostgresDeliveryLog {
        let log = PostgresDeliveryLog::connect(&self.url, max_connections).await.expect("connect to the test database");
        log.migrate().await.expect("migrate the test database");
        log
    }

    /// A plain pool on this database, for what the port does not show.
    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url).await.expect("connect to the test database")
    }

    pub async fn drop(mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(&sql).execute(&mut self.admin).await.expect("drop the test database");
        let _ = self.admin.close().await;
    }
}
