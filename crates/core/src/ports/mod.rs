//! Ports: the narrow interfaces the use cases depend on. Each has an in-memory
//! implementation (`adapters::memory`) and real ones (DynamoDB, SQS, PostgreSQL, HTTP).

mod coordination;
mod gates;
mod index;
mod queue;
mod sender;
mod stores;

pub use coordination::{Cache, Locks, Probe, RateDecision, RateLimiter, minute_window};
pub use gates::{
    Admission, Ask, BUSY_DEFER, Circuit, CircuitState, Deferral, GatePolicy, Gates, Lease, MAX_BUSY_DEFER,
    PACE_HORIZON, epoch_ms,
};
pub use index::{EventIndex, IndexedEvents};
pub use queue::{Queue, QueueDepth, ReceivedMessage};
pub use sender::{OutboundRequest, SendResult, WebhookSender};
pub use stores::{
    DeliveryLog, DeliveryStats, EventFilter, EventStore, IdempotencyRecord, Insert, Record, StatsScope, TenantStore,
    TimelineBucket, WebhookStore,
};
