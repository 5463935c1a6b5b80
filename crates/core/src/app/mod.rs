//! Use cases, each over the narrow ports it needs: `Ingest` (accept events), `WebhookAdmin`
//! (manage webhooks, read the delivery log, retry by hand), `Deliverer` (dispatch and deliver)
//! and `Maintenance` (re-dispatch what was never enqueued, drain the dead-letter queue).

mod dashboard;
mod delivery;
mod ingest;
mod maintenance;
mod message;
mod tenants;
mod webhooks;

pub use dashboard::{Backlog, Dashboard, Depth, Overview, QueuePorts, Queues, WebhookCounts};
pub use delivery::{Answers, Deliverer, DelivererPorts, Next};
pub use ingest::{Accepted, IDEMPOTENCY_TTL, Ingest, Tenancy};
pub use maintenance::{Maintenance, MaintenanceReport, REDISPATCH_AFTER};
pub use message::{RelayMessage, deliver_message, enqueue_dispatch};
pub use tenants::{IssuedLink, Tenants};
pub use webhooks::{AdminPolicy, DeliveryWithAttempts, TenantEvent, WebhookAdmin, WebhookState, modify_webhook};
