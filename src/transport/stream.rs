//! A session streamed as a chunked HTTP response, what SSE (`/sse`,
//! `/sse/t/`) and iframe streaming (`/iframe/`) share: the writer task that
//! drains the session's queue, and the response body it feeds.
//!
//! The writer drains the queue like a TLS WebSocket's, has the stream's
//! [`Render`] turn the batch into pieces (shared message buffers plus the
//! stream's own framing around them), and hands them to the body through a
//! one-batch channel: when the client reads slowly the channel stays full,
//! the queue fills, and the topic's overflow policy decides, exactly as for
//! a WebSocket. The same loop sends heartbeats, ends the stream on shutdown
//! (after flushing what is queued), when the client goes, when a slow
//! consumer is cut under `disconnect`, and when the token expires.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, Instrument};

use super::Body;
use crate::hub::Hub;
use crate::metrics::Transport;
use crate::protocol::Wire;
use crate::queue::Drained;
use crate::session::Session;
use crate::shutdown::Shutdown;

/// The session of a stream that passed its own checks: the grants of the request's token,
/// or the answer to send instead (a refused token, or the drain has begun).
pub(super) fn session<B>(
    hub: &Arc<Hub>,
    req: &hyper::Request<B>,
    remote: std::net::SocketAddr,
    transport: Transport,
    wire: Wire,
) -> Result<Session, Box<hyper::Response<Body>>> {
    let grants = super::http_api::grants(hub, req).map_err(|e| Box::new(super::http_api::request_error(&e)))?;
    if hub.shutdown.is_triggered() {
        return Err(Box::new(super::text_response(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down",
        )));
    }
    let peer = crate::connections::Peer {
        remote: Some(remote),
        transport,
    };
    let mut session = Session::with_peer(Arc::clone(hub), wire, true, peer);
    session.set_grants(grants);
    Ok(session)
}

/// How one kind of stream renders what its queue holds.
pub(super) trait Render: Send + 'static {
    /// Appends the pieces of a drained batch to `out`, in order.
    fn render(&mut self, drained: &Drained, out: &mut Vec<Bytes>);

    /// The piece sent every `http.sse_heartbeat` so proxies keep a quiet stream open.
    fn heartbeat(&self) -> Bytes;

    /// The last piece of a stream whose token expired.
    fn token_expired(&self) -> Bytes;
}

/// Starts the writer of `session` as a tracked task and returns the body it feeds;
/// `first` goes out before anything queued. `transport` names the stream in its span.
pub(super) fn start<R: Render>(
    hub: &Arc<Hub>,
    session: Session,
    render: R,
    first: Vec<Bytes>,
    transport: &'static str,
) -> Body {
    let (tx, rx) = mpsc::channel(1);
    let span = tracing::info_span!("conn", session_id = session.id().0, transport);
    let writer = Writer {
        session,
        tx,
        render,
        heartbeat: hub.settings().http.sse_heartbeat,
    };
    hub.shutdown.spawn(writer.run(hub.shutdown.clone()).instrument(span));
    ChannelBody {
        rx,
        pending: first.into_iter(),
    }
    .boxed()
}

/// Drains a stream's queue into its response body.
struct Writer<R> {
    /// Owns the subscriptions; dropping it unsubscribes (and leaves presence topics).
    session: Session,
    tx: mpsc::Sender<Vec<Bytes>>,
    render: R,
    heartbeat: Duration,
}

impl<R: Render> Writer<R> {
    async fn run(mut self, shutdown: Shutdown) {
        let queue = Arc::clone(self.session.queue());
        let listed = Arc::clone(self.session.listed());
        let mut drained = Drained::default();
        let mut beat = tokio::time::interval_at(Instant::now() + self.heartbeat, self.heartbeat);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut draining = false;
        loop {
            tokio::select! {
                biased;
                _ = queue.ready() => {}
                _ = shutdown.triggered(), if !draining => {
                    draining = true;
                    // Flush what is queued, then end the stream (no WebSocket close frame here).
                    queue.close(Bytes::new(), true);
                }
                _ = beat.tick() => {
                    if self.tx.send(vec![self.render.heartbeat()]).await.is_err() {
                        break;
                    }
                    continue;
                }
                _ = self.tx.closed() => break,
                _ = listed.expiry.expired() => {
                    // A reconnect with the same token gets 401, so the client learns why.
                    let _ = self.tx.send(vec![self.render.token_expired()]).await;
                    break;
                }
            }
            queue.drain(&mut drained);
            let mut batch = Vec::with_capacity(drained.entries.len() * 3 + 1);
            self.render.render(&drained, &mut batch);
            if !batch.is_empty() {
                let sent = tokio::select! {
                    r = self.tx.send(batch) => r.is_ok(),
                    // A slow consumer under `disconnect`: cut it now.
                    _ = queue.aborted() => false,
                };
                if !sent {
                    break;
                }
            }
            if drained.close.take().is_some() {
                break;
            }
        }
        debug!("stream ended");
    }
}

/// The response body: batches from the writer, one frame per piece.
struct ChannelBody {
    rx: mpsc::Receiver<Vec<Bytes>>,
    pending: std::vec::IntoIter<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(b) = self.pending.next() {
                // An empty chunk would read as the end of a chunked body.
                if !b.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                continue;
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.pending = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
