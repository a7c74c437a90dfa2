//! The `--html` report: one self-contained page (no scripts, no CDN) with
//! inline SVG charts drawn here: latency percentiles per step and delivered
//! vs expected delivery rate per offered rate, plus the result table.

use super::table::si;
use crate::outcome::RunReport;
use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 340.0;
const PAD_L: f64 = 70.0;
const PAD_B: f64 = 50.0;
const PAD_T: f64 = 20.0;
const PAD_R: f64 = 150.0;
const COLORS: [&str; 5] = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#7f7f7f"];

/// A named series of y values, one per x label.
struct Series<'a> {
    name: &'a str,
    values: Vec<f64>,
    dashed: bool,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A line chart; `log` uses a log10 y axis.
fn chart(title: &str, y_label: &str, x_labels: &[String], series: &[Series], log: bool) -> String {
    let mut svg = String::new();
    let n = x_labels.len().max(1);
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let floor = if log {
        all.iter()
            .copied()
            .filter(|v| *v > 0.0)
            .fold(f64::MAX, f64::min)
            .min(1.0)
    } else {
        0.0
    };
    let floor = if floor == f64::MAX { 0.01 } else { floor };
    let max = all.iter().copied().fold(0.0, f64::max).max(floor * 10.0).max(1e-9);
    let (lo, hi) = if log {
        (floor.log10().floor(), max.log10().ceil())
    } else {
        (0.0, max * 1.1)
    };
    let tf = |v: f64| if log { v.max(floor).log10() } else { v };
    let plot_w = W - PAD_L - PAD_R;
    let plot_h = H - PAD_T - PAD_B;
    let x = |i: usize| {
        PAD_L
            + if n == 1 {
                plot_w / 2.0
            } else {
                plot_w * i as f64 / (n - 1) as f64
            }
    };
    let y = |v: f64| PAD_T + plot_h * (1.0 - (tf(v) - lo) / (hi - lo).max(1e-12));
    let _ = write!(
        svg,
        r##"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"##,
        escape(title)
    );
    let _ = write!(
        svg,
        r##"<rect x="{PAD_L}" y="{PAD_T}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>"##
    );
    let ticks: Vec<f64> = if log {
        (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=5).map(|k| hi * k as f64 / 5.0).collect()
    };
    for t in ticks {
        let ty = y(t);
        let label = if t < 1.0 && t > 0.0 { format!("{t}") } else { si(t) };
        let _ = write!(
            svg,
            r##"<line x1="{PAD_L}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            W - PAD_R,
            PAD_L - 6.0,
            ty + 4.0
        );
    }
    for (i, l) in x_labels.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"##,
            x(i),
            H - PAD_B + 16.0,
            escape(l)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{}" text-anchor="middle">offered rate (msg/s)</text><text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"##,
        PAD_L + plot_w / 2.0,
        H - 10.0,
        PAD_T + plot_h / 2.0,
        PAD_T + plot_h / 2.0,
        escape(y_label)
    );
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let dash = if s.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = write!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"##,
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(svg, r##"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"##);
        }
        let ly = PAD_T + 14.0 + 18.0 * k as f64;
        let _ = write!(
            svg,
            r##"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{:.1}">{}</text>"##,
            W - PAD_R + 10.0,
            W - PAD_R + 34.0,
            W - PAD_R + 40.0,
            ly + 4.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// Renders the whole page.
pub fn render(r: &RunReport) -> String {
    let labels: Vec<String> = r.steps.iter().map(|s| si(s.offered_rate)).collect();
    let pick = |f: fn(&crate::steps::StepResult) -> f64| r.steps.iter().map(f).collect::<Vec<f64>>();
    let latency = chart(
        "End-to-end latency per step (from intended send time)",
        "latency (ms, log scale)",
        &labels,
        &[
            Series {
                name: "p50",
                values: pick(|s| s.latency_ms.p50),
                dashed: false,
            },
            Series {
                name: "p90",
                values: pick(|s| s.latency_ms.p90),
                dashed: false,
            },
            Series {
                name: "p99",
                values: pick(|s| s.latency_ms.p99),
                dashed: false,
            },
            Series {
                name: "p99.9",
                values: pick(|s| s.latency_ms.p999),
                dashed: false,
            },
            Series {
                name: "max",
                values: pick(|s| s.latency_ms.max),
                dashed: true,
            },
        ],
        true,
    );
    let rates = chart(
        "Delivered vs expected deliveries per second",
        "deliveries / s",
        &labels,
        &[
            Series {
                name: "delivered/s",
                values: pick(|s| s.delivered_rate),
                dashed: false,
            },
            Series {
                name: "expected/s",
                values: pick(|s| s.counters.expected as f64 / s.duration_s.max(1e-9)),
                dashed: true,
            },
            Series {
                name: "published/s",
                values: pick(|s| s.publish_rate),
                dashed: false,
            },
        ],
        false,
    );
    let bytes = chart(
        "Bytes per delivery: read from the socket (wire) and as the application sees them (inflated)",
        "bytes / delivery",
        &labels,
        &[
            Series {
                name: "wire",
                values: pick(|s| s.wire_bytes_per_delivery.unwrap_or(0.0)),
                dashed: false,
            },
            Series {
                name: "message",
                values: pick(|s| s.message_bytes_per_delivery.unwrap_or(0.0)),
                dashed: true,
            },
        ],
        false,
    );
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>fanout-loadtest: {}</title>\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}\
         figure{{margin:1em 0}}figcaption{{font-weight:bold;margin-bottom:.3em}}</style></head><body>\
         <h1>fanout-loadtest: {} ({:?})</h1><p>{} &middot; {} publishers, {} subscribers, payload {} B {:?}, {} worker(s). \
         Max sustained rate: <b>{}</b> (p99 &le; {} ms, &ge; 99.99% delivered).</p>",
        escape(&r.scenario),
        escape(&r.scenario),
        r.protocol,
        escape(&r.url),
        r.publishers,
        r.subscribers,
        r.payload_bytes,
        r.payload_shape,
        r.workers,
        r.max_sustained_rate.map_or("none".to_string(), |v| format!("{}/s", si(v))),
        r.p99_limit_ms
    );
    if let Some(d) = &r.deflate {
        let _ = write!(html, "<p>{}</p>", escape(&super::table::deflate_line(d)));
    }
    if !r.steps.is_empty() {
        html.push_str(&latency);
        html.push_str(&rates);
        html.push_str(&bytes);
    }
    let _ = writeln!(
        html,
        "<h2>Results</h2><pre>{}</pre></body></html>",
        escape(&super::table::render(r))
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_is_well_formed_svg() {
        let labels = vec!["1k".to_string(), "10k".to_string()];
        let s = chart(
            "t<1>",
            "ms",
            &labels,
            &[Series {
                name: "p99",
                values: vec![0.5, 20.0],
                dashed: false,
            }],
            true,
        );
        assert!(s.contains("<svg") && s.ends_with("</svg></figure>"));
        assert!(s.contains("t&lt;1&gt;"));
        assert_eq!(s.matches("<circle").count(), 2);
        let one = chart(
            "x",
            "y",
            &labels[..1],
            &[Series {
                name: "a",
                values: vec![0.0],
                dashed: true,
            }],
            false,
        );
        assert!(!one.contains("NaN"));
    }
}
