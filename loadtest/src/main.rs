//! `fanout-loadtest` command line: parses arguments, builds the scenario's
//! plan, runs it and prints/writes the report. See `--help`.

use anyhow::{bail, Context, Result};
use clap::Parser;
use fanout_loadtest::cli::{Cli, Common, Scenario};
use fanout_loadtest::client::tls::TlsTrust;
use fanout_loadtest::engine::messages::RunOpts;
use fanout_loadtest::floor::FloorServer;
use fanout_loadtest::plan::Plan;
use fanout_loadtest::protocol::Protocol;
use fanout_loadtest::run::{run, RunConfig};
use fanout_loadtest::scenario::{self, topics_exist, ScenarioError};
use fanout_loadtest::{ipc, limits, report, steps};
use std::io::IsTerminal;
use std::time::Duration;

fn main() -> Result<()> {
    limits::raise_nofile();
    let cli = Cli::parse();
    if let Scenario::FloorServer { listen, threads } = cli.command {
        return floor_server(listen, threads);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Scenario::Worker = cli.command {
        return rt.block_on(ipc::serve_stdio()).context("worker");
    }
    let (common, plan, hold, storm) = build(cli.command)?;
    let cfg = config(&common, plan, hold, storm)?;
    let result = rt.block_on(run(cfg))?;
    print!("{}", report::table::render(&result));
    if let Some(path) = &common.json {
        report::write_json(&result, path).with_context(|| format!("writing {}", path.display()))?;
        println!("JSON report: {}", path.display());
    }
    if let Some(path) = &common.html {
        report::write_html(&result, path).with_context(|| format!("writing {}", path.display()))?;
        println!("HTML report: {}", path.display());
    }
    Ok(())
}

/// Serves the floor server until SIGINT or SIGTERM, then prints its counters.
fn floor_server(listen: std::net::SocketAddr, threads: usize) -> Result<()> {
    // Block the signals before any thread starts, so every thread inherits
    // the mask and this one takes them with sigwait.
    let signals = block_signals(&[libc::SIGINT, libc::SIGTERM]);
    let listener = std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let server = FloorServer::start(listener, threads).context("starting the floor server")?;
    println!(
        "floor server on ws://{} ({threads} thread(s)); benchmark peer, not a product",
        server.local_addr()
    );
    let mut sig: libc::c_int = 0;
    // SAFETY: `signals` is an initialized set; `sig` is a live out-parameter.
    unsafe { libc::sigwait(&signals, &mut sig) };
    let s = server.shutdown();
    println!(
        "floor server: {} clients, {} messages in, {} frames written, {} frames dropped (recipient socket full)",
        s.clients, s.messages, s.written, s.dropped
    );
    Ok(())
}

/// Blocks `signals` in this thread (and the threads it starts); returns the set.
fn block_signals(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialized by sigemptyset before use;
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

type Built = (Common, Plan, Option<Duration>, Option<(Duration, f64)>);

fn build(command: Scenario) -> Result<Built> {
    let topics = |c: &Common| topics_exist(c.protocol, &c.raw_path_template);
    let needs_envelopes = |c: &Common, name: &'static str| {
        if c.protocol.has_envelopes() {
            Ok(())
        } else {
            Err(ScenarioError::NeedsEnvelopes(name))
        }
    };
    Ok(match command {
        Scenario::Fanout {
            common,
            publishers,
            subscribers,
        } => {
            let plan = scenario::fanout("fanout", publishers, subscribers, 0, false, topics(&common))?;
            (common, plan, None, None)
        }
        Scenario::Fanin {
            common,
            publishers,
            subscribers,
        } => {
            let plan = scenario::fanout("fanin", publishers, subscribers, 0, false, topics(&common))?;
            (common, plan, None, None)
        }
        Scenario::Slow {
            common,
            publishers,
            subscribers,
            slow_fraction,
        } => {
            scenario::check_slow_fraction(slow_fraction)?;
            let slow = (subscribers as f64 * slow_fraction).round() as usize;
            let plan = scenario::fanout("slow", publishers, subscribers, slow, false, topics(&common))?;
            (common, plan, None, None)
        }
        Scenario::Topics {
            common,
            topics,
            groups,
            publishers,
            subscribers,
            pattern_subscribers,
            firehose_subscribers,
        } => {
            needs_envelopes(&common, "topics")?;
            let plan = scenario::topics(
                topics,
                groups,
                publishers,
                subscribers,
                pattern_subscribers,
                firehose_subscribers,
            )?;
            (common, plan, None, None)
        }
        Scenario::Rooms { common, rooms, clients } => {
            let plan = scenario::rooms(rooms, clients, topics(&common))?;
            (common, plan, None, None)
        }
        Scenario::Connect {
            common,
            connections,
            hold,
            subscribe,
            reconnect,
        } => {
            if subscribe.is_some() && common.protocol != Protocol::Socketio {
                needs_envelopes(&common, "connect --subscribe")?;
            }
            let plan = scenario::connect(connections, subscribe, reconnect)?;
            (common, plan, Some(hold), None)
        }
        Scenario::Reconnect {
            common,
            publishers,
            subscribers,
            storm_interval,
            storm_fraction,
        } => {
            needs_envelopes(&common, "reconnect")?;
            let plan = scenario::fanout("reconnect", publishers, subscribers, 0, true, true)?;
            (common, plan, None, Some((storm_interval, storm_fraction)))
        }
        Scenario::Soak {
            mut common,
            topics,
            groups,
            publishers,
            subscribers,
            pattern_subscribers,
            firehose_subscribers,
            slow_fraction,
            storm_interval,
            storm_fraction,
        } => {
            needs_envelopes(&common, "soak")?;
            let plan = scenario::soak(
                topics,
                groups,
                publishers,
                subscribers,
                pattern_subscribers,
                firehose_subscribers,
                slow_fraction,
            )?;
            // One step, the whole --duration long; the run's cap leaves room to
            // connect and drain around it.
            common.rates.truncate(1);
            common.step_duration = common.duration;
            common.duration += common.connect_timeout + common.settle + common.drain + Duration::from_secs(5);
            (common, plan, None, Some((storm_interval, storm_fraction)))
        }
        Scenario::Worker | Scenario::FloorServer { .. } => unreachable!("handled before"),
    })
}

fn config(c: &Common, plan: Plan, hold: Option<Duration>, storm: Option<(Duration, f64)>) -> Result<RunConfig> {
    if plan.conns.len() > c.max_connections {
        bail!(
            "{} connections exceed --max-connections {}",
            plan.conns.len(),
            c.max_connections
        );
    }
    if c.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let rates = c
        .rates
        .iter()
        .map(|r| steps::parse_rate(r))
        .collect::<Result<Vec<_>, _>>()?;
    let (storm_interval, storm_fraction) = storm.unwrap_or((Duration::ZERO, 0.0));
    Ok(RunConfig {
        plan,
        opts: RunOpts {
            url: c.url.clone(),
            protocol: c.protocol,
            raw_path: c.raw_path_template.clone(),
            payload_bytes: c.payload_bytes,
            payload_shape: c.payload_shape,
            deflate: c.deflate,
            deflate_publish_level: c.deflate_publish.unwrap_or(0),
            local_addrs: c.local_addrs,
            connect_concurrency: c.connect_concurrency,
            connect_timeout_ms: c.connect_timeout.as_millis() as u64,
            storm_interval_ms: storm_interval.as_millis() as u64,
            storm_fraction,
            receive_threads: c.receive_threads,
            tls: TlsTrust {
                insecure: c.insecure,
                ca_file: c.ca_file.clone(),
            },
            tls_config: None,
        },
        rates,
        step_duration: c.step_duration,
        drain: c.drain,
        max_duration: c.duration,
        p99_limit_ms: c.p99_limit.as_secs_f64() * 1e3,
        keep_going: c.keep_going,
        max_failed_steps: c.max_failed_steps,
        workers: c.workers,
        settle: c.settle,
        hold,
        broker_pid: c.broker_pid,
        allow_remote: c.allow_remote,
        progress: std::io::stderr().is_terminal(),
    })
}
