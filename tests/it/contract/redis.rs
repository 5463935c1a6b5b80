//! The lock, rate-limit and cache contracts against Redis, a key prefix per test.

use std::sync::Arc;

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
