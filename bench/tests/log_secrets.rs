//! No credential or secret in any log line. relay-local runs with `RUST_LOG=trace` (every
//! library's most verbose output) through a whole working life — webhooks created, events
//! accepted, deliveries signed, failed and retried, a secret revealed and rotated, requests
//! with wrong keys, dashboard sign-ins, pages, and a secret rotated and revealed there — and its
//! captured output is searched for every secret it was given or made: service token, API key,
//! webhook secrets (whole and their key part), a wrong key a caller sent, the dashboard's
//! session cookie, the AWS secret key and the database password.

// Test code, helpers included, may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use relay_bench::http::{API_KEY, Api, Conn, SERVICE_TOKEN, event_body};
use relay_bench::receiver::{Behaviour, Receiver};
use relay_bench::relay::{self, RelayProcess};
use relay_bench::{Backend, RelayOptions, clock};

const WRONG_KEY: &str = "canary-mistyped-api-key-0451";
const AWS_SECRET: &str = "canary-aws-secret-access-key-0451";
const DB_PASSWORD: &str = "canary-db-password-0451";
/// A receiver's credential, sent as a webhook's custom `Authorization` header.
const HEADER_SECRET: &str = "canary-receiver-bearer-0451";

async fn secret_of(conn: &mut Conn, webhook: &str) -> String {
    let response = conn
        .send(Method::GET, &format!("/api/webhooks/{webhook}/secret"), &[("x-api-key", API_KEY)], Bytes::new())
        .await
        .expect("secret");
    response.data(StatusCode::OK).expect("secret revealed")["secret"].as_str().expect("a secret").to_owned()
}

/// Runs relay-local on `backend` through a working life; returns its output and the secrets
/// that must not be in it.
async fn working_life(backend: Backend, dir: &Path) -> (String, Vec<String>) {
    // Every first attempt fails: with the breaker's default, the run of failures would open it
    // and hold the retries for its 30 s cool-down; this test is about what the logs hold.
    let mut env = vec![
        ("RUST_LOG", "trace".to_owned()),
        ("WEBHOOK_RETRY_DELAY", "100".to_owned()),
        ("CIRCUIT_BREAKER_THRESHOLD", "1000".to_owned()),
    ];
    if backend == Backend::Full {
        env.push(("AWS_SECRET_ACCESS_KEY", AWS_SECRET.to_owned()));
        // Trust authentication: the server never asks for the password, but the relay holds it.
        let database =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        env.push(("DATABASE_URL", with_password(&database, DB_PASSWORD)));
    }
    let log = dir.join(format!("{backend:?}.log"));
    let options = RelayOptions {
        bin_dir: relay::bin_dir().expect("binary directory"),
        backend,
        workers: 2,
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        log: log.clone(),
        resources: None,
    };
    // Every event's first attempt fails and its retry succeeds, so failures and retries are
    // logged in every run (half of ten random event ids, by hash, is sometimes none).
    let receiver = Receiver::start(Behaviour { fail_ratio: 1.0, max_failures: 1, seed: 3, delay: Duration::ZERO })
        .await
        .expect("receiver");
    let relay = RelayProcess::start(&options).await.expect("relay-local starts");
    let mut api = Api::new(relay.addr);
    let mut conn = Conn::new(relay.addr);
    let webhook = api.create_webhook("logged", &receiver.url(0), &["candidate.created"]).await.expect("webhook");
    let first_secret = secret_of(&mut conn, &webhook).await;
    // Every delivery carries a receiver's credential as a custom header.
    let headers = Bytes::from(format!(r#"{{"headers": {{"Authorization": "Bearer {HEADER_SECRET}"}}}}"#));
    let put = conn
        .send(Method::PUT, &format!("/api/webhooks/{webhook}"), &[("x-api-key", API_KEY)], headers)
        .await
        .expect("headers set");
    assert_eq!(put.status, StatusCode::OK, "{}", String::from_utf8_lossy(&put.body));
    // A tenant issued a key through the tenants API, and a portal link.
    let tenant = Bytes::from_static(br#"{"id": "canary-tenant", "name": "Canary"}"#);
    let created =
        conn.send(Method::POST, "/api/tenants", &[("x-service-token", SERVICE_TOKEN)], tenant).await.expect("tenant");
    assert_eq!(created.status, StatusCode::CREATED);
    let issued = conn
        .send(
            Method::POST,
            "/api/tenants/canary-tenant/api-keys",
            &[("x-service-token", SERVICE_TOKEN)],
            Bytes::from_static(br#"{"name": "ci"}"#),
        )
        .await
        .expect("key");
    let issued: serde_json::Value = serde_json::from_slice(&issued.body).expect("JSON");
    let issued_key = issued["data"]["key"].as_str().expect("a key").to_owned();
    let used = conn
        .send(Method::GET, "/api/webhooks", &[("x-api-key", issued_key.as_str())], Bytes::new())
        .await
        .expect("used");
    assert_eq!(used.status, StatusCode::OK);
    let link = conn
        .send(
            Method::POST,
            "/api/tenants/canary-tenant/portal-links",
            &[("x-service-token", SERVICE_TOKEN)],
            Bytes::new(),
        )
        .await
        .expect("link");
    let link: serde_json::Value = serde_json::from_slice(&link.body).expect("JSON");
    let token = link["data"]["url"].as_str().expect("a url").rsplit('/').next().expect("a token").to_owned();
    let opened =
        conn.send(Method::GET, &format!("/dashboard/portal/{token}"), &[], Bytes::new()).await.expect("portal");
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    for seq in 0..5 {
        api.post_event(event_body("candidate.created", seq, clock::now_ns(), 128)).await.expect("event");
    }
    let rotated = conn
        .send(Method::POST, &format!("/api/webhooks/{webhook}/secret/rotate"), &[("x-api-key", API_KEY)], Bytes::new())
        .await
        .expect("rotate");
    assert_eq!(rotated.status, StatusCode::OK, "{}", String::from_utf8_lossy(&rotated.body));
    let second_secret = secret_of(&mut conn, &webhook).await;
    assert_ne!(first_secret, second_secret);
    for seq in 5..10 {
        api.post_event(event_body("candidate.created", seq, clock::now_ns(), 128)).await.expect("event");
    }
    // An unknown key is 401; a service token where an API key belongs is 403, whatever it is.
    for (name, status) in [("x-api-key", StatusCode::UNAUTHORIZED), ("x-service-token", StatusCode::FORBIDDEN)] {
        let refused =
            conn.send(Method::GET, "/api/webhooks", &[(name, WRONG_KEY)], Bytes::new()).await.expect("refused");
        assert_eq!(refused.status, status);
    }
    let refused = conn
        .send(Method::POST, "/api/events", &[("x-service-token", WRONG_KEY)], Bytes::from_static(b"{}"))
        .await
        .expect("refused");
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // The dashboard's sign-in form, with the right key and a wrong one.
    let mut session = String::new();
    for (key, status) in [(API_KEY, StatusCode::SEE_OTHER), (WRONG_KEY, StatusCode::UNAUTHORIZED)] {
        let body = Bytes::from(format!("api_key={key}"));
        let signed = conn.send(Method::POST, "/dashboard/sign-in", &[], body).await.expect("sign-in");
        assert_eq!(signed.status, status);
        if let Some(cookie) = signed.headers.get("set-cookie") {
            session = cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        }
    }
    assert!(receiver.wait_for(10, Instant::now() + Duration::from_secs(60)).await, "{:?}", receiver.totals());
    // Signed in: every page, then the secret revealed and rotated through the dashboard's forms.
    let cookie = [("cookie", session.as_str())];
    let detail =
        conn.send(Method::GET, &format!("/dashboard/webhooks/{webhook}"), &cookie, Bytes::new()).await.expect("page");
    assert_eq!(detail.status, StatusCode::OK);
    let page = String::from_utf8_lossy(&detail.body).into_owned();
    let csrf =
        page.split(r#"name="csrf" value=""#).nth(1).and_then(|rest| rest.split('"').next()).expect("a CSRF token");
    for path in ["/dashboard", "/dashboard/webhooks", "/dashboard/events"] {
        assert_eq!(
            conn.send(Method::GET, path, &cookie, Bytes::new()).await.expect("page").status,
            StatusCode::OK,
            "{path}"
        );
    }
    // (`Conn` labels any body JSON; the dashboard reads a form whatever its label.)
    let form = cookie;
    let body = Bytes::from(format!("csrf={csrf}"));
    let path = format!("/dashboard/webhooks/{webhook}/secret/rotate");
    let rotated = conn.send(Method::POST, &path, &form, body.clone()).await.expect("rotate");
    assert_eq!(rotated.status, StatusCode::OK);
    let third_secret = secret_of(&mut conn, &webhook).await;
    assert!(String::from_utf8_lossy(&rotated.body).contains(&third_secret), "the page shows the new secret");
    let path = format!("/dashboard/webhooks/{webhook}/secret");
    assert_eq!(conn.send(Method::POST, &path, &form, body).await.expect("reveal").status, StatusCode::OK);
    assert!(receiver.totals().failed > 0, "no failed attempt was logged");
    relay.stop().await;

    let output = std::fs::read_to_string(&log).expect("relay output");
    // The session cookie is a credential too, and so is its signature alone.
    let signature = session.rsplit('.').next().unwrap_or_default().to_owned();
    let mut secrets = vec![
        SERVICE_TOKEN.to_owned(),
        API_KEY.to_owned(),
        WRONG_KEY.to_owned(),
        HEADER_SECRET.to_owned(),
        issued_key,
        token,
        session,
        signature,
    ];
    for secret in [first_secret, second_secret, third_secret] {
        // The key part too: `whsec_` + base64 of the signing key.
        secrets.push(secret.trim_start_matches("whsec_").to_owned());
        secrets.push(secret);
    }
    if backend == Backend::Full {
        secrets.extend([AWS_SECRET.to_owned(), DB_PASSWORD.to_owned()]);
    }
    (output, secrets)
}

/// `url` with `password` as its user's password.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (userinfo, host) = rest.split_once('@').unwrap_or(("postgres", rest));
    let user = userinfo.split(':').next().unwrap_or("postgres");
    format!("{scheme}://{user}:{password}@{host}")
}

fn assert_no_secret(output: &str, secrets: &[String]) {
    assert!(output.lines().count() > 100, "suspiciously little output at trace level:\n{output}");
    for secret in secrets {
        let leaks: Vec<&str> = output.lines().filter(|line| line.contains(secret.as_str())).take(3).collect();
        assert!(leaks.is_empty(), "{secret:?} is in the log:\n{}", leaks.join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_on_the_embedded_backends() {
    let dir = std::env::temp_dir().join(format!("relay-log-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work directory");
    let (output, secrets) = working_life(Backend::Memory, &dir).await;
    assert_no_secret(&output, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_on_postgres_redis_and_local_aws() {
    if !relay::local_aws_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("relay-log-secrets-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work directory");
    let (output, secrets) = working_life(Backend::Full, &dir).await;
    assert_no_secret(&output, &secrets);
}
