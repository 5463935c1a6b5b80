//! What the dashboard shows one tenant: delivery statistics, webhook counts, deliveries still
//! waiting and the most recent deliveries, all of them the tenant's own; and, for operators,
//! the depth of the queues every tenant shares.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::DeliveryWithAttempts;
use crate::domain::{PageRequest, TenantId, WebhookId};
use crate::ports::{DeliveryLog, DeliveryStats, Queue, QueueDepth, StatsScope, TimelineBucket, WebhookStore};
use crate::{Result, Timestamp};

const DAY: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub last_24h: DeliveryStats,
    pub last_7d: DeliveryStats,
    pub webhooks: WebhookCounts,
    /// The tenant's deliveries of the last 7 days not yet final.
    pub backlog: Backlog,
    pub generated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backlog {
    /// No attempt yet.
    pub pending: u64,
    /// An attempt failed; another is scheduled.
    pub retrying: u64,
}

/// The shared queues, for operators; `None` where the queue did not answer.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Queues {
    /// The dispatch lane (`QUEUE_URL`).
    pub queue: Option<Depth>,
    /// The delivery lane (`DELIVERY_QUEUE_URL`; the same queue as `queue` where it is unset).
    pub delivery_queue: Option<Depth>,
    pub dead_letter_queue: Option<Depth>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCounts {
    pub active: u64,
    pub disabled: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl From<QueueDepth> for Depth {
    fn from(d: QueueDepth) -> Self {
        Self { visible: d.visible, in_flight: d.in_flight, delayed: d.delayed }
    }
}

#[derive(Clone, Debug)]
pub struct Dashboard {
    deliveries: Arc<dyn DeliveryLog>,
    webhooks: Arc<dyn WebhookStore>,
    queue: Arc<dyn Queue>,
    delivery_queue: Arc<dyn Queue>,
    dead_letter: Arc<dyn Queue>,
}

/// The queues a [`Dashboard`] reports the depth of.
#[derive(Clone, Debug)]
pub struct QueuePorts {
    /// The dispatch lane.
    pub queue: Arc<dyn Queue>,
    pub delivery_queue: Arc<dyn Queue>,
    pub dead_letter: Arc<dyn Queue>,
}

impl Dashboard {
    pub fn new(deliveries: Arc<dyn DeliveryLog>, webhooks: Arc<dyn WebhookStore>, queues: QueuePorts) -> Self {
        let QueuePorts { queue, delivery_queue, dead_letter } = queues;
        Self { deliveries, webhooks, queue, delivery_queue, dead_letter }
    }

    pub async fn overview(&self, tenant: &TenantId) -> Result<Overview> {
        let now = Timestamp::now();
        let scope = StatsScope::Tenant(tenant.clone());
        let last_24h = self.deliveries.stats(&scope, now - DAY).await?;
        let last_7d = self.deliveries.stats(&scope, now - DAY * 7).await?;
        let webhooks = self.webhook_counts(tenant).await?;
        let backlog = Backlog { pending: last_7d.pending, retrying: last_7d.retrying };
        Ok(Overview { last_24h, last_7d, webhooks, backlog, generated_at: now })
    }

    /// The tenant's deliveries of the last 24 hours and its webhooks: what its metrics show.
    pub async fn last_day(&self, tenant: &TenantId) -> Result<(DeliveryStats, WebhookCounts)> {
        let since = Timestamp::now() - DAY;
        let stats = self.deliveries.stats(&StatsScope::Tenant(tenant.clone()), since).await?;
        Ok((stats, self.webhook_counts(tenant).await?))
    }

    async fn webhook_counts(&self, tenant: &TenantId) -> Result<WebhookCounts> {
        let mut webhooks = WebhookCounts::default();
        let mut page = PageRequest { limit: PageRequest::MAX_LIMIT, ..PageRequest::default() };
        loop {
            let listed = self.webhooks.list(tenant, &page).await?;
            for webhook in &listed.items {
                if webhook.is_active { webhooks.active += 1 } else { webhooks.disabled += 1 }
            }
            match listed.items.last() {
                Some(last) if listed.next_cursor.is_some() => page.before = Some(last.id.as_uuid()),
                _ => break,
            }
        }
        Ok(webhooks)
    }

    /// The depth of the relay's two lanes and their dead-letter queue (every tenant's messages).
    pub async fn queues(&self) -> Queues {
        let depth = |result: Result<QueueDepth>, which: &str| match result {
            Ok(depth) => Some(Depth::from(depth)),
            Err(err) => {
                tracing::warn!(error = %err, which, "queue depth unavailable");
                None
            }
        };
        let (queue, delivery_queue, dead_letter) =
            tokio::join!(self.queue.depth(), self.delivery_queue.depth(), self.dead_letter.depth());
        Queues {
            queue: depth(queue, "queue"),
            delivery_queue: depth(delivery_queue, "delivery queue"),
            dead_letter_queue: depth(dead_letter, "dead-letter queue"),
        }
    }

    /// The tenant's most recent deliveries with their attempts.
    pub async fn recent(&self, tenant: &TenantId, limit: usize) -> Result<Vec<DeliveryWithAttempts>> {
        let recent = self.deliveries.recent(tenant, limit).await?;
        let keys: Vec<_> = recent.iter().map(|d| d.key()).collect();
        let mut attempts = self.deliveries.attempts(&keys).await?;
        Ok(recent
            .into_iter()
            .map(|delivery| {
                let attempts = attempts.remove(&delivery.key()).unwrap_or_default();
                DeliveryWithAttempts { delivery, attempts }
            })
            .collect())
    }

    /// The tenant's deliveries of the last 24 hours by status, in `buckets` equal buckets
    /// ending at the bucket that holds `now`, empty ones included, oldest first.
    pub async fn timeline(&self, tenant: &TenantId, now: Timestamp, buckets: u32) -> Result<Vec<TimelineBucket>> {
        let width = DAY / buckets.max(1);
        let width_ms = i64::try_from(width.as_millis()).unwrap_or(i64::MAX).max(1);
        let last = now.as_millis().div_euclid(width_ms) * width_ms;
        let first = last - width_ms * (i64::from(buckets.max(1)) - 1);
        let mut filled =
            self.deliveries.timeline(tenant, Timestamp::from_millis(first), width).await?.into_iter().peekable();
        Ok((0..i64::from(buckets.max(1)))
            .map(|i| {
                let start = Timestamp::from_millis(first + i * width_ms);
                match filled.peek() {
                    Some(bucket) if bucket.start == start => {
                        filled.next().unwrap_or_else(|| TimelineBucket::empty(start))
                    }
                    _ => TimelineBucket::empty(start),
                }
            })
            .collect())
    }

    /// One webhook's statistics since `since`; the caller has checked the tenant.
    pub async fn webhook_stats(&self, webhook: WebhookId, since: Timestamp) -> Result<DeliveryStats> {
        self.deliveries.stats(&StatsScope::Webhook(webhook), since).await
    }
}
