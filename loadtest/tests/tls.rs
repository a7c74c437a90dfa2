//! `wss://` end to end, against the real broker (in this process) serving
//! TLS with a certificate rcgen makes for `localhost` and `127.0.0.1`:
//! the `fanout` scenario trusting it with `--ca-file`, then with
//! `--insecure`, must deliver every message; without either, or trusting
//! another certificate, the run must fail saying what to pass.

mod common;

use fanout_loadtest::client::tls::TlsTrust;
use fanout_loadtest::client::{ClientConfig, Message, WsClient};
use fanout_loadtest::outcome::RunReport;
use fanout_loadtest::protocol::Protocol;
use fanout_loadtest::run::{run, RunConfig};
use fanout_loadtest::scenario;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A self-signed certificate, its PEM files in the temp directory.
struct Cert {
    cert_file: PathBuf,
    key_file: PathBuf,
}

fn make_cert(name: &str) -> Cert {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let dir = std::env::temp_dir();
    let stem = format!("fanout-loadtest-tls-{}-{name}", std::process::id());
    let cert_file = dir.join(format!("{stem}.crt"));
    let key_file = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_file, ck.cert.pem()).unwrap();
    std::fs::write(&key_file, ck.signing_key.serialize_pem()).unwrap();
    Cert { cert_file, key_file }
}

/// The broker, serving TLS with `cert` on a port of its own, until dropped.
struct Broker {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn tls_broker(cert: &Cert) -> Broker {
    let mut config = fanout::config::Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.tls.cert_file = cert.cert_file.display().to_string();
    config.tls.key_file = cert.key_file.display().to_string();
    config.validate().expect("a valid TLS configuration");
    let listener = fanout::server::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = fanout::broker::Broker::new(Arc::new(config)).expect("the broker starts");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = fanout::server::serve(listener, broker, async {
            let _ = stopped.await;
        })
        .await;
    });
    Broker { addr, _stop: stop }
}

/// One 2-second step at 100 msg/s of 1 publisher -> 20 subscribers over `url`.
fn fanout(url: String, protocol: Protocol, trust: TlsTrust) -> RunConfig {
    let mut cfg = common::raw_fanout(url, 20, 100.0, 100, 1);
    cfg.plan = scenario::fanout("fanout", 1, 20, 0, false, true).unwrap();
    cfg.opts.protocol = protocol;
    cfg.opts.raw_path = "/ws/t/{topic}".into();
    cfg.opts.tls = trust;
    cfg
}

/// Every delivery arrived, once, over TLS; returns the report.
async fn delivered_over_tls(cfg: RunConfig) -> RunReport {
    let report = run(cfg).await.unwrap();
    assert_eq!(report.connect.connected, 21, "{:?}", report.connect.first_error);
    let step = &report.steps[0];
    let c = &step.counters;
    assert_eq!((c.sent, c.expected), (200, 4000), "{c:?}");
    assert_eq!(c.received, 4000, "lost {}", step.lost);
    assert_eq!(step.delivered_fraction, 1.0);
    assert_eq!((c.duplicates, c.reordered, c.foreign, c.errors), (0, 0, 0, 0), "{c:?}");
    let tls = report.tls.as_ref().expect("the report says TLS was on");
    assert_eq!(tls.connections, 21);
    let session = tls.session.as_deref().unwrap_or_default();
    assert!(session.starts_with("TLSv1_3 TLS13_"), "{session}");
    // The subscribers read records: a header and a tag (22 B in TLS 1.3) per record.
    let records = step.tls_records_per_delivery.expect("records were counted");
    assert!(records > 0.0 && records <= 1.1, "{records} records per delivery");
    let (wire, message) = (
        step.wire_bytes_per_delivery.unwrap(),
        step.message_bytes_per_delivery.unwrap(),
    );
    assert!(wire > message, "TLS records cost bytes: {wire} vs {message}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_wss_trusting_a_ca_file_delivers_everything() {
    let cert = make_cert("ca-file");
    let broker = tls_broker(&cert).await;
    let trust = TlsTrust {
        insecure: false,
        ca_file: Some(cert.cert_file.clone()),
    };
    let url = format!("wss://{}", broker.addr);
    let report = delivered_over_tls(fanout(url, Protocol::Json, trust.clone())).await;
    assert_eq!(report.tls.unwrap().trust, cert.cert_file.display().to_string());
    // The client on its own, in tokio: the tokio-rustls reader and writer.
    let config = ClientConfig {
        tls: Some(fanout_loadtest::client::tls::client_config(&trust).unwrap()),
        ..ClientConfig::default()
    };
    let mut ws = WsClient::connect_with(&format!("wss://{}/ws?format=json", broker.addr), config)
        .await
        .unwrap();
    assert!(ws.tls().unwrap().starts_with("TLSv1_3"), "{:?}", ws.tls());
    ws.send_text(r#"{"op":"ping","id":7}"#).await.unwrap();
    let answer = ws.next_message().await.unwrap();
    assert!(
        matches!(&answer, Message::Text(t) if t.contains(r#""pong""#)),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_wss_with_insecure_delivers_everything() {
    let cert = make_cert("insecure");
    let broker = tls_broker(&cert).await;
    let trust = TlsTrust {
        insecure: true,
        ca_file: None,
    };
    for protocol in [Protocol::Raw, Protocol::Msgpack] {
        let report = delivered_over_tls(fanout(format!("wss://{}", broker.addr), protocol, trust.clone())).await;
        assert_eq!(report.tls.unwrap().trust, "any certificate (--insecure)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_without_trust_fails_naming_both_options() {
    let cert = make_cert("untrusted");
    let broker = tls_broker(&cert).await;
    let url = format!("wss://{}", broker.addr);
    let e = run(fanout(url.clone(), Protocol::Json, TlsTrust::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--ca-file PATH") && e.contains("--insecure"), "{e}");

    // Trusting another certificate: every handshake fails, and says what to pass.
    let other = make_cert("other");
    let trust = TlsTrust {
        insecure: false,
        ca_file: Some(other.cert_file),
    };
    let e = run(fanout(url, Protocol::Json, trust)).await.unwrap_err().to_string();
    assert!(e.contains("invalid peer certificate"), "{e}");
    assert!(e.contains("--ca-file PATH") && e.contains("--insecure"), "{e}");

    // What a user sees: the command refuses before connecting.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout-loadtest"))
        .args([
            "fanout",
            "--url",
            &format!("wss://{}", broker.addr),
            "--subscribers",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--ca-file PATH") && stderr.contains("--insecure"),
        "{stderr}"
    );
}
