//! Reaching Redis (`REDIS_URL`, else `redis://127.0.0.1:6379` as .ci/run starts it), and
//! running a private redis-server to stop mid-test. Under CI an unreachable Redis fails the
//! test; elsewhere the test says why it did nothing.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use relay_core::ports::Probe;
use relay_redis::RedisStore;

pub fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A store with a key prefix of its own, or `None` (outside CI) when Redis is unreachable.
pub async fn store() -> Option<RedisStore> {
    let store = RedisStore::new(&url(), &crate::aws::unique("it")).expect("a Redis URL");
    match store.check().await {
        Ok(()) => Some(store),
        Err(err) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "Redis unreachable ({err}): CI must run the Redis tests"
            );
            eprintln!("SKIPPED: Redis unreachable ({err}); start it or set REDIS_URL");
            None
        }
    }
}

/// A redis-server of this test's own on a free port; killed when dropped.
pub struct PrivateRedis {
    pub url: String,
    child: Child,
}

impl PrivateRedis {
    pub async fn start() -> Option<Self> {
        let binary = crate::tools::required_tool("redis-server")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        // Owned at once, so the process is stopped and reaped however this ends.
        let redis = Self { url: format!("redis://127.0.0.1:{port}"), child };
        let probe = RedisStore::new(&redis.url, "probe").unwrap();
        for _ in 0..100 {
            if probe.check().await.is_ok() {
                return Some(redis);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on {}", redis.url);
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
