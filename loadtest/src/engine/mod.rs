//! The worker engine: opens this worker's share of the plan's connections,
//! runs the publishers (tokio tasks), hands every reading connection to the
//! receive threads ([`receive`]), and reports per-step counters. It runs
//! in-process (one worker) or in a child process (`worker` subcommand).

pub mod messages;
pub mod open;
pub mod publisher;
pub mod receive;
pub mod subscriber;

use messages::{Command, Event, ReadyReport, RunOpts, Setup, StepCmd};
use open::{local_addr, open};
use receive::{Conn, Receivers, Rejoin};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subscriber::Subscriber;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::deflate::DeflateParams;
use crate::client::Message;
use crate::plan::Plan;
use crate::stats::{StepCounters, Tally};

/// Counters the publishers share (per batch or per step, never per message).
#[derive(Default)]
pub struct Shared {
    /// Per-step publishing counters.
    steps: Mutex<Tally>,
    /// Messages published so far.
    pub sent: AtomicU64,
}

impl Shared {
    /// Runs `f` on step `index`'s counters under the lock (if the step started).
    pub fn with_step(&self, index: u32, f: impl FnOnce(&mut StepCounters)) {
        let mut guard = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = guard.step(index) {
            f(c);
        }
    }

    fn begin(&self, index: u32) {
        self.steps.lock().unwrap_or_else(|e| e.into_inner()).begin(index);
    }

    fn snapshot(&self, index: u32) -> StepCounters {
        self.steps.lock().unwrap_or_else(|e| e.into_inner()).snapshot(index)
    }
}

/// An opened, detached connection of this worker, ready for its receive thread.
struct Ready {
    conn: Box<Conn>,
    /// Messages that arrived while waiting for the subscribe acks.
    pending: Vec<Message>,
    /// permessage-deflate as agreed (for the report, and publishers that compress).
    deflate: Option<DeflateParams>,
    /// `wss://`: what was negotiated (for the report).
    tls: Option<String>,
}

/// Runs one worker: waits for `Setup`, connects, then obeys `Step` commands
/// until `Stop` (or the command channel closes).
pub async fn run_worker(mut cmds: mpsc::Receiver<Command>, events: mpsc::Sender<Event>) {
    let Some(Command::Setup(setup)) = cmds.recv().await else {
        let _ = events
            .send(Event::Failed {
                error: "expected a setup command first".into(),
            })
            .await;
        return;
    };
    let Setup {
        plan,
        worker,
        workers,
        opts,
    } = *setup;
    let opts = match opts.with_tls_config() {
        Ok(opts) => opts,
        Err(e) => {
            let _ = events.send(Event::Failed { error: e.to_string() }).await;
            return;
        }
    };
    let (plan, opts) = (Arc::new(plan), Arc::new(opts));
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let rejoin = Arc::new(Rejoin {
        opts: opts.clone(),
        stop: stop_rx.clone(),
    });
    let receivers = match Receivers::start(opts.receive_threads, rejoin) {
        Ok(r) => r,
        Err(e) => {
            let error = format!("cannot start receive threads: {e}");
            let _ = events.send(Event::Failed { error }).await;
            return;
        }
    };
    let (ready, conns) = connect_all(&plan, &opts, plan.worker_conns(worker, workers)).await;
    if events.send(Event::Ready(Box::new(ready))).await.is_err() {
        return;
    }
    let (step_tx, step_rx) = watch::channel(None::<StepCmd>);
    let publishers = plan.publishers();
    let mut storm_targets = Vec::new();
    // Slow subscribers never read: they stay here, unread, until the end.
    let mut slow = Vec::new();
    for Ready {
        conn, pending, deflate, ..
    } in conns
    {
        let i = conn.sub.index;
        if let Some(p) = &plan.conns[i].publish {
            let fanout = p.topics.iter().map(|t| plan.deliveries(i, t)).collect();
            let ctx = publisher::PubCtx {
                spec: p.clone(),
                fanout,
                publishers,
                opts: opts.clone(),
                shared: shared.clone(),
                steps: step_rx.clone(),
                deflate,
            };
            tokio::spawn(publisher::run_publisher(ctx, conn.writer.clone()));
        }
        if conn.sub.spec.reconnects {
            storm_targets.push(i);
        }
        if conn.sub.spec.slow {
            slow.push(conn);
        } else {
            receivers.add(conn, pending);
        }
    }
    drop(step_rx);
    tokio::spawn(progress(
        shared.clone(),
        receivers.clone(),
        events.clone(),
        stop_rx.clone(),
    ));
    if opts.storm_interval_ms > 0 && !storm_targets.is_empty() {
        tokio::spawn(storms(
            storm_targets,
            receivers.clone(),
            opts.storm_interval_ms,
            opts.storm_fraction,
            stop_rx.clone(),
        ));
    }
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            Command::Step(step) => {
                shared.begin(step.index);
                receivers.begin_step(step.index);
                let _ = step_tx.send(Some(step));
                tokio::time::sleep_until(crate::clock::instant_at(step.report_ns)).await;
                let mut counters = shared.snapshot(step.index);
                counters.merge(&receivers.collect(step.index).await);
                let done = Event::StepDone {
                    index: step.index,
                    counters: Box::new(counters),
                };
                if events.send(done).await.is_err() {
                    break;
                }
            }
            Command::Stop => break,
            Command::Setup(_) => {}
        }
    }
    let _ = stop_tx.send(true);
    let mut all = receivers.stop().await;
    all.append(&mut slow);
    close_all(all).await;
}

/// Sends every connection's close frame, then lets them go.
#[allow(clippy::vec_box)] // As in the receive threads' `Cmd::Stop` (`receive/remote.rs`).
async fn close_all(conns: Vec<Box<Conn>>) {
    let mut set = JoinSet::new();
    for conn in conns {
        set.spawn(async move {
            let limit = Duration::from_secs(1);
            let _ = tokio::time::timeout(limit, conn.writer.close(1000, "load test over")).await;
        });
    }
    while set.join_next().await.is_some() {}
    // Give the close frames a moment on the wire before the process exits.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Opens this worker's connections, `connect_concurrency` at a time, and
/// detaches each for a receive thread.
async fn connect_all(plan: &Arc<Plan>, opts: &Arc<RunOpts>, mine: Vec<usize>) -> (ReadyReport, Vec<Ready>) {
    let started = Instant::now();
    let sem = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in mine {
        let (plan, opts, sem) = (plan.clone(), opts.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            open_one(&plan, &opts, i).await
        });
    }
    let mut report = ReadyReport::default();
    let mut conns = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok((conn, took)) => {
                report.connected += 1;
                if let Some(d) = &conn.deflate {
                    report.deflate_agreed += 1;
                    report.deflate_answer.get_or_insert_with(|| d.to_string());
                }
                if let Some(t) = &conn.tls {
                    report.tls_connections += 1;
                    report.tls_session.get_or_insert_with(|| t.clone());
                }
                report.connect_latency.saturating_record(took.as_nanos() as u64);
                conns.push(conn);
            }
            Err(e) => {
                report.errors += 1;
                report.first_error.get_or_insert(e);
            }
        }
    }
    report.elapsed_ns = started.elapsed().as_nanos() as u64;
    conns.sort_by_key(|c| c.conn.sub.index);
    (report, conns)
}

/// Opens and detaches plan connection `i`; also returns its connect time.
async fn open_one(plan: &Plan, opts: &RunOpts, i: usize) -> Result<(Ready, Duration), String> {
    let local = local_addr(i, opts.local_addrs);
    let spec = &plan.conns[i];
    let opened = open(spec, opts, i, local, &HashMap::new())
        .await
        .map_err(|e| e.to_string())?;
    let detached = opened.reader.detach(opened.writer).map_err(|e| e.to_string())?;
    let sub = Subscriber::new(
        i,
        spec.clone(),
        opts.protocol,
        plan.publishers(),
        local,
        opened.positions,
    );
    let ready = Ready {
        conn: Box::new(Conn::new(detached, sub)),
        pending: opened.pending,
        deflate: opened.deflate,
        tls: opened.tls,
    };
    Ok((ready, opened.connect_time))
}

/// Sends running totals twice a second.
async fn progress(
    shared: Arc<Shared>,
    receivers: Receivers,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let ev = Event::Progress {
            sent: shared.sent.load(Ordering::Relaxed),
            received: receivers.received(),
        };
        if events.send(ev).await.is_err() {
            return;
        }
    }
}

/// Reconnect storms: every period, asks a random fraction of the
/// reconnecting subscribers (plan indices) to drop and reconnect with `since`.
async fn storms(
    targets: Vec<usize>,
    receivers: Receivers,
    every_ms: u64,
    fraction: f64,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(every_ms));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for &t in &targets {
            if rand::random::<f64>() < fraction {
                receivers.reconnect(t);
            }
        }
    }
}
