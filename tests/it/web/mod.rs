//! The dashboard's handlers over real HTTP: sign-in exchanges an API key for a signed,
//! HttpOnly, SameSite=Strict cookie and never shows the key; every page needs the session and
//! shows its tenant only; hostile webhook names are escaped; sign-out needs the CSRF token.
//! `forms` covers every page and form behind the sign-in.

mod forms;
mod sessions;

use reqwest::redirect::Policy;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{ACME_KEY, GLOBEX_KEY, TestApp};

/// Every page, and every form with a placeholder webhook and event id.
const PAGES: [&str; 6] = [
    "/dashboard",
    "/dashboard/webhooks",
    "/dashboard/webhooks/new",
    "/dashboard/webhooks/{id}",
    "/dashboard/webhooks/{id}/delete",
    "/dashboard/events",
];
const FORMS: [&str; 9] = [
    "/dashboard/webhooks",
    "/dashboard/webhooks/{id}/enable",
    "/dashboard/webhooks/{id}/disable",
    "/dashboard/webhooks/{id}/delete",
    "/dashboard/webhooks/{id}/secret",
    "/dashboard/webhooks/{id}/secret/rotate",
    "/dashboard/webhooks/{id}/retry/{event}",
    "/dashboard/webhooks/{id}/recover",
    "/dashboard/sign-out",
];

/// A form post's body.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).no_proxy().build().unwrap()
}

/// Signs in with `key`; returns the response.
async fn sign_in(app: &TestApp, key: &str, https: bool) -> reqwest::Response {
    let mut request = browser()
        .post(app.url("/dashboard/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("api_key", key)]));
    if https {
        request = request.header("x-forwarded-proto", "https");
    }
    request.send().await.unwrap()
}

/// The `name=value` part of the session cookie a sign-in set.
async fn session_of(app: &TestApp, key: &str) -> String {
    let response = sign_in(app, key, false).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    set.split(';').next().unwrap().to_owned()
}

async fn page(app: &TestApp, path: &str, cookie: &str) -> (StatusCode, String) {
    let response = browser().get(app.url(path)).header("cookie", cookie).send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn every_page_needs_a_session() {
    let app = TestApp::spawn().await;
    let (webhook, _) = app.create_webhook("https://example.com/hook", &["job.created"]).await;
    let event = uuid::Uuid::now_v7().to_string();
    let fill = |path: &str| path.replace("{id}", &webhook).replace("{event}", &event);
    let requests = PAGES.iter().map(|p| (Method::GET, fill(p))).chain(FORMS.iter().map(|p| (Method::POST, fill(p))));
    for (method, path) in requests.chain([(Method::GET, format!("/dashboard/events/{event}"))]) {
        for cookie in [
            "",
            "relay_session=garbage",
            "relay_session=v1.acme.99999999999999.bm9uY2U.c2ln",
            "relay_session=v2.acme.99999999999999.bm9uY2U.a2V5.c2ln",
        ] {
            let response =
                browser().request(method.clone(), app.url(&path)).header("cookie", cookie).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{method} {path} with {cookie:?}");
            assert_eq!(response.headers()["location"], "/dashboard/sign-in");
        }
    }
    // Nothing changed.
    let (status, body) = app.api(Method::GET, &format!("/api/webhooks/{webhook}"), ACME_KEY, None).await;
    assert_eq!((status, body["data"]["isActive"].as_bool()), (StatusCode::OK, Some(true)));
    let form = browser().get(app.url("/dashboard/sign-in")).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let csp = form.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("style-src 'self'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(form.text().await.unwrap().contains(r#"name="api_key""#));
    app.stop().await;
}

#[tokio::test]
async fn sign_in_sets_a_safe_cookie_and_never_shows_the_key() {
    let app = TestApp::spawn().await;
    let refused = sign_in(&app, "not-a-key-of-anyone-123", false).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get("set-cookie").is_none());
    let body = refused.text().await.unwrap();
    assert!(body.contains("not valid") && !body.contains("not-a-key-of-anyone-123"), "{body}");

    let plain = sign_in(&app, ACME_KEY, false).await;
    assert_eq!(plain.status(), StatusCode::SEE_OTHER);
    assert_eq!(plain.headers()["location"], "/dashboard");
    let cookie = plain.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["relay_session=v2.acme.", "; Path=/dashboard", "; HttpOnly", "; SameSite=Strict", "; Max-Age=43200"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http gets no Secure flag: {cookie}");
    assert!(!cookie.contains(ACME_KEY));
    let https = sign_in(&app, ACME_KEY, true).await;
    assert!(https.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));
    app.stop().await;
}

#[tokio::test]
async fn pages_show_the_sessions_tenant_only_and_escape_what_tenants_wrote() {
    let app = TestApp::spawn().await;
    let hostile = r#"<script>alert("x")</script><img src=x onerror=alert(1)>"#;
    let (status, _) = app
        .api(
            Method::POST,
            "/api/webhooks",
            ACME_KEY,
            Some(json!({"name": hostile, "url": "https://example.com/hook?a=<b>", "eventTypes": ["job.created"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .api(Method::POST, "/api/webhooks", GLOBEX_KEY, Some(json!({"name": "globex private hook", "url": "https://example.org/globex", "eventTypes": ["job.created"]})))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let acme = session_of(&app, ACME_KEY).await;
    let (status, listing) = page(&app, "/dashboard/webhooks", &acme).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!listing.contains("<script>") && !listing.contains("<img"), "unescaped: {listing}");
    assert!(listing.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"), "{listing}");
    assert!(!listing.contains("globex private hook"), "another tenant's webhook shown");
    let (status, overview) = page(&app, "/dashboard", &acme).await;
    assert_eq!(status, StatusCode::OK);
    assert!(overview.contains("tenant acme") && overview.contains("Active webhooks"), "{overview}");
    assert!(overview.contains("eventStore") && overview.contains("queue"), "dependency health shown");

    let globex = session_of(&app, GLOBEX_KEY).await;
    let (_, theirs) = page(&app, "/dashboard/webhooks", &globex).await;
    assert!(theirs.contains("globex private hook") && !theirs.contains("alert"), "{theirs}");
    // A cookie edited to name another tenant is refused.
    let forged = acme.replacen("v2.acme.", "v2.globex.", 1);
    assert_eq!(page(&app, "/dashboard/webhooks", &forged).await.0, StatusCode::SEE_OTHER);
    app.stop().await;
}

#[tokio::test]
async fn sign_out_needs_the_forms_csrf_token() {
    let app = TestApp::spawn().await;
    let session = session_of(&app, ACME_KEY).await;
    let (_, overview) = page(&app, "/dashboard", &session).await;
    let token = overview
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries a CSRF token")
        .to_owned();
    let other = session_of(&app, ACME_KEY).await;
    let (_, elsewhere) = page(&app, "/dashboard", &other).await;
    assert!(!elsewhere.contains(&token), "CSRF tokens are per session");

    for forged in ["", "not-the-token", token.as_str()] {
        let cookie = if forged == token { other.as_str() } else { session.as_str() };
        let response = browser()
            .post(app.url("/dashboard/sign-out"))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("csrf", forged)]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{forged:?}");
    }
    let out = browser()
        .post(app.url("/dashboard/sign-out"))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", token.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(out.headers()["location"], "/dashboard/sign-in");
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    app.stop().await;
}

#[tokio::test]
async fn the_stylesheet_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let response = browser().get(app.url("/dashboard/assets/app.css")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/css; charset=utf-8");
    assert!(response.text().await.unwrap().contains("prefers-color-scheme: dark"));
    app.stop().await;
}
