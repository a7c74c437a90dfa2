//! The dashboard at `/`, end to end in headless Chromium: `tests/browser/dashboard.mjs`
//! (playwright-core) opens it against a real `fanout` process, watches a topic, sees
//! HTTP publishes and stats arrive, publishes from the page, and reconnects after this
//! test restarts the broker on the same port. Any console or page error fails it.
//! `tests/browser/iframe.mjs` does the same for `examples/iframe.html`: its hidden
//! iframe stream hands each published value to the page, and markup never runs.
//!
//! Needs node, Chromium (`/usr/bin/chromium` or `$CHROMIUM`) and
//! `npm ci --prefix tests/browser`. Skipped loudly when one is missing, except
//! under CI (`CI` set), where a missing piece fails the test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::browser;
use common::process::BrokerProcess;
use common::*;

#[test]
fn the_dashboard_works_in_headless_chromium() {
    let dir = browser::dir();
    if browser::skip(
        "the_dashboard_works_in_headless_chromium",
        browser::missing_pieces(&["playwright-core"]),
    ) {
        return;
    }
    let out = browser::out_dir("dashboard-browser");
    let mut broker = BrokerProcess::start("dashboard-browser", "", &[]);
    let addr = broker.addr;
    let mut node = Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .arg(format!("http://{addr}/"))
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_pipe = node.stderr.take().unwrap();
    let collected = Arc::clone(&stderr);
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err_pipe, &mut s);
        collected.lock().unwrap().push_str(&s);
    });
    let mut stdin = node.stdin.take().unwrap();
    let mut log = Vec::new();
    for line in BufReader::new(node.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        eprintln!("browser: {line}");
        match line.as_str() {
            "STOP" => {
                // A crash, not a drain: the page must notice a dropped connection by itself.
                broker.kill();
                writeln!(stdin, "STOPPED").expect("tell node the broker is gone");
            }
            "START" => {
                broker = BrokerProcess::start_on("dashboard-browser", "", &[], &addr.to_string());
                writeln!(stdin, "STARTED").expect("tell node the broker is back");
            }
            _ => {}
        }
        log.push(line);
    }
    let status = node.wait().expect("node exits");
    err_reader.join().unwrap();
    let stderr = stderr.lock().unwrap().clone();
    assert!(
        status.success() && log.last().is_some_and(|l| l == "PASS"),
        "the browser test failed ({status}); screenshots in {}\n--- steps\n{}\n--- stderr\n{stderr}\n--- broker\n{}",
        out.display(),
        log.join("\n"),
        broker.lines().join("\n")
    );
    eprintln!("screenshots (phone.png, laptop.png) in {}", out.display());
}

#[tokio::test]
async fn the_iframe_example_works_in_headless_chromium() {
    let dir = browser::dir();
    if browser::skip(
        "the_iframe_example_works_in_headless_chromium",
        browser::missing_pieces(&["playwright-core"]),
    ) {
        return;
    }
    let out = browser::out_dir("iframe-browser");
    let b = spawn_broker().await;
    let run = tokio::process::Command::new("node")
        .arg(dir.join("iframe.mjs"))
        .arg(format!("http://{}/", b.addr))
        .arg(&out)
        .output()
        .await
        .expect("node runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(
        run.status.success() && stdout.lines().last() == Some("PASS"),
        "the iframe example failed ({}); screenshots in {}\n--- steps\n{stdout}\n--- stderr\n{stderr}",
        run.status,
        out.display()
    );
    b.stop().await;
}

#[tokio::test]
async fn the_dashboard_and_the_examples_are_served() {
    let b = spawn_broker().await;
    for (path, needle) in [
        ("/", "/dashboard.js"),
        ("/index.html", "/dashboard.css"),
        ("/dashboard.js", "$sys.stats"),
        ("/dashboard.css", "--accent"),
        ("/examples/ticker.html", "quotes.>"),
        ("/examples/scoreboard.html", "scores.>"),
        ("/examples/danmaku.html", "/ws/t/"),
        ("/examples/iframe.html", "callback=onQuote"),
    ] {
        let (status, body) = http_get(b.addr, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(String::from_utf8_lossy(&body).contains(needle), "{path} lacks {needle}");
    }
    let (status, _) = http_get(b.addr, "/examples/nope.html", &[]).await;
    assert_eq!(status, 404);
    b.stop().await;
}
