//! In-memory implementations of every port. They keep the same semantics as the real
//! backends (the contract tests run against both), so relay-local on them behaves like the
//! deployed relay, minus durability.

mod coordination;
mod deliveries;
mod events;
mod queue;
mod webhooks;

pub use coordination::{MemoryCache, MemoryLocks, MemoryRateLimiter};
pub use deliveries::MemoryDeliveryLog;
pub use events::MemoryEventStore;
pub use queue::{Backlog, MemoryQueue};
pub use webhooks::MemoryWebhookStore;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks, ignoring poisoning: every critical section leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
