//! The tables: names, keys and indexes, and creating them (for LocalStack, moto and tests).
//! `template.yaml` declares the same; a test checks the two agree.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};

use super::unavailable;
use crate::{Error, Result};

/// Index names the code queries.
pub mod index {
    /// events: `feed` (always "events") + `id`: every event, newest first.
    pub const EVENTS_BY_TIME: &str = "by-time";
    /// events: `eventType` + `id`.
    pub const EVENTS_BY_TYPE: &str = "by-type";
    /// events: `source` + `id` (sparse: events with a source).
    pub const EVENTS_BY_SOURCE: &str = "by-source";
    /// events: `pendingDispatch` + `id` (sparse: events not yet enqueued).
    pub const EVENTS_PENDING_DISPATCH: &str = "pending-dispatch";
    /// webhooks: `tenant` + `webhookId` (webhook items only).
    pub const WEBHOOKS_BY_TENANT: &str = "by-tenant";
}

/// The attribute DynamoDB's TTL deletes expired items by (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expiresAt";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub events: String,
    pub idempotency: String,
    pub webhooks: String,
}

impl TableNames {
    /// `{prefix}-events`, `{prefix}-idempotency`, `{prefix}-webhooks`.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            events: format!("{prefix}-events"),
            idempotency: format!("{prefix}-idempotency"),
            webhooks: format!("{prefix}-webhooks"),
        }
    }
}

fn attr(name: &str) -> Result<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| Error::Internal(e.to_string()))
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(|e| Error::Internal(e.to_string()))
}

fn gsi(name: &str, hash: &str, range: &str, projection: ProjectionType) -> Result<GlobalSecondaryIndex> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .projection(Projection::builder().projection_type(projection).build())
        .build()
        .map_err(|e| Error::Internal(e.to_string()))
}

async fn enable_ttl(client: &Client, table: &str) -> Result<()> {
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(TTL_ATTRIBUTE)
        .build()
        .map_err(|e| Error::Internal(e.to_string()))?;
    client.update_time_to_live().table_name(table).time_to_live_specification(spec).send().await.map_err(unavailable)?;
    Ok(())
}

/// Creates the three tables, on demand, with their indexes and TTL.
pub async fn create_tables(client: &Client, names: &TableNames) -> Result<()> {
    client
        .create_table()
        .table_name(&names.events)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("id", KeyType::Hash)?)
        .attribute_definitions(attr("id")?)
        .attribute_definitions(attr("feed")?)
        .attribute_definitions(attr("eventType")?)
        .attribute_definitions(attr("source")?)
        .attribute_definitions(attr("pendingDispatch")?)
        .global_secondary_indexes(gsi(index::EVENTS_BY_TIME, "feed", "id", ProjectionType::All)?)
        .global_secondary_indexes(gsi(index::EVENTS_BY_TYPE, "eventType", "id", ProjectionType::All)?)
        .global_secondary_indexes(gsi(index::EVENTS_BY_SOURCE, "source", "id", ProjectionType::All)?)
        .global_secondary_indexes(gsi(index::EVENTS_PENDING_DISPATCH, "pendingDispatch", "id", ProjectionType::KeysOnly)?)
        .send()
        .await
        .map_err(unavailable)?;
    enable_ttl(client, &names.events).await?;

    client
        .create_table()
        .table_name(&names.idempotency)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("key", KeyType::Hash)?)
        .attribute_definitions(attr("key")?)
        .send()
        .await
        .map_err(unavailable)?;
    enable_ttl(client, &names.idempotency).await?;

    client
        .create_table()
        .table_name(&names.webhooks)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .attribute_definitions(attr("tenant")?)
        .attribute_definitions(attr("webhookId")?)
        .global_secondary_indexes(gsi(index::WEBHOOKS_BY_TENANT, "tenant", "webhookId", ProjectionType::All)?)
        .send()
        .await
        .map_err(unavailable)?;
    Ok(())
}
