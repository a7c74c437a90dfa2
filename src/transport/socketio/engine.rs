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
use crate::metrics::{Transport, WriterStats};
use crate::protocol::socketio::{self as sio, engine as packet, Packet, PacketType};
use crate::protocol::{frame, Reply, Wire};
use crate::queue::{place_gaps, Drained, Entry, SendQueue, Sink};
use crate::registry::Position;
use crate::session::Session;

use super::socket::{event_args, namespace_topic, recovery_id, socket_id, ConnectAuth, Socket};

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
    /// once the connection is closing and everything before it is taken. The messages
    /// taken count in `stats` (a writer's own buffer), else straight in the metrics.
    pub fn take(&self, drained: &mut Drained, out: &mut Vec<Bytes>, stats: Option<&mut WriterStats>) -> Option<Bytes> {
        out.append(&mut self.control.lock());
        let mut closing = None;
        let mut messages = 0u64;
        let mut bytes = 0u64;
        let mut oldest = None::<u64>;
        for queue in self.queues.lock().iter() {
            queue.drain(drained);
            let wire = queue.wire();
            let mut gaps = place_gaps(&drained.entries, &drained.gaps, wire.into())
                .into_iter()
                .peekable();
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
        if messages > 0 {
            match (stats, &self.hub.metrics) {
                (Some(s), _) => s.record_batch(messages, bytes, oldest, now_ms()),
                (None, Some(m)) => m.record_batch(messages, bytes, oldest, now_ms()),
                (None, None) => {}
            }
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
