//! Tenants, their API keys and their portal links on one table (`TENANTS_TABLE`):
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | tenant | `TENANT#{id}` | `TENANT` | `feed` = "tenants" and `order` (its UUIDv7): the by-order index lists tenants newest first |
//! | API key | `TENANT#{id}` | `KEY#{keyId}` | the key's SHA-256 (hex), never the key; keys are a Query beside their tenant |
//! | key lookup | `KEYHASH#{sha256 hex}` | `KEY` | the key's tenant and id: finds a key by its digest with a GetItem |
//! | portal link | `PORTAL#{sha256 hex}` | `PORTAL` | expires by TTL (`expiresAt`, epoch seconds); taken by a DeleteItem |
//!
//! A key and its lookup item are written and deleted in one transaction. Only tenant items
//! carry `feed`, so the index holds nothing else.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, TransactWriteItem};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::query::{self, Item, NewestFirst};
use super::schema::{TableNames, index};
use super::{cancellation_codes, condition_held, corrupt, to_item, unavailable};
use relay_core::domain::{ApiKey, ApiKeyId, Page, PageRequest, PortalLink, Tenant, TenantId};
use relay_core::ports::TenantStore;
use relay_core::{Error, Result, Timestamp};

/// The `feed` of every tenant item: the by-order index's one partition.
const FEED: &str = "tenants";
const TENANT_SK: &str = "TENANT";
const KEY_SK_PREFIX: &str = "KEY#";
const LOOKUP_SK: &str = "KEY";
const PORTAL_SK: &str = "PORTAL";
/// The most actions in one DynamoDB transaction.
const MAX_TRANSACTION: usize = 100;

fn tenant_pk(id: &TenantId) -> String {
    format!("TENANT#{id}")
}

fn key_sk(id: ApiKeyId) -> String {
    format!("{KEY_SK_PREFIX}{id}")
}

fn lookup_pk(digest: &[u8; 32]) -> String {
    format!("KEYHASH#{}", hex::encode(digest))
}

fn portal_pk(digest: &[u8; 32]) -> String {
    format!("PORTAL#{}", hex::encode(digest))
}

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk)), ("sk".to_owned(), AttributeValue::S(sk.to_owned()))])
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// [`TenantStore`] on the tenants table (`TENANTS_TABLE`).
#[derive(Debug, Clone)]
pub struct DynamoTenantStore {
    client: Client,
    table: String,
}

impl DynamoTenantStore {
    /// The store on `tables.tenants`.
    pub fn new(client: Client, tables: &TableNames) -> Self {
        Self { client, table: tables.tenants.clone() }
    }

    /// A strongly consistent GetItem.
    async fn get_item(&self, key: Item) -> Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }

    /// Puts a tenant item on `condition`: false when the condition fails.
    async fn put_tenant(&self, tenant: &Tenant, condition: &str) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&TenantItem::new(tenant))?))
            .condition_expression(condition)
            .send()
            .await;
        condition_held(result)
    }

    /// Every key item of the tenant, oldest first (their sort keys hold UUIDv7 ids).
    async fn key_items(&self, tenant: &TenantId) -> Result<Vec<KeyItem>> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(tenant_pk(tenant)))
            .expression_attribute_values(":prefix", AttributeValue::S(KEY_SK_PREFIX.to_owned()))
            .consistent_read(true);
        query::all_items(query)
            .await?
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).map_err(|e| corrupt("API key", e)))
            .collect()
    }

    fn put(&self, item: Item) -> Result<TransactWriteItem> {
        let put = Put::builder().table_name(&self.table).set_item(Some(item)).build().map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete_action(&self, key: Item, condition: Option<&str>) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// The two deletes that remove a key: its item (when it still exists, if `exists`) and its
    /// lookup item.
    fn key_deletes(
        &self,
        tenant: &TenantId,
        id: ApiKeyId,
        digest: &[u8; 32],
        exists: bool,
    ) -> Result<[TransactWriteItem; 2]> {
        let condition = exists.then_some("attribute_exists(pk)");
        Ok([
            self.delete_action(key(tenant_pk(tenant), &key_sk(id)), condition)?,
            self.delete_action(key(lookup_pk(digest), LOOKUP_SK), None)?,
        ])
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantItem {
    pk: String,
    sk: String,
    feed: String,
    /// [`Tenant::order`]: the by-order index's sort key.
    order: String,
    tenant_id: String,
    name: String,
    is_active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_limit_per_minute: Option<u32>,
    max_webhooks: u32,
    created_at: i64,
    updated_at: i64,
}

impl TenantItem {
    fn new(t: &Tenant) -> Self {
        Self {
            pk: tenant_pk(&t.id),
            sk: TENANT_SK.into(),
            feed: FEED.into(),
            order: t.order.to_string(),
            tenant_id: t.id.as_str().into(),
            name: t.name.clone(),
            is_active: t.is_active,
            rate_limit_per_minute: t.rate_limit_per_minute,
            max_webhooks: t.max_webhooks,
            created_at: t.created_at.as_millis(),
            updated_at: t.updated_at.as_millis(),
        }
    }

    fn into_tenant(self) -> Result<Tenant> {
        Ok(Tenant {
            id: TenantId::parse(&self.tenant_id).map_err(|e| corrupt("tenant", e))?,
            name: self.name,
            is_active: self.is_active,
            rate_limit_per_minute: self.rate_limit_per_minute,
            max_webhooks: self.max_webhooks,
            created_at: Timestamp::from_millis(self.created_at),
            updated_at: Timestamp::from_millis(self.updated_at),
            order: Uuid::parse_str(&self.order).map_err(|e| corrupt("tenant", e))?,
        })
    }
}

fn tenant_from_item(item: Item) -> Result<Tenant> {
    serde_dynamo::from_item::<_, TenantItem>(item).map_err(|e| corrupt("tenant", e))?.into_tenant()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyItem {
    pk: String,
    sk: String,
    key_id: String,
    tenant: String,
    name: String,
    prefix: String,
    /// SHA-256 of the key, hex.
    digest: String,
    created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used_at: Option<i64>,
}

impl KeyItem {
    fn new(k: &ApiKey) -> Self {
        Self {
            pk: tenant_pk(&k.tenant),
            sk: key_sk(k.id),
            key_id: k.id.to_string(),
            tenant: k.tenant.as_str().into(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            digest: hex::encode(k.digest),
            created_at: k.created_at.as_millis(),
            last_used_at: k.last_used_at.map(Timestamp::as_millis),
        }
    }

    fn into_key(self) -> Result<ApiKey> {
        Ok(ApiKey {
            id: ApiKeyId::parse(&self.key_id).map_err(|e| corrupt("API key", e))?,
            tenant: TenantId::parse(&self.tenant).map_err(|e| corrupt("API key", e))?,
            name: self.name,
            prefix: self.prefix,
            digest: parse_digest(&self.digest).map_err(|e| corrupt("API key", e))?,
            created_at: Timestamp::from_millis(self.created_at),
            last_used_at: self.last_used_at.map(Timestamp::from_millis),
        })
    }
}

/// Where the key with this digest is: its tenant and id (the key item holds the rest).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LookupItem {
    pk: String,
    sk: String,
    tenant: String,
    key_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortalItem {
    pk: String,
    sk: String,
    tenant: String,
    /// When the link stops working, in milliseconds.
    expires_at_ms: i64,
    /// The TTL attribute (epoch seconds, rounded up): DynamoDB removes the item some time after.
    expires_at: i64,
}

fn parse_digest(hex_digest: &str) -> Result<[u8; 32], String> {
    hex::decode(hex_digest)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| "the digest is not 64 hex digits".to_owned())
}

#[async_trait]
impl TenantStore for DynamoTenantStore {
    async fn insert(&self, tenant: &Tenant) -> Result<bool> {
        self.put_tenant(tenant, "attribute_not_exists(pk)").await
    }

    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>> {
        self.get_item(key(tenant_pk(id), TENANT_SK)).await?.map(tenant_from_item).transpose()
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Tenant>> {
        let items = NewestFirst {
            table: &self.table,
            index: Some(index::TENANTS_BY_ORDER),
            partition: ("feed", FEED),
            sort_key: "order",
            before: page.before.map(|b| b.to_string()),
            filters: Vec::new(),
            want: page.offset + page.limit + 1,
        }
        .run(&self.client)
        .await?;
        let tenants = items.into_iter().map(tenant_from_item).collect::<Result<Vec<_>>>()?;
        Ok(page.apply(tenants.into_iter(), |t| t.order))
    }

    async fn update(&self, tenant: &Tenant) -> Result<bool> {
        self.put_tenant(tenant, "attribute_exists(pk)").await
    }

    /// The keys first (each with its lookup item, 50 a transaction), then the tenant item, so
    /// a deletion cut short leaves the tenant to delete again.
    async fn delete(&self, id: &TenantId) -> Result<bool> {
        let keys = self.key_items(id).await?.into_iter().map(KeyItem::into_key).collect::<Result<Vec<_>>>()?;
        for chunk in keys.chunks(MAX_TRANSACTION / 2) {
            let mut actions = Vec::with_capacity(chunk.len() * 2);
            for k in chunk {
                actions.extend(self.key_deletes(id, k.id, &k.digest, false)?);
            }
            self.client.transact_write_items().set_transact_items(Some(actions)).send().await.map_err(unavailable)?;
        }
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(id), TENANT_SK)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn insert_key(&self, api_key: &ApiKey) -> Result<()> {
        let lookup = LookupItem {
            pk: lookup_pk(&api_key.digest),
            sk: LOOKUP_SK.into(),
            tenant: api_key.tenant.as_str().into(),
            key_id: api_key.id.to_string(),
        };
        self.client
            .transact_write_items()
            .transact_items(self.put(to_item(&KeyItem::new(api_key))?)?)
            .transact_items(self.put(to_item(&lookup)?)?)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>> {
        self.key_items(tenant).await?.into_iter().map(KeyItem::into_key).collect()
    }

    /// Two consistent GetItems: the lookup item, then the key item it names.
    async fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKey>> {
        let Some(item) = self.get_item(key(lookup_pk(digest), LOOKUP_SK)).await? else { return Ok(None) };
        let lookup: LookupItem = serde_dynamo::from_item(item).map_err(|e| corrupt("API key lookup", e))?;
        let tenant = TenantId::parse(&lookup.tenant).map_err(|e| corrupt("API key lookup", e))?;
        let id = ApiKeyId::parse(&lookup.key_id).map_err(|e| corrupt("API key lookup", e))?;
        let Some(item) = self.get_item(key(tenant_pk(&tenant), &key_sk(id))).await? else { return Ok(None) };
        let api_key = serde_dynamo::from_item::<_, KeyItem>(item).map_err(|e| corrupt("API key", e))?.into_key()?;
        // A lookup item outliving its key's digest cannot be: the two are written together.
        Ok((&api_key.digest == digest).then_some(api_key))
    }

    async fn delete_key(&self, tenant: &TenantId, id: ApiKeyId) -> Result<bool> {
        let Some(item) = self.get_item(key(tenant_pk(tenant), &key_sk(id))).await? else { return Ok(false) };
        let api_key = serde_dynamo::from_item::<_, KeyItem>(item).map_err(|e| corrupt("API key", e))?.into_key()?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(self.key_deletes(tenant, id, &api_key.digest, true)?.into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // Deleted by someone else since it was read.
            Err(err) if cancellation_codes(&err).first().map(String::as_str) == Some("ConditionalCheckFailed") => {
                Ok(false)
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn touch_key(&self, tenant: &TenantId, id: ApiKeyId, at: Timestamp) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(tenant), &key_sk(id))))
            .update_expression("SET lastUsedAt = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", AttributeValue::N(at.as_millis().to_string()))
            .send()
            .await;
        // A key that is gone is not recreated.
        condition_held(result).map(drop)
    }

    async fn insert_portal_link(&self, link: &PortalLink) -> Result<()> {
        let millis = link.expires_at.as_millis();
        let item = PortalItem {
            pk: portal_pk(&link.digest),
            sk: PORTAL_SK.into(),
            tenant: link.tenant.as_str().into(),
            expires_at_ms: millis,
            expires_at: millis.div_euclid(1000) + i64::from(millis.rem_euclid(1000) != 0),
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&item)?))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// A DeleteItem returning the item it deleted: of concurrent takes, only one gets it.
    async fn take_portal_link(&self, digest: &[u8; 32]) -> Result<Option<PortalLink>> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(portal_pk(digest), PORTAL_SK)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.attributes.filter(|a| !a.is_empty()) else { return Ok(None) };
        let item: PortalItem = serde_dynamo::from_item(item).map_err(|e| corrupt("portal link", e))?;
        Ok(Some(PortalLink {
            digest: *digest,
            tenant: TenantId::parse(&item.tenant).map_err(|e| corrupt("portal link", e))?,
            expires_at: Timestamp::from_millis(item.expires_at_ms),
        }))
    }
}
