//! The contract suites against the in-memory adapters.

use std::sync::Arc;
use std::time::Duration;

use relay_core::ports::Queue;
use relay_memory::{
    MemoryCache, MemoryDeliveryLog, MemoryEventStore, MemoryLocks, MemoryQueue, MemoryRateLimiter, MemoryWebhookStore,
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
    webhooks::crud_by_tenant => Arc::new(MemoryWebhookStore::new());
    webhooks::subscribed_is_active_and_by_type_across_tenants => Arc::new(MemoryWebhookStore::new());
    webhooks::lists_page_through => Arc::new(MemoryWebhookStore::new());
    webhooks::stale_writes_are_refused_and_concurrent_changes_all_land => Arc::new(MemoryWebhookStore::new());
    deliveries::ensure_keeps_what_exists => Arc::new(MemoryDeliveryLog::new());
    deliveries::record_appends_attempts_in_order => Arc::new(MemoryDeliveryLog::new());
    deliveries::lists_by_webhook_and_status => Arc::new(MemoryDeliveryLog::new());
    deliveries::stats_count_and_time_what_is_in_scope => Arc::new(MemoryDeliveryLog::new());
    deliveries::timeline_and_events_are_the_tenants_own => Arc::new(MemoryDeliveryLog::new());
    deliveries::close_unfinished_fails_what_was_waiting => Arc::new(MemoryDeliveryLog::new());
    coordination::a_lock_has_one_holder_until_released => Arc::new(MemoryLocks::new());
    coordination::a_lock_expires => Arc::new(MemoryLocks::new());
    coordination::concurrent_lockers_get_one_lock => Arc::new(MemoryLocks::new());
    coordination::the_limit_counts_per_key => Arc::new(MemoryRateLimiter::new());
    coordination::the_cache_keeps_values_until_they_expire => Arc::new(MemoryCache::new());
    queue::send_receive_delete => |v, m| async move { queues(v, m) };
    queue::visibility_timeout_and_change => |v, m| async move { queues(v, m) };
    queue::batches_of_ten => |v, m| async move { queues(v, m) };
    queue::delay_hides_a_message => |v, m| async move { queues(v, m) };
    queue::redrive_after_max_receive_count => |v, m| async move { queues(v, m) };
    queue::stale_receipt_handles_are_refused => |v, m| async move { queues(v, m) };
}
