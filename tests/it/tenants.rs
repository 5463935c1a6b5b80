//! Tenants as data, tried through the API on every backend (in memory; PostgreSQL and Redis;
//! DynamoDB and SQS): a scoped event reaches only its tenant, channels narrow as stated,
//! broadcast obeys `ALLOW_BROADCAST_EVENTS`, a revoked key and a disabled tenant are refused,
//! per-tenant limits hold, and a portal link signs in once.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::aws;
use crate::helpers::{ACME_KEY, Receiver, SERVICE_TOKEN, TestApp, eventually};

const WAIT: Duration = Duration::from_secs(30);

impl TestApp {
    /// A call with the service token.
    async fn service(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).header("x-service-token", SERVICE_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates tenant `id` and issues it a key; returns the key.
    async fn tenant_with_key(&self, id: &str) -> String {
        let (status, body) =
            self.service(Method::POST, "/api/tenants", Some(json!({"id": id, "name": format!("{id} Inc.")}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!((body["data"]["id"].as_str(), body["data"]["isActive"].as_bool()), (Some(id), Some(true)));
        let (status, body) =
            self.service(Method::POST, &format!("/api/tenants/{id}/api-keys"), Some(json!({"name": "ci"}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["data"]["key"].as_str().unwrap().to_owned()
    }

    /// Registers a webhook with `key` at `url`; returns its id.
    async fn hook(&self, key: &str, url: &str, channels: &[&str]) -> String {
        let body = json!({"name": "hook", "url": url, "eventTypes": ["candidate.created"], "channels": channels});
        let (status, body) = self.api(Method::POST, "/api/webhooks", key, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["data"]["channels"], json!(channels));
        body["data"]["id"].as_str().unwrap().to_owned()
    }

    /// Posts a `candidate.created` event with these extra fields; returns the answer.
    async fn scoped(&self, extra: Value) -> (StatusCode, Value) {
        let mut body = json!({"eventType": "candidate.created", "eventName": "Candidate", "payload": {"id": 1}});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let response = self.post_event(body).await;
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// Tenant `tenant`'s deliveries of `event`, read from the log (dispatch writes every
    /// delivery of an event at once, before any is sent).
    async fn tenant_deliveries(&self, tenant: &str, event: &str) -> Vec<relay_core::domain::Delivery> {
        let tenant = relay_core::domain::TenantId::parse(tenant).unwrap();
        let event = relay_core::domain::EventId::parse(event).unwrap();
        self.backends.deliveries.of_event(&tenant, event).await.unwrap()
    }

    /// The event ids `key`'s webhook `id` has deliveries of.
    async fn delivered(&self, key: &str, id: &str) -> Vec<String> {
        let (status, body) = self.api(Method::GET, &format!("/api/webhooks/{id}/deliveries"), key, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].as_array().unwrap().iter().map(|d| d["eventId"].as_str().unwrap().to_owned()).collect()
    }
}

/// The event id of an accepted event.
fn accepted(answer: (StatusCode, Value)) -> String {
    assert_eq!(answer.0, StatusCode::ACCEPTED, "{}", answer.1);
    answer.1["data"]["eventId"].as_str().unwrap().to_owned()
}

/// The `field` of a 422.
fn refused_field(answer: &(StatusCode, Value)) -> String {
    assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.1);
    answer.1["error"]["details"][0]["field"].as_str().unwrap().to_owned()
}

/// The isolation rules on one relay (which allows broadcasts). Tenant ids are made unique, so
/// relays that share their stores do not see each other's.
async fn isolation(app: &TestApp) {
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (a, b) = (format!("a-{suffix}"), format!("b-{suffix}"));
    let (key_a, key_b) = (app.tenant_with_key(&a).await, app.tenant_with_key(&b).await);

    // Two tenants subscribed to the same type and channel; a channel-less and an other-channel
    // webhook beside them.
    let (a_eu, b_eu, a_us, b_all) =
        (Receiver::start().await, Receiver::start().await, Receiver::start().await, Receiver::start().await);
    let hook_a_eu = app.hook(&key_a, &a_eu.url(), &["eu"]).await;
    let hook_b_eu = app.hook(&key_b, &b_eu.url(), &["eu"]).await;
    let hook_a_us = app.hook(&key_a, &a_us.url(), &["us"]).await;
    let hook_b_all = app.hook(&key_b, &b_all.url(), &[]).await;

    // Scoped to a, channel eu: a's eu webhook only.
    let event = accepted(app.scoped(json!({"tenant": a, "channels": ["eu"]})).await);
    assert_eq!(a_eu.wait_for(1, WAIT).await[0].json()["eventId"], event.as_str());
    // Dispatch records every delivery of an event at once: the others have none of it.
    assert!(!app.delivered(&key_b, &hook_b_eu).await.contains(&event), "another tenant's webhook got it");
    assert!(!app.delivered(&key_a, &hook_a_us).await.contains(&event), "a webhook of another channel got it");
    assert!(!app.delivered(&key_b, &hook_b_all).await.contains(&event));

    // Scoped to b without channels: b's channel-less webhook only (a webhook with channels
    // receives only events sharing one).
    let event = accepted(app.scoped(json!({"tenant": b})).await);
    assert_eq!(b_all.wait_for(1, WAIT).await[0].json()["eventId"], event.as_str());
    assert!(!app.delivered(&key_b, &hook_b_eu).await.contains(&event));
    assert!(!app.delivered(&key_a, &hook_a_eu).await.contains(&event));

    // Channels: any one shared is enough.
    let event = accepted(app.scoped(json!({"tenant": a, "channels": ["apac", "us"]})).await);
    assert_eq!(a_us.wait_for(1, WAIT).await[0].json()["eventId"], event.as_str());
    assert!(!app.delivered(&key_a, &hook_a_eu).await.contains(&event));

    // The stored event shows its tenant and channels; the list filters by tenant.
    let (status, body) = app.service(Method::GET, &format!("/api/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["data"]["tenant"].as_str(), &body["data"]["channels"]),
        (Some(a.as_str()), &json!(["apac", "us"]))
    );
    let (status, body) = app.service(Method::GET, &format!("/api/events?tenant={a}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tenants: Vec<&str> = body["data"].as_array().unwrap().iter().map(|e| e["tenant"].as_str().unwrap()).collect();
    assert_eq!(tenants, [a.as_str(), a.as_str()], "{body}");

    // A broadcast (allowed here) reaches every tenant's subscribers whose channels it matches.
    let event = accepted(app.scoped(json!({})).await);
    assert_eq!(b_all.wait_for(2, WAIT).await[1].json()["eventId"], event.as_str());
    let (status, body) = app.service(Method::GET, &format!("/api/events/{event}"), None).await;
    assert_eq!((status, &body["data"]["tenant"]), (StatusCode::OK, &Value::Null));
    let event = accepted(app.scoped(json!({"channels": ["eu"]})).await);
    assert_eq!(a_eu.wait_for(2, WAIT).await[1].json()["eventId"], event.as_str());
    assert_eq!(b_eu.wait_for(1, WAIT).await[0].json()["eventId"], event.as_str());

    // An unknown tenant, a malformed one, and bad channels are 422s naming the field.
    assert_eq!(refused_field(&app.scoped(json!({"tenant": "no-such-tenant"})).await), "tenant");
    assert_eq!(refused_field(&app.scoped(json!({"tenant": "not a tenant"})).await), "tenant");
    assert_eq!(refused_field(&app.scoped(json!({"tenant": a, "channels": ["a b"]})).await), "channels[0]");
    let eleven: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
    assert_eq!(refused_field(&app.scoped(json!({"tenant": a, "channels": eleven})).await), "channels");

    // One tenant's key never sees the other's webhooks.
    let (status, _) = app.api(Method::GET, &format!("/api/webhooks/{hook_a_eu}"), &key_b, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A revoked key is refused; the other key of the tenant keeps working.
    let (status, body) =
        app.service(Method::POST, &format!("/api/tenants/{a}/api-keys"), Some(json!({"name": "second"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (second, second_id) = (body["data"]["key"].as_str().unwrap(), body["data"]["id"].as_str().unwrap());
    let (status, body) = app.service(Method::GET, &format!("/api/tenants/{a}/api-keys"), None).await;
    assert_eq!(status, StatusCode::OK);
    let listed = body["data"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{body}");
    assert!(listed.iter().all(|k| k.get("key").is_none() && k["prefix"].as_str().unwrap().len() < 12), "{body}");
    assert!(!body.to_string().contains(second), "a listed key shows only its prefix");
    let (status, _) = app.api(Method::GET, "/api/webhooks", second, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.service(Method::DELETE, &format!("/api/tenants/{a}/api-keys/{second_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.api(Method::GET, "/api/webhooks", second, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked key");
    let (status, _) = app.api(Method::GET, "/api/webhooks", &key_a, None).await;
    assert_eq!(status, StatusCode::OK);

    // A disabled tenant's keys are 403 and its events 422; enabled again, both work.
    let (status, body) = app.service(Method::PUT, &format!("/api/tenants/{b}"), Some(json!({"isActive": false}))).await;
    assert_eq!((status, &body["data"]["isActive"]), (StatusCode::OK, &json!(false)), "{body}");
    let (status, _) = app.api(Method::GET, "/api/webhooks", &key_b, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused_field(&app.scoped(json!({"tenant": b})).await), "tenant");
    // Nor do its webhooks get a broadcast.
    let event = accepted(app.scoped(json!({"channels": ["eu"]})).await);
    assert_eq!(a_eu.wait_for(3, WAIT).await[2].json()["eventId"], event.as_str());
    assert!(app.tenant_deliveries(&b, &event).await.is_empty(), "a disabled tenant's webhook got a broadcast");
    let (status, _) = app.service(Method::PUT, &format!("/api/tenants/{b}"), Some(json!({"isActive": true}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.api(Method::GET, "/api/webhooks", &key_b, None).await;
    assert_eq!(status, StatusCode::OK);

    // Deleting a tenant removes its webhooks and keys.
    let (status, _) = app.service(Method::DELETE, &format!("/api/tenants/{b}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.service(Method::GET, &format!("/api/tenants/{b}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.api(Method::GET, "/api/webhooks", &key_b, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused_field(&app.scoped(json!({"tenant": b})).await), "tenant");
    let event = accepted(app.scoped(json!({"channels": ["eu"]})).await);
    assert_eq!(a_eu.wait_for(4, WAIT).await[3].json()["eventId"], event.as_str());
    assert!(app.tenant_deliveries(&b, &event).await.is_empty(), "a deleted tenant's webhook got an event");

    // A portal link signs in once.
    portal_link_works_once(app, &a).await;
}

/// The portal link of tenant `id`: the first visit opens a dashboard session as the tenant,
/// the second shows the sign-in page saying the link is spent.
async fn portal_link_works_once(app: &TestApp, id: &str) {
    let (status, body) =
        app.service(Method::POST, &format!("/api/tenants/{id}/portal-links"), Some(json!({"ttlSeconds": 900}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let url = body["data"]["url"].as_str().unwrap();
    assert!(url.starts_with(&app.base) && url.contains("/dashboard/"), "{url}");
    assert!(body["data"]["expiresAt"].is_string(), "{body}");
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    let first = browser.get(url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let cookie = first.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let overview = browser.get(app.url("/dashboard")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(overview.status(), StatusCode::OK);
    assert!(overview.text().await.unwrap().contains(id), "the overview names the tenant");
    let second = browser.get(url).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::UNAUTHORIZED);
    assert!(second.headers().get("set-cookie").is_none());
    let page = second.text().await.unwrap();
    assert!(page.contains("already been used or has expired") && page.contains("api_key"), "{page}");
    let (status, _) =
        app.service(Method::POST, &format!("/api/tenants/{id}/portal-links"), Some(json!({"ttlSeconds": 5}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "below the shortest life");
}

#[tokio::test]
async fn tenants_are_isolated_in_memory() {
    let app = TestApp::spawn().await;
    isolation(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn tenants_are_isolated_on_postgres_and_redis() {
    if crate::redis_server::store().await.is_none() {
        return;
    }
    let Some(database) = crate::pg::database().await else { return };
    let redis = crate::redis_server::url();
    let app = TestApp::spawn_with(&[("DATABASE_URL", database.url()), ("REDIS_URL", &redis)]).await;
    isolation(&app).await;
    app.stop().await;
}

/// On DynamoDB and SQS, with two relays on the same tables: a key revoked and a tenant
/// disabled through one are refused by the other within five seconds.
#[tokio::test]
async fn tenants_are_isolated_on_the_emulators_and_changes_reach_every_process() {
    if aws::sqs().await.is_none() || aws::dynamodb().await.is_none() {
        return;
    }
    let (sdk, config) = aws::fresh_resources("tenants", &aws::QUICK_RETRIES).await;
    let one = TestApp::start(&config, relay_local::aws_backends(&config, &sdk).unwrap()).await;
    isolation(&one).await;

    let other = TestApp::start(&config, relay_local::aws_backends(&config, &sdk).unwrap()).await;
    let key = one.tenant_with_key("far-away").await;
    let (status, _) = other.api(Method::GET, "/api/webhooks", &key, None).await;
    assert_eq!(status, StatusCode::OK, "the other process reads keys issued by this one");
    let (status, body) = one.service(Method::GET, "/api/tenants/far-away/api-keys", None).await;
    assert_eq!(status, StatusCode::OK);
    let key_id = body["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = one.service(Method::DELETE, &format!("/api/tenants/far-away/api-keys/{key_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let revoked_at = std::time::Instant::now();
    let refused = eventually(Duration::from_secs(10), || async {
        let (status, _) = other.api(Method::GET, "/api/webhooks", &key, None).await;
        (status == StatusCode::UNAUTHORIZED).then_some(revoked_at.elapsed())
    })
    .await
    .expect("the revoked key was refused");
    assert!(refused < Duration::from_secs(5), "refused after {refused:?}");

    one.stop().await;
    other.stop().await;
}

/// Where `ALLOW_BROADCAST_EVENTS` is false (production's default), an event without a tenant
/// is refused and says why; scoped events and static tenants from `API_KEYS` keep working.
#[tokio::test]
async fn without_broadcasts_an_event_needs_a_tenant() {
    let app = TestApp::spawn_with(&[("ALLOW_BROADCAST_EVENTS", "false")]).await;
    let answer = app.scoped(json!({})).await;
    assert_eq!(refused_field(&answer), "tenant");
    assert!(answer.1["error"]["details"][0]["message"].as_str().unwrap().contains("ALLOW_BROADCAST_EVENTS"));
    let receiver = Receiver::start().await;
    let hook = app.hook(ACME_KEY, &receiver.url(), &[]).await;
    // `acme` exists because API_KEYS names it.
    let event = accepted(app.scoped(json!({"tenant": "acme"})).await);
    assert_eq!(receiver.wait_for(1, WAIT).await[0].json()["eventId"], event.as_str());
    assert!(app.delivered(ACME_KEY, &hook).await.contains(&event));
    let (status, body) = app.service(Method::GET, "/api/tenants/acme", None).await;
    assert_eq!((status, &body["data"]["isActive"]), (StatusCode::OK, &json!(true)), "{body}");
    app.stop().await;
}

/// Tenant ids follow their rule and are unique; a tenant's own limits apply to its keys.
#[tokio::test]
async fn tenant_rules_and_limits() {
    let app = TestApp::spawn().await;
    for bad in ["Acme", "-acme", "a b", ""] {
        let (status, body) = app.service(Method::POST, "/api/tenants", Some(json!({"id": bad, "name": "x"}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], "id");
    }
    let (status, body) = app
        .service(
            Method::POST,
            "/api/tenants",
            Some(json!({"id": "limited", "name": "L", "maxWebhooks": 1, "rateLimitPerMinute": 4})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((body["data"]["maxWebhooks"].as_u64(), body["data"]["rateLimitPerMinute"].as_u64()), (Some(1), Some(4)));
    let (status, _) = app.service(Method::POST, "/api/tenants", Some(json!({"id": "limited", "name": "again"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app.api(Method::POST, "/api/tenants", ACME_KEY, Some(json!({"id": "x", "name": "x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an API key cannot manage tenants");

    let (status, body) = app.service(Method::POST, "/api/tenants/limited/api-keys", Some(json!({"name": "ci"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let key = body["data"]["key"].as_str().unwrap().to_owned();
    let receiver = Receiver::start().await;
    app.hook(&key, &receiver.url(), &[]).await; // request 1
    let body = json!({"name": "two", "url": receiver.url(), "eventTypes": ["candidate.created"]});
    let (status, body) = app.api(Method::POST, "/api/webhooks", &key, Some(body)).await; // 2
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "past maxWebhooks: {body}");
    assert_eq!(body["error"]["details"][0]["field"], "maxWebhooks");
    let (status, _) = app.api(Method::GET, "/api/webhooks", &key, None).await; // 3
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.api(Method::GET, "/api/webhooks", &key, None).await; // 4
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.api(Method::GET, "/api/webhooks", &key, None).await; // 5
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "past the tenant's own rateLimitPerMinute");
    let (status, _) = app.api(Method::GET, "/api/webhooks", ACME_KEY, None).await;
    assert_eq!(status, StatusCode::OK, "other tenants keep the relay's limit");

    // Renamed, and listed newest first with a cursor.
    let (status, body) = app
        .service(Method::PUT, "/api/tenants/limited", Some(json!({"name": "Limited Ltd", "rateLimitPerMinute": null})))
        .await;
    assert_eq!((status, body["data"]["name"].as_str()), (StatusCode::OK, Some("Limited Ltd")), "{body}");
    assert_eq!(body["data"]["rateLimitPerMinute"], Value::Null);
    for id in ["second", "third"] {
        let (status, _) = app.service(Method::POST, "/api/tenants", Some(json!({"id": id, "name": id}))).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = app.service(Method::GET, "/api/tenants?limit=2", None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["third", "second"]);
    let cursor = body["pagination"]["nextCursor"].as_str().unwrap();
    let (_, body) = app.service(Method::GET, &format!("/api/tenants?limit=2&cursor={cursor}"), None).await;
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["limited"]);
    assert_eq!(body["pagination"]["nextCursor"], Value::Null);
    app.stop().await;
}
