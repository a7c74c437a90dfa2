//! The broker's CPU and memory, read from `/proc/PID/stat` and
//! `/proc/PID/status` when it runs on this machine (`--broker-pid`).

use serde::Serialize;
use std::time::Instant;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// When it was taken.
    pub at: Instant,
}

/// CPU and memory of the broker over an interval.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcUsage {
    /// CPU use in percent of one core over the interval.
    pub cpu_percent: f64,
    /// RSS at the end of the interval, bytes.
    pub rss_bytes: u64,
}

/// Reads `pid`'s counters; `None` when the process is gone or unreadable.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        cpu_ticks: parse_cpu_ticks(&stat)?,
        rss_bytes: parse_rss(&status)?,
        at: Instant::now(),
    })
}

/// utime + stime from a `/proc/PID/stat` line (fields 14 and 15; the
/// command name in parentheses may contain spaces).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14 -> index 11.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// `VmRSS` from `/proc/PID/status`, in bytes.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Usage between two samples.
pub fn usage(before: &ProcSample, after: &ProcSample) -> ProcUsage {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let wall = after.at.duration_since(before.at).as_secs_f64();
    let cpu = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / hz;
    ProcUsage {
        cpu_percent: if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 },
        rss_bytes: after.rss_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (my (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100 2000 300";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_rss("Name:\tx\nVmRSS:\t   2048 kB\n"), Some(2 * 1024 * 1024));
        let me = sample(std::process::id()).expect("own process");
        assert!(me.rss_bytes > 0);
    }
}
