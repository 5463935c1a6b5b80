//! The whole relay in one process: the API on a TCP listener (served by [`serve`], with
//! header, body and idle timeouts and a connection cap), the delivery worker's pollers and a
//! maintenance timer, over whatever backends it is given (in memory by default, or DynamoDB
//! and SQS). relay-local and the integration tests both start it through [`start`].

pub mod demo;
pub mod serve;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use aws_config::SdkConfig;

use crate::adapters::dynamodb::{TableNames, create_tables};
use crate::adapters::sqs::{QueueSpec, create_queue_pair};
use crate::config::{AwsSettings, Config};
use crate::worker::Poller;
use crate::{Error, Result};

pub use crate::runtime::{Backends, Relay};

/// Creates the tables `template.yaml` declares and a queue pair as `queue` says, named
/// `{prefix}-...`, and returns their settings. For LocalStack and moto (`relay-local
/// bootstrap`, with [`QueueSpec::deployed`]) and tests.
pub async fn bootstrap_aws(sdk: &SdkConfig, prefix: &str, queue: &QueueSpec) -> Result<AwsSettings> {
    let tables = TableNames::with_prefix(prefix);
    create_tables(&aws_sdk_dynamodb::Client::new(sdk), &tables).await?;
    let spec = QueueSpec { name: format!("{prefix}-queue"), ..queue.clone() };
    let (queue_url, dlq_url) = create_queue_pair(&aws_sdk_sqs::Client::new(sdk), &spec).await?;
    Ok(AwsSettings {
        events_table: Some(tables.events),
        idempotency_table: Some(tables.idempotency),
        webhooks_table: Some(tables.webhooks),
        queue_url: Some(queue_url),
        dead_letter_queue_url: Some(dlq_url),
    })
}

/// A relay serving on a listener, with its pollers running.
#[derive(Debug)]
pub struct RunningRelay {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// How long [`RunningRelay::shutdown`] waits for work in progress.
    shutdown_timeout: std::time::Duration,
}

/// Serves the API on `listener` and starts `config.worker_concurrency` pollers.
pub async fn start(config: &Config, backends: Backends, listener: TcpListener) -> Result<RunningRelay> {
    let relay = Relay::new(config, backends)?;
    let addr = listener.local_addr().map_err(|e| Error::Internal(format!("listener has no address: {e}")))?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let router = relay.router();
    let mut server_stop = stopped.clone();
    let settings = config.server;
    let limits = serve::ServerLimits {
        header_timeout: settings.header_timeout,
        body_timeout: settings.body_timeout,
        idle_timeout: settings.idle_timeout,
        max_connections: settings.max_connections,
    };
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        };
        if let Err(err) = serve::serve(listener, router, limits, shutdown, settings.shutdown_timeout).await {
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
    Ok(RunningRelay { addr, stop, tasks, shutdown_timeout: config.server.shutdown_timeout })
}

impl RunningRelay {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking connections, requests and messages, and waits for what is in progress (the
    /// requests being answered, the batches being delivered) for up to `SHUTDOWN_TIMEOUT`;
    /// what is still running then is dropped (its messages come back on the queue).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let finished =
            tokio::time::timeout(self.shutdown_timeout, async { while self.tasks.join_next().await.is_some() {} })
                .await;
        if finished.is_err() {
            tracing::warn!(
                remaining = self.tasks.len(),
                timeout_s = self.shutdown_timeout.as_secs(),
                "work still in progress at the end of SHUTDOWN_TIMEOUT; stopping it"
            );
            self.tasks.shutdown().await;
        }
    }
}
