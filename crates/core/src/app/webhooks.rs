use std::sync::Arc;
use std::time::Duration;

use super::Deliverer;
use crate::auth::Directory;
use crate::domain::DEFAULT_MAX_WEBHOOKS;
use crate::domain::{
    Attempt, Delivery, DeliveryKey, DeliveryStatus, Event, EventId, EventType, EventTypeRegistry, NewWebhook, Page,
    PageRequest, TenantId, Trigger, Webhook, WebhookId, WebhookInput, WebhookPatch, WebhookRules, WebhookSecret,
    WebhookUrl, encode_cursor,
};
use crate::ports::{Circuit, DeliveryLog, EventStore, WebhookStore};
use crate::sealing::SecretKeys;
use crate::settings::{DeliverySettings, WebhookSettings};
use crate::ssrf::SsrfGuard;
use crate::{Error, Result, Timestamp};

/// The most deliveries one recovery puts back on the queue.
pub const MAX_RECOVER: usize = 100_000;

/// A delivery with its attempt log, as the API shows it.
#[derive(Debug, Clone)]
pub struct DeliveryWithAttempts {
    pub delivery: Delivery,
    pub attempts: Vec<Attempt>,
}

/// One event as a tenant sees it: the event, and the tenant's deliveries of it, each with its
/// webhook (`None` when the webhook was deleted since) and attempt log.
#[derive(Debug, Clone)]
pub struct TenantEvent {
    pub event: Event,
    pub deliveries: Vec<(Option<Webhook>, DeliveryWithAttempts)>,
}

/// How many pages of the delivery log one filtered events page reads at most.
const EVENT_SCAN_PAGES: usize = 10;

/// How often [`modify_webhook`] reads again after a concurrent write.
const MODIFY_ATTEMPTS: usize = 5;

/// Reads webhook `id`, lets `change` edit it, and writes it back at the revision it read; when
/// another writer got there first, reads again and redoes the change (up to
/// [`MODIFY_ATTEMPTS`] times). `change` returns false when there is nothing to write. Every
/// write seals the secrets again with the first of `keys` where they are plain or sealed with
/// an older key. Returns the webhook as written (or as found), `None` when it does not exist.
pub async fn modify_webhook(
    store: &dyn WebhookStore,
    keys: &SecretKeys,
    id: WebhookId,
    mut change: impl FnMut(&mut Webhook) -> Result<bool>,
) -> Result<Option<Webhook>> {
    let mut attempts = 0;
    loop {
        let Some(mut webhook) = store.get(id).await? else { return Ok(None) };
        if !change(&mut webhook)? {
            return Ok(Some(webhook));
        }
        webhook.reseal(keys);
        match store.update(&webhook).await {
            Ok(true) => return Ok(Some(webhook)),
            Ok(false) => return Ok(None),
            Err(Error::Conflict { .. }) if attempts + 1 < MODIFY_ATTEMPTS => attempts += 1,
            Err(err) => return Err(err),
        }
    }
}

/// Managing one tenant's webhooks, reading their delivery log, and retrying by hand. Every
/// call is scoped to a tenant: another tenant's webhook is "not found".
#[derive(Clone, Debug)]
pub struct WebhookAdmin {
    webhooks: Arc<dyn WebhookStore>,
    deliveries: Arc<dyn DeliveryLog>,
    events: Arc<dyn EventStore>,
    deliverer: Deliverer,
    policy: AdminPolicy,
    directory: Arc<Directory>,
}

/// What a webhook's deliveries are held to now, besides its stored fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookState {
    pub circuit: Circuit,
    /// Its `maxInFlight`, or `WEBHOOK_MAX_IN_FLIGHT` when it has none.
    pub max_in_flight: u32,
}

/// The rules webhook administration enforces.
#[derive(Clone, Debug)]
pub struct AdminPolicy {
    pub registry: Arc<EventTypeRegistry>,
    pub require_https: bool,
    pub guard: Arc<SsrfGuard>,
    /// How long a rotated-out secret keeps signing.
    pub secret_grace: Duration,
    /// The keys webhook secrets are sealed with.
    pub keys: SecretKeys,
    /// `WEBHOOK_TIMEOUT`: the longest attempt timeout a webhook may ask for.
    pub max_timeout: Duration,
    /// `WEBHOOK_MAX_RETRIES`: the most retries a webhook may ask for (the queues' receive
    /// counts before the dead-letter queue are sized for it).
    pub max_retries: u32,
}

impl AdminPolicy {
    /// `delivery` bounds a webhook's own schedule: `timeoutMs` up to `WEBHOOK_TIMEOUT`,
    /// `maxRetries` up to `WEBHOOK_MAX_RETRIES`.
    pub fn new(
        registry: Arc<EventTypeRegistry>,
        settings: &WebhookSettings,
        keys: SecretKeys,
        delivery: &DeliverySettings,
    ) -> Self {
        Self {
            registry,
            require_https: settings.require_https,
            guard: Arc::new(SsrfGuard::new(settings.allowed_cidrs.clone())),
            secret_grace: settings.secret_grace,
            keys,
            max_timeout: delivery.webhook_timeout,
            max_retries: delivery.retry.max_retries,
        }
    }
}

impl WebhookAdmin {
    pub fn new(
        webhooks: Arc<dyn WebhookStore>,
        deliveries: Arc<dyn DeliveryLog>,
        events: Arc<dyn EventStore>,
        deliverer: Deliverer,
        policy: AdminPolicy,
        directory: Arc<Directory>,
    ) -> Self {
        Self { webhooks, deliveries, events, deliverer, policy, directory }
    }

    fn rules(&self) -> WebhookRules<'_> {
        WebhookRules {
            registry: &self.policy.registry,
            require_https: self.policy.require_https,
            max_timeout: self.policy.max_timeout,
            max_retries: self.policy.max_retries,
        }
    }

    /// A URL whose host is a literal address the guard refuses can never be delivered to:
    /// say so now rather than at the first delivery.
    fn check_reachable(&self, url: &WebhookUrl) -> Result<()> {
        self.policy.guard.check_literal(url.as_url()).map_err(|blocked| Error::validation("url", blocked.to_string()))
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn create(&self, tenant: &TenantId, input: WebhookInput) -> Result<Webhook> {
        let new = NewWebhook::parse(input, self.rules())?;
        self.check_reachable(&new.url)?;
        let max = self.directory.tenant(tenant).await?.map_or(DEFAULT_MAX_WEBHOOKS, |t| t.max_webhooks);
        if self.webhooks.count(tenant).await? >= u64::from(max) {
            return Err(Error::validation(
                "maxWebhooks",
                format!("the tenant has {max} webhooks, the most it may have (its maxWebhooks)"),
            ));
        }
        let webhook = Webhook::new(tenant.clone(), new, Timestamp::now(), &self.policy.keys)?;
        self.webhooks.insert(&webhook).await?;
        tracing::info!(webhook_id = %webhook.id, "webhook created");
        Ok(webhook)
    }

    /// The webhook's current signing secret, opened to show it to its tenant.
    pub fn secret(&self, webhook: &Webhook) -> Result<WebhookSecret> {
        self.policy.keys.open(&webhook.secret, webhook.id)
    }

    pub async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Webhook>> {
        self.webhooks.list(tenant, page).await
    }

    /// Applies `change` to the tenant's webhook `id` with [`modify_webhook`]; another tenant's
    /// webhook is not found.
    async fn modify_own(
        &self,
        tenant: &TenantId,
        id: WebhookId,
        mut change: impl FnMut(&mut Webhook),
    ) -> Result<Webhook> {
        modify_webhook(self.webhooks.as_ref(), &self.policy.keys, id, |w| {
            if &w.tenant != tenant {
                return Err(Error::NotFound("webhook"));
            }
            change(w);
            Ok(true)
        })
        .await?
        .ok_or(Error::NotFound("webhook"))
    }

    /// What each webhook's deliveries are held to now: its breaker and its cap in flight.
    pub async fn states(&self, webhooks: &[Webhook]) -> Vec<WebhookState> {
        let ids: Vec<WebhookId> = webhooks.iter().map(|w| w.id).collect();
        let circuits = self.deliverer.circuits(&ids).await;
        webhooks
            .iter()
            .zip(circuits)
            .map(|(webhook, circuit)| WebhookState {
                circuit,
                max_in_flight: webhook.schedule.max_in_flight.unwrap_or(self.deliverer.max_in_flight()),
            })
            .collect()
    }

    /// [`WebhookAdmin::states`] of one webhook.
    pub async fn state(&self, webhook: &Webhook) -> WebhookState {
        let mut states = self.states(std::slice::from_ref(webhook)).await;
        states.pop().unwrap_or(WebhookState { circuit: Circuit::CLOSED, max_in_flight: self.deliverer.max_in_flight() })
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<Webhook> {
        let id = WebhookId::parse(id)?;
        match self.webhooks.get(id).await? {
            Some(webhook) if &webhook.tenant == tenant => Ok(webhook),
            _ => Err(Error::NotFound("webhook")),
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant, webhook_id = id))]
    pub async fn update(&self, tenant: &TenantId, id: &str, input: WebhookInput) -> Result<Webhook> {
        let id = WebhookId::parse(id)?;
        let patch = WebhookPatch::parse(input, self.rules())?;
        if let Some(url) = &patch.url {
            self.check_reachable(url)?;
        }
        let webhook = self.modify_own(tenant, id, |w| w.apply(patch.clone(), Timestamp::now())).await?;
        tracing::info!("webhook updated");
        Ok(webhook)
    }

    /// Replaces the secret with `secret` (or a generated one); the old one keeps signing for
    /// the grace period.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, webhook_id = id))]
    pub async fn rotate_secret(&self, tenant: &TenantId, id: &str, secret: Option<&str>) -> Result<Webhook> {
        let new = match secret {
            Some(text) => WebhookSecret::parse(text).map_err(|m| Error::validation("secret", m))?,
            None => WebhookSecret::generate(),
        };
        let id = WebhookId::parse(id)?;
        let sealed = self.policy.keys.seal(&new, id)?;
        let webhook = self
            .modify_own(tenant, id, |w| w.rotate_secret(sealed.clone(), self.policy.secret_grace, Timestamp::now()))
            .await?;
        tracing::info!("webhook secret rotated");
        Ok(webhook)
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant, webhook_id = id))]
    pub async fn delete(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let webhook = self.get(tenant, id).await?;
        if !self.webhooks.delete(webhook.id).await? {
            return Err(Error::NotFound("webhook"));
        }
        tracing::info!("webhook deleted");
        Ok(())
    }

    pub async fn deliveries(
        &self,
        tenant: &TenantId,
        id: &str,
        status: Option<DeliveryStatus>,
        page: &PageRequest,
    ) -> Result<Page<DeliveryWithAttempts>> {
        let webhook = self.get(tenant, id).await?;
        let page = self.deliveries.list(webhook.id, status, page).await?;
        let keys: Vec<DeliveryKey> = page.items.iter().map(Delivery::key).collect();
        let mut attempts = self.deliveries.attempts(&keys).await?;
        Ok(page.map(|delivery| {
            let attempts = attempts.remove(&delivery.key()).unwrap_or_default();
            DeliveryWithAttempts { delivery, attempts }
        }))
    }

    /// Re-delivers every failed delivery of the webhook whose event came in `[since, until)`;
    /// returns how many were put back on the queue.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, webhook_id = id))]
    pub async fn recover(&self, tenant: &TenantId, id: &str, since: Timestamp, until: Timestamp) -> Result<usize> {
        let webhook = self.get(tenant, id).await?;
        if !webhook.is_active {
            return Err(Error::Conflict {
                code: "webhook_disabled",
                message: "the webhook is disabled; enable it with PUT isActive=true first".into(),
            });
        }
        let mut recovered = 0;
        // Each batch leaves `failed`, so the next query finds the rest.
        while recovered < MAX_RECOVER {
            let batch = self.deliveries.failed_between(webhook.id, since, until, 500).await?;
            if batch.is_empty() {
                break;
            }
            self.deliverer.redeliver(&webhook, &batch).await?;
            recovered += batch.len();
        }
        tracing::info!(recovered, "failed deliveries put back on the queue");
        Ok(recovered)
    }

    /// A manual attempt, made now, whatever the delivery's state. It does not change the
    /// retry schedule of a delivery still retrying.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, webhook_id, event_id))]
    pub async fn retry(&self, tenant: &TenantId, webhook_id: &str, event_id: &str) -> Result<DeliveryWithAttempts> {
        let webhook = self.get(tenant, webhook_id).await?;
        let event_id = EventId::parse(event_id)?;
        let key = DeliveryKey { event_id, webhook_id: webhook.id };
        let delivery = self.deliveries.get(key).await?.ok_or(Error::NotFound("delivery"))?;
        if !webhook.is_active {
            return Err(Error::Conflict {
                code: "webhook_disabled",
                message: "the webhook is disabled; enable it with PUT isActive=true first".into(),
            });
        }
        let event = self.events.get(event_id).await?.ok_or(Error::NotFound("event"))?;
        let (delivery, _) = self.deliverer.attempt(&event, &webhook, &delivery, Trigger::Manual).await?;
        let attempts = self.deliveries.attempts(&[key]).await?.remove(&key).unwrap_or_default();
        Ok(DeliveryWithAttempts { delivery, attempts })
    }

    /// The event types a webhook can subscribe to, in the registry's order.
    pub fn event_types(&self) -> impl Iterator<Item = &EventType> {
        self.policy.registry.iter()
    }

    /// The events the tenant's webhooks have deliveries of, newest first: events are not a
    /// tenant's until they are routed to one of its webhooks. The `source` filter is applied to
    /// the events read, so a filtered page may hold fewer than `page.limit` events (it reads
    /// at most [`EVENT_SCAN_PAGES`] pages of the log); its cursor continues after the last
    /// event read either way. An event no longer in the event store is left out.
    pub async fn events(
        &self,
        tenant: &TenantId,
        event_type: Option<&str>,
        source: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Event>> {
        let event_type = event_type
            .map(|t| self.policy.registry.parse(t).map_err(|m| Error::validation("eventType", m)))
            .transpose()?;
        let mut request = *page;
        let mut found = Vec::new();
        for _ in 0..EVENT_SCAN_PAGES {
            let ids = self.deliveries.events(tenant, event_type.as_ref(), &request).await?;
            for id in &ids.items {
                if let Some(event) = self.events.get(*id).await?
                    && source.is_none_or(|s| event.source.as_deref() == Some(s))
                    && event.tenant.as_ref().is_none_or(|t| t == tenant)
                {
                    found.push(event);
                }
            }
            let last = ids.items.last().map(EventId::as_uuid);
            match (ids.next_cursor, last) {
                (Some(_), Some(last)) if source.is_some() && found.len() < page.limit => {
                    request = PageRequest { limit: page.limit - found.len(), offset: 0, before: Some(last) };
                }
                (Some(_), Some(last)) => {
                    return Ok(Page { items: found, next_cursor: Some(encode_cursor(last)) });
                }
                _ => return Ok(Page { items: found, next_cursor: None }),
            }
        }
        let next_cursor = request.before.map(encode_cursor);
        Ok(Page { items: found, next_cursor })
    }

    /// One event and the tenant's deliveries of it; an event none of the tenant's webhooks
    /// has a delivery of is "not found", as another tenant's webhook is.
    pub async fn event(&self, tenant: &TenantId, id: &str) -> Result<TenantEvent> {
        let id = EventId::parse(id)?;
        let deliveries = self.deliveries.of_event(tenant, id).await?;
        if deliveries.is_empty() {
            return Err(Error::NotFound("event"));
        }
        let event = self.events.get(id).await?.ok_or(Error::NotFound("event"))?;
        let keys: Vec<DeliveryKey> = deliveries.iter().map(Delivery::key).collect();
        let mut attempts = self.deliveries.attempts(&keys).await?;
        let mut shown = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let webhook = self.webhooks.get(delivery.webhook_id).await?.filter(|w| &w.tenant == tenant);
            let attempts = attempts.remove(&delivery.key()).unwrap_or_default();
            shown.push((webhook, DeliveryWithAttempts { delivery, attempts }));
        }
        Ok(TenantEvent { event, deliveries: shown })
    }
}
