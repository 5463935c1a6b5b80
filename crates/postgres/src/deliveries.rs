//! [`DeliveryLog`] in SQL. Batches go to PostgreSQL as one array per column (`UNNEST`), so
//! `ensure`, `get_many`, `record_many` and `attempts` cost the same round trips for one
//! delivery as for a hundred.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{FromRow, QueryBuilder};
use uuid::Uuid;

use super::rows::{AttemptColumns, AttemptRow, DeliveryColumns, DeliveryRow};
use super::{PostgresDeliveryLog, database, sql_count};
use relay_core::domain::TenantId;
use relay_core::domain::{
    Attempt, Delivery, DeliveryKey, DeliveryStatus, EventId, EventType, Page, PageRequest, WebhookId,
};
use relay_core::ports::{DeliveryLog, DeliveryStats, Record, StatsScope, TimelineBucket};
use relay_core::{Error, Result, Timestamp};

const INSERT_MISSING: &str = concat!(
    "INSERT INTO deliveries (",
    delivery_columns!(),
    ") SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::int4[], \
     $8::text[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[]) \
     ON CONFLICT (webhook_id, event_id) DO NOTHING RETURNING ",
    delivery_columns!()
);

/// One index lookup per key, whatever the table's size was when the statement was prepared.
/// The obvious `(webhook_id, event_id) IN (SELECT * FROM UNNEST(…))` is planned as a join, and
/// a connection keeps the generic plan of its first executions: on a new, near-empty log that
/// is a hash join over a sequential scan, kept while the table grows (~0.3 ms a read at 10,000
/// rows, until autovacuum's first `ANALYZE`). A `LATERAL` subquery with a `LIMIT` cannot be
/// flattened into a join, so each key is a parameterised scan, and the primary key always wins.
pub const SELECT_BY_KEYS: &str = concat!(
    "SELECT d.* FROM UNNEST($1::uuid[], $2::uuid[]) AS k(webhook_id, event_id) \
     CROSS JOIN LATERAL (SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE webhook_id = k.webhook_id AND event_id = k.event_id LIMIT 1) d"
);

const SELECT_FAILED_BETWEEN: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE webhook_id = $1 AND status = 'failed' AND created_at >= $2 AND created_at < $3 \
     ORDER BY event_id LIMIT $4"
);

const SELECT_ONE: &str =
    concat!("SELECT ", delivery_columns!(), " FROM deliveries WHERE webhook_id = $1 AND event_id = $2");

/// Replaces whole stored deliveries, as the port's `record_many` means, and appends their
/// attempts: one statement, so one round trip and one commit for a worker's whole batch.
/// Written in one statement (not one per table in a transaction): the attempts' foreign key
/// is checked at its end, when the deliveries' rows are there.
const RECORD: &str = concat!(
    "WITH saved AS (INSERT INTO deliveries (",
    delivery_columns!(),
    ") SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::int4[], \
     $8::text[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[]) \
     ON CONFLICT (webhook_id, event_id) DO UPDATE SET \
     tenant = EXCLUDED.tenant, event_type = EXCLUDED.event_type, status = EXCLUDED.status, \
     attempt_count = EXCLUDED.attempt_count, last_status_code = EXCLUDED.last_status_code, \
     last_error = EXCLUDED.last_error, next_attempt_at = EXCLUDED.next_attempt_at, \
     created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at) \
     INSERT INTO delivery_attempts (",
    attempt_columns!(),
    ") SELECT * FROM UNNEST($12::uuid[], $13::uuid[], $14::int4[], $15::int4[], $16::int8[], $17::text[], \
     $18::text[], $19::text[], $20::timestamptz[])"
);

/// As [`SELECT_BY_KEYS`]: `OFFSET 0` keeps the `LATERAL` subquery from being flattened.
pub const SELECT_ATTEMPTS: &str = concat!(
    "SELECT a.* FROM UNNEST($1::uuid[], $2::uuid[]) AS k(webhook_id, event_id) \
     CROSS JOIN LATERAL (SELECT ",
    attempt_columns!(),
    ", id FROM delivery_attempts WHERE webhook_id = k.webhook_id AND event_id = k.event_id OFFSET 0) a \
     ORDER BY a.webhook_id, a.event_id, a.number, a.id"
);

/// The keys as two arrays, webhook ids then event ids, for `UNNEST($1, $2)`; each key once, as
/// the lookups return a key's rows once per time it is given.
fn key_columns(keys: impl Iterator<Item = DeliveryKey>) -> (Vec<Uuid>, Vec<Uuid>) {
    let unique: BTreeSet<(Uuid, Uuid)> = keys.map(|k| (k.webhook_id.as_uuid(), k.event_id.as_uuid())).collect();
    unique.into_iter().unzip()
}

fn into_map(rows: Vec<DeliveryRow>) -> Result<HashMap<DeliveryKey, Delivery>> {
    rows.into_iter().map(|row| row.into_delivery().map(|d| (d.key(), d))).collect()
}

#[async_trait]
impl DeliveryLog for PostgresDeliveryLog {
    /// One statement when every delivery is new (the insert returns them); a second, its own
    /// transaction, reads those that were there already. That read sees every row committed by
    /// then, including those a concurrent call inserted while this insert waited on it (a read
    /// in the insert's statement would use a snapshot taken before they committed).
    async fn ensure(&self, deliveries: &[Delivery]) -> Result<Vec<Delivery>> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        // In primary-key order, so calls over overlapping sets lock rows in the same order and
        // cannot deadlock; the first copy of a repeated key is the one offered, as in memory.
        let mut sorted: Vec<&Delivery> = deliveries.iter().collect();
        sorted.sort_by_key(|d| (d.webhook_id, d.event_id));
        sorted.dedup_by_key(|d| d.key());
        let inserted = DeliveryColumns::new(sorted.iter().copied())?
            .bind(sqlx::query(INSERT_MISSING))
            .fetch_all(&self.pool)
            .await
            .map_err(database)?;
        let inserted = inserted.iter().map(DeliveryRow::from_row).collect::<Result<Vec<_>, _>>().map_err(database)?;
        let mut stored = into_map(inserted)?;
        if stored.len() < sorted.len() {
            let existing: Vec<DeliveryKey> =
                sorted.iter().map(|d| d.key()).filter(|key| !stored.contains_key(key)).collect();
            stored.extend(self.get_many(&existing).await?);
        }
        deliveries
            .iter()
            .map(|d| {
                stored.get(&d.key()).cloned().ok_or_else(|| {
                    let (event, webhook) = (d.event_id, d.webhook_id);
                    Error::Internal(format!("delivery of event {event} to webhook {webhook} vanished after insert"))
                })
            })
            .collect()
    }

    async fn get_many(&self, keys: &[DeliveryKey]) -> Result<HashMap<DeliveryKey, Delivery>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let (webhooks, events) = key_columns(keys.iter().copied());
        let rows: Vec<DeliveryRow> =
            sqlx::query_as(SELECT_BY_KEYS).bind(webhooks).bind(events).fetch_all(&self.pool).await.map_err(database)?;
        into_map(rows)
    }

    async fn get(&self, key: DeliveryKey) -> Result<Option<Delivery>> {
        let row: Option<DeliveryRow> = sqlx::query_as(SELECT_ONE)
            .bind(key.webhook_id.as_uuid())
            .bind(key.event_id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(database)?;
        row.map(DeliveryRow::into_delivery).transpose()
    }

    async fn close_unfinished(&self, reason: &str, now: Timestamp) -> Result<u64> {
        let closed = sqlx::query(
            "UPDATE deliveries SET status = 'failed', last_error = $1, next_attempt_at = NULL, updated_at = $2 \
             WHERE status IN ('pending', 'retrying')",
        )
        .bind(reason)
        .bind(now.to_datetime())
        .execute(&self.pool)
        .await
        .map_err(database)?;
        Ok(closed.rows_affected())
    }

    async fn record_many(&self, records: &[Record<'_>]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // One row per delivery (its last state: an upsert may not touch a row twice), in
        // primary-key order so concurrent batches lock rows in the same order.
        let mut last: HashMap<DeliveryKey, &Delivery> = HashMap::new();
        let mut attempts = AttemptColumns::default();
        for record in records {
            last.insert(record.delivery.key(), record.delivery);
            if let Some(attempt) = record.attempt {
                attempts.push(record.delivery.key(), attempt)?;
            }
        }
        let mut deliveries: Vec<&Delivery> = last.into_values().collect();
        deliveries.sort_by_key(|d| (d.webhook_id, d.event_id));
        let query = DeliveryColumns::new(deliveries)?.bind(sqlx::query(RECORD));
        attempts.bind(query).execute(&self.pool).await.map_err(database)?;
        Ok(())
    }

    async fn unfinished_before(&self, webhook: WebhookId, before: EventId) -> Result<Option<EventId>> {
        // deliveries_webhook_status_idx: one short index range per unfinished status.
        let first: Option<Uuid> = sqlx::query_scalar(
            "SELECT event_id FROM deliveries WHERE webhook_id = $1 AND status IN ('pending', 'retrying') \
             AND event_id < $2 ORDER BY event_id LIMIT 1",
        )
        .bind(webhook.as_uuid())
        .bind(before.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(database)?;
        Ok(first.map(EventId::from))
    }

    async fn list(
        &self,
        webhook: WebhookId,
        status: Option<DeliveryStatus>,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        let mut query =
            QueryBuilder::new(concat!("SELECT ", delivery_columns!(), " FROM deliveries WHERE webhook_id = "));
        query.push_bind(webhook.as_uuid());
        if let Some(status) = status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(before) = page.before {
            query.push(" AND event_id < ").push_bind(before);
        }
        query.push(" ORDER BY event_id DESC LIMIT ").push_bind(sql_count(page.limit.saturating_add(1)));
        query.push(" OFFSET ").push_bind(sql_count(page.offset));
        let rows: Vec<DeliveryRow> = query.build_query_as().fetch_all(&self.pool).await.map_err(database)?;
        let deliveries = rows.into_iter().map(DeliveryRow::into_delivery).collect::<Result<Vec<_>>>()?;
        // The query applied the cursor and the offset; `apply` drops the look-ahead row and
        // sets `next_cursor` exactly as every other store does.
        let rest = PageRequest { offset: 0, before: None, ..*page };
        Ok(rest.apply(deliveries.into_iter(), |d| d.event_id.as_uuid()))
    }

    async fn failed_between(
        &self,
        webhook: WebhookId,
        since: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(SELECT_FAILED_BETWEEN)
            .bind(webhook.as_uuid())
            .bind(since.to_datetime())
            .bind(until.to_datetime())
            .bind(sql_count(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(database)?;
        rows.into_iter().map(DeliveryRow::into_delivery).collect()
    }

    async fn stats(&self, scope: &StatsScope, since: Timestamp) -> Result<DeliveryStats> {
        // The bound value is text; the cast keeps the webhook index usable.
        let (column, value) = match scope {
            StatsScope::Webhook(id) => ("webhook_id", id.to_string()),
            StatsScope::Tenant(tenant) => ("tenant", tenant.as_str().to_owned()),
        };
        let cast = if column == "webhook_id" { "::uuid" } else { "" };
        let counts: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*), count(DISTINCT event_id), \
             count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'retrying'), \
             count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed') \
             FROM deliveries WHERE {column} = $1{cast} AND created_at >= $2"
        ))
        .bind(&value)
        .bind(since.to_datetime())
        .fetch_one(&self.pool)
        .await
        .map_err(database)?;
        type Latency = (
            i64,
            Option<f64>,
            Option<f64>,
            Option<chrono::DateTime<chrono::Utc>>,
            Option<chrono::DateTime<chrono::Utc>>,
        );
        let latency: Latency = sqlx::query_as(&format!(
            "SELECT count(*), avg(a.duration_ms)::float8, \
             (percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms))::float8, \
             max(a.created_at) FILTER (WHERE a.status_code BETWEEN 200 AND 299), \
             max(a.created_at) FILTER (WHERE a.status_code IS NULL OR a.status_code NOT BETWEEN 200 AND 299) \
             FROM delivery_attempts a JOIN deliveries d USING (webhook_id, event_id) \
             WHERE d.{column} = $1{cast} AND a.created_at >= $2"
        ))
        .bind(&value)
        .bind(since.to_datetime())
        .fetch_one(&self.pool)
        .await
        .map_err(database)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(DeliveryStats {
            deliveries: count(counts.0),
            events: count(counts.1),
            pending: count(counts.2),
            retrying: count(counts.3),
            succeeded: count(counts.4),
            failed: count(counts.5),
            success_rate: None,
            attempts: count(latency.0),
            avg_latency_ms: latency.1,
            p95_latency_ms: latency.2,
            last_success_at: latency.3.map(Timestamp::from),
            last_failure_at: latency.4.map(Timestamp::from),
        }
        .with_rate())
    }

    async fn recent(&self, tenant: &TenantId, limit: usize) -> Result<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE tenant = $1 ORDER BY created_at DESC, event_id DESC LIMIT $2"
        ))
        .bind(tenant.as_str())
        .bind(sql_count(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(database)?;
        rows.into_iter().map(DeliveryRow::into_delivery).collect()
    }

    async fn timeline(&self, tenant: &TenantId, since: Timestamp, bucket: Duration) -> Result<Vec<TimelineBucket>> {
        let width = i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX).max(1);
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT (floor(extract(epoch FROM created_at) * 1000 / $3::int8) * $3::int8)::int8 AS start, status, count(*) \
             FROM deliveries WHERE tenant = $1 AND created_at >= $2 GROUP BY 1, 2 ORDER BY 1",
        )
        .bind(tenant.as_str())
        .bind(since.to_datetime())
        .bind(width)
        .fetch_all(&self.pool)
        .await
        .map_err(database)?;
        let mut buckets: Vec<TimelineBucket> = Vec::new();
        for (start, status, count) in rows {
            let status = DeliveryStatus::parse(&status)
                .ok_or_else(|| Error::unavailable("database", format!("unknown delivery status {status:?}")))?;
            let start = Timestamp::from_millis(start);
            if buckets.last().is_none_or(|b| b.start != start) {
                buckets.push(TimelineBucket::empty(start));
            }
            if let Some(bucket) = buckets.last_mut() {
                bucket.count(status, u64::try_from(count).unwrap_or(0));
            }
        }
        Ok(buckets)
    }

    async fn events(
        &self,
        tenant: &TenantId,
        event_type: Option<&EventType>,
        page: &PageRequest,
    ) -> Result<Page<EventId>> {
        let mut query = QueryBuilder::new("SELECT DISTINCT event_id FROM deliveries WHERE tenant = ");
        query.push_bind(tenant.as_str());
        if let Some(event_type) = event_type {
            query.push(" AND event_type = ").push_bind(event_type.as_str());
        }
        if let Some(before) = page.before {
            query.push(" AND event_id < ").push_bind(before);
        }
        query.push(" ORDER BY event_id DESC LIMIT ").push_bind(sql_count(page.limit.saturating_add(1)));
        query.push(" OFFSET ").push_bind(sql_count(page.offset));
        let ids: Vec<(Uuid,)> = query.build_query_as().fetch_all(&self.pool).await.map_err(database)?;
        let rest = PageRequest { offset: 0, before: None, ..*page };
        Ok(rest.apply(ids.into_iter().map(|(id,)| EventId::from(id)), EventId::as_uuid))
    }

    async fn of_event(&self, tenant: &TenantId, event: EventId) -> Result<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE tenant = $1 AND event_id = $2 ORDER BY webhook_id"
        ))
        .bind(tenant.as_str())
        .bind(event.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(database)?;
        rows.into_iter().map(DeliveryRow::into_delivery).collect()
    }

    async fn attempts(&self, keys: &[DeliveryKey]) -> Result<HashMap<DeliveryKey, Vec<Attempt>>> {
        let mut attempts: HashMap<DeliveryKey, Vec<Attempt>> = keys.iter().map(|k| (*k, Vec::new())).collect();
        if keys.is_empty() {
            return Ok(attempts);
        }
        let (webhooks, events) = key_columns(keys.iter().copied());
        let rows: Vec<AttemptRow> = sqlx::query_as(SELECT_ATTEMPTS)
            .bind(webhooks)
            .bind(events)
            .fetch_all(&self.pool)
            .await
            .map_err(database)?;
        for row in rows {
            attempts.entry(row.key()).or_default().push(row.into_attempt()?);
        }
        Ok(attempts)
    }
}
