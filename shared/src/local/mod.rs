//! The whole relay in one process: the API on a TCP listener, the delivery worker's pollers
//! and a maintenance timer, over whatever backends it is given (in memory by default, or
//! DynamoDB and SQS). relay-local and the
//! integration tests both start it through [`start`].

pub mod demo;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::adapters::dynamodb::{DynamoEventStore, DynamoWebhookStore, TableNames, create_tables};
use crate::adapters::http::{HttpSender, SsrfGuard};
use crate::adapters::memory::{MemoryDeliveryLog, MemoryEventStore, MemoryQueue, MemoryWebhookStore};
use crate::adapters::sqs::{QueueSpec, SqsQueue, create_queue_pair};
use crate::api::{self, EventsState, ManagementState};
use crate::app::{Deliverer, Ingest, Maintenance, WebhookAdmin};
use crate::config::{AwsSettings, Backend, Config, ConfigError, Need};
use crate::ports::{DeliveryLog, EventStore, Queue, WebhookStore};
use crate::worker::{BatchHandler, Poller};
use crate::{Error, Result};

/// The stores and queues the relay runs on.
#[derive(Clone, Debug)]
pub struct Backends {
    pub events: Arc<dyn EventStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
    pub queue: Arc<dyn Queue>,
    /// Where the queue moves poison messages.
    pub dead_letter: Arc<dyn Queue>,
}

impl Backends {
    /// Everything in memory: the relay-local default.
    pub fn in_memory(config: &Config) -> Self {
        let dead_letter = Arc::new(MemoryQueue::new(config.queue_visibility_timeout));
        let queue = MemoryQueue::new(config.queue_visibility_timeout)
            .with_dead_letter(dead_letter.clone(), config.queue_max_receive_count);
        Self {
            events: Arc::new(MemoryEventStore::new()),
            webhooks: Arc::new(MemoryWebhookStore::new()),
            deliveries: Arc::new(MemoryDeliveryLog::new()),
            queue: Arc::new(queue),
            dead_letter,
        }
    }

    /// DynamoDB and SQS as configured (`EVENTS_TABLE`, `IDEMPOTENCY_TABLE`, `WEBHOOKS_TABLE`,
    /// `QUEUE_URL`, `DLQ_URL`); the delivery log stays in memory.
    pub fn aws(config: &Config, sdk: &SdkConfig) -> Result<Self, ConfigError> {
        config.require(&[Need::EventsTable, Need::IdempotencyTable, Need::WebhooksTable, Need::QueueUrl, Need::DeadLetterQueueUrl])?;
        let aws = &config.aws;
        let tables = TableNames {
            events: aws.events_table.clone().unwrap_or_default(),
            idempotency: aws.idempotency_table.clone().unwrap_or_default(),
            webhooks: aws.webhooks_table.clone().unwrap_or_default(),
        };
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        Ok(Self {
            events: Arc::new(DynamoEventStore::new(dynamodb.clone(), &tables, config.event_retention)),
            webhooks: Arc::new(DynamoWebhookStore::new(dynamodb, &tables)),
            deliveries: Arc::new(MemoryDeliveryLog::new()),
            queue: Arc::new(SqsQueue::new(sqs.clone(), aws.queue_url.clone().unwrap_or_default())),
            dead_letter: Arc::new(SqsQueue::new(sqs, aws.dead_letter_queue_url.clone().unwrap_or_default())),
        })
    }

    /// The backends `config.backend` names, with the SDK's standard configuration for AWS.
    pub async fn from_config(config: &Config) -> Result<Self, ConfigError> {
        match config.backend {
            Backend::Memory => Ok(Self::in_memory(config)),
            Backend::Aws => Self::aws(config, &aws_config::defaults(BehaviorVersion::latest()).load().await),
        }
    }
}

/// Creates the tables and queues `template.yaml` declares, named `{prefix}-...`, and returns
/// their settings. For LocalStack and moto (`localstack/bootstrap.sh`) and tests.
pub async fn bootstrap_aws(sdk: &SdkConfig, prefix: &str, config: &Config) -> Result<AwsSettings> {
    let tables = TableNames::with_prefix(prefix);
    create_tables(&aws_sdk_dynamodb::Client::new(sdk), &tables).await?;
    let spec = QueueSpec {
        name: format!("{prefix}-queue"),
        visibility_timeout: config.queue_visibility_timeout,
        max_receive_count: config.queue_max_receive_count,
        retention: std::time::Duration::from_secs(14 * 86_400),
    };
    let (queue_url, dlq_url) = create_queue_pair(&aws_sdk_sqs::Client::new(sdk), &spec).await?;
    Ok(AwsSettings {
        events_table: Some(tables.events),
        idempotency_table: Some(tables.idempotency),
        webhooks_table: Some(tables.webhooks),
        queue_url: Some(queue_url),
        dead_letter_queue_url: Some(dlq_url),
    })
}

/// The use cases, built once over the backends.
#[derive(Clone, Debug)]
pub struct Relay {
    pub ingest: Ingest,
    pub admin: WebhookAdmin,
    pub deliverer: Deliverer,
    pub handler: BatchHandler,
    pub maintenance: Maintenance,
    pub backends: Backends,
    config: Arc<Config>,
}

impl Relay {
    pub fn new(config: &Config, backends: Backends) -> Result<Self> {
        let guard = SsrfGuard::new(config.allowed_cidrs.clone());
        let sender = Arc::new(HttpSender::new(config.webhook_timeout, guard.clone())?);
        let registry = Arc::new(config.event_types.clone());
        let b = &backends;
        let deliverer = Deliverer::new(
            b.events.clone(),
            b.webhooks.clone(),
            b.deliveries.clone(),
            b.queue.clone(),
            sender,
            config.retry,
        );
        let admin = WebhookAdmin::new(
            b.webhooks.clone(),
            b.deliveries.clone(),
            b.events.clone(),
            deliverer.clone(),
            registry.clone(),
            config.require_https,
            Arc::new(guard),
        );
        let ingest = Ingest::new(b.events.clone(), b.queue.clone(), registry);
        let handler = BatchHandler::new(deliverer.clone(), b.queue.clone());
        let maintenance = Maintenance::new(
            b.events.clone(),
            b.webhooks.clone(),
            b.deliveries.clone(),
            b.queue.clone(),
            b.dead_letter.clone(),
            deliverer.clone(),
        );
        Ok(Self { ingest, admin, deliverer, handler, maintenance, backends, config: Arc::new(config.clone()) })
    }

    /// The whole API as one router.
    pub fn router(&self) -> axum::Router {
        let credentials = Arc::new(self.config.credentials.clone());
        api::local_app(
            EventsState {
                ingest: self.ingest.clone(),
                credentials: credentials.clone(),
                max_payload_bytes: self.config.max_payload_bytes,
            },
            ManagementState { admin: self.admin.clone(), credentials },
        )
    }
}

/// A relay serving on a listener, with its pollers running.
#[derive(Debug)]
pub struct RunningRelay {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Serves the API on `listener` and starts `config.worker_concurrency` pollers.
pub async fn start(config: &Config, backends: Backends, listener: TcpListener) -> Result<RunningRelay> {
    let relay = Relay::new(config, backends)?;
    let addr = listener.local_addr().map_err(|e| Error::Internal(format!("listener has no address: {e}")))?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let router = relay.router();
    let mut server_stop = stopped.clone();
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        };
        if let Err(err) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %err, "API server stopped");
        }
    });
    for _ in 0..config.worker_concurrency {
        let poller = Poller::new(relay.backends.queue.clone(), relay.handler.clone());
        tasks.spawn(poller.run(stopped.clone()));
    }
    // What EventBridge does for relay-maintenance in AWS.
    let maintenance = relay.maintenance.clone();
    let interval = config.maintenance_interval;
    let mut maintenance_stop = stopped.clone();
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(err) = maintenance.run().await {
                        tracing::warn!(error = %err, "maintenance failed; next run retries");
                    }
                }
                _ = maintenance_stop.changed() => break,
            }
        }
    });
    Ok(RunningRelay { addr, stop, tasks })
}

impl RunningRelay {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking requests and messages, and waits for what is in progress.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
