//! WebSocket: the upgrade (with the checks fastwebsockets leaves to us),
//! then one connection's life: a reader loop here, the writer task from
//! `session::writer`, and a clean close handshake at the end.
//!
//! `/ws` speaks the request protocol (JSON or MessagePack); `/ws/t/{topic}`
//! is a raw topic socket: every frame received is published to the topic,
//! every message of the topic is sent as exactly its payload. An upgrade on
//! `/` is a raw topic socket on `server.root_topic` (routed in `server.rs`).

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::FutureExt;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tracing::{debug, Instrument};

use super::ws_extensions;
use super::ws_read::{Incoming, MessageReader, ReadEnd};
use super::{text_response, Body};
use crate::auth::Grants;
use crate::connections::{Keepalive, Peer};
use crate::flush::DirectWrite;
use crate::hub::Hub;
use crate::metrics::Transport;
use crate::protocol::frame::{self, OpCode};
use crate::protocol::{Agreement, Framing, Payload, Wire};
use crate::queue::{DirectSocket, SendQueue, Sink};
use crate::registry::Resume;
use crate::session::writer::{Writer, WriterEnd};
use crate::session::Session;
use crate::tls::{TlsRead, TlsSocket, TlsWrite};
use crate::topic::TopicName;

/// How long, after a close frame, the client has to finish the close handshake.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The RFC 6455 GUID that turns a key into an accept value.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a WebSocket connection asked for in its URL.
#[derive(Debug, Clone)]
pub struct WsParams {
    /// Wire format.
    pub wire: Wire,
    /// Raw socket topic.
    pub topic: Option<TopicName>,
    /// Get one's own messages back (default: yes on `/ws`, no on raw sockets).
    pub echo: bool,
    /// Replay history after this seq first.
    pub since: Option<u64>,
    /// The client's address, for the connection table.
    pub remote: Option<std::net::SocketAddr>,
    /// Grants from a token sent with the upgrade (`Authorization: Bearer` or `?token=`).
    pub grants: Option<Grants>,
    /// permessage-deflate, when the client offered it and the broker agreed.
    pub deflate: Option<Agreement>,
}

/// Parses `/ws` or `/ws/t/{topic}` query parameters; errors are 400 texts.
pub fn params(path_topic: Option<&str>, query: Option<&str>, headers: &HeaderMap) -> Result<WsParams, String> {
    // A `/ws` client gets its own messages on topics it subscribed to (as in NATS);
    // a raw socket does not by default (a chat page shows its own line itself).
    let mut p = WsParams {
        wire: Wire::Json,
        topic: None,
        echo: path_topic.is_none(),
        since: None,
        remote: None,
        grants: None,
        deflate: None,
    };
    if let Some(t) = path_topic {
        p.wire = Wire::Raw;
        p.topic = Some(TopicName::parse(t).map_err(|e| e.to_string())?);
    } else if let Some(proto) = chosen_subprotocol(headers) {
        p.wire = if proto == "fanout.msgpack" {
            Wire::Msgpack
        } else {
            Wire::Json
        };
    }
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "format" if path_topic.is_none() => {
                p.wire = match &*v {
                    "json" => Wire::Json,
                    "msgpack" => Wire::Msgpack,
                    other => {
                        return Err(format!(
                            "format `{other}` is unknown; use format=json or format=msgpack"
                        ))
                    }
                }
            }
            "echo" => p.echo = parse_bool("echo", &v)?,
            "since" => {
                p.since = Some(
                    v.parse()
                        .map_err(|_| format!("since `{v}` is not a non-negative integer"))?,
                );
            }
            _ => {}
        }
    }
    Ok(p)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("{name} `{other}` is not a boolean; use true or false")),
    }
}

/// The subprotocol we pick from `Sec-WebSocket-Protocol`, if the client offered ours.
fn chosen_subprotocol(headers: &HeaderMap) -> Option<&'static str> {
    let offered = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL);
    offered
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| match p {
            "fanout.json" => Some("fanout.json"),
            "fanout.msgpack" => Some("fanout.msgpack"),
            _ => None,
        })
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a request asks for a WebSocket (`Upgrade: websocket`), whatever else it lacks:
/// [`upgrade`] then answers it, with a 400 naming what is missing if it is incomplete.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    header_has_token(headers, header::UPGRADE, "websocket")
}

/// Checks the upgrade request (RFC 6455 §4.2.1); the error is a 400 text.
pub(crate) fn check_upgrade<B>(req: &Request<B>) -> Result<String, String> {
    if req.method() != hyper::Method::GET {
        return Err(format!("a WebSocket upgrade must use GET, not {}", req.method()));
    }
    let h = req.headers();
    if !header_has_token(h, header::CONNECTION, "upgrade") {
        return Err("missing `Connection: Upgrade`; connect with a WebSocket client".into());
    }
    if !header_has_token(h, header::UPGRADE, "websocket") {
        return Err("missing `Upgrade: websocket`; connect with a WebSocket client".into());
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err("Sec-WebSocket-Version must be 13".into());
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?
        .to_str()
        .map_err(|_| "Sec-WebSocket-Key is not ASCII")?;
    match base64::engine::general_purpose::STANDARD.decode(key.trim()) {
        Ok(k) if k.len() == 16 => Ok(key.trim().to_owned()),
        _ => Err("Sec-WebSocket-Key must be 16 bytes in base64".into()),
    }
}

fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Answers an upgrade request and, once upgraded, runs the connection as a tracked task.
/// `slot` (the connection's place in the listener's limits) is held until it ends.
pub fn upgrade(
    hub: &Arc<Hub>,
    mut req: Request<hyper::body::Incoming>,
    path_topic: Option<&str>,
    slot: impl Send + 'static,
    remote: std::net::SocketAddr,
) -> Response<Body> {
    let key = match check_upgrade(&req) {
        Ok(k) => k,
        Err(reason) => return text_response(StatusCode::BAD_REQUEST, &reason),
    };
    let mut params = match params(path_topic, req.uri().query(), req.headers()) {
        Ok(p) => p,
        Err(reason) => return text_response(StatusCode::BAD_REQUEST, &reason),
    };
    params.remote = Some(remote);
    if let Err((status, text)) = check_access(hub, &req, &mut params) {
        return text_response(status, &text);
    }
    if hub.shutdown.is_triggered() {
        return text_response(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let subprotocol = chosen_subprotocol(req.headers());
    let extensions = agree_deflate(hub, req.headers(), &mut params);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let h = Arc::clone(hub);
    // Boxed: inline, the parameters would sit in the connection's future for its whole life.
    let params = Box::new(params);
    // At debug level only: span data would cost every idle connection a few hundred bytes.
    let span =
        tracing::debug_span!(parent: None, "conn", session_id = tracing::field::Empty, %remote, transport = "ws");
    let upgrading = async move {
        // Bound by `let`, not matched in place: a matched temporary would stay in the
        // future for the connection's life.
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                debug!(%remote, error = %e, "upgrade failed");
                return;
            }
        };
        start(h, upgraded, *params, slot, span);
    };
    // A task of its own: the connection's, spawned by `start`, need not carry this one's
    // state (the upgrade, the parameters) for its whole life.
    hub.shutdown.spawn(upgrading);
    let mut res = switching_protocols(&key, subprotocol);
    if let Some(v) = extensions.and_then(|e| HeaderValue::from_str(&e).ok()) {
        res.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    res
}

/// Agrees to permessage-deflate when compression is on and the client offered it in a
/// form the broker can honour; returns the `Sec-WebSocket-Extensions` answer.
fn agree_deflate(hub: &Hub, headers: &HeaderMap, params: &mut WsParams) -> Option<String> {
    let compression = &hub.settings().compression;
    let answer = ws_extensions::negotiate(headers).filter(|_| compression.enabled)?;
    params.deflate = Some(Agreement {
        window_bits: answer.server_window_bits,
        rule: compression.for_topic(true)?,
    });
    Some(answer.header)
}

/// The 101 answer to an upgrade request with `key`, naming the chosen subprotocol.
pub(crate) fn switching_protocols(key: &str, subprotocol: Option<&'static str>) -> Response<Body> {
    let mut res = Response::new(super::full(bytes::Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = subprotocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    res
}

/// The checks before upgrading: the `Origin`, a token sent with the request, and
/// for a raw socket the right to its topic. A refusal is the response to send.
fn check_access<B>(hub: &Hub, req: &Request<B>, params: &mut WsParams) -> Result<(), (StatusCode, String)> {
    super::check_origin(hub, req.headers()).map_err(|text| (StatusCode::FORBIDDEN, text))?;
    let auth = hub.auth();
    if auth.mode() == crate::config::AuthMode::None {
        return Ok(());
    }
    let grants = match crate::auth::credential(req.headers(), req.uri().query()) {
        Some(token) => auth.verify(&token).map_err(|e| {
            hub.count_auth_failure();
            (StatusCode::UNAUTHORIZED, e.to_string())
        })?,
        None => auth.anonymous(),
    };
    if let Some(topic) = &params.topic {
        // A raw socket both reads and writes its topic; reading is what it must be allowed.
        grants
            .check_subscribe(&crate::topic::Filter::Exact(topic.clone()))
            .map_err(|e| {
                hub.count_auth_failure();
                let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::FORBIDDEN);
                (status, e.message)
            })?;
    }
    params.grants = grants.authenticated.then_some(grants);
    Ok(())
}

/// An upgraded socket in halves.
pub(crate) enum Halves {
    /// A plain TCP socket, unwrapped, with what the client sent right after its handshake.
    Tcp(TcpRead, Bytes, Arc<TcpStream>),
    /// A TLS socket taken out of hyper, likewise, its records read and written by us.
    Tls(TlsRead, Bytes, Arc<TlsSocket>),
    /// Anything else, split.
    Other(ReadHalf<TokioIo<Upgraded>>, WriteHalf<TokioIo<Upgraded>>),
}

/// Splits an upgraded socket, unwrapping a plain TCP or TLS one so it is written to
/// directly.
pub(crate) fn halves(upgraded: Upgraded) -> Halves {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(hyper::upgrade::Parts { io, read_buf, .. }) => {
            let tcp = Arc::new(io.into_inner());
            return Halves::Tcp(TcpRead(Arc::clone(&tcp)), early(read_buf), tcp);
        }
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>() {
        Ok(hyper::upgrade::Parts { io, read_buf, .. }) => {
            let (tcp, conn) = io.into_inner().into_inner();
            let socket = TlsSocket::new(tcp, conn);
            Halves::Tls(TlsRead(Arc::clone(&socket)), early(read_buf), socket)
        }
        Err(upgraded) => {
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            Halves::Other(read, write)
        }
    }
}

/// The reading side of a plain TCP socket whose one `Arc` the connection's task and
/// its flush shard share (tokio's owned halves would add an allocation per connection).
pub(crate) struct TcpRead(Arc<TcpStream>);

impl AsyncRead for TcpRead {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; `try_read` cleared it, so the next poll waits.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// A copy of what the client sent after its handshake (usually nothing): hyper's
/// buffer is 8 KiB, and it goes now rather than with the connection.
fn early(read_buf: Bytes) -> Bytes {
    let early = Bytes::copy_from_slice(&read_buf);
    drop(read_buf);
    early
}

/// Splits the upgraded socket and runs the connection as a tracked task, `slot` held
/// until it ends. A plain TCP or TLS socket is unwrapped: its flush shard writes to it
/// directly, with vectored writes that reach the kernel as they are.
fn start(hub: Arc<Hub>, upgraded: Upgraded, params: WsParams, slot: impl Send + 'static, span: tracing::Span) {
    let h = Arc::clone(&hub);
    match halves(upgraded) {
        Halves::Tcp(read, early, write) => {
            let sink = Sink::Direct(hub.flushers.direct(DirectSocket::Tcp(Arc::clone(&write))));
            spawn_connection(&h, run(hub, read, early, DirectWrite(write), params, sink), slot, span);
        }
        Halves::Tls(read, early, socket) => {
            let sink = Sink::Direct(hub.flushers.direct(DirectSocket::Tls(Arc::clone(&socket))));
            spawn_connection(&h, run(hub, read, early, TlsWrite(socket), params, sink), slot, span);
        }
        Halves::Other(read, write) => {
            spawn_connection(&h, run(hub, read, Bytes::new(), write, params, Sink::Task), slot, span)
        }
    }
}

/// Spawns `connection` as a task the shutdown waits for, releasing `slot` when it ends.
fn spawn_connection<F>(hub: &Hub, connection: F, slot: impl Send + 'static, span: tracing::Span)
where
    F: Future<Output = ()> + Send + 'static,
{
    // A combinator, not an `async` block: that would keep `connection` twice, once as
    // what it captured and once as what it awaits.
    let connection = connection.map(move |()| drop(slot));
    // A disabled span still takes room in every connection's future: spawn without it.
    if span.is_disabled() {
        hub.shutdown.spawn(connection);
    } else {
        hub.shutdown.spawn(connection.instrument(span));
    }
}

/// What a running connection keeps of its URL: how to read its frames.
struct Route {
    wire: Wire,
    /// A raw socket's topic; boxed, as most sockets have none and every one keeps this.
    raw: Option<Box<RawTopic>>,
}

/// The topic of a raw socket (`/ws/{topic}`).
struct RawTopic {
    /// Subscribed at the start, and where the socket's frames are published.
    topic: TopicName,
    /// The URL's `since`: where the subscription resumes.
    since: Option<u64>,
}

/// Runs one WebSocket connection to its end, in one task: the reader, and the writing
/// its flush shard leaves to it (or all of it, for a `Task` sink). `early` is what the
/// client sent right after its handshake.
///
/// Not an `async fn`: that would keep a second copy of every argument in the future,
/// which lives as long as the connection. An idle connection's future holds only the
/// session, the reader (no buffer) and the writer (no turn): see [`converse`].
pub fn run<R, W>(
    hub: Arc<Hub>,
    read: R,
    early: Bytes,
    write: W,
    params: WsParams,
    sink: Sink,
) -> impl std::future::Future<Output = ()> + Send
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let peer = Peer {
        remote: params.remote,
        transport: Transport::Ws,
    };
    let framing = Framing {
        wire: params.wire,
        deflate: params.deflate,
    };
    let mut session = Session::with_sink(Arc::clone(&hub), framing, params.echo, peer, sink);
    let WsParams {
        wire,
        topic,
        since,
        grants,
        deflate,
        ..
    } = params;
    if let Some(grants) = grants {
        session.set_grants(grants);
    }
    // Read once per connection: a reload applies to connections that start after it.
    let settings = hub.settings();
    let mut reader =
        MessageReader::with_early(read, early, settings.limits.max_message_bytes).inflating(deflate.is_some());
    let mut writer = Writer::new(Arc::clone(session.queue()), write, settings.queue.flush_interval);
    session
        .listed()
        .keepalive
        .start(settings.server.ping_interval, settings.server.idle_timeout);
    drop(settings);
    if hub.shutdown.is_triggered() {
        // The drain closed the connections listed before this one.
        session.queue().close(frame::going_away(), true);
    }
    let route = Route {
        wire,
        raw: topic.map(|topic| Box::new(RawTopic { topic, since })),
    };
    async move {
        tracing::Span::current().record("session_id", session.id().0);
        debug!("connected");
        if let Some(raw) = &route.raw {
            let resume = raw.since.map(|since| Resume { since, epoch: None });
            // Boxed, as every await that is not the idle one: it would size the future.
            if let Err(e) = Box::pin(session.subscribe(raw.topic.as_str(), resume, None)).await {
                session.queue().close(frame::close(1008, &e.message), false);
            }
        }
        let end = converse(&hub, &mut reader, &mut writer, &mut session, &route).await;
        if matches!(end, Some(WriterEnd::Closed)) {
            // Read until the client's EOF so the close handshake completes and the kernel
            // does not answer unread data with a reset. Only after a clean close: a peer
            // cut for idleness or a failed write is presumed gone, and waiting for it
            // would only keep its session (and queue) alive.
            let mut read = reader.into_inner();
            let _ = Box::pin(tokio::time::timeout(CLOSE_LINGER, discard_until_eof(&mut read))).await;
        }
        drop(session);
        debug!("disconnected");
    }
}

/// How a [`round`] of reading and writing ended.
enum Round {
    /// Both sides are waiting with nothing in hand: the round can go.
    Idle,
    /// The reader is done (the client closed, left, or broke the protocol).
    Read(ReadEnd),
    /// The writer is done.
    Wrote(WriterEnd),
}

/// Reads and writes until both sides are done: the client's requests until it closes
/// (or breaks the protocol, or its token expires), then the writer's close frame.
/// Returns how the writer ended (`None`: not in time).
///
/// The work happens in boxed rounds; between them the connection waits for its
/// client's next bytes or its queue's next wake-up and holds no round at all, so an
/// idle connection costs only what it must keep.
async fn converse<R, W>(
    hub: &Hub,
    reader: &mut MessageReader<R>,
    writer: &mut Writer<W>,
    session: &mut Session,
    route: &Route,
) -> Option<WriterEnd>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let queue = Arc::clone(session.queue());
    let (end, writer_end) = loop {
        match Box::pin(round(hub, reader, writer, session, route)).await {
            Round::Idle => match idle(reader, &queue).await {
                Woke::Read(Ok(())) => {}
                Woke::Read(Err(end)) => break (Some(end), None),
                Woke::Queue => writer.woken(),
            },
            Round::Read(end) => break (Some(end), None),
            Round::Wrote(end) => break (None, Some(end)),
        }
    };
    match end {
        Some(ReadEnd::Violation(code, reason)) => {
            debug!(code, %reason, "protocol violation");
            hub.count_protocol_error(violation_kind(code));
            // Flushed: what the client sent before the violation is still owed to it
            // (a raw socket's echoes, replies), in order, before the close.
            queue.close(frame::close(code, &reason), true);
        }
        Some(ReadEnd::Gone) => queue.close(Bytes::new(), false),
        None => {}
    }
    let ended = match writer_end {
        Some(end) => Some(end),
        None => {
            let parked = AtomicBool::new(false);
            Box::pin(tokio::time::timeout(CLOSE_LINGER, writer.run(&parked)))
                .await
                .ok()
        }
    };
    debug!(?ended, "writer ended");
    ended
}

/// What ended an idle wait.
enum Woke {
    /// The client sent something (now in the reader), or left.
    Read(Result<(), ReadEnd>),
    /// The queue has work for the connection's task.
    Queue,
}

/// Waits, between rounds, for the client's next bytes or the queue's next wake-up:
/// one `Notified` and two references, the whole of an idle connection's waiting.
async fn idle<R: AsyncRead + Unpin>(reader: &mut MessageReader<R>, queue: &SendQueue) -> Woke {
    let notified = queue.ready_notified();
    tokio::pin!(notified);
    poll_fn(|cx| {
        if notified.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Woke::Queue);
        }
        reader.poll_wait_bytes(cx).map(Woke::Read)
    })
    .await
}

/// Reads and writes at once until one side ends, or until both wait with nothing in
/// hand (`Idle`) and the connection has no expiring token to watch.
async fn round<R, W>(
    hub: &Hub,
    reader: &mut MessageReader<R>,
    writer: &mut Writer<W>,
    session: &mut Session,
    route: &Route,
) -> Round
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let listed = Arc::clone(session.listed());
    let received = hub.metrics.as_ref().map(|m| &m.bytes_received);
    let (read_parked, write_parked) = (AtomicBool::new(false), AtomicBool::new(false));
    let both_parked = poll_fn(|_| {
        // Polled after the others (`biased`): each has just said it is waiting.
        let idle = read_parked.load(Ordering::Relaxed) && write_parked.load(Ordering::Relaxed);
        if idle && listed.expiry.at().is_none() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    tokio::select! {
        biased;
        end = read_loop(reader, session, route, &listed.keepalive, received, &read_parked) => Round::Read(end),
        end = writer.run(&write_parked) => Round::Wrote(end),
        _ = listed.expiry.expired() => Round::Read(ReadEnd::Violation(1008, "token expired".into())),
        _ = both_parked => Round::Idle,
    }
}

/// The `kind` label of `fanout_protocol_errors_total` for a close code we send.
pub(crate) fn violation_kind(code: u16) -> &'static str {
    match code {
        1002 => "ws_protocol",
        1007 => "ws_invalid_utf8",
        1009 => "ws_too_large",
        _ => "ws_policy",
    }
}

/// Reads until the client closes, answering its requests, pings and close.
async fn read_loop<R: AsyncRead + Unpin>(
    reader: &mut MessageReader<R>,
    session: &mut Session,
    route: &Route,
    keepalive: &Keepalive,
    received: Option<&prometheus::IntCounter>,
    parked: &AtomicBool,
) -> ReadEnd {
    match read_messages(reader, session, route, keepalive, received, parked).await {
        Ok(never) => match never {},
        Err(end) => end,
    }
}

async fn read_messages<R: AsyncRead + Unpin>(
    reader: &mut MessageReader<R>,
    session: &mut Session,
    route: &Route,
    keepalive: &Keepalive,
    received: Option<&prometheus::IntCounter>,
    parked: &AtomicBool,
) -> Result<std::convert::Infallible, ReadEnd> {
    let queue = Arc::clone(session.queue());
    loop {
        queue.reply_room().await;
        if reader.is_drained() {
            // Between messages: the one wait a round may be dropped in.
            parked.store(true, Ordering::Relaxed);
            reader.wait_bytes().await?;
            parked.store(false, Ordering::Relaxed);
        }
        let incoming = reader.next().await?;
        keepalive.record_activity();
        if let (Some(c), Incoming::Text(b) | Incoming::Binary(b)) = (received, &incoming) {
            c.inc_by(b.len() as u64);
        }
        match (incoming, route.wire) {
            (Incoming::Ping(payload), _) => {
                queue.push_control(frame::encode(OpCode::Pong, &payload));
            }
            (Incoming::Pong, _) => {}
            (Incoming::Close(code), _) => {
                // Flushed: what the client sent before its close (echoes, replies) is
                // owed to it, and it keeps reading until our close arrives.
                queue.close(frame::close(code, ""), true);
                return Err(ReadEnd::Gone);
            }
            (Incoming::Text(t), Wire::Raw) => raw_publish(session, route, Payload::Text(t)).await?,
            (Incoming::Binary(b), Wire::Raw) => raw_publish(session, route, Payload::Binary(b)).await?,
            // Boxed: the handling future is large, and inline it would sit in every
            // connection's future for its whole life; requests are rare next to that.
            (Incoming::Text(t), Wire::Json) => Box::pin(handle(session, &t)).await?,
            (Incoming::Binary(b), Wire::Msgpack) => Box::pin(handle(session, &b)).await?,
            (Incoming::Binary(_), Wire::Json) => session
                .reject_frame("binary frame on a JSON connection; send text frames or connect with format=msgpack"),
            (Incoming::Text(_), Wire::Msgpack) => session
                .reject_frame("text frame on a MessagePack connection; send binary frames or connect with format=json"),
            // A WebSocket is never an SSE or iframe stream; nothing to read for one. Nor a
            // Socket.IO connection: those run in `transport::socketio`.
            (
                Incoming::Text(_) | Incoming::Binary(_),
                Wire::Sse | Wire::SseRaw | Wire::Iframe | Wire::SioTopic | Wire::SioMain,
            ) => {}
        }
    }
}

/// Answers one request; a client that keeps publishing over its rate is closed.
async fn handle(session: &mut Session, request: &[u8]) -> Result<(), ReadEnd> {
    session.handle_request(request).await;
    if session.rate_abused() {
        return Err(ReadEnd::Violation(1008, "rate limited".into()));
    }
    Ok(())
}

/// Publishes a raw socket's frame; a refusal can only be told with a close (1008).
async fn raw_publish(session: &mut Session, route: &Route, payload: Payload) -> Result<(), ReadEnd> {
    if let Some(raw) = &route.raw {
        session
            .publish_raw(&raw.topic, payload)
            .await
            .map_err(|e| ReadEnd::Violation(1008, e.message))?;
    }
    Ok(())
}

/// Reads and drops everything until the client's EOF (the end of a close handshake).
pub(crate) async fn discard_until_eof<R: AsyncRead + Unpin>(read: &mut R) {
    // On the heap: an array here would sit in every connection's future for its whole life.
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = read.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}
