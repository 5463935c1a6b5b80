//! relay-bench: see `docs/performance.md`. Usually run through `bash bench/run`, which builds the
//! release binaries it drives first.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use relay_bench::scenarios::{Scenario, Sizes};
use relay_bench::{Backend, Plan, relay, run_scenarios};

const USAGE: &str = "\
usage: relay-bench [SCENARIO...] [--backend memory|full] [--smoke] [--out FILE]

scenarios (default: all of them, in this order):
  ingest    POST /api/events, 1 KiB payload, concurrency 32 and 64, 10 s each
  e2e       10,000 events to one webhook, as fast as possible, then at a steady 300/s
            (e2e-max, e2e-steady: one of the two)
  fanout    1,000 events to 10 webhooks
  failure   1,000 events to a receiver failing 50% of requests: exactly-once as the receiver
            dedupes, retries as configured
  startup   each Lambda binary's cold start under a local Lambda Runtime API, binary sizes, RSS
            (needs LocalStack + moto and PostgreSQL)

  --backend memory   relay-local on its embedded backends (default)
  --backend full     DynamoDB (moto) + SQS (LocalStack) + PostgreSQL + Redis
  --smoke            tiny sizes: checks the harness and the relay work, in seconds; no timing
                     means anything
  --events N         N events in e2e, N/10 in fanout and failure (default 10,000)
  --seconds S        S seconds per ingest run (default 10)
  --out FILE         the JSON report (default bench/results/<backend>.json)

The binaries are taken from RELAY_BIN_DIR, else the directory of this executable.";

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
    let mut backend = Backend::Memory;
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
            "--backend" => backend = Backend::parse(&args.next().context("--backend needs a value")?)?,
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
    let backend_name = match backend {
        Backend::Memory => "memory",
        Backend::Full => "full",
    };
    let out = out.unwrap_or_else(|| PathBuf::from(format!("bench/results/{backend_name}.json")));
    let plan = Plan {
        backend,
        bin_dir: relay::bin_dir()?,
        work_dir: std::env::temp_dir().join(format!("relay-bench-{}", std::process::id())),
        scenarios,
        sizes: if smoke { Sizes::smoke() } else { Sizes::standard() }.scaled(events, seconds),
    };
    eprintln!("relay-bench: binaries from {}, relay logs in {}", plan.bin_dir.display(), plan.work_dir.display());
    let report = run_scenarios(&plan, |result| eprintln!("relay-bench: {} done", result.name)).await?;
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
