//! CI's short run of the harness: every scenario at tiny sizes, on the debug binaries the test
//! build produced. It checks what the harness checks (nothing lost, no duplicate, retries as
//! configured, every Lambda binary answers, memory under its target, healthy webhooks and
//! another tenant served within the wait beside webhooks that never answer or answer late) and
//! that the report is written; timings here mean nothing and are never asserted.

use relay_bench::scenarios::{Scenario, Sizes};
use relay_bench::{Backend, Plan, relay, run_scenarios, scratch};

const EVERY_RELAY_SCENARIO: [Scenario; 8] = [
    Scenario::Ingest,
    Scenario::EndToEnd,
    Scenario::FanOut,
    Scenario::Failure,
    Scenario::Drain,
    Scenario::Memory,
    Scenario::Isolation,
    Scenario::Fairness,
];

async fn smoke(backends: Vec<Backend>, scenarios: Vec<Scenario>, sizes: Sizes) -> serde_json::Value {
    let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
    let dir = std::env::temp_dir().join(format!("relay-bench-smoke-{}-{}", std::process::id(), names.join("-")));
    let plan = Plan {
        backends: backends.clone(),
        bin_dir: relay::bin_dir().expect("binary directory"),
        work_dir: dir.clone(),
        scenarios,
        sizes,
    };
    let report = run_scenarios(&plan, |_| {}).await.expect("the harness runs");
    println!("{}", report.table());
    assert_eq!(report.failures(), Vec::<String>::new());
    let mut names = vec!["relay CPU per delivered event"];
    for scenario in &plan.scenarios {
        names.extend(match scenario {
            Scenario::Ingest => vec!["ingest, concurrency"],
            Scenario::EndToEnd => vec!["as fast as possible", "end to end, "],
            Scenario::EndToEndMax | Scenario::EndToEndSteady => vec!["end to end, "],
            Scenario::FanOut => vec!["fan-out"],
            Scenario::Failure => vec!["failure"],
            Scenario::Drain => vec!["drain"],
            Scenario::Memory => vec!["memory"],
            // One name per result: the three runs and their summary.
            Scenario::Isolation => {
                vec![", alone", "never answering", "answering 200 after", "isolation: healthy p99 beside a bad webhook"]
            }
            Scenario::Fairness => vec!["fairness"],
            Scenario::Startup => vec![],
        });
    }
    for backend in &backends {
        for name in &names {
            assert!(
                report.results.iter().any(|r| r.backend == Some(*backend) && r.name.contains(name)),
                "no {name:?} on {backend:?} in the report"
            );
        }
    }
    let out = dir.join("report.json");
    report.write_json(&out).expect("JSON written");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).expect("read back")).expect("JSON");
    assert!(json["results"].as_array().is_some_and(|r| r.len() >= names.len() * backends.len()), "{json}");
    assert!(json["machine"]["cores"].as_u64().is_some_and(|n| n > 0));
    let _ = std::fs::remove_dir_all(dir);
    json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_on_the_embedded_backends() {
    let mut scenarios = EVERY_RELAY_SCENARIO.to_vec();
    if relay::local_aws_available() {
        scenarios.push(Scenario::Startup);
    }
    smoke(vec![Backend::Memory], scenarios, Sizes::smoke()).await;
}

/// The embedded queue and stores with the log in PostgreSQL and the locks in Redis, run after
/// the embedded backends in one plan, as `--backend memory,postgres` does: the report keeps
/// both, and PostgreSQL's and Redis's CPU per delivery are measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_on_postgres_and_redis_next_to_the_embedded_backends() {
    if !scratch::postgres_and_redis_available() {
        return;
    }
    let sizes = Sizes {
        e2e_events: 100,
        fanout_events: 10,
        failure_events: 20,
        drain_events: 500,
        memory_events: 1_000,
        ..Sizes::smoke()
    };
    let json = smoke(vec![Backend::Memory, Backend::Postgres], EVERY_RELAY_SCENARIO.to_vec(), sizes).await;
    assert_eq!(json["backends"], serde_json::json!(["memory", "postgres"]));
    let results = json["results"].as_array().expect("results");
    for scenario in ["as fast as possible", "fan-out", "drain"] {
        let on_postgres = results
            .iter()
            .find(|r| r["backend"] == "postgres" && r["name"].as_str().is_some_and(|n| n.contains(scenario)))
            .expect("a result on postgres");
        let metrics = on_postgres["metrics"].as_array().expect("metrics");
        for metric in ["PostgreSQL CPU per delivery", "Redis CPU per delivery"] {
            assert!(metrics.iter().any(|m| m["name"] == metric), "no {metric:?} in {on_postgres}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_on_postgres_redis_and_local_aws() {
    if !relay::local_aws_available() {
        return;
    }
    let sizes = Sizes { e2e_events: 40, steady_rate: 40.0, fanout_events: 10, failure_events: 20, ..Sizes::smoke() };
    smoke(vec![Backend::Full], vec![Scenario::Ingest, Scenario::EndToEnd, Scenario::FanOut, Scenario::Failure], sizes)
        .await;
}
