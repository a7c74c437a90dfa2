//! Iframe streaming (a "forever frame"): `GET /iframe/{topic}?callback=NAME`,
//! for pages in browsers too old for WebSocket or EventSource.
//!
//! A page loads the URL in a hidden iframe; the broker answers an HTML
//! document that never ends while the client stays, one
//! `<script>parent.NAME(VALUE)</script>` per published message, which calls
//! the page's function with the payload as a JavaScript value
//! (`protocol::iframe`). The stream is a [`Session`] like an SSE stream's (the
//! same queue, policies, replay, auth and origin checks) written by the stream
//! writer (`transport::stream`). VALUE is encoded once per message and shared;
//! the call around it is two buffers made once per stream, so a message costs
//! each stream three reference-counted pieces and no copy.
//!
//! The stream carries payloads only: gap and presence notices are not sent
//! (they would look like data to the callback); a page that needs to know
//! about a gap re-opens the stream with `?since=` the last seq it knows. A
//! topic with messages retained replays those after `?since=N` first.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::http_api::request_error;
use super::stream::Render;
use super::topics_api::{param, query_pairs, u64_param};
use super::{text_response, Body};
use crate::error::RequestError;
use crate::hub::Hub;
use crate::metrics::Transport;
use crate::protocol::iframe::{preamble, CallbackName, HEARTBEAT, TOKEN_EXPIRED};
use crate::protocol::Wire;
use crate::queue::{Drained, Entry};
use crate::topic::{Filter, TopicName};

/// What a stream asked for.
struct StreamRequest {
    /// The one exact topic it follows.
    topic: TopicName,
    /// The page's function, called with each value.
    callback: CallbackName,
    /// Replay retained messages after this seq first.
    since: Option<u64>,
}

/// Answers `GET /iframe/{topic}?callback=NAME` with a streamed HTML document, or an error
/// naming what is wrong (400 for the request, 401/403 for the credential).
pub async fn stream<B>(
    hub: &Arc<Hub>,
    req: &Request<B>,
    path_topic: &str,
    remote: std::net::SocketAddr,
) -> Response<Body> {
    if let Err(text) = super::check_origin(hub, req.headers()) {
        return text_response(StatusCode::FORBIDDEN, &text);
    }
    let asked = match parse_request(req, path_topic) {
        Ok(a) => a,
        Err(e) => return request_error(&e),
    };
    let mut session = match super::stream::session(hub, req, remote, Transport::Iframe, Wire::Iframe) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let resume = asked.since.map(|since| crate::registry::Resume { since, epoch: None });
    if let Err(e) = session.subscribe_at(asked.topic.as_str(), resume, None).await {
        return request_error(&e);
    }
    let render = IframeRender {
        prefix: asked.callback.prefix(),
        suffix: asked.callback.suffix(),
    };
    let body = super::stream::start(hub, session, render, vec![preamble()], "iframe");
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    res
}

fn parse_request<B>(req: &Request<B>, path_topic: &str) -> Result<StreamRequest, RequestError> {
    let topic = match Filter::parse(path_topic)? {
        Filter::Exact(t) => t,
        // The values carry no topic name, so a pattern's messages could not be told apart.
        Filter::Pattern(_) => {
            return Err(RequestError::bad_request(format!(
                "`{path_topic}` is a pattern; GET /iframe/{{topic}} hands the page payloads without their topic, \
                 so it follows one exact topic"
            )))
        }
    };
    let pairs = query_pairs(req);
    let callback = match param(&pairs, "callback") {
        Some(name) => CallbackName::parse(name)?,
        None => {
            return Err(RequestError::bad_request(
                "callback: missing; pass ?callback=NAME, the parent page's function that receives each value",
            ))
        }
    };
    let since = u64_param(&pairs, "since")?;
    Ok(StreamRequest { topic, callback, since })
}

/// Renders each message as the stream's call around the shared value.
struct IframeRender {
    /// `<script>parent.NAME(`, made once for the stream.
    prefix: Bytes,
    /// `)</script>` and a line break.
    suffix: Bytes,
}

impl Render for IframeRender {
    fn render(&mut self, drained: &Drained, out: &mut Vec<Bytes>) {
        // Replies and notices never reach an iframe queue (`Wire::carries_notices`), and
        // its close carries no bytes: only messages are written.
        for entry in &drained.entries {
            if let Entry::Message(m) = entry {
                out.push(self.prefix.clone());
                out.push(m.frame(Wire::Iframe).clone());
                out.push(self.suffix.clone());
            }
        }
    }

    fn heartbeat(&self) -> Bytes {
        Bytes::from_static(HEARTBEAT)
    }

    fn token_expired(&self) -> Bytes {
        Bytes::from_static(TOKEN_EXPIRED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Message, Payload};

    fn render(callback: &str, drained: &Drained) -> Vec<Bytes> {
        let callback = CallbackName::parse(callback).unwrap();
        let mut r = IframeRender {
            prefix: callback.prefix(),
            suffix: callback.suffix(),
        };
        let mut out = Vec::new();
        r.render(drained, &mut out);
        out
    }

    #[test]
    fn every_stream_shares_the_value_and_each_reuses_its_own_call() {
        let topic = TopicName::parse("t").unwrap();
        let mut drained = Drained::default();
        for (seq, text) in [(1, "a"), (2, "b")] {
            let m = Message::new(topic.clone(), seq, 0, Payload::text(text), None);
            drained.entries.push_back(Entry::Message(Arc::new(m)));
        }
        drained
            .entries
            .push_back(Entry::Reply(Bytes::from_static(b"not for iframes")));
        let (a, b) = (render("onA", &drained), render("pages.onB", &drained));
        assert_eq!(
            a.concat(),
            b"<script>parent.onA(\"a\")</script>\n<script>parent.onA(\"b\")</script>\n"
        );
        assert_eq!(a.len(), 6, "three pieces per message, nothing for the reply");
        // The same message's value is one buffer for both streams: encoded once, never copied.
        assert_eq!(a[1].as_ptr(), b[1].as_ptr());
        assert_eq!(a[4].as_ptr(), b[4].as_ptr());
        // A stream's call around the values is made once and shared by its messages.
        assert_eq!(a[0].as_ptr(), a[3].as_ptr());
        assert_eq!(b[2].as_ptr(), b[5].as_ptr());
    }
}
