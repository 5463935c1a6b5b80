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
    /// original event (and enqueues it if that had failed); a different request under the
    /// same key is a conflict. If the queue refuses, the caller gets 503 and the stored event
    /// is dispatched by a retry with the same key or by maintenance.
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
                tracing::info!("event accepted");
                Ok(Accepted { event, replayed: false })
            }
            Insert::Duplicate(existing) if Some(&existing.fingerprint) != fingerprint.as_ref() => {
                Err(Error::Conflict {
                    code: "idempotency_key_reused",
                    message: "this Idempotency-Key was used with a different request body".into(),
                })
            }
            Insert::Duplicate(existing) => {
                let original = self.events.get(existing.event_id).await?.ok_or_else(|| {
                    Error::Internal(format!("idempotency record points at missing event {}", existing.event_id))
                })?;
                if original.enqueued_at.is_none() {
                    self.enqueue(&original).await?;
                }
                tracing::info!(original = %original.id, "idempotent replay");
                Ok(Accepted { event: original, replayed: true })
            }
        }
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
