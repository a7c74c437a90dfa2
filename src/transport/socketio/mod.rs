//! Socket.IO v4 clients (Engine.IO protocol v4, Socket.IO protocol v5) at
//! `socketio.path` (`/socket.io/`): the handshake, the routing of each
//! request to its connection, and the table of connections by session id.
//!
//! Written as one more wire format over fanout's own transport rather than
//! with a Socket.IO crate: a subscriber's frames are the shared per-message
//! frames of `protocol::socketio`, queued in the same bounded queues with the
//! same policies as `/ws` (see `engine`, and `socket` for one namespace
//! joined). The transports are long-polling (`polling`) and WebSocket
//! (`websocket`), and the upgrade from one to the other.

pub mod engine;
pub mod polling;
pub mod socket;
pub mod websocket;

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use dashmap::DashMap;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use self::engine::{Engine, Handshake, Mode};
use super::{full, Body};
use crate::hub::Hub;

/// The open connections by Engine.IO session id.
#[derive(Default)]
pub struct Engines {
    by_sid: DashMap<Arc<str>, Arc<Engine>>,
    /// Connections per client address: a long-polling one holds no TCP connection
    /// between its requests, so the listener's limits alone would not bound them.
    per_ip: DashMap<IpAddr, usize>,
}

impl Engines {
    /// No connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// The connection with `sid`.
    pub fn get(&self, sid: &str) -> Option<Arc<Engine>> {
        self.by_sid.get(sid).map(|e| Arc::clone(&e))
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.by_sid.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.by_sid.is_empty()
    }

    /// Whether a new connection from `ip` is within `server.max_connections` and
    /// `server.max_connections_per_ip` (which bound Socket.IO connections as they bound
    /// TCP ones); the refusal names the limit.
    pub fn room_for(&self, hub: &Hub, ip: IpAddr) -> Result<(), &'static str> {
        let settings = hub.settings();
        if self.by_sid.len() >= settings.server.max_connections {
            return Err("too many Socket.IO connections (server.max_connections)");
        }
        let per_ip = settings.server.max_connections_per_ip;
        if per_ip > 0 && self.per_ip.get(&ip).is_some_and(|n| *n >= per_ip) {
            return Err("too many Socket.IO connections from this address (server.max_connections_per_ip)");
        }
        Ok(())
    }

    /// A new connection, listed under a fresh session id, its heartbeat running until it
    /// closes (then it is unlisted); refused, naming the limit, when there is no room.
    pub fn open(
        self: &Arc<Self>,
        hub: &Arc<Hub>,
        mode: Mode,
        handshake: Handshake,
    ) -> Result<Arc<Engine>, &'static str> {
        let ip = handshake.remote.ip();
        self.room_for(hub, ip)?;
        *self.per_ip.entry(ip).or_insert(0) += 1;
        let sid: Arc<str> = Arc::from(new_sid());
        let engine = Arc::new(Engine::new(Arc::clone(hub), Arc::clone(&sid), mode, handshake));
        self.by_sid.insert(Arc::clone(&sid), Arc::clone(&engine));
        let (engines, e) = (Arc::clone(self), Arc::clone(&engine));
        hub.shutdown.spawn(async move {
            e.run().await;
            engines.by_sid.remove(&sid);
            engines.per_ip.remove_if_mut(&ip, |_, n| {
                *n -= 1;
                *n == 0
            });
        });
        Ok(engine)
    }
}

/// A session id no client can guess: 16 random bytes, base64url.
fn new_sid() -> String {
    let mut bytes = [0u8; 16];
    // Without an entropy source nothing here is safe; that is the one failure to stop on.
    getrandom::fill(&mut bytes).expect("the OS entropy source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `path` is the Socket.IO endpoint (with or without its final `/`).
pub fn serves(hub: &Hub, path: &str) -> bool {
    let settings = hub.settings();
    let s = &settings.socketio;
    s.enabled && (path == s.path || path == s.path.trim_end_matches('/'))
}

/// The request's Engine.IO parameters.
struct Query {
    transport: String,
    sid: Option<String>,
    echo: Option<bool>,
}

/// The Engine.IO error codes (the reference server's).
#[derive(Debug, Clone, Copy)]
enum EngineError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

/// An Engine.IO error answer: `{"code":N,"message":".."}` with the reason.
fn engine_error(status: StatusCode, code: EngineError, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "code": code as u8, "message": message }).to_string();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Reads the query; a refusal is the Engine.IO error code and the reason.
fn parse_query(query: Option<&str>) -> Result<Query, (EngineError, String)> {
    let mut eio = None;
    let mut q = Query {
        transport: String::new(),
        sid: None,
        echo: None,
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "EIO" => eio = Some(v.into_owned()),
            "transport" => q.transport = v.into_owned(),
            "sid" => q.sid = Some(v.into_owned()),
            "echo" => {
                q.echo = Some(match &*v {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    other => {
                        return Err((
                            EngineError::BadRequest,
                            format!("echo `{other}` is not a boolean; use true or false"),
                        ))
                    }
                })
            }
            _ => {}
        }
    }
    if eio.as_deref() != Some("4") {
        return Err((
            EngineError::UnsupportedProtocolVersion,
            "unsupported protocol version: this server speaks Engine.IO 4 (socket.io-client 3.x and 4.x), EIO=4".into(),
        ));
    }
    if !matches!(q.transport.as_str(), "polling" | "websocket") {
        return Err((
            EngineError::UnknownTransport,
            "transport unknown: use transport=polling or transport=websocket".into(),
        ));
    }
    Ok(q)
}

/// Answers a request to the Socket.IO endpoint. `slot` (the connection's place in the
/// listener's limits) is held by a WebSocket for its whole life.
pub async fn handle(
    hub: &Arc<Hub>,
    engines: &Arc<Engines>,
    req: Request<hyper::body::Incoming>,
    slot: impl Send + 'static,
    remote: std::net::SocketAddr,
) -> Response<Body> {
    if let Err(text) = super::check_origin(hub, req.headers()) {
        return with_cors(
            req.headers(),
            engine_error(StatusCode::FORBIDDEN, EngineError::Forbidden, &text),
        );
    }
    if req.method() == Method::OPTIONS {
        return preflight(req.headers());
    }
    let q = match parse_query(req.uri().query()) {
        Ok(q) => q,
        Err((code, reason)) => return with_cors(req.headers(), engine_error(StatusCode::BAD_REQUEST, code, &reason)),
    };
    if hub.shutdown.is_triggered() {
        return super::text_response(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let handshake = Handshake {
        remote,
        credential: crate::auth::credential(req.headers(), req.uri().query()),
        echo: q.echo,
    };
    if q.transport == "websocket" {
        return websocket::upgrade(hub, engines, req, q.sid, handshake, slot);
    }
    let origin = req.headers().clone();
    let response = match (req.method(), q.sid) {
        (&Method::GET, None) => match engines.open(hub, Mode::Polling, handshake) {
            Ok(engine) => {
                let mut open = vec![crate::protocol::socketio::engine::OPEN];
                open.extend_from_slice(engine.open_data(true).as_bytes());
                polling::text(open)
            }
            Err(limit) => engine_error(StatusCode::SERVICE_UNAVAILABLE, EngineError::Forbidden, limit),
        },
        (_, None) => engine_error(
            StatusCode::BAD_REQUEST,
            EngineError::BadHandshakeMethod,
            "a handshake is a GET without sid",
        ),
        (method, Some(sid)) => match engines.get(&sid) {
            None => unknown_sid(),
            Some(engine) => match *method {
                Method::GET => polling::poll(&engine).await,
                Method::POST => polling::post(hub, &engine, req).await,
                _ => engine_error(
                    StatusCode::BAD_REQUEST,
                    EngineError::BadRequest,
                    &format!("{method} is not a long-polling method; use GET or POST"),
                ),
            },
        },
    };
    with_cors(&origin, response)
}

/// The answer for a session id that is not (or no longer) open.
fn unknown_sid() -> Response<Body> {
    engine_error(
        StatusCode::BAD_REQUEST,
        EngineError::UnknownSid,
        "session id unknown: the connection closed or timed out; connect again",
    )
}

/// Lets a page of another origin (already checked against `server.allowed_origins`)
/// read the answer, with its cookies.
fn with_cors(request: &HeaderMap, mut res: Response<Body>) -> Response<Body> {
    if let Some(origin) = request.get(header::ORIGIN) {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    res
}

/// The answer to a CORS preflight of a long-polling POST.
fn preflight(request: &HeaderMap) -> Response<Body> {
    let mut res = Response::new(full(bytes::Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    let asked = request
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("content-type"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    with_cors(request, res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_long_and_distinct() {
        let (a, b) = (new_sid(), new_sid());
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
    }

    #[test]
    fn the_query_needs_eio_4_and_a_known_transport() {
        assert!(parse_query(Some("EIO=4&transport=polling")).is_ok());
        assert!(parse_query(Some("EIO=3&transport=polling")).is_err());
        assert!(parse_query(Some("EIO=4&transport=flash")).is_err());
        assert!(parse_query(Some("EIO=4&transport=websocket&echo=maybe")).is_err());
        let q = parse_query(Some("EIO=4&transport=websocket&sid=abc&echo=true")).unwrap();
        assert_eq!((q.sid.as_deref(), q.echo), (Some("abc"), Some(true)));
    }
}
