//! The human-readable report: one line per step while running, and the
//! final table.

use crate::outcome::{DeflateSummary, RunReport, TlsSummary};
use crate::steps::StepResult;
use std::fmt::Write;

/// Formats a count with k/M suffixes.
pub fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Bytes per delivery with one decimal, `-` when nothing was delivered.
fn per_delivery(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |b| format!("{b:.1}"))
}

/// One line summarising a finished step.
pub fn step_line(s: &StepResult) -> String {
    format!(
        "step {} {}: offered {}/s, delivered {}/s, {}/{} received ({:.4}%), p99 {:.2} ms, {} wire B/delivery{}{}",
        s.index + 1,
        if s.passed { "PASS" } else { "FAIL" },
        si(s.offered_rate),
        si(s.delivered_rate),
        s.counters.received,
        s.counters.expected,
        s.delivered_fraction * 100.0,
        s.latency_ms.p99,
        per_delivery(s.wire_bytes_per_delivery),
        s.tls_records_per_delivery
            .map(|r| format!(", {r:.2} TLS records/delivery"))
            .unwrap_or_default(),
        s.broker
            .map(|b| format!(", broker {:.0}% CPU {}", b.cpu_percent, mib(b.rss_bytes)))
            .unwrap_or_default()
    )
}

/// The final report as text.
pub fn render(r: &RunReport) -> String {
    let mut out = String::new();
    let c = &r.connect;
    let _ = writeln!(
        out,
        "\nscenario {} | {} {:?} | payload {} B {:?} | {} publishers, {} subscribers, {} worker(s)",
        r.scenario, r.url, r.protocol, r.payload_bytes, r.payload_shape, r.publishers, r.subscribers, r.workers
    );
    let _ = writeln!(out, "{}", tls_line(r.tls.as_ref()));
    if let Some(d) = &r.deflate {
        let _ = writeln!(out, "{}", deflate_line(d));
    }
    let _ = writeln!(
        out,
        "connections: {}/{} open, {} errors, {}/s, connect p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        c.connected,
        c.attempted,
        c.errors,
        si(c.rate_per_s),
        c.latency_ms[0],
        c.latency_ms[1],
        c.latency_ms[2]
    );
    if let (Some(b), Some(a), Some(per)) = (c.broker_rss_before, c.broker_rss_after, c.broker_rss_per_connection) {
        let _ = writeln!(
            out,
            "broker RSS: {} -> {} ({:.1} KiB per connection)",
            mib(b),
            mib(a),
            per / 1024.0
        );
    }
    if !r.steps.is_empty() {
        let _ = writeln!(
            out,
            "\n{:>4} {:>9} {:>9} {:>10} {:>11} {:>11} {:>8} {:>6} {:>6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>4}",
            "step", "offered/s", "sent/s", "deliv/s", "expected", "received", "lost", "dup", "reord", "gaps",
            "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms", "wire B/d", "msg B/d", "cpu%", "rss", "ok"
        );
        for s in &r.steps {
            let k = &s.counters;
            let l = &s.latency_ms;
            let (cpu, rss) = s.broker.map_or(("-".into(), "-".into()), |b| {
                (format!("{:.0}", b.cpu_percent), mib(b.rss_bytes))
            });
            let _ = writeln!(
                out,
                "{:>4} {:>9} {:>9} {:>10} {:>11} {:>11} {:>8} {:>6} {:>6} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>8} {:>6} {:>9} {:>4}",
                s.index + 1, si(s.offered_rate), si(s.publish_rate), si(s.delivered_rate), k.expected, k.received,
                s.lost, k.duplicates, k.reordered, k.gaps, l.p50, l.p90, l.p99, l.p999, l.max,
                per_delivery(s.wire_bytes_per_delivery), per_delivery(s.message_bytes_per_delivery), cpu, rss,
                if s.passed { "yes" } else { "NO" }
            );
        }
        let records: Vec<String> = r
            .steps
            .iter()
            .filter_map(|s| {
                s.tls_records_per_delivery
                    .map(|v| format!("step {} {v:.3}", s.index + 1))
            })
            .collect();
        if !records.is_empty() {
            let _ = writeln!(out, "TLS records per delivery: {}", records.join(", "));
        }
        let slow: u64 = r.steps.iter().map(|s| s.counters.expected_slow).sum();
        if slow > 0 {
            let _ = writeln!(out, "deliveries owed to non-reading (slow) subscribers: {slow}");
        }
        let extra: Vec<String> =
            r.steps
                .iter()
                .filter(|s| {
                    s.counters.errors + s.counters.foreign + s.counters.reconnects + s.counters.gap_messages > 0
                })
                .map(|s| {
                    let k = &s.counters;
                    format!(
                    "step {}: {} errors, {} foreign frames, {} reconnects, {} messages reported missing by gap notices",
                    s.index + 1, k.errors, k.foreign, k.reconnects, k.gap_messages
                )
                })
                .collect();
        for line in extra {
            let _ = writeln!(out, "{line}");
        }
        match r.max_sustained_rate {
            Some(rate) => {
                let _ = writeln!(
                    out,
                    "\nmax sustained rate: {}/s published (p99 <= {} ms, >= 99.99% delivered)",
                    si(rate),
                    r.p99_limit_ms
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "\nmax sustained rate: none of the steps passed (p99 <= {} ms, >= 99.99% delivered)",
                    r.p99_limit_ms
                );
            }
        }
    }
    if let Some(p) = r.broker_peak_rss {
        let _ = writeln!(out, "broker peak RSS: {}", mib(p));
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

/// `tls: yes (version suite group on N connections; trusting FILE)`, or
/// `tls: no`.
pub fn tls_line(t: Option<&TlsSummary>) -> String {
    let Some(t) = t else {
        return "tls: no".into();
    };
    let session = t.session.as_deref().unwrap_or("not negotiated");
    format!(
        "tls: yes ({session} on {} connections; trusting {})",
        t.connections, t.trust
    )
}

/// `deflate: agreed on N of M connections (answer)`.
pub fn deflate_line(d: &DeflateSummary) -> String {
    let mut line = format!("deflate: agreed on {} of {} connections", d.agreed, d.connections);
    if let Some(a) = &d.answer {
        let _ = write!(line, " ({a})");
    }
    match d.publish_level {
        Some(level) if d.agreed > 0 => {
            let _ = write!(line, "; publishes compressed at level {level}");
        }
        _ => line.push_str("; publishes uncompressed"),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_suffixes() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(2_500_000.0), "2.50M");
    }

    #[test]
    fn deflate_and_bytes_per_delivery() {
        let d = DeflateSummary {
            agreed: 5,
            connections: 6,
            answer: Some("permessage-deflate; server_no_context_takeover".into()),
            publish_level: None,
        };
        assert_eq!(
            deflate_line(&d),
            "deflate: agreed on 5 of 6 connections (permessage-deflate; server_no_context_takeover); publishes uncompressed"
        );
        assert_eq!(per_delivery(Some(412.345)), "412.3");
        assert_eq!(tls_line(None), "tls: no");
        let t = TlsSummary {
            connections: 3,
            session: Some("TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519".into()),
            trust: "ca.pem".into(),
        };
        assert_eq!(
            tls_line(Some(&t)),
            "tls: yes (TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519 on 3 connections; trusting ca.pem)"
        );
        assert_eq!(per_delivery(None), "-");
    }
}
