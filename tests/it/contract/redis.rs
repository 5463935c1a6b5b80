//! The lock, rate-limit and cache contracts against Redis, a key prefix per test; and the
//! webhook store's contract through the webhook cache (`CachedWebhookStore`), over a cache in
//! memory and over Redis.

use std::sync::Arc;
use std::time::Duration;

use relay_core::ports::{Cache, WebhookStore};
use relay_memory::{MemoryCache, MemoryWebhookStore};
use relay_redis::CachedWebhookStore;

use crate::redis_server;

macro_rules! redis_suite {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(store) = redis_server::store().await else { return };
                super::coordination::$case(Arc::new(store)).await;
            }
        )*
    };
}

redis_suite!(
    a_lock_has_one_holder_until_released,
    a_lock_expires,
    concurrent_lockers_get_one_lock,
    a_batch_of_locks_is_taken_and_released_at_once,
    the_limit_counts_per_key,
    the_cache_keeps_values_until_they_expire,
);

/// The store in memory behind the webhook cache over `cache`.
fn cached(cache: Arc<dyn Cache>) -> Arc<dyn WebhookStore> {
    Arc::new(CachedWebhookStore::new(Arc::new(MemoryWebhookStore::new()), cache, Duration::from_secs(60)))
}

macro_rules! cached_suite {
    ($($case:ident),* $(,)?) => {
        /// Over a cache in memory: always runs.
        mod cached_in_memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    crate::contract::webhooks::$case(cached(Arc::new(MemoryCache::new()))).await;
                }
            )*
        }

        /// Over Redis.
        mod cached_in_redis {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(store) = crate::redis_server::store().await else { return };
                    crate::contract::webhooks::$case(cached(Arc::new(store))).await;
                }
            )*
        }
    };
}

cached_suite!(
    crud_by_tenant,
    subscribed_is_active_and_by_type_across_tenants,
    subscribed_is_scoped_by_tenant,
    count_is_per_tenant,
    channels_round_trip,
    filter_headers_and_schedule_round_trip,
    lists_page_through,
    stale_writes_are_refused_and_concurrent_changes_all_land,
);

/// The gates' contract against Redis (`contract::redis::gates::*`).
mod gates {
    use super::*;

    macro_rules! gates_suite {
        ($($case:ident),* $(,)?) => {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(store) = redis_server::store().await else { return };
                    crate::contract::gates::$case(Arc::new(store)).await;
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
