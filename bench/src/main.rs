//! relay-bench: see `docs/performance.md`. Usually run through `bash bench/run`, which builds the
//! release binaries it drives first.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use relay_bench::scenarios::{Scenario, Sizes};
use relay_bench::{Backend, Plan, relay, run_scenarios};

const USAGE: &str = "\
usage: relay-bench [SCENARIO...] [--backend B[,B...]] [--smoke] [--events N] [--seconds S] [--out FILE]

scenarios (default, and `all`: every one but memory, isolation and fairness, in this order):
  ingest    POST /api/events, 1 KiB payload, concurrency 32 and 64, 10 s each
  e2e       10,000 events to one webhook, as fast as possible, then at a steady 300/s
            (e2e-max, e2e-steady: one of the two)
  fanout    1,000 events to 10 webhooks
  failure   1,000 events to a receiver failing 50% of requests: exactly-once as the receiver
            dedupes, retries as configured
  drain     200,000 events to one webhook from 64 senders as fast as the relay takes them (a
            backlog builds), then drained: ingest rate, delivery rate overall and of the drain
            alone, losses, duplicates, RSS (QUEUE_MAX_BACKLOG=10000000; at most 15 min)
  startup   each Lambda binary's cold start under a local Lambda Runtime API, binary sizes, RSS
            (needs LocalStack + moto and PostgreSQL; runs once, whatever the backends)
  memory    1,000,000 events to one webhook from 64 senders with MEMORY_MAX_EVENTS=100000:
            relay RSS once all are delivered must be < 300 MiB. Takes minutes (2 to 3 on
            the embedded backends, more on PostgreSQL; at most 20), so only when named
  isolation 10 healthy webhooks get 300 events/s for 20 s, three runs: alone, beside 1 webhook
            whose receiver never answers, beside 1 answering 200 after 4 s; the healthy
            sent-to-received p50/p99/p99.9/max of each and p99 against the run alone (bar: at
            most 2x). Only when named
  fairness  tenant A: 400 webhooks at a receiver that never answers, 1 event; then tenant B:
            10 events/s for 15 s to 1 healthy webhook, its sent-to-received p50/p99/p99.9/max
            (bar: p99 < 1 s). Only when named
            (both: events still refused with 503 5 s after the last was due are left unsent;
            a healthy delivery not arrived 60 s after the last send counts as arriving then,
            so the percentiles are lower bounds; the report counts both)

  --backend B[,B...]  the backends every scenario runs on, each in turn, in one run; the
                      table compares each later backend with the first (\"25.1% of memory\"):
       memory         relay-local on its embedded backends (default)
       postgres, pg   embedded queue and event/webhook stores, the delivery log in PostgreSQL
                      (a fresh database per relay start, dropped after it) and locks and cache
                      in Redis; no emulators
       full           DynamoDB (moto) + SQS (LocalStack) + PostgreSQL + Redis
                      postgres and full also report PostgreSQL's and Redis's CPU per delivery
  --smoke            tiny sizes: checks the harness and the relay work, in seconds; no timing
                     means anything
  --events N         N events in e2e, N/10 in fanout and failure, 20 N in drain, 100 N in
                     memory (default 10,000)
  --seconds S        S seconds per ingest run (default 10), of events per isolation run (20)
                     and of tenant B's events in fairness (15)
  --out FILE         the JSON report (default bench/results/<backend>[-<backend>...].json)

Senders wait out a 503 with Retry-After (2 s at most) and send the same event again; the
report counts those answers.

Environment: RELAY_BIN_DIR (the binaries; default: the directory of this executable),
BENCH_DATABASE_ADMIN_URL (where --backend postgres creates its databases; default DATABASE_URL,
else postgres://postgres@127.0.0.1:5432/postgres), BENCH_REDIS_URL (its Redis; default: a
database from 1 to 15 of the local Redis that this run claims for itself, with the key
relay-bench:owner), and for --backend full the AWS_*, DATABASE_URL and REDIS_URL variables
(default: the local emulators and servers).";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("relay-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExitCode> {
    let mut scenarios = Vec::new();
    let mut backends = vec![Backend::Memory];
    let mut smoke = false;
    let mut out: Option<PathBuf> = None;
    let mut events: Option<u64> = None;
    let mut seconds: Option<f64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            "--backend" => backends = Backend::parse_list(&args.next().context("--backend needs a value")?)?,
            "--smoke" => smoke = true,
            "--out" => out = Some(PathBuf::from(args.next().context("--out needs a file")?)),
            "--events" => events = Some(args.next().context("--events needs a number")?.parse().context("--events")?),
            "--seconds" => {
                seconds = Some(args.next().context("--seconds needs a number")?.parse().context("--seconds")?)
            }
            "all" => scenarios.extend(Scenario::ALL),
            name if !name.starts_with('-') => scenarios.push(Scenario::parse(name)?),
            other => bail!("unknown option {other}\n\n{USAGE}"),
        }
    }
    if scenarios.is_empty() {
        scenarios.extend(Scenario::ALL);
    }
    let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
    let out = out.unwrap_or_else(|| PathBuf::from(format!("bench/results/{}.json", names.join("-"))));
    let plan = Plan {
        backends,
        bin_dir: relay::bin_dir()?,
        work_dir: std::env::temp_dir().join(format!("relay-bench-{}", std::process::id())),
        scenarios,
        sizes: if smoke { Sizes::smoke() } else { Sizes::standard() }.scaled(events, seconds),
    };
    eprintln!("relay-bench: binaries from {}, relay logs in {}", plan.bin_dir.display(), plan.work_dir.display());
    let report = run_scenarios(&plan, |result| match result.backend {
        Some(backend) => eprintln!("relay-bench: {} [{}] done", result.name, backend.name()),
        None => eprintln!("relay-bench: {} done", result.name),
    })
    .await?;
    println!("{}", report.table());
    report.write_json(&out)?;
    println!("JSON report: {}", out.display());
    let failures = report.failures();
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("relay-bench: {} check(s) failed:\n  {}", failures.len(), failures.join("\n  "));
        Ok(ExitCode::FAILURE)
    }
}
