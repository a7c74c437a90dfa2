//! Rate steps: parsing `--rates 10k,50k,1M`, summarising a finished step,
//! and picking the maximum sustained rate (the highest step whose p99 stays
//! under the limit with at least 99.99% delivered).

use crate::procstat::ProcUsage;
use crate::stats::StepCounters;
use serde::Serialize;
use thiserror::Error;

/// Minimum delivered fraction for a step to pass.
pub const MIN_DELIVERED: f64 = 0.9999;

/// A rate that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("bad rate `{0}` (expected e.g. 500, 10k, 1.5M)")]
pub struct RateError(pub String);

/// Parses one rate: `500`, `10k`, `1.5M` (messages per second).
pub fn parse_rate(s: &str) -> Result<f64, RateError> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        _ => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v * mult),
        _ => Err(RateError(s.to_string())),
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

/// The summary of one finished step.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// Step index.
    pub index: u32,
    /// Offered publish rate, messages/s (all publishers together).
    pub offered_rate: f64,
    /// Publishing time, seconds.
    pub duration_s: f64,
    /// Messages actually published per second.
    pub publish_rate: f64,
    /// Measured deliveries per second.
    pub delivered_rate: f64,
    /// Latency percentiles, ms.
    pub latency_ms: Percentiles,
    /// Bytes measured subscribers read from their sockets per delivery
    /// (frame headers and payloads as sent, compressed or not; acks, pings
    /// and any other frame included): `wire_bytes / received`.
    pub wire_bytes_per_delivery: Option<f64>,
    /// The same for the messages as the application sees them, inflated:
    /// `message_bytes / received`.
    pub message_bytes_per_delivery: Option<f64>,
    /// TLS records measured subscribers read per delivery (`wss://`):
    /// 1.0 when the server sends one record per message, less when it
    /// batches several into a record.
    pub tls_records_per_delivery: Option<f64>,
    /// Raw counters (merged over workers).
    #[serde(flatten)]
    pub counters: StepCounters,
    /// Expected deliveries lost.
    pub lost: u64,
    /// Fraction of expected deliveries that arrived.
    pub delivered_fraction: f64,
    /// Broker CPU and RSS during the step (with `--broker-pid`).
    pub broker: Option<ProcUsage>,
    /// Whether the step met the p99 and delivery limits.
    pub passed: bool,
}

impl StepResult {
    /// Summarises merged `counters`; `p99_limit_ms` decides `passed`.
    pub fn new(
        index: u32,
        offered_rate: f64,
        duration_s: f64,
        counters: StepCounters,
        broker: Option<ProcUsage>,
        p99_limit_ms: f64,
    ) -> StepResult {
        let h = &counters.latency;
        let ms = |ns: u64| ns as f64 / 1e6;
        let latency_ms = if h.is_empty() {
            Percentiles::default()
        } else {
            Percentiles {
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                p999: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
            }
        };
        let d = duration_s.max(1e-9);
        let delivered_fraction = counters.delivered_fraction();
        let passed = delivered_fraction >= MIN_DELIVERED
            && latency_ms.p99 <= p99_limit_ms
            && counters.sent >= counters.intended
            && counters.expected > 0;
        StepResult {
            index,
            offered_rate,
            duration_s,
            publish_rate: counters.sent as f64 / d,
            delivered_rate: counters.received as f64 / d,
            latency_ms,
            wire_bytes_per_delivery: counters.wire_bytes_per_delivery(),
            message_bytes_per_delivery: counters.message_bytes_per_delivery(),
            tls_records_per_delivery: counters.tls_records_per_delivery(),
            lost: counters.lost(),
            delivered_fraction,
            broker,
            passed,
            counters,
        }
    }
}

/// The highest offered rate among passing steps, if any passed.
pub fn max_sustained(steps: &[StepResult]) -> Option<f64> {
    steps
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.offered_rate)
        .fold(None, |m, r| Some(m.map_or(r, |m: f64| m.max(r))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Observation;

    #[test]
    fn parses_rates() {
        assert_eq!(parse_rate("500"), Ok(500.0));
        assert_eq!(parse_rate("10k"), Ok(10_000.0));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000.0));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-5k").is_err());
    }

    fn step(rate: f64, expected: u64, received: u64, latency_ns: u64) -> StepResult {
        let mut c = StepCounters {
            expected,
            sent: 10,
            intended: 10,
            ..StepCounters::default()
        };
        for _ in 0..received {
            c.record(Observation::InOrder, latency_ns);
        }
        StepResult::new(0, rate, 1.0, c, None, 50.0)
    }

    #[test]
    fn selects_highest_passing_step() {
        let steps = vec![
            step(1e3, 1000, 1000, 1_000_000),
            step(1e4, 1000, 1000, 20_000_000),
            step(5e4, 1000, 999, 1_000_000),   // 99.9% delivered: fails
            step(1e5, 1000, 1000, 80_000_000), // p99 over 50 ms: fails
        ];
        assert!(steps[0].passed && steps[1].passed);
        assert!(!steps[2].passed && !steps[3].passed);
        assert_eq!(steps[2].lost, 1);
        assert_eq!(max_sustained(&steps), Some(1e4));
        assert_eq!(max_sustained(&steps[2..]), None);
        // 99.99% exactly passes.
        assert!(step(1.0, 10_000, 9_999, 1_000).passed);
    }
}
