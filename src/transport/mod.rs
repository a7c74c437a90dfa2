//! The ways into the broker, one file per way: WebSocket (`ws`, with its
//! message reader in `ws_read` and its permessage-deflate negotiation in
//! `ws_extensions`), the HTTP API (`http_api`, with the topics
//! queries in `topics_api`), Server-Sent Events (`sse`), iframe streaming
//! (`iframe`), long-polling (`poll`), and the operator endpoints (`admin`:
//! metrics, connection listing). `stream` is what the two streamed responses
//! (SSE and iframe) share: the writer that drains a session into the body.
//! `gzip` compresses the complete answers of all of them for clients that ask.
//!
//! Each takes the [`Hub`] (what connections share) and nothing of the
//! listener's; every publish goes through `crate::publish`, every
//! subscription through a `Session` or the registry's queries.

pub mod admin;
pub mod gzip;
pub mod http_api;
pub mod iframe;
pub mod poll;
pub mod socketio;
pub mod sse;
mod stream;
pub mod topics_api;
pub mod ws;
pub mod ws_extensions;
pub mod ws_read;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};

use crate::hub::Hub;

/// The response body type every handler returns: a whole body, or a stream (SSE, iframe).
pub type Body = BoxBody<Bytes, Infallible>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON error response: `{"code":..,"message":..}`.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "code": code, "message": message });
    json_response(status, body.to_string().into_bytes())
}

/// A plain-text response with `status`.
pub fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::copy_from_slice(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Checks the request's `Origin` against `server.allowed_origins`; the error is a 403 text.
pub fn check_origin(hub: &Hub, headers: &hyper::HeaderMap) -> Result<(), String> {
    let settings = hub.settings();
    let allowed = &settings.server.allowed_origins;
    if allowed.is_empty() {
        return Ok(());
    }
    let origin = headers.get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(o) if crate::config::origin_allowed(allowed, o) => Ok(()),
        // Non-browser clients send no Origin; the allow-list guards against other web pages.
        None => Ok(()),
        Some(o) => {
            hub.count_protocol_error("origin");
            Err(format!("origin `{o}` is not allowed (server.allowed_origins)"))
        }
    }
}
