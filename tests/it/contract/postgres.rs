//! The delivery log contract against PostgreSQL, a fresh database per test, and what only a
//! real database can get wrong: concurrent callers, text it cannot store, an absent server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_core::domain::{Attempt, DeliveryStatus, Trigger};
use relay_core::ports::DeliveryLog;
use relay_core::{Error, Timestamp};
use relay_postgres::PostgresDeliveryLog;

use super::{delivery, event, webhook};
use crate::pg;

macro_rules! pg_suite {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(db) = pg::database().await else { return };
                super::deliveries::$case(Arc::new(db.log(4).await)).await;
                db.drop().await;
            }
        )*
    };
}

pg_suite!(
    ensure_keeps_what_exists,
    record_appends_attempts_in_order,
    batches_read_and_write_many_at_once,
    lists_by_webhook_and_status,
    stats_count_and_time_what_is_in_scope,
    timeline_and_events_are_the_tenants_own,
    close_unfinished_fails_what_was_waiting,
    unfinished_before_finds_the_oldest_event_still_owed,
);

#[tokio::test]
async fn the_event_index_forgets_events_past_retention() {
    let Some(db) = pg::database().await else { return };
    super::events::the_index_forgets_events_past_retention(Arc::new(db.log(2).await.event_index())).await;
    db.drop().await;
}

const CALLERS: u32 = 50;

fn attempt(number: u32, response_body: &str) -> Attempt {
    Attempt {
        number,
        status_code: Some(500),
        duration_ms: 7,
        error: Some("HTTP 500".into()),
        response_body: Some(response_body.into()),
        trigger: Trigger::Scheduled,
        created_at: Timestamp::now(),
    }
}

async fn count(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn concurrent_ensures_store_one_row() {
    let Some(db) = pg::database().await else { return };
    let log = Arc::new(db.log(20).await);
    let first = delivery(&event("job.created", None), &webhook("acme", &["job.created"], true));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            // Each caller offers a different copy, so a caller that saw its own instead of
            // the stored one would show.
            let mut offered = first.clone();
            offered.created_at = Timestamp::from_millis(first.created_at.as_millis() + i64::from(i));
            let log = log.clone();
            tokio::spawn(async move { log.ensure(&[offered]).await.unwrap().remove(0) })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    let stored = log.get(first.key()).await.unwrap().unwrap();
    assert!(seen.iter().all(|d| *d == stored), "every caller gets the one stored delivery");
    assert_eq!(count(&db.pool().await, "deliveries").await, 1);
    drop(log);
    db.drop().await;
}

#[tokio::test]
async fn concurrent_records_lose_no_attempt() {
    let Some(db) = pg::database().await else { return };
    let log = Arc::new(db.log(20).await);
    let first = delivery(&event("job.created", None), &webhook("acme", &["job.created"], true));
    // No `ensure` first: the callers also race to create the row.
    let tasks: Vec<_> = (1..=CALLERS)
        .map(|n| {
            let mut next = first.clone();
            next.status = DeliveryStatus::Retrying;
            next.attempt_count = n;
            let log = log.clone();
            tokio::spawn(async move { log.record(&next, Some(&attempt(n, "busy"))).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let attempts = log.attempts(&[first.key()]).await.unwrap().remove(&first.key()).unwrap();
    assert_eq!(attempts.iter().map(|a| a.number).collect::<Vec<_>>(), (1..=CALLERS).collect::<Vec<_>>());
    assert_eq!(log.get(first.key()).await.unwrap().unwrap().status, DeliveryStatus::Retrying);
    let pool = db.pool().await;
    assert_eq!((count(&pool, "deliveries").await, count(&pool, "delivery_attempts").await), (1, i64::from(CALLERS)));
    drop(log);
    db.drop().await;
}

#[tokio::test]
async fn nul_characters_are_stored_as_replacement_characters() {
    let Some(db) = pg::database().await else { return };
    let log = db.log(2).await;
    let mut d = delivery(&event("job.created", None), &webhook("acme", &["job.created"], true));
    d.last_error = Some("bad\0byte".into());
    log.record(&d, Some(&attempt(1, "binary\0body"))).await.unwrap();
    assert_eq!(log.get(d.key()).await.unwrap().unwrap().last_error.as_deref(), Some("bad\u{FFFD}byte"));
    let attempts = log.attempts(&[d.key()]).await.unwrap();
    assert_eq!(attempts[&d.key()][0].response_body.as_deref(), Some("binary\u{FFFD}body"));
    drop(log);
    db.drop().await;
}

/// The reads by key stay primary-key lookups on a log that was empty when a connection first
/// planned them. A connection keeps a statement's generic plan, and a join planned on an empty
/// table is a hash join over a sequential scan, which then reads the whole table on every
/// delivery as it grows (until autovacuum's first `ANALYZE`).
#[tokio::test]
async fn reads_by_key_stay_index_lookups_when_planned_on_an_empty_log() {
    let Some(db) = pg::database().await else { return };
    let _log = db.log(1).await;
    let pool = db.pool().await;
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut *conn).await.unwrap();
    let statements = [("by_keys", relay_postgres::SELECT_BY_KEYS), ("attempts", relay_postgres::SELECT_ATTEMPTS)];
    let execute = |name: &str| format!("EXECUTE {name}(ARRAY[gen_random_uuid()], ARRAY[gen_random_uuid()])");
    for (name, sql) in statements {
        sqlx::query(&format!("PREPARE {name}(uuid[], uuid[]) AS {sql}")).execute(&mut *conn).await.unwrap();
        // The first execution plans it, on empty tables.
        sqlx::query(&execute(name)).execute(&mut *conn).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO deliveries (event_id, webhook_id, tenant, event_type, status, attempt_count) \
         SELECT gen_random_uuid(), gen_random_uuid(), 'acme', 'job.created', 'succeeded', 1 FROM generate_series(1, 5000)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO delivery_attempts (event_id, webhook_id, number, duration_ms, trigger) \
         SELECT event_id, webhook_id, 1, 3, 'scheduled' FROM deliveries",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    for (name, _) in statements {
        let rows: Vec<(String,)> =
            sqlx::query_as(&format!("EXPLAIN {}", execute(name))).fetch_all(&mut *conn).await.unwrap();
        let plan = rows.into_iter().map(|(line,)| line).collect::<Vec<_>>().join("\n");
        assert!(!plan.contains("Seq Scan"), "{name} scans the whole table:\n{plan}");
        assert!(plan.contains("Index"), "{name} uses no index:\n{plan}");
    }
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn migrating_twice_is_harmless() {
    let Some(db) = pg::database().await else { return };
    let log = db.log(1).await;
    log.migrate().await.unwrap();
    drop(log);
    db.drop().await;
}

#[tokio::test]
async fn an_unreachable_server_fails_fast() {
    let started = Instant::now();
    // Port 1 on loopback: nothing listens, the connection is refused at once and retried.
    let err = PostgresDeliveryLog::connect("postgres://postgres@127.0.0.1:1/postgres", 1).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { dependency: "database", .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}
