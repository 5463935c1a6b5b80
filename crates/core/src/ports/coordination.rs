use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::Result;

/// Short locks: at most one holder per key until it unlocks or the lock expires. Used so two
/// copies of one SQS message do not deliver twice at the same moment. Locks are taken and
/// released a batch at a time: one round trip to Redis for a worker's whole batch.
#[async_trait]
pub trait Locks: std::fmt::Debug + Send + Sync + 'static {
    /// Takes each key for `ttl` if nobody holds it: for each key, in order, the token to unlock
    /// it with, or `None` when it is held (by another holder, or by an earlier copy of the same
    /// key in `keys`).
    async fn try_lock_many(&self, keys: &[String], ttl: Duration) -> Result<Vec<Option<String>>>;
    /// Releases each `(key, token)` whose token still holds its key.
    async fn unlock_many(&self, held: &[(String, String)]) -> Result<()>;

    /// Takes `key` for `ttl` if nobody holds it; returns the token to unlock it with.
    async fn try_lock(&self, key: &str, ttl: Duration) -> Result<Option<String>> {
        Ok(self.try_lock_many(&[key.to_owned()], ttl).await?.pop().flatten())
    }

    /// Releases `key` if `token` still holds it.
    async fn unlock(&self, key: &str, token: &str) -> Result<()> {
        self.unlock_many(&[(key.to_owned(), token.to_owned())]).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Over the limit until the window ends.
    Limited {
        retry_after: Duration,
    },
}

/// The current one-minute window (minutes since the Unix epoch) and the time left in it: the
/// windows every [`RateLimiter`] counts in.
pub fn minute_window() -> (u64, Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let window = now.as_secs() / 60;
    let left = Duration::from_secs((window + 1) * 60).saturating_sub(now);
    (window, left)
}

/// Counting requests per credential in one-minute windows.
#[async_trait]
pub trait RateLimiter: std::fmt::Debug + Send + Sync + 'static {
    /// Counts one request for `key`; `Limited` once more than `limit` arrived this minute.
    async fn hit(&self, key: &str, limit: u32) -> Result<RateDecision>;
}

/// A shared cache of bytes with expiry, and counters that never expire (generations).
#[async_trait]
pub trait Cache: std::fmt::Debug + Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()>;
    /// The counter's value (0 when never bumped).
    async fn generation(&self, key: &str) -> Result<u64>;
    /// Adds one to the counter.
    async fn bump(&self, key: &str) -> Result<u64>;
}

/// A dependency the health endpoint reports on.
#[async_trait]
pub trait Probe: std::fmt::Debug + Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Succeeds when the dependency answers.
    async fn check(&self) -> Result<()>;
}
