//! A real `EventSource` (the `eventsource` npm package, run by node) consumes
//! fanout's SSE stream. Skipped, loudly, when node or the package is missing:
//! `npm ci --prefix tests/sse_eventsource` installs it (CI does).

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn the_eventsource_npm_client_reads_the_stream() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sse_eventsource");
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok || !dir.join("node_modules/eventsource").exists() {
        eprintln!(
            "\n*** SKIPPED the_eventsource_npm_client_reads_the_stream: {} ***\n\
             *** run `npm ci --prefix tests/sse_eventsource` (needs node) to enable it ***\n",
            if node_ok {
                "tests/sse_eventsource/node_modules is missing"
            } else {
                "node is not installed"
            }
        );
        return;
    }
    let b = spawn_broker().await;
    for i in 1..=3 {
        http_publish(b.addr, "es.feed", &json!({"n": i, "text": "line\nbreak"})).await;
    }
    let url = format!("http://{}/sse/es.feed?since=0", b.addr);
    let out = tokio::process::Command::new("node")
        .arg(dir.join("read_events.mjs"))
        .arg(&url)
        .arg("3")
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    for (i, e) in events.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(e["id"], n.to_string());
        assert_eq!(e["data"]["seq"], n);
        assert_eq!(e["data"]["data"], json!({"n": n, "text": "line\nbreak"}));
    }
    b.stop().await;
}
