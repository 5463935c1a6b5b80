//! Webhook secrets: shown on demand, rotated with a grace period during which both the new and
//! the previous secret sign, and a caller's own secret on create.

use std::time::Duration;

use relay_core::domain::WebhookSecret;
use relay_core::signing::verify_relay;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{ACME_KEY, GLOBEX_KEY, Receiver, TestApp};

const WAIT: Duration = Duration::from_secs(10);

fn verifies(secret: &str, delivery: &crate::helpers::Received) -> bool {
    standardwebhooks::Webhook::new(secret).unwrap().verify(&delivery.body, &delivery.headers).is_ok()
}

#[tokio::test]
async fn both_secrets_sign_during_the_grace_period_then_only_the_new_one() {
    let app = TestApp::spawn_with(&[("WEBHOOK_SECRET_GRACE", "2")]).await;
    let receiver = Receiver::start().await;
    let (id, old) = app.create_webhook(&receiver.url(), &["job.created"]).await;

    let (status, shown) = app.api(Method::GET, &format!("/api/webhooks/{id}/secret"), ACME_KEY, None).await;
    assert_eq!(status, 200);
    assert_eq!(shown["data"]["secret"], old.as_str());
    assert_eq!(shown["data"]["previousSecretExpiresAt"], serde_json::Value::Null);

    let (status, rotated) = app.api(Method::POST, &format!("/api/webhooks/{id}/secret/rotate"), ACME_KEY, None).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["data"]["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["data"]["previousSecretExpiresAt"].is_string());

    app.send_event("job.created").await;
    let inside = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(inside.header("webhook-signature").split(' ').count(), 2);
    assert!(verifies(&new, &inside), "the new secret must verify inside the grace period");
    assert!(verifies(&old, &inside), "the previous secret must verify inside the grace period");
    assert!(verify_relay(&WebhookSecret::parse(&new).unwrap(), &inside.body, inside.header("x-relay-signature")));

    tokio::time::sleep(Duration::from_millis(2100)).await;
    app.send_event("job.created").await;
    let after = receiver.wait_for(2, WAIT).await.remove(1);
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    assert!(verifies(&new, &after));
    assert!(!verifies(&old, &after), "the previous secret must stop verifying after the grace period");
    app.stop().await;
}

#[tokio::test]
async fn callers_may_bring_their_own_secret() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let own = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (status, created) = app
        .api(
            Method::POST,
            "/api/webhooks",
            ACME_KEY,
            Some(json!({"name": "own", "url": receiver.url(), "eventTypes": ["job.created"], "secret": own})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["data"]["secret"], own);
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    app.send_event("job.created").await;
    assert!(verifies(own, &receiver.wait_for(1, WAIT).await[0]));

    // Rotating to a chosen secret, and the ways to get it wrong.
    let chosen = WebhookSecret::generate();
    let (status, body) = app
        .api(
            Method::POST,
            &format!("/api/webhooks/{id}/secret/rotate"),
            ACME_KEY,
            Some(json!({"secret": chosen.expose()})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["secret"], chosen.expose());
    for (method, path, body) in [
        (
            Method::POST,
            "/api/webhooks".to_owned(),
            json!({"name": "x", "url": receiver.url(), "eventTypes": ["job.created"], "secret": "hunter2"}),
        ),
        (Method::PUT, format!("/api/webhooks/{id}"), json!({"secret": own})),
        (Method::POST, format!("/api/webhooks/{id}/secret/rotate"), json!({"secret": "whsec_short"})),
        (Method::POST, format!("/api/webhooks/{id}/secret/rotate"), json!({"secret": 5})),
        (Method::POST, format!("/api/webhooks/{id}/secret/rotate"), json!({"other": true})),
    ] {
        let (status, err) = app.api(method.clone(), &path, ACME_KEY, Some(body.clone())).await;
        assert_eq!(status, 422, "{method} {path} {body}: {err}");
    }
    let (status, _) = app.api(Method::GET, &format!("/api/webhooks/{id}/secret"), GLOBEX_KEY, None).await;
    assert_eq!(status, 404, "another tenant's secret");
    let (status, _) = app.api(Method::POST, &format!("/api/webhooks/{id}/secret/rotate"), GLOBEX_KEY, None).await;
    assert_eq!(status, 404);
    let (status, _) = app.api(Method::GET, "/api/webhooks/not-an-id/secret", ACME_KEY, None).await;
    assert_eq!(status, 404);
    app.stop().await;
}
