//! In-memory implementations of every port. They keep the same semantics as the real
//! backends (the contract tests run against both), so relay-local on them behaves like the
//! deployed relay, minus durability.

mod coordination;
mod deliveries;
mod events;
mod gates;
mod index;
mod queue;
mod tenants;
mod webhooks;

pub use coordination::{MemoryCache, MemoryLocks, MemoryRateLimiter};
pub use deliveries::MemoryDeliveryLog;
pub use events::MemoryEventStore;
pub use gates::MemoryGates;
pub use index::MemoryEventIndex;
pub use queue::{Backlog, MemoryQueue};
pub use tenants::MemoryTenantStore;
pub use webhooks::MemoryWebhookStore;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks, ignoring poisoning: every critical section leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Gives back a map's room once it holds far fewer entries than it has room for: a map keeps
/// the capacity of its largest moment, so after a backlog drained or old entries were evicted
/// its memory would stay with the process. Halving at a quarter keeps the cost amortised.
fn shrink_if_sparse<K: Eq + std::hash::Hash, V>(map: &mut std::collections::HashMap<K, V>) {
    const SMALL: usize = 1024;
    if map.capacity() > SMALL && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len().saturating_mul(2).max(SMALL));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::shrink_if_sparse;

    #[test]
    fn a_map_gives_back_its_room_once_sparse() {
        let mut map: HashMap<u32, u32> = (0..100_000).map(|i| (i, i)).collect();
        let full = map.capacity();
        shrink_if_sparse(&mut map);
        assert_eq!(map.capacity(), full, "a full map keeps its room");
        (0..99_000).for_each(|i| {
            map.remove(&i);
        });
        shrink_if_sparse(&mut map);
        assert_eq!(map.len(), 1_000);
        assert!(map.capacity() < full / 16, "{} of {full} kept", map.capacity());
        let mut small: HashMap<u32, u32> = (0..10).map(|i| (i, i)).collect();
        let room = small.capacity();
        small.clear();
        shrink_if_sparse(&mut small);
        assert_eq!(small.capacity(), room, "a small map is left alone");
    }
}
