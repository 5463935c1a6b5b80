//! [`Timestamp`]: UTC time at millisecond precision, written as `2025-10-26T10:00:00.000Z` like the seed.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_millis(Utc::now().timestamp_millis())
    }

    pub fn from_millis(millis: i64) -> Self {
        Self(Utc.timestamp_millis_opt(millis).single().unwrap_or_default())
    }

    pub fn as_millis(self) -> i64 {
        self.0.timestamp_millis()
    }

    pub fn as_secs(self) -> i64 {
        self.0.timestamp()
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// An RFC 3339 timestamp with any offset (`2026-11-28T10:00:00Z`,
    /// `2026-11-28T11:00:00+01:00`), as a client writes one; `None` for anything else.
    pub fn parse_rfc3339(value: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(value).ok().map(|at| Self::from(at.with_timezone(&Utc)))
    }

    /// How long from `self` until `later`; zero when `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(later.as_millis() - self.as_millis()).unwrap_or(0))
    }
}

fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Self;

    fn add(self, duration: Duration) -> Self {
        Self::from_millis(self.as_millis().saturating_add(duration_millis(duration)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Self;

    fn sub(self, duration: Duration) -> Self {
        Self::from_millis(self.as_millis().saturating_sub(duration_millis(duration)))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Self::from_millis(value.timestamp_millis())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = DateTime::<Utc>::deserialize(deserializer)?;
        Ok(value.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_milliseconds_and_z_like_the_seed() {
        let ts = Timestamp::from_millis(1_761_472_800_000);
        assert_eq!(ts.to_string(), "2025-10-26T10:00:00.000Z");
        assert_eq!(serde_json::to_string(&ts).unwrap(), "\"2025-10-26T10:00:00.000Z\"");
    }

    #[test]
    fn round_trips_through_json() {
        let ts = Timestamp::from_millis(1_761_472_800_123);
        let back: Timestamp = serde_json::from_str(&serde_json::to_string(&ts).unwrap()).unwrap();
        assert_eq!(back, ts);
    }

    #[test]
    fn until_is_zero_for_the_past() {
        let now = Timestamp::from_millis(10_000);
        assert_eq!(now.until(Timestamp::from_millis(9_000)), Duration::ZERO);
        assert_eq!(now.until(Timestamp::from_millis(12_500)), Duration::from_millis(2_500));
    }
}
