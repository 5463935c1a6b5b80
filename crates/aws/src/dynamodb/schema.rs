//! The tables as data: keys, indexes, TTL. `create_tables` builds them from this (LocalStack,
//! moto, tests), and a test checks `template.yaml` declares exactly the same.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};

use super::unavailable;
use relay_core::{Error, Result};

/// Index names the code queries.
pub mod index {
    /// events: `pendingDispatch` (a shard, "0" to "15") + `id`; sparse: only events whose
    /// dispatch message the queue refused. The events table has no other index: lists of
    /// events come from the event index in PostgreSQL (docs/scale.md).
    pub const EVENTS_PENDING_DISPATCH: &str = "pending-dispatch";
    /// webhooks: `tenant` + `webhookId` (webhook items only).
    pub const WEBHOOKS_BY_TENANT: &str = "by-tenant";
    /// tenants: `feed` (always "tenants") + `order` (tenant items only): every tenant, newest
    /// first.
    pub const TENANTS_BY_ORDER: &str = "by-order";
}

/// The attribute DynamoDB's TTL deletes expired items by (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expiresAt";

/// One global secondary index. Every key attribute is a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDef {
    pub name: &'static str,
    pub hash: &'static str,
    pub range: &'static str,
    /// `ALL` or `KEYS_ONLY`.
    pub projection: &'static str,
}

/// One table, under its logical id in `template.yaml`. Every key attribute is a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    pub logical_id: &'static str,
    pub hash: &'static str,
    pub range: Option<&'static str>,
    pub indexes: &'static [IndexDef],
    pub ttl: bool,
}

pub const EVENTS: TableDef = TableDef {
    logical_id: "EventsTable",
    hash: "id",
    range: None,
    indexes: &[IndexDef {
        name: index::EVENTS_PENDING_DISPATCH,
        hash: "pendingDispatch",
        range: "id",
        projection: "KEYS_ONLY",
    }],
    ttl: true,
};

pub const IDEMPOTENCY: TableDef =
    TableDef { logical_id: "IdempotencyTable", hash: "key", range: None, indexes: &[], ttl: true };

pub const WEBHOOKS: TableDef = TableDef {
    logical_id: "WebhooksTable",
    hash: "pk",
    range: Some("sk"),
    indexes: &[IndexDef { name: index::WEBHOOKS_BY_TENANT, hash: "tenant", range: "webhookId", projection: "ALL" }],
    ttl: false,
};

/// Tenants, their API keys (and a lookup item per key's digest) and their portal links.
pub const TENANTS: TableDef = TableDef {
    logical_id: "TenantsTable",
    hash: "pk",
    range: Some("sk"),
    indexes: &[IndexDef { name: index::TENANTS_BY_ORDER, hash: "feed", range: "order", projection: "ALL" }],
    // Portal links expire by TTL; tenants and keys have no expiry attribute.
    ttl: true,
};

pub const TABLES: [TableDef; 4] = [EVENTS, IDEMPOTENCY, WEBHOOKS, TENANTS];

impl TableDef {
    /// Every attribute a key of the table or of an index names, once.
    pub fn key_attributes(&self) -> Vec<&'static str> {
        let mut names = vec![self.hash];
        names.extend(self.range);
        for index in self.indexes {
            names.extend([index.hash, index.range]);
        }
        let mut seen = Vec::new();
        names.retain(|n| {
            if seen.contains(n) {
                false
            } else {
                seen.push(*n);
                true
            }
        });
        names
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub events: String,
    pub idempotency: String,
    pub webhooks: String,
    /// `TENANTS_TABLE`: tenants, API keys, portal links.
    pub tenants: String,
}

impl TableNames {
    /// `{prefix}-events`, `{prefix}-idempotency`, `{prefix}-webhooks`, `{prefix}-tenants`.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            events: format!("{prefix}-events"),
            idempotency: format!("{prefix}-idempotency"),
            webhooks: format!("{prefix}-webhooks"),
            tenants: format!("{prefix}-tenants"),
        }
    }
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(build_error)
}

async fn create(client: &Client, name: &str, def: &TableDef) -> Result<()> {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(def.hash, KeyType::Hash)?);
    if let Some(range) = def.range {
        request = request.key_schema(key(range, KeyType::Range)?);
    }
    for attribute in def.key_attributes() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)?,
        );
    }
    for index in def.indexes {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .key_schema(key(index.hash, KeyType::Hash)?)
                .key_schema(key(index.range, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::from(index.projection)).build())
                .build()
                .map_err(build_error)?,
        );
    }
    request.send().await.map_err(unavailable)?;
    if def.ttl {
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(build_error)?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Creates the four tables, on demand, with their indexes and TTL.
pub async fn create_tables(client: &Client, names: &TableNames) -> Result<()> {
    create(client, &names.events, &EVENTS).await?;
    create(client, &names.idempotency, &IDEMPOTENCY).await?;
    create(client, &names.webhooks, &WEBHOOKS).await?;
    create(client, &names.tenants, &TENANTS).await
}
