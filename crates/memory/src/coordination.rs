//! Locks, rate limits and a cache within one process: relay-local's defaults when no
//! `REDIS_URL` is set, and the reference for their contract tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

use crate::lock;
use relay_core::Result;
use relay_core::ports::{Cache, Locks, RateDecision, RateLimiter, minute_window};

#[derive(Debug, Default)]
pub struct MemoryLocks {
    held: Mutex<HashMap<String, (String, Instant)>>,
}

impl MemoryLocks {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Locks for MemoryLocks {
    async fn try_lock_many(&self, keys: &[String], ttl: Duration) -> Result<Vec<Option<String>>> {
        let now = Instant::now();
        let mut held = lock(&self.held);
        Ok(keys
            .iter()
            .map(|key| {
                if held.get(key).is_some_and(|(_, expires)| *expires > now) {
                    return None;
                }
                let token = Uuid::new_v4().to_string();
                held.insert(key.clone(), (token.clone(), now + ttl));
                Some(token)
            })
            .collect())
    }

    async fn unlock_many(&self, tokens: &[(String, String)]) -> Result<()> {
        let mut held = lock(&self.held);
        for (key, token) in tokens {
            if held.get(key).is_some_and(|(holder, _)| holder == token) {
                held.remove(key);
            }
        }
        Ok(())
    }
}

/// How many keys the limiter (or the cache) holds before it forgets earlier minutes (or
/// expired values).
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Default)]
pub struct MemoryRateLimiter {
    counts: Mutex<HashMap<String, (u64, u32)>>,
}

impl MemoryRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn hit(&self, key: &str, limit: u32) -> Result<RateDecision> {
        let (window, left) = minute_window();
        let mut counts = lock(&self.counts);
        // Keys come and go (a client address per failed credential): past this many, the
        // counts of earlier minutes are dropped, so the map holds about one minute's keys.
        if counts.len() >= PRUNE_AT && !counts.contains_key(key) {
            counts.retain(|_, (seen, _)| *seen == window);
        }
        let entry = counts.entry(key.to_owned()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        Ok(if entry.1 > limit { RateDecision::Limited { retry_after: left } } else { RateDecision::Allowed })
    }
}

#[derive(Debug, Default)]
pub struct MemoryCache {
    values: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    generations: Mutex<HashMap<String, u64>>,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let values = lock(&self.values);
        Ok(values.get(key).filter(|(_, expires)| *expires > Instant::now()).map(|(v, _)| v.clone()))
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let mut values = lock(&self.values);
        // Expired values are dropped once there are many, so the map holds what is alive.
        if values.len() >= PRUNE_AT {
            values.retain(|_, (_, expires)| *expires > now);
        }
        values.insert(key.to_owned(), (value.to_vec(), now + ttl));
        Ok(())
    }

    async fn generation(&self, key: &str) -> Result<u64> {
        Ok(lock(&self.generations).get(key).copied().unwrap_or(0))
    }

    async fn bump(&self, key: &str) -> Result<u64> {
        let mut generations = lock(&self.generations);
        let value = generations.entry(key.to_owned()).or_insert(0);
        *value += 1;
        Ok(*value)
    }
}
