//! What the load tester's integration tests share: a short raw fan-out run
//! against a broadcast server at `url`, and a Node peer to run it against.

use fanout_loadtest::engine::messages::RunOpts;
use fanout_loadtest::protocol::Protocol;
use fanout_loadtest::run::RunConfig;
use fanout_loadtest::scenario;
use fanout_loadtest::shape::PayloadShape;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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
            tls: Default::default(),
            tls_config: None,
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

/// Starts the Node peer `loadtest/peers/{peer}` (`node server.js PORT ARGS...`) and
/// waits for a line containing one of `ready`; returns it and its `ws://` URL.
/// `None` (skip, loudly) without node or the peer's `module` installed; a failure
/// under CI, which installs them.
#[allow(dead_code)] // Not every test binary starts a Node peer.
pub async fn node_peer(test: &str, peer: &str, module: &str, args: &[&str], ready: &[&str]) -> Option<(Child, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers").join(peer);
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok || !dir.join("node_modules").join(module).exists() {
        let why = if node_ok {
            format!("loadtest/peers/{peer}/node_modules is missing")
        } else {
            "node is not installed".to_owned()
        };
        if std::env::var_os("CI").is_some() {
            panic!("{why} but CI is set: run `npm ci --prefix loadtest/peers/{peer}` so {test} runs");
        }
        eprintln!(
            "\n*** SKIPPED {test}: {why} ***\n\
             *** run `npm ci --prefix loadtest/peers/{peer}` (needs node) to enable it ***\n"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("node")
        .arg(dir.join("server.js"))
        .arg(port.to_string())
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the peer says it listens within 20 s")
        .unwrap()
        .expect("a listening line");
    assert!(ready.iter().any(|r| line.contains(r)), "{line}");
    Some((child, format!("ws://127.0.0.1:{port}")))
}
