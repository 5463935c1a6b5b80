//! Process-wide counters and latency histograms, rendered as JSON or in the Prometheus text
//! format by `GET /api/dashboard/metrics`. In Lambda each instance counts for itself; the
//! durable numbers are the delivery log's (dashboard overview and stats).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

/// Upper bounds of the latency buckets, in milliseconds.
pub const BUCKETS_MS: [f64; 11] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

type Key = (&'static str, Vec<(&'static str, String)>);

#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, u64>>,
    histograms: Mutex<BTreeMap<Key, Histogram>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    /// Per bucket (not cumulative), plus the overflow.
    counts: [u64; BUCKETS_MS.len() + 1],
    sum_ms: f64,
    count: u64,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Metrics {
    pub fn increment(&self, name: &'static str, pairs: &[(&'static str, &str)]) {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        update(&mut counters, name, pairs, |count| *count += 1);
    }

    pub fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], duration: Duration) {
        let ms = duration.as_secs_f64() * 1000.0;
        let bucket = BUCKETS_MS.iter().position(|le| ms <= *le).unwrap_or(BUCKETS_MS.len());
        let mut histograms = self.histograms.lock().unwrap_or_else(PoisonError::into_inner);
        update(&mut histograms, name, pairs, |histogram| {
            histogram.counts[bucket] += 1;
            histogram.sum_ms += ms;
            histogram.count += 1;
        });
    }

    pub fn to_json(&self) -> Value {
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let histograms = self.histograms.lock().unwrap_or_else(PoisonError::into_inner);
        let label_map = |labels: &[(&str, String)]| -> Value {
            labels.iter().map(|(k, v)| ((*k).to_owned(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>().into()
        };
        json!({
            "counters": counters.iter().map(|((name, labels), value)| json!({
                "name": name, "labels": label_map(labels), "value": value,
            })).collect::<Vec<_>>(),
            "histograms": histograms.iter().map(|((name, labels), h)| json!({
                "name": name,
                "labels": label_map(labels),
                "count": h.count,
                "sumMs": h.sum_ms,
                "buckets": BUCKETS_MS.iter().zip(h.cumulative()).map(|(le, n)| json!({"leMs": le, "count": n})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let histograms = self.histograms.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        let mut typed = std::collections::BTreeSet::new();
        for ((name, labels), value) in counters.iter() {
            if typed.insert(*name) {
                let _ = writeln!(out, "# TYPE {name} counter");
            }
            let _ = writeln!(out, "{name}{} {value}", render_labels(labels, None));
        }
        for ((name, labels), h) in histograms.iter() {
            if typed.insert(*name) {
                let _ = writeln!(out, "# TYPE {name} histogram");
            }
            for (le, n) in BUCKETS_MS.iter().zip(h.cumulative()) {
                let _ = writeln!(out, "{name}_bucket{} {n}", render_labels(labels, Some(&le.to_string())));
            }
            let _ = writeln!(out, "{name}_bucket{} {}", render_labels(labels, Some("+Inf")), h.count);
            let _ = writeln!(out, "{name}_sum{} {}", render_labels(labels, None), h.sum_ms);
            let _ = writeln!(out, "{name}_count{} {}", render_labels(labels, None), h.count);
        }
        out
    }
}

/// Applies `f` to the value of `name` with these labels. Every request and delivery attempt
/// records, so the value is found without allocating when it exists (the keys with one name
/// are few and adjacent); only a new label combination allocates its key.
fn update<V: Default>(map: &mut BTreeMap<Key, V>, name: &'static str, pairs: &[(&'static str, &str)], f: impl FnOnce(&mut V)) {
    let same = |labels: &[(&'static str, String)]| {
        labels.len() == pairs.len() && labels.iter().zip(pairs).all(|((k, v), (pk, pv))| k == pk && v == pv)
    };
    let existing = map
        .range_mut((name, Vec::new())..)
        .take_while(|((n, _), _)| *n == name)
        .find(|((_, labels), _)| same(labels))
        .map(|(_, value)| value);
    match existing {
        Some(value) => f(value),
        None => f(map.entry((name, labels(pairs))).or_default()),
    }
}

impl Histogram {
    fn cumulative(&self) -> Vec<u64> {
        self.counts[..BUCKETS_MS.len()]
            .iter()
            .scan(0, |total, n| {
                *total += n;
                Some(*total)
            })
            .collect()
    }
}

fn render_labels(labels: &[(&str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_label_combination_counts_for_itself() {
        let m = Metrics::default();
        for _ in 0..3 {
            m.increment("requests", &[("route", "/a"), ("status", "200")]);
        }
        m.increment("requests", &[("route", "/a")]);
        m.increment("requests", &[("route", "/a"), ("status", "500")]);
        m.increment("requests_other", &[("route", "/a"), ("status", "200")]);
        m.increment("requests", &[]);
        let counters = m.counters.lock().unwrap();
        let value = |name: &'static str, pairs: &[(&'static str, &str)]| counters.get(&(name, labels(pairs))).copied();
        assert_eq!(value("requests", &[("route", "/a"), ("status", "200")]), Some(3));
        assert_eq!(value("requests", &[("route", "/a")]), Some(1));
        assert_eq!(value("requests", &[("route", "/a"), ("status", "500")]), Some(1));
        assert_eq!(value("requests_other", &[("route", "/a"), ("status", "200")]), Some(1));
        assert_eq!(value("requests", &[]), Some(1));
        assert_eq!(counters.len(), 5);
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.increment("relay_events_accepted_total", &[("event_type", "job.created")]);
        m.increment("relay_events_accepted_total", &[("event_type", "job.created")]);
        m.observe("relay_delivery_attempt_duration_ms", &[], Duration::from_millis(7));
        m.observe("relay_delivery_attempt_duration_ms", &[], Duration::from_secs(20));
        let text = m.to_prometheus();
        assert!(text.contains("# TYPE relay_events_accepted_total counter\nrelay_events_accepted_total{event_type=\"job.created\"} 2\n"), "{text}");
        assert!(text.contains("# TYPE relay_delivery_attempt_duration_ms histogram\n"));
        assert!(text.contains("relay_delivery_attempt_duration_ms_bucket{le=\"5\"} 0\n"));
        assert!(text.contains("relay_delivery_attempt_duration_ms_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("relay_delivery_attempt_duration_ms_bucket{le=\"10000\"} 1\n"));
        assert!(text.contains("relay_delivery_attempt_duration_ms_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("relay_delivery_attempt_duration_ms_count 2\n"));
        assert!(text.contains("relay_delivery_attempt_duration_ms_sum 20007\n"));
    }

    #[test]
    fn escapes_label_values_and_renders_json() {
        let m = Metrics::default();
        m.increment("c", &[("route", "a\"b")]);
        assert!(m.to_prometheus().contains("c{route=\"a\\\"b\"} 1"));
        let json = m.to_json();
        assert_eq!(json["counters"][0]["labels"]["route"], "a\"b");
        assert_eq!(json["counters"][0]["value"], 1);
    }
}
