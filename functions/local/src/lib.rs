//! relay-local: the whole relay in one process, and its composition root. The API on a TCP
//! listener (served by [`serve`], with header, body and idle timeouts and a connection cap),
//! the delivery worker's pollers and a maintenance timer, over whatever backends its settings
//! name (in memory by default, or DynamoDB and SQS, with PostgreSQL and Redis). The binary and
//! the integration tests both start it through [`start`].

pub mod config;
pub mod demo;
mod runtime;
pub mod serve;

pub use config::{Backend, Config, ServerSettings};
pub use relay_backends::{Backends, Evictor};
pub use runtime::{Relay, aws_backends, backends};

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use relay_core::{Error, Result};

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
        for poller in relay.pollers() {
            tasks.spawn(poller.run(stopped.clone()));
        }
    }
    // Keeps the embedded event store within MEMORY_MAX_EVENTS and EVENT_RETENTION_DAYS.
    if let Some(evictor) = relay.backends.evictor.clone() {
        let log = relay.backends.deliveries.clone();
        let mut evictor_stop = stopped.clone();
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(EVICT_EVERY);
            loop {
                tokio::select! {
                    _ = ticks.tick() => evict(&evictor, log.as_ref()).await,
                    _ = evictor_stop.changed() => break,
                }
            }
        });
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

/// How often relay-local checks its embedded event store against its limits.
const EVICT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Sweeps while each sweep evicts something (a sweep takes at most 10,000 events).
async fn evict(evictor: &relay_backends::Evictor, log: &dyn relay_core::ports::DeliveryLog) {
    loop {
        match evictor.sweep(log).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "evicting old events failed; the next sweep retries");
                break;
            }
        }
    }
}
