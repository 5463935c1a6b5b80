//! relay-api: the management API behind API Gateway (webhooks, their delivery log, manual
//! retries, for clients with an API key), the events' reads and lists, and the dashboard, over DynamoDB, SQS, the delivery
//! log in PostgreSQL and, when configured, Redis.
//!
//! This crate is its composition root: [`Settings`] reads what it runs and nothing else, and
//! [`app`] builds the router.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use relay_aws::{AwsClients, AwsSettings, Name};
use relay_backends::Backends;
use relay_core::app::{AdminPolicy, Ingest, Tenancy, Tenants, WebhookAdmin};
use relay_core::auth::{Credentials, Directory};
use relay_core::domain::EventTypeRegistry;
use relay_core::sealing::SecretKeys;
use relay_core::settings::{
    self, ConfigError, DeliverySettings, Profile, Redacted, StartupError, Vars, WebhookSettings,
};
use relay_http_api::{Access, ApiSettings, Common, EventsState, Health, ManagementState};
use relay_postgres::{Database, LAMBDA_POOL_SIZE};
use relay_sender::HttpSender;

/// Everything relay-api reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SERVICE_TOKENS` (the tenants API) and `API_KEYS` (static keys; tenants' other keys
    /// are issued through the API).
    pub credentials: Credentials,
    /// `EVENTS_TABLE`, `WEBHOOKS_TABLE`, `TENANTS_TABLE`, `QUEUE_URL`, `ORDERED_QUEUE_URL` (manual
    /// recoveries of an ordered webhook go there) (required), `DLQ_URL` (its depth, for operators).
    pub aws: AwsSettings,
    /// `DATABASE_URL` (required) and `DATABASE_POOL_SIZE`: the delivery log.
    pub database: Database,
    /// `SECRETS_ENCRYPTION_KEYS` (required).
    pub secret_keys: SecretKeys,
    pub event_types: EventTypeRegistry,
    /// For a manual retry, which delivers at once.
    pub delivery: DeliverySettings,
    pub webhooks: WebhookSettings,
    pub api: ApiSettings,
    /// `PUBLIC_URL`: where portal links point (unset: the request's host).
    pub public_url: Option<String>,
    /// `DASHBOARD_SESSION_SECRET`: without it there is no dashboard.
    pub dashboard_session_secret: Option<Redacted<String>>,
    /// `REDIS_URL`: shared rate limits, locks, ended sessions and the webhook cache.
    pub redis_url: Option<Redacted<String>>,
    pub event_retention: Duration,
}

impl Settings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let (credentials, _) = Credentials::from_vars(vars, Profile::Production)?;
        // The tenants API and /api/metrics are for internal services.
        vars.required("SERVICE_TOKENS", "comma-separated tokens")?;
        Ok(Self {
            credentials,
            aws: AwsSettings::require(
                vars,
                &[Name::EventsTable, Name::WebhooksTable, Name::TenantsTable, Name::QueueUrl, Name::OrderedQueueUrl],
            )?,
            database: Database::from_vars(vars, LAMBDA_POOL_SIZE)?,
            secret_keys: settings::required_secret_keys(vars)?,
            event_types: settings::event_types(vars)?,
            delivery: DeliverySettings::from_vars(vars)?,
            webhooks: WebhookSettings::from_vars(vars, Profile::Production)?,
            api: ApiSettings::from_vars(vars)?,
            public_url: relay_http_api::public_url(vars)?,
            dashboard_session_secret: relay_dashboard::session_secret(vars)?,
            redis_url: relay_redis::redis_url(vars),
            event_retention: relay_aws::event_retention(vars)?,
        })
    }
}

/// The management API, the dashboard (with a session secret) and `/health`.
pub async fn app(settings: Settings, clients: &AwsClients) -> Result<Router, StartupError> {
    let backends = Backends::aws(&settings.aws, settings.event_retention, clients)
        .with_database(Some(&settings.database))
        .await?
        .with_redis(settings.redis_url.as_ref())?;
    let management = management(&backends, &settings)?;
    let pages = match &settings.dashboard_session_secret {
        Some(secret) => {
            relay_dashboard::pages(management.clone(), secret.0.as_bytes().to_vec(), backends.cache.clone(), true)
        }
        None => Router::new(),
    };
    let common = Common {
        health: management.health.clone(),
        access: Some(management.access.clone()),
        cors_origins: settings.api.cors_origins.clone(),
    };
    let events = event_reads(&backends, &settings, &management);
    Ok(relay_http_api::management_app(management, events, pages, common))
}

/// The events' reads and lists (`POST /api/events` is relay-ingest's).
fn event_reads(b: &Backends, settings: &Settings, management: &ManagementState) -> EventsState {
    let directory = management.access.directory.clone();
    // Nothing is ingested here: the tenancy rule only matters to POST, which is not routed.
    let tenancy = Tenancy { directory, allow_broadcast: false };
    let registry = Arc::new(settings.event_types.clone());
    EventsState {
        ingest: Ingest::new(b.events.clone(), b.queue.clone(), registry, tenancy),
        access: management.access.clone(),
        max_payload_bytes: settings.api.max_payload_bytes,
    }
}

fn management(b: &Backends, settings: &Settings) -> relay_core::Result<ManagementState> {
    let sender = HttpSender::for_rules(settings.delivery.webhook_timeout, &settings.webhooks.allowed_cidrs)?;
    let directory = Arc::new(Directory::new(settings.credentials.clone(), b.tenants.clone()));
    let deliverer = b.deliverer(Arc::new(sender), &settings.delivery, settings.secret_keys.clone(), directory.clone());
    let registry = Arc::new(settings.event_types.clone());
    let policy = AdminPolicy::new(registry, &settings.webhooks, settings.secret_keys.clone(), &settings.delivery);
    let (webhooks, deliveries, events) = (b.webhooks.clone(), b.deliveries.clone(), b.events.clone());
    Ok(ManagementState {
        admin: WebhookAdmin::new(webhooks, deliveries, events, deliverer, policy, directory.clone()),
        tenants: Tenants::new(directory.clone(), b.webhooks.clone()),
        public_url: settings.public_url.clone(),
        dashboard: b.dashboard(),
        access: Access::new(directory, b.limiter.clone(), &settings.api),
        health: Health::of(b.events.clone(), b.queue.clone(), b.probes.clone()),
    })
}
