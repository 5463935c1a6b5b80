//! Who gets in: every route that takes an id, called with another tenant's key, answers 404
//! and changes nothing (the routes come from /openapi.json, so a new one is covered); and the
//! per-minute rate limit admits exactly its budget when the requests all arrive at once, in
//! memory and in Redis.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, GLOBEX_KEY, Receiver, TestApp};
use crate::redis_server;

#[tokio::test]
async fn every_id_route_hides_another_tenants_resources() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event = app.send_event("job.created").await;
    app.wait_for_delivery(&webhook, &event, "succeeded").await;
    let (_, before) = app.api(Method::GET, &format!("/api/webhooks/{webhook}"), ACME_KEY, None).await;

    let document: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut checked = Vec::new();
    for (template, item) in document["paths"].as_object().unwrap() {
        if !template.contains("{id}") || template.starts_with("/api/events") {
            continue; // events are the internal callers' (service tokens), not a tenant's
        }
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let path = template.replace("{id}", &webhook).replace("{event_id}", &event);
            // Valid bodies: the refusal must come from the tenant check, not from validation.
            let body = match method {
                Method::PUT => Some(json!({"isActive": false, "url": "https://example.com/stolen"})),
                Method::POST if template.ends_with("/recover") => Some(json!({"since": "2000-01-01T00:00:00Z"})),
                _ => None,
            };
            let (status, answer) = app.api(method.clone(), &path, GLOBEX_KEY, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "globex: {method} {path}: {answer}");
            assert_eq!(answer["error"]["code"], "not_found", "{method} {path}: {answer}");
            let text = answer.to_string();
            assert!(!text.contains(&secret) && !text.contains(&receiver.url()), "{method} {path} leaked: {text}");
            checked.push(format!("{method} {template}"));
        }
    }
    assert!(checked.len() >= 9, "too few id routes found: {checked:?}");

    let (status, after) = app.api(Method::GET, &format!("/api/webhooks/{webhook}"), ACME_KEY, None).await;
    assert_eq!(status, StatusCode::OK, "globex deleted acme's webhook");
    assert_eq!(after["data"], before["data"], "globex changed acme's webhook");
    let (_, revealed) = app.api(Method::GET, &format!("/api/webhooks/{webhook}/secret"), ACME_KEY, None).await;
    assert_eq!(revealed["data"]["secret"], secret.as_str(), "globex rotated acme's secret");
    let deliveries = app.deliveries(&webhook).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["attemptCount"], 1, "globex retried acme's delivery");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 1, "globex's calls reached acme's endpoint");
    app.stop().await;
}

/// Sends `n` requests at once with `key`; returns how many were answered 200 and 429.
async fn burst(app: &TestApp, key: &str, n: usize) -> (usize, usize) {
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..n {
        requests.spawn(app.http.get(app.url("/api/webhooks")).header("x-api-key", key).send());
    }
    let mut counts = (0, 0);
    while let Some(response) = requests.join_next().await {
        match response.unwrap().unwrap().status().as_u16() {
            200 => counts.0 += 1,
            429 => counts.1 += 1,
            other => panic!("unexpected {other}"),
        }
    }
    counts
}

async fn limit_holds_under_a_burst(vars: &[(&str, &str)]) {
    // The budget is per clock minute: start well inside one.
    let (_, left) = relay::adapters::memory::minute_window();
    if left < Duration::from_secs(10) {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
    let mut vars = vars.to_vec();
    vars.push(("RATE_LIMIT_PER_MINUTE", "25"));
    let app = TestApp::spawn_with(&vars).await;
    assert_eq!(burst(&app, ACME_KEY, 200).await, (25, 175), "exactly the budget gets through");
    assert_eq!(burst(&app, ACME_KEY, 20).await, (0, 20), "and nothing more this minute");
    assert_eq!(burst(&app, GLOBEX_KEY, 30).await, (25, 5), "another tenant has its own budget");
    app.stop().await;
}

#[tokio::test]
async fn the_rate_limit_admits_exactly_its_budget_under_concurrent_load_in_memory() {
    limit_holds_under_a_burst(&[]).await;
}

#[tokio::test]
async fn the_rate_limit_admits_exactly_its_budget_under_concurrent_load_in_redis() {
    // A Redis of its own: other tests count acme's requests in the shared one.
    let Some(redis) = redis_server::PrivateRedis::start().await else { return };
    limit_holds_under_a_burst(&[("REDIS_URL", &redis.url)]).await;
}
