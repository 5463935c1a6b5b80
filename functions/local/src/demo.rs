//! The demo relay-local runs on start: a receiver it hosts itself is registered as a webhook
//! through the API, an event is posted through the API, and the signed delivery is shown
//! arriving and verified both ways. The receiver stays up, so every later event a newcomer
//! posts is shown arriving too.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use relay_core::Timestamp;
use relay_core::domain::{EventTypeRegistry, WebhookSecret};
use relay_core::signing::{verify_relay, verify_standard};

#[derive(Debug, thiserror::Error)]
#[error("demo failed: {0}")]
pub struct DemoError(String);

/// What the demo saw.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub webhook_id: String,
    pub event_id: String,
    pub receiver_url: String,
    pub latency: Duration,
    pub standard_signature_ok: bool,
    pub relay_signature_ok: bool,
}

#[derive(Debug, Clone)]
struct Received {
    webhook_id: String,
    standard_ok: bool,
    relay_ok: bool,
}

#[derive(Clone)]
struct Receiver {
    secret: Arc<Mutex<Option<WebhookSecret>>>,
    seen: mpsc::UnboundedSender<Received>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let secret = receiver.secret.lock().map(|s| s.clone()).unwrap_or_default();
    let Some(secret) = secret else { return StatusCode::SERVICE_UNAVAILABLE };
    let webhook_id = header("webhook-id");
    let standard_ok = verify_standard(
        &secret,
        &webhook_id,
        &header("webhook-timestamp"),
        &body,
        &header("webhook-signature"),
        Timestamp::now().as_secs(),
        300,
    );
    let relay_ok = verify_relay(&secret, &body, &header("x-relay-signature"));
    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
    tracing::info!(
        target: "demo",
        event_id = %webhook_id,
        event_type = event["eventType"].as_str().unwrap_or_default(),
        webhook_signature = if standard_ok { "verified" } else { "INVALID" },
        x_relay_signature = if relay_ok { "verified" } else { "INVALID" },
        body = %String::from_utf8_lossy(&body),
        "demo receiver got a delivery"
    );
    let _ = receiver.seen.send(Received { webhook_id, standard_ok, relay_ok });
    if standard_ok && relay_ok { StatusCode::NO_CONTENT } else { StatusCode::UNAUTHORIZED }
}

fn fail(context: &str, err: impl std::fmt::Display) -> DemoError {
    DemoError(format!("{context}: {err}"))
}

async fn call(request: reqwest::RequestBuilder, context: &str) -> Result<Value, DemoError> {
    let response = request.send().await.map_err(|e| fail(context, e))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| fail(context, e))?;
    if !status.is_success() {
        return Err(fail(context, format!("HTTP {status}: {body}")));
    }
    Ok(body)
}

/// Runs the demo against the relay at `relay_url`, waiting up to `wait` for the delivery.
pub async fn run(
    relay_url: &str,
    service_token: &str,
    api_key: &str,
    event_types: &EventTypeRegistry,
    wait: Duration,
) -> Result<DemoReport, DemoError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| fail("starting the demo receiver", e))?;
    let receiver_url =
        format!("http://{}/demo-receiver", listener.local_addr().map_err(|e| fail("receiver address", e))?);
    let (seen, mut deliveries) = mpsc::unbounded_channel();
    let receiver = Receiver { secret: Arc::default(), seen };
    let app = Router::new().route("/demo-receiver", post(receive)).with_state(receiver.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let client = reqwest::Client::builder().no_proxy().build().map_err(|e| fail("HTTP client", e))?;
    let types: Vec<&str> = event_types.iter().map(|t| t.as_str()).collect();
    let created = call(
        client.post(format!("{relay_url}/api/webhooks")).header("x-api-key", api_key).json(&json!({
            "name": "relay-local demo receiver",
            "url": receiver_url,
            "eventTypes": types,
        })),
        "registering the demo webhook",
    )
    .await?;
    let webhook_id = created["data"]["id"].as_str().unwrap_or_default().to_owned();
    let secret = WebhookSecret::parse(created["data"]["secret"].as_str().unwrap_or_default())
        .map_err(|e| fail("reading the webhook secret", e))?;
    if let Ok(mut slot) = receiver.secret.lock() {
        *slot = Some(secret);
    }

    let event_type = types.iter().find(|t| **t == "candidate.created").or(types.first()).copied().unwrap_or_default();
    let started = Instant::now();
    let accepted = call(
        client.post(format!("{relay_url}/api/events")).header("x-service-token", service_token).json(&json!({
            "eventType": event_type,
            "eventName": "relay-local demo event",
            "payload": { "message": "hello from relay-local", "candidateId": "demo-1" },
            "source": "relay-local-demo",
        })),
        "posting the demo event",
    )
    .await?;
    let event_id = accepted["data"]["eventId"].as_str().unwrap_or_default().to_owned();

    let arrived = tokio::time::timeout(wait, async {
        while let Some(received) = deliveries.recv().await {
            if received.webhook_id == event_id {
                return Some(received);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| DemoError(format!("no delivery of event {event_id} arrived within {wait:?}")))?;
    Ok(DemoReport {
        webhook_id,
        event_id,
        receiver_url,
        latency: started.elapsed(),
        standard_signature_ok: arrived.standard_ok,
        relay_signature_ok: arrived.relay_ok,
    })
}
