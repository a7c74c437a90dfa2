//! The Engine.IO WebSocket transport: a connection that starts on it (the
//! open packet is its first frame), or the upgrade of a long-polling one
//! (`2probe` → `3probe`, the poll ends with `noop`, then `5`). Each packet is
//! one frame; the connection's task reads packets and writes what
//! [`Engine::take`] gives it, many frames per vectored write.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{debug, Instrument};

use super::engine::{Engine, Handshake, Mode};
use super::{engine_error, EngineError, Engines};
use crate::flush::DirectWrite;
use crate::hub::Hub;
use crate::metrics::{Metrics, WriterStats};
use crate::protocol::frame;
use crate::protocol::socketio::{self as sio, engine as packet};
use crate::queue::{Drained, MAX_IOVECS};
use crate::tls::TlsWrite;
use crate::transport::ws::{self, Halves, CLOSE_LINGER};
use crate::transport::ws_read::{Incoming, MessageReader, ReadEnd};
use crate::transport::Body;

/// How long an upgrading client has to finish the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers a WebSocket request: a new connection (no `sid`), or the upgrade of the
/// long-polling connection `sid`. The connection runs as a tracked task holding `slot`.
pub fn upgrade(
    hub: &Arc<Hub>,
    engines: &Arc<Engines>,
    mut req: Request<hyper::body::Incoming>,
    sid: Option<String>,
    handshake: Handshake,
    slot: impl Send + 'static,
) -> Response<Body> {
    let key = match ws::check_upgrade(&req) {
        Ok(k) => k,
        Err(reason) => return engine_error(StatusCode::BAD_REQUEST, EngineError::BadRequest, &reason),
    };
    let upgrading = match sid {
        None => {
            if let Err(limit) = engines.room_for(hub, handshake.remote.ip()) {
                return engine_error(StatusCode::SERVICE_UNAVAILABLE, EngineError::Forbidden, limit);
            }
            None
        }
        Some(sid) => match engines.get(&sid) {
            None => return super::unknown_sid(),
            // As the reference server does: the handshake completes, then the socket closes.
            Some(e) if e.mode() != Mode::Polling => return refuse_after_upgrade(hub, req, &key, slot),
            Some(e) => Some(e),
        },
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (hub, engines) = (Arc::clone(hub), Arc::clone(engines));
    let span = tracing::info_span!(parent: None, "conn", remote = %handshake.remote, transport = "socketio");
    let tracker = hub.shutdown.clone();
    tracker.spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let engine = match upgrading {
                        Some(e) => Ok(e),
                        None => engines.open(&hub, Mode::WebSocket, handshake),
                    };
                    match engine {
                        Ok(engine) => run(&hub, engine, ws::halves(upgraded)).await,
                        // Filled up since the check above: say so the way a WebSocket can
                        // (1013, try again later).
                        Err(limit) => refuse(ws::halves(upgraded), frame::close(1013, limit)).await,
                    }
                }
                Err(e) => debug!(error = %e, "upgrade failed"),
            }
            drop(slot);
        }
        .instrument(span),
    );
    ws::switching_protocols(&key, None)
}

/// Completes the handshake of a second WebSocket for a connection that has one already,
/// then closes it (1008) saying why.
fn refuse_after_upgrade(
    hub: &Arc<Hub>,
    mut req: Request<hyper::body::Incoming>,
    key: &str,
    slot: impl Send + 'static,
) -> Response<Body> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    hub.shutdown.spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let close = frame::close(1008, "this connection is upgrading or upgraded already");
            refuse(ws::halves(upgraded), close).await;
        }
        drop(slot);
    });
    ws::switching_protocols(key, None)
}

/// Sends a just-upgraded WebSocket nothing but `close`, then half-closes it.
async fn refuse(halves: Halves, close: Bytes) {
    async fn send<W: AsyncWrite + Unpin>(mut w: W, close: &[u8]) -> io::Result<()> {
        w.write_all(close).await?;
        w.shutdown().await
    }
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        match halves {
            Halves::Tcp(_, _, w) => send(DirectWrite(w), &close).await,
            Halves::Tls(_, _, w) => send(TlsWrite(w), &close).await,
            Halves::Other(_, w) => send(w, &close).await,
        }
    })
    .await;
}

async fn run(hub: &Hub, engine: Arc<Engine>, halves: Halves) {
    match halves {
        Halves::Tcp(read, early, write) => serve(hub, engine, read, early, DirectWrite(write)).await,
        Halves::Tls(read, early, write) => serve(hub, engine, read, early, TlsWrite(write)).await,
        Halves::Other(read, write) => serve(hub, engine, read, Bytes::new(), write).await,
    }
}

async fn serve<R, W>(hub: &Hub, engine: Arc<Engine>, read: R, early: Bytes, mut write: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max = hub.settings().limits.max_message_bytes;
    let mut reader = MessageReader::with_early(read, early, max);
    let started = match engine.mode() {
        Mode::Polling => tokio::time::timeout(PROBE_TIMEOUT, probe(&engine, &mut reader, &mut write))
            .await
            .unwrap_or_else(|_| {
                Err(ReadEnd::Violation(
                    1002,
                    "the upgrade probe did not finish in time".into(),
                ))
            }),
        _ => {
            let open = sio::engine_frame(packet::OPEN, engine.open_data(false).as_bytes());
            write.write_all(&open).await.map_err(|_| ReadEnd::Gone)
        }
    };
    if let Err(end) = started {
        if let ReadEnd::Violation(code, reason) = &end {
            let _ = write.write_all(&frame::close(*code, reason)).await;
        }
        // A failed probe leaves the connection polling; a new one is over.
        if engine.mode() == Mode::WebSocket {
            engine.close(Bytes::new());
        }
        return;
    }
    debug!(sid = %engine.sid, "socket.io websocket");
    let closed_cleanly = {
        let reading = read_packets(&engine, &mut reader);
        let writing = write_packets(&engine, &mut write, hub.metrics.as_deref());
        tokio::pin!(writing);
        tokio::select! {
            end = reading => {
                match end {
                    ReadEnd::Violation(code, reason) => {
                        hub.count_protocol_error(ws::violation_kind(code));
                        engine.close(frame::close(code, &reason));
                    }
                    ReadEnd::Gone => engine.close(Bytes::new()),
                }
                tokio::time::timeout(CLOSE_LINGER, &mut writing).await.unwrap_or(false)
            }
            clean = &mut writing => clean,
        }
    };
    if closed_cleanly {
        let mut read = reader.into_inner();
        let _ = tokio::time::timeout(CLOSE_LINGER, ws::discard_until_eof(&mut read)).await;
    }
}

/// The upgrade of a polling connection: `2probe` is answered `3probe` on this socket,
/// the waiting poll ends, and `5` moves the connection here.
async fn probe<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    engine: &Engine,
    reader: &mut MessageReader<R>,
    write: &mut W,
) -> Result<(), ReadEnd> {
    loop {
        match reader.next().await? {
            Incoming::Text(t) if &t[..] == b"2probe" => {
                write
                    .write_all(&sio::engine_frame(packet::PONG, b"probe"))
                    .await
                    .map_err(|_| ReadEnd::Gone)?;
                engine.set_mode(Mode::Upgrading);
            }
            Incoming::Text(t) if &t[..] == b"5" && engine.mode() == Mode::Upgrading => {
                engine.set_mode(Mode::WebSocket);
                return Ok(());
            }
            Incoming::Ping(p) => write
                .write_all(&frame::encode(frame::OpCode::Pong, &p))
                .await
                .map_err(|_| ReadEnd::Gone)?,
            Incoming::Pong => {}
            Incoming::Close(_) => return Err(ReadEnd::Gone),
            _ => {
                return Err(ReadEnd::Violation(
                    1002,
                    "an upgrading client sends `2probe`, then `5`".into(),
                ))
            }
        }
    }
}

/// Reads packets until the client closes, breaks the protocol, or the connection closes.
async fn read_packets<R: AsyncRead + Unpin>(engine: &Engine, reader: &mut MessageReader<R>) -> ReadEnd {
    loop {
        let incoming = match reader.next().await {
            Ok(i) => i,
            Err(end) => return end,
        };
        match incoming {
            // Text messages are checked UTF-8 by the reader.
            Incoming::Text(t) => engine.receive_text(std::str::from_utf8(&t).unwrap_or_default()).await,
            Incoming::Binary(b) => engine.receive_binary(b).await,
            Incoming::Ping(p) => engine.push_control(frame::encode(frame::OpCode::Pong, &p)),
            Incoming::Pong => {}
            Incoming::Close(code) => {
                engine.close(frame::close(code, ""));
                // Wait for the writer to send what is queued and the close.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Writes what the connection has to send until it closes. True when the close frame
/// went out (so the client's close is worth waiting for).
async fn write_packets<W: AsyncWrite + Unpin>(engine: &Engine, write: &mut W, metrics: Option<&Metrics>) -> bool {
    let mut frames = Vec::new();
    let mut drained = Drained::default();
    // Counted here and added to the shared metrics now and then: a message is one batch
    // per subscriber on this path, and shared counters bumped per delivery would contend.
    let mut stats = metrics.map(WriterStats::new);
    loop {
        let closing = engine.take(&mut drained, &mut frames, stats.as_mut());
        if frames.is_empty() && closing.is_none() {
            match stats.as_ref().and_then(WriterStats::due) {
                Some(due) => {
                    let idle = tokio::time::timeout_at(due, engine.ready()).await.is_err();
                    if let (true, Some(s)) = (idle, stats.as_mut()) {
                        s.flush();
                    }
                }
                None => engine.ready().await,
            }
            continue;
        }
        // A wake-up consumed while writing is no loss: everything is taken again first.
        if let Err(e) = write_frames(engine, write, &mut frames).await {
            debug!(error = %e, "socket.io write failed");
            return false;
        }
        if let Some(close) = closing {
            if close.is_empty() {
                return false;
            }
            return write.write_all(&close).await.is_ok() && write.shutdown().await.is_ok();
        }
    }
}

/// Writes `frames` through with vectored writes, giving up if a socket's queue is cut
/// meanwhile (a slow consumer under `disconnect`).
async fn write_frames<W: AsyncWrite + Unpin>(
    engine: &Engine,
    write: &mut W,
    frames: &mut Vec<Bytes>,
) -> io::Result<()> {
    let (mut first, mut offset) = (0usize, 0usize);
    while first < frames.len() {
        let written = tokio::select! {
            biased;
            r = poll_fn(|cx| {
                let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
                let mut n = 0;
                for (i, f) in frames[first..].iter().take(MAX_IOVECS).enumerate() {
                    iov[i] = IoSlice::new(if i == 0 { &f[offset..] } else { f });
                    n = i + 1;
                }
                Pin::new(&mut *write).poll_write_vectored(cx, &iov[..n])
            }) => r?,
            _ = engine.ready() => {
                if engine.aborted() {
                    return Err(io::Error::other("slow consumer cut"));
                }
                continue;
            }
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut left = written;
        while left > 0 && first < frames.len() {
            let rest = frames[first].len() - offset;
            if left >= rest {
                left -= rest;
                first += 1;
                offset = 0;
            } else {
                offset += left;
                left = 0;
            }
        }
    }
    frames.clear();
    // What the socket layer still holds (TLS records) goes out before the writer waits.
    write.flush().await
}
