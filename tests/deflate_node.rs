//! permessage-deflate against an independent implementation: the `ws` npm client
//! (Node's most used WebSocket library) compresses its publishes and inflates the
//! broker's shared compressed frames. Skipped, loudly, when node or the package is
//! missing (`npm ci --prefix tests/ws_node`; CI installs it, and under CI a missing
//! piece fails the test).

mod common;

use std::path::PathBuf;

use common::spawn_broker;
use serde_json::{json, Value};

/// The script's directory, or `None` (after saying so) when node or `ws` is missing.
fn ws_node_dir(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ws_node");
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if node_ok && dir.join("node_modules/ws").exists() {
        return Some(dir);
    }
    let why = if node_ok {
        "tests/ws_node/node_modules is missing"
    } else {
        "node is not installed"
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {why} (run `npm ci --prefix tests/ws_node`)"
    );
    eprintln!("\n*** SKIPPED {test}: {why} ***\n*** run `npm ci --prefix tests/ws_node` (needs node) ***\n");
    None
}

/// Runs the script; the messages it got back, in order.
async fn run(dir: &std::path::Path, url: &str, doc: &Value, count: usize, window_bits: Option<u8>) -> Vec<Value> {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("deflate.mjs"))
        .arg(url)
        .arg(doc.to_string())
        .arg(count.to_string());
    if let Some(bits) = window_bits {
        cmd.arg(bits.to_string());
    }
    let out = cmd.output().await.expect("node runs");
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

fn scoreboard() -> Value {
    let games: Vec<Value> = (0..15)
        .map(|i| json!({"home": format!("team{i}"), "away": format!("team{}", i + 1), "score": [i, i * 2], "clock": "12:00"}))
        .collect();
    json!({"games": games})
}

#[tokio::test]
async fn the_ws_npm_client_negotiates_compresses_and_inflates() {
    let Some(dir) = ws_node_dir("the_ws_npm_client_negotiates_compresses_and_inflates") else {
        return;
    };
    let b = spawn_broker().await;
    let doc = scoreboard();
    let got = run(&dir, &b.ws_url("/ws"), &doc, 20, None).await;
    assert_eq!(got.len(), 20);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m["data"], json!({"i": i, "doc": doc}), "message {i} intact");
        assert_eq!(m["seq"], i as u64 + 1);
    }
    // `ws.extensions` in the ws library names the extensions agreed.
    assert_eq!(got[0]["extensions"], "permessage-deflate");
    b.stop().await;
}

#[tokio::test]
async fn the_ws_npm_client_with_a_small_server_window_gets_what_it_asked_for() {
    let Some(dir) = ws_node_dir("the_ws_npm_client_with_a_small_server_window_gets_what_it_asked_for") else {
        return;
    };
    let b = spawn_broker().await;
    let small = json!({"text": "abc ".repeat(60)});
    for doc in [small, scoreboard()] {
        let got = run(&dir, &b.ws_url("/ws"), &doc, 3, Some(9)).await;
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|m| m["data"]["doc"] == doc));
        assert_eq!(
            got[0]["extensions"], "permessage-deflate",
            "the ws client accepted the answer"
        );
    }
    b.stop().await;
}
