//! The accept loop, connection limits, HTTP routing, and the drain on
//! shutdown. `run` is what `main` and the integration tests both call.
//!
//! The drain, step by step: `/readyz` turns 503 at once (and systemd hears
//! `STOPPING=1`); for `server.drain_delay` everything else is still served,
//! so load balancers polling `/readyz` move new clients away first; then
//! every WebSocket flushes its queue and gets close 1001, and the process
//! waits up to `server.shutdown_timeout` for them. While it waits the
//! listener answers plain HTTP only — probes and `/metrics` as usual, 503
//! for everything else, one request per connection — so a probe sees 503
//! rather than a refused connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tracing::{debug, info, warn, Instrument};

use crate::broker::{Broker, ConnectionSlot, Refusal};
use crate::config::Config;
use crate::dashboard;
use crate::error::ServerError;
use crate::transport::{
    admin, error_response, gzip, http_api, iframe, poll, socketio, sse, text_response, topics_api, ws, Body,
};

/// How often expired history is dropped and idle topics removed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Serves on `listener` until `shutdown` resolves, then drains: not ready, no new
/// connections, every WebSocket closed with 1001 after its queue is flushed, all
/// within `server.shutdown_timeout`.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future) -> Result<(), ServerError> {
    let broker = Broker::new(Arc::new(config))?;
    serve(listener, broker, shutdown).await
}

/// As [`run`], with a broker the caller keeps a handle on.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: impl Future) -> Result<(), ServerError> {
    let metrics_listener = match broker.config.metrics.listen_addr() {
        Ok(Some(addr)) if broker.hub.metrics.is_some() => {
            Some(listen(addr).map_err(|source| ServerError::MetricsListen { addr, source })?)
        }
        _ => None,
    };
    let metrics_server = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            let _ = broker.metrics_addr.set(addr);
            info!(%addr, "metrics listening");
        }
        tokio::spawn(serve_metrics(l, Arc::clone(&broker)))
    });
    info!(addr = %listener.local_addr()?, "listening");
    if let Some(cluster) = &broker.hub.cluster {
        cluster.start();
    }
    crate::notify::ready();
    let sweeper = tokio::spawn(sweep(Arc::clone(&broker)));
    let keepalive = tokio::spawn(crate::session::keepalive::run(Arc::clone(&broker.hub)));
    let flushers = broker.hub.flushers.spawn(broker.hub.metrics.clone());
    let stats = tokio::spawn(crate::stats::publish_every_interval(Arc::clone(&broker)));
    let memory = tokio::spawn(crate::memory::run());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => on_accept(&broker, accepted, false).await,
            _ = &mut shutdown => break,
        }
    }
    broker.set_unready();
    crate::notify::stopping();
    let settings = broker.settings();
    info!(
        connections = broker.connections(),
        delay = %humantime::format_duration(settings.server.drain_delay),
        "draining: /readyz answers 503"
    );
    let delay = tokio::time::sleep(settings.server.drain_delay);
    tokio::pin!(delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => on_accept(&broker, accepted, false).await,
            _ = &mut delay => break,
        }
    }
    info!(connections = broker.connections(), "closing connections");
    broker.drain();
    let finished = broker.hub.shutdown.wait(settings.server.shutdown_timeout);
    tokio::pin!(finished);
    let clean = loop {
        tokio::select! {
            clean = &mut finished => break clean,
            accepted = listener.accept() => on_accept(&broker, accepted, true).await,
        }
    };
    drop(listener);
    if !clean {
        warn!(
            left = broker.hub.shutdown.running(),
            "shutdown timeout reached with connections still open"
        );
    }
    sweeper.abort();
    keepalive.abort();
    stats.abort();
    memory.abort();
    for f in flushers {
        f.abort();
    }
    if let Some(m) = metrics_server {
        m.abort();
    }
    info!("stopped");
    Ok(())
}

async fn on_accept(broker: &Arc<Broker>, accepted: std::io::Result<(TcpStream, SocketAddr)>, draining: bool) {
    match accepted {
        Ok((stream, remote)) => accept(broker, stream, remote, draining),
        Err(e) => {
            // Out of descriptors or similar: back off instead of spinning.
            warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The separate metrics listener (`metrics.listen`): `/metrics` and the probes only.
async fn serve_metrics(listener: TcpListener, broker: Arc<Broker>) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let b = Arc::clone(&broker);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let b = Arc::clone(&b);
                async move {
                    // Prometheus scrapers send `Accept-Encoding: gzip`.
                    let negotiation = gzip::Negotiation::of(&req);
                    let res = match (req.method(), req.uri().path()) {
                        (&Method::GET, "/metrics") => admin::metrics(&b.hub),
                        (&Method::GET, "/healthz") => text_response(StatusCode::OK, "ok"),
                        (&Method::GET, "/readyz") => readiness(&b),
                        (m, p) => error_response(
                            StatusCode::NOT_FOUND,
                            "not_found",
                            &format!("no route for {m} {p} on the metrics listener; it serves /metrics, /healthz and /readyz"),
                        ),
                    };
                    let res = gzip::encode(negotiation, res, &b.settings().compression).await;
                    Ok::<_, std::convert::Infallible>(res)
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(%remote, error = %e, "metrics connection ended");
            }
        });
    }
}

fn readiness(broker: &Broker) -> Response<Body> {
    if broker.is_ready() {
        text_response(StatusCode::OK, "ready")
    } else if broker.hub.cluster.as_ref().is_some_and(|c| !c.is_ready()) {
        text_response(StatusCode::SERVICE_UNAVAILABLE, "not connected to the cluster (NATS)")
    } else {
        text_response(StatusCode::SERVICE_UNAVAILABLE, "draining")
    }
}

async fn sweep(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        broker.hub.registry.sweep();
    }
}

fn accept(broker: &Arc<Broker>, stream: TcpStream, remote: SocketAddr, draining: bool) {
    let _ = stream.set_nodelay(true);
    match broker.admit(remote.ip()) {
        Ok(slot) => {
            let b = Arc::clone(broker);
            let span = tracing::info_span!("conn", %remote, transport = "http");
            if draining {
                // Not tracked: a probe during the drain must not hold the exit back.
                tokio::spawn(serve_draining(b, stream, remote, slot).instrument(span));
            } else {
                broker
                    .hub
                    .shutdown
                    .spawn(serve_connection(b, stream, remote, slot).instrument(span));
            }
        }
        Err(refusal) => {
            debug!(%remote, ?refusal, "connection refused");
            if let Some(m) = &broker.hub.metrics {
                m.connections_refused.with_label_values(&[refusal.limit()]).inc();
            }
            tokio::spawn(refuse(broker.tls(), stream, refusal));
        }
    }
}

/// How long a refused connection may take to hear why (TLS handshake included).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers a connection over the limits with a short HTTP error and closes it;
/// inside TLS when TLS is on, so the client can read the answer.
async fn refuse(tls: Option<tokio_rustls::TlsAcceptor>, stream: TcpStream, refusal: Refusal) {
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async move {
        match tls {
            None => write_refusal(stream, refusal).await,
            Some(acceptor) => {
                if let Ok(tls) = acceptor.accept(stream).await {
                    write_refusal(tls, refusal).await;
                }
            }
        }
    })
    .await;
}

async fn write_refusal(mut stream: impl AsyncWrite + Unpin, refusal: Refusal) {
    let (status, text) = match refusal {
        Refusal::TooManyConnections => (
            "503 Service Unavailable",
            "too many connections (server.max_connections)",
        ),
        Refusal::TooManyFromIp => (
            "429 Too Many Requests",
            "too many connections from this address (server.max_connections_per_ip)",
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    if stream.write_all(response.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Serves one accepted connection, first completing the TLS handshake (within
/// `server.handshake_timeout`) when `[tls]` is on.
async fn serve_connection(broker: Arc<Broker>, stream: TcpStream, remote: SocketAddr, slot: ConnectionSlot) {
    match broker.tls() {
        None => serve_http(broker, stream, remote, slot).await,
        Some(acceptor) => {
            if let Some(tls) = tls_handshake(&broker, &acceptor, stream, remote).await {
                serve_http(broker, tls, remote, slot).await;
            }
        }
    }
}

async fn tls_handshake(
    broker: &Broker,
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let timeout = broker.settings().server.handshake_timeout;
    let failed = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => return Some(tls),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    debug!(%remote, error = %failed, "TLS handshake failed");
    if let Some(m) = &broker.hub.metrics {
        m.count_protocol_error("tls_handshake");
    }
    None
}

async fn serve_http<S>(broker: Arc<Broker>, stream: S, remote: SocketAddr, slot: ConnectionSlot)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Until the request is answered or the connection upgrades (then the session counts it).
    let _open = broker
        .hub
        .metrics
        .as_ref()
        .map(|m| m.connection_opened(crate::metrics::Transport::Http));
    let slot = Arc::new(slot);
    let b = Arc::clone(&broker);
    let service = service_fn(move |req| {
        let (b, slot) = (Arc::clone(&b), Arc::clone(&slot));
        async move { Ok::<_, std::convert::Infallible>(route(b, req, slot, remote).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(broker.settings().server.handshake_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                debug!(%remote, error = %e, "http connection ended");
            }
        }
        _ = broker.hub.shutdown.triggered() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A connection accepted while draining: one request, answered by [`route`] (which
/// refuses everything but the probes and metrics), then closed.
async fn serve_draining(broker: Arc<Broker>, stream: TcpStream, remote: SocketAddr, slot: ConnectionSlot) {
    match broker.tls() {
        None => serve_draining_http(broker, stream, remote, slot).await,
        Some(acceptor) => {
            if let Some(tls) = tls_handshake(&broker, &acceptor, stream, remote).await {
                serve_draining_http(broker, tls, remote, slot).await;
            }
        }
    }
}

async fn serve_draining_http<S>(broker: Arc<Broker>, stream: S, remote: SocketAddr, slot: ConnectionSlot)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = Arc::new(slot);
    let timeout = broker.settings().server.handshake_timeout;
    let service = service_fn(move |req| {
        let (b, slot) = (Arc::clone(&broker), Arc::clone(&slot));
        async move { Ok::<_, std::convert::Infallible>(route(b, req, slot, remote).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(timeout, conn).await {
        Ok(Err(e)) => debug!(%remote, error = %e, "http connection ended"),
        Err(_) => debug!(%remote, "http connection timed out while draining"),
        Ok(Ok(())) => {}
    }
}

/// Answers one request: [`dispatch`] makes the answer, then a complete one (not a
/// stream, not an upgrade) is gzipped when the client accepts it (see
/// `transport::gzip`). Compressing costs CPU in this request's task, and a
/// long-poll or history answer is built for one client, never shared, which is
/// why `compression.min_bytes` leaves small ones alone.
async fn route(
    broker: Arc<Broker>,
    req: Request<hyper::body::Incoming>,
    slot: Arc<ConnectionSlot>,
    remote: SocketAddr,
) -> Response<Body> {
    let negotiation = gzip::Negotiation::of(&req);
    let res = dispatch(&broker, req, slot, remote).await;
    gzip::encode(negotiation, res, &broker.settings().compression).await
}

/// The answer of the handler `req` is routed to.
async fn dispatch(
    broker: &Arc<Broker>,
    req: Request<hyper::body::Incoming>,
    slot: Arc<ConnectionSlot>,
    remote: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    // The query may carry `?token=`: redacted here, and again by the log writer.
    debug!(%method, uri = %crate::logging::redact(&req.uri().to_string()), "request");
    let probe = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
    let hub = &broker.hub;
    if broker.hub.shutdown.is_triggered() && !probe {
        return text_response(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    if socketio::serves(hub, &path) {
        return socketio::handle(hub, &broker.socketio, req, slot, remote).await;
    }
    match (&method, path.as_str()) {
        (_, "/ws") => ws::upgrade(hub, req, None, slot, remote),
        (_, p) if p.starts_with("/ws/t/") => {
            let topic = p["/ws/t/".len()..].to_owned();
            ws::upgrade(hub, req, Some(&topic), slot, remote)
        }
        // `new WebSocket("ws://host:port")`: a raw topic socket; a plain GET / is the dashboard.
        (_, "/") if ws::wants_upgrade(req.headers()) => {
            let root_topic = hub.settings().server.root_topic.clone();
            if root_topic.is_empty() {
                return text_response(
                    StatusCode::NOT_FOUND,
                    "no WebSocket on /: server.root_topic is off (\"\"); connect to /ws or /ws/t/{topic}, \
                     or set server.root_topic to a topic name",
                );
            }
            ws::upgrade(hub, req, Some(&root_topic), slot, remote)
        }
        (&Method::GET, "/healthz") => text_response(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => readiness(broker),
        (&Method::GET, "/metrics") => admin::metrics(hub),
        (&Method::GET, p) if dashboard::serves(p) => dashboard::response(p),
        (&Method::GET, "/api/connections") => admin::connections(hub, &req),
        (&Method::POST, "/api/publish") => http_api::publish_batch(hub, req, slot.budget()).await,
        (&Method::POST, p) if p.starts_with("/api/publish/") => {
            let topic = p["/api/publish/".len()..].to_owned();
            http_api::publish(hub, req, &topic, slot.budget()).await
        }
        (&Method::GET, "/api/topics") => topics_api::list(hub, &req),
        (&Method::GET, p) if p.starts_with("/api/topics/") => {
            let rest = &p["/api/topics/".len()..];
            // Topic names never hold `/`, so the suffix is unambiguous.
            match rest.split_once('/') {
                None => topics_api::info(hub, &req, rest),
                Some((topic, "history")) => topics_api::history(hub, &req, topic).await,
                Some((topic, "presence")) => topics_api::presence(hub, &req, topic),
                Some(_) => error_response(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    &format!("no route for {method} {path}"),
                ),
            }
        }
        (&Method::GET, p) if p.starts_with("/api/poll/") => {
            let topic = p["/api/poll/".len()..].to_owned();
            poll::poll(hub, req, &topic).await
        }
        (&Method::GET, "/sse") => sse::stream(hub, &req, None, remote).await,
        // Before `/sse/`, which would read `t/...` as a topic name.
        (&Method::GET, p) if p.starts_with("/sse/t/") => {
            sse::payload_stream(hub, &req, &p["/sse/t/".len()..], remote).await
        }
        (&Method::GET, p) if p.starts_with("/sse/") => sse::stream(hub, &req, Some(&p["/sse/".len()..]), remote).await,
        (&Method::GET, p) if p.starts_with("/iframe/") => {
            iframe::stream(hub, &req, &p["/iframe/".len()..], remote).await
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/api/connections" | "/api/publish") => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "bad_request",
            &format!("{method} is not allowed on {path}"),
        ),
        _ => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route for {method} {path}"),
        ),
    }
}

/// The accept backlog asked of the kernel (which caps it at `net.core.somaxconn`).
/// A reconnect storm of thousands of clients must not overflow it: a dropped SYN
/// costs the client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with a backlog deep enough for connection storms.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds the configured address.
pub async fn bind(config: &Config) -> Result<TcpListener, crate::error::ConfigError> {
    let addr = config.listen_addr()?;
    listen(addr)
        .map_err(|e| crate::error::ConfigError::invalid("server.listen", format!("cannot listen on {addr}: {e}")))
}
