//! Contracts of the lock, rate-limit and cache ports.

use std::sync::Arc;
use std::time::Duration;

use relay_core::ports::{Cache, Locks, RateDecision, RateLimiter};

pub async fn a_lock_has_one_holder_until_released(locks: Arc<dyn Locks>) {
    let token = locks.try_lock("k", Duration::from_secs(10)).await.unwrap().expect("free");
    assert!(locks.try_lock("k", Duration::from_secs(10)).await.unwrap().is_none());
    assert!(locks.try_lock("other", Duration::from_secs(10)).await.unwrap().is_some());
    locks.unlock("k", "not-the-token").await.unwrap();
    assert!(locks.try_lock("k", Duration::from_secs(10)).await.unwrap().is_none(), "a stranger cannot unlock");
    locks.unlock("k", &token).await.unwrap();
    assert!(locks.try_lock("k", Duration::from_secs(10)).await.unwrap().is_some());
}

/// A worker's batch: one call takes many locks, a key held elsewhere or repeated in the batch
/// is refused, one call releases what the tokens still hold.
pub async fn a_batch_of_locks_is_taken_and_released_at_once(locks: Arc<dyn Locks>) {
    let ttl = Duration::from_secs(10);
    let elsewhere = locks.try_lock("b", ttl).await.unwrap().expect("free");
    let keys: Vec<String> = ["a", "b", "c", "a"].map(String::from).to_vec();
    let tokens = locks.try_lock_many(&keys, ttl).await.unwrap();
    assert_eq!(tokens.len(), 4);
    assert!(tokens[0].is_some() && tokens[2].is_some());
    assert!(tokens[1].is_none(), "b is held elsewhere");
    assert!(tokens[3].is_none(), "a second copy of a in the batch is refused");
    assert!(locks.try_lock_many(&[], ttl).await.unwrap().is_empty());

    let held: Vec<(String, String)> =
        keys.iter().zip(&tokens).filter_map(|(k, t)| Some((k.clone(), t.clone()?))).collect();
    let mut with_a_stranger = held.clone();
    with_a_stranger.push(("b".to_owned(), "not-the-token".to_owned()));
    locks.unlock_many(&with_a_stranger).await.unwrap();
    locks.unlock_many(&[]).await.unwrap();
    let again = locks.try_lock_many(&keys[..3], ttl).await.unwrap();
    assert!(again[0].is_some() && again[2].is_some(), "released");
    assert!(again[1].is_none(), "a stranger's token releases nothing");
    locks.unlock("b", &elsewhere).await.unwrap();
}

pub async fn a_lock_expires(locks: Arc<dyn Locks>) {
    locks.try_lock("short", Duration::from_millis(100)).await.unwrap().expect("free");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(locks.try_lock("short", Duration::from_secs(1)).await.unwrap().is_some());
}

pub async fn concurrent_lockers_get_one_lock(locks: Arc<dyn Locks>) {
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let locks = locks.clone();
        tasks.push(tokio::spawn(async move { locks.try_lock("race", Duration::from_secs(10)).await.unwrap() }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap().is_some());
    }
    assert_eq!(winners, 1);
}

pub async fn the_limit_counts_per_key(limiter: Arc<dyn RateLimiter>) {
    // The window is the current minute: start at its beginning if it is about to roll over.
    let (_, left) = relay_core::ports::minute_window();
    if left < Duration::from_secs(2) {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        assert_eq!(limiter.hit("a", 3).await.unwrap(), RateDecision::Allowed);
    }
    match limiter.hit("a", 3).await.unwrap() {
        RateDecision::Limited { retry_after } => assert!(retry_after <= Duration::from_secs(60)),
        RateDecision::Allowed => panic!("the fourth request of three was allowed"),
    }
    assert_eq!(limiter.hit("b", 3).await.unwrap(), RateDecision::Allowed, "keys are counted apart");
}

pub async fn the_cache_keeps_values_until_they_expire(cache: Arc<dyn Cache>) {
    assert_eq!(cache.get("x").await.unwrap(), None);
    cache.put("x", b"value", Duration::from_millis(200)).await.unwrap();
    assert_eq!(cache.get("x").await.unwrap().as_deref(), Some(&b"value"[..]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cache.get("x").await.unwrap(), None);
    assert_eq!(cache.generation("g").await.unwrap(), 0);
    assert_eq!(cache.bump("g").await.unwrap(), 1);
    assert_eq!(cache.bump("g").await.unwrap(), 2);
    assert_eq!(cache.generation("g").await.unwrap(), 2);
}
