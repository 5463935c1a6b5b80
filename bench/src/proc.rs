//! What Linux's /proc says about a process: CPU time and resident memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

/// Clock ticks per second in /proc's CPU times (USER_HZ, 100 on every Linux architecture that
/// matters here).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds the process has used so far (all its threads).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    Ok(stat(pid)?.cpu_seconds)
}

/// What the harness reads from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy)]
struct Stat {
    /// utime + stime, seconds.
    cpu_seconds: f64,
    /// When the process started, in clock ticks after boot: tells a reused pid apart.
    started: u64,
}

fn stat(pid: u32) -> Result<Stat> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime), 15 (stime) and 22 (starttime) of proc(5); `rest` starts at field 3.
    let number = |index: usize| -> Result<u64> {
        fields.get(index).context("short /proc stat")?.parse::<u64>().context("bad number in /proc stat")
    };
    Ok(Stat { cpu_seconds: (number(11)? + number(12)?) as f64 / TICKS_PER_SECOND, started: number(19)? })
}

/// The processes whose `/proc/<pid>/comm` is `name`, by (pid, start time), with their CPU
/// seconds so far. Processes that exit while /proc is read are left out.
fn processes_named(name: &str) -> HashMap<(u32, u64), f64> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return HashMap::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == name))
        .filter_map(|pid| stat(pid).ok().map(|stat| ((pid, stat.started), stat.cpu_seconds)))
        .collect()
}

/// CPU seconds spent between two points by every process of one name (`postgres`: the
/// postmaster, its background processes and one backend per connection; `redis-server`), all
/// users of those servers on the machine included.
///
/// Read from /proc twice, at [`GroupCpuMark::start`] and [`GroupCpuMark::elapsed`], so it is
/// what can be seen then: a process that appears in between (a new connection's backend) is
/// counted whole, all its CPU having been spent since the start; a process seen at the start and
/// gone at the end (a connection closed in between) loses what it spent since the start, since
/// its time then goes to its parent's children's time, which also holds the CPU of every child
/// that exited before the start and is not read. A pid reused in between is told apart by its
/// start time. In these runs the relay's connections stay open until it is killed, after the
/// second reading, so little goes missing.
#[derive(Debug, Clone)]
pub struct GroupCpuMark {
    name: &'static str,
    start: HashMap<(u32, u64), f64>,
}

impl GroupCpuMark {
    pub fn start(name: &'static str) -> Self {
        Self { name, start: processes_named(name) }
    }

    /// CPU seconds since the start, and how many processes of the name were seen at the start
    /// but are gone (their CPU since the start is missing).
    pub fn elapsed(&self) -> (f64, usize) {
        let now = processes_named(self.name);
        let spent = now.iter().map(|(key, cpu)| (cpu - self.start.get(key).copied().unwrap_or(0.0)).max(0.0)).sum();
        let gone = self.start.keys().filter(|key| !now.contains_key(key)).count();
        (spent, gone)
    }
}

/// Resident set size in KiB (`VmRSS`), or 0 when the process is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples a process's RSS every 50 ms in the background and keeps the peak.
#[derive(Debug)]
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let sampled = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                sampled.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { peak, task }
    }

    /// The peak RSS seen, in KiB.
    pub fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

/// CPU seconds spent by a process between two points.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    pid: u32,
    start: f64,
}

impl CpuMark {
    pub fn start(pid: u32) -> Result<Self> {
        Ok(Self { pid, start: cpu_seconds(pid)? })
    }

    pub fn elapsed(&self) -> Result<f64> {
        Ok(cpu_seconds(self.pid)? - self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).unwrap();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(pid).unwrap() >= before);
        assert!(rss_kib(pid) > 100);
        assert_eq!(rss_kib(u32::MAX), 0);
    }

    #[test]
    fn reads_processes_by_name() {
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let name: &'static str = Box::leak(comm.trim_end().to_owned().into_boxed_str());
        let mark = GroupCpuMark::start(name);
        assert!(mark.start.keys().any(|(pid, _)| *pid == std::process::id()), "{name}: {:?}", mark.start);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (spent, _) = mark.elapsed();
        assert!(spent >= 0.0);
        assert!(GroupCpuMark::start("no-such-process-name").elapsed() == (0.0, 0));
    }
}
