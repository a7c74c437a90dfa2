//! `examples/chat-socketio.html`, the classic Socket.IO chat page, end to end in headless
//! Chromium: `tests/browser/chat-socketio.mjs` (playwright-core) opens it twice against
//! a real broker, with the page's CDN copy of socket.io-client answered from
//! `tests/browser/node_modules`. A line typed in one page shows once in each, an HTTP
//! publish shows in both, the pages end up on WebSocket, and any console or page error
//! fails it.
//!
//! Needs node, Chromium (`/usr/bin/chromium` or `$CHROMIUM`) and
//! `npm ci --prefix tests/browser`. Skipped loudly when one is missing, except under CI
//! (`CI` set), where a missing piece fails the test.

mod common;

use std::time::Duration;

use common::browser;
use common::*;

#[tokio::test]
async fn the_socketio_chat_example_works_in_headless_chromium() {
    let test = "the_socketio_chat_example_works_in_headless_chromium";
    if browser::skip(test, browser::missing_pieces(&["playwright-core", "socket.io-client"])) {
        return;
    }
    let b = spawn_broker().await;
    let out = browser::out_dir("chat-browser");
    let run = tokio::process::Command::new("node")
        .arg(browser::dir().join("chat-socketio.mjs"))
        .arg(format!("http://{}", b.addr))
        .arg(&out)
        .kill_on_drop(true)
        .output();
    // The script gives up after 60 s by itself; this only catches a hung browser.
    let done = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser script ends")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success() && stdout.lines().last() == Some("PASS"),
        "the chat page failed ({}); screenshots in {}\n--- steps\n{stdout}\n--- stderr\n{}",
        done.status,
        out.display(),
        String::from_utf8_lossy(&done.stderr)
    );
    eprintln!("{stdout}screenshot (chat.png) in {}", out.display());
    b.stop().await;
}
