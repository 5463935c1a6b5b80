//! The events API: validation, idempotency, auth, paging.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, SERVICE_TOKEN, TestApp};

fn event(event_type: &str) -> Value {
    json!({"eventType": event_type, "eventName": "Candidate John Doe Created", "payload": {"candidateId": "123"}, "source": "candidates-service"})
}

async fn body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn an_accepted_event_is_returned_and_readable() {
    let app = TestApp::spawn().await;
    let (status, created) = body(app.post_event(event("candidate.created")).await).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(created["success"], true);
    let data = &created["data"];
    for field in ["eventId", "eventType", "eventName", "payload", "source", "createdAt"] {
        assert!(!data[field].is_null(), "missing {field}: {data}");
    }
    assert_eq!(data["payload"], json!({"candidateId": "123"}));

    let id = data["eventId"].as_str().unwrap();
    let response = app
        .http
        .get(app.url(&format!("/api/events/{id}")))
        .header("x-service-token", SERVICE_TOKEN)
        .send()
        .await
        .unwrap();
    let (status, fetched) = body(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["data"], *data);

    for missing in ["/api/events/00000000-0000-0000-0000-000000000000", "/api/events/not-an-id"] {
        let response = app.http.get(app.url(missing)).header("x-service-token", SERVICE_TOKEN).send().await.unwrap();
        let (status, err) = body(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(err["error"]["code"], "not_found");
    }
    app.stop().await;
}

#[tokio::test]
async fn idempotency_key_replays_the_original_and_refuses_a_different_body() {
    let app = TestApp::spawn().await;
    let send = |body: Value| {
        app.http
            .post(app.url("/api/events"))
            .header("x-service-token", SERVICE_TOKEN)
            .header("idempotency-key", "order-42")
            .json(&body)
            .send()
    };
    let first = send(event("job.created")).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let again = send(event("job.created")).await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["data"], first["data"], "the original event, not a new one");

    let (status, conflict) = body(send(event("job.updated")).await.unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(conflict["error"]["code"], "idempotency_key_reused");

    let list = app.http.get(app.url("/api/events")).header("x-service-token", SERVICE_TOKEN).send().await.unwrap();
    let (_, list) = body(list).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "only one event was stored");

    let bad_key = app
        .http
        .post(app.url("/api/events"))
        .header("x-service-token", SERVICE_TOKEN)
        .header("idempotency-key", "x".repeat(300))
        .json(&event("job.created"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_duplicates_store_one_event() {
    let app = TestApp::spawn().await;
    let requests = (0..20).map(|_| {
        app.http
            .post(app.url("/api/events"))
            .header("x-service-token", SERVICE_TOKEN)
            .header("idempotency-key", "same-key")
            .json(&event("job.created"))
            .send()
    });
    let responses = futures_join(requests).await;
    let mut ids = std::collections::HashSet::new();
    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.unwrap();
        ids.insert(body["data"]["eventId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    app.stop().await;
}

async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_envelope() {
    let app = TestApp::spawn().await;
    let post_raw = |raw: &'static str| {
        app.http.post(app.url("/api/events")).header("x-service-token", SERVICE_TOKEN).body(raw).send()
    };

    let (status, err) = body(post_raw("{not json").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["success"], false);
    assert_eq!(err["error"]["code"], "invalid_json");

    let (status, err) = body(app.post_event(event("candidate.deleted")).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["code"], "validation_failed");
    assert_eq!(err["error"]["details"][0]["field"], "eventType");

    let (status, err) = body(app.post_event(json!({"eventType": "job.created"})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> =
        err["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["eventName", "payload"]);

    let (status, _) =
        body(app.post_event(json!({"eventType": "job.created", "eventName": "x", "payload": {}, "extra": 1})).await)
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused");
    let (status, _) = body(post_raw("[1, 2]").await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = body(app.post_event(json!({"eventType": 5, "eventName": "x", "payload": {}})).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let big = "x".repeat(300 * 1024);
    let (status, err) =
        body(app.post_event(json!({"eventType": "job.created", "eventName": "big", "payload": {"blob": big}})).await)
            .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(err["error"]["code"], "payload_too_large");
    assert!(err["error"]["message"].as_str().unwrap().contains("262144"));

    let response = app.http.get(app.url("/api/nothing-here")).send().await.unwrap();
    let (status, err) = body(response).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "not_found");
    let response =
        app.http.delete(app.url("/api/events")).header("x-service-token", SERVICE_TOKEN).send().await.unwrap();
    let (status, err) = body(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(err["error"]["code"], "method_not_allowed");
    app.stop().await;
}

#[tokio::test]
async fn the_events_api_needs_a_service_token() {
    let app = TestApp::spawn().await;
    let post = |header: Option<(&'static str, &'static str)>| {
        let mut request = app.http.post(app.url("/api/events")).json(&event("job.created"));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.send()
    };
    let (status, err) = body(post(None).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"]["code"], "unauthorized");
    let (status, _) = body(post(Some(("x-service-token", "wrong-token-wrong-token"))).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, err) = body(post(Some(("x-api-key", ACME_KEY))).await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an API key is the wrong credential here");
    assert_eq!(err["error"]["code"], "forbidden");
    let response = app.http.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn events_list_filters_and_pages() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for i in 0..5 {
        let event_type = if i % 2 == 0 { "job.created" } else { "job.updated" };
        let mut body = event(event_type);
        body["source"] = json!(if i < 3 { "jobs" } else { "ats" });
        let (_, data) = self::body(app.post_event(body).await).await;
        created.push(data["data"]["eventId"].as_str().unwrap().to_owned());
    }
    let get = |query: String| {
        let request = app.http.get(app.url(&format!("/api/events?{query}"))).header("x-service-token", SERVICE_TOKEN);
        async move { body(request.send().await.unwrap()).await }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["data"].as_array().unwrap().iter().map(|e| e["eventId"].as_str().unwrap().to_owned()).collect()
    };

    let (_, all) = get(String::new()).await;
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all["pagination"], json!({"limit": 50, "offset": 0, "nextCursor": null}));

    let (_, jobs) = get("eventType=job.created".into()).await;
    assert_eq!(ids(&jobs), [created[4].clone(), created[2].clone(), created[0].clone()]);
    let (_, ats) = get("source=ats".into()).await;
    assert_eq!(ids(&ats), [created[4].clone(), created[3].clone()]);
    let (_, both) = get("source=jobs&eventType=job.updated".into()).await;
    assert_eq!(ids(&both), [created[1].clone()]);

    let (_, offset) = get("limit=2&offset=1".into()).await;
    assert_eq!(ids(&offset), newest_first[1..3]);

    let mut paged = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let (status, page) = get(query.clone()).await;
        assert_eq!(status, StatusCode::OK);
        paged.extend(ids(&page));
        match page["pagination"]["nextCursor"].as_str() {
            Some(cursor) => query = format!("limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, newest_first);

    for bad in ["limit=0", "limit=501", "limit=abc", "offset=-3", "cursor=%%%", "eventType=nope.nope"] {
        let (status, err) = get(bad.into()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {err}");
    }
    app.stop().await;
}

#[tokio::test]
async fn event_stats_count_by_type() {
    let app = TestApp::spawn().await;
    for t in ["job.created", "job.created", "job.updated"] {
        assert_eq!(app.post_event(event(t)).await.status(), StatusCode::ACCEPTED);
    }
    let get = |query: &'static str| {
        app.http.get(app.url(&format!("/api/events/stats{query}"))).header("x-service-token", SERVICE_TOKEN).send()
    };
    let (status, stats) = body(get("").await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["data"]["total"], 3);
    assert_eq!(stats["data"]["byType"]["job.created"], 2);
    assert_eq!(stats["data"]["byType"]["job.updated"], 1);
    assert_eq!(stats["data"]["byType"]["assessment.graded"], 0, "every configured type is listed");
    let (_, future) = body(get("?since=2999-01-01T00:00:00Z").await.unwrap()).await;
    assert_eq!(future["data"]["total"], 0);
    let (status, _) = body(get("?since=last-week").await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let response = app.http.get(app.url("/api/events/stats")).header("x-api-key", ACME_KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

/// relay-local's embedded queue is RAM: past `QUEUE_MAX_BACKLOG` messages (both lanes),
/// `POST /api/events` answers 503 with `Retry-After` and stores nothing; below it again, events
/// are accepted. (No pollers run here, so the backlog only grows.)
#[tokio::test]
async fn a_full_backlog_answers_503_with_retry_after_and_stores_nothing() {
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt;

    let config = crate::helpers::test_config(&[("QUEUE_MAX_BACKLOG", "100")]);
    let relay = relay_local::Relay::new(&config, relay_local::Backends::in_memory(config.memory)).unwrap();
    let router = relay.router();
    let post = |n: u32| {
        axum::http::Request::builder()
            .method("POST")
            .uri("/api/events")
            .header("x-service-token", SERVICE_TOKEN)
            .header("content-type", "application/json")
            .body(Body::from(json!({"eventType": "job.created", "eventName": "n", "payload": {"n": n}}).to_string()))
            .unwrap()
    };
    for n in 0..100 {
        assert_eq!(router.clone().oneshot(post(n)).await.unwrap().status(), StatusCode::ACCEPTED, "event {n}");
    }
    let refused = router.clone().oneshot(post(100)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = serde_json::from_slice(&to_bytes(refused.into_body(), 1 << 16).await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    let job_created = relay_core::domain::EventType::from_store("job.created").unwrap();
    let since = relay_core::Timestamp::from_millis(0);
    let stored = relay.backends.events.count_by_type(&[job_created], since).await.unwrap();
    assert_eq!(stored, [100], "the refused event was not stored");

    // One message handled: room for one more.
    let queue = &relay.backends.queue;
    let message = queue.receive(1, std::time::Duration::ZERO).await.unwrap().remove(0);
    queue.delete(&message.receipt_handle).await.unwrap();
    assert_eq!(router.clone().oneshot(post(101)).await.unwrap().status(), StatusCode::ACCEPTED);
}

/// A replay sends the event's dispatch again (the first request may have died before queueing
/// it); that second dispatch repeats no delivery and reaches no webhook created since.
#[tokio::test]
async fn a_replay_dispatches_again_without_a_second_delivery_or_a_new_webhook() {
    let app = TestApp::spawn().await;
    let first = crate::helpers::Receiver::start().await;
    app.create_webhook(&first.url(), &["job.created"]).await;
    let send = || {
        app.http
            .post(app.url("/api/events"))
            .header("x-service-token", SERVICE_TOKEN)
            .header("idempotency-key", "replay-7")
            .json(&event("job.created"))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), StatusCode::ACCEPTED);
    first.wait_for(1, std::time::Duration::from_secs(10)).await;
    let second = crate::helpers::Receiver::start().await;
    app.create_webhook(&second.url(), &["job.created"]).await;
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(first.received().len(), 1, "a replay repeats no delivery");
    assert!(second.received().is_empty(), "a replay reaches no webhook created since");
    app.stop().await;
}
