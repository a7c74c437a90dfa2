//! SIGHUP against a real broker process: a valid file is applied (and the
//! log says what changed and what waits for a restart); an invalid one is
//! refused with the reason and the running configuration is kept.

mod common;

use common::process::BrokerProcess;
use common::*;
use serde_json::json;

const BEFORE: &str = "[limits]\nmax_subscriptions_per_connection = 100\n[log]\nformat = \"json\"\n";
const AFTER: &str = "[limits]\nmax_subscriptions_per_connection = 1\n[log]\nformat = \"text\"\n";
const INVALID: &str = "[limits]\nmax_subscriptions_per_connection = 100\n[queue]\npolicy = \"drop_all\"\n";

/// How many of `topics` a fresh connection may subscribe to.
async fn subscriptions_allowed(url: &str, topics: &[&str]) -> usize {
    let mut c = connect(url).await;
    let mut ok = 0;
    for t in topics {
        c.send(json!({"op": "subscribe", "topic": t, "id": 1})).await;
        let reply = c.recv().await;
        match reply["type"].as_str() {
            Some("ack") => ok += 1,
            _ => assert_eq!(reply["code"], "too_many_subscriptions", "{reply}"),
        }
    }
    c.close().await;
    ok
}

#[tokio::test]
async fn sighup_applies_a_valid_file_and_keeps_the_old_config_on_an_invalid_one() {
    let mut broker = BrokerProcess::start("reload", BEFORE, &[]);
    let url = format!("ws://{}/ws", broker.addr);
    assert_eq!(subscriptions_allowed(&url, &["a", "b", "c"]).await, 3);

    std::fs::write(&broker.config, AFTER).unwrap();
    broker.signal("HUP");
    let line = broker.wait_for_line(|l| l.contains("configuration reloaded"));
    assert!(line.contains("limits.max_subscriptions_per_connection"), "{line}");
    assert!(line.contains("needs_restart") && line.contains("log.format"), "{line}");
    assert_eq!(subscriptions_allowed(&url, &["a", "b", "c"]).await, 1);

    std::fs::write(&broker.config, INVALID).unwrap();
    broker.signal("HUP");
    let line = broker.wait_for_line(|l| l.contains("reload failed"));
    assert!(line.contains("drop_all") && line.contains("keeping"), "{line}");
    assert_eq!(
        subscriptions_allowed(&url, &["a", "b", "c"]).await,
        1,
        "the last valid configuration stays in force"
    );
    assert_eq!(http(broker.addr, "GET", "/readyz", None, b"").await.0, 200);
}
