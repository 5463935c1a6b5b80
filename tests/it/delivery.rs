//! End to end through the API, the queue, the worker and a real receiver.

use std::time::Duration;

use relay_core::Timestamp;
use relay_core::domain::WebhookSecret;
use relay_core::signing::{verify_relay, verify_standard};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, Receiver, Reply, TestApp};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_delivery_arrives_signed_and_verifiable_both_ways() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (webhook_id, secret) = app.create_webhook(&receiver.url(), &["candidate.created"]).await;
    let secret = WebhookSecret::parse(&secret).unwrap();

    let event_id = app.send_event("candidate.created").await;
    let got = receiver.wait_for(1, WAIT).await;
    let delivery = &got[0];

    assert_eq!(delivery.header("content-type"), "application/json");
    assert_eq!(delivery.header("user-agent"), "Webhook-Relay/1.0");
    assert_eq!(delivery.header("webhook-id"), event_id);
    assert_eq!(delivery.header("webhook-timestamp"), delivery.header("x-relay-timestamp"));
    let ts: i64 = delivery.header("webhook-timestamp").parse().unwrap();
    assert!((Timestamp::now().as_secs() - ts).abs() <= 5);

    // Our own verifiers, and the Standard Webhooks reference library.
    assert!(verify_standard(
        &secret,
        delivery.header("webhook-id"),
        delivery.header("webhook-timestamp"),
        &delivery.body,
        delivery.header("webhook-signature"),
        Timestamp::now().as_secs(),
        300
    ));
    assert!(verify_relay(&secret, &delivery.body, delivery.header("x-relay-signature")));
    let reference = standardwebhooks::Webhook::new(secret.expose()).unwrap();
    reference.verify(&delivery.body, &delivery.headers).expect("Standard Webhooks library verifies the delivery");

    let body = delivery.json();
    assert_eq!(body["eventId"], event_id);
    assert_eq!(body["eventType"], "candidate.created");
    assert_eq!(body["eventName"], "candidate.created happened");
    assert_eq!(body["data"], json!({"n": 1, "name": "Zoë"}));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body.as_object().unwrap().len(), 5);
    assert_eq!(delivery.body.len(), serde_json::to_vec(&body).unwrap().len(), "compact JSON, no white space");

    let logged = app.wait_for_delivery(&webhook_id, &event_id, "succeeded").await;
    assert_eq!(logged["attemptCount"], 1);
    assert_eq!(logged["lastStatusCode"], 200);
    assert_eq!(logged["attempts"][0]["statusCode"], 200);
    assert_eq!(logged["attempts"][0]["trigger"], "scheduled");
    app.stop().await;
}

/// The seed's verification snippet, run by Node.js on a real delivery.
#[tokio::test]
async fn the_seeds_javascript_snippet_verifies_a_delivery() {
    let Some(node) = crate::tools::required_tool("node") else { return };
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    app.send_event("job.created").await;
    let delivery = receiver.wait_for(1, WAIT).await.remove(0);

    let script = r#"
        const crypto = require('crypto');
        function verifyWebhook(payload, signature, secret) {
          const hmac = crypto.createHmac('sha256', secret);
          hmac.update(JSON.stringify(payload));
          const expected = hmac.digest('hex');
          return crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(expected));
        }
        const [body, signature, secret] = process.argv.slice(1);
        process.exit(verifyWebhook(JSON.parse(body), signature, secret) ? 0 : 1);
    "#;
    let status = std::process::Command::new(node)
        .arg("-e")
        .arg(script)
        .arg(String::from_utf8(delivery.body.to_vec()).unwrap())
        .arg(delivery.header("x-relay-signature"))
        .arg(&secret)
        .status()
        .unwrap();
    assert!(status.success(), "the seed's snippet rejected X-Relay-Signature");
    app.stop().await;
}

/// SECURITY.md's Python example, run by python3 on a real delivery: both signatures verify, a
/// tampered body and a wrong secret do not.
#[tokio::test]
async fn the_python_example_in_security_md_verifies_a_delivery() {
    let Some(python) = crate::tools::required_tool("python3") else { return };
    let document = include_str!("../../SECURITY.md");
    let example = document
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("SECURITY.md has a python example");
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    app.send_event("job.created").await;
    let delivery = receiver.wait_for(1, WAIT).await.remove(0);
    let headers: serde_json::Map<String, Value> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|name| ((*name).to_owned(), Value::from(delivery.header(name))))
        .collect();
    let driver = r#"
import json, sys
body, headers, relay_signature, secret = sys.argv[1].encode(), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
print(verify_standard_signature(body, headers, secret), verify_relay_signature(body, relay_signature, secret))
"#;
    let run = |body: &str, secret: &str| {
        let output = std::process::Command::new(&python)
            .arg("-c")
            .arg(format!("{example}\n{driver}"))
            .arg(body)
            .arg(Value::Object(headers.clone()).to_string())
            .arg(delivery.header("x-relay-signature"))
            .arg(secret)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let body = String::from_utf8(delivery.body.to_vec()).unwrap();
    assert_eq!(run(&body, &secret), "True True");
    assert_eq!(run(&body.replace("Zo", "Zz"), &secret), "False False", "a tampered body verified");
    let other = WebhookSecret::generate();
    assert_eq!(run(&body, other.expose()), "False False", "a wrong secret verified");
    app.stop().await;
}

#[tokio::test]
async fn only_subscribed_active_webhooks_receive_an_event() {
    let app = TestApp::spawn().await;
    let jobs = Receiver::start().await;
    let candidates = Receiver::start().await;
    let inactive = Receiver::start().await;
    app.create_webhook(&jobs.url(), &["job.created", "job.updated"]).await;
    app.create_webhook(&candidates.url(), &["candidate.created"]).await;
    let (inactive_id, _) = app.create_webhook(&inactive.url(), &["job.created"]).await;
    let (status, _) =
        app.api(Method::PUT, &format!("/api/webhooks/{inactive_id}"), ACME_KEY, Some(json!({"isActive": false}))).await;
    assert_eq!(status, 200);

    let job = app.send_event("job.created").await;
    let candidate = app.send_event("candidate.created").await;
    let updated = app.send_event("job.updated").await;

    let to_jobs = jobs.wait_for(2, WAIT).await;
    let to_candidates = candidates.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut job_ids: Vec<&str> = to_jobs.iter().map(|r| r.header("webhook-id")).collect();
    job_ids.sort();
    let mut expected = vec![job.as_str(), updated.as_str()];
    expected.sort();
    assert_eq!(job_ids, expected);
    assert_eq!(jobs.received().len(), 2);
    assert_eq!(to_candidates.len(), 1);
    assert_eq!(to_candidates[0].header("webhook-id"), candidate);
    assert!(inactive.received().is_empty(), "an inactive webhook got a delivery");
    assert!(app.deliveries(&inactive_id).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn retries_follow_the_schedule_and_every_attempt_is_logged() {
    let app = TestApp::spawn_with(&[("WEBHOOK_RETRY_DELAY", "150"), ("WEBHOOK_MAX_RETRIES", "3")]).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500).body("boom"), Reply::status(502), Reply::status(503)]);
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event_id = app.send_event("job.created").await;

    let got = receiver.wait_for(4, WAIT).await;
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    // 150, 300, 600 ms, each +/-20% jitter; a little slack above for scheduling.
    for (i, (gap, nominal)) in gaps.iter().zip([150u64, 300, 600]).enumerate() {
        let low = Duration::from_millis(nominal * 8 / 10);
        let high = Duration::from_millis(nominal * 12 / 10 + 150);
        assert!(*gap >= low && *gap <= high, "gap {i} was {gap:?}, expected {low:?}..{high:?}");
    }
    assert!(got.iter().all(|r| r.header("webhook-id") == event_id), "webhook-id is stable across retries");

    let delivery = app.wait_for_delivery(&webhook_id, &event_id, "succeeded").await;
    assert_eq!(delivery["attemptCount"], 4);
    let attempts = delivery["attempts"].as_array().unwrap();
    let statuses: Vec<&Value> = attempts.iter().map(|a| &a["statusCode"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(502), &json!(503), &json!(200)]);
    let numbers: Vec<u64> = attempts.iter().map(|a| a["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(attempts[0]["responseBody"], "boom");
    assert_eq!(attempts[0]["error"], "HTTP 500");
    assert!(attempts.iter().all(|a| a["durationMs"].is_u64() && a["createdAt"].is_string()));
    app.stop().await;
}

#[tokio::test]
async fn the_last_failure_marks_failed_and_a_manual_retry_delivers() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(500));
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    assert_eq!(failed["attemptCount"], 3, "1 attempt + WEBHOOK_MAX_RETRIES=2 retries");
    assert_eq!(failed["lastStatusCode"], 500);
    assert_eq!(failed["nextAttemptAt"], Value::Null);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 3, "nothing after the last retry");

    receiver.always(Reply::status(200));
    let (status, body) =
        app.api(Method::POST, &format!("/api/webhooks/{webhook_id}/retry/{event_id}"), ACME_KEY, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "succeeded");
    assert_eq!(body["data"]["attemptCount"], 4);
    let last = &body["data"]["attempts"][3];
    assert_eq!(last["trigger"], "manual");
    assert_eq!(last["statusCode"], 200);
    assert_eq!(receiver.received().len(), 4);
    assert_eq!(receiver.received()[3].header("webhook-id"), event_id);
    app.stop().await;
}

#[tokio::test]
async fn a_manual_retry_needs_an_existing_delivery_of_the_tenants_webhook() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let other_event = app.send_event("candidate.created").await;
    let (status, body) =
        app.api(Method::POST, &format!("/api/webhooks/{webhook_id}/retry/{other_event}"), ACME_KEY, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = app
        .api(Method::POST, &format!("/api/webhooks/{webhook_id}/retry/{other_event}"), crate::helpers::GLOBEX_KEY, None)
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn gone_disables_the_webhook() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(410)]);
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    assert_eq!(failed["attemptCount"], 1, "410 is not retried");
    let (_, webhook) = app.api(Method::GET, &format!("/api/webhooks/{webhook_id}"), ACME_KEY, None).await;
    assert_eq!(webhook["data"]["isActive"], false);
    assert_eq!(webhook["data"]["disabledReason"], "endpoint answered 410 Gone");

    app.send_event("job.created").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "a disabled webhook gets nothing more");

    let (status, body) =
        app.api(Method::POST, &format!("/api/webhooks/{webhook_id}/retry/{event_id}"), ACME_KEY, None).await;
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (409, Some("webhook_disabled")));

    let (_, enabled) =
        app.api(Method::PUT, &format!("/api/webhooks/{webhook_id}"), ACME_KEY, Some(json!({"isActive": true}))).await;
    assert_eq!(enabled["data"]["isActive"], true);
    assert_eq!(enabled["data"]["disabledReason"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let app = TestApp::spawn_with(&[("WEBHOOK_RETRY_DELAY", "10")]).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(429).header("retry-after", "1")]);
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event_id = app.send_event("job.created").await;
    let got = receiver.wait_for(2, WAIT).await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}, before Retry-After: 1");
    assert!(gap < Duration::from_millis(1500), "retried after {gap:?}");
    app.wait_for_delivery(&webhook_id, &event_id, "succeeded").await;
    app.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed_and_timeouts_fail_the_attempt() {
    let app = TestApp::spawn_with(&[("WEBHOOK_TIMEOUT", "300"), ("WEBHOOK_MAX_RETRIES", "0")]).await;
    let target = Receiver::start().await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(302).header("location", &target.url())]);
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event_id = app.send_event("job.created").await;
    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    assert_eq!(failed["lastStatusCode"], 302);
    assert!(target.received().is_empty(), "the redirect was followed");

    receiver.script([Reply::status(200).delay(Duration::from_secs(2))]);
    let slow_event = app.send_event("job.created").await;
    let failed = app.wait_for_delivery(&webhook_id, &slow_event, "failed").await;
    assert_eq!(failed["lastStatusCode"], Value::Null);
    assert_eq!(failed["attempts"][0]["error"], "timed out after 300 ms");
    app.stop().await;
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allow_listed() {
    // No allow-list: loopback is private.
    let app = TestApp::spawn_with(&[("WEBHOOK_ALLOWED_CIDRS", "192.0.2.0/24"), ("WEBHOOK_MAX_RETRIES", "0")]).await;
    let receiver = Receiver::start().await;

    // A literal private address is refused at registration...
    for url in [receiver.url(), "http://169.254.169.254/latest/meta-data".to_owned(), "http://10.0.0.1/hook".to_owned()]
    {
        let (status, body) = app
            .api(
                Method::POST,
                "/api/webhooks",
                ACME_KEY,
                Some(json!({"name": "x", "url": url, "eventTypes": ["job.created"]})),
            )
            .await;
        assert_eq!(status, 422, "{url}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("blocked"), "{body}");
    }

    // ...and a name that resolves to one is refused at delivery, without connecting.
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    let (webhook_id, _) = app.create_webhook(&url, &["job.created"]).await;
    let event_id = app.send_event("job.created").await;
    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    let error = failed["attempts"][0]["error"].as_str().unwrap();
    assert!(error.contains("blocked") && error.contains("loopback"), "{error}");
    assert!(receiver.received().is_empty(), "the guard let a request through");
    app.stop().await;

    // The metadata address stays refused even when its range is allow-listed.
    let app = TestApp::spawn_with(&[("WEBHOOK_ALLOWED_CIDRS", "169.254.0.0/16,127.0.0.0/8")]).await;
    let (status, _) = app
        .api(
            Method::POST,
            "/api/webhooks",
            ACME_KEY,
            Some(json!({"name": "x", "url": "http://169.254.169.254/", "eventTypes": ["job.created"]})),
        )
        .await;
    assert_eq!(status, 422);
    app.stop().await;
}

#[tokio::test]
async fn a_duplicate_message_for_a_succeeded_delivery_sends_nothing() {
    use relay_core::app::RelayMessage;
    use relay_core::domain::{EventId, WebhookId};

    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event_id = app.send_event("job.created").await;
    app.wait_for_delivery(&webhook_id, &event_id, "succeeded").await;

    let duplicate = RelayMessage::Deliver {
        event_id: EventId::parse(&event_id).unwrap(),
        webhook_id: WebhookId::parse(&webhook_id).unwrap(),
        deferrals: 0,
    };
    app.backends.queue.send(&duplicate.to_body(), Duration::ZERO).await.unwrap();
    let dispatch_again = RelayMessage::Dispatch { event_id: EventId::parse(&event_id).unwrap() };
    app.backends.queue.send(&dispatch_again.to_body(), Duration::ZERO).await.unwrap();
    crate::helpers::eventually(WAIT, || async {
        let (dispatch, delivery) =
            (app.backends.queue.depth().await.unwrap(), app.backends.delivery_queue.depth().await.unwrap());
        let held = |d: relay_core::ports::QueueDepth| d.visible + d.in_flight + d.delayed;
        (held(dispatch) + held(delivery) == 0).then_some(())
    })
    .await
    .expect("queue drained");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.received().len(), 1);
    app.stop().await;
}
