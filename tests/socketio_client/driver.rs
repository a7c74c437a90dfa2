//! The Rust side of `driver.mjs`: starts it, sends it commands and waits for what the
//! clients it runs print, for `tests/socketio_client.rs`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::common::{TestBroker, WAIT};

/// Which transports the client may use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transports {
    Polling,
    WebSocket,
    /// The default: long-polling first, then the upgrade.
    Upgrade,
}

impl Transports {
    /// The client options that choose them.
    pub fn opts(self) -> Value {
        match self {
            Transports::Polling => json!({"transports": ["polling"]}),
            Transports::WebSocket => json!({"transports": ["websocket"]}),
            Transports::Upgrade => json!({}),
        }
    }

    /// The transport a connection ends up on.
    pub fn settled(self) -> &'static str {
        match self {
            Transports::Polling => "polling",
            Transports::WebSocket | Transports::Upgrade => "websocket",
        }
    }
}

/// The node process running the clients, and what they printed.
pub struct Driver {
    child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
    /// Lines read but not yet taken by a wait, in arrival order.
    pending: VecDeque<Value>,
    /// Every line printed, for failure messages.
    log: Vec<String>,
    /// The broker, `http://HOST:PORT`.
    base: String,
    transports: Transports,
    acks: u64,
}

impl Driver {
    /// Starts the driver for clients of `b` over `transports`; `None` (after saying so)
    /// when node or the client package is missing and CI is not set.
    pub async fn start(b: &TestBroker, transports: Transports) -> Option<Driver> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/socketio_client");
        let node_ok = std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let missing = if !node_ok {
            Some("node is not installed")
        } else if !dir.join("node_modules/socket.io-client").exists() {
            Some("tests/socketio_client/node_modules is missing")
        } else {
            None
        };
        if let Some(missing) = missing {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set, so the Socket.IO client tests must run, but {missing}"
            );
            eprintln!(
                "\n*** SKIPPED a socketio_client test: {missing} ***\n\
                 *** run `npm ci --prefix tests/socketio_client` (needs node) to enable it ***\n"
            );
            return None;
        }
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("driver.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        Some(Driver {
            stdin: child.stdin.take().unwrap(),
            out: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
            pending: VecDeque::new(),
            log: Vec::new(),
            base: format!("http://{}", b.addr),
            transports,
            acks: 0,
        })
    }

    pub async fn send(&mut self, cmd: Value) {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .expect("the driver is running");
    }

    /// Takes the first line (already read or still to come) that `pred` accepts, within
    /// [`WAIT`]; the lines it passes over stay for later waits.
    pub async fn take(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.out.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(_) => panic!(
                    "the driver exited waiting for {what}; it printed:\n{}",
                    self.log.join("\n")
                ),
                Err(_) => panic!(
                    "not within {WAIT:?}: {what}; the driver printed:\n{}",
                    self.log.join("\n")
                ),
            };
            self.log.push(line.clone());
            let v: Value = serde_json::from_str(&line).expect("the driver prints JSON lines");
            if pred(&v) {
                return v;
            }
            self.pending.push_back(v);
        }
    }

    /// Everything client `who` observed (events, pings, disconnects...) up to and
    /// including the first line `last` accepts, in order.
    pub async fn until(&mut self, who: &str, mut last: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = self.take(&format!("the next line of {who}"), |l| l["as"] == who).await;
            let done = last(&line);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// The events client `who` received up to and including the message `data`, as
    /// `[name, ...args]`, so a test can say nothing else arrived before it.
    pub async fn events_until_message(&mut self, who: &str, data: &Value) -> Vec<Value> {
        let seen = self
            .until(who, |l| {
                l["on"] == "event" && l["event"] == "message" && l["args"][0] == *data
            })
            .await;
        seen.into_iter()
            .filter(|l| l["on"] == "event")
            .map(|l| {
                let mut e = vec![l["event"].clone()];
                e.extend(l["args"].as_array().unwrap().iter().cloned());
                Value::Array(e)
            })
            .collect()
    }

    /// Connects client `who` to namespace `path` of the broker with the scenario's
    /// transports and `opts`; the connect or connect_error line.
    pub async fn open(&mut self, who: &str, path: &str, opts: Value) -> Value {
        let mut all = self.transports.opts();
        all.as_object_mut().unwrap().extend(opts.as_object().unwrap().clone());
        let url = format!("{}{path}", self.base);
        self.send(json!({"cmd": "connect", "as": who, "url": url, "opts": all}))
            .await;
        self.take(&format!("{who} connects to {path}"), |l| {
            l["as"] == who && (l["on"] == "connect" || l["on"] == "connect_error")
        })
        .await
    }

    /// Connects and expects it to work; the connect line (`id`, `recovered`, `transport`).
    pub async fn connect(&mut self, who: &str, path: &str, opts: Value) -> Value {
        let c = self.open(who, path, opts).await;
        assert_eq!(c["on"], "connect", "{who} to {path}: {c}");
        c
    }

    /// The arguments of the next event `event` client `who` receives.
    pub async fn event(&mut self, who: &str, event: &str) -> Value {
        let what = format!("{who} receives event {event}");
        let e = self
            .take(&what, |l| l["as"] == who && l["on"] == "event" && l["event"] == event)
            .await;
        e["args"].clone()
    }

    /// The arguments of the next `message` event client `who` receives.
    pub async fn message(&mut self, who: &str) -> Value {
        self.event(who, "message").await
    }

    pub async fn emit(&mut self, who: &str, event: &str, args: Value) {
        self.send(json!({"cmd": "emit", "as": who, "event": event, "args": args}))
            .await;
    }

    /// Emits with an ack callback; what the server acknowledged with (its first argument).
    pub async fn emit_ack(&mut self, who: &str, event: &str, args: Value) -> Value {
        self.acks += 1;
        let r = self.acks;
        self.send(json!({"cmd": "emit", "as": who, "event": event, "args": args, "ack": r}))
            .await;
        let ack = self
            .take(&format!("the ack of {who}'s {event}"), |l| {
                l["as"] == who && l["on"] == "ack" && l["ref"] == r
            })
            .await;
        assert_eq!(ack["err"], Value::Null, "{who}'s {event} was not acknowledged: {ack}");
        ack["res"][0].clone()
    }

    /// What the client says about itself now (`socket.*`, `socket.io.engine.*`).
    pub async fn state(&mut self, who: &str) -> Value {
        self.send(json!({"cmd": "state", "as": who})).await;
        self.take(&format!("the state of {who}"), |l| l["as"] == who && l["on"] == "state")
            .await
    }

    /// Checks that `who` is connected over the transport the scenario ends on: for the
    /// default, waits for the upgrade to WebSocket.
    pub async fn settles(&mut self, who: &str) {
        let want = self.transports.settled();
        loop {
            let s = self.state(who).await;
            assert_eq!(s["connected"], true, "{who}: {s}");
            if s["transport"] == want {
                return;
            }
            assert_eq!(
                self.transports,
                Transports::Upgrade,
                "{who} is on the wrong transport: {s}"
            );
            self.take(&format!("{who} upgrades to WebSocket"), |l| {
                l["as"] == who && l["on"] == "upgrade"
            })
            .await;
        }
    }

    /// `socket.io.engine.close()`: the connection is lost; with `hold` the client does not
    /// come back until [`Driver::reconnect`]. Returns once the client noticed.
    pub async fn drop_connection(&mut self, who: &str, hold: bool) {
        self.send(json!({"cmd": "drop", "as": who, "hold": hold})).await;
        self.take(&format!("{who} disconnects"), |l| {
            l["as"] == who && l["on"] == "disconnect"
        })
        .await;
    }

    /// `socket.disconnect()`; returns once the client says it is disconnected.
    pub async fn leave(&mut self, who: &str) {
        self.send(json!({"cmd": "disconnect", "as": who})).await;
        self.take(&format!("{who} leaves"), |l| l["as"] == who && l["on"] == "disconnect")
            .await;
    }

    pub async fn reconnect(&mut self, who: &str) -> Value {
        self.send(json!({"cmd": "reconnect", "as": who})).await;
        self.next_connect(who).await
    }

    /// The next connect of `who` (a reconnection); fails on a connect_error.
    pub async fn next_connect(&mut self, who: &str) -> Value {
        let c = self
            .take(&format!("{who} connects again"), |l| {
                l["as"] == who && (l["on"] == "connect" || l["on"] == "connect_error")
            })
            .await;
        assert_eq!(c["on"], "connect", "{who}: {c}");
        c
    }

    /// Ends the clients and the driver.
    pub async fn exit(mut self) {
        self.send(json!({"cmd": "exit"})).await;
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}
