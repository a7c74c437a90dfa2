//! Settings from the environment, through the real binary: every list key
//! takes a comma-separated value (`FANOUT__AUTH__PUBLISH_KEYS=k1,k2`, the
//! usual way to hand Kubernetes secrets in), and a broker started that way
//! accepts exactly the keys listed.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::process::BrokerProcess;
use common::WAIT;
use fanout::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A directory of its own per test, so the repository's `config.toml` (read from the
/// working directory when `--config` is missing) can never leak in.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("fanout-config-env-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `fanout --config <file with content> check-config` with only `env` of the
/// `FANOUT__*` variables (inherited ones are removed, so the runner's shell cannot change
/// the answer).
fn check_config(name: &str, content: &str, env: &[(&str, &str)]) -> Output {
    let dir = TempDir::new(name);
    let file = dir.0.join("fanout.toml");
    std::fs::write(&file, content).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanout"));
    cmd.current_dir(&dir.0).arg("--config").arg(&file).arg("check-config");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FANOUT__")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run the fanout binary")
}

/// The effective settings `check-config` printed, after checking it said they are valid.
fn printed_settings(out: &Output) -> Config {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check-config failed: {stderr}");
    assert!(stderr.contains("configuration is valid"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    toml::from_str(&stdout).unwrap_or_else(|e| panic!("printed settings do not parse: {e}\n{stdout}"))
}

#[test]
fn every_list_key_takes_a_comma_separated_value() {
    let out = check_config(
        "lists",
        "",
        &[
            ("FANOUT__AUTH__PUBLISH_KEYS", "k1,k2"),
            ("FANOUT__AUTH__ANONYMOUS_SUBSCRIBE", "public.>,news.*"),
            (
                "FANOUT__SERVER__ALLOWED_ORIGINS",
                "https://a.example.com, https://*.example.org",
            ),
        ],
    );
    let c = printed_settings(&out);
    assert_eq!(c.auth.publish_keys, ["k1", "k2"]);
    assert_eq!(c.auth.anonymous_subscribe, ["public.>", "news.*"]);
    assert_eq!(
        c.server.allowed_origins,
        ["https://a.example.com", "https://*.example.org"]
    );
}

#[test]
fn an_empty_value_is_an_empty_list() {
    let out = check_config(
        "empty",
        "[server]\nallowed_origins = [\"https://x.example.com\"]\n[auth]\npublish_keys = [\"file-key\"]\n",
        &[
            ("FANOUT__SERVER__ALLOWED_ORIGINS", ""),
            ("FANOUT__AUTH__PUBLISH_KEYS", "k1"),
        ],
    );
    let c = printed_settings(&out);
    assert!(c.server.allowed_origins.is_empty(), "{:?}", c.server.allowed_origins);
    assert_eq!(c.auth.publish_keys, ["k1"]);
}

#[test]
fn a_comma_in_a_string_key_is_left_alone() {
    let urls = "nats://127.0.0.1:4222,nats://127.0.0.2:4222";
    let out = check_config("string", "", &[("FANOUT__CLUSTER__NATS_URL", urls)]);
    assert_eq!(printed_settings(&out).cluster.nats_url, urls);
}

#[test]
fn a_bad_list_item_stops_the_start_naming_the_key() {
    let out = check_config("bad", "", &[("FANOUT__AUTH__ANONYMOUS_SUBSCRIBE", "a..b")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a..b was accepted: {stderr}");
    assert!(stderr.contains("auth.anonymous_subscribe[0]"), "{stderr}");
    assert!(!stderr.contains("configuration is valid"), "{stderr}");
}

/// `POST /api/publish/{topic}` with `X-Api-Key: key` over a fresh connection; the status.
async fn publish_with_key(broker: &BrokerProcess, topic: &str, key: &str) -> u16 {
    let body = br#"{"n":1}"#;
    let mut s = TcpStream::connect(broker.addr).await.unwrap();
    let head = format!(
        "POST /api/publish/{topic} HTTP/1.1\r\nhost: {}\r\nx-api-key: {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        broker.addr,
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"))
}

#[tokio::test]
async fn a_broker_accepts_exactly_the_publish_keys_from_the_environment() {
    let broker = BrokerProcess::start(
        "config-env-keys",
        "",
        &[
            ("FANOUT__AUTH__MODE", "jwt"),
            ("FANOUT__AUTH__JWT_SECRET", "s"),
            ("FANOUT__AUTH__PUBLISH_KEYS", "k1,k2"),
        ],
    );
    assert_eq!(publish_with_key(&broker, "news.a", "k2").await, 200);
    assert_eq!(publish_with_key(&broker, "news.a", "k1").await, 200);
    assert_eq!(publish_with_key(&broker, "news.a", "k3").await, 401);
    // The unsplit value must not have become a key either.
    assert_eq!(publish_with_key(&broker, "news.a", "k1,k2").await, 401);
}
