//! Every dashboard page and form, signed in, over real HTTP against the in-memory relay and a
//! real receiver: what each shows, what each form changes (checked through the API), CSRF and
//! cross-site refusals, tenant isolation, and escaping of everything a tenant or a service wrote.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{FORMS, PAGES, browser, form, session_of};
use crate::helpers::{ACME_KEY, GLOBEX_KEY, Receiver, Reply, TestApp, eventually};

/// A signed-in browser of one tenant.
struct Operator<'a> {
    app: &'a TestApp,
    cookie: String,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers.get("location").and_then(|l| l.to_str().ok()).unwrap_or_default()
    }
}

impl<'a> Operator<'a> {
    async fn sign_in(app: &'a TestApp, key: &str) -> Self {
        Self { app, cookie: session_of(app, key).await }
    }

    async fn get(&self, path: &str) -> Answer {
        let response = browser().get(self.app.url(path)).header("cookie", &self.cookie).send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        Answer { status, headers, body: response.text().await.unwrap() }
    }

    /// The CSRF token the session's pages carry.
    async fn csrf(&self) -> String {
        let page = self.get("/dashboard/webhooks/new").await;
        page.body.split(r#"name="csrf" value=""#).nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_owned()
    }

    /// Posts a form with this session's CSRF token added.
    async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        let csrf = self.csrf().await;
        let mut fields = vec![("csrf", csrf.as_str())];
        fields.extend_from_slice(pairs);
        self.post_raw(path, &form(&fields), &[]).await
    }

    async fn post_raw(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = browser()
            .post(self.app.url(path))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        Answer { status, headers, body: response.text().await.unwrap() }
    }
}

async fn webhook(app: &TestApp, key: &str, id: &str) -> (StatusCode, Value) {
    let (status, body) = app.api(Method::GET, &format!("/api/webhooks/{id}"), key, None).await;
    (status, body["data"].clone())
}

async fn secret(app: &TestApp, id: &str) -> String {
    let (_, body) = app.api(Method::GET, &format!("/api/webhooks/{id}/secret"), ACME_KEY, None).await;
    body["data"]["secret"].as_str().unwrap().to_owned()
}

async fn post_event(app: &TestApp, event: Value) -> String {
    let response = app.post_event(event).await;
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["data"]["eventId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn webhooks_are_created_enabled_disabled_and_deleted_through_the_forms() {
    let app = TestApp::spawn().await;
    let acme = Operator::sign_in(&app, ACME_KEY).await;

    let new = acme.get("/dashboard/webhooks/new").await;
    assert_eq!(new.status, StatusCode::OK);
    for event_type in ["job.created", "candidate.status_changed", "assessment.graded"] {
        assert!(new.body.contains(&format!(r#"name="eventTypes" value="{event_type}""#)), "picker lacks {event_type}");
    }

    // A refused form comes back with the reasons and what was typed.
    let refused = acme
        .post(
            "/dashboard/webhooks",
            &[("name", "Billing"), ("url", "ftp://example.com/x"), ("eventTypes", "job.created")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("not created") && refused.body.contains("url:"), "{}", refused.body);
    assert!(refused.body.contains(r#"value="Billing""#) && refused.body.contains(r#"value="job.created" checked"#));
    let none = acme.post("/dashboard/webhooks", &[("name", "Billing"), ("url", "https://example.com/x")]).await;
    assert_eq!(none.status, StatusCode::UNPROCESSABLE_ENTITY, "no event type picked");
    let bad_channel = acme
        .post(
            "/dashboard/webhooks",
            &[
                ("name", "Billing"),
                ("url", "https://example.com/x"),
                ("eventTypes", "job.created"),
                ("channels", "eu/west"),
            ],
        )
        .await;
    assert_eq!(bad_channel.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_channel.body.contains("channels[0]") && bad_channel.body.contains(r#"value="eu/west""#));
    let bad_filter = acme
        .post(
            "/dashboard/webhooks",
            &[
                ("name", "Billing"),
                ("url", "https://example.com/x"),
                ("eventTypes", "job.created"),
                ("filter", "{not json"),
                ("headers", "no colon here"),
            ],
        )
        .await;
    assert_eq!(bad_filter.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_filter.body.contains("filter: is not JSON") && bad_filter.body.contains("headers: line 1"));
    assert!(bad_filter.body.contains("{not json"), "the typed filter comes back");
    let bad_operator = acme
        .post(
            "/dashboard/webhooks",
            &[
                ("name", "B"),
                ("url", "https://example.com/x"),
                ("eventTypes", "job.created"),
                ("filter", r#"{"payload.a": {"$regex": "x"}}"#),
            ],
        )
        .await;
    assert_eq!(bad_operator.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_operator.body.contains("filter.payload.a.$regex"), "{}", bad_operator.body);

    let created = acme
        .post(
            "/dashboard/webhooks",
            &[
                ("name", "Billing"),
                ("url", "https://example.com/billing"),
                ("eventTypes", "job.created"),
                ("eventTypes", "job.updated"),
                ("channels", " eu, orders:priority "),
                ("filter", r#"{"payload.status": "hired"}"#),
                ("headers", "Authorization: Bearer form-secret\r\nX-Team: core"),
                ("timeoutMs", "1500"),
                ("maxRetries", "1"),
                ("retryDelayMs", ""),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER);
    let location = created.location().to_owned();
    let id = location.strip_prefix("/dashboard/webhooks/").and_then(|rest| rest.split('?').next()).unwrap().to_owned();
    assert!(location.ends_with("?notice=created"), "{location}");
    let (status, stored) = webhook(&app, ACME_KEY, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (stored["name"].as_str(), stored["url"].as_str()),
        (Some("Billing"), Some("https://example.com/billing"))
    );
    assert_eq!(stored["eventTypes"], json!(["job.created", "job.updated"]));
    assert_eq!(stored["channels"], json!(["eu", "orders:priority"]));
    assert_eq!(stored["filter"], json!({"payload.status": "hired"}));
    assert_eq!(stored["headers"], json!({"authorization": "********", "x-team": "core"}));
    assert_eq!((stored["timeoutMs"].as_u64(), stored["maxRetries"].as_u64()), (Some(1500), Some(1)));
    assert_eq!(stored["retryDelayMs"], Value::Null);

    let detail = acme.get(&location).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(detail.body.contains("Webhook created.") && detail.body.contains("https://example.com/billing"));
    assert!(detail.body.contains("eu, orders:priority"), "the channels are shown");
    assert!(detail.body.contains("payload.status") && detail.body.contains("x-team: core"));
    assert!(!detail.body.contains("form-secret"), "a credential header is shown masked");
    assert!(detail.body.contains(&format!(r#"action="/dashboard/webhooks/{id}/disable""#)));
    let listed = acme.get("/dashboard/webhooks").await;
    assert!(listed.body.contains(&format!(r#"href="/dashboard/webhooks/{id}""#)) && listed.body.contains("active"));

    let disabled = acme.post(&format!("/dashboard/webhooks/{id}/disable"), &[]).await;
    assert_eq!(
        (disabled.status, disabled.location()),
        (StatusCode::SEE_OTHER, format!("/dashboard/webhooks/{id}?notice=disabled").as_str())
    );
    assert_eq!(webhook(&app, ACME_KEY, &id).await.1["isActive"], false);
    assert!(acme.get(disabled.location()).await.body.contains(&format!(r#"action="/dashboard/webhooks/{id}/enable""#)));
    let enabled = acme.post(&format!("/dashboard/webhooks/{id}/enable"), &[]).await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER);
    assert_eq!(webhook(&app, ACME_KEY, &id).await.1["isActive"], true);

    // Delete asks first; only the confirmation's post deletes.
    let confirm = acme.get(&format!("/dashboard/webhooks/{id}/delete")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("cannot be undone") && confirm.body.contains("Billing"));
    assert_eq!(webhook(&app, ACME_KEY, &id).await.0, StatusCode::OK);
    let deleted = acme.post(&format!("/dashboard/webhooks/{id}/delete"), &[]).await;
    assert_eq!((deleted.status, deleted.location()), (StatusCode::SEE_OTHER, "/dashboard/webhooks?notice=deleted"));
    assert_eq!(webhook(&app, ACME_KEY, &id).await.0, StatusCode::NOT_FOUND);
    assert_eq!(acme.get(&format!("/dashboard/webhooks/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(acme.get("/dashboard/webhooks/not-an-id").await.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn the_secret_is_revealed_and_rotated_by_post_only_and_never_cached() {
    let app = TestApp::spawn().await;
    let (id, _) = app.create_webhook("https://example.com/hook", &["job.created"]).await;
    let acme = Operator::sign_in(&app, ACME_KEY).await;
    let before = secret(&app, &id).await;
    assert!(
        !acme.get(&format!("/dashboard/webhooks/{id}")).await.body.contains(&before),
        "the page shows the secret unasked"
    );
    assert_eq!(acme.get(&format!("/dashboard/webhooks/{id}/secret")).await.status, StatusCode::METHOD_NOT_ALLOWED);

    let revealed = acme.post(&format!("/dashboard/webhooks/{id}/secret"), &[]).await;
    assert_eq!(revealed.status, StatusCode::OK);
    assert_eq!(revealed.headers["cache-control"], "no-store");
    assert!(revealed.body.contains(&before));

    let rotated = acme.post(&format!("/dashboard/webhooks/{id}/secret/rotate"), &[]).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let after = secret(&app, &id).await;
    assert_ne!(after, before);
    assert!(rotated.body.contains(&after) && !rotated.body.contains(&before), "the new secret only");
    assert!(rotated.body.contains("previous secret also signs until"));
    app.stop().await;
}

#[tokio::test]
async fn a_failed_delivery_is_retried_and_recovered_from_the_webhook_page() {
    let app = TestApp::spawn_with(&[("WEBHOOK_MAX_RETRIES", "0")]).await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(500).body("receiver down"));
    let (id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let acme = Operator::sign_in(&app, ACME_KEY).await;

    let first = app.send_event("job.created").await;
    app.wait_for_delivery(&id, &first, "failed").await;
    let page = acme.get(&format!("/dashboard/webhooks/{id}")).await;
    assert!(
        page.body.contains(&format!(r#"id="delivery-{first}""#)) && page.body.contains("receiver down"),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!(r#"action="/dashboard/webhooks/{id}/retry/{first}""#)));
    let failed_only = acme.get(&format!("/dashboard/webhooks/{id}?status=failed")).await;
    assert!(failed_only.body.contains(&first));
    assert!(!acme.get(&format!("/dashboard/webhooks/{id}?status=succeeded")).await.body.contains(&first));

    // Still failing: the retry says so.
    let again = acme.post(&format!("/dashboard/webhooks/{id}/retry/{first}"), &[]).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert!(again.location().contains("notice=retry-failed"), "{}", again.location());

    receiver.always(Reply::status(200).body("ok"));
    let retried = acme.post(&format!("/dashboard/webhooks/{id}/retry/{first}"), &[]).await;
    assert_eq!(retried.location(), format!("/dashboard/webhooks/{id}?notice=retried#delivery-{first}"));
    let delivery = app.wait_for_delivery(&id, &first, "succeeded").await;
    assert_eq!(delivery["attemptCount"], 3);
    let page = acme.get(retried.location()).await;
    assert!(
        page.body.contains("Retried: the delivery succeeded.") && page.body.contains("3 attempts"),
        "{}",
        page.body
    );
    assert!(page.body.contains("manual"), "the attempt log names the trigger");

    // Recover puts failed deliveries since a time back on the queue.
    receiver.always(Reply::status(503));
    let second = app.send_event("job.created").await;
    app.wait_for_delivery(&id, &second, "failed").await;
    receiver.always(Reply::status(204));
    let bad = acme.post(&format!("/dashboard/webhooks/{id}/recover"), &[("since", "tomorrow")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("since: must be a date and time in the past"), "{}", bad.body);
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string();
    let recovered = acme.post(&format!("/dashboard/webhooks/{id}/recover"), &[("since", &since)]).await;
    assert_eq!(recovered.location(), format!("/dashboard/webhooks/{id}?notice=recovered&n=1"));
    assert!(acme.get(recovered.location()).await.body.contains("1 failed deliveries put back on the queue."));
    app.wait_for_delivery(&id, &second, "succeeded").await;
    app.stop().await;
}

#[tokio::test]
async fn the_overview_charts_the_day_and_refreshes_itself() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event = app.send_event("job.created").await;
    app.wait_for_delivery(&id, &event, "succeeded").await;
    let acme = Operator::sign_in(&app, ACME_KEY).await;
    let overview = acme.get("/dashboard").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains(r#"<meta http-equiv="refresh" content="30">"#));
    assert!(overview.body.contains(r#"aria-label="1 deliveries in the last 24 hours"#), "{}", overview.body);
    assert_eq!(overview.body.matches(r#"<rect class="s-succeeded""#).count(), 1);
    assert_eq!(overview.body.matches("<g><title>").count(), 24, "one bar per hour");
    // Another tenant's day is empty.
    let globex = Operator::sign_in(&app, GLOBEX_KEY).await;
    assert!(globex.get("/dashboard").await.body.contains(r#"aria-label="0 deliveries"#));
    app.stop().await;
}

#[tokio::test]
async fn events_are_the_tenants_own_filtered_and_paged() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (acme_hook, _) = app.create_webhook(&receiver.url(), &["job.created", "job.updated"]).await;
    let (status, globex_hook) = app
        .api(
            Method::POST,
            "/api/webhooks",
            GLOBEX_KEY,
            Some(json!({"name": "g", "url": receiver.url(), "eventTypes": ["candidate.created"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let globex_hook = globex_hook["data"]["id"].as_str().unwrap().to_owned();

    let mut ids = Vec::new();
    for n in 0..30 {
        let (event_type, source) = if n % 3 == 0 { ("job.updated", "ats") } else { ("job.created", "crm") };
        let body =
            json!({"eventType": event_type, "eventName": format!("n{n}"), "payload": {"n": n}, "source": source});
        ids.push((post_event(&app, body).await, event_type, source));
    }
    let theirs = app.send_event("candidate.created").await;
    for (id, _, _) in &ids {
        app.wait_for_delivery(&acme_hook, id, "succeeded").await;
    }
    eventually(Duration::from_secs(10), || async {
        let (_, body) =
            app.api(Method::GET, &format!("/api/webhooks/{globex_hook}/deliveries"), GLOBEX_KEY, None).await;
        (body["data"].as_array().map_or(0, Vec::len) == 1).then_some(())
    })
    .await
    .expect("globex's delivery");

    let acme = Operator::sign_in(&app, ACME_KEY).await;
    // Newest first, 25 a page, then the rest behind the cursor.
    let first = acme.get("/dashboard/events").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(!first.body.contains(&theirs), "another tenant's event listed");
    let shown = |body: &str| ids.iter().filter(|(id, _, _)| body.contains(id.as_str())).count();
    assert_eq!(shown(&first.body), 25);
    assert!(first.body.contains(&ids[29].0) && !first.body.contains(&ids[0].0));
    let next =
        first.body.split(r#"<a href="/dashboard/events?"#).nth(1).and_then(|rest| rest.split('"').next()).unwrap();
    let second = acme.get(&format!("/dashboard/events?{}", next.replace("&amp;", "&"))).await;
    assert_eq!(shown(&second.body), 5);
    assert!(second.body.contains(&ids[0].0) && !second.body.contains("Older events"));

    let updated = acme.get("/dashboard/events?eventType=job.updated").await;
    assert_eq!(shown(&updated.body), 10);
    assert!(ids.iter().filter(|(_, t, _)| *t == "job.created").all(|(id, _, _)| !updated.body.contains(id.as_str())));
    let crm = acme.get("/dashboard/events?source=crm&eventType=").await;
    assert_eq!(shown(&crm.body), 20, "a source filter fills the page");
    assert!(ids.iter().filter(|(_, _, s)| *s == "ats").all(|(id, _, _)| !crm.body.contains(id.as_str())));
    assert_eq!(acme.get("/dashboard/events?eventType=no.such").await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(acme.get("/dashboard/events?cursor=%%%").await.status, StatusCode::UNPROCESSABLE_ENTITY);

    let (one, _, _) = &ids[3];
    let detail = acme.get(&format!("/dashboard/events/{one}")).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(
        detail.body.contains("&quot;n&quot;: 3")
            && detail.body.contains("test hook")
            && detail.body.contains("succeeded"),
        "{}",
        detail.body
    );
    assert_eq!(acme.get(&format!("/dashboard/events/{theirs}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(acme.get("/dashboard/events/garbage").await.status, StatusCode::NOT_FOUND);
    let globex = Operator::sign_in(&app, GLOBEX_KEY).await;
    assert_eq!(globex.get(&format!("/dashboard/events/{one}")).await.status, StatusCode::NOT_FOUND);
    assert!(globex.get("/dashboard/events").await.body.contains(&theirs));
    app.stop().await;
}

/// An acme webhook at a receiver, with one event delivered to it.
struct Delivered {
    receiver: Receiver,
    id: String,
    event: String,
    secret_before: String,
}

async fn one_delivered(app: &TestApp) -> Delivered {
    let receiver = Receiver::start().await;
    let (id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let event = app.send_event("job.created").await;
    app.wait_for_delivery(&id, &event, "succeeded").await;
    let secret_before = secret(app, &id).await;
    Delivered { receiver, id, event, secret_before }
}

#[tokio::test]
async fn every_form_refuses_a_wrong_token_and_a_cross_site_post() {
    let app = TestApp::spawn().await;
    let Delivered { receiver, id, event, secret_before } = one_delivered(&app).await;
    let acme = Operator::sign_in(&app, ACME_KEY).await;
    let other = Operator::sign_in(&app, ACME_KEY).await;
    let token = acme.csrf().await;
    let foreign = other.csrf().await;
    assert_ne!(token, foreign);

    let fields =
        [("name", "x"), ("url", "https://example.com/x"), ("eventTypes", "job.created"), ("since", "2026-01-01T00:00")];
    for path in FORMS.map(|p| p.replace("{id}", &id).replace("{event}", &event)) {
        let with = |csrf: &str| {
            let mut all = vec![("csrf", csrf)];
            all.extend_from_slice(&fields);
            form(&all)
        };
        for (body, headers) in [
            (form(&fields), vec![]),
            (with(""), vec![]),
            (with("forged"), vec![]),
            (with(&foreign), vec![]),
            (with(&token), vec![("origin", "https://evil.example")]),
            (with(&token), vec![("sec-fetch-site", "cross-site")]),
            (with(&token), vec![("sec-fetch-site", "same-site")]),
            (with(&token), vec![("origin", "null")]),
        ] {
            let answer = acme.post_raw(&path, &body, &headers).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path} {headers:?}");
            assert!(answer.body.contains("did not come from this dashboard"));
        }
    }
    // Nothing changed: one webhook, active, same secret, one attempt; still signed in.
    let (_, listed) = app.api(Method::GET, "/api/webhooks", ACME_KEY, None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(webhook(&app, ACME_KEY, &id).await.1["isActive"], true);
    assert_eq!(secret(&app, &id).await, secret_before);
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(acme.get("/dashboard").await.status, StatusCode::OK);
    // Same-origin posts pass: the browser names this host, or says same-origin (with the
    // `Origin: null` it sends under `Referrer-Policy: no-referrer`).
    let host = app.base.trim_start_matches("http://").to_owned();
    let disable = format!("/dashboard/webhooks/{id}/disable");
    let same = acme.post_raw(&disable, &form(&[("csrf", &token)]), &[("origin", &format!("http://{host}"))]).await;
    assert_eq!(same.status, StatusCode::SEE_OTHER);
    let fetched = acme
        .post_raw(&disable, &form(&[("csrf", &token)]), &[("origin", "null"), ("sec-fetch-site", "same-origin")])
        .await;
    assert_eq!(fetched.status, StatusCode::SEE_OTHER);
    // Signing in from another site is refused too (login CSRF).
    let cross = browser()
        .post(app.url("/dashboard/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(form(&[("api_key", ACME_KEY)]))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(cross.headers().get("set-cookie").is_none());
    app.stop().await;
}

#[tokio::test]
async fn another_tenants_webhooks_are_not_found_on_any_page_or_form() {
    let app = TestApp::spawn().await;
    let Delivered { receiver, id, event, secret_before } = one_delivered(&app).await;
    let globex = Operator::sign_in(&app, GLOBEX_KEY).await;
    let fill = |p: &str| p.replace("{id}", &id).replace("{event}", &event);
    for path in PAGES.iter().filter(|p| p.contains("{id}")).map(|p| fill(p)) {
        let answer = globex.get(&path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!answer.body.contains("test hook") && !answer.body.contains(&secret_before));
    }
    for path in FORMS.iter().filter(|p| p.contains("{id}")).map(|p| fill(p)) {
        let answer = globex.post(&path, &[("since", "2026-01-01T00:00")]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!answer.body.contains(&secret_before), "{path}");
    }
    assert!(!globex.get("/dashboard/webhooks").await.body.contains("test hook"));
    let (status, stored) = webhook(&app, ACME_KEY, &id).await;
    assert_eq!((status, stored["isActive"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(secret(&app, &id).await, secret_before);
    assert_eq!(receiver.received().len(), 1, "no retry reached the receiver");
    app.stop().await;
}

#[tokio::test]
async fn what_tenants_and_services_wrote_is_escaped_on_every_page() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(500).body("<script>alert('receiver')</script>"));
    let hostile = r#"<script>alert("name")</script><img src=x onerror=alert(1)>"#;
    let (status, created) = app
        .api(
            Method::POST,
            "/api/webhooks",
            ACME_KEY,
            Some(json!({"name": hostile, "url": receiver.url(), "eventTypes": ["job.created"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let event = post_event(
        &app,
        json!({
            "eventType": "job.created",
            "eventName": "</td><script>alert('eventName')</script>",
            "payload": {"html": "</pre><script>alert('payload')</script>", "<b>key</b>": "\"quoted\" & 'single'"},
            "source": "<svg onload=alert('source')>",
        }),
    )
    .await;
    eventually(Duration::from_secs(10), || async {
        app.deliveries(&id).await.into_iter().find(|d| d["eventId"] == event && d["attemptCount"].as_u64() >= Some(1))
    })
    .await
    .expect("an attempt");

    let acme = Operator::sign_in(&app, ACME_KEY).await;
    let pages = [
        "/dashboard".to_owned(),
        "/dashboard/webhooks".to_owned(),
        format!("/dashboard/webhooks/{id}"),
        format!("/dashboard/webhooks/{id}/delete"),
        "/dashboard/events".to_owned(),
        format!("/dashboard/events/{event}"),
    ];
    for path in &pages {
        let page = acme.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        for raw in ["<script", "<img", "<svg onload", "</pre><script", "<b>key"] {
            assert!(!page.body.contains(raw), "{raw} unescaped on {path}: {}", page.body);
        }
    }
    let detail = acme.get(&format!("/dashboard/webhooks/{id}")).await.body;
    assert!(detail.contains("&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;"));
    assert!(detail.contains("&lt;script&gt;alert('receiver')&lt;/script&gt;"), "the response excerpt, escaped");
    let event_page = acme.get(&format!("/dashboard/events/{event}")).await.body;
    assert!(event_page.contains("&lt;/pre&gt;&lt;script&gt;alert('payload')&lt;/script&gt;"), "{event_page}");
    assert!(
        event_page.contains("&lt;svg onload=alert('source')&gt;") && event_page.contains("&lt;/td&gt;&lt;script&gt;")
    );
    // The notice text comes from the relay, never from the URL.
    let notice =
        acme.get(&format!("/dashboard/webhooks/{id}?notice=%3Cscript%3Ealert(1)%3C/script%3E&n=%3Cb%3E")).await;
    assert!(!notice.body.contains("<script>alert(1)") && !notice.body.contains("<b>"));
    let recovered = acme.get(&format!("/dashboard/webhooks/{id}?notice=recovered&n=%3Cb%3E")).await;
    assert!(recovered.body.contains("0 failed deliveries put back"));
    app.stop().await;
}
