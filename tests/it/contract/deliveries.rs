use std::sync::Arc;

use relay_core::Timestamp;
use relay_core::domain::{Attempt, DeliveryStatus, PageRequest, Trigger};
use relay_core::ports::{DeliveryLog, Record};

use super::{delivery, event, webhook};

fn attempt(number: u32, status: Option<u16>) -> Attempt {
    Attempt {
        number,
        status_code: status,
        duration_ms: 12,
        error: status.filter(|s| *s >= 300).map(|s| format!("HTTP {s}")),
        response_body: Some("ok".into()),
        trigger: Trigger::Scheduled,
        created_at: Timestamp::now(),
    }
}

pub async fn ensure_keeps_what_exists(log: Arc<dyn DeliveryLog>) {
    let e = event("job.created", None);
    let (w1, w2) = (webhook("acme", &["job.created"], true), webhook("acme", &["job.created"], true));
    let first = delivery(&e, &w1);
    let stored = log.ensure(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(stored, std::slice::from_ref(&first));

    let mut progressed = first.clone();
    progressed.status = DeliveryStatus::Succeeded;
    progressed.attempt_count = 1;
    log.record(&progressed, Some(&attempt(1, Some(200)))).await.unwrap();

    let second = delivery(&e, &w2);
    let stored = log.ensure(&[delivery(&e, &w1), second.clone()]).await.unwrap();
    assert_eq!(stored[0].status, DeliveryStatus::Succeeded, "ensure must not reset an existing delivery");
    assert_eq!(stored[1], second);
    assert_eq!(log.get(second.key()).await.unwrap(), Some(second));
    assert!(log.ensure(&[]).await.unwrap().is_empty());
}

/// An ordered webhook asks which earlier event it still owes: the oldest not final, by event
/// id (time-ordered), and only before the event asking; other webhooks' deliveries do not count.
pub async fn unfinished_before_finds_the_oldest_event_still_owed(log: Arc<dyn DeliveryLog>) {
    let hook = webhook("acme", &["job.created"], true);
    let other = webhook("acme", &["job.created"], true);
    let events: Vec<_> = (0..4).map(|_| event("job.created", None)).collect();
    let mut wanted: Vec<_> = events.iter().map(|e| delivery(e, &hook)).collect();
    wanted.push(delivery(&events[0], &other));
    log.ensure(&wanted).await.unwrap();
    assert_eq!(log.unfinished_before(hook.id, events[0].id).await.unwrap(), None, "nothing before the first");
    assert_eq!(log.unfinished_before(hook.id, events[3].id).await.unwrap(), Some(events[0].id));

    let mut done = wanted[0].clone();
    done.status = DeliveryStatus::Succeeded;
    let mut retrying = wanted[1].clone();
    retrying.status = DeliveryStatus::Retrying;
    log.record_many(&[Record { delivery: &done, attempt: None }, Record { delivery: &retrying, attempt: None }])
        .await
        .unwrap();
    assert_eq!(log.unfinished_before(hook.id, events[3].id).await.unwrap(), Some(events[1].id), "retrying is owed");
    let mut failed = retrying.clone();
    failed.status = DeliveryStatus::Failed;
    log.record(&failed, None).await.unwrap();
    assert_eq!(log.unfinished_before(hook.id, events[3].id).await.unwrap(), Some(events[2].id), "failed is final");
    assert_eq!(log.unfinished_before(hook.id, events[2].id).await.unwrap(), None);
    assert_eq!(log.unfinished_before(other.id, events[3].id).await.unwrap(), Some(events[0].id));
}

/// Closing what a lost queue left: `pending` and `retrying` become `failed` with the reason and
/// no next attempt; final deliveries and their attempts are left as they were.
pub async fn close_unfinished_fails_what_was_waiting(log: Arc<dyn DeliveryLog>) {
    let e = event("job.created", None);
    let hooks: Vec<_> = (0..4).map(|_| webhook("acme", &["job.created"], true)).collect();
    let mut all: Vec<_> = hooks.iter().map(|w| delivery(&e, w)).collect();
    log.ensure(&all).await.unwrap();
    let statuses =
        [DeliveryStatus::Pending, DeliveryStatus::Retrying, DeliveryStatus::Succeeded, DeliveryStatus::Failed];
    for (d, status) in all.iter_mut().zip(statuses) {
        if status != DeliveryStatus::Pending {
            d.status = status;
            d.attempt_count = 1;
            d.next_attempt_at =
                (status == DeliveryStatus::Retrying).then(|| Timestamp::now() + std::time::Duration::from_secs(60));
            log.record(d, Some(&attempt(1, Some(if status == DeliveryStatus::Succeeded { 200 } else { 500 }))))
                .await
                .unwrap();
        }
    }
    let now = Timestamp::now();
    assert_eq!(log.close_unfinished("the queue was lost", now).await.unwrap(), 2);
    for (d, was) in all.iter().zip(statuses) {
        let stored = log.get(d.key()).await.unwrap().unwrap();
        match was {
            DeliveryStatus::Pending | DeliveryStatus::Retrying => {
                assert_eq!(stored.status, DeliveryStatus::Failed, "{was:?}");
                assert_eq!(stored.last_error.as_deref(), Some("the queue was lost"));
                assert_eq!(stored.next_attempt_at, None);
                assert_eq!(stored.attempt_count, d.attempt_count, "no attempt is invented");
            }
            _ => assert_eq!(stored.status, was, "a final delivery is left alone"),
        }
    }
    assert_eq!(log.attempts(&[all[2].key()]).await.unwrap()[&all[2].key()].len(), 1);
    assert_eq!(log.close_unfinished("again", now).await.unwrap(), 0, "nothing left to close");
}

pub async fn record_appends_attempts_in_order(log: Arc<dyn DeliveryLog>) {
    let e = event("job.created", None);
    let w = webhook("acme", &["job.created"], true);
    let mut d = delivery(&e, &w);
    log.ensure(&[d.clone()]).await.unwrap();
    for (n, status) in [(1, Some(500)), (2, None), (3, Some(200))] {
        d.attempt_count = n;
        d.last_status_code = status;
        d.status = if status == Some(200) { DeliveryStatus::Succeeded } else { DeliveryStatus::Retrying };
        log.record(&d, Some(&attempt(n, status))).await.unwrap();
    }
    let stored = log.get(d.key()).await.unwrap().unwrap();
    assert_eq!(stored.attempt_count, 3);
    assert_eq!(stored.status, DeliveryStatus::Succeeded);
    let attempts = log.attempts(&[d.key()]).await.unwrap().remove(&d.key()).unwrap();
    assert_eq!(attempts.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(attempts[0].error.as_deref(), Some("HTTP 500"));
    assert_eq!(attempts[1].status_code, None);

    d.status = DeliveryStatus::Failed;
    d.last_error = Some("webhook was deleted".into());
    log.record(&d, None).await.unwrap();
    assert_eq!(log.attempts(&[d.key()]).await.unwrap()[&d.key()].len(), 3, "no attempt, none appended");
    assert_eq!(log.get(d.key()).await.unwrap().unwrap().status, DeliveryStatus::Failed);
}

/// A worker's batch: one read of many keys, one write of many states and attempts, a delivery
/// repeated in the batch keeps its last state and every attempt.
pub async fn batches_read_and_write_many_at_once(log: Arc<dyn DeliveryLog>) {
    let e = event("job.created", None);
    let hooks: Vec<_> = (0..5).map(|_| webhook("acme", &["job.created"], true)).collect();
    let all: Vec<_> = hooks.iter().map(|w| delivery(&e, w)).collect();
    log.ensure(&all[..4]).await.unwrap();

    let keys: Vec<_> = all.iter().map(|d| d.key()).collect();
    let found = log.get_many(&keys).await.unwrap();
    assert_eq!(found.len(), 4, "the fifth was never recorded");
    assert!(!found.contains_key(&all[4].key()));
    assert_eq!(found[&all[0].key()], all[0]);
    assert!(log.get_many(&[]).await.unwrap().is_empty());

    let done: Vec<_> = all[..4]
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.status = DeliveryStatus::Succeeded;
            d.attempt_count = 1;
            d.last_status_code = Some(200);
            d
        })
        .collect();
    let (first, retried) = (attempt(1, Some(500)), attempt(2, Some(200)));
    let mut failing = all[0].clone();
    failing.status = DeliveryStatus::Retrying;
    failing.attempt_count = 1;
    let mut finished = done[0].clone();
    finished.attempt_count = 2;
    let ok = attempt(1, Some(200));
    let mut records = vec![Record { delivery: &failing, attempt: Some(&first) }];
    records.extend(done[1..].iter().map(|d| Record { delivery: d, attempt: Some(&ok) }));
    // The same delivery again later in the batch: its last state wins, both attempts stay.
    records.push(Record { delivery: &finished, attempt: Some(&retried) });
    log.record_many(&records).await.unwrap();
    log.record_many(&[]).await.unwrap();

    let stored = log.get_many(&keys[..4]).await.unwrap();
    assert!(stored.values().all(|d| d.status == DeliveryStatus::Succeeded), "{stored:?}");
    assert_eq!(stored[&all[0].key()].attempt_count, 2);
    let attempts = log.attempts(&keys[..4]).await.unwrap();
    assert_eq!(attempts[&all[0].key()].iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2]);
    assert!(keys[1..4].iter().all(|k| attempts[k].len() == 1));
    // A key asked for twice is answered once.
    let twice = [keys[0], keys[1], keys[0]];
    assert_eq!(log.get_many(&twice).await.unwrap().len(), 2);
    assert_eq!(log.attempts(&twice).await.unwrap()[&keys[0]].len(), 2);
}

pub async fn lists_by_webhook_and_status(log: Arc<dyn DeliveryLog>) {
    let w = webhook("acme", &["job.created"], true);
    let other = webhook("acme", &["job.created"], true);
    let mut mine = Vec::new();
    for i in 0..5 {
        let e = event("job.created", None);
        let mut d = delivery(&e, &w);
        log.ensure(&[d.clone(), delivery(&e, &other)]).await.unwrap();
        if i % 2 == 0 {
            d.status = DeliveryStatus::Failed;
            log.record(&d, None).await.unwrap();
        }
        mine.push(d.event_id);
    }
    mine.reverse();
    let all = log.list(w.id, None, &PageRequest::default()).await.unwrap();
    assert_eq!(all.items.iter().map(|d| d.event_id).collect::<Vec<_>>(), mine);
    let failed = log.list(w.id, Some(DeliveryStatus::Failed), &PageRequest::default()).await.unwrap();
    assert_eq!(failed.items.iter().map(|d| d.event_id).collect::<Vec<_>>(), [mine[0], mine[2], mine[4]]);

    let mut seen = Vec::new();
    let mut request = PageRequest { limit: 2, ..PageRequest::default() };
    loop {
        let page = log.list(w.id, None, &request).await.unwrap();
        seen.extend(page.items.iter().map(|d| d.event_id));
        let Some(cursor) = page.next_cursor else { break };
        request = PageRequest::parse(Some("2"), None, Some(&cursor), 500).unwrap();
    }
    assert_eq!(seen, mine);
}

pub async fn stats_count_and_time_what_is_in_scope(log: Arc<dyn DeliveryLog>) {
    use relay_core::ports::StatsScope;
    let w1 = webhook("acme", &["job.created"], true);
    let w2 = webhook("acme", &["job.created"], true);
    let other = webhook("globex", &["job.created"], true);
    let timed = |status: Option<u16>, ms: u64, number: u32| Attempt { duration_ms: ms, ..attempt(number, status) };
    let (e1, e2, e3) = (event("job.created", None), event("job.created", None), event("job.created", None));

    let mut ok = delivery(&e1, &w1);
    let mut bad = delivery(&e2, &w1);
    let pending = delivery(&e3, &w1);
    let mut elsewhere = delivery(&e1, &w2);
    let mut foreign = delivery(&e1, &other);
    log.ensure(&[ok.clone(), bad.clone(), pending.clone(), elsewhere.clone(), foreign.clone()]).await.unwrap();
    ok.status = DeliveryStatus::Succeeded;
    log.record(&ok, Some(&timed(Some(500), 10, 1))).await.unwrap();
    let success = timed(Some(200), 30, 2);
    log.record(&ok, Some(&success)).await.unwrap();
    bad.status = DeliveryStatus::Failed;
    log.record(&bad, Some(&timed(None, 50, 1))).await.unwrap();
    elsewhere.status = DeliveryStatus::Succeeded;
    log.record(&elsewhere, Some(&timed(Some(204), 1000, 1))).await.unwrap();
    foreign.status = DeliveryStatus::Failed;
    log.record(&foreign, Some(&timed(Some(500), 5000, 1))).await.unwrap();

    let since = Timestamp::from_millis(0);
    let stats = log.stats(&StatsScope::Webhook(w1.id), since).await.unwrap();
    assert_eq!((stats.deliveries, stats.events), (3, 3));
    assert_eq!((stats.pending, stats.retrying, stats.succeeded, stats.failed), (1, 0, 1, 1));
    assert_eq!(stats.success_rate, Some(0.5));
    assert_eq!(stats.attempts, 3);
    assert_eq!(stats.avg_latency_ms, Some(30.0));
    assert!((stats.p95_latency_ms.unwrap() - 48.0).abs() < 1e-9, "{:?}", stats.p95_latency_ms);
    assert_eq!(stats.last_success_at.map(|t| t.as_millis() / 1000), Some(success.created_at.as_millis() / 1000));
    assert!(stats.last_failure_at.is_some());

    let tenant = log.stats(&StatsScope::Tenant(w1.tenant.clone()), since).await.unwrap();
    assert_eq!(
        (tenant.deliveries, tenant.events, tenant.succeeded, tenant.attempts),
        (4, 3, 2, 4),
        "globex's delivery must not count"
    );

    let later =
        log.stats(&StatsScope::Webhook(w1.id), Timestamp::now() + std::time::Duration::from_secs(60)).await.unwrap();
    assert_eq!((later.deliveries, later.attempts, later.success_rate), (0, 0, None));

    let recent = log.recent(&w1.tenant, 10).await.unwrap();
    assert_eq!(recent.len(), 4);
    assert!(recent.iter().all(|d| d.tenant == w1.tenant));
    assert!(recent.windows(2).all(|w| w[0].created_at >= w[1].created_at));
    assert_eq!(log.recent(&w1.tenant, 2).await.unwrap().len(), 2);
}

/// What the dashboard reads: a tenant's deliveries per time bucket, the events its webhooks
/// have deliveries of, and one event's deliveries, never another tenant's.
pub async fn timeline_and_events_are_the_tenants_own(log: Arc<dyn DeliveryLog>) {
    const HOUR: i64 = 3_600_000;
    let (w1, w2) = (webhook("acme", &["job.created", "job.updated"], true), webhook("acme", &["job.created"], true));
    let g = webhook("globex", &["job.created"], true);
    let (e1, e2, e3) = (event("job.created", None), event("job.updated", None), event("job.created", None));
    let base = (Timestamp::now().as_millis() - 3 * HOUR).div_euclid(HOUR) * HOUR;
    let at = |d: &mut relay_core::domain::Delivery, millis: i64, status: DeliveryStatus| {
        d.created_at = Timestamp::from_millis(millis);
        d.status = status;
    };
    let (mut d1, mut d2, mut d3) = (delivery(&e1, &w1), delivery(&e1, &w2), delivery(&e2, &w1));
    let (mut early, mut theirs) = (delivery(&e3, &w2), delivery(&e3, &g));
    at(&mut d1, base + 10 * 60_000, DeliveryStatus::Succeeded);
    at(&mut d2, base + 20 * 60_000, DeliveryStatus::Failed);
    at(&mut d3, base + 70 * 60_000, DeliveryStatus::Pending);
    at(&mut early, base - 60_000, DeliveryStatus::Succeeded);
    at(&mut theirs, base + 5 * 60_000, DeliveryStatus::Retrying);
    log.ensure(&[d1.clone(), d2.clone(), d3.clone(), early.clone(), theirs.clone()]).await.unwrap();

    let acme = relay_core::domain::TenantId::parse("acme").unwrap();
    let globex = relay_core::domain::TenantId::parse("globex").unwrap();
    let timeline =
        log.timeline(&acme, Timestamp::from_millis(base), std::time::Duration::from_secs(3600)).await.unwrap();
    let counts: Vec<_> =
        timeline.iter().map(|b| (b.start.as_millis(), b.pending, b.retrying, b.succeeded, b.failed)).collect();
    assert_eq!(counts, [(base, 0, 0, 1, 1), (base + HOUR, 1, 0, 0, 0)]);
    let theirs_timeline =
        log.timeline(&globex, Timestamp::from_millis(base), std::time::Duration::from_secs(3600)).await.unwrap();
    assert_eq!(theirs_timeline.iter().map(|b| b.retrying).collect::<Vec<_>>(), [1]);

    // Newest event first, each once, whatever its number of deliveries.
    let all = log.events(&acme, None, &PageRequest::default()).await.unwrap();
    assert_eq!(all.items, [e3.id, e2.id, e1.id]);
    let created = e1.event_type.clone();
    assert_eq!(log.events(&acme, Some(&created), &PageRequest::default()).await.unwrap().items, [e3.id, e1.id]);
    assert_eq!(log.events(&globex, None, &PageRequest::default()).await.unwrap().items, [e3.id]);
    let mut seen = Vec::new();
    let mut request = PageRequest { limit: 2, ..PageRequest::default() };
    loop {
        let page = log.events(&acme, None, &request).await.unwrap();
        seen.extend(page.items);
        let Some(cursor) = page.next_cursor else { break };
        request = PageRequest::parse(Some("2"), None, Some(&cursor), 500).unwrap();
    }
    assert_eq!(seen, [e3.id, e2.id, e1.id]);

    let mut of_e1 = log.of_event(&acme, e1.id).await.unwrap();
    of_e1.sort_by_key(|d| d.webhook_id);
    let mut expected = vec![d1, d2];
    expected.sort_by_key(|d| d.webhook_id);
    assert_eq!(of_e1, expected);
    assert_eq!(log.of_event(&acme, e3.id).await.unwrap(), [early]);
    assert_eq!(log.of_event(&globex, e3.id).await.unwrap(), [theirs]);
    assert!(log.of_event(&globex, e1.id).await.unwrap().is_empty());
}
