//! relay-ingest: the events API behind API Gateway. It touches only DynamoDB and SQS: no VPC,
//! no connection pool, no outbound HTTP, a fast cold start. Rate limits are counted per
//! instance (in memory); API Gateway's throttling bounds the whole.
//!
//! This crate is its composition root: [`Settings`] reads what it runs and nothing else, and
//! [`app`] builds the router over DynamoDB and SQS.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use relay_aws::{AwsClients, AwsSettings, DynamoEventStore, DynamoTenantStore, Name};
use relay_core::app::{Ingest, Tenancy};
use relay_core::auth::{Credentials, Directory};
use relay_core::domain::EventTypeRegistry;
use relay_core::settings::{self, ConfigError, Profile, Vars};
use relay_http_api::{Access, ApiSettings, Common, EventsState, Health};
use relay_memory::MemoryRateLimiter;

/// Everything relay-ingest reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SERVICE_TOKENS` (required) and `API_KEYS`, whose tenants exist implicitly (an event may
    /// be scoped to them; no tenant calls this function).
    pub credentials: Credentials,
    /// `EVENT_TYPES`.
    pub event_types: EventTypeRegistry,
    /// `ALLOW_BROADCAST_EVENTS` (false): whether an event without `tenant` is accepted.
    pub allow_broadcast_events: bool,
    pub api: ApiSettings,
    /// `EVENTS_TABLE`, `IDEMPOTENCY_TABLE`, `QUEUE_URL` (required).
    pub aws: AwsSettings,
    /// `EVENT_RETENTION_DAYS`.
    pub event_retention: Duration,
}

impl Settings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            credentials: Credentials::for_services(vars)?,
            aws: AwsSettings::require(
                vars,
                &[Name::EventsTable, Name::IdempotencyTable, Name::TenantsTable, Name::QueueUrl],
            )?,
            event_types: settings::event_types(vars)?,
            allow_broadcast_events: settings::allow_broadcast_events(vars, Profile::Production)?,
            api: ApiSettings::from_vars(vars)?,
            event_retention: relay_aws::event_retention(vars)?,
        })
    }
}

/// The events API and `/health`, over DynamoDB and SQS.
pub fn app(settings: Settings, clients: &AwsClients) -> Router {
    let events =
        Arc::new(DynamoEventStore::new(clients.dynamodb.clone(), &settings.aws.tables(), settings.event_retention));
    let queue = Arc::new(clients.queue(settings.aws.queue_url()));
    let tenants = Arc::new(DynamoTenantStore::new(clients.dynamodb.clone(), &settings.aws.tables()));
    let directory = Arc::new(Directory::new(settings.credentials, tenants));
    let tenancy = Tenancy { directory: directory.clone(), allow_broadcast: settings.allow_broadcast_events };
    let ingest = Ingest::new(events.clone(), queue.clone(), Arc::new(settings.event_types), tenancy);
    let access = Access::new(directory, Arc::new(MemoryRateLimiter::new()), &settings.api);
    let common = Common {
        health: Health::of(events, queue, Vec::new()),
        access: Some(access.clone()),
        cors_origins: settings.api.cors_origins,
    };
    let state = EventsState { ingest, access, max_payload_bytes: settings.api.max_payload_bytes };
    relay_http_api::ingest_app(state, common)
}
