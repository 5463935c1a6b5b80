//! Delivery isolation, measured from outside. `isolation`: healthy webhooks receive a steady
//! stream of events alone, then beside one webhook whose receiver never answers, then beside
//! one that answers 200 late; their sent→received latency in each run, and its p99 beside the
//! bad webhook against the run alone. `fairness`: tenant A's webhooks all point at a receiver
//! that never answers and A posts one event; then tenant B's events to its one healthy webhook,
//! and their latency.
//!
//! The relay runs on its own defaults for everything this exercises (`WEBHOOK_TIMEOUT`, and
//! where it has them the in-flight caps and the circuit breaker), and the scenarios use only
//! tenants, webhooks with a name, URL and event types, and events scoped to a tenant, so the
//! same harness measures a relay from before those settings existed.
//!
//! A healthy delivery still missing when the wait after the last send ends counts as arriving
//! then: with any missing, the percentiles are lower bounds, and the report says how many. An
//! event the relay still refuses (`503`, its backlog full) [`SEND_GRACE`] after the load's
//! last one was due is left unsent, and counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use crate::clock;
use crate::http::{Api, scoped_event_body};
use crate::proc::CpuMark;
use crate::receiver::{Behaviour, Receiver, Unresponsive};
use crate::relay::{Backend, RelayProcess};
use crate::report::ScenarioResult;
use crate::scenarios::{EVENT_BYTES, Events, Load, Plan, SUBSCRIBED_TYPE, add_latency, add_refusals, drive, tally};
use crate::stats::Summary;

/// The tenants of the fairness scenario.
const TENANT_A: &str = "tenant-a";
const TENANT_B: &str = "tenant-b";
/// A healthy delivery slower than this is counted apart: unhindered, one takes a few ms.
const SLOW_DELIVERY: Duration = Duration::from_millis(250);
/// How long past the last event's due time the senders may go on waiting out `503`s.
const SEND_GRACE: Duration = Duration::from_secs(5);
/// The metrics the isolation summary reads from each run.
const HEALTHY_P99: &str = "healthy sent to received p99";
const HEALTHY_MISSING: &str = "healthy deliveries missing at the end of the wait";

/// The webhook beside the healthy ones in an isolation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadWebhook {
    /// Its receiver takes the connection and never answers.
    Unresponsive,
    /// Its receiver answers 200 after `Sizes::slow_answer`.
    Slow,
}

/// Which isolation run a result is, as its settings say (`isolationRun`).
fn run_key(bad: Option<BadWebhook>) -> &'static str {
    match bad {
        None => "alone",
        Some(BadWebhook::Unresponsive) => "unresponsive",
        Some(BadWebhook::Slow) => "slow",
    }
}

/// The bad webhook's receiver, running.
enum BadReceiver {
    Unresponsive(Unresponsive),
    Slow(Receiver),
}

impl BadReceiver {
    async fn start(bad: BadWebhook, slow_answer: Duration) -> Result<Self> {
        Ok(match bad {
            BadWebhook::Unresponsive => Self::Unresponsive(Unresponsive::start().await?),
            BadWebhook::Slow => {
                Self::Slow(Receiver::start(Behaviour { delay: slow_answer, ..Behaviour::ALWAYS_OK }).await?)
            }
        })
    }

    fn url(&self) -> String {
        match self {
            Self::Unresponsive(receiver) => receiver.url(0),
            Self::Slow(receiver) => receiver.url(0),
        }
    }

    /// Delivery attempts that reached it: requests, or for the one that never answers,
    /// connections (an attempt that timed out leaves its connection unusable, so each attempt
    /// opens one).
    fn attempts(&self) -> u64 {
        match self {
            Self::Unresponsive(receiver) => receiver.connections(),
            Self::Slow(receiver) => receiver.totals().requests,
        }
    }
}

/// How the healthy deliveries of a run went, a missing one counted at the end of the wait.
struct Arrivals {
    latency: Summary,
    arrived: u64,
    missing: u64,
    /// Slower than [`SLOW_DELIVERY`], the missing included.
    slow: u64,
}

/// Sent→received of every (webhook, event) the relay accepted, for webhooks `0..webhooks` of
/// `receiver`, the events sent at `rate` from `load.first_sent_ns`: one that had not arrived by
/// `end_ns` counts as arriving then.
fn arrivals(receiver: &Receiver, load: &Load, webhooks: u32, rate: f64, end_ns: u64) -> Arrivals {
    let mut latency_of: HashMap<(u32, u64), u64> = HashMap::new();
    for ((webhook, _), record) in receiver.records() {
        if let Some(delivered) = record.delivered_ns {
            let latency = delivered.saturating_sub(record.sent_ns);
            latency_of.entry((webhook, record.seq)).and_modify(|l| *l = (*l).min(latency)).or_insert(latency);
        }
    }
    let mut latencies = Vec::with_capacity(load.accepted.len() * webhooks as usize);
    let mut missing = 0;
    for webhook in 0..webhooks {
        for &seq in &load.accepted {
            let latency = latency_of.get(&(webhook, seq)).copied().unwrap_or_else(|| {
                missing += 1;
                let sent = load.first_sent_ns + Duration::from_secs_f64(seq as f64 / rate).as_nanos() as u64;
                end_ns.saturating_sub(sent)
            });
            latencies.push(latency);
        }
    }
    let arrived = latencies.len() as u64 - missing;
    let slow = latencies.iter().filter(|&&ns| ns > SLOW_DELIVERY.as_nanos() as u64).count() as u64;
    Arrivals { latency: Summary::of(latencies), arrived, missing, slow }
}

/// Sends `count` events like `events` at `rate` a second, each refused with `503` sent again
/// until [`SEND_GRACE`] after the last was due.
async fn steady_load(relay: &RelayProcess, plan: &Plan, count: u64, rate: f64, events: Events) -> Load {
    let deadline = Instant::now() + Duration::from_secs_f64(count as f64 / rate) + SEND_GRACE;
    drive(relay.addr, plan.sizes.senders, count, Some(deadline), Some(rate), events).await
}

/// The events the relay had not accepted by the end of the load, and the checks that it took
/// them all and refused none.
fn add_sent(result: &mut ScenarioResult, load: &Load, count: u64) {
    let unsent = count.saturating_sub(load.accepted.len() as u64 + load.failed());
    result.metric("events left unsent (still refused with 503 at the end of the load)", unsent as f64, "");
    result.check(
        "every event accepted by the end of the load",
        unsent == 0,
        format!("{} of {count} accepted, {unsent} left unsent", load.accepted.len()),
    );
    add_refusals(result, load);
}

/// Adds the arrivals' counts and latency under `who`, and the checks on them: every one arrived
/// within the wait, none twice, none that was not sent.
fn add_arrivals(
    result: &mut ScenarioResult,
    who: &str,
    arrivals: &Arrivals,
    receiver: &Receiver,
    load: &Load,
    webhooks: u32,
) {
    let expected = arrivals.arrived + arrivals.missing;
    result.metric(format!("{who} deliveries arrived"), arrivals.arrived as f64, "");
    result.metric(format!("{who} deliveries missing at the end of the wait"), arrivals.missing as f64, "");
    add_latency(result, &format!("{who} sent to received"), &arrivals.latency, &["p50", "p99", "p99.9", "max"]);
    let slow = format!("{who} deliveries slower than {} ms", SLOW_DELIVERY.as_millis());
    result.metric(slow, arrivals.slow as f64, "");
    let delivered = tally(receiver, load, webhooks);
    result.check(
        format!("every {who} delivery arrived within the wait"),
        arrivals.missing == 0,
        format!(
            "{} of {expected} missing (counted at the end of the wait: the percentiles are lower bounds)",
            arrivals.missing
        ),
    );
    result.check(
        format!("no duplicate {who} delivery"),
        delivered.duplicates == 0,
        format!("{} repeated successful deliveries", delivered.duplicates),
    );
    result.check(
        format!("nothing delivered to a {who} webhook that was not sent"),
        delivered.unexpected == 0,
        format!("{} unexpected", delivered.unexpected),
    );
}

/// One isolation run: `isolation_webhooks` healthy webhooks (one receiver) get every event,
/// `isolation_rate` a second for `isolation_seconds`, beside the bad webhook if any; then the
/// healthy deliveries are waited for, at most `isolation_wait`.
pub(crate) async fn isolation(plan: &Plan, backend: Backend, bad: Option<BadWebhook>) -> Result<ScenarioResult> {
    let sizes = &plan.sizes;
    let (webhooks, rate, seconds) = (sizes.isolation_webhooks, sizes.isolation_rate, sizes.isolation_seconds);
    let count = (rate * seconds).round().max(1.0) as u64;
    let relay = RelayProcess::start(&plan.relay(backend, &format!("isolation-{}", run_key(bad)), &[])).await?;
    let healthy = Receiver::start(Behaviour::ALWAYS_OK).await?;
    let mut api = Api::new(relay.addr);
    for webhook in 0..webhooks {
        api.create_webhook(&format!("healthy {webhook}"), &healthy.url(webhook), &[SUBSCRIBED_TYPE]).await?;
    }
    let bad_receiver = match bad {
        Some(bad) => {
            let receiver = BadReceiver::start(bad, sizes.slow_answer).await?;
            api.create_webhook("bad", &receiver.url(), &[SUBSCRIBED_TYPE]).await?;
            Some(receiver)
        }
        None => None,
    };

    let cpu = CpuMark::start(relay.pid)?;
    let load = steady_load(&relay, plan, count, rate, Events::broadcast(SUBSCRIBED_TYPE)).await;
    let expected = load.accepted.len() as u64 * u64::from(webhooks);
    healthy.wait_for(expected, Instant::now() + sizes.isolation_wait).await;
    let end_ns = clock::now_ns();
    healthy.settle(Duration::from_millis(300), Duration::from_secs(5)).await;
    let relay_cpu = cpu.elapsed()?;
    let bad_attempts = bad_receiver.as_ref().map(BadReceiver::attempts);
    relay.stop().await;

    let label = match bad {
        None => "alone".to_owned(),
        Some(BadWebhook::Unresponsive) => "+ 1 webhook never answering".to_owned(),
        Some(BadWebhook::Slow) => format!("+ 1 webhook answering 200 after {} s", sizes.slow_answer.as_secs_f64()),
    };
    let mut result = ScenarioResult::new(
        format!("isolation, {webhooks} healthy webhooks at {rate}/s for {seconds} s, {label}"),
        json!({"isolationRun": run_key(bad), "healthyWebhooks": webhooks, "rate": rate, "seconds": seconds,
               "events": count, "slowAnswerMs": sizes.slow_answer.as_millis() as u64, "senders": sizes.senders,
               "workers": sizes.workers, "waitSeconds": sizes.isolation_wait.as_secs()}),
    );
    let arrivals = arrivals(&healthy, &load, webhooks, rate, end_ns);
    add_arrivals(&mut result, "healthy", &arrivals, &healthy, &load, webhooks);
    if let Some(attempts) = bad_attempts {
        result.metric("bad webhook: attempts that reached its receiver", attempts as f64, "");
    }
    result.metric("relay CPU per healthy delivery", relay_cpu / arrivals.arrived.max(1) as f64 * 1e6, "µs");
    add_sent(&mut result, &load, count);
    Ok(result)
}

/// Healthy p99 beside each bad webhook against the run alone, on one backend, and the healthy
/// deliveries each run was missing (with any, its p99 and so the ratio are lower bounds);
/// `None` unless the run alone is among the results.
pub(crate) fn summary(results: &[ScenarioResult], backend: Backend) -> Option<ScenarioResult> {
    let run = |key: &str| results.iter().find(|r| r.backend == Some(backend) && r.settings["isolationRun"] == key);
    let alone = run("alone")?.value(HEALTHY_P99)?;
    let mut result = ScenarioResult::new(
        "isolation: healthy p99 beside a bad webhook / alone",
        json!({"bar": "at most 2", "aloneP99Ms": alone}),
    );
    for (key, label) in [("unresponsive", "never answering"), ("slow", "answering late")] {
        let Some(run) = run(key) else { continue };
        if let Some(p99) = run.value(HEALTHY_P99) {
            result.metric(format!("beside one {label}"), p99 / alone, "x");
        }
        if let Some(missing) = run.value(HEALTHY_MISSING) {
            result.metric(format!("beside one {label}: healthy deliveries missing (ratio a lower bound)"), missing, "");
        }
    }
    Some(result)
}

/// Tenant A registers `fairness_webhooks` webhooks at a receiver that never answers and posts
/// one event; once its first delivery attempt has reached that receiver, tenant B posts events
/// to its one healthy webhook at `fairness_rate` a second for `fairness_seconds`, and they are
/// waited for, at most `isolation_wait`.
pub(crate) async fn fairness(plan: &Plan, backend: Backend) -> Result<ScenarioResult> {
    let sizes = &plan.sizes;
    let (stuck, rate, seconds) = (sizes.fairness_webhooks, sizes.fairness_rate, sizes.fairness_seconds);
    let count = (rate * seconds).round().max(1.0) as u64;
    let relay = RelayProcess::start(&plan.relay(backend, "fairness", &[])).await?;
    let unresponsive = Unresponsive::start().await?;
    let healthy = Receiver::start(Behaviour::ALWAYS_OK).await?;

    let mut service = Api::new(relay.addr);
    service.create_tenant(TENANT_A, stuck.max(1)).await?;
    service.create_tenant(TENANT_B, 1).await?;
    let mut tenant_a = Api::with_key(relay.addr, &service.issue_key(TENANT_A).await?);
    for webhook in 0..stuck {
        tenant_a.create_webhook(&format!("stuck {webhook}"), &unresponsive.url(webhook), &[SUBSCRIBED_TYPE]).await?;
    }
    let mut tenant_b = Api::with_key(relay.addr, &service.issue_key(TENANT_B).await?);
    tenant_b.create_webhook("healthy", &healthy.url(0), &[SUBSCRIBED_TYPE]).await?;

    service.post_event(scoped_event_body(Some(TENANT_A), SUBSCRIBED_TYPE, 0, clock::now_ns(), EVENT_BYTES)).await?;
    let posted = Instant::now();
    while unresponsive.connections() == 0 && posted.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let a_attempts_at_start = unresponsive.connections();

    let events = Events { event_type: SUBSCRIBED_TYPE, tenant: Some(TENANT_B) };
    let load = steady_load(&relay, plan, count, rate, events).await;
    healthy.wait_for(load.accepted.len() as u64, Instant::now() + sizes.isolation_wait).await;
    let end_ns = clock::now_ns();
    healthy.settle(Duration::from_millis(300), Duration::from_secs(5)).await;
    let a_attempts = unresponsive.connections();
    relay.stop().await;

    let mut result = ScenarioResult::new(
        format!(
            "fairness, tenant A: {stuck} webhooks never answering, 1 event; tenant B: 1 webhook, {rate}/s for {seconds} s"
        ),
        json!({"tenantAWebhooks": stuck, "tenantBRate": rate, "seconds": seconds, "tenantBEvents": count,
               "senders": sizes.senders, "workers": sizes.workers, "waitSeconds": sizes.isolation_wait.as_secs(),
               "bar": "tenant B p99 < 1000 ms"}),
    );
    let arrivals = arrivals(&healthy, &load, 1, rate, end_ns);
    add_arrivals(&mut result, "tenant B", &arrivals, &healthy, &load, 1);
    result.metric("tenant A: delivery attempts under way when B started", a_attempts_at_start as f64, "");
    result.metric("tenant A: delivery attempts in all", a_attempts as f64, "");
    add_sent(&mut result, &load, count);
    Ok(result)
}
