//! Start-up of the Lambda binaries under a minimal local Lambda Runtime API: the harness plays
//! the Lambda service (it hands out one invocation on `/runtime/invocation/next` and takes the
//! answer on `/response`), starts each binary as Lambda would, and measures from spawning the
//! process to its first `next` (initialisation) and to its first answer (first request served),
//! against LocalStack/moto and PostgreSQL, as a cold start in AWS would run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::Notify;

use crate::http::{API_KEY, SERVICE_TOKEN, TENANT};
use crate::proc::rss_kib;
use crate::relay::{binary, bootstrap, full_backend_env};
use crate::report::ScenarioResult;
use crate::stats::Summary;

/// The four Lambda binaries, in the order the scenario starts them.
pub const FUNCTIONS: [&str; 4] = ["relay-ingest", "relay-api", "relay-delivery", "relay-maintenance"];

const REQUEST_ID: &str = "8476a536-e9f4-11e8-9739-2dfe598c3fcd";

#[derive(Debug, Default)]
struct Seen {
    next_at: Option<Instant>,
    answered_at: Option<Instant>,
    answer: Option<(bool, Bytes)>,
}

#[derive(Debug)]
struct RuntimeApi {
    event: Bytes,
    seen: Mutex<Seen>,
    answered: Notify,
}

impl RuntimeApi {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A Runtime API endpoint that serves one invocation.
async fn serve_one(event: Value) -> Result<(SocketAddr, Arc<RuntimeApi>, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let api =
        Arc::new(RuntimeApi { event: Bytes::from(event.to_string()), seen: Mutex::default(), answered: Notify::new() });
    let shared = api.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let api = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| runtime_api(api.clone(), request));
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok((addr, api, task))
}

async fn runtime_api(api: Arc<RuntimeApi>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let now = Instant::now();
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let body = request.into_body().collect().await?.to_bytes();
    let mut response = Response::new(Full::new(Bytes::new()));
    if method == Method::GET && path == "/2018-06-01/runtime/invocation/next" {
        let first = api.seen().next_at.is_none();
        if !first {
            // One invocation per process: later polls wait until the harness kills it.
            std::future::pending::<()>().await;
        }
        api.seen().next_at = Some(now);
        let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
            + Duration::from_secs(30);
        let headers = response.headers_mut();
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_static(REQUEST_ID));
        headers.insert("lambda-runtime-deadline-ms", HeaderValue::from(deadline_ms));
        headers.insert(
            "lambda-runtime-invoked-function-arn",
            HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:relay-bench"),
        );
        headers.insert("lambda-runtime-trace-id", HeaderValue::from_static("Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700"));
        *response.body_mut() = Full::new(api.event.clone());
    } else if method == Method::POST && path.starts_with("/2018-06-01/runtime/") {
        let ok = path.ends_with("/response");
        {
            let mut seen = api.seen();
            seen.answered_at = Some(now);
            seen.answer = Some((ok, body));
        }
        api.answered.notify_waiters();
        *response.status_mut() = StatusCode::ACCEPTED;
    } else {
        *response.status_mut() = StatusCode::NOT_FOUND;
    }
    Ok(response)
}

/// One cold start.
#[derive(Debug)]
struct Start {
    init: Duration,
    first_answer: Duration,
    rss_kib: u64,
    answer: Value,
    ok: bool,
}

async fn cold_start(program: &Path, env: &[(String, String)], event: Value, log: &Path) -> Result<Start> {
    let (addr, api, server) = serve_one(event).await?;
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let name = program.file_name().and_then(|n| n.to_str()).unwrap_or("relay");
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "relay-bench")
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let notified = api.answered.notified();
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id().unwrap_or(0);
    let outcome = tokio::select! {
        () = notified => None,
        status = child.wait() => Some(status),
        () = tokio::time::sleep(Duration::from_secs(60)) => {
            let _ = child.kill().await;
            server.abort();
            bail!("{name} answered nothing within 60 s; see {}", log.display());
        }
    };
    let rss = rss_kib(pid);
    let _ = child.kill().await;
    server.abort();
    if let Some(status) = outcome {
        bail!("{name} exited ({}) without answering; see {}", status?, log.display());
    }
    let seen = api.seen();
    let (ok, body) = seen.answer.clone().context("no answer")?;
    let at = |instant: Option<Instant>| instant.map_or(Duration::ZERO, |i| i.saturating_duration_since(started));
    Ok(Start {
        init: at(seen.next_at),
        first_answer: at(seen.answered_at),
        rss_kib: rss,
        answer: serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        ok,
    })
}

/// An API Gateway HTTP API (payload 2.0) request, as Lambda hands it to relay-ingest/relay-api.
fn http_api_event(method: &str, path: &str, query: &str, headers: Value, body: Option<String>) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "relay-bench"},
            "requestId": "bench-request",
            "routeKey": "$default",
            "stage": "$default",
            "time": "28/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_795_867_200_000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// The invocation each function gets: an event post, a webhook listing, the dispatch of the
/// event just posted, and a maintenance run.
fn invocation(function: &str, event_id: Option<&str>) -> Value {
    match function {
        "relay-ingest" => http_api_event(
            "POST",
            "/api/events",
            "",
            json!({"content-type": "application/json", "x-service-token": SERVICE_TOKEN}),
            Some(
                // Scoped to the bench's tenant: the Lambda functions refuse broadcasts.
                json!({"eventType": "job.created", "eventName": "Cold start", "payload": {"jobId": "1"}, "source": "relay-bench", "tenant": TENANT})
                    .to_string(),
            ),
        ),
        "relay-api" => http_api_event("GET", "/api/webhooks", "limit=10", json!({"x-api-key": API_KEY}), None),
        "relay-delivery" => json!({"Records": [{
            "messageId": "bench-message-1",
            "receiptHandle": "bench-receipt-1",
            "body": json!({"type": "dispatch", "eventId": event_id.unwrap_or("01a222eb-03d0-7726-9aae-647273743069")}).to_string(),
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:bench",
            "awsRegion": "us-east-1"
        }]}),
        _ => json!({}),
    }
}

/// Whether an answer is a success for its function.
fn answered_well(function: &str, answer: &Value) -> bool {
    match function {
        "relay-ingest" | "relay-api" => answer["statusCode"].as_u64().is_some_and(|s| (200..300).contains(&s)),
        "relay-delivery" => answer["batchItemFailures"].as_array().is_some_and(Vec::is_empty),
        _ => answer.is_object(),
    }
}

/// The start-up scenario: binary sizes, then `runs` cold starts of each function.
pub async fn startup(bin_dir: &Path, work_dir: &Path, runs: u32) -> Result<ScenarioResult> {
    let mut env = full_backend_env();
    env.extend(bootstrap(&binary(bin_dir, "relay-local")?, &env, &[]).await?);
    env.push(("SERVICE_TOKENS".into(), SERVICE_TOKEN.into()));
    env.push(("API_KEYS".into(), format!("{TENANT}:{API_KEY}")));

    let mut result = ScenarioResult::new(
        format!("Lambda start-up ({runs} cold starts each, LocalStack + moto + PostgreSQL)"),
        json!({"runs": runs, "binDir": bin_dir.display().to_string()}),
    );
    let mut event_id: Option<String> = None;
    for function in FUNCTIONS {
        let program = binary(bin_dir, function)?;
        let size = std::fs::metadata(&program)?.len();
        result.metric(format!("{function} binary size"), size as f64 / 1e6, "MB");
        let log = work_dir.join(format!("{function}.log"));
        let mut inits = Vec::new();
        let mut answers = Vec::new();
        let mut rss = 0;
        let mut failures = Vec::new();
        for _ in 0..runs {
            let start = cold_start(&program, &env, invocation(function, event_id.as_deref()), &log).await?;
            inits.push(u64::try_from(start.init.as_nanos()).unwrap_or(u64::MAX));
            answers.push(u64::try_from(start.first_answer.as_nanos()).unwrap_or(u64::MAX));
            rss = rss.max(start.rss_kib);
            if !(start.ok && answered_well(function, &start.answer)) {
                failures.push(start.answer.to_string());
            } else if function == "relay-ingest" {
                let body: Value =
                    start.answer["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
                event_id = body["data"]["id"].as_str().map(str::to_owned);
            }
        }
        let init = Summary::of(inits);
        let first = Summary::of(answers);
        result.metric(format!("{function} init (spawn to first next), median"), init.p50_ms, "ms");
        result.metric(format!("{function} first request served, median"), first.p50_ms, "ms");
        result.metric(format!("{function} first request served, max"), first.max_ms, "ms");
        result.metric(format!("{function} RSS after first request"), rss as f64 / 1024.0, "MiB");
        result.check(
            format!("{function} answered every invocation"),
            failures.is_empty(),
            failures.first().cloned().unwrap_or_else(|| "ok".into()),
        );
    }
    Ok(result)
}
