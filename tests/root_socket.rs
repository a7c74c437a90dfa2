//! The root-path socket (`server.root_topic`): `new WebSocket("ws://HOST:PORT")`
//! is a raw topic socket on the configured topic, with a token in the query
//! when auth is on, `?echo=` and `?since=` as on `/ws/t/{topic}`; a plain
//! `GET /` is still the dashboard; `root_topic = ""` turns it off; a reload
//! applies a new name to sockets opened after it; a bad name stops the start
//! naming the key, from a file or the environment.

mod common;

use std::process::Command;

use common::*;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Waits until a raw socket is subscribed: its reader, which answers pings, starts
/// only once the subscription is in place.
async fn subscribed(c: &mut Client) {
    c.ws.send(Message::Ping(b"ready?".to_vec().into())).await.unwrap();
    loop {
        let m = tokio::time::timeout(WAIT, c.ws.next()).await.expect("a pong in time");
        if let Some(Ok(Message::Pong(p))) = m {
            assert_eq!(&p[..], b"ready?");
            return;
        }
    }
}

/// Connects a raw socket at `url` and waits until it is subscribed.
async fn connect_subscribed(url: &str) -> Client {
    let mut c = connect(url).await;
    subscribed(&mut c).await;
    c
}

/// The upgrade's status when the broker refuses it.
async fn refused(url: &str) -> u16 {
    match tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(url.into_client_request().unwrap()),
    )
    .await
    .unwrap()
    {
        Err(WsError::Http(res)) => res.status().as_u16(),
        Ok(_) => panic!("{url} was accepted"),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[tokio::test]
async fn a_websocket_on_the_root_path_is_a_raw_socket_on_root() {
    let b = spawn_broker().await;
    // Exactly what a page writes: no path at all.
    let mut root = connect_subscribed(&format!("ws://{}", b.addr)).await;
    let mut other = connect_subscribed(&b.ws_url("/ws/t/root")).await;
    root.send_text("hello from /").await;
    assert_eq!(other.next().await, Got::Text("hello from /".into()));
    other.send_binary(&[1, 2, 3]).await;
    assert_eq!(root.next().await, Got::Binary(vec![1, 2, 3]));
    // Payloads from anywhere arrive as exactly themselves.
    http_publish_as(b.addr, "root", "text/plain", b"over http").await;
    assert_eq!(root.next().await, Got::Text("over http".into()));
    assert_eq!(other.next().await, Got::Text("over http".into()));
    // Without echo a root socket does not get its own message back: the next thing it
    // sees is the other's.
    root.send_text("not back to me").await;
    assert_eq!(other.next().await, Got::Text("not back to me".into()));
    other.send_text("to you").await;
    assert_eq!(root.next().await, Got::Text("to you".into()));
    b.stop().await;
}

#[tokio::test]
async fn echo_and_since_work_on_the_root_path_as_on_raw_sockets() {
    let b = spawn_broker().await;
    for i in 1..=3 {
        http_publish_as(b.addr, "root", "text/plain", format!("m{i}").as_bytes()).await;
    }
    let mut c = connect(&b.ws_url("/?since=1&echo=true")).await;
    assert_eq!(c.next().await, Got::Text("m2".into()));
    assert_eq!(c.next().await, Got::Text("m3".into()));
    c.send_text("mine").await;
    assert_eq!(
        c.next().await,
        Got::Text("mine".into()),
        "echo=true gets its own message"
    );
    b.stop().await;
}

#[tokio::test]
async fn the_root_topic_comes_from_the_settings() {
    let b = spawn_broker_with(|c| c.server.root_topic = "chat.lobby".into()).await;
    let mut root = connect_subscribed(&b.ws_url("/")).await;
    http_publish_as(b.addr, "chat.lobby", "text/plain", b"welcome").await;
    assert_eq!(root.next().await, Got::Text("welcome".into()));
    b.stop().await;
}

#[tokio::test]
async fn a_reload_moves_sockets_opened_after_it_to_the_new_root_topic() {
    let b = spawn_broker().await;
    let mut before = connect_subscribed(&b.ws_url("/")).await;
    let mut config = (*b.broker.settings()).clone();
    config.server.root_topic = "moved".into();
    let changes = fanout::reload::diff(&b.broker.settings(), &b.broker.config, &config);
    assert_eq!(changes.live, ["server.root_topic"], "applied without a restart");
    b.broker.apply(config).unwrap();
    let mut after = connect_subscribed(&b.ws_url("/")).await;
    http_publish_as(b.addr, "moved", "text/plain", b"to the new topic").await;
    assert_eq!(after.next().await, Got::Text("to the new topic".into()));
    http_publish_as(b.addr, "root", "text/plain", b"to the old one").await;
    assert_eq!(
        before.next().await,
        Got::Text("to the old one".into()),
        "an open socket stays"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_plain_get_of_the_root_is_still_the_dashboard() {
    let b = spawn_broker().await;
    let (status, body) = http_get(b.addr, "/", &[]).await;
    assert_eq!(status, 200);
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<title>fanout dashboard</title>"), "{page}");
    b.stop().await;
}

/// The head of a WebSocket upgrade on `/`.
const UPGRADE: [(&str, &str); 4] = [
    ("connection", "Upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

#[tokio::test]
async fn an_empty_root_topic_turns_the_root_socket_off() {
    let b = spawn_broker_with(|c| c.server.root_topic = String::new()).await;
    let (status, body) = http_with(b.addr, "GET", "/", &UPGRADE, b"").await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("server.root_topic is off"), "{text}");
    assert_eq!(refused(&format!("ws://{}", b.addr)).await, 404);
    // The dashboard and the other sockets are unaffected.
    assert_eq!(http_get(b.addr, "/", &[]).await.0, 200);
    let mut raw = connect_subscribed(&b.ws_url("/ws/t/root")).await;
    http_publish_as(b.addr, "root", "text/plain", b"still a topic").await;
    assert_eq!(raw.next().await, Got::Text("still a topic".into()));
    b.stop().await;
}

#[tokio::test]
async fn an_incomplete_upgrade_on_the_root_gets_400_naming_what_is_missing() {
    let b = spawn_broker().await;
    let (status, body) = http_with(b.addr, "GET", "/", &UPGRADE[1..], b"").await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Connection: Upgrade"), "{text}");
    b.stop().await;
}

const SECRET: &str = "root-socket-secret";

fn token(subscribe: &[&str], publish: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": "page", "exp": now + 3600, "subscribe": subscribe, "publish": publish});
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn with_auth_on_a_root_socket_takes_its_token_from_the_query() {
    let b = spawn_broker_with(|c| {
        c.auth.mode = fanout::config::AuthMode::Jwt;
        c.auth.jwt_secret = SECRET.into();
    })
    .await;
    assert_eq!(refused(&b.ws_url("/")).await, 401);
    assert_eq!(
        refused(&b.ws_url(&format!("/?token={}", token(&["news"], &[])))).await,
        403
    );
    let good = token(&["root"], &["root"]);
    let mut root = connect_subscribed(&b.ws_url(&format!("/?token={good}"))).await;
    let mut other = connect_subscribed(&b.ws_url(&format!("/ws/t/root?token={good}"))).await;
    root.send_text("authorised").await;
    assert_eq!(other.next().await, Got::Text("authorised".into()));
    // Reading is what the upgrade checks; publishing needs its own grant.
    let reader = token(&["root"], &[]);
    let mut read_only = connect_subscribed(&b.ws_url(&format!("/?token={reader}"))).await;
    read_only.send_text("not allowed").await;
    let reason = read_only.expect_close(1008).await;
    assert!(reason.contains("`root` is not granted"), "{reason}");
    b.stop().await;
}

/// Runs `fanout check-config` with `FANOUT__SERVER__ROOT_TOPIC` set to `value` and no
/// other `FANOUT__` variable, from a directory without a `config.toml`.
fn check_config_with_root_topic(value: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("fanout-root-topic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanout"));
    cmd.current_dir(&dir).arg("check-config");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FANOUT__")) {
        cmd.env_remove(k);
    }
    let out = cmd.env("FANOUT__SERVER__ROOT_TOPIC", value).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn the_root_topic_can_be_set_from_the_environment_and_a_bad_one_stops_the_start() {
    let out = check_config_with_root_topic("news.live");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("root_topic = \"news.live\""));
    let out = check_config_with_root_topic("");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("root_topic = \"\""));
    for bad in ["a..b", "quotes.*"] {
        let out = check_config_with_root_topic(bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted: {err}");
        assert!(err.contains("server.root_topic") && err.contains(bad), "{err}");
    }
}
