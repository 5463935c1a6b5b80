//! `GET /health` and the dependency report behind it. The event store and the queue are
//! critical: one down makes the relay `unhealthy` (503), since it cannot accept events.
//! PostgreSQL and Redis are not: one down makes it `degraded` (200), since it keeps working
//! without them (without Redis: no cache, no locks; without PostgreSQL: deliveries wait on the
//! queue and retry).
//!
//! The report is computed at most once per [`MAX_AGE`] and shared: a flood of `/health`
//! requests costs one probe of each dependency per interval, not one per request. Without
//! credentials `/health` says only `up`, `degraded` or `down` per dependency; latencies and the
//! dependencies' own error messages are for operators (a valid `X-Service-Token`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::envelope::ok;
use super::extract::{Access, SERVICE_TOKEN};
use crate::ApiError;
use relay_core::Timestamp;
use relay_core::ports::Probe;

/// A dependency that takes longer than this to answer counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A dependency that answers, but slower than this, counts as degraded.
const SLOW: Duration = Duration::from_millis(500);
/// How old a report may be when it is served.
pub const MAX_AGE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default)]
pub struct Health {
    critical: Arc<Vec<Arc<dyn Probe>>>,
    optional: Arc<Vec<Arc<dyn Probe>>>,
    /// The last report and when it was made.
    last: Arc<Mutex<Option<(Instant, HealthReport)>>>,
    /// Held while a report is being made, so concurrent callers wait for it instead of probing.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

/// How one dependency is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyStatus {
    Up,
    /// Answered, but slower than 500 ms.
    Degraded,
    Down,
}

impl DependencyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

/// One dependency's answer.
#[derive(Debug, Clone)]
pub struct DependencyReport {
    pub name: &'static str,
    pub status: DependencyStatus,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// Every dependency's answer and what they add up to.
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: &'static str,
    pub dependencies: Vec<DependencyReport>,
    /// When the dependencies were checked.
    pub checked_at: Timestamp,
}

impl Health {
    pub fn new(critical: Vec<Arc<dyn Probe>>, optional: Vec<Arc<dyn Probe>>) -> Self {
        Self { critical: Arc::new(critical), optional: Arc::new(optional), ..Self::default() }
    }

    /// The event store and the queue, which the relay cannot take events without, and
    /// `optional` dependencies (the delivery log, Redis) that only degrade it.
    pub fn of(
        events: Arc<dyn relay_core::ports::EventStore>,
        queue: Arc<dyn relay_core::ports::Queue>,
        optional: Vec<Arc<dyn Probe>>,
    ) -> Self {
        Self::new(vec![Arc::new(EventStoreProbe(events)), Arc::new(QueueProbe(queue))], optional)
    }

    /// The latest report, checking the dependencies again only when it is older than
    /// [`MAX_AGE`]; one caller checks while the others wait for its result.
    pub async fn report(&self) -> HealthReport {
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let _refreshing = self.refreshing.lock().await;
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let report = self.run().await;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), report.clone()));
        report
    }

    fn fresh(&self) -> Option<HealthReport> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref().filter(|(at, _)| at.elapsed() < MAX_AGE).map(|(_, report)| report.clone())
    }

    /// Checks every dependency now, all at once, each within [`PROBE_TIMEOUT`].
    async fn run(&self) -> HealthReport {
        let checked_at = Timestamp::now();
        let probes: Vec<(&Arc<dyn Probe>, bool)> =
            self.critical.iter().map(|p| (p, true)).chain(self.optional.iter().map(|p| (p, false))).collect();
        let checks = probes.iter().map(|(probe, _)| async move {
            let started = Instant::now();
            let result = tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await;
            let elapsed = started.elapsed();
            let (status, error) = match result {
                Ok(Ok(())) if elapsed > SLOW => (DependencyStatus::Degraded, None),
                Ok(Ok(())) => (DependencyStatus::Up, None),
                Ok(Err(err)) => (DependencyStatus::Down, Some(err.to_string())),
                Err(_) => (DependencyStatus::Down, Some("no answer in time".to_owned())),
            };
            DependencyReport { name: probe.name(), status, latency_ms: elapsed.as_millis() as u64, error }
        });
        let dependencies = futures_util::future::join_all(checks).await;
        let unhealthy =
            probes.iter().zip(&dependencies).any(|((_, critical), d)| *critical && d.status == DependencyStatus::Down);
        let degraded = dependencies.iter().any(|d| d.status != DependencyStatus::Up);
        let status = match (unhealthy, degraded) {
            (true, _) => "unhealthy",
            (false, true) => "degraded",
            (false, false) => "healthy",
        };
        HealthReport { status, dependencies, checked_at }
    }
}

/// What `/health` needs: the report, and the credentials that unlock its details.
#[derive(Debug, Clone)]
pub struct HealthState {
    pub health: Health,
    pub access: Option<Access>,
}

pub fn routes(state: HealthState) -> Router {
    Router::new().route("/health", get(check)).with_state(state)
}

/// How much of the report a caller sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Anyone: each dependency's status.
    Status,
    /// Tenants (`/api/dashboard/health`): and its latency.
    Latency,
    /// Operators (`X-Service-Token`): and the dependency's own error message.
    Full,
}

/// How much of the report the caller may see: the details with a valid service token, the
/// statuses without one. A wrong token counts as a failed credential of the client address,
/// as on any route (429 once it is over its limit), and otherwise gets the public report.
async fn detail_for(parts: &Parts, access: Option<&Access>) -> Result<Detail, relay_core::Error> {
    let (Some(token), Some(access)) = (parts.headers.get(SERVICE_TOKEN).and_then(|v| v.to_str().ok()), access) else {
        return Ok(Detail::Status);
    };
    let known = access.directory.service(token).then_some(Detail::Full);
    match access
        .verify(super::extract::client_ip(parts), known, relay_core::Error::Unauthorized("invalid service token"))
        .await
    {
        Err(relay_core::Error::Unauthorized(_)) => Ok(Detail::Status),
        checked => checked,
    }
}

#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "healthy or degraded: each dependency up, degraded or down (latency and errors with a valid X-Service-Token)"), (status = 503, description = "unhealthy"), (status = 429, description = "too many failed credentials from this address")))]
async fn check(State(state): State<HealthState>, request: axum::extract::Request) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let detail = detail_for(&parts, state.access.as_ref()).await?;
    Ok(respond(&state.health.report().await, detail))
}

/// The report as the API answers it, with as much detail as the caller may see.
pub fn respond(report: &HealthReport, detail: Detail) -> Response {
    let mut dependencies = Map::new();
    for dependency in &report.dependencies {
        let mut entry = Map::new();
        entry.insert("status".into(), json!(dependency.status.as_str()));
        if detail != Detail::Status {
            entry.insert("latencyMs".into(), json!(dependency.latency_ms));
        }
        if let (Detail::Full, Some(error)) = (detail, &dependency.error) {
            entry.insert("error".into(), json!(error));
        }
        dependencies.insert(dependency.name.to_owned(), Value::Object(entry));
    }
    let word = report.status;
    let status = if word == "unhealthy" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    ok(
        status,
        json!({
            "status": word,
            "service": "webhook-relay",
            "version": env!("CARGO_PKG_VERSION"),
            "timestamp": report.checked_at,
            "dependencies": Value::Object(dependencies),
        }),
    )
}

/// The event store answers a read.
#[derive(Debug)]
pub struct EventStoreProbe(pub Arc<dyn relay_core::ports::EventStore>);

#[async_trait::async_trait]
impl Probe for EventStoreProbe {
    fn name(&self) -> &'static str {
        "eventStore"
    }

    async fn check(&self) -> relay_core::Result<()> {
        self.0.get(relay_core::domain::EventId::first_at(Timestamp::from_millis(0))).await.map(drop)
    }
}

/// The queue answers a depth request.
#[derive(Debug)]
pub struct QueueProbe(pub Arc<dyn relay_core::ports::Queue>);

#[async_trait::async_trait]
impl Probe for QueueProbe {
    fn name(&self) -> &'static str {
        "queue"
    }

    async fn check(&self) -> relay_core::Result<()> {
        self.0.depth().await.map(drop)
    }
}
