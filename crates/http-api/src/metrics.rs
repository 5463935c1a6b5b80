//! Metrics, for two audiences.
//!
//! - `GET /api/metrics` (operators, `X-Service-Token`): this process's counters and latency
//!   histograms, and the depth of the queues every tenant shares.
//! - `GET /api/dashboard/metrics` (a tenant, `X-Api-Key`): the tenant's own numbers over the
//!   last 24 hours, from the delivery log: deliveries by status, attempts, success rate,
//!   latency and webhooks. Nothing in it counts another tenant's traffic.
//!
//! Both answer JSON, or the Prometheus text format with `?format=prometheus` or
//! `Accept: text/plain`.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::envelope::ok;
use super::extract::{Params, ServiceCaller, TenantCaller};
use super::webhooks::ManagementState;
use crate::ApiError;
use relay_core::Error;
use relay_core::app::{Depth, Queues, WebhookCounts};
use relay_core::ports::DeliveryStats;

/// Whether the caller asked for the Prometheus text format.
fn wants_text(params: &Params, headers: &HeaderMap) -> Result<bool, Error> {
    match params.get("format") {
        Some("prometheus") => Ok(true),
        Some("json") => Ok(false),
        Some(_) => Err(Error::validation("format", "must be json or prometheus")),
        None => Ok(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/plain"))),
    }
}

fn text(body: String) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

#[utoipa::path(get, path = "/api/metrics", tag = "operations", security(("serviceToken" = [])), params(("format" = Option<String>, Query, description = "json (default) or prometheus; Accept: text/plain also selects prometheus")), responses((status = 200, description = "this process's counters and latency histograms, and the shared queues' depth"), (status = 422, description = "unknown format"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
pub async fn operator(
    State(state): State<ManagementState>,
    _caller: ServiceCaller,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let as_text = wants_text(&params, &headers)?;
    let metrics = relay_core::metrics::global();
    let queues = state.dashboard.queues().await;
    if !as_text {
        let mut body = metrics.to_json();
        body["queues"] = json!(queues);
        return Ok(ok(StatusCode::OK, body));
    }
    let mut body = metrics.to_prometheus();
    queue_gauges(&mut body, &queues);
    Ok(text(body))
}

/// `relay_queue_messages{queue, state}`: gauges of the shared queues that answered.
fn queue_gauges(out: &mut String, queues: &Queues) {
    let _ = writeln!(out, "# TYPE relay_queue_messages gauge");
    let lanes =
        [("relay", queues.queue), ("delivery", queues.delivery_queue), ("dead-letter", queues.dead_letter_queue)];
    for (queue, depth) in lanes {
        let Some(Depth { visible, in_flight, delayed }) = depth else { continue };
        for (state, value) in [("visible", visible), ("in_flight", in_flight), ("delayed", delayed)] {
            let _ = writeln!(out, "relay_queue_messages{{queue=\"{queue}\",state=\"{state}\"}} {value}");
        }
    }
}

#[utoipa::path(get, path = "/api/dashboard/metrics", tag = "dashboard", security(("apiKey" = [])), params(("format" = Option<String>, Query, description = "json (default) or prometheus; Accept: text/plain also selects prometheus")), responses((status = 200, description = "the tenant's own deliveries, attempts, success rate, latency and webhooks over the last 24 hours"), (status = 422, description = "unknown format"), (status = 401, description = "missing or unknown credential"), (status = 403, description = "credential of the wrong kind"), (status = 429, description = "rate limited")))]
pub async fn tenant(
    State(state): State<ManagementState>,
    TenantCaller(tenant): TenantCaller,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let as_text = wants_text(&params, &headers)?;
    let (day, webhooks) = state.dashboard.last_day(&tenant).await?;
    if as_text {
        return Ok(text(tenant_text(&day, webhooks)));
    }
    Ok(ok(
        StatusCode::OK,
        json!({
            "tenant": tenant,
            "window": "24h",
            "deliveries": {
                "pending": day.pending, "retrying": day.retrying, "succeeded": day.succeeded, "failed": day.failed,
            },
            "events": day.events,
            "attempts": day.attempts,
            "successRate": day.success_rate,
            "avgLatencyMs": day.avg_latency_ms,
            "p95LatencyMs": day.p95_latency_ms,
            "webhooks": webhooks,
            "generatedAt": relay_core::Timestamp::now(),
        }),
    ))
}

/// The tenant's numbers as Prometheus gauges over the last 24 hours.
fn tenant_text(day: &DeliveryStats, webhooks: WebhookCounts) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, rows: &[(&str, Option<f64>)]| {
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in rows {
            if let Some(value) = value {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        }
    };
    let n = |v: u64| Some(v as f64);
    gauge(
        "relay_tenant_deliveries_24h",
        &[
            ("{status=\"pending\"}", n(day.pending)),
            ("{status=\"retrying\"}", n(day.retrying)),
            ("{status=\"succeeded\"}", n(day.succeeded)),
            ("{status=\"failed\"}", n(day.failed)),
        ],
    );
    gauge("relay_tenant_events_24h", &[("", n(day.events))]);
    gauge("relay_tenant_delivery_attempts_24h", &[("", n(day.attempts))]);
    gauge("relay_tenant_delivery_success_ratio_24h", &[("", day.success_rate)]);
    gauge(
        "relay_tenant_delivery_latency_ms_24h",
        &[("{stat=\"avg\"}", day.avg_latency_ms), ("{stat=\"p95\"}", day.p95_latency_ms)],
    );
    gauge(
        "relay_tenant_webhooks",
        &[("{state=\"active\"}", n(webhooks.active)), ("{state=\"disabled\"}", n(webhooks.disabled))],
    );
    out
}
