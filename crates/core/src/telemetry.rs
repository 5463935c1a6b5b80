//! Logging for every binary: the level from `RUST_LOG` (else `AWS_LAMBDA_LOG_LEVEL`, else
//! `info`), JSON when `LOG_FORMAT=json` or Lambda's `AWS_LAMBDA_LOG_FORMAT=JSON`, and a cap no
//! setting lifts on the libraries whose verbose levels print what they send and receive.

use std::io::Write;

use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// At `trace` the AWS SDK logs whole request and response bodies: DynamoDB items with webhook
/// secrets and event payloads. These targets never log above `debug`.
const CAPPED: &[&str] = &["aws_smithy", "aws_sdk_", "aws_config", "aws_runtime", "aws_sigv4", "aws_types"];

/// The filter `spec` (a `RUST_LOG` value) asks for, with [`CAPPED`] applied.
pub fn filter(
    spec: &str,
) -> impl tracing_subscriber::layer::Filter<tracing_subscriber::Registry> + Send + Sync + 'static {
    let wanted = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into()).parse_lossy(spec);
    let caps = CAPPED.iter().fold(Targets::new().with_default(LevelFilter::TRACE), |caps, target| {
        caps.with_target(*target, LevelFilter::DEBUG)
    });
    wanted.and(caps)
}

/// The subscriber [`init`] installs.
pub fn subscriber<W>(spec: &str, json: bool, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = fmt::layer().with_target(false).with_writer(writer);
    let layer = if json { layer.json().boxed() } else { layer.compact().boxed() };
    tracing_subscriber::registry().with(layer.with_filter(filter(spec)))
}

/// Installs the global subscriber, writing to `writer` (relay-local: stderr; Lambda: stdout).
pub fn init<W>(writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let spec = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|level| level.to_lowercase()))
        .unwrap_or_else(|_| "info".to_owned());
    let json = std::env::var("LOG_FORMAT").as_deref() == Ok("json")
        || std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if subscriber(&spec, json, writer).try_init().is_err() {
        let _ = writeln!(std::io::stderr(), "a tracing subscriber was already installed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(spec: &str) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber(spec, false, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "sdk-trace-body");
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "sdk-debug");
            tracing::trace!(target: "aws_sdk_dynamodb::operation", "dynamodb-trace-body");
            tracing::trace!(target: "relay_core::app", "relay-trace");
            tracing::info!(target: "relay_core::app", "relay-info");
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn the_sdk_never_logs_at_trace_whatever_rust_log_says() {
        for spec in
            ["trace", "aws_smithy_runtime=trace,aws_sdk_dynamodb=trace", "info,aws_smithy_runtime::client=trace"]
        {
            let out = logged(spec);
            assert!(!out.contains("sdk-trace-body") && !out.contains("dynamodb-trace-body"), "{spec}: {out}");
        }
        let out = logged("trace");
        assert!(out.contains("sdk-debug") && out.contains("relay-trace"), "{out}");
    }

    #[test]
    fn the_cap_never_raises_a_level() {
        let out = logged("warn");
        assert!(out.is_empty(), "{out}");
        let out = logged("info");
        assert!(out.contains("relay-info") && !out.contains("sdk-debug") && !out.contains("relay-trace"), "{out}");
    }
}
