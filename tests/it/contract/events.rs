use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use relay_core::Timestamp;
use relay_core::domain::{
    Channel, Event, EventId, EventInput, EventTypeRegistry, NewEvent, Page, PageRequest, TenantId,
};
use relay_core::ports::{EventFilter, EventStore, IdempotencyRecord, Insert};

use super::event;

fn record(key: &str, fingerprint: &str, event: &relay_core::domain::Event, ttl: Duration) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.into(),
        fingerprint: fingerprint.into(),
        event_id: event.id,
        expires_at: Timestamp::now() + ttl,
    }
}

const DAY: Duration = Duration::from_secs(86_400);

pub async fn stores_and_reads_back(store: Arc<dyn EventStore>) {
    let e = event("job.created", Some("jobs"));
    assert_eq!(store.insert(&e, None).await.unwrap(), Insert::Created);
    let got = store.get(e.id).await.unwrap().unwrap();
    assert_eq!(got, e);
    store.mark_undispatched(e.id).await.unwrap();
    store.mark_enqueued(e.id).await.unwrap();
    assert_eq!(store.get(e.id).await.unwrap().unwrap(), e, "the marks leave the event as it was");
    assert_eq!(store.get(relay_core::domain::EventId::new()).await.unwrap(), None);
    let other = event("job.updated", None);
    store.insert(&other, None).await.unwrap();
    let missing = relay_core::domain::EventId::new();
    let mut many = store.get_many(&[other.id, missing, e.id, other.id]).await.unwrap();
    many.sort_by_key(|e| e.id);
    assert_eq!(many, [e.clone(), other], "each found event once; a missing one left out");
}

/// A second dispatch of an event (a replay, maintenance) fans it out to no new webhook: the
/// store knows which events were dispatched.
pub async fn knows_which_events_were_dispatched(store: Arc<dyn EventStore>) {
    let (a, b) = (event("job.created", None), event("job.created", None));
    store.insert(&a, None).await.unwrap();
    store.insert(&b, None).await.unwrap();
    assert!(store.dispatched_before(&[a.id, b.id]).await.unwrap().is_empty());
    store.mark_dispatched(&[(&a, vec![relay_core::domain::WebhookId::new()])]).await.unwrap();
    assert_eq!(store.dispatched_before(&[a.id, b.id]).await.unwrap(), [a.id]);
    store.mark_dispatched(&[(&a, vec![]), (&b, vec![])]).await.unwrap();
    let mut both = store.dispatched_before(&[b.id, a.id]).await.unwrap();
    both.sort();
    assert_eq!(both, [a.id, b.id]);
}

pub async fn lists_newest_first_with_filters_and_paging(store: Arc<dyn EventStore>) {
    let registry = EventTypeRegistry::default();
    let mut all = Vec::new();
    for i in 0..7 {
        let e = event(if i % 2 == 0 { "job.created" } else { "job.updated" }, Some(if i < 4 { "a" } else { "b" }));
        store.insert(&e, None).await.unwrap();
        all.push(e.id);
    }
    all.reverse();
    let ids = |page: &relay_core::domain::Page<relay_core::domain::Event>| {
        page.items.iter().map(|e| e.id).collect::<Vec<_>>()
    };

    let page = store.list(&EventFilter::default(), &PageRequest::default()).await.unwrap();
    assert_eq!(ids(&page), all);
    assert_eq!(page.next_cursor, None);

    let created = EventFilter { event_type: Some(registry.parse("job.created").unwrap()), ..EventFilter::default() };
    let page = store.list(&created, &PageRequest::default()).await.unwrap();
    assert_eq!(ids(&page), [all[0], all[2], all[4], all[6]]);

    let b_updated = EventFilter {
        event_type: Some(registry.parse("job.updated").unwrap()),
        source: Some("b".into()),
        ..EventFilter::default()
    };
    let page = store.list(&b_updated, &PageRequest::default()).await.unwrap();
    assert_eq!(ids(&page), [all[1]]);

    let mut seen = Vec::new();
    let mut request = PageRequest { limit: 3, ..PageRequest::default() };
    loop {
        let page = store.list(&EventFilter::default(), &request).await.unwrap();
        seen.extend(ids(&page));
        let Some(cursor) = page.next_cursor else { break };
        request = PageRequest::parse(Some("3"), None, Some(&cursor), 500).unwrap();
    }
    assert_eq!(seen, all);

    let page = store.list(&EventFilter::default(), &PageRequest { limit: 2, offset: 3, before: None }).await.unwrap();
    assert_eq!(ids(&page), all[3..5]);
}

pub async fn idempotency_key_is_taken_once(store: Arc<dyn EventStore>) {
    let first = event("job.created", None);
    let r1 = record("key-1", "fp-a", &first, DAY);
    assert_eq!(store.insert(&first, Some(&r1)).await.unwrap(), Insert::Created);
    let second = event("job.created", None);
    let r2 = record("key-1", "fp-b", &second, DAY);
    match store.insert(&second, Some(&r2)).await.unwrap() {
        Insert::Duplicate(existing) => {
            assert_eq!(existing.event_id, first.id);
            assert_eq!(existing.fingerprint, "fp-a");
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(store.get(second.id).await.unwrap(), None, "a duplicate must write nothing");
    let other = event("job.created", None);
    assert_eq!(store.insert(&other, Some(&record("key-2", "fp-a", &other, DAY))).await.unwrap(), Insert::Created);
}

pub async fn concurrent_duplicates_create_one_event(store: Arc<dyn EventStore>) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let e = event("job.created", None);
            let r = record("same", "fp", &e, DAY);
            (e.id, store.insert(&e, Some(&r)).await.unwrap())
        }));
    }
    let mut created = Vec::new();
    let mut pointed_at = HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            (id, Insert::Created) => created.push(id),
            (_, Insert::Duplicate(existing)) => {
                pointed_at.insert(existing.event_id);
            }
        }
    }
    assert_eq!(created.len(), 1, "exactly one insert wins");
    assert!(pointed_at.iter().all(|id| *id == created[0]));
}

pub async fn an_expired_key_can_be_reused(store: Arc<dyn EventStore>) {
    let old = event("job.created", None);
    let mut expired = record("reuse", "fp-a", &old, DAY);
    expired.expires_at = Timestamp::now() - Duration::from_secs(1);
    assert_eq!(store.insert(&old, Some(&expired)).await.unwrap(), Insert::Created);
    let new = event("job.created", None);
    assert_eq!(store.insert(&new, Some(&record("reuse", "fp-b", &new, DAY))).await.unwrap(), Insert::Created);
}

pub async fn undispatched_lists_old_events_not_yet_enqueued(store: Arc<dyn EventStore>) {
    let old_pending = event("job.created", None);
    let old_enqueued = event("job.created", None);
    store.insert(&old_pending, None).await.unwrap();
    store.insert(&old_enqueued, None).await.unwrap();
    store.mark_undispatched(old_pending.id).await.unwrap();
    store.mark_undispatched(old_enqueued.id).await.unwrap();
    store.mark_enqueued(old_enqueued.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let recent = event("job.created", None);
    store.insert(&recent, None).await.unwrap();
    store.mark_undispatched(recent.id).await.unwrap();
    let sent = event("job.created", None);
    store.insert(&sent, None).await.unwrap();

    assert_eq!(store.undispatched(cutoff, 10).await.unwrap(), [old_pending.id]);
    assert_eq!(store.undispatched(Timestamp::now() + DAY, 10).await.unwrap(), [old_pending.id, recent.id]);
    assert_eq!(store.undispatched(Timestamp::now() + DAY, 1).await.unwrap(), [old_pending.id]);
    store.mark_enqueued(old_pending.id).await.unwrap();
    assert!(store.undispatched(cutoff, 10).await.unwrap().is_empty());
    // A mark on an event that is gone does not bring it back.
    let gone = relay_core::domain::EventId::new();
    store.mark_undispatched(gone).await.unwrap();
    assert_eq!(store.get(gone).await.unwrap(), None);
    assert_eq!(store.undispatched(Timestamp::now() + DAY, 10).await.unwrap(), [recent.id]);
}

pub async fn counts_events_by_type_since(store: Arc<dyn EventStore>) {
    let registry = EventTypeRegistry::default();
    let types = [
        registry.parse("job.created").unwrap(),
        registry.parse("job.updated").unwrap(),
        registry.parse("job.deleted").unwrap(),
    ];
    store.insert(&event("job.created", None), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for t in ["job.created", "job.created", "job.updated"] {
        store.insert(&event(t, None), None).await.unwrap();
    }
    assert_eq!(store.count_by_type(&types, since).await.unwrap(), [2, 1, 0]);
    assert_eq!(store.count_by_type(&types, Timestamp::from_millis(0)).await.unwrap(), [3, 1, 0]);
    assert!(store.count_by_type(&[], since).await.unwrap().is_empty());
}

/// An event of `event_type` from `source`, for `tenant` (`None`: a broadcast), on `channels`.
fn scoped(event_type: &str, source: Option<&str>, tenant: Option<&str>, channels: &[&str]) -> Event {
    let input: EventInput = serde_json::from_value(serde_json::json!({
        "eventType": event_type, "eventName": "contract", "payload": {"k": "v"}, "source": source,
        "tenant": tenant, "channels": channels,
    }))
    .unwrap();
    Event::new(NewEvent::parse(input, &EventTypeRegistry::default()).unwrap(), Timestamp::now())
}

/// An event's tenant and channels are stored and read back (none: a broadcast, no channel).
pub async fn tenant_and_channels_round_trip(store: Arc<dyn EventStore>) {
    let scoped_event = scoped("job.created", None, Some("acme"), &["orders:eu", "project.42"]);
    let broadcast = scoped("job.created", Some("jobs"), None, &[]);
    for e in [&scoped_event, &broadcast] {
        store.insert(e, None).await.unwrap();
        assert_eq!(&store.get(e.id).await.unwrap().unwrap(), e);
    }
    let got = store.get(scoped_event.id).await.unwrap().unwrap();
    assert_eq!(got.tenant, Some(TenantId::parse("acme").unwrap()));
    assert_eq!(got.channels, [Channel::parse("orders:eu").unwrap(), Channel::parse("project.42").unwrap()]);
    let got = store.get(broadcast.id).await.unwrap().unwrap();
    assert_eq!((got.tenant, got.channels), (None, vec![]));
    let listed = store.list(&EventFilter::default(), &PageRequest::default()).await.unwrap();
    assert_eq!(listed.items.iter().find(|e| e.id == scoped_event.id), Some(&scoped_event));
}

/// Which events of a plan (type, source, tenant) a filter should keep.
type Keep = dyn Fn(&str, Option<&str>, Option<&str>) -> bool;

/// `tenant` narrows a list to the events scoped to that tenant (never broadcasts, never a
/// tenant whose id it begins), alone or with the type and source filters, newest first, with
/// cursors and offsets.
pub async fn lists_by_tenant(store: Arc<dyn EventStore>) {
    let registry = EventTypeRegistry::default();
    // (type, source, tenant)
    let plan = [
        ("job.created", Some("a"), Some("acme")),
        ("job.updated", Some("a"), Some("globex")),
        ("job.created", Some("b"), Some("acme")),
        ("job.created", Some("a"), None),
        ("job.updated", Some("a"), Some("acme")),
        ("job.created", Some("a"), Some("acme-eu")),
        ("job.created", None, Some("acme")),
        ("job.updated", Some("b"), Some("globex")),
        ("job.created", Some("a"), Some("acme")),
    ];
    let mut all = Vec::new();
    for (event_type, source, tenant) in plan {
        let e = scoped(event_type, source, tenant, &[]);
        store.insert(&e, None).await.unwrap();
        all.push((e.id, event_type, source, tenant));
    }
    all.reverse();
    let expect = |keep: &Keep| -> Vec<EventId> {
        all.iter().filter(|(_, t, s, tenant)| keep(t, *s, *tenant)).map(|(id, ..)| *id).collect()
    };
    let ids = |page: &Page<Event>| page.items.iter().map(|e| e.id).collect::<Vec<_>>();
    let acme = Some(TenantId::parse("acme").unwrap());

    let by_tenant = EventFilter { tenant: acme.clone(), ..EventFilter::default() };
    let page = store.list(&by_tenant, &PageRequest::default()).await.unwrap();
    let acme_all = expect(&|_, _, tenant| tenant == Some("acme"));
    assert_eq!(acme_all.len(), 5);
    assert_eq!(ids(&page), acme_all);
    assert!(page.items.iter().all(|e| e.tenant == acme));
    assert_eq!(page.next_cursor, None);

    let created = EventFilter { event_type: Some(registry.parse("job.created").unwrap()), ..by_tenant.clone() };
    let page = store.list(&created, &PageRequest::default()).await.unwrap();
    assert_eq!(ids(&page), expect(&|t, _, tenant| t == "job.created" && tenant == Some("acme")));

    let from_a = EventFilter { source: Some("a".into()), ..by_tenant.clone() };
    let page = store.list(&from_a, &PageRequest::default()).await.unwrap();
    assert_eq!(ids(&page), expect(&|_, s, tenant| s == Some("a") && tenant == Some("acme")));

    let all_three = EventFilter { event_type: Some(registry.parse("job.created").unwrap()), ..from_a.clone() };
    let page = store.list(&all_three, &PageRequest::default()).await.unwrap();
    assert_eq!(ids(&page), expect(&|t, s, tenant| t == "job.created" && s == Some("a") && tenant == Some("acme")));

    let nobody = EventFilter { tenant: Some(TenantId::parse("initech").unwrap()), ..EventFilter::default() };
    assert!(store.list(&nobody, &PageRequest::default()).await.unwrap().items.is_empty());

    // Two at a time through the tenant's five, by cursor; then an offset.
    let mut seen = Vec::new();
    let mut request = PageRequest { limit: 2, ..PageRequest::default() };
    loop {
        let page = store.list(&by_tenant, &request).await.unwrap();
        seen.extend(ids(&page));
        let Some(cursor) = page.next_cursor else { break };
        request = PageRequest::parse(Some("2"), None, Some(&cursor), 500).unwrap();
    }
    assert_eq!(seen, acme_all);
    let page = store.list(&by_tenant, &PageRequest { limit: 2, offset: 2, before: None }).await.unwrap();
    assert_eq!(ids(&page), acme_all[2..4]);
    assert!(page.next_cursor.is_some());
}

/// Maintenance prunes the index by age; entries of younger events stay.
pub async fn the_index_forgets_events_past_retention(index: Arc<dyn relay_core::ports::EventIndex>) {
    let old = event("job.created", None);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let young = event("job.created", None);
    index.add(&[&old, &young], false).await.unwrap();
    index.add(&[&old], true).await.unwrap();
    assert_eq!(index.dispatched(&[old.id, young.id]).await.unwrap(), [old.id]);
    assert_eq!(index.prune(cutoff, 10).await.unwrap(), 1);
    assert_eq!(index.prune(cutoff, 10).await.unwrap(), 0);
    let left = index.list(&EventFilter::default(), &PageRequest::default()).await.unwrap();
    assert_eq!(left.items, [young.id]);
}
