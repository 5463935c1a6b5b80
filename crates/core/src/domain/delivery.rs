//! Deliveries: one per (event, webhook), with the log of its HTTP attempts, and the rules that
//! move it from state to state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{EventId, EventType, TenantId, WebhookId};
use crate::Timestamp;
use crate::backoff::RetryPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Created at dispatch; no attempt yet.
    Pending,
    /// At least one attempt failed; another is scheduled at `nextAttemptAt`.
    Retrying,
    Succeeded,
    /// The last attempt failed and none is scheduled; a manual retry can still deliver it.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Pending, Self::Retrying, Self::Succeeded, Self::Failed].into_iter().find(|s| s.as_str() == value)
    }

    /// No scheduled attempt will follow.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryKey {
    pub event_id: EventId,
    pub webhook_id: WebhookId,
}

/// Who asked for an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Scheduled,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
        }
    }
}

/// One HTTP attempt, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub number: u32,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// The first KiB of the response body.
    pub response_body: Option<String>,
    pub trigger: Trigger,
    pub created_at: Timestamp,
}

/// What an attempt's response means for the delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// A 2xx within the timeout.
    Delivered,
    /// 410 Gone: the receiver wants no more; the webhook is disabled.
    Gone,
    /// Anything else. `retry_after` is the receiver's wish (429 and 503 only).
    Failed { retry_after: Option<Duration> },
}

impl AttemptResult {
    /// Classifies a response status (`None`: no response at all).
    pub fn classify(status: Option<u16>, retry_after: Option<Duration>) -> Self {
        match status {
            Some(200..=299) => Self::Delivered,
            Some(410) => Self::Gone,
            Some(429 | 503) => Self::Failed { retry_after },
            _ => Self::Failed { retry_after: None },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub event_id: EventId,
    pub webhook_id: WebhookId,
    pub tenant: TenantId,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Delivery {
    pub fn new(
        event_id: EventId,
        webhook_id: WebhookId,
        tenant: TenantId,
        event_type: EventType,
        now: Timestamp,
    ) -> Self {
        Self {
            event_id,
            webhook_id,
            tenant,
            event_type,
            status: DeliveryStatus::Pending,
            attempt_count: 0,
            last_status_code: None,
            last_error: None,
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn key(&self) -> DeliveryKey {
        DeliveryKey { event_id: self.event_id, webhook_id: self.webhook_id }
    }

    /// The state after one more attempt with this result, and the delay before the next
    /// scheduled attempt if there is one.
    ///
    /// A scheduled attempt that fails schedules a retry while the policy has one left, then
    /// fails the delivery. A manual attempt never changes the schedule: if it fails, a delivery
    /// that was waiting for a retry keeps waiting, and any other stays or becomes `failed`.
    pub fn after_attempt(
        &self,
        result: &AttemptResult,
        attempt: &Attempt,
        policy: &RetryPolicy,
        now: Timestamp,
    ) -> (Delivery, Option<Duration>) {
        let mut next = self.clone();
        next.attempt_count += 1;
        next.last_status_code = attempt.status_code;
        next.last_error = attempt.error.clone();
        next.updated_at = now;
        let mut retry_in = None;
        match result {
            AttemptResult::Delivered => {
                next.status = DeliveryStatus::Succeeded;
                next.next_attempt_at = None;
            }
            AttemptResult::Gone => {
                next.status = DeliveryStatus::Failed;
                next.next_attempt_at = None;
            }
            AttemptResult::Failed { .. } if attempt.trigger == Trigger::Manual => {
                if self.status != DeliveryStatus::Retrying && self.status != DeliveryStatus::Pending {
                    next.status = DeliveryStatus::Failed;
                    next.next_attempt_at = None;
                }
            }
            AttemptResult::Failed { retry_after } => {
                let scheduled = self.attempt_count + 1;
                if policy.has_retry_left(scheduled) {
                    let delay = match retry_after {
                        Some(wanted) => policy.clamp_retry_after(*wanted),
                        None => policy.delay(scheduled),
                    };
                    next.status = DeliveryStatus::Retrying;
                    next.next_attempt_at = Some(now + delay);
                    retry_in = Some(delay);
                } else {
                    next.status = DeliveryStatus::Failed;
                    next.next_attempt_at = None;
                }
            }
        }
        (next, retry_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventTypeRegistry;

    fn delivery() -> Delivery {
        let event_type = EventTypeRegistry::default().parse("job.created").unwrap();
        Delivery::new(EventId::new(), WebhookId::new(), TenantId::parse("t").unwrap(), event_type, Timestamp::now())
    }

    fn attempt(status: Option<u16>, trigger: Trigger) -> Attempt {
        Attempt {
            number: 1,
            status_code: status,
            duration_ms: 3,
            error: None,
            response_body: None,
            trigger,
            created_at: Timestamp::now(),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { base_delay: Duration::from_secs(10), max_retries: 2, jitter: 0.0, ..RetryPolicy::default() }
    }

    fn run(d: &Delivery, status: Option<u16>, trigger: Trigger) -> (Delivery, Option<Duration>) {
        let result = AttemptResult::classify(status, None);
        d.after_attempt(&result, &attempt(status, trigger), &policy(), Timestamp::now())
    }

    #[test]
    fn classifies_responses() {
        assert_eq!(AttemptResult::classify(Some(204), None), AttemptResult::Delivered);
        assert_eq!(AttemptResult::classify(Some(410), None), AttemptResult::Gone);
        let after = Some(Duration::from_secs(5));
        assert_eq!(AttemptResult::classify(Some(429), after), AttemptResult::Failed { retry_after: after });
        assert_eq!(AttemptResult::classify(Some(503), after), AttemptResult::Failed { retry_after: after });
        assert_eq!(AttemptResult::classify(Some(500), after), AttemptResult::Failed { retry_after: None });
        assert_eq!(AttemptResult::classify(Some(301), None), AttemptResult::Failed { retry_after: None });
        assert_eq!(AttemptResult::classify(None, None), AttemptResult::Failed { retry_after: None });
    }

    #[test]
    fn failures_walk_the_schedule_then_fail() {
        let d0 = delivery();
        let (d1, wait1) = run(&d0, Some(500), Trigger::Scheduled);
        assert_eq!((d1.status, wait1), (DeliveryStatus::Retrying, Some(Duration::from_secs(10))));
        let (d2, wait2) = run(&d1, None, Trigger::Scheduled);
        assert_eq!((d2.status, wait2), (DeliveryStatus::Retrying, Some(Duration::from_secs(20))));
        let (d3, wait3) = run(&d2, Some(502), Trigger::Scheduled);
        assert_eq!((d3.status, wait3), (DeliveryStatus::Failed, None));
        assert_eq!(d3.attempt_count, 3);
        assert_eq!(d3.last_status_code, Some(502));
        assert_eq!(d3.next_attempt_at, None);
    }

    #[test]
    fn success_and_gone_are_final() {
        let (ok, wait) = run(&delivery(), Some(200), Trigger::Scheduled);
        assert_eq!((ok.status, wait), (DeliveryStatus::Succeeded, None));
        let (gone, wait) = run(&delivery(), Some(410), Trigger::Scheduled);
        assert_eq!((gone.status, wait), (DeliveryStatus::Failed, None));
    }

    #[test]
    fn retry_after_replaces_the_backoff() {
        let result = AttemptResult::classify(Some(429), Some(Duration::from_secs(42)));
        let (d, wait) =
            delivery().after_attempt(&result, &attempt(Some(429), Trigger::Scheduled), &policy(), Timestamp::now());
        assert_eq!((d.status, wait), (DeliveryStatus::Retrying, Some(Duration::from_secs(42))));
    }

    #[test]
    fn manual_attempts_do_not_touch_the_schedule() {
        let (retrying, _) = run(&delivery(), Some(500), Trigger::Scheduled);
        let (still, wait) = run(&retrying, Some(500), Trigger::Manual);
        assert_eq!((still.status, wait), (DeliveryStatus::Retrying, None));
        assert_eq!(still.next_attempt_at, retrying.next_attempt_at);

        let mut failed = retrying.clone();
        failed.status = DeliveryStatus::Failed;
        let (again, _) = run(&failed, Some(500), Trigger::Manual);
        assert_eq!(again.status, DeliveryStatus::Failed);
        let (fixed, _) = run(&failed, Some(200), Trigger::Manual);
        assert_eq!(fixed.status, DeliveryStatus::Succeeded);
    }
}
