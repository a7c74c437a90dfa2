//! The worker engine: opens this worker's share of the plan's connections,
//! runs publishers and subscribers, and reports per-step counters. It runs
//! in-process (one worker) or in a child process (`worker` subcommand).

pub mod messages;
pub mod open;
pub mod publisher;
pub mod subscriber;

use crate::stats::StepCounters;
use messages::{Command, Event, ReadyReport, Setup, StepCmd};
use open::{local_addr, open, Opened};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;

/// Counters shared by a worker's tasks.
#[derive(Default)]
pub struct Shared {
    /// Per-step counters, indexed by step.
    steps: Mutex<Vec<StepCounters>>,
    /// Messages published so far.
    pub sent: AtomicU64,
    /// Distinct messages received so far.
    pub received: AtomicU64,
    /// The step currently running (gap notices and errors go there).
    pub current_step: AtomicU32,
}

impl Shared {
    /// Runs `f` on the per-step counters under the lock.
    pub fn with_steps<R>(&self, f: impl FnOnce(&mut Vec<StepCounters>) -> R) -> R {
        let mut guard = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    fn ensure_step(&self, index: u32) {
        self.with_steps(|s| {
            while s.len() <= index as usize {
                s.push(StepCounters::default());
            }
        });
    }
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
    let (plan, opts) = (Arc::new(plan), Arc::new(opts));
    let shared = Arc::new(Shared::default());
    let (ready, conns) = connect_all(&plan, &opts, plan.worker_conns(worker, workers)).await;
    if events.send(Event::Ready(Box::new(ready))).await.is_err() {
        return;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (step_tx, step_rx) = watch::channel(None::<StepCmd>);
    let publishers = plan.publishers();
    let mut storm_targets = Vec::new();
    for (i, conn) in conns {
        let spec = plan.conns[i].clone();
        if let Some(p) = &spec.publish {
            let fanout = p.topics.iter().map(|t| plan.deliveries(i, t)).collect();
            let ctx = publisher::PubCtx {
                spec: p.clone(),
                fanout,
                publishers,
                opts: opts.clone(),
                shared: shared.clone(),
                steps: step_rx.clone(),
            };
            tokio::spawn(publisher::run_publisher(ctx, conn.writer.clone()));
        }
        let reconnect = Arc::new(Notify::new());
        if spec.reconnects {
            storm_targets.push(reconnect.clone());
        }
        let ctx = subscriber::SubCtx {
            spec,
            opts: opts.clone(),
            shared: shared.clone(),
            local: local_addr(i, opts.local_addrs),
            index: i,
            reconnect,
            stop: stop_rx.clone(),
        };
        tokio::spawn(subscriber::run_subscriber(ctx, conn));
    }
    drop(step_rx);
    tokio::spawn(progress(shared.clone(), events.clone(), stop_rx.clone()));
    if opts.storm_interval_ms > 0 && !storm_targets.is_empty() {
        tokio::spawn(storms(
            storm_targets,
            opts.storm_interval_ms,
            opts.storm_fraction,
            stop_rx.clone(),
        ));
    }
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            Command::Step(step) => {
                shared.ensure_step(step.index);
                shared.current_step.store(step.index, Ordering::Relaxed);
                let _ = step_tx.send(Some(step));
                tokio::time::sleep_until(crate::clock::instant_at(step.report_ns)).await;
                let counters = shared.with_steps(|s| s[step.index as usize].clone());
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
    // Let readers send their close frames.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Opens this worker's connections, `connect_concurrency` at a time.
async fn connect_all(
    plan: &Arc<crate::plan::Plan>,
    opts: &Arc<messages::RunOpts>,
    mine: Vec<usize>,
) -> (ReadyReport, Vec<(usize, Opened)>) {
    let started = Instant::now();
    let sem = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in mine {
        let (plan, opts, sem) = (plan.clone(), opts.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let local = local_addr(i, opts.local_addrs);
            (i, open(&plan.conns[i], &opts, i, local, &HashMap::new()).await)
        });
    }
    let mut report = ReadyReport::default();
    let mut conns = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, Ok(conn))) => {
                report.connected += 1;
                report
                    .connect_latency
                    .saturating_record(conn.connect_time.as_nanos() as u64);
                conns.push((i, conn));
            }
            Ok((_, Err(e))) => {
                report.errors += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                report.errors += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    report.elapsed_ns = started.elapsed().as_nanos() as u64;
    conns.sort_by_key(|c| c.0);
    (report, conns)
}

/// Sends running totals twice a second.
async fn progress(shared: Arc<Shared>, events: mpsc::Sender<Event>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let ev = Event::Progress {
            sent: shared.sent.load(Ordering::Relaxed),
            received: shared.received.load(Ordering::Relaxed),
        };
        if events.send(ev).await.is_err() {
            return;
        }
    }
}

/// Reconnect storms: every period, asks a random fraction of the
/// reconnecting subscribers to drop and reconnect with `since`.
async fn storms(targets: Vec<Arc<Notify>>, every_ms: u64, fraction: f64, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(every_ms));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for t in &targets {
            if rand::random::<f64>() < fraction {
                t.notify_one();
            }
        }
    }
}
