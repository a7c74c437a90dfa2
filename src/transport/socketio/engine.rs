//! One Engine.IO connection: its Socket.IO sockets (one [`Session`] per
//! namespace joined), the packets it receives, what its transport is to send
//! next, and its heartbeat.
//!
//! Every socket's [`SendQueue`] shares one wake-up (`Sink::Shared`), so the
//! current transport — a WebSocket task, or the long-poll waiting — drains
//! them all with [`Engine::take`]: the same bounded queues, policies and
//! shared frames as every other subscriber. A namespace that is a topic is
//! subscribed to it when the client joins; the main namespace subscribes
//! with `subscribe` events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tracing::debug;

use crate::auth::Grants;
use crate::clock::{now_ms, now_secs};
use crate::connections::Peer;
use crate::error::{ErrorCode, RequestError};
use crate::hub::Hub;
use crate::metrics::Transport;
use crate::protocol::socketio::{self as sio, engine as packet, Packet, PacketType};
use crate::protocol::{frame, json, ClientMsg, Epoch, Payload, Reply, Wire};
use crate::queue::{place_gaps, Drained, Entry, SendQueue, Sink};
use crate::registry::{Position, Resume};
use crate::session::Session;
use crate::topic::TopicName;

/// Which transport carries the connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Long-polling.
    Polling,
    /// Long-polling, while a WebSocket probes to take over: a poll answers `noop` at once.
    Upgrading,
    /// WebSocket.
    WebSocket,
}

/// What the handshake fixed for the connection's life.
pub struct Handshake {
    /// The client's address.
    pub remote: std::net::SocketAddr,
    /// A token sent with the handshake (`?token=`, `Authorization`), for namespaces whose
    /// CONNECT carries none.
    pub credential: Option<String>,
    /// `?echo=`: whether a socket gets its own emits back (`None`: the namespace's default).
    pub echo: Option<bool>,
}

/// One Engine.IO connection.
pub struct Engine {
    /// The Engine.IO session id.
    pub sid: Arc<str>,
    hub: Arc<Hub>,
    handshake: Handshake,
    /// Wakes the transport: a socket's queue has work, a control packet was queued, the
    /// mode changed or the connection closes.
    wake: Arc<Notify>,
    /// Packets not tied to a socket's queue (ping, noop, refusals), as complete frames.
    control: Mutex<Vec<Bytes>>,
    /// Every socket's queue, in the order the namespaces were joined.
    queues: Mutex<Vec<Arc<SendQueue>>>,
    /// The sockets themselves, with the packet being assembled; locked while a packet is
    /// handled (never while writing).
    sockets: tokio::sync::Mutex<Sockets>,
    state: Mutex<State>,
    /// Pongs received; the heartbeat compares it across a ping.
    pongs: AtomicU64,
    pong: Notify,
    /// Wakes the heartbeat: the connection closes, or a socket joined.
    changed: Notify,
    /// Whether a namespace was ever joined (one must be, within `socketio.connect_timeout`).
    joined: std::sync::atomic::AtomicBool,
}

struct State {
    mode: Mode,
    /// A long-poll is waiting (two at once break the protocol).
    polling: bool,
    /// Set once closing: the frame a WebSocket ends with (the close frame).
    closing: Option<Bytes>,
    /// The client closed it (a `close` packet): a waiting poll ends with `noop`.
    closed_by_client: bool,
}

/// The sockets of a connection, by namespace (`""`: the main one).
#[derive(Default)]
struct Sockets {
    by_namespace: HashMap<String, Socket>,
    /// A binary event waiting for its attachments.
    assembling: Option<(Packet, Vec<Bytes>)>,
}

/// One Socket.IO socket: a namespace joined.
struct Socket {
    session: Session,
    /// The topic, for a namespace that is one; `None` for the main namespace.
    topic: Option<TopicName>,
}

impl Engine {
    /// A connection that starts on `mode`, its sockets not yet joined.
    pub fn new(hub: Arc<Hub>, sid: Arc<str>, mode: Mode, handshake: Handshake) -> Self {
        Engine {
            sid,
            hub,
            handshake,
            wake: Arc::new(Notify::new()),
            control: Mutex::new(Vec::new()),
            queues: Mutex::new(Vec::new()),
            sockets: tokio::sync::Mutex::new(Sockets::default()),
            state: Mutex::new(State {
                mode,
                polling: false,
                closing: None,
                closed_by_client: false,
            }),
            pongs: AtomicU64::new(0),
            pong: Notify::new(),
            changed: Notify::new(),
            joined: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The open packet's data: what the client needs to keep the connection up.
    pub fn open_data(&self, upgrades: bool) -> String {
        let settings = self.hub.settings();
        let s = &settings.socketio;
        serde_json::json!({
            "sid": &*self.sid,
            "upgrades": if upgrades { vec!["websocket"] } else { vec![] },
            "pingInterval": s.ping_interval.as_millis() as u64,
            "pingTimeout": s.ping_timeout.as_millis() as u64,
            "maxPayload": settings.limits.max_message_bytes,
        })
        .to_string()
    }

    /// The transport in use.
    pub fn mode(&self) -> Mode {
        self.state.lock().mode
    }

    /// Switches the transport (an upgrade's steps), waking a waiting poll.
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().mode = mode;
        self.wake.notify_one();
    }

    /// Whether the connection is closing.
    pub fn is_closing(&self) -> bool {
        self.state.lock().closing.is_some()
    }

    /// Starts closing: the transport sends what is queued, then `close_frame` (on a
    /// WebSocket) or the `close` packet (long-polling), and the sockets end.
    pub fn close(&self, close_frame: Bytes) {
        let mut st = self.state.lock();
        if st.closing.is_none() {
            st.closing = Some(close_frame);
        }
        drop(st);
        self.wake.notify_one();
        self.changed.notify_one();
    }

    /// Whether the client closed the connection itself.
    pub fn closed_by_client(&self) -> bool {
        self.state.lock().closed_by_client
    }

    /// Claims the right to long-poll; false if a poll is already waiting.
    pub fn begin_poll(&self) -> bool {
        !std::mem::replace(&mut self.state.lock().polling, true)
    }

    /// Gives the right to long-poll back.
    pub fn end_poll(&self) {
        self.state.lock().polling = false;
    }

    /// Waits for something to send (or a change of mode, or the close).
    pub async fn ready(&self) {
        self.wake.notified().await
    }

    /// Queues a packet that no socket's queue carries, and wakes the transport.
    pub fn push_control(&self, frame: Bytes) {
        self.control.lock().push(frame);
        self.wake.notify_one();
    }

    /// Moves everything there is to send into `out` (complete frames, in order per
    /// socket): control packets first, then each socket's queue. Returns the close frame
    /// once the connection is closing and everything before it is taken.
    pub fn take(&self, drained: &mut Drained, out: &mut Vec<Bytes>) -> Option<Bytes> {
        out.append(&mut self.control.lock());
        let mut closing = None;
        let mut messages = 0u64;
        let mut bytes = 0u64;
        let mut oldest = None::<u64>;
        for queue in self.queues.lock().iter() {
            queue.drain(drained);
            let wire = queue.wire();
            let mut gaps = place_gaps(&drained.entries, &drained.gaps, wire).into_iter().peekable();
            for (i, entry) in drained.entries.iter().enumerate() {
                while let Some((_, g)) = gaps.next_if(|(at, _)| *at == i) {
                    out.push(g);
                }
                match entry {
                    Entry::Message(m) => {
                        let f = m.frame(wire);
                        messages += 1;
                        bytes += f.len() as u64;
                        oldest = Some(oldest.map_or(m.ts, |o| o.min(m.ts)));
                        out.push(f.clone());
                    }
                    Entry::Reply(b) | Entry::Control(b) if !b.is_empty() => out.push(b.clone()),
                    _ => {}
                }
            }
            out.extend(gaps.map(|(_, g)| g));
            // A socket's queue closes for a slow consumer (`disconnect`): the connection
            // goes, and the client reconnects (recovering what it missed).
            if let Some(c) = drained.close.take() {
                closing.get_or_insert(c);
            }
        }
        if let (Some(m), true) = (&self.hub.metrics, messages > 0) {
            m.record_batch(messages, bytes, oldest, now_ms());
        }
        if let Some(c) = closing {
            self.close(c);
        }
        self.state.lock().closing.clone()
    }

    /// Whether a socket's queue was cut (a slow consumer under `disconnect`): a write
    /// blocked on the socket must give up.
    pub fn aborted(&self) -> bool {
        self.queues.lock().iter().any(|q| q.is_aborted())
    }

    /// Handles one Engine.IO packet from the client (text).
    pub async fn receive_text(&self, text: &str) {
        let Some(&kind) = text.as_bytes().first() else {
            return self.violation("an empty Engine.IO packet");
        };
        match kind {
            packet::PONG => {
                self.pongs.fetch_add(1, Ordering::Relaxed);
                self.pong.notify_one();
            }
            packet::PING => self.push_control(sio::engine_frame(packet::PONG, &text.as_bytes()[1..])),
            packet::MESSAGE => self.receive_packet(&text[1..]).await,
            packet::CLOSE => {
                self.state.lock().closed_by_client = true;
                self.close(frame::close(1000, ""));
            }
            packet::NOOP | packet::UPGRADE => {}
            _ => self.violation(&format!(
                "`{}` is not an Engine.IO packet type (0-6)",
                text.chars().next().unwrap_or_default()
            )),
        }
    }

    /// Handles a binary Engine.IO message: an attachment of the binary packet being assembled.
    pub async fn receive_binary(&self, data: Bytes) {
        let mut sockets = self.sockets.lock().await;
        let Some((packet, mut attachments)) = sockets.assembling.take() else {
            drop(sockets);
            return self.violation("a binary attachment with no binary packet announcing it");
        };
        attachments.push(data);
        if attachments.len() < packet.attachments {
            sockets.assembling = Some((packet, attachments));
            return;
        }
        self.dispatch(&mut sockets, packet, attachments).await;
    }

    /// The client broke the protocol: close the connection (the client reconnects).
    fn violation(&self, what: &str) {
        debug!(sid = %self.sid, what, "socket.io protocol violation");
        self.hub.count_protocol_error("socketio");
        self.close(frame::close(1002, what));
    }

    async fn receive_packet(&self, text: &str) {
        let packet = match sio::parse_packet(text) {
            Ok(p) => p,
            Err(e) => return self.violation(&e.0),
        };
        let mut sockets = self.sockets.lock().await;
        if sockets.assembling.is_some() {
            drop(sockets);
            return self.violation("a packet arrived before the attachments of the binary packet before it");
        }
        if packet.attachments > 0 {
            sockets.assembling = Some((packet, Vec::new()));
            return;
        }
        self.dispatch(&mut sockets, packet, Vec::new()).await;
    }

    async fn dispatch(&self, sockets: &mut Sockets, packet: Packet, attachments: Vec<Bytes>) {
        match packet.kind {
            PacketType::Connect => self.connect(sockets, &packet).await,
            PacketType::Disconnect => {
                if let Some(socket) = sockets.by_namespace.remove(&packet.namespace) {
                    self.forget(&socket);
                }
            }
            PacketType::Event | PacketType::BinaryEvent => {
                if event_args(&packet).is_none() {
                    return self.violation("an event's data must be an array whose first element is its name");
                }
                let Some(socket) = sockets.by_namespace.get_mut(&packet.namespace) else {
                    // As the reference server does: events for a namespace not joined are dropped.
                    return;
                };
                let rate_abused = socket.event(&self.hub, &packet, attachments).await;
                if rate_abused {
                    self.close(frame::close(1008, "rate limited"));
                }
            }
            // The server never asks the client for an ack; a client's CONNECT_ERROR is no packet.
            PacketType::Ack | PacketType::BinaryAck | PacketType::ConnectError => {}
        }
    }

    /// Joins a namespace: checks the token and the grants, subscribes a topic namespace
    /// (resuming after the offset a recovering client sends), and answers CONNECT, or
    /// CONNECT_ERROR with the reason.
    async fn connect(&self, sockets: &mut Sockets, packet: &Packet) {
        let ns = packet.namespace.as_str();
        if let Some(socket) = sockets.by_namespace.get(ns) {
            // Joined already: answer again, as the reference server does.
            socket
                .session
                .queue()
                .push_reply(sio::connect_frame(ns, &socket_id(&socket.session), None));
            return;
        }
        match self.join(sockets, ns, packet.data.as_deref()).await {
            Ok(socket) => {
                let queue = Arc::clone(socket.session.queue());
                sockets.by_namespace.insert(ns.to_owned(), socket);
                self.queues.lock().push(queue);
                self.joined.store(true, Ordering::Relaxed);
                self.changed.notify_one();
                self.wake.notify_one();
            }
            Err(e) => {
                self.hub.count_protocol_error(e.code.as_str());
                self.push_control(sio::connect_error_frame(ns, e.code.as_str(), &e.message));
            }
        }
    }

    async fn join(&self, sockets: &Sockets, ns: &str, auth: Option<&RawValue>) -> Result<Socket, RequestError> {
        let settings = self.hub.settings();
        let max = settings.limits.max_subscriptions_per_connection;
        let topics = sockets.by_namespace.keys().filter(|k| !k.is_empty()).count();
        let topic = match ns {
            "" => None,
            _ => Some(namespace_topic(ns)?),
        };
        if topic.is_some() && topics >= max {
            return Err(RequestError::new(
                ErrorCode::TooManySubscriptions,
                format!("this connection joined {max} topic namespaces, the most allowed (limits.max_subscriptions_per_connection)"),
            ));
        }
        let auth = ConnectAuth::parse(auth)?;
        let grants = self.grants(auth.token.as_deref().or(self.handshake.credential.as_deref()))?;
        let peer = Peer {
            remote: Some(self.handshake.remote),
            transport: Transport::SocketIo,
        };
        let sink = Sink::Shared(Arc::clone(&self.wake));
        let (wire, echo) = match topic {
            // Like `socket.broadcast.emit` unless `?echo=true`; the main namespace echoes
            // like `/ws` does.
            Some(_) => (Wire::SioTopic, self.handshake.echo.unwrap_or(false)),
            None => (Wire::SioMain, self.handshake.echo.unwrap_or(true)),
        };
        let mut session = Session::with_sink(Arc::clone(&self.hub), wire, echo, peer, sink);
        if let Some(g) = grants {
            session.set_grants(g);
        }
        let sid = socket_id(&session);
        match &topic {
            None => {
                session.queue().push_reply(sio::connect_frame("", &sid, None));
            }
            Some(name) => {
                let resume = auth.resume();
                let asked = auth.pid.clone();
                let answer = |position: Option<Position>| {
                    let pid = position.map(|p| recovery_id(p, asked.as_deref(), &sid));
                    Some(sio::connect_frame(ns, &sid, pid.as_deref()))
                };
                session.subscribe_answered(name.as_str(), resume, answer).await?;
            }
        }
        Ok(Socket { session, topic })
    }

    /// The grants of `token` (anonymous without one); `None` when auth is off.
    fn grants(&self, token: Option<&str>) -> Result<Option<Grants>, RequestError> {
        let auth = self.hub.auth();
        if auth.mode() == crate::config::AuthMode::None {
            return Ok(None);
        }
        match token {
            Some(t) => auth.verify(t).map(Some).map_err(|e| {
                self.hub.count_auth_failure();
                RequestError::from(e)
            }),
            None => Ok(Some(auth.anonymous())),
        }
    }

    /// A socket left: its queue is no longer drained.
    fn forget(&self, socket: &Socket) {
        let queue = socket.session.queue();
        self.queues.lock().retain(|q| !Arc::ptr_eq(q, queue));
    }

    /// Runs the connection's heartbeat until it closes: a ping every `ping_interval`, a
    /// close when no pong follows within `ping_timeout`, and the end of every socket whose
    /// token expires. Then the sockets end (unsubscribing), whatever the transport.
    pub async fn run(self: Arc<Self>) {
        let settings = self.hub.settings();
        let (interval, timeout) = (settings.socketio.ping_interval, settings.socketio.ping_timeout);
        let shutdown = self.hub.shutdown.clone();
        let mut next_ping = tokio::time::Instant::now() + interval;
        let connect_by = tokio::time::Instant::now() + settings.socketio.connect_timeout;
        let mut pong_due: Option<(tokio::time::Instant, u64)> = None;
        while !self.is_closing() {
            let mut deadline = pong_due.map_or(next_ping, |(d, _)| d.min(next_ping));
            deadline = deadline.min(self.next_expiry().await);
            let joined = self.joined.load(Ordering::Relaxed);
            if !joined {
                deadline = deadline.min(connect_by);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.pong.notified() => {}
                _ = self.changed.notified() => {}
                _ = shutdown.triggered() => {
                    self.close(frame::going_away());
                    break;
                }
            }
            let now = tokio::time::Instant::now();
            if !self.joined.load(Ordering::Relaxed) && now >= connect_by {
                debug!(sid = %self.sid, "no namespace joined in time");
                self.close(frame::close(
                    1008,
                    "no namespace joined within socketio.connect_timeout",
                ));
                break;
            }
            if let Some((due, before)) = pong_due {
                if self.pongs.load(Ordering::Relaxed) > before {
                    pong_due = None;
                } else if now >= due {
                    debug!(sid = %self.sid, "no pong in time");
                    self.close(frame::close(1001, "ping timeout"));
                    break;
                }
            }
            if now >= next_ping {
                next_ping = now + interval;
                if pong_due.is_none() {
                    pong_due = Some((now + timeout, self.pongs.load(Ordering::Relaxed)));
                }
                self.push_control(sio::engine_frame(packet::PING, b""));
            }
            self.end_expired().await;
        }
        // Give the transport a moment to send the close; then the sockets go either way.
        let mut sockets = self.sockets.lock().await;
        for (_, socket) in sockets.by_namespace.drain() {
            self.forget(&socket);
        }
    }

    /// When the earliest token of a socket expires (far away if none does).
    async fn next_expiry(&self) -> tokio::time::Instant {
        let sockets = self.sockets.lock().await;
        let earliest = sockets
            .by_namespace
            .values()
            .filter_map(|s| s.session.expiry().at())
            .min();
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        match earliest {
            Some(at) => {
                let left = at.saturating_sub(now_secs());
                tokio::time::Instant::now() + Duration::from_secs(left)
            }
            None => far,
        }
    }

    /// Ends the sockets whose token expired: an `error` event, then DISCONNECT.
    async fn end_expired(&self) {
        let now = now_secs();
        let mut sockets = self.sockets.lock().await;
        let expired: Vec<String> = sockets
            .by_namespace
            .iter()
            .filter(|(_, s)| s.session.expiry().at().is_some_and(|at| at <= now))
            .map(|(ns, _)| ns.clone())
            .collect();
        for ns in expired {
            if let Some(socket) = sockets.by_namespace.remove(&ns) {
                self.forget(&socket);
                let error = Reply::Error {
                    id: None,
                    code: ErrorCode::Unauthorized,
                    message: "the token expired; connect again with a fresh token",
                };
                self.push_control(sio::notice_frame(&ns, &error));
                self.push_control(sio::disconnect_frame(&ns));
            }
        }
    }
}

/// The Socket.IO id of a socket (`socket.id`): the fanout session id, which names it in
/// `/api/connections` and the logs too.
fn socket_id(session: &Session) -> String {
    format!("s{}", session.id())
}

/// The recovery id (`pid`) a CONNECT answer gives: the one the client sent when its
/// resume was honoured (socket.io-client sets `recovered` when they match), else a new one
/// naming the topic's epoch, `EPOCH-SOCKET`, which the next reconnect resumes in.
fn recovery_id(position: Position, asked: Option<&str>, sid: &str) -> String {
    match asked {
        Some(pid) if position.complete => pid.to_owned(),
        _ => format!("{}-{sid}", position.epoch),
    }
}

/// The topic a namespace is; a pattern or bad name is refused, saying what to use instead.
fn namespace_topic(ns: &str) -> Result<TopicName, RequestError> {
    if ns.contains(['*', '>']) {
        return Err(RequestError::new(
            ErrorCode::BadTopic,
            format!("namespace `/{ns}` is a pattern; a namespace is one topic — subscribe to patterns on the main namespace with the `subscribe` event"),
        ));
    }
    TopicName::parse(ns).map_err(|e| RequestError::new(ErrorCode::BadTopic, format!("namespace `/{ns}`: {e}")))
}

/// A CONNECT packet's data: the token, and the recovery point of a reconnecting client.
#[derive(Default)]
struct ConnectAuth {
    token: Option<String>,
    pid: Option<String>,
    offset: Option<String>,
}

impl ConnectAuth {
    fn parse(data: Option<&RawValue>) -> Result<Self, RequestError> {
        let Some(data) = data else { return Ok(Self::default()) };
        let value: serde_json::Value = serde_json::from_str(data.get())
            .map_err(|e| RequestError::bad_request(format!("the CONNECT data is not JSON: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(RequestError::bad_request(
                "the CONNECT data (the `auth` option) must be an object",
            ));
        };
        let text = |key: &str| -> Result<Option<String>, RequestError> {
            match map.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(RequestError::bad_request(format!("`auth.{key}` must be a string"))),
            }
        };
        Ok(ConnectAuth {
            token: text("token")?,
            pid: text("pid")?,
            offset: text("offset")?,
        })
    }

    /// Where a recovering client resumes: after the seq it last got (its offset), in the
    /// topic's life its pid names. Anything unreadable is a fresh start.
    fn resume(&self) -> Option<Resume> {
        let pid = self.pid.as_deref()?;
        let epoch = Epoch::parse(pid.split_once('-').map_or(pid, |(e, _)| e))?;
        let since = self.offset.as_deref()?.parse::<u64>().ok()?;
        Some(Resume {
            since,
            epoch: Some(epoch),
        })
    }
}

impl Socket {
    /// Handles an event the client emitted in this namespace. True if the client keeps
    /// publishing over its rate limit (the connection is to close).
    async fn event(&mut self, hub: &Arc<Hub>, packet: &Packet, attachments: Vec<Bytes>) -> bool {
        let ns = packet.namespace.as_str();
        let Some((name, args)) = event_args(packet) else {
            // The reference server closes the connection on a malformed event; so do we
            // (`Engine::dispatch` checks the same before calling here).
            return false;
        };
        let rest = &args[1..];
        match self.topic.clone() {
            Some(topic) => self.emit(hub, &topic, &name, rest, &attachments, packet.ack).await,
            None => match main_request(&name, rest, &attachments, packet.ack) {
                Ok(msg) => self.session.handle_msg(msg).await,
                Err(e) => self.answer_error(hub, ns, packet.ack, &e),
            },
        }
        self.session.rate_abused()
    }

    /// Publishes an event emitted in a topic namespace: `message` with one argument as that
    /// argument (so every other way in sees the value itself), any other as an event payload.
    async fn emit(
        &mut self,
        hub: &Arc<Hub>,
        topic: &TopicName,
        name: &str,
        args: &[&RawValue],
        attachments: &[Bytes],
        ack: Option<u64>,
    ) {
        let payload = match (name, args) {
            ("message", [one]) => data_payload(one, attachments),
            _ if args.iter().any(|a| a.get().contains("\"_placeholder\"")) && !attachments.is_empty() => Err(
                RequestError::bad_request("binary attachments are published as the one argument of a `message` event"),
            ),
            _ => Ok(sio::event_payload(name, args)),
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => return self.answer_error(hub, topic.as_str(), ack, &e),
        };
        let queue = Arc::clone(self.session.queue());
        let hub = Arc::clone(hub);
        let ns = topic.as_str().to_owned();
        self.session
            .publish_then(topic, payload, move |outcome| {
                let reply = match &outcome {
                    Ok(p) => Reply::Ack {
                        id: ack.unwrap_or(0),
                        topic: Some(&ns),
                        seq: Some(p.seq),
                        epoch: None,
                        recovered: None,
                        duplicate: p.duplicate,
                    },
                    Err(e) => {
                        hub.count_protocol_error(e.code.as_str());
                        Reply::Error {
                            id: ack,
                            code: e.code,
                            message: &e.message,
                        }
                    }
                };
                match ack {
                    Some(id) => {
                        queue.push_reply(sio::ack_frame(&ns, id, &reply));
                    }
                    None if outcome.is_err() => {
                        queue.push_reply(sio::notice_frame(&ns, &reply));
                    }
                    None => {}
                }
            })
            .await;
    }

    /// Answers a refused event: its ack with `{error}`, or an `error` event without one.
    fn answer_error(&self, hub: &Hub, ns: &str, ack: Option<u64>, e: &RequestError) {
        hub.count_protocol_error(e.code.as_str());
        let reply = Reply::Error {
            id: ack,
            code: e.code,
            message: &e.message,
        };
        let frame = match ack {
            Some(id) => sio::ack_frame(ns, id, &reply),
            None => sio::notice_frame(ns, &reply),
        };
        self.session.queue().push_reply(frame);
    }
}

/// An event's name and its whole data array (`[name, ...args]`); `None` if malformed.
fn event_args(packet: &Packet) -> Option<(String, Vec<&RawValue>)> {
    let args = serde_json::from_str::<Vec<&RawValue>>(packet.data.as_deref()?.get()).ok()?;
    let name = serde_json::from_str::<String>(args.first()?.get()).ok()?;
    Some((name, args))
}

/// The payload of a `message` argument or `publish` data: a placeholder is its binary
/// attachment, anything else JSON as `/ws` takes it.
fn data_payload(value: &RawValue, attachments: &[Bytes]) -> Result<Payload, RequestError> {
    #[derive(serde::Deserialize)]
    struct Placeholder {
        _placeholder: bool,
        num: usize,
    }
    if let Ok(p) = serde_json::from_str::<Placeholder>(value.get()) {
        if p._placeholder {
            return attachments
                .get(p.num)
                .map(|b| Payload::Binary(b.clone()))
                .ok_or_else(|| RequestError::bad_request(format!("attachment {} was not sent", p.num)));
        }
    }
    json::payload(value.get()).map_err(|e| RequestError::bad_request(e.to_string()))
}

/// Reads a main-namespace event as the `/ws` request it stands for.
fn main_request(
    name: &str,
    args: &[&RawValue],
    attachments: &[Bytes],
    id: Option<u64>,
) -> Result<ClientMsg, RequestError> {
    let string = |i: usize, what: &str| -> Result<String, RequestError> {
        args.get(i)
            .and_then(|a| serde_json::from_str::<String>(a.get()).ok())
            .ok_or_else(|| RequestError::bad_request(format!("`{name}` needs {what} (a string) as argument {}", i + 1)))
    };
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct SubscribeOptions {
        since: Option<u64>,
        epoch: Option<String>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct PublishOptions {
        idempotency_key: Option<String>,
    }
    fn options<T: serde::de::DeserializeOwned + Default>(
        name: &str,
        arg: Option<&&RawValue>,
    ) -> Result<T, RequestError> {
        match arg {
            None => Ok(T::default()),
            Some(a) if a.get() == "null" => Ok(T::default()),
            Some(a) => {
                serde_json::from_str(a.get()).map_err(|e| RequestError::bad_request(format!("`{name}` options: {e}")))
            }
        }
    }
    Ok(match name {
        "subscribe" => {
            let o: SubscribeOptions = options(name, args.get(1))?;
            let epoch = o
                .epoch
                .map(|e| {
                    Epoch::parse(&e).ok_or_else(|| {
                        RequestError::bad_request("`epoch` must be the 16 hex digits a subscribe ack gave")
                    })
                })
                .transpose()?;
            ClientMsg::Subscribe {
                id,
                topic: string(0, "a topic or pattern")?,
                since: o.since,
                epoch,
            }
        }
        "unsubscribe" => ClientMsg::Unsubscribe {
            id,
            topic: string(0, "the topic or pattern subscribed")?,
        },
        "publish" => {
            let topic = string(0, "a topic")?;
            let data = args
                .get(1)
                .ok_or_else(|| RequestError::bad_request("`publish` needs the data as argument 2"))?;
            let o: PublishOptions = options(name, args.get(2))?;
            ClientMsg::Publish {
                id,
                topic,
                data: data_payload(data, attachments)?,
                idempotency_key: o.idempotency_key,
            }
        }
        "presence" => ClientMsg::Presence {
            id,
            topic: string(0, "a topic")?,
        },
        "auth" => ClientMsg::Auth {
            id,
            token: string(0, "the token")?,
        },
        "ping" => ClientMsg::Ping { id },
        other => {
            return Err(RequestError::bad_request(format!(
                "unknown event `{other}` on the main namespace; expected subscribe, unsubscribe, publish, presence, auth or ping (or join a topic's namespace to emit events there)"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn main_events_read_as_ws_requests() {
        let t = raw("\"quotes.>\"");
        let o = raw(r#"{"since":5}"#);
        let m = main_request("subscribe", &[&t, &o], &[], Some(3)).unwrap();
        assert_eq!(
            m,
            ClientMsg::Subscribe {
                id: Some(3),
                topic: "quotes.>".into(),
                since: Some(5),
                epoch: None
            }
        );
        let d = raw(r#"{"a":1}"#);
        let m = main_request("publish", &[&t, &d], &[], None).unwrap();
        assert!(matches!(
            m,
            ClientMsg::Publish {
                data: Payload::Json(_),
                ..
            }
        ));
        let e = main_request("publish", &[&t], &[], None).unwrap_err();
        assert!(e.message.contains("needs the data"), "{}", e.message);
        let e = main_request("nope", &[], &[], None).unwrap_err();
        assert!(e.message.contains("unknown event `nope`"), "{}", e.message);
        let bad = raw(r#"{"sinse":1}"#);
        let e = main_request("subscribe", &[&t, &bad], &[], None).unwrap_err();
        assert!(e.message.contains("sinse"), "{}", e.message);
    }

    #[test]
    fn placeholders_become_their_attachment() {
        let p = raw(r#"{"_placeholder":true,"num":0}"#);
        let b = Bytes::from_static(&[1, 2]);
        assert_eq!(data_payload(&p, std::slice::from_ref(&b)).unwrap(), Payload::Binary(b));
        assert!(data_payload(&p, &[]).unwrap_err().message.contains("attachment 0"));
        assert_eq!(data_payload(&raw("\"x\""), &[]).unwrap(), Payload::text("x"));
    }

    #[test]
    fn namespaces_are_topics_not_patterns() {
        assert!(namespace_topic("chat.room1").is_ok());
        let e = namespace_topic("quotes.>").unwrap_err();
        assert!(e.message.contains("main namespace"), "{}", e.message);
        assert_eq!(namespace_topic("bad topic").unwrap_err().code, ErrorCode::BadTopic);
    }

    #[test]
    fn recovery_needs_a_pid_and_an_offset() {
        let a = ConnectAuth::parse(Some(&raw(r#"{"token":"t","pid":"00000000000000ff-s3","offset":"12"}"#))).unwrap();
        assert_eq!(a.token.as_deref(), Some("t"));
        let r = a.resume().unwrap();
        assert_eq!((r.since, r.epoch), (12, Epoch::parse("ff")));
        let a = ConnectAuth::parse(Some(&raw(r#"{"pid":"zz","offset":"12"}"#))).unwrap();
        assert!(a.resume().is_none());
        assert!(ConnectAuth::parse(Some(&raw("[1]"))).is_err());
        assert!(ConnectAuth::parse(Some(&raw(r#"{"token":1}"#))).is_err());
    }
}
