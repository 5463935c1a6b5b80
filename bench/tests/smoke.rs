//! CI's short run of the harness: every scenario at tiny sizes, on the debug binaries the test
//! build produced. It checks what the harness checks (nothing lost, no duplicate, retries as
//! configured, every Lambda binary answers) and that the report is written; timings here mean
//! nothing and are never asserted.

use relay_bench::scenarios::{Scenario, Sizes};
use relay_bench::{Backend, Plan, relay, run_scenarios};

async fn smoke(backend: Backend, scenarios: Vec<Scenario>, sizes: Sizes) {
    let dir = std::env::temp_dir().join(format!("relay-bench-smoke-{}-{backend:?}", std::process::id()));
    let plan =
        Plan { backend, bin_dir: relay::bin_dir().expect("binary directory"), work_dir: dir.clone(), scenarios, sizes };
    let report = run_scenarios(&plan, |_| {}).await.expect("the harness runs");
    println!("{}", report.table());
    assert_eq!(report.failures(), Vec::<String>::new());
    for name in [
        "ingest, concurrency",
        "end to end",
        "as fast as possible",
        "fan-out",
        "failure",
        "relay CPU per delivered event",
    ] {
        assert!(report.results.iter().any(|r| r.name.contains(name)), "no {name:?} in the report");
    }
    let out = dir.join("report.json");
    report.write_json(&out).expect("JSON written");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).expect("read back")).expect("JSON");
    assert!(json["results"].as_array().is_some_and(|r| r.len() >= 6), "{json}");
    assert!(json["machine"]["cores"].as_u64().is_some_and(|n| n > 0));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_on_the_embedded_backends() {
    let mut scenarios = vec![Scenario::Ingest, Scenario::EndToEnd, Scenario::FanOut, Scenario::Failure];
    if relay::local_aws_available() {
        scenarios.push(Scenario::Startup);
    }
    smoke(Backend::Memory, scenarios, Sizes::smoke()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_on_postgres_redis_and_local_aws() {
    if !relay::local_aws_available() {
        return;
    }
    let sizes = Sizes { e2e_events: 40, steady_rate: 40.0, fanout_events: 10, failure_events: 20, ..Sizes::smoke() };
    smoke(Backend::Full, vec![Scenario::Ingest, Scenario::EndToEnd, Scenario::FanOut, Scenario::Failure], sizes).await;
}
