//! The delivery log on PostgreSQL (sqlx, runtime queries), in the tables of
//! `infra/migrations`: `deliveries`, one row per (event, webhook), and `delivery_attempts`, one
//! row per HTTP attempt; and the event index (`event_index`), which lists the events DynamoDB
//! keeps by id.
//!
//! - this module: [`PostgresDeliveryLog`], its pool and migrations, and how errors map.
//! - `deliveries`: the [`DeliveryLog`](relay_core::ports::DeliveryLog) queries.
//! - `events`: [`PostgresEventIndex`].
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
mod events;
mod rows;

pub use events::PostgresEventIndex;

/// The reads by key, for the test that checks their plans.
#[doc(hidden)]
pub use deliveries::{SELECT_ATTEMPTS, SELECT_BY_KEYS};

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use relay_core::settings::{ConfigError, Redacted, Vars};
use relay_core::{Error, Result};

/// How long to wait for a connection, new or pooled, before the database counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per Lambda function instance: an instance handles one batch or one request at
/// a time, and a batch's dispatches and deliveries each hold at most one connection at once.
pub const LAMBDA_POOL_SIZE: u32 = 5;

/// Where the delivery log is, and how many connections a process may open to it.
#[derive(Debug, Clone)]
pub struct Database {
    /// `DATABASE_URL` (never printed).
    pub url: Redacted<String>,
    /// `DATABASE_POOL_SIZE`: the most connections this process opens.
    pub pool_size: u32,
}

impl Database {
    /// `DATABASE_URL` and `DATABASE_POOL_SIZE` (1 to 200, default `pool_size`), for a function
    /// that keeps the delivery log.
    pub fn from_vars(vars: &Vars, pool_size: u32) -> Result<Self, ConfigError> {
        let url = vars.required("DATABASE_URL", "a postgres:// URL").map(Redacted)?;
        Ok(Self { url, pool_size: vars.num("DATABASE_POOL_SIZE", pool_size, 1..=200)? })
    }

    /// [`Database::from_vars`] where `DATABASE_URL` is optional (relay-local).
    pub fn optional(vars: &Vars, pool_size: u32) -> Result<Option<Self>, ConfigError> {
        match vars.get("DATABASE_URL") {
            None => Ok(None),
            Some(_) => Self::from_vars(vars, pool_size).map(Some),
        }
    }
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

    /// [`PostgresDeliveryLog::connect`], then [`PostgresDeliveryLog::migrate`]: how every
    /// function opens the log.
    pub async fn open(database: &Database) -> Result<Self> {
        let log = Self::connect(&database.url.0, database.pool_size).await?;
        log.migrate().await?;
        Ok(log)
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The event index, on this log's pool.
    pub fn event_index(&self) -> PostgresEventIndex {
        PostgresEventIndex::new(self.pool.clone())
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

/// A count as SQL's `bigint`.
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
