//! Use cases, each over the narrow ports it needs: `Ingest` (accept events), `WebhookAdmin`
//! (manage webhooks, read the delivery log, retry by hand) and `Deliverer` (dispatch and deliver).

mod delivery;
mod ingest;
mod message;
mod webhooks;

pub use delivery::{Deliverer, Next};
pub use ingest::{Accepted, Ingest, IDEMPOTENCY_TTL};
pub use message::RelayMessage;
pub use webhooks::{DeliveryWithAttempts, WebhookAdmin};
