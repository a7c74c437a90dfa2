//! Long-polling: `GET /api/poll/{topic}?since=N&timeout=S` answers at once
//! with the messages after N, or waits up to S seconds (capped by
//! `http.poll_max_timeout`) for the next one, and answers an empty list at
//! timeout. The answer is the history shape: `{"topic","seq","messages",
//! "gap"?}`; `seq` is the `since` of the next poll.
//!
//! Waiting is a real subscription: a temporary [`SendQueue`] subscribed under
//! the topic lock right after the check, so nothing published in between is
//! missed and nothing polls in a loop.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, Response};

use super::http_api::request_error;
use super::topics_api::{limit_param, messages_response, param, query_pairs, u64_param, Format};
use super::Body;
use crate::error::RequestError;
use crate::hub::Hub;
use crate::protocol::Wire;
use crate::queue::{Drained, Entry, QueueLimits, SendQueue};
use crate::registry::PollStart;
use crate::topic::{Filter, TopicName};

/// The wait when the client names none (as in the design's example), within the cap.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(25);

/// `GET /api/poll/{topic}`.
pub async fn poll<B>(hub: &Hub, req: Request<B>, topic: &str) -> Response<Body> {
    match answer(hub, &req, topic).await {
        Ok(r) => r,
        Err(e) => request_error(&e),
    }
}

async fn answer<B>(hub: &Hub, req: &Request<B>, topic: &str) -> Result<Response<Body>, RequestError> {
    let name = TopicName::parse(topic)?;
    let grants = super::http_api::grants(hub, req)?;
    if let Err(e) = grants.check_subscribe(&crate::topic::Filter::Exact(name.clone())) {
        hub.count_auth_failure();
        return Err(e);
    }
    let pairs = query_pairs(req);
    let since = u64_param(&pairs, "since")?;
    let settings = hub.settings();
    let max = settings.http.max_limit;
    let limit = limit_param(&pairs, max, max)?;
    // A poll never outlives its token: the next one, with the same token, is refused.
    let token_left = hub
        .auth()
        .seconds_left(&grants)
        .map_or(Duration::MAX, Duration::from_secs);
    let timeout = timeout_param(&pairs)?
        .min(settings.http.poll_max_timeout)
        .min(token_left);
    let format = Format::of(req.headers());
    let q = &settings.queue;
    let queue = Arc::new(SendQueue::new(
        hub.next_session_id(),
        Wire::Json,
        true,
        QueueLimits {
            max_messages: q.max_messages,
            max_bytes: q.max_bytes,
        },
    ));
    // In cluster mode the node follows the topic for as long as the poll lasts.
    let _held = match &hub.cluster {
        Some(c) => Some(c.hold(Filter::Exact(name.clone())).await?),
        None => None,
    };
    let since = match hub.registry.poll_start(&name, since, limit, &queue) {
        PollStart::Ready(page) => {
            let seq = page
                .messages
                .last()
                .map(|m| m.seq)
                .or(page.gap.map(|(_, to)| to))
                .unwrap_or(page.seq);
            return Ok(messages_response(format, &name, seq, page.gap, &page.messages));
        }
        PollStart::Waiting { since } => since,
    };
    tokio::select! {
        _ = tokio::time::timeout(timeout, queue.ready()) => {}
        _ = hub.shutdown.triggered() => {}
    }
    hub.registry.unsubscribe(&Filter::Exact(name.clone()), queue.session());
    let mut drained = Drained::default();
    queue.drain(&mut drained);
    let mut messages: Vec<_> = drained
        .entries
        .into_iter()
        .filter_map(|e| match e {
            Entry::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    messages.truncate(limit);
    // The temporary queue can only overflow if a burst outruns this very request; say so.
    let gap = drained.gaps.first().map(|g| (g.from, g.to));
    let seq = messages.last().map_or(since, |m| m.seq);
    Ok(messages_response(format, &name, seq, gap, &messages))
}

/// `timeout` in seconds (fractions allowed); [`DEFAULT_TIMEOUT`] when absent.
fn timeout_param(pairs: &[(String, String)]) -> Result<Duration, RequestError> {
    match param(pairs, "timeout") {
        None => Ok(DEFAULT_TIMEOUT),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
            .ok_or_else(|| RequestError::bad_request(format!("`timeout` must be a number of seconds, not `{v}`"))),
    }
}
