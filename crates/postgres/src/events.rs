//! [`EventIndex`] in SQL: the `event_index` table of `infra/migrations/0003_event_index.sql`.

use async_trait::async_trait;
use sqlx::{PgPool, QueryBuilder};
use uuid::Uuid;

use super::{database, sql_count};
use relay_core::domain::{Event, EventId, EventType, Page, PageRequest};
use relay_core::ports::{EventFilter, EventIndex};
use relay_core::{Result, Timestamp};

/// The event index, on the delivery log's pool ([`super::PostgresDeliveryLog::event_index`]).
#[derive(Debug, Clone)]
pub struct PostgresEventIndex {
    pool: PgPool,
}

impl PostgresEventIndex {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// One statement per batch: the new rows inserted, and `dispatched` set on the others when
/// asked (only on rows not marked yet, so a repeat writes nothing).
const ADD: &str = "INSERT INTO event_index (id, event_type, source, tenant, dispatched) \
    SELECT id, event_type, source, tenant, $5 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) \
        AS e(id, event_type, source, tenant) \
    ON CONFLICT (id) DO UPDATE SET dispatched = true WHERE $5 AND NOT event_index.dispatched";

#[async_trait]
impl EventIndex for PostgresEventIndex {
    async fn add(&self, events: &[&Event], dispatched: bool) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&Event> = events.to_vec();
        // In id order, so concurrent batches take their row locks in the same order.
        sorted.sort_by_key(|e| e.id);
        sorted.dedup_by_key(|e| e.id);
        let ids: Vec<Uuid> = sorted.iter().map(|e| e.id.as_uuid()).collect();
        let types: Vec<&str> = sorted.iter().map(|e| e.event_type.as_str()).collect();
        let sources: Vec<Option<&str>> = sorted.iter().map(|e| e.source.as_deref()).collect();
        let tenants: Vec<Option<&str>> = sorted.iter().map(|e| e.tenant.as_ref().map(|t| t.as_str())).collect();
        sqlx::query(ADD)
            .bind(ids)
            .bind(types)
            .bind(sources)
            .bind(tenants)
            .bind(dispatched)
            .execute(&self.pool)
            .await
            .map_err(database)?;
        Ok(())
    }

    async fn dispatched(&self, ids: &[EventId]) -> Result<Vec<EventId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(EventId::as_uuid).collect();
        let rows: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM event_index WHERE id = ANY($1) AND dispatched")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(database)?;
        Ok(rows.into_iter().map(|(id,)| EventId::from(id)).collect())
    }

    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<EventId>> {
        let mut query = QueryBuilder::new("SELECT id FROM event_index WHERE true");
        if let Some(event_type) = &filter.event_type {
            query.push(" AND event_type = ").push_bind(event_type.as_str());
        }
        if let Some(source) = &filter.source {
            query.push(" AND source = ").push_bind(source.as_str());
        }
        if let Some(tenant) = &filter.tenant {
            query.push(" AND tenant = ").push_bind(tenant.as_str());
        }
        if let Some(before) = page.before {
            query.push(" AND id < ").push_bind(before);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(sql_count(page.limit.saturating_add(1)));
        query.push(" OFFSET ").push_bind(sql_count(page.offset));
        let ids: Vec<(Uuid,)> = query.build_query_as().fetch_all(&self.pool).await.map_err(database)?;
        let rest = PageRequest { offset: 0, before: None, ..*page };
        Ok(rest.apply(ids.into_iter().map(|(id,)| EventId::from(id)), EventId::as_uuid))
    }

    async fn count_by_type(&self, types: &[EventType], since: Timestamp) -> Result<Vec<u64>> {
        let names: Vec<&str> = types.iter().map(EventType::as_str).collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT event_type, count(*) FROM event_index WHERE event_type = ANY($1) AND id >= $2 GROUP BY event_type",
        )
        .bind(&names)
        .bind(EventId::first_at(since).as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(database)?;
        Ok(names
            .iter()
            .map(|name| rows.iter().find(|(t, _)| t == name).map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0)))
            .collect())
    }

    async fn prune(&self, before: Timestamp, limit: usize) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM event_index WHERE id IN \
                (SELECT id FROM event_index WHERE id < $1 ORDER BY id LIMIT $2)",
        )
        .bind(EventId::first_at(before).as_uuid())
        .bind(sql_count(limit))
        .execute(&self.pool)
        .await
        .map_err(database)?;
        Ok(done.rows_affected())
    }
}
