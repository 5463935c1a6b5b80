//! Rows as PostgreSQL returns them, the values bound to write them, and their conversion to
//! and from the domain types. Integers are `integer`/`bigint` in SQL, so the unsigned domain
//! numbers are range-checked both ways.

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use uuid::Uuid;

use super::corrupt;
use relay_core::domain::{Attempt, Delivery, DeliveryKey, DeliveryStatus, EventType, TenantId, Trigger};
use relay_core::{Error, Result, Timestamp};

pub type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

#[derive(Debug, sqlx::FromRow)]
pub struct DeliveryRow {
    event_id: Uuid,
    webhook_id: Uuid,
    tenant: String,
    event_type: String,
    status: String,
    attempt_count: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl DeliveryRow {
    pub fn into_delivery(self) -> Result<Delivery> {
        let bad = |detail: String| corrupt("deliveries", detail);
        Ok(Delivery {
            event_id: self.event_id.into(),
            webhook_id: self.webhook_id.into(),
            tenant: TenantId::parse(&self.tenant).map_err(bad)?,
            event_type: EventType::from_store(&self.event_type).map_err(bad)?,
            status: DeliveryStatus::parse(&self.status).ok_or_else(|| bad(format!("status {:?}", self.status)))?,
            attempt_count: u32::try_from(self.attempt_count)
                .map_err(|_| bad(format!("attempt_count {}", self.attempt_count)))?,
            last_status_code: self.last_status_code.map(|c| status_code(c).map_err(bad)).transpose()?,
            last_error: self.last_error,
            next_attempt_at: self.next_attempt_at.map(Timestamp::from),
            created_at: self.created_at.into(),
            updated_at: self.updated_at.into(),
        })
    }
}

/// One delivery's column values, ready to bind.
#[derive(Debug)]
pub struct DeliveryValues {
    event_id: Uuid,
    webhook_id: Uuid,
    tenant: String,
    event_type: String,
    status: &'static str,
    attempt_count: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl DeliveryValues {
    pub fn new(d: &Delivery) -> Result<Self> {
        Ok(Self {
            event_id: d.event_id.as_uuid(),
            webhook_id: d.webhook_id.as_uuid(),
            tenant: d.tenant.as_str().to_owned(),
            event_type: d.event_type.as_str().to_owned(),
            status: d.status.as_str(),
            attempt_count: i32::try_from(d.attempt_count)
                .map_err(|_| Error::Internal(format!("attempt count {} is out of range", d.attempt_count)))?,
            last_status_code: d.last_status_code.map(i32::from),
            last_error: storable(d.last_error.as_deref()),
            next_attempt_at: d.next_attempt_at.map(Timestamp::to_datetime),
            created_at: d.created_at.to_datetime(),
            updated_at: d.updated_at.to_datetime(),
        })
    }
}

/// The values of many deliveries, one array per column, for `UNNEST`.
#[derive(Debug, Default)]
pub struct DeliveryColumns {
    event_id: Vec<Uuid>,
    webhook_id: Vec<Uuid>,
    tenant: Vec<String>,
    event_type: Vec<String>,
    status: Vec<&'static str>,
    attempt_count: Vec<i32>,
    last_status_code: Vec<Option<i32>>,
    last_error: Vec<Option<String>>,
    next_attempt_at: Vec<Option<DateTime<Utc>>>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
}

impl DeliveryColumns {
    pub fn new<'a>(deliveries: impl IntoIterator<Item = &'a Delivery>) -> Result<Self> {
        let mut columns = Self::default();
        for d in deliveries {
            let v = DeliveryValues::new(d)?;
            columns.event_id.push(v.event_id);
            columns.webhook_id.push(v.webhook_id);
            columns.tenant.push(v.tenant);
            columns.event_type.push(v.event_type);
            columns.status.push(v.status);
            columns.attempt_count.push(v.attempt_count);
            columns.last_status_code.push(v.last_status_code);
            columns.last_error.push(v.last_error);
            columns.next_attempt_at.push(v.next_attempt_at);
            columns.created_at.push(v.created_at);
            columns.updated_at.push(v.updated_at);
        }
        Ok(columns)
    }

    /// Binds the eleven arrays as `$1` to `$11`, in `delivery_columns!` order.
    pub fn bind(self, query: Query<'_>) -> Query<'_> {
        query
            .bind(self.event_id)
            .bind(self.webhook_id)
            .bind(self.tenant)
            .bind(self.event_type)
            .bind(self.status)
            .bind(self.attempt_count)
            .bind(self.last_status_code)
            .bind(self.last_error)
            .bind(self.next_attempt_at)
            .bind(self.created_at)
            .bind(self.updated_at)
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct AttemptRow {
    event_id: Uuid,
    webhook_id: Uuid,
    number: i32,
    status_code: Option<i32>,
    duration_ms: i64,
    error: Option<String>,
    response_body: Option<String>,
    trigger: String,
    created_at: DateTime<Utc>,
}

impl AttemptRow {
    pub fn key(&self) -> DeliveryKey {
        DeliveryKey { event_id: self.event_id.into(), webhook_id: self.webhook_id.into() }
    }

    pub fn into_attempt(self) -> Result<Attempt> {
        let bad = |detail: String| corrupt("delivery_attempts", detail);
        Ok(Attempt {
            number: u32::try_from(self.number).map_err(|_| bad(format!("number {}", self.number)))?,
            status_code: self.status_code.map(|c| status_code(c).map_err(bad)).transpose()?,
            duration_ms: u64::try_from(self.duration_ms)
                .map_err(|_| bad(format!("duration_ms {}", self.duration_ms)))?,
            error: self.error,
            response_body: self.response_body,
            trigger: parse_trigger(&self.trigger).ok_or_else(|| bad(format!("trigger {:?}", self.trigger)))?,
            created_at: self.created_at.into(),
        })
    }
}

/// One attempt's column values, ready to bind.
#[derive(Debug)]
pub struct AttemptValues {
    number: i32,
    status_code: Option<i32>,
    duration_ms: i64,
    error: Option<String>,
    response_body: Option<String>,
    trigger: &'static str,
    created_at: DateTime<Utc>,
}

impl AttemptValues {
    pub fn new(a: &Attempt) -> Result<Self> {
        Ok(Self {
            number: i32::try_from(a.number)
                .map_err(|_| Error::Internal(format!("attempt number {} is out of range", a.number)))?,
            status_code: a.status_code.map(i32::from),
            duration_ms: i64::try_from(a.duration_ms).unwrap_or(i64::MAX),
            error: storable(a.error.as_deref()),
            response_body: storable(a.response_body.as_deref()),
            trigger: a.trigger.as_str(),
            created_at: a.created_at.to_datetime(),
        })
    }
}

/// The values of many attempts with their deliveries' keys, one array per column, for `UNNEST`.
#[derive(Debug, Default)]
pub struct AttemptColumns {
    event_id: Vec<Uuid>,
    webhook_id: Vec<Uuid>,
    number: Vec<i32>,
    status_code: Vec<Option<i32>>,
    duration_ms: Vec<i64>,
    error: Vec<Option<String>>,
    response_body: Vec<Option<String>>,
    trigger: Vec<&'static str>,
    created_at: Vec<DateTime<Utc>>,
}

impl AttemptColumns {
    pub fn push(&mut self, key: DeliveryKey, attempt: &Attempt) -> Result<()> {
        let v = AttemptValues::new(attempt)?;
        self.event_id.push(key.event_id.as_uuid());
        self.webhook_id.push(key.webhook_id.as_uuid());
        self.number.push(v.number);
        self.status_code.push(v.status_code);
        self.duration_ms.push(v.duration_ms);
        self.error.push(v.error);
        self.response_body.push(v.response_body);
        self.trigger.push(v.trigger);
        self.created_at.push(v.created_at);
        Ok(())
    }

    /// Binds the nine arrays after whatever the query has bound already, in `attempt_columns!`
    /// order.
    pub fn bind(self, query: Query<'_>) -> Query<'_> {
        query
            .bind(self.event_id)
            .bind(self.webhook_id)
            .bind(self.number)
            .bind(self.status_code)
            .bind(self.duration_ms)
            .bind(self.error)
            .bind(self.response_body)
            .bind(self.trigger)
            .bind(self.created_at)
    }
}

fn status_code(value: i32) -> Result<u16, String> {
    u16::try_from(value).map_err(|_| format!("status code {value}"))
}

fn parse_trigger(name: &str) -> Option<Trigger> {
    [Trigger::Scheduled, Trigger::Manual].into_iter().find(|t| t.as_str() == name)
}

/// Text PostgreSQL can store: a `text` value cannot hold NUL, which a receiver's response body
/// or an error message may contain; each becomes U+FFFD rather than failing the write.
fn storable(text: Option<&str>) -> Option<String> {
    text.map(|t| t.replace('\0', "\u{FFFD}"))
}
