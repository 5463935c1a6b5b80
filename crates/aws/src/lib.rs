//! The AWS adapters: the event, webhook and tenant stores on DynamoDB, the relay's queues (the
//! lanes and their dead-letter queues) on SQS, and settings completed from Secrets Manager at cold start. All
//! are reached through the SDK's standard endpoint settings only, so LocalStack, moto and AWS
//! are the same code.

pub mod dynamodb;
pub mod secrets;
pub mod sqs;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use relay_core::Result;
use relay_core::settings::{ConfigError, Vars};

pub use dynamodb::{DynamoEventStore, DynamoTenantStore, DynamoWebhookStore, TableNames};
pub use sqs::{QueueSpec, SqsQueue};

/// The SDK's standard configuration (region, credentials, endpoints) from the environment.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Bounds on every DynamoDB and SQS request. The SDK's defaults bound only connecting: a
/// service that takes the connection and then never answers (a frozen host, a lost network)
/// would hold the request, and the caller of `POST /api/events`, until TCP gives up. A request
/// without an answer in 4 s is tried again (the standard retry mode), and the call gives up
/// after 8 s with `503`: within the ingest function's 10 s and API Gateway's 29 s. DynamoDB
/// and SQS answer in milliseconds. An SQS long poll adds its wait (`SqsQueue::receive`).
pub fn aws_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(3100))
        .operation_attempt_timeout(Duration::from_secs(4))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

/// The DynamoDB and SQS clients, each request bounded by [`aws_timeouts`].
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(sdk).timeout_config(aws_timeouts()).build(),
            ),
            sqs: aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(sdk).timeout_config(aws_timeouts()).build(),
            ),
        }
    }

    /// The queue at `url`.
    pub fn queue(&self, url: &str) -> SqsQueue {
        SqsQueue::new(self.sqs.clone(), url)
    }
}

/// `EVENT_RETENTION_DAYS` (30): how long DynamoDB keeps an event (its TTL).
pub fn event_retention(vars: &Vars) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(86_400 * vars.num::<u64>("EVENT_RETENTION_DAYS", 30, 1..=3650)?))
}

/// A name in [`AwsSettings`] a function cannot run without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    EventsTable,
    IdempotencyTable,
    WebhooksTable,
    /// `TENANTS_TABLE`.
    TenantsTable,
    QueueUrl,
    /// `ORDERED_QUEUE_URL`.
    OrderedQueueUrl,
    DeadLetterQueueUrl,
    /// `ORDERED_DLQ_URL`.
    OrderedDeadLetterQueueUrl,
}

/// `EVENTS_TABLE`, `IDEMPOTENCY_TABLE`, `WEBHOOKS_TABLE`, `TENANTS_TABLE`, `QUEUE_URL`,
/// `DELIVERY_QUEUE_URL`, `ORDERED_QUEUE_URL`, `DLQ_URL`, `ORDERED_DLQ_URL`: where the AWS
/// backends are, as relay-local reads them (any may be unset; the Lambda functions require the
/// ones they use, each on its own).
///
/// `QUEUE_URL` is the dispatch lane (ingest's `dispatch` messages), `DELIVERY_QUEUE_URL` the
/// delivery lane (`deliver` messages), so deliveries never wait behind a backlog of dispatches.
/// Without `DELIVERY_QUEUE_URL` both kinds share `QUEUE_URL`, as before the lanes were split.
/// `ORDERED_QUEUE_URL` is the ordered lane, a FIFO queue (the `deliver` messages of ordered
/// webhooks, a message group per webhook), with its own FIFO dead-letter queue,
/// `ORDERED_DLQ_URL`: SQS redrives a FIFO queue only to a FIFO queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    pub events_table: Option<String>,
    pub idempotency_table: Option<String>,
    pub webhooks_table: Option<String>,
    pub tenants_table: Option<String>,
    pub queue_url: Option<String>,
    pub delivery_queue_url: Option<String>,
    pub ordered_queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
    pub ordered_dead_letter_queue_url: Option<String>,
}

impl AwsSettings {
    pub fn from_vars(vars: &Vars) -> Self {
        Self {
            events_table: vars.get("EVENTS_TABLE"),
            idempotency_table: vars.get("IDEMPOTENCY_TABLE"),
            webhooks_table: vars.get("WEBHOOKS_TABLE"),
            tenants_table: vars.get("TENANTS_TABLE"),
            queue_url: vars.get("QUEUE_URL"),
            delivery_queue_url: vars.get("DELIVERY_QUEUE_URL"),
            ordered_queue_url: vars.get("ORDERED_QUEUE_URL"),
            dead_letter_queue_url: vars.get("DLQ_URL"),
            ordered_dead_letter_queue_url: vars.get("ORDERED_DLQ_URL"),
        }
    }

    /// The names, each of `needed` required (a function requires what it uses).
    pub fn require(vars: &Vars, needed: &[Name]) -> Result<Self, ConfigError> {
        let settings = Self::from_vars(vars);
        settings.check(needed)?;
        Ok(settings)
    }

    /// An error naming the first of `needed` that is not set.
    pub fn check(&self, needed: &[Name]) -> Result<(), ConfigError> {
        let settings = self;
        for name in needed {
            let (var, value, what) = match name {
                Name::EventsTable => ("EVENTS_TABLE", &settings.events_table, "the events table's name"),
                Name::IdempotencyTable => {
                    ("IDEMPOTENCY_TABLE", &settings.idempotency_table, "the idempotency table's name")
                }
                Name::WebhooksTable => ("WEBHOOKS_TABLE", &settings.webhooks_table, "the webhooks table's name"),
                Name::TenantsTable => ("TENANTS_TABLE", &settings.tenants_table, "the tenants table's name"),
                Name::QueueUrl => ("QUEUE_URL", &settings.queue_url, "the relay queue's URL"),
                Name::OrderedQueueUrl => {
                    ("ORDERED_QUEUE_URL", &settings.ordered_queue_url, "the ordered lane's URL (a FIFO queue)")
                }
                Name::DeadLetterQueueUrl => ("DLQ_URL", &settings.dead_letter_queue_url, "the dead-letter queue's URL"),
                Name::OrderedDeadLetterQueueUrl => (
                    "ORDERED_DLQ_URL",
                    &settings.ordered_dead_letter_queue_url,
                    "the ordered lane's dead-letter queue's URL (a FIFO queue)",
                ),
            };
            if value.is_none() {
                return Err(ConfigError::new(var, format!("is required ({what})")));
            }
        }
        Ok(())
    }

    /// The table names; one not set is empty (a function requires those it uses).
    pub fn tables(&self) -> TableNames {
        TableNames {
            events: self.events_table.clone().unwrap_or_default(),
            idempotency: self.idempotency_table.clone().unwrap_or_default(),
            webhooks: self.webhooks_table.clone().unwrap_or_default(),
            tenants: self.tenants_table.clone().unwrap_or_default(),
        }
    }

    /// The relay queue's URL (empty when not set).
    pub fn queue_url(&self) -> &str {
        self.queue_url.as_deref().unwrap_or_default()
    }

    /// The delivery lane's URL: `DELIVERY_QUEUE_URL`, else the relay queue's.
    pub fn delivery_queue_url(&self) -> &str {
        self.delivery_queue_url.as_deref().unwrap_or_else(|| self.queue_url())
    }

    /// The ordered lane's URL (`ORDERED_QUEUE_URL`, a FIFO queue; empty when not set).
    pub fn ordered_queue_url(&self) -> &str {
        self.ordered_queue_url.as_deref().unwrap_or_default()
    }

    /// The dead-letter queue's URL (empty when not set).
    pub fn dead_letter_queue_url(&self) -> &str {
        self.dead_letter_queue_url.as_deref().unwrap_or_default()
    }

    /// The ordered lane's dead-letter queue's URL (`ORDERED_DLQ_URL`, a FIFO queue; empty when
    /// not set).
    pub fn ordered_dead_letter_queue_url(&self) -> &str {
        self.ordered_dead_letter_queue_url.as_deref().unwrap_or_default()
    }

    /// Whether any name is set.
    pub fn any_set(&self) -> bool {
        *self != Self::default()
    }
}

/// Creates the tables `template.yaml` declares and the queues as `queue` says (the three lanes
/// and their dead-letter queues, [`sqs::create_queues`], named `{prefix}-queue...`), for
/// LocalStack and moto (`relay-local bootstrap`, with [`QueueSpec::deployed`]) and tests.
pub async fn bootstrap(sdk: &SdkConfig, prefix: &str, queue: &QueueSpec) -> Result<AwsSettings> {
    let tables = TableNames::with_prefix(prefix);
    dynamodb::create_tables(&aws_sdk_dynamodb::Client::new(sdk), &tables).await?;
    let spec = QueueSpec { name: format!("{prefix}-queue"), ..queue.clone() };
    let queues = sqs::create_queues(&aws_sdk_sqs::Client::new(sdk), &spec).await?;
    Ok(AwsSettings {
        events_table: Some(tables.events),
        idempotency_table: Some(tables.idempotency),
        webhooks_table: Some(tables.webhooks),
        tenants_table: Some(tables.tenants),
        queue_url: Some(queues.queue),
        delivery_queue_url: Some(queues.delivery),
        ordered_queue_url: Some(queues.ordered),
        dead_letter_queue_url: Some(queues.dead_letter),
        ordered_dead_letter_queue_url: Some(queues.ordered_dead_letter),
    })
}
