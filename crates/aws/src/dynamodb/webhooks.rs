use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::query::{self, Item, NewestFirst};
use super::schema::{TableNames, index};
use super::{corrupt, to_item, unavailable};
use relay_core::domain::{
    Channel, EventType, Ordering, Page, PageRequest, Schedule, TenantId, Webhook, WebhookId, WebhookUrl,
};
use relay_core::ports::WebhookStore;
use relay_core::sealing::SealedSecret;
use relay_core::{Error, Result, Timestamp};

const WEBHOOK_SK: &str = "WEBHOOK";

fn webhook_pk(id: WebhookId) -> String {
    format!("WEBHOOK#{id}")
}

fn subscription_pk(event_type: &str) -> String {
    format!("TYPE#{event_type}")
}

/// A subscription item's sort key starts with its tenant, so one tenant's subscribers of a type
/// are a key range of the type's partition (tenant ids cannot contain `#`, so no tenant's
/// prefix is another's). No deployment stored subscription items under the earlier sort key
/// (`WEBHOOK#{id}`), so there are none to migrate.
fn subscription_tenant_prefix(tenant: &TenantId) -> String {
    format!("TENANT#{tenant}#")
}

fn subscription_sk(tenant: &TenantId, id: WebhookId) -> String {
    format!("{}{}", subscription_tenant_prefix(tenant), webhook_pk(id))
}

/// A subscription item's key: (pk, sk).
type SubscriptionKey = (String, String);

/// [`WebhookStore`] on the webhooks table (`WEBHOOKS_TABLE`).
#[derive(Debug, Clone)]
pub struct DynamoWebhookStore {
    client: Client,
    table: String,
}

impl DynamoWebhookStore {
    /// The store on `tables.webhooks`.
    pub fn new(client: Client, tables: &TableNames) -> Self {
        Self { client, table: tables.webhooks.clone() }
    }

    fn key(id: WebhookId) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(webhook_pk(id))),
            ("sk".to_owned(), AttributeValue::S(WEBHOOK_SK.to_owned())),
        ])
    }

    fn subscription_key((pk, sk): &SubscriptionKey) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(pk.clone())),
            ("sk".to_owned(), AttributeValue::S(sk.clone())),
        ])
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem> {
        self.put_if(item, condition, None)
    }

    /// A put on `condition`, with `:revision` bound to `revision` when given.
    fn put_if(&self, item: Item, condition: Option<&str>, revision: Option<u64>) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_values(
                revision.map(|r| HashMap::from([(":revision".to_owned(), AttributeValue::N(r.to_string()))])),
            )
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete(&self, key: HashMap<String, AttributeValue>) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// A subscription item: its key and the webhook's id. Never a `tenant` attribute: the
    /// by-tenant index would then list (and count) subscription items as webhooks.
    fn subscription_put(&self, key: &SubscriptionKey, id: WebhookId) -> Result<TransactWriteItem> {
        let mut item = Self::subscription_key(key);
        item.insert("webhookId".into(), AttributeValue::S(id.to_string()));
        self.put(item, None)
    }

    /// Writes the webhook item and brings its subscription items from `before` to `after`
    /// (keys of [`subscriptions`]).
    /// A new item when `expected` is `None`; else a replacement of the item at revision
    /// `expected` (an item from before revisions has none: it counts as 0).
    async fn write(
        &self,
        webhook: &Webhook,
        expected: Option<u64>,
        before: &BTreeSet<SubscriptionKey>,
        after: &BTreeSet<SubscriptionKey>,
    ) -> Result<()> {
        let condition = match expected {
            None => "attribute_not_exists(pk)",
            Some(0) => "attribute_exists(pk) AND (attribute_not_exists(revision) OR revision = :revision)",
            Some(_) => "attribute_exists(pk) AND revision = :revision",
        };
        let mut actions = vec![self.put_if(to_item(&WebhookItem::new(webhook))?, Some(condition), expected)?];
        for removed in before.difference(after) {
            actions.push(self.delete(Self::subscription_key(removed))?);
        }
        for added in after.difference(before) {
            actions.push(self.subscription_put(added, webhook.id)?);
        }
        self.client.transact_write_items().set_transact_items(Some(actions)).send().await.map_err(|err| {
            // Cancelled: the condition failed, or another transaction wrote the item meanwhile.
            match err.as_service_error() {
                Some(e) if e.is_transaction_canceled_exception() && expected.is_some() => Error::webhook_changed(),
                _ => unavailable(err),
            }
        })?;
        Ok(())
    }

    async fn batch_get(&self, ids: Vec<String>) -> Result<Vec<Webhook>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(100) {
            let keys = chunk
                .iter()
                .map(|id| {
                    HashMap::from([
                        ("pk".to_owned(), AttributeValue::S(format!("WEBHOOK#{id}"))),
                        ("sk".to_owned(), AttributeValue::S(WEBHOOK_SK.to_owned())),
                    ])
                })
                .collect();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| Error::Internal(e.to_string()))?,
            );
            while let Some(keys) = request.take() {
                let output =
                    self.client.batch_get_item().request_items(&self.table, keys).send().await.map_err(unavailable)?;
                if let Some(items) = output.responses().and_then(|r| r.get(&self.table)) {
                    for item in items {
                        found.push(from_item(item.clone())?);
                    }
                }
                request = output
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .filter(|k| !k.keys().is_empty());
            }
        }
        Ok(found)
    }
}

fn from_item(item: Item) -> Result<Webhook> {
    serde_dynamo::from_item::<_, WebhookItem>(item).map_err(|e| corrupt("webhook", e))?.into_webhook()
}

/// The keys of a webhook's subscription items: one per event type while active, none else.
fn subscriptions(webhook: &Webhook) -> BTreeSet<SubscriptionKey> {
    if webhook.is_active {
        let sk = subscription_sk(&webhook.tenant, webhook.id);
        webhook.event_types.iter().map(|t| (subscription_pk(t.as_str()), sk.clone())).collect()
    } else {
        BTreeSet::new()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookItem {
    pk: String,
    sk: String,
    webhook_id: String,
    tenant: String,
    name: String,
    url: String,
    event_types: Vec<String>,
    /// Absent on items written before channels existed: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    channels: Vec<String>,
    /// The filter's JSON text; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filter: Option<String>,
    /// The custom headers as a JSON object's text; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    headers: Option<String>,
    /// The webhook's own timeout and retry schedule; absent: the relay's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_limit: Option<u32>,
    /// `ordered`; absent: unordered.
    #[serde(default, skip_serializing_if = "Ordering::is_unordered")]
    ordering: Ordering,
    is_active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    /// Sealed (`enc:v1:...`, see `relay_core::sealing`); a plain `whsec_` on items written before.
    secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_secret_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failing_since: Option<i64>,
    created_at: i64,
    updated_at: i64,
    /// Absent on items written before revisions existed: 0.
    #[serde(default)]
    revision: u64,
}

impl WebhookItem {
    fn new(w: &Webhook) -> Self {
        Self {
            pk: webhook_pk(w.id),
            sk: WEBHOOK_SK.into(),
            webhook_id: w.id.to_string(),
            tenant: w.tenant.as_str().into(),
            name: w.name.clone(),
            url: w.url.as_str().into(),
            event_types: w.event_types.iter().map(|t| t.as_str().to_owned()).collect(),
            channels: w.channels.iter().map(|c| c.as_str().to_owned()).collect(),
            filter: w.filter.as_ref().map(|f| f.as_json().to_string()),
            headers: (!w.headers.is_empty()).then(|| serde_json::to_string(&w.headers).unwrap_or_default()),
            timeout_ms: w.schedule.timeout_ms,
            max_retries: w.schedule.max_retries,
            retry_delay_ms: w.schedule.retry_delay_ms,
            max_in_flight: w.schedule.max_in_flight,
            rate_limit: w.schedule.rate_limit,
            ordering: w.schedule.ordering,
            is_active: w.is_active,
            disabled_reason: w.disabled_reason.clone(),
            secret: w.secret.as_str().into(),
            previous_secret: w.previous_secret.as_ref().map(|s| s.as_str().to_owned()),
            previous_secret_expires_at: w.previous_secret_expires_at.map(Timestamp::as_millis),
            failing_since: w.failing_since.map(Timestamp::as_millis),
            created_at: w.created_at.as_millis(),
            updated_at: w.updated_at.as_millis(),
            revision: w.revision,
        }
    }

    fn into_webhook(self) -> Result<Webhook> {
        let bad = |e: String| corrupt("webhook", e);
        Ok(Webhook {
            id: WebhookId::parse(&self.webhook_id).map_err(|e| bad(e.to_string()))?,
            tenant: TenantId::parse(&self.tenant).map_err(bad)?,
            name: self.name,
            url: WebhookUrl::parse(&self.url, false).map_err(bad)?,
            event_types: self
                .event_types
                .iter()
                .map(|t| EventType::from_store(t))
                .collect::<Result<_, _>>()
                .map_err(bad)?,
            channels: self.channels.iter().map(|c| Channel::parse(c)).collect::<Result<_, _>>().map_err(bad)?,
            filter: self.filter.as_deref().map(serde_json::from_str).transpose().map_err(|e| bad(e.to_string()))?,
            headers: self
                .headers
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| bad(e.to_string()))?
                .unwrap_or_default(),
            schedule: Schedule {
                timeout_ms: self.timeout_ms,
                max_retries: self.max_retries,
                retry_delay_ms: self.retry_delay_ms,
                max_in_flight: self.max_in_flight,
                rate_limit: self.rate_limit,
                ordering: self.ordering,
            },
            is_active: self.is_active,
            disabled_reason: self.disabled_reason,
            secret: SealedSecret::from_stored(self.secret),
            previous_secret: self.previous_secret.map(SealedSecret::from_stored),
            previous_secret_expires_at: self.previous_secret_expires_at.map(Timestamp::from_millis),
            failing_since: self.failing_since.map(Timestamp::from_millis),
            created_at: Timestamp::from_millis(self.created_at),
            updated_at: Timestamp::from_millis(self.updated_at),
            revision: self.revision,
        })
    }
}

#[async_trait]
impl WebhookStore for DynamoWebhookStore {
    async fn insert(&self, webhook: &Webhook) -> Result<()> {
        self.write(webhook, None, &BTreeSet::new(), &subscriptions(webhook)).await
    }

    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item().map(|item| from_item(item.clone())).transpose()
    }

    async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Webhook>> {
        let items = NewestFirst {
            table: &self.table,
            index: Some(index::WEBHOOKS_BY_TENANT),
            partition: ("tenant", tenant.as_str()),
            sort_key: "webhookId",
            before: page.before.map(|b| b.to_string()),
            filters: Vec::new(),
            want: page.offset + page.limit + 1,
        }
        .run(&self.client)
        .await?;
        let webhooks = items.into_iter().map(from_item).collect::<Result<Vec<_>>>()?;
        Ok(page.apply(webhooks.into_iter(), |w| w.id.as_uuid()))
    }

    async fn update(&self, webhook: &Webhook) -> Result<bool> {
        let Some(current) = self.get(webhook.id).await? else { return Ok(false) };
        if current.revision != webhook.revision {
            return Err(Error::webhook_changed());
        }
        let next = Webhook { revision: webhook.revision + 1, ..webhook.clone() };
        self.write(&next, Some(webhook.revision), &subscriptions(&current), &subscriptions(webhook)).await?;
        Ok(true)
    }

    async fn delete(&self, id: WebhookId) -> Result<bool> {
        let Some(current) = self.get(id).await? else { return Ok(false) };
        let mut actions = vec![self.delete(Self::key(id))?];
        for key in subscriptions(&current) {
            actions.push(self.delete(Self::subscription_key(&key))?);
        }
        self.client.transact_write_items().set_transact_items(Some(actions)).send().await.map_err(unavailable)?;
        Ok(true)
    }

    /// One Query on the type's subscription items: the tenant's key range, or the whole
    /// partition for a broadcast; then the webhooks themselves, 100 a read.
    async fn subscribed(&self, event_type: &EventType, tenant: Option<&TenantId>) -> Result<Vec<Webhook>> {
        let pk = subscription_pk(event_type.as_str());
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .consistent_read(true);
        let query = match tenant {
            Some(tenant) => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S(subscription_tenant_prefix(tenant))),
            None => query.key_condition_expression("pk = :pk"),
        };
        let ids: Vec<String> =
            query::all_items(query).await?.iter().filter_map(|i| i.get("webhookId")?.as_s().ok().cloned()).collect();
        let mut webhooks: Vec<Webhook> = self
            .batch_get(ids)
            .await?
            .into_iter()
            .filter(|w| w.wants(event_type) && tenant.is_none_or(|t| &w.tenant == t))
            .collect();
        // As the index is sorted (a batch read answers in any order).
        webhooks.sort_by(|a, b| (&a.tenant, a.id).cmp(&(&b.tenant, b.id)));
        Ok(webhooks)
    }

    /// A COUNT Query on the by-tenant index, which holds webhook items only.
    async fn count(&self, tenant: &TenantId) -> Result<u64> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index::WEBHOOKS_BY_TENANT)
            .key_condition_expression("#t = :t")
            .expression_attribute_names("#t", "tenant")
            .expression_attribute_values(":t", AttributeValue::S(tenant.as_str().to_owned()));
        query::count(query).await
    }
}
