use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::query::{self, NewestFirst};
use super::schema::{TableNames, index};
use super::{cancellation_codes, condition_held, corrupt, to_item, unavailable};
use relay_core::domain::{Channel, Event, EventId, EventType, Page, PageRequest, Payload, TenantId};
use relay_core::ports::{EventFilter, EventStore, IdempotencyRecord, Insert};
use relay_core::{Error, Result, Timestamp};

/// The `feed` of every event: the by-time index's one partition.
const FEED: &str = "events";
const PENDING: &str = "1";

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

    fn event_put(&self, event: &Event) -> Result<Put> {
        Put::builder()
            .table_name(&self.events)
            .set_item(Some(to_item(&EventItem::new(event, self.retention))?))
            .condition_expression("attribute_not_exists(id)")
            .build()
            .map_err(|e| Error::Internal(e.to_string()))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventItem {
    id: String,
    feed: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enqueued_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_dispatch: Option<String>,
    expires_at: i64,
}

impl EventItem {
    fn new(event: &Event, retention: Duration) -> Self {
        Self {
            id: event.id.to_string(),
            feed: FEED.into(),
            event_type: event.event_type.as_str().into(),
            event_name: event.event_name.clone(),
            payload: event.payload.as_str().to_owned(),
            source: event.source.clone(),
            tenant: event.tenant.as_ref().map(|t| t.as_str().to_owned()),
            channels: event.channels.iter().map(|c| c.as_str().to_owned()).collect(),
            created_at: event.created_at.as_millis(),
            enqueued_at: event.enqueued_at.map(Timestamp::as_millis),
            pending_dispatch: event.enqueued_at.is_none().then(|| PENDING.into()),
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
            enqueued_at: self.enqueued_at.map(Timestamp::from_millis),
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

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn insert(&self, event: &Event, idempotency: Option<&IdempotencyRecord>) -> Result<Insert> {
        let Some(record) = idempotency else {
            let put = self.event_put(event)?;
            self.client
                .put_item()
                .table_name(put.table_name())
                .set_item(Some(put.item().clone()))
                .condition_expression("attribute_not_exists(id)")
                .send()
                .await
                .map_err(unavailable)?;
            return Ok(Insert::Created);
        };
        let key_item = to_item(&IdempotencyItem {
            key: record.key.clone(),
            fingerprint: record.fingerprint.clone(),
            event_id: record.event_id.to_string(),
            expires_at: record.expires_at.as_secs(),
        })?;
        for attempt in 0..5u64 {
            let now = Timestamp::now().as_secs();
            let key_put = Put::builder()
                .table_name(&self.idempotency)
                .set_item(Some(key_item.clone()))
                // Taken unless the record there has expired (TTL deletes lazily).
                .condition_expression("attribute_not_exists(#k) OR #exp <= :now")
                .expression_attribute_names("#k", "key")
                .expression_attribute_names("#exp", "expiresAt")
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .build()
                .map_err(|e| Error::Internal(e.to_string()))?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(key_put).build())
                .transact_items(TransactWriteItem::builder().put(self.event_put(event)?).build())
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Insert::Created),
                Err(err) => err,
            };
            let codes = cancellation_codes(&err);
            if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                if let Some(existing) = self.idempotency_record(&record.key).await?
                    && existing.expires_at.as_secs() > now
                {
                    return Ok(Insert::Duplicate(existing));
                }
            } else if !codes.iter().any(|c| c == "TransactionConflict") {
                return Err(unavailable(err));
            }
            // A concurrent writer of the same key, or a record that expired meanwhile: again.
            tokio::time::sleep(Duration::from_millis(10 * (attempt + 1))).await;
        }
        Err(Error::unavailable("database", "the idempotency key is contended; try again"))
    }

    async fn get(&self, id: EventId) -> Result<Option<Event>> {
        let item: Option<EventItem> = self.get_item(&self.events, ("id", id.to_string()), "event").await?;
        item.map(EventItem::into_event).transpose()
    }

    /// One Query on the narrowest index the filter allows (type, else source, else time); the
    /// other filters (source, tenant) are filter expressions on it.
    async fn list(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<Event>> {
        let source = filter.source.as_deref();
        let (index, partition, mut filters) = match (&filter.event_type, source) {
            (Some(t), s) => {
                (index::EVENTS_BY_TYPE, ("eventType", t.as_str()), Vec::from_iter(s.map(|s| ("source", s))))
            }
            (None, Some(s)) => (index::EVENTS_BY_SOURCE, ("source", s), Vec::new()),
            (None, None) => (index::EVENTS_BY_TIME, ("feed", FEED), Vec::new()),
        };
        filters.extend(filter.tenant.as_ref().map(|t| ("tenant", t.as_str())));
        let items = NewestFirst {
            table: &self.events,
            index: Some(index),
            partition,
            sort_key: "id",
            before: page.before.map(|b| b.to_string()),
            filters,
            want: page.offset + page.limit + 1,
        }
        .run(&self.client)
        .await?;
        let events = items
            .into_iter()
            .map(|item| serde_dynamo::from_item::<_, EventItem>(item).map_err(|e| corrupt("event", e))?.into_event())
            .collect::<Result<Vec<_>>>()?;
        Ok(page.apply(events.into_iter(), |e| e.id.as_uuid()))
    }

    async fn undispatched(&self, created_before: Timestamp, limit: usize) -> Result<Vec<EventId>> {
        let bound = EventId::first_at(created_before).to_string();
        let output = self
            .client
            .query()
            .table_name(&self.events)
            .index_name(index::EVENTS_PENDING_DISPATCH)
            .key_condition_expression("pendingDispatch = :p AND id < :bound")
            .expression_attribute_values(":p", AttributeValue::S(PENDING.into()))
            .expression_attribute_values(":bound", AttributeValue::S(bound))
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(unavailable)?;
        output
            .items()
            .iter()
            .filter_map(|item| item.get("id")?.as_s().ok())
            .map(|id| EventId::parse(id).map_err(|e| corrupt("event", e)))
            .collect()
    }

    /// One COUNT query per type on the by-type index, from the first id of `since` on.
    async fn count_by_type(&self, types: &[EventType], since: Timestamp) -> Result<Vec<u64>> {
        let bound = EventId::first_at(since).to_string();
        let mut counts = Vec::with_capacity(types.len());
        for event_type in types {
            let query = self
                .client
                .query()
                .table_name(&self.events)
                .index_name(index::EVENTS_BY_TYPE)
                .key_condition_expression("eventType = :t AND id >= :bound")
                .expression_attribute_values(":t", AttributeValue::S(event_type.as_str().to_owned()))
                .expression_attribute_values(":bound", AttributeValue::S(bound.clone()));
            counts.push(query::count(query).await?);
        }
        Ok(counts)
    }

    async fn mark_enqueued(&self, id: EventId, at: Timestamp) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.events)
            .key("id", AttributeValue::S(id.to_string()))
            .update_expression("SET enqueuedAt = :at REMOVE pendingDispatch")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_values(":at", AttributeValue::N(at.as_millis().to_string()))
            .send()
            .await;
        // An event that is gone is not recreated.
        condition_held(result).map(drop)
    }
}
