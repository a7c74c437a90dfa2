//! JWT auth and topic permissions with a real broker and real clients: each
//! accepted algorithm, expired, not-yet-valid, wrong signature, `alg: none`,
//! grants that do not cover a topic, over WebSocket, HTTP, SSE and raw
//! sockets; no reply ever echoes the token.

mod common;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

const SECRET: &str = "test-secret-please-change";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims for client `sub` valid for an hour with the given grants.
fn claims(sub: &str, subscribe: &[&str], publish: &[&str]) -> Value {
    json!({"sub": sub, "exp": now() + 3600, "subscribe": subscribe, "publish": publish})
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn signed(alg: Algorithm, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 => {
            EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIXTURES}/jwt_rsa_private.pem")).unwrap()).unwrap()
        }
        Algorithm::ES256 => {
            EncodingKey::from_ec_pem(&std::fs::read(format!("{FIXTURES}/jwt_ec_private.pem")).unwrap()).unwrap()
        }
        _ => EncodingKey::from_secret(SECRET.as_bytes()),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key).unwrap()
}

/// An unsigned token (`alg: none`), as an attacker would forge one.
fn unsigned(claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(claims))
}

async fn jwt_broker() -> TestBroker {
    spawn_broker_with(|c| {
        c.auth.mode = fanout::config::AuthMode::Jwt;
        c.auth.jwt_secret = SECRET.into();
        c.auth.publish_keys = vec!["pubkey-1".into()];
        c.auth.anonymous_subscribe = vec!["scores.>".into()];
    })
    .await
}

/// Connects to `/ws` with an `Authorization: Bearer` header; the handshake status on refusal.
async fn connect_bearer(addr: SocketAddr, token: &str) -> Result<Client, u16> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    handshake(req).await
}

async fn handshake(req: tokio_tungstenite::tungstenite::handshake::client::Request) -> Result<Client, u16> {
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
    {
        Ok((ws, _)) => Ok(Client::from_stream(ws)),
        Err(WsError::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

async fn refused_with(addr: SocketAddr, url: &str) -> u16 {
    let _ = addr;
    handshake(url.into_client_request().unwrap())
        .await
        .err()
        .expect("refused")
}

/// One HTTP request with extra headers; the status and body as text.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    (status, text)
}

/// Publishes to a subscribed topic; the ack's type once the echoed message has come too.
async fn publish_and_echo(c: &mut Client, topic: &str) -> String {
    c.send(json!({"op": "publish", "topic": topic, "data": "hi", "id": 2}))
        .await;
    let (a, b) = (c.recv().await, c.recv().await);
    let (ack, msg) = if a["type"] == "message" { (b, a) } else { (a, b) };
    assert_eq!(msg["data"], "hi", "{msg}");
    ack["type"].as_str().unwrap_or("").to_owned()
}

async fn auth_op(c: &mut Client, token: &str) -> Value {
    c.send(json!({"op": "auth", "token": token, "id": 9})).await;
    c.recv().await
}

#[tokio::test]
async fn a_valid_token_per_algorithm_grants_its_topics() {
    let rsa = format!("{FIXTURES}/jwt_rsa_public.pem");
    let ec = format!("{FIXTURES}/jwt_ec_public.pem");
    for (alg, key) in [
        (Algorithm::HS256, None),
        (Algorithm::RS256, Some(rsa)),
        (Algorithm::ES256, Some(ec)),
    ] {
        let b = spawn_broker_with(|c| {
            c.auth.mode = fanout::config::AuthMode::Jwt;
            c.auth.jwt_secret = SECRET.into();
            c.auth.jwt_public_key_file = key.clone().unwrap_or_default();
        })
        .await;
        let token = signed(alg, &claims("alice", &["news.>"], &["news.*"]));
        let mut c = connect_bearer(b.addr, &token)
            .await
            .unwrap_or_else(|s| panic!("{alg:?}: {s}"));
        c.subscribe("news.today").await;
        assert_eq!(publish_and_echo(&mut c, "news.today").await, "ack", "{alg:?}");
        b.stop().await;
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_at_the_handshake_and_by_the_auth_op() {
    let b = jwt_broker().await;
    let good = claims("bob", &[">"], &[">"]);
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    let mut early = good.clone();
    early["nbf"] = json!(now() + 3600);
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    let cases = [
        (hs256(&expired), "expired"),
        (hs256(&early), "not valid yet"),
        (wrong_key, "signature"),
        (unsigned(&good), "algorithm"),
        // RS256 without a configured public key.
        (signed(Algorithm::RS256, &good), "algorithm"),
        ("not.a.token".to_string(), "malformed"),
    ];
    for (token, why) in &cases {
        assert_eq!(connect_bearer(b.addr, token).await.err(), Some(401), "{why}");
        let status = refused_with(b.addr, &format!("ws://{}/ws?token={token}", b.addr)).await;
        assert_eq!(status, 401, "{why}");
        let mut c = connect(&b.ws_url("/ws")).await;
        let reply = auth_op(&mut c, token).await;
        assert_eq!(reply["type"], "error", "{why}: {reply}");
        assert_eq!(reply["code"], "unauthorized", "{why}: {reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains(why), "{why}: {message}");
        assert!(
            !reply.to_string().contains(token.as_str()),
            "the reply echoes the token: {reply}"
        );
        // Still not authenticated: publishing needs a token.
        c.send(json!({"op": "publish", "topic": "a", "data": 1, "id": 3})).await;
        assert_eq!(c.recv().await["code"], "unauthorized");
        c.close().await;
    }
    let (_, metrics) = request(b.addr, "GET", "/metrics", &[], "").await;
    assert!(
        !metrics.contains("fanout_auth_failures_total 0\n"),
        "failures are counted"
    );
    for (token, _) in &cases {
        assert!(!metrics.contains(token.as_str()));
    }
    b.stop().await;
}

#[tokio::test]
async fn grants_decide_what_a_websocket_may_do() {
    let b = jwt_broker().await;
    let mut c = connect(&b.ws_url("/ws")).await;
    // Without a token: only the anonymous feeds.
    c.subscribe("scores.nba").await;
    c.send(json!({"op": "subscribe", "topic": "chat.x", "id": 4})).await;
    assert_eq!(c.recv().await["code"], "unauthorized");
    let token = hs256(&claims("carol", &["chat.*", "news.>"], &["chat.room1"]));
    assert_eq!(auth_op(&mut c, &token).await["type"], "ack");
    c.subscribe("chat.room1").await;
    c.subscribe("news.*").await;
    for (topic, code) in [("chat.>", "forbidden"), ("news", "forbidden"), ("admin.x", "forbidden")] {
        c.send(json!({"op": "subscribe", "topic": topic, "id": 5})).await;
        let r = c.recv().await;
        assert_eq!(r["code"], code, "{topic}: {r}");
    }
    assert_eq!(publish_and_echo(&mut c, "chat.room1").await, "ack");
    c.send(json!({"op": "publish", "topic": "chat.room2", "data": 1, "id": 6}))
        .await;
    let r = c.recv().await;
    assert_eq!(
        (r["code"].as_str(), r["id"].as_u64()),
        (Some("forbidden"), Some(6)),
        "{r}"
    );
    c.close().await;
    b.stop().await;
}

#[tokio::test]
async fn the_token_sub_is_the_presence_client_id() {
    let b = spawn_broker_with(|c| {
        c.auth.mode = fanout::config::AuthMode::Jwt;
        c.auth.jwt_secret = SECRET.into();
        c.topics.push(fanout::config::TopicRule {
            pattern: "room.>".into(),
            history_size: None,
            ttl: None,
            last_value: false,
            policy: None,
            presence: true,
            compression: None,
        });
    })
    .await;
    let token = hs256(&claims("dave", &["room.>"], &[]));
    let mut c = connect_bearer(b.addr, &token).await.unwrap();
    c.subscribe("room.1").await;
    let join = c.recv().await;
    assert_eq!(
        (join["type"].as_str(), join["client"].as_str()),
        (Some("join"), Some("dave")),
        "{join}"
    );
    c.send(json!({"op": "presence", "topic": "room.1", "id": 7})).await;
    let p = c.recv().await;
    assert_eq!(p["members"], json!(["dave"]), "{p}");
    b.stop().await;
}

#[tokio::test]
async fn an_expiring_token_closes_the_connection_unless_refreshed() {
    let b = spawn_broker_with(|c| {
        c.auth.mode = fanout::config::AuthMode::Jwt;
        c.auth.jwt_secret = SECRET.into();
        c.auth.jwt_leeway = std::time::Duration::ZERO;
    })
    .await;
    let soon = |secs: u64| {
        let mut c = claims("erin", &[">"], &[">"]);
        c["exp"] = json!(now() + secs);
        hs256(&c)
    };
    // Refreshed before expiry: still open past the first token's end.
    let mut kept = connect_bearer(b.addr, &soon(2)).await.unwrap();
    let mut lapsing = connect_bearer(b.addr, &soon(2)).await.unwrap();
    assert_eq!(auth_op(&mut kept, &soon(3600)).await["type"], "ack");
    assert_eq!(lapsing.expect_close(1008).await, "token expired");
    kept.subscribe("still.here").await;
    kept.close().await;
    b.stop().await;
}

#[tokio::test]
async fn sse_streams_and_long_polls_end_when_their_token_expires() {
    let b = spawn_broker_with(|c| {
        c.auth.mode = fanout::config::AuthMode::Jwt;
        c.auth.jwt_secret = SECRET.into();
        c.auth.jwt_leeway = std::time::Duration::ZERO;
    })
    .await;
    let mut short = claims("frank", &[">"], &[]);
    short["exp"] = json!(now() + 2);
    let token = hs256(&short);
    let bearer = format!("Bearer {token}");
    let mut s = sse_connect(b.addr, "/sse/ends", &[("authorization", &bearer)]).await;
    let ev = s.next_event().await;
    assert_eq!(ev.event, "error", "{ev:?}");
    assert!(ev.data.contains("token_expired"), "{ev:?}");
    assert!(s.next_any().await.is_none(), "the stream ends after saying why");
    // The token is dead now: a new stream or poll with it is refused.
    assert_eq!(
        request(b.addr, "GET", "/sse/ends", &[("authorization", &bearer)], "")
            .await
            .0,
        401
    );
    // A poll with a token about to expire answers when the token ends, not at its timeout.
    short["exp"] = json!(now() + 1);
    let token = hs256(&short);
    let started = std::time::Instant::now();
    let (status, body) = request(
        b.addr,
        "GET",
        "/api/poll/ends?timeout=60",
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "cut at the token's end"
    );
    b.stop().await;
}

#[tokio::test]
async fn http_publishing_needs_a_key_or_a_token_with_publish_rights() {
    let b = jwt_broker().await;
    let path = "/api/publish/news.a";
    assert_eq!(request(b.addr, "POST", path, &[], "1").await.0, 401);
    assert_eq!(
        request(b.addr, "POST", path, &[("x-api-key", "wrong")], "1").await.0,
        401
    );
    assert_eq!(
        request(b.addr, "POST", path, &[("x-api-key", "pubkey-1")], "1").await.0,
        200
    );
    assert_eq!(
        request(b.addr, "POST", path, &[("authorization", "Bearer pubkey-1")], "1")
            .await
            .0,
        200
    );
    let token = hs256(&claims("f", &[], &["news.*"]));
    let bearer = format!("Bearer {token}");
    assert_eq!(
        request(b.addr, "POST", path, &[("authorization", &bearer)], "1")
            .await
            .0,
        200
    );
    let (status, body) = request(b.addr, "POST", "/api/publish/other", &[("authorization", &bearer)], "1").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("forbidden") && !body.contains(&token));
    let batch = r#"[{"topic":"news.b","data":1},{"topic":"secret","data":2}]"#;
    let (status, body) = request(b.addr, "POST", "/api/publish", &[("authorization", &bearer)], batch).await;
    assert!(status == 200 || status == 403, "{status} {body}");
    assert!(body.contains("forbidden"), "{body}");
    b.stop().await;
}

#[tokio::test]
async fn sse_poll_and_raw_sockets_follow_the_same_grants() {
    let b = jwt_broker().await;
    let token = hs256(&claims("g", &["news.*"], &["news.*"]));
    let bearer = format!("Bearer {token}");
    assert_eq!(request(b.addr, "GET", "/sse/secret", &[], "").await.0, 401);
    assert_eq!(
        request(b.addr, "GET", "/sse/secret", &[("authorization", &bearer)], "")
            .await
            .0,
        403
    );
    assert_eq!(
        request(b.addr, "GET", "/sse?topic=news.%3E", &[("authorization", &bearer)], "")
            .await
            .0,
        403
    );
    let mut sse = sse_connect(b.addr, "/sse/news.a", &[("authorization", &bearer)]).await;
    assert_eq!(
        request(b.addr, "POST", "/api/publish/news.a", &[("x-api-key", "pubkey-1")], "5")
            .await
            .0,
        200
    );
    assert_eq!(sse.next_event().await.json()["data"], 5);
    assert_eq!(
        request(
            b.addr,
            "GET",
            "/api/poll/secret?timeout=0s",
            &[("authorization", &bearer)],
            ""
        )
        .await
        .0,
        403
    );
    let anon_sse = sse_connect(b.addr, "/sse/scores.x", &[]).await;
    drop(anon_sse);
    assert_eq!(
        refused_with(b.addr, &format!("ws://{}/ws/t/secret?token={token}", b.addr)).await,
        403
    );
    assert_eq!(refused_with(b.addr, &format!("ws://{}/ws/t/secret", b.addr)).await, 401);
    let raw = connect(&format!("ws://{}/ws/t/news.a?token={token}", b.addr)).await;
    raw.close().await;
    b.stop().await;
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused_before_upgrading() {
    let b = spawn_broker_with(|c| {
        c.server.allowed_origins = vec!["https://app.example.org".into(), "https://*.example.com".into()];
    })
    .await;
    for (origin, ok) in [
        ("https://app.example.org", true),
        ("https://live.example.com", true),
        ("https://evil.example.net", false),
        ("https://example.com", false),
    ] {
        let mut req = b.ws_url("/ws").into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        let got = handshake(req).await;
        assert_eq!(got.is_ok(), ok, "{origin}");
        if let Err(status) = got {
            assert_eq!(status, 403);
        }
        let (status, _) = request(b.addr, "GET", "/sse/a", &[("origin", origin)], "").await;
        assert_eq!(status == 403, !ok, "SSE {origin}");
    }
    b.stop().await;
}

#[tokio::test]
async fn topic_history_and_presence_need_the_right_to_subscribe() {
    let b = jwt_broker().await;
    assert_eq!(
        request(b.addr, "POST", "/api/publish/secret", &[("x-api-key", "pubkey-1")], "1")
            .await
            .0,
        200
    );
    assert_eq!(
        request(b.addr, "GET", "/api/topics/secret/history", &[], "").await.0,
        401
    );
    let other = format!("Bearer {}", hs256(&claims("h", &["news.*"], &[])));
    assert_eq!(
        request(
            b.addr,
            "GET",
            "/api/topics/secret/history",
            &[("authorization", &other)],
            ""
        )
        .await
        .0,
        403
    );
    assert_eq!(
        request(b.addr, "GET", "/api/topics/secret", &[("authorization", &other)], "")
            .await
            .0,
        403
    );
    let allowed = format!("Bearer {}", hs256(&claims("h", &["secret"], &[])));
    let (status, body) = request(
        b.addr,
        "GET",
        "/api/topics/secret/history",
        &[("authorization", &allowed)],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    b.stop().await;
}

#[tokio::test]
async fn presence_needs_the_right_to_subscribe() {
    let b = jwt_broker().await;
    let token = hs256(&claims("i", &["news.*"], &[]));
    let mut c = connect_bearer(b.addr, &token).await.unwrap();
    c.send(json!({"op": "presence", "topic": "secret", "id": 8})).await;
    assert_eq!(c.recv().await["code"], "forbidden");
    c.close().await;
    b.stop().await;
}

#[tokio::test]
async fn the_topic_list_shows_only_readable_topics_and_connections_need_a_key() {
    let b = jwt_broker().await;
    for topic in ["secret", "scores.nba", "news.today"] {
        let path = format!("/api/publish/{topic}");
        assert_eq!(
            request(b.addr, "POST", &path, &[("x-api-key", "pubkey-1")], "1")
                .await
                .0,
            200
        );
    }
    // Anonymous callers see the anonymously readable feeds only.
    let (status, body) = request(b.addr, "GET", "/api/topics", &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("scores.nba") && !body.contains("secret") && !body.contains("news.today"),
        "{body}"
    );
    let news = format!("Bearer {}", hs256(&claims("n", &["news.*"], &[])));
    let (_, body) = request(b.addr, "GET", "/api/topics", &[("authorization", &news)], "").await;
    assert!(body.contains("news.today") && !body.contains("secret"), "{body}");
    // The connection list carries remote addresses: operators only.
    assert_eq!(request(b.addr, "GET", "/api/connections", &[], "").await.0, 403);
    assert_eq!(
        request(b.addr, "GET", "/api/connections", &[("authorization", &news)], "")
            .await
            .0,
        403
    );
    let (status, body) = request(
        b.addr,
        "GET",
        "/api/connections",
        &[("authorization", "Bearer pubkey-1")],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    b.stop().await;
}
