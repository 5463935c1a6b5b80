//! Payload filters: a webhook's `filter`, a JSON object matched against each event at dispatch.
//! A field path (`eventType`, `source`, `tenant`, `payload.a.b`) maps to a value (equality) or
//! to operators (`$in`, `$nin`, `$exists`, `$gt`, `$gte`, `$lt`, `$lte`, `$ne`, `$eq`); all the
//! fields of an object must match; `$and` and `$or` combine lists of filters.
//!
//! ```json
//! {"payload.status": "hired", "payload.salary": {"$gte": 50000},
//!  "$or": [{"source": "ats"}, {"payload.priority": {"$in": ["high", "urgent"]}}]}
//! ```

use std::cmp::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::Event;
use crate::FieldError;

/// The most conditions (field tests and combinators) one filter holds.
pub const MAX_FILTER_CONDITIONS: usize = 50;
/// The deepest `$and`/`$or` may nest.
pub const MAX_FILTER_DEPTH: usize = 5;
/// The largest filter, as compact JSON.
pub const MAX_FILTER_BYTES: usize = 4096;
/// The most values one `$in`/`$nin` lists.
const MAX_LIST: usize = 100;

/// A checked filter, and the JSON it was written as (which is what the API shows and stores).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    source: Value,
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Test { path: Path, op: Op },
}

#[derive(Debug, Clone, PartialEq)]
enum Path {
    EventType,
    Source,
    Tenant,
    /// Keys below the payload object.
    Payload(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Cmp(Ordering, bool, Value),
}

impl Filter {
    /// Checks a posted filter; every problem is named under `field` (e.g.
    /// `filter.payload.amount.$gt`).
    pub fn parse(value: &Value, field: &str) -> Result<Self, Vec<FieldError>> {
        let mut problems = Vec::new();
        if value.to_string().len() > MAX_FILTER_BYTES {
            return Err(vec![FieldError::new(field, format!("must be at most {MAX_FILTER_BYTES} bytes as JSON"))]);
        }
        let mut count = 0;
        let root = match value {
            Value::Object(map) => Some(parse_object(map, field, 0, &mut count, &mut problems)),
            _ => {
                problems.push(FieldError::new(field, "must be a JSON object"));
                None
            }
        };
        if count > MAX_FILTER_CONDITIONS {
            problems.push(FieldError::new(field, format!("must hold at most {MAX_FILTER_CONDITIONS} conditions")));
        }
        match root {
            Some(root) if problems.is_empty() => Ok(Self { source: value.clone(), root }),
            _ => Err(problems),
        }
    }

    /// The filter as written.
    pub fn as_json(&self) -> &Value {
        &self.source
    }

    /// Whether `event` (its payload already parsed: `payload`) passes the filter.
    pub fn matches(&self, event: &Event, payload: &Value) -> bool {
        self.root.matches(event, payload)
    }
}

fn parse_object(
    map: &Map<String, Value>,
    field: &str,
    depth: usize,
    count: &mut usize,
    problems: &mut Vec<FieldError>,
) -> Node {
    let mut all = Vec::with_capacity(map.len());
    for (key, value) in map {
        let here = format!("{field}.{key}");
        *count += 1;
        match key.as_str() {
            "$and" | "$or" => {
                let Some(list) = value.as_array().filter(|l| !l.is_empty()) else {
                    problems.push(FieldError::new(here, "must be a non-empty list of filters"));
                    continue;
                };
                if depth + 1 > MAX_FILTER_DEPTH {
                    problems
                        .push(FieldError::new(here, format!("must not nest deeper than {MAX_FILTER_DEPTH} levels")));
                    continue;
                }
                let mut nodes = Vec::with_capacity(list.len());
                for (i, item) in list.iter().enumerate() {
                    let item_field = format!("{here}[{i}]");
                    match item {
                        Value::Object(inner) => {
                            nodes.push(parse_object(inner, &item_field, depth + 1, count, problems))
                        }
                        _ => problems.push(FieldError::new(item_field, "must be a JSON object")),
                    }
                }
                all.push(if key == "$and" { Node::All(nodes) } else { Node::Any(nodes) });
            }
            other if other.starts_with('$') => {
                problems.push(FieldError::new(here, "is not an operator here: only $and and $or combine filters"));
            }
            path => match parse_path(path) {
                Err(message) => problems.push(FieldError::new(here, message)),
                Ok(path) => parse_tests(path, value, &here, count, problems, &mut all),
            },
        }
    }
    Node::All(all)
}

fn parse_path(path: &str) -> Result<Path, String> {
    match path {
        "eventType" => Ok(Path::EventType),
        "source" => Ok(Path::Source),
        "tenant" => Ok(Path::Tenant),
        _ => match path.strip_prefix("payload.") {
            Some(rest) if !rest.is_empty() && rest.split('.').all(|k| !k.is_empty()) => {
                Ok(Path::Payload(rest.split('.').map(str::to_owned).collect()))
            }
            _ => Err("must be eventType, source, tenant or payload.<key>[.<key>...]".into()),
        },
    }
}

/// The tests of one field: a value (equality), or an object of operators.
fn parse_tests(
    path: Path,
    value: &Value,
    here: &str,
    count: &mut usize,
    problems: &mut Vec<FieldError>,
    out: &mut Vec<Node>,
) {
    let operators = match value {
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => map,
        other => {
            out.push(Node::Test { path, op: Op::Eq(other.clone()) });
            return;
        }
    };
    for (name, operand) in operators {
        *count += 1;
        let at = format!("{here}.{name}");
        let op = match name.as_str() {
            "$eq" => Ok(Op::Eq(operand.clone())),
            "$ne" => Ok(Op::Ne(operand.clone())),
            "$in" | "$nin" => match operand.as_array() {
                Some(list) if list.len() <= MAX_LIST => {
                    Ok(if name == "$in" { Op::In(list.clone()) } else { Op::Nin(list.clone()) })
                }
                Some(_) => Err(format!("must list at most {MAX_LIST} values")),
                None => Err("must be a list of values".into()),
            },
            "$exists" => operand.as_bool().map(Op::Exists).ok_or_else(|| "must be true or false".into()),
            "$gt" | "$gte" | "$lt" | "$lte" => match operand {
                Value::Number(_) | Value::String(_) => {
                    let (ordering, or_equal) = match name.as_str() {
                        "$gt" => (Ordering::Greater, false),
                        "$gte" => (Ordering::Greater, true),
                        "$lt" => (Ordering::Less, false),
                        _ => (Ordering::Less, true),
                    };
                    Ok(Op::Cmp(ordering, or_equal, operand.clone()))
                }
                _ => Err("must be a number or a string".into()),
            },
            _ => Err("is not an operator: use $eq, $ne, $in, $nin, $exists, $gt, $gte, $lt or $lte".into()),
        };
        match op {
            Ok(op) => out.push(Node::Test { path: path.clone(), op }),
            Err(message) => problems.push(FieldError::new(at, message)),
        }
    }
}

impl Node {
    fn matches(&self, event: &Event, payload: &Value) -> bool {
        match self {
            Self::All(nodes) => nodes.iter().all(|n| n.matches(event, payload)),
            Self::Any(nodes) => nodes.iter().any(|n| n.matches(event, payload)),
            Self::Test { path, op } => {
                let found = match path {
                    Path::EventType => Some(Field::Text(event.event_type.as_str())),
                    Path::Source => event.source.as_deref().map(Field::Text),
                    Path::Tenant => event.tenant.as_ref().map(|t| Field::Text(t.as_str())),
                    Path::Payload(keys) => keys.iter().try_fold(payload, |value, key| value.get(key)).map(Field::Json),
                };
                op.test(found)
            }
        }
    }
}

/// A field of the event as found: one of its own strings, or a value in the payload.
#[derive(Clone, Copy)]
enum Field<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl Op {
    fn test(&self, found: Option<Field<'_>>) -> bool {
        match self {
            Self::Eq(expected) => found.is_some_and(|v| same(v, expected)),
            Self::Ne(expected) => !found.is_some_and(|v| same(v, expected)),
            Self::In(list) => found.is_some_and(|v| list.iter().any(|e| same(v, e))),
            Self::Nin(list) => !found.is_some_and(|v| list.iter().any(|e| same(v, e))),
            Self::Exists(wanted) => found.is_some() == *wanted,
            Self::Cmp(ordering, or_equal, bound) => match found.and_then(|v| compare(v, bound)) {
                Some(Ordering::Equal) => *or_equal,
                Some(got) => got == *ordering,
                None => false,
            },
        }
    }
}

/// JSON equality, numbers by value (`1` equals `1.0`).
fn same(found: Field<'_>, expected: &Value) -> bool {
    match (found, expected) {
        (Field::Text(text), Value::String(s)) => text == s,
        (Field::Text(_), _) => false,
        (Field::Json(Value::Number(x)), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Field::Json(value), _) => value == expected,
    }
}

/// Numbers with numbers, strings with strings; anything else does not compare.
fn compare(found: Field<'_>, bound: &Value) -> Option<Ordering> {
    match (found, bound) {
        (Field::Text(text), Value::String(s)) => Some(text.cmp(s.as_str())),
        (Field::Json(Value::String(text)), Value::String(s)) => Some(text.cmp(s)),
        (Field::Json(Value::Number(x)), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        _ => None,
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

/// Read back from a store or cache: the rules were applied when it was written.
impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::parse(&value, "filter").map_err(|problems| {
            serde::de::Error::custom(
                problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;
    use crate::domain::{EventInput, EventTypeRegistry, NewEvent};
    use serde_json::json;

    fn event(extra: Value) -> Event {
        let mut body = json!({"eventType": "candidate.status_changed", "eventName": "x", "source": "ats",
                              "payload": {"status": "hired", "salary": 72000, "team": {"name": "core"}, "tags": null}});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let input: EventInput = serde_json::from_value(body).unwrap();
        Event::new(NewEvent::parse(input, &EventTypeRegistry::default()).unwrap(), Timestamp::now())
    }

    fn passes(filter: Value, event: &Event) -> bool {
        Filter::parse(&filter, "filter").unwrap().matches(event, &event.payload.to_value())
    }

    #[test]
    fn every_operator_does_what_it_says() {
        let e = event(json!({"tenant": "acme"}));
        for (filter, expected) in [
            (json!({}), true),
            (json!({"payload.status": "hired"}), true),
            (json!({"payload.status": "rejected"}), false),
            (json!({"eventType": "candidate.status_changed", "source": "ats", "tenant": "acme"}), true),
            (json!({"tenant": "globex"}), false),
            (json!({"payload.team.name": "core"}), true),
            (json!({"payload.salary": 72000.0}), true),
            (json!({"payload.salary": {"$gte": 72000, "$lt": 100000}}), true),
            (json!({"payload.salary": {"$gt": 72000}}), false),
            (json!({"payload.salary": {"$lte": 72000}}), true),
            (json!({"payload.salary": {"$gt": "a string"}}), false),
            (json!({"payload.status": {"$gt": "a"}}), true),
            (json!({"payload.status": {"$in": ["hired", "offered"]}}), true),
            (json!({"payload.status": {"$nin": ["hired"]}}), false),
            (json!({"payload.missing": {"$nin": ["hired"]}}), true),
            (json!({"payload.status": {"$ne": "rejected"}}), true),
            (json!({"payload.missing": {"$ne": "x"}}), true),
            (json!({"payload.missing": {"$exists": false}}), true),
            (json!({"payload.tags": {"$exists": true}}), true),
            (json!({"payload.tags": null}), true),
            (json!({"payload.missing": null}), false),
            (json!({"$or": [{"payload.status": "rejected"}, {"source": "ats"}]}), true),
            (json!({"$and": [{"payload.status": "hired"}, {"source": "hr"}]}), false),
            (
                json!({"$or": [{"$and": [{"source": "ats"}, {"payload.salary": {"$gt": 70000}}]}, {"tenant": "x"}]}),
                true,
            ),
        ] {
            assert_eq!(passes(filter.clone(), &e), expected, "{filter}");
        }
        let broadcast = event(json!({}));
        assert!(!passes(json!({"tenant": "acme"}), &broadcast));
        assert!(passes(json!({"tenant": {"$exists": false}}), &broadcast));
    }

    #[test]
    fn bad_filters_name_the_bad_part() {
        let fields = |filter: Value| -> Vec<String> {
            Filter::parse(&filter, "filter").unwrap_err().into_iter().map(|p| p.field).collect()
        };
        assert_eq!(fields(json!([1])), ["filter"]);
        assert_eq!(fields(json!({"status": "hired"})), ["filter.status"]);
        assert_eq!(fields(json!({"payload.": 1})), ["filter.payload."]);
        assert_eq!(fields(json!({"payload.amount": {"$gt": true}})), ["filter.payload.amount.$gt"]);
        assert_eq!(fields(json!({"payload.amount": {"$regex": "x"}})), ["filter.payload.amount.$regex"]);
        assert_eq!(fields(json!({"payload.a": {"$in": 3}})), ["filter.payload.a.$in"]);
        assert_eq!(fields(json!({"payload.a": {"$exists": "yes"}})), ["filter.payload.a.$exists"]);
        assert_eq!(fields(json!({"$or": []})), ["filter.$or"]);
        assert_eq!(fields(json!({"$or": [{"source": "a"}, 2]})), ["filter.$or[1]"]);
        assert_eq!(fields(json!({"$not": {}})), ["filter.$not"]);
        let mut deep = json!({"source": "a"});
        for _ in 0..=MAX_FILTER_DEPTH {
            deep = json!({"$and": [deep]});
        }
        assert!(Filter::parse(&deep, "filter").is_err());
        let many: Map<String, Value> = (0..51).map(|i| (format!("payload.k{i}"), json!(i))).collect();
        assert!(Filter::parse(&Value::Object(many), "filter").is_err());
        // An object without operators is a value to equal.
        assert!(Filter::parse(&json!({"payload.team": {"name": "core"}}), "filter").is_ok());
    }

    #[test]
    fn a_filter_round_trips_as_written() {
        let written = json!({"payload.status": {"$in": ["hired"]}, "$or": [{"source": "ats"}]});
        let filter = Filter::parse(&written, "filter").unwrap();
        let stored = serde_json::to_value(&filter).unwrap();
        assert_eq!(stored, written);
        assert_eq!(serde_json::from_value::<Filter>(stored).unwrap(), filter);
    }
}
