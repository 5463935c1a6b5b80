//! Per-webhook flow through the running relay: the circuit breaker, `maxInFlight`,
//! `rateLimit`, ordered delivery, and one tenant's hanging receiver not delaying another's
//! deliveries.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, GLOBEX_KEY, Received, Receiver, Reply, TestApp, eventually};

const WAIT: Duration = Duration::from_secs(20);

/// Registers a webhook for the tenant of `key` with `fields` besides its name, URL and types.
async fn webhook(app: &TestApp, key: &str, url: &str, fields: Value) -> String {
    let mut body = json!({"name": "flow", "url": url, "eventTypes": ["job.created"]});
    body.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    let (status, created) = app.api(Method::POST, "/api/webhooks", key, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["data"]["id"].as_str().unwrap().to_owned()
}

/// Posts a `job.created` event for `tenant` carrying `n`; returns its id.
async fn post(app: &TestApp, tenant: &str, n: usize) -> String {
    let response = app
        .post_event(json!({"eventType": "job.created", "eventName": "Job", "tenant": tenant, "payload": {"n": n}}))
        .await;
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["data"]["eventId"].as_str().unwrap().to_owned()
}

async fn get_webhook(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.api(Method::GET, &format!("/api/webhooks/{id}"), ACME_KEY, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

fn numbers(received: &[Received]) -> Vec<u64> {
    received.iter().map(|r| r.json()["data"]["n"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn the_fields_round_trip_and_bad_values_are_refused_by_name() {
    let app = TestApp::spawn().await;
    let id = webhook(
        &app,
        ACME_KEY,
        "http://127.0.0.1:9/x",
        json!({"maxInFlight": 3, "rateLimit": 20, "ordering": "ordered"}),
    )
    .await;
    let shown = get_webhook(&app, &id).await;
    assert_eq!(
        (&shown["maxInFlight"], &shown["rateLimit"], &shown["ordering"]),
        (&json!(3), &json!(20), &json!("ordered"))
    );
    assert_eq!(shown["circuit"], json!({"state": "closed", "failures": 0, "openUntil": null}));
    let (status, updated) = app
        .api(
            Method::PUT,
            &format!("/api/webhooks/{id}"),
            ACME_KEY,
            Some(json!({"maxInFlight": null, "rateLimit": null, "ordering": "unordered"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let data = &updated["data"];
    assert_eq!(
        (&data["maxInFlight"], &data["rateLimit"], &data["ordering"]),
        (&json!(10), &Value::Null, &json!("unordered")),
        "back to the defaults"
    );

    let body = json!({"name": "x", "url": "http://127.0.0.1:9/x", "eventTypes": ["job.created"],
                      "maxInFlight": 0, "rateLimit": 100_000, "ordering": "sorted"});
    let (status, refused) = app.api(Method::POST, "/api/webhooks", ACME_KEY, Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let mut fields: Vec<&str> =
        refused["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["maxInFlight", "ordering", "rateLimit"]);
    app.stop().await;
}

/// The breaker opens after a run of failures; while it is open no attempt is made (the
/// delivery waits, its attempts not counted); after the cool-down one probe goes, and its
/// success closes it.
async fn breaker(app: TestApp) {
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(500));
    let id = webhook(&app, ACME_KEY, &receiver.url(), json!({"retryDelayMs": 50, "maxRetries": 10})).await;
    let event = post(&app, "acme", 1).await;

    receiver.wait_for(2, WAIT).await;
    let open = eventually(WAIT, || async {
        let shown = get_webhook(&app, &id).await;
        (shown["circuit"]["state"] == "open").then_some(shown)
    })
    .await
    .expect("the breaker never opened");
    assert!(open["circuit"]["failures"].as_u64().unwrap() >= 2, "{open}");
    assert!(open["circuit"]["openUntil"].is_string(), "{open}");
    // Retries are due every ~100 ms, but none is attempted while the breaker is open.
    let before = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(receiver.received().len(), before, "an attempt was made through an open breaker");

    receiver.always(Reply::status(200));
    app.wait_for_delivery(&id, &event, "succeeded").await;
    let closed = get_webhook(&app, &id).await;
    assert_eq!(closed["circuit"], json!({"state": "closed", "failures": 0, "openUntil": null}));
    let delivery = app.deliveries(&id).await.into_iter().find(|d| d["eventId"] == event).unwrap();
    assert_eq!(
        delivery["attemptCount"].as_u64().unwrap() as usize,
        receiver.received().len(),
        "waiting counted as attempts: {delivery}"
    );
    app.stop().await;
}

/// Requests held for 400 ms each: with `maxInFlight` 2 no more than two overlap, and every
/// event is delivered with one attempt.
async fn max_in_flight(app: TestApp) {
    let receiver = Receiver::start().await;
    let hold = Duration::from_millis(400);
    receiver.always(Reply::status(200).delay(hold));
    let id = webhook(&app, ACME_KEY, &receiver.url(), json!({"maxInFlight": 2})).await;
    for n in 0..8 {
        post(&app, "acme", n).await;
    }
    let got = receiver.wait_for(8, WAIT).await;
    let most = got
        .iter()
        .map(|r| got.iter().filter(|other| other.at <= r.at && r.at.duration_since(other.at) < hold).count())
        .max()
        .unwrap();
    assert!(most <= 2, "{most} deliveries in flight at once");
    eventually(WAIT, || async {
        let done = app.deliveries(&id).await;
        (done.len() == 8 && done.iter().all(|d| d["status"] == "succeeded" && d["attemptCount"] == 1)).then_some(())
    })
    .await
    .expect("every delivery succeeds with one attempt");
    app.stop().await;
}

/// `rateLimit` 4: twelve events posted at once arrive about 250 ms apart, spread rather than
/// in bursts, none failed and no attempt counted for the wait.
async fn rate_limit(app: TestApp) {
    let receiver = Receiver::start().await;
    let id = webhook(&app, ACME_KEY, &receiver.url(), json!({"rateLimit": 4})).await;
    for n in 0..12 {
        post(&app, "acme", n).await;
    }
    let got = receiver.wait_for(12, WAIT).await;
    let mut at: Vec<Instant> = got.iter().map(|r| r.at).collect();
    at.sort();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    let span = at[11] - at[0];
    let rate = 11.0 / span.as_secs_f64();
    assert!(rate <= 4.4, "arrived at {rate:.2}/s, over the limit of 4: gaps {gaps:?}");
    assert!(rate >= 2.5, "arrived at only {rate:.2}/s: gaps {gaps:?}");
    assert!(gaps.iter().all(|g| *g >= Duration::from_millis(180)), "a burst: gaps {gaps:?}");
    eventually(WAIT, || async {
        let done = app.deliveries(&id).await;
        (done.len() == 12 && done.iter().all(|d| d["status"] == "succeeded" && d["attemptCount"] == 1)).then_some(())
    })
    .await
    .expect("every delivery succeeds with one attempt");
    app.stop().await;
}

/// An ordered webhook whose receiver fails the third event twice sees 1, 2, 3, 3, 3, 4, 5:
/// never 4 before 3 succeeded.
pub async fn ordered(app: TestApp) {
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(200), Reply::status(200), Reply::status(500), Reply::status(503)]);
    let id = webhook(&app, ACME_KEY, &receiver.url(), json!({"ordering": "ordered", "retryDelayMs": 100})).await;
    let mut events = Vec::new();
    for n in 1..=5 {
        events.push(post(&app, "acme", n).await);
    }
    let got = receiver.wait_for(7, WAIT).await;
    assert_eq!(numbers(&got), [1, 2, 3, 3, 3, 4, 5]);
    for event in &events {
        app.wait_for_delivery(&id, event, "succeeded").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 7, "delivered again");
    app.stop().await;
}

/// Tenant A's 60 webhooks at a receiver that never answers hold at most
/// `TENANT_MAX_IN_FLIGHT` deliveries; tenant B's delivery, posted after, is not kept waiting
/// behind them.
#[tokio::test]
async fn a_tenant_with_a_hanging_receiver_does_not_delay_another_tenant() {
    let app = TestApp::spawn_with(&[("TENANT_MAX_IN_FLIGHT", "5"), ("WEBHOOK_TIMEOUT", "4000")]).await;
    let hanging = Receiver::start().await;
    hanging.always(Reply::status(200).delay(Duration::from_secs(30)));
    for _ in 0..60 {
        webhook(&app, ACME_KEY, &hanging.url(), json!({})).await;
    }
    let healthy = Receiver::start().await;
    webhook(&app, GLOBEX_KEY, &healthy.url(), json!({})).await;
    post(&app, "acme", 1).await;
    hanging.wait_for(5, WAIT).await;

    let posted = Instant::now();
    post(&app, "globex", 2).await;
    let got = healthy.wait_for(1, WAIT).await;
    let waited = got[0].at - posted;
    assert!(waited < Duration::from_secs(1), "tenant B waited {waited:?} behind tenant A");
    assert!(hanging.received().len() <= 5, "tenant A had more than its share in flight");
    app.stop().await;
}

/// What the breaker test needs: a short cool-down, opening after two failures, many retries.
const BREAKER: [(&str, &str); 3] =
    [("CIRCUIT_BREAKER_THRESHOLD", "2"), ("CIRCUIT_BREAKER_COOLDOWN", "1500"), ("WEBHOOK_MAX_RETRIES", "10")];

#[tokio::test]
async fn the_breaker_opens_after_failures_waits_and_a_probe_closes_it() {
    breaker(TestApp::spawn_with(&BREAKER).await).await;
}

#[tokio::test]
async fn max_in_flight_caps_the_concurrent_deliveries_of_a_webhook() {
    max_in_flight(TestApp::spawn().await).await;
}

#[tokio::test]
async fn a_rate_limit_spreads_deliveries_at_the_rate() {
    rate_limit(TestApp::spawn().await).await;
}

#[tokio::test]
async fn an_ordered_webhook_gets_its_events_in_order_a_failure_holding_back_the_rest() {
    ordered(TestApp::spawn().await).await;
}

/// The relay with its delivery log in PostgreSQL and its gates in Redis, with `vars`.
async fn on_postgres_and_redis(vars: &[(&str, &str)]) -> Option<(TestApp, crate::pg::TestDatabase)> {
    crate::redis_server::store().await?;
    let database = crate::pg::database().await?;
    let redis = crate::redis_server::url();
    let mut all = vec![("DATABASE_URL", database.url()), ("REDIS_URL", redis.as_str())];
    all.extend_from_slice(vars);
    let app = TestApp::spawn_with(&all).await;
    Some((app, database))
}

#[tokio::test]
async fn the_breaker_holds_in_redis() {
    let Some((app, database)) = on_postgres_and_redis(&BREAKER).await else { return };
    breaker(app).await;
    database.drop().await;
}

#[tokio::test]
async fn max_in_flight_holds_in_redis() {
    let Some((app, database)) = on_postgres_and_redis(&[]).await else { return };
    max_in_flight(app).await;
    database.drop().await;
}

#[tokio::test]
async fn a_rate_limit_holds_in_redis() {
    let Some((app, database)) = on_postgres_and_redis(&[]).await else { return };
    rate_limit(app).await;
    database.drop().await;
}

#[tokio::test]
async fn ordered_delivery_holds_with_the_log_in_postgres() {
    let Some((app, database)) = on_postgres_and_redis(&[]).await else { return };
    ordered(app).await;
    database.drop().await;
}

/// On SQS FIFO (LocalStack) and DynamoDB (moto): the ordered lane is a real FIFO queue, whose
/// batches may hold several events of one webhook.
#[tokio::test]
async fn ordered_delivery_holds_on_the_emulators() {
    if crate::aws::sqs().await.is_none() || crate::aws::dynamodb().await.is_none() {
        return;
    }
    // Event 3 fails twice: two retries needed.
    let vars = [&crate::aws::QUICK_RETRIES[..], &[("WEBHOOK_MAX_RETRIES", "2")]].concat();
    let (sdk, config) = crate::aws::fresh_resources("ordered", &vars).await;
    ordered(TestApp::start(&config, relay_local::aws_backends(&config, &sdk).unwrap()).await).await;
}
