//! The retry schedule: exponential from `WEBHOOK_RETRY_DELAY`, doubling, with +/-20% jitter,
//! capped at 12 hours (also the longest SQS visibility timeout), and `Retry-After` honoured.

use std::time::Duration;

use chrono::DateTime;
use rand::Rng;

use crate::Timestamp;

/// The longest delay between two attempts, and the longest SQS accepts for a message.
pub const MAX_DELAY: Duration = Duration::from_secs(12 * 60 * 60);
/// The shortest `Retry-After` honoured, so a receiver cannot make the relay spin.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The delay before the first retry.
    pub base_delay: Duration,
    /// Retries after the first attempt; a delivery gets at most `max_retries + 1` attempts.
    pub max_retries: u32,
    /// The cap on any one delay.
    pub max_delay: Duration,
    /// The jitter fraction: 0.2 spreads each delay over +/-20%.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// The seed's defaults: 3 retries, 60 s base.
    fn default() -> Self {
        Self { base_delay: Duration::from_secs(60), max_retries: 3, max_delay: MAX_DELAY, jitter: 0.2 }
    }
}

impl RetryPolicy {
    /// Whether a delivery that has made `attempts` attempts may make another scheduled one.
    pub fn has_retry_left(&self, attempts: u32) -> bool {
        attempts <= self.max_retries
    }

    /// The delay before retry number `retry` (1 for the first retry), without jitter:
    /// `base * 2^(retry - 1)`, capped.
    pub fn nominal_delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The delay before retry number `retry`, with jitter. `unit` in `[-1, 1]` picks where in
    /// the jitter band it falls; [`RetryPolicy::delay`] draws it at random.
    pub fn delay_at(&self, retry: u32, unit: f64) -> Duration {
        let nominal = self.nominal_delay(retry).as_secs_f64();
        let jittered = nominal * (1.0 + self.jitter * unit.clamp(-1.0, 1.0));
        Duration::from_secs_f64(jittered.max(0.0)).min(self.max_delay)
    }

    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_at(retry, rand::rng().random_range(-1.0..=1.0))
    }

    /// A receiver's `Retry-After`, clamped to `[1 s, max_delay]`.
    pub fn clamp_retry_after(&self, wanted: Duration) -> Duration {
        wanted.clamp(MIN_RETRY_AFTER, self.max_delay.max(MIN_RETRY_AFTER))
    }
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    Some(now.until(Timestamp::from_millis(date.timestamp_millis())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { base_delay: Duration::from_secs(60), ..RetryPolicy::default() }
    }

    #[test]
    fn doubles_from_the_base() {
        let p = policy();
        let secs: Vec<u64> = (1..=4).map(|n| p.nominal_delay(n).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 480]);
    }

    #[test]
    fn is_capped_at_twelve_hours() {
        let p = policy();
        assert_eq!(p.nominal_delay(30), MAX_DELAY);
        assert_eq!(p.nominal_delay(u32::MAX), MAX_DELAY);
        assert_eq!(p.delay_at(30, 1.0), MAX_DELAY);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = policy();
        assert_eq!(p.delay_at(2, -1.0), Duration::from_secs(96));
        assert_eq!(p.delay_at(2, 1.0), Duration::from_secs(144));
        assert_eq!(p.delay_at(2, 0.0), Duration::from_secs(120));
        for _ in 0..1000 {
            let d = p.delay(1).as_secs_f64();
            assert!((48.0..=72.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn counts_retries_after_the_first_attempt() {
        let p = policy();
        assert!(p.has_retry_left(1));
        assert!(p.has_retry_left(3));
        assert!(!p.has_retry_left(4), "3 retries means 4 attempts in all");
    }

    #[test]
    fn retry_after_is_clamped() {
        let p = policy();
        assert_eq!(p.clamp_retry_after(Duration::ZERO), MIN_RETRY_AFTER);
        assert_eq!(p.clamp_retry_after(Duration::from_secs(30)), Duration::from_secs(30));
        assert_eq!(p.clamp_retry_after(Duration::from_secs(100_000)), MAX_DELAY);
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = Timestamp::from_millis(1_445_412_480_000); // 2015-10-21T07:28:00Z
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
