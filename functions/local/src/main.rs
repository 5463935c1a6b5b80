//! relay-local's entry point: the whole webhook relay in one process. With no settings it runs on the
//! embedded in-memory backends, prints dev credentials, and runs a demo that shows a signed
//! webhook delivered end to end.

mod args;

use std::time::Duration;

use anyhow::Context as _;
use relay_core::auth::{DEV_API_KEY, DEV_SERVICE_TOKEN};
use relay_local::{self as local, Backend, Config, demo};

use args::Args;

#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("relay-local: {err:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n\n{}", args::USAGE);
            std::process::exit(2);
        }
    };
    if args.help {
        println!("{}", args::USAGE);
        return Ok(());
    }
    init_tracing();

    if let Some(prefix) = &args.bootstrap {
        return bootstrap(prefix, args.visibility_timeout).await;
    }
    let config = Config::from_env().context("configuration")?;
    // Room for HTTP_MAX_CONNECTIONS connections: the soft open-file limit is often 1024.
    local::serve::raise_fd_limit();
    let backends = local::backends(&config).await.context("configuration")?;
    let listener = local::serve::bind((config.host, config.port).into())
        .with_context(|| format!("binding {}:{}", config.host, config.port))?;
    let running = local::start(&config, backends, listener).await.context("starting the relay")?;
    print_banner(&config, &running.base_url());

    if args.demo.unwrap_or(config.dev_credentials) {
        anyhow::ensure!(
            config.dev_credentials,
            "the demo uses the dev credentials; unset SERVICE_TOKENS and API_KEYS to run it"
        );
        let report = demo::run(
            &running.base_url(),
            DEV_SERVICE_TOKEN,
            DEV_API_KEY,
            &config.event_types,
            Duration::from_secs(15),
        )
        .await
        .context("demo")?;
        println!(
            "demo: event {} delivered to {} in {} ms; webhook-signature {}, X-Relay-Signature {}",
            report.event_id,
            report.receiver_url,
            report.latency.as_millis(),
            if report.standard_signature_ok { "verified" } else { "INVALID" },
            if report.relay_signature_ok { "verified" } else { "INVALID" },
        );
        anyhow::ensure!(report.standard_signature_ok && report.relay_signature_ok, "the demo delivery did not verify");
        println!("demo: webhook {} stays registered; events you post are delivered to it too\n", report.webhook_id);
    }

    if !args.exit_after_demo {
        let signal = stop_signal().await.context("waiting for SIGTERM or Ctrl-C")?;
        println!("{signal}: shutting down (up to {} s for work in progress)", config.server.shutdown_timeout.as_secs());
    }
    running.shutdown().await;
    Ok(())
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM (what `kill`, systemd and container runtimes send),
/// and says which came.
async fn stop_signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.map(|()| "Ctrl-C"),
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map(|()| "Ctrl-C")
    }
}

fn init_tracing() {
    // Logs go to stderr; stdout carries the banner and the demo's result.
    relay_core::telemetry::init(std::io::stderr);
}

async fn bootstrap(prefix: &str, visibility_timeout: Option<u64>) -> anyhow::Result<()> {
    let sdk = relay_aws::sdk_config().await;
    let mut queues = relay_aws::QueueSpec::deployed(prefix);
    if let Some(secs) = visibility_timeout {
        queues.visibility_timeout = Duration::from_secs(secs);
    }
    let created = relay_aws::bootstrap(&sdk, prefix, &queues).await.context("creating the AWS resources")?;
    let show = |value: Option<String>| value.unwrap_or_default();
    println!("export EVENTS_TABLE={}", show(created.events_table));
    println!("export IDEMPOTENCY_TABLE={}", show(created.idempotency_table));
    println!("export WEBHOOKS_TABLE={}", show(created.webhooks_table));
    println!("export TENANTS_TABLE={}", show(created.tenants_table));
    println!("export QUEUE_URL={}", show(created.queue_url));
    println!("export DELIVERY_QUEUE_URL={}", show(created.delivery_queue_url));
    println!("export ORDERED_QUEUE_URL={}", show(created.ordered_queue_url));
    println!("export DLQ_URL={}", show(created.dead_letter_queue_url));
    println!("export ORDERED_DLQ_URL={}", show(created.ordered_dead_letter_queue_url));
    // Webhook secrets are stored sealed: keep the key already set, else make one (keep it:
    // without it the webhooks stored with it cannot sign).
    let keys = std::env::var("SECRETS_ENCRYPTION_KEYS").ok().filter(|k| !k.trim().is_empty());
    println!("export SECRETS_ENCRYPTION_KEYS={}", keys.unwrap_or_else(relay_core::sealing::SecretKeys::new_setting));
    Ok(())
}

fn print_banner(config: &Config, base_url: &str) {
    let backends = match config.backend {
        Backend::Memory => "in-memory backends",
        Backend::Aws => "DynamoDB and SQS backends",
    };
    println!("\nwebhook-relay (relay-local) serving on {base_url}, {backends}");
    if config.dev_credentials {
        println!("dev credentials (set SERVICE_TOKENS and API_KEYS to replace them):");
        println!("  X-Service-Token: {DEV_SERVICE_TOKEN}");
        println!("  X-Api-Key:       {DEV_API_KEY}   (tenant \"dev\")");
    }
    println!("dashboard: {base_url}/dashboard (sign in with an API key)");
    println!();
}
