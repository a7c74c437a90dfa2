//! Socket.IO spoken packet by packet over the WebSocket transport
//! (tokio-tungstenite): the open packet, joining a namespace, events.

use serde_json::Value;

use super::{connect, Client, Got, TestBroker};

/// The Engine.IO query of a WebSocket connection with `extra` appended.
pub fn ws_path(extra: &str) -> String {
    format!("/socket.io/?EIO=4&transport=websocket{extra}")
}

/// A WebSocket Engine.IO connection; returns the client and the open packet's data.
pub async fn open_ws(b: &TestBroker, extra: &str) -> (Client, Value) {
    let mut c = connect(&b.ws_url(&ws_path(extra))).await;
    let open = text(&mut c).await;
    assert!(open.starts_with('0'), "the first frame is the open packet: {open}");
    let data: Value = serde_json::from_str(&open[1..]).unwrap();
    (c, data)
}

/// The next text frame, answering pings on the way.
pub async fn text(c: &mut Client) -> String {
    loop {
        match c.next().await {
            Got::Text(t) if t == "2" => c.send_text("3").await,
            Got::Text(t) => return t,
            other => panic!("expected a text packet, got {other:?}"),
        }
    }
}

/// Joins namespace `ns` (`""`: the main one) with `auth`; returns the CONNECT answer's data.
pub async fn join(c: &mut Client, ns: &str, auth: Option<Value>) -> Value {
    let prefix = if ns.is_empty() {
        String::new()
    } else {
        format!("/{ns},")
    };
    let auth = auth.map(|a| a.to_string()).unwrap_or_default();
    c.send_text(&format!("40{prefix}{auth}")).await;
    let answer = text(c).await;
    let expected = format!("40{prefix}");
    assert!(answer.starts_with(&expected), "CONNECT to `{ns}` answered: {answer}");
    serde_json::from_str(&answer[expected.len()..]).unwrap()
}

/// An event packet's data array, after checking its namespace prefix.
pub fn event(packet: &str, ns: &str) -> Value {
    let prefix = format!("42/{ns},");
    let body = packet
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("expected an event in /{ns}, got {packet}"));
    serde_json::from_str(body).unwrap()
}
