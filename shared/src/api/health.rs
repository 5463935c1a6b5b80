//! `GET /health` (public) and `GET /api/dashboard/health` (X-Api-Key): every dependency is
//! checked with its latency. The event store and the queue are critical: one down makes the
//! relay `unhealthy` (503), since it cannot accept events. PostgreSQL and Redis are not: one
//! down makes it `degraded` (200), since it keeps working without them (without Redis: no
//! cache, no locks; without PostgreSQL: deliveries wait on the queue and retry).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::envelope::ok;
use crate::Timestamp;
use crate::ports::Probe;

/// A dependency that takes longer than this to answer counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default)]
pub struct Health {
    critical: Arc<Vec<Arc<dyn Probe>>>,
    optional: Arc<Vec<Arc<dyn Probe>>>,
}

/// One dependency's answer.
#[derive(Debug, Clone)]
pub struct DependencyReport {
    pub name: &'static str,
    pub up: bool,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// Every dependency's answer and what they add up to.
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: &'static str,
    pub dependencies: Vec<DependencyReport>,
}

impl Health {
    pub fn new(critical: Vec<Arc<dyn Probe>>, optional: Vec<Arc<dyn Probe>>) -> Self {
        Self { critical: Arc::new(critical), optional: Arc::new(optional) }
    }

    /// Checks every dependency, each within [`PROBE_TIMEOUT`].
    pub async fn run(&self) -> HealthReport {
        let mut dependencies = Vec::new();
        let mut degraded = false;
        let mut unhealthy = false;
        let probes = self.critical.iter().map(|p| (p, true)).chain(self.optional.iter().map(|p| (p, false)));
        for (probe, critical) in probes {
            let started = Instant::now();
            let result = tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await;
            let latency_ms = started.elapsed().as_millis() as u64;
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(_) => Some("no answer in time".to_owned()),
            };
            if error.is_some() {
                if critical { unhealthy = true } else { degraded = true }
            }
            dependencies.push(DependencyReport { name: probe.name(), up: error.is_none(), latency_ms, error });
        }
        let status = match (unhealthy, degraded) {
            (true, _) => "unhealthy",
            (false, true) => "degraded",
            (false, false) => "healthy",
        };
        HealthReport { status, dependencies }
    }
}

pub fn routes(health: Health) -> Router {
    Router::new().route("/health", get(check)).with_state(health)
}

/// The same report for the dashboard, behind an API key.
pub async fn report(health: &Health) -> Response {
    check(State(health.clone())).await
}

#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "healthy or degraded"), (status = 503, description = "unhealthy")))]
async fn check(State(health): State<Health>) -> Response {
    let report = health.run().await;
    let mut dependencies = Map::new();
    for dependency in report.dependencies {
        let entry = match dependency.error {
            None => json!({ "status": "up", "latencyMs": dependency.latency_ms }),
            Some(error) => json!({ "status": "down", "latencyMs": dependency.latency_ms, "error": error }),
        };
        dependencies.insert(dependency.name.to_owned(), entry);
    }
    let word = report.status;
    let status = if word == "unhealthy" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    ok(
        status,
        json!({
            "status": word,
            "service": "webhook-relay",
            "version": env!("CARGO_PKG_VERSION"),
            "timestamp": Timestamp::now(),
            "dependencies": Value::Object(dependencies),
        }),
    )
}

/// The event store answers a read.
#[derive(Debug)]
pub struct EventStoreProbe(pub Arc<dyn crate::ports::EventStore>);

#[async_trait::async_trait]
impl Probe for EventStoreProbe {
    fn name(&self) -> &'static str {
        "eventStore"
    }

    async fn check(&self) -> crate::Result<()> {
        self.0.get(crate::domain::EventId::first_at(Timestamp::from_millis(0))).await.map(drop)
    }
}

/// The queue answers a depth request.
#[derive(Debug)]
pub struct QueueProbe(pub Arc<dyn crate::ports::Queue>);

#[async_trait::async_trait]
impl Probe for QueueProbe {
    fn name(&self) -> &'static str {
        "queue"
    }

    async fn check(&self) -> crate::Result<()> {
        self.0.depth().await.map(drop)
    }
}
