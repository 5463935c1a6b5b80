//! Webhook secrets are sealed wherever the relay keeps them: the bytes DynamoDB stores (the
//! webhook items) and the bytes Redis holds (the cache of subscribed webhooks) are read raw,
//! and no secret is found in them, whole or as its key part: not a generated one, not one the
//! tenant brought, not one rotated in, not the one rotated out. Deliveries still verify, so the
//! relay opens what it sealed. In memory the stored webhook holds the sealed form too.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::aws;
use crate::helpers::{ACME_KEY, Receiver, TestApp};
use crate::redis_server;

const IMPORTED: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Every secret a webhook had, and the key part of each (what follows `whsec_`).
fn needles(secrets: &[String]) -> Vec<String> {
    secrets.iter().flat_map(|s| [s.clone(), s.trim_start_matches("whsec_").to_owned()]).collect()
}

fn assert_absent(place: &str, text: &str, needles: &[String]) {
    for needle in needles {
        assert!(!text.contains(needle.as_str()), "a secret in {place}: {needle}");
    }
}

/// Creates webhooks with a generated and an imported secret, rotates one, delivers an event to
/// both (which fills the Redis cache when there is one, and proves the relay opens what it
/// sealed); returns the ids and every secret used.
async fn a_working_life(app: &TestApp) -> (Vec<String>, Vec<String>) {
    let receiver = Receiver::start().await;
    let (generated_id, generated) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let (status, body) = app
        .api(
            Method::POST,
            "/api/webhooks",
            ACME_KEY,
            Some(json!({"name": "imported", "url": receiver.url(), "eventTypes": ["job.created"], "secret": IMPORTED})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let imported_id = body["data"]["id"].as_str().unwrap().to_owned();
    let (status, rotated) =
        app.api(Method::POST, &format!("/api/webhooks/{generated_id}/secret/rotate"), ACME_KEY, None).await;
    assert_eq!(status, 200, "{rotated}");
    let rotated = rotated["data"]["secret"].as_str().unwrap().to_owned();
    let event = app.send_event("job.created").await;
    for id in [&generated_id, &imported_id] {
        app.wait_for_delivery(id, &event, "succeeded").await;
    }
    let deliveries = receiver.wait_for(2, Duration::from_secs(10)).await;
    for delivery in &deliveries {
        let verified = [&rotated, &generated, &IMPORTED.to_owned()].iter().any(|secret| {
            standardwebhooks::Webhook::new(secret).unwrap().verify(&delivery.body, &delivery.headers).is_ok()
        });
        assert!(verified, "a delivery signed with none of the secrets");
    }
    (vec![generated_id, imported_id], vec![generated, IMPORTED.to_owned(), rotated])
}

/// Every key and value Redis holds, as text.
async fn redis_dump(url: &str) -> (Vec<String>, String) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    let mut text = String::new();
    for key in &keys {
        let kind: String = redis::cmd("TYPE").arg(key).query_async(&mut conn).await.unwrap();
        if kind == "string" {
            let value: Vec<u8> = redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap();
            text.push_str(&String::from_utf8_lossy(&value));
        }
        text.push('\n');
    }
    (keys, text)
}

#[tokio::test]
async fn no_secret_in_the_bytes_dynamodb_and_redis_hold() {
    let Some(dynamodb) = aws::dynamodb().await else { return };
    if aws::sqs().await.is_none() {
        return;
    }
    let Some(redis) = redis_server::PrivateRedis::start().await else { return };
    let base = [aws::QUICK_RETRIES.as_slice(), &[("REDIS_URL", redis.url.as_str())]].concat();
    let (sdk, config) = aws::fresh_resources("sealed", &base).await;
    let backends = relay_local::aws_backends(&config, &sdk).unwrap().with_redis(config.redis_url.as_ref()).unwrap();
    let app = TestApp::start(&config, backends).await;
    let (_, secrets) = a_working_life(&app).await;
    let needles = needles(&secrets);

    let table = config.aws.webhooks_table.clone().unwrap();
    let scanned = dynamodb.scan().table_name(&table).send().await.unwrap();
    let items = scanned.items();
    assert!(items.len() >= 2, "the webhooks are in {table}");
    let raw = format!("{items:?}");
    assert_absent("DynamoDB", &raw, &needles);
    let sealed = items.iter().filter_map(|item| item.get("secret")).filter_map(|v| v.as_s().ok()).collect::<Vec<_>>();
    assert!(sealed.len() >= 2 && sealed.iter().all(|s| s.starts_with("enc:v1:test:")), "{sealed:?}");
    assert!(
        items
            .iter()
            .filter_map(|item| item.get("previousSecret"))
            .all(|v| v.as_s().is_ok_and(|s| s.starts_with("enc:v1:")))
    );

    let (keys, values) = redis_dump(&redis.url).await;
    assert!(keys.iter().any(|k| k.starts_with("relay:subscribed:")), "the cache was filled: {keys:?}");
    assert!(values.contains("enc:v1:test:"), "the cached webhooks hold sealed secrets");
    assert_absent("Redis", &values, &needles);
    app.stop().await;
}

#[tokio::test]
async fn the_in_memory_store_holds_sealed_secrets_too() {
    let app = TestApp::spawn().await;
    let (ids, secrets) = a_working_life(&app).await;
    let needles = needles(&secrets);
    for id in ids {
        let webhook =
            app.backends.webhooks.get(relay_core::domain::WebhookId::parse(&id).unwrap()).await.unwrap().unwrap();
        let stored = format!(
            "{} {:?} {}",
            webhook.secret.as_str(),
            webhook.previous_secret,
            serde_json::to_string(&webhook).unwrap()
        );
        assert_absent("the memory store", &stored, &needles);
        assert!(webhook.secret.as_str().starts_with("enc:v1:"));
    }
    app.stop().await;
}
