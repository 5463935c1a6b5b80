//! The whole relay in one process: the API on a TCP listener and the delivery worker's
//! pollers, over whatever backends it is given (in memory by default). relay-local and the
//! integration tests both start it through [`start`].

pub mod demo;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::adapters::http::{HttpSender, SsrfGuard};
use crate::adapters::memory::{MemoryDeliveryLog, MemoryEventStore, MemoryQueue, MemoryWebhookStore};
use crate::api::{self, EventsState, ManagementState};
use crate::app::{Deliverer, Ingest, WebhookAdmin};
use crate::config::Config;
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
}

/// The use cases, built once over the backends.
#[derive(Clone, Debug)]
pub struct Relay {
    pub ingest: Ingest,
    pub admin: WebhookAdmin,
    pub deliverer: Deliverer,
    pub handler: BatchHandler,
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
        Ok(Self { ingest, admin, deliverer, handler, backends, config: Arc::new(config.clone()) })
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
