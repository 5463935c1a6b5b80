//! The management API: webhook CRUD, validation, tenant isolation, auth.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, GLOBEX_KEY, Receiver, SERVICE_TOKEN, TestApp};

fn hook(url: &str) -> Value {
    json!({"name": "HRMS Integration", "url": url, "eventTypes": ["candidate.created", "candidate.updated"]})
}

#[tokio::test]
async fn create_read_update_delete() {
    let app = TestApp::spawn().await;
    let (status, created) =
        app.api(Method::POST, "/api/webhooks", ACME_KEY, Some(hook("https://hrms.example.com/webhooks"))).await;
    assert_eq!(status, StatusCode::CREATED);
    let data = &created["data"];
    let id = data["id"].as_str().unwrap();
    assert_eq!(data["name"], "HRMS Integration");
    assert_eq!(data["url"], "https://hrms.example.com/webhooks");
    assert_eq!(data["eventTypes"], json!(["candidate.created", "candidate.updated"]));
    assert_eq!(data["isActive"], true);
    assert!(data["secret"].as_str().unwrap().starts_with("whsec_"));

    let (status, fetched) = app.api(Method::GET, &format!("/api/webhooks/{id}"), ACME_KEY, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fetched["data"].get("secret").is_none(), "the secret is shown only on create");
    assert_eq!(fetched["data"]["createdAt"], data["createdAt"]);

    let (status, updated) = app
        .api(
            Method::PUT,
            &format!("/api/webhooks/{id}"),
            ACME_KEY,
            Some(json!({"isActive": false, "eventTypes": ["job.created"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["data"]["isActive"], false);
    assert_eq!(updated["data"]["eventTypes"], json!(["job.created"]));
    assert_eq!(updated["data"]["name"], "HRMS Integration", "unlisted fields keep their value");

    let (status, list) = app.api(Method::GET, "/api/webhooks", ACME_KEY, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["pagination"]["nextCursor"], Value::Null);

    let (status, _) = app.api(Method::DELETE, &format!("/api/webhooks/{id}"), ACME_KEY, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.api(Method::GET, &format!("/api/webhooks/{id}"), ACME_KEY, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.api(Method::DELETE, &format!("/api/webhooks/{id}"), ACME_KEY, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn another_tenants_webhook_is_not_found_and_not_listed() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (acme_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event_id = app.send_event("job.created").await;
    app.wait_for_delivery(&acme_id, &event_id, "succeeded").await;

    let (_, globex_list) = app.api(Method::GET, "/api/webhooks", GLOBEX_KEY, None).await;
    assert_eq!(globex_list["data"], json!([]));
    for (method, path, body) in [
        (Method::GET, format!("/api/webhooks/{acme_id}"), None),
        (Method::PUT, format!("/api/webhooks/{acme_id}"), Some(json!({"isActive": false}))),
        (Method::DELETE, format!("/api/webhooks/{acme_id}"), None),
        (Method::GET, format!("/api/webhooks/{acme_id}/deliveries"), None),
        (Method::POST, format!("/api/webhooks/{acme_id}/retry/{event_id}"), None),
    ] {
        let (status, body) = app.api(method.clone(), &path, GLOBEX_KEY, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    let (_, still) = app.api(Method::GET, &format!("/api/webhooks/{acme_id}"), ACME_KEY, None).await;
    assert_eq!(still["data"]["isActive"], true, "globex changed acme's webhook");
    assert_eq!(receiver.received().len(), 1, "globex's retry reached acme's endpoint");
    app.stop().await;
}

#[tokio::test]
async fn invalid_webhooks_are_refused_with_details() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (json!({"name": "x", "url": "not a url", "eventTypes": ["job.created"]}), "url"),
        (json!({"name": "x", "url": "ftp://files.example.com/", "eventTypes": ["job.created"]}), "url"),
        (json!({"name": "x", "url": "https://u:p@example.com/", "eventTypes": ["job.created"]}), "url"),
        (json!({"name": "x", "url": "https://example.com/", "eventTypes": []}), "eventTypes"),
        (json!({"name": "x", "url": "https://example.com/", "eventTypes": ["job.exploded"]}), "eventTypes[0]"),
        (json!({"name": "", "url": "https://example.com/", "eventTypes": ["job.created"]}), "name"),
        (json!({"url": "https://example.com/", "eventTypes": ["job.created"]}), "name"),
    ] {
        let (status, err) = app.api(Method::POST, "/api/webhooks", ACME_KEY, Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(err["error"]["details"][0]["field"], field, "{body}: {err}");
    }
    let (status, _) = app.api(Method::PUT, "/api/webhooks/not-an-id", ACME_KEY, Some(json!({"isActive": true}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn production_rules_require_https() {
    let app = TestApp::spawn_with(&[("WEBHOOK_REQUIRE_HTTPS", "true")]).await;
    let (status, err) = app.api(Method::POST, "/api/webhooks", ACME_KEY, Some(hook("http://hrms.example.com/"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["details"][0]["message"], "must use https");
    app.stop().await;
}

#[tokio::test]
async fn the_management_api_needs_an_api_key() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/api/webhooks")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, err) = app.api(Method::GET, "/api/webhooks", "not-a-real-key-at-all", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"]["message"], "invalid API key");
    let response =
        app.http.get(app.url("/api/webhooks")).header("x-service-token", SERVICE_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn deliveries_filter_by_status() {
    let app = TestApp::spawn_with(&[("WEBHOOK_MAX_RETRIES", "0")]).await;
    let receiver = Receiver::start().await;
    receiver.script([crate::helpers::Reply::status(500)]);
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let failed = app.send_event("job.created").await;
    app.wait_for_delivery(&webhook_id, &failed, "failed").await;
    let ok = app.send_event("job.created").await;
    app.wait_for_delivery(&webhook_id, &ok, "succeeded").await;

    let (_, only_failed) =
        app.api(Method::GET, &format!("/api/webhooks/{webhook_id}/deliveries?status=failed"), ACME_KEY, None).await;
    let items = only_failed["data"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["eventId"], failed);
    for field in [
        "eventId",
        "eventType",
        "status",
        "attemptCount",
        "lastStatusCode",
        "lastError",
        "nextAttemptAt",
        "createdAt",
        "updatedAt",
        "attempts",
    ] {
        assert!(items[0].get(field).is_some(), "missing {field}");
    }
    let (_, page) =
        app.api(Method::GET, &format!("/api/webhooks/{webhook_id}/deliveries?limit=1"), ACME_KEY, None).await;
    assert_eq!(page["data"][0]["eventId"], ok, "newest first");
    assert!(page["pagination"]["nextCursor"].is_string());
    let (status, _) =
        app.api(Method::GET, &format!("/api/webhooks/{webhook_id}/deliveries?status=lost"), ACME_KEY, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}
