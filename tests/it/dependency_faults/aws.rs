//! SQS and DynamoDB, on LocalStack and moto, going away during ingest.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_config::BehaviorVersion;
use relay_core::Timestamp;
use relay_local::Config;
use relay_local::{Backends, Relay};
use reqwest::Method;
use serde_json::{Value, json};

use super::{CATCH_UP, accepted, api, assert_health, assert_unavailable, bounded, copies, health, post, wait_for_all};
use crate::aws;
use crate::helpers::{Receiver, SERVICE_TOKEN, TestApp};
use crate::proxy::Proxy;

/// A relay on fresh LocalStack queues and moto tables that reaches SQS and DynamoDB through a
/// proxy each (the tables and queues are made directly).
struct AwsRelay {
    app: TestApp,
    config: Config,
    sqs: Proxy,
    dynamodb: Proxy,
}

fn endpoint(service_var: &str) -> String {
    std::env::var(service_var).or_else(|_| std::env::var("AWS_ENDPOINT_URL")).unwrap()
}

async fn aws_relay_behind_proxies() -> Option<AwsRelay> {
    aws::sqs().await?;
    aws::dynamodb().await?;
    let (_, config) = aws::fresh_resources("faults", &aws::QUICK_RETRIES).await;

    // An endpoint set in code wins over AWS_ENDPOINT_URL_*: one SDK configuration per proxy.
    let sqs_endpoint = endpoint("AWS_ENDPOINT_URL_SQS");
    let dynamodb_endpoint = endpoint("AWS_ENDPOINT_URL_DYNAMODB");
    let sqs = Proxy::to_url(&sqs_endpoint).await;
    let dynamodb = Proxy::to_url(&dynamodb_endpoint).await;
    let through = |url: String| aws_config::defaults(BehaviorVersion::latest()).endpoint_url(url).load();
    let via_dynamodb =
        relay_local::aws_backends(&config, &through(dynamodb.url_for(&dynamodb_endpoint)).await).unwrap();
    let via_sqs = relay_local::aws_backends(&config, &through(sqs.url_for(&sqs_endpoint)).await).unwrap();
    let backends = Backends {
        queue: via_sqs.queue,
        delivery_queue: via_sqs.delivery_queue,
        ordered_queue: via_sqs.ordered_queue,
        dead_letter: via_sqs.dead_letter,
        ordered_dead_letter: via_sqs.ordered_dead_letter,
        ..via_dynamodb
    };
    let app = TestApp::start(&config, backends).await;
    Some(AwsRelay { app, config, sqs, dynamodb })
}

/// A receiver, a webhook for it, and an event posted and delivered before anything breaks.
async fn one_delivered(app: &TestApp) -> (Receiver, String, String) {
    let receiver = Receiver::start().await;
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let before = accepted(post(app, "before", None).await).await;
    receiver.wait_for(1, CATCH_UP).await;
    (receiver, webhook_id, before)
}

/// The ids of the events the relay has stored, newest first.
async fn stored_events(app: &TestApp) -> Vec<String> {
    let response =
        app.http.get(app.url("/api/events?limit=100")).header("x-service-token", SERVICE_TOKEN).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    body["data"].as_array().unwrap().iter().map(|e| e["eventId"].as_str().unwrap().to_owned()).collect()
}

/// README ("Running on local AWS"): the event is stored before it is enqueued; when the queue
/// refuses, the caller gets 503 and the stored event is dispatched by the caller's retry
/// under the same `Idempotency-Key` or by maintenance. So the "503" is the documented
/// answer, and a 503 here is not "nothing happened": the event is delivered once either way.
#[tokio::test]
async fn queue_down_during_ingest_answers_503_and_every_stored_event_is_delivered_once() {
    let Some(aws) = aws_relay_behind_proxies().await else {
        return;
    };
    let app = &aws.app;
    let (receiver, webhook_id, before) = one_delivered(app).await;

    aws.sqs.cut().await;
    let key = aws::unique("faults-key");
    assert_unavailable(post(app, "keyed", Some(&key)).await, "POST, queue down, with a key").await;
    assert_unavailable(post(app, "unkeyed", None).await, "POST, queue down").await;
    assert_health(app, "unhealthy", &["queue"], &["eventStore"]).await;

    // A queue that takes connections and never answers must not hold the caller either.
    aws.sqs.stall().await;
    assert_unavailable(post(app, "silent", None).await, "POST, queue silent").await;
    let (status, _) = health(app).await;
    assert_eq!(status, 503);

    aws.sqs.restore();
    let stored = stored_events(app).await;
    assert_eq!(stored.len(), 4, "every event is stored before it is enqueued: {stored:?}");
    // The caller's retry under the same key: the stored event, enqueued now.
    let retried = post(app, "keyed", Some(&key)).await;
    assert_eq!(retried.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let keyed = accepted(retried).await;
    assert!(stored.contains(&keyed), "the retry returned a new event");
    // The two nobody retried: maintenance dispatches them.
    let maintenance = Relay::new(&aws.config, app.backends.clone()).unwrap().maintenance;
    let redispatched = bounded("redispatch", maintenance.redispatch(Timestamp::now(), 10)).await.unwrap();
    assert_eq!(redispatched, 2);
    let after = accepted(post(app, "after", None).await).await;

    let mut all = stored.clone();
    all.push(after);
    let got = wait_for_all(&receiver, &all).await;
    assert!(got.contains_key(&before));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = copies(&receiver);
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        all.iter().cloned().collect(),
        "an unknown event was delivered"
    );
    assert!(got.values().all(|&n| n == 1), "an event was delivered twice: {got:?}");
    for id in &all {
        app.wait_for_delivery(&webhook_id, id, "succeeded").await;
    }
    assert_eq!(maintenance.redispatch(Timestamp::now(), 10).await.unwrap(), 0, "nothing left undispatched");
    assert_health(app, "healthy", &[], &[]).await;
    aws.app.stop().await;
}

#[tokio::test]
async fn event_store_down_answers_503_everywhere_and_loses_nothing_accepted() {
    let Some(aws) = aws_relay_behind_proxies().await else {
        return;
    };
    let app = &aws.app;
    let (receiver, webhook_id, before) = one_delivered(app).await;

    aws.dynamodb.cut().await;
    let key = aws::unique("faults-key");
    assert_unavailable(post(app, "keyed", Some(&key)).await, "POST, store down, with a key").await;
    assert_unavailable(post(app, "refused", None).await, "POST, store down").await;
    assert_health(app, "unhealthy", &["eventStore"], &["queue"]).await;
    assert_unavailable(api(app, Method::GET, "/api/webhooks", None).await, "GET /api/webhooks, store down").await;
    let other = Receiver::start().await;
    let hook = json!({"name": "while down", "url": other.url(), "eventTypes": ["job.created"]});
    assert_unavailable(
        api(app, Method::POST, "/api/webhooks", Some(hook.clone())).await,
        "POST /api/webhooks, store down",
    )
    .await;
    let path = format!("/api/webhooks/{webhook_id}");
    assert_unavailable(api(app, Method::GET, &path, None).await, "GET a webhook, store down").await;
    let response = bounded(
        "GET an event",
        app.http.get(app.url(&format!("/api/events/{before}"))).header("x-service-token", SERVICE_TOKEN).send(),
    )
    .await
    .unwrap();
    assert_unavailable(response, "GET an event, store down").await;

    // A store that takes connections and never answers must not hold the caller either.
    aws.dynamodb.stall().await;
    assert_unavailable(post(app, "silent", None).await, "POST, store silent").await;
    assert_unavailable(api(app, Method::GET, "/api/webhooks", None).await, "GET /api/webhooks, store silent").await;

    aws.dynamodb.restore();
    let keyed = accepted(post(app, "keyed", Some(&key)).await).await;
    let response = api(app, Method::POST, "/api/webhooks", Some(hook)).await;
    assert_eq!(response.status(), 201);
    let after = accepted(post(app, "after", None).await).await;
    let got = wait_for_all(&receiver, &[before.clone(), keyed.clone(), after.clone()]).await;
    wait_for_all(&other, std::slice::from_ref(&after)).await;
    for id in [&before, &keyed, &after] {
        app.wait_for_delivery(&webhook_id, id, "succeeded").await;
    }
    // Nothing refused was stored, so nothing turns up later.
    let stored = stored_events(app).await;
    assert_eq!(stored.iter().cloned().collect::<BTreeSet<_>>(), [before, keyed, after].into_iter().collect());
    let maintenance = Relay::new(&aws.config, app.backends.clone()).unwrap().maintenance;
    assert_eq!(maintenance.redispatch(Timestamp::now(), 10).await.unwrap(), 0);
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert_health(app, "healthy", &[], &[]).await;
    aws.app.stop().await;
}
