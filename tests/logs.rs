//! Log output of a real broker process at debug level, in both formats:
//! tokens (`?token=`, the `auth` request, `Authorization: Bearer`) never
//! appear; JSON lines parse and carry the connection span's fields.

mod common;

use std::time::Duration;

use common::process::BrokerProcess;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Drives every path a token can come in by, then stops the broker; returns its output.
async fn output_after_tokens(format: &str) -> Vec<String> {
    let config = format!("[log]\nformat = \"{format}\"\n");
    let mut broker = BrokerProcess::start(&format!("logs-{format}"), &config, &[("RUST_LOG", "debug")]);
    let addr = broker.addr;
    let mut c = connect(&format!("ws://{addr}/ws?format=json&token=SECRET-query-1")).await;
    c.send(json!({"op": "auth", "token": "SECRET-auth-2", "id": 5})).await;
    assert_eq!(c.recv().await["type"], "ack");
    c.send_text(r#"{"op":"auth","token":"SECRET-bad-3""#).await;
    assert_eq!(c.recv().await["type"], "error");
    let raw = connect(&format!("ws://{addr}/ws/t/chat?access_token=SECRET-raw-4")).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /api/publish/chat?token=SECRET-http-5 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer SECRET-bearer-6\r\n\
          content-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    c.close().await;
    raw.close().await;
    broker.signal("TERM");
    broker.wait_exit(Duration::from_secs(10));
    broker.lines()
}

fn assert_no_secret(lines: &[String]) {
    for l in lines {
        assert!(!l.contains("SECRET"), "a token reached the log: {l}");
    }
    assert!(
        lines.iter().any(|l| l.contains("[redacted]")),
        "the request lines with tokens were logged (redacted):\n{}",
        lines.join("\n")
    );
}

#[tokio::test]
async fn json_logs_have_connection_spans_and_no_tokens() {
    let lines = output_after_tokens("json").await;
    assert_no_secret(&lines);
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let connected = parsed
        .iter()
        .find(|v| v["fields"]["message"] == "connected")
        .expect("a `connected` line");
    let span = &connected["span"];
    assert!(span["session_id"].as_u64().is_some(), "{connected}");
    assert_eq!(span["transport"], "ws");
    assert!(span["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn text_logs_have_no_tokens() {
    let lines = output_after_tokens("text").await;
    assert_no_secret(&lines);
    assert!(lines
        .iter()
        .any(|l| l.contains("session_id=") && l.contains("transport=\"ws\"")
            || l.contains("session_id=") && l.contains("transport=ws")));
}

/// With `auth.mode = "jwt"`, refused tokens (by every way in) leave no trace of
/// themselves in the log, whatever the reason they were refused for.
#[tokio::test]
async fn refused_jwts_are_not_logged() {
    let config = "[auth]\nmode = \"jwt\"\njwt_secret = \"log-test-secret\"\npublish_keys = [\"KEY-right\"]\n";
    let mut broker = BrokerProcess::start("logs-jwt", config, &[("RUST_LOG", "debug")]);
    let addr = broker.addr;
    let sign = |secret: &[u8], exp: u64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": "SUBJECT", "exp": now + exp - 7200}),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let expired = sign(b"log-test-secret", 0);
    let forged = sign(b"another-secret", 7200);
    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={expired}")).await;
    assert!(refused.is_err());
    let mut c = connect(&format!("ws://{addr}/ws")).await;
    for token in [&expired, &forged] {
        c.send(json!({"op": "auth", "token": token, "id": 1})).await;
        let reply = c.recv().await;
        assert_eq!(reply["code"], "unauthorized");
        assert!(!reply.to_string().contains(token.as_str()), "{reply}");
    }
    for header in [format!("authorization: Bearer {forged}"), "x-api-key: KEY-wrong".into()] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST /api/publish/chat HTTP/1.1\r\nhost: x\r\n{header}\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(!answer.contains(&forged) && !answer.contains("KEY-wrong"), "{answer}");
    }
    c.close().await;
    broker.signal("TERM");
    broker.wait_exit(Duration::from_secs(10));
    let lines = broker.lines();
    // The signature part is what makes a token usable; neither it nor the whole token may leak.
    for token in [&expired, &forged] {
        let signature = token.rsplit('.').next().unwrap();
        for l in &lines {
            assert!(!l.contains(signature), "a token reached the log: {l}");
        }
    }
    assert!(lines
        .iter()
        .all(|l| !l.contains("KEY-wrong") && !l.contains("log-test-secret")));
}
