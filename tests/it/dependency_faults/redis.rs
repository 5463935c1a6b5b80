//! Redis flushed, cut and restored while deliveries run.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use relay_core::domain::{TenantId, WebhookInput};
use relay_core::ports::Cache;
use relay_local::{Backends, Relay};
use relay_memory::MemoryCache;
use relay_redis::CachedWebhookStore;
use reqwest::Method;
use serde_json::json;

use super::{CATCH_UP, accepted, assert_health, copies, health, post, stream, wait_for_all};
use crate::helpers::{ACME_KEY, Receiver, Reply, TestApp, eventually, test_config};
use crate::proxy::Proxy;
use crate::redis_server::PrivateRedis;

async fn flushall(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut connection).await.unwrap();
}

/// The keys the relay has in Redis, and those of them without an expiry (only the cache
/// generation may have none).
async fn keys_without_expiry(url: &str) -> (Vec<String>, Vec<String>) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut connection).await.unwrap();
    let mut immortal = Vec::new();
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut connection).await.unwrap();
        if ttl == -1 && !key.ends_with("webhooks:generation") {
            immortal.push(key.clone());
        }
    }
    (keys, immortal)
}

/// Redis loses everything (FLUSHALL, as a restart without persistence does) three times while
/// events are delivered: locks, rate-limit counters and the webhook cache are only
/// optimisations, so nothing is lost or sent twice, and all three work again afterwards.
#[tokio::test]
async fn flushed_mid_run_loses_nothing_and_its_cache_and_limits_recover() {
    let Some(redis) = PrivateRedis::start().await else {
        return;
    };
    let app = TestApp::spawn_with(&[("REDIS_URL", &redis.url)]).await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200).delay(Duration::from_millis(10)));
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;

    let flusher = async {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            flushall(&redis.url).await;
        }
    };
    let (ids, ()) = tokio::join!(stream(&app, "flushed", 40, Duration::from_millis(25)), flusher);
    wait_for_all(&receiver, &ids).await;
    for id in &ids {
        app.wait_for_delivery(&webhook_id, id, "succeeded").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = copies(&receiver);
    assert_eq!(got.len(), ids.len(), "an unknown event was delivered");
    // One queue message per delivery and no failures: nothing here may send twice.
    assert!(got.values().all(|&n| n == 1), "sent twice: {got:?}");

    // The cache after the flushes: changes reach the very next dispatch.
    let second = Receiver::start().await;
    app.create_webhook(&second.url(), &["job.created"]).await;
    let (status, _) = app
        .api(
            Method::PUT,
            &format!("/api/webhooks/{webhook_id}"),
            ACME_KEY,
            Some(json!({"eventTypes": ["job.updated"]})),
        )
        .await;
    assert_eq!(status, 200);
    let last = accepted(post(&app, "after the flushes", None).await).await;
    let to_second = second.wait_for(1, CATCH_UP).await;
    assert_eq!(to_second[0].header("webhook-id"), last);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!copies(&receiver).contains_key(&last), "the cache served a stale subscription after the flush");

    // Rate-limit counters and the cache are back, each key with its expiry.
    let (keys, immortal) = keys_without_expiry(&redis.url).await;
    assert!(keys.iter().any(|k| k.contains(":rate:")), "no rate-limit counter: {keys:?}");
    assert!(keys.iter().any(|k| k.contains(":subscribed:")), "nothing cached: {keys:?}");
    assert_eq!(immortal, Vec::<String>::new());
    assert_health(&app, "healthy", &[], &[]).await;
    app.stop().await;
}

/// Redis unreachable, then back: deliveries and webhook changes go on meanwhile, the relay
/// reconnects by itself, and a change made while Redis was away is not hidden by the cache
/// once it is back.
#[tokio::test]
async fn cut_and_restored_the_relay_reconnects_and_the_cache_is_not_stale() {
    let Some(redis) = PrivateRedis::start().await else {
        return;
    };
    let proxy = Proxy::to_url(&redis.url).await;
    // No rate limit: waiting on deliveries polls the API faster than the default allows.
    let app = TestApp::spawn_with(&[("REDIS_URL", &proxy.url_for(&redis.url)), ("RATE_LIMIT_PER_MINUTE", "0")]).await;
    let first = Receiver::start().await;
    let (first_id, _) = app.create_webhook(&first.url(), &["job.created"]).await;
    let before = app.send_event("job.created").await;
    app.wait_for_delivery(&first_id, &before, "succeeded").await;
    assert_eq!(health(&app).await.1["status"], "healthy");

    proxy.cut().await;
    assert_health(&app, "degraded", &["redis"], &[]).await;
    let during = accepted(post(&app, "during", None).await).await;
    app.wait_for_delivery(&first_id, &during, "succeeded").await;
    // A webhook created while the cache cannot be told.
    let second = Receiver::start().await;
    let (second_id, _) = app.create_webhook(&second.url(), &["job.created"]).await;

    proxy.stall().await;
    let silent = accepted(post(&app, "silent", None).await).await;
    app.wait_for_delivery(&first_id, &silent, "succeeded").await;
    app.wait_for_delivery(&second_id, &silent, "succeeded").await;

    proxy.restore();
    let back = eventually(CATCH_UP, || async { (health(&app).await.1["status"] == "healthy").then_some(()) }).await;
    assert!(back.is_some(), "health never returned to healthy after Redis came back");
    let after = accepted(post(&app, "after", None).await).await;
    app.wait_for_delivery(&first_id, &after, "succeeded").await;
    app.wait_for_delivery(&second_id, &after, "succeeded").await;
    let expected: BTreeSet<String> = [before, during, silent, after].into_iter().collect();
    assert_eq!(copies(&first).keys().cloned().collect::<BTreeSet<_>>(), expected);
    app.stop().await;
}

/// A cache that loses everything just before its next write: a flush landing while a dispatch
/// fills the cache, between reading the generation and writing the entry.
#[derive(Debug, Default)]
struct FlushedWhileFilling {
    cache: std::sync::Mutex<Arc<MemoryCache>>,
    armed: AtomicBool,
}

impl FlushedWhileFilling {
    fn current(&self) -> Arc<MemoryCache> {
        self.cache.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Cache for FlushedWhileFilling {
    async fn get(&self, key: &str) -> relay_core::Result<Option<Vec<u8>>> {
        self.current().get(key).await
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> relay_core::Result<()> {
        if self.armed.swap(false, Ordering::SeqCst) {
            *self.cache.lock().unwrap() = Arc::default();
        }
        self.current().put(key, value, ttl).await
    }

    async fn generation(&self, key: &str) -> relay_core::Result<u64> {
        self.current().generation(key).await
    }

    async fn bump(&self, key: &str) -> relay_core::Result<u64> {
        self.current().bump(key).await
    }
}

/// After a flush the generation starts again from 0, so the number a dispatch read before the
/// flush comes round again with the next change; the list it cached under that number after
/// the flush must not be served then.
#[tokio::test]
async fn a_flush_while_the_cache_is_filled_does_not_hide_the_next_change() {
    let config = test_config(&[]);
    let cache = Arc::new(FlushedWhileFilling::default());
    let mut backends = Backends::in_memory(config.memory);
    backends.webhooks =
        Arc::new(CachedWebhookStore::new(backends.webhooks.clone(), cache.clone(), Duration::from_secs(60)));
    let relay = Relay::new(&config, backends).unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let hook = |name: &str| -> WebhookInput {
        serde_json::from_value(json!({"name": name, "url": "http://127.0.0.1:9/hook", "eventTypes": ["job.created"]}))
            .unwrap()
    };
    let event_type = config.event_types.parse("job.created").unwrap();
    let store = relay.backends.webhooks.clone();

    relay.admin.create(&tenant, hook("first")).await.unwrap();
    cache.armed.store(true, Ordering::SeqCst);
    assert_eq!(store.subscribed(&event_type, None).await.unwrap().len(), 1);
    let second = relay.admin.create(&tenant, hook("second")).await.unwrap();
    let subscribed = store.subscribed(&event_type, None).await.unwrap();
    assert!(subscribed.iter().any(|w| w.id == second.id), "the cache hid a webhook created after the flush");
}
