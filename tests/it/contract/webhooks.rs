use std::sync::Arc;

use relay_core::Timestamp;
use relay_core::domain::{EventTypeRegistry, PageRequest, TenantId, WebhookId};
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
        store.subscribed(&registry.parse("job.created").unwrap()).await.unwrap().iter().map(|w| w.id).collect();
    ids.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(store.subscribed(&registry.parse("interview.scheduled").unwrap()).await.unwrap().is_empty());
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
