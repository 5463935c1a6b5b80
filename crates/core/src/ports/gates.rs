//! Admission of deliveries, per webhook and per tenant: the circuit breaker, the caps on
//! deliveries in flight and the pace of a webhook's rate limit. Every worker asks the same
//! store (Redis on the AWS path, memory within one process), so the limits hold across
//! Lambda instances and relay-local's pollers alike.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{TenantId, WebhookId};
use crate::{Result, Timestamp};

/// A rate-limited delivery due within this long waits for its turn in the worker; one due
/// later is deferred (its message comes back), so no worker sleeps long.
pub const PACE_HORIZON: Duration = Duration::from_secs(1);

/// How long a delivery refused for a full cap (its webhook's or its tenant's) waits at first;
/// each further refusal of the same message doubles it, up to [`MAX_BUSY_DEFER`].
pub const BUSY_DEFER: Duration = Duration::from_millis(250);
pub const MAX_BUSY_DEFER: Duration = Duration::from_secs(60);

/// What a worker asks before an attempt at one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub webhook: WebhookId,
    pub tenant: TenantId,
    /// The webhook's cap on deliveries in flight (`maxInFlight`).
    pub max_in_flight: u32,
    /// The webhook's `rateLimit`, deliveries per second.
    pub rate_limit: Option<u32>,
}

/// The limits every admission applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatePolicy {
    /// `TENANT_MAX_IN_FLIGHT`: deliveries in flight per tenant, all its webhooks together.
    pub tenant_max_in_flight: u32,
    /// `CIRCUIT_FAILURE_THRESHOLD`: failed attempts in a row that open a webhook's breaker.
    pub failure_threshold: u32,
    /// `CIRCUIT_COOLDOWN`: how long an open breaker waits before one probe tries again.
    pub cooldown: Duration,
    /// How long a slot in flight (or the breaker's probe) is held if never released (a worker
    /// that died): longer than an attempt.
    pub lease: Duration,
}

/// Why a delivery waits without an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// Its webhook's breaker is open, or half-open with its probe out.
    CircuitOpen,
    /// Its webhook has `maxInFlight` deliveries in flight.
    WebhookBusy,
    /// Its tenant has `TENANT_MAX_IN_FLIGHT` deliveries in flight.
    TenantBusy,
    /// Its webhook's `rateLimit` has no turn free within [`PACE_HORIZON`].
    RateLimited,
    /// Its webhook is ordered and an event accepted before it is not delivered yet (its
    /// message reached the ordered lane later): it goes back behind that one. The deliverer
    /// says so, never the gates.
    OutOfTurn,
}

impl Deferral {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::WebhookBusy => "webhook_busy",
            Self::TenantBusy => "tenant_busy",
            Self::RateLimited => "rate_limited",
            Self::OutOfTurn => "out_of_turn",
        }
    }
}

/// Leave to attempt one delivery: a slot in flight for its webhook and tenant, held until
/// released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub webhook: WebhookId,
    pub tenant: TenantId,
    pub token: String,
    /// This attempt is the half-open breaker's probe.
    pub probe: bool,
    /// Wait this long before the attempt: the delivery's turn under its webhook's rate limit.
    pub wait: Duration,
}

/// The answer to one [`Ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Go(Lease),
    /// No attempt now: the message comes back after `after`, not counted as an attempt.
    Defer {
        after: Duration,
        reason: Deferral,
    },
}

/// A webhook's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    /// Deliveries go.
    Closed,
    /// Deliveries wait until `openUntil`.
    Open,
    /// The cool-down is over: the next delivery probes the receiver; a success closes it.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

/// What a webhook's breaker says now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Circuit {
    pub state: CircuitState,
    /// Failed attempts in a row.
    pub failures: u32,
    /// While open: when the cool-down ends.
    pub open_until: Option<Timestamp>,
}

impl Circuit {
    pub const CLOSED: Self = Self { state: CircuitState::Closed, failures: 0, open_until: None };
}

/// The admission store. Its semantics, which every implementation keeps (the contract tests
/// hold them to it):
///
/// - **Breaker.** Each failed attempt adds one to the webhook's run of failures, each success
///   resets it. At `failure_threshold` the breaker opens for `cooldown`: its deliveries are
///   deferred until then. After it, one delivery at a time is let through as a probe (the
///   others deferred by `cooldown`); the probe's success closes the breaker, its failure opens
///   it for another `cooldown`.
/// - **In flight.** A webhook holds at most its `max_in_flight` leases, a tenant at most
///   `tenant_max_in_flight`; a lease not released ends after `lease`.
/// - **Pace.** With a `rate_limit` of r, the webhook's attempts start at least 1/r s apart:
///   each admission takes the next free turn, and is deferred when that turn is more than
///   [`PACE_HORIZON`] away.
///
/// An ask refused for one reason takes nothing (no lease, no turn, no probe).
#[async_trait]
pub trait Gates: std::fmt::Debug + Send + Sync + 'static {
    /// One answer per ask, in order; asks of one webhook are answered in turn.
    async fn admit(&self, asks: &[Ask], policy: &GatePolicy) -> Result<Vec<Admission>>;
    /// Releases each lease and records its attempt in the webhook's breaker: `Some(true)`
    /// succeeded, `Some(false)` failed, `None` no attempt was made.
    async fn release(&self, done: &[(Lease, Option<bool>)], policy: &GatePolicy) -> Result<()>;
    /// Each webhook's breaker, in order.
    async fn circuits(&self, webhooks: &[WebhookId]) -> Result<Vec<Circuit>>;
}

/// The milliseconds since the Unix epoch, as both stores count time.
pub fn epoch_ms(at: Timestamp) -> u64 {
    u64::try_from(at.as_millis()).unwrap_or(0)
}
