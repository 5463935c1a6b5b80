//! The routers as relay-ingest and relay-api serve them: real API Gateway HTTP API (payload
//! v2) proxy events turned into requests by `lambda_http`. The functions sit behind an HTTP
//! API's `$default` stage; behind a REST API, `lambda_http` puts the stage in the path unless
//! the function sets `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true`.

use axum::body::to_bytes;
use relay_local::{Backends, Relay};
use serde_json::Value;
use tower::ServiceExt;

use crate::helpers::{ACME_KEY, SERVICE_TOKEN, test_config};

fn request(fixture: &str, replacements: &[(&str, &str)]) -> lambda_http::Request {
    let mut json = fixture.to_owned();
    for (from, to) in replacements {
        json = json.replace(from, to);
    }
    lambda_http::request::from_str(&json).expect("an API Gateway event")
}

async fn call(app: axum::Router, request: lambda_http::Request) -> (u16, Value, axum::http::HeaderMap) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap(), headers)
}

fn relay() -> Relay {
    let config = test_config(&[]);
    Relay::new(&config, Backends::in_memory(config.memory)).unwrap()
}

#[tokio::test]
async fn ingest_accepts_an_http_api_event() {
    let relay = relay();
    let fixture = include_str!("fixtures/apigw_http_post_event.json");
    let (status, body, _) = call(
        relay_lambda_http::edge(relay_http_api::ingest_app(relay.events_state(), relay.common())),
        request(fixture, &[("SERVICE_TOKEN", SERVICE_TOKEN)]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["eventType"], "candidate.created");
    assert_eq!(body["data"]["payload"]["candidateId"], "123");

    let (status, body, headers) = call(
        relay_lambda_http::edge(relay_http_api::ingest_app(relay.events_state(), relay.common())),
        request(fixture, &[("SERVICE_TOKEN", SERVICE_TOKEN)]),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(headers["idempotent-replayed"], "true", "{body}");

    let (status, body, _) = call(
        relay_lambda_http::edge(relay_http_api::ingest_app(relay.events_state(), relay.common())),
        request(fixture, &[("SERVICE_TOKEN", "wrong-token-wrong")]),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");

    // relay-ingest serves only the events API.
    let fixture = include_str!("fixtures/apigw_http_get_webhooks.json");
    let (status, _, _) = call(
        relay_lambda_http::edge(relay_http_api::ingest_app(relay.events_state(), relay.common())),
        request(fixture, &[("API_KEY", ACME_KEY)]),
    )
    .await;
    assert_eq!(status, 404);
}

/// On AWS the events' reads and lists are relay-api's (beside the event index in PostgreSQL);
/// relay-ingest, which cannot reach the index, only accepts events.
#[tokio::test]
async fn event_lists_are_served_by_the_management_app_not_by_ingest() {
    let relay = relay();
    let posted = include_str!("fixtures/apigw_http_post_event.json");
    let (status, body, _) = call(
        relay_lambda_http::edge(relay_http_api::ingest_app(relay.events_state(), relay.common())),
        request(posted, &[("SERVICE_TOKEN", SERVICE_TOKEN)]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let list = include_str!("fixtures/apigw_http_get_webhooks.json")
        .replace("\"/api/webhooks\"", "\"/api/events\"")
        .replace("\"x-api-key\": \"API_KEY\"", "\"x-service-token\": \"SERVICE_TOKEN\"");
    let (status, _, _) = call(
        relay_lambda_http::edge(relay_http_api::ingest_app(relay.events_state(), relay.common())),
        request(&list, &[("SERVICE_TOKEN", SERVICE_TOKEN)]),
    )
    .await;
    assert_eq!(status, 405, "relay-ingest answers only POST /api/events");
    let management = relay_http_api::management_app(
        relay.management_state(),
        relay.events_state(),
        relay.dashboard_routes(),
        relay.common(),
    );
    let (status, body, _) =
        call(relay_lambda_http::edge(management), request(&list, &[("SERVICE_TOKEN", SERVICE_TOKEN)])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["eventType"], "candidate.created", "{body}");
}

#[tokio::test]
async fn management_lists_webhooks_from_an_http_api_event() {
    let relay = relay();
    let fixture = include_str!("fixtures/apigw_http_get_webhooks.json");
    let (status, body, _) = call(
        relay_lambda_http::edge(relay_http_api::management_app(
            relay.management_state(),
            relay.events_state(),
            relay.dashboard_routes(),
            relay.common(),
        )),
        request(fixture, &[("API_KEY", ACME_KEY)]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], serde_json::json!([]));
    assert_eq!(body["pagination"]["limit"], 5, "query string parameters reach the router");

    let (status, _, _) = call(
        relay_lambda_http::edge(relay_http_api::management_app(
            relay.management_state(),
            relay.events_state(),
            relay.dashboard_routes(),
            relay.common(),
        )),
        request(fixture, &[("API_KEY", "not-a-key-of-anyone")]),
    )
    .await;
    assert_eq!(status, 401);
}
