//! What the load tester's integration tests share: a short raw fan-out run
//! against a broadcast server at `url`.

use fanout_loadtest::engine::messages::RunOpts;
use fanout_loadtest::protocol::Protocol;
use fanout_loadtest::run::RunConfig;
use fanout_loadtest::scenario;
use fanout_loadtest::shape::PayloadShape;
use std::time::Duration;

/// One 2-second step at `rate` of 1 publisher -> `subscribers` raw readers on path `/`.
pub fn raw_fanout(
    url: String,
    subscribers: usize,
    rate: f64,
    payload_bytes: usize,
    receive_threads: usize,
) -> RunConfig {
    RunConfig {
        plan: scenario::fanout("fanout", 1, subscribers, 0, false, false).unwrap(),
        opts: RunOpts {
            url,
            protocol: Protocol::Raw,
            raw_path: "/".into(),
            payload_bytes,
            payload_shape: PayloadShape::Padding,
            deflate: false,
            deflate_publish_level: 0,
            local_addrs: 0,
            connect_concurrency: 16,
            connect_timeout_ms: 5_000,
            storm_interval_ms: 0,
            storm_fraction: 0.0,
            receive_threads,
        },
        rates: vec![rate],
        step_duration: Duration::from_secs(2),
        drain: Duration::from_millis(500),
        max_duration: Duration::from_secs(20),
        p99_limit_ms: 1_000.0,
        keep_going: false,
        max_failed_steps: 1,
        workers: 1,
        settle: Duration::from_millis(200),
        hold: None,
        broker_pid: None,
        allow_remote: false,
        progress: false,
    }
}
