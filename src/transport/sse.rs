//! Server-Sent Events: `GET /sse/{topic}` and `GET /sse?topic=a&topic=b`
//! (each message the WebSocket message object), and `GET /sse/t/{topic}`
//! (each message its payload alone, as `/ws/t/{topic}` sends it).
//!
//! A stream is a [`Session`] like a WebSocket's — the same bounded
//! [`SendQueue`](crate::queue::SendQueue), topic policies, replay and gap notices — rendered as SSE
//! (`protocol::sse`) by the stream writer (`transport::stream`), which puts the
//! stream's own `id:` line before each shared event.
//!
//! Resuming: `Last-Event-ID` (what `EventSource` sends on reconnect) or
//! `?since=` (a seq for every topic, or `topic:seq` pairs); the header wins.
//! Patterns (`?topic=a.*`) are followed live only: seqs are per topic. A
//! payload-only stream names no topic in its events, so it follows one exact
//! topic.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::http_api::request_error;
use super::stream::Render;
use super::topics_api::{param, query_pairs};
use super::{text_response, Body};
use crate::error::RequestError;
use crate::hub::Hub;
use crate::metrics::Transport;
use crate::protocol::sse::{id_line, parse_resume, Resume, HEARTBEAT};
use crate::protocol::Wire;
use crate::queue::place_gaps;
use crate::queue::{Drained, Entry};
use crate::topic::{Filter, TopicName};

/// The last event of a stream whose token expired.
const TOKEN_EXPIRED: &[u8] = b"event: error\ndata: {\"type\":\"error\",\"code\":\"token_expired\",\"message\":\"the token expired; open the stream again with a fresh token\"}\n\n";

/// What each message of a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `/sse[/{topic}]`: the WebSocket message object, in `event: message`.
    Messages,
    /// `/sse/t/{topic}`: the payload alone, in the default event.
    Payloads,
}

impl Form {
    fn wire(self) -> Wire {
        match self {
            Form::Messages => Wire::Sse,
            Form::Payloads => Wire::SseRaw,
        }
    }
}

/// What a stream asked for.
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
    open(hub, req, path_topic, remote, Form::Messages).await
}

/// Answers `GET /sse/t/{topic}` with a stream of the topic's payloads alone, or a 400
/// naming what is wrong.
pub async fn payload_stream<B>(
    hub: &Arc<Hub>,
    req: &Request<B>,
    topic: &str,
    remote: std::net::SocketAddr,
) -> Response<Body> {
    open(hub, req, Some(topic), remote, Form::Payloads).await
}

async fn open<B>(
    hub: &Arc<Hub>,
    req: &Request<B>,
    path_topic: Option<&str>,
    remote: std::net::SocketAddr,
    form: Form,
) -> Response<Body> {
    if let Err(text) = super::check_origin(hub, req.headers()) {
        return text_response(StatusCode::FORBIDDEN, &text);
    }
    let asked = match parse_request(hub, req, path_topic, form) {
        Ok(a) => a,
        Err(e) => return request_error(&e),
    };
    let mut session = match super::stream::session(hub, req, remote, Transport::Sse, form.wire()) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
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
    let render = SseRender {
        positions,
        single,
        wire: form.wire(),
    };
    let body = super::stream::start(hub, session, render, Vec::new(), "sse");
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

fn parse_request<B>(
    hub: &Hub,
    req: &Request<B>,
    path_topic: Option<&str>,
    form: Form,
) -> Result<StreamRequest, RequestError> {
    let pairs = query_pairs(req);
    let mut texts: Vec<&str> = path_topic.into_iter().collect();
    let asked_topics = pairs.iter().filter(|(k, _)| k == "topic").map(|(_, v)| v.as_str());
    if form == Form::Payloads {
        if asked_topics.count() > 0 {
            return Err(RequestError::bad_request(
                "GET /sse/t/{topic} follows the one topic in its path; ?topic= is for GET /sse",
            ));
        }
        // Its events carry no topic name, so a pattern's messages could not be told apart.
        if let Some(f @ Filter::Pattern(_)) = path_topic.map(Filter::parse).transpose()? {
            let p = f.as_str();
            return Err(RequestError::bad_request(format!(
                "`{p}` is a pattern; GET /sse/t/{{topic}} sends payloads without their topic, so it follows \
                 one exact topic (use GET /sse/{p} to follow a pattern)"
            )));
        }
    } else {
        texts.extend(asked_topics);
    }
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

/// Renders SSE: each message preceded by the stream's own `id:` line.
struct SseRender {
    /// Where the client stands in each exact topic, sent as the `id:` of every event.
    positions: Vec<(TopicName, u64)>,
    /// One exact topic only: the id is the bare seq.
    single: bool,
    /// `Sse` (message objects) or `SseRaw` (payloads alone).
    wire: Wire,
}

impl Render for SseRender {
    /// The batch's events in order, each message preceded by the stream's `id:` line.
    fn render(&mut self, drained: &Drained, out: &mut Vec<Bytes>) {
        let gaps = place_gaps(&drained.entries, &drained.gaps, self.wire.into());
        let mut gaps = gaps.into_iter().peekable();
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
                    out.push(m.frame(self.wire).clone());
                }
                Entry::Reply(b) | Entry::Control(b) if !b.is_empty() => out.push(b.clone()),
                _ => {}
            }
        }
        out.extend(gaps.map(|(_, g)| g));
    }

    fn heartbeat(&self) -> Bytes {
        Bytes::from_static(HEARTBEAT)
    }

    fn token_expired(&self) -> Bytes {
        // EventSource reconnects with the same URL and token, gets 401, and stops.
        Bytes::from_static(TOKEN_EXPIRED)
    }
}
