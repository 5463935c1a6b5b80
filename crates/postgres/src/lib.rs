//! The delivery log on PostgreSQL (sqlx, runtime queries), in the two tables of
//! `infra/migrations`: `deliveries`, one row per (event, webhook), and `delivery_attempts`, one
//! row per HTTP attempt.
//!
//! - this module: [`PostgresDeliveryLog`], its pool and migrations, and how errors map.
//! - `deliveries`: the [`DeliveryLog`](relay_core::ports::DeliveryLog) queries.
//! - `rows`: rows as PostgreSQL returns them, and their conversion to and from domain types.
//!
//! TLS: the URL's `sslmode` decides, with rustls. For RDS use
//! `sslmode=verify-full&sslrootcert=<the RDS CA bundle>`; `require` encrypts without
//! checking who answers.

/// The `deliveries` columns, in [`rows::DeliveryRow`]'s order.
macro_rules! delivery_columns {
    () => {
        "event_id, webhook_id, tenant, event_type, status, attempt_count, last_status_code, last_error, \
         next_attempt_at, created_at, updated_at"
    };
}

/// The `delivery_attempts` columns, in [`rows::AttemptRow`]'s order (all but `id`).
macro_rules! attempt_columns {
    () => {
        "event_id, webhook_id, number, status_code, duration_ms, error, response_body, trigger, created_at"
    };
}

mod deliveries;
mod rows;

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use relay_core::settings::{ConfigError, Redacted, Vars};
use relay_core::{Error, Result};

/// How long to wait for a connection, new or pooled, before the database counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per process: a Lambda function handles one request at a time; relay-local a few.
pub const POOL_SIZE: u32 = 5;

/// `DATABASE_URL`, for a function that keeps the delivery log (never printed).
pub fn database_url(vars: &Vars) -> Result<Redacted<String>, ConfigError> {
    vars.required("DATABASE_URL", "a postgres:// URL").map(Redacted)
}

#[derive(Debug, Clone)]
pub struct PostgresDeliveryLog {
    pool: PgPool,
}

impl PostgresDeliveryLog {
    /// Builds the pool and opens its first connection, so a wrong URL or an unreachable server
    /// fails here, within [`CONNECT_TIMEOUT`]. Build it once per process and share it.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::unavailable("database", format!("the database URL is not usable: {e}")))?
            .application_name("webhook-relay");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| match e {
                sqlx::Error::PoolTimedOut => {
                    Error::unavailable("database", format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()))
                }
                other => database(other),
            })?;
        Ok(Self::from_pool(pool))
    }

    /// [`PostgresDeliveryLog::connect`] with [`POOL_SIZE`] connections, then
    /// [`PostgresDeliveryLog::migrate`]: how every function opens the log.
    pub async fn open(url: &Redacted<String>) -> Result<Self> {
        let log = Self::connect(&url.0, POOL_SIZE).await?;
        log.migrate().await?;
        Ok(log)
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies the migrations of `infra/migrations` not applied yet (they are compiled in).
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../../infra/migrations")
            .run(&self.pool)
            .await
            .map_err(|e| Error::unavailable("database", format!("migration failed: {e}")))
    }
}

/// A failed query: a row that does not decode is a bug; anything else means the database is
/// unavailable.
fn database(err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => Error::Internal(format!("unreadable database row: {err}")),
        other => Error::unavailable("database", other),
    }
}

/// A row that decoded but holds a value the domain rejects.
fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Internal(format!("unreadable {what} row: {detail}"))
}

#[async_trait::async_trait]
impl relay_core::ports::Probe for PostgresDeliveryLog {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn check(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(database)?;
        Ok(())
    }
}
