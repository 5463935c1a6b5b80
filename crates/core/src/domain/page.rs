//! Paging: `limit` and `offset` as in the seed, plus an opaque `nextCursor`. Lists are newest
//! first; ids are UUIDv7, so the cursor is the id of the last item returned.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use uuid::Uuid;

use crate::{Error, FieldError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub offset: usize,
    /// Only items older than this id (the decoded cursor).
    pub before: Option<Uuid>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { limit: Self::DEFAULT_LIMIT, offset: 0, before: None }
    }
}

impl PageRequest {
    pub const DEFAULT_LIMIT: usize = 50;
    pub const MAX_LIMIT: usize = 500;
    pub const MAX_OFFSET: usize = 100_000;

    /// Checks the query parameters `limit`, `offset` and `cursor`.
    pub fn parse(limit: Option<&str>, offset: Option<&str>, cursor: Option<&str>, max_limit: usize) -> Result<Self> {
        let mut problems = Vec::new();
        let mut number = |field: &str, value: Option<&str>, min: usize, max: usize, default: usize| match value {
            None => default,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    problems.push(FieldError::new(field, format!("must be a whole number from {min} to {max}")));
                    default
                }
            },
        };
        let limit = number("limit", limit, 1, max_limit, Self::DEFAULT_LIMIT.min(max_limit));
        let offset = number("offset", offset, 0, Self::MAX_OFFSET, 0);
        let before = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => decode_cursor(c)
                .map_err(|()| problems.push(FieldError::new("cursor", "is not a cursor this API issued")))
                .ok(),
        };
        if problems.is_empty() { Ok(Self { limit, offset, before }) } else { Err(Error::invalid(problems)) }
    }

    /// Pages through items already in newest-first order (the in-memory stores use this).
    pub fn apply<T>(&self, newest_first: impl Iterator<Item = T>, id: impl Fn(&T) -> Uuid) -> Page<T> {
        let mut items: Vec<T> = newest_first
            .filter(|item| self.before.is_none_or(|before| id(item) < before))
            .skip(self.offset)
            .take(self.limit + 1)
            .collect();
        let more = items.len() > self.limit;
        items.truncate(self.limit);
        let next_cursor = if more { items.last().map(|last| encode_cursor(id(last))) } else { None };
        Page { items, next_cursor }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

pub fn encode_cursor(id: Uuid) -> String {
    B64URL.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<Uuid, ()> {
    let bytes = B64URL.decode(cursor).map_err(|_| ())?;
    Uuid::from_slice(&bytes).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids newest first, as the stores list them.
    fn newest_first(n: usize) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        ids.reverse();
        ids
    }

    #[test]
    fn cursor_pages_through_everything_once() {
        let ids = newest_first(7);
        let mut request = PageRequest { limit: 3, ..PageRequest::default() };
        let mut seen = Vec::new();
        loop {
            let page = request.apply(ids.iter().copied(), |id| *id);
            seen.extend(page.items);
            match page.next_cursor {
                Some(c) => request = PageRequest::parse(Some("3"), None, Some(&c), 500).unwrap(),
                None => break,
            }
        }
        assert_eq!(seen, ids);
    }

    #[test]
    fn offset_skips() {
        let ids = newest_first(5);
        let page = PageRequest { limit: 2, offset: 2, before: None }.apply(ids.iter().copied(), |id| *id);
        assert_eq!(page.items, ids[2..4]);
        assert!(page.next_cursor.is_some());
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(PageRequest::parse(Some("0"), None, None, 500).is_err());
        assert!(PageRequest::parse(Some("501"), None, None, 500).is_err());
        assert!(PageRequest::parse(Some("ten"), None, None, 500).is_err());
        assert!(PageRequest::parse(None, Some("-1"), None, 500).is_err());
        assert!(PageRequest::parse(None, None, Some("garbage!"), 500).is_err());
        assert_eq!(PageRequest::parse(None, None, None, 500).unwrap(), PageRequest::default());
    }
}
