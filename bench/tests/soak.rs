//! The soak: relay-local on the production layout (DynamoDB and SQS on moto/LocalStack, the
//! PostgreSQL log, Redis) takes a steady 10 events/s for 5 minutes while the receiver fails 20%
//! of requests. Every event must be delivered, nothing may reach the dead-letter queue, and the
//! relay's resident memory, sampled every 5 s, must stay flat once warmed up.
//!
//! `RELAY_SOAK_SECONDS` shortens it for a local run (at least 150); CI runs the full 300 s.

use std::time::{Duration, Instant};

use relay_bench::http::{Api, event_body};
use relay_bench::proc::rss_kib;
use relay_bench::receiver::{Behaviour, Receiver};
use relay_bench::relay::{self, RelayProcess};
use relay_bench::{Backend, RelayOptions, clock};

const RATE_PER_SECOND: u64 = 10;
const RETRIES: u32 = 3;
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples before this are the warm-up (pools filling, caches, allocator arenas).
const WARM_UP: Duration = Duration::from_secs(60);

fn soak_duration() -> Duration {
    let default = 300;
    let seconds = match std::env::var("RELAY_SOAK_SECONDS") {
        Ok(value) if std::env::var("CI").as_deref() != Ok("true") => value
            .parse::<u64>()
            .ok()
            .filter(|s| *s >= 150)
            .expect("RELAY_SOAK_SECONDS: a number of seconds, 150 or more"),
        _ => default,
    };
    Duration::from_secs(seconds)
}

fn mean(samples: &[u64]) -> f64 {
    samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_minutes_with_a_receiver_failing_a_fifth_deliver_everything_in_flat_memory() {
    if !relay::local_aws_available() {
        return;
    }
    let duration = soak_duration();
    let dir = std::env::temp_dir().join(format!("relay-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work directory");
    let env = [
        ("WEBHOOK_TIMEOUT", "2000".to_owned()),
        ("WEBHOOK_RETRY_DELAY", "500".to_owned()),
        ("WEBHOOK_MAX_RETRIES", RETRIES.to_string()),
    ];
    let options = RelayOptions {
        bin_dir: relay::bin_dir().expect("binary directory"),
        backend: Backend::Full,
        workers: 8,
        env: env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        log: dir.join("relay.log"),
        resources: None,
    };
    // Fails 20% of requests, never the last attempt the relay is allowed: every event must land.
    let behaviour = Behaviour { fail_ratio: 0.2, max_failures: RETRIES, seed: 20, delay: Duration::ZERO };
    let receiver = Receiver::start(behaviour).await.expect("receiver");
    let relay = RelayProcess::start(&options).await.expect("relay-local starts");
    let mut api = Api::new(relay.addr);
    let webhook = api.create_webhook("soak", &receiver.url(0), &["job.updated"]).await.expect("webhook");

    let started = Instant::now();
    let mut rss: Vec<(Duration, u64)> = Vec::new();
    let mut next_sample = started;
    let mut ticks = tokio::time::interval(Duration::from_millis(1000 / RATE_PER_SECOND));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut accepted = 0u64;
    let mut refused = Vec::new();
    let mut seq = 0u64;
    while started.elapsed() < duration {
        ticks.tick().await;
        match api.post_event(event_body("job.updated", seq, clock::now_ns(), 512)).await {
            Ok(_) => accepted += 1,
            Err(err) => refused.push(format!("{err:#}")),
        }
        seq += 1;
        if Instant::now() >= next_sample {
            rss.push((started.elapsed(), rss_kib(relay.pid)));
            next_sample += SAMPLE_EVERY;
        }
    }
    let sent_for = started.elapsed();
    assert!(refused.is_empty(), "{} events refused, e.g. {:?}", refused.len(), refused.first());
    let delivered = receiver.wait_for(accepted, Instant::now() + Duration::from_secs(120)).await;
    let totals = receiver.totals();
    assert!(delivered, "lost: {} of {accepted} delivered", totals.delivered);
    receiver.settle(Duration::from_secs(1), Duration::from_secs(10)).await;
    let queues = api.queues().await.expect("queue depths");
    let log = api.deliveries(&webhook).await.expect("delivery log");
    relay.stop().await;

    let rate = accepted as f64 / sent_for.as_secs_f64();
    println!(
        "{accepted} events in {:.0} s ({rate:.1}/s); {} requests, {} answered 500 ({:.1}%)",
        sent_for.as_secs_f64(),
        totals.requests,
        totals.failed,
        totals.failed as f64 / totals.requests.max(1) as f64 * 100.0
    );
    assert!(rate >= RATE_PER_SECOND as f64 * 0.9, "the relay did not keep up with {RATE_PER_SECOND}/s: {rate:.1}/s");
    assert!(totals.failed * 100 >= totals.requests * 15, "the receiver was meant to fail about a fifth: {totals:?}");

    let dead = &queues["deadLetterQueue"];
    assert_eq!(
        (dead["visible"].as_u64(), dead["inFlight"].as_u64(), dead["delayed"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "the dead-letter queue must stay empty: {queues}"
    );
    assert_eq!(log.len() as u64, accepted, "one logged delivery per event");
    let unfinished: Vec<_> = log.iter().filter(|d| d["status"] != "succeeded").collect();
    assert!(unfinished.is_empty(), "{} deliveries not succeeded, e.g. {:?}", unfinished.len(), unfinished.first());

    // Flat memory: after the warm-up, the last minute's mean is within 10% (plus 4 MiB of
    // allocator slack) of the first warmed-up minute's, and no sample exceeds it by more.
    let warmed: Vec<u64> = rss.iter().filter(|(at, _)| *at >= WARM_UP).map(|(_, kib)| *kib).collect();
    let per_minute = (60 / SAMPLE_EVERY.as_secs()) as usize;
    assert!(warmed.len() >= 2 * per_minute, "too few samples: {rss:?}");
    let first = mean(&warmed[..per_minute]);
    let last = mean(&warmed[warmed.len() - per_minute..]);
    let ceiling = first * 1.10 + 4096.0;
    println!(
        "relay RSS: first warmed-up minute {:.1} MiB, last minute {:.1} MiB, peak {:.1} MiB; samples (s, MiB): {:?}",
        first / 1024.0,
        last / 1024.0,
        warmed.iter().max().copied().unwrap_or(0) as f64 / 1024.0,
        rss.iter().map(|(at, kib)| (at.as_secs(), *kib / 1024)).collect::<Vec<_>>()
    );
    assert!(last <= ceiling, "RSS grew: {first:.0} KiB -> {last:.0} KiB");
    assert!(
        warmed.iter().all(|kib| (*kib as f64) <= ceiling * 1.10),
        "an RSS sample far above the warmed-up level: {warmed:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
