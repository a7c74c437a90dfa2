//! Engine.IO long-polling: a GET waits until the connection has something to
//! send and answers all of it at once (packets separated by the record
//! separator, binary ones in base64); a POST carries the client's packets.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::engine::{Engine, Mode};
use super::{engine_error, EngineError};
use crate::hub::Hub;
use crate::protocol::socketio::{self as sio, engine as packet};
use crate::queue::Drained;
use crate::transport::{full, Body};

/// A `text/plain` answer holding `body`.
pub fn text(body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Why `engine` cannot be polled (`instead`: what to do), if it cannot: it
/// is closing (as if gone already), or it moved to WebSocket.
fn unpollable(engine: &Engine, instead: &str) -> Option<Response<Body>> {
    if engine.is_closing() {
        return Some(super::unknown_sid());
    }
    (engine.mode() == Mode::WebSocket).then(|| {
        engine_error(
            StatusCode::BAD_REQUEST,
            EngineError::BadRequest,
            &format!("this connection upgraded to WebSocket; {instead}"),
        )
    })
}

/// Gives the right to poll back when the poll ends, answered or not.
struct Polling<'a>(&'a Engine);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.end_poll();
    }
}

/// A GET: everything there is to send, waiting for it if there is nothing yet.
pub async fn poll(engine: &Engine) -> Response<Body> {
    if let Some(refused) = unpollable(engine, "it is no longer polled") {
        return refused;
    }
    if !engine.begin_poll() {
        // Two polls at once: the client lost track of the protocol.
        engine.close(crate::protocol::frame::close(1002, "two polls at once"));
        return engine_error(
            StatusCode::BAD_REQUEST,
            EngineError::BadRequest,
            "a poll is already waiting on this connection",
        );
    }
    let _polling = Polling(engine);
    let mut frames = Vec::new();
    let mut drained = Drained::default();
    loop {
        let closing = engine.take(&mut drained, &mut frames, None);
        if closing.is_some() {
            // A client that closed knows; anything else is told why the poll ends.
            let last = if engine.closed_by_client() {
                packet::NOOP
            } else {
                packet::CLOSE
            };
            frames.push(sio::engine_frame(last, b""));
            break;
        }
        if !frames.is_empty() {
            break;
        }
        if engine.mode() == Mode::Upgrading {
            // The WebSocket probe succeeded: this poll ends so the client can switch.
            frames.push(sio::engine_frame(packet::NOOP, b""));
            break;
        }
        engine.ready().await;
    }
    let mut body = Vec::with_capacity(frames.iter().map(|f| f.len()).sum());
    for f in &frames {
        sio::polling_packets(f, &mut body);
    }
    text(body)
}

/// A POST: the client's packets, handled in order.
pub async fn post(hub: &Hub, engine: &Engine, req: Request<hyper::body::Incoming>) -> Response<Body> {
    if let Some(refused) = unpollable(engine, "send packets there") {
        return refused;
    }
    let max = hub.settings().limits.max_message_bytes;
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            hub.count_protocol_error("too_large");
            return engine_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                EngineError::BadRequest,
                &format!("the body is over maxPayload ({max} bytes, limits.max_message_bytes)"),
            );
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return engine_error(
            StatusCode::BAD_REQUEST,
            EngineError::BadRequest,
            "the body is not UTF-8",
        );
    };
    for part in text.split(packet::SEPARATOR as char) {
        match part.strip_prefix('b') {
            Some(b64) => match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(data) => engine.receive_binary(Bytes::from(data)).await,
                Err(_) => {
                    engine.close(crate::protocol::frame::close(1002, "bad base64"));
                    return engine_error(
                        StatusCode::BAD_REQUEST,
                        EngineError::BadRequest,
                        "a binary packet (`b...`) is not base64",
                    );
                }
            },
            None => engine.receive_text(part).await,
        }
    }
    let mut r = Response::new(full(Bytes::from_static(b"ok")));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    *r.status_mut() = StatusCode::OK;
    r
}
