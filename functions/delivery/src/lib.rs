//! relay-delivery: the relay queue's consumer. Lambda's event source mapping hands it batches
//! (`SqsEvent`); it returns the ids of the messages to retry (`SqsBatchResponse`,
//! `ReportBatchItemFailures`), having set each one's visibility to its backoff delay.
//!
//! This crate is its composition root: [`Settings`] reads what it runs and nothing else,
//! [`handler`] builds the worker's core ([`BatchHandler`]) and [`handle`] is the Lambda edge
//! around it: `SqsEvent` in, plain messages to the core, `SqsBatchResponse` out.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use ipnet::IpNet;
use relay_aws::{AwsClients, AwsSettings, Name};
use relay_backends::Backends;
use relay_core::auth::{Credentials, Directory};
use relay_core::ports::ReceivedMessage;
use relay_core::sealing::SecretKeys;
use relay_core::settings::{self, ConfigError, DeliverySettings, Profile, Redacted, StartupError, Vars};
use relay_core::worker::{BatchHandler, BatchOutcome};
use relay_postgres::{Database, LAMBDA_POOL_SIZE};
use relay_sender::HttpSender;

/// Everything relay-delivery reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `EVENTS_TABLE`, `WEBHOOKS_TABLE`, `TENANTS_TABLE` (a disabled tenant's webhooks get
    /// nothing), `QUEUE_URL` (required).
    pub aws: AwsSettings,
    /// `DATABASE_URL` (required) and `DATABASE_POOL_SIZE`: the delivery log.
    pub database: Database,
    /// `SECRETS_ENCRYPTION_KEYS` (required): to open the secrets it signs with.
    pub secret_keys: SecretKeys,
    pub delivery: DeliverySettings,
    /// `WEBHOOK_ALLOWED_CIDRS`: private ranges deliveries may reach anyway.
    pub allowed_cidrs: Vec<IpNet>,
    /// `REDIS_URL`: delivery locks and the webhook cache.
    pub redis_url: Option<Redacted<String>>,
    pub event_retention: Duration,
}

impl Settings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            aws: AwsSettings::require(
                vars,
                &[Name::EventsTable, Name::WebhooksTable, Name::TenantsTable, Name::QueueUrl, Name::OrderedQueueUrl],
            )?,
            database: Database::from_vars(vars, LAMBDA_POOL_SIZE)?,
            secret_keys: settings::required_secret_keys(vars)?,
            delivery: DeliverySettings::from_vars(vars)?,
            allowed_cidrs: settings::allowed_cidrs(vars, Profile::Production)?,
            redis_url: relay_redis::redis_url(vars),
            event_retention: relay_aws::event_retention(vars)?,
        })
    }
}

/// The worker's core over DynamoDB, SQS, PostgreSQL and (when configured) Redis.
pub async fn handler(settings: Settings, clients: &AwsClients) -> Result<BatchHandler, StartupError> {
    let backends = Backends::aws(&settings.aws, settings.event_retention, clients)
        .with_database(Some(&settings.database))
        .await?
        .with_redis(settings.redis_url.as_ref())?;
    let sender = HttpSender::for_rules(settings.delivery.webhook_timeout, &settings.allowed_cidrs)?;
    // No credentials: only stored tenants can be disabled (those API_KEYS names never are).
    let directory = Arc::new(Directory::new(Credentials::new(Vec::new(), Vec::new()), backends.tenants.clone()));
    let deliverer = backends.deliverer(Arc::new(sender), &settings.delivery, settings.secret_keys, directory);
    Ok(BatchHandler::new(deliverer))
}

/// One batch from Lambda's event source mapping. Its records all come from one queue: the
/// ordered lane's when its ARN names a FIFO queue, else the dispatch or delivery lane's (whose
/// `deliver` messages are the delivery lane's).
pub async fn handle(handler: &BatchHandler, event: SqsEvent) -> SqsBatchResponse {
    let ordered =
        event.records.first().and_then(|r| r.event_source_arn.as_deref()).is_some_and(|arn| arn.ends_with(".fifo"));
    let outcome = handler.handle(handler.lane(ordered), event.records.into_iter().map(received).collect()).await;
    let mut response = SqsBatchResponse::default();
    match outcome {
        BatchOutcome::Retry(ids) => ids.into_iter().for_each(|id| response.add_failure(id)),
        // Lambda treats an empty item identifier as a failure of the whole batch.
        BatchOutcome::RetryAll => response.add_failure(String::new()),
    }
    response
}

/// A record of an `SqsEvent` as the core takes it.
pub fn received(record: SqsMessage) -> ReceivedMessage {
    let receive_count = record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1);
    ReceivedMessage {
        message_id: record.message_id.unwrap_or_default(),
        receipt_handle: record.receipt_handle.unwrap_or_default(),
        body: record.body.unwrap_or_default(),
        receive_count,
    }
}
