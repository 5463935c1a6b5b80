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
    let response =
        closed.http.get(closed.url("/health")).header("origin", "https://dashboard.example.com").send().await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none(), "CORS is off unless configured");
    closed.stop().await;
}

/// The attack from issue 15: 20,000 unauthenticated requests to random unmatched paths (with
/// made-up methods too) add no series per path. Unmatched requests share the route label
/// `unmatched`, unknown methods the label `other`, and a scrape stays small.
#[tokio::test]
async fn unmatched_paths_and_made_up_methods_add_no_metric_series() {
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt;

    let config = crate::helpers::test_config(&[]);
    let relay = relay_local::Relay::new(&config, relay_local::Backends::in_memory(config.memory)).unwrap();
    let router = relay.router();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let before = relay_core::metrics::global().series();
    let methods = ["GET", "POST", "DELETE", "BREW", "PROPFIND", "X-RANDOM"];
    for n in 0..20_000 {
        let method = axum::http::Method::from_bytes(methods[n % methods.len()].as_bytes()).unwrap();
        let request = axum::http::Request::builder()
            .method(method)
            .uri(format!("/x/{token}-{n}/{}", n * 7919))
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert!(matches!(response.status().as_u16(), 404 | 405), "{}", response.status());
        let _ = to_bytes(response.into_body(), 1 << 16).await;
    }
    let added = relay_core::metrics::global().series().saturating_sub(before);
    // Other tests of this binary record at the same time: their routes are few too.
    assert!(added < 100, "20,000 paths added {added} series");

    let request = axum::http::Request::builder()
        .uri("/api/metrics?format=prometheus")
        .header("x-service-token", crate::helpers::SERVICE_TOKEN)
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = String::from_utf8(to_bytes(response.into_body(), 16 << 20).await.unwrap().to_vec()).unwrap();
    assert!(!text.contains(&token), "a path became a label");
    assert!(!text.contains("BREW") && !text.contains("PROPFIND"), "a made-up method became a label");
    assert!(text.contains(r#"relay_http_requests_total{method="other",route="unmatched",status="#), "{text}");
    assert!(text.len() < 256 * 1024, "a scrape of {} bytes", text.len());
}
