use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use relay_core::Timestamp;
use relay_core::domain::{EventTypeRegistry, PageRequest};
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
    assert_eq!(got.enqueued_at, None);
    let at = Timestamp::now();
    store.mark_enqueued(e.id, at).await.unwrap();
    assert_eq!(store.get(e.id).await.unwrap().unwrap().enqueued_at, Some(at));
    assert_eq!(store.get(relay_core::domain::EventId::new()).await.unwrap(), None);
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

    let created = EventFilter { event_type: Some(registry.parse("job.created").unwrap()), source: None };
    let page = store.list(&created, &PageRequest::default()).await.unwrap();
    assert_eq!(ids(&page), [all[0], all[2], all[4], all[6]]);

    let b_updated = EventFilter { event_type: Some(registry.parse("job.updated").unwrap()), source: Some("b".into()) };
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
    store.mark_enqueued(old_enqueued.id, Timestamp::now()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cutoff = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let recent = event("job.created", None);
    store.insert(&recent, None).await.unwrap();

    assert_eq!(store.undispatched(cutoff, 10).await.unwrap(), [old_pending.id]);
    assert_eq!(store.undispatched(Timestamp::now() + DAY, 10).await.unwrap(), [old_pending.id, recent.id]);
    assert_eq!(store.undispatched(Timestamp::now() + DAY, 1).await.unwrap(), [old_pending.id]);
    store.mark_enqueued(old_pending.id, Timestamp::now()).await.unwrap();
    assert!(store.undispatched(cutoff, 10).await.unwrap().is_empty());
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
