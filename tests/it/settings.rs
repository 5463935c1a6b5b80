//! Each Lambda function reads the settings of what it runs and nothing else: what it needs is
//! required (the error names the variable), and a variable only relay-local uses is never
//! read, let alone validated, by a function.

use std::time::Duration;

use relay_core::settings::{ConfigError, Vars};

const TOKENS: (&str, &str) = ("SERVICE_TOKENS", "a-service-token-0001");
const KEYS: (&str, &str) = ("API_KEYS", "acme:an-api-key-000001");
const SEALING: (&str, &str) = ("SECRETS_ENCRYPTION_KEYS", "k1:0123456789abcdef0123456789abcdef");
const DATABASE: (&str, &str) = ("DATABASE_URL", "postgres://relay@db/relay");
const TABLES: [(&str, &str); 8] = [
    ("EVENTS_TABLE", "events"),
    ("IDEMPOTENCY_TABLE", "idempotency"),
    ("WEBHOOKS_TABLE", "webhooks"),
    ("TENANTS_TABLE", "tenants"),
    ("QUEUE_URL", "http://queue"),
    ("ORDERED_QUEUE_URL", "http://queue-ordered.fifo"),
    ("DLQ_URL", "http://dlq"),
    ("ORDERED_DLQ_URL", "http://queue-ordered-dlq.fifo"),
];

/// Everything any function needs, plus `extra`.
fn all(extra: &[(&'static str, &'static str)]) -> Vars {
    let mut vars = vec![TOKENS, KEYS, SEALING, DATABASE];
    vars.extend(TABLES);
    vars.extend_from_slice(extra);
    Vars::from_pairs(&vars)
}

/// The four functions' settings, read from `vars`: `Err` names the variable refused.
fn read(vars: &Vars) -> [(&'static str, Result<(), ConfigError>); 4] {
    [
        ("relay-ingest", relay_ingest::Settings::from_vars(vars).map(drop)),
        ("relay-api", relay_api::Settings::from_vars(vars).map(drop)),
        ("relay-delivery", relay_delivery::Settings::from_vars(vars).map(drop)),
        ("relay-maintenance", relay_maintenance::Settings::from_vars(vars).map(drop)),
    ]
}

/// `WEBHOOK_TIMEOUT` of 30 s or more used to stop every Lambda function at start-up: the flat
/// configuration checked it against `QUEUE_VISIBILITY_TIMEOUT`, which only relay-local's
/// embedded queue has. The deployed queue's visibility timeout is the template's business.
#[test]
fn a_long_webhook_timeout_starts_every_function() {
    let vars = all(&[("WEBHOOK_TIMEOUT", "30000")]);
    for (function, read) in read(&vars) {
        assert!(read.is_ok(), "{function}: {read:?}");
    }
    let delivery = relay_delivery::Settings::from_vars(&vars).unwrap();
    assert_eq!(delivery.delivery.webhook_timeout, Duration::from_secs(30));
    // relay-local still checks its own queue against it.
    let local = relay_local::Config::from_vars(&Vars::from_pairs(&[("WEBHOOK_TIMEOUT", "30000")]));
    assert_eq!(local.unwrap_err().var, "QUEUE_VISIBILITY_TIMEOUT");
}

#[test]
fn relay_local_settings_are_not_read_by_the_functions() {
    for (var, value) in [
        ("QUEUE_VISIBILITY_TIMEOUT", "not a number"),
        ("QUEUE_MAX_RECEIVE_COUNT", "1"),
        ("WORKER_CONCURRENCY", "0"),
        ("MAINTENANCE_INTERVAL", "never"),
        ("RELAY_BACKEND", "memory"),
        ("HOST", "localhost"),
        ("PORT", "99999"),
        ("HTTP_HEADER_TIMEOUT", "0"),
        ("HTTP_BODY_TIMEOUT", "x"),
        ("HTTP_IDLE_TIMEOUT", "-1"),
        ("HTTP_MAX_CONNECTIONS", "1"),
        ("SHUTDOWN_TIMEOUT", "forever"),
    ] {
        for (function, read) in read(&all(&[(var, value)])) {
            assert!(read.is_ok(), "{function} read {var}={value}: {read:?}");
        }
    }
}

/// A function refuses a bad value only in a setting it reads.
#[test]
fn each_function_validates_only_what_it_reads() {
    let refused_by = |var: &'static str, value: &'static str| -> Vec<&'static str> {
        read(&all(&[(var, value)]))
            .into_iter()
            .filter_map(|(function, read)| read.err().map(|e| (function, e)))
            .inspect(|(function, e)| assert_eq!(e.var, var, "{function}"))
            .map(|(function, _)| function)
            .collect()
    };
    assert_eq!(refused_by("MAX_PAYLOAD_BYTES", "1"), ["relay-ingest", "relay-api"]);
    assert_eq!(refused_by("EVENT_TYPES", "Bad Type"), ["relay-ingest", "relay-api"]);
    assert_eq!(refused_by("WEBHOOK_TIMEOUT", "0"), ["relay-api", "relay-delivery"]);
    assert_eq!(refused_by("WEBHOOK_ALLOWED_CIDRS", "10.0.0.0/99"), ["relay-api", "relay-delivery"]);
    assert_eq!(refused_by("WEBHOOK_SECRET_GRACE", "-5"), ["relay-api"]);
    assert_eq!(refused_by("DASHBOARD_SESSION_SECRET", "short"), ["relay-api"]);
    assert_eq!(refused_by("SECRETS_ENCRYPTION_KEYS", "k1:too-short"), ["relay-api", "relay-delivery"]);
    // relay-ingest reads API_KEYS for its tenants' names: an event may be scoped to them.
    assert_eq!(refused_by("API_KEYS", "no-colon-here-at-all"), ["relay-ingest", "relay-api"]);
    assert_eq!(refused_by("ALLOW_BROADCAST_EVENTS", "maybe"), ["relay-ingest"]);
    assert_eq!(refused_by("PUBLIC_URL", "not a url"), ["relay-api"]);
    assert_eq!(refused_by("SERVICE_TOKENS", "short"), ["relay-ingest", "relay-api"]);
    assert_eq!(refused_by("EVENT_RETENTION_DAYS", "0").len(), 4);
}

/// What each function cannot run without; the error names the first one missing.
#[test]
fn each_function_requires_what_it_runs() {
    let missing = |function: &str, vars: Vars| -> &'static str {
        read(&vars).into_iter().find(|(f, _)| *f == function).and_then(|(_, r)| r.err()).map_or("", |e| e.var)
    };
    for (function, needs) in [
        ("relay-ingest", &["SERVICE_TOKENS", "EVENTS_TABLE", "IDEMPOTENCY_TABLE", "TENANTS_TABLE", "QUEUE_URL"][..]),
        (
            "relay-api",
            &[
                "SERVICE_TOKENS",
                "EVENTS_TABLE",
                "WEBHOOKS_TABLE",
                "TENANTS_TABLE",
                "QUEUE_URL",
                "ORDERED_QUEUE_URL",
                "DATABASE_URL",
                "SECRETS_ENCRYPTION_KEYS",
            ][..],
        ),
        (
            "relay-delivery",
            &[
                "EVENTS_TABLE",
                "WEBHOOKS_TABLE",
                "TENANTS_TABLE",
                "QUEUE_URL",
                "ORDERED_QUEUE_URL",
                "DATABASE_URL",
                "SECRETS_ENCRYPTION_KEYS",
            ][..],
        ),
        (
            "relay-maintenance",
            &["EVENTS_TABLE", "WEBHOOKS_TABLE", "QUEUE_URL", "DLQ_URL", "ORDERED_DLQ_URL", "DATABASE_URL"][..],
        ),
    ] {
        assert_eq!(missing(function, all(&[])), "", "{function} with everything");
        for need in needs {
            let mut vars: Vec<(&str, &str)> = vec![TOKENS, KEYS, SEALING, DATABASE];
            vars.extend(TABLES);
            vars.retain(|(k, _)| k != need);
            assert_eq!(missing(function, Vars::from_pairs(&vars)), *need, "{function} without {need}");
        }
    }
    // A function that does not need a variable starts without it.
    let mut vars: Vec<(&str, &str)> =
        vec![TOKENS, ("EVENTS_TABLE", "e"), ("IDEMPOTENCY_TABLE", "i"), ("TENANTS_TABLE", "t"), ("QUEUE_URL", "q")];
    assert!(relay_ingest::Settings::from_vars(&Vars::from_pairs(&vars)).is_ok());
    // Tenants' keys may all be issued through the API: relay-api starts without API_KEYS.
    let without_keys: Vec<(&str, &str)> =
        [&[TOKENS, SEALING, DATABASE][..], &TABLES[..]].concat().into_iter().collect();
    assert!(relay_api::Settings::from_vars(&Vars::from_pairs(&without_keys)).is_ok());
    vars = vec![
        ("EVENTS_TABLE", "e"),
        ("WEBHOOKS_TABLE", "w"),
        ("QUEUE_URL", "q"),
        ("DLQ_URL", "d"),
        ("ORDERED_DLQ_URL", "o"),
        DATABASE,
    ];
    assert!(relay_maintenance::Settings::from_vars(&Vars::from_pairs(&vars)).is_ok());
}

/// The functions' production defaults: https only, no private range reachable, the seed's
/// retry schedule.
#[test]
fn production_defaults() {
    let api = relay_api::Settings::from_vars(&all(&[])).unwrap();
    assert!(api.webhooks.require_https);
    assert!(api.webhooks.allowed_cidrs.is_empty());
    assert_eq!(api.delivery.retry.max_retries, 3);
    assert_eq!(api.delivery.retry.base_delay, Duration::from_secs(60));
    assert_eq!(api.event_types.len(), 11);
    assert_eq!(api.api.max_payload_bytes, 262_144);
    assert!(api.dashboard_session_secret.is_none());
    let delivery = relay_delivery::Settings::from_vars(&all(&[])).unwrap();
    assert!(delivery.allowed_cidrs.is_empty());
    // relay-local's dev credentials are never a function's.
    let ingest = relay_ingest::Settings::from_vars(&all(&[])).unwrap();
    assert!(!ingest.credentials.service(relay_core::auth::DEV_SERVICE_TOKEN));
    let printed = format!("{api:?}");
    for secret in ["a-service-token-0001", "an-api-key", "postgres://"] {
        assert!(!printed.contains(secret), "{secret} printed");
    }
}
