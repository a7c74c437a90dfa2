//! What the coordinator and a worker say to each other (in process over
//! channels, or between processes as JSON lines on stdin/stdout).

use crate::client::tls::TlsTrust;
use crate::plan::Plan;
use crate::protocol::Protocol;
use crate::shape::PayloadShape;
use crate::stats::{new_histogram, StepCounters};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Connection and traffic options shared by all workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOpts {
    /// Base URL, e.g. `ws://127.0.0.1:8080`.
    pub url: String,
    /// Wire format.
    pub protocol: Protocol,
    /// Raw mode path template (`{topic}` is replaced).
    pub raw_path: String,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// What payloads look like.
    pub payload_shape: PayloadShape,
    /// Offer permessage-deflate on every connection.
    pub deflate: bool,
    /// Compress publishes too where it was agreed (zlib level 1..9; 0: never).
    pub deflate_publish_level: u32,
    /// Spread connections over 127.0.0.1..=127.0.0.N (0: do not bind).
    pub local_addrs: u32,
    /// Connections opened concurrently per worker.
    pub connect_concurrency: usize,
    /// How long to wait for a connection and its subscribe acks, ms.
    pub connect_timeout_ms: u64,
    /// Reconnect storm period, ms (0: no storms).
    pub storm_interval_ms: u64,
    /// Fraction of reconnecting subscribers dropped per storm.
    pub storm_fraction: f64,
    /// Blocking epoll threads reading this worker's connections.
    pub receive_threads: usize,
    /// What `wss://` URLs trust (`--ca-file`, `--insecure`).
    #[serde(default)]
    pub tls: TlsTrust,
    /// The rustls configuration built from `tls`, once per worker (by
    /// [`RunOpts::with_tls_config`]) for every connection it opens; not
    /// sent to worker processes, which build their own.
    #[serde(skip)]
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
}

impl RunOpts {
    /// Whether any of the URLs is `wss://`.
    pub fn uses_tls(&self) -> bool {
        self.url.split(',').any(crate::client::handshake::WsUrl::is_tls)
    }

    /// These options with [`RunOpts::tls_config`] built, when a URL needs it.
    pub fn with_tls_config(mut self) -> Result<RunOpts, crate::client::tls::TlsError> {
        if self.uses_tls() && self.tls_config.is_none() {
            self.tls_config = Some(crate::client::tls::client_config(&self.tls)?);
        }
        Ok(self)
    }
}

/// A worker's first instruction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    /// The run's topology.
    pub plan: Plan,
    /// This worker's index.
    pub worker: usize,
    /// Number of workers.
    pub workers: usize,
    /// Options.
    pub opts: RunOpts,
}

/// One rate step, in absolute wall-clock times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepCmd {
    /// Step index (carried in payloads).
    pub index: u32,
    /// Total publish rate of the run, messages/s.
    pub rate: f64,
    /// Publishing starts (CLOCK_REALTIME ns).
    pub start_ns: u64,
    /// Publishing ends.
    pub end_ns: u64,
    /// Drain over: report what arrived.
    pub report_ns: u64,
}

/// Coordinator to worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Connect and subscribe.
    Setup(Box<Setup>),
    /// Run a step.
    Step(StepCmd),
    /// Close everything and exit.
    Stop,
}

/// Connection setup results of one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyReport {
    /// Connections open (and subscribed).
    pub connected: u64,
    /// Connections that failed.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Time to open all of this worker's connections, ns.
    pub elapsed_ns: u64,
    /// Per-connection connect + handshake time, ns.
    #[serde(with = "crate::stats::hist_serde")]
    pub connect_latency: Histogram<u64>,
    /// Connections on which the server agreed to permessage-deflate.
    pub deflate_agreed: u64,
    /// The first such answer, as agreed (e.g. `permessage-deflate; server_no_context_takeover`).
    pub deflate_answer: Option<String>,
    /// Connections over TLS (`wss://`).
    #[serde(default)]
    pub tls_connections: u64,
    /// The first one's protocol version, cipher suite and key exchange.
    #[serde(default)]
    pub tls_session: Option<String>,
}

impl Default for ReadyReport {
    fn default() -> Self {
        ReadyReport {
            connected: 0,
            errors: 0,
            first_error: None,
            elapsed_ns: 0,
            connect_latency: new_histogram(),
            deflate_agreed: 0,
            deflate_answer: None,
            tls_connections: 0,
            tls_session: None,
        }
    }
}

/// Worker to coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Setup finished.
    Ready(Box<ReadyReport>),
    /// Running totals for the progress line.
    Progress {
        /// Messages published so far.
        sent: u64,
        /// Messages received so far (measured subscribers).
        received: u64,
    },
    /// A step's counters after its drain.
    StepDone {
        /// Step index.
        index: u32,
        /// This worker's counters.
        counters: Box<StepCounters>,
    },
    /// Something fatal: the worker stops.
    Failed {
        /// What happened.
        error: String,
    },
}
