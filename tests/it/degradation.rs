//! Redis and PostgreSQL in the delivery path: the cache is invalidated by every change,
//! duplicate messages deliver once, rate limits answer 429, and when either service goes away
//! deliveries go on (Redis) or wait (PostgreSQL) without losing anything.

use std::time::Duration;

use relay_core::domain::{EventInput, TenantId, WebhookInput};
use relay_core::ports::ReceivedMessage;
use relay_local::Config;
use relay_local::{Backends, Relay};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, GLOBEX_KEY, Receiver, TestApp, test_config};
use crate::proxy::Proxy;
use crate::{pg, redis_server};

const WAIT: Duration = Duration::from_secs(10);

async fn health(app: &TestApp) -> Value {
    let body: Value = app.http.get(app.url("/health")).send().await.unwrap().json().await.unwrap();
    body["data"].clone()
}

/// `/health` once it says `status`, or as it is after 6 s: the report is shared for up to 2 s
/// and a probe takes up to 2 s, so a change shows within about 4 s.
async fn health_settled(app: &TestApp, status: &str) -> Value {
    let settled = crate::helpers::eventually(Duration::from_secs(6), || async {
        let body = health(app).await;
        (body["status"] == status).then_some(body)
    })
    .await;
    match settled {
        Some(body) => body,
        None => health(app).await,
    }
}

#[tokio::test]
async fn a_webhook_change_is_seen_by_the_next_dispatch() {
    if redis_server::store().await.is_none() {
        return;
    }
    let app = TestApp::spawn_with(&[("REDIS_URL", &redis_server::url())]).await;
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let (first_id, _) = app.create_webhook(&first.url(), &["job.created"]).await;
    app.send_event("job.created").await;
    first.wait_for(1, WAIT).await;

    // Both changes must reach the very next dispatch, though the list was cached.
    let (status, _) = app
        .api(Method::PUT, &format!("/api/webhooks/{first_id}"), ACME_KEY, Some(json!({"eventTypes": ["job.updated"]})))
        .await;
    assert_eq!(status, 200);
    app.create_webhook(&second.url(), &["job.created"]).await;
    let event = app.send_event("job.created").await;
    let got = second.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), event);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(first.received().len(), 1, "the cache served a stale subscription");

    let (status, _) = app.api(Method::DELETE, &format!("/api/webhooks/{first_id}"), ACME_KEY, None).await;
    assert_eq!(status, 200);
    app.send_event("job.updated").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(first.received().len(), 1, "a deleted webhook got a delivery");
    assert_eq!(health(&app).await["dependencies"]["redis"]["status"], "up");
    app.stop().await;
}

/// A relay over memory stores (plus whatever `config` adds), a webhook to `receiver`, and one
/// event dispatched; returns the relay and the `deliver` message waiting on the queue.
async fn one_delivery_waiting(config: &Config, receiver: &Receiver) -> (Relay, ReceivedMessage) {
    let backends = Backends::in_memory(config.memory)
        .with_database(config.database.as_ref())
        .await
        .unwrap()
        .with_redis(config.redis_url.as_ref())
        .unwrap();
    let relay = Relay::new(config, backends).unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let input: WebhookInput =
        serde_json::from_value(json!({"name": "h", "url": receiver.url(), "eventTypes": ["job.created"]})).unwrap();
    relay.admin.create(&tenant, input).await.unwrap();
    let input: EventInput =
        serde_json::from_value(json!({"eventType": "job.created", "eventName": "e", "payload": {}})).unwrap();
    relay.ingest.accept(input, None).await.unwrap();
    let queue = relay.backends.queue.clone();
    let dispatch = queue.receive(1, Duration::ZERO).await.unwrap().remove(0);
    let response = relay_delivery::handle(&relay.handler, crate::worker_event(std::slice::from_ref(&dispatch))).await;
    assert!(response.batch_item_failures.is_empty());
    queue.delete(&dispatch.receipt_handle).await.unwrap();
    let deliver = relay.backends.delivery_queue.receive(1, Duration::ZERO).await.unwrap().remove(0);
    (relay, deliver)
}

async fn fifty_copies(relay: &Relay, message: &ReceivedMessage) {
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let handler = relay.handler.clone();
        let messages = vec![message.clone()];
        tasks.push(tokio::spawn(async move { handler.handle(handler.lane(false), messages).await }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn fifty_duplicate_copies_deliver_once_in_memory() {
    let receiver = Receiver::start().await;
    let (relay, message) = one_delivery_waiting(&test_config(&[]), &receiver).await;
    fifty_copies(&relay, &message).await;
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn fifty_duplicate_copies_deliver_once_with_redis_and_postgres() {
    let Some(db) = pg::database().await else { return };
    if redis_server::store().await.is_none() {
        return;
    }
    let receiver = Receiver::start().await;
    let config = test_config(&[("DATABASE_URL", db.url()), ("REDIS_URL", &redis_server::url())]);
    let (relay, message) = one_delivery_waiting(&config, &receiver).await;
    fifty_copies(&relay, &message).await;
    assert_eq!(receiver.received().len(), 1, "duplicates reached the receiver");
    let pool = db.pool().await;
    let succeeded: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'succeeded'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts").fetch_one(&pool).await.unwrap();
    assert_eq!((succeeded, attempts), (1, 1));
    pool.close().await;
    db.drop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let (_, left) = relay_core::ports::minute_window();
    if left < Duration::from_secs(3) {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "3")]).await;
    for _ in 0..3 {
        let (status, _) = app.api(Method::GET, "/api/webhooks", ACME_KEY, None).await;
        assert_eq!(status, 200);
    }
    let response = app.http.get(app.url("/api/webhooks")).header("x-api-key", ACME_KEY).send().await.unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    let (status, _) = app.api(Method::GET, "/api/webhooks", GLOBEX_KEY, None).await;
    assert_eq!(status, 200, "another tenant has its own budget");
    app.stop().await;
}

#[tokio::test]
async fn without_redis_deliveries_go_on_and_health_says_degraded() {
    let app = TestApp::spawn_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let receiver = Receiver::start().await;
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event = app.send_event("job.created").await;
    app.wait_for_delivery(&webhook_id, &event, "succeeded").await;
    let health = health(&app).await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["dependencies"]["redis"]["status"], "down");
    app.stop().await;
}

#[tokio::test]
async fn redis_stopping_mid_run_loses_nothing() {
    let Some(mut redis) = redis_server::PrivateRedis::start().await else { return };
    let app = TestApp::spawn_with(&[("REDIS_URL", &redis.url)]).await;
    let receiver = Receiver::start().await;
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let before = app.send_event("job.created").await;
    app.wait_for_delivery(&webhook_id, &before, "succeeded").await;
    assert_eq!(health(&app).await["status"], "healthy");

    redis.stop();
    let after = app.send_event("job.created").await;
    app.wait_for_delivery(&webhook_id, &after, "succeeded").await;
    let (status, _) =
        app.api(Method::PUT, &format!("/api/webhooks/{webhook_id}"), ACME_KEY, Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, 200, "changes still work without the cache");
    assert_eq!(health_settled(&app, "degraded").await["status"], "degraded");
    assert_eq!(receiver.received().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn without_postgres_a_delivery_waits_and_is_never_reported_sent_unlogged() {
    let Some(db) = pg::database().await else { return };
    let mut url = url::Url::parse(db.url()).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Proxy::start(target).await;
    url.set_port(Some(proxy.port)).unwrap();
    let receiver = Receiver::start().await;
    let config = test_config(&[("DATABASE_URL", url.as_str())]);
    let (relay, message) = one_delivery_waiting(&config, &receiver).await;

    proxy.cut().await;
    let response = relay_delivery::handle(&relay.handler, crate::worker_event(std::slice::from_ref(&message))).await;
    assert_eq!(response.batch_item_failures.len(), 1, "the message must come back");
    assert!(receiver.received().is_empty(), "sent without a log to record it in");

    proxy.restore();
    let again = relay_delivery::handle(&relay.handler, crate::worker_event(std::slice::from_ref(&message))).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    assert_eq!(receiver.received().len(), 1);
    let pool = db.pool().await;
    let status: String = sqlx::query_scalar("SELECT status FROM deliveries").fetch_one(&pool).await.unwrap();
    assert_eq!(status, "succeeded");
    pool.close().await;
    drop(relay);
    db.drop().await;
}
