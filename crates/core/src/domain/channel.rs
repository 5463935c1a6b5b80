//! Channels: labels an event carries and a webhook may subscribe to, to narrow what it receives
//! within its event types (`orders:eu`, `project.42`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// The most channels one event carries, or one webhook subscribes to.
pub const MAX_CHANNELS: usize = 10;

/// `[a-zA-Z0-9_.:-]{1,128}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Channel(String);

impl Channel {
    pub fn parse(value: &str) -> Result<Self, String> {
        let ok = (1..=128).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if ok { Ok(Self(value.to_owned())) } else { Err("must match [a-zA-Z0-9_.:-]{1,128}".into()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a posted list of channels (`field`, e.g. `channels`): at most [`MAX_CHANNELS`], each
/// well-formed; repeats are dropped. Each problem is pushed onto `problems`.
pub fn parse_channels(field: &str, names: &[String], problems: &mut Vec<FieldError>) -> Option<Vec<Channel>> {
    if names.len() > MAX_CHANNELS {
        problems.push(FieldError::new(field, format!("must list at most {MAX_CHANNELS} channels")));
        return None;
    }
    let mut channels: Vec<Channel> = Vec::with_capacity(names.len());
    let before = problems.len();
    for (i, name) in names.iter().enumerate() {
        match Channel::parse(name) {
            Ok(c) if !channels.contains(&c) => channels.push(c),
            Ok(_) => {}
            Err(m) => problems.push(FieldError::new(format!("{field}[{i}]"), m)),
        }
    }
    (problems.len() == before).then_some(channels)
}

/// Whether a webhook subscribed to `wanted` (none: every channel) receives an event carrying
/// `carried`: it does when it names no channel, or one the event carries.
pub fn channels_match(wanted: &[Channel], carried: &[Channel]) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| carried.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_follow_the_rule() {
        for good in ["a", "orders:eu", "project.42", "A-b_c", &"x".repeat(128)] {
            assert!(Channel::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", "a#b", &"x".repeat(129)] {
            assert!(Channel::parse(bad).is_err(), "{bad}");
        }
        let mut problems = Vec::new();
        let names: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
        assert_eq!(parse_channels("channels", &names, &mut problems), None);
        assert_eq!(problems[0].field, "channels");
        let mut problems = Vec::new();
        let parsed = parse_channels("channels", &["a".into(), "a".into(), "b c".into()], &mut problems);
        assert_eq!((parsed, problems[0].field.as_str()), (None, "channels[2]"));
    }

    #[test]
    fn a_webhook_without_channels_receives_every_channel() {
        let c = |s: &str| Channel::parse(s).unwrap();
        assert!(channels_match(&[], &[]));
        assert!(channels_match(&[], &[c("eu")]));
        assert!(!channels_match(&[c("eu")], &[]));
        assert!(!channels_match(&[c("eu")], &[c("us")]));
        assert!(channels_match(&[c("eu"), c("us")], &[c("us"), c("apac")]));
    }
}
