//! What `--backend postgres` runs on besides relay-local: a PostgreSQL database of its own for
//! every relay start, and a Redis database of its own for every harness process, so that runs
//! neither slow down nor disturb each other, and nothing of anyone else's is flushed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The PostgreSQL server the harness creates scratch databases on, as a URL of a database it
/// may connect to as a user allowed to create databases: `BENCH_DATABASE_ADMIN_URL`, else
/// `DATABASE_URL` (what `--backend full` uses, and what CI sets when its server wants a
/// password), else the local server as user postgres.
pub fn database_admin_url() -> String {
    ["BENCH_DATABASE_ADMIN_URL", "DATABASE_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|url| !url.is_empty()))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Redis for `--backend postgres`: `BENCH_REDIS_URL` as given, else a database of the local
/// Redis (127.0.0.1:6379) that this harness process has claimed for itself ([`claim_redis_db`]).
/// relay-local puts every key under one fixed prefix (`relay:`), and its cached lists of
/// subscribed webhooks are keyed by a generation shared by every relay on the same Redis: two
/// relays with different webhook stores on one key space would read each other's lists and
/// deliver to each other's receivers. A Redis database of its own per harness is the key space
/// relay-local can be given. Nothing is flushed: locks and cached lists expire by themselves.
pub fn postgres_backend_redis_url() -> String {
    if let Some(url) = std::env::var("BENCH_REDIS_URL").ok().filter(|url| !url.is_empty()) {
        return url;
    }
    static DB: OnceLock<u8> = OnceLock::new();
    let db = *DB.get_or_init(|| match claim_redis_db(LOCAL_REDIS) {
        Ok(db) => db,
        Err(err) => {
            let db = fallback_redis_db();
            eprintln!("relay-bench: no Redis database claimed ({err:#}); using database {db}");
            db
        }
    });
    format!("redis://{LOCAL_REDIS}/{db}")
}

/// The local Redis, as `postgres_backend_redis_url` uses it.
const LOCAL_REDIS: &str = "127.0.0.1:6379";
/// The key that says which harness process a Redis database belongs to (outside relay-local's
/// `relay:` prefix), and how long a claim lasts if its harness never comes back.
const REDIS_OWNER_KEY: &str = "relay-bench:owner";
const REDIS_CLAIM_SECONDS: u64 = 24 * 3600;

/// A database of Redis at `addr` for this harness process, from 1 to 15 (0 is left to everyone
/// else): the first without an owner, or whose owner's process is gone, becomes this process's
/// by `SET relay-bench:owner <pid> NX EX 86400`. Databases of live harnesses are skipped.
pub fn claim_redis_db(addr: &str) -> Result<u8> {
    let mut redis = Resp::connect(addr)?;
    let me = std::process::id().to_string();
    for db in 1..=15u8 {
        if redis.command(&["SELECT", &db.to_string()])?.is_none() {
            // The server has fewer databases than that.
            break;
        }
        let expiry = REDIS_CLAIM_SECONDS.to_string();
        if redis.command(&["SET", REDIS_OWNER_KEY, &me, "NX", "EX", &expiry])?.is_some() {
            return Ok(db);
        }
        let owner = redis.command(&["GET", REDIS_OWNER_KEY])?;
        let alive = owner
            .as_deref()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            redis.command(&["SET", REDIS_OWNER_KEY, &me, "EX", &expiry])?;
            return Ok(db);
        }
    }
    bail!("every Redis database from 1 to 15 belongs to a running harness")
}

/// The database used when none could be claimed: one of 1 to 15 by process id.
fn fallback_redis_db() -> u8 {
    1 + u8::try_from(std::process::id() % 15).unwrap_or(0)
}

/// Just enough of the Redis protocol for [`claim_redis_db`]: commands of plain strings, answers
/// that are a status, a number, a string or nil. Every read and write has a timeout.
struct Resp {
    stream: BufReader<TcpStream>,
}

impl Resp {
    fn connect(addr: &str) -> Result<Self> {
        let addr: std::net::SocketAddr = addr.parse().with_context(|| format!("bad Redis address {addr:?}"))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .with_context(|| format!("connecting to Redis at {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        Ok(Self { stream: BufReader::new(stream) })
    }

    /// Sends one command; `None` for a nil answer or an error answer (`-ERR …`).
    fn command(&mut self, args: &[&str]) -> Result<Option<String>> {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.stream.get_mut().write_all(request.as_bytes()).context("writing to Redis")?;
        let mut line = String::new();
        self.stream.read_line(&mut line).context("reading from Redis")?;
        let line = line.trim_end();
        let (kind, rest) = line.split_at_checked(1).context("empty answer from Redis")?;
        match kind {
            "+" | ":" => Ok(Some(rest.to_owned())),
            "-" => Ok(None),
            "$" => {
                let Ok(len) = usize::try_from(rest.parse::<i64>().context("bad Redis answer")?) else {
                    return Ok(None);
                };
                let mut data = vec![0; len + 2];
                self.stream.read_exact(&mut data).context("reading from Redis")?;
                data.truncate(len);
                Ok(Some(String::from_utf8_lossy(&data).into_owned()))
            }
            other => bail!("unexpected Redis answer {other:?}"),
        }
    }
}

/// `url` with its database (the path) replaced by `database`; user, password, host, port and
/// query are kept.
pub fn with_database(url: &str, database: &str) -> Result<String> {
    let (scheme, rest) = url.split_once("://").with_context(|| format!("{url:?} is not a URL"))?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// The host and port of a `postgres://` or `redis://` URL (`default_port` when it names none).
fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = after.strip_prefix(':').map_or(Some(default_port), |p| p.parse().ok())?;
        return Some((host.to_owned(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((host_port.to_owned(), default_port)),
    }
}

/// A database of its own on the PostgreSQL server of [`database_admin_url`], for one start of
/// relay-local on `--backend postgres`, so that runs do not slow each other down with the rows
/// of the ones before. Dropped (`DROP DATABASE … WITH (FORCE)`) by [`ScratchDatabase::remove`]
/// or, failing that, when dropped; best effort: a database left behind (a killed harness) is
/// removed by the next harness that creates one, once its process is gone.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// `DATABASE_URL` for the relay.
    pub url: String,
    removed: bool,
}

/// The prefix of every scratch database's name: `relay_bench_<pid>_<n>`.
const SCRATCH_PREFIX: &str = "relay_bench_";
/// Longest a `psql` call may take (creating or dropping a database).
const PSQL_TIMEOUT: Duration = Duration::from_secs(60);

impl ScratchDatabase {
    /// Creates `relay_bench_<pid>_<n>`, first dropping what dead harnesses left behind.
    pub async fn create() -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        let admin_url = database_admin_url();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{SCRATCH_PREFIX}{}_{n}", std::process::id());
        let url = with_database(&admin_url, &name)?;
        let admin = admin_url.clone();
        let created = name.clone();
        tokio::task::spawn_blocking(move || {
            SWEPT.call_once(|| sweep_leftovers(&admin));
            // A database of this name can only be a leftover of a dead harness with our pid.
            psql(&admin, &format!("DROP DATABASE IF EXISTS {created} WITH (FORCE)"))?;
            psql(&admin, &format!("CREATE DATABASE {created}"))
        })
        .await
        .context("creating a scratch database")??;
        Ok(Self { admin_url, name, url, removed: false })
    }

    /// Drops the database now (after its relay has stopped); a failure is only printed.
    pub async fn remove(mut self) {
        self.removed = true;
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        match tokio::task::spawn_blocking(move || drop_database(&admin, &name)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("relay-bench: leaving database {}: {err:#}", self.name),
            Err(err) => eprintln!("relay-bench: leaving database {}: {err}", self.name),
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if !self.removed
            && let Err(err) = drop_database(&self.admin_url, &self.name)
        {
            eprintln!("relay-bench: leaving database {}: {err:#}", self.name);
        }
    }
}

fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    psql(admin_url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
}

/// Drops the scratch databases of harness processes that are gone (killed before they could
/// drop their own). Best effort: errors are ignored.
fn sweep_leftovers(admin_url: &str) {
    let query = format!("SELECT datname FROM pg_database WHERE datname LIKE '{SCRATCH_PREFIX}%'");
    let Ok(names) = psql_output(admin_url, &query) else { return };
    for name in names.lines().map(str::trim) {
        let pid = name.strip_prefix(SCRATCH_PREFIX).and_then(|rest| rest.split_once('_')).map(|(pid, _)| pid);
        let gone = pid
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists());
        if gone {
            let _ = drop_database(admin_url, name);
        }
    }
}

/// Runs one SQL statement with `psql` against `admin_url`, within [`PSQL_TIMEOUT`].
fn psql(admin_url: &str, sql: &str) -> Result<()> {
    psql_output(admin_url, sql).map(|_| ())
}

/// Runs one SQL statement with `psql` (unaligned, tuples only) and returns what it printed.
fn psql_output(admin_url: &str, sql: &str) -> Result<String> {
    let mut child = std::process::Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", admin_url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql (is the PostgreSQL client installed?)")?;
    let end = Instant::now() + PSQL_TIMEOUT;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("psql did not finish {sql:?} within {} s", PSQL_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("psql {sql:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether PostgreSQL ([`database_admin_url`]) and Redis ([`postgres_backend_redis_url`])
/// accept connections, for `--backend postgres`. Under `CI=true` they must: a test that needs
/// them fails instead of skipping.
pub fn postgres_and_redis_available() -> bool {
    let reachable = |url: &str, default_port: u16| {
        host_port(url, default_port).is_some_and(|(host, port)| {
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).is_ok_and(|mut addrs| {
                addrs.any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok())
            })
        })
    };
    let up = reachable(&database_admin_url(), 5432) && reachable(&postgres_backend_redis_url(), 6379);
    assert!(
        up || std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but PostgreSQL or Redis is not running (bash .ci/run starts both)"
    );
    if !up {
        eprintln!("SKIPPED the parts that need PostgreSQL and Redis: they are not running");
    }
    up
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "relay_bench_1_0").unwrap(),
            "postgres://postgres@127.0.0.1:5432/relay_bench_1_0"
        );
        assert_eq!(
            with_database("postgres://u:p@db:6543?sslmode=disable", "x").unwrap(),
            "postgres://u:p@db:6543/x?sslmode=disable"
        );
        assert!(with_database("127.0.0.1:5432", "x").is_err());
        assert_eq!(host_port("postgres://u:p@db:6543/x?a=b", 5432), Some(("db".to_owned(), 6543)));
        assert_eq!(host_port("redis://127.0.0.1/9", 6379), Some(("127.0.0.1".to_owned(), 6379)));
        assert_eq!(host_port("postgres://[::1]:5433/x", 5432), Some(("::1".to_owned(), 5433)));
    }

    /// Against the local Redis, when it runs (the smoke tests require it under `CI=true`).
    #[test]
    fn a_harness_claims_a_redis_database_of_its_own() {
        if TcpStream::connect_timeout(&LOCAL_REDIS.parse().unwrap(), Duration::from_millis(300)).is_err() {
            eprintln!("SKIPPED: no Redis on {LOCAL_REDIS}");
            return;
        }
        let db = claim_redis_db(LOCAL_REDIS).unwrap();
        assert!((1..=15).contains(&db));
        // Claiming again finds its own claim first.
        assert_eq!(claim_redis_db(LOCAL_REDIS).unwrap(), db);
        let mut redis = Resp::connect(LOCAL_REDIS).unwrap();
        redis.command(&["SELECT", &db.to_string()]).unwrap();
        assert_eq!(redis.command(&["GET", REDIS_OWNER_KEY]).unwrap(), Some(std::process::id().to_string()));
        assert_eq!(redis.command(&["GET", "relay-bench:no-such-key"]).unwrap(), None);
        assert!(fallback_redis_db() >= 1 && fallback_redis_db() <= 15);
    }
}
