//! Event types and the registry of those this deployment accepts.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The seed's eleven event types, accepted when `EVENT_TYPES` is not set.
pub const DEFAULT_EVENT_TYPES: [&str; 11] = [
    "job.created",
    "job.updated",
    "job.deleted",
    "candidate.created",
    "candidate.updated",
    "candidate.status_changed",
    "interview.scheduled",
    "interview.completed",
    "interview.cancelled",
    "assessment.submitted",
    "assessment.graded",
];

/// A well-formed event type name: dot-separated segments of lowercase letters, digits and
/// `_`, at least two segments, at most 100 characters (`candidate.status_changed`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventType(String);

impl EventType {
    fn parse_name(value: &str) -> Result<Self, String> {
        let segments: Vec<&str> = value.split('.').collect();
        let well_formed = value.len() <= 100
            && segments.len() >= 2
            && segments
                .iter()
                .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        if well_formed {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!("{value:?} is not an event type name (dot-separated lowercase segments, like job.created)"))
        }
    }

    /// A type read back from a store: well-formed, but perhaps no longer configured.
    pub fn from_store(value: &str) -> Result<Self, String> {
        Self::parse_name(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The event types this deployment accepts. An [`EventType`] can only be obtained from here,
/// so an unknown type cannot get past the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeRegistry {
    types: BTreeSet<EventType>,
}

impl Default for EventTypeRegistry {
    fn default() -> Self {
        Self::from_names(DEFAULT_EVENT_TYPES).unwrap_or_else(|_| Self { types: BTreeSet::new() })
    }
}

impl EventTypeRegistry {
    /// Builds a registry from a comma-separated list, as `EVENT_TYPES` gives it.
    pub fn from_list(list: &str) -> Result<Self, String> {
        Self::from_names(list.split(',').map(str::trim).filter(|s| !s.is_empty()))
    }

    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let types = names.into_iter().map(EventType::parse_name).collect::<Result<BTreeSet<_>, _>>()?;
        if types.is_empty() {
            return Err("at least one event type is required".into());
        }
        Ok(Self { types })
    }

    /// The known type with this name, or a message saying it is unknown.
    pub fn parse(&self, name: &str) -> Result<EventType, String> {
        self.types.iter().find(|t| t.as_str() == name).cloned().ok_or_else(|| format!("unknown event type {name:?}"))
    }

    pub fn iter(&self) -> impl Iterator<Item = &EventType> {
        self.types.iter()
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_seeds_eleven() {
        let registry = EventTypeRegistry::default();
        assert_eq!(registry.len(), 11);
        assert!(registry.parse("candidate.status_changed").is_ok());
        assert!(registry.parse("candidate.deleted").is_err());
    }

    #[test]
    fn custom_list_replaces_the_default() {
        let registry = EventTypeRegistry::from_list(" order.placed, order.shipped ,").unwrap();
        assert_eq!(registry.len(), 2);
        assert!(registry.parse("order.placed").is_ok());
        assert!(registry.parse("job.created").is_err());
    }

    #[test]
    fn malformed_names_are_rejected() {
        for bad in ["", "job", "Job.Created", "job..created", "job.created!", ".job"] {
            assert!(EventTypeRegistry::from_list(bad).is_err(), "{bad:?} accepted");
        }
    }
}
