//! The dashboard and stats routes, scoped to the caller's tenant, in memory and on PostgreSQL.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{ACME_KEY, GLOBEX_KEY, Receiver, Reply, TestApp};
use crate::pg;

async fn get(app: &TestApp, path: &str, key: &str) -> (u16, Value) {
    let (status, body) = app.api(Method::GET, path, key, None).await;
    (status.as_u16(), body)
}

async fn dashboard_and_stats_are_per_tenant(app: TestApp) {
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.always(Reply::status(500));
    let (a, _) = app.create_webhook(&ok.url(), &["job.created"]).await;
    let (b, _) = app.create_webhook(&failing.url(), &["job.created"]).await;
    let (status, globex) = app
        .api(
            Method::POST,
            "/api/webhooks",
            GLOBEX_KEY,
            Some(serde_json::json!({"name": "g", "url": ok.url(), "eventTypes": ["job.created"]})),
        )
        .await;
    assert_eq!(status, 201);
    let g = globex["data"]["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let event = app.send_event("job.created").await;
        app.wait_for_delivery(&a, &event, "succeeded").await;
        app.wait_for_delivery(&b, &event, "failed").await;
    }

    let (status, a_stats) = get(&app, &format!("/api/webhooks/{a}/stats"), ACME_KEY).await;
    assert_eq!(status, 200, "{a_stats}");
    let stats = &a_stats["data"]["stats"];
    assert_eq!((stats["succeeded"].as_u64(), stats["failed"].as_u64()), (Some(2), Some(0)));
    assert_eq!(stats["successRate"], 1.0);
    assert!(stats["avgLatencyMs"].is_number() && stats["p95LatencyMs"].is_number());
    assert!(stats["lastSuccessAt"].is_string());
    let (_, b_stats) = get(&app, &format!("/api/webhooks/{b}/stats"), ACME_KEY).await;
    assert_eq!(b_stats["data"]["stats"]["failed"], 2);
    assert_eq!(b_stats["data"]["stats"]["successRate"], 0.0);
    assert!(b_stats["data"]["stats"]["lastFailureAt"].is_string());
    assert_eq!(get(&app, &format!("/api/webhooks/{a}/stats"), GLOBEX_KEY).await.0, 404);
    assert_eq!(get(&app, &format!("/api/webhooks/{a}/stats?since=recently"), ACME_KEY).await.0, 422);
    let (_, later) = get(&app, &format!("/api/webhooks/{a}/stats?since=2999-01-01T00:00:00Z"), ACME_KEY).await;
    assert_eq!(later["data"]["stats"]["deliveries"], 0);

    let (status, overview) = get(&app, "/api/dashboard/overview", ACME_KEY).await;
    assert_eq!(status, 200, "{overview}");
    let day = &overview["data"]["last24h"];
    assert_eq!((day["deliveries"].as_u64(), day["events"].as_u64()), (Some(4), Some(2)));
    assert_eq!((day["succeeded"].as_u64(), day["failed"].as_u64()), (Some(2), Some(2)));
    assert_eq!(day["successRate"], 0.5);
    assert_eq!(overview["data"]["last7d"]["deliveries"], 4);
    assert_eq!(overview["data"]["webhooks"]["active"], 2);
    assert_eq!(overview["data"]["webhooks"]["disabled"], 0);
    assert!(overview["data"]["queue"]["visible"].is_u64());
    assert!(overview["data"]["deadLetterQueue"]["visible"].is_u64());
    let (_, theirs) = get(&app, "/api/dashboard/overview", GLOBEX_KEY).await;
    assert_eq!(theirs["data"]["last24h"]["deliveries"], 2, "globex sees only its own");
    assert_eq!(theirs["data"]["webhooks"]["active"], 1);

    let (status, recent) = get(&app, "/api/dashboard/recent-deliveries?limit=3", ACME_KEY).await;
    assert_eq!(status, 200);
    let items = recent["data"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|d| d["webhookId"] == a.as_str() || d["webhookId"] == b.as_str()));
    assert!(items.iter().all(|d| d["attempts"].is_array()));
    let (_, theirs) = get(&app, "/api/dashboard/recent-deliveries", GLOBEX_KEY).await;
    let theirs = theirs["data"].as_array().unwrap();
    assert_eq!(theirs.len(), 2);
    assert!(theirs.iter().all(|d| d["webhookId"] == g.as_str()));
    for bad in ["limit=0", "limit=501", "limit=ten"] {
        assert_eq!(get(&app, &format!("/api/dashboard/recent-deliveries?{bad}"), ACME_KEY).await.0, 422, "{bad}");
    }
    assert_eq!(get(&app, "/api/dashboard/overview", "not-a-key-at-all-0000").await.0, 401);
    app.stop().await;
}

#[tokio::test]
async fn dashboard_in_memory() {
    dashboard_and_stats_are_per_tenant(TestApp::spawn_with(&[("WEBHOOK_MAX_RETRIES", "0")]).await).await;
}

#[tokio::test]
async fn dashboard_on_postgres() {
    let Some(db) = pg::database().await else { return };
    let app = TestApp::spawn_with(&[("WEBHOOK_MAX_RETRIES", "0"), ("DATABASE_URL", db.url())]).await;
    dashboard_and_stats_are_per_tenant(app).await;
    db.drop().await;
}

#[tokio::test]
async fn health_reports_each_dependency_and_the_right_status() {
    let app = TestApp::spawn().await;
    let (status, healthy) = get(&app, "/api/dashboard/health", ACME_KEY).await;
    assert_eq!(status, 200, "{healthy}");
    assert_eq!(healthy["data"]["status"], "healthy");
    for dependency in ["eventStore", "queue"] {
        assert_eq!(healthy["data"]["dependencies"][dependency]["status"], "up", "{dependency}");
        assert!(healthy["data"]["dependencies"][dependency]["latencyMs"].is_u64());
    }
    let response = app.http.get(app.url("/api/dashboard/health")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;

    let degraded = TestApp::spawn_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let (status, body) = get(&degraded, "/api/dashboard/health", ACME_KEY).await;
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("degraded")));
    degraded.stop().await;

    // A queue that cannot be reached: the relay cannot accept events.
    let config = crate::helpers::test_config(&[]);
    let mut backends = relay::local::Backends::in_memory(&config);
    let sdk = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:1")
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        )))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    backends.queue = std::sync::Arc::new(relay::adapters::sqs::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), "http://127.0.0.1:1/q"));
    let broken = TestApp::start(&config, backends).await;
    let response = broken.http.get(broken.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["status"], "unhealthy");
    assert_eq!(body["data"]["dependencies"]["queue"]["status"], "down");
    assert_eq!(body["data"]["dependencies"]["eventStore"]["status"], "up");
    broken.stop().await;
}

#[tokio::test]
async fn metrics_count_deliveries_in_json_and_prometheus_text() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event = app.send_event("job.created").await;
    app.wait_for_delivery(&id, &event, "succeeded").await;

    let (status, json) = get(&app, "/api/dashboard/metrics", ACME_KEY).await;
    assert_eq!(status, 200);
    let counters = json["data"]["counters"].as_array().unwrap();
    let succeeded = counters
        .iter()
        .find(|c| c["name"] == "relay_delivery_attempts_total" && c["labels"]["outcome"] == "succeeded")
        .expect("a succeeded-attempts counter");
    assert!(succeeded["value"].as_u64().unwrap() >= 1);
    assert!(counters.iter().any(|c| c["name"] == "relay_events_accepted_total" && c["labels"]["event_type"] == "job.created"));
    let histograms = json["data"]["histograms"].as_array().unwrap();
    assert!(histograms.iter().any(|h| h["name"] == "relay_delivery_attempt_duration_ms" && h["count"].as_u64() >= Some(1)));

    for request in [
        app.http.get(app.url("/api/dashboard/metrics?format=prometheus")).header("x-api-key", ACME_KEY),
        app.http.get(app.url("/api/dashboard/metrics")).header("x-api-key", ACME_KEY).header("accept", "text/plain"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = response.text().await.unwrap();
        assert!(text.contains("# TYPE relay_delivery_attempts_total counter"), "{text}");
        assert!(text.contains("relay_delivery_attempt_duration_ms_bucket{le=\"+Inf\"}"));
        assert!(text.contains("relay_http_requests_total{method=\"POST\",route=\"/api/events\",status=\"202\"}"));
    }
    assert_eq!(get(&app, "/api/dashboard/metrics?format=xml", ACME_KEY).await.0, 422);
    let response = app.http.get(app.url("/api/dashboard/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;
}
