//! webhook-relay's core: what the relay is, independent of where it runs.
//!
//! Internal services post events; the relay stores them, signs them and delivers them to the
//! webhooks tenants registered, retrying with backoff and logging every attempt. This crate
//! holds the rules; the adapter crates (`relay-memory`, `relay-aws`, `relay-postgres`,
//! `relay-redis`, `relay-sender`) implement its ports, `relay-http-api` and `relay-dashboard`
//! serve it, and each function composes what it runs. It depends on no AWS SDK, database,
//! cache, web framework or HTTP client (docs/architecture.md).
//!
//! # Layout
//! - [`domain`]: events, event types, webhooks, deliveries, attempts and paging, each value
//!   from outside behind a `parse` constructor.
//! - [`ports`]: the traits the use cases depend on (stores, queue, webhook sender, locks).
//! - [`app`]: the use cases: ingest, webhook administration, dispatch and delivery,
//!   maintenance, the dashboard's reads.
//! - [`worker`]: a batch of received queue messages in, the ids to retry out; and the poller
//!   that feeds it from a queue (relay-local).
//! - [`signing`]: `X-Relay-Signature` and the Standard Webhooks headers.
//! - [`sealing`]: webhook secrets sealed with AES-256-GCM wherever they are kept.
//! - [`backoff`]: the retry schedule and `Retry-After`.
//! - [`ssrf`]: which addresses a delivery may reach (the policy; `relay-sender` applies it).
//! - [`auth`]: service tokens and per-tenant API keys, compared in constant time.
//! - [`settings`]: reading typed settings from the environment, and the groups several
//!   functions share.
//! - [`metrics`]: process-wide counters and latency histograms (JSON, Prometheus text).
//! - [`telemetry`]: logging set-up for every binary, with the AWS SDK capped below `trace`.
//! - [`error`], [`time`]: the error type and millisecond timestamps.

pub mod app;
pub mod auth;
pub mod backoff;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod ports;
pub mod sealing;
pub mod settings;
pub mod signing;
pub mod ssrf;
pub mod telemetry;
pub mod time;
pub mod worker;

pub use error::{Error, FieldError, Result};
pub use time::Timestamp;
