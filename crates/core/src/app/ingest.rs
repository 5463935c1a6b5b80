use std::sync::Arc;
use std::time::Duration;

use super::message::enqueue_dispatch;
use crate::auth::Directory;
use crate::domain::{Event, EventInput, EventTypeRegistry, NewEvent, Page, PageRequest, TenantId};
use crate::ports::{EventFilter, EventStore, IdempotencyRecord, Insert, Queue};
use crate::{Error, Result, Timestamp};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Accepting events from internal services: validate, deduplicate, store, enqueue.
#[derive(Clone, Debug)]
pub struct Ingest {
    events: Arc<dyn EventStore>,
    queue: Arc<dyn Queue>,
    registry: Arc<EventTypeRegistry>,
    tenancy: Tenancy,
}

/// Which tenants an event may be scoped to, and whether it may be scoped to none.
#[derive(Debug, Clone)]
pub struct Tenancy {
    pub directory: Arc<Directory>,
    /// `ALLOW_BROADCAST_EVENTS`: an event without `tenant` goes to every tenant's subscribers
    /// (relay-local's default); else it is refused (production's).
    pub allow_broadcast: bool,
}

#[derive(Debug, Clone)]
pub struct Accepted {
    pub event: Event,
    /// The same idempotency key and body were seen before: this is the original event.
    pub replayed: bool,
}

impl Ingest {
    pub fn new(
        events: Arc<dyn EventStore>,
        queue: Arc<dyn Queue>,
        registry: Arc<EventTypeRegistry>,
        tenancy: Tenancy,
    ) -> Self {
        Self { events, queue, registry, tenancy }
    }

    /// 422 on `tenant` unless the event's tenant exists and is active, or it has none and
    /// broadcasts are allowed.
    async fn check_tenant(&self, new: &NewEvent) -> Result<()> {
        let problem = match &new.tenant {
            None if self.tenancy.allow_broadcast => return Ok(()),
            None => {
                "is required: this relay does not broadcast events to every tenant (ALLOW_BROADCAST_EVENTS is false); name the tenant the event is for"
            }
            Some(id) => match self.tenancy.directory.tenant(id).await? {
                Some(tenant) if tenant.is_active => return Ok(()),
                Some(_) => "names a disabled tenant",
                None => "names no tenant",
            },
        };
        Err(Error::validation("tenant", problem))
    }

    /// Accepts an event. With an idempotency key, a repeat of the same request returns the
    /// original event and sends its dispatch message again (the first request may have died
    /// between storing and sending; a second dispatch adds no delivery); a different request
    /// under the same key is a conflict. If the queue refuses, the caller gets 503 and the
    /// stored event, marked undispatched, is dispatched by a retry with the same key or by
    /// maintenance.
    #[tracing::instrument(skip_all, fields(event_id, event_type))]
    pub async fn accept(&self, input: EventInput, idempotency_key: Option<&str>) -> Result<Accepted> {
        let new = NewEvent::parse(input, &self.registry)?;
        self.check_tenant(&new).await?;
        if let Some(retry_after) = self.queue.full() {
            crate::metrics::global().increment("relay_events_refused_total", &[("reason", "backlog_full")]);
            return Err(Error::Overloaded { retry_after });
        }
        let key = idempotency_key.map(parse_idempotency_key).transpose()?;
        let now = Timestamp::now();
        // Only an Idempotency-Key needs the fingerprint (it is a good share of ingest's CPU).
        let fingerprint = key.as_ref().map(|_| new.fingerprint());
        let event = Event::new(new, now);
        tracing::Span::current().record("event_id", tracing::field::display(event.id));
        tracing::Span::current().record("event_type", event.event_type.as_str());
        let record = key.zip(fingerprint.clone()).map(|(key, fingerprint)| IdempotencyRecord {
            key,
            fingerprint,
            event_id: event.id,
            expires_at: now + IDEMPOTENCY_TTL,
        });
        match self.events.insert(&event, record.as_ref()).await? {
            Insert::Created => {
                crate::metrics::global()
                    .increment("relay_events_accepted_total", &[("event_type", event.event_type.as_str())]);
                self.enqueue(&event).await?;
                tracing::debug!("event accepted");
                Ok(Accepted { event, replayed: false })
            }
            Insert::Duplicate(existing) if Some(&existing.fingerprint) != fingerprint.as_ref() => {
                Err(Error::Conflict {
                    code: "idempotency_key_reused",
                    message: "this Idempotency-Key was used with a different request body".into(),
                })
            }
            Insert::Duplicate(existing) => {
                let original = match self.events.get(existing.event_id).await? {
                    Some(original) => original,
                    // The key was written and the event was not (the first request died
                    // between the two): this request is the same, so it stores the event.
                    None => self.mend(&event, existing.event_id).await?,
                };
                self.enqueue(&original).await?;
                // Sent now: maintenance need not send it (if the queue had refused it before).
                if let Err(err) = self.events.mark_enqueued(original.id).await {
                    tracing::warn!(event_id = %original.id, error = %err, "could not clear the undispatched mark");
                }
                tracing::info!(original = %original.id, "idempotent replay");
                Ok(Accepted { event: original, replayed: true })
            }
        }
    }

    /// Stores `event` under the id an idempotency record gave it.
    async fn mend(&self, event: &Event, id: crate::domain::EventId) -> Result<Event> {
        let mended = Event { id, created_at: id.created_at(), ..event.clone() };
        if let Err(err) = self.events.insert(&mended, None).await {
            // The first request's write may have landed meanwhile.
            return self.events.get(id).await?.ok_or(err);
        }
        tracing::warn!(event_id = %id, "idempotency record without its event: stored it now");
        Ok(mended)
    }

    async fn enqueue(&self, event: &Event) -> Result<()> {
        enqueue_dispatch(self.queue.as_ref(), self.events.as_ref(), event.id).await
    }

    pub async fn get(&self, id: &str) -> Result<Event> {
        let id = crate::domain::EventId::parse(id)?;
        self.events.get(id).await?.ok_or(Error::NotFound("event"))
    }

    pub async fn list(
        &self,
        event_type: Option<&str>,
        source: Option<&str>,
        tenant: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Event>> {
        let event_type =
            event_type.map(|t| self.registry.parse(t).map_err(|m| Error::validation("eventType", m))).transpose()?;
        let tenant = tenant.map(|t| TenantId::parse(t).map_err(|m| Error::validation("tenant", m))).transpose()?;
        let filter = EventFilter { event_type, source: source.map(str::to_owned), tenant };
        self.events.list(&filter, page).await
    }
}

impl Ingest {
    /// How many events of each configured type arrived since `since`.
    pub async fn counts_by_type(&self, since: Timestamp) -> Result<Vec<(crate::domain::EventType, u64)>> {
        let types: Vec<_> = self.registry.iter().cloned().collect();
        let counts = self.events.count_by_type(&types, since).await?;
        Ok(types.into_iter().zip(counts).collect())
    }
}

/// 1 to 255 visible ASCII characters.
fn parse_idempotency_key(key: &str) -> Result<String> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::validation("Idempotency-Key", "must be 1 to 255 visible ASCII characters"));
    }
    Ok(key.to_owned())
}
