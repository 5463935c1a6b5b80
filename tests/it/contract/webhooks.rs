use std::sync::Arc;

use relay_core::Timestamp;
use relay_core::domain::{Channel, EventType, EventTypeRegistry, PageRequest, TenantId, Webhook, WebhookId};
use relay_core::ports::WebhookStore;

use super::{keys, webhook};

pub async fn crud_by_tenant(store: Arc<dyn WebhookStore>) {
    let acme = TenantId::parse("acme").unwrap();
    let mut hook = webhook("acme", &["job.created"], true);
    store.insert(&hook).await.unwrap();
    store.insert(&webhook("globex", &["job.created"], true)).await.unwrap();

    let got = store.get(hook.id).await.unwrap().unwrap();
    assert_eq!(got.name, hook.name);
    assert_eq!(got.secret, hook.secret);
    assert_eq!(got.url, hook.url);
    assert_eq!(got.event_types, hook.event_types);

    let listed = store.list(&acme, &PageRequest::default()).await.unwrap();
    assert_eq!(listed.items.iter().map(|w| w.id).collect::<Vec<_>>(), [hook.id]);

    hook.rotate_secret(
        keys().seal(&relay_core::domain::WebhookSecret::generate(), hook.id).unwrap(),
        std::time::Duration::from_secs(60),
        Timestamp::now(),
    );
    hook.disable("gone", Timestamp::now());
    assert!(store.update(&hook).await.unwrap());
    let got = store.get(hook.id).await.unwrap().unwrap();
    assert!(!got.is_active);
    assert_eq!(got.disabled_reason.as_deref(), Some("gone"));
    assert_eq!(got.secret, hook.secret);
    assert_eq!(got.previous_secret, hook.previous_secret, "the previous secret survives a round trip");
    assert_eq!(got.previous_secret_expires_at, hook.previous_secret_expires_at);

    assert!(store.delete(hook.id).await.unwrap());
    assert!(!store.delete(hook.id).await.unwrap());
    assert!(store.get(hook.id).await.unwrap().is_none());
    assert!(!store.update(&hook).await.unwrap(), "updating a deleted webhook must not recreate it");
    assert!(store.get(WebhookId::new()).await.unwrap().is_none());
}

pub async fn subscribed_is_active_and_by_type_across_tenants(store: Arc<dyn WebhookStore>) {
    let registry = EventTypeRegistry::default();
    let a = webhook("acme", &["job.created", "job.updated"], true);
    let b = webhook("globex", &["job.created"], true);
    let inactive = webhook("acme", &["job.created"], false);
    let other = webhook("acme", &["candidate.created"], true);
    for w in [&a, &b, &inactive, &other] {
        store.insert(w).await.unwrap();
    }
    let mut ids: Vec<WebhookId> =
        store.subscribed(&registry.parse("job.created").unwrap(), None).await.unwrap().iter().map(|w| w.id).collect();
    ids.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(store.subscribed(&registry.parse("interview.scheduled").unwrap(), None).await.unwrap().is_empty());
}

/// The ids of `webhooks`, sorted.
fn sorted(webhooks: &[&Webhook]) -> Vec<WebhookId> {
    let mut ids: Vec<WebhookId> = webhooks.iter().map(|w| w.id).collect();
    ids.sort();
    ids
}

/// `subscribed` with a tenant finds that tenant's active subscribers only (not those of a
/// tenant whose id it begins, `acme-eu` for `acme`); without one, every tenant's. Changes move
/// a webhook in and out of both.
pub async fn subscribed_is_scoped_by_tenant(store: Arc<dyn WebhookStore>) {
    let registry = EventTypeRegistry::default();
    let created = registry.parse("job.created").unwrap();
    let updated = registry.parse("job.updated").unwrap();
    let tenant = |id: &str| TenantId::parse(id).unwrap();
    let (acme, globex, acme_eu, initech) = (tenant("acme"), tenant("globex"), tenant("acme-eu"), tenant("initech"));
    let mut a1 = webhook("acme", &["job.created"], true);
    let mut a2 = webhook("acme", &["job.created", "job.updated"], true);
    let g = webhook("globex", &["job.created"], true);
    let eu = webhook("acme-eu", &["job.created"], true);
    let inactive = webhook("acme", &["job.created"], false);
    for w in [&a1, &a2, &g, &eu, &inactive] {
        store.insert(w).await.unwrap();
    }
    let subscribed = |event_type: &EventType, tenant: Option<TenantId>| {
        let (store, event_type) = (store.clone(), event_type.clone());
        async move {
            let found = store.subscribed(&event_type, tenant.as_ref()).await.unwrap();
            assert!(found.iter().all(|w| w.is_active), "an inactive webhook was found: {found:?}");
            let mut ids: Vec<WebhookId> = found.iter().map(|w| w.id).collect();
            ids.sort();
            ids
        }
    };

    assert_eq!(subscribed(&created, Some(acme.clone())).await, sorted(&[&a1, &a2]));
    assert_eq!(subscribed(&created, Some(globex.clone())).await, sorted(&[&g]));
    assert_eq!(subscribed(&created, Some(acme_eu.clone())).await, sorted(&[&eu]));
    assert_eq!(subscribed(&created, Some(initech.clone())).await, []);
    assert_eq!(subscribed(&created, None).await, sorted(&[&a1, &a2, &g, &eu]));
    assert_eq!(subscribed(&updated, Some(acme.clone())).await, sorted(&[&a2]));
    assert_eq!(subscribed(&updated, Some(globex.clone())).await, []);
    assert_eq!(subscribed(&updated, None).await, sorted(&[&a2]));

    // Deactivated: gone from both lookups; a type dropped: gone from that type's.
    a1.is_active = false;
    assert!(store.update(&a1).await.unwrap());
    a2 = store.get(a2.id).await.unwrap().unwrap();
    a2.event_types = vec![updated.clone()];
    assert!(store.update(&a2).await.unwrap());
    assert_eq!(subscribed(&created, Some(acme.clone())).await, []);
    assert_eq!(subscribed(&created, None).await, sorted(&[&g, &eu]));
    assert_eq!(subscribed(&updated, Some(acme.clone())).await, sorted(&[&a2]));

    // Reactivated, and deleted.
    a1 = store.get(a1.id).await.unwrap().unwrap();
    a1.is_active = true;
    assert!(store.update(&a1).await.unwrap());
    assert!(store.delete(g.id).await.unwrap());
    assert_eq!(subscribed(&created, Some(acme.clone())).await, sorted(&[&a1]));
    assert_eq!(subscribed(&created, Some(globex)).await, []);
    assert_eq!(subscribed(&created, None).await, sorted(&[&a1, &eu]));
}

/// `count` counts every webhook of the tenant, active or not, whatever its types.
pub async fn count_is_per_tenant(store: Arc<dyn WebhookStore>) {
    let acme = TenantId::parse("acme").unwrap();
    assert_eq!(store.count(&acme).await.unwrap(), 0);
    let hooks = [
        webhook("acme", &["job.created"], true),
        webhook("acme", &["job.created", "job.updated", "candidate.created"], true),
        webhook("acme", &["job.created"], false),
        webhook("globex", &["job.created"], true),
        webhook("acme-eu", &["job.created"], true),
    ];
    for w in &hooks {
        store.insert(w).await.unwrap();
    }
    assert_eq!(store.count(&acme).await.unwrap(), 3);
    assert_eq!(store.count(&TenantId::parse("globex").unwrap()).await.unwrap(), 1);
    assert_eq!(store.count(&TenantId::parse("initech").unwrap()).await.unwrap(), 0);
    assert!(store.delete(hooks[1].id).await.unwrap());
    assert_eq!(store.count(&acme).await.unwrap(), 2);
}

/// A webhook's channels are stored, read back, listed, found by `subscribed`, and changed.
pub async fn channels_round_trip(store: Arc<dyn WebhookStore>) {
    let registry = EventTypeRegistry::default();
    let created = registry.parse("job.created").unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let channels: Vec<Channel> = ["orders:eu", "project.42"].iter().map(|c| Channel::parse(c).unwrap()).collect();
    let mut hook = webhook("acme", &["job.created"], true);
    hook.channels = channels.clone();
    let plain = webhook("acme", &["job.created"], true);
    store.insert(&hook).await.unwrap();
    store.insert(&plain).await.unwrap();

    assert_eq!(store.get(hook.id).await.unwrap().unwrap().channels, channels);
    assert_eq!(store.get(plain.id).await.unwrap().unwrap().channels, []);
    let listed = store.list(&acme, &PageRequest::default()).await.unwrap();
    let listed = listed.items.iter().find(|w| w.id == hook.id).unwrap();
    assert_eq!(listed.channels, channels);
    for tenant in [Some(&acme), None] {
        let found = store.subscribed(&created, tenant).await.unwrap();
        assert_eq!(found.iter().find(|w| w.id == hook.id).unwrap().channels, channels, "{tenant:?}");
    }

    let mut changed = store.get(hook.id).await.unwrap().unwrap();
    changed.channels = vec![Channel::parse("project.7").unwrap()];
    assert!(store.update(&changed).await.unwrap());
    assert_eq!(store.get(hook.id).await.unwrap().unwrap().channels, changed.channels);
    let found = store.subscribed(&created, Some(&acme)).await.unwrap();
    assert_eq!(found.iter().find(|w| w.id == hook.id).unwrap().channels, changed.channels);
    changed = store.get(hook.id).await.unwrap().unwrap();
    changed.channels = Vec::new();
    assert!(store.update(&changed).await.unwrap());
    assert_eq!(store.get(hook.id).await.unwrap().unwrap().channels, []);
}

/// A webhook's filter, custom headers and schedule come back as written, through every read, and go
/// when removed.
pub async fn filter_headers_and_schedule_round_trip(store: Arc<dyn WebhookStore>) {
    use relay_core::domain::{CustomHeaders, Filter};
    let registry = EventTypeRegistry::default();
    let created = registry.parse("job.created").unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let written =
        serde_json::json!({"payload.status": {"$in": ["hired"]}, "$or": [{"source": "ats"}, {"tenant": "acme"}]});
    let filter = Filter::parse(&written, "filter").unwrap();
    let headers = serde_json::json!({"Authorization": "Bearer s3cr3t", "X-Team": "core"});
    let headers = CustomHeaders::parse(headers.as_object().unwrap()).unwrap();
    let schedule = relay_core::domain::Schedule {
        timeout_ms: Some(1500),
        max_retries: Some(0),
        retry_delay_ms: Some(250),
        max_in_flight: Some(3),
        rate_limit: Some(7),
        ordering: relay_core::domain::Ordering::Ordered,
    };
    let mut hook = webhook("acme", &["job.created"], true);
    hook.filter = Some(filter.clone());
    hook.headers = headers.clone();
    hook.schedule = schedule;
    store.insert(&hook).await.unwrap();

    let read = store.get(hook.id).await.unwrap().unwrap();
    assert_eq!((read.filter.as_ref(), &read.headers), (Some(&filter), &headers));
    assert_eq!(read.schedule, schedule);
    assert_eq!(read.filter.unwrap().as_json(), &written, "kept as written");
    let found = store.subscribed(&created, Some(&acme)).await.unwrap();
    let found = found.iter().find(|w| w.id == hook.id).unwrap();
    assert_eq!((found.filter.as_ref(), &found.headers), (Some(&filter), &headers));

    let mut changed = store.get(hook.id).await.unwrap().unwrap();
    changed.filter = None;
    changed.headers = CustomHeaders::default();
    changed.schedule = relay_core::domain::Schedule::default();
    assert!(store.update(&changed).await.unwrap());
    let read = store.get(hook.id).await.unwrap().unwrap();
    assert_eq!((read.filter, read.headers.is_empty(), read.schedule.is_default()), (None, true, true));
}

pub async fn lists_page_through(store: Arc<dyn WebhookStore>) {
    let acme = TenantId::parse("acme").unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let w = webhook("acme", &["job.created"], true);
        store.insert(&w).await.unwrap();
        ids.push(w.id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut request = PageRequest { limit: 2, ..PageRequest::default() };
    loop {
        let page = store.list(&acme, &request).await.unwrap();
        seen.extend(page.items.iter().map(|w| w.id));
        let Some(cursor) = page.next_cursor else { break };
        request = PageRequest::parse(Some("2"), None, Some(&cursor), 500).unwrap();
    }
    assert_eq!(seen, ids);
}

/// Optimistic concurrency: a write based on an old read is refused, and `modify_webhook`
/// redoes concurrent changes so none is lost.
pub async fn stale_writes_are_refused_and_concurrent_changes_all_land(store: Arc<dyn WebhookStore>) {
    let hook = webhook("acme", &["job.created"], true);
    store.insert(&hook).await.unwrap();
    let read_by_one = store.get(hook.id).await.unwrap().unwrap();
    let mut read_by_other = read_by_one.clone();

    let mut rotated = read_by_one.clone();
    rotated.rotate_secret(
        keys().seal(&relay_core::domain::WebhookSecret::generate(), rotated.id).unwrap(),
        std::time::Duration::ZERO,
        Timestamp::now(),
    );
    assert!(store.update(&rotated).await.unwrap());
    read_by_other.failing_since = Some(Timestamp::now());
    let stale = store.update(&read_by_other).await;
    assert!(matches!(stale, Err(relay_core::Error::Conflict { code: "webhook_changed", .. })), "{stale:?}");
    let stored = store.get(hook.id).await.unwrap().unwrap();
    assert_eq!(stored.secret, rotated.secret, "a stale write put the old secret back");
    assert_eq!(stored.failing_since, None);

    let mut writers = tokio::task::JoinSet::new();
    for n in 0..4 {
        let store = store.clone();
        writers.spawn(async move {
            relay_core::app::modify_webhook(store.as_ref(), keys(), hook.id, |w| {
                w.name = format!("{}+{n}", w.name);
                Ok(true)
            })
            .await
        });
    }
    while let Some(written) = writers.join_next().await {
        assert!(written.unwrap().unwrap().is_some());
    }
    let stored = store.get(hook.id).await.unwrap().unwrap();
    for n in 0..4 {
        assert!(stored.name.contains(&format!("+{n}")), "change {n} was lost: {}", stored.name);
    }
    assert_eq!(stored.secret, rotated.secret);
}
