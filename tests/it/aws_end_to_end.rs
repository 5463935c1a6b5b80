//! relay-local's code on LocalStack (SQS) and moto (DynamoDB): delivery, backoff through SQS
//! visibility, a poison message dead-lettered and recorded by maintenance, and no event lost
//! when the queue refuses a dispatch.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use relay_aws::sqs::SqsQueue;
use relay_core::Timestamp;
use relay_core::app::{Ingest, RelayMessage, Tenancy};
use relay_core::auth::Directory;
use relay_core::domain::{EventId, EventInput, WebhookId};
use relay_local::Config;
use relay_local::Relay;
use reqwest::Method;
use serde_json::json;

use crate::aws;
use crate::helpers::{ACME_KEY, Receiver, Reply, SERVICE_TOKEN, TestApp, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Fresh tables and queues, and a relay configured on them (1 s backoff, 1 retry, a 2 s
/// visibility timeout and 3 receives before the DLQ).
async fn aws_relay() -> Option<(TestApp, Config)> {
    aws::sqs().await?;
    aws::dynamodb().await?;
    let base = [aws::QUICK_RETRIES.as_slice(), &[("QUEUE_MAX_RECEIVE_COUNT", "3")]].concat();
    let (sdk, config) = aws::fresh_resources("e2e", &base).await;
    let backends = relay_local::aws_backends(&config, &sdk).unwrap();
    Some((TestApp::start(&config, backends).await, config))
}

#[tokio::test]
async fn delivers_retries_and_dead_letters_on_the_emulators() {
    let Some((app, config)) = aws_relay().await else { return };
    let ok = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.script([Reply::status(500)]);
    let (ok_id, ok_secret) = app.create_webhook(&ok.url(), &["job.created"]).await;
    let (flaky_id, _) = app.create_webhook(&flaky.url(), &["job.updated"]).await;

    // A signed delivery.
    let created = app.send_event("job.created").await;
    let delivery = ok.wait_for(1, WAIT).await.remove(0);
    assert_eq!(delivery.header("webhook-id"), created);
    standardwebhooks::Webhook::new(&ok_secret).unwrap().verify(&delivery.body, &delivery.headers).expect("verifies");
    app.wait_for_delivery(&ok_id, &created, "succeeded").await;

    // A failed attempt retried after the backoff, through the message's visibility.
    let updated = app.send_event("job.updated").await;
    let attempts = flaky.wait_for(2, WAIT).await;
    let gap = attempts[1].at - attempts[0].at;
    assert!(gap >= Duration::from_millis(800), "retried after {gap:?}, before the 1 s backoff");
    assert!(gap < Duration::from_secs(5), "retried after {gap:?}");
    let logged = app.wait_for_delivery(&flaky_id, &updated, "succeeded").await;
    assert_eq!(logged["attemptCount"], 2);

    // A message that can never be handled (its delivery record is missing) is received
    // QUEUE_MAX_RECEIVE_COUNT times, moves to the DLQ, and maintenance records it.
    let poison = RelayMessage::Deliver {
        event_id: EventId::parse(&created).unwrap(),
        webhook_id: WebhookId::parse(&flaky_id).unwrap(),
        deferrals: 0,
    };
    app.backends.queue.send(&poison.to_body(), Duration::ZERO).await.unwrap();
    let maintenance = Relay::new(&config, app.backends.clone()).unwrap().maintenance;
    let report = eventually(WAIT, || async {
        let report = maintenance.drain_dead_letters(10).await.unwrap();
        (report.dead_letters > 0).then_some(report)
    })
    .await
    .expect("the poison message reached the DLQ");
    assert_eq!(report.failed_deliveries, 1);
    let recorded = app.wait_for_delivery(&flaky_id, &created, "failed").await;
    assert!(recorded["lastError"].as_str().unwrap().contains("dead-lettered"), "{recorded}");
    assert_eq!(recorded["attemptCount"], 0);
    assert_eq!(flaky.received().len(), 2, "the poison message sent nothing");
    let dlq = app.backends.dead_letter.depth().await.unwrap();
    assert_eq!(dlq.visible + dlq.in_flight, 0, "maintenance emptied the DLQ");

    // A manual retry of the recorded delivery sends it.
    let (status, retried) =
        app.api(Method::POST, &format!("/api/webhooks/{flaky_id}/retry/{created}"), ACME_KEY, None).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["data"]["status"], "succeeded");
    app.stop().await;
}

#[tokio::test]
async fn an_event_the_queue_refused_is_still_delivered() {
    let Some((app, config)) = aws_relay().await else { return };
    let receiver = Receiver::start().await;
    app.create_webhook(&receiver.url(), &["job.created"]).await;

    // Ingest whose queue refuses every message: the event is stored, the caller gets 503.
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let broken_queue =
        SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), "http://127.0.0.1:4566/000000000000/no-such-queue");
    let directory = Arc::new(Directory::new(config.credentials.clone(), app.backends.tenants.clone()));
    let tenancy = Tenancy { directory, allow_broadcast: true };
    let registry = Arc::new(config.event_types.clone());
    let failing = Ingest::new(app.backends.events.clone(), Arc::new(broken_queue), registry, tenancy);
    let input = || -> EventInput {
        serde_json::from_value(json!({"eventType": "job.created", "eventName": "refused", "payload": {"n": 1}}))
            .unwrap()
    };
    let err = failing.accept(input(), Some("refused-1")).await.unwrap_err();
    assert!(matches!(err, relay_core::Error::Unavailable { .. }), "{err}");
    let err = failing.accept(input(), None).await.unwrap_err();
    assert!(matches!(err, relay_core::Error::Unavailable { .. }), "{err}");
    assert!(receiver.received().is_empty());

    // The caller's retry with the same Idempotency-Key enqueues the stored event...
    let response = app
        .http
        .post(app.url("/api/events"))
        .header("x-service-token", SERVICE_TOKEN)
        .header("idempotency-key", "refused-1")
        .json(&json!({"eventType": "job.created", "eventName": "refused", "payload": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    receiver.wait_for(1, WAIT).await;

    // ...and maintenance dispatches the one nobody retried.
    let maintenance = Relay::new(&config, app.backends.clone()).unwrap().maintenance;
    let redispatched = maintenance.redispatch(Timestamp::now(), 10).await.unwrap();
    assert_eq!(redispatched, 1);
    let got = receiver.wait_for(2, WAIT).await;
    assert_ne!(got[0].header("webhook-id"), got[1].header("webhook-id"), "two different events delivered");
    assert_eq!(maintenance.redispatch(Timestamp::now(), 10).await.unwrap(), 0, "nothing left undispatched");
    app.stop().await;
}

/// A request that died between taking its `Idempotency-Key` and writing its event (the two are
/// separate writes on DynamoDB) leaves a key without an event: the caller's retry, the same
/// request, stores the event under the recorded id and delivers it once. A later replay
/// dispatches it again, which reaches no webhook created since and repeats no delivery.
#[tokio::test]
async fn a_key_left_without_its_event_is_mended_and_a_replay_adds_no_webhook() {
    let Some((app, config)) = aws_relay().await else { return };
    let first = Receiver::start().await;
    app.create_webhook(&first.url(), &["job.created"]).await;
    let body = json!({"eventType": "job.created", "eventName": "mended", "payload": {"n": 7}});
    let new = relay_core::domain::NewEvent::parse(serde_json::from_value(body.clone()).unwrap(), &config.event_types)
        .unwrap();
    let recorded = EventId::new();
    let key = aws::unique("mend");
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    aws_sdk_dynamodb::Client::new(&sdk)
        .put_item()
        .table_name(config.aws.tables().idempotency)
        .item("key", aws_sdk_dynamodb::types::AttributeValue::S(key.clone()))
        .item("fingerprint", aws_sdk_dynamodb::types::AttributeValue::S(new.fingerprint()))
        .item("eventId", aws_sdk_dynamodb::types::AttributeValue::S(recorded.to_string()))
        .item("expiresAt", aws_sdk_dynamodb::types::AttributeValue::N((Timestamp::now().as_secs() + 3600).to_string()))
        .send()
        .await
        .unwrap();
    let post = || async {
        app.http
            .post(app.url("/api/events"))
            .header("x-service-token", SERVICE_TOKEN)
            .header("idempotency-key", &key)
            .json(&body)
            .send()
            .await
            .unwrap()
    };

    let response = post().await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let event: serde_json::Value = response.json().await.unwrap();
    assert_eq!(event["data"]["eventId"], recorded.to_string(), "stored under the recorded id");
    assert_eq!(first.wait_for(1, WAIT).await[0].header("webhook-id"), recorded.to_string());

    let second = Receiver::start().await;
    app.create_webhook(&second.url(), &["job.created"]).await;
    assert_eq!(post().await.status(), 202);
    // The replay's dispatch is handled well within this.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(first.received().len(), 1, "a replay repeats no delivery");
    assert!(second.received().is_empty(), "a replay reaches no webhook created after the event was dispatched");
    app.stop().await;
}
