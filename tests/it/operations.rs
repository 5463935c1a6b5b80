//! Operating webhooks: automatic disabling of a webhook that keeps failing, and bulk recovery
//! of failed deliveries (in memory and on PostgreSQL).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, GLOBEX_KEY, Receiver, Reply, TestApp};
use crate::pg;

#[tokio::test]
async fn a_webhook_failing_for_the_whole_window_is_disabled_and_reenabling_resets_it() {
    let app = TestApp::spawn_with(&[("WEBHOOK_DISABLE_AFTER", "1"), ("WEBHOOK_MAX_RETRIES", "0")]).await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(500));
    let (id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let path = format!("/api/webhooks/{id}");

    let first = app.send_event("job.created").await;
    app.wait_for_delivery(&id, &first, "failed").await;
    let (_, failing) = app.api(Method::GET, &path, ACME_KEY, None).await;
    assert!(failing["data"]["failingSince"].is_string(), "{failing}");
    assert_eq!(failing["data"]["isActive"], true, "not yet: the window has not passed");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = app.send_event("job.created").await;
    app.wait_for_delivery(&id, &second, "failed").await;
    let (_, disabled) = app.api(Method::GET, &path, ACME_KEY, None).await;
    assert_eq!(disabled["data"]["isActive"], false, "{disabled}");
    assert!(disabled["data"]["disabledReason"].as_str().unwrap().starts_with("every delivery failed"));

    let (_, enabled) = app.api(Method::PUT, &path, ACME_KEY, Some(json!({"isActive": true}))).await;
    assert_eq!(enabled["data"]["isActive"], true);
    assert_eq!(enabled["data"]["failingSince"], Value::Null, "re-enabling resets the count");
    assert_eq!(enabled["data"]["disabledReason"], Value::Null);

    // One failure after re-enabling starts a new window; a success ends it.
    receiver.always(Reply::status(200));
    let third = app.send_event("job.created").await;
    app.wait_for_delivery(&id, &third, "succeeded").await;
    let (_, healthy) = app.api(Method::GET, &path, ACME_KEY, None).await;
    assert_eq!(healthy["data"]["failingSince"], Value::Null);
    assert_eq!(healthy["data"]["isActive"], true);
    app.stop().await;
}

async fn recovery_redelivers_exactly_the_failed_ones(app: TestApp) {
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(500));
    let (id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let before = relay_core::Timestamp::now();
    let mut failed = Vec::new();
    for _ in 0..3 {
        let event = app.send_event("job.created").await;
        app.wait_for_delivery(&id, &event, "failed").await;
        failed.push(event);
    }
    receiver.always(Reply::status(200));
    let ok = app.send_event("job.created").await;
    app.wait_for_delivery(&id, &ok, "succeeded").await;
    let sent_before = receiver.received().len();

    let path = format!("/api/webhooks/{id}/recover");
    let (status, nothing) = app
        .api(Method::POST, &path, ACME_KEY, Some(json!({"since": "2020-01-01T00:00:00Z", "until": before.to_string()})))
        .await;
    assert_eq!((status.as_u16(), nothing["data"]["recovered"].as_u64()), (202, Some(0)), "{nothing}");

    let (status, body) = app.api(Method::POST, &path, ACME_KEY, Some(json!({"since": before.to_string()}))).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["recovered"], 3);
    for event in &failed {
        let delivery = app.wait_for_delivery(&id, event, "succeeded").await;
        assert_eq!(delivery["attempts"].as_array().unwrap().len(), 2);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resent: Vec<String> =
        receiver.received()[sent_before..].iter().map(|r| r.header("webhook-id").to_owned()).collect();
    let mut resent_sorted = resent.clone();
    resent_sorted.sort();
    let mut expected = failed.clone();
    expected.sort();
    assert_eq!(resent_sorted, expected, "exactly the failed deliveries, once each");

    for (body, expected) in [
        (json!({}), 422),
        (json!({"since": "yesterday"}), 422),
        (json!({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}), 422),
        (json!({"since": "2026-01-01T00:00:00Z", "extra": 1}), 422),
        (json!({"since": 5}), 422),
    ] {
        let (status, err) = app.api(Method::POST, &path, ACME_KEY, Some(body.clone())).await;
        assert_eq!(status.as_u16(), expected, "{body}: {err}");
    }
    let (status, _) = app.api(Method::POST, &path, GLOBEX_KEY, Some(json!({"since": before.to_string()}))).await;
    assert_eq!(status, 404, "another tenant's webhook");
    app.stop().await;
}

#[tokio::test]
async fn recovery_in_memory() {
    recovery_redelivers_exactly_the_failed_ones(TestApp::spawn_with(&[("WEBHOOK_MAX_RETRIES", "0")]).await).await;
}

#[tokio::test]
async fn recovery_on_postgres() {
    let Some(db) = pg::database().await else { return };
    let app = TestApp::spawn_with(&[("WEBHOOK_MAX_RETRIES", "0"), ("DATABASE_URL", db.url())]).await;
    recovery_redelivers_exactly_the_failed_ones(app).await;
    db.drop().await;
}

/// relay-local with its queue in memory and its log in PostgreSQL: a delivery the previous run
/// left `retrying` waits for a message that died with that run. The next start closes it as
/// `failed`, saying why, instead of leaving it waiting forever.
#[tokio::test]
async fn a_restart_closes_deliveries_whose_queue_was_in_memory() {
    let Some(db) = pg::database().await else { return };
    let vars = [("DATABASE_URL", db.url()), ("WEBHOOK_RETRY_DELAY", "600000"), ("WEBHOOK_MAX_RETRIES", "3")];
    let first = TestApp::spawn_with(&vars).await;
    let failing = Receiver::start().await;
    failing.always(Reply::status(500));
    let ok = Receiver::start().await;
    let (waiting, _) = first.create_webhook(&failing.url(), &["job.created"]).await;
    let (done, _) = first.create_webhook(&ok.url(), &["job.created"]).await;
    let event = first.send_event("job.created").await;
    first.wait_for_delivery(&waiting, &event, "retrying").await;
    first.wait_for_delivery(&done, &event, "succeeded").await;
    first.stop().await;

    let second = TestApp::spawn_with(&vars).await;
    let key = |webhook: &str| relay_core::domain::DeliveryKey {
        event_id: relay_core::domain::EventId::parse(&event).unwrap(),
        webhook_id: relay_core::domain::WebhookId::parse(webhook).unwrap(),
    };
    let closed = second.backends.deliveries.get(key(&waiting)).await.unwrap().expect("the delivery is in the log");
    assert_eq!(closed.status, relay_core::domain::DeliveryStatus::Failed);
    assert_eq!(closed.next_attempt_at, None);
    assert!(
        closed.last_error.as_deref().is_some_and(|e| e.starts_with("relay-local restarted")),
        "{:?}",
        closed.last_error
    );
    assert_eq!(closed.attempt_count, 1, "no attempt is invented");
    let kept = second.backends.deliveries.get(key(&done)).await.unwrap().unwrap();
    assert_eq!(kept.status, relay_core::domain::DeliveryStatus::Succeeded, "a final delivery is left alone");
    second.stop().await;
    db.drop().await;
}
