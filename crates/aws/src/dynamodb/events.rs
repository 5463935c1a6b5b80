use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use serde::{Deserialize, Serialize};

use super::query::Item;
use super::schema::{TableNames, index};
use super::{condition_held, corrupt, to_item, unavailable};
use relay_core::domain::{Channel, Event, EventId, EventType, Page, PageRequest, Payload, TenantId};
use relay_core::ports::{EventFilter, EventStore, IdempotencyRecord, Insert};
use relay_core::{Error, Result, Timestamp};

/// The partitions of the sparse `pending-dispatch` index: an event marked undispatched goes to
/// the one its id picks, so a queue outage at full rate spreads its marks over all of them.
pub const PENDING_SHARDS: u8 = 16;

/// Keys one BatchGetItem reads at most.
const BATCH_GET: usize = 100;

#[derive(Debug, Clone)]
pub struct DynamoEventStore {
    client: Client,
    events: String,
    idempotency: String,
    /// How long an event is kept (its TTL).
    retention: Duration,
}

impl DynamoEventStore {
    pub fn new(client: Client, tables: &TableNames, retention: Duration) -> Self {
        Self { client, events: tables.events.clone(), idempotency: tables.idempotency.clone(), retention }
    }

    /// A strongly consistent read of one item by its string key.
    async fn get_item<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        key: (&str, String),
        what: &str,
    ) -> Result<Option<T>> {
        let output = self
            .client
            .get_item()
            .table_name(table)
            .key(key.0, AttributeValue::S(key.1))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item().map(|item| serde_dynamo::from_item(item.clone()).map_err(|e| corrupt(what, e))).transpose()
    }

    async fn idempotency_record(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        let item: Option<IdempotencyItem> =
            self.get_item(&self.idempotency, ("key", key.to_owned()), "idempotency").await?;
        item.map(IdempotencyItem::into_record).transpose()
    }

    /// Writes the event, unless an event with its id exists (then `false`).
    async fn put_event(&self, event: &Event) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.events)
            .set_item(Some(to_item(&EventItem::new(event, self.retention))?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        condition_held(result)
    }

    /// Takes the idempotency key for `record`, unless a live record holds it (then that one).
    async fn take_key(&self, record: &IdempotencyRecord) -> Result<Option<IdempotencyRecord>> {
        let item = to_item(&IdempotencyItem {
            key: record.key.clone(),
            fingerprint: record.fingerprint.clone(),
            event_id: record.event_id.to_string(),
            expires_at: record.expires_at.as_secs(),
        })?;
        for attempt in 0..5u64 {
            let now = Timestamp::now().as_secs();
            let result = self
                .client
                .put_item()
                .table_name(&self.idempotency)
                .set_item(Some(item.clone()))
                // Taken unless the record there has expired (TTL deletes lazily).
                .condition_expression("attribute_not_exists(#k) OR #exp <= :now")
                .expression_attribute_names("#k", "key")
                .expression_attribute_names("#exp", "expiresAt")
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .send()
                .await;
            if condition_held(result)? {
                return Ok(None);
            }
            if let Some(existing) = self.idempotency_record(&record.key).await?
                && existing.expires_at.as_secs() > now
            {
                return Ok(Some(existing));
            }
            // The record expired (or was removed) between the two calls: again.
            tokio::time::sleep(Duration::from_millis(10 * (attempt + 1))).await;
        }
        Err(Error::unavailable("database", "the idempotency key is contended; try again"))
    }

    /// The items of up to [`BATCH_GET`] events, strongly consistent, with what DynamoDB left
    /// unprocessed asked again.
    async fn batch_get(&self, ids: &[EventId]) -> Result<Vec<Item>> {
        let keys: Vec<Item> =
            ids.iter().map(|id| Item::from([("id".to_owned(), AttributeValue::S(id.to_string()))])).collect();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| Error::Internal(e.to_string()))?,
        );
        let mut items = Vec::with_capacity(ids.len());
        for attempt in 0..8u64 {
            let Some(request) = pending.take() else { break };
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(5))).await;
            }
            let output =
                self.client.batch_get_item().request_items(&self.events, request).send().await.map_err(unavailable)?;
            if let Some(found) = output.responses().and_then(|r| r.get(&self.events)) {
                items.extend(found.iter().cloned());
            }
            pending =
                output.unprocessed_keys().and_then(|u| u.get(&self.events)).filter(|k| !k.keys().is_empty()).cloned();
        }
        if pending.is_some() {
            return Err(Error::unavailable("database", "DynamoDB left keys of a batch read unprocessed"));
        }
        Ok(items)
    }

    /// Sets or removes the event's `pendingDispatch` mark (an event that is gone is left so).
    async fn pending_mark(&self, id: EventId, pending: bool) -> Result<()> {
        let update = self
            .client
            .update_item()
            .table_name(&self.events)
            .key("id", AttributeValue::S(id.to_string()))
            .condition_expression("attribute_exists(id)");
        let update = if pending {
            update
                .update_expression("SET pendingDispatch = :shard")
                .expression_attribute_values(":shard", AttributeValue::S(id.shard(PENDING_SHARDS).to_string()))
        } else {
            update.update_expression("REMOVE pendingDispatch")
        };
        condition_held(update.send().await).map(drop)
    }
}

fn no_lists() -> Error {
    Error::Internal("DynamoDB keeps events by id only: lists and counts come from the event index".into())
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventItem {
    id: String,
    event_type: String,
    event_name: String,
    /// The payload as JSON text, exactly as delivered (`domain::Payload`).
    payload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// The tenant the event is for; absent: a broadcast (and on items from before tenants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    channels: Vec<String>,
    created_at: i64,
    /// The `pending-dispatch` shard, while the event is marked undispatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_dispatch: Option<String>,
    expires_at: i64,
}

impl EventItem {
    fn new(event: &Event, retention: Duration) -> Self {
        Self {
            id: event.id.to_string(),
            event_type: event.event_type.as_str().into(),
            event_name: event.event_name.clone(),
            payload: event.payload.as_str().to_owned(),
            source: event.source.clone(),
            tenant: event.tenant.as_ref().map(|t| t.as_str().to_owned()),
            channels: event.channels.iter().map(|c| c.as_str().to_owned()).collect(),
            created_at: event.created_at.as_millis(),
            pending_dispatch: None,
            expires_at: (event.created_at + retention).as_secs(),
        }
    }

    fn into_event(self) -> Result<Event> {
        let payload = Payload::from_stored(&self.payload).map_err(|e| corrupt("event", e))?;
        Ok(Event {
            id: EventId::parse(&self.id).map_err(|e| corrupt("event", e))?,
            event_type: EventType::from_store(&self.event_type).map_err(|e| corrupt("event", e))?,
            event_name: self.event_name,
            payload,
            source: self.source,
            tenant: self.tenant.as_deref().map(TenantId::parse).transpose().map_err(|e| corrupt("event", e))?,
            channels: self
                .channels
                .iter()
                .map(|c| Channel::parse(c))
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt("event", e))?,
            created_at: Timestamp::from_millis(self.created_at),
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdempotencyItem {
    key: String,
    fingerprint: String,
    event_id: String,
    expires_at: i64,
}

impl IdempotencyItem {
    fn into_record(self) -> Result<IdempotencyRecord> {
        Ok(IdempotencyRecord {
            key: self.key,
            fingerprint: self.fingerprint,
            event_id: EventId::parse(&self.event_id).map_err(|e| corrupt("idempotency", e))?,
            expires_at: Timestamp::from_millis(self.expires_at.saturating_mul(1000)),
        })
    }
}

/// Each event is one item under its id; with an idempotency key, the key's item is written
/// first (a conditional put) and the event second, not in a transaction (which would cost
/// twice the write units): a key whose event is missing is mended by the caller's retry.
#[async_trait]
impl EventStore for DynamoEventStore {
    async fn insert(&self, event: &Event, idempotency: Option<&IdempotencyRecord>) -> Result<Insert> {
        if let Some(record) = idempotency
            && let Some(existing) = self.take_key(record).await?
        {
            return Ok(Insert::Duplicate(existing));
        }
        if !self.put_event(event).await? {
            return Err(Error::Internal(format!("event {} exists already", event.id)));
        }
        Ok(Insert::Created)
    }

    async fn get(&self, id: EventId) -> Result<Option<Event>> {
        let item: Option<EventItem> = self.get_item(&self.events, ("id", id.to_string()), "event").await?;
        item.map(EventItem::into_event).transpose()
    }

    async fn get_many(&self, ids: &[EventId]) -> Result<Vec<Event>> {
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        let batches = futures_util::future::join_all(unique.chunks(BATCH_GET).map(|ids| self.batch_get(ids))).await;
        let mut events = Vec::with_capacity(unique.len());
        for items in batches {
            for item in items? {
                events.push(
                    serde_dynamo::from_item::<_, EventItem>(item).map_err(|e| corrupt("event", e))?.into_event()?,
                );
            }
        }
        Ok(events)
    }

    async fn list(&self, _filter: &EventFilter, _page: &PageRequest) -> Result<Page<Event>> {
        Err(no_lists())
    }

    async fn mark_undispatched(&self, id: EventId) -> Result<()> {
        self.pending_mark(id, true).await
    }

    async fn mark_enqueued(&self, id: EventId) -> Result<()> {
        self.pending_mark(id, false).await
    }

    /// One Query per shard of the `pending-dispatch` index, merged oldest first.
    async fn undispatched(&self, created_before: Timestamp, limit: usize) -> Result<Vec<EventId>> {
        let bound = EventId::first_at(created_before).to_string();
        let limit = limit.clamp(1, 1000);
        let shards = futures_util::future::join_all((0..PENDING_SHARDS).map(|shard| {
            self.client
                .query()
                .table_name(&self.events)
                .index_name(index::EVENTS_PENDING_DISPATCH)
                .key_condition_expression("pendingDispatch = :p AND id < :bound")
                .expression_attribute_values(":p", AttributeValue::S(shard.to_string()))
                .expression_attribute_values(":bound", AttributeValue::S(bound.clone()))
                .limit(i32::try_from(limit).unwrap_or(1000))
                .send()
        }))
        .await;
        let mut ids = Vec::new();
        for output in shards {
            for item in output.map_err(unavailable)?.items() {
                if let Some(id) = item.get("id").and_then(|id| id.as_s().ok()) {
                    ids.push(EventId::parse(id).map_err(|e| corrupt("event", e))?);
                }
            }
        }
        ids.sort();
        ids.truncate(limit);
        Ok(ids)
    }

    async fn count_by_type(&self, _types: &[EventType], _since: Timestamp) -> Result<Vec<u64>> {
        Err(no_lists())
    }
}
