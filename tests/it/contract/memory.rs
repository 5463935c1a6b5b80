//! The contract suites against the in-memory adapters.

use std::sync::Arc;
use std::time::Duration;

use relay_core::ports::Queue;
use relay_memory::{
    MemoryCache, MemoryDeliveryLog, MemoryEventStore, MemoryLocks, MemoryQueue, MemoryRateLimiter, MemoryTenantStore,
    MemoryWebhookStore,
};

fn queues(visibility: Duration, max_receive_count: u32) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
    let dlq = Arc::new(MemoryQueue::new(visibility));
    let queue = MemoryQueue::new(visibility).with_dead_letter(dlq.clone(), max_receive_count);
    (Arc::new(queue), dlq)
}

macro_rules! suite {
    ($($suite:ident :: $case:ident => $make:expr;)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                super::$suite::$case($make).await;
            }
        )*
    };
}

suite! {
    events::stores_and_reads_back => Arc::new(MemoryEventStore::new());
    events::lists_newest_first_with_filters_and_paging => Arc::new(MemoryEventStore::new());
    events::idempotency_key_is_taken_once => Arc::new(MemoryEventStore::new());
    events::concurrent_duplicates_create_one_event => Arc::new(MemoryEventStore::new());
    events::an_expired_key_can_be_reused => Arc::new(MemoryEventStore::new());
    events::counts_events_by_type_since => Arc::new(MemoryEventStore::new());
    events::undispatched_lists_old_events_not_yet_enqueued => Arc::new(MemoryEventStore::new());
    events::knows_which_events_were_dispatched => Arc::new(MemoryEventStore::new());
    events::tenant_and_channels_round_trip => Arc::new(MemoryEventStore::new());
    events::lists_by_tenant => Arc::new(MemoryEventStore::new());
    webhooks::crud_by_tenant => Arc::new(MemoryWebhookStore::new());
    webhooks::subscribed_is_active_and_by_type_across_tenants => Arc::new(MemoryWebhookStore::new());
    webhooks::subscribed_is_scoped_by_tenant => Arc::new(MemoryWebhookStore::new());
    webhooks::count_is_per_tenant => Arc::new(MemoryWebhookStore::new());
    webhooks::channels_round_trip => Arc::new(MemoryWebhookStore::new());
    webhooks::filter_headers_and_schedule_round_trip => Arc::new(MemoryWebhookStore::new());
    webhooks::lists_page_through => Arc::new(MemoryWebhookStore::new());
    webhooks::stale_writes_are_refused_and_concurrent_changes_all_land => Arc::new(MemoryWebhookStore::new());
    tenants::insert_get_update_delete => Arc::new(MemoryTenantStore::new());
    tenants::lists_newest_first_with_cursor_paging => Arc::new(MemoryTenantStore::new());
    tenants::api_keys_by_tenant_and_digest => Arc::new(MemoryTenantStore::new());
    tenants::deleting_a_tenant_removes_its_keys => Arc::new(MemoryTenantStore::new());
    tenants::a_portal_link_is_taken_once => Arc::new(MemoryTenantStore::new());
    tenants::concurrent_takes_of_a_link_have_one_winner => Arc::new(MemoryTenantStore::new());
    deliveries::ensure_keeps_what_exists => Arc::new(MemoryDeliveryLog::new());
    deliveries::record_appends_attempts_in_order => Arc::new(MemoryDeliveryLog::new());
    deliveries::batches_read_and_write_many_at_once => Arc::new(MemoryDeliveryLog::new());
    deliveries::lists_by_webhook_and_status => Arc::new(MemoryDeliveryLog::new());
    deliveries::stats_count_and_time_what_is_in_scope => Arc::new(MemoryDeliveryLog::new());
    deliveries::timeline_and_events_are_the_tenants_own => Arc::new(MemoryDeliveryLog::new());
    deliveries::close_unfinished_fails_what_was_waiting => Arc::new(MemoryDeliveryLog::new());
    deliveries::unfinished_before_finds_the_oldest_event_still_owed => Arc::new(MemoryDeliveryLog::new());
    coordination::a_lock_has_one_holder_until_released => Arc::new(MemoryLocks::new());
    coordination::a_lock_expires => Arc::new(MemoryLocks::new());
    coordination::concurrent_lockers_get_one_lock => Arc::new(MemoryLocks::new());
    coordination::a_batch_of_locks_is_taken_and_released_at_once => Arc::new(MemoryLocks::new());
    coordination::the_limit_counts_per_key => Arc::new(MemoryRateLimiter::new());
    coordination::the_cache_keeps_values_until_they_expire => Arc::new(MemoryCache::new());
    queue::send_receive_delete => |v, m| async move { queues(v, m) };
    queue::visibility_timeout_and_change => |v, m| async move { queues(v, m) };
    queue::batches_of_ten => |v, m| async move { queues(v, m) };
    queue::delay_hides_a_message => |v, m| async move { queues(v, m) };
    queue::redrive_after_max_receive_count => |v, m| async move { queues(v, m) };
    queue::stale_receipt_handles_are_refused => |v, m| async move { queues(v, m) };
    queue::fifo_keeps_each_groups_order => |v| async move { ordered(v) };
    queue::fifo_holds_a_group_while_its_head_is_in_flight => |v| async move { ordered(v) };
    queue::fifo_holds_a_group_while_its_head_waits_out_a_visibility_change => |v| async move { ordered(v) };
    queue::fifo_takes_plain_sends_without_their_delay => |v| async move { ordered(v) };
}

/// The embedded queue made FIFO (the ordered lane).
fn ordered(visibility: Duration) -> Arc<dyn Queue> {
    Arc::new(MemoryQueue::new(visibility).ordered())
}

/// The embedded event store past `MEMORY_MAX_EVENTS`: the oldest events whose deliveries are all
/// final go first, with their deliveries in a log in memory; an event not yet dispatched or
/// with a delivery pending stays, however old.
#[tokio::test]
async fn eviction_keeps_the_limit_and_never_an_unfinished_event() {
    use relay_core::domain::DeliveryStatus;
    use relay_core::ports::{DeliveryLog, EventStore, Record};

    use super::{delivery, event, webhook};

    let events = MemoryEventStore::with_limits(3, Duration::from_secs(86_400));
    let log = MemoryDeliveryLog::new();
    let hook = webhook("acme", &["job.created"], true);
    let all: Vec<_> = (0..8).map(|_| event("job.created", None)).collect();
    for e in &all {
        events.insert(e, None).await.unwrap();
        // UUIDv7 ids are ordered by millisecond: keep creation order distinct.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Events 0..6 dispatched; 6 and 7 not yet. Of the dispatched: 1 pending, 3 retrying, the
    // others finished (4 has no delivery: its webhook was gone, or the log lost it).
    let dispatched: Vec<_> = all[..6].iter().map(|e| (e, vec![hook.id])).collect();
    events.mark_dispatched(&dispatched).await.unwrap();
    let deliveries: Vec<_> = all[..6].iter().filter(|e| e.id != all[4].id).map(|e| delivery(e, &hook)).collect();
    log.ensure(&deliveries).await.unwrap();
    let finished: Vec<_> = deliveries
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.status = match d.event_id {
                id if id == all[1].id => DeliveryStatus::Pending,
                id if id == all[3].id => DeliveryStatus::Retrying,
                id if id == all[2].id => DeliveryStatus::Failed,
                _ => DeliveryStatus::Succeeded,
            };
            d
        })
        .collect();
    let records: Vec<_> = finished.iter().map(|delivery| Record { delivery, attempt: None }).collect();
    log.record_many(&records).await.unwrap();

    // 8 events, limit 3: the 5 oldest are candidates; 1 and 3 are unfinished.
    let forgotten = events.evict(&log).await.unwrap();
    log.forget(&forgotten);
    let kept: Vec<_> = all.iter().map(|e| e.id).filter(|id| forgotten.iter().all(|k| k.event_id != *id)).collect();
    for (i, e) in all.iter().enumerate() {
        let present = events.get(e.id).await.unwrap().is_some();
        let expected = [1, 3, 5, 6, 7].contains(&i);
        assert_eq!(present, expected, "event {i}");
    }
    assert_eq!(kept.len(), 5);
    assert_eq!(events.len(), 5, "over the limit only by what may not go yet");
    assert_eq!(log.len(), 3, "the deliveries of evicted events are forgotten: {forgotten:?}");
    assert!(events.evict(&log).await.unwrap().is_empty(), "nothing more may go");

    // Once 1 and 3 finish, they go too (the oldest first), down to the limit.
    let done: Vec<_> = finished
        .iter()
        .filter(|d| d.event_id == all[1].id || d.event_id == all[3].id)
        .map(|d| relay_core::domain::Delivery { status: DeliveryStatus::Succeeded, ..d.clone() })
        .collect();
    let records: Vec<_> = done.iter().map(|delivery| Record { delivery, attempt: None }).collect();
    log.record_many(&records).await.unwrap();
    log.forget(&events.evict(&log).await.unwrap());
    assert_eq!(events.len(), 3);
    assert!(events.get(all[1].id).await.unwrap().is_none() && events.get(all[3].id).await.unwrap().is_none());
}

/// Two lanes sharing one backlog bound: `full` once they hold the bound together, not before,
/// and no longer once a message is deleted. Sends past the bound are still accepted.
#[tokio::test]
async fn a_shared_backlog_says_when_the_lanes_are_full() {
    let backlog = relay_memory::Backlog::new(3);
    let lane = || MemoryQueue::new(Duration::from_secs(30)).with_backlog(backlog.clone());
    let (dispatch, delivery) = (lane(), lane());
    dispatch.send_batch(&["a".into(), "b".into()]).await.unwrap();
    assert_eq!(dispatch.full(), None);
    delivery.send("c", Duration::ZERO).await.unwrap();
    assert_eq!(dispatch.full(), Some(Duration::from_secs(1)), "three held across the two lanes");
    delivery.send("d", Duration::ZERO).await.unwrap();
    assert_eq!(backlog.held(), 4, "the relay's own sends are never refused");
    for message in dispatch.receive(10, Duration::ZERO).await.unwrap() {
        dispatch.delete(&message.receipt_handle).await.unwrap();
    }
    assert_eq!(backlog.held(), 2);
    assert_eq!(delivery.full(), None);
}

/// The gates' contract (`contract::memory::gates::*`), a fresh store per case.
mod gates {
    use std::sync::Arc;

    use relay_memory::MemoryGates;

    macro_rules! gates_suite {
        ($($case:ident),* $(,)?) => {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::contract::gates::$case(Arc::new(MemoryGates::new())).await;
                }
            )*
        };
    }

    gates_suite!(
        the_in_flight_cap_holds_per_webhook,
        the_in_flight_cap_holds_per_tenant,
        a_refused_ask_takes_nothing,
        leases_expire,
        the_breaker_opens_probes_and_closes,
        the_pace_spaces_turns,
        an_unknown_webhook_is_closed,
    );
}

/// The events contract through the event index in memory (relay-local on DynamoDB without
/// PostgreSQL lists this way), over the store in memory.
mod indexed {
    use std::sync::Arc;
    use std::time::Duration;

    use relay_core::ports::{EventStore, IndexedEvents};
    use relay_memory::{MemoryEventIndex, MemoryEventStore};

    fn indexed() -> Arc<dyn EventStore> {
        let store = Arc::new(MemoryEventStore::new());
        Arc::new(IndexedEvents::new(store, Arc::new(MemoryEventIndex::new()), Duration::from_secs(86_400)))
    }

    macro_rules! indexed_suite {
        ($($case:ident),* $(,)?) => {
            $(
                #[tokio::test]
                async fn $case() {
                    super::super::events::$case(indexed()).await;
                }
            )*
        };
    }

    indexed_suite!(
        stores_and_reads_back,
        lists_newest_first_with_filters_and_paging,
        counts_events_by_type_since,
        knows_which_events_were_dispatched,
        lists_by_tenant,
    );

    #[tokio::test]
    async fn the_index_forgets_events_past_retention() {
        super::super::events::the_index_forgets_events_past_retention(Arc::new(MemoryEventIndex::new())).await;
    }
}
