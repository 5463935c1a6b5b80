//! Starting relay-local as a child process, on the embedded backends or on PostgreSQL, Redis
//! and LocalStack/moto, with the settings a benchmark needs.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::http::{API_KEY, Conn, SERVICE_TOKEN, TENANT};
use crate::scratch::{ScratchDatabase, postgres_backend_redis_url};

/// Which backends relay-local runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In-memory stores, queue, locks (relay-local's default).
    Memory,
    /// The embedded queue and event and webhook stores, the delivery log in PostgreSQL (a
    /// fresh database for every start, [`ScratchDatabase`]) and locks and the webhook cache in
    /// Redis (a database of its own, [`postgres_backend_redis_url`]): relay-local as a single node
    /// with a durable log.
    Postgres,
    /// DynamoDB (moto) and SQS (LocalStack) for events, webhooks and the queue, PostgreSQL for
    /// the delivery log, Redis for locks and the webhook cache: the production layout.
    Full,
}

impl Backend {
    /// One backend by name: `memory`, `postgres` (or `pg`), `full`.
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim() {
            "memory" => Ok(Self::Memory),
            "postgres" | "pg" => Ok(Self::Postgres),
            "full" => Ok(Self::Full),
            other => bail!("unknown backend {other:?}: memory, postgres (pg) or full"),
        }
    }

    /// A comma-separated list of backends, in order, each at most once: `memory,postgres`.
    pub fn parse_list(names: &str) -> Result<Vec<Self>> {
        let mut backends = Vec::new();
        for name in names.split(',') {
            let backend = Self::parse(name)?;
            if backends.contains(&backend) {
                bail!("backend {} given twice in {names:?}", backend.name());
            }
            backends.push(backend);
        }
        Ok(backends)
    }

    /// The name `parse` takes and the report shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Postgres => "postgres",
            Self::Full => "full",
        }
    }

    /// Whether the delivery log is in PostgreSQL and locks and the cache in Redis, so that
    /// their CPU time belongs to the relay's work.
    pub fn uses_postgres_and_redis(self) -> bool {
        matches!(self, Self::Postgres | Self::Full)
    }
}

/// The defaults for the full backends when the environment does not say otherwise.
const FULL_DEFAULTS: &[(&str, &str)] = &[
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:4566"),
    ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:5000"),
    ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:5000"),
    ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    ("REDIS_URL", "redis://127.0.0.1:6379"),
    // Webhook secrets are sealed in DynamoDB: one fixed key, so a restarted relay (the crash
    // test) opens what the first one sealed.
    ("SECRETS_ENCRYPTION_KEYS", "bench:relay-bench-fixed-key-material-0000000000"),
];

/// The environment for the full backends: the caller's settings, else [`FULL_DEFAULTS`].
pub fn full_backend_env() -> Vec<(String, String)> {
    FULL_DEFAULTS
        .iter()
        .map(|(name, default)| ((*name).to_owned(), std::env::var(name).unwrap_or_else(|_| (*default).to_owned())))
        .collect()
}

/// Where the relay binaries are: `RELAY_BIN_DIR`, else next to this executable (or its parent,
/// for a test executable in `deps/`).
pub fn bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("RELAY_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the harness")?;
    let mut dir = exe.parent().context("harness has no directory")?.to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// A binary in [`bin_dir`], or an error saying how to build it.
pub fn binary(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!("{} not found: build it first (`cargo build --release -p {name}`, or bash bench/run)", path.display());
    }
    Ok(path)
}

/// How to start relay-local for one scenario.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    pub bin_dir: PathBuf,
    pub backend: Backend,
    /// `WORKER_CONCURRENCY`.
    pub workers: u32,
    /// Extra settings (retry delay, retries).
    pub env: Vec<(String, String)>,
    /// Where relay-local's stdout and stderr go.
    pub log: PathBuf,
    /// Full backends: the tables and queues to run on (from [`RelayOptions::with_resources`]);
    /// `None` creates fresh ones at every start.
    pub resources: Option<Vec<(String, String)>>,
}

impl RelayOptions {
    /// Creates the full backends' tables and queues now, so that every start of these options,
    /// a restart after a crash included, runs on the same data. `visibility_timeout` (seconds)
    /// replaces the queue's deployed 180 s.
    pub async fn with_resources(mut self, visibility_timeout: Option<u64>) -> Result<Self> {
        let binary = binary(&self.bin_dir, "relay-local")?;
        let mut args = Vec::new();
        if let Some(secs) = visibility_timeout {
            args = vec!["--visibility-timeout".to_owned(), secs.to_string()];
        }
        self.resources = Some(bootstrap(&binary, &full_backend_env(), &args).await?);
        Ok(self)
    }
}

/// relay-local running as a child process; killed when dropped (and its scratch database, on
/// `--backend postgres`, dropped after it).
#[derive(Debug)]
pub struct RelayProcess {
    // Declared before `database`, so that it is dropped (killed) first.
    child: Child,
    database: Option<ScratchDatabase>,
    pub pid: u32,
    pub addr: SocketAddr,
    /// From spawning the process to its first `200` on `/health`.
    pub ready_after: Duration,
}

impl RelayProcess {
    pub async fn start(options: &RelayOptions) -> Result<Self> {
        let binary = binary(&options.bin_dir, "relay-local")?;
        let port = free_port()?;
        let mut command = Command::new(&binary);
        command
            .arg("--no-demo")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("SERVICE_TOKENS", SERVICE_TOKEN)
            .env("API_KEYS", format!("{TENANT}:{API_KEY}"))
            .env("RATE_LIMIT_PER_MINUTE", "0")
            .env("WORKER_CONCURRENCY", options.workers.to_string())
            .env("RUST_LOG", "warn");
        let mut database = None;
        match options.backend {
            Backend::Memory => {}
            Backend::Postgres => {
                // No AWS variable at all (the environment was cleared): the embedded queue and
                // stores, with the log and the locks outside.
                let scratch = ScratchDatabase::create().await?;
                command
                    .env("RELAY_BACKEND", "memory")
                    .env("DATABASE_URL", &scratch.url)
                    .env("REDIS_URL", postgres_backend_redis_url());
                database = Some(scratch);
            }
            Backend::Full => {
                let env = full_backend_env();
                command.envs(env.iter().map(|(k, v)| (k, v)));
                match &options.resources {
                    Some(resources) => command.envs(resources.iter().map(|(k, v)| (k, v))),
                    None => command.envs(bootstrap(&binary, &env, &[]).await?),
                };
            }
        }
        command.envs(options.env.iter().map(|(k, v)| (k, v)));
        let log = std::fs::File::create(&options.log).with_context(|| format!("creating {}", options.log.display()))?;
        command.stdout(log.try_clone()?).stderr(log).stdin(Stdio::null()).kill_on_drop(true);

        let started = Instant::now();
        let mut child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("relay-local exited at once")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut conn = Conn::new(addr);
        loop {
            if let Ok(response) = conn.send(Method::GET, "/health", &[], Bytes::new()).await
                && response.status == StatusCode::OK
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!("relay-local exited with {status} before it was ready; see {}", options.log.display());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("relay-local was not healthy within 60 s; see {}", options.log.display());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Self { child, database, pid, addr, ready_after: started.elapsed() })
    }

    /// Kills the process with SIGKILL: nothing is flushed or finished, as in a crash. Its
    /// scratch database, if it has one, is dropped once it has exited.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        if let Some(database) = self.database.take() {
            database.remove().await;
        }
    }
}

/// Creates fresh DynamoDB tables and SQS queues with `relay-local bootstrap [args]` and returns
/// the variables it prints.
pub async fn bootstrap(relay_local: &Path, env: &[(String, String)], args: &[String]) -> Result<Vec<(String, String)>> {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let prefix = format!(
        "bench-{}-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
    );
    let output = Command::new(relay_local)
        .args(["bootstrap", "--prefix", &prefix])
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .context("running relay-local bootstrap")?;
    if !output.status.success() {
        bail!(
            "relay-local bootstrap failed (is local AWS running? bash localstack/start-local-aws.sh start): {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Whether LocalStack (SQS) and moto (DynamoDB) answer on their ports. Under `CI=true` they
/// must: a test that needs them fails instead of skipping.
pub fn local_aws_available() -> bool {
    let up = ["127.0.0.1:4566", "127.0.0.1:5000"].iter().all(|addr| {
        addr.parse().is_ok_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok())
    });
    assert!(
        up || std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but LocalStack/moto are not running (bash localstack/start-local-aws.sh start)"
    );
    if !up {
        eprintln!("SKIPPED the parts that need LocalStack/moto: they are not running");
    }
    up
}

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_name_and_in_lists() {
        assert_eq!(Backend::parse("pg").unwrap(), Backend::Postgres);
        assert_eq!(Backend::parse_list("memory,postgres").unwrap(), vec![Backend::Memory, Backend::Postgres]);
        assert_eq!(Backend::parse_list("full").unwrap(), vec![Backend::Full]);
        assert!(Backend::parse_list("memory,pg,postgres").is_err());
        assert!(Backend::parse_list("memory,").is_err());
        assert!(Backend::parse("sqlite").is_err());
        assert!(Backend::Full.uses_postgres_and_redis() && !Backend::Memory.uses_postgres_and_redis());
    }
}
