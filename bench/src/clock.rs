//! One monotonic clock for the whole harness, so a time the sender writes into an event and a
//! time the receiver reads off the delivery can be subtracted.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the harness's epoch.
pub fn now_ns() -> u64 {
    nanos_of(Instant::now())
}

/// `instant` in nanoseconds since the harness's epoch (0 if it is earlier).
pub fn nanos_of(instant: Instant) -> u64 {
    u64::try_from(instant.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// The instant `ns` nanoseconds after the harness's epoch.
pub fn instant_of(ns: u64) -> Instant {
    epoch() + Duration::from_nanos(ns)
}
