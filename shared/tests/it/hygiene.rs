//! Request ids, security headers and CORS on every response.

use reqwest::Method;

use crate::helpers::{ACME_KEY, TestApp};

#[tokio::test]
async fn every_response_has_a_request_id_and_security_headers() {
    let app = TestApp::spawn().await;
    for (method, path, key) in [
        (Method::GET, "/health", None),
        (Method::GET, "/api/webhooks", Some(ACME_KEY)),
        (Method::GET, "/api/webhooks", None),
        (Method::GET, "/api/nope", None),
        (Method::POST, "/api/webhooks", Some(ACME_KEY)),
    ] {
        let mut request = app.http.request(method.clone(), app.url(path));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.unwrap();
        let headers = response.headers();
        let id = headers["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{method} {path}: request id {id:?}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{method} {path}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(headers.contains_key("content-security-policy"));
        assert!(headers.contains_key("strict-transport-security"));
    }

    let echoed = app.http.get(app.url("/health")).header("x-request-id", "trace-abc.123").send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-abc.123");
    let replaced = app.http.get(app.url("/health")).header("x-request-id", "bad id\u{7f}").send().await;
    if let Ok(replaced) = replaced {
        assert_ne!(replaced.headers()["x-request-id"], "bad id");
    }
    let long = "x".repeat(200);
    let replaced = app.http.get(app.url("/health")).header("x-request-id", &long).send().await.unwrap();
    assert_ne!(replaced.headers()["x-request-id"].to_str().unwrap(), long);
    app.stop().await;
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = TestApp::spawn_with(&[("CORS_ORIGINS", "https://dashboard.example.com")]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, app.url("/api/webhooks"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "x-api-key")
            .send()
    };
    let allowed = preflight("https://dashboard.example.com").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://dashboard.example.com");
    assert!(allowed.headers()["access-control-allow-headers"].to_str().unwrap().contains("x-api-key"));
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    let actual = app
        .http
        .get(app.url("/api/webhooks"))
        .header("origin", "https://dashboard.example.com")
        .header("x-api-key", ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(actual.headers()["access-control-allow-origin"], "https://dashboard.example.com");
    app.stop().await;

    let closed = TestApp::spawn().await;
    let response = closed.http.get(closed.url("/health")).header("origin", "https://dashboard.example.com").send().await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none(), "CORS is off unless configured");
    closed.stop().await;
}
