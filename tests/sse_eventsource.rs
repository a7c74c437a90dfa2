//! A real `EventSource` (the `eventsource` npm package, run by node) consumes
//! fanout's SSE streams, `/sse/{topic}` and the payload-only `/sse/t/{topic}`.
//! Skipped, loudly, when node or the package is missing:
//! `npm ci --prefix tests/sse_eventsource` installs it (CI does).

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{json, Value};

/// The script's directory, or `None` (after saying so) when node or the package is missing.
fn eventsource_dir(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sse_eventsource");
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok || !dir.join("node_modules/eventsource").exists() {
        eprintln!(
            "\n*** SKIPPED {test}: {} ***\n\
             *** run `npm ci --prefix tests/sse_eventsource` (needs node) to enable it ***\n",
            if node_ok {
                "tests/sse_eventsource/node_modules is missing"
            } else {
                "node is not installed"
            }
        );
        return None;
    }
    Some(dir)
}

/// Runs `read_events.mjs URL COUNT MODE`; one JSON object per event it saw.
async fn read_events(dir: &std::path::Path, url: &str, count: usize, mode: &str) -> Vec<Value> {
    let out = tokio::process::Command::new("node")
        .arg(dir.join("read_events.mjs"))
        .arg(url)
        .arg(count.to_string())
        .arg(mode)
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn the_eventsource_npm_client_reads_the_stream() {
    let Some(dir) = eventsource_dir("the_eventsource_npm_client_reads_the_stream") else {
        return;
    };
    let b = spawn_broker().await;
    for i in 1..=3 {
        http_publish(b.addr, "es.feed", &json!({"n": i, "text": "line\nbreak"})).await;
    }
    let url = format!("http://{}/sse/es.feed?since=0", b.addr);
    let events = read_events(&dir, &url, 3, "json").await;
    assert_eq!(events.len(), 3);
    for (i, e) in events.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(e["id"], n.to_string());
        assert_eq!(e["data"]["seq"], n);
        assert_eq!(e["data"]["data"], json!({"n": n, "text": "line\nbreak"}));
    }
    b.stop().await;
}

#[tokio::test]
async fn on_a_payload_stream_ev_data_is_the_payload_itself() {
    let Some(dir) = eventsource_dir("on_a_payload_stream_ev_data_is_the_payload_itself") else {
        return;
    };
    let b = spawn_broker().await;
    http_publish_as(b.addr, "es.raw", "text/plain", b"hello,\nroom").await;
    http_publish_as(b.addr, "es.raw", "application/json", b"{\"price\":101.5}").await;
    http_publish_as(b.addr, "es.raw", "application/octet-stream", &[0, 1, 254, 255]).await;
    let url = format!("http://{}/sse/t/es.raw?since=0", b.addr);
    let events = read_events(&dir, &url, 3, "text").await;
    assert_eq!(
        events,
        [
            json!({"id": "1", "type": "message", "data": "hello,\nroom"}),
            json!({"id": "2", "type": "message", "data": "{\"price\":101.5}"}),
            json!({"id": "3", "type": "binary", "data": "AAH+/w=="}),
        ]
    );
    b.stop().await;
}
