//! Who gets in: every route that takes an id, called with another tenant's key, answers 404
//! and changes nothing (the routes come from /openapi.json, so a new one is covered); the
//! per-minute rate limit admits exactly its budget when the requests all arrive at once, in
//! memory and in Redis, and the dashboard counts against it; failed credentials are limited
//! per client address (the TCP peer, or API Gateway's source address in Lambda).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, GLOBEX_KEY, Receiver, SERVICE_TOKEN, TestApp, test_config};
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
        if !template.contains("{id}") || template.starts_with("/api/events") || template.starts_with("/api/tenants") {
            // Events and tenants are the internal callers' (service tokens), not a tenant's: an
            // API key there is 403 (`tenants::tenant_rules_and_limits`).
            continue;
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
    fresh_minute(Duration::from_secs(10)).await;
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

/// Starts inside a clock minute with `room` left at least: the limits count per minute.
async fn fresh_minute(room: Duration) {
    let (_, left) = relay_core::ports::minute_window();
    if left < room {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}

/// A client whose connections come from `source` (any 127.x address reaches the relay on
/// 127.0.0.1), so that one test can be two client addresses.
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder().no_proxy().local_address(source.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}

async fn status_with(client: &reqwest::Client, app: &TestApp, path: &str, header: (&str, &str)) -> reqwest::Response {
    client.get(app.url(path)).header(header.0, header.1).send().await.unwrap()
}

/// Failed credentials are counted per client address: past the limit the address gets 429
/// with `Retry-After` for whatever it sends, its right key included, until the minute ends;
/// another address is not affected. Wrong API keys, wrong service tokens (on `/health` too) and
/// failed dashboard sign-ins all count.
async fn failed_credentials_are_limited_per_address(vars: &[(&str, &str)]) {
    fresh_minute(Duration::from_secs(15)).await;
    let mut vars = vars.to_vec();
    vars.push(("AUTH_FAILURE_LIMIT_PER_MINUTE", "4"));
    let app = TestApp::spawn_with(&vars).await;
    let attacker = client_from("127.0.0.7");
    let bystander = client_from("127.0.0.8");
    let wrong = |n: usize| format!("wrong-key-{n:012}");
    assert_eq!(status_with(&attacker, &app, "/api/webhooks", ("x-api-key", &wrong(0))).await.status(), 401);
    // `/health` answers anyone, but a wrong operator token there is a failed credential too.
    let public = status_with(&attacker, &app, "/health", ("x-service-token", &wrong(1))).await;
    assert_eq!(public.status(), 200);
    let public: serde_json::Value = public.json().await.unwrap();
    assert!(public["data"]["dependencies"]["eventStore"].get("latencyMs").is_none(), "no details for a wrong token");
    assert_eq!(status_with(&attacker, &app, "/api/events", ("x-service-token", &wrong(2))).await.status(), 401);
    let sign_in = attacker
        .post(app.url("/dashboard/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("api_key=not-the-key-0000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), 401, "the fourth failure is still answered");

    let refused = status_with(&attacker, &app, "/api/webhooks", ("x-api-key", &wrong(5))).await;
    assert_eq!(refused.status(), 429, "the fifth failure from the address");
    let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    for (path, header) in [
        ("/api/webhooks", ("x-api-key", ACME_KEY)),
        ("/api/events", ("x-service-token", SERVICE_TOKEN)),
        ("/health", ("x-service-token", SERVICE_TOKEN)),
    ] {
        let response = status_with(&attacker, &app, path, header).await;
        assert_eq!(response.status(), 429, "a right credential from the address: {path}");
        assert!(response.headers().contains_key("retry-after"));
    }
    let page = attacker
        .post(app.url("/dashboard/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("api_key={ACME_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 429, "signing in from the address");
    assert!(page.headers().contains_key("retry-after"));

    assert_eq!(status_with(&bystander, &app, "/api/webhooks", ("x-api-key", ACME_KEY)).await.status(), 200);
    assert_eq!(status_with(&bystander, &app, "/api/webhooks", ("x-api-key", &wrong(9))).await.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn failed_credentials_are_limited_per_client_address_in_memory() {
    failed_credentials_are_limited_per_address(&[]).await;
}

#[tokio::test]
async fn failed_credentials_are_limited_per_client_address_in_redis() {
    let Some(redis) = redis_server::PrivateRedis::start().await else { return };
    failed_credentials_are_limited_per_address(&[("REDIS_URL", &redis.url)]).await;
}

/// With Redis, the count of failures is shared: failures spread over two processes add up.
#[tokio::test]
async fn failed_credentials_add_up_across_processes_through_redis() {
    let Some(redis) = redis_server::PrivateRedis::start().await else { return };
    fresh_minute(Duration::from_secs(15)).await;
    let vars = [("REDIS_URL", redis.url.as_str()), ("AUTH_FAILURE_LIMIT_PER_MINUTE", "4")];
    let (one, two) = (TestApp::spawn_with(&vars).await, TestApp::spawn_with(&vars).await);
    let attacker = client_from("127.0.0.9");
    for app in [&one, &two, &one, &two] {
        assert_eq!(
            status_with(&attacker, app, "/api/webhooks", ("x-api-key", "wrong-key-000000000000")).await.status(),
            401
        );
    }
    assert_eq!(
        status_with(&attacker, &two, "/api/webhooks", ("x-api-key", "wrong-key-000000000000")).await.status(),
        429
    );
    assert_eq!(
        status_with(&attacker, &one, "/api/webhooks", ("x-api-key", "wrong-key-000000000001")).await.status(),
        429
    );
    one.stop().await;
    two.stop().await;
}

/// In Lambda the client address is the one API Gateway reports (`requestContext.http.sourceIp`),
/// not a forwarding header the client could write.
#[tokio::test]
async fn in_lambda_failures_are_counted_per_api_gateway_source_address() {
    use axum::body::to_bytes;
    use tower::ServiceExt;

    fresh_minute(Duration::from_secs(15)).await;
    let config = test_config(&[("AUTH_FAILURE_LIMIT_PER_MINUTE", "2")]);
    let relay = relay_local::Relay::new(&config, relay_local::Backends::in_memory(config.memory)).unwrap();
    let app = relay_lambda_http::edge(relay_http_api::management_app(
        relay.management_state(),
        relay.events_state(),
        relay.dashboard_routes(),
        relay.common(),
    ));
    let fixture = include_str!("fixtures/apigw_http_get_webhooks.json");
    let call = |key: &str, source: &str, forwarded: &str| {
        let json = fixture
            .replace("API_KEY", key)
            .replace("203.0.113.7", source)
            .replace("\"host\"", &format!("\"x-forwarded-for\": \"{forwarded}\", \"host\""));
        let request = lambda_http::request::from_str(&json).expect("an API Gateway event");
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let _ = to_bytes(response.into_body(), 1 << 20).await;
            status
        }
    };
    for n in 0..2 {
        // A forwarding header that changes every time does not make the caller someone else.
        assert_eq!(call("wrong-key-000000000000", "203.0.113.7", &format!("10.0.0.{n}")).await, 401);
    }
    assert_eq!(call("wrong-key-000000000000", "203.0.113.7", "10.0.0.9").await, 429);
    assert_eq!(call(ACME_KEY, "203.0.113.7", "10.0.0.9").await, 429, "the address is refused whatever it sends");
    assert_eq!(call(ACME_KEY, "198.51.100.4", "203.0.113.7").await, 200, "another address is not");
}

/// The dashboard counts against its tenant's limit like the API: pages, forms and the API
/// share one budget per tenant per minute.
#[tokio::test]
async fn dashboard_pages_count_against_the_tenants_limit() {
    fresh_minute(Duration::from_secs(15)).await;
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "6")]).await;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    let signed_in = browser
        .post(app.url("/dashboard/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("api_key={ACME_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303, "sign-in: 1 of 6");
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    for page in ["/dashboard", "/dashboard/webhooks", "/dashboard/events"] {
        let response = browser.get(app.url(page)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(response.status(), 200, "{page}");
    }
    let (status, _) = app.api(reqwest::Method::GET, "/api/webhooks", ACME_KEY, None).await;
    assert_eq!(status, 200, "the API: 5 of 6");
    assert_eq!(
        browser.get(app.url("/dashboard/webhooks/new")).header("cookie", &cookie).send().await.unwrap().status(),
        200
    );
    let limited = browser.get(app.url("/dashboard")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(limited.status(), 429, "the seventh in the minute");
    assert!(limited.headers().contains_key("retry-after"));
    assert!(limited.text().await.unwrap().contains("Too many requests"));
    let (status, _) = app.api(reqwest::Method::GET, "/api/webhooks", ACME_KEY, None).await;
    assert_eq!(status, 429, "and the API shares the budget");
    let (status, _) = app.api(reqwest::Method::GET, "/api/webhooks", GLOBEX_KEY, None).await;
    assert_eq!(status, 200, "another tenant has its own");
    app.stop().await;
}
