//! Redis (ElastiCache in AWS): delivery locks, rate-limit counters, the delivery gates
//! (breakers, caps in flight, rate-limit pace: `gates`), ended dashboard sessions and the
//! webhook cache ([`CachedWebhookStore`], over any [`Cache`]).
//! Everything here may be lost: a flushed or unreachable Redis costs duplicates avoided,
//! admission and cache hits, never an event.
//!
//! One lazily connecting, self-reconnecting `ConnectionManager` per process, with short
//! timeouts so an unreachable Redis fails fast instead of stalling deliveries.

mod cached;
mod gates;

pub use cached::CachedWebhookStore;

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

use relay_core::ports::minute_window;
use relay_core::ports::{Cache, Locks, Probe, RateDecision, RateLimiter};
use relay_core::settings::{Redacted, Vars};
use relay_core::{Error, Result};

const TIMEOUT: Duration = Duration::from_millis(500);

/// How long a cached list of subscribed webhooks may live (changes invalidate it at once).
pub const WEBHOOK_CACHE_TTL: Duration = Duration::from_secs(60);

/// `REDIS_URL`: where Redis is, if the function uses one (never printed).
pub fn redis_url(vars: &Vars) -> Option<Redacted<String>> {
    vars.redacted("REDIS_URL")
}

/// Deletes the lock only if this token still holds it.
const UNLOCK: &str =
    r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn unavailable(err: redis::RedisError) -> Error {
    Error::unavailable("redis", err)
}

impl RedisStore {
    /// Connects on first use (`redis://` or `rediss://` for TLS). Keys start with `prefix`.
    pub fn new(url: &str, prefix: &str) -> Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| Error::unavailable("redis", format!("bad REDIS_URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(Self { connection, prefix: prefix.to_owned() })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.connection.clone()
    }
}

/// A batch of locks is one pipeline (one round trip): `SET NX PX` per key to take them, the
/// compare-and-delete script ([`UNLOCK`]) per key to release them.
#[async_trait]
impl Locks for RedisStore {
    async fn try_lock_many(&self, keys: &[String], ttl: Duration) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let tokens: Vec<String> = keys.iter().map(|_| Uuid::new_v4().to_string()).collect();
        let mut pipe = redis::pipe();
        for (key, token) in keys.iter().zip(&tokens) {
            pipe.cmd("SET").arg(self.key(&format!("lock:{key}"))).arg(token).arg("NX").arg("PX").arg(millis);
        }
        let set: Vec<Option<String>> = pipe.query_async(&mut self.conn()).await.map_err(unavailable)?;
        Ok(set.into_iter().zip(tokens).map(|(set, token)| set.map(|_| token)).collect())
    }

    async fn unlock_many(&self, held: &[(String, String)]) -> Result<()> {
        if held.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (key, token) in held {
            // EVAL with the script's text: a few dozen bytes more per key than EVALSHA, and no
            // NOSCRIPT to recover from after a Redis restart.
            pipe.cmd("EVAL").arg(UNLOCK).arg(1).arg(self.key(&format!("lock:{key}"))).arg(token).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(unavailable)
    }
}

#[async_trait]
impl RateLimiter for RedisStore {
    async fn hit(&self, key: &str, limit: u32) -> Result<RateDecision> {
        let (window, left) = minute_window();
        let counter = self.key(&format!("rate:{key}:{window}"));
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .incr(&counter, 1)
            .cmd("EXPIRE")
            .arg(&counter)
            .arg(120)
            .arg("NX")
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(if count > u64::from(limit) { RateDecision::Limited { retry_after: left } } else { RateDecision::Allowed })
    }
}

#[async_trait]
impl Cache for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.conn().get(self.key(key)).await.map_err(unavailable)
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let _: () = self.conn().pset_ex(self.key(key), value, millis).await.map_err(unavailable)?;
        Ok(())
    }

    async fn generation(&self, key: &str) -> Result<u64> {
        let value: Option<u64> = self.conn().get(self.key(key)).await.map_err(unavailable)?;
        Ok(value.unwrap_or(0))
    }

    async fn bump(&self, key: &str) -> Result<u64> {
        self.conn().incr(self.key(key), 1).await.map_err(unavailable)
    }
}

#[async_trait]
impl Probe for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> Result<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await.map_err(unavailable)?;
        Ok(())
    }
}
