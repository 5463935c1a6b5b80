//! relay-maintenance: run by an EventBridge schedule. Re-dispatches events stored but never
//! enqueued and turns dead-lettered messages into failed deliveries; answers with its report.
//! It makes no delivery itself, so it sends no HTTP and opens no webhook secret.
//!
//! This crate is its composition root: [`Settings`] reads what it runs and nothing else, and
//! [`maintenance`] builds the use case.

use std::time::Duration;

use relay_aws::{AwsClients, AwsSettings, Name};
use relay_backends::Backends;
use relay_core::app::Maintenance;
use relay_core::settings::{ConfigError, Redacted, StartupError, Vars};
use relay_postgres::{Database, LAMBDA_POOL_SIZE};

/// Everything relay-maintenance reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `EVENTS_TABLE`, `WEBHOOKS_TABLE`, `QUEUE_URL`, `DLQ_URL`, `ORDERED_DLQ_URL` (required): it
    /// drains both dead-letter queues.
    pub aws: AwsSettings,
    /// `DATABASE_URL` (required) and `DATABASE_POOL_SIZE`: the delivery log.
    pub database: Database,
    /// `REDIS_URL`: the webhook cache.
    pub redis_url: Option<Redacted<String>>,
    pub event_retention: Duration,
}

impl Settings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let names = [
            Name::EventsTable,
            Name::WebhooksTable,
            Name::QueueUrl,
            Name::DeadLetterQueueUrl,
            Name::OrderedDeadLetterQueueUrl,
        ];
        Ok(Self {
            aws: AwsSettings::require(vars, &names)?,
            database: Database::from_vars(vars, LAMBDA_POOL_SIZE)?,
            redis_url: relay_redis::redis_url(vars),
            event_retention: relay_aws::event_retention(vars)?,
        })
    }
}

/// Maintenance over DynamoDB, SQS, PostgreSQL and (when configured) Redis.
pub async fn maintenance(settings: Settings, clients: &AwsClients) -> Result<Maintenance, StartupError> {
    let backends = Backends::aws(&settings.aws, settings.event_retention, clients)
        .with_database(Some(&settings.database))
        .await?
        .with_redis(settings.redis_url.as_ref())?;
    Ok(backends.maintenance())
}
