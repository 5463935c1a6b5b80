//! relay-local's composition: the backends its settings name, and every use case over them,
//! built once per process.

use std::sync::Arc;

use aws_config::SdkConfig;
use relay_aws::{AwsClients, Name};
use relay_backends::Backends;
use relay_core::app::{AdminPolicy, Dashboard, Ingest, Maintenance, Tenancy, Tenants, WebhookAdmin};
use relay_core::auth::Directory;
use relay_core::sealing::SecretKeys;
use relay_core::settings::{ConfigError, StartupError};
use relay_core::worker::{BatchHandler, Poller};
use relay_http_api::{Access, Common, EventsState, Health, ManagementState};
use relay_sender::HttpSender;

use crate::config::{Backend, Config};

/// The backends `config.backend` names (the SDK's standard configuration for AWS), with the
/// PostgreSQL delivery log when `DATABASE_URL` is set and Redis when `REDIS_URL` is.
pub async fn backends(config: &Config) -> Result<Backends, StartupError> {
    let backends = match config.backend {
        Backend::Memory => Backends::in_memory(config.memory),
        Backend::Aws => aws_backends(config, &relay_aws::sdk_config().await)?,
    };
    let backends = backends.with_database(config.database.as_ref()).await?.with_redis(config.redis_url.as_ref())?;
    if config.backend == Backend::Memory && config.database.is_some() {
        backends.close_orphans().await?;
    }
    Ok(backends)
}

/// DynamoDB and SQS as `config.aws` names them (all eight names required), the rest in memory.
pub fn aws_backends(config: &Config, sdk: &SdkConfig) -> Result<Backends, ConfigError> {
    let names = [
        Name::EventsTable,
        Name::IdempotencyTable,
        Name::WebhooksTable,
        Name::TenantsTable,
        Name::QueueUrl,
        Name::OrderedQueueUrl,
        Name::DeadLetterQueueUrl,
        Name::OrderedDeadLetterQueueUrl,
    ];
    config.aws.check(&names)?;
    Ok(Backends::aws(&config.aws, config.event_retention, &AwsClients::new(sdk)))
}

/// The use cases, built once over the backends.
#[derive(Clone, Debug)]
pub struct Relay {
    pub ingest: Ingest,
    pub admin: WebhookAdmin,
    pub tenants: Tenants,
    pub handler: BatchHandler,
    pub maintenance: Maintenance,
    pub dashboard: Dashboard,
    pub backends: Backends,
    /// Who may call, shared by every router (one count of failed credentials per process).
    access: Access,
    /// The dependency report, shared by `/health` and the dashboards.
    health: Health,
    config: Arc<Config>,
}

impl Relay {
    pub fn new(config: &Config, backends: Backends) -> relay_core::Result<Self> {
        let sender = HttpSender::for_rules(config.delivery.webhook_timeout, &config.webhooks.allowed_cidrs)?;
        let registry = Arc::new(config.event_types.clone());
        // On DynamoDB the keys are required (`Config`); in memory a fresh key is right.
        let keys = match &config.secret_keys {
            Some(keys) => keys.clone(),
            None => SecretKeys::random()?,
        };
        let b = &backends;
        let directory = Arc::new(Directory::new(config.credentials.clone(), b.tenants.clone()));
        let deliverer = b.deliverer(Arc::new(sender), &config.delivery, keys.clone(), directory.clone());
        let policy = AdminPolicy::new(registry.clone(), &config.webhooks, keys, &config.delivery);
        let tenancy = Tenancy { directory: directory.clone(), allow_broadcast: config.allow_broadcast_events };
        Ok(Self {
            ingest: Ingest::new(b.events.clone(), b.queue.clone(), registry, tenancy),
            admin: WebhookAdmin::new(
                b.webhooks.clone(),
                b.deliveries.clone(),
                b.events.clone(),
                deliverer.clone(),
                policy,
                directory.clone(),
            ),
            tenants: Tenants::new(directory.clone(), b.webhooks.clone()),
            handler: BatchHandler::new(deliverer),
            maintenance: b.maintenance(),
            dashboard: b.dashboard(),
            access: Access::new(directory, b.limiter.clone(), &config.api),
            health: Health::of(b.events.clone(), b.queue.clone(), b.probes.clone()),
            config: Arc::new(config.clone()),
            backends,
        })
    }

    /// One poller per lane (dispatch, delivery, ordered): what Lambda's three event source
    /// mappings do in AWS. relay-local runs `WORKER_CONCURRENCY` of each.
    pub fn pollers(&self) -> [Poller; 3] {
        let b = &self.backends;
        [
            Poller::new(b.queue.clone(), self.handler.clone()),
            Poller::new(b.delivery_queue.clone(), self.handler.clone()),
            Poller::new(b.ordered_queue.clone(), self.handler.clone()),
        ]
    }

    pub fn events_state(&self) -> EventsState {
        EventsState {
            ingest: self.ingest.clone(),
            access: self.access.clone(),
            max_payload_bytes: self.config.api.max_payload_bytes,
        }
    }

    pub fn management_state(&self) -> ManagementState {
        ManagementState {
            admin: self.admin.clone(),
            tenants: self.tenants.clone(),
            public_url: self.config.public_url.clone(),
            dashboard: self.dashboard.clone(),
            access: self.access.clone(),
            health: self.health.clone(),
        }
    }

    /// `/health` and CORS, for every app.
    pub fn common(&self) -> Common {
        Common {
            health: self.health.clone(),
            access: Some(self.access.clone()),
            cors_origins: self.config.api.cors_origins.clone(),
        }
    }

    /// The dashboard's routes, signed with `DASHBOARD_SESSION_SECRET`, or else with a random
    /// secret made now (sessions end with the process).
    pub fn dashboard_routes(&self) -> axum::Router {
        let secret = match &self.config.dashboard_session_secret {
            Some(secret) => secret.0.as_bytes().to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        relay_dashboard::pages(self.management_state(), secret, self.backends.cache.clone(), false)
    }

    /// The whole API as one router.
    pub fn router(&self) -> axum::Router {
        relay_http_api::local_app(self.events_state(), self.management_state(), self.dashboard_routes(), self.common())
    }
}
