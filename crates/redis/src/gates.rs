//! Admission shared by every worker: the same decisions as `MemoryGates`, made by Lua scripts
//! so each batch is one atomic round trip, on the clock of Redis (`TIME`) so workers whose
//! clocks drift still agree.
//!
//! Keys, all under the store's prefix:
//! - `gate:webhook:{id}:breaker`, a hash: `failures`, `open_until`, `probe_until` (ms since
//!   the epoch; an absent field is 0, so a closed breaker with no run of failures is no key);
//! - `gate:webhook:{id}:leases` and `gate:tenant:{id}:leases`, sorted sets of lease tokens
//!   scored by when they end;
//! - `gate:webhook:{id}:pace`, the webhook's next free turn under its rate limit.
//!
//! Every key expires once idle, so webhooks no longer delivered to leave nothing behind.
//! A script touches the keys of several webhooks and tenants at once, which needs one Redis
//! node (ElastiCache with cluster mode disabled, as the template deploys), not Redis Cluster.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use relay_core::domain::{TenantId, WebhookId};
use relay_core::ports::{Admission, Ask, Circuit, CircuitState, Deferral, GatePolicy, Gates, Lease, PACE_HORIZON};
use relay_core::{Error, Result, Timestamp};

use crate::{RedisStore, unavailable};

/// Answers each ask in order, as `MemoryGates` does. KEYS: per ask its breaker, its webhook's
/// leases, its pace and its tenant's leases. ARGV: the tenant cap, the lease, the cool-down,
/// the pace horizon, the breaker's time to live and how long a pace outlives its turn (ms);
/// then per ask its `max_in_flight`, its rate limit (0: none) and the token a lease would
/// take. Returns per ask a kind (0 go, then one per [`Deferral`] in the order of [`DEFERRALS`]),
/// the wait or the deferral in ms, and whether the lease is the probe.
const ADMIT: &str = r#"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tenant_max, lease, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local horizon, breaker_ttl, pace_grace = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

local function live(key)
  redis.call("ZREMRANGEBYSCORE", key, "-inf", now)
  return redis.call("ZCARD", key)
end

local function admit(breaker, leases, pace, tenant, max_in_flight, rate, token)
  local probe = 0
  local b = redis.call("HMGET", breaker, "open_until", "probe_until")
  local open_until, probe_until = tonumber(b[1]) or 0, tonumber(b[2]) or 0
  if open_until > 0 then
    if now < open_until then return {1, open_until - now, 0} end
    if probe_until > now then return {1, cooldown, 0} end
    probe = 1
  end
  if live(leases) >= max_in_flight then return {2, 0, 0} end
  if live(tenant) >= tenant_max then return {3, 0, 0} end
  local wait = 0
  if rate > 0 then
    local turn = math.max(tonumber(redis.call("GET", pace)) or 0, now)
    if turn - now > horizon then return {4, turn - now - math.floor(horizon / 2), 0} end
    local next_turn = turn + math.ceil(1000 / rate)
    redis.call("SET", pace, next_turn, "PX", next_turn - now + pace_grace)
    wait = turn - now
  end
  local ends = now + lease
  for _, key in ipairs({leases, tenant}) do
    redis.call("ZADD", key, ends, token)
    redis.call("PEXPIRE", key, lease)
  end
  if probe == 1 then
    redis.call("HSET", breaker, "probe_until", ends)
    redis.call("PEXPIRE", breaker, breaker_ttl)
  end
  return {0, wait, probe}
end

local out = {}
for i = 0, #KEYS / 4 - 1 do
  local k, a = 4 * i, 6 + 3 * i
  local answer = admit(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4],
    tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3])
  for _, v in ipairs(answer) do out[#out + 1] = v end
end
return out
"#;

/// Releases each lease and records its attempt. KEYS: per lease its breaker, its webhook's
/// leases and its tenant's leases. ARGV: the failure threshold, the cool-down and the
/// breaker's time to live (ms); then per lease its token, whether it is the probe (1/0) and
/// its outcome (1 succeeded, 0 failed, -1 no attempt).
const RELEASE: &str = r#"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local threshold, cooldown, breaker_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 0, #KEYS / 3 - 1 do
  local breaker, leases, tenant = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local token, probe, outcome = ARGV[3 * i + 4], ARGV[3 * i + 5] == "1", tonumber(ARGV[3 * i + 6])
  redis.call("ZREM", leases, token)
  redis.call("ZREM", tenant, token)
  if probe then redis.call("HDEL", breaker, "probe_until") end
  if outcome == 1 then
    redis.call("HDEL", breaker, "failures", "open_until", "probe_until")
  elseif outcome == 0 then
    local failures = redis.call("HINCRBY", breaker, "failures", 1)
    local open_until = tonumber(redis.call("HGET", breaker, "open_until")) or 0
    -- A failed probe, or the run reaching the threshold, opens it (again).
    if probe or (open_until == 0 and failures >= threshold) then
      redis.call("HSET", breaker, "open_until", now + cooldown)
    end
    redis.call("PEXPIRE", breaker, breaker_ttl)
  end
end
"#;

/// Redis's time, then each breaker's failures and end of cool-down (ms, 0 when absent).
const CIRCUITS: &str = r#"
local t = redis.call("TIME")
local out = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
for _, key in ipairs(KEYS) do
  local b = redis.call("HMGET", key, "failures", "open_until")
  out[#out + 1] = tonumber(b[1]) or 0
  out[#out + 1] = tonumber(b[2]) or 0
end
return out
"#;

/// The deferrals by the kind [`ADMIT`] answers (1-based: 0 is go).
const DEFERRALS: [Deferral; 4] =
    [Deferral::CircuitOpen, Deferral::WebhookBusy, Deferral::TenantBusy, Deferral::RateLimited];

/// How long a webhook's pace outlives its turn: once the turn has passed the key says nothing.
const PACE_GRACE: Duration = Duration::from_secs(2);

/// How long a breaker outlives its last change: long enough that a run of failures below the
/// threshold still counts, never shorter than an open cool-down or a probe's lease.
fn breaker_ttl(policy: &GatePolicy) -> u64 {
    ms(policy.cooldown).saturating_mul(4).max(ms(policy.lease).saturating_mul(2)).max(3_600_000)
}

/// Milliseconds, at least 1 (`PEXPIRE 0` would delete a key at once) and at most about 50
/// days, so the script's sums stay integers Lua prints exactly.
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).clamp(1, u64::from(u32::MAX))
}

impl RedisStore {
    fn breaker_key(&self, webhook: WebhookId) -> String {
        self.key(&format!("gate:webhook:{webhook}:breaker"))
    }

    fn webhook_leases_key(&self, webhook: WebhookId) -> String {
        self.key(&format!("gate:webhook:{webhook}:leases"))
    }

    fn tenant_leases_key(&self, tenant: &TenantId) -> String {
        self.key(&format!("gate:tenant:{tenant}:leases"))
    }
}

fn unexpected(reply: &str) -> Error {
    Error::unavailable("redis", format!("unexpected reply from a gates script: {reply}"))
}

#[async_trait]
impl Gates for RedisStore {
    async fn admit(&self, asks: &[Ask], policy: &GatePolicy) -> Result<Vec<Admission>> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let tokens: Vec<String> = asks.iter().map(|_| Uuid::new_v4().to_string()).collect();
        let mut eval = redis::cmd("EVAL");
        eval.arg(ADMIT).arg(asks.len() * 4);
        for ask in asks {
            eval.arg(self.breaker_key(ask.webhook))
                .arg(self.webhook_leases_key(ask.webhook))
                .arg(self.key(&format!("gate:webhook:{}:pace", ask.webhook)))
                .arg(self.tenant_leases_key(&ask.tenant));
        }
        eval.arg(policy.tenant_max_in_flight)
            .arg(ms(policy.lease))
            .arg(ms(policy.cooldown))
            .arg(ms(PACE_HORIZON))
            .arg(breaker_ttl(policy))
            .arg(ms(PACE_GRACE));
        for (ask, token) in asks.iter().zip(&tokens) {
            eval.arg(ask.max_in_flight).arg(ask.rate_limit.unwrap_or(0)).arg(token);
        }
        let reply: Vec<u64> = eval.query_async(&mut self.conn()).await.map_err(unavailable)?;
        if reply.len() != asks.len() * 3 {
            return Err(unexpected(&format!("{} numbers for {} asks", reply.len(), asks.len())));
        }
        asks.iter()
            .zip(tokens)
            .zip(reply.chunks_exact(3))
            .map(|((ask, token), answer)| match *answer {
                [0, wait, probe] => Ok(Admission::Go(Lease {
                    webhook: ask.webhook,
                    tenant: ask.tenant.clone(),
                    token,
                    probe: probe == 1,
                    wait: Duration::from_millis(wait),
                })),
                [kind @ 1..=4, after, _] => Ok(Admission::Defer {
                    after: Duration::from_millis(after.max(1)),
                    reason: DEFERRALS[kind as usize - 1],
                }),
                _ => Err(unexpected(&format!("{answer:?}"))),
            })
            .collect()
    }

    async fn release(&self, done: &[(Lease, Option<bool>)], policy: &GatePolicy) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let mut eval = redis::cmd("EVAL");
        eval.arg(RELEASE).arg(done.len() * 3);
        for (lease, _) in done {
            eval.arg(self.breaker_key(lease.webhook))
                .arg(self.webhook_leases_key(lease.webhook))
                .arg(self.tenant_leases_key(&lease.tenant));
        }
        eval.arg(policy.failure_threshold).arg(ms(policy.cooldown)).arg(breaker_ttl(policy));
        for (lease, succeeded) in done {
            let outcome = succeeded.map_or(-1, i8::from);
            eval.arg(&lease.token).arg(u8::from(lease.probe)).arg(outcome);
        }
        eval.query_async::<()>(&mut self.conn()).await.map_err(unavailable)
    }

    async fn circuits(&self, webhooks: &[WebhookId]) -> Result<Vec<Circuit>> {
        if webhooks.is_empty() {
            return Ok(Vec::new());
        }
        let mut eval = redis::cmd("EVAL");
        eval.arg(CIRCUITS).arg(webhooks.len());
        for webhook in webhooks {
            eval.arg(self.breaker_key(*webhook));
        }
        let reply: Vec<u64> = eval.query_async(&mut self.conn()).await.map_err(unavailable)?;
        let Some((&now, breakers)) = reply.split_first().filter(|(_, b)| b.len() == webhooks.len() * 2) else {
            return Err(unexpected(&format!("{} numbers for {} webhooks", reply.len(), webhooks.len())));
        };
        Ok(breakers.chunks_exact(2).map(|breaker| circuit(breaker[0], breaker[1], now)).collect())
    }
}

/// What a breaker says at `now`, by the rules of `MemoryGates`.
fn circuit(failures: u64, open_until: u64, now: u64) -> Circuit {
    let state = match open_until {
        0 => CircuitState::Closed,
        until if now < until => CircuitState::Open,
        _ => CircuitState::HalfOpen,
    };
    let open_until = (state == CircuitState::Open).then(|| Timestamp::from_millis(open_until as i64));
    Circuit { state, failures: u32::try_from(failures).unwrap_or(u32::MAX), open_until }
}
