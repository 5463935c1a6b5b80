//! Process-wide counters and latency histograms, rendered as JSON or in the Prometheus text
//! format by the operators' `GET /api/metrics`. In Lambda each instance counts for itself; the
//! durable numbers are the delivery log's (dashboard overview and stats).
//!
//! The number of series is bounded by construction: callers pass label values from closed sets
//! (the router's route templates, known methods, status codes, configured event types,
//! outcomes), and each metric holds at most [`MAX_SERIES`] label combinations; past that, new
//! combinations are counted together under labels whose values are all `other`. A lookup
//! hashes the name and labels and compares the few series with that hash: it does not scan,
//! and it allocates only for a new series.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

/// Upper bounds of the latency buckets, in milliseconds.
pub const BUCKETS_MS: [f64; 11] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// The most label combinations one metric keeps.
pub const MAX_SERIES: usize = 1000;

/// The value every label takes in the series that collects combinations past [`MAX_SERIES`].
const OTHER: &str = "other";

type Labels = Vec<(&'static str, String)>;

/// The series of every metric of one kind (counters or histograms), found by hash.
#[derive(Debug)]
struct Series<V> {
    by_hash: HashMap<u64, Vec<(&'static str, Labels, V)>>,
    per_name: HashMap<&'static str, usize>,
}

impl<V> Default for Series<V> {
    fn default() -> Self {
        Self { by_hash: HashMap::new(), per_name: HashMap::new() }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Series<u64>>,
    histograms: Mutex<Series<Histogram>>,
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

/// The method as a label: one of the methods the API serves, else `other`, so a client
/// cannot add series by inventing methods.
/// Methods are case-sensitive: `get` is not `GET`.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => OTHER,
    }
}

fn hash(name: &str, pairs: &[(&'static str, &str)]) -> u64 {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    for (key, value) in pairs {
        key.hash(&mut hasher);
        value.hash(&mut hasher);
    }
    hasher.finish()
}

fn same(labels: &Labels, pairs: &[(&'static str, &str)]) -> bool {
    labels.len() == pairs.len() && labels.iter().zip(pairs).all(|((k, v), (pk, pv))| k == pk && v == pv)
}

impl<V: Default> Series<V> {
    /// Applies `f` to the value of `name` with these labels, creating it if there is room, else
    /// applying it to the metric's `other` series.
    fn update(&mut self, name: &'static str, pairs: &[(&'static str, &str)], f: impl FnOnce(&mut V)) {
        let mut key = hash(name, pairs);
        let mut labels = pairs;
        let other: Vec<(&'static str, &str)>;
        if self.find(key, name, labels).is_none() {
            let count = self.per_name.entry(name).or_insert(0);
            if *count < MAX_SERIES {
                *count += 1;
            } else {
                other = pairs.iter().map(|(k, _)| (*k, OTHER)).collect();
                labels = &other;
                key = hash(name, labels);
            }
            if self.find(key, name, labels).is_none() {
                self.insert(key, name, labels);
            }
        }
        if let Some(value) = self.find(key, name, labels) {
            f(value);
        }
    }

    fn find(&mut self, key: u64, name: &'static str, pairs: &[(&'static str, &str)]) -> Option<&mut V> {
        self.by_hash
            .get_mut(&key)?
            .iter_mut()
            .find(|(n, labels, _)| *n == name && same(labels, pairs))
            .map(|(_, _, value)| value)
    }

    fn insert(&mut self, key: u64, name: &'static str, pairs: &[(&'static str, &str)]) {
        let labels = pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.by_hash.entry(key).or_default().push((name, labels, V::default()));
    }

    /// Every series, sorted by name and labels, for stable output.
    fn sorted(&self) -> Vec<(&'static str, &Labels, &V)> {
        let mut all: Vec<_> =
            self.by_hash.values().flatten().map(|(name, labels, value)| (*name, labels, value)).collect();
        all.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        all
    }

    fn len(&self) -> usize {
        self.by_hash.values().map(Vec::len).sum()
    }
}

impl Metrics {
    pub fn increment(&self, name: &'static str, pairs: &[(&'static str, &str)]) {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        counters.update(name, pairs, |count| *count += 1);
    }

    pub fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], duration: Duration) {
        let ms = duration.as_secs_f64() * 1000.0;
        let bucket = BUCKETS_MS.iter().position(|le| ms <= *le).unwrap_or(BUCKETS_MS.len());
        let mut histograms = self.histograms.lock().unwrap_or_else(PoisonError::into_inner);
        histograms.update(name, pairs, |histogram| {
            histogram.counts[bucket] += 1;
            histogram.sum_ms += ms;
            histogram.count += 1;
        });
    }

    /// How many series exist, counters and histograms together.
    pub fn series(&self) -> usize {
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner).len();
        counters + self.histograms.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn to_json(&self) -> Value {
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let histograms = self.histograms.lock().unwrap_or_else(PoisonError::into_inner);
        let label_map = |labels: &Labels| -> Value {
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "counters": counters.sorted().into_iter().map(|(name, labels, value)| json!({
                "name": name, "labels": label_map(labels), "value": value,
            })).collect::<Vec<_>>(),
            "histograms": histograms.sorted().into_iter().map(|(name, labels, h)| json!({
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
        let mut typed = BTreeSet::new();
        for (name, labels, value) in counters.sorted() {
            if typed.insert(name) {
                let _ = writeln!(out, "# TYPE {name} counter");
            }
            let _ = writeln!(out, "{name}{} {value}", render_labels(labels, None));
        }
        for (name, labels, h) in histograms.sorted() {
            if typed.insert(name) {
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

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
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

    fn counter(m: &Metrics, name: &'static str, pairs: &[(&'static str, &str)]) -> Option<u64> {
        let mut counters = m.counters.lock().unwrap();
        counters.find(hash(name, pairs), name, pairs).copied()
    }

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
        assert_eq!(counter(&m, "requests", &[("route", "/a"), ("status", "200")]), Some(3));
        assert_eq!(counter(&m, "requests", &[("route", "/a")]), Some(1));
        assert_eq!(counter(&m, "requests", &[("route", "/a"), ("status", "500")]), Some(1));
        assert_eq!(counter(&m, "requests_other", &[("route", "/a"), ("status", "200")]), Some(1));
        assert_eq!(counter(&m, "requests", &[]), Some(1));
        assert_eq!(m.series(), 5);
    }

    /// Past `MAX_SERIES` combinations of one metric, new ones count together under `other`;
    /// other metrics keep their own room.
    #[test]
    fn series_are_bounded_per_metric() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES + 500 {
            m.increment("requests", &[("route", &format!("/r{i}")), ("status", "200")]);
            m.observe("latency", &[("route", &format!("/r{i}"))], Duration::from_millis(1));
        }
        m.increment("requests", &[("route", "/r0"), ("status", "200")]);
        assert_eq!(counter(&m, "requests", &[("route", "/r0"), ("status", "200")]), Some(2));
        assert_eq!(counter(&m, "requests", &[("route", "other"), ("status", "other")]), Some(500));
        assert_eq!(counter(&m, "requests", &[("route", &format!("/r{MAX_SERIES}")), ("status", "200")]), None);
        assert_eq!(m.series(), 2 * (MAX_SERIES + 1));
        m.increment("accepted", &[("event_type", "job.created")]);
        assert_eq!(counter(&m, "accepted", &[("event_type", "job.created")]), Some(1));
    }

    #[test]
    fn only_known_methods_are_labels() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("DELETE"), "DELETE");
        assert_eq!(method_label("BREW"), "other");
        assert_eq!(method_label("get"), "other");
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
