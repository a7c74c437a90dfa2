//! The coordinator: checks limits, starts workers, sends them the plan,
//! drives the rate steps in lockstep, merges their counters and samples the
//! broker's CPU and RSS. Produces a [`RunReport`], and prints each step's
//! line as the step ends.

use crate::clock::{instant_at, now_ns};
use crate::engine::messages::{Command, Event, ReadyReport, RunOpts, Setup, StepCmd};
use crate::ipc::WorkerHandle;
use crate::limits::{self, LimitError};
use crate::outcome::{ConnectSummary, DeflateSummary, RunReport, TlsSummary};
use crate::plan::Plan;
use crate::procstat::{self, ProcUsage};
use crate::report::table::step_line;
use crate::shape::{PayloadShape, ShapeWriter};
use crate::stats::StepCounters;
use crate::steps::{max_sustained, StepResult};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;

/// Why a run could not complete.
#[derive(Debug, Error)]
pub enum RunError {
    /// The run would exceed a limit; the message says what to do instead.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A worker process could not start.
    #[error("cannot start worker process: {0}")]
    Spawn(#[from] std::io::Error),
    /// A worker failed or exited.
    #[error("worker {worker} failed: {error}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// What it said.
        error: String,
    },
    /// Nothing could connect.
    #[error("no connection could be opened: {0}")]
    NoConnections(String),
    /// `wss://` without anything to trust, or an unreadable `--ca-file`.
    #[error(transparent)]
    Tls(#[from] crate::client::tls::TlsError),
}

/// Everything the coordinator needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The topology.
    pub plan: Plan,
    /// Connection and traffic options.
    pub opts: RunOpts,
    /// Step rates, messages/s in total.
    pub rates: Vec<f64>,
    /// Publishing time per step.
    pub step_duration: Duration,
    /// Drain time after each step.
    pub drain: Duration,
    /// Cap on the whole run.
    pub max_duration: Duration,
    /// p99 limit for a passing step, ms.
    pub p99_limit_ms: f64,
    /// Keep going after a failing step.
    pub keep_going: bool,
    /// Otherwise stop after this many failing steps in a row (at least 1).
    pub max_failed_steps: u32,
    /// Worker processes (1: in-process).
    pub workers: usize,
    /// Pause before the first step.
    pub settle: Duration,
    /// Connect scenario: hold connections this long instead of stepping.
    pub hold: Option<Duration>,
    /// Broker PID for CPU/RSS.
    pub broker_pid: Option<u32>,
    /// Allow non-loopback URLs.
    pub allow_remote: bool,
    /// Show the progress line.
    pub progress: bool,
}

/// Runs the whole thing.
pub async fn run(cfg: RunConfig) -> Result<RunReport, RunError> {
    for url in cfg.opts.url.split(',') {
        limits::check_loopback(url.trim(), cfg.allow_remote)?;
    }
    if cfg.opts.uses_tls() {
        // Fails here, before any worker starts, when there is nothing to trust.
        crate::client::tls::client_config(&cfg.opts.tls)?;
    }
    let conns = cfg.plan.conns.len();
    limits::check_fds(conns, cfg.workers, limits::nofile_limit())?;
    limits::check_ports(conns, cfg.opts.local_addrs, limits::ephemeral_ports())?;
    let bar = progress_bar(cfg.progress);
    let mut handles = Vec::new();
    for _ in 0..cfg.workers.max(1) {
        handles.push(if cfg.workers <= 1 {
            WorkerHandle::in_process()
        } else {
            WorkerHandle::spawn(&std::env::current_exe()?)?
        });
    }
    let (ev_tx, mut events) = mpsc::channel::<(usize, Event)>(4096);
    let mut txs = Vec::new();
    for (w, mut h) in handles.into_iter().enumerate() {
        txs.push(h.tx.clone());
        let ev_tx = ev_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = h.rx.recv().await {
                if ev_tx.send((w, ev)).await.is_err() {
                    break;
                }
            }
            h.finish().await;
        });
    }
    drop(ev_tx);
    let mut c = Coordinator {
        txs,
        events: &mut events,
        bar,
        progress: vec![(0, 0); cfg.workers.max(1)],
    };
    let result = c.drive(&cfg).await;
    for tx in &c.txs {
        let _ = tx.send(Command::Stop).await;
    }
    c.bar.finish_and_clear();
    // Give workers a moment to close their sockets cleanly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    result
}

struct Coordinator<'a> {
    txs: Vec<mpsc::Sender<Command>>,
    events: &'a mut mpsc::Receiver<(usize, Event)>,
    bar: ProgressBar,
    progress: Vec<(u64, u64)>,
}

impl Coordinator<'_> {
    async fn broadcast(&self, cmd: Command) {
        for tx in &self.txs {
            let _ = tx.send(cmd.clone()).await;
        }
    }

    /// Waits for one event of interest from every worker, handling progress.
    async fn gather<T>(&mut self, mut pick: impl FnMut(Event) -> Option<T>) -> Result<Vec<T>, RunError> {
        let mut got: Vec<Option<T>> = (0..self.txs.len()).map(|_| None).collect();
        while got.iter().any(Option::is_none) {
            let Some((w, ev)) = self.events.recv().await else {
                return Err(RunError::Worker {
                    worker: 0,
                    error: "all workers gone".into(),
                });
            };
            match ev {
                Event::Progress { sent, received } => {
                    self.progress[w] = (sent, received);
                    let (s, r) = self.progress.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
                    self.bar.set_prefix(format!("sent {s}  received {r}"));
                }
                Event::Failed { error } => return Err(RunError::Worker { worker: w, error }),
                other => {
                    if let Some(t) = pick(other) {
                        got[w] = Some(t);
                    }
                }
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    async fn drive(&mut self, cfg: &RunConfig) -> Result<RunReport, RunError> {
        let started = Instant::now();
        let pid = cfg.broker_pid;
        let sample = || pid.and_then(procstat::sample);
        let mut peak = sample().map(|s| s.rss_bytes);
        let before = sample();
        let workers = self.txs.len();
        self.bar
            .set_message(format!("connecting {} connections", cfg.plan.conns.len()));
        for (w, tx) in self.txs.iter().enumerate() {
            let setup = Setup {
                plan: cfg.plan.clone(),
                worker: w,
                workers,
                opts: cfg.opts.clone(),
            };
            let _ = tx.send(Command::Setup(Box::new(setup))).await;
        }
        let readies = self
            .gather(|e| if let Event::Ready(r) = e { Some(*r) } else { None })
            .await?;
        let mut connect = summarize_connect(&readies, cfg.plan.conns.len() as u64);
        if connect.connected == 0 {
            return Err(RunError::NoConnections(connect.first_error.clone().unwrap_or_default()));
        }
        let mut report = RunReport {
            scenario: cfg.plan.scenario.clone(),
            url: cfg.opts.url.clone(),
            protocol: cfg.opts.protocol,
            payload_bytes: cfg.opts.payload_bytes,
            payload_shape: cfg.opts.payload_shape,
            deflate: cfg.opts.deflate.then(|| DeflateSummary {
                agreed: readies.iter().map(|r| r.deflate_agreed).sum(),
                connections: connect.connected,
                answer: readies.iter().find_map(|r| r.deflate_answer.clone()),
                publish_level: (cfg.opts.deflate_publish_level > 0).then_some(cfg.opts.deflate_publish_level),
            }),
            tls: cfg.opts.uses_tls().then(|| TlsSummary {
                connections: readies.iter().map(|r| r.tls_connections).sum(),
                session: readies.iter().find_map(|r| r.tls_session.clone()),
                trust: match &cfg.opts.tls.ca_file {
                    Some(path) => path.display().to_string(),
                    None => "any certificate (--insecure)".into(),
                },
            }),
            workers,
            publishers: cfg.plan.publishers(),
            subscribers: cfg.plan.subscribers(),
            p99_limit_ms: cfg.p99_limit_ms,
            connect: ConnectSummary::default(),
            steps: Vec::new(),
            max_sustained_rate: None,
            broker_peak_rss: None,
            notes: Vec::new(),
        };
        report.notes.extend(payload_notes(&cfg.opts));
        if connect.errors > 0 {
            report.notes.push(format!(
                "{} connections failed: {:?}",
                connect.errors, connect.first_error
            ));
        }
        if let Some(hold) = cfg.hold {
            self.bar
                .set_message(format!("holding {} connections for {hold:?}", connect.connected));
            tokio::time::sleep(hold).await;
        } else {
            tokio::time::sleep(cfg.settle).await;
        }
        let after = sample();
        if let (Some(b), Some(a)) = (before, after) {
            connect.broker_rss_before = Some(b.rss_bytes);
            connect.broker_rss_after = Some(a.rss_bytes);
            let per = (a.rss_bytes as f64 - b.rss_bytes as f64) / connect.connected.max(1) as f64;
            connect.broker_rss_per_connection = Some(per);
            peak = peak.max(Some(a.rss_bytes));
        }
        report.connect = connect;
        if cfg.hold.is_none() {
            self.steps(cfg, started, &mut report, &mut peak).await?;
        }
        report.max_sustained_rate = max_sustained(&report.steps);
        report.broker_peak_rss = peak;
        Ok(report)
    }

    async fn steps(
        &mut self,
        cfg: &RunConfig,
        started: Instant,
        report: &mut RunReport,
        peak: &mut Option<u64>,
    ) -> Result<(), RunError> {
        let total = cfg.rates.len();
        let mut failures = 0;
        for (index, &rate) in cfg.rates.iter().enumerate() {
            let needed = cfg.step_duration + cfg.drain + Duration::from_millis(300);
            if started.elapsed() + needed > cfg.max_duration {
                report.notes.push(format!(
                    "steps from {rate} msg/s on skipped: --duration {:?} reached",
                    cfg.max_duration
                ));
                break;
            }
            self.bar
                .set_message(format!("step {}/{total} at {rate} msg/s", index + 1));
            let start_ns = now_ns() + 200_000_000;
            let end_ns = start_ns + cfg.step_duration.as_nanos() as u64;
            let report_ns = end_ns + cfg.drain.as_nanos() as u64;
            let cmd = StepCmd {
                index: index as u32,
                rate,
                start_ns,
                end_ns,
                report_ns,
            };
            self.broadcast(Command::Step(cmd)).await;
            let pid = cfg.broker_pid;
            let usage = tokio::spawn(async move { sample_between(pid, start_ns, end_ns).await });
            let parts = self
                .gather(|e| match e {
                    Event::StepDone { index: i, counters } if i == index as u32 => Some(*counters),
                    _ => None,
                })
                .await?;
            let (broker, step_peak) = usage.await.unwrap_or((None, None));
            *peak = (*peak).max(step_peak);
            let mut merged = StepCounters::default();
            for p in &parts {
                merged.merge(p);
            }
            let result = StepResult::new(
                index as u32,
                rate,
                cfg.step_duration.as_secs_f64(),
                merged,
                broker,
                cfg.p99_limit_ms,
            );
            let line = step_line(&result);
            if self.bar.is_hidden() {
                eprintln!("{line}");
            } else {
                self.bar.println(line);
            }
            failures = if result.passed { 0 } else { failures + 1 };
            let stop = failures > 0 && !cfg.keep_going && failures >= cfg.max_failed_steps.max(1);
            report.steps.push(result);
            if stop && index + 1 < total {
                report.notes.push(format!(
                    "stopped after step {} failed, {failures} in a row (use --keep-going or --max-failed-steps)",
                    index + 1
                ));
                break;
            }
        }
        Ok(())
    }
}

/// Remarks on the payloads: a shape that cannot be as small as asked, and
/// padding under `--deflate` (whose bytes per delivery say nothing).
fn payload_notes(opts: &RunOpts) -> Vec<String> {
    let mut notes = Vec::new();
    let encoding = opts.protocol.shape_encoding();
    if let Some(w) = ShapeWriter::new(opts.payload_shape, opts.payload_bytes, encoding, 0) {
        let len = w.typical_len();
        if len.abs_diff(opts.payload_bytes) * 10 > opts.payload_bytes {
            notes.push(format!(
                "{:?} payloads are about {len} B, not the {} B asked (their smallest)",
                opts.payload_shape, opts.payload_bytes
            ));
        }
    }
    if opts.deflate && opts.payload_shape == PayloadShape::Padding {
        notes.push(
            "padding payloads deflate to almost nothing: use --payload-shape quote or scoreboard \
             for bytes per delivery that mean something"
                .into(),
        );
    }
    notes
}

/// Samples the broker at `start_ns` and `end_ns` (and its RSS peak in
/// between, every 250 ms).
async fn sample_between(pid: Option<u32>, start_ns: u64, end_ns: u64) -> (Option<ProcUsage>, Option<u64>) {
    let Some(pid) = pid else { return (None, None) };
    tokio::time::sleep_until(instant_at(start_ns)).await;
    let Some(first) = procstat::sample(pid) else {
        return (None, None);
    };
    let mut peak = first.rss_bytes;
    while now_ns() < end_ns {
        let left = Duration::from_nanos(end_ns.saturating_sub(now_ns()));
        tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        if let Some(s) = procstat::sample(pid) {
            peak = peak.max(s.rss_bytes);
        }
    }
    let last = procstat::sample(pid);
    (last.map(|l| procstat::usage(&first, &l)), Some(peak))
}

fn summarize_connect(readies: &[ReadyReport], attempted: u64) -> ConnectSummary {
    let mut hist = crate::stats::new_histogram();
    let mut s = ConnectSummary {
        attempted,
        ..ConnectSummary::default()
    };
    let mut slowest = 0u64;
    for r in readies {
        s.connected += r.connected;
        s.errors += r.errors;
        if s.first_error.is_none() {
            s.first_error.clone_from(&r.first_error);
        }
        slowest = slowest.max(r.elapsed_ns);
        let _ = hist.add(&r.connect_latency);
    }
    s.rate_per_s = s.connected as f64 / (slowest.max(1) as f64 / 1e9);
    let ms = |ns: u64| ns as f64 / 1e6;
    if !hist.is_empty() {
        s.latency_ms = [
            ms(hist.value_at_quantile(0.5)),
            ms(hist.value_at_quantile(0.99)),
            ms(hist.max()),
        ];
    }
    s
}

fn progress_bar(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}  {prefix}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
