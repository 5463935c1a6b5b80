//! Bad input on every documented route (malformed ids, out-of-range or junk query parameters,
//! bodies that are not JSON, of the wrong shape or with unknown fields) gets a 4xx error
//! envelope, never a 5xx. The routes come from /openapi.json, so a new route is covered too.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{ACME_KEY, Receiver, SERVICE_TOKEN, TestApp};
use crate::pg;

const IDS: [&str; 4] =
    ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "%E2%82%AC%00", "0198f3c2-zzzz-7000-8000-000000000000"];
const QUERIES: [&str; 4] = [
    "",
    "?limit=-1&offset=abc",
    "?limit=100000&cursor=%%%&since=yesterday&until=soon",
    "?status=lost&eventType=Bad%20Type&format=xml&source=",
];
const BODIES: [&str; 7] = [
    "not json",
    "[]",
    "null",
    "{\"unexpected\": true}",
    "{\"name\": 5, \"url\": [], \"eventTypes\": \"job.created\", \"isActive\": \"yes\"}",
    "{\"eventType\": 1, \"eventName\": null, \"payload\": \"x\"}",
    "{\"since\": 12, \"secret\": false}",
];

async fn sweep(app: TestApp) {
    let receiver = Receiver::start().await;
    let (webhook, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event = app.send_event("job.created").await;
    let document: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut checked = 0;
    for (template, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut paths: Vec<String> =
                IDS.iter().map(|bad| template.replace("{id}", bad).replace("{event_id}", bad)).collect();
            paths.push(template.replace("{id}", &webhook).replace("{event_id}", "not-an-event"));
            paths.push(template.replace("{id}", "x".repeat(3000).as_str()).replace("{event_id}", &event));
            paths.sort();
            paths.dedup();
            let bodies: Vec<Option<&str>> = if method == Method::POST || method == Method::PUT {
                BODIES.iter().map(|b| Some(*b)).collect()
            } else {
                vec![None]
            };
            for path in &paths {
                for query in QUERIES {
                    for body in &bodies {
                        let url = format!("{}{path}{query}", app.base);
                        let mut request = app.http.request(method.clone(), &url);
                        request = if template.starts_with("/api/events") {
                            request.header("x-service-token", SERVICE_TOKEN)
                        } else {
                            request.header("x-api-key", ACME_KEY)
                        };
                        if let Some(body) = body {
                            request = request.header("content-type", "application/json").body(body.to_string());
                        }
                        let response = request.send().await.unwrap();
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        assert!(status.as_u16() < 500, "{method} {url} {body:?} -> {status}: {text}");
                        if status.is_client_error() {
                            let envelope: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
                                panic!("{method} {url} {body:?} -> {status} without an envelope: {text}")
                            });
                            assert_eq!(envelope["success"], false);
                            assert!(envelope["error"]["code"].is_string());
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 500, "only {checked} requests");
    app.stop().await;
}

#[tokio::test]
async fn no_route_answers_bad_input_with_a_server_error_in_memory() {
    sweep(TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "0")]).await).await;
}

#[tokio::test]
async fn no_route_answers_bad_input_with_a_server_error_on_postgres() {
    let Some(db) = pg::database().await else { return };
    sweep(TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "0"), ("DATABASE_URL", db.url())]).await).await;
    db.drop().await;
}
