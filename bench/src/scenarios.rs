//! The scenarios: ingest, end to end (as fast as possible and at a steady rate), fan-out,
//! failure with retries, a backlog built and drained, memory over a million events, the
//! Lambda binaries' start-up, and delivery isolation and tenant fairness ([`crate::isolation`]).
//! Each runs on every backend of the plan in turn.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::json;

use crate::clock;
use crate::http::{Api, Conn, SERVICE_TOKEN, scoped_event_body};
use crate::isolation::{self, BadWebhook};
use crate::lambda;
use crate::proc::{CpuMark, GroupCpuMark, RssSampler, cpu_seconds, rss_kib};
use crate::receiver::{Behaviour, Receiver};
use crate::relay::{Backend, RelayOptions, RelayProcess};
use crate::report::{Machine, Report, ScenarioResult};
use crate::stats::Summary;

/// An event type nothing subscribes to (ingest), and the one the webhooks subscribe to.
const UNSUBSCRIBED_TYPE: &str = "job.deleted";
pub(crate) const SUBSCRIBED_TYPE: &str = "job.created";
/// `POST /api/events` body size.
pub(crate) const EVENT_BYTES: usize = 1024;
/// Longest a sender waits after a `503` before sending the same event again, whatever the
/// relay's `Retry-After` says.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);
/// `503`s one event may get before its sender gives up on it (then counted as refused): with
/// waits of at most [`MAX_RETRY_AFTER`], over half an hour.
const MAX_BUSY_RETRIES: u32 = 1_000;
/// `QUEUE_MAX_BACKLOG` in the drain scenario: high enough that the relay never refuses.
const DRAIN_MAX_BACKLOG: &str = "10000000";
/// `MEMORY_MAX_EVENTS` in the memory scenario: events the embedded store keeps at most.
const MEMORY_MAX_EVENTS: &str = "100000";
/// The memory scenario's target: relay RSS once everything is delivered, MiB.
const MEMORY_TARGET_MIB: f64 = 300.0;

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
    /// A backlog of 20 × `--events` built as fast as the relay accepts, then drained.
    Drain,
    /// 100 × `--events` through the relay, its memory at the end (minutes: not in [`Self::ALL`]).
    Memory,
    Startup,
    /// Healthy webhooks alone, then beside one that never answers, then beside one that
    /// answers late (not in [`Self::ALL`]).
    Isolation,
    /// One tenant's webhooks that never answer, another tenant's healthy one (not in
    /// [`Self::ALL`]).
    Fairness,
}

impl Scenario {
    /// What `all` and no scenario at all run: everything but `memory`, which takes minutes, and
    /// `isolation` and `fairness`, which measure the relay's guards against bad webhooks rather
    /// than its speed.
    pub const ALL: [Self; 6] = [Self::Ingest, Self::EndToEnd, Self::FanOut, Self::Failure, Self::Drain, Self::Startup];

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "ingest" => Self::Ingest,
            "e2e" | "end-to-end" => Self::EndToEnd,
            "e2e-max" => Self::EndToEndMax,
            "e2e-steady" => Self::EndToEndSteady,
            "fanout" | "fan-out" => Self::FanOut,
            "failure" => Self::Failure,
            "drain" => Self::Drain,
            "memory" => Self::Memory,
            "startup" => Self::Startup,
            "isolation" => Self::Isolation,
            "fairness" => Self::Fairness,
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
    /// Events in the drain scenario and in the memory scenario.
    pub drain_events: u64,
    pub memory_events: u64,
    /// Connections sending events in the drain and memory scenarios.
    pub backlog_senders: usize,
    /// Longest the drain and the memory scenario may take, sending and delivering.
    pub backlog_timeout: Duration,
    pub memory_timeout: Duration,
    /// Healthy webhooks in the isolation scenario, the rate of the events they all receive, and
    /// for how long they are sent.
    pub isolation_webhooks: u32,
    pub isolation_rate: f64,
    pub isolation_seconds: f64,
    /// How long the late receiver of the isolation scenario takes to answer 200.
    pub slow_answer: Duration,
    /// Tenant A's webhooks at the receiver that never answers in the fairness scenario, and
    /// tenant B's rate of events and for how long it sends them.
    pub fairness_webhooks: u32,
    pub fairness_rate: f64,
    pub fairness_seconds: f64,
    /// Isolation and fairness: longest wait for the healthy deliveries after the last event is
    /// sent; one still missing then counts as arrived then.
    pub isolation_wait: Duration,
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
            drain_events: 200_000,
            memory_events: 1_000_000,
            backlog_senders: 64,
            backlog_timeout: Duration::from_secs(15 * 60),
            memory_timeout: Duration::from_secs(20 * 60),
            isolation_webhooks: 10,
            isolation_rate: 300.0,
            isolation_seconds: 20.0,
            slow_answer: Duration::from_secs(4),
            fairness_webhooks: 400,
            fairness_rate: 10.0,
            fairness_seconds: 15.0,
            isolation_wait: Duration::from_secs(60),
        }
    }

    /// With `events` in the end-to-end runs (a tenth in fan-out and failure, 20 times as many
    /// in drain, 100 times in memory) and `seconds` per ingest run, of load per isolation run
    /// and of tenant B's events in fairness, where given: the full backends run on one-process
    /// emulators.
    pub fn scaled(mut self, events: Option<u64>, seconds: Option<f64>) -> Self {
        if let Some(events) = events {
            self.e2e_events = events.max(1);
            self.fanout_events = (events / 10).max(1);
            self.failure_events = (events / 10).max(1);
            self.drain_events = events.saturating_mul(20).max(1);
            self.memory_events = events.saturating_mul(100).max(1);
        }
        if let Some(seconds) = seconds {
            self.ingest_seconds = seconds.max(0.1);
            self.isolation_seconds = seconds.max(0.1);
            self.fairness_seconds = seconds.max(0.1);
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
            drain_events: 2_000,
            memory_events: 5_000,
            backlog_senders: 16,
            backlog_timeout: Duration::from_secs(60),
            memory_timeout: Duration::from_secs(120),
            isolation_webhooks: 3,
            isolation_rate: 100.0,
            isolation_seconds: 2.0,
            slow_answer: Duration::from_secs(1),
            fairness_webhooks: 20,
            fairness_rate: 10.0,
            fairness_seconds: 1.5,
            isolation_wait: Duration::from_secs(30),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every scenario runs on each of these in turn; the first is the one the others are
    /// compared with.
    pub backends: Vec<Backend>,
    pub bin_dir: PathBuf,
    /// Where relay logs go.
    pub work_dir: PathBuf,
    pub scenarios: Vec<Scenario>,
    pub sizes: Sizes,
}

impl Plan {
    pub(crate) fn relay(&self, backend: Backend, name: &str, env: &[(&str, String)]) -> RelayOptions {
        RelayOptions {
            bin_dir: self.bin_dir.clone(),
            backend,
            workers: self.sizes.workers,
            env: env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            log: self.work_dir.join(format!("{name}-{}.log", backend.name())),
            resources: None,
        }
    }
}

/// One run of relay-local that gives one result: the scenarios, split into their runs.
#[derive(Debug, Clone, Copy)]
enum Step {
    Ingest(usize),
    EndToEnd(Option<f64>),
    FanOut,
    Failure,
    Drain,
    Memory,
    /// The healthy webhooks alone, or beside a bad one.
    Isolation(Option<BadWebhook>),
    Fairness,
}

impl Step {
    async fn run(self, plan: &Plan, backend: Backend) -> Result<ScenarioResult> {
        match self {
            Self::Ingest(concurrency) => ingest(plan, backend, concurrency).await.context("ingest"),
            Self::EndToEnd(None) => end_to_end(plan, backend, None).await.context("end to end"),
            Self::EndToEnd(rate) => end_to_end(plan, backend, rate).await.context("end to end, steady"),
            Self::FanOut => fan_out(plan, backend).await.context("fan-out"),
            Self::Failure => failure(plan, backend).await.context("failure"),
            Self::Drain => drain(plan, backend).await.context("drain"),
            Self::Memory => memory(plan, backend).await.context("memory"),
            Self::Isolation(bad) => isolation::isolation(plan, backend, bad).await.context("isolation"),
            Self::Fairness => isolation::fairness(plan, backend).await.context("fairness"),
        }
    }
}

/// Runs the plan's scenarios in order, each run of a scenario on every backend in turn (so that
/// the backends compared ran close together), and reports each result as it comes. The
/// start-up scenario runs once: it does not start relay-local.
pub async fn run_scenarios(plan: &Plan, mut progress: impl FnMut(&ScenarioResult)) -> Result<Report> {
    if plan.backends.is_empty() {
        bail!("no backend to run on");
    }
    std::fs::create_dir_all(&plan.work_dir)?;
    let started_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut results = Vec::new();
    let mut push = |result: ScenarioResult, results: &mut Vec<ScenarioResult>| {
        progress(&result);
        results.push(result);
    };
    for scenario in &plan.scenarios {
        let steps = match scenario {
            Scenario::Ingest => plan.sizes.ingest_concurrency.iter().map(|&c| Step::Ingest(c)).collect(),
            Scenario::EndToEnd => vec![Step::EndToEnd(None), Step::EndToEnd(Some(plan.sizes.steady_rate))],
            Scenario::EndToEndMax => vec![Step::EndToEnd(None)],
            Scenario::EndToEndSteady => vec![Step::EndToEnd(Some(plan.sizes.steady_rate))],
            Scenario::FanOut => vec![Step::FanOut],
            Scenario::Failure => vec![Step::Failure],
            Scenario::Drain => vec![Step::Drain],
            Scenario::Memory => vec![Step::Memory],
            Scenario::Isolation => vec![
                Step::Isolation(None),
                Step::Isolation(Some(BadWebhook::Unresponsive)),
                Step::Isolation(Some(BadWebhook::Slow)),
            ],
            Scenario::Fairness => vec![Step::Fairness],
            Scenario::Startup => {
                let runs = plan.sizes.startup_runs;
                push(lambda::startup(&plan.bin_dir, &plan.work_dir, runs).await.context("start-up")?, &mut results);
                continue;
            }
        };
        for step in steps {
            for &backend in &plan.backends {
                let mut result = step.run(plan, backend).await.with_context(|| format!("on {}", backend.name()))?;
                result.backend = Some(backend);
                push(result, &mut results);
            }
        }
    }
    for &backend in &plan.backends {
        let summaries = [cpu_summary(&results, backend), isolation::summary(&results, backend)];
        for mut summary in summaries.into_iter().flatten() {
            summary.backend = Some(backend);
            push(summary, &mut results);
        }
    }
    Ok(Report { backends: plan.backends.clone(), machine: Machine::this(), started_at, results })
}

/// What a load run sends: events of one type, scoped to a tenant or to none (a broadcast).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Events {
    pub(crate) event_type: &'static str,
    pub(crate) tenant: Option<&'static str>,
}

impl Events {
    /// Events of `event_type` for every tenant's subscribers.
    pub(crate) const fn broadcast(event_type: &'static str) -> Self {
        Self { event_type, tenant: None }
    }
}

/// What a load run saw from the sending side.
#[derive(Debug, Default)]
pub(crate) struct Load {
    /// Latency of each event's last answer, ns (from its scheduled time at a steady rate; the
    /// waits after `503`s included).
    latencies: Vec<u64>,
    /// `seq`s the relay accepted (202).
    pub(crate) accepted: Vec<u64>,
    /// Other answers by status, and transport errors.
    refused: HashMap<u16, u64>,
    errors: u64,
    /// `503`s with a `Retry-After`, each followed by the same event sent again.
    busy: u64,
    /// When the first event was due (harness ns): at a steady rate, event `seq` is due
    /// `seq / rate` seconds later.
    pub(crate) first_sent_ns: u64,
    elapsed: Duration,
}

impl Load {
    /// Requests answered or failed, the ones answered `503` and sent again included.
    fn requests(&self) -> u64 {
        self.latencies.len() as u64 + self.errors + self.busy
    }

    pub(crate) fn failed(&self) -> u64 {
        self.errors + self.refused.values().sum::<u64>()
    }

    fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        self.accepted.extend(other.accepted);
        for (status, n) in other.refused {
            *self.refused.entry(status).or_default() += n;
        }
        self.errors += other.errors;
        self.busy += other.busy;
    }
}

/// How long to wait before sending an event the relay answered `503` again: its `Retry-After`
/// in seconds (1 s when it is not a number of seconds), between 10 ms and [`MAX_RETRY_AFTER`];
/// `None` without the header.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(hyper::header::RETRY_AFTER)?;
    let seconds = value.to_str().ok().and_then(|v| v.trim().parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0);
    Some(Duration::from_secs_f64(seconds.unwrap_or(1.0)).clamp(Duration::from_millis(10), MAX_RETRY_AFTER))
}

/// Sends up to `count` events like `events` over `concurrency` connections until the
/// deadline; at `rate` events per second if given (open loop: latency counts from when each
/// was due), else as fast as answers come back. An event answered `503` with a `Retry-After`
/// is sent again after that long (at most [`MAX_RETRY_AFTER`]), up to [`MAX_BUSY_RETRIES`]
/// times and not past the deadline (then it is left unsent, neither accepted nor refused); any
/// other answer but 2xx is refused.
pub(crate) async fn drive(
    relay: SocketAddr,
    concurrency: usize,
    count: u64,
    deadline: Option<Instant>,
    rate: Option<f64>,
    events: Events,
) -> Load {
    let next = Arc::new(AtomicU64::new(0));
    // At a rate, the first event is due once every sender is waiting.
    let start = Instant::now() + if rate.is_some() { Duration::from_millis(5) } else { Duration::ZERO };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let mut conn = Conn::new(relay);
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
                let body = scoped_event_body(events.tenant, events.event_type, seq, due_ns, EVENT_BYTES);
                let mut busy = 0;
                loop {
                    let headers = [("x-service-token", SERVICE_TOKEN)];
                    match conn.send(Method::POST, "/api/events", &headers, body.clone()).await {
                        Ok(response) => {
                            if response.status == StatusCode::SERVICE_UNAVAILABLE
                                && busy < MAX_BUSY_RETRIES
                                && let Some(wait) = retry_after(&response.headers)
                            {
                                busy += 1;
                                load.busy += 1;
                                // Past the deadline the event is not sent again, as events
                                // not yet sent then are not sent at all.
                                if deadline.is_some_and(|deadline| Instant::now() + wait >= deadline) {
                                    break;
                                }
                                tokio::time::sleep(wait).await;
                                continue;
                            }
                            load.latencies.push(clock::now_ns().saturating_sub(due_ns));
                            if response.status.is_success() {
                                load.accepted.push(seq);
                            } else {
                                *load.refused.entry(response.status.as_u16()).or_default() += 1;
                            }
                        }
                        Err(_) => load.errors += 1,
                    }
                    break;
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

pub(crate) fn add_latency(result: &mut ScenarioResult, prefix: &str, summary: &Summary, percentiles: &[&str]) {
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

/// The `503`s the senders waited out, and the check that every event was accepted in the end.
pub(crate) fn add_refusals(result: &mut ScenarioResult, load: &Load) {
    result.metric("503 + Retry-After, sent again", load.busy as f64, "");
    let detail = if load.failed() == 0 {
        "none".to_owned()
    } else {
        format!("{} transport errors, statuses {:?}", load.errors, load.refused)
    };
    result.check("every POST /api/events accepted", load.failed() == 0, detail);
}

/// `POST /api/events` with a 1 KiB payload at a fixed concurrency for a fixed time.
async fn ingest(plan: &Plan, backend: Backend, concurrency: usize) -> Result<ScenarioResult> {
    let seconds = plan.sizes.ingest_seconds;
    let relay = RelayProcess::start(&plan.relay(backend, &format!("ingest-{concurrency}"), &[])).await?;
    let idle_rss = rss_kib(relay.pid);
    let cpu = CpuMark::start(relay.pid)?;
    let own_cpu = CpuMark::start(std::process::id())?;
    let rss = RssSampler::start(relay.pid);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let load =
        drive(relay.addr, concurrency, u64::MAX, Some(deadline), None, Events::broadcast(UNSUBSCRIBED_TYPE)).await;
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
pub(crate) struct Delivered {
    latency: Summary,
    pub(crate) duplicates: u64,
    pub(crate) lost: u64,
    pub(crate) unexpected: u64,
    seconds: f64,
}

/// Checks the receiver's records against what was accepted, for `webhooks` webhooks.
pub(crate) fn tally(receiver: &Receiver, load: &Load, webhooks: u32) -> Delivered {
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

/// The CPU of the PostgreSQL and Redis processes over a measured phase, on the backends that
/// keep the delivery log and the locks there (see [`GroupCpuMark`] for what it can miss).
struct ServiceCpu {
    postgres: GroupCpuMark,
    redis: GroupCpuMark,
}

/// What [`ServiceCpu`] measured: CPU seconds, and server processes gone in between.
#[derive(Debug, Clone, Copy)]
struct ServiceSpent {
    postgres: f64,
    redis: f64,
    gone: usize,
}

impl ServiceCpu {
    /// Starts measuring, on the backends that use PostgreSQL and Redis.
    fn start(backend: Backend) -> Option<Self> {
        backend
            .uses_postgres_and_redis()
            .then(|| Self { postgres: GroupCpuMark::start("postgres"), redis: GroupCpuMark::start("redis-server") })
    }

    fn stop(self) -> ServiceSpent {
        let (postgres, gone_postgres) = self.postgres.elapsed();
        let (redis, gone_redis) = self.redis.elapsed();
        ServiceSpent { postgres, redis, gone: gone_postgres + gone_redis }
    }
}

/// PostgreSQL's and Redis's CPU per delivery (ms), next to the relay's.
fn add_service_cpu(result: &mut ScenarioResult, spent: Option<ServiceSpent>, deliveries: f64) {
    let Some(spent) = spent else { return };
    result.metric("PostgreSQL CPU per delivery", spent.postgres / deliveries.max(1.0) * 1e3, "ms");
    result.metric("Redis CPU per delivery", spent.redis / deliveries.max(1.0) * 1e3, "ms");
    if spent.gone > 0 {
        result.metric("server processes gone meanwhile (their CPU partly missed)", spent.gone as f64, "");
    }
}

/// One delivery run: what was sent, what arrived, the relay's CPU seconds and peak RSS (KiB),
/// PostgreSQL's and Redis's CPU, and the webhooks it registered.
struct Run {
    load: Load,
    delivered: Delivered,
    relay_cpu: f64,
    services: Option<ServiceSpent>,
    peak_rss: u64,
    webhook_ids: Vec<String>,
}

/// Runs events to `webhooks` receivers and waits for every delivery.
async fn deliver_all(
    plan: &Plan,
    backend: Backend,
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
    let services = ServiceCpu::start(backend);
    let rss = RssSampler::start(relay.pid);
    let load = drive(relay.addr, plan.sizes.senders, count, None, rate, Events::broadcast(SUBSCRIBED_TYPE)).await;
    let expected = load.accepted.len() as u64 * u64::from(webhooks);
    receiver.wait_for(expected, Instant::now() + plan.sizes.drain_timeout).await;
    receiver.settle(Duration::from_millis(300), Duration::from_secs(5)).await;
    let relay_cpu = cpu.elapsed()?;
    let services = services.map(ServiceCpu::stop);
    let peak_rss = rss.stop();
    let delivered = tally(receiver, &load, webhooks);
    Ok(Run { load, delivered, relay_cpu, services, peak_rss, webhook_ids: ids })
}

/// 10,000 events to one webhook, as fast as possible or at a steady rate.
async fn end_to_end(plan: &Plan, backend: Backend, rate: Option<f64>) -> Result<ScenarioResult> {
    let count = plan.sizes.e2e_events;
    let name = match rate {
        Some(rate) => format!("end to end, {count} events at {rate}/s"),
        None => format!("end to end, {count} events as fast as possible"),
    };
    let relay =
        RelayProcess::start(&plan.relay(backend, if rate.is_some() { "e2e-steady" } else { "e2e-max" }, &[])).await?;
    let idle_rss = rss_kib(relay.pid);
    let receiver = Receiver::start(Behaviour::ALWAYS_OK).await?;
    let Run { load, delivered, relay_cpu, services, peak_rss, .. } =
        deliver_all(plan, backend, &relay, &receiver, count, rate, 1).await?;
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
    add_service_cpu(&mut result, services, accepted);
    result.metric("relay RSS idle", idle_rss as f64 / 1024.0, "MiB");
    result.metric("relay RSS peak", peak_rss as f64 / 1024.0, "MiB");
    add_refusals(&mut result, &load);
    add_delivery_checks(&mut result, &delivered, load.accepted.len() as u64);
    Ok(result)
}

/// 1,000 events to 10 webhooks.
async fn fan_out(plan: &Plan, backend: Backend) -> Result<ScenarioResult> {
    let (count, webhooks) = (plan.sizes.fanout_events, plan.sizes.fanout_webhooks);
    let relay = RelayProcess::start(&plan.relay(backend, "fanout", &[])).await?;
    let receiver = Receiver::start(Behaviour::ALWAYS_OK).await?;
    let Run { load, delivered, relay_cpu, services, peak_rss, .. } =
        deliver_all(plan, backend, &relay, &receiver, count, None, webhooks).await?;
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
    add_service_cpu(&mut result, services, deliveries);
    result.metric("relay RSS peak", peak_rss as f64 / 1024.0, "MiB");
    add_refusals(&mut result, &load);
    add_delivery_checks(&mut result, &delivered, deliveries as u64);
    Ok(result)
}

/// A receiver failing half the requests: every event is still delivered exactly once, with the
/// configured retries and backoff.
async fn failure(plan: &Plan, backend: Backend) -> Result<ScenarioResult> {
    const RETRIES: u32 = 3;
    const DELAY_MS: u64 = 100;
    let count = plan.sizes.failure_events;
    let relay = RelayProcess::start(&plan.relay(
        backend,
        "failure",
        // The scenario measures retries, not the circuit breaker: across concurrent events a
        // receiver failing half the time fails five in a row often, which would open it.
        &[
            ("WEBHOOK_MAX_RETRIES", RETRIES.to_string()),
            ("WEBHOOK_RETRY_DELAY", DELAY_MS.to_string()),
            ("CIRCUIT_BREAKER_THRESHOLD", "1000".to_owned()),
        ],
    ))
    .await?;
    // The receiver fails at most RETRIES times in a row, so the last attempt the relay is
    // allowed always lands: every event must end delivered.
    let receiver =
        Receiver::start(Behaviour { fail_ratio: 0.5, max_failures: RETRIES, seed: 42, delay: Duration::ZERO }).await?;
    let Run { load, delivered, relay_cpu, webhook_ids, .. } =
        deliver_all(plan, backend, &relay, &receiver, count, None, 1).await?;
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

/// A flood of events to one webhook, sent as fast as the relay accepts them (so that a backlog
/// builds while it delivers), then delivered to the last.
struct Flood {
    load: Load,
    delivered: Delivered,
    /// Distinct events the receiver had when the last event was accepted, and at the end.
    delivered_at_last_send: u64,
    delivered_at_end: u64,
    /// When the last event was accepted, and the last delivery arrived (harness ns).
    last_send_ns: u64,
    last_delivery_ns: u64,
    relay_cpu: f64,
    services: Option<ServiceSpent>,
    /// Relay RSS, KiB: the peak, and at the end (after `idle` without traffic).
    peak_rss: u64,
    end_rss: u64,
}

/// Sends `count` events to one webhook over `plan.sizes.backlog_senders` connections, as fast
/// as the relay accepts them (waiting out `503`s), and waits for every delivery; all of it
/// within `timeout`. Then waits `idle` more before the last RSS reading.
async fn flood(
    plan: &Plan,
    backend: Backend,
    name: &str,
    count: u64,
    timeout: Duration,
    idle: Duration,
    env: &[(&str, String)],
) -> Result<Flood> {
    let relay = RelayProcess::start(&plan.relay(backend, name, env)).await?;
    let receiver = Receiver::start(Behaviour::ALWAYS_OK).await?;
    Api::new(relay.addr).create_webhook(&format!("bench {name}"), &receiver.url(0), &[SUBSCRIBED_TYPE]).await?;
    let deadline = Instant::now() + timeout;
    let cpu = CpuMark::start(relay.pid)?;
    let services = ServiceCpu::start(backend);
    let rss = RssSampler::start(relay.pid);
    let load =
        drive(relay.addr, plan.sizes.backlog_senders, count, Some(deadline), None, Events::broadcast(SUBSCRIBED_TYPE))
            .await;
    let last_send_ns = clock::now_ns();
    let delivered_at_last_send = receiver.totals().delivered;
    receiver.wait_for(load.accepted.len() as u64, deadline).await;
    receiver.settle(Duration::from_millis(300), Duration::from_secs(5)).await;
    let relay_cpu = cpu.elapsed()?;
    let services = services.map(ServiceCpu::stop);
    tokio::time::sleep(idle).await;
    let end_rss = rss_kib(relay.pid);
    let peak_rss = rss.stop();
    relay.stop().await;
    let totals = receiver.totals();
    let delivered = tally(&receiver, &load, 1);
    Ok(Flood {
        load,
        delivered,
        delivered_at_last_send,
        delivered_at_end: totals.delivered,
        last_send_ns,
        last_delivery_ns: totals.last_delivered_ns,
        relay_cpu,
        services,
        peak_rss,
        end_rss,
    })
}

impl Flood {
    /// The check that the senders got through every event before the time limit.
    fn add_all_sent(&self, result: &mut ScenarioResult, count: u64, timeout: Duration) {
        let accepted = self.load.accepted.len() as u64;
        result.check(
            "every event accepted within the time limit",
            accepted == count,
            format!("{accepted} of {count} accepted in {} s at most", timeout.as_secs()),
        );
    }
}

/// A backlog built and drained: 20 × `--events` events to one webhook from 64 senders as fast
/// as the relay accepts them (it delivers meanwhile, more slowly, so a backlog builds), then
/// every delivery waited for. Measures how fast it takes events in, delivers overall and
/// drains the backlog once nothing more comes in.
async fn drain(plan: &Plan, backend: Backend) -> Result<ScenarioResult> {
    let count = plan.sizes.drain_events;
    let timeout = plan.sizes.backlog_timeout;
    let env = [("QUEUE_MAX_BACKLOG", DRAIN_MAX_BACKLOG.to_owned())];
    let run = flood(plan, backend, "drain", count, timeout, Duration::ZERO, &env).await?;
    let Flood { load, delivered, .. } = &run;

    let accepted = load.accepted.len() as f64;
    let mut result = ScenarioResult::new(
        format!("drain, {count} events to 1 webhook, backlog then drained"),
        json!({"events": count, "senders": plan.sizes.backlog_senders, "workers": plan.sizes.workers, "webhooks": 1,
               "QUEUE_MAX_BACKLOG": DRAIN_MAX_BACKLOG, "timeoutSeconds": timeout.as_secs()}),
    );
    result.metric("ingest rate", accepted / load.elapsed.as_secs_f64().max(1e-9), "events/s");
    result.metric("time to accept all", load.elapsed.as_secs_f64(), "s");
    result.metric("backlog when the last event was accepted", accepted - run.delivered_at_last_send as f64, "events");
    result.metric("delivered/s, first send to last delivery", accepted / delivered.seconds.max(1e-9), "deliveries/s");
    let drained = run.delivered_at_end.saturating_sub(run.delivered_at_last_send) as f64;
    let drain_seconds = run.last_delivery_ns.saturating_sub(run.last_send_ns) as f64 / 1e9;
    let drain_rate = if drained > 0.0 { drained / drain_seconds.max(1e-9) } else { 0.0 };
    result.metric("delivered/s, drain phase (after the last send)", drain_rate, "deliveries/s");
    result.metric("drain phase", drain_seconds, "s");
    result.metric("time to deliver all", delivered.seconds, "s");
    result.metric("duplicates", delivered.duplicates as f64, "");
    result.metric("lost", delivered.lost as f64, "");
    result.metric("relay CPU per delivery (incl. ingest)", run.relay_cpu / accepted.max(1.0) * 1e6, "µs");
    add_service_cpu(&mut result, run.services, accepted);
    result.metric("relay RSS peak", run.peak_rss as f64 / 1024.0, "MiB");
    result.metric("relay RSS at the end", run.end_rss as f64 / 1024.0, "MiB");
    add_refusals(&mut result, load);
    run.add_all_sent(&mut result, count, timeout);
    add_delivery_checks(&mut result, delivered, load.accepted.len() as u64);
    Ok(result)
}

/// Memory over 100 × `--events` events (a million by default) to one webhook from 64 senders,
/// with the embedded store capped at `MEMORY_MAX_EVENTS` and the relay's own backlog limit
/// (its `503`s waited out): the relay's RSS once everything is delivered and it has been idle
/// for 2 s must stay under [`MEMORY_TARGET_MIB`].
async fn memory(plan: &Plan, backend: Backend) -> Result<ScenarioResult> {
    let count = plan.sizes.memory_events;
    let timeout = plan.sizes.memory_timeout;
    let env = [("MEMORY_MAX_EVENTS", MEMORY_MAX_EVENTS.to_owned())];
    let run = flood(plan, backend, "memory", count, timeout, Duration::from_secs(2), &env).await?;
    let Flood { load, delivered, .. } = &run;

    let accepted = load.accepted.len() as f64;
    let mut result = ScenarioResult::new(
        format!("memory, {count} events to 1 webhook"),
        json!({"events": count, "senders": plan.sizes.backlog_senders, "workers": plan.sizes.workers, "webhooks": 1,
               "MEMORY_MAX_EVENTS": MEMORY_MAX_EVENTS, "timeoutSeconds": timeout.as_secs()}),
    );
    let end_mib = run.end_rss as f64 / 1024.0;
    result.metric("relay RSS at the end (all delivered, then 2 s idle)", end_mib, "MiB");
    result.metric("relay RSS peak", run.peak_rss as f64 / 1024.0, "MiB");
    result.metric("ingest rate", accepted / load.elapsed.as_secs_f64().max(1e-9), "events/s");
    result.metric("delivered/s, first send to last delivery", accepted / delivered.seconds.max(1e-9), "deliveries/s");
    result.metric("delivered", run.delivered_at_end as f64, "");
    result.metric("duplicates", delivered.duplicates as f64, "");
    result.metric("lost", delivered.lost as f64, "");
    result.metric("relay CPU per delivery (incl. ingest)", run.relay_cpu / accepted.max(1.0) * 1e6, "µs");
    add_service_cpu(&mut result, run.services, accepted);
    result.check(
        format!("relay RSS at the end < {MEMORY_TARGET_MIB} MiB"),
        end_mib < MEMORY_TARGET_MIB,
        format!("{end_mib:.1} MiB with MEMORY_MAX_EVENTS={MEMORY_MAX_EVENTS}"),
    );
    add_refusals(&mut result, load);
    run.add_all_sent(&mut result, count, timeout);
    add_delivery_checks(&mut result, delivered, load.accepted.len() as u64);
    Ok(result)
}

/// Relay CPU per delivered event on one backend split into ingest and delivery, from the
/// ingest run at the highest concurrency and the as-fast-as-possible end-to-end run.
fn cpu_summary(results: &[ScenarioResult], backend: Backend) -> Option<ScenarioResult> {
    let on_backend = || results.iter().filter(move |r| r.backend == Some(backend));
    let ingest = on_backend().rev().find(|r| r.name.starts_with("ingest"))?;
    let e2e = on_backend().find(|r| r.name.ends_with("as fast as possible"))?;
    let ingest_us = ingest.value("relay CPU per event (ingest + dispatch)")?;
    let total_us = e2e.value("relay CPU per event (ingest + delivery)")?;
    let mut result =
        ScenarioResult::new("relay CPU per delivered event", json!({"ingest": ingest.name, "total": e2e.name}));
    result.metric("ingest (accept, store, enqueue, dispatch)", ingest_us, "µs");
    result.metric("delivery (sign, POST, log)", total_us - ingest_us, "µs");
    result.metric("total", total_us, "µs");
    Some(result)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::Response;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::*;

    #[test]
    fn retry_after_is_capped_and_defaulted() {
        let wait = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(hyper::header::RETRY_AFTER, value.parse().unwrap());
            retry_after(&headers)
        };
        assert_eq!(wait("1"), Some(Duration::from_secs(1)));
        assert_eq!(wait("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(wait("120"), Some(MAX_RETRY_AFTER));
        assert_eq!(wait("0"), Some(Duration::from_millis(10)));
        assert_eq!(wait("Wed, 21 Oct 2026 07:28:00 GMT"), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    /// A stand-in for `POST /api/events` on 127.0.0.1: its first `busy` answers are `503` with
    /// `Retry-After: {retry_after}`, the next a `503` without it, the rest `202`.
    async fn busy_relay(busy: u32, retry_after: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = Arc::new(AtomicU32::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answered = answered.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let n = answered.fetch_add(1, Ordering::Relaxed);
                        async move {
                            let _ = request.into_body().collect().await?;
                            let mut response = Response::builder();
                            response = match n.cmp(&busy) {
                                std::cmp::Ordering::Less => response.status(503).header("retry-after", retry_after),
                                std::cmp::Ordering::Equal => response.status(503),
                                std::cmp::Ordering::Greater => response.status(202),
                            };
                            Ok::<_, hyper::Error>(response.body(Full::new(Bytes::new())).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn busy_answers_are_waited_out_and_the_same_event_sent_again() {
        let addr = busy_relay(5, "0").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut load = drive(addr, 1, 10, Some(deadline), None, Events::broadcast(SUBSCRIBED_TYPE)).await;
        // Event 0 waited out five 503s with Retry-After, then got one without it: refused.
        assert_eq!(load.busy, 5);
        assert_eq!(load.refused, HashMap::from([(503, 1)]));
        assert_eq!(load.errors, 0);
        load.accepted.sort_unstable();
        assert_eq!(load.accepted, (1..10).collect::<Vec<_>>());
        assert_eq!(load.latencies.len(), 10);
        assert_eq!(load.requests(), 15);
    }

    #[tokio::test]
    async fn an_event_still_refused_at_the_deadline_is_left_unsent() {
        let addr = busy_relay(u32::MAX, "1").await;
        let started = Instant::now();
        let load =
            drive(addr, 2, 10, Some(started + Duration::from_millis(1500)), None, Events::broadcast(SUBSCRIBED_TYPE))
                .await;
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(load.accepted.is_empty() && load.refused.is_empty() && load.errors == 0, "{load:?}");
        // Each sender waited once, then met answers it could not wait out before the deadline.
        assert!(load.busy >= 4, "{load:?}");
    }
}
