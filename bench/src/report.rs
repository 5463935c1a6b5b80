//! The result of a run: the machine, each scenario's numbers and checks, printed as a table and
//! written as JSON.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::relay::Backend;

/// What the numbers were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, name)| name.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        }
    }
}

/// One number a scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
}

/// One property a scenario checked (no losses, no duplicates, retries as configured). Timings
/// are never checks.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// One scenario's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    /// The backends relay-local ran on; `None` for what does not run relay-local (start-up).
    pub backend: Option<Backend>,
    /// The settings it ran with (counts, concurrency, relay variables).
    pub settings: Value,
    pub metrics: Vec<Metric>,
    pub checks: Vec<Check>,
}

impl ScenarioResult {
    pub fn new(name: impl Into<String>, settings: Value) -> Self {
        Self { name: name.into(), backend: None, settings, metrics: Vec::new(), checks: Vec::new() }
    }

    pub fn metric(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        self.metrics.push(Metric { name: name.into(), value, unit });
    }

    pub fn check(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check { name: name.into(), ok, detail: detail.into() });
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.name == name).map(|m| m.value)
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The backends every scenario ran on, in turn; the first is what the others are compared
    /// with in the table.
    pub backends: Vec<Backend>,
    pub machine: Machine,
    /// Unix seconds when the run started.
    pub started_at: u64,
    pub results: Vec<ScenarioResult>,
}

impl Report {
    /// Every failed check, as "scenario: check: detail".
    pub fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .flat_map(|r| {
                r.checks.iter().filter(|c| !c.ok).map(move |c| format!("{}: {}: {}", r.name, c.name, c.detail))
            })
            .collect()
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The result of the same scenario on the first backend, for a result on another one.
    fn baseline(&self, result: &ScenarioResult) -> Option<(&ScenarioResult, Backend)> {
        let first = *self.backends.first()?;
        if self.backends.len() < 2 || result.backend.is_none_or(|backend| backend == first) {
            return None;
        }
        let base = self.results.iter().find(|r| r.backend == Some(first) && r.name == result.name)?;
        Some((base, first))
    }

    /// The table printed at the end of a run. With several backends, each result names its
    /// backend, and each number of a backend after the first is followed by its ratio to the
    /// first backend's number for the same scenario ("(25.1% of memory)").
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let names: Vec<&str> = self.backends.iter().map(|b| b.name()).collect();
        let _ = writeln!(
            out,
            "relay-bench, backends {}, on {} ({} cores, {} GiB, Linux {})\n",
            names.join(", "),
            m.cpu,
            m.cores,
            m.memory_gib,
            m.kernel
        );
        let width = self
            .results
            .iter()
            .flat_map(|r| r.metrics.iter().map(|x| x.name.len()).chain(r.checks.iter().map(|c| c.name.len() + 6)))
            .max()
            .unwrap_or(10);
        for result in &self.results {
            match result.backend {
                Some(backend) if self.backends.len() > 1 => {
                    let _ = writeln!(out, "{} [{}]", result.name, backend.name());
                }
                _ => {
                    let _ = writeln!(out, "{}", result.name);
                }
            }
            let baseline = self.baseline(result);
            for metric in &result.metrics {
                let mut line = format!("  {:<width$}  {:>12}", metric.name, format_value(metric.value));
                if !metric.unit.is_empty() {
                    let _ = write!(line, " {}", metric.unit);
                }
                let base = baseline.and_then(|(base, backend)| Some((base.value(&metric.name)?, backend)));
                if let Some((base, backend)) = base
                    && base != 0.0
                    && base.is_finite()
                    && metric.value.is_finite()
                {
                    let _ = write!(line, "  ({:.1}% of {})", metric.value / base * 100.0, backend.name());
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
            for check in &result.checks {
                let mark = if check.ok { "ok  " } else { "FAIL" };
                let _ = writeln!(out, "  {mark}  {:<w$}  {}", check.name, check.detail, w = width - 6);
            }
            out.push('\n');
        }
        out
    }
}

fn format_value(value: f64) -> String {
    if (value.fract() == 0.0 && value.abs() < 1e15) || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, backend: Backend, rate: f64, lost: f64) -> ScenarioResult {
        let mut result = ScenarioResult::new(name, Value::Null);
        result.backend = Some(backend);
        result.metric("delivered/s", rate, "deliveries/s");
        result.metric("lost", lost, "");
        result
    }

    #[test]
    fn later_backends_are_compared_with_the_first() {
        let report = Report {
            backends: vec![Backend::Memory, Backend::Postgres],
            machine: Machine::this(),
            started_at: 0,
            results: vec![
                result("e2e", Backend::Memory, 6500.0, 0.0),
                result("e2e", Backend::Postgres, 1634.0, 0.0),
                ScenarioResult::new("start-up", Value::Null),
            ],
        };
        let table = report.table();
        assert!(table.contains("backends memory, postgres"), "{table}");
        assert!(table.contains("e2e [postgres]"), "{table}");
        assert!(table.contains("1634 deliveries/s  (25.1% of memory)"), "{table}");
        assert_eq!(table.matches("% of memory").count(), 1, "no ratio to a zero, none on the first: {table}");
        assert!(table.contains("start-up\n"), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["backends"], serde_json::json!(["memory", "postgres"]));
        assert_eq!(json["results"][1]["backend"], "postgres");
        assert!(json["results"][2]["backend"].is_null());
    }
}
