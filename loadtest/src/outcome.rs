//! The outcome of a run, as data: the [`RunReport`] (also the `--json`
//! document) with its [`ConnectSummary`] and step results. The coordinator
//! fills it in; the reports render it.

use crate::protocol::Protocol;
use crate::shape::PayloadShape;
use crate::steps::StepResult;
use serde::Serialize;

/// How connection setup went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectSummary {
    /// Connections attempted.
    pub attempted: u64,
    /// Connections open and subscribed.
    pub connected: u64,
    /// Failures.
    pub errors: u64,
    /// First failure text.
    pub first_error: Option<String>,
    /// Connections per second (connected / slowest worker's setup time).
    pub rate_per_s: f64,
    /// Connect + handshake time percentiles, ms: p50, p99, max.
    pub latency_ms: [f64; 3],
    /// Broker RSS before connecting, bytes.
    pub broker_rss_before: Option<u64>,
    /// Broker RSS with every connection open, bytes.
    pub broker_rss_after: Option<u64>,
    /// (after - before) / connected, bytes.
    pub broker_rss_per_connection: Option<f64>,
}

/// How permessage-deflate went (with `--deflate`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeflateSummary {
    /// Connections on which the server agreed.
    pub agreed: u64,
    /// Connections open (every one offered it).
    pub connections: u64,
    /// The first agreed answer, canonical (e.g. `permessage-deflate; server_no_context_takeover`).
    pub answer: Option<String>,
    /// Publishes compressed at this zlib level where agreed (`--deflate-publish`).
    pub publish_level: Option<u32>,
}

/// How TLS went (`wss://` URLs).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsSummary {
    /// Connections open over TLS.
    pub connections: u64,
    /// The first one's protocol version, cipher suite and key exchange
    /// (e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519`).
    pub session: Option<String>,
    /// What was trusted: the `--ca-file`, or `any certificate (--insecure)`.
    pub trust: String,
}

/// The outcome of a run (also the `--json` document).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// Target URL.
    pub url: String,
    /// Wire format.
    pub protocol: Protocol,
    /// Payload size, bytes.
    pub payload_bytes: usize,
    /// What payloads looked like.
    pub payload_shape: PayloadShape,
    /// permessage-deflate, when offered (`--deflate`).
    pub deflate: Option<DeflateSummary>,
    /// TLS, for `wss://` URLs (`None`: plain `ws://`).
    pub tls: Option<TlsSummary>,
    /// Worker processes.
    pub workers: usize,
    /// Publishing connections.
    pub publishers: usize,
    /// Subscribing connections.
    pub subscribers: usize,
    /// p99 limit used for pass/fail, ms.
    pub p99_limit_ms: f64,
    /// Connection setup.
    pub connect: ConnectSummary,
    /// Step results, in order.
    pub steps: Vec<StepResult>,
    /// Highest passing step rate.
    pub max_sustained_rate: Option<f64>,
    /// Broker's peak RSS seen during the run, bytes.
    pub broker_peak_rss: Option<u64>,
    /// Remarks (skipped steps, stop reasons).
    pub notes: Vec<String>,
}
