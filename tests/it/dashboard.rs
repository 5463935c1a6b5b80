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
    assert_eq!(overview["data"]["backlog"], serde_json::json!({"pending": 0, "retrying": 0}));
    // The shared queues' depths are every tenant's: not in a tenant's overview.
    assert!(overview["data"].get("queue").is_none() && overview["data"].get("deadLetterQueue").is_none(), "{overview}");
    let (_, theirs) = get(&app, "/api/dashboard/overview", GLOBEX_KEY).await;
    assert_eq!(theirs["data"]["last24h"]["deliveries"], 2, "globex sees only its own");
    assert_eq!(theirs["data"]["webhooks"]["active"], 1);

    // The tenant's metrics are its own numbers, in both formats.
    let (status, mine) = get(&app, "/api/dashboard/metrics", ACME_KEY).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["data"]["tenant"], "acme");
    assert_eq!(
        mine["data"]["deliveries"],
        serde_json::json!({"pending": 0, "retrying": 0, "succeeded": 2, "failed": 2})
    );
    assert_eq!((mine["data"]["events"].as_u64(), mine["data"]["attempts"].as_u64()), (Some(2), Some(4)));
    assert_eq!(mine["data"]["webhooks"]["active"], 2);
    let (_, theirs) = get(&app, "/api/dashboard/metrics", GLOBEX_KEY).await;
    assert_eq!(theirs["data"]["deliveries"]["succeeded"], 2);
    assert_eq!(theirs["data"]["deliveries"]["failed"], 0, "globex sees none of acme's failures");
    assert_eq!(theirs["data"]["webhooks"]["active"], 1);
    let text = app
        .http
        .get(app.url("/api/dashboard/metrics?format=prometheus"))
        .header("x-api-key", GLOBEX_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("relay_tenant_deliveries_24h{status=\"succeeded\"} 2\n"), "{text}");
    assert!(text.contains("relay_tenant_deliveries_24h{status=\"failed\"} 0\n"), "{text}");
    assert!(
        !text.contains("relay_http_requests_total") && !text.contains("relay_events_accepted_total"),
        "process-wide counters: {text}"
    );

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

    // Redis unreachable: degraded. Anyone sees that it is down; only an operator sees why.
    let degraded = TestApp::spawn_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let (status, body) = get(&degraded, "/api/dashboard/health", ACME_KEY).await;
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("degraded")));
    assert_eq!(body["data"]["dependencies"]["redis"]["status"], "down");
    assert!(body["data"]["dependencies"]["redis"].get("error").is_none(), "tenants get no dependency errors: {body}");
    let public: Value = degraded.http.get(degraded.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(public["data"]["status"], "degraded");
    for (name, dependency) in public["data"]["dependencies"].as_object().unwrap() {
        assert_eq!(dependency.as_object().unwrap().len(), 1, "{name}: only a status without credentials: {public}");
    }
    assert_eq!(public["data"]["dependencies"]["redis"], serde_json::json!({"status": "down"}));
    let operator: Value = degraded
        .http
        .get(degraded.url("/health"))
        .header("x-service-token", crate::helpers::SERVICE_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(operator["data"]["dependencies"]["redis"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{operator}");
    assert!(operator["data"]["dependencies"]["redis"]["latencyMs"].is_u64());
    degraded.stop().await;

    // A queue that cannot be reached: the relay cannot accept events.
    let config = crate::helpers::test_config(&[]);
    let mut backends = relay_local::Backends::in_memory(config.memory);
    let sdk = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:1")
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "test"),
        ))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    backends.queue =
        std::sync::Arc::new(relay_aws::sqs::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), "http://127.0.0.1:1/q"));
    let broken = TestApp::start(&config, backends).await;
    let response = broken.http.get(broken.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["status"], "unhealthy");
    assert_eq!(body["data"]["dependencies"]["queue"]["status"], "down");
    assert_eq!(body["data"]["dependencies"]["eventStore"]["status"], "up");
    broken.stop().await;
}

/// A flood of `/health` reaches the dependencies once per report, not once per request: the
/// report is shared for up to 2 s.
#[tokio::test]
async fn a_health_flood_does_not_reach_the_dependencies() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);
    #[async_trait::async_trait]
    impl relay_core::ports::Probe for Counting {
        fn name(&self) -> &'static str {
            "counted"
        }
        async fn check(&self) -> relay_core::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Ok(())
        }
    }
    let config = crate::helpers::test_config(&[]);
    let mut backends = relay_local::Backends::in_memory(config.memory);
    let probe = Arc::new(Counting::default());
    backends.probes.push(probe.clone());
    let app = TestApp::start(&config, backends).await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let request = app.http.get(app.url("/health"));
        requests.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap().unwrap(), 200);
    }
    let checks = probe.0.load(Ordering::SeqCst);
    assert!((1..=3).contains(&checks), "500 requests probed the dependency {checks} times");
    app.stop().await;
}

/// Process-wide counters (every tenant's traffic) and the shared queues' depths are for
/// operators: `GET /api/metrics` with a service token, never with an API key.
#[tokio::test]
async fn operator_metrics_count_everything_in_json_and_prometheus_text() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event = app.send_event("job.created").await;
    app.wait_for_delivery(&id, &event, "succeeded").await;
    let token = crate::helpers::SERVICE_TOKEN;

    let json: Value = app
        .http
        .get(app.url("/api/metrics"))
        .header("x-service-token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let counters = json["data"]["counters"].as_array().unwrap();
    let succeeded = counters
        .iter()
        .find(|c| c["name"] == "relay_delivery_attempts_total" && c["labels"]["outcome"] == "succeeded")
        .expect("a succeeded-attempts counter");
    assert!(succeeded["value"].as_u64().unwrap() >= 1);
    assert!(
        counters
            .iter()
            .any(|c| c["name"] == "relay_events_accepted_total" && c["labels"]["event_type"] == "job.created")
    );
    let histograms = json["data"]["histograms"].as_array().unwrap();
    assert!(
        histograms.iter().any(|h| h["name"] == "relay_delivery_attempt_duration_ms" && h["count"].as_u64() >= Some(1))
    );
    assert!(json["data"]["queues"]["queue"]["visible"].is_u64(), "{json}");
    assert!(json["data"]["queues"]["deadLetterQueue"]["visible"].is_u64());

    for request in [
        app.http.get(app.url("/api/metrics?format=prometheus")).header("x-service-token", token),
        app.http.get(app.url("/api/metrics")).header("x-service-token", token).header("accept", "text/plain"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = response.text().await.unwrap();
        assert!(text.contains("# TYPE relay_delivery_attempts_total counter"), "{text}");
        assert!(text.contains("relay_delivery_attempt_duration_ms_bucket{le=\"+Inf\"}"));
        assert!(text.contains("relay_http_requests_total{method=\"POST\",route=\"/api/events\",status=\"202\"}"));
        assert!(text.contains("relay_queue_messages{queue=\"relay\",state=\"visible\"}"), "{text}");
    }
    let bad = app.http.get(app.url("/api/metrics?format=xml")).header("x-service-token", token).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(app.http.get(app.url("/api/metrics")).send().await.unwrap().status(), 401);
    assert_eq!(get(&app, "/api/metrics", ACME_KEY).await.0, 403, "an API key is not an operator");
    assert_eq!(get(&app, "/api/dashboard/metrics?format=xml", ACME_KEY).await.0, 422);
    app.stop().await;
}
