//! `GET /health`: the process serves; each dependency with a probe (PostgreSQL, Redis) is
//! checked, and one that fails makes the answer `degraded`: still 200, since the relay keeps
//! delivering without them (without Redis: no cache, no locks; without PostgreSQL: deliveries
//! wait and retry).

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
    probes: Arc<Vec<Arc<dyn Probe>>>,
}

impl Health {
    pub fn new(probes: Vec<Arc<dyn Probe>>) -> Self {
        Self { probes: Arc::new(probes) }
    }
}

pub fn routes(health: Health) -> Router {
    Router::new().route("/health", get(check)).with_state(health)
}

async fn check(State(health): State<Health>) -> Response {
    let mut dependencies = Map::new();
    let mut degraded = false;
    for probe in health.probes.iter() {
        let started = Instant::now();
        let result = tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let entry = match result {
            Ok(Ok(())) => json!({ "status": "up", "latencyMs": latency_ms }),
            Ok(Err(err)) => {
                degraded = true;
                json!({ "status": "down", "latencyMs": latency_ms, "error": err.to_string() })
            }
            Err(_) => {
                degraded = true;
                json!({ "status": "down", "latencyMs": latency_ms, "error": "no answer in time" })
            }
        };
        dependencies.insert(probe.name().to_owned(), entry);
    }
    ok(
        StatusCode::OK,
        json!({
            "status": if degraded { "degraded" } else { "healthy" },
            "service": "webhook-relay",
            "version": env!("CARGO_PKG_VERSION"),
            "timestamp": Timestamp::now(),
            "dependencies": Value::Object(dependencies),
        }),
    )
}
