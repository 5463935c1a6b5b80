//! A session ends when it is signed out and when the key it was opened with is removed, on
//! every process: the cookie's signature is not enough. In memory (one process) and with
//! Redis (two processes sharing it and the session secret, as Lambda instances do).

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::{browser, form, page, session_of};
use crate::helpers::{ACME_KEY, GLOBEX_KEY, TestApp};
use crate::redis_server;

const SESSION_SECRET: &str = "a-session-secret-shared-by-processes-0000";
/// A second key of acme's, for the process that no longer has the first.
const OTHER_ACME_KEY: &str = "acme-api-key-00000002";

/// How a revocation must show on every process: at once here, and within 5 s at most.
const WITHIN: Duration = Duration::from_secs(5);

/// The CSRF token on a page the session loaded.
async fn csrf(app: &TestApp, cookie: &str) -> String {
    let (_, overview) = page(app, "/dashboard", cookie).await;
    overview
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries a CSRF token")
        .to_owned()
}

async fn sign_out(app: &TestApp, cookie: &str) {
    let token = csrf(app, cookie).await;
    let out = browser()
        .post(app.url("/dashboard/sign-out"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", &token)]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
}

/// Polls `app` with `cookie` until it is sent to the sign-in page; how long that took.
async fn refused_within(app: &TestApp, cookie: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (status, _) = page(app, "/dashboard/webhooks", cookie).await;
        if status == StatusCode::SEE_OTHER {
            return started.elapsed();
        }
        assert!(started.elapsed() < WITHIN, "the session still works after {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The cookie cannot change anything either: a create form is refused and nothing is created.
async fn cannot_create(app: &TestApp, cookie: &str, csrf: &str) {
    let response = browser()
        .post(app.url("/dashboard/webhooks"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("csrf", csrf),
            ("name", "after the end"),
            ("url", "https://example.com/h"),
            ("eventTypes", "job.created"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/dashboard/sign-in");
    let (_, listed) = app.api(reqwest::Method::GET, "/api/webhooks", GLOBEX_KEY, None).await;
    assert!(!listed.to_string().contains("after the end"));
}

fn settings<'a>(redis: Option<&'a str>, api_keys: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![("DASHBOARD_SESSION_SECRET", SESSION_SECRET), ("API_KEYS", api_keys)];
    if let Some(url) = redis {
        vars.push(("REDIS_URL", url));
    }
    vars
}

#[tokio::test]
async fn signing_out_ends_the_session_in_memory() {
    let app = TestApp::spawn().await;
    let cookie = session_of(&app, ACME_KEY).await;
    let token = csrf(&app, &cookie).await;
    sign_out(&app, &cookie).await;
    assert_eq!(page(&app, "/dashboard/webhooks", &cookie).await.0, StatusCode::SEE_OTHER, "at once");
    cannot_create(&app, &cookie, &token).await;
    let fresh = session_of(&app, ACME_KEY).await;
    assert_eq!(page(&app, "/dashboard", &fresh).await.0, StatusCode::OK, "signing in again works");
    app.stop().await;
}

#[tokio::test]
async fn signing_out_ends_the_session_on_every_process_through_redis() {
    let Some(redis) = redis_server::PrivateRedis::start().await else { return };
    let keys = format!("acme:{ACME_KEY},globex:{GLOBEX_KEY}");
    let one = TestApp::spawn_with(&settings(Some(&redis.url), &keys)).await;
    let two = TestApp::spawn_with(&settings(Some(&redis.url), &keys)).await;
    let cookie = session_of(&one, ACME_KEY).await;
    assert_eq!(page(&two, "/dashboard", &cookie).await.0, StatusCode::OK, "one session, every process");
    let token = csrf(&two, &cookie).await;
    sign_out(&one, &cookie).await;
    let took = refused_within(&two, &cookie).await;
    assert!(took < Duration::from_millis(100), "the other process refused it after {took:?}");
    cannot_create(&two, &cookie, &token).await;
    one.stop().await;
    two.stop().await;
}

/// A process whose `API_KEYS` no longer holds the key a session was opened with refuses the
/// session; one that still holds it (beside others) does not.
async fn removing_the_key_ends_its_sessions(redis: Option<&str>) {
    let before = format!("acme:{ACME_KEY},acme:{OTHER_ACME_KEY},globex:{GLOBEX_KEY}");
    let after = format!("acme:{OTHER_ACME_KEY},globex:{GLOBEX_KEY}");
    let old = TestApp::spawn_with(&settings(redis, &before)).await;
    let cookie = session_of(&old, ACME_KEY).await;
    let token = csrf(&old, &cookie).await;
    let other = session_of(&old, OTHER_ACME_KEY).await;
    let new = TestApp::spawn_with(&settings(redis, &after)).await;
    assert_eq!(page(&new, "/dashboard/webhooks", &cookie).await.0, StatusCode::SEE_OTHER, "at once");
    cannot_create(&new, &cookie, &token).await;
    assert_eq!(page(&new, "/dashboard", &other).await.0, StatusCode::OK, "a session of a key still there goes on");
    assert_eq!(page(&old, "/dashboard", &cookie).await.0, StatusCode::OK, "the process that still has the key");
    // Moved to another tenant, the key does not carry its session along.
    let moved = TestApp::spawn_with(&settings(redis, &format!("globex:{ACME_KEY},acme:{OTHER_ACME_KEY}"))).await;
    assert_eq!(page(&moved, "/dashboard", &cookie).await.0, StatusCode::SEE_OTHER);
    for app in [old, new, moved] {
        app.stop().await;
    }
}

#[tokio::test]
async fn removing_the_key_ends_its_sessions_in_memory() {
    removing_the_key_ends_its_sessions(None).await;
}

#[tokio::test]
async fn removing_the_key_ends_its_sessions_with_redis() {
    let Some(redis) = redis_server::PrivateRedis::start().await else { return };
    removing_the_key_ends_its_sessions(Some(&redis.url)).await;
}

/// Without Redis the list of ended sessions cannot be read, so no session is let through
/// (it might be one signed out): the page says the relay is unavailable.
#[tokio::test]
async fn an_unreadable_list_of_ended_sessions_refuses_every_session() {
    let keys = format!("acme:{ACME_KEY},globex:{GLOBEX_KEY}");
    let Some(redis) = redis_server::PrivateRedis::start().await else { return };
    let app = TestApp::spawn_with(&settings(Some(&redis.url), &keys)).await;
    let cookie = session_of(&app, ACME_KEY).await;
    drop(redis);
    let (status, body) = page(&app, "/dashboard", &cookie).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    app.stop().await;
}
