//! Admission within one process: relay-local's gates when no `REDIS_URL` is set, and the
//! reference the Redis gates are held to by the contract tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::lock;
use relay_core::domain::{TenantId, WebhookId};
use relay_core::ports::{
    Admission, Ask, Circuit, CircuitState, Deferral, GatePolicy, Gates, Lease, PACE_HORIZON, epoch_ms,
};
use relay_core::{Result, Timestamp};

#[derive(Debug, Default)]
pub struct MemoryGates {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    webhooks: HashMap<WebhookId, Valve>,
    /// Each tenant's leases: token and when it ends (ms).
    tenants: HashMap<TenantId, Vec<(String, u64)>>,
}

/// One webhook's breaker, leases and pace (times in ms since the epoch).
#[derive(Debug, Default)]
struct Valve {
    failures: u32,
    /// 0 while closed.
    open_until: u64,
    /// While half-open: when the probe out ends if never released (0: none out).
    probe_until: u64,
    leases: Vec<(String, u64)>,
    /// The next free turn under the rate limit.
    next_turn: u64,
}

impl Valve {
    fn is_idle(&mut self, now: u64) -> bool {
        self.failures == 0 && self.open_until == 0 && live(&mut self.leases, now) == 0 && self.next_turn <= now
    }
}

/// Drops the leases that ended.
fn live(leases: &mut Vec<(String, u64)>, now: u64) -> usize {
    leases.retain(|(_, until)| *until > now);
    leases.len()
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How many webhooks the gates remember before forgetting the idle ones.
const PRUNE_AT: usize = 10_000;

impl MemoryGates {
    pub fn new() -> Self {
        Self::default()
    }
}

impl State {
    fn admit(&mut self, ask: &Ask, policy: &GatePolicy, now: u64) -> Admission {
        if self.webhooks.len() >= PRUNE_AT && !self.webhooks.contains_key(&ask.webhook) {
            self.webhooks.retain(|_, valve| !valve.is_idle(now));
            self.tenants.retain(|_, leases| live(leases, now) > 0);
        }
        let valve = self.webhooks.entry(ask.webhook).or_default();
        let defer = |after: u64, reason| Admission::Defer { after: Duration::from_millis(after.max(1)), reason };
        let mut probe = false;
        if valve.open_until > 0 {
            if now < valve.open_until {
                return defer(valve.open_until - now, Deferral::CircuitOpen);
            }
            if valve.probe_until > now {
                return defer(ms(policy.cooldown), Deferral::CircuitOpen);
            }
            probe = true;
        }
        if live(&mut valve.leases, now) >= ask.max_in_flight as usize {
            return defer(0, Deferral::WebhookBusy);
        }
        let tenant = self.tenants.entry(ask.tenant.clone()).or_default();
        if live(tenant, now) >= policy.tenant_max_in_flight as usize {
            return defer(0, Deferral::TenantBusy);
        }
        let mut wait = 0;
        if let Some(rate) = ask.rate_limit.filter(|r| *r > 0) {
            let turn = valve.next_turn.max(now);
            if turn - now > ms(PACE_HORIZON) {
                return defer(turn - now - ms(PACE_HORIZON) / 2, Deferral::RateLimited);
            }
            // At least 1/r s apart: rounded up.
            valve.next_turn = turn + 1000u64.div_ceil(u64::from(rate));
            wait = turn - now;
        }
        let token = Uuid::new_v4().to_string();
        let until = now + ms(policy.lease);
        valve.leases.push((token.clone(), until));
        tenant.push((token.clone(), until));
        if probe {
            valve.probe_until = until;
        }
        Admission::Go(Lease {
            webhook: ask.webhook,
            tenant: ask.tenant.clone(),
            token,
            probe,
            wait: Duration::from_millis(wait),
        })
    }

    fn release(&mut self, lease: &Lease, succeeded: Option<bool>, policy: &GatePolicy, now: u64) {
        if let Some(leases) = self.tenants.get_mut(&lease.tenant) {
            leases.retain(|(token, _)| *token != lease.token);
        }
        let Some(valve) = self.webhooks.get_mut(&lease.webhook) else { return };
        valve.leases.retain(|(token, _)| *token != lease.token);
        if lease.probe {
            valve.probe_until = 0;
        }
        match succeeded {
            Some(true) => {
                valve.failures = 0;
                valve.open_until = 0;
                valve.probe_until = 0;
            }
            Some(false) => {
                valve.failures = valve.failures.saturating_add(1);
                // A failed probe, or the run reaching the threshold, opens it (again).
                if lease.probe || (valve.open_until == 0 && valve.failures >= policy.failure_threshold) {
                    valve.open_until = now + ms(policy.cooldown);
                }
            }
            None => {}
        }
    }
}

#[async_trait]
impl Gates for MemoryGates {
    async fn admit(&self, asks: &[Ask], policy: &GatePolicy) -> Result<Vec<Admission>> {
        let now = epoch_ms(Timestamp::now());
        let mut state = lock(&self.state);
        Ok(asks.iter().map(|ask| state.admit(ask, policy, now)).collect())
    }

    async fn release(&self, done: &[(Lease, Option<bool>)], policy: &GatePolicy) -> Result<()> {
        let now = epoch_ms(Timestamp::now());
        let mut state = lock(&self.state);
        for (lease, succeeded) in done {
            state.release(lease, *succeeded, policy, now);
        }
        Ok(())
    }

    async fn circuits(&self, webhooks: &[WebhookId]) -> Result<Vec<Circuit>> {
        let now = epoch_ms(Timestamp::now());
        let state = lock(&self.state);
        Ok(webhooks.iter().map(|id| state.webhooks.get(id).map_or(Circuit::CLOSED, |v| circuit(v, now))).collect())
    }
}

/// What a valve's breaker says at `now`.
fn circuit(valve: &Valve, now: u64) -> Circuit {
    let state = match valve.open_until {
        0 => CircuitState::Closed,
        until if now < until => CircuitState::Open,
        _ => CircuitState::HalfOpen,
    };
    let open_until = (state == CircuitState::Open).then(|| Timestamp::from_millis(valve.open_until as i64));
    Circuit { state, failures: valve.failures, open_until }
}
