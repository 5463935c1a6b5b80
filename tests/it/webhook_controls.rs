//! Per-webhook controls through the API: a payload filter decides which events create a
//! delivery, and custom headers go out with every delivery, credentials masked when shown.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, Receiver, Reply, TestApp};

const WAIT: Duration = Duration::from_secs(10);

async fn post(app: &TestApp, payload: Value) -> String {
    let response = app
        .post_event(json!({"eventType": "candidate.status_changed", "eventName": "Status", "payload": payload, "source": "ats"}))
        .await;
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["data"]["eventId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_filter_decides_which_events_are_delivered_and_headers_go_with_each() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let filter = json!({"payload.status": "hired", "payload.salary": {"$gte": 50000},
                        "$or": [{"source": "ats"}, {"payload.priority": {"$in": ["high"]}}]});
    let body = json!({"name": "hires", "url": receiver.url(), "eventTypes": ["candidate.status_changed"],
                      "filter": filter, "headers": {"Authorization": "Bearer s3cr3t-value", "X-Team": "core"}});
    let (status, created) = app.api(Method::POST, "/api/webhooks", ACME_KEY, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["data"]["filter"], filter);
    assert_eq!(created["data"]["headers"], json!({"authorization": "********", "x-team": "core"}));
    assert!(!created.to_string().contains("s3cr3t-value"), "a credential header shown: {created}");
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let secret = created["data"]["secret"].as_str().unwrap().to_owned();
    let (_, listed) = app.api(Method::GET, "/api/webhooks", ACME_KEY, None).await;
    assert!(!listed.to_string().contains("s3cr3t-value"), "{listed}");

    // Neither of the first two passes the filter; the third does.
    let rejected = post(&app, json!({"status": "rejected", "salary": 90000})).await;
    let underpaid = post(&app, json!({"status": "hired", "salary": 40000})).await;
    let hired = post(&app, json!({"status": "hired", "salary": 60000})).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["eventId"], hired.as_str());
    assert_eq!(got[0].header("authorization"), "Bearer s3cr3t-value");
    assert_eq!(got[0].header("x-team"), "core");
    standardwebhooks::Webhook::new(&secret).unwrap().verify(&got[0].body, &got[0].headers).expect("still verifies");
    let logged: Vec<String> =
        app.deliveries(&id).await.iter().map(|d| d["eventId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(logged, std::slice::from_ref(&hired), "a filtered-out event created a delivery");
    assert!(!logged.contains(&rejected) && !logged.contains(&underpaid));

    // Removed with null, the filter lets everything through; headers are replaced as a set.
    let (status, updated) = app
        .api(Method::PUT, &format!("/api/webhooks/{id}"), ACME_KEY, Some(json!({"filter": null, "headers": {}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!((&updated["data"]["filter"], &updated["data"]["headers"]), (&Value::Null, &json!({})));
    let any = post(&app, json!({"status": "rejected"})).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["eventId"], any.as_str());
    assert_eq!(got[1].header("authorization"), "");
    app.stop().await;
}

#[tokio::test]
async fn bad_filters_and_headers_are_refused_naming_the_part() {
    let app = TestApp::spawn().await;
    let refused = |filter: Value, headers: Value| {
        let body = json!({"name": "x", "url": "http://127.0.0.1:9/x", "eventTypes": ["job.created"],
                          "filter": filter, "headers": headers});
        let app = &app;
        async move {
            let (status, body) = app.api(Method::POST, "/api/webhooks", ACME_KEY, Some(body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            body["error"]["details"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["field"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(refused(json!({"payload.amount": {"$gt": true}}), json!({})).await, ["filter.payload.amount.$gt"]);
    assert_eq!(refused(json!({"status": "hired"}), json!({})).await, ["filter.status"]);
    assert_eq!(refused(json!({"$or": [1]}), json!({})).await, ["filter.$or[0]"]);
    assert_eq!(refused(json!("hired"), json!({})).await, ["filter"]);
    assert_eq!(refused(json!({}), json!({"Content-Type": "text/plain"})).await, ["headers.Content-Type"]);
    assert_eq!(refused(json!({}), json!({"webhook-signature": "v1,forged"})).await, ["headers.webhook-signature"]);
    assert_eq!(refused(json!({}), json!({"X-A": "a\r\nX-Injected: 1"})).await, ["headers.X-A"]);
    app.stop().await;
}

/// A webhook's own `timeoutMs`, `maxRetries` and `retryDelayMs` replace the relay's within its
/// bounds (the test relay: 2 s timeout, 2 retries 20 ms apart).
#[tokio::test]
async fn a_webhook_has_its_own_timeout_and_retry_schedule() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(500));
    let body = json!({"name": "slow", "url": receiver.url(), "eventTypes": ["candidate.status_changed"],
                      "maxRetries": 1, "retryDelayMs": 400, "timeoutMs": 1500});
    let (status, created) = app.api(Method::POST, "/api/webhooks", ACME_KEY, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (&created["data"]["maxRetries"], &created["data"]["retryDelayMs"], &created["data"]["timeoutMs"]),
        (&json!(1), &json!(400), &json!(1500))
    );
    let id = created["data"]["id"].as_str().unwrap().to_owned();

    // One retry, about 400 ms (±20%) after the first attempt, then failed: not the relay's two.
    let event = post(&app, json!({"status": "hired"})).await;
    let failed = app.wait_for_delivery(&id, &event, "failed").await;
    assert_eq!(failed["attemptCount"], 2, "{failed}");
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(300), "retried after {gap:?}, before its own 400 ms");

    // A receiver slower than the webhook's timeout times out at it.
    receiver.always(Reply::status(200).delay(Duration::from_millis(1200)));
    let (status, _) = app
        .api(Method::PUT, &format!("/api/webhooks/{id}"), ACME_KEY, Some(json!({"timeoutMs": 300, "maxRetries": 0})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let event = post(&app, json!({"status": "hired"})).await;
    let failed = app.wait_for_delivery(&id, &event, "failed").await;
    assert!(failed["lastError"].as_str().unwrap().contains("timed out after 300 ms"), "{failed}");

    // Back to the relay's with null; out of bounds is 422 naming the field.
    let (status, reset) = app
        .api(
            Method::PUT,
            &format!("/api/webhooks/{id}"),
            ACME_KEY,
            Some(json!({"timeoutMs": null, "maxRetries": null, "retryDelayMs": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&reset["data"]["timeoutMs"], &reset["data"]["maxRetries"]), (&Value::Null, &Value::Null));
    for (field, value) in
        [("timeoutMs", json!(2001)), ("timeoutMs", json!(0)), ("maxRetries", json!(3)), ("retryDelayMs", json!(0))]
    {
        let (status, body) =
            app.api(Method::PUT, &format!("/api/webhooks/{id}"), ACME_KEY, Some(json!({ field: value }))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}={value}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], field);
    }
    app.stop().await;
}
