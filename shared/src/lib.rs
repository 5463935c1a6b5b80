//! webhook-relay's core: everything but the thin `main`s of the functions.
//!
//! Internal services post events; the relay stores them, signs them and delivers them to the
//! webhooks external systems registered, retrying with backoff and logging every attempt.
//!
//! # Layout
//! - [`domain`]: events, event types, webhooks, deliveries, attempts and paging, each value
//!   from outside behind a `parse` constructor.
//! - [`signing`]: `X-Relay-Signature` and the Standard Webhooks headers.
//! - [`sealing`]: webhook secrets sealed with AES-256-GCM wherever they are kept.
//! - [`backoff`]: the retry schedule and `Retry-After`.
//! - [`config`]: the one typed configuration, read from the environment.
//! - [`auth`]: service tokens and per-tenant API keys, compared in constant time.
//! - [`ports`]: the traits the use cases depend on (stores, queue, webhook sender).
//! - [`adapters`]: their implementations (`memory`, `http` with the SSRF guard).
//! - [`app`]: the use cases: ingest, webhook administration, dispatch and delivery.
//! - [`worker`]: the SQS batch handler and relay-local's poller.
//! - [`api`]: the axum routers and the error envelope.
//! - [`runtime`]: building backends and use cases from the configuration, once per process.
//! - [`local`]: the whole relay in one process (relay-local), its demo and AWS bootstrap.
//! - [`telemetry`]: logging set-up for every binary, with the AWS SDK capped below `trace`.
//! - [`web`]: the operators' dashboard (server-rendered HTML, session cookies, CSRF).
//! - [`metrics`]: process-wide counters and latency histograms (JSON, Prometheus text).
//! - [`error`], [`time`]: the error type and millisecond timestamps.

pub mod adapters;
pub mod api;
pub mod app;
pub mod auth;
pub mod backoff;
pub mod config;
pub mod domain;
pub mod error;
pub mod local;
pub mod metrics;
pub mod ports;
pub mod runtime;
pub mod sealing;
pub mod signing;
pub mod telemetry;
pub mod time;
pub mod web;
pub mod worker;

pub use error::{Error, FieldError, Result};
pub use time::Timestamp;
