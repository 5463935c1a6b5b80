//! Typed settings, read from the environment and validated once at start-up. A bad value stops
//! start-up with a message that names the variable.
//!
//! Each function reads only the settings of what it runs: its composition root builds its own
//! settings from the groups here (and from the adapter crates' own), so a variable one function
//! does not use is never read, let alone validated, by it.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::backoff::{MAX_DELAY, RetryPolicy};
use crate::domain::EventTypeRegistry;
use crate::ports::GatePolicy;
use crate::sealing::SecretKeys;

/// Where the settings are used: some defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The Lambda functions: every credential must be configured; webhook URLs must be https;
    /// no private address is reachable unless allow-listed.
    Production,
    /// relay-local: dev credentials when none are set, http allowed, loopback reachable.
    Local,
}

/// A value that must never be printed: credentials and connection strings.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self { var, message: message.into() }
    }
}

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Dependency(#[from] crate::Error),
}

/// The variables settings are read from: the process environment, or a map (tests, and the
/// Lambda functions once Secrets Manager has completed it). Values are trimmed; an empty value
/// counts as unset.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: HashMap<String, String>,
}

impl Vars {
    pub fn from_env() -> Self {
        Self::from_map(std::env::vars().collect())
    }

    pub fn from_map(values: HashMap<String, String>) -> Self {
        Self { values }
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self::from_map(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    /// A variable the function cannot run without; `what` says what it holds.
    pub fn required(&self, name: &'static str, what: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::new(name, format!("is required ({what})")))
    }

    /// A whole number in `range`, `default` when unset.
    pub fn num<T>(&self, name: &'static str, default: T, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = self.get(name) else { return Ok(default) };
        match raw.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError::new(
                name,
                format!("must be a whole number from {} to {}, got {raw:?}", range.start(), range.end()),
            )),
        }
    }

    /// Milliseconds in `range`.
    pub fn millis(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.num(name, default, range).map(Duration::from_millis)
    }

    /// Seconds in `range`.
    pub fn secs(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.num(name, default, range).map(Duration::from_secs)
    }

    pub fn bool(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError::new(name, format!("must be true or false, got {other:?}"))),
        }
    }

    /// A secret, never printed.
    pub fn redacted(&self, name: &str) -> Option<Redacted<String>> {
        self.get(name).map(Redacted)
    }
}

/// `EVENT_TYPES`: comma-separated; the seed's eleven when unset.
/// `ALLOW_BROADCAST_EVENTS`: whether an event without a `tenant` goes to every tenant's
/// subscribers. relay-local allows it by default (one platform, the seed's single tenant);
/// production refuses it by default, so that no event reaches a customer it was not for.
pub fn allow_broadcast_events(vars: &Vars, profile: Profile) -> Result<bool, ConfigError> {
    vars.bool("ALLOW_BROADCAST_EVENTS", profile == Profile::Local)
}

pub fn event_types(vars: &Vars) -> Result<EventTypeRegistry, ConfigError> {
    match vars.get("EVENT_TYPES") {
        None => Ok(EventTypeRegistry::default()),
        Some(list) => EventTypeRegistry::from_list(&list).map_err(|m| ConfigError::new("EVENT_TYPES", m)),
    }
}

/// `SECRETS_ENCRYPTION_KEYS`: the keys webhook secrets are sealed with (`id:material`,
/// comma-separated, the first sealing).
pub fn secret_keys(vars: &Vars) -> Result<Option<SecretKeys>, ConfigError> {
    vars.get("SECRETS_ENCRYPTION_KEYS")
        .map(|list| SecretKeys::parse(&list).map_err(|m| ConfigError::new("SECRETS_ENCRYPTION_KEYS", m)))
        .transpose()
}

/// [`secret_keys`], for a function that reads or writes webhooks.
pub fn required_secret_keys(vars: &Vars) -> Result<SecretKeys, ConfigError> {
    secret_keys(vars)?
        .ok_or_else(|| ConfigError::new("SECRETS_ENCRYPTION_KEYS", "is required (id:material, comma-separated)"))
}

/// How deliveries are made: what the delivery worker and a manual retry need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliverySettings {
    /// `WEBHOOK_TIMEOUT` (ms, 5000): the whole request, connect to last byte.
    pub webhook_timeout: Duration,
    /// `WEBHOOK_MAX_RETRIES` (3) and `WEBHOOK_RETRY_DELAY` (ms, 60000).
    pub retry: RetryPolicy,
    /// `WEBHOOK_DISABLE_AFTER` (s, 432000 = 5 days): a webhook whose deliveries all failed for
    /// this long is disabled.
    pub disable_after: Duration,
    /// `WEBHOOK_MAX_IN_FLIGHT` (10): a webhook's deliveries in flight at once, unless its own
    /// `maxInFlight` says otherwise.
    pub max_in_flight: u32,
    /// `TENANT_MAX_IN_FLIGHT` (20), `CIRCUIT_BREAKER_THRESHOLD` (5 failures in a row) and
    /// `CIRCUIT_BREAKER_COOLDOWN` (ms, 30000): what admission applies to every delivery.
    pub gates: GatePolicy,
}

impl DeliverySettings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let webhook_timeout = vars.millis("WEBHOOK_TIMEOUT", 5000, 1..=900_000)?;
        let base_delay = vars.millis("WEBHOOK_RETRY_DELAY", 60_000, 1..=MAX_DELAY.as_millis() as u64)?;
        let max_retries = vars.num::<u32>("WEBHOOK_MAX_RETRIES", 3, 0..=50)?;
        let disable_after = vars.secs("WEBHOOK_DISABLE_AFTER", 5 * 86_400, 1..=365 * 86_400)?;
        let gates = GatePolicy {
            tenant_max_in_flight: vars.num::<u32>("TENANT_MAX_IN_FLIGHT", 20, 1..=100_000)?,
            failure_threshold: vars.num::<u32>("CIRCUIT_BREAKER_THRESHOLD", 5, 1..=1000)?,
            cooldown: vars.millis("CIRCUIT_BREAKER_COOLDOWN", 30_000, 100..=900_000)?,
            // A slot outlives the attempt (and its pace wait) it was taken for.
            lease: webhook_timeout * 2 + Duration::from_secs(5),
        };
        Ok(Self {
            webhook_timeout,
            retry: RetryPolicy { base_delay, max_retries, ..RetryPolicy::default() },
            disable_after,
            max_in_flight: vars.num::<u32>("WEBHOOK_MAX_IN_FLIGHT", 10, 1..=crate::domain::MAX_IN_FLIGHT)?,
            gates,
        })
    }
}

/// What webhooks may be: where they may point and how secrets rotate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `WEBHOOK_REQUIRE_HTTPS`: true in production, false in relay-local.
    pub require_https: bool,
    /// `WEBHOOK_ALLOWED_CIDRS`: private ranges deliveries may reach anyway (`none`: nothing).
    /// relay-local allows loopback by default. Cloud metadata addresses are refused whatever
    /// this says.
    pub allowed_cidrs: Vec<IpNet>,
    /// `WEBHOOK_SECRET_GRACE` (s, 86400): how long a rotated-out secret keeps signing.
    pub secret_grace: Duration,
}

impl WebhookSettings {
    pub fn from_vars(vars: &Vars, profile: Profile) -> Result<Self, ConfigError> {
        let local = profile == Profile::Local;
        Ok(Self {
            require_https: vars.bool("WEBHOOK_REQUIRE_HTTPS", !local)?,
            allowed_cidrs: allowed_cidrs(vars, profile)?,
            secret_grace: vars.secs("WEBHOOK_SECRET_GRACE", 86_400, 0..=30 * 86_400)?,
        })
    }
}

/// `WEBHOOK_ALLOWED_CIDRS`, on its own: what the sender needs.
pub fn allowed_cidrs(vars: &Vars, profile: Profile) -> Result<Vec<IpNet>, ConfigError> {
    match vars.get("WEBHOOK_ALLOWED_CIDRS") {
        Some(list) if list.eq_ignore_ascii_case("none") => Ok(Vec::new()),
        Some(list) => parse_cidrs(&list),
        None if profile == Profile::Local => Ok(vec![loopback("127.0.0.0/8"), loopback("::1/128")]),
        None => Ok(Vec::new()),
    }
}

fn parse_cidrs(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<IpNet>().or_else(|_| c.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                ConfigError::new("WEBHOOK_ALLOWED_CIDRS", format!("{c:?} is not a CIDR range like 10.0.0.0/8"))
            })
        })
        .collect()
}

/// A constant loopback range (the fallback, never taken, keeps this free of panics).
fn loopback(cidr: &str) -> IpNet {
    cidr.parse().unwrap_or_else(|_| IpNet::from(IpAddr::from([127, 0, 0, 1])))
}
