//! The scenarios: ingest, end to end (as fast as possible and at a steady rate), fan-out,
//! failure with retries, and the Lambda binaries' start-up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Method;
use serde_json::json;

use crate::clock;
use crate::http::{Api, Conn, SERVICE_TOKEN, event_body};
use crate::lambda;
use crate::proc::{CpuMark, RssSampler, cpu_seconds, rss_kib};
use crate::receiver::{Behaviour, Receiver};
use crate::relay::{Backend, RelayOptions, RelayProcess};
use crate::report::{Machine, Report, ScenarioResult};
use crate::stats::Summary;

/// An event type nothing subscribes to (ingest), and the one the webhooks subscribe to.
const UNSUBSCRIBED_TYPE: &str = "job.deleted";
const SUBSCRIBED_TYPE: &str = "job.created";
/// `POST /api/events` body size.
const EVENT_BYTES: usize = 1024;

/// A scenario by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Ingest,
    /// Both end-to-end runs.
    EndToEnd,
    EndToEndMax,
    EndToEndSteady,
    FanOut,
    Failure,
    Startup,
}

impl Scenario {
    pub const ALL: [Self; 5] = [Self::Ingest, Self::EndToEnd, Self::FanOut, Self::Failure, Self::Startup];

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "ingest" => Self::Ingest,
            "e2e" | "end-to-end" => Self::EndToEnd,
            "e2e-max" => Self::EndToEndMax,
            "e2e-steady" => Self::EndToEndSteady,
            "fanout" | "fan-out" => Self::FanOut,
            "failure" => Self::Failure,
            "startup" => Self::Startup,
            other => bail!("unknown scenario {other:?}"),
        })
    }
}

/// How big each scenario is.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Seconds of load at each ingest concurrency.
    pub ingest_seconds: f64,
    pub ingest_concurrency: Vec<usize>,
    /// Events in the end-to-end runs, and the steady run's rate per second.
    pub e2e_events: u64,
    pub steady_rate: f64,
    pub fanout_events: u64,
    pub fanout_webhooks: u32,
    pub failure_events: u64,
    /// Runs of each Lambda binary's start-up.
    pub startup_runs: u32,
    /// Connections sending events in the end-to-end, fan-out and failure runs.
    pub senders: usize,
    /// relay-local's `WORKER_CONCURRENCY`.
    pub workers: u32,
    /// Longest wait for deliveries after the last event is sent.
    pub drain_timeout: Duration,
}

impl Sizes {
    /// The sizes the issue asks for.
    pub fn standard() -> Self {
        Self {
            ingest_seconds: 10.0,
            ingest_concurrency: vec![32, 64],
            e2e_events: 10_000,
            steady_rate: 300.0,
            fanout_events: 1_000,
            fanout_webhooks: 10,
            failure_events: 1_000,
            startup_runs: 5,
            senders: 32,
            workers: 16,
            drain_timeout: Duration::from_secs(300),
        }
    }

    /// With `events` in the end-to-end runs (a tenth in fan-out and failure) and `seconds` per
    /// ingest run, where given: the full backends run on one-process emulators.
    pub fn scaled(mut self, events: Option<u64>, seconds: Option<f64>) -> Self {
        if let Some(events) = events {
            self.e2e_events = events.max(1);
            self.fanout_events = (events / 10).max(1);
            self.failure_events = (events / 10).max(1);
        }
        if let Some(seconds) = seconds {
            self.ingest_seconds = seconds.max(0.1);
        }
        self
    }

    /// A run of seconds that exercises every code path (CI).
    pub fn smoke() -> Self {
        Self {
            ingest_seconds: 0.5,
            ingest_concurrency: vec![8],
            e2e_events: 200,
            steady_rate: 200.0,
            fanout_events: 20,
            fanout_webhooks: 3,
            failure_events: 50,
            startup_runs: 1,
            senders: 8,
            workers: 4,
            drain_timeout: Duration::from_secs(60),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub backend: Backend,
    pub bin_dir: PathBuf,
    /// Where relay logs go.
    pub work_dir: PathBuf,
    pub scenarios: Vec<Scenario>,
    pub sizes: Sizes,
}

impl Plan {
    fn relay(&self, name: &str, env: &[(&str, String)]) -> RelayOptions {
        RelayOptions {
            bin_dir: self.bin_dir.clone(),
            backend: self.backend,
            workers: self.sizes.workers,
            env: env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            log: self.work_dir.join(format!("{name}.log")),
            resources: None,
        }
    }
}

/// Runs the plan's scenarios in order and reports each as it finishes.
pub async fn run_scenarios(plan: &Plan, mut progress: impl FnMut(&ScenarioResult)) -> Result<Report> {
    std::fs::create_dir_all(&plan.work_dir)?;
    let started_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut results = Vec::new();
    let mut push = |result: ScenarioResult, results: &mut Vec<ScenarioResult>| {
        progress(&result);
        results.push(result);
    };
    for scenario in &plan.scenarios {
        match scenario {
            Scenario::Ingest => {
                for &concurrency in &plan.sizes.ingest_concurrency {
                    push(ingest(plan, concurrency).await.context("ingest")?, &mut results);
                }
            }
            Scenario::EndToEnd => {
                push(end_to_end(plan, None).await.context("end to end")?, &mut results);
                push(end_to_end(plan, Some(plan.sizes.steady_rate)).await.context("end to end, steady")?, &mut results);
            }
            Scenario::EndToEndMax => push(end_to_end(plan, None).await.context("end to end")?, &mut results),
            Scenario::EndToEndSteady => {
                push(end_to_end(plan, Some(plan.sizes.steady_rate)).await.context("end to end, steady")?, &mut results);
            }
            Scenario::FanOut => push(fan_out(plan).await.context("fan-out")?, &mut results),
            Scenario::Failure => push(failure(plan).await.context("failure")?, &mut results),
            Scenario::Startup => {
                let runs = plan.sizes.startup_runs;
                push(lambda::startup(&plan.bin_dir, &plan.work_dir, runs).await.context("start-up")?, &mut results);
            }
        }
    }
    if let Some(summary) = cpu_summary(&results) {
        push(summary, &mut results);
    }
    Ok(Report { backend: plan.backend, machine: Machine::this(), started_at, results })
}

/// What a load run saw from the sending side.
#[derive(Debug, Default)]
struct Load {
    /// Latency of each answered request, ns (from its scheduled time at a steady rate).
    latencies: Vec<u64>,
    /// `seq`s the relay accepted (202).
    accepted: Vec<u64>,
    /// Other answers by status, and transport errors.
    refused: HashMap<u16, u64>,
    errors: u64,
    first_sent_ns: u64,
    elapsed: Duration,
}

impl Load {
    fn requests(&self) -> u64 {
        self.latencies.len() as u64 + self.errors
    }

    fn failed(&self) -> u64 {
        self.errors + self.refused.values().sum::<u64>()
    }

    fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        self.accepted.extend(other.accepted);
        for (status, n) in other.refused {
            *self.refused.entry(status).or_default() += n;
        }
        self.errors += other.errors;
    }
}

/// Sends up to `count` events of `event_type` over `concurrency` connections until the
/// deadline; at `rate` events per second if given (open loop: latency counts from when each
/// was due), else as fast as answers come back.
async fn drive(
    relay: &RelayProcess,
    concurrency: usize,
    count: u64,
    deadline: Option<Instant>,
    rate: Option<f64>,
    event_type: &'static str,
) -> Load {
    let next = Arc::new(AtomicU64::new(0));
    // At a rate, the first event is due once every sender is waiting.
    let start = Instant::now() + if rate.is_some() { Duration::from_millis(5) } else { Duration::ZERO };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let mut conn = Conn::new(relay.addr);
        tasks.spawn(async move {
            let mut load = Load::default();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= count {
                    break;
                }
                let due = match rate {
                    Some(rate) => {
                        let due = start + Duration::from_secs_f64(seq as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    break;
                }
                let due_ns = clock::nanos_of(due);
                let body = event_body(event_type, seq, due_ns, EVENT_BYTES);
                match conn.send(Method::POST, "/api/events", &[("x-service-token", SERVICE_TOKEN)], body).await {
                    Ok(response) => {
                        load.latencies.push(clock::now_ns().saturating_sub(due_ns));
                        if response.status.is_success() {
                            load.accepted.push(seq);
                        } else {
                            *load.refused.entry(response.status.as_u16()).or_default() += 1;
                        }
                    }
                    Err(_) => load.errors += 1,
                }
            }
            load
        });
    }
    let mut load = Load { first_sent_ns: clock::nanos_of(start), ..Load::default() };
    while let Some(joined) = tasks.join_next().await {
        if let Ok(part) = joined {
            load.merge(part);
        }
    }
    load.elapsed = start.elapsed();
    load
}

/// Waits until the relay's CPU use stops growing (its queue has drained), at most `limit`.
async fn wait_idle(pid: u32, limit: Duration) {
    let end = Instant::now() + limit;
    let mut last = cpu_seconds(pid).unwrap_or(0.0);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = cpu_seconds(pid).unwrap_or(0.0);
        if now - last < 0.015 {
            return;
        }
        last = now;
    }
}

fn add_latency(result: &mut ScenarioResult, prefix: &str, summary: &Summary, percentiles: &[&str]) {
    for p in percentiles {
        let value = match *p {
            "p50" => summary.p50_ms,
            "p99" => summary.p99_ms,
            "p99.9" => summary.p999_ms,
            "max" => summary.max_ms,
            _ => continue,
        };
        result.metric(format!("{prefix} {p}"), value, "ms");
    }
}

fn add_refusals(result: &mut ScenarioResult, load: &Load) {
    let detail = if load.failed() == 0 {
        "none".to_owned()
    } else {
        format!("{} transport errors, statuses {:?}", load.errors, load.refused)
    };
    result.check("every POST /api/events accepted", load.failed() == 0, detail);
}

/// `POST /api/events` with a 1 KiB payload at a fixed concurrency for a fixed time.
async fn ingest(plan: &Plan, concurrency: usize) -> Result<ScenarioResult> {
    let seconds = plan.sizes.ingest_seconds;
    let relay = RelayProcess::start(&plan.relay(&format!("ingest-{concurrency}"), &[])).await?;
    let idle_rss = rss_kib(relay.pid);
    let cpu = CpuMark::start(relay.pid)?;
    let own_cpu = CpuMark::start(std::process::id())?;
    let rss = RssSampler::start(relay.pid);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let load = drive(&relay, concurrency, u64::MAX, Some(deadline), None, UNSUBSCRIBED_TYPE).await;
    let own_cpu = own_cpu.elapsed()?;
    // The dispatch of each event (finding no subscriber) is part of ingesting it.
    wait_idle(relay.pid, Duration::from_secs(30)).await;
    let relay_cpu = cpu.elapsed()?;
    let peak_rss = rss.stop();
    relay.stop().await;

    let accepted = load.accepted.len() as f64;
    let mut result = ScenarioResult::new(
        format!("ingest, concurrency {concurrency}"),
        json!({"concurrency": concurrency, "seconds": seconds, "bodyBytes": EVENT_BYTES, "eventType": UNSUBSCRIBED_TYPE,
               "workers": plan.sizes.workers}),
    );
    result.metric("requests/s", load.requests() as f64 / load.elapsed.as_secs_f64(), "req/s");
    add_latency(&mut result, "latency", &Summary::of(load.latencies.clone()), &["p50", "p99", "p99.9", "max"]);
    result.metric("errors", load.failed() as f64, "");
    result.metric("relay CPU per event (ingest + dispatch)", relay_cpu / accepted.max(1.0) * 1e6, "µs");
    result.metric("harness CPU per request", own_cpu / load.requests().max(1) as f64 * 1e6, "µs");
    result.metric("relay RSS idle", idle_rss as f64 / 1024.0, "MiB");
    result.metric("relay RSS peak", peak_rss as f64 / 1024.0, "MiB");
    result.metric("events stored", accepted, "");
    add_refusals(&mut result, &load);
    Ok(result)
}

/// Deliveries as the receiver saw them.
struct Delivered {
    latency: Summary,
    duplicates: u64,
    lost: u64,
    unexpected: u64,
    seconds: f64,
}

/// Checks the receiver's records against what was accepted, for `webhooks` webhooks.
fn tally(receiver: &Receiver, load: &Load, webhooks: u32) -> Delivered {
    let records = receiver.records();
    let mut latencies = Vec::with_capacity(records.len());
    let mut by_seq: HashMap<(u32, u64), u32> = HashMap::new();
    let mut duplicates = 0;
    for ((webhook, _), record) in &records {
        if let Some(delivered) = record.delivered_ns {
            latencies.push(delivered.saturating_sub(record.sent_ns));
            *by_seq.entry((*webhook, record.seq)).or_default() += 1;
        }
        duplicates += u64::from(record.successes.saturating_sub(1));
    }
    let lost = (0..webhooks)
        .flat_map(|w| load.accepted.iter().map(move |&seq| (w, seq)))
        .filter(|key| !by_seq.contains_key(key))
        .count() as u64;
    let expected = load.accepted.len() as u64 * u64::from(webhooks);
    let delivered = by_seq.len() as u64;
    let unexpected = delivered.saturating_sub(expected - lost);
    let last = receiver.totals().last_delivered_ns;
    Delivered {
        latency: Summary::of(latencies),
        duplicates,
        lost,
        unexpected,
        seconds: last.saturating_sub(load.first_sent_ns) as f64 / 1e9,
    }
}

fn add_delivery_checks(result: &mut ScenarioResult, delivered: &Delivered, expected: u64) {
    result.check("no event lost", delivered.lost == 0, format!("{} of {expected} never delivered", delivered.lost));
    result.check(
        "no duplicate delivery",
        delivered.duplicates == 0,
        format!("{} repeated successful deliveries", delivered.duplicates),
    );
    result.check(
        "nothing delivered that was not sent",
        delivered.unexpected == 0,
        format!("{} unexpected", delivered.unexpected),
    );
}

/// One delivery run: what was sent, what arrived, the relay's CPU seconds and peak RSS (KiB),
/// and the webhooks it registered.
struct Run {
    load: Load,
    delivered: Delivered,
    relay_cpu: f64,
    peak_rss: u64,
    webhook_ids: Vec<String>,
}

/// Runs events to `webhooks` receivers and waits for every delivery.
async fn deliver_all(
    plan: &Plan,
    relay: &RelayProcess,
    receiver: &Receiver,
    count: u64,
    rate: Option<f64>,
    webhooks: u32,
) -> Result<Run> {
    let mut api = Api::new(relay.addr);
    let mut ids = Vec::new();
    for webhook in 0..webhooks {
        ids.push(api.create_webhook(&format!("bench {webhook}"), &receiver.url(webhook), &[SUBSCRIBED_TYPE]).await?);
    }
    let cpu = CpuMark::start(relay.pid)?;
    let rss = RssSampler::start(relay.pid);
    let load = drive(relay, plan.sizes.senders, count, None, rate, SUBSCRIBED_TYPE).await;
    let expected = load.accepted.len() as u64 * u64::from(webhooks);
    receiver.wait_for(expected, Instant::now() + plan.sizes.drain_timeout).await;
    receiver.settle(Duration::from_millis(300), Duration::from_secs(5)).await;
    let relay_cpu = cpu.elapsed()?;
    let peak_rss = rss.stop();
    let delivered = tally(receiver, &load, webhooks);
    Ok(Run { load, delivered, relay_cpu, peak_rss, webhook_ids: ids })
}

/// 10,000 events to one webhook, as fast as possible or at a steady rate.
async fn end_to_end(plan: &Plan, rate: Option<f64>) -> Result<ScenarioResult> {
    let count = plan.sizes.e2e_events;
    let name = match rate {
        Some(rate) => format!("end to end, {count} events at {rate}/s"),
        None => format!("end to end, {count} events as fast as possible"),
    };
    let relay = RelayProcess::start(&plan.relay(if rate.is_some() { "e2e-steady" } else { "e2e-max" }, &[])).await?;
    let idle_rss = rss_kib(relay.pid);
    let receiver = Receiver::start(Behaviour::ALWAYS_OK).await?;
    let Run { load, delivered, relay_cpu, peak_rss, .. } = deliver_all(plan, &relay, &receiver, count, rate, 1).await?;
    relay.stop().await;

    let accepted = load.accepted.len() as f64;
    let mut result = ScenarioResult::new(
        name,
        json!({"events": count, "rate": rate, "senders": plan.sizes.senders, "workers": plan.sizes.workers, "webhooks": 1}),
    );
    result.metric("delivered/s", accepted / delivered.seconds.max(1e-9), "events/s");
    result.metric("time to deliver all", delivered.seconds, "s");
    add_latency(&mut result, "sent to received", &delivered.latency, &["p50", "p99", "max"]);
    add_latency(&mut result, "POST latency", &Summary::of(load.latencies.clone()), &["p50", "p99"]);
    result.metric("duplicates", delivered.duplicates as f64, "");
    result.metric("lost", delivered.lost as f64, "");
    result.metric("relay CPU per event (ingest + delivery)", relay_cpu / accepted.max(1.0) * 1e6, "µs");
    result.metric("relay RSS idle", idle_rss as f64 / 1024.0, "MiB");
    result.metric("relay RSS peak", peak_rss as f64 / 1024.0, "MiB");
    add_refusals(&mut result, &load);
    add_delivery_checks(&mut result, &delivered, load.accepted.len() as u64);
    Ok(result)
}

/// 1,000 events to 10 webhooks.
async fn fan_out(plan: &Plan) -> Result<ScenarioResult> {
    let (count, webhooks) = (plan.sizes.fanout_events, plan.sizes.fanout_webhooks);
    let relay = RelayProcess::start(&plan.relay("fanout", &[])).await?;
    let receiver = Receiver::start(Behaviour::ALWAYS_OK).await?;
    let Run { load, delivered, relay_cpu, peak_rss, .. } =
        deliver_all(plan, &relay, &receiver, count, None, webhooks).await?;
    relay.stop().await;

    let deliveries = load.accepted.len() as f64 * f64::from(webhooks);
    let mut result = ScenarioResult::new(
        format!("fan-out, {count} events to {webhooks} webhooks"),
        json!({"events": count, "webhooks": webhooks, "senders": plan.sizes.senders, "workers": plan.sizes.workers}),
    );
    result.metric("time to finish", delivered.seconds, "s");
    result.metric("delivered/s", deliveries / delivered.seconds.max(1e-9), "deliveries/s");
    add_latency(&mut result, "sent to received", &delivered.latency, &["p50", "p99", "max"]);
    result.metric("relay CPU per delivery (incl. 1/n of ingest)", relay_cpu / deliveries.max(1.0) * 1e6, "µs");
    result.metric("relay RSS peak", peak_rss as f64 / 1024.0, "MiB");
    add_refusals(&mut result, &load);
    add_delivery_checks(&mut result, &delivered, deliveries as u64);
    Ok(result)
}

/// A receiver failing half the requests: every event is still delivered exactly once, with the
/// configured retries and backoff.
async fn failure(plan: &Plan) -> Result<ScenarioResult> {
    const RETRIES: u32 = 3;
    const DELAY_MS: u64 = 100;
    let count = plan.sizes.failure_events;
    let relay = RelayProcess::start(&plan.relay(
        "failure",
        &[("WEBHOOK_MAX_RETRIES", RETRIES.to_string()), ("WEBHOOK_RETRY_DELAY", DELAY_MS.to_string())],
    ))
    .await?;
    // The receiver fails at most RETRIES times in a row, so the last attempt the relay is
    // allowed always lands: every event must end delivered.
    let receiver =
        Receiver::start(Behaviour { fail_ratio: 0.5, max_failures: RETRIES, seed: 42, delay: Duration::ZERO }).await?;
    let Run { load, delivered, relay_cpu, webhook_ids, .. } =
        deliver_all(plan, &relay, &receiver, count, None, 1).await?;
    let records = receiver.records();
    let webhook = webhook_ids.first().context("no webhook registered")?;
    let log = Api::new(relay.addr).deliveries(webhook).await?;
    relay.stop().await;

    let totals = receiver.totals();
    let mut result = ScenarioResult::new(
        format!("failure, {count} events, receiver failing 50%"),
        json!({"events": count, "failRatio": 0.5, "WEBHOOK_MAX_RETRIES": RETRIES, "WEBHOOK_RETRY_DELAY": DELAY_MS,
               "senders": plan.sizes.senders, "workers": plan.sizes.workers}),
    );
    result.metric("time to deliver all", delivered.seconds, "s");
    result.metric("requests to the receiver", totals.requests as f64, "");
    result.metric("answered 500", totals.failed as f64 / totals.requests.max(1) as f64 * 100.0, "%");
    result.metric("attempts per event", totals.requests as f64 / load.accepted.len().max(1) as f64, "");
    add_latency(&mut result, "sent to received", &delivered.latency, &["p50", "p99", "max"]);
    result.metric("relay CPU per event", relay_cpu / load.accepted.len().max(1) as f64 * 1e6, "µs");
    add_refusals(&mut result, &load);
    add_delivery_checks(&mut result, &delivered, load.accepted.len() as u64);

    // The receiver's attempts per event against the relay's log and its configuration.
    let mut mismatches = Vec::new();
    let mut too_many = 0;
    let mut too_soon = 0;
    for entry in &log {
        let event_id = entry["eventId"].as_str().unwrap_or_default();
        let attempts = entry["attemptCount"].as_u64().unwrap_or(0);
        let seen = records.get(&(0, event_id.to_owned()));
        let arrivals = seen.map_or(0, |r| r.arrivals_ns.len() as u64);
        if entry["status"] != "succeeded" || attempts != arrivals {
            mismatches.push(format!("{event_id}: log {} after {attempts}, receiver saw {arrivals}", entry["status"]));
        }
        if attempts > u64::from(RETRIES) + 1 {
            too_many += 1;
        }
        // Attempt n+1 comes at least DELAY × 2^(n-1) × 0.8 (jitter) after attempt n.
        if let Some(record) = seen {
            for (n, pair) in record.arrivals_ns.windows(2).enumerate() {
                let least = DELAY_MS as f64 * 2f64.powi(n as i32) * 0.8 * 1e6;
                if ((pair[1] - pair[0]) as f64) < least - 2e6 {
                    too_soon += 1;
                }
            }
        }
    }
    result.check(
        "log: every delivery succeeded, attempts = receiver's count",
        mismatches.is_empty() && log.len() == load.accepted.len(),
        format!(
            "{} deliveries logged, {} mismatched {:?}",
            log.len(),
            mismatches.len(),
            mismatches.iter().take(3).collect::<Vec<_>>()
        ),
    );
    result.check(
        "retries as configured",
        too_many == 0 && too_soon == 0,
        format!("{too_many} events over {} attempts, {too_soon} retries earlier than the backoff", RETRIES + 1),
    );
    Ok(result)
}

/// Relay CPU per delivered event split into ingest and delivery, from the ingest run at the
/// highest concurrency and the as-fast-as-possible end-to-end run.
fn cpu_summary(results: &[ScenarioResult]) -> Option<ScenarioResult> {
    let ingest = results.iter().rev().find(|r| r.name.starts_with("ingest"))?;
    let e2e = results.iter().find(|r| r.name.ends_with("as fast as possible"))?;
    let ingest_us = ingest.value("relay CPU per event (ingest + dispatch)")?;
    let total_us = e2e.value("relay CPU per event (ingest + delivery)")?;
    let mut result =
        ScenarioResult::new("relay CPU per delivered event", json!({"ingest": ingest.name, "total": e2e.name}));
    result.metric("ingest (accept, store, enqueue, dispatch)", ingest_us, "µs");
    result.metric("delivery (sign, POST, log)", total_us - ingest_us, "µs");
    result.metric("total", total_us, "µs");
    Some(result)
}
