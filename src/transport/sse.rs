//! Server-Sent Events: `GET /sse/{topic}` and `GET /sse?topic=a&topic=b`.
//!
//! A stream is a [`Session`] like a WebSocket's — the same bounded
//! [`SendQueue`](crate::queue::SendQueue), topic policies, replay and gap notices — rendered as SSE
//! (`protocol::sse`) by a writer task that feeds the response body through a
//! one-batch channel: when the client reads slowly the channel stays full, the
//! queue fills, and the overflow policy decides, exactly as for WebSocket.
//!
//! Resuming: `Last-Event-ID` (what `EventSource` sends on reconnect) or
//! `?since=` (a seq for every topic, or `topic:seq` pairs); the header wins.
//! Patterns (`?topic=a.*`) are followed live only: seqs are per topic.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, Instrument};

use super::http_api::request_error;
use super::topics_api::{param, query_pairs};
use super::{text_response, Body};
use crate::error::RequestError;
use crate::hub::Hub;
use crate::metrics::Transport;
use crate::protocol::sse::{id_line, parse_resume, Resume, HEARTBEAT};
use crate::protocol::Wire;
use crate::queue::place_gaps;
use crate::queue::{Drained, Entry};
use crate::session::Session;
use crate::shutdown::Shutdown;
use crate::topic::{Filter, TopicName};

/// What a stream asked for.
/// The last event of a stream whose token expired.
const TOKEN_EXPIRED: &[u8] = b"event: error\ndata: {\"type\":\"error\",\"code\":\"token_expired\",\"message\":\"the token expired; open the stream again with a fresh token\"}\n\n";

struct StreamRequest {
    /// Every subscription, as written.
    filters: Vec<Filter>,
    /// Where each exact topic resumes (`None`: live from now).
    since: Vec<(TopicName, Option<u64>)>,
}

/// Answers `GET /sse[/{topic}]` with an event stream, or a 400 naming what is wrong.
pub async fn stream<B>(
    hub: &Arc<Hub>,
    req: &Request<B>,
    path_topic: Option<&str>,
    remote: std::net::SocketAddr,
) -> Response<Body> {
    if let Err(text) = super::check_origin(hub, req.headers()) {
        return text_response(StatusCode::FORBIDDEN, &text);
    }
    let asked = match parse_request(hub, req, path_topic) {
        Ok(a) => a,
        Err(e) => return request_error(&e),
    };
    let grants = match super::http_api::grants(hub, req) {
        Ok(g) => g,
        Err(e) => return request_error(&e),
    };
    if hub.shutdown.is_triggered() {
        return text_response(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let peer = crate::connections::Peer {
        remote: Some(remote),
        transport: Transport::Sse,
    };
    let mut session = Session::with_peer(Arc::clone(hub), Wire::Sse, true, peer);
    session.set_grants(grants);
    let mut positions = Vec::new();
    for filter in &asked.filters {
        let since = match filter {
            Filter::Exact(t) => asked.since.iter().find(|(n, _)| n == t).and_then(|(_, s)| *s),
            Filter::Pattern(_) => None,
        };
        let resume = since.map(|since| crate::registry::Resume { since, epoch: None });
        match session.subscribe_at(filter.as_str(), resume, None).await {
            Ok(at) => {
                if let (Filter::Exact(t), Some(p)) = (filter, at) {
                    // Not recovered: the topic started again, so the stream goes on from its seq now.
                    let from = since.filter(|_| p.recovered).unwrap_or(p.seq);
                    positions.push((t.clone(), from));
                }
            }
            Err(e) => return request_error(&e),
        }
    }
    let single = asked.filters.len() == 1 && positions.len() == 1;
    let (tx, rx) = mpsc::channel(1);
    let span = tracing::info_span!("conn", session_id = session.id().0, transport = "sse");
    let writer = SseWriter {
        session,
        tx,
        positions,
        single,
        heartbeat: hub.settings().http.sse_heartbeat,
    };
    hub.shutdown.spawn(writer.run(hub.shutdown.clone()).instrument(span));
    let mut res = Response::new(
        SseBody {
            rx,
            pending: Vec::new().into_iter(),
        }
        .boxed(),
    );
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

fn parse_request<B>(hub: &Hub, req: &Request<B>, path_topic: Option<&str>) -> Result<StreamRequest, RequestError> {
    let pairs = query_pairs(req);
    let mut texts: Vec<&str> = path_topic.into_iter().collect();
    texts.extend(pairs.iter().filter(|(k, _)| k == "topic").map(|(_, v)| v.as_str()));
    if texts.is_empty() {
        return Err(RequestError::bad_request(
            "name a topic: GET /sse/{topic} or GET /sse?topic=a&topic=b",
        ));
    }
    let max = hub.settings().limits.max_subscriptions_per_connection;
    if texts.len() > max {
        return Err(RequestError::bad_request(format!(
            "{} topics asked; a stream may follow at most {max} (limits.max_subscriptions_per_connection)",
            texts.len()
        )));
    }
    let mut filters: Vec<Filter> = Vec::with_capacity(texts.len());
    for t in texts {
        let f = Filter::parse(t)?;
        if !filters.contains(&f) {
            filters.push(f);
        }
    }
    let exact: Vec<TopicName> = filters
        .iter()
        .filter_map(|f| match f {
            Filter::Exact(t) => Some(t.clone()),
            Filter::Pattern(_) => None,
        })
        .collect();
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| RequestError::bad_request("Last-Event-ID is not ASCII text"))
        })
        .transpose()?
        .filter(|v| !v.trim().is_empty());
    let resume = match (last_event_id, param(&pairs, "since")) {
        (Some(id), _) => Some(resume_from(id, "Last-Event-ID", &exact, true)?),
        (None, Some(since)) => Some(resume_from(since, "since", &exact, false)?),
        (None, None) => None,
    };
    let since = exact
        .iter()
        .map(|t| {
            let s = match &resume {
                Some(Resume::All(n)) => Some(*n),
                Some(Resume::PerTopic(pairs)) => pairs.iter().find(|(n, _)| n == t).map(|(_, s)| *s),
                None => None,
            };
            (t.clone(), s)
        })
        .collect();
    Ok(StreamRequest { filters, since })
}

/// Checks a resume point against the stream's exact topics.
fn resume_from(text: &str, what: &str, exact: &[TopicName], from_id: bool) -> Result<Resume, RequestError> {
    let resume = parse_resume(text).map_err(|e| RequestError::bad_request(format!("{what}: {}", e.message)))?;
    match &resume {
        Resume::All(_) if exact.is_empty() => Err(RequestError::bad_request(format!(
            "{what} needs an exact topic; patterns are followed live only (seqs are per topic)"
        ))),
        // The server gives multi-topic streams `topic:seq` ids, so a bare seq is not one of ours.
        Resume::All(_) if from_id && exact.len() > 1 => Err(RequestError::bad_request(format!(
            "Last-Event-ID `{text}` is a bare seq, but this stream follows {} topics: expected topic:seq pairs",
            exact.len()
        ))),
        Resume::PerTopic(pairs) => match pairs.iter().find(|(t, _)| !exact.contains(t)) {
            Some((t, _)) => Err(RequestError::bad_request(format!(
                "{what} names topic `{t}`, which this stream does not follow"
            ))),
            None => Ok(resume),
        },
        Resume::All(_) => Ok(resume),
    }
}

/// Drains a stream's queue into its response body.
struct SseWriter {
    /// Owns the subscriptions; dropping it unsubscribes (and leaves presence topics).
    session: Session,
    tx: mpsc::Sender<Vec<Bytes>>,
    /// Where the client stands in each exact topic, sent as the `id:` of every event.
    positions: Vec<(TopicName, u64)>,
    /// One exact topic only: the id is the bare seq.
    single: bool,
    heartbeat: Duration,
}

impl SseWriter {
    async fn run(mut self, shutdown: Shutdown) {
        let queue = Arc::clone(self.session.queue());
        let expiry = Arc::clone(self.session.expiry());
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
                    if self.tx.send(vec![Bytes::from_static(HEARTBEAT)]).await.is_err() {
                        break;
                    }
                    continue;
                }
                _ = self.tx.closed() => break,
                _ = expiry.expired() => {
                    // EventSource reconnects with the same URL and token, gets 401, and stops.
                    let _ = self.tx.send(vec![Bytes::from_static(TOKEN_EXPIRED)]).await;
                    break;
                }
            }
            queue.drain(&mut drained);
            let batch = self.render(&drained);
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
        debug!("sse stream ended");
    }

    /// The batch's events in order, each message preceded by the stream's `id:` line.
    fn render(&mut self, drained: &Drained) -> Vec<Bytes> {
        let gaps = place_gaps(&drained.entries, &drained.gaps, Wire::Sse);
        let mut gaps = gaps.into_iter().peekable();
        let mut out = Vec::with_capacity(drained.entries.len() * 2 + 1);
        for (i, entry) in drained.entries.iter().enumerate() {
            while let Some((_, g)) = gaps.next_if(|(at, _)| *at == i) {
                out.push(g);
            }
            match entry {
                Entry::Message(m) => {
                    if let Some(p) = self.positions.iter_mut().find(|(t, _)| *t == m.topic) {
                        p.1 = m.seq;
                    }
                    let mut id = Vec::with_capacity(16);
                    id_line(&self.positions, self.single, &mut id);
                    if !id.is_empty() {
                        out.push(Bytes::from(id));
                    }
                    out.push(m.frame(Wire::Sse).clone());
                }
                Entry::Reply(b) | Entry::Control(b) if !b.is_empty() => out.push(b.clone()),
                _ => {}
            }
        }
        out.extend(gaps.map(|(_, g)| g));
        out
    }
}

/// The response body: batches from the writer, one frame per event piece.
struct SseBody {
    rx: mpsc::Receiver<Vec<Bytes>>,
    pending: std::vec::IntoIter<Bytes>,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(b) = self.pending.next() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.pending = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
